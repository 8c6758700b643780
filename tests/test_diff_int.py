"""INT n, INT3, INTO and INT1 through the differential harness.

Unicorn reports a software interrupt without delivering it; emu delivers it
through the layout's IDT/IVT and the emulator side reads the pre-interrupt
state back from the frame (tests/emu_side.py), so both report the vector with
trap=True and EIP at the next instruction.  INT1 (ICEBP, F1) is a #UD in
Unicorn 2.1.4 (oracle.py); the SDM makes it a #DB delivered like an external
event (no gate DPL check), which is checked on emu alone."""
import pytest

from tests.difftest import check_same, emu_side
from tests.layout import PROT32_PAGED as P, REAL16 as R


@pytest.mark.parametrize("layout", [R, P], ids=["REAL16", "PROT32"])
@pytest.mark.parametrize("vector", [0x00, 0x21, 0x80, 0xFF])
def test_int_n(layout, vector):
    ro, re_ = check_same(layout, "int %#x" % vector, regs=dict(eax=0x1234, ebx=vector))
    assert re_.exception == (vector, None, True) and re_.eip == layout.code_lin - (
        0 if layout is P else R.regs["cs"].base) + 2


@pytest.mark.parametrize("layout", [R, P], ids=["REAL16", "PROT32"])
def test_int3_and_into(layout):
    check_same(layout, "int3")
    check_same(layout, "into", regs=dict(eflags=0x802))        # OF=1: #OF
    check_same(layout, "into; nop", regs=dict(eflags=0x002), count=2)   # OF=0: nothing


@pytest.mark.parametrize("layout", [R, P], ids=["REAL16", "PROT32"])
def test_int1_icebp_is_a_debug_trap(layout):
    r = emu_side(layout).run(bytes([0xF1]), count=1)
    assert r.exception == (1, None, True)
    assert r.eip == r.regs["eip"] and r.eip == (layout.code_lin - (
        0 if layout is P else R.regs["cs"].base) + 1)


def test_int1_ignores_the_gate_dpl_at_ring3():
    """INT 0x01 at CPL 3 through a DPL-0 gate is #GP(0x0A); ICEBP is not."""
    r = emu_side(P).run(bytes([0xF1]), regs=dict(cpl=3), count=1)
    assert r.exception == (1, None, True)
    r = emu_side(P).run(bytes([0xCD, 0x01]), regs=dict(cpl=3), count=1)
    assert (r.vector, r.error_code) == (13, 0x0A)
