"""Near control transfers: Jcc, JMP, CALL, RET, LOOP/LOOPE/LOOPNE, JCXZ, BOUND.

Targets are computed at decode time where they are constants.  The new EIP
is masked to the operand size (16-bit near jumps wrap IP at 64 KiB) and
checked against the CS limit: beyond it is #GP(0) raised by the jumping
instruction, as the SDM says.
"""
from ..faults import CPUFault, GP, BR
from ..flags import CONDS, ZF
from ..operands import rm_get, ea
from ..state import EIP, ECX, CS, EFLAGS, LF_OP, LF_RES


def _target(insn):
    mask = 0xFFFFFFFF if insn.opsize == 32 else 0xFFFF
    return (insn.next_eip + insn.imm) & mask


def jcc(cpu, insn):
    R = cpu.R
    cc = insn.opcode & 0xF
    cond = CONDS[cc]
    t = _target(insn)
    n = insn.next_eip
    cs = cpu.segs[CS]
    if cc == 5 and t <= cs.xmax:     # JNZ, the loop branch: ZF straight from the result
        def jnz():
            if R[LF_OP]:
                taken = R[LF_RES] != 0
            else:
                taken = not R[EFLAGS] & ZF
            if taken and t > cs.xmax:
                raise CPUFault(GP, 0)
            R[EIP] = t if taken else n
        return jnz

    def f():
        if cond(R):
            if t > cs.xmax:
                raise CPUFault(GP, 0)
            R[EIP] = t
        else:
            R[EIP] = n
    return f


def jmp(cpu, insn):
    R = cpu.R
    cs = cpu.segs[CS]
    if insn.imm is not None and insn.mod is None:
        t = _target(insn)

        def f():
            if t > cs.xmax:
                raise CPUFault(GP, 0)
            R[EIP] = t
        return f
    get = rm_get(cpu, insn, insn.opsize >> 3)

    def g():
        t = get()
        if t > cs.xmax:
            raise CPUFault(GP, 0)
        R[EIP] = t
    return g


def call(cpu, insn):
    R = cpu.R
    cs = cpu.segs[CS]
    size = insn.opsize >> 3
    ret = insn.next_eip & (0xFFFFFFFF if size == 4 else 0xFFFF)
    push = cpu.push
    if insn.imm is not None and insn.mod is None:
        t = _target(insn)

        def f():
            if t > cs.xmax:
                raise CPUFault(GP, 0)
            push(ret, size)
            R[EIP] = t
        return f
    get = rm_get(cpu, insn, size)

    def g():
        t = get()
        if t > cs.xmax:
            raise CPUFault(GP, 0)
        push(ret, size)
        R[EIP] = t
    return g


def ret(cpu, insn):
    R = cpu.R
    cs = cpu.segs[CS]
    size = insn.opsize >> 3
    extra = insn.imm or 0
    ss = cpu.segs[2]
    mem_rd = cpu.mem.RD[size]
    from ..state import ESP

    def f():
        # read first, commit ESP only when the target is valid
        if ss.big:
            sp = R[ESP]
            t = mem_rd(2, sp)
            if t > cs.xmax:
                raise CPUFault(GP, 0)
            R[ESP] = (sp + size + extra) & 0xFFFFFFFF
        else:
            sp = R[ESP] & 0xFFFF
            t = mem_rd(2, sp)
            if t > cs.xmax:
                raise CPUFault(GP, 0)
            R[ESP] = (R[ESP] & 0xFFFF0000) | ((sp + size + extra) & 0xFFFF)
        R[EIP] = t
    return f


def loop(cpu, insn):
    """LOOP/LOOPE/LOOPNE: count register by address size; the new count is
    committed only with EIP (a target beyond the CS limit faults first)."""
    R = cpu.R
    t = _target(insn)
    n = insn.next_eip
    cs = cpu.segs[CS]
    mnem = insn.row.mnem
    cmask = 0xFFFFFFFF if insn.adsize == 32 else 0xFFFF
    keep = 0xFFFFFFFF ^ cmask
    zset = CONDS[4]   # ZF set

    if mnem == "loop":
        def f():
            c = (R[ECX] - 1) & cmask
            if c:
                if t > cs.xmax:
                    raise CPUFault(GP, 0)
                R[EIP] = t
            else:
                R[EIP] = n
            R[ECX] = (R[ECX] & keep) | c
        return f
    want_z = mnem == "loope"

    def g():
        c = (R[ECX] - 1) & cmask
        if c and zset(R) == want_z:
            if t > cs.xmax:
                raise CPUFault(GP, 0)
            R[EIP] = t
        else:
            R[EIP] = n
        R[ECX] = (R[ECX] & keep) | c
    return g


def jcxz(cpu, insn):
    R = cpu.R
    t = _target(insn)
    n = insn.next_eip
    cs = cpu.segs[CS]
    cmask = 0xFFFFFFFF if insn.adsize == 32 else 0xFFFF

    def f():
        if R[ECX] & cmask == 0:
            if t > cs.xmax:
                raise CPUFault(GP, 0)
            R[EIP] = t
        else:
            R[EIP] = n
    return f


def bound(cpu, insn):
    """BOUND r, m16&16 / m32&32: signed bounds; #BR when out of range
    (mod = 3 is #UD through the row's "mem" attribute)."""
    R = cpu.R
    size = insn.opsize >> 3
    addr = ea(cpu, insn)
    rd = cpu.mem.RD[size]
    s = insn.seg
    r = insn.reg
    mask = 0xFFFFFFFF if size == 4 else 0xFFFF
    sign = 0x80000000 if size == 4 else 0x8000

    def f():
        a = addr()
        lo = rd(s, a)
        hi = rd(s, a + size)            # one operand: past the limit faults, no wrap
        lo -= (lo & sign) << 1
        hi -= (hi & sign) << 1
        v = R[r] & mask
        v -= (v & sign) << 1
        if v < lo or v > hi:
            raise CPUFault(BR)
    return f
