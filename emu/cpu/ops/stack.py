"""Stack instructions: PUSH/POP (registers, immediates, r/m, segment registers),
PUSHA/POPA, PUSHF/POPF, ENTER/LEAVE.

The stack-address size (ESP or SP) follows SS.B at run time (a segment
register load does not rebuild blocks), the operand size follows the
instruction.  Memory is written (or read) before ESP changes, so a faulting
stack access leaves ESP as it was.
"""
from ..faults import CPUFault, GP
from ..flags import materialize, IOPL_MASK, VM, RF, IF, AC, ID, NT
from ..operands import ea, reg_get, reg_set, rm_get, MASKS
from ..state import ESP, EBP, CPL, SS, seg_index

M32 = 0xFFFFFFFF
_SREG_OF = {0x06: 0, 0x0E: 1, 0x16: 2, 0x1E: 3, 0x0FA0: 4, 0x0FA8: 5,
            0x07: 0, 0x17: 2, 0x1F: 3, 0x0FA1: 4, 0x0FA9: 5}


def _stack(cpu):
    return cpu.segs[SS]


# --- PUSH / POP -------------------------------------------------------------------

def push(cpu, insn):
    """PUSH r (50+r), PUSH imm (68/6A), PUSH r/m (FF /6)."""
    R = cpu.R
    size = insn.opsize >> 3
    ss = _stack(cpu)
    wr = cpu.mem.WR[size]
    form = insn.row.operands[0]
    if form[0] == "Z":
        r = insn.opcode & 7
        if size == 4:
            def push_r32():
                v = R[r]
                if ss.big:
                    sp = (R[ESP] - 4) & M32
                    wr(SS, sp, v)
                    R[ESP] = sp
                else:
                    sp = (R[ESP] - 4) & 0xFFFF
                    wr(SS, sp, v)
                    R[ESP] = (R[ESP] & 0xFFFF0000) | sp
            return push_r32
        get = reg_get(cpu, r, size)
    elif form[0] == "I":
        v = insn.imm & MASKS[size]
        get = lambda: v  # noqa: E731
    else:
        get = rm_get(cpu, insn, size)

    def f():
        v = get()
        if ss.big:
            sp = (R[ESP] - size) & M32
            wr(SS, sp, v)
            R[ESP] = sp
        else:
            sp = (R[ESP] - size) & 0xFFFF
            wr(SS, sp, v)
            R[ESP] = (R[ESP] & 0xFFFF0000) | sp
    return f


def pop(cpu, insn):
    """POP r (58+r), POP r/m (8F /0).  POP r/m with an ESP-based address
    computes the address after ESP is incremented (SDM POP)."""
    R = cpu.R
    size = insn.opsize >> 3
    ss = _stack(cpu)
    rd = cpu.mem.RD[size]
    form = insn.row.operands[0]
    if form[0] == "Z" or insn.mod == 3:
        r = insn.opcode & 7 if form[0] == "Z" else insn.rm
        if size == 4:
            def pop_r32():
                if ss.big:
                    sp = R[ESP]
                    v = rd(SS, sp)
                    R[ESP] = (sp + 4) & M32
                else:
                    sp = R[ESP] & 0xFFFF
                    v = rd(SS, sp)
                    R[ESP] = (R[ESP] & 0xFFFF0000) | ((sp + 4) & 0xFFFF)
                R[r] = v
            return pop_r32
        put = reg_set(cpu, r, size)

        def pop_r16():
            if ss.big:
                sp = R[ESP]
                v = rd(SS, sp)
                R[ESP] = (sp + 2) & M32
            else:
                sp = R[ESP] & 0xFFFF
                v = rd(SS, sp)
                R[ESP] = (R[ESP] & 0xFFFF0000) | ((sp + 2) & 0xFFFF)
            put(v)
        return pop_r16
    addr = ea(cpu, insn)
    wr = cpu.mem.WR[size]
    s = insn.seg

    def pop_m():
        old = R[ESP]
        if ss.big:
            v = rd(SS, old)
            new = (old + size) & M32
        else:
            v = rd(SS, old & 0xFFFF)
            new = (old & 0xFFFF0000) | ((old + size) & 0xFFFF)
        R[ESP] = new
        a = addr()              # the address sees the incremented ESP
        R[ESP] = old
        wr(s, a, v)
        R[ESP] = new
    return pop_m


def push_sreg(cpu, insn):
    """PUSH ES/CS/SS/DS/FS/GS.  With a 32-bit operand size the P6 family
    decrements ESP by 4 and writes only the 2 selector bytes (SDM Vol. 3
    "Selector Pushes and Pops"); the upper word of the slot keeps its value."""
    R = cpu.R
    size = insn.opsize >> 3
    ss = _stack(cpu)
    wr16 = cpu.mem.wr16
    si = seg_index(_SREG_OF[insn.opcode], 0)

    def f():
        v = R[si]
        if ss.big:
            sp = (R[ESP] - size) & M32
            wr16(SS, sp, v)
            R[ESP] = sp
        else:
            sp = (R[ESP] - size) & 0xFFFF
            wr16(SS, sp, v)
            R[ESP] = (R[ESP] & 0xFFFF0000) | sp
    return f


def pop_sreg(cpu, insn):
    """POP ES/SS/DS/FS/GS: read 2 bytes, load the register (may fault), then
    ESP += operand size (with the stack size in force before the load).
    POP SS holds off interrupts for one instruction."""
    R = cpu.R
    size = insn.opsize >> 3
    ss = _stack(cpu)
    rd16 = cpu.mem.rd16
    sreg = _SREG_OF[insn.opcode]
    load = cpu.load_sreg
    is_ss = sreg == SS

    def f():
        big = ss.big
        old = R[ESP]
        sel = rd16(SS, old if big else old & 0xFFFF)
        load(sreg, sel)
        if big:
            R[ESP] = (old + size) & M32
        else:
            R[ESP] = (old & 0xFFFF0000) | ((old + size) & 0xFFFF)
        if is_ss:
            cpu.hold_interrupts(always_look=True)
    return f


# --- PUSHA / POPA -----------------------------------------------------------------

def pusha(cpu, insn):
    """PUSHA/PUSHAD: EAX ECX EDX EBX (original ESP) EBP ESI EDI.  Every slot is
    checked for writability before the first store (lowest slot first, as
    QEMU stores them; the SDM leaves the order open), so a fault leaves
    memory and ESP untouched."""
    R = cpu.R
    size = insn.opsize >> 3
    ss = _stack(cpu)
    wr = cpu.mem.WR[size]
    check = cpu.mem.check_write
    mask = MASKS[size]

    def f():
        old = R[ESP]
        vals = [R[i] & mask for i in range(8)]
        big = ss.big
        smask = M32 if big else 0xFFFF
        sp = old & smask
        low = (sp - 8 * size) & smask
        slots = [(sp - (i + 1) * size) & smask for i in range(8)]
        if low < sp:                         # no wrap: one range check
            check(SS, low, 8 * size)
        else:
            for a in reversed(slots):
                check(SS, a, size)
        for i in range(8):
            wr(SS, slots[i], vals[i])
        if big:
            R[ESP] = low
        else:
            R[ESP] = (old & 0xFFFF0000) | low
    return f


def popa(cpu, insn):
    """POPA/POPAD: EDI ESI EBP (skipped) EBX EDX ECX EAX; all reads first."""
    R = cpu.R
    size = insn.opsize >> 3
    ss = _stack(cpu)
    rd = cpu.mem.RD[size]

    def f():
        old = R[ESP]
        big = ss.big
        smask = M32 if big else 0xFFFF
        sp = old & smask
        vals = [rd(SS, (sp + i * size) & smask) for i in range(8)]
        for i in range(8):
            r = 7 - i
            if r == ESP:
                continue
            if size == 4:
                R[r] = vals[i]
            else:
                R[r] = (R[r] & 0xFFFF0000) | vals[i]
        sp = (sp + 8 * size) & smask
        R[ESP] = sp if big else (old & 0xFFFF0000) | sp
    return f


# --- PUSHF / POPF -------------------------------------------------------------------

def pushf(cpu, insn):
    """PUSHF/PUSHFD: the image has VM and RF clear.  V86 mode with IOPL < 3: #GP(0)."""
    R = cpu.R
    size = insn.opsize >> 3
    ss = _stack(cpu)
    wr = cpu.mem.WR[size]
    mask = 0x00FCFFFF if size == 4 else 0xFFFF

    def f():
        e = materialize(R)
        if e & VM and (e & IOPL_MASK) != IOPL_MASK:
            raise CPUFault(GP, 0)
        v = e & mask
        if ss.big:
            sp = (R[ESP] - size) & M32
            wr(SS, sp, v)
            R[ESP] = sp
        else:
            sp = (R[ESP] - size) & 0xFFFF
            wr(SS, sp, v)
            R[ESP] = (R[ESP] & 0xFFFF0000) | sp
    return f


_POPF_BASE = 0x0DD5 | NT          # CF PF AF ZF SF TF DF OF NT (IF, IOPL by privilege)


def popf(cpu, insn):
    """POPF/POPFD (SDM Table 4-21): IOPL changes only at CPL 0 (or real mode),
    IF only when CPL <= IOPL (no fault otherwise), VM/VIP/VIF never; RF ends
    up clear; AC and ID only with a 32-bit operand size; the 16-bit form
    keeps the upper half.  V86 mode with IOPL < 3: #GP(0)."""
    R = cpu.R
    size = insn.opsize >> 3
    ss = _stack(cpu)
    rd = cpu.mem.RD[size]
    base = _POPF_BASE | (AC | ID if size == 4 else 0)
    setf = cpu.set_eflags

    def f():
        e = materialize(R)
        if e & VM:
            if (e & IOPL_MASK) != IOPL_MASK:
                raise CPUFault(GP, 0)
            m = base | IF
        elif not cpu.protected or R[CPL] == 0:
            m = base | IF | IOPL_MASK
        elif R[CPL] <= (e & IOPL_MASK) >> 12:
            m = base | IF
        else:
            m = base
        old = R[ESP]
        if ss.big:
            v = rd(SS, old)
            R[ESP] = (old + size) & M32
        else:
            v = rd(SS, old & 0xFFFF)
            R[ESP] = (old & 0xFFFF0000) | ((old + size) & 0xFFFF)
        setf(((e & ~m) | (v & m)) & ~RF)
    return f


# --- ENTER / LEAVE --------------------------------------------------------------------

def enter(cpu, insn):
    """ENTER imm16, imm8 (SDM ENTER, nesting level mod 32).  All frame-pointer
    copies are read and every slot is checked before anything is stored.

    16-bit stack with a 32-bit operand size (the SDM pseudocode contradicts
    itself there): EBP <- ESP after the push of EBP (upper half of ESP, new
    SP), as Bochs does; QEMU writes BP only.  The allocation always moves
    SP only (both agree)."""
    R = cpu.R
    size = insn.opsize >> 3
    alloc = insn.imm & 0xFFFF
    level = (insn.imm2 or 0) & 31
    ss = _stack(cpu)
    mem = cpu.mem
    wr = mem.WR[size]
    rd = mem.RD[size]
    check = mem.check_write
    mask = MASKS[size]

    if level == 0:
        def enter0():
            big = ss.big
            old = R[ESP]
            if big:
                sp = (old - size) & M32
                wr(SS, sp, R[EBP] & mask)
                frame = sp
                R[ESP] = (sp - alloc) & M32
            else:
                sp = (old - size) & 0xFFFF
                wr(SS, sp, R[EBP] & mask)
                frame = (old & 0xFFFF0000) | sp
                R[ESP] = (old & 0xFFFF0000) | ((sp - alloc) & 0xFFFF)
            if size == 4:
                R[EBP] = frame
            else:
                R[EBP] = (R[EBP] & 0xFFFF0000) | (frame & 0xFFFF)
        return enter0

    def enter_n():
        big = ss.big
        smask = M32 if big else 0xFFFF
        old_esp = R[ESP]
        ebp = R[EBP]
        sp = old_esp & smask
        vals = [ebp & mask]                       # push (E)BP
        sp = (sp - size) & smask
        slots = [sp]
        frame = sp if big else (old_esp & 0xFFFF0000) | sp      # FrameTemp: ESP after the push
        bp = ebp & smask
        for _ in range(level - 1):                # copies of the outer frame pointers
            bp = (bp - size) & smask
            vals.append(rd(SS, bp))
            sp = (sp - size) & smask
            slots.append(sp)
        vals.append(frame & mask)                 # push FrameTemp
        sp = (sp - size) & smask
        slots.append(sp)
        for a in slots:
            check(SS, a, size)
        for a, v in zip(slots, vals):
            wr(SS, a, v)
        sp = (sp - alloc) & smask
        R[ESP] = sp if big else (old_esp & 0xFFFF0000) | sp
        if size == 4:
            R[EBP] = frame
        else:
            R[EBP] = (ebp & 0xFFFF0000) | (frame & 0xFFFF)
    return enter_n


def leave(cpu, insn):
    """LEAVE: (E)SP <- (E)BP (by the stack size), then pop (E)BP (operand size)."""
    R = cpu.R
    size = insn.opsize >> 3
    ss = _stack(cpu)
    rd = cpu.mem.RD[size]

    def f():
        if ss.big:
            sp = R[EBP]
            v = rd(SS, sp)
            R[ESP] = (sp + size) & M32
        else:
            sp = R[EBP] & 0xFFFF
            v = rd(SS, sp)
            R[ESP] = (R[ESP] & 0xFFFF0000) | ((sp + size) & 0xFFFF)
        if size == 4:
            R[EBP] = v
        else:
            R[EBP] = (R[EBP] & 0xFFFF0000) | v
    return f


__all__ = ["push", "pop", "push_sreg", "pop_sreg", "pusha", "popa", "pushf", "popf",
           "enter", "leave"]
