"""The x87 floating-point unit, operating only on the shared state views.

``FPU(R, F)`` keeps no architectural state of its own: the control, status and
tag words, TOP and the last-instruction/operand pointers are words of ``R``
(``FPU_CW`` ... ``FPU_OP``); the eight data registers are the IEEE doubles of
``F``, indexed by *physical* register number (``ST(i)`` is
``F[(TOP + i) & 7]``).  Memory operands go in and out as ``bytes``: the opcode
layer reads memory, calls e.g. ``fpu.fld_m64(data)``, or calls
``data = fpu.fst_m64(pop=True)`` and writes ``data`` when it is not ``None``
(``None`` means an unmasked exception suppressed the store; the stack was not
popped either).

State conventions
-----------------
* TOP: ``R[FPU_TOP]`` is the source of truth.  Bits 11-13 of ``R[FPU_SW]``
  are a mirror that every writer in this module keeps equal to it; code
  outside must change TOP or the status word only through ``set_top`` /
  ``set_sw`` (or ``fldenv``/``frstor``...), which update both.
* Tag word: ``R[FPU_TW]`` holds the full 16-bit tag word (two bits per
  *physical* register: 00 valid, 01 zero, 10 special, 11 empty).  Non-empty
  tags are always recomputed from the register's value when it is written,
  so only the empty/non-empty distinction is state; FLDENV/FRSTOR/FXRSTOR
  keep only that distinction from the image, as the hardware does.  (The only
  derived detail: a value that would be an *extended* denormal or an
  unsupported encoding cannot exist here, so tag 10 means NaN or infinity.)
* ES and B (status bits 7 and 15) are set together whenever an exception
  flag is set whose mask bit is clear; FLDCW/FLDENV/FRSTOR/FXRSTOR recompute
  them from the new flags and masks.
* Pointers: the opcode layer records the last non-control instruction with
  ``set_pointers(ip, cs, opcode, dp, ds)``: EIP offset and CS selector,
  11-bit opcode, operand offset and segment selector.  The real-mode
  environment layouts store 20/32-bit linear addresses computed as
  ``(selector << 4) + offset``; FLDENV/FRSTOR in real mode store them back
  as selector 0 and offset = the linear address (so a later real-mode
  FNSTENV reproduces the image).

Where a double differs from the 80-bit hardware
-----------------------------------------------
Internal precision is IEEE double (53-bit significand, exponent range
2**-1074 .. 2**1024).  Consequences, all deliberate:

* Precision control: PC = 64 bits (the FNINIT default) and the reserved
  PC = 01 behave as PC = 53 bits.  PC = 24 bits is honoured (results of
  FADD/FSUB/FMUL/FDIV/FSQRT are rounded to 24 bits, with the double's
  exponent range).  Results that need 54-64 bits are rounded once to 53 bits,
  so results differ from hardware that rounds to 64 and later to 53 on
  ``FST m64`` (double rounding) in rare last-bit cases, and PE/C1 are
  reported against 53-bit rounding (more often than hardware does).
* Exponent range: overflow and underflow are detected against the *double*
  range (as if every register were an m64): 1e300*1e300 gives infinity + OE
  and 1e-300*1e-300 gives 0 + UE + PE, where hardware keeps 1e600/1e-600 in
  the register and only signals on a later ``FST m64``.  Unmasked OE/UE with
  a register destination store the masked (unbiased) result: the 2**24576
  exponent bias cannot be represented.  Because stores to m64 are exact,
  ``FST m64`` never signals OE/UE/PE itself.
* Denormals: a double subnormal is a *normal* extended value, so it is
  tagged valid, FXAM reports it as normal and arithmetic on it raises no DE
  (as on hardware).  DE is raised only by m32/m64 denormal *memory*
  operands.  Extended denormals (from m80 loads) become double subnormals
  or zero, rounded per RC.
* FLD m80 rounds the 64-bit significand to 53 bits per RC and saturates the
  exponent (values beyond the double range become infinity/zero per RC);
  hardware loads exactly.  No flag is raised (FLD m80 never raises on
  hardware).  NaN payloads keep their top 51 fraction bits (an SNaN whose
  payload lived only in the low 11 bits keeps the lowest double bit set so it
  stays a NaN).  Unsupported encodings (pseudo-NaN, pseudo-infinity,
  unnormal) load as the QNaN indefinite, so later arithmetic gives the
  indefinite without IE; pseudo-denormals load as their value.
* FST m80 encodes the double exactly (a double subnormal becomes a normal
  extended number), so FLD m64 / FSTP m80 / FLD m80 round-trips exactly.
* FILD m64 and FBLD of integers with magnitude > 2**53 round to 53 bits per
  RC (hardware is exact), without PE.  FISTP m64 / FBSTP then store the
  double's exact integer value: FBLD of 999999999999999999 (10**18 - 1)
  gives 10**18, which FBSTP finds out of range (IE + BCD indefinite).
* Transcendentals (F2XM1, FYL2X, FYL2XP1, FPTAN, FPATAN, FSIN, FCOS,
  FSINCOS) use Python's ``math`` (correctly-reduced arguments, unlike the
  hardware's 66-bit pi) and report PE whenever the result is not trivially
  exact; C1 (round-up) is always 0 for them.  FPREM/FPREM1/FSCALE/FXTRACT/
  FRNDINT are exact.  FPREM/FPREM1 reduce by N = 32 + (D mod 32) bits per
  partial step (the AMD description; Intel leaves N to the implementation).
* FLDCW keeps bit 12 and forces bit 6 to 1, clearing bits 7, 13-15 (as
  hardware).  Reserved high halves of the 32-bit environment layout are
  stored as 0.
* The NaN rules follow SDM Table 4-7 for x87 (the larger significand wins;
  on a tie the positive one); significands compare on the double's 52
  fraction bits.
"""
import math
import struct
from decimal import Decimal, localcontext
from fractions import Fraction

from .faults import CPUFault, GP, MF

VEC_MF = MF     # 16
from .state import (FPU_CW, FPU_SW, FPU_TW, FPU_TOP, FPU_IP, FPU_CS, FPU_DP, FPU_DS,
                    FPU_OP, MXCSR, CR0)

# --- status word ---------------------------------------------------------------
IE, DE, ZE, OE, UE, PE, SF, ES = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80
C0, C1, C2, C3, B = 0x100, 0x200, 0x400, 0x4000, 0x8000
CC_MASK = C0 | C1 | C2 | C3
EXC_MASK = 0x3F
TOP_SHIFT, TOP_MASK = 11, 0x3800
# --- control word --------------------------------------------------------------
RC_NEAREST, RC_DOWN, RC_UP, RC_CHOP = 0, 1, 2, 3
CW_DEFAULT = 0x037F
CW_RESERVED = 0xE0C0          # bits 6, 7, 13-15; bit 6 reads as 1
# --- tags ----------------------------------------------------------------------
TAG_VALID, TAG_ZERO, TAG_SPECIAL, TAG_EMPTY = 0, 1, 2, 3

CR0_NE = 0x20
MXCSR_MASK = 0x0000FFFF

# Internal pseudo-flag: the rounded result was tiny (UE reporting depends on UM).
_TINY = 0x10000
_PRE = IE | DE | ZE           # pre-computation exceptions: unmasked -> no result

# --- arithmetic operation codes (the /reg field of D8 / DC m64 / DA / DE m16) ---
ADD, MUL, COM, COMP, SUB, SUBR, DIV, DIVR = range(8)

_pack_d = struct.Struct("<d").pack
_unpack_d = struct.Struct("<d").unpack
_pack_Q = struct.Struct("<Q").pack
_unpack_Q = struct.Struct("<Q").unpack
_pack_f = struct.Struct("<f").pack
_unpack_f = struct.Struct("<f").unpack

INF = math.inf
FRAC_MASK = (1 << 52) - 1
QUIET_BIT = 1 << 51


def bits_of(x):
    """The 64-bit IEEE encoding of a Python float."""
    return _unpack_Q(_pack_d(x))[0]


def from_bits(b):
    """The Python float with 64-bit IEEE encoding ``b`` (NaN payloads kept)."""
    return _unpack_d(_pack_Q(b & 0xFFFFFFFFFFFFFFFF))[0]


INDEFINITE = from_bits(0xFFF8000000000000)        # the default QNaN
M32_INDEFINITE = b"\x00\x00\xc0\xff"
M64_INDEFINITE = b"\x00\x00\x00\x00\x00\x00\xf8\xff"
M80_INDEFINITE = b"\x00" * 7 + b"\xc0\xff\xff"
BCD_INDEFINITE = b"\x00" * 7 + b"\xc0\xff\xff"


def _signbit(x):
    return bits_of(x) >> 63


def _is_snan(x):
    return x != x and not bits_of(x) & QUIET_BIT


def _quiet(x):
    return from_bits(bits_of(x) | QUIET_BIT)


def _tag_of(v):
    if v == 0.0:
        return TAG_ZERO
    if v != v or v == INF or v == -INF:
        return TAG_SPECIAL
    return TAG_VALID


# =============================================================================
# Exact rounding
# =============================================================================
# A format: (precision, emin = exponent of the smallest normal,
#            qmin = exponent of the smallest subnormal's quantum,
#            emax: values >= 2**emax overflow)
DOUBLE = (53, -1022, -1074, 1024)
SINGLE = (24, -126, -149, 128)
PC24 = (24, -1022, -1074, 1024)    # precision control 24 bits, double range


def _decomp(x):
    """Finite x == n * 2**e with integer n (signed); returns (n, e)."""
    n, d = x.as_integer_ratio()
    return n, 1 - d.bit_length()


def _rnd(neg, m, e, sticky, rc, q):
    """Round (m + s) * 2**e (0 <= s < 1, s > 0 iff sticky) to a multiple of
    2**q.  Returns (k, inexact, incremented) with the result k * 2**q."""
    shift = q - e
    if shift <= 0:
        return m << -shift, sticky, False
    kept = m >> shift
    rem = m & ((1 << shift) - 1)
    if not rem and not sticky:
        return kept, False, False
    if rc == RC_NEAREST:
        half = 1 << (shift - 1)
        inc = rem > half or (rem == half and (sticky or kept & 1))
    elif rc == RC_CHOP:
        inc = False
    elif rc == RC_UP:
        inc = not neg
    else:
        inc = neg
    return kept + inc, True, inc


def _overflow_value(neg, rc, prec, emax):
    """(value, rounded_up) for a masked overflow, per rounding control."""
    big = (rc == RC_NEAREST or (rc == RC_UP and not neg) or (rc == RC_DOWN and neg))
    v = INF if big else math.ldexp((1 << prec) - 1, emax - prec)
    return (-v if neg else v), big


def round_int(neg, m, e, sticky, rc, fmt=DOUBLE):
    """Round the exact value (-1)**neg * (m + s) * 2**e (m > 0, 0 <= s < 1,
    s > 0 iff sticky; callers with sticky give m at least prec+2 bits) to the
    format.  Returns (float, flags, up): flags is a subset of PE|OE|_TINY
    (tininess after rounding with unbounded exponent, SDM 4.9.1.5), up says
    the magnitude was increased."""
    prec, emin, qmin, emax = fmt
    E = m.bit_length() - 1 + e
    q = E - prec + 1
    tiny = False
    if E < emin:
        tiny = True
        if E == emin - 1:
            k, _, _ = _rnd(neg, m, e, sticky, rc, q)
            if k.bit_length() - 1 + q >= emin:
                tiny = False
        if q < qmin:
            q = qmin
    kept, inexact, inc = _rnd(neg, m, e, sticky, rc, q)
    if kept.bit_length() > prec:
        kept >>= 1
        q += 1
    if kept and kept.bit_length() + q > emax:
        v, up = _overflow_value(neg, rc, prec, emax)
        return v, PE | OE, up
    flags = (PE if inexact else 0) | (_TINY if tiny else 0)
    v = math.ldexp(kept, q)
    return (-v if neg else v), flags, inc


def round_fraction(fr, rc, fmt=DOUBLE):
    """round_int for an exact rational (not zero)."""
    neg = fr < 0
    p, q = abs(fr.numerator), fr.denominator
    k = max(0, fmt[0] + 3 + q.bit_length() - p.bit_length())
    m, r = divmod(p << k, q)
    return round_int(neg, m, -k, r != 0, rc, fmt)


def round_to_integer(x, rc):
    """Finite x rounded to an integer per rc: (int, inexact, up)."""
    n, e = _decomp(x)
    if e >= 0:
        return n << e, False, False
    neg = n < 0
    k, inexact, inc = _rnd(neg, -n if neg else n, e, False, rc, 0)
    return (-k if neg else k), inexact, inc


# =============================================================================
# Arithmetic cores (finite operands; NaN/inf handled by callers)
# =============================================================================
def _add(a, b, rc, fmt):
    if rc == RC_NEAREST and fmt is DOUBLE:
        r = a + b
        if r == 0.0:
            if a == 0.0 and b == 0.0:      # +0 + -0 = +0, -0 + -0 = -0
                return r, 0, False
            return 0.0, 0, False
        if 2.2250738585072014e-308 <= abs(r) < INF:
            bb = r - a
            err = (a - (r - bb)) + (b - bb)       # TwoSum: exact error
            if err == 0.0:
                return r, 0, False
            return r, PE, (err < 0.0) == (r > 0.0)
    if a == 0.0 and b == 0.0:
        if _signbit(a) == _signbit(b):
            return a, 0, False
        return (-0.0 if rc == RC_DOWN else 0.0), 0, False
    na, ea = _decomp(a)
    nb, eb = _decomp(b)
    e = ea if ea < eb else eb
    s = (na << (ea - e)) + (nb << (eb - e))
    if s == 0:
        return (-0.0 if rc == RC_DOWN else 0.0), 0, False
    return round_int(s < 0, abs(s), e, False, rc, fmt)


def _mul(a, b, rc, fmt):
    if a == 0.0 or b == 0.0:
        return (-0.0 if _signbit(a) ^ _signbit(b) else 0.0), 0, False
    na, ea = _decomp(a)
    nb, eb = _decomp(b)
    p = na * nb
    return round_int(p < 0, abs(p), ea + eb, False, rc, fmt)


def _div(a, b, rc, fmt):
    """b != 0, a may be 0."""
    if a == 0.0:
        return (-0.0 if _signbit(a) ^ _signbit(b) else 0.0), 0, False
    na, ea = _decomp(a)
    nb, eb = _decomp(b)
    neg = (na < 0) != (nb < 0)
    na, nb = abs(na), abs(nb)
    k = fmt[0] + 3 + nb.bit_length() - na.bit_length()
    if k < 0:
        k = 0
    q, r = divmod(na << k, nb)
    return round_int(neg, q, ea - eb - k, r != 0, rc, fmt)


def _sqrt(a, rc, fmt):
    """a > 0 finite."""
    n, e = _decomp(a)
    k = 2 * fmt[0] + 6 - n.bit_length()
    if k < 0:
        k = 0
    if (e - k) & 1:
        k += 1
    N = n << k
    s = math.isqrt(N)
    return round_int(False, s, (e - k) // 2, s * s != N, rc, fmt)


def nan_result(a, b):
    """x87 QNaN propagation for two operands, at least one a NaN (SDM Table
    4-7): (quiet result, IE if any operand is an SNaN)."""
    flags = IE if (_is_snan(a) or _is_snan(b)) else 0
    if a != a and b != b:
        fa = bits_of(a) & FRAC_MASK
        fb = bits_of(b) & FRAC_MASK
        if fa > fb:
            r = a
        elif fb > fa:
            r = b
        else:
            r = b if _signbit(a) else a
    else:
        r = a if a != a else b
    return _quiet(r), flags


def _nan1(x):
    return (_quiet(x), IE if _is_snan(x) else 0, False)


def binop(op, a, b, rc, fmt):
    """dst op src for op in ADD MUL SUB SUBR DIV DIVR (a = dst, b = src):
    (value, flags, up).  Pure function of its arguments."""
    if a != a or b != b:
        v, f = nan_result(a, b)
        return v, f, False
    if op == SUBR:
        a, b, op = b, a, SUB
    elif op == DIVR:
        a, b, op = b, a, DIV
    if op == SUB:
        b = -b
        op = ADD
    if op == ADD:
        ai = a == INF or a == -INF
        bi = b == INF or b == -INF
        if ai or bi:
            if ai and bi and a != b:
                return INDEFINITE, IE, False
            return (a if ai else b), 0, False
        return _add(a, b, rc, fmt)
    if op == MUL:
        ai = a == INF or a == -INF
        bi = b == INF or b == -INF
        if ai or bi:
            if a == 0.0 or b == 0.0:
                return INDEFINITE, IE, False
            return (-INF if _signbit(a) ^ _signbit(b) else INF), 0, False
        return _mul(a, b, rc, fmt)
    # DIV
    ai = a == INF or a == -INF
    bi = b == INF or b == -INF
    neg = _signbit(a) ^ _signbit(b)
    if ai or bi:
        if ai and bi:
            return INDEFINITE, IE, False
        if ai:
            return (-INF if neg else INF), 0, False
        return (-0.0 if neg else 0.0), 0, False
    if b == 0.0:
        if a == 0.0:
            return INDEFINITE, IE, False
        return (-INF if neg else INF), ZE, False
    return _div(a, b, rc, fmt)


# =============================================================================
# Memory formats
# =============================================================================
def dec_m32(data):
    """m32real bytes -> (float, DE if denormal).  SNaNs stay signalling."""
    b = int.from_bytes(data[:4], "little")
    ex = (b >> 23) & 0xFF
    fr = b & 0x7FFFFF
    if ex == 0xFF and fr:
        return from_bits(((b >> 31) << 63) | (0x7FF << 52) | (fr << 29)), 0
    return _unpack_f(bytes(data[:4]))[0], (DE if ex == 0 and fr else 0)


def dec_m64(data):
    """m64real bytes -> (float, DE if denormal)."""
    b = int.from_bytes(data[:8], "little")
    return from_bits(b), (DE if (b >> 52) & 0x7FF == 0 and b & FRAC_MASK else 0)


def enc_m32(v, rc):
    """float -> (m32real bytes, flags incl. _TINY, up)."""
    if v != v:
        b = bits_of(v)
        flags = 0 if b & QUIET_BIT else IE
        out = ((b >> 63) << 31) | (0xFF << 23) | 0x400000 | ((b >> 29) & 0x7FFFFF)
        return out.to_bytes(4, "little"), flags, False
    if v == 0.0 or v == INF or v == -INF:
        return _pack_f(v), 0, False
    n, e = _decomp(v)
    r, flags, up = round_int(n < 0, abs(n), e, False, rc, SINGLE)
    return _pack_f(r), flags, up


def enc_m64(v):
    """float -> (m64real bytes, IE if an SNaN was quieted)."""
    if _is_snan(v):
        return _pack_d(_quiet(v)), IE
    return _pack_d(v), 0


def enc_m80(v):
    """float -> exact m80real bytes."""
    b = bits_of(v)
    sign = (b >> 63) << 79
    if v != v:
        return (sign | (0x7FFF << 64) | (1 << 63) | ((b & FRAC_MASK) << 11)).to_bytes(10, "little")
    if v == INF or v == -INF:
        return (sign | (0x7FFF << 64) | (1 << 63)).to_bytes(10, "little")
    if v == 0.0:
        return sign.to_bytes(10, "little")
    m, e = math.frexp(abs(v))          # v = m * 2**e, 0.5 <= m < 1
    sig = int(m * 18446744073709551616.0)   # m * 2**64, exact
    return (sign | ((e - 1 + 16383) << 64) | sig).to_bytes(10, "little")


def dec_m80(data, rc=RC_NEAREST):
    """m80real bytes -> float, rounded per rc to double (see module doc)."""
    x = int.from_bytes(data[:10], "little")
    neg = bool(x >> 79)
    ex = (x >> 64) & 0x7FFF
    sig = x & 0xFFFFFFFFFFFFFFFF
    if ex == 0x7FFF:
        if not sig >> 63:
            return INDEFINITE                      # pseudo-infinity / pseudo-NaN
        frac = sig & 0x7FFFFFFFFFFFFFFF
        if not frac:
            return -INF if neg else INF
        df = frac >> 11
        if not df:
            df = 1
        return from_bits((int(neg) << 63) | (0x7FF << 52) | df)
    if ex == 0:
        if not sig:
            return -0.0 if neg else 0.0
        ex = 1                                     # denormal / pseudo-denormal
    elif not sig >> 63:
        return INDEFINITE                          # unnormal
    return round_int(neg, sig, ex - 16383 - 63, False, rc, DOUBLE)[0]


def dec_int(data, size, rc=RC_NEAREST):
    """m16int/m32int/m64int bytes -> float (m64 beyond 2**53 rounded per rc)."""
    n = int.from_bytes(data[:size], "little", signed=True)
    if -(1 << 53) <= n <= (1 << 53):
        return float(n)
    return round_int(n < 0, abs(n), 0, False, rc, DOUBLE)[0]


def enc_int(v, size, rc):
    """float -> (m16/32/64int bytes, flags, up): NaN/inf/out of range give the
    integer indefinite and IE."""
    lim = 1 << (8 * size - 1)
    if v != v or v == INF or v == -INF:
        return lim.to_bytes(size, "little"), IE, False
    n, inexact, up = round_to_integer(v, rc)
    if not -lim <= n < lim:
        return lim.to_bytes(size, "little"), IE, False
    return n.to_bytes(size, "little", signed=True), (PE if inexact else 0), up


def dec_bcd(data, rc=RC_NEAREST):
    """m80bcd -> float (18 digits; > 2**53 rounded per rc).  Invalid digits
    are taken at face value (hardware: undefined)."""
    n = 0
    for i in range(8, -1, -1):
        byte = data[i]
        n = n * 100 + (byte >> 4) * 10 + (byte & 0xF)
    neg = bool(data[9] & 0x80)
    if n == 0:
        return -0.0 if neg else 0.0
    if n <= (1 << 53):
        v = float(n)
    else:
        v = round_int(False, n, 0, False, rc, DOUBLE)[0]
    return -v if neg else v


def enc_bcd(neg, n):
    """Magnitude n < 10**18 and sign -> m80bcd bytes."""
    out = bytearray(10)
    for i in range(9):
        n, lo = divmod(n, 10)
        n, hi = divmod(n, 10)
        out[i] = (hi << 4) | lo
    out[9] = 0x80 if neg else 0
    return bytes(out)


# =============================================================================
# Constants (FLD1, FLDL2T, FLDL2E, FLDPI, FLDLG2, FLDLN2, FLDZ), rounded per RC
# =============================================================================
def _const_table():
    with localcontext() as ctx:
        ctx.prec = 70
        # pi by Machin's formula
        def atan_inv(x):
            x = Decimal(x)
            total = term = 1 / x
            x2 = x * x
            k = 1
            while True:
                term /= -x2
                t = term / (2 * k + 1)
                if abs(t) < Decimal(10) ** -68:
                    break
                total += t
                k += 1
            return total
        pi = 16 * atan_inv(5) - 4 * atan_inv(239)
        ln2 = Decimal(2).ln()
        ln10 = Decimal(10).ln()
        vals = [Decimal(1), ln10 / ln2, 1 / ln2, pi, ln2 / ln10, ln2]
    table = []
    for d in vals:
        fr = Fraction(d)
        table.append(tuple(round_fraction(fr, rc)[0] for rc in range(4)))
    table.append((0.0, 0.0, 0.0, 0.0))
    return tuple(table)


CONSTANTS = _const_table()
CONST_NAMES = ("fld1", "fldl2t", "fldl2e", "fldpi", "fldlg2", "fldln2", "fldz")

_LN2 = math.log(2.0)
_TWO63 = 9223372036854775808.0
_MIN_NORMAL = 2.2250738585072014e-308


def _approx(v, exact=False):
    """Result of a best-effort (math library) computation: (v, flags, up)."""
    flags = 0 if exact else PE
    if v != 0.0 and abs(v) < _MIN_NORMAL:
        flags |= _TINY
    return v, flags, False


# =============================================================================
# The unit
# =============================================================================
class FPU:
    """x87 unit over the state views R (words) and F (8 doubles)."""

    def __init__(self, R, F, on_ferr=None):
        self.R = R
        self.F = F
        self.on_ferr = on_ferr      # FERR# -> IRQ13 path when CR0.NE = 0

    # ---------------------------------------------------------------- TOP / SW
    @property
    def top(self):
        return self.R[FPU_TOP] & 7

    def set_top(self, t):
        t &= 7
        R = self.R
        R[FPU_TOP] = t
        R[FPU_SW] = (R[FPU_SW] & ~TOP_MASK & 0xFFFF) | (t << TOP_SHIFT)

    def set_sw(self, sw):
        R = self.R
        R[FPU_SW] = sw & 0xFFFF
        R[FPU_TOP] = (sw >> TOP_SHIFT) & 7

    def _cc(self, bits, mask=CC_MASK):
        R = self.R
        R[FPU_SW] = (R[FPU_SW] & ~mask & 0xFFFF) | bits

    def _c1(self, on):
        R = self.R
        if on:
            R[FPU_SW] |= C1
        else:
            R[FPU_SW] &= ~C1 & 0xFFFF

    def _rc(self):
        return (self.R[FPU_CW] >> 10) & 3

    def _rc_fmt(self):
        cw = self.R[FPU_CW]
        return (cw >> 10) & 3, (PC24 if not cw & 0x300 else DOUBLE)

    def _update_es(self):
        R = self.R
        sw = R[FPU_SW]
        if sw & ~R[FPU_CW] & EXC_MASK:
            R[FPU_SW] = sw | ES | B
        else:
            R[FPU_SW] = sw & ~(ES | B) & 0xFFFF

    # ---------------------------------------------------------------- tags
    def tag(self, phys):
        return (self.R[FPU_TW] >> (2 * phys)) & 3

    def _set_tag(self, phys, t):
        R = self.R
        s = 2 * phys
        R[FPU_TW] = (R[FPU_TW] & ~(3 << s) & 0xFFFF) | (t << s)

    def _write(self, phys, v):
        self.F[phys] = v
        self._set_tag(phys, _tag_of(v))

    def tag_word(self):
        """The full tag word, non-empty tags computed from the values."""
        tw = 0
        R = self.R
        F = self.F
        cur = R[FPU_TW]
        for p in range(8):
            t = TAG_EMPTY if (cur >> (2 * p)) & 3 == TAG_EMPTY else _tag_of(F[p])
            tw |= t << (2 * p)
        return tw

    def set_tag_word(self, tw):
        """Load a tag word: only empty / non-empty is taken from it."""
        F = self.F
        out = 0
        for p in range(8):
            t = TAG_EMPTY if (tw >> (2 * p)) & 3 == TAG_EMPTY else _tag_of(F[p])
            out |= t << (2 * p)
        self.R[FPU_TW] = out

    def abridged_tag(self):
        """FXSAVE's 8-bit tag: bit p set iff physical register p is non-empty."""
        tw = self.R[FPU_TW]
        return sum(1 << p for p in range(8) if (tw >> (2 * p)) & 3 != TAG_EMPTY)

    def set_abridged_tag(self, t8):
        F = self.F
        out = 0
        for p in range(8):
            out |= (_tag_of(F[p]) if (t8 >> p) & 1 else TAG_EMPTY) << (2 * p)
        self.R[FPU_TW] = out

    # ---------------------------------------------------------------- stack
    def phys(self, i):
        return (self.R[FPU_TOP] + i) & 7

    def st(self, i=0):
        return self.F[(self.R[FPU_TOP] + i) & 7]

    def set_st(self, i, v):
        self._write((self.R[FPU_TOP] + i) & 7, v)

    def is_empty(self, i=0):
        return self.tag((self.R[FPU_TOP] + i) & 7) == TAG_EMPTY

    def pop(self):
        R = self.R
        t = R[FPU_TOP] & 7
        self._set_tag(t, TAG_EMPTY)
        self.set_top(t + 1)

    def push(self, v):
        """Push without exception checks (callers check overflow)."""
        t = (self.R[FPU_TOP] - 1) & 7
        self.set_top(t)
        self._write(t, v)

    # ---------------------------------------------------------------- exceptions
    def _signal(self, flags):
        """OR flags into SW; True if any of them is unmasked (then ES/B set)."""
        R = self.R
        sw = R[FPU_SW] | flags
        if flags & ~R[FPU_CW] & EXC_MASK:
            R[FPU_SW] = sw | ES | B
            return True
        R[FPU_SW] = sw
        return False

    def _post(self, flags):
        """Resolve _TINY into UE per the UM mask and the precision flag."""
        if flags & _TINY:
            flags &= ~_TINY
            if flags & PE or not self.R[FPU_CW] & UE:
                flags |= UE
        if flags & IE:
            flags &= ~DE
        return flags

    def _fault(self, flags):
        """Signal flags; True if the operation must be suppressed (an unmasked
        IE, DE or ZE)."""
        return self._signal(flags) and bool(flags & ~self.R[FPU_CW] & _PRE)

    def _stack_underflow(self):
        """IE+SF, C1=0.  True if unmasked (operation suppressed)."""
        self._c1(False)
        return self._signal(IE | SF)

    def _stack_overflow(self):
        self._c1(True)
        return self._signal(IE | SF)

    def check_pending(self):
        """Called before FWAIT and every waiting x87 instruction: a pending
        unmasked exception (ES) raises #MF with CR0.NE=1, else asserts FERR#
        (on_ferr: the machine's IRQ13 path) and the instruction proceeds."""
        if self.R[FPU_SW] & ES:
            if self.R[CR0] & CR0_NE:
                raise CPUFault(VEC_MF)
            if self.on_ferr is not None:
                self.on_ferr()

    def _commit(self, phys, v, flags, up, pop=False):
        """Write a result unless an unmasked pre-computation exception
        suppresses it; set C1 (round-up); pop.  Returns True if written."""
        if flags:
            flags = self._post(flags)
            if self._fault(flags):
                return False
            if flags & PE and up:
                self._c1(True)
        self._write(phys, v)
        if pop:
            self.pop()
        return True

    # ---------------------------------------------------------------- pointers
    def set_pointers(self, ip, cs, opcode, dp=None, ds=None):
        """Record the last non-control x87 instruction (and its operand)."""
        R = self.R
        R[FPU_IP] = ip & 0xFFFFFFFF
        R[FPU_CS] = cs & 0xFFFF
        R[FPU_OP] = opcode & 0x7FF
        if dp is not None:
            R[FPU_DP] = dp & 0xFFFFFFFF
            R[FPU_DS] = ds & 0xFFFF

    # ================================================================ loads
    def _push_checked(self, v, flags=0):
        """Push v with the stack-overflow check; flags are its load flags (IE
        for an SNaN source, DE for a denormal).  True if pushed."""
        R = self.R
        t = (R[FPU_TOP] - 1) & 7
        self._c1(False)
        if self.tag(t) != TAG_EMPTY:
            if self._stack_overflow():
                return False
            v = INDEFINITE
        elif flags:
            if flags & IE:
                flags &= ~DE
            if self._fault(flags):
                return False
        self.set_top(t)
        self._write(t, v)
        return True

    def fld_m32(self, data):
        v, flags = dec_m32(data)
        if _is_snan(v):
            v, flags = _quiet(v), IE
        return self._push_checked(v, flags)

    def fld_m64(self, data):
        v, flags = dec_m64(data)
        if _is_snan(v):
            v, flags = _quiet(v), IE
        return self._push_checked(v, flags)

    def fld_m80(self, data):
        return self._push_checked(dec_m80(data, self._rc()))

    def fild_m16(self, data):
        return self._push_checked(dec_int(data, 2))

    def fild_m32(self, data):
        return self._push_checked(dec_int(data, 4))

    def fild_m64(self, data):
        return self._push_checked(dec_int(data, 8, self._rc()))

    def fbld(self, data):
        return self._push_checked(dec_bcd(data, self._rc()))

    def fld_st(self, i):
        """FLD ST(i)."""
        src = (self.R[FPU_TOP] + i) & 7
        if self.tag(src) == TAG_EMPTY:
            dst = (self.R[FPU_TOP] - 1) & 7
            if self.tag(dst) != TAG_EMPTY:
                return self._push_checked(0.0)      # overflow wins
            if self._stack_underflow():
                return False
            self.push(INDEFINITE)
            return True
        return self._push_checked(self.F[src])

    def fld_const(self, k):
        """k = 0..6: FLD1 FLDL2T FLDL2E FLDPI FLDLG2 FLDLN2 FLDZ (D9 E8+k)."""
        return self._push_checked(CONSTANTS[k][self._rc()])

    # ================================================================ stores
    def _store_prologue(self):
        """(ok, value): value of ST0 or None after a masked underflow."""
        self._c1(False)
        p = self.R[FPU_TOP] & 7
        if self.tag(p) == TAG_EMPTY:
            if self._stack_underflow():
                return False, None
            return True, None
        return True, self.F[p]

    def _store_finish(self, data, flags, up, pop):
        if flags:
            flags = self._post(flags)
            if self._signal(flags) and flags & ~self.R[FPU_CW] & (IE | OE | UE):
                return None
            if flags & PE and up:
                self._c1(True)
        if pop:
            self.pop()
        return data

    def fst_m32(self, pop=False):
        ok, v = self._store_prologue()
        if not ok:
            return None
        if v is None:
            return self._store_finish(M32_INDEFINITE, 0, False, pop)
        data, flags, up = enc_m32(v, self._rc())
        return self._store_finish(data, flags, up, pop)

    def fst_m64(self, pop=False):
        ok, v = self._store_prologue()
        if not ok:
            return None
        if v is None:
            return self._store_finish(M64_INDEFINITE, 0, False, pop)
        data, flags = enc_m64(v)
        return self._store_finish(data, flags, False, pop)

    def fstp_m80(self):
        ok, v = self._store_prologue()
        if not ok:
            return None
        return self._store_finish(M80_INDEFINITE if v is None else enc_m80(v), 0, False, True)

    def fist(self, size, pop=False, truncate=False):
        """FIST/FISTP m16/m32 (size 2/4), FISTP m64 (8), FISTTP (truncate)."""
        ok, v = self._store_prologue()
        if not ok:
            return None
        if v is None:
            return self._store_finish((1 << (8 * size - 1)).to_bytes(size, "little"), 0, False, pop)
        data, flags, up = enc_int(v, size, RC_CHOP if truncate else self._rc())
        return self._store_finish(data, flags, up, pop)

    def fist_m16(self, pop=False):
        return self.fist(2, pop)

    def fist_m32(self, pop=False):
        return self.fist(4, pop)

    def fistp_m64(self):
        return self.fist(8, True)

    def fbstp(self):
        ok, v = self._store_prologue()
        if not ok:
            return None
        if v is None:
            return self._store_finish(BCD_INDEFINITE, 0, False, True)
        if v != v or v == INF or v == -INF:
            return self._store_finish(BCD_INDEFINITE, IE, False, True)
        n, inexact, up = round_to_integer(v, self._rc())
        if abs(n) >= 10 ** 18:
            return self._store_finish(BCD_INDEFINITE, IE, False, True)
        data = enc_bcd(bool(_signbit(v)), abs(n))
        return self._store_finish(data, PE if inexact else 0, up, True)

    def fst_st(self, i, pop=False):
        """FST/FSTP ST(i)."""
        self._c1(False)
        top = self.R[FPU_TOP] & 7
        dst = (top + i) & 7
        if self.tag(top) == TAG_EMPTY:
            if self._stack_underflow():
                return False
            v = INDEFINITE
        else:
            v = self.F[top]
        self._write(dst, v)
        if pop:
            self.pop()
        return True

    # ================================================================ arithmetic
    def farith(self, op, dst, src, pop=False):
        """ST(dst) <- ST(dst) op ST(src) for op in ADD MUL SUB SUBR DIV DIVR
        (SUBR: ST(src) - ST(dst)); FxxxP forms pop afterwards."""
        R = self.R
        top = R[FPU_TOP]
        pd = (top + dst) & 7
        ps = (top + src) & 7
        self._c1(False)
        if self.tag(pd) == TAG_EMPTY or self.tag(ps) == TAG_EMPTY:
            if self._stack_underflow():
                return False
            return self._commit(pd, INDEFINITE, 0, False, pop)
        rc, fmt = self._rc_fmt()
        v, flags, up = binop(op, self.F[pd], self.F[ps], rc, fmt)
        return self._commit(pd, v, flags, up, pop)

    def _mem_operand(self, data, fmt):
        """fmt: 'm32' 'm64' 'm16i' 'm32i' -> (value, flags)."""
        if fmt == "m32":
            return dec_m32(data)
        if fmt == "m64":
            return dec_m64(data)
        if fmt == "m16i":
            return dec_int(data, 2), 0
        if fmt == "m32i":
            return dec_int(data, 4), 0
        raise ValueError(fmt)

    def farith_m(self, op, data, fmt):
        """D8/DC/DA/DE memory group: ST0 <- ST0 op mem for op = the /reg field
        (ADD MUL COM COMP SUB SUBR DIV DIVR); fmt 'm32' 'm64' 'm16i' 'm32i'."""
        if op == COM or op == COMP:
            return self.fcom_m(data, fmt, pop=op == COMP)
        b, lflags = self._mem_operand(data, fmt)
        self._c1(False)
        p = self.R[FPU_TOP] & 7
        if self.tag(p) == TAG_EMPTY:
            if self._stack_underflow():
                return False
            return self._commit(p, INDEFINITE, 0, False)
        rc, fmt_ = self._rc_fmt()
        v, flags, up = binop(op, self.F[p], b, rc, fmt_)
        if lflags and not flags & IE:
            if self._fault(lflags):         # unmasked DE: nothing is computed
                return False
        return self._commit(p, v, flags, up)

    # ---- unary helpers
    def _unary(self, fn):
        self._c1(False)
        p = self.R[FPU_TOP] & 7
        if self.tag(p) == TAG_EMPTY:
            if self._stack_underflow():
                return False
            return self._commit(p, INDEFINITE, 0, False)
        v, flags, up = fn(self.F[p])
        return self._commit(p, v, flags, up)

    def fchs(self):
        return self._unary(lambda x: (-x, 0, False))

    def fabs(self):
        return self._unary(lambda x: (from_bits(bits_of(x) & ~(1 << 63)), 0, False))

    def fsqrt(self):
        rc, fmt = self._rc_fmt()

        def f(x):
            if x != x:
                return _nan1(x)
            if x == 0.0 or x == INF:
                return x, 0, False
            if x < 0.0:
                return INDEFINITE, IE, False
            return _sqrt(x, rc, fmt)
        return self._unary(f)

    def frndint(self):
        rc = self._rc()

        def f(x):
            if x != x:
                return _nan1(x)
            if x == 0.0 or x == INF or x == -INF:
                return x, 0, False
            n, inexact, up = round_to_integer(x, rc)
            v = float(n) if abs(n) <= (1 << 53) else x
            if v == 0.0 and x < 0.0:
                v = -0.0
            return v, (PE if inexact else 0), up
        return self._unary(f)

    def f2xm1(self):
        def f(x):
            if x != x:
                return _nan1(x)
            if x == 0.0:
                return x, 0, False
            if x == INF:
                return INF, 0, False
            if x == -INF:
                return -1.0, 0, False
            if x == 1.0:
                return 1.0, 0, False
            if x == -1.0:
                return -0.5, 0, False
            try:
                v = math.expm1(x * _LN2) if abs(x) <= 1.0 else 2.0 ** x - 1.0
            except OverflowError:
                return INF, OE | PE, True
            return _approx(v)
        return self._unary(f)

    def _trig_in_range(self):
        """C2=1 and no operation if |ST0| >= 2**63 (finite).  Returns True to
        proceed (then C2 = 0)."""
        p = self.R[FPU_TOP] & 7
        if self.tag(p) != TAG_EMPTY:
            x = self.F[p]
            if x == x and x not in (INF, -INF) and abs(x) >= _TWO63:
                self._c1(False)
                self._cc(C2, C2)
                return False
        self._cc(0, C2)
        return True

    def _trig1(self, fn, exact_at_zero):
        def f(x):
            if x != x:
                return _nan1(x)
            if x == INF or x == -INF:
                return INDEFINITE, IE, False
            if x == 0.0:
                return exact_at_zero(x), 0, False
            return _approx(fn(x))
        return f

    def fsin(self):
        if self._trig_in_range():
            return self._unary(self._trig1(math.sin, lambda x: x))
        return True

    def fcos(self):
        if self._trig_in_range():
            return self._unary(self._trig1(math.cos, lambda x: 1.0))
        return True

    def _push2(self, f):
        """ST0 <- a, then push b, where (a, b, flags) = f(ST0).  Used by
        FPTAN, FSINCOS, FXTRACT."""
        R = self.R
        top = R[FPU_TOP] & 7
        nxt = (top - 1) & 7
        self._c1(False)
        if self.tag(top) == TAG_EMPTY:
            if self._stack_underflow():
                return False
            a = b = INDEFINITE
            flags = 0
        elif self.tag(nxt) != TAG_EMPTY:
            if self._stack_overflow():
                return False
            a = b = INDEFINITE
            flags = 0
        else:
            a, b, flags = f(self.F[top])
        if flags:
            flags = self._post(flags)
            if self._fault(flags):
                return False
        self._write(top, a)
        self.push(b)
        return True

    def fptan(self):
        if not self._trig_in_range():
            return True

        def f(x):
            if x != x:
                q, fl, _ = _nan1(x)
                return q, q, fl
            if x == INF or x == -INF:
                return INDEFINITE, INDEFINITE, IE
            if x == 0.0:
                return x, 1.0, 0
            v, fl, _ = _approx(math.tan(x))
            return v, 1.0, fl
        return self._push2(f)

    def fsincos(self):
        if not self._trig_in_range():
            return True

        def f(x):
            if x != x:
                q, fl, _ = _nan1(x)
                return q, q, fl
            if x == INF or x == -INF:
                return INDEFINITE, INDEFINITE, IE
            if x == 0.0:
                return x, 1.0, 0
            s, fl, _ = _approx(math.sin(x))
            return s, math.cos(x), fl | PE
        return self._push2(f)

    def fxtract(self):
        def f(x):
            if x != x:
                q, fl, _ = _nan1(x)
                return q, q, fl
            if x == INF or x == -INF:
                return INF, x, 0            # ST1 = +inf, ST0 = x
            if x == 0.0:
                return -INF, x, ZE
            m, e = math.frexp(x)
            return float(e - 1), m * 2.0, 0
        return self._push2(f)

    # ---- ST0 with ST1
    def _st0_st1(self, fn, to_st1):
        """fn(ST0, ST1) -> (v, flags, up); the result goes to ST0, or to ST1
        followed by a pop."""
        R = self.R
        top = R[FPU_TOP] & 7
        p1 = (top + 1) & 7
        dst = p1 if to_st1 else top
        self._c1(False)
        if self.tag(top) == TAG_EMPTY or self.tag(p1) == TAG_EMPTY:
            if self._stack_underflow():
                return False
            return self._commit(dst, INDEFINITE, 0, False, to_st1)
        v, flags, up = fn(self.F[top], self.F[p1])
        return self._commit(dst, v, flags, up, to_st1)

    def fscale(self):
        rc = self._rc()

        def f(x, y):
            if x != x or y != y:
                v, fl = nan_result(x, y)
                return v, fl, False
            if y == INF:
                if x == 0.0:
                    return INDEFINITE, IE, False
                return (x if x in (INF, -INF) else math.copysign(INF, x)), 0, False
            if y == -INF:
                if x in (INF, -INF):
                    return INDEFINITE, IE, False
                return math.copysign(0.0, x), 0, False
            if x == 0.0 or x in (INF, -INF):
                return x, 0, False
            n = int(y)                                  # truncation toward zero
            n = max(-100000, min(100000, n))
            m, e = _decomp(x)
            return round_int(m < 0, abs(m), e + n, False, rc, DOUBLE)
        return self._st0_st1(f, False)

    def fpatan(self):
        def f(x, y):                          # ST1 <- atan(ST1 / ST0)
            if x != x or y != y:
                v, fl = nan_result(y, x)
                return v, fl, False
            v = math.atan2(y, x)
            exact = y == 0.0 and x > 0.0 or (y == 0.0 and x == 0.0 and not _signbit(x))
            return _approx(v, exact)
        return self._st0_st1(f, True)

    def fyl2x(self):
        rc = self._rc()

        def f(x, y):                          # ST1 <- ST1 * log2(ST0)
            if x != x or y != y:
                v, fl = nan_result(x, y)
                return v, fl, False
            if x < 0.0 or (x == -INF):
                return INDEFINITE, IE, False
            if x == 0.0:
                if y == 0.0:
                    return INDEFINITE, IE, False
                v = math.copysign(INF, -y)
                return v, (0 if y in (INF, -INF) else ZE), False
            if x == INF:
                if y == 0.0:
                    return INDEFINITE, IE, False
                return math.copysign(INF, y), 0, False
            if x == 1.0:
                if y in (INF, -INF):
                    return INDEFINITE, IE, False
                return (0.0 if not _signbit(y) else -0.0), 0, False
            m, e = math.frexp(x)
            if m == 0.5:                          # exact power of two
                return binop(MUL, y, float(e - 1), rc, DOUBLE)
            lg = math.log2(x)
            v, fl, up = binop(MUL, y, lg, rc, DOUBLE)
            if fl & IE:
                return v, fl, up
            v, fl2, _ = _approx(v)
            return v, fl | fl2, False
        return self._st0_st1(f, True)

    def fyl2xp1(self):
        def f(x, y):                          # ST1 <- ST1 * log2(ST0 + 1)
            if x != x or y != y:
                v, fl = nan_result(x, y)
                return v, fl, False
            if x < -1.0 or x == -INF:
                return INDEFINITE, IE, False
            if x == -1.0:
                if y == 0.0:
                    return INDEFINITE, IE, False
                return math.copysign(INF, -y), (0 if y in (INF, -INF) else ZE), False
            if x == 0.0:
                if y in (INF, -INF):
                    return INDEFINITE, IE, False
                return (-0.0 if _signbit(x) ^ _signbit(y) else 0.0), 0, False
            if x == INF:
                if y == 0.0:
                    return INDEFINITE, IE, False
                return math.copysign(INF, y), 0, False
            if y in (INF, -INF):
                return (y if x > 0 else -y), 0, False
            if y == 0.0:
                return (-0.0 if _signbit(y) ^ (x < 0) else 0.0), 0, False
            return _approx(y * (math.log1p(x) / _LN2))
        return self._st0_st1(f, True)

    def _prem(self, ieee):
        """FPREM (ieee=False) / FPREM1 (ieee=True)."""
        R = self.R
        top = R[FPU_TOP] & 7
        p1 = (top + 1) & 7
        self._c1(False)
        if self.tag(top) == TAG_EMPTY or self.tag(p1) == TAG_EMPTY:
            if self._stack_underflow():
                return False
            self._cc(0, C2)
            return self._commit(top, INDEFINITE, 0, False)
        a, b = self.F[top], self.F[p1]
        if a != a or b != b:
            v, fl = nan_result(a, b)
            self._cc(0, C2)
            return self._commit(top, v, fl, False)
        if a in (INF, -INF) or b == 0.0:
            self._cc(0, C2)
            return self._commit(top, INDEFINITE, IE, False)
        if a == 0.0 or b in (INF, -INF):
            self._cc(0, CC_MASK)
            return self._commit(top, a, 0, False)
        na, ea = _decomp(a)
        nb, eb = _decomp(b)
        neg = na < 0
        na, nb = abs(na), abs(nb)
        D = (na.bit_length() + ea) - (nb.bit_length() + eb)
        e = ea if ea < eb else eb
        A = na << (ea - e)
        Bv = nb << (eb - e)
        if D < 64:
            q, r = divmod(A, Bv)
            rneg = neg
            if ieee and (2 * r > Bv or (2 * r == Bv and q & 1)):
                q += 1
                r = Bv - r
                rneg = not neg
            cc = ((q >> 2) & 1) * C0 | ((q >> 1) & 1) * C1 | (q & 1) * C3
            cmask = CC_MASK
        else:
            N = 32 + D % 32
            Bs = Bv << (D - N)
            q, r = divmod(A, Bs)
            rneg = neg
            cc, cmask = C2, C2
        if r == 0:
            v = -0.0 if neg else 0.0
        else:
            v = round_int(rneg, r, e, False, RC_NEAREST, DOUBLE)[0]
        self._cc(cc, cmask)
        self._write(top, v)
        return True

    def fprem(self):
        return self._prem(False)

    def fprem1(self):
        return self._prem(True)

    # ================================================================ compares
    @staticmethod
    def _relation(a, b, quiet):
        """(relation, flags): relation 'gt' 'lt' 'eq' 'un'."""
        if a != a or b != b:
            if quiet and not (_is_snan(a) or _is_snan(b)):
                return "un", 0
            return "un", IE
        if a > b:
            return "gt", 0
        if a < b:
            return "lt", 0
        return "eq", 0

    _CC = {"gt": 0, "lt": C0, "eq": C3, "un": C3 | C2 | C0}
    _EFL = {"gt": (0, 0, 0), "lt": (0, 0, 1), "eq": (1, 0, 0), "un": (1, 1, 1)}

    def _compare(self, b, bflags, pops, quiet, src_empty=False):
        self._c1(False)
        top = self.R[FPU_TOP] & 7
        if self.tag(top) == TAG_EMPTY or src_empty:
            if self._stack_underflow():
                return False
            rel = "un"
        else:
            rel, flags = self._relation(self.F[top], b, quiet)
            flags |= bflags
            if flags:
                if flags & IE:
                    flags &= ~DE
                if self._fault(flags):
                    return False
        self._cc(self._CC[rel], C0 | C2 | C3)
        for _ in range(pops):
            self.pop()
        return True

    def fcom(self, i=1, pops=0, unordered=False):
        """FCOM/FCOMP/FCOMPP (i=1, pops=2) and FUCOM/FUCOMP/FUCOMPP."""
        p = (self.R[FPU_TOP] + i) & 7
        return self._compare(self.F[p], 0, pops, unordered, self.tag(p) == TAG_EMPTY)

    def fcom_m(self, data, fmt, pop=False):
        """FCOM/FCOMP m32/m64, FICOM/FICOMP m16/m32 (fmt 'm16i' / 'm32i')."""
        b, fl = self._mem_operand(data, fmt)
        return self._compare(b, fl, 1 if pop else 0, False)

    def ficom(self, data, size, pop=False):
        return self.fcom_m(data, "m16i" if size == 2 else "m32i", pop)

    def ftst(self):
        return self._compare(0.0, 0, 0, False)

    def fcomi(self, i, pop=False, unordered=False):
        """FCOMI/FCOMIP/FUCOMI/FUCOMIP: returns (ZF, PF, CF) for the caller to
        put in EFLAGS (which also clears OF, SF, AF), or None when an unmasked
        exception leaves EFLAGS and the stack unchanged."""
        self._c1(False)
        top = self.R[FPU_TOP] & 7
        p = (top + i) & 7
        if self.tag(top) == TAG_EMPTY or self.tag(p) == TAG_EMPTY:
            if self._stack_underflow():
                return None
            rel = "un"
        else:
            rel, flags = self._relation(self.F[top], self.F[p], unordered)
            if flags and self._fault(flags):
                return None
        if pop:
            self.pop()
        return self._EFL[rel]

    def fxam(self):
        top = self.R[FPU_TOP] & 7
        v = self.F[top]
        c1 = C1 if _signbit(v) else 0
        if self.tag(top) == TAG_EMPTY:
            cc = C3 | C0
        elif v != v:
            cc = C0
        elif v == INF or v == -INF:
            cc = C2 | C0
        elif v == 0.0:
            cc = C3
        else:
            cc = C2
        self._cc(cc | c1)
        return True

    # ================================================================ misc
    def fxch(self, i=1):
        self._c1(False)
        top = self.R[FPU_TOP] & 7
        p = (top + i) & 7
        e0 = self.tag(top) == TAG_EMPTY
        ei = self.tag(p) == TAG_EMPTY
        if e0 or ei:
            if self._stack_underflow():
                return False
            if e0:
                self._write(top, INDEFINITE)
            if ei:
                self._write(p, INDEFINITE)
        F = self.F
        a, b = F[top], F[p]
        self._write(top, b)
        self._write(p, a)
        return True

    def fcmov(self, i, cond):
        """FCMOVcc ST0, ST(i): cond is the caller's evaluated EFLAGS test."""
        self._c1(False)
        top = self.R[FPU_TOP] & 7
        p = (top + i) & 7
        if self.tag(top) == TAG_EMPTY or self.tag(p) == TAG_EMPTY:
            if self._stack_underflow():
                return False
            if cond:
                self._write(top, INDEFINITE)
            return True
        if cond:
            self._write(top, self.F[p])
        return True

    def ffree(self, i):
        self._set_tag((self.R[FPU_TOP] + i) & 7, TAG_EMPTY)
        return True

    def ffreep(self, i):
        """DF C0+i (undocumented): FFREE ST(i), then pop."""
        self.ffree(i)
        self.pop()
        return True

    def fincstp(self):
        self._c1(False)
        self.set_top(self.R[FPU_TOP] + 1)
        return True

    def fdecstp(self):
        self._c1(False)
        self.set_top(self.R[FPU_TOP] - 1)
        return True

    # ================================================================ control
    def fninit(self):
        R = self.R
        R[FPU_CW] = CW_DEFAULT
        R[FPU_SW] = 0
        R[FPU_TOP] = 0
        R[FPU_TW] = 0xFFFF
        R[FPU_IP] = R[FPU_CS] = R[FPU_DP] = R[FPU_DS] = R[FPU_OP] = 0

    def power_on_reset(self):
        """RESET state (SDM Vol. 3 Table 9-1): CW 0040h, TW 5555h, +0.0s."""
        self.fninit()
        self.R[FPU_CW] = 0x0040
        for p in range(8):
            self.F[p] = 0.0
        self.R[FPU_TW] = 0x5555

    def fnclex(self):
        self.R[FPU_SW] &= ~(EXC_MASK | SF | ES | B) & 0xFFFF

    def fldcw(self, cw):
        self.R[FPU_CW] = (cw & ~CW_RESERVED & 0xFFFF) | 0x0040
        self._update_es()

    def fnstcw(self):
        return self.R[FPU_CW] & 0xFFFF

    def fnstsw(self):
        R = self.R
        return ((R[FPU_SW] & ~TOP_MASK) | ((R[FPU_TOP] & 7) << TOP_SHIFT)) & 0xFFFF

    # ---- environment images
    def env_size(self, op32):
        return 28 if op32 else 14

    def fnstenv(self, op32=True, real=False):
        """FNSTENV image (14 or 28 bytes); then all exceptions are masked."""
        data = self._env_bytes(op32, real)
        self.R[FPU_CW] |= EXC_MASK
        return data

    def _env_bytes(self, op32, real):
        R = self.R
        cw, sw, tw = self.fnstcw(), self.fnstsw(), self.tag_word()
        ip, cs, dp, ds, fop = R[FPU_IP], R[FPU_CS], R[FPU_DP], R[FPU_DS], R[FPU_OP] & 0x7FF
        if op32:
            if real:
                lip = ((cs << 4) + ip) & 0xFFFFFFFF
                ldp = ((ds << 4) + dp) & 0xFFFFFFFF
                words = (cw, sw, tw, lip & 0xFFFF, ((lip >> 16) << 12) | fop,
                         ldp & 0xFFFF, (ldp >> 16) << 12)
            else:
                words = (cw, sw, tw, ip, cs | (fop << 16), dp, ds)
            return struct.pack("<7I", *(w & 0xFFFFFFFF for w in words))
        if real:
            lip = ((cs << 4) + ip) & 0xFFFFF
            ldp = ((ds << 4) + dp) & 0xFFFFF
            words = (cw, sw, tw, lip & 0xFFFF, ((lip >> 16) << 12) | fop,
                     ldp & 0xFFFF, (ldp >> 16) << 12)
        else:
            words = (cw, sw, tw, ip, cs, dp, ds)
        return struct.pack("<7H", *(w & 0xFFFF for w in words))

    def fldenv(self, data, op32=True, real=False):
        R = self.R
        if op32:
            w = struct.unpack("<7I", bytes(data[:28]))
        else:
            w = struct.unpack("<7H", bytes(data[:14]))
        cw, sw, tw = w[0] & 0xFFFF, w[1] & 0xFFFF, w[2] & 0xFFFF
        if real:
            if op32:
                lip = (w[3] & 0xFFFF) | (((w[4] >> 12) & 0xFFFF) << 16)
                ldp = (w[5] & 0xFFFF) | (((w[6] >> 12) & 0xFFFF) << 16)
            else:
                lip = (w[3] & 0xFFFF) | (((w[4] >> 12) & 0xF) << 16)
                ldp = (w[5] & 0xFFFF) | (((w[6] >> 12) & 0xF) << 16)
            R[FPU_OP] = w[4] & 0x7FF
            R[FPU_IP] = lip
            R[FPU_CS] = 0
            R[FPU_DP] = ldp
            R[FPU_DS] = 0
        elif op32:
            R[FPU_IP] = w[3]
            R[FPU_CS] = w[4] & 0xFFFF
            R[FPU_OP] = (w[4] >> 16) & 0x7FF
            R[FPU_DP] = w[5]
            R[FPU_DS] = w[6] & 0xFFFF
        else:
            R[FPU_IP], R[FPU_CS], R[FPU_DP], R[FPU_DS] = w[3], w[4], w[5], w[6]
        R[FPU_CW] = (cw & ~CW_RESERVED & 0xFFFF) | 0x0040
        self.set_sw(sw)
        self.set_tag_word(tw)
        self._update_es()

    def save_size(self, op32):
        return 108 if op32 else 94

    def fnsave(self, op32=True, real=False):
        """FNSAVE image (94 or 108 bytes: environment + ST0..ST7 as m80);
        then the unit is initialised as by FNINIT."""
        env = self._env_bytes(op32, real)
        regs = b"".join(enc_m80(self.st(i)) for i in range(8))
        self.fninit()
        return env + regs

    def frstor(self, data, op32=True, real=False):
        n = 28 if op32 else 14
        data = bytes(data)
        # registers first (their values decide the non-empty tags), TOP from the image
        if op32:
            sw = struct.unpack_from("<I", data, 4)[0]
        else:
            sw = struct.unpack_from("<H", data, 2)[0]
        top = (sw >> TOP_SHIFT) & 7
        rc = (struct.unpack_from("<H", data, 0)[0] >> 10) & 3
        for i in range(8):
            self.F[(top + i) & 7] = dec_m80(data[n + 10 * i: n + 10 * i + 10], rc)
        self.fldenv(data, op32, real)

    # ---- FXSAVE / FXRSTOR (legacy region)
    def fxsave(self, xmm=None):
        """The 512-byte FXSAVE image: bytes 0-159 are the x87 legacy region
        (plus MXCSR); XMM0-7 (160-287) come from ``xmm`` (128 bytes) or are
        zero; the rest is zero.  Hardware leaves bytes 464-511 alone: the
        opcode layer should write only the first 464 (or 288) bytes."""
        R = self.R
        img = bytearray(512)
        struct.pack_into("<HHBBHIHHIHHII", img, 0,
                         self.fnstcw(), self.fnstsw(), self.abridged_tag(), 0,
                         R[FPU_OP] & 0x7FF, R[FPU_IP], R[FPU_CS] & 0xFFFF, 0,
                         R[FPU_DP], R[FPU_DS] & 0xFFFF, 0, R[MXCSR], MXCSR_MASK)
        for i in range(8):
            img[32 + 16 * i: 42 + 16 * i] = enc_m80(self.st(i))
        if xmm is not None:
            img[160:288] = bytes(xmm[:128])
        return bytes(img)

    def fxrstor(self, data, load_mxcsr=True):
        """Load the legacy region of an FXSAVE image.  With load_mxcsr (CR4.
        OSFXSR=1) MXCSR is loaded too, and #GP(0) is raised if it sets
        reserved bits (checked before anything changes)."""
        data = bytes(data)
        (cw, sw, t8, _r, fop, fip, fcs, _r2, fdp, fds, _r3,
         mxcsr) = struct.unpack_from("<HHBBHIHHIHHI", data, 0)
        if load_mxcsr and mxcsr & ~MXCSR_MASK:
            raise CPUFault(GP, 0)
        R = self.R
        top = (sw >> TOP_SHIFT) & 7
        rc = (cw >> 10) & 3
        for i in range(8):
            self.F[(top + i) & 7] = dec_m80(data[32 + 16 * i: 42 + 16 * i], rc)
        R[FPU_CW] = (cw & ~CW_RESERVED & 0xFFFF) | 0x0040
        self.set_sw(sw)
        self.set_abridged_tag(t8)
        R[FPU_OP] = fop & 0x7FF
        R[FPU_IP] = fip
        R[FPU_CS] = fcs
        R[FPU_DP] = fdp
        R[FPU_DS] = fds
        if load_mxcsr:
            R[MXCSR] = mxcsr
        self._update_es()

    # ---------------------------------------------------------------- debugging
    def dump(self):
        """A short human-readable description (debugger, traces)."""
        R = self.R
        lines = ["CW=%04x SW=%04x TW=%04x TOP=%d" % (self.fnstcw(), self.fnstsw(),
                                                    R[FPU_TW] & 0xFFFF, self.top)]
        for i in range(8):
            lines.append("ST(%d)=%s" % (i, "empty" if self.is_empty(i) else repr(self.st(i))))
        return "\n".join(lines)
