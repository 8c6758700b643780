"""Unit tests for emu/cpu/fpu.py: the x87 unit on the shared state views.

Exact results are checked against an independent rounding reference written
with fractions.Fraction; layouts against the SDM figures (Vol. 1 8-9..8-12,
FXSAVE Table 10-2).
"""
import math
import struct
from fractions import Fraction

import pytest
from hypothesis import given, settings, strategies as st, assume, HealthCheck

from emu.cpu.state import (CPUState, views, FPU_SW, FPU_TW, FPU_TOP, FPU_IP,
                           FPU_CS, FPU_DP, FPU_DS, FPU_OP, MXCSR, CR0)
from emu.cpu.faults import CPUFault
from emu.cpu import fpu as X
from emu.cpu.fpu import (FPU, IE, DE, ZE, OE, UE, PE, SF, ES, B, C0, C1, C2, C3,
                         ADD, MUL, COMP, SUB, SUBR, DIV, DIVR, INDEFINITE,
                         RC_NEAREST, RC_DOWN, RC_UP, RC_CHOP, bits_of, from_bits)

HYP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INF = math.inf
RCS = (RC_NEAREST, RC_DOWN, RC_UP, RC_CHOP)


def new_fpu():
    s = CPUState()
    R, F = views(s)
    f = FPU(R, F)
    f.fninit()
    f._state = s            # keep the buffer alive
    return f


def d(x):
    return struct.pack("<d", x)


def push(f, *vals):
    for v in vals:
        assert f.fld_m64(d(v))


def sw(f):
    return f.fnstsw()


def set_rc(f, rc, pc=3):
    f.fldcw((X.CW_DEFAULT & ~0xF00) | (rc << 10) | (pc << 8))


def unmask(f, bits):
    f.fldcw(f.fnstcw() & ~bits)


def same(a, b):
    """Bit-identical floats (distinguishes -0.0 and NaN payloads)."""
    return bits_of(a) == bits_of(b)


def snan64(payload=1, sign=0):
    return from_bits((sign << 63) | (0x7FF << 52) | payload)


# --- an independent rounding reference ---------------------------------------
def ref_round(fr, rc, prec=53, emin=-1022, emax=1024, qmin=None):
    """Correctly round the rational fr to a binary format: (float, inexact).
    qmin: exponent of the smallest subnormal quantum (default emin-prec+1)."""
    if qmin is None:
        qmin = emin - prec + 1
    if fr == 0:
        return 0.0, False
    neg = fr < 0
    a = -fr if neg else fr
    E = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** E > a:
        E -= 1
    assert Fraction(2) ** E <= a < Fraction(2) ** (E + 1)
    q = max(E - prec + 1, qmin)
    scaled = a / Fraction(2) ** q
    lo = scaled.numerator // scaled.denominator
    rem = scaled - lo
    if rem == 0:
        k = lo
    elif rc == RC_NEAREST:
        k = lo + (1 if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and lo & 1) else 0)
    elif rc == RC_CHOP:
        k = lo
    elif rc == RC_UP:
        k = lo + (0 if neg else 1)
    else:
        k = lo + (1 if neg else 0)
    val = Fraction(k) * Fraction(2) ** q
    if val >= Fraction(2) ** emax:
        big = rc == RC_NEAREST or (rc == RC_UP and not neg) or (rc == RC_DOWN and neg)
        v = INF if big else float((2 ** prec - 1) * Fraction(2) ** (emax - prec))
        return (-v if neg else v), True          # overflow is always inexact
    else:
        v = float(val)
    return (-v if neg else v), rem != 0


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
moderate = st.floats(min_value=-1e30, max_value=1e30, allow_nan=False, allow_infinity=False)


# =============================================================================
# init, TOP, tags
# =============================================================================
def test_fninit_state():
    f = new_fpu()
    R = f.R
    assert f.fnstcw() == 0x037F
    assert sw(f) == 0
    assert R[FPU_TW] == 0xFFFF
    assert f.top == 0
    R[FPU_IP] = 5
    f.fninit()
    assert R[FPU_IP] == R[FPU_CS] == R[FPU_DP] == R[FPU_DS] == R[FPU_OP] == 0


def test_power_on_reset():
    f = new_fpu()
    push(f, 3.0)
    f.power_on_reset()
    assert f.fnstcw() == 0x0040
    assert f.R[FPU_TW] == 0x5555
    assert all(f.F[i] == 0.0 for i in range(8))


def test_push_pop_top_mirror_and_tags():
    f = new_fpu()
    push(f, 1.0)
    assert f.top == 7 and (f.R[FPU_SW] >> 11) & 7 == 7 and f.R[FPU_TOP] == 7
    push(f, 0.0, INF, 5e-324)
    assert f.top == 4
    assert (sw(f) >> 11) & 7 == 4
    # physical 7: valid 1.0, 6: zero, 5: special (inf), 4: double subnormal = extended normal
    assert f.R[FPU_TW] == (0b00 << 14) | (0b01 << 12) | (0b10 << 10) | (0b00 << 8) | 0xFF
    assert f.st(0) == 5e-324 and f.st(3) == 1.0
    f.pop()
    assert f.top == 5 and f.tag(4) == X.TAG_EMPTY
    assert (f.R[FPU_SW] >> 11) & 7 == 5
    f.fincstp()
    assert f.top == 6 and (sw(f) >> 11) & 7 == 6
    f.fdecstp()
    f.fdecstp()
    assert f.top == 4 and f.is_empty(0)


def test_set_sw_and_set_top_keep_mirror():
    f = new_fpu()
    f.set_sw(0x2A41)          # TOP = 5
    assert f.R[FPU_TOP] == 5 and f.R[FPU_SW] == 0x2A41
    f.set_top(2)
    assert f.R[FPU_SW] == (0x2A41 & ~0x3800) | (2 << 11)


def test_stack_overflow_masked():
    f = new_fpu()
    for i in range(8):
        push(f, float(i))
    assert sw(f) & (IE | SF) == 0
    assert f.fld_m64(d(99.0))
    s = sw(f)
    assert s & (IE | SF | C1) == IE | SF | C1
    assert s & ES == 0
    assert math.isnan(f.st(0)) and same(f.st(0), INDEFINITE)
    assert f.st(1) == 7.0


def test_stack_overflow_unmasked_then_pending():
    f = new_fpu()
    unmask(f, IE)
    for i in range(8):
        push(f, float(i))
    assert f.fld_m64(d(99.0)) is False
    s = sw(f)
    assert s & (IE | SF | ES | B | C1) == IE | SF | ES | B | C1
    assert f.st(0) == 7.0 and f.top == 0          # nothing changed
    # #MF with CR0.NE
    f.R[CR0] = 0x21
    with pytest.raises(CPUFault) as e:
        f.check_pending()
    assert e.value.vector == 16
    # FERR# path without NE
    f.R[CR0] = 0x01
    calls = []
    f.on_ferr = lambda: calls.append(1)
    f.check_pending()
    assert calls == [1]
    f.on_ferr = None
    f.check_pending()                              # no callback: nothing
    f.fnclex()
    assert sw(f) & (0xFF | B) == 0
    f.R[CR0] = 0x21
    f.check_pending()


def test_stack_underflow():
    f = new_fpu()
    push(f, 2.0)
    f.farith(ADD, 0, 1)           # ST1 empty
    s = sw(f)
    assert s & (IE | SF) == IE | SF and not s & C1
    assert same(f.st(0), INDEFINITE)
    # unmasked: no change
    f = new_fpu()
    unmask(f, IE)
    push(f, 2.0)
    assert f.farith(ADD, 0, 1) is False
    assert f.st(0) == 2.0 and sw(f) & ES
    # store from empty ST0: indefinite
    f = new_fpu()
    assert f.fst_m64(pop=True) == X.M64_INDEFINITE
    assert sw(f) & (IE | SF) == IE | SF and f.top == 1
    f = new_fpu()
    assert f.fst_m32() == X.M32_INDEFINITE
    f = new_fpu()
    assert f.fist(2, pop=True) == b"\x00\x80"
    f = new_fpu()
    assert f.fbstp() == X.BCD_INDEFINITE
    f = new_fpu()
    unmask(f, IE)
    assert f.fst_m64(pop=True) is None and f.top == 0


# =============================================================================
# memory formats
# =============================================================================
def test_m32_load_exact_and_flags():
    f = new_fpu()
    f.fld_m32(struct.pack("<f", 1.5))
    assert f.st(0) == 1.5 and sw(f) & 0x3F == 0
    f.fld_m32(struct.pack("<I", 1))                # smallest single denormal
    assert f.st(0) == 2.0 ** -149 and sw(f) & DE
    f = new_fpu()
    f.fld_m32(struct.pack("<I", 0x7F800001))       # SNaN
    assert sw(f) & IE
    assert bits_of(f.st(0)) == (0x7FF << 52) | (1 << 51) | (1 << 29)
    f = new_fpu()
    unmask(f, DE)
    assert f.fld_m32(struct.pack("<I", 1)) is False
    assert f.top == 0 and sw(f) & (DE | ES) == DE | ES


def test_m64_load_flags():
    f = new_fpu()
    f.fld_m64(d(5e-324))
    assert sw(f) & DE and f.st(0) == 5e-324
    f.fld_m64(d(snan64(0x1234)))
    assert sw(f) & IE
    assert bits_of(f.st(0)) == (0x7FF << 52) | (1 << 51) | 0x1234
    f = new_fpu()
    f.fld_m64(d(-INF))
    assert sw(f) & 0x3F == 0 and f.st(0) == -INF


@pytest.mark.parametrize("rc", RCS)
def test_m32_store_rounding(rc):
    f = new_fpu()
    set_rc(f, rc)
    for x in (1 + 2 ** -24, 1 + 3 * 2 ** -25, -(1 + 2 ** -24), 1 / 3, -1 / 3, 1e-40, -1e-45, 3.4e38):
        push(f, x)
        data = f.fst_m32(pop=True)
        want, inexact = ref_round(Fraction(x), rc, 24, -126, 128)
        got = struct.unpack("<f", data)[0]
        assert same(got, want), (rc, x, got, want)
        assert bool(sw(f) & PE) == inexact or sw(f) & PE  # sticky
        f.fnclex()


def test_m32_store_flags():
    f = new_fpu()
    push(f, 1.0 + 2 ** -24 + 2 ** -30)           # rounds up to 1+2**-23
    assert struct.unpack("<f", f.fst_m32(True))[0] == 1 + 2 ** -23
    assert sw(f) & (PE | C1) == PE | C1
    push(f, 1.0 + 2 ** -25)                       # rounds down
    f.fst_m32(True)
    assert sw(f) & PE and not sw(f) & C1
    f.fnclex()
    push(f, 1e39)                                  # overflow
    assert f.fst_m32(True) == struct.pack("<f", INF)
    assert sw(f) & (OE | PE) == OE | PE
    f.fnclex()
    set_rc(f, RC_CHOP)
    push(f, -1e39)
    assert struct.unpack("<f", f.fst_m32(True))[0] == -3.4028234663852886e38
    f.fnclex()
    set_rc(f, RC_NEAREST)
    push(f, 2.0 ** -140 * 1.25)                   # exact single denormal: no UE
    f.fst_m32(True)
    assert sw(f) & (UE | PE) == 0
    push(f, 2.0 ** -140 * (1 + 2 ** -20))         # inexact denormal: UE + PE
    f.fst_m32(True)
    assert sw(f) & (UE | PE) == UE | PE
    f.fnclex()
    unmask(f, UE)                                  # unmasked UE: tiny even if exact
    push(f, 2.0 ** -140)
    assert f.fst_m32(True) is None
    assert sw(f) & (UE | ES) == UE | ES and f.top == 7
    f = new_fpu()
    unmask(f, OE)
    push(f, 1e39)
    assert f.fst_m32(True) is None and f.top == 7
    f = new_fpu()
    unmask(f, PE)                                  # unmasked PE still stores
    push(f, 0.1)
    assert f.fst_m32(True) is not None and sw(f) & (PE | ES) == PE | ES and f.top == 0


def test_m32_store_nans():
    f = new_fpu()
    push(f, INDEFINITE)
    assert f.fst_m32(True) == X.M32_INDEFINITE and not sw(f) & IE
    f.fld_m80(X.enc_m80(snan64(0x8 << 29)))         # SNaN in a register (from m80)
    assert X._is_snan(f.st(0))
    assert f.fst_m32(True) == struct.pack("<I", 0x7FC00008)
    assert sw(f) & IE
    f = new_fpu()
    f.fld_m80(X.enc_m80(snan64(5)))
    assert f.fst_m64(True) == d(from_bits((0x7FF << 52) | (1 << 51) | 5)) and sw(f) & IE


def test_m80_encode():
    e = X.enc_m80
    assert e(1.0) == bytes.fromhex("0000000000000080ff3f")
    assert e(-2.5) == bytes.fromhex("00000000000000a000c0")
    assert e(math.pi) == (0x4000 << 64 | 0xC90FDAA22168C000).to_bytes(10, "little")
    assert e(0.0) == bytes(10)
    assert e(-0.0) == bytes(9) + b"\x80"
    assert e(INF) == (0x7FFF << 64 | 1 << 63).to_bytes(10, "little")
    assert e(INDEFINITE) == X.M80_INDEFINITE
    # a double subnormal is a normal extended number
    assert e(5e-324) == ((16383 - 1074) << 64 | 1 << 63).to_bytes(10, "little")
    assert e(snan64(1)) == (0x7FFF << 64 | 1 << 63 | 1 << 11).to_bytes(10, "little")


def m80(sign, exp, sig):
    return ((sign << 79) | (exp << 64) | sig).to_bytes(10, "little")


def test_m80_decode():
    dm = X.dec_m80
    assert dm(m80(0, 16383, 1 << 63)) == 1.0
    sig = (1 << 63) | (1 << 10) | 1        # just above halfway between two doubles
    assert dm(m80(0, 16383, sig)) == 1.0 + 2 ** -52
    half = (1 << 63) | (1 << 10)           # exactly halfway: to even (down)
    assert dm(m80(0, 16383, half)) == 1.0
    assert dm(m80(0, 16383, half), RC_UP) == 1.0 + 2 ** -52
    assert dm(m80(1, 16383, half), RC_DOWN) == -(1.0 + 2 ** -52)
    assert dm(m80(0, 16383, half), RC_CHOP) == 1.0
    # beyond double range
    assert dm(m80(0, 16383 + 2000, 1 << 63)) == INF
    assert dm(m80(1, 16383 + 2000, 1 << 63), RC_CHOP) == -1.7976931348623157e308
    assert same(dm(m80(1, 16383 - 2000, 1 << 63)), -0.0)
    assert dm(m80(0, 16383 - 2000, 1 << 63), RC_UP) == 5e-324
    # extended denormal and pseudo-denormal
    assert dm(m80(0, 0, 1)) == 0.0
    assert dm(m80(0, 0, 1 << 63)) == 2.0 ** -16382
    # specials
    assert dm(m80(1, 0x7FFF, 1 << 63)) == -INF
    q = dm(m80(0, 0x7FFF, (3 << 62) | (0xABC << 11)))
    assert bits_of(q) == (0x7FF << 52) | (1 << 51) | 0xABC
    s = dm(m80(0, 0x7FFF, (1 << 63) | 5))   # SNaN with payload only in the low bits
    assert X._is_snan(s)
    for bad in (m80(0, 0x7FFF, 0), m80(0, 0x7FFF, 1 << 62), m80(0, 100, 1 << 62)):
        assert same(dm(bad), INDEFINITE)


@HYP
@given(finite)
def test_m80_roundtrip(x):
    assert same(X.dec_m80(X.enc_m80(x)), x)


def test_fld_fstp_m80_roundtrip_in_unit():
    f = new_fpu()
    for x in (1.0, -3.75, 5e-324, 1.7976931348623157e308, -0.0, INF):
        f.fld_m80(X.enc_m80(x))
        assert sw(f) & 0x3F == 0
        assert f.fstp_m80() == X.enc_m80(x)


@pytest.mark.parametrize("rc,vals", [
    (RC_NEAREST, {2.5: 2, 3.5: 4, -2.5: -2, 2.6: 3, -0.4: 0}),
    (RC_DOWN, {2.5: 2, -2.5: -3, -0.4: -1, 2.9: 2}),
    (RC_UP, {2.5: 3, -2.5: -2, 0.1: 1, -2.9: -2}),
    (RC_CHOP, {2.9: 2, -2.9: -2, -0.4: 0}),
])
def test_fist_rounding(rc, vals):
    f = new_fpu()
    set_rc(f, rc)
    for x, want in vals.items():
        push(f, x)
        data = f.fist(4, pop=True)
        assert struct.unpack("<i", data)[0] == want
        s = sw(f)
        assert s & PE
        assert bool(s & C1) == (abs(want) > abs(x))
        f.fnclex()


def test_fist_exact_and_ranges():
    f = new_fpu()
    push(f, -32768.0)
    assert f.fist(2, True) == struct.pack("<h", -32768) and sw(f) & 0x3F == 0
    push(f, 32767.6)                       # rounds to 32768: out of range
    assert f.fist(2, True) == b"\x00\x80" and sw(f) & IE and not sw(f) & PE
    f.fnclex()
    push(f, 2.0 ** 31)
    assert f.fist(4, True) == struct.pack("<I", 0x80000000) and sw(f) & IE
    f.fnclex()
    push(f, -2.0 ** 63)
    assert f.fistp_m64() == struct.pack("<q", -2 ** 63) and sw(f) & 0x3F == 0
    push(f, 2.0 ** 63)
    assert f.fistp_m64() == struct.pack("<Q", 1 << 63) and sw(f) & IE
    f.fnclex()
    push(f, 2.0 ** 60 + 2.0 ** 8)
    assert struct.unpack("<q", f.fistp_m64())[0] == 2 ** 60 + 2 ** 8
    for v in (INF, -INF, INDEFINITE):
        push(f, v)
        assert f.fist(4, True) == struct.pack("<I", 0x80000000) and sw(f) & IE
        f.fnclex()
    # unmasked IE: no store, no pop
    unmask(f, IE)
    push(f, 1e10)
    assert f.fist(2, True) is None and f.top == 7
    # fist without pop
    f = new_fpu()
    push(f, 7.0)
    assert f.fist_m16() == struct.pack("<h", 7) and f.top == 7


def test_fisttp_truncates_regardless_of_rc():
    f = new_fpu()
    set_rc(f, RC_UP)
    push(f, -2.7)
    assert struct.unpack("<h", f.fist(2, True, truncate=True))[0] == -2
    push(f, 2.7)
    assert struct.unpack("<q", f.fist(8, True, truncate=True))[0] == 2


def test_fild():
    f = new_fpu()
    f.fild_m16(struct.pack("<h", -5))
    f.fild_m32(struct.pack("<i", -2 ** 31))
    f.fild_m64(struct.pack("<q", 2 ** 53 + 1))     # rounds to even: 2**53
    assert f.st(0) == 2.0 ** 53 and f.st(1) == -2.0 ** 31 and f.st(2) == -5.0
    set_rc(f, RC_UP)
    f.fild_m64(struct.pack("<q", 2 ** 53 + 1))
    assert f.st(0) == 2.0 ** 53 + 2
    assert sw(f) & 0x3F == 0
    f.fild_m16(struct.pack("<h", 0))
    assert f.st(0) == 0.0 and f.tag(f.top) == X.TAG_ZERO


def bcd(n, neg=False):
    return X.enc_bcd(neg, n)


def test_bcd():
    assert bcd(1234) == bytes([0x34, 0x12]) + bytes(8)
    assert bcd(99, True)[9] == 0x80
    f = new_fpu()
    f.fbld(bcd(123456789012345678))
    assert f.st(0) == float(123456789012345678)
    f.fbld(bcd(42, True))
    assert f.st(0) == -42.0
    f.fbld(bcd(0, True))
    assert same(f.st(0), -0.0)
    assert f.fbstp() == bcd(0, True)
    assert f.fbstp() == bcd(42, True)
    push(f, 1e17)
    assert f.fbstp() == bcd(10 ** 17)
    push(f, 2.5)
    assert f.fbstp() == bcd(2) and sw(f) & PE
    f.fnclex()
    set_rc(f, RC_UP)
    push(f, 2.5)
    assert f.fbstp() == bcd(3) and sw(f) & (PE | C1) == PE | C1
    f.fnclex()
    push(f, 1e18)
    assert f.fbstp() == X.BCD_INDEFINITE and sw(f) & IE
    f.fnclex()
    push(f, INDEFINITE)
    assert f.fbstp() == X.BCD_INDEFINITE and sw(f) & IE


# =============================================================================
# arithmetic
# =============================================================================
def _apply(op, a, b):
    return {ADD: a + b, SUB: a - b, SUBR: b - a, MUL: a * b,
            DIV: a / b if b else None, DIVR: b / a if a else None}[op]


@HYP
@given(finite, finite, st.sampled_from([ADD, SUB, SUBR, MUL, DIV, DIVR]), st.sampled_from(RCS))
def test_binop_correctly_rounded(a, b, op, rc):
    exact = _apply(op, Fraction(a), Fraction(b))
    assume(exact is not None)
    v, flags, up = X.binop(op, a, b, rc, X.DOUBLE)
    want, inexact = ref_round(exact, rc)
    if exact == 0:
        assert v == 0.0
    else:
        assert same(v, want), (a, b, op, rc, v, want)
    assert bool(flags & PE) == inexact
    if inexact and want not in (INF, -INF) and abs(want) > 1e-300:
        assert up == (abs(Fraction(want)) > abs(exact))


@HYP
@given(moderate, moderate, st.sampled_from([ADD, SUB, MUL, DIV]), st.sampled_from(RCS))
def test_binop_precision_control_24(a, b, op, rc):
    exact = _apply(op, Fraction(a), Fraction(b))
    assume(exact is not None and exact != 0)
    v, flags, _ = X.binop(op, a, b, rc, X.PC24)
    # PC=24 keeps the double's exponent range and subnormal quantum 2**-1074
    want, inexact = ref_round(exact, rc, 24, qmin=-1074)
    assert same(v, want)
    assert bool(flags & PE) == inexact


def test_pc24_in_unit():
    f = new_fpu()
    set_rc(f, RC_NEAREST, pc=0)
    push(f, 1.0, 3.0)
    f.farith(DIV, 1, 0)                   # ST1 = 1/3 rounded to 24 bits
    assert f.st(1) == struct.unpack("<f", struct.pack("<f", 1 / 3))[0]
    set_rc(f, RC_NEAREST, pc=2)
    push(f, 1.0, 3.0)
    f.farith(DIV, 1, 0)
    assert f.st(1) == 1 / 3


def test_zero_signs():
    r = X.binop
    assert same(r(ADD, 1.0, -1.0, RC_NEAREST, X.DOUBLE)[0], 0.0)
    assert same(r(ADD, 1.0, -1.0, RC_DOWN, X.DOUBLE)[0], -0.0)
    assert same(r(ADD, -0.0, -0.0, RC_NEAREST, X.DOUBLE)[0], -0.0)
    assert same(r(ADD, -0.0, 0.0, RC_NEAREST, X.DOUBLE)[0], 0.0)
    assert same(r(ADD, -0.0, 0.0, RC_DOWN, X.DOUBLE)[0], -0.0)
    assert same(r(SUB, 0.0, 0.0, RC_DOWN, X.DOUBLE)[0], -0.0)
    assert same(r(MUL, -0.0, 5.0, RC_NEAREST, X.DOUBLE)[0], -0.0)
    assert same(r(DIV, 0.0, -5.0, RC_NEAREST, X.DOUBLE)[0], -0.0)


def test_special_operands():
    r = lambda *a: X.binop(*a, RC_NEAREST, X.DOUBLE)
    assert same(r(ADD, INF, -INF)[0], INDEFINITE)
    assert r(ADD, INF, -INF)[1] == IE
    assert r(SUB, INF, INF)[1] == IE
    assert r(MUL, 0.0, -INF)[1] == IE
    assert r(DIV, INF, INF)[1] == IE
    assert r(DIV, 0.0, 0.0)[1] == IE
    v, fl, _ = r(DIV, -3.0, 0.0)
    assert v == -INF and fl == ZE
    v, fl, _ = r(DIV, 3.0, -0.0)
    assert v == -INF and fl == ZE
    v, fl, _ = r(DIVR, 0.0, 2.0)
    assert v == INF and fl == ZE
    assert r(DIV, 1.0, INF)[:2] == (0.0, 0)
    assert r(MUL, -INF, 2.0)[0] == -INF


def test_nan_propagation():
    q1 = from_bits((0x7FF << 52) | (1 << 51) | 1)
    q2 = from_bits((0x7FF << 52) | (1 << 51) | 2)
    s3 = snan64(3)
    v, fl = X.nan_result(q1, q2)
    assert same(v, q2) and fl == 0                 # larger significand
    v, fl = X.nan_result(s3, q1)
    assert same(v, q1) and fl == IE                # the QNaN beats an SNaN
    v, fl = X.nan_result(s3, 1.0)
    assert same(v, X._quiet(s3)) and fl == IE
    v, fl = X.nan_result(2.0, q1)
    assert same(v, q1) and fl == 0
    nq1 = -q1
    v, fl = X.nan_result(nq1, q1)                  # tie: the positive one
    assert same(v, q1)
    v, fl = X.nan_result(snan64(7), snan64(9))
    assert same(v, X._quiet(snan64(9))) and fl == IE
    v, fl, _ = X.binop(SUB, q1, 1.0, RC_NEAREST, X.DOUBLE)
    assert same(v, q1)                             # the sign of a NaN is not flipped by SUB


def test_overflow_underflow_flags_in_unit():
    f = new_fpu()
    push(f, 1e300, 1e300)
    f.farith(MUL, 0, 1)
    assert f.st(0) == INF and sw(f) & (OE | PE | C1) == OE | PE | C1
    f = new_fpu()
    set_rc(f, RC_CHOP)
    push(f, 1e300, 1e300)
    f.farith(MUL, 0, 1)
    assert f.st(0) == 1.7976931348623157e308 and sw(f) & (OE | PE) == OE | PE
    assert not sw(f) & C1
    f = new_fpu()
    push(f, 1e-300, 1e-300)
    f.farith(MUL, 0, 1)
    assert f.st(0) == 0.0 and sw(f) & (UE | PE) == UE | PE
    f = new_fpu()
    push(f, 2.0 ** -1000, 2.0 ** -70)             # exact subnormal: no UE when masked
    f.farith(MUL, 0, 1)
    assert f.st(0) == 2.0 ** -1070 and sw(f) & (UE | PE) == 0
    f = new_fpu()
    unmask(f, UE)
    push(f, 2.0 ** -1000, 2.0 ** -70)             # unmasked: tiny is enough
    f.farith(MUL, 0, 1)
    assert sw(f) & (UE | ES) == UE | ES and f.st(0) == 2.0 ** -1070
    # tininess is detected after rounding with unbounded exponent (SDM 4.9.1.5):
    # (2**-1022 - 2**-1074)(1 + 2**-52) = 2**-1022 (1 - 2**-104) rounds to
    # 2**-1022 -> not tiny -> PE without UE; rounded toward zero it stays tiny.
    big_sub = 2.0 ** -1022 - 2.0 ** -1074
    f = new_fpu()
    push(f, big_sub, 1 + 2.0 ** -52)
    f.farith(MUL, 0, 1)
    assert f.st(0) == 2.0 ** -1022 and sw(f) & (UE | PE) == PE
    f = new_fpu()
    set_rc(f, RC_CHOP)
    push(f, big_sub, 1 + 2.0 ** -52)
    f.farith(MUL, 0, 1)
    assert f.st(0) == big_sub and sw(f) & (UE | PE) == UE | PE


def test_divide_by_zero_unit():
    f = new_fpu()
    push(f, -6.0, 0.0)
    f.farith(DIVR, 0, 1)               # ST0 = ST1 / ST0 = -6/0
    assert f.st(0) == -INF and sw(f) & ZE
    f = new_fpu()
    unmask(f, ZE)
    push(f, 6.0, 0.0)
    assert f.farith(DIV, 1, 0, pop=True) is False
    assert f.st(1) == 6.0 and f.top == 6 and sw(f) & (ZE | ES | B) == ZE | ES | B
    f = new_fpu()
    push(f, 0.0, 0.0)
    f.farith(DIV, 0, 1)
    assert same(f.st(0), INDEFINITE) and sw(f) & IE


def test_farith_register_forms_and_pop():
    f = new_fpu()
    push(f, 10.0, 4.0)                  # ST0 = 4, ST1 = 10
    f.farith(SUB, 1, 0, pop=True)        # FSUBP ST1, ST0: ST1 = 10 - 4
    assert f.st(0) == 6.0 and f.top == 7
    push(f, 3.0)
    f.farith(SUBR, 1, 0)                 # ST1 = ST0 - ST1 = 3 - 6
    assert f.st(1) == -3.0
    f.farith(DIVR, 0, 1)                 # ST0 = ST1 / ST0 = -3/3
    assert f.st(0) == -1.0
    f.farith(MUL, 0, 1)
    assert f.st(0) == 3.0


def test_farith_memory_forms():
    f = new_fpu()
    push(f, 10.0)
    f.farith_m(ADD, struct.pack("<f", 0.5), "m32")
    assert f.st(0) == 10.5
    f.farith_m(SUBR, d(20.5), "m64")
    assert f.st(0) == 10.0
    f.farith_m(DIV, struct.pack("<h", -4), "m16i")
    assert f.st(0) == -2.5
    f.farith_m(MUL, struct.pack("<i", 1000000), "m32i")
    assert f.st(0) == -2500000.0
    f.farith_m(DIVR, d(5e6), "m64")
    assert f.st(0) == -2.0
    f.farith_m(COMP, d(-2.0), "m64")
    assert sw(f) & (C0 | C2 | C3) == C3 and f.top == 0
    # denormal memory operand: DE (masked -> computed)
    f = new_fpu()
    push(f, 1.0)
    f.farith_m(MUL, d(5e-324), "m64")
    assert f.st(0) == 5e-324 and sw(f) & DE
    f = new_fpu()
    unmask(f, DE)
    push(f, 1.0)
    assert f.farith_m(MUL, d(5e-324), "m64") is False
    assert f.st(0) == 1.0


def test_fsqrt():
    f = new_fpu()
    push(f, 16.0)
    f.fsqrt()
    assert f.st(0) == 4.0 and sw(f) & PE == 0
    push(f, 2.0)
    f.fsqrt()
    assert f.st(0) == math.sqrt(2.0) and sw(f) & PE
    push(f, -0.0)
    f.fsqrt()
    assert same(f.st(0), -0.0)
    push(f, -1.0)
    f.fsqrt()
    assert same(f.st(0), INDEFINITE) and sw(f) & IE


@HYP
@given(st.floats(min_value=0.0, exclude_min=True, allow_infinity=False), st.sampled_from(RCS))
def test_sqrt_correctly_rounded(x, rc):
    v, flags, _ = X._sqrt(x, rc, X.DOUBLE)
    # the exact root r satisfies lo <= r < hi; check by squaring rationals
    fr = Fraction(x)
    fv = Fraction(v)
    up = Fraction(math.nextafter(v, INF))
    dn = Fraction(math.nextafter(v, 0.0))
    if rc == RC_NEAREST:
        assert ((fv + dn) / 2) ** 2 <= fr <= ((fv + up) / 2) ** 2
    elif rc in (RC_DOWN, RC_CHOP):
        assert fv * fv <= fr < up * up
    else:
        assert dn * dn < fr <= fv * fv
    assert bool(flags & PE) == (fv * fv != fr)


def test_fabs_fchs():
    f = new_fpu()
    push(f, -3.0)
    f.fabs()
    assert f.st(0) == 3.0
    f.fchs()
    assert f.st(0) == -3.0
    push(f, 0.0)
    f.fchs()
    assert same(f.st(0), -0.0)
    push(f, snan64(1))         # fld quiets it; fabs/fchs raise nothing
    f.fnclex()
    f.fchs()
    assert sw(f) & IE == 0 and _sign(f.st(0))


def _sign(x):
    return bits_of(x) >> 63


@pytest.mark.parametrize("rc,cases", [
    (RC_NEAREST, {2.5: 2.0, 3.5: 4.0, -0.5: -0.0, 1.4: 1.0}),
    (RC_DOWN, {2.5: 2.0, -2.5: -3.0, -0.1: -1.0}),
    (RC_UP, {2.1: 3.0, -2.5: -2.0, -0.1: -0.0}),
    (RC_CHOP, {2.9: 2.0, -2.9: -2.0, -0.9: -0.0}),
])
def test_frndint(rc, cases):
    f = new_fpu()
    set_rc(f, rc)
    for x, want in cases.items():
        push(f, x)
        f.frndint()
        assert same(f.st(0), want), (rc, x, f.st(0))
        assert sw(f) & PE
        assert bool(sw(f) & C1) == (abs(want) > abs(x))
        f.fnclex()
    push(f, 7.0)
    f.frndint()
    assert f.st(0) == 7.0 and sw(f) & PE == 0


def test_fscale():
    f = new_fpu()
    push(f, -2.7, 3.0)          # ST1 = -2.7 -> -2
    f.fscale()
    assert f.st(0) == 0.75
    f = new_fpu()
    push(f, 2000.0, 1.0)
    f.fscale()
    assert f.st(0) == INF and sw(f) & (OE | PE) == OE | PE
    f = new_fpu()
    push(f, -1100.0, 3.0)
    f.fscale()
    assert f.st(0) == 3.0 * 2.0 ** -1100 and sw(f) & (UE | PE) == UE | PE
    f = new_fpu()
    push(f, INF, 0.0)
    f.fscale()
    assert same(f.st(0), INDEFINITE) and sw(f) & IE
    f = new_fpu()
    push(f, -INF, -5.0)
    f.fscale()
    assert same(f.st(0), -0.0)
    f = new_fpu()
    push(f, 1e300, 1.0)
    f.fscale()
    assert f.st(0) == INF


def _fprem_loop(f, ieee):
    for _ in range(200):
        (f.fprem1 if ieee else f.fprem)()
        if not sw(f) & C2:
            return
    raise AssertionError("FPREM did not complete")


@HYP
@given(finite, finite)
def test_fprem_matches_fmod(a, b):
    assume(b != 0.0)
    f = new_fpu()
    push(f, b, a)
    _fprem_loop(f, False)
    assert same(f.st(0), math.fmod(a, b))
    f = new_fpu()
    push(f, b, a)
    _fprem_loop(f, True)
    assert same(f.st(0), math.remainder(a, b))


def test_fprem_quotient_bits():
    f = new_fpu()
    push(f, 3.0, 22.0)          # 22 / 3: q = 7 = 0b111 -> C0 C3 C1 all set, r = 1
    f.fprem()
    assert f.st(0) == 1.0
    assert sw(f) & (C0 | C1 | C2 | C3) == C0 | C1 | C3
    f = new_fpu()
    push(f, 3.0, 16.0)          # q = 5 = 0b101 -> C0 (Q2), C3 (Q0)
    f.fprem()
    assert f.st(0) == 1.0 and sw(f) & (C0 | C1 | C2 | C3) == C0 | C3
    f = new_fpu()
    push(f, 3.0, 17.0)          # fprem1: q = round(5.67) = 6 = 0b110 -> C0, C1; r = -1
    f.fprem1()
    assert f.st(0) == -1.0 and sw(f) & (C0 | C1 | C2 | C3) == C0 | C1
    f = new_fpu()
    push(f, 3.0, 2.0 ** 100)    # large exponent difference: partial
    f.fprem()
    assert sw(f) & C2
    _fprem_loop(f, False)
    assert f.st(0) == math.fmod(2.0 ** 100, 3.0)
    f = new_fpu()
    push(f, 0.0, 5.0)
    f.fprem()
    assert same(f.st(0), INDEFINITE) and sw(f) & IE
    f = new_fpu()
    push(f, INF, -5.0)
    f.fprem()
    assert f.st(0) == -5.0 and not sw(f) & C2


def test_fxtract():
    f = new_fpu()
    push(f, -12.0)
    f.fxtract()
    assert f.st(0) == -1.5 and f.st(1) == 3.0 and f.top == 6
    push(f, 5e-324)
    f.fxtract()
    assert f.st(0) == 1.0 and f.st(1) == -1074.0
    f = new_fpu()
    push(f, -0.0)
    f.fxtract()
    assert same(f.st(0), -0.0) and f.st(1) == -INF and sw(f) & ZE
    f = new_fpu()
    push(f, -INF)
    f.fxtract()
    assert f.st(0) == -INF and f.st(1) == INF


def test_transcendentals_best_effort():
    f = new_fpu()
    push(f, 0.5)
    f.fsin()
    assert f.st(0) == pytest.approx(math.sin(0.5), rel=1e-15) and sw(f) & PE and not sw(f) & C2
    f.fcos()
    assert f.st(0) == pytest.approx(math.cos(math.sin(0.5)), rel=1e-15)
    f = new_fpu()
    push(f, 0.7)
    f.fptan()
    assert f.st(0) == 1.0 and f.st(1) == pytest.approx(math.tan(0.7), rel=1e-15)
    f = new_fpu()
    push(f, 0.3)
    f.fsincos()
    assert f.st(0) == pytest.approx(math.cos(0.3)) and f.st(1) == pytest.approx(math.sin(0.3))
    f = new_fpu()
    push(f, 2.0 ** 64)
    f.fsin()
    assert sw(f) & C2 and f.st(0) == 2.0 ** 64
    f = new_fpu()
    push(f, INF)
    f.fcos()
    assert sw(f) & IE and same(f.st(0), INDEFINITE)
    f = new_fpu()
    push(f, 1.0, 0.5)
    f.fpatan()                         # ST1 = atan(1/0.5)
    assert f.top == 7 and f.st(0) == pytest.approx(math.atan2(1.0, 0.5))
    f = new_fpu()
    push(f, 3.0, 8.0)
    f.fyl2x()                          # 3 * log2(8)
    assert f.st(0) == 9.0 and f.top == 7 and not sw(f) & PE
    f = new_fpu()
    push(f, 2.0, 10.0)
    f.fyl2x()
    assert f.st(0) == pytest.approx(2 * math.log2(10)) and sw(f) & PE
    f = new_fpu()
    push(f, 1.0, 0.0)
    f.fyl2x()
    assert f.st(0) == -INF and sw(f) & ZE
    f = new_fpu()
    push(f, 1.0, -1.0)
    f.fyl2x()
    assert sw(f) & IE and same(f.st(0), INDEFINITE)
    f = new_fpu()
    push(f, 2.0, 1e-10)
    f.fyl2xp1()
    assert f.st(0) == pytest.approx(2 * math.log1p(1e-10) / math.log(2), rel=1e-14)
    f = new_fpu()
    push(f, 0.5)
    f.f2xm1()
    assert f.st(0) == pytest.approx(math.sqrt(2) - 1, rel=1e-15)
    push(f, -1.0)
    f.f2xm1()
    assert f.st(0) == -0.5


# =============================================================================
# compares, FXAM, constants, misc
# =============================================================================
def test_fcom_family():
    f = new_fpu()
    push(f, 2.0, 1.0)          # ST0 = 1, ST1 = 2
    f.fcom(1)
    assert sw(f) & (C0 | C2 | C3) == C0
    f.fcom_m(d(1.0), "m64")
    assert sw(f) & (C0 | C2 | C3) == C3
    f.fcom_m(struct.pack("<f", -1.0), "m32")
    assert sw(f) & (C0 | C2 | C3) == 0
    f.ficom(struct.pack("<h", 1), 2)
    assert sw(f) & (C0 | C2 | C3) == C3
    f.ficom(struct.pack("<i", 5), 4, pop=True)
    assert sw(f) & (C0 | C2 | C3) == C0 and f.top == 7
    # FUCOM with a QNaN: no IE; FCOM with a QNaN: IE
    push(f, INDEFINITE)
    f.fcom(1, unordered=True)
    assert sw(f) & (C0 | C2 | C3) == C0 | C2 | C3 and not sw(f) & IE
    f.fcom(1)
    assert sw(f) & IE
    f.fnclex()
    f.fcom(1, pops=2)          # FCOMPP
    assert f.top == 0
    # -0 == +0
    push(f, 0.0, -0.0)
    f.fcom(1)
    assert sw(f) & (C0 | C2 | C3) == C3


def test_fcom_unmasked_ie_leaves_cc_and_stack():
    f = new_fpu()
    unmask(f, IE)
    push(f, 1.0, INDEFINITE)
    f._cc(C1 | C2, C0 | C1 | C2 | C3)
    assert f.fcom(1, pops=2) is False
    assert f.top == 6 and sw(f) & (C0 | C2 | C3) == C2


def test_fcomi():
    f = new_fpu()
    push(f, 2.0, 1.0)
    assert f.fcomi(1) == (0, 0, 1)
    push(f, 5.0)
    assert f.fcomi(2) == (0, 0, 0)
    assert f.fcomi(0) == (1, 0, 0)
    push(f, INDEFINITE)
    assert f.fcomi(1, unordered=True) == (1, 1, 1) and not sw(f) & IE
    assert f.fcomi(1, pop=True) == (1, 1, 1) and sw(f) & IE
    assert f.st(0) == 5.0
    f = new_fpu()
    unmask(f, IE)
    push(f, 1.0, INDEFINITE)
    assert f.fcomi(1, pop=True) is None and f.top == 6
    f = new_fpu()
    assert f.fcomi(1) == (1, 1, 1) and sw(f) & (IE | SF) == IE | SF


def test_ftst_fxam():
    f = new_fpu()
    push(f, -3.0)
    f.ftst()
    assert sw(f) & (C0 | C2 | C3) == C0
    cases = [(1.5, C2), (-INF, C2 | C0 | C1), (-0.0, C3 | C1), (INDEFINITE, C0 | C1),
             (5e-324, C2)]
    for v, cc in cases:
        push(f, v)
        f.fxam()
        assert sw(f) & (C0 | C1 | C2 | C3) == cc, v
    f = new_fpu()
    f.fxam()
    assert sw(f) & (C0 | C2 | C3) == C3 | C0


@pytest.mark.parametrize("rc", RCS)
def test_constants(rc):
    f = new_fpu()
    set_rc(f, rc)
    # reference: 80-bit constants the hardware rounds from (66-bit internal)
    exact = [Fraction(1), None, None, None, None, None, Fraction(0)]
    for k in range(7):
        f.fld_const(k)
        v = f.st(0)
        if exact[k] is not None:
            assert v == float(exact[k])
    near = {1: math.log2(10), 2: math.log2(math.e), 3: math.pi, 4: math.log10(2), 5: math.log(2)}
    for k, val in near.items():
        got = X.CONSTANTS[k][rc]
        assert abs(got - val) <= math.ulp(val)
        if rc == RC_NEAREST:
            assert got == val
    assert X.CONSTANTS[3][RC_UP] == math.nextafter(math.pi, 4)    # pi rounds down to nearest
    assert X.CONSTANTS[3][RC_DOWN] == math.pi


def test_fxch_ffree_fst_st():
    f = new_fpu()
    push(f, 1.0, 2.0)
    f.fxch(1)
    assert f.st(0) == 1.0 and f.st(1) == 2.0
    f.ffree(1)
    assert f.is_empty(1)
    f.fxch(1)                               # underflow: masked -> indefinite swapped in
    assert sw(f) & (IE | SF) and same(f.st(0), INDEFINITE) and f.st(1) == 1.0
    f = new_fpu()
    push(f, 1.0, 2.0, 3.0)
    f.fst_st(2)
    assert f.st(2) == 3.0
    f.fst_st(1, pop=True)
    assert f.st(0) == 3.0 and f.top == 6
    f.fld_st(1)
    assert f.st(0) == 3.0 and f.top == 5
    f.ffreep(0)
    assert f.top == 6
    f = new_fpu()
    f.fld_st(3)                              # empty source: underflow -> indefinite
    assert sw(f) & (IE | SF) == IE | SF and same(f.st(0), INDEFINITE)


def test_fcmov():
    f = new_fpu()
    push(f, 1.0, 2.0)
    f.fcmov(1, False)
    assert f.st(0) == 2.0
    f.fcmov(1, True)
    assert f.st(0) == 1.0


def test_fldcw_fnstcw_es_recompute():
    f = new_fpu()
    f.fldcw(0x0000)
    assert f.fnstcw() == 0x0040
    f.fldcw(0xFFFF)
    assert f.fnstcw() == 0x1F7F
    f.fldcw(0x037F)
    push(f, 1.0, 0.0)
    f.farith(DIV, 1, 0)                     # masked ZE
    assert sw(f) & ZE and not sw(f) & ES
    f.fldcw(0x037F & ~ZE)                   # unmasking a pending flag sets ES/B
    assert sw(f) & (ES | B) == ES | B
    f.fldcw(0x037F)
    assert not sw(f) & (ES | B)


def test_fnclex_keeps_cc_and_top():
    f = new_fpu()
    push(f, 1.0)
    unmask(f, PE)
    push(f, 3.0)
    f.farith(DIV, 1, 0)
    f._cc(C3 | C0, C3 | C0)
    f.fnclex()
    assert sw(f) == (C3 | C0 | (6 << 11))


def test_set_pointers():
    f = new_fpu()
    f.set_pointers(0x12345678, 0x1B, 0x7D9, 0xCAFE, 0x23)
    R = f.R
    assert (R[FPU_IP], R[FPU_CS], R[FPU_OP], R[FPU_DP], R[FPU_DS]) == (0x12345678, 0x1B, 0x7D9,
                                                                         0xCAFE, 0x23)
    f.set_pointers(1, 2, 0x7FF)
    assert R[FPU_DP] == 0xCAFE


# =============================================================================
# environment / save images
# =============================================================================
def _env_fpu():
    f = new_fpu()
    push(f, 1.0, 0.0, INF)              # phys 7: valid, 6: zero, 5: special; TOP = 5
    f.fldcw(0x0272)
    f._cc(C2, C2)
    f.set_pointers(0x00123456, 0x1234, 0x5D9, 0x000ABCDE, 0x4321)
    return f


def test_fnstenv_32_protected():
    f = _env_fpu()
    img = f.fnstenv(op32=True, real=False)
    assert len(img) == 28
    w = struct.unpack("<7I", img)
    assert w[0] == 0x0272
    assert w[1] == (5 << 11) | C2
    assert w[2] == 0b000110 << 10 | 0x3FF                 # R7 valid, R6 zero, R5 special
    assert w[3] == 0x00123456
    assert w[4] == 0x1234 | (0x5D9 << 16)
    assert w[5] == 0x000ABCDE
    assert w[6] == 0x4321
    assert f.fnstcw() == 0x0272 | 0x3F                    # then all masked


def test_fnstenv_16_protected():
    f = _env_fpu()
    img = f.fnstenv(op32=False, real=False)
    assert len(img) == 14
    assert struct.unpack("<7H", img) == (0x0272, f.fnstsw(), 0x1BFF, 0x3456, 0x1234, 0xBCDE, 0x4321)


def test_fnstenv_32_real():
    f = _env_fpu()
    lip = (0x1234 << 4) + 0x00123456
    ldp = (0x4321 << 4) + 0x000ABCDE
    w = struct.unpack("<7I", f.fnstenv(op32=True, real=True))
    assert w[3] == lip & 0xFFFF
    assert w[4] == ((lip >> 16) << 12) | 0x5D9
    assert w[5] == ldp & 0xFFFF
    assert w[6] == (ldp >> 16) << 12
    assert w[4] >> 28 == 0 and w[4] & 0x800 == 0


def test_fnstenv_16_real():
    f = new_fpu()
    f.set_pointers(0x1234, 0xF000, 0x123, 0x0010, 0x9000)
    w = struct.unpack("<7H", f.fnstenv(op32=False, real=True))
    lip = 0xF1234
    ldp = 0x90010
    assert w[3] == lip & 0xFFFF and w[4] == (0xF << 12) | 0x123
    assert w[5] == ldp & 0xFFFF and w[6] == 0x9 << 12


@pytest.mark.parametrize("op32", [True, False])
@pytest.mark.parametrize("real", [True, False])
def test_env_roundtrip(op32, real):
    f = _env_fpu()
    sw0 = f.fnstsw()
    img = f.fnstenv(op32, real)
    g = new_fpu()
    for i in range(8):
        g.F[i] = f.F[i]
    g.fldenv(img, op32, real)
    assert g.fnstcw() == 0x0272
    assert g.fnstsw() == sw0 and g.top == 5
    assert g.R[FPU_TW] == f.R[FPU_TW]
    assert g.fnstenv(op32, real) == img


def test_fldenv_tag_only_empty_matters():
    f = new_fpu()
    f.F[0] = 2.0
    f.F[1] = 0.0
    env = struct.pack("<7H", 0x037F, 0, 0xFFF0, 0, 0, 0, 0)    # R0, R1 claim valid
    f.fldenv(env, op32=False)
    assert f.R[FPU_TW] == 0xFFF4         # R1 recomputed as zero
    f.fldenv(struct.pack("<7H", 0x037E, 0x0001, 0xFFFF, 0, 0, 0, 0), op32=False)
    assert sw(f) & (ES | B) == ES | B    # loaded IE with IM clear -> pending


@pytest.mark.parametrize("op32", [True, False])
def test_fnsave_frstor(op32):
    f = _env_fpu()
    sw0 = f.fnstsw()
    tw0 = f.R[FPU_TW]
    img = f.fnsave(op32, real=False)
    n = 28 if op32 else 14
    assert len(img) == n + 80
    assert img[n:n + 10] == X.enc_m80(INF)          # ST0 first
    assert img[n + 10:n + 20] == X.enc_m80(0.0)
    assert img[n + 20:n + 30] == X.enc_m80(1.0)
    # FNSAVE re-initialises
    assert f.fnstcw() == 0x037F and f.fnstsw() == 0 and f.R[FPU_TW] == 0xFFFF
    g = new_fpu()
    g.frstor(img, op32, real=False)
    assert g.fnstsw() == sw0 and g.R[FPU_TW] == tw0 and g.fnstcw() == 0x0272
    assert g.st(0) == INF and g.st(1) == 0.0 and g.st(2) == 1.0
    assert g.fnsave(op32, False) == img


def test_fxsave_layout_and_fxrstor():
    f = _env_fpu()
    f.R[MXCSR] = 0x1F80
    img = f.fxsave()
    assert len(img) == 512
    cw, sw_, ftw, fop, fip, fcs, fdp, fds, mx, mxm = struct.unpack_from(
        "<HHBxHIH2xIH2xII", img, 0)
    assert cw == 0x0272 and sw_ == f.fnstsw()
    assert ftw == 0b11100000                    # R5, R6, R7 non-empty
    assert fop == 0x5D9 and fip == 0x00123456 and fcs == 0x1234
    assert fdp == 0x000ABCDE and fds == 0x4321
    assert mx == 0x1F80 and mxm == X.MXCSR_MASK
    assert img[32:42] == X.enc_m80(INF) and img[42:48] == bytes(6)
    assert img[48:58] == X.enc_m80(0.0)
    assert img[160:] == bytes(352)
    g = new_fpu()
    g.fxrstor(img)
    assert g.fnstsw() == f.fnstsw() and g.R[FPU_TW] == f.R[FPU_TW]
    assert g.st(0) == INF and g.st(2) == 1.0 and g.R[MXCSR] == 0x1F80
    assert g.fxsave() == img
    bad = bytearray(img)
    struct.pack_into("<I", bad, 24, 0x10000)
    with pytest.raises(CPUFault) as e:
        g.fxrstor(bad)
    assert e.value.vector == 13


def test_abridged_tag_conversion():
    f = new_fpu()
    f.F[3] = 0.0
    f.F[4] = INF
    f.F[5] = 7.0
    f.set_abridged_tag(0b00111000)
    assert f.R[FPU_TW] == (0b11 << 14) | (0b11 << 12) | (0b00 << 10) | (0b10 << 8) | (0b01 << 6) | 0x3F
    assert f.abridged_tag() == 0b00111000
