"""Integer arithmetic and logic: ADD OR ADC SBB AND SUB XOR CMP TEST, INC DEC,
NOT NEG.  Flags are lazy (flags.py): each closure records the operation in
LF_OP/LF_RES/LF_A/LF_B instead of computing EFLAGS.

Register-destination forms get closures that touch R directly; memory forms
go through operands.rm_rmw so the address is computed once and the store
happens before the flags (a faulting store leaves flags untouched).
"""
from ..flags import (K_ADD, K_ADC1, K_SUB, K_SBB1, K_LOGIC, K_INC, K_DEC, K_NEG, K_RES, SZI,
                     get_cf, MASK)
from ..operands import operand_get, operand_set, rm_rmw, reg_get, reg_set
from ..state import EFLAGS, LF_OP, LF_RES, LF_A, LF_B


def _dest_reg(insn, form):
    """GPR number when the destination operand is a register, else None."""
    k = form[0]
    if k == "G":
        return insn.reg
    if k == "E" and insn.mod == 3:
        return insn.rm
    if form in ("AL", "eAX"):
        return 0
    if k == "Z":
        return insn.opcode & 7
    return None


def _compute(mnem, szi, R):
    """Return f(a, b) -> (result, lazy_op, lf_a, lf_b) for the mnemonic."""
    mask = MASK[szi]
    add, sub, logic = K_ADD << 2 | szi, K_SUB << 2 | szi, K_LOGIC << 2 | szi
    adc1, sbb1 = K_ADC1 << 2 | szi, K_SBB1 << 2 | szi
    if mnem == "add":
        return lambda a, b: ((a + b) & mask, add, a, b)
    if mnem in ("sub", "cmp"):
        return lambda a, b: ((a - b) & mask, sub, a, b)
    if mnem in ("and", "test"):
        return lambda a, b: (a & b, logic, a, b)
    if mnem == "or":
        return lambda a, b: (a | b, logic, a, b)
    if mnem == "xor":
        return lambda a, b: (a ^ b, logic, a, b)
    if mnem == "adc":
        def adc(a, b):
            if get_cf(R):
                return (a + b + 1) & mask, adc1, a, b
            return (a + b) & mask, add, a, b
        return adc
    if mnem == "sbb":
        def sbb(a, b):
            if get_cf(R):
                return (a - b - 1) & mask, sbb1, a, b
            return (a - b) & mask, sub, a, b
        return sbb
    raise ValueError(mnem)


def binop(cpu, insn):
    R = cpu.R
    mnem = insn.row.mnem
    size = insn.size
    szi = SZI[size]
    mask = MASK[szi]
    dform, sform = insn.row.operands[:2]
    src = operand_get(cpu, insn, sform, size)
    writes = mnem not in ("cmp", "test")
    d = _dest_reg(insn, dform)
    if d is not None and size == 4:
        # hot forms: 32-bit register destination
        if sform[0] in "I":
            b = insn.imm & mask
            src = None
        s = insn.reg if (sform[0] == "G") else None
        add = K_ADD << 2 | 2
        sub = K_SUB << 2 | 2
        logic = K_LOGIC << 2 | 2
        if mnem == "add":
            if src is None:
                def f():
                    a = R[d]
                    r = (a + b) & 0xFFFFFFFF
                    R[d] = r
                    R[LF_OP] = add
                    R[LF_RES] = r
                    R[LF_A] = a
                    R[LF_B] = b
            elif s is not None:
                def f():
                    a = R[d]
                    c = R[s]
                    r = (a + c) & 0xFFFFFFFF
                    R[d] = r
                    R[LF_OP] = add
                    R[LF_RES] = r
                    R[LF_A] = a
                    R[LF_B] = c
            else:
                def f():
                    c = src()
                    a = R[d]
                    r = (a + c) & 0xFFFFFFFF
                    R[d] = r
                    R[LF_OP] = add
                    R[LF_RES] = r
                    R[LF_A] = a
                    R[LF_B] = c
            return f
        if mnem in ("sub", "cmp"):
            w = mnem == "sub"
            if src is None:
                def f():
                    a = R[d]
                    r = (a - b) & 0xFFFFFFFF
                    if w:
                        R[d] = r
                    R[LF_OP] = sub
                    R[LF_RES] = r
                    R[LF_A] = a
                    R[LF_B] = b
            else:
                def f():
                    c = src()
                    a = R[d]
                    r = (a - c) & 0xFFFFFFFF
                    if w:
                        R[d] = r
                    R[LF_OP] = sub
                    R[LF_RES] = r
                    R[LF_A] = a
                    R[LF_B] = c
            return f
        if mnem in ("and", "or", "xor", "test"):
            w = mnem != "test"
            if src is None:
                src_v = b
                src = lambda: src_v  # noqa: E731
            if mnem == "xor":
                if s is not None:
                    def f():
                        r = R[d] ^ R[s]
                        R[d] = r
                        R[LF_OP] = logic
                        R[LF_RES] = r
                else:
                    def f():
                        r = R[d] ^ src()
                        R[d] = r
                        R[LF_OP] = logic
                        R[LF_RES] = r
            elif mnem == "or":
                def f():
                    r = R[d] | src()
                    R[d] = r
                    R[LF_OP] = logic
                    R[LF_RES] = r
            else:
                def f():
                    r = R[d] & src()
                    if w:
                        R[d] = r
                    R[LF_OP] = logic
                    R[LF_RES] = r
            return f
        if src is None:
            src_v = b
            src = lambda: src_v  # noqa: E731
        if mnem in ("adc", "sbb"):
            return _adc_sbb32(R, d, src, mnem == "adc")
    calc = _compute(mnem, szi, R)
    if d is not None:
        get = reg_get(cpu, d, size)
        put = reg_set(cpu, d, size)
    elif writes:
        get, put = rm_rmw(cpu, insn, size)
    else:
        get = operand_get(cpu, insn, dform, size)
        put = None
    if writes:
        def f():
            a = get()
            r, op, la, lb = calc(a, src())
            put(r)
            R[LF_OP] = op
            R[LF_RES] = r
            R[LF_A] = la
            R[LF_B] = lb
    else:
        def f():
            a = get()
            r, op, la, lb = calc(a, src())
            R[LF_OP] = op
            R[LF_RES] = r
            R[LF_A] = la
            R[LF_B] = lb
    return f


def _adc_sbb32(R, d, src, is_adc):
    """Hot forms: ADC/SBB with a 32-bit register destination.  The carry-in is
    read from the lazy state inline (the common producers: ADD/SUB/CMP,
    logic, INC/DEC, K_RES) instead of through get_cf."""
    if is_adc:
        plain, plus1 = K_ADD << 2 | 2, K_ADC1 << 2 | 2
    else:
        plain, plus1 = K_SUB << 2 | 2, K_SBB1 << 2 | 2

    def f():
        c = src()
        op = R[LF_OP]
        if not op:
            cf = R[EFLAGS] & 1
        else:
            k = op >> 2
            if k == K_ADD:
                cf = R[LF_RES] < R[LF_A]
            elif k == K_SUB:
                cf = R[LF_A] < R[LF_B]
            elif k == K_LOGIC:
                cf = 0
            elif k == K_INC or k == K_DEC or k == K_RES:
                cf = R[LF_B] & 1
            else:
                cf = get_cf(R)
        a = R[d]
        if is_adc:
            r = (a + c + 1 if cf else a + c) & 0xFFFFFFFF
        else:
            r = (a - c - 1 if cf else a - c) & 0xFFFFFFFF
        R[d] = r
        R[LF_OP] = plus1 if cf else plain
        R[LF_RES] = r
        R[LF_A] = a
        R[LF_B] = c
    return f


def incdec(cpu, insn):
    R = cpu.R
    size = insn.size
    szi = SZI[size]
    mask = MASK[szi]
    form = insn.row.operands[0]
    inc = insn.row.mnem == "inc"
    op = (K_INC if inc else K_DEC) << 2 | szi
    delta = 1 if inc else mask   # adding mask == subtracting 1
    d = _dest_reg(insn, form)
    if d is not None and size == 4:
        logic = K_LOGIC

        def f():
            k = R[LF_OP] >> 2
            cf = 0 if k == logic else (R[LF_B] & 1 if k == K_INC or k == K_DEC else get_cf(R))
            a = R[d]
            r = (a + delta) & 0xFFFFFFFF
            R[d] = r
            R[LF_OP] = op
            R[LF_RES] = r
            R[LF_B] = cf     # INC/DEC keep CF; LF_A is not needed (flags.py)
        return f
    if d is not None:
        get, put = reg_get(cpu, d, size), reg_set(cpu, d, size)
    else:
        get, put = rm_rmw(cpu, insn, size)

    def g():
        cf = get_cf(R)
        a = get()
        r = (a + delta) & mask
        put(r)
        R[LF_OP] = op
        R[LF_RES] = r
        R[LF_B] = cf
    return g


def unop(cpu, insn):
    """NOT (no flags) and NEG (flags as 0 - src)."""
    R = cpu.R
    size = insn.size
    szi = SZI[size]
    mask = MASK[szi]
    if insn.mod == 3:
        get, put = reg_get(cpu, insn.rm, size), reg_set(cpu, insn.rm, size)
    else:
        get, put = rm_rmw(cpu, insn, size)
    if insn.row.mnem == "not":
        def f():
            put(get() ^ mask)
        return f
    op = K_NEG << 2 | szi

    def neg():
        a = get()
        r = (-a) & mask
        put(r)
        R[LF_OP] = op
        R[LF_RES] = r
        R[LF_A] = a
        R[LF_B] = 0
    return neg


__all__ = ["binop", "incdec", "unop", "operand_set"]
