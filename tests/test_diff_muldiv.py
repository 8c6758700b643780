"""Differential tests (emu vs Unicorn) for MUL, IMUL (one-, two- and
three-operand forms), DIV and IDIV (builders muldiv.*), in REAL16 and
PROT32_PAGED, 8/16/32-bit, register and memory operands.

#DE (divide by zero, quotient overflow) is compared as an exception: the
fault is reported at the DIV/IDIV with no register changed.  Flags: MUL/IMUL
SF ZF AF PF and all six after DIV/IDIV are undefined (tests/flagmasks.py).
"""
import struct

import pytest
from hypothesis import given, settings, strategies as st

from tests.difftest import check_same
from tests.flagmasks import undefined_flags
from tests.rowcases import (SETTINGS, LAYOUTS, rows_of, params, draw_case, run_case,
                                 opsizes)

ROWS = rows_of("muldiv")
GPR = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")


def test_every_muldiv_row_is_implemented():
    from emu.cpu.opcodes import implemented_rows
    have = set(implemented_rows())
    assert [r for r in ROWS if r not in have] == []


def _divisor(case, layout, form):
    """The divisor the encoded DIV/IDIV will read (after regs/mem are applied)."""
    size = case.size
    modrm = case.code[-1] if form == "reg" else None
    if form == "reg":
        rm = modrm & 7
        if size == 1:
            v = case.regs.get(GPR[rm & 3], layout.regs[GPR[rm & 3]])
            return (v >> 8) & 0xFF if rm >= 4 else v & 0xFF
        v = case.regs.get(GPR[rm], layout.regs[GPR[rm]])
        return v & ((1 << (8 * size)) - 1)
    lo, data = case.mem[0]
    off = case.lin - lo
    return int.from_bytes(data[off:off + size], "little")


@pytest.mark.parametrize("layout,row,form", params(ROWS))
@settings(max_examples=30, **SETTINGS)
@given(data=st.data())
def test_muldiv_row(layout, row, form, data):
    opsize = data.draw(st.sampled_from(opsizes(row, layout)))
    case = draw_case(data.draw, row, layout, opsize, form)
    if row.mnem in ("div", "idiv") and data.draw(st.booleans()):
        # make the quotient fit most of the time: a dividend whose high half is
        # the zero/sign extension of its low half (IDIV -2^(n-1) / -1 still
        # overflows), or a high half below the divisor
        size = case.size
        bits = 8 * size
        r = case.regs
        low = r["eax"] & ((1 << bits) - 1)
        d = _divisor(case, layout, form)
        if row.mnem == "div":
            hi = data.draw(st.integers(0, max(d - 1, 0)))
        else:
            hi = ((1 << bits) - 1) if low >> (bits - 1) else 0
        if size == 1:
            r["eax"] = (r["eax"] & 0xFFFF00FF) | (hi & 0xFF) << 8
        elif size == 2:
            r["edx"] = (r["edx"] & 0xFFFF0000) | (hi & 0xFFFF)
        else:
            r["edx"] = hi & 0xFFFFFFFF
    run_case(layout, row, case)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda L: L.name)
@pytest.mark.parametrize("code,regs,vector", [
    # divide by zero
    ("div bl", dict(eax=0x1234, ebx=0), 0),
    ("div bx", dict(eax=0x1234, edx=0, ebx=0), 0),
    ("div ebx", dict(eax=0x1234, edx=0, ebx=0), 0),
    ("idiv bl", dict(eax=0x1234, ebx=0), 0),
    ("idiv ebx", dict(eax=5, edx=0, ebx=0), 0),
    # quotient overflow
    ("div bl", dict(eax=0x0100, ebx=1), 0),           # 256 / 1 > 0xFF
    ("div bx", dict(eax=0, edx=1, ebx=1), 0),
    ("div ebx", dict(eax=0, edx=0xFFFFFFFF, ebx=0xFFFFFFFF), 0),
    ("idiv bl", dict(eax=0xFF80, ebx=0xFF), 0),       # -128 / -1 = +128
    ("idiv bx", dict(eax=0x8000, edx=0xFFFF, ebx=0xFFFF), 0),
    ("idiv ebx", dict(eax=0x80000000, edx=0xFFFFFFFF, ebx=0xFFFFFFFF), 0),
    ("idiv bl", dict(eax=0x0080, ebx=1), 0),          # +128 / 1
    # the extremes that just fit
    ("idiv bl", dict(eax=0xFF80, ebx=1), None),       # -128 / 1 = -128
    ("idiv ebx", dict(eax=0x80000000, edx=0xFFFFFFFF, ebx=1), None),
    ("idiv bl", dict(eax=0xFF81, ebx=0xFF), None),    # -127 / -1
    ("div ebx", dict(eax=0xFFFFFFFF, edx=0xFFFFFFFE, ebx=0xFFFFFFFF), None),
    ("idiv ebx", dict(eax=7, edx=0, ebx=0xFFFFFFFE), None),     # 7 / -2 = -3 r 1
    ("idiv ebx", dict(eax=0xFFFFFFF9, edx=0xFFFFFFFF, ebx=2), None),  # -7/2 = -3 r -1
    ("mul ebx", dict(eax=0xFFFFFFFF, ebx=0xFFFFFFFF), None),
    ("imul ebx", dict(eax=0x80000000, ebx=0x80000000), None),
    ("imul bl", dict(eax=0x80, ebx=0xFF), None),
    ("imul eax, ebx, -1", dict(ebx=0x80000000), None),
    ("imul ax, bx, 0x7fff", dict(ebx=0x8000), None),
])
def test_muldiv_edges(layout, code, regs, vector):
    mnem = code.split()[0]
    ro, re_ = check_same(layout, code, regs=dict(regs, eflags=0x8D7),
                         flags_mask=undefined_flags(mnem))
    assert ro.vector == vector


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda L: L.name)
def test_div_by_memory_zero_faults_before_writing(layout):
    """DIV with a zero divisor in memory: #DE, EAX/EDX untouched."""
    if layout.paging:
        lin = layout.data_lin[0] + 0x10
        code = b"\xf7\x35" + struct.pack("<I", lin)          # div dword [lin]
        off = lin
    else:
        off = 0x10
        code = b"\x66\xf7\x36" + struct.pack("<H", off)      # div dword [off]
        lin = layout.regs["ds"].base + off
    ro, re_ = check_same(layout, code, regs=dict(eax=0x1234, edx=0x5678),
                         mem=[(lin, b"\0\0\0\0")], flags_mask=undefined_flags("div"))
    assert ro.vector == 0 and re_.regs["eax"] == 0x1234 and re_.regs["edx"] == 0x5678
