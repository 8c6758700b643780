"""EFLAGS: bit names, lazy arithmetic flags, and condition codes.

Flag-setting instructions do not compute the six arithmetic flags
(CF PF AF ZF SF OF).  They record what happened in the state words
LF_OP/LF_RES/LF_A/LF_B; the flags are materialised into R[EFLAGS] only when
something reads them (PUSHF, LAHF, Jcc on CF/OF, an interrupt, the API).

LF_OP = kind << 2 | size index (0: 8 bits, 1: 16, 2: 32).  ZF, SF and PF
always follow from LF_RES, for every kind; CF, OF and AF follow per kind:

  ADD/ADC1   a + b (+1)       SUB/SBB1   a - b (-1)
  LOGIC      CF=OF=AF=0       INC/DEC    LF_B holds the preserved CF
  NEG        a = source       RES        LF_B bit 0 = CF, bit 1 = OF, bit 2 = AF
"""
from .state import EFLAGS, LF_OP, LF_RES, LF_A, LF_B

CF, PF, AF, ZF, SF, TF, IF, DF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x100, 0x200, 0x400, 0x800
IOPL_MASK, NT, RF, VM, AC, VIF, VIP, ID = 0x3000, 0x4000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000
ARITH = CF | PF | AF | ZF | SF | OF
FIXED1 = 0x2  # bit 1 always reads as 1

K_ADD, K_ADC1, K_SUB, K_SBB1, K_LOGIC, K_INC, K_DEC, K_NEG, K_RES = range(1, 10)
MASK = (0xFF, 0xFFFF, 0xFFFFFFFF)
SIGN = (0x80, 0x8000, 0x80000000)
SZI = {1: 0, 2: 1, 4: 2}

PARITY = bytes(0 if bin(i).count("1") & 1 else PF for i in range(256))


def lazy_op(kind, size):
    return kind << 2 | SZI[size]


def materialize(R):
    """Fold the lazy flags into R[EFLAGS]; return EFLAGS."""
    op = R[LF_OP]
    if not op:
        return R[EFLAGS]
    kind = op >> 2
    szi = op & 3
    res = R[LF_RES]
    a = R[LF_A]
    b = R[LF_B]
    sign = SIGN[szi]
    f = PARITY[res & 0xFF]
    if not res:
        f |= ZF
    if res & sign:
        f |= SF
    if kind == K_ADD or kind == K_ADC1:
        if res < a or (kind == K_ADC1 and res == a):
            f |= CF
        if (a ^ b ^ res) & 0x10:
            f |= AF
        if (a ^ res) & (b ^ res) & sign:
            f |= OF
    elif kind == K_SUB or kind == K_SBB1:
        if a < b or (kind == K_SBB1 and a == b):
            f |= CF
        if (a ^ b ^ res) & 0x10:
            f |= AF
        if (a ^ b) & (a ^ res) & sign:
            f |= OF
    elif kind == K_LOGIC:
        pass
    elif kind == K_INC:
        f |= b & CF
        if res == sign:
            f |= OF
        if not res & 0xF:
            f |= AF
    elif kind == K_DEC:
        f |= b & CF
        if res == sign - 1:
            f |= OF
        if res & 0xF == 0xF:
            f |= AF
    elif kind == K_NEG:
        if a:
            f |= CF
        if res == sign:
            f |= OF
        if (a ^ res) & 0x10:
            f |= AF
    else:  # K_RES
        if b & 1:
            f |= CF
        if b & 2:
            f |= OF
        if b & 4:
            f |= AF
    e = (R[EFLAGS] & ~ARITH) | f
    R[EFLAGS] = e
    R[LF_OP] = 0
    return e


def get_cf(R):
    """CF without materialising everything (used by ADC/SBB/INC/DEC/RCL/RCR)."""
    op = R[LF_OP]
    if not op:
        return R[EFLAGS] & 1
    kind = op >> 2
    if kind == K_ADD:
        return 1 if R[LF_RES] < R[LF_A] else 0
    if kind == K_SUB:
        return 1 if R[LF_A] < R[LF_B] else 0
    if kind == K_LOGIC:
        return 0
    if kind == K_INC or kind == K_DEC or kind == K_RES:
        return R[LF_B] & 1
    if kind == K_NEG:
        return 1 if R[LF_A] else 0
    return materialize(R) & 1


def set_flags(R, value, mask):
    """Set the bits of EFLAGS selected by mask to value (after materialising)."""
    e = materialize(R)
    R[EFLAGS] = (e & ~mask) | (value & mask) | FIXED1


# --- condition codes (Jcc/SETcc/CMOVcc low nibble) ----------------------------

def _cond_generic(cc):
    def test(R):
        e = materialize(R)
        if cc == 0:
            r = e & OF
        elif cc == 2:
            r = e & CF
        elif cc == 4:
            r = e & ZF
        elif cc == 6:
            r = e & (CF | ZF)
        elif cc == 8:
            r = e & SF
        elif cc == 10:
            r = e & PF
        elif cc == 12:
            r = (e & SF == SF) != (e & OF == OF)
        else:  # 14
            r = (e & ZF) or ((e & SF == SF) != (e & OF == OF))
        return bool(r)
    return test


def make_cond(cc):
    """Return a function R -> bool for condition code cc (0..15).

    ZF and SF come straight from LF_RES; a compare (SUB kind) answers every
    condition from its operands without materialising.
    """
    base = cc & 0xE
    neg = cc & 1
    generic = _cond_generic(base)

    if base == 4:   # Z / NZ
        if neg:
            def nz(R):
                if R[LF_OP]:
                    return R[LF_RES] != 0
                return not R[EFLAGS] & ZF
            return nz

        def z(R):
            if R[LF_OP]:
                return R[LF_RES] == 0
            return bool(R[EFLAGS] & ZF)
        return z
    if base == 8:   # S / NS
        def s(R):
            op = R[LF_OP]
            if op:
                return bool(R[LF_RES] & SIGN[op & 3])
            return bool(R[EFLAGS] & SF)
        if neg:
            return lambda R: not s(R)
        return s

    def cond(R):
        op = R[LF_OP]
        if op >> 2 == K_SUB:
            a = R[LF_A]
            b = R[LF_B]
            if base == 2:
                r = a < b
            elif base == 6:
                r = a <= b
            else:
                sign = SIGN[op & 3]
                if base == 12 or base == 14:
                    sa = a - ((a & sign) << 1)
                    sb = b - ((b & sign) << 1)
                    r = sa < sb if base == 12 else sa <= sb
                else:
                    r = generic(R)
        else:
            r = generic(R)
        return r != bool(neg)
    return cond


CONDS = tuple(make_cond(cc) for cc in range(16))
COND_NAMES = ("o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g")
