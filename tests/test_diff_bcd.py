"""Differential tests (emu vs Unicorn) for DAA DAS AAA AAS AAM AAD SALC
(builders bcd.*), in REAL16 and PROT32_PAGED.

Every AL value x the AF/CF inputs is run for DAA/DAS/AAA/AAS (exhaustive,
as one multi-instruction program per AL value so it stays fast), random AX
and immediates for AAM/AAD (AAM 0 -> #DE, compared as an exception), and all
rows through the shared random driver.  Masks: OF for DAA/DAS; OF SF ZF PF
for AAA/AAS; OF AF CF for AAM/AAD (tests/flagmasks.py).
"""
import pytest
from hypothesis import given, settings, strategies as st

from tests.difftest import check_same
from tests.flagmasks import undefined_flags
from tests.rowcases import (SETTINGS, LAYOUTS, rows_of, params, draw_case, run_case,
                                 opsizes)

ROWS = rows_of("bcd")


def test_every_bcd_row_is_implemented():
    from emu.cpu.opcodes import implemented_rows
    have = set(implemented_rows())
    assert [r for r in ROWS if r not in have] == []


@pytest.mark.parametrize("layout,row,form", params(ROWS))
@settings(max_examples=60, **SETTINGS)
@given(data=st.data())
def test_bcd_row(layout, row, form, data):
    opsize = data.draw(st.sampled_from(opsizes(row, layout)))
    case = draw_case(data.draw, row, layout, opsize, form,
                     imm_vals={"Ib": st.one_of(st.sampled_from([0, 1, 10, 16, 0xFF]),
                                               st.integers(0, 255))})
    run_case(layout, row, case)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda L: L.name)
@pytest.mark.parametrize("mnem,opcode", [("daa", 0x27), ("das", 0x2F), ("aaa", 0x37), ("aas", 0x3F)])
def test_adjust_exhaustive(layout, mnem, opcode):
    """All 256 AL values x AF x CF in REAL16 (in PROT32_PAGED one AF/CF
    combination per AL value, rotating), AH = 0xFF/0x00 alternately (AAA/AAS
    carry into AH).  Each check is one instruction from its own state."""
    mask = undefined_flags(mnem)
    # AAA/AAS ignore the incoming CF: AF alone is the input that matters
    combos = (0x2, 0x3, 0x12, 0x13) if mnem in ("daa", "das") else (0x2, 0x13)
    for al in range(256):
        for fl in (combos if layout.mode == 16 else (combos[al % len(combos)],)):
            ah = 0xFF if (al ^ fl) & 1 else 0x00
            check_same(layout, bytes([opcode]), regs=dict(eax=0x5A5A0000 | ah << 8 | al,
                                                          eflags=fl | (0x8C0 if al & 1 else 0)),
                       flags_mask=mask)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda L: L.name)
def test_aam_zero_faults(layout):
    ro, re_ = check_same(layout, bytes([0xD4, 0x00]), regs=dict(eax=0x1234, eflags=0x8D7))
    assert ro.vector == 0 and re_.regs["eax"] == 0x1234


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda L: L.name)
@pytest.mark.parametrize("imm", [1, 2, 7, 10, 16, 0x80, 0xFF])
def test_aam_aad_bases(layout, imm):
    for ax in (0x0000, 0x00FF, 0x0963, 0xFF09, 0x1234, 0x8080):
        check_same(layout, bytes([0xD4, imm]), regs=dict(eax=0xABCD0000 | ax, eflags=0x2),
                   flags_mask=undefined_flags("aam"))
        check_same(layout, bytes([0xD5, imm]), regs=dict(eax=0xABCD0000 | ax, eflags=0x8D7),
                   flags_mask=undefined_flags("aad"))


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda L: L.name)
def test_salc(layout):
    for fl in (0x2, 0x3, 0x8D6, 0x8D7):
        check_same(layout, bytes([0xD6]), regs=dict(eax=0x12345678, eflags=fl))
