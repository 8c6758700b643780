"""Multiplication and division: MUL, IMUL (one-, two- and three-operand
forms), DIV, IDIV.

Flags (Intel SDM Vol. 2, MUL / IMUL / DIV / IDIV pages):
  MUL, IMUL   CF = OF = "the product does not fit the destination half"
              (MUL: upper half non-zero; IMUL: result is not the sign
              extension of its low half).  SF ZF AF PF are undefined; we
              record K_RES with LF_RES = the low half, so ZF/SF/PF follow
              the low half and AF = 0 -- what Unicorn (QEMU) does too.
  DIV, IDIV   all six flags undefined; we leave EFLAGS unchanged (QEMU
              does the same).  #DE on a zero divisor or a quotient that does
              not fit the destination (IDIV: outside [-2^(n-1), 2^(n-1)-1]);
              nothing is written before the fault.
"""
from ..faults import CPUFault, DE
from ..flags import K_RES, SZI
from ..operands import rm_get, reg_get, reg_set
from ..state import EAX, EDX, LF_OP, LF_RES, LF_B


def muldiv(cpu, insn):
    """F6/F7 /4../7: MUL, IMUL, DIV, IDIV with AL/AX/EAX (and AH/DX/EDX)."""
    R = cpu.R
    mnem = insn.row.mnem
    size = insn.size
    src = rm_get(cpu, insn, size)
    op = K_RES << 2 | SZI[size]
    if mnem == "mul":
        if size == 1:
            def mul8():
                p = (R[EAX] & 0xFF) * src()
                R[EAX] = (R[EAX] & 0xFFFF0000) | p
                R[LF_OP] = op
                R[LF_RES] = p & 0xFF
                R[LF_B] = 3 if p > 0xFF else 0
            return mul8
        if size == 2:
            def mul16():
                p = (R[EAX] & 0xFFFF) * src()
                R[EAX] = (R[EAX] & 0xFFFF0000) | (p & 0xFFFF)
                R[EDX] = (R[EDX] & 0xFFFF0000) | (p >> 16)
                R[LF_OP] = op
                R[LF_RES] = p & 0xFFFF
                R[LF_B] = 3 if p > 0xFFFF else 0
            return mul16

        def mul32():
            p = R[EAX] * src()
            lo = p & 0xFFFFFFFF
            R[EAX] = lo
            R[EDX] = p >> 32
            R[LF_OP] = op
            R[LF_RES] = lo
            R[LF_B] = 3 if p > 0xFFFFFFFF else 0
        return mul32
    if mnem == "imul":
        if size == 1:
            def imul8():
                b = src()
                a = R[EAX] & 0xFF
                p = (a - ((a & 0x80) << 1)) * (b - ((b & 0x80) << 1))
                R[EAX] = (R[EAX] & 0xFFFF0000) | (p & 0xFFFF)
                R[LF_OP] = op
                R[LF_RES] = p & 0xFF
                R[LF_B] = 0 if -0x80 <= p < 0x80 else 3
            return imul8
        if size == 2:
            def imul16():
                b = src()
                a = R[EAX] & 0xFFFF
                p = (a - ((a & 0x8000) << 1)) * (b - ((b & 0x8000) << 1))
                u = p & 0xFFFFFFFF
                R[EAX] = (R[EAX] & 0xFFFF0000) | (u & 0xFFFF)
                R[EDX] = (R[EDX] & 0xFFFF0000) | (u >> 16)
                R[LF_OP] = op
                R[LF_RES] = u & 0xFFFF
                R[LF_B] = 0 if -0x8000 <= p < 0x8000 else 3
            return imul16

        def imul32():
            b = src()
            a = R[EAX]
            p = (a - ((a & 0x80000000) << 1)) * (b - ((b & 0x80000000) << 1))
            u = p & 0xFFFFFFFFFFFFFFFF
            lo = u & 0xFFFFFFFF
            R[EAX] = lo
            R[EDX] = u >> 32
            R[LF_OP] = op
            R[LF_RES] = lo
            R[LF_B] = 0 if -0x80000000 <= p < 0x80000000 else 3
        return imul32
    if mnem == "div":
        if size == 1:
            def div8():
                d = src()
                if not d:
                    raise CPUFault(DE)
                n = R[EAX] & 0xFFFF
                q = n // d
                if q > 0xFF:
                    raise CPUFault(DE)
                R[EAX] = (R[EAX] & 0xFFFF0000) | ((n - q * d) << 8) | q
            return div8
        if size == 2:
            def div16():
                d = src()
                if not d:
                    raise CPUFault(DE)
                n = (R[EDX] & 0xFFFF) << 16 | (R[EAX] & 0xFFFF)
                q = n // d
                if q > 0xFFFF:
                    raise CPUFault(DE)
                R[EAX] = (R[EAX] & 0xFFFF0000) | q
                R[EDX] = (R[EDX] & 0xFFFF0000) | (n - q * d)
            return div16

        def div32():
            d = src()
            if not d:
                raise CPUFault(DE)
            n = R[EDX] << 32 | R[EAX]
            q = n // d
            if q > 0xFFFFFFFF:
                raise CPUFault(DE)
            R[EAX] = q
            R[EDX] = n - q * d
        return div32
    # idiv: quotient truncated towards zero, remainder has the dividend's sign
    bits = 8 * size
    sign = 1 << (bits - 1)
    mask = (1 << bits) - 1
    dsign = 1 << (2 * bits - 1)
    if size == 1:
        def get_n():
            return R[EAX] & 0xFFFF

        def put(q, r):
            R[EAX] = (R[EAX] & 0xFFFF0000) | ((r & 0xFF) << 8) | (q & 0xFF)
    elif size == 2:
        def get_n():
            return (R[EDX] & 0xFFFF) << 16 | (R[EAX] & 0xFFFF)

        def put(q, r):
            R[EAX] = (R[EAX] & 0xFFFF0000) | (q & 0xFFFF)
            R[EDX] = (R[EDX] & 0xFFFF0000) | (r & 0xFFFF)
    else:
        def get_n():
            return R[EDX] << 32 | R[EAX]

        def put(q, r):
            R[EAX] = q & 0xFFFFFFFF
            R[EDX] = r & 0xFFFFFFFF

    def idiv():
        d = src()
        if not d:
            raise CPUFault(DE)
        d -= (d & sign) << 1
        n = get_n()
        n -= (n & dsign) << 1
        q = abs(n) // abs(d)
        if (n < 0) != (d < 0):
            q = -q
        if q < -sign or q >= sign:
            raise CPUFault(DE)
        put(q & mask, (n - q * d) & mask)
    return idiv


def imul2(cpu, insn):
    """0F AF: IMUL Gv, Ev (truncated signed product)."""
    return _imul_to_reg(cpu, insn, insn.size)


def imul3(cpu, insn):
    """69 / 6B: IMUL Gv, Ev, Iz/Ibs."""
    size = insn.size
    mask = 0xFFFF if size == 2 else 0xFFFFFFFF
    imm = insn.imm & mask
    imm -= (imm & (mask ^ (mask >> 1))) << 1
    return _imul_to_reg(cpu, insn, size, imm)


def _imul_to_reg(cpu, insn, size, imm=None):
    R = cpu.R
    d = insn.reg
    op = K_RES << 2 | SZI[size]
    if size == 4:
        if imm is None:
            if insn.mod == 3:
                s = insn.rm

                def imul_rr32():
                    a = R[d]
                    b = R[s]
                    p = (a - ((a & 0x80000000) << 1)) * (b - ((b & 0x80000000) << 1))
                    r = p & 0xFFFFFFFF
                    R[d] = r
                    R[LF_OP] = op
                    R[LF_RES] = r
                    R[LF_B] = 0 if -0x80000000 <= p < 0x80000000 else 3
                return imul_rr32
            src = rm_get(cpu, insn, 4)

            def imul_rm32():
                b = src()
                a = R[d]
                p = (a - ((a & 0x80000000) << 1)) * (b - ((b & 0x80000000) << 1))
                r = p & 0xFFFFFFFF
                R[d] = r
                R[LF_OP] = op
                R[LF_RES] = r
                R[LF_B] = 0 if -0x80000000 <= p < 0x80000000 else 3
            return imul_rm32
        src = rm_get(cpu, insn, 4)

        def imul_imm32():
            b = src()
            p = (b - ((b & 0x80000000) << 1)) * imm
            r = p & 0xFFFFFFFF
            R[d] = r
            R[LF_OP] = op
            R[LF_RES] = r
            R[LF_B] = 0 if -0x80000000 <= p < 0x80000000 else 3
        return imul_imm32
    # 16-bit operand size
    src = rm_get(cpu, insn, 2)
    put = reg_set(cpu, d, 2)
    if imm is None:
        get = reg_get(cpu, d, 2)

        def imul16():
            b = src()
            a = get()
            p = (a - ((a & 0x8000) << 1)) * (b - ((b & 0x8000) << 1))
            r = p & 0xFFFF
            put(r)
            R[LF_OP] = op
            R[LF_RES] = r
            R[LF_B] = 0 if -0x8000 <= p < 0x8000 else 3
        return imul16

    def imul_imm16():
        b = src()
        p = (b - ((b & 0x8000) << 1)) * imm
        r = p & 0xFFFF
        put(r)
        R[LF_OP] = op
        R[LF_RES] = r
        R[LF_B] = 0 if -0x8000 <= p < 0x8000 else 3
    return imul_imm16


__all__ = ["muldiv", "imul2", "imul3"]
