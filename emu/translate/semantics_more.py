"""Native semantics, continued: shifts, multiplication and division, flag
instructions and the atomic read-modify-write family (XADD, CMPXCHG, BSWAP).

Same rules as semantics.py (registered in the same FAMILIES table, keyed by
the opcode table's builder names; effects in the interpreter's order).  Two
more devices appear here:

* a routine may give an instruction back to the interpreter at run time:
  ``e.to_shared("interp", cond, e.eip, e.i)`` leaves the block *before* the
  instruction when ``cond`` holds, with the state of its start, and the
  interpreter executes it.  DIV/IDIV use this for #DE (the interpreter then
  raises it, exactly), so no exception is ever made up in native code;
* a single-processor emulator executes LOCK'd instructions atomically by
  construction, so the LOCK prefix is accepted where the opcode table allows
  it (the decoder has already raised #UD elsewhere).
"""
from ..cpu.flags import K_ADD, K_SUB, K_RES, CF, DF, FIXED1
from .ir import Unsupported, MASKS, SZI
from .semantics import family, _imm

_SHIFT_OPS = ("shl", "sal", "shr", "sar")


def _check(ins):
    if ins.adsize != 32 or ins.rep is not None:
        raise Unsupported("prefix")


def _rm_get(e, ins, size):
    """(value, address or None) of the ModRM r/m operand."""
    if ins.mod == 3:
        return e.reg_sz(ins.rm, size), None
    addr = e.ea(ins)
    return e.load(ins.seg, addr, size), addr


def _rm_put(e, ins, size, addr, v):
    if addr is None:
        e.set_reg_sz(ins.rm, size, v)
    else:
        e.store(ins.seg, addr, size, v)


# --- SHL/SAL SHR SAR (rotates stay interpreted) -------------------------------------------

@family("shift.shift")
def shift(e, ins):
    _check(ins)
    if ins.lock:
        raise Unsupported("lock")
    mnem = ins.row.mnem
    if mnem in ("rol", "ror"):
        return _rotate(e, ins, mnem)
    if mnem not in _SHIFT_OPS:
        raise Unsupported(mnem)
    size = ins.size
    bits = 8 * size
    mask = MASKS[size]
    form = ins.row.operands[1]
    a, addr = _rm_get(e, ins, size)
    if form == "1":
        n = "1"
    elif form == "Ib":
        n = str(ins.imm & 0x1F)
    else:
        n = e.op("and i32 %s, 31" % e.reg(1))
    if n == "0":
        if addr is not None:
            e.store(ins.seg, addr, size, a)     # read and written back unchanged
        return
    # in 64 bits: shifting an 8/16-bit value by up to 31 must not wrap
    a64 = e.op("zext i32 %s to i64" % a)
    n64 = e.op("zext i32 %s to i64" % n)
    nz = None
    if not n.isdigit():
        nz = e.op("icmp eq i32 %s, 0" % n)
        n64 = e.op("select i1 %s, i64 1, i64 %s" % (nz, n64))
    m1 = e.op("sub i64 %s, 1" % n64)
    msb = bits - 1
    if mnem in ("shl", "sal"):
        t = e.op("shl i64 %s, %s" % (a64, m1))
        r64 = e.op("and i64 %s, %d" % (e.op("shl i64 %s, 1" % t), mask))
        cf = e.op("and i64 %s, 1" % e.op("lshr i64 %s, %d" % (t, msb)))
        of = e.op("xor i64 %s, %s" % (cf, e.op("lshr i64 %s, %d" % (r64, msb))))
    elif mnem == "shr":
        t = e.op("lshr i64 %s, %s" % (a64, m1))
        r64 = e.op("lshr i64 %s, 1" % t)
        cf = e.op("and i64 %s, 1" % t)
        of = e.op("and i64 %s, 1" % e.op("lshr i64 %s, %d" % (
            e.op("xor i64 %s, %s" % (t, r64)), msb)))
    else:  # sar
        sh = 64 - bits
        s64 = e.op("ashr i64 %s, %d" % (e.op("shl i64 %s, %d" % (a64, sh)), sh))
        t = e.op("ashr i64 %s, %s" % (s64, m1))
        r64 = e.op("and i64 %s, %d" % (e.op("ashr i64 %s, 1" % t), mask))
        cf = e.op("and i64 %s, 1" % t)
        of = "0"
    r = e.op("trunc i64 %s to i32" % r64)
    lfb = e.op("trunc i64 %s to i32" % e.op("or i64 %s, %s" % (
        cf, e.op("shl i64 %s, 1" % of) if of != "0" else "0")))
    if nz is None:
        _rm_put(e, ins, size, addr, r)
        e.set_flags(K_RES, size, r, None, lfb)
        return
    # count from CL: 0 leaves the operand (a memory operand is still written
    # back) and every flag as they were
    r = e.op("select i1 %s, i32 %s, i32 %s" % (nz, a, r))
    _rm_put(e, ins, size, addr, r)
    op_old, res_old, b_old = e.lf(0), e.lf(1), e.lf(3)
    e.set_lf(0, e.op("select i1 %s, i32 %s, i32 %d" % (nz, op_old, K_RES << 2 | SZI[size])))
    e.set_lf(1, e.op("select i1 %s, i32 %s, i32 %s" % (nz, res_old, r)))
    e.set_lf(3, e.op("select i1 %s, i32 %s, i32 %s" % (nz, b_old, lfb)))
    e.known = None


def _rotate(e, ins, mnem):
    """ROL/ROR: only CF and OF change (materialised and patched, as the
    interpreter does); a masked count of 0 changes nothing (a memory operand
    is still written back); the rotation is by count mod operand size, but
    CF/OF are set for any non-zero masked count."""
    size = ins.size
    bits = 8 * size
    ty = "i%d" % bits
    form = ins.row.operands[1]
    a, addr = _rm_get(e, ins, size)
    if form == "1":
        n = "1"
    elif form == "Ib":
        n = str(ins.imm & 0x1F)
    else:
        n = e.op("and i32 %s, 31" % e.reg(1))
    if n == "0":
        if addr is not None:
            e.store(ins.seg, addr, size, a)
        return
    e.needs_fsh = True
    at = a if bits == 32 else e.op("trunc i32 %s to %s" % (a, ty))
    nt = n if bits == 32 else (str(int(n) % bits) if n.isdigit() else
                               e.op("trunc i32 %s to %s" % (n, ty)))
    fn = "fshl" if mnem == "rol" else "fshr"
    rt_ = e.op("call %s @llvm.%s.%s(%s %s, %s %s, %s %s)" % (ty, fn, ty, ty, at, ty, at, ty, nt))
    r = rt_ if bits == 32 else e.op("zext %s %s to i32" % (ty, rt_))
    msb = bits - 1
    if mnem == "rol":
        cf = e.op("and i32 %s, 1" % r)
        of = e.op("xor i32 %s, %s" % (cf, e.op("lshr i32 %s, %d" % (r, msb))))
    else:
        cf = e.op("lshr i32 %s, %d" % (r, msb))
        of = e.op("xor i32 %s, %s" % (cf, e.op("and i32 %s, 1" % e.op("lshr i32 %s, %d" % (r, msb - 1)))))
    fl = e.eflags()
    new = e.op("or i32 %s, %s" % (e.op("and i32 %s, %d" % (fl, ~0x801 & 0xFFFFFFFF)),
                                  e.op("or i32 %s, %s" % (cf, e.op("shl i32 %s, 11" % of)))))
    if n.isdigit():
        _rm_put(e, ins, size, addr, r)
        e.set_lf(4, new)
        e.set_lf(0, "0")
    else:
        nz = e.op("icmp eq i32 %s, 0" % n)
        r = e.op("select i1 %s, i32 %s, i32 %s" % (nz, a, r))
        _rm_put(e, ins, size, addr, r)
        old_op, old_fl = e.lf(0), e.lf(4)
        e.set_lf(4, e.op("select i1 %s, i32 %s, i32 %s" % (nz, old_fl, new)))
        e.set_lf(0, e.op("select i1 %s, i32 %s, i32 0" % (nz, old_op)))
    e.known = None


# --- BT BTS BTR BTC (register operand, or an immediate bit offset) ------------------------

@family("bits.bt")
def bt(e, ins):
    """CF = the selected bit; a non-exact lazy record becomes K_RES keeping
    LF_RES (ZF SF PF unchanged) with CF = the bit; an exact EFLAGS gets CF
    patched (bits.py).  A memory operand with a register bit offset (which
    can address far from the operand) stays with the interpreter."""
    _check(ins)
    size = ins.size
    if size not in (2, 4):
        raise Unsupported("bt size")
    bits = 8 * size
    mnem = ins.row.mnem
    imm = ins.row.operands[1] == "Ib"
    if ins.mod != 3 and not imm:
        raise Unsupported("bt m, r")
    v, addr = _rm_get(e, ins, size)
    if imm:
        sh = str(ins.imm & (bits - 1))
    else:
        sh = e.op("and i32 %s, %d" % (e.reg_sz(ins.reg, size), bits - 1))
    m = e.op("shl i32 1, %s" % sh)
    if mnem != "bt":
        if mnem == "bts":
            nv = e.op("or i32 %s, %s" % (v, m))
        elif mnem == "btr":
            nv = e.op("and i32 %s, %s" % (v, e.op("xor i32 %s, -1" % m)))
        else:
            nv = e.op("xor i32 %s, %s" % (v, m))
        _rm_put(e, ins, size, addr, nv)
    cf = e.op("and i32 %s, 1" % e.op("lshr i32 %s, %s" % (v, sh)))
    op = e.lf(0)
    lazy = e.op("icmp ne i32 %s, 0" % op)
    e.set_lf(0, e.op("select i1 %s, i32 %s, i32 0" % (
        lazy, e.op("or i32 %d, %s" % (K_RES << 2, e.op("and i32 %s, 3" % op))))))
    e.set_lf(3, e.op("select i1 %s, i32 %s, i32 %s" % (lazy, cf, e.lf(3))))
    fl = e.lf(4)
    e.set_lf(4, e.op("select i1 %s, i32 %s, i32 %s" % (
        lazy, fl, e.op("or i32 %s, %s" % (e.op("and i32 %s, -2" % fl), cf)))))
    e.known = None


# --- IMUL r, r/m (, imm) ---------------------------------------------------------------------

def _imul_flags(e, size, p64):
    """K_RES record of a truncated signed product: CF = OF = it did not fit."""
    bits = 8 * size
    sh = 64 - bits
    lo = e.op("ashr i64 %s, %d" % (e.op("shl i64 %s, %d" % (p64, sh)), sh))
    fits = e.op("icmp eq i64 %s, %s" % (lo, p64))
    lfb = e.op("select i1 %s, i32 0, i32 3" % fits)
    r = e.op("and i32 %s, %d" % (e.op("trunc i64 %s to i32" % p64), MASKS[size]))
    return r, lfb


def _sext64(e, v, size):
    if size == 4:
        return e.op("sext i32 %s to i64" % v)
    sh = 64 - 8 * size
    z = e.op("zext i32 %s to i64" % v)
    return e.op("ashr i64 %s, %d" % (e.op("shl i64 %s, %d" % (z, sh)), sh))


@family("muldiv.imul2", "muldiv.imul3")
def imul_to_reg(e, ins):
    _check(ins)
    size = ins.size
    if size not in (2, 4):
        raise Unsupported("size")
    b, _ = _rm_get(e, ins, size)
    if ins.row.build == "muldiv.imul3":
        imm = ins.imm & MASKS[size]
        imm -= (imm & (MASKS[size] ^ (MASKS[size] >> 1))) << 1
        a64 = str(imm)
    else:
        a64 = _sext64(e, e.reg_sz(ins.reg, size), size)
    p = e.op("mul i64 %s, %s" % (_sext64(e, b, size), a64))
    r, lfb = _imul_flags(e, size, p)
    e.set_reg_sz(ins.reg, size, r)
    e.set_flags(K_RES, size, r, None, lfb)


# --- MUL IMUL DIV IDIV r/m32 (F7 /4-/7) -------------------------------------------------------

@family("muldiv.muldiv")
def muldiv(e, ins):
    _check(ins)
    if ins.size != 4:
        raise Unsupported("muldiv size")
    mnem = ins.row.mnem
    src, _ = _rm_get(e, ins, 4)
    eax = e.reg(0)
    if mnem in ("mul", "imul"):
        ext = "zext" if mnem == "mul" else "sext"
        p = e.op("mul i64 %s, %s" % (e.op("%s i32 %s to i64" % (ext, eax)),
                                     e.op("%s i32 %s to i64" % (ext, src))))
        lo = e.op("trunc i64 %s to i32" % p)
        hi = e.op("trunc i64 %s to i32" % e.op("lshr i64 %s, 32" % p))
        if mnem == "mul":
            fits = e.op("icmp eq i32 %s, 0" % hi)
        else:
            fits = e.op("icmp eq i64 %s, %s" % (e.op("sext i32 %s to i64" % lo), p))
        e.set_reg(0, lo)
        e.set_reg(2, hi)
        e.set_flags(K_RES, 4, lo, None, e.op("select i1 %s, i32 0, i32 3" % fits))
        return
    edx = e.reg(2)
    n = e.op("or i64 %s, %s" % (e.op("shl i64 %s, 32" % e.op("zext i32 %s to i64" % edx)),
                                 e.op("zext i32 %s to i64" % eax)))
    zero = e.op("icmp eq i32 %s, 0" % src)
    # #DE (zero divisor, quotient too large): the interpreter runs it and raises
    if mnem == "div":
        d = e.op("zext i32 %s to i64" % src)
        dsafe = e.op("select i1 %s, i64 1, i64 %s" % (zero, d))
        q = e.op("udiv i64 %s, %s" % (n, dsafe))
        rem = e.op("urem i64 %s, %s" % (n, dsafe))
        big = e.op("icmp ugt i64 %s, 4294967295" % q)
    else:
        d = e.op("sext i32 %s to i64" % src)
        # n / -1 overflows for n = -2^63; any |quotient| >= 2^31 is #DE anyway
        m1 = e.op("icmp eq i64 %s, -1" % d)
        dsafe = e.op("select i1 %s, i64 1, i64 %s" % (e.op("or i1 %s, %s" % (zero, m1)), d))
        q0 = e.op("sdiv i64 %s, %s" % (n, dsafe))
        r0 = e.op("srem i64 %s, %s" % (n, dsafe))
        q = e.op("select i1 %s, i64 %s, i64 %s" % (m1, e.op("sub i64 0, %s" % n), q0))
        rem = e.op("select i1 %s, i64 0, i64 %s" % (m1, r0))
        minint = e.op("icmp eq i64 %s, -9223372036854775808" % n)
        lo_ok = e.op("icmp sge i64 %s, -2147483648" % q)
        hi_ok = e.op("icmp sle i64 %s, 2147483647" % q)
        inrange = e.op("and i1 %s, %s" % (lo_ok, hi_ok))
        big = e.op("or i1 %s, %s" % (e.op("xor i1 %s, true" % inrange),
                                      e.op("and i1 %s, %s" % (m1, minint))))
    e.to_shared("interp", e.op("or i1 %s, %s" % (zero, big)), e.eip, e.i)
    e.set_reg(0, e.op("trunc i64 %s to i32" % q))
    e.set_reg(2, e.op("trunc i64 %s to i32" % rem))


# --- CLC STC CMC CLD STD ---------------------------------------------------------------------

@family("datamov.flagop")
def flagop(e, ins):
    m = ins.row.mnem
    if m in ("cld", "std"):
        fl = e.lf(4)
        e.set_lf(4, e.op("and i32 %s, %d" % (fl, ~DF & 0xFFFFFFFF)) if m == "cld"
                 else e.op("or i32 %s, %d" % (fl, DF)))
        return
    fl = e.eflags()
    if m == "clc":
        v = e.op("and i32 %s, %d" % (fl, ~CF & 0xFFFFFFFF))
    elif m == "stc":
        v = e.op("or i32 %s, %d" % (fl, CF))
    else:
        v = e.op("xor i32 %s, %d" % (fl, CF))
    e.set_lf(4, e.op("or i32 %s, %d" % (v, FIXED1)))
    e.set_lf(0, "0")
    e.known = None


# --- XADD CMPXCHG BSWAP --------------------------------------------------------------------

@family("datamov.xadd")
def xadd(e, ins):
    _check(ins)
    size = ins.size
    d, addr = _rm_get(e, ins, size)
    s = e.reg_sz(ins.reg, size)
    r = e.op("add i32 %s, %s" % (d, s))
    if size < 4:
        r = e.op("and i32 %s, %d" % (r, MASKS[size]))
    if addr is not None:
        e.store(ins.seg, addr, size, r)
        e.set_reg_sz(ins.reg, size, d)
    else:
        e.set_reg_sz(ins.reg, size, d)     # the interpreter: register, then r/m
        e.set_reg_sz(ins.rm, size, r)
    e.set_flags(K_ADD, size, r, d, s)


@family("datamov.cmpxchg")
def cmpxchg(e, ins):
    _check(ins)
    size = ins.size
    d, addr = _rm_get(e, ins, size)
    a = e.reg_sz(0, size)
    src = e.reg_sz(ins.reg, size)
    eq = e.op("icmp eq i32 %s, %s" % (a, d))
    new = e.op("select i1 %s, i32 %s, i32 %s" % (eq, src, d))
    _rm_put(e, ins, size, addr, new)          # DEST is always written
    acc = e.reg_sz(0, size)                   # after the write (r/m may be EAX)
    e.set_reg_sz(0, size, e.op("select i1 %s, i32 %s, i32 %s" % (eq, acc, d)))
    r = e.op("sub i32 %s, %s" % (a, d))
    if size < 4:
        r = e.op("and i32 %s, %d" % (r, MASKS[size]))
    e.set_flags(K_SUB, size, r, a, d)


@family("datamov.bswap")
def bswap(e, ins):
    if ins.opsize != 32:
        raise Unsupported("bswap16")
    r = ins.opcode & 7
    e.needs_bswap = True
    e.set_reg(r, e.op("call i32 @llvm.bswap.i32(i32 %s)" % e.reg(r)))


__all__ = ["shift", "imul_to_reg", "muldiv", "flagop", "xadd", "cmpxchg", "bswap", "_imm"]


# --- MOVS STOS LODS SCAS CMPS without REP (32-bit addressing) ---------------------------------

def _string_step(e, size):
    """+size or -size by EFLAGS.DF (the EFLAGS word: DF is never lazy)."""
    df = e.op("and i32 %s, %d" % (e.lf(4), DF))
    return e.op("select i1 %s, i32 %d, i32 %d" % (e.op("icmp ne i32 %s, 0" % df), -size, size))


@family("string.movs", "string.stos", "string.lods", "string.scas", "string.cmps")
def string_single(e, ins):
    """The un-prefixed forms (string.py's _single/…32 closures): memory first,
    then the index registers; REP forms stay with the interpreter (chunked,
    restartable)."""
    if ins.rep is not None or ins.adsize != 32:
        raise Unsupported("rep string")
    size = ins.size
    fam = ins.row.build
    step = _string_step(e, size)
    src = ins.seg                      # DS or the override; ES:EDI is fixed
    if fam == "string.movs":
        si, di = e.reg(6), e.reg(7)
        v = e.load(src, si, size)
        e.store(0, di, size, v)
        e.set_reg(6, e.op("add i32 %s, %s" % (si, step)))
        e.set_reg(7, e.op("add i32 %s, %s" % (di, step)))
    elif fam == "string.stos":
        di = e.reg(7)
        e.store(0, di, size, e.reg_sz(0, size))
        e.set_reg(7, e.op("add i32 %s, %s" % (di, step)))
    elif fam == "string.lods":
        si = e.reg(6)
        v = e.load(src, si, size)
        e.set_reg_sz(0, size, v)
        e.set_reg(6, e.op("add i32 %s, %s" % (si, step)))
    elif fam == "string.scas":
        di = e.reg(7)
        b = e.load(0, di, size)
        a = e.reg_sz(0, size)
        r = e.op("sub i32 %s, %s" % (a, b))
        if size < 4:
            r = e.op("and i32 %s, %d" % (r, MASKS[size]))
        e.set_flags(K_SUB, size, r, a, b)
        e.set_reg(7, e.op("add i32 %s, %s" % (di, step)))
    else:                                 # cmps: [src:ESI] - [ES:EDI]
        si, di = e.reg(6), e.reg(7)
        a = e.load(src, si, size)
        b = e.load(0, di, size)
        r = e.op("sub i32 %s, %s" % (a, b))
        if size < 4:
            r = e.op("and i32 %s, %d" % (r, MASKS[size]))
        e.set_flags(K_SUB, size, r, a, b)
        e.set_reg(6, e.op("add i32 %s, %s" % (si, step)))
        e.set_reg(7, e.op("add i32 %s, %s" % (di, step)))
