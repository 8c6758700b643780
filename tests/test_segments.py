"""Protected-mode segment loads: selector and descriptor checks (emu/cpu/segments.py).

MOV/POP/LxS into DS ES FS GS SS go through cpu.load_sreg ->
segments.load_data_or_stack.  Every kind of selector is loaded - null, beyond
the GDT limit, TI=1 without/with an LDT, system descriptors, not present,
wrong privilege, read-only/execute-only/conforming code, expand-down data -
and the fault and error code compared with Unicorn (which implements these
checks; tests/difftest.py), plus SDM-worked cases where Unicorn does not
model the behaviour:

* segment-limit checks of data accesses (Unicorn quirk A1: none in protected
  mode), so expand-down segments are checked against the SDM here;
* the accessed bit: Unicorn sets it on MOV Sreg (compared, with the GDT in
  memory) - see test_far.py for far transfers, where it does not.
"""
import struct

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from emu.cpu import state as S
from emu.cpu import segments as sg
from emu.cpu.faults import CPUFault
from tests.difftest import check_same
from tests.layout import PROT32_PAGED as L, descriptor
from tests.oracle import assemble
from tests.guests.prot_machine import Machine, d32

SLOT = 0x30
SREGS = ("es", "ss", "ds", "fs", "gs")
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same(code, regs=None, phys_mem=None, count=1):
    ro, re_ = check_same(L, code, regs=regs, phys_mem=phys_mem, count=count)
    if ro.exception is None:
        for n in SREGS:
            if ro.sregs[n] & ~3:
                assert ro.hidden[n] == re_.hidden[n], (n, ro.hidden[n], re_.hidden[n])
    return ro, re_


def _has(mnem):
    from emu.cpu.opcodes import ROWS, implemented_rows
    impl = {r.build for r in implemented_rows()}
    return any(r.mnem == mnem and r.build in impl for r in ROWS)


# --- every kind of descriptor, every data/stack segment register ----------------------------

@settings(max_examples=150, **SETTINGS)
@given(access=st.integers(0, 255), flags=st.integers(0, 15), rpl=st.integers(0, 3),
       ring3=st.booleans(), sreg=st.sampled_from(SREGS),
       limit=st.sampled_from([0xFFFFF, 0, 0x1234]))
def test_mov_sreg_any_descriptor(access, flags, rpl, ring3, sreg, limit):
    """MOV Sreg, r16 with a random descriptor (accessed bit clear half of the
    time: Unicorn sets it in memory like the SDM says)."""
    d = descriptor(0x00123000, limit, access, flags)
    regs = dict(eax=SLOT | rpl)
    if ring3:
        regs["cpl"] = 3
    same(assemble("mov %s, ax" % sreg, 32), regs=regs, phys_mem=[(L.gdt_phys + SLOT, d)])


@pytest.mark.parametrize("sel", [0x0000, 0x0001, 0x0003, 0x0040, 0x0043, 0x0048, 0xFFF8,
                                 0x0004, 0x0007, 0x0028, 0x0008, 0x0018, 0x001B, 0x0010,
                                 0x0013, 0x0020, 0x0023, 0x0038, 0x0030])
@pytest.mark.parametrize("sreg", SREGS)
@pytest.mark.parametrize("ring3", [False, True])
def test_mov_sreg_layout_selectors(sel, sreg, ring3):
    """The layout's own GDT: null (DS..GS load it, SS: #GP(0)), beyond the limit
    and TI=1 without an LDT (#GP(sel & ~3)), the TSS (#GP), code, data of both
    rings with every RPL, the 16-bit code and small data segments."""
    regs = dict(eax=sel)
    if ring3:
        regs["cpl"] = 3
    ro, re_ = same(assemble("mov %s, ax" % sreg, 32), regs=regs)
    if sel & 0xFFFC == 0 and sreg != "ss":
        assert re_.exception is None and re_.sregs[sreg] == sel


def test_sdm_table_of_selector_faults():
    """The exact fault and error code for each kind of selector, worked out
    from the SDM (MOV pseudocode), at CPL 0 and CPL 3."""
    m = Machine()
    m.gdt(9, d32(0, 0xFFFFF, 0x13))                 # 0x48 data, not present
    m.gdt(10, d32(0, 0xFFFFF, 0x99))                # 0x50 execute-only code
    m.gdt(11, d32(0, 0xFFFFF, 0x9F))                # 0x58 conforming readable code, DPL 0
    m.gdt(12, d32(0, 0xFFFFF, 0x91))                # 0x60 read-only data
    m.gdt(13, d32(0x1000, 0x0FFF, 0x97, 0x4))       # 0x68 expand-down writable data, limit 0xFFF
    m.gdt(14, d32(0, 0xFFFFF, 0xD3))                # 0x70 data DPL 2
    cpu = m.cpu
    GP, NP, SSF = 13, 11, 12
    cases = [
        # (cpl, sreg, selector, expected (vector, code) or None = loads)
        (0, S.DS, 0x0000, None), (3, S.DS, 0x0003, None), (0, S.SS, 0x0000, (GP, 0)),
        (3, S.SS, 0x0003, (GP, 0)),
        (0, S.DS, 0x01F8, (GP, 0x1F8)), (3, S.ES, 0x01FB, (GP, 0x1F8)),   # beyond the GDT limit
        (0, S.DS, 0x000C, (GP, 0x000C)),                                  # TI=1, no LDT
        (0, S.DS, 0x0028, (GP, 0x28)), (0, S.SS, 0x0028, (GP, 0x28)),     # TSS: system
        (0, S.DS, 0x0048, (NP, 0x48)), (0, S.SS, 0x0048, (SSF, 0x48)),    # not present
        (0, S.FS, 0x0050, (GP, 0x50)),                                    # execute-only code
        (0, S.GS, 0x0008, None), (3, S.GS, 0x0008, (GP, 0x08)),           # readable code DPL 0
        (3, S.GS, 0x005B, None),                                          # conforming: no DPL check
        (0, S.SS, 0x0060, (GP, 0x60)), (0, S.DS, 0x0060, None),           # read-only data
        (0, S.SS, 0x0008, (GP, 0x08)),                                    # code as SS
        (3, S.DS, 0x0010, (GP, 0x10)), (0, S.DS, 0x0013, (GP, 0x10)),     # DPL < CPL / RPL
        (0, S.DS, 0x0070, None), (0, S.DS, 0x0072, None), (0, S.DS, 0x0073, (GP, 0x70)),
        (0, S.SS, 0x0013, (GP, 0x10)), (3, S.SS, 0x0020, (GP, 0x20)),     # SS: RPL != CPL
        (0, S.SS, 0x0023, (GP, 0x20)), (0, S.SS, 0x0070, (GP, 0x70)),     # SS: DPL != CPL
        (0, S.DS, 0x0068, None), (0, S.SS, 0x0068, None),                 # expand-down loads
    ]
    for cpl, sreg, sel, want in cases:
        cpu.set_cpl(cpl)
        try:
            cpu.load_sreg(sreg, sel)
            got = None
        except CPUFault as e:
            got = (e.vector, e.error_code)
        assert got == want, (cpl, S.SEG_NAMES[sreg], hex(sel), got, want)
        if want is None:
            assert cpu.get_seg(sreg)[0] == sel
    # a null data segment loads, and every use of it faults with #GP(0)
    cpu.set_cpl(0)
    cpu.load_sreg(S.DS, 0)
    with pytest.raises(CPUFault) as e:
        cpu.mem.rd8(S.DS, 0)
    assert (e.value.vector, e.value.error_code) == (GP, 0)


def test_expand_down_limits():
    """Expand-down data (SDM 3.4.5.1): valid offsets are limit+1 .. 0xFFFF (B=0)
    or 0xFFFFFFFF (B=1); below: #GP(0) for DS, #SS(0) for SS.  (Unicorn does no
    protected-mode data limit checks, quirk A1.)"""
    m = Machine()
    m.gdt(9, d32(L.pse_lin, 0x0FFF, 0x97, 0x0))   # 0x48: expand-down, B=0: 0x1000..0xFFFF
    m.gdt(10, d32(0, 0xFFFF0, 0x97, 0xC))         # 0x50: expand-down, G=1 B=1: 0xFFFF0FFF+1..4G-1
    cpu = m.cpu
    cpu.load_sreg(S.DS, 0x48)
    cpu.load_sreg(S.SS, 0x50)
    assert m.seg("ds") == (0x48, L.pse_lin, 0xFFF, 0x97)
    assert m.seg("ss").limit == 0xFFFF0FFF
    rd = cpu.mem.rd32
    for off, ok in ((0xFFF, False), (0x1000, True), (0xFFFC, True), (0xFFFD, False), (0, False)):
        try:
            rd(S.DS, off)
            got = True
        except CPUFault as e:
            assert (e.vector, e.error_code) == (13, 0)
            got = False
        assert got == ok, hex(off)
    for off, ok in ((0xFFFF0FFF, False), (0xFFFF1000, True), (0xFFFFFFFC, True)):
        try:
            cpu.mem.check_write(S.SS, off, 4)
            got = True
        except CPUFault as e:
            assert e.vector in (12, 14)
            got = e.vector != 12
        assert got == ok, hex(off)


def test_accessed_bit_and_hidden_parts():
    m = Machine()
    m.gdt(9, descriptor(0x12345678, 0xABCDE, 0x92, 0xC))     # A=0, G=1
    m.cpu.load_sreg(S.ES, 0x48)
    assert m.gdt_raw(9)[5] == 0x93                           # accessed bit written back
    assert m.seg("es") == (0x48, 0x12345678, 0xABCDEFFF, 0xC093)


def test_ldt_selectors():
    """TI=1 selectors come from the LDT: LDTR limit checks, an LDT entry loads."""
    m = Machine()
    ldt_lin = L.sys_lin + 0x7000
    m.write(ldt_lin, bytes(8) + descriptor(0x4000, 0xFFF, 0xF3, 0x4))   # entry 1: DPL 3 data
    R = m.R
    R[S.LDTR_SEL], R[S.LDTR_BASE], R[S.LDTR_LIMIT], R[S.LDTR_ATTR] = 0x58, ldt_lin, 0xF, 0x82
    m.cpu.load_sreg(S.FS, 0x0F)
    assert m.seg("fs") == (0x0F, 0x4000, 0xFFF, 0x40F3)
    with pytest.raises(CPUFault) as e:
        m.cpu.load_sreg(S.FS, 0x14)                       # entry 2: beyond the LDT limit
    assert (e.value.vector, e.value.error_code) == (13, 0x14)


def test_ldt_selector_against_unicorn():
    if not _has("lldt"):
        pytest.skip("LLDT not implemented yet")
    ldt_phys = 0x7000
    ldt = bytes(8) + descriptor(0x4000, 0xFFF, 0xF3, 0x4) + descriptor(0, 0xFFFFF, 0x93, 0xC)
    pm = [(L.gdt_phys + SLOT, descriptor(L.sys_lin + ldt_phys, 0x17, 0x82, 0)),
          (ldt_phys, ldt)]
    for sel in (0x0C, 0x0F, 0x14, 0x17, 0x1C, 0x04):
        same(assemble("lldt ax; mov ds, bx", 32), regs=dict(eax=SLOT, ebx=sel), phys_mem=pm,
             count=2)


_POP = {"pop ds": "db 0x1f", "pop es": "db 0x07", "pop ss": "db 0x17",
        "pop fs": "db 0x0f, 0xa1", "pop gs": "db 0x0f, 0xa9"}     # keystone adds 66 to these


@pytest.mark.parametrize("form", ["pop ds", "pop es", "pop fs", "pop gs", "pop ss",
                                  "lds eax, [0x410000]", "lss eax, [0x410000]",
                                  "lfs eax, [0x410000]"])
@pytest.mark.parametrize("sel", [0x0, 0x13, 0x23, 0x28, 0x40, 0x10, 0x08])
def test_pop_and_lxs_forms(form, sel):
    """POP Sreg and LxS use the same checks (their builders call cpu.load_sreg)."""
    mnem = form.split()[0]
    if not _has(mnem):
        pytest.skip("%s not implemented yet" % mnem)
    mem = [(L.regs["esp"], struct.pack("<I", sel)), (0x410000, struct.pack("<IH", 0x1234, sel))]
    ro, re_ = check_same(L, assemble(_POP.get(form, form), 32), mem=mem)


# --- helpers used by far transfers and delivery ---------------------------------------------------

def test_parse_and_gate_fields():
    d = descriptor(0xA1B2C3D4, 0x5, 0x9A, 0x8)
    lo, hi = struct.unpack("<II", d)
    assert sg.parse(lo, hi) == (0xA1B2C3D4, 0x5FFF, 0x809A)
    g = struct.pack("<HHBBH", 0x5678, 0x0008, 0x03, 0xEC, 0x1234)
    lo, hi = struct.unpack("<II", g)
    assert sg.gate_fields(lo, hi) == (0x08, 0x12345678, 3)


def test_plan_frame_expand_down_and_16bit_wrap():
    # 16-bit stack (B=0): SP wraps at 64 KiB; with limit 0xFFFF that is legal,
    # with limit 0x7FFF the wrapped push is beyond the limit -> #SS(code)
    w, nesp = sg.plan_frame(0, 0xFFFF, 0x93, 0x00010002, [(2, 1), (2, 2)], 0x55)
    assert nesp == 0x0001FFFE
    with pytest.raises(CPUFault) as e:
        sg.plan_frame(0, 0x7FFF, 0x93, 0x00010002, [(2, 1), (2, 2)], 0x55)
    assert (e.value.vector, e.value.error_code) == (12, 0x55)
    # B=0 keeps ESP[31:16] of ``keep``
    w, nesp = sg.plan_frame(0x1000, 0xFFFF, 0x93, 0x10, [(2, 0xAAAA), (4, 0xBBBBBBBB)], 0,
                            keep=0xDEAD0000)
    assert nesp == 0xDEAD000A and w == [(0x100E, 2, 0xAAAA), (0x100A, 4, 0xBBBBBBBB)]
    # expand-down B=1, limit 0xFFF: offsets 0x1000.. ok, 0xFFF not
    sg.plan_frame(0, 0xFFF, 0x4097, 0x1004, [(4, 0)], 0)
    with pytest.raises(CPUFault):
        sg.plan_frame(0, 0xFFF, 0x4097, 0x1003, [(4, 0)], 0)


def test_null_outer_segments_rule():
    m = Machine()
    cpu = m.cpu
    m.gdt(9, d32(0, 0xFFFFF, 0x9F))                 # conforming code DPL 0 (0x48)
    m.gdt(10, d32(0, 0xFFFFF, 0x9B))                # non-conforming readable code DPL 0 (0x50)
    cpu.load_sreg(S.DS, 0x10)
    cpu.load_sreg(S.ES, 0x48)
    cpu.load_sreg(S.FS, 0x50)
    cpu.load_sreg(S.GS, 0x23)
    sg.null_outer_segments(cpu, 3)
    assert [m.seg(n).sel for n in ("ds", "es", "fs", "gs")] == [0, 0x48, 0, 0x23]
    with pytest.raises(CPUFault):
        cpu.mem.rd8(S.DS, 0)


def test_store_frame_page_crossing_and_fault_atomicity():
    """A frame straddling two pages that are not physically contiguous (the
    layout maps the data pages in reverse) lands in both; if the second page
    faults, nothing is stored at all."""
    m = Machine()
    top = L.data_lin[0] + 0x2004
    esp = sg.write_frame(m.cpu, 0, 0xFFFFFFFF, 0xC093, top, [(2, 0x5566), (4, 0x11223344)],
                         False, 0)
    assert esp == top - 6                          # the dword sits at 0x..1FFE-0x..2001
    got = m.read(L.data_lin[0] + 0x1FFC, 4) + m.read(L.data_lin[0] + 0x2000, 4)
    assert got == b"\x00\x00\x44\x33" + b"\x22\x11\x66\x55"
    # the page after the read-only one is not present: a frame straddling them faults
    # (#PF on the second page) and leaves the first page untouched
    before = m.read(L.ro_lin + 0xFF8, 8)
    m.cpu.write_cr0(m.R[S.CR0] & ~0x10000)          # WP=0: the supervisor may write RO pages
    with pytest.raises(CPUFault) as e:
        sg.write_frame(m.cpu, 0, 0xFFFFFFFF, 0xC093, L.unmapped_lin + 2, [(4, 0xAABBCCDD)],
                       False, 0)
    assert e.value.vector == 14 and e.value.cr2 == L.unmapped_lin
    assert m.read(L.ro_lin + 0xFF8, 8) == before
