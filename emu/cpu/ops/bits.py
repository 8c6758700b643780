"""Bit test and bit scan: BT BTS BTR BTC (0F A3/AB/B3/BB Ev,Gv and 0F BA /4-7
Ev,Ib), BSF BSR (0F BC/BD).  Intel SDM Vol. 2, pages "BT", "BTS", "BTR",
"BTC", "BSF", "BSR".

Bit offset: an immediate is taken modulo the operand size (16/32), for a
register or a memory operand alike.  A register offset with a register
operand is taken modulo the operand size too; with a memory operand it is a
SIGNED 16/32-bit bit offset from the operand's address: the access is the
word/dword at EA + 2*(off >> 4) (16-bit) or EA + 4*(off >> 5) (32-bit),
arithmetic shifts, wrapped to the address size before the segment is applied
(what QEMU does; the SDM describes the bit string without saying more), and
the bit is off & 15 / off & 31.

Flags: BT*: CF = the selected bit (before BTS/BTR/BTC change it); ZF is
unchanged; OF SF AF PF are undefined.  To keep ZF without materialising,
a lazy state keeps LF_RES (so ZF, and also SF/PF, stay as they were) and
becomes K_RES with CF = the bit, OF = AF = 0.
BSF/BSR: ZF = (source == 0); the other five are undefined: we record a
logic result on the source (CF OF AF = 0, SF/PF from the source), exactly
what QEMU does.  With a zero source the destination is left unchanged: the
SDM says "undefined", Intel and AMD hardware leave it unchanged, and so does
Unicorn (QEMU passes the old destination as the zero-input value).
"""
from ..flags import K_RES, K_LOGIC, SZI
from ..operands import reg_get, reg_set, rm_get, rm_rmw, ea
from ..state import EFLAGS, LF_OP, LF_RES, LF_B

_RES = K_RES << 2


def bt(cpu, insn):
    R = cpu.R
    mnem = insn.row.mnem
    size = insn.size
    bits = 8 * size
    imm = insn.row.operands[1] == "Ib"
    write = mnem != "bt"

    apply = None          # new operand value for bit mask m (BTS/BTR/BTC)
    if mnem == "bts":
        def apply(v, m):
            return v | m
    elif mnem == "btr":
        def apply(v, m):
            return v & ~m
    elif mnem == "btc":
        def apply(v, m):
            return v ^ m

    if insn.mod == 3 or imm:
        if insn.mod == 3:
            get, put = reg_get(cpu, insn.rm, size), reg_set(cpu, insn.rm, size)
        elif write:
            get, put = rm_rmw(cpu, insn, size)
        else:
            get, put = rm_get(cpu, insn, size), None
        if imm:
            sh = insn.imm & (bits - 1)
            m = 1 << sh
            if not write:
                def bt_imm():
                    cf = (get() >> sh) & 1
                    op = R[LF_OP]
                    if op:
                        R[LF_OP] = _RES | (op & 3)
                        R[LF_B] = cf
                    else:
                        R[EFLAGS] = (R[EFLAGS] & ~1) | cf
                return bt_imm

            def btx_imm():
                v = get()
                put(apply(v, m))
                cf = (v >> sh) & 1
                op = R[LF_OP]
                if op:
                    R[LF_OP] = _RES | (op & 3)
                    R[LF_B] = cf
                else:
                    R[EFLAGS] = (R[EFLAGS] & ~1) | cf
            return btx_imm
        off = reg_get(cpu, insn.reg, size)
        omask = bits - 1

        def btx_reg():
            sh = off() & omask
            v = get()
            if write:
                put(apply(v, 1 << sh))
            cf = (v >> sh) & 1
            op = R[LF_OP]
            if op:
                R[LF_OP] = _RES | (op & 3)
                R[LF_B] = cf
            else:
                R[EFLAGS] = (R[EFLAGS] & ~1) | cf
        return btx_reg

    # memory operand, register bit offset: signed, may address beyond the operand
    addr = ea(cpu, insn)
    off = reg_get(cpu, insn.reg, size)
    amask = 0xFFFFFFFF if insn.adsize == 32 else 0xFFFF
    rd = cpu.mem.RD[size]
    wr = cpu.mem.WR[size]
    s = insn.seg
    sign = 1 << (bits - 1)
    shift = 4 if size == 2 else 5
    omask = bits - 1

    def btx_mem():
        o = off()
        sh = o & omask
        o -= (o & sign) << 1
        a = (addr() + (o >> shift) * size) & amask
        v = rd(s, a)
        if write:
            wr(s, a, apply(v, 1 << sh))
        cf = (v >> sh) & 1
        op = R[LF_OP]
        if op:
            R[LF_OP] = _RES | (op & 3)
            R[LF_B] = cf
        else:
            R[EFLAGS] = (R[EFLAGS] & ~1) | cf
    return btx_mem


def bsf_bsr(cpu, insn):
    R = cpu.R
    size = insn.size
    op = K_LOGIC << 2 | SZI[size]
    src = rm_get(cpu, insn, size)
    put = reg_set(cpu, insn.reg, size)
    if insn.row.mnem == "bsf":
        def bsf():
            v = src()
            if v:
                put((v & -v).bit_length() - 1)
            R[LF_OP] = op
            R[LF_RES] = v
        return bsf

    def bsr():
        v = src()
        if v:
            put(v.bit_length() - 1)
        R[LF_OP] = op
        R[LF_RES] = v
    return bsr


__all__ = ["bt", "bsf_bsr"]
