"""Paging seen through the system instructions: guest programs (tests/guests/
sys_paging.py) that edit a PTE and INVLPG, switch CR3, watch A/D bits being
set by their own accesses, and toggle CR0.WP.

Each program runs in Unicorn and in emu from the same PROT32_PAGED state
(tests/difftest.check_same: registers, exception, CR2 and all of RAM - so
the A/D bits the walkers set are compared too), then the emu result is
checked against the values the SDM predicts (worked out in the guest
module), and the shadow MMU's audit must be clean.
"""
import struct

import pytest
from hypothesis import given, settings, strategies as st

from tests.difftest import check_same, emu_side
from tests.guests import sys_paging
from tests.layout import PROT32_PAGED as P

SET = settings(max_examples=25, deadline=None)


def _check_expect(g, re_):
    exp = dict(g.expect)
    phys = exp.pop("phys", {})
    vector = exp.pop("vector", None)
    code = exp.pop("error_code", None)
    cr2 = exp.pop("cr2", None)
    for reg, v in exp.items():
        assert re_.regs[reg] == v, "%s: %s = %#x, expected %#x" % (g.name, reg, re_.regs[reg], v)
    if vector is None:
        assert re_.exception is None, "%s: unexpected %r" % (g.name, re_.exception)
    else:
        assert re_.exception is not None and re_.exception.vector == vector, re_.exception
        assert re_.exception.error_code == code
        if cr2 is not None:
            assert re_.cr2 == cr2
    ram = re_.emu.phys.ram
    for pa, v in phys.items():
        assert struct.unpack_from("<I", ram, pa)[0] == v, "%s: phys %#x" % (g.name, pa)
    assert re_.emu.mmu.audit() == []


@pytest.mark.parametrize("make", sys_paging.GUESTS, ids=lambda f: f.__name__)
def test_paging_guest(make):
    g = make(P)
    ro, re_ = check_same(P, g.asm, regs=g.regs, mem=g.mem, phys_mem=g.phys_mem, count=None)
    _check_expect(g, re_)


@SET
@given(a=st.integers(0, 2**32 - 1), b=st.integers(0, 2**32 - 1),
       page=st.integers(1, 7))
def test_pte_remap_any_frame(a, b, page):
    """PTE of data page 0 re-pointed at data page ``page``'s frame."""
    lin0 = P.data_lin[0]
    lin = lin0 + 0x1000 * page
    frame = P.lin_to_phys(lin)
    pte = sys_paging.pte_lin(P, lin0)
    asm = """
        mov eax, [{l0:#x}]
        mov ebx, [{pte:#x}]
        and ebx, 0xfff
        or ebx, {frame:#x}
        mov [{pte:#x}], ebx
        invlpg [{l0:#x}]
        mov ecx, [{l0:#x}]
    """.format(l0=lin0, pte=pte, frame=frame)
    mem = [(lin0, struct.pack("<I", a)), (lin, struct.pack("<I", b))]
    ro, re_ = check_same(P, asm, mem=mem, count=None)
    assert (re_.eax, re_.ecx) == (a, b)
    assert re_.emu.mmu.audit() == []


def test_invlpg_cpl3_gp():
    check_same(P, "invlpg [0x410000]", regs=dict(cpl=3))
    r = emu_side(P).run("invlpg [0x410000]", regs=dict(cpl=3))
    assert (r.vector, r.error_code) == (13, 0)


def test_invlpg_unmapped_and_flags():
    """INVLPG of an unmapped address is no fault; it changes no flag."""
    check_same(P, "invlpg [0x1000]", regs=dict(eflags=0x8d7))
    check_same(P, "invlpg [eax]", regs=dict(eax=0xFFFFFFFF))


def test_mov_cr3_cpl3_gp():
    for code in ("mov cr3, eax", "mov eax, cr3"):
        check_same(P, code, regs=dict(cpl=3, eax=P.regs["cr3"]))


def test_user_write_ro_page_faults_whatever_wp():
    """CPL 3: a write to a read-only user page is #PF(P|W|U) with WP=0 and WP=1."""
    for cr0 in (P.regs["cr0"], P.regs["cr0"] & ~0x10000):
        ro, re_ = check_same(P, "mov dword ptr [%#x], 1" % P.ro_lin, regs=dict(cpl=3, cr0=cr0))
        assert (re_.vector, re_.error_code, re_.cr2) == (14, 7, P.ro_lin)


def test_supervisor_write_ro_page_wp():
    for cr0, fault in ((P.regs["cr0"], True), (P.regs["cr0"] & ~0x10000, False)):
        ro, re_ = check_same(P, "mov dword ptr [%#x], 0x12345678" % P.ro_lin, regs=dict(cr0=cr0))
        if fault:
            assert (re_.vector, re_.error_code, re_.cr2) == (14, 3, P.ro_lin)
        else:
            assert re_.exception is None
            assert struct.unpack_from("<I", re_.emu.phys.ram, P.ro_phys)[0] == 0x12345678


def test_cr4_pse_off_ignores_ps():
    """With CR4.PSE cleared the PSE PDE is walked as a page-table pointer."""
    code = "mov eax, cr4; and eax, 0xffffffef; mov cr4, eax; mov ebx, [%#x]" % P.pse_lin
    ro, re_ = check_same(P, code, count=None)
    assert re_.cr4 & 0x10 == 0
    # phys 0x400000 (the 4 MiB frame) now read as a page table: zeros, not present
    assert (re_.vector, re_.error_code, re_.cr2) == (14, 0, P.pse_lin)
