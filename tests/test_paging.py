"""The 32-bit page walker on hand-built page tables."""
import itertools

import pytest
from hypothesis import given, settings, strategies as st

from emu.cpu.faults import CPUFault
from emu.mmu.paging import (A, CR0_PG, CR0_WP, CR4_PGE, CR4_PSE, D, G, P, PS, RW, US,
                            walk)
from emu.mmu.physmem import PhysMem

MB = 1 << 20
PD = 0x10000            # page directory
PT = 0x11000            # page table
FRAME = 0x20000         # the 4 KiB data page
LIN = 0x00C05123        # PDE index 3, PTE index 5, offset 0x123
PDE_AT = PD + 3 * 4
PTE_AT = PT + 5 * 4
CR0 = CR0_PG | 1


def setup_4k(pde_flags=P | RW | US, pte_flags=P | RW | US, ram=2 * MB):
    p = PhysMem(ram)
    p.write(PDE_AT, 4, PT | pde_flags)
    p.write(PTE_AT, 4, FRAME | pte_flags)
    return p


def setup_4m(pde_flags=P | RW | US | PS, frame=0x400000, ram=2 * MB):
    p = PhysMem(ram)
    p.write(PDE_AT, 4, frame | pde_flags)
    return p


def fault_of(fn):
    with pytest.raises(CPUFault) as e:
        fn()
    assert e.value.vector == 14
    return e.value


# ---------------------------------------------------------------- basics
def test_4k_translation_and_info():
    p = setup_4k()
    paddr, info = walk(p, PD, CR0, 0, LIN, False, False)
    assert paddr == FRAME | 0x123
    assert info.pde_addr == PDE_AT and info.pte_addr == PTE_AT
    assert not info.large and info.user and info.rw and info.sup_write
    assert not info.global_ and not info.dirty


def test_cr3_low_bits_and_lin_reduction():
    p = setup_4k()
    assert walk(p, PD | 0x18 | 0xFFF, CR0, 0, LIN, False, False)[0] == FRAME | 0x123
    assert walk(p, PD, CR0, 0, LIN + (1 << 32), False, False)[0] == FRAME | 0x123


def test_4m_translation_and_info():
    p = setup_4m()
    paddr, info = walk(p, PD, CR0, CR4_PSE, LIN, False, False)
    assert paddr == 0x400000 | (LIN & 0x3FFFFF)
    assert info.large and info.pte_addr is None and info.pde_addr == PDE_AT


def test_ps_ignored_without_pse():
    # With CR4.PSE=0, the PS bit is ignored: the PDE points to a page table.
    p = setup_4k(pde_flags=P | RW | US | PS)
    assert walk(p, PD, CR0, 0, LIN, False, False)[0] == FRAME | 0x123
    # with PSE the same PDE is a 4 MiB page whose frame (0x11000) sets bit 16:
    # a reserved bit -> #PF(P|RSVD)
    assert fault_of(lambda: walk(p, PD, CR0, CR4_PSE, LIN, False, False)).error_code == 9


def test_pat_bits_are_not_reserved():
    p = setup_4k(pte_flags=P | RW | 0x80)        # PTE bit 7 = PAT
    walk(p, PD, CR0, 0, LIN, False, False)
    q = setup_4m(pde_flags=P | RW | PS | 0x1000)  # 4 MiB PDE bit 12 = PAT
    assert walk(q, PD, CR0, CR4_PSE, LIN, False, False)[0] == 0x400000 | (LIN & 0x3FFFFF)


def test_global_bit():
    p = setup_4k(pte_flags=P | RW | G)
    assert walk(p, PD, CR0, CR4_PGE, LIN, False, False)[1].global_
    assert not walk(p, PD, CR0, 0, LIN, False, False)[1].global_
    q = setup_4k(pde_flags=P | RW | G)                # G in a 4K-PDE is ignored
    assert not walk(q, PD, CR0, CR4_PGE, LIN, False, False)[1].global_
    r = setup_4m(pde_flags=P | RW | PS | G)
    assert walk(r, PD, CR0, CR4_PSE | CR4_PGE, LIN, False, False)[1].global_


# ---------------------------------------------------------------- not present
@pytest.mark.parametrize("write,user", list(itertools.product([0, 1], [0, 1])))
def test_pde_not_present(write, user):
    p = setup_4k(pde_flags=RW | US)        # P=0
    before = bytes(p.ram)
    f = fault_of(lambda: walk(p, PD, CR0, CR4_PSE, LIN, write, user))
    assert f.error_code == (2 if write else 0) | (4 if user else 0)
    assert f.cr2 == LIN
    assert bytes(p.ram) == before          # no A bit on a fault


@pytest.mark.parametrize("write,user", list(itertools.product([0, 1], [0, 1])))
def test_pte_not_present(write, user):
    # the PDE would deny a user access, but "not present" wins: P=0 in the code
    p = setup_4k(pde_flags=P, pte_flags=RW | US)
    before = bytes(p.ram)
    f = fault_of(lambda: walk(p, PD, CR0 | CR0_WP, 0, LIN, write, user))
    assert f.error_code == (2 if write else 0) | (4 if user else 0)
    assert f.cr2 == LIN
    assert bytes(p.ram) == before


# ---------------------------------------------------------------- rights
def expected_allowed(us, rw, wp, write, user):
    """SDM vol. 3A §4.6 for 32-bit paging (no SMEP/SMAP)."""
    if user:
        return bool(us) and (not write or bool(rw))
    return not write or not wp or bool(rw)


COMBOS = list(itertools.product([0, 1], repeat=7))


@pytest.mark.parametrize("pde_us,pde_rw,pte_us,pte_rw,wp,write,user", COMBOS)
def test_rights_4k(pde_us, pde_rw, pte_us, pte_rw, wp, write, user):
    p = setup_4k(pde_flags=P | (US if pde_us else 0) | (RW if pde_rw else 0),
                 pte_flags=P | (US if pte_us else 0) | (RW if pte_rw else 0))
    cr0 = CR0 | (CR0_WP if wp else 0)
    before = bytes(p.ram)
    us, rw = pde_us and pte_us, pde_rw and pte_rw
    if expected_allowed(us, rw, wp, write, user):
        paddr, info = walk(p, PD, cr0, 0, LIN, write, user)
        assert paddr == FRAME | 0x123
        assert info.user == bool(us) and info.rw == bool(rw)
        assert info.sup_write == (bool(rw) or not wp)
        pde, pte = p.read(PDE_AT, 4), p.read(PTE_AT, 4)
        assert pde & A and pte & A
        assert bool(pte & D) == bool(write) and not pde & D
        assert info.dirty == bool(write)
    else:
        f = fault_of(lambda: walk(p, PD, cr0, 0, LIN, write, user))
        assert f.error_code == 1 | (2 if write else 0) | (4 if user else 0)
        assert f.cr2 == LIN
        assert bytes(p.ram) == before


@pytest.mark.parametrize("us,rw,wp,write,user", list(itertools.product([0, 1], repeat=5)))
def test_rights_4m(us, rw, wp, write, user):
    p = setup_4m(pde_flags=P | PS | (US if us else 0) | (RW if rw else 0))
    cr0 = CR0 | (CR0_WP if wp else 0)
    before = bytes(p.ram)
    if expected_allowed(us, rw, wp, write, user):
        paddr, info = walk(p, PD, cr0, CR4_PSE, LIN, write, user)
        assert paddr == 0x400000 | (LIN & 0x3FFFFF)
        pde = p.read(PDE_AT, 4)
        assert pde & A and bool(pde & D) == bool(write)
        assert info.dirty == bool(write)
    else:
        f = fault_of(lambda: walk(p, PD, cr0, CR4_PSE, LIN, write, user))
        assert f.error_code == 1 | (2 if write else 0) | (4 if user else 0)
        assert bytes(p.ram) == before


def test_hand_checked_error_codes():
    # supervisor write into a read-only user page: allowed with WP=0, #PF(3) with WP=1
    p = setup_4k(pte_flags=P | US)
    walk(p, PD, CR0, 0, LIN, True, False)
    assert fault_of(lambda: walk(p, PD, CR0 | CR0_WP, 0, LIN, True, False)).error_code == 3
    # user read of a supervisor page: 5; user write of a read-only page: 7
    q = setup_4k(pde_flags=P | RW)
    assert fault_of(lambda: walk(q, PD, CR0, 0, LIN, False, True)).error_code == 5
    r = setup_4k(pde_flags=P | US)
    assert fault_of(lambda: walk(r, PD, CR0, 0, LIN, True, True)).error_code == 7
    # not-present PDE, user write: 6
    s = setup_4k(pde_flags=0)
    assert fault_of(lambda: walk(s, PD, CR0, 0, LIN, True, True)).error_code == 6


# ---------------------------------------------------------------- reserved bits
@pytest.mark.parametrize("bit", range(13, 22))
@pytest.mark.parametrize("write,user", [(0, 0), (1, 1), (1, 0)])
def test_4m_reserved_bits(bit, write, user):
    p = setup_4m(pde_flags=P | RW | US | PS | (1 << bit))
    before = bytes(p.ram)
    f = fault_of(lambda: walk(p, PD, CR0, CR4_PSE, LIN, write, user))
    assert f.error_code == 1 | 8 | (2 if write else 0) | (4 if user else 0)
    assert f.cr2 == LIN
    assert bytes(p.ram) == before


def test_reserved_bits_only_checked_for_4m_pages():
    # the same bits in a PDE that points to a page table are part of its address
    p = PhysMem(2 * MB)
    p.write(PDE_AT, 4, 0x00102000 | P | RW)        # bit 13 set in a PT pointer
    p.write(0x00102000 + 5 * 4, 4, FRAME | P | RW)
    assert walk(p, PD, CR0, CR4_PSE, LIN, False, False)[0] == FRAME | 0x123


# ---------------------------------------------------------------- A/D bits
def test_accessed_and_dirty_4k():
    p = setup_4k()
    walk(p, PD, CR0, 0, LIN, False, True)
    assert p.read(PDE_AT, 4) == PT | P | RW | US | A
    assert p.read(PTE_AT, 4) == FRAME | P | RW | US | A
    _, info = walk(p, PD, CR0, 0, LIN, True, True)
    assert info.dirty
    assert p.read(PDE_AT, 4) == PT | P | RW | US | A          # no D in a 4K-PDE
    assert p.read(PTE_AT, 4) == FRAME | P | RW | US | A | D


def test_no_update_when_bits_already_set():
    p = setup_4k(pde_flags=P | RW | A, pte_flags=P | RW | A | D)
    writes = []
    orig = p.write
    p.write = lambda a, s, v: (writes.append((a, s, v)), orig(a, s, v))
    walk(p, PD, CR0, 0, LIN, True, False)
    assert writes == []


def test_ad_updates_are_4_byte_writes():
    p = setup_4k()
    writes = []
    orig = p.write
    p.write = lambda a, s, v: (writes.append((a, s, v)), orig(a, s, v))
    walk(p, PD, CR0, 0, LIN, True, False)
    assert writes == [(PDE_AT, 4, PT | P | RW | US | A),
                      (PTE_AT, 4, FRAME | P | RW | US | A | D)]


def test_update_false_changes_nothing():
    p = setup_4k()
    before = bytes(p.ram)
    _, info = walk(p, PD, CR0, 0, LIN, True, True, update=False)
    assert bytes(p.ram) == before and not info.dirty


def test_accessed_and_dirty_4m():
    p = setup_4m()
    walk(p, PD, CR0, CR4_PSE, LIN, False, False)
    assert p.read(PDE_AT, 4) == 0x400000 | P | RW | US | PS | A
    walk(p, PD, CR0, CR4_PSE, LIN, True, False)
    assert p.read(PDE_AT, 4) == 0x400000 | P | RW | US | PS | A | D


# ---------------------------------------------------------------- hostile tables
def test_self_mapping_page_directory():
    # PDE 3 points to the PD itself: the PD is used as the page table, and the
    # PTE read for LIN is PD[5].  A bits land in PD[3] and PD[5].
    p = PhysMem(2 * MB)
    p.write(PDE_AT, 4, PD | P | RW | US)
    p.write(PD + 5 * 4, 4, FRAME | P | RW | US)
    assert walk(p, PD, CR0, 0, LIN, True, False)[0] == FRAME | 0x123
    assert p.read(PDE_AT, 4) == PD | P | RW | US | A
    assert p.read(PD + 20, 4) == FRAME | P | RW | US | A | D
    # the PDE used as its own PTE: LIN with PTE index 3
    lin = (3 << 22) | (3 << 12) | 0x10
    paddr, info = walk(p, PD, CR0, 0, lin, True, False)
    assert paddr == PD | 0x10 and info.pde_addr == info.pte_addr == PDE_AT
    assert p.read(PDE_AT, 4) == PD | P | RW | US | A | D


def test_cr3_past_ram():
    p = PhysMem(2 * MB)
    # unmapped page directory: every PDE reads 0xFFFFFFFF
    f = fault_of(lambda: walk(p, 0x80000000, CR0, CR4_PSE, LIN, False, False))
    assert f.error_code == 1 | 8                      # PS + reserved bits set
    paddr, info = walk(p, 0x80000000, CR0, 0, LIN, True, True)
    assert paddr == 0xFFFFF000 | 0x123                # no PSE: follow PT at 0xFFFFF000
    assert info.pte_addr == 0xFFFFF000 | (5 * 4)
    assert p.counters["unmapped_writes"] == 0         # A/D already set: nothing written


def test_pte_past_ram_and_into_rom():
    p = setup_4k(pte_flags=P | RW)
    p.write(PTE_AT, 4, 0xF0000000 | P | RW)
    assert walk(p, PD, CR0, 0, LIN, True, False)[0] == 0xF0000123
    q = PhysMem(2 * MB)
    q.add_rom(0xF0000, b"\x00" * 0x10000)
    q.write(PDE_AT, 4, 0xF0000 | P | RW)             # page table inside ROM: all zeros
    f = fault_of(lambda: walk(q, PD, CR0, 0, LIN, False, False))
    assert f.error_code == 0
    q.write(PDE_AT, 4, 0x40000000 | P | RW)          # page table in unmapped space
    assert walk(q, PD, CR0, 0, LIN, True, False)[0] == 0xFFFFF123
    assert q.counters["unmapped_reads"] >= 1


def test_page_table_in_mmio():
    p = PhysMem(2 * MB)
    reads = []

    def rd(a, s):
        reads.append((a, s))
        return FRAME | P | RW | A | D

    p.add_mmio(0xFEB00000, 0x1000, rd, lambda a, s, v: None, "dev")
    p.write(PDE_AT, 4, 0xFEB00000 | P | RW)
    assert walk(p, PD, CR0, 0, LIN, True, False)[0] == FRAME | 0x123
    assert reads == [(0xFEB00000 + 20, 4)]


def test_a20_mask():
    p = setup_4k()
    p.write(PTE_AT, 4, 0x120000 | P | RW)
    paddr, _ = walk(p, PD, CR0, 0, LIN, False, False, a20_mask=0xFFEFFFFF)
    assert paddr == 0x020123


# ---------------------------------------------------------------- random tables
@given(pd=st.lists(st.integers(0, 0xFFFFFFFF), min_size=4, max_size=4),
       pt=st.lists(st.integers(0, 0xFFFFFFFF), min_size=4, max_size=4),
       cr4=st.sampled_from([0, CR4_PSE, CR4_PSE | CR4_PGE]),
       wp=st.booleans(), acc=st.lists(st.tuples(st.integers(0, 0xFFFFFFFF),
                                                 st.booleans(), st.booleans()), max_size=8))
@settings(max_examples=200, deadline=None)
def test_random_entries_never_crash(pd, pt, cr4, wp, acc):
    p = PhysMem(256 * 1024)
    p.add_mmio(0x30000, 0x1000, lambda a, s: 0xFFFFFFFF, lambda a, s, v: None, "m")
    for i, v in enumerate(pd):
        p.write(0x10000 + i * 0x100, 4, v)
    for i, v in enumerate(pt):
        p.write((v & 0x3F000) + 0x40 * i, 4, pt[i])
    cr0 = CR0 | (CR0_WP if wp else 0)
    for lin, write, user in acc:
        try:
            paddr, info = walk(p, 0x10000, cr0, cr4, lin, write, user)
        except CPUFault as f:
            assert f.vector == 14 and f.cr2 == lin
            assert f.error_code & ~0xF == 0
            assert bool(f.error_code & 2) == write and bool(f.error_code & 4) == user
        else:
            assert 0 <= paddr <= 0xFFFFFFFF and (paddr & 0xFFF) == (lin & 0xFFF)
            assert info.allows(write, user)
            if write:
                assert info.dirty
