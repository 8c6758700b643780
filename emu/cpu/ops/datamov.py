"""Data movement: MOV (all forms), MOV to/from segment registers, LxS, MOVZX/MOVSX,
XCHG, LEA, NOP, XLAT, BSWAP, CMOVcc, SETcc, XADD, CMPXCHG, CMPXCHG8B,
CBW/CWDE/CWD/CDQ, LAHF/SAHF and the flag instructions CLC STC CMC CLD STD.

Every closure reads (and may fault) before it writes; memory is written
before registers and flags, so a fault leaves the architectural state as it
was before the instruction.
"""
from ..faults import CPUFault, UD
from ..flags import (CONDS, K_ADD, K_SUB, SZI, MASK, CF, PF, AF, ZF, SF, DF,
                     materialize, set_flags)
from ..operands import (operand_get, operand_set, ea, reg_get, reg_set, rm_get, rm_set,
                        rm_rmw, MASKS)
from ..state import (EAX, ECX, EDX, EBX, EFLAGS, LF_OP, LF_RES, LF_A, LF_B,
                     CS, SS, ES, DS, FS, GS, seg_index)

M32 = 0xFFFFFFFF


def _reg_dest(insn, form):
    """GPR number of a register destination form, else None."""
    k = form[0]
    if k == "G":
        return insn.reg
    if k == "Z":
        return insn.opcode & 7
    if k == "E" and insn.mod == 3:
        return insn.rm
    if form in ("AL", "eAX"):
        return EAX
    return None


# --- MOV ---------------------------------------------------------------------

def mov(cpu, insn):
    R = cpu.R
    size = insn.size
    dform, sform = insn.row.operands[:2]
    mem = cpu.mem
    if dform[0] == "O":        # moffs store: mov [moffs], AL/eAX
        s = insn.seg
        off = insn.imm
        wr = mem.WR[size]
        get = operand_get(cpu, insn, sform, size)
        return lambda: wr(s, off, get())
    if sform[0] == "O":        # moffs load
        s = insn.seg
        off = insn.imm
        rd = mem.RD[size]
        put = operand_set(cpu, insn, dform, size)
        return lambda: put(rd(s, off))
    # register <- register / memory / immediate, 32-bit fast forms
    if size == 4:
        dk = dform[0]
        d = None
        if dk == "G":
            d = insn.reg
        elif dk == "Z":
            d = insn.opcode & 7
        elif dk == "E" and insn.mod == 3:
            d = insn.rm
        if d is not None:
            if sform[0] == "I":
                v = insn.imm & 0xFFFFFFFF

                def f():
                    R[d] = v
                return f
            if sform[0] == "G" or (sform[0] == "E" and insn.mod == 3):
                s = insn.reg if sform[0] == "G" else insn.rm

                def g():
                    R[d] = R[s]
                return g
            addr = ea(cpu, insn)
            rd32 = mem.rd32
            sg = insn.seg

            def h():
                R[d] = rd32(sg, addr())
            return h
        if dk == "E" and sform[0] == "G":
            addr = ea(cpu, insn)
            wr32 = mem.wr32
            sg = insn.seg
            s = insn.reg

            def st():
                wr32(sg, addr(), R[s])
            return st
    get = operand_get(cpu, insn, sform, size)
    put = operand_set(cpu, insn, dform, size)
    return lambda: put(get())


def lea(cpu, insn):
    addr = ea(cpu, insn)
    put = reg_set(cpu, insn.reg, insn.opsize >> 3)
    mask = MASKS[insn.opsize >> 3]
    return lambda: put(addr() & mask)


def nop(cpu, insn):
    return lambda: None


# --- segment registers ----------------------------------------------------------

def mov_from_sreg(cpu, insn):
    """8C: MOV r/m16, Sreg.  Memory: always a 16-bit store.  A 32-bit register
    destination gets the selector zero-extended (P6 and later, SDM MOV)."""
    sreg = insn.reg
    if sreg > GS:
        raise CPUFault(UD)
    R = cpu.R
    si = seg_index(sreg, 0)
    if insn.mod == 3:
        d = insn.rm
        if insn.opsize == 32:
            def f():
                R[d] = R[si]
            return f

        def g():
            R[d] = (R[d] & 0xFFFF0000) | R[si]
        return g
    put = rm_set(cpu, insn, 2)
    return lambda: put(R[si])


def mov_to_sreg(cpu, insn):
    """8E: MOV Sreg, r/m16.  MOV CS is #UD; MOV SS holds off interrupts for
    one instruction."""
    sreg = insn.reg
    if sreg == CS or sreg > GS:
        raise CPUFault(UD)
    get = rm_get(cpu, insn, 2)
    load = cpu.load_sreg
    if sreg == SS:
        def mov_ss():
            load(SS, get())
            cpu.hold_interrupts(always_look=True)
        return mov_ss
    return lambda: load(sreg, get())


_LXS_SREG = {0xC4: ES, 0xC5: DS, 0x0FB2: SS, 0x0FB4: FS, 0x0FB5: GS}


def load_far_ptr(cpu, insn):
    """LES/LDS/LSS/LFS/LGS r, m16:16/m16:32: offset first, selector after it.
    The segment register is loaded (and may fault) before the GPR is written."""
    sreg = _LXS_SREG[insn.opcode]
    size = insn.opsize >> 3
    addr = ea(cpu, insn)
    rd = cpu.mem.RD[size]
    rd16 = cpu.mem.rd16
    s = insn.seg
    put = reg_set(cpu, insn.reg, size)
    load = cpu.load_sreg

    def f():
        a = addr()
        off = rd(s, a)
        sel = rd16(s, a + size)         # one operand: past the limit faults, no wrap
        load(sreg, sel)
        put(off)
    return f


# --- MOVZX / MOVSX ----------------------------------------------------------------

def movx(cpu, insn):
    R = cpu.R
    ssize = 1 if insn.row.operands[1] == "Eb" else 2
    dsize = insn.opsize >> 3
    get = rm_get(cpu, insn, ssize)
    d = insn.reg
    signed = insn.row.mnem == "movsx"
    dmask = MASKS[dsize]
    if not signed:
        if dsize == 4:
            def zx32():
                R[d] = get()
            return zx32
        put = reg_set(cpu, d, dsize)
        return lambda: put(get())
    sign = 0x80 if ssize == 1 else 0x8000
    ext = (dmask ^ (0xFF if ssize == 1 else 0xFFFF))
    if dsize == 4:
        def sx32():
            v = get()
            R[d] = v | ext if v & sign else v
        return sx32
    put = reg_set(cpu, d, dsize)

    def sx16():
        v = get()
        put(v | ext if v & sign else v)
    return sx16


# --- XCHG -------------------------------------------------------------------------

def xchg(cpu, insn):
    R = cpu.R
    size = insn.size
    ops = insn.row.operands
    if ops[0][0] == "Z":                    # 90+r: xchg r, eAX
        r = insn.opcode & 7
        if size == 4:
            def f():
                R[r], R[EAX] = R[EAX], R[r]
            return f

        def f16():
            a = R[EAX]
            b = R[r]
            R[r] = (b & 0xFFFF0000) | (a & 0xFFFF)
            a = R[EAX]
            R[EAX] = (a & 0xFFFF0000) | (b & 0xFFFF)
        return f16
    gget = reg_get(cpu, insn.reg, size)
    gset = reg_set(cpu, insn.reg, size)
    if insn.mod == 3:
        eget = reg_get(cpu, insn.rm, size)
        eset = reg_set(cpu, insn.rm, size)

        def rr():
            a = eget()
            b = gget()
            eset(b)
            gset(a)
        return rr
    get, put = rm_rmw(cpu, insn, size)

    def rm():
        a = get()
        put(gget())
        gset(a)
    return rm


# --- XLAT, BSWAP, CBW/CWD ------------------------------------------------------------

def xlat(cpu, insn):
    R = cpu.R
    rd8 = cpu.mem.rd8
    s = insn.seg
    if insn.adsize == 32:
        def f():
            R[EAX] = (R[EAX] & 0xFFFFFF00) | rd8(s, (R[EBX] + (R[EAX] & 0xFF)) & M32)
        return f

    def f16():
        R[EAX] = (R[EAX] & 0xFFFFFF00) | rd8(s, (R[EBX] + (R[EAX] & 0xFF)) & 0xFFFF)
    return f16


def bswap(cpu, insn):
    R = cpu.R
    r = insn.opcode & 7
    if insn.opsize == 16:
        # Undefined in the SDM; Intel parts, Bochs and Unicorn 2.1.4 all
        # clear the low word and keep the upper one.
        def z():
            R[r] &= 0xFFFF0000
        return z
    fb = int.from_bytes

    def f():
        R[r] = fb(R[r].to_bytes(4, "little"), "big")
    return f


def cbw(cpu, insn):
    R = cpu.R
    if insn.opsize == 32:            # CWDE
        def cwde():
            v = R[EAX] & 0xFFFF
            R[EAX] = v | 0xFFFF0000 if v & 0x8000 else v
        return cwde

    def cbw16():
        v = R[EAX] & 0xFF
        R[EAX] = (R[EAX] & 0xFFFF0000) | (v | 0xFF00 if v & 0x80 else v)
    return cbw16


def cwd(cpu, insn):
    R = cpu.R
    if insn.opsize == 32:            # CDQ
        def cdq():
            R[EDX] = M32 if R[EAX] & 0x80000000 else 0
        return cdq

    def cwd16():
        R[EDX] = (R[EDX] & 0xFFFF0000) | (0xFFFF if R[EAX] & 0x8000 else 0)
    return cwd16


# --- condition-code instructions -------------------------------------------------------

def setcc(cpu, insn):
    R = cpu.R
    cond = CONDS[insn.opcode & 0xF]
    if insn.mod == 3:
        put = reg_set(cpu, insn.rm, 1)
    else:
        put = rm_set(cpu, insn, 1)

    def f():
        put(1 if cond(R) else 0)
    return f


def cmovcc(cpu, insn):
    """CMOVcc r, r/m: a memory source is read (and may fault) whatever the
    condition (SDM, P6); nothing is written when the condition is false."""
    R = cpu.R
    cond = CONDS[insn.opcode & 0xF]
    size = insn.opsize >> 3
    get = rm_get(cpu, insn, size)
    d = insn.reg
    if size == 4:
        def f():
            v = get()
            if cond(R):
                R[d] = v
        return f
    put = reg_set(cpu, d, size)

    def f16():
        v = get()
        if cond(R):
            put(v)
    return f16


# --- XADD / CMPXCHG / CMPXCHG8B ---------------------------------------------------------

def xadd(cpu, insn):
    R = cpu.R
    size = insn.size
    szi = SZI[size]
    mask = MASK[szi]
    op = K_ADD << 2 | szi
    gget = reg_get(cpu, insn.reg, size)
    gset = reg_set(cpu, insn.reg, size)
    if insn.mod == 3:
        get = reg_get(cpu, insn.rm, size)
        put = reg_set(cpu, insn.rm, size)
    else:
        get, put = rm_rmw(cpu, insn, size)

    if insn.mod != 3:
        def fm():
            d = get()
            s = gget()
            r = (d + s) & mask
            put(r)           # memory first (may fault), then the register
            gset(d)
            R[LF_OP] = op
            R[LF_RES] = r
            R[LF_A] = d
            R[LF_B] = s
        return fm

    def fr():
        d = get()
        s = gget()
        r = (d + s) & mask
        gset(d)              # SRC <- DEST, then DEST <- sum (xadd r, r: the sum wins)
        put(r)
        R[LF_OP] = op
        R[LF_RES] = r
        R[LF_A] = d
        R[LF_B] = s
    return fr


def cmpxchg(cpu, insn):
    """CMPXCHG r/m, r: compare the accumulator with DEST (flags as CMP acc, DEST);
    equal: DEST <- SRC; else the accumulator <- DEST and DEST is written back
    with its own value (SDM: the destination always receives a write)."""
    R = cpu.R
    size = insn.size
    szi = SZI[size]
    mask = MASK[szi]
    op = K_SUB << 2 | szi
    gget = reg_get(cpu, insn.reg, size)
    aget = reg_get(cpu, EAX, size)
    aset = reg_set(cpu, EAX, size)
    if insn.mod == 3:
        get = reg_get(cpu, insn.rm, size)
        put = reg_set(cpu, insn.rm, size)
    else:
        get, put = rm_rmw(cpu, insn, size)

    def f():
        d = get()
        a = aget()
        if a == d:
            put(gget())
        else:
            put(d)
            aset(d)
        R[LF_OP] = op
        R[LF_RES] = (a - d) & mask
        R[LF_A] = a
        R[LF_B] = d
    return f


def cmpxchg8b(cpu, insn):
    R = cpu.R
    addr = ea(cpu, insn)
    s = insn.seg
    mem = cpu.mem
    read_bytes = mem.read_bytes
    write_bytes = mem.write_bytes

    def f():
        a = addr()
        raw = read_bytes(s, a, 8)
        lo = int.from_bytes(raw[:4], "little")
        hi = int.from_bytes(raw[4:], "little")
        if lo == R[EAX] and hi == R[EDX]:
            write_bytes(s, a, R[EBX].to_bytes(4, "little") + R[ECX].to_bytes(4, "little"))
            set_flags(R, ZF, ZF)
        else:
            write_bytes(s, a, raw)
            R[EAX] = lo
            R[EDX] = hi
            set_flags(R, 0, ZF)
    return f


# --- LAHF / SAHF and the flag instructions ------------------------------------------------

_SAHF_MASK = SF | ZF | AF | PF | CF


def lahf(cpu, insn):
    R = cpu.R

    def f():
        e = materialize(R)
        R[EAX] = (R[EAX] & 0xFFFF00FF) | (((e & _SAHF_MASK) | 2) << 8)
    return f


def sahf(cpu, insn):
    R = cpu.R

    def f():
        set_flags(R, (R[EAX] >> 8) & 0xFF, _SAHF_MASK)
    return f


def flagop(cpu, insn):
    R = cpu.R
    m = insn.row.mnem
    if m == "cld":
        def cld():
            R[EFLAGS] &= ~DF & M32
        return cld
    if m == "std":
        def std():
            R[EFLAGS] |= DF
        return std
    if m == "clc":
        return lambda: set_flags(R, 0, CF)
    if m == "stc":
        return lambda: set_flags(R, CF, CF)

    def cmc():
        e = materialize(R)
        R[EFLAGS] = e ^ CF
    return cmc


__all__ = ["mov", "lea", "nop", "mov_from_sreg", "mov_to_sreg", "load_far_ptr", "movx",
           "xchg", "xlat", "bswap", "cbw", "cwd", "setcc", "cmovcc", "xadd", "cmpxchg",
           "cmpxchg8b", "lahf", "sahf", "flagop"]
