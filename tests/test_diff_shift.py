"""Differential tests (emu vs Unicorn) for ROL ROR RCL RCR SHL SHR SAL SAR
(C0 C1 D0 D1 D2 D3) and SHLD/SHRD (0F A4 A5 AC AD): every row, REAL16 and
PROT32_PAGED, 8/16/32-bit, register and memory operands, counts biased
towards 0, 1, the operand width and the 5-bit mask (8, 9, 16, 17, 31, 32, 33).

Masked flags: only what tests/flagmasks.py says the SDM leaves undefined for
that count (AF for a non-zero shift count, OF for counts > 1, CF of SHL/SHR
for counts >= the width, everything for SHLD/SHRD counts > the width).

SHLD/SHRD with a 16-bit operand and a count of 17..31: the SDM says the
destination is undefined.  Unicorn (QEMU) implements what Intel hardware
does (dest:src:dest is shifted) and emu does the same, so the destination is
compared; only the flags are masked.
"""
import pytest
from hypothesis import given, settings, strategies as st

from tests.difftest import check_same
from tests.flagmasks import undefined_flags
from tests.layout import PROT32_PAGED
from tests.rowcases import (SETTINGS, LAYOUTS, rows_of, params, draw_case, run_case,
                                 opsizes, count8)

ROWS = rows_of("shift")


def test_every_shift_row_is_implemented():
    from emu.cpu.opcodes import implemented_rows
    have = set(implemented_rows())
    assert [r for r in ROWS if r not in have] == []


@pytest.mark.parametrize("layout,row,form", params(ROWS))
@settings(max_examples=6, **SETTINGS)
@given(data=st.data())
def test_shift_row(layout, row, form, data):
    opsize = data.draw(st.sampled_from(opsizes(row, layout)))
    case = draw_case(data.draw, row, layout, opsize, form, imm_vals={"Ib": count8()})
    run_case(layout, row, case)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda L: L.name)
@pytest.mark.parametrize("mnem", ["rol", "ror", "rcl", "rcr", "shl", "shr", "sar"])
@pytest.mark.parametrize("reg,size", [("al", 1), ("ax", 2), ("eax", 4)])
def test_every_count(layout, mnem, reg, size):
    """Every count 0..33 by CL on a fixed pattern: the mod 9/17 RCL/RCR
    rotation, ROL/ROR by multiples of the width (CF still set), count 0
    leaving flags alone, the 5-bit mask (32 == 0, 33 == 1)."""
    value = {1: 0x12345681, 2: 0x123480C1, 4: 0x80010081}[size]
    for c in range(34):
        cf = (c >> 1) & 1
        check_same(layout, "%s %s, cl" % (mnem, reg),
                   regs=dict(eax=value, ecx=0xFFFFFF00 | c, eflags=0x8D6 | cf),
                   flags_mask=undefined_flags(mnem, count=c, size=size))


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda L: L.name)
@pytest.mark.parametrize("mnem", ["shld", "shrd"])
@pytest.mark.parametrize("size", [2, 4])
def test_shxd_every_count(layout, mnem, size):
    d, s = ("ax", "bx") if size == 2 else ("eax", "ebx")
    for c in range(34):
        check_same(layout, "%s %s, %s, cl" % (mnem, d, s),
                   regs=dict(eax=0x8001_2345, ebx=0x6789_ABCD, ecx=c, eflags=0x8D7),
                   flags_mask=undefined_flags(mnem, count=c, size=size))
        check_same(layout, "%s %s, %s, %d" % (mnem, d, s, c),
                   regs=dict(eax=0x7FFF_0001, ebx=0x8000_8000, eflags=0x2),
                   flags_mask=undefined_flags(mnem, count=c, size=size))


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda L: L.name)
def test_shift_chain(layout):
    """Lazy flags produced by shifts consumed by the next instruction."""
    if layout.mode == 32:
        code = "shl eax, 1; adc ebx, 0; shr ecx, 1; rcl edx, 1; sar esi, 31; sbb edi, edi; ror eax, 3; rcr ebx, 1"
    else:
        code = "shl ax, 1; adc bx, 0; shr cx, 1; rcl dx, 1; sar si, 15; sbb di, di; ror ax, 3; rcr bx, 1"
    for seed in range(30):
        v = [(seed * 0x9E3779B9 * (i + 3)) & 0xFFFFFFFF for i in range(6)]
        check_same(layout, code, regs=dict(eax=v[0], ebx=v[1], ecx=v[2], edx=v[3], esi=v[4],
                                           edi=v[5], eflags=0x2 | (seed & 1)),
                   count=None)


@pytest.mark.parametrize("code", ["shl dword ptr [0x%x], cl", "rcl byte ptr [0x%x], cl",
                                  "rol word ptr [0x%x], 0", "shld dword ptr [0x%x], ebx, cl",
                                  "rcr byte ptr [0x%x], 9"])
def test_count_zero_on_read_only_page(code):
    """A masked count of 0 (or an RCL/RCR rotation of 0) still does the
    read-modify-write access: a read-only page gives #PF (write) on both."""
    L = PROT32_PAGED
    ro, re_ = check_same(L, code % L.ro_lin, regs=dict(ecx=0x20, eflags=0x8D7))
    assert ro.vector == 14 and re_.vector == 14
