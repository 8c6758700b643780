"""Shifts and rotates: ROL ROR RCL RCR SHL/SAL SHR SAR (C0 C1 D0-D3) and
SHLD/SHRD (0F A4 A5 AC AD).  Intel SDM Vol. 2, "RCL/RCR/ROL/ROR",
"SAL/SAR/SHL/SHR", "SHLD", "SHRD".

Count: masked to 5 bits (COUNT AND 1FH) for every operand size.  A masked
count of 0 changes nothing (operand and flags).  RCL/RCR rotate by
(masked count) MOD 9 / MOD 17 for 8/16-bit operands (the 33-bit rotation of a
32-bit operand needs no modulo); ROL/ROR rotate by (masked count) MOD size but
still set CF (and OF) whenever the masked count is non-zero.

Flags:
  SHL/SHR/SAR  CF = last bit shifted out, OF (defined for count 1 only),
               SF ZF PF from the result, AF undefined (we give 0, like QEMU).
               Recorded lazily as K_RES.  For counts > 1 we compute OF as
               QEMU does (MSB of the value shifted by count-1 XOR MSB of the
               result); SHL/SHR with count >= operand size: CF is undefined
               per the SDM, we give the bit shifted out of the widened value
               (0), as QEMU.
  rotates      only CF and OF change (SF ZF AF PF keep their values), so
               the flags are materialised and patched.  OF is computed for
               every non-zero count with the count-1 formula (QEMU does the
               same; the SDM leaves it undefined for counts != 1).
  SHLD/SHRD    as SHL/SHR on the concatenation; for a 16-bit operand and a
               count > 16 (result and flags undefined in the SDM) we follow
               Intel hardware as QEMU models it: dest:src:dest is shifted.

A memory operand is read and written back unchanged when the masked count
(or the RCL/RCR rotation) is 0: the access is a read-modify-write whatever
the count, so a read-only page faults (#PF/#GP) as on Bochs and Unicorn
(QEMU), and the page's dirty bit is set.
"""
from ..flags import K_RES, SZI, MASK, materialize, get_cf
from ..operands import reg_get, reg_set, rm_rmw
from ..state import ECX, EFLAGS, LF_OP, LF_RES, LF_B

_CF_OF = 0x801


def _calc_shift(mnem, bits):
    """f(a, c) -> (result, cf, of) for 1 <= c <= 31."""
    mask = (1 << bits) - 1
    msb = bits - 1
    sign = 1 << msb
    if mnem == "shl":
        def shl(a, c):
            t = a << (c - 1)
            r = (t << 1) & mask
            cf = (t >> msb) & 1
            return r, cf, cf ^ (r >> msb)
        return shl
    if mnem == "shr":
        def shr(a, c):
            t = a >> (c - 1)
            r = t >> 1
            return r, t & 1, ((t ^ r) >> msb) & 1
        return shr
    if mnem == "sar":
        def sar(a, c):
            t = (a - ((a & sign) << 1)) >> (c - 1)
            return (t >> 1) & mask, t & 1, 0
        return sar
    raise ValueError(mnem)


def _calc_rotate(mnem, bits):
    """f(a, c, cf_in) -> (result, cf, of), or None when nothing changes."""
    mask = (1 << bits) - 1
    msb = bits - 1
    if mnem == "rol":
        def rol(a, c, _cf):
            k = c % bits
            r = ((a << k) | (a >> (bits - k))) & mask
            cf = r & 1
            return r, cf, cf ^ (r >> msb)
        return rol
    if mnem == "ror":
        def ror(a, c, _cf):
            k = c % bits
            r = ((a >> k) | (a << (bits - k))) & mask
            cf = r >> msb
            return r, cf, cf ^ ((r >> (msb - 1)) & 1)
        return ror
    wide = bits + 1
    full = (1 << wide) - 1
    if mnem == "rcl":
        def rcl(a, c, cf_in):
            k = c % wide
            if not k:
                return None
            v = cf_in << bits | a
            v = ((v << k) | (v >> (wide - k))) & full
            r = v & mask
            return r, v >> bits, ((a ^ r) >> msb) & 1
        return rcl
    if mnem == "rcr":
        def rcr(a, c, cf_in):
            k = c % wide
            if not k:
                return None
            v = cf_in << bits | a
            v = ((v >> k) | (v << (wide - k))) & full
            r = v & mask
            return r, v >> bits, ((a ^ r) >> msb) & 1
        return rcr
    raise ValueError(mnem)


def _count(insn, form):
    """Constant masked count, or None for CL."""
    if form == "1":
        return 1
    if form == "Ib":
        return insn.imm & 0x1F
    return None


def shift(cpu, insn):
    R = cpu.R
    mnem = insn.row.mnem
    if mnem == "sal":
        mnem = "shl"
    size = insn.size
    szi = SZI[size]
    bits = 8 * size
    c = _count(insn, insn.row.operands[1])
    is_reg = insn.mod == 3
    if is_reg:
        get, put = reg_get(cpu, insn.rm, size), reg_set(cpu, insn.rm, size)
    else:
        get, put = rm_rmw(cpu, insn, size)

    if c == 0:
        if is_reg:
            return lambda: None

        def rmw_same():
            put(get())
        return rmw_same

    if mnem in ("shl", "shr", "sar"):
        op = K_RES << 2 | szi
        if is_reg and size == 4 and c is not None:
            return _shift32_const(R, mnem, insn.rm, c, op)
        calc = _calc_shift(mnem, bits)
        if c is not None:
            def sh_const():
                r, cf, of = calc(get(), c)
                put(r)
                R[LF_OP] = op
                R[LF_RES] = r
                R[LF_B] = cf | of << 1
            return sh_const

        def sh_cl():
            n = R[ECX] & 0x1F
            a = get()
            if not n:
                put(a)
                return
            r, cf, of = calc(a, n)
            put(r)
            R[LF_OP] = op
            R[LF_RES] = r
            R[LF_B] = cf | of << 1
        return sh_cl

    calc = _calc_rotate(mnem, bits)
    carry = mnem in ("rcl", "rcr")

    def rot():
        n = c if c is not None else R[ECX] & 0x1F
        a = get()
        if not n:
            put(a)
            return
        out = calc(a, n, get_cf(R) if carry else 0)
        if out is None:
            put(a)
            return
        r, cf, of = out
        put(r)
        e = materialize(R)
        R[EFLAGS] = (e & ~_CF_OF) | cf | (of << 11)
    return rot


def _shift32_const(R, mnem, d, c, op):
    """Hot forms: SHL/SHR/SAR r32, imm/1."""
    if mnem == "shl":
        back = 32 - c

        def shl32():
            a = R[d]
            r = (a << c) & 0xFFFFFFFF
            cf = (a >> back) & 1
            R[d] = r
            R[LF_OP] = op
            R[LF_RES] = r
            R[LF_B] = cf | (cf ^ (r >> 31)) << 1
        return shl32
    c1 = c - 1
    if mnem == "shr":
        if c == 1:
            def shr32_1():
                a = R[d]
                r = a >> 1
                R[d] = r
                R[LF_OP] = op
                R[LF_RES] = r
                R[LF_B] = (a & 1) | (a >> 31) << 1
            return shr32_1

        def shr32():
            a = R[d]
            r = a >> c
            R[d] = r
            R[LF_OP] = op
            R[LF_RES] = r
            R[LF_B] = (a >> c1) & 1
        return shr32

    def sar32():
        a = R[d]
        t = (a - ((a & 0x80000000) << 1)) >> c1
        r = (t >> 1) & 0xFFFFFFFF
        R[d] = r
        R[LF_OP] = op
        R[LF_RES] = r
        R[LF_B] = t & 1
    return sar32


def shxd(cpu, insn):
    """SHLD/SHRD Ev, Gv, Ib/CL."""
    R = cpu.R
    left = insn.row.mnem == "shld"
    size = insn.size
    bits = 8 * size
    mask = MASK[SZI[size]]
    msb = bits - 1
    op = K_RES << 2 | SZI[size]
    c = _count(insn, insn.row.operands[2])
    src = reg_get(cpu, insn.reg, size)
    if insn.mod == 3:
        get, put = reg_get(cpu, insn.rm, size), reg_set(cpu, insn.rm, size)
    else:
        get, put = rm_rmw(cpu, insn, size)
    if c == 0:
        if insn.mod == 3:
            return lambda: None

        def rmw_same():
            put(get())
        return rmw_same
    wide16 = size == 2

    def f():
        n = c if c is not None else R[ECX] & 0x1F
        a = get()
        if not n:
            put(a)
            return
        b = src()
        if left:
            v = (a << 32 | b << 16 | a) if wide16 else (a << 32 | b)
            t = (v << (n - 1)) >> 32
            r = ((v << n) >> 32) & mask
            cf = (t >> msb) & 1
        else:
            v = (a << 32 | b << 16 | a) if wide16 else (b << 32 | a)
            t = v >> (n - 1)
            r = (t >> 1) & mask
            cf = t & 1
        put(r)
        R[LF_OP] = op
        R[LF_RES] = r
        R[LF_B] = cf | (((t ^ r) >> msb) & 1) << 1
    return f


__all__ = ["shift", "shxd"]
