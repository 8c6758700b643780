"""Differential tests (emu vs Unicorn) for BT BTS BTR BTC (register and
immediate bit offsets, register and memory operands) and BSF BSR (builders
bits.*), REAL16 and PROT32_PAGED, 16- and 32-bit operands.

The memory forms with a REGISTER bit offset address memory beyond the
operand: the offset is signed, the dword/word at EA + 4*(off >> 5) /
EA + 2*(off >> 4) is accessed (SDM "BT": "bit string" addressing).  Offsets
reaching outside the mapped data in PROT32_PAGED give #PF on both sides
(compared with CR2).  In REAL16 the EA is kept aligned to the operand size so
that the wrapped access can never straddle offset 0xFFFF (where Unicorn does
not raise the #GP the SDM asks for: oracle.py quirk A2).

BSF/BSR with a zero source: ZF = 1 and the destination is left unchanged
(the SDM says undefined; hardware and Unicorn leave it unchanged).
Masks: BT*: OF SF AF PF; BSF/BSR: CF OF SF AF PF (tests/flagmasks.py).
"""
import struct

import pytest
from hypothesis import given, settings, strategies as st

from tests.difftest import check_same
from tests.flagmasks import undefined_flags
from tests.rowcases import (SETTINGS, LAYOUTS, rows_of, params, draw_case, run_case,
                                 opsizes, reg32, seg_base)

ROWS = rows_of("bits")
GPR = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
BT_REG_ROWS = [r for r in ROWS if r.mnem.startswith("bt") and r.operands == ("Ev", "Gv")]


def test_every_bits_row_is_implemented():
    from emu.cpu.opcodes import implemented_rows
    have = set(implemented_rows())
    assert [r for r in ROWS if r not in have] == []


@pytest.mark.parametrize("layout,row,form", params(ROWS))
@settings(max_examples=25, **SETTINGS)
@given(data=st.data())
def test_bits_row(layout, row, form, data):
    opsize = data.draw(st.sampled_from(opsizes(row, layout)))
    imm = st.one_of(st.sampled_from([0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 0x7F, 0x80, 0xFF]),
                    st.integers(0, 255))
    case = draw_case(data.draw, row, layout, opsize, form, imm_vals={"Ib": imm})
    if form == "mem" and row.mnem != "bt" and row.mnem.startswith("bt") and data.draw(st.booleans()):
        case.code = b"\xf0" + case.code                   # LOCK: allowed, same result
    run_case(layout, row, case)


def _offset(size):
    bits = 8 * size
    near = st.integers(-0x2000 * 8, 0x2000 * 8) if size == 4 else st.integers(-0x8000, 0x7FFF)
    edge = st.sampled_from([0, 1, bits - 1, bits, -1, -bits, -bits - 1, 1 << (bits - 1),
                            (1 << (bits - 1)) - 1])
    return st.one_of(near, edge, st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1))


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda L: L.name)
@pytest.mark.parametrize("row", BT_REG_ROWS, ids=lambda r: r.mnem)
@settings(max_examples=60, **SETTINGS)
@given(data=st.data())
def test_bt_memory_register_offset(layout, row, data):
    """Register bit offsets into memory: signed, beyond the operand."""
    opsize = data.draw(st.sampled_from((16, 32)))
    size = opsize // 8
    off = data.draw(_offset(size))
    ea_off = data.draw(st.integers(0x100 // size, 0xF000 // size)) * size \
        if not layout.paging else None
    if layout.paging:
        ea_off = layout.data_lin[0] + data.draw(st.integers(0, layout.data_lin[1] - size))
    case = draw_case(data.draw, row, layout, opsize, "mem", style="abs", mem_off=ea_off)
    i = case.code.index(0x0F) + 2
    reg = (case.code[i] >> 3) & 7
    if reg == 4:
        # ESP as the offset register: fine in PROT32 (no stack use), but
        # keep the layout's stack pointer in REAL16 too - use ECX instead
        reg = 1
        code = bytearray(case.code)
        code[i] = (code[i] & ~0x38) | reg << 3
        case.code = bytes(code)
    name = GPR[reg]
    v = off & ((1 << (8 * size)) - 1)
    case.regs[name] = (case.regs[name] & ~((1 << (8 * size)) - 1) & 0xFFFFFFFF) | v
    # random bytes where the bit string lands, when that is mapped data
    shift = 5 if size == 4 else 4
    amask = 0xFFFFFFFF if layout.paging else 0xFFFF
    target = seg_base(layout) + ((ea_off + (off >> shift) * size) & amask)
    lo, n = layout.data_lin
    if lo <= target and target + size <= lo + n:
        case.mem.append((target, bytes(data.draw(st.binary(min_size=size, max_size=size)))))
    if data.draw(st.booleans()) and row.mnem != "bt":
        case.code = b"\xf0" + case.code
    run_case(layout, row, case)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda L: L.name)
@pytest.mark.parametrize("mnem", ["bsf", "bsr"])
@pytest.mark.parametrize("size", [2, 4])
def test_bsf_bsr_zero_source(layout, mnem, size):
    """Zero source: ZF=1, destination unchanged (Unicorn agrees)."""
    d, s = ("ax", "bx") if size == 2 else ("eax", "ebx")
    ro, re_ = check_same(layout, "%s %s, %s" % (mnem, d, s),
                         regs=dict(eax=0xDEADBEEF, ebx=0xFFFF0000 if size == 2 else 0,
                                   eflags=0x2), flags_mask=undefined_flags(mnem))
    assert re_.regs["eax"] == 0xDEADBEEF and re_.regs["eflags"] & 0x40
    # memory source
    if layout.paging:
        lin = layout.data_lin[0] + 0x20
        code = bytes([0x0F, 0xBC if mnem == "bsf" else 0xBD, 0x05]) + struct.pack("<I", lin)
        if size == 2:
            code = b"\x66" + code
    else:
        lin = seg_base(layout) + 0x20
        code = bytes([0x0F, 0xBC if mnem == "bsf" else 0xBD, 0x06]) + struct.pack("<H", 0x20)
        if size == 4:
            code = b"\x66" + code
    ro, re_ = check_same(layout, code, regs=dict(eax=0xDEADBEEF, eflags=0x8D7),
                         mem=[(lin, b"\0" * 4)], flags_mask=undefined_flags(mnem))
    assert re_.regs["eax"] == 0xDEADBEEF


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda L: L.name)
@settings(max_examples=40, **SETTINGS)
@given(data=st.data())
def test_bt_keeps_zf_after_lazy_ops(layout, data):
    """BT* leave ZF alone whatever produced it (lazy ADD/SUB/INC/logic/shift)."""
    prev = data.draw(st.sampled_from(["add eax, ebx", "sub eax, ebx", "inc eax", "and eax, ebx",
                                      "shl eax, 3", "neg eax", "rol eax, 1"]))
    bt = data.draw(st.sampled_from(["bt", "bts", "btr", "btc"]))
    if layout.mode == 16:
        prev = prev.replace("eax", "ax").replace("ebx", "bx")
        code = "%s; %s cx, dx; %s cx, 3" % (prev, bt, bt)
    else:
        code = "%s; %s ecx, edx; %s ecx, 3" % (prev, bt, bt)
    regs = dict(eax=data.draw(reg32()), ebx=data.draw(reg32()), ecx=data.draw(reg32()),
                edx=data.draw(reg32()), eflags=0x2)
    check_same(layout, code, regs=regs, count=None, flags_mask=undefined_flags(bt))
