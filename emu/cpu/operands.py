"""Operand accessors for instruction builders.

Builders call these once, at decode time, and get small closures specialised
to the operand's form (register number, addressing mode, size), so that the
closure that runs the instruction does no decoding work.

  ea(cpu, insn)            -> f() -> effective offset (masked to address size)
  reg_get(cpu, r, size)    -> f() -> value of GPR r (8-bit: AL..BH numbering)
  reg_set(cpu, r, size)    -> f(v)   (v must already be masked to size)
  rm_get(cpu, insn, size)  -> f() -> value of the ModRM r/m operand
  rm_set(cpu, insn, size)  -> f(v)
  rm_rmw(cpu, insn, size)  -> (get, set) sharing one address computation for
                              read-modify-write: get() computes and remembers
                              the address, set(v) writes there.
"""
from .state import EAX

MASKS = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}


def ea(cpu, insn):
    """Effective-address closure for the instruction's memory operand."""
    R = cpu.R
    base, index, scale, disp = insn.base, insn.index, insn.scale, insn.disp
    if insn.adsize == 16:
        if base is None:
            d = disp & 0xFFFF
            return lambda: d
        if index is None:
            return lambda: (R[base] + disp) & 0xFFFF
        return lambda: (R[base] + R[index] + disp) & 0xFFFF
    if base is None and index is None:
        d = disp & 0xFFFFFFFF
        return lambda: d
    if index is None:
        if disp == 0:
            return lambda: R[base]
        return lambda: (R[base] + disp) & 0xFFFFFFFF
    if base is None:
        return lambda: ((R[index] << scale) + disp) & 0xFFFFFFFF
    return lambda: (R[base] + (R[index] << scale) + disp) & 0xFFFFFFFF


def reg_get(cpu, r, size):
    R = cpu.R
    if size == 4:
        return lambda: R[r]
    if size == 2:
        return lambda: R[r] & 0xFFFF
    if r < 4:
        return lambda: R[r] & 0xFF
    r -= 4
    return lambda: (R[r] >> 8) & 0xFF


def reg_set(cpu, r, size):
    R = cpu.R
    if size == 4:
        def set32(v):
            R[r] = v
        return set32
    if size == 2:
        def set16(v):
            R[r] = (R[r] & 0xFFFF0000) | v
        return set16
    if r < 4:
        def set8l(v):
            R[r] = (R[r] & 0xFFFFFF00) | v
        return set8l
    r -= 4

    def set8h(v):
        R[r] = (R[r] & 0xFFFF00FF) | (v << 8)
    return set8h


def rm_get(cpu, insn, size):
    if insn.mod == 3:
        return reg_get(cpu, insn.rm, size)
    addr = ea(cpu, insn)
    rd = cpu.mem.RD[size]
    s = insn.seg
    return lambda: rd(s, addr())


def rm_set(cpu, insn, size):
    if insn.mod == 3:
        return reg_set(cpu, insn.rm, size)
    addr = ea(cpu, insn)
    wr = cpu.mem.WR[size]
    s = insn.seg
    return lambda v: wr(s, addr(), v)


def rm_rmw(cpu, insn, size):
    """Read-modify-write pair: the address is computed once, by get()."""
    if insn.mod == 3:
        return reg_get(cpu, insn.rm, size), reg_set(cpu, insn.rm, size)
    addr = ea(cpu, insn)
    rd = cpu.mem.RD[size]
    wr = cpu.mem.WR[size]
    s = insn.seg
    cell = [0]

    def get():
        a = addr()
        cell[0] = a
        return rd(s, a)

    def put(v):
        wr(s, cell[0], v)
    return get, put


def operand_get(cpu, insn, form, size):
    """Reader for one operand form of the row ('Ev', 'Gb', 'Ib', 'AL', ...)."""
    k = form[0]
    if k in "EM":
        return rm_get(cpu, insn, size)
    if k == "G":
        return reg_get(cpu, insn.reg, size)
    if k == "I":
        v = insn.imm & MASKS[size]
        return lambda: v
    if form in ("AL", "eAX"):
        return reg_get(cpu, EAX, size)
    if k == "Z":
        return reg_get(cpu, insn.opcode & 7, size)
    if form == "CL":
        R = cpu.R
        return lambda: R[1] & 0xFF
    if form == "1":
        return lambda: 1
    raise ValueError("operand_get: unsupported form %r" % form)


def operand_set(cpu, insn, form, size):
    k = form[0]
    if k in "EM":
        return rm_set(cpu, insn, size)
    if k == "G":
        return reg_set(cpu, insn.reg, size)
    if form in ("AL", "eAX"):
        return reg_set(cpu, EAX, size)
    if k == "Z":
        return reg_set(cpu, insn.opcode & 7, size)
    raise ValueError("operand_set: unsupported form %r" % form)


def imm_value(insn, which=0):
    """The decoded immediate (first or second)."""
    return insn.imm if which == 0 else insn.imm2
