"""The shadow-paging MMU: fills, write tracking, address-space cache, hostile tables."""
import pytest
from hypothesis import given, settings, strategies as st

from emu.cpu.faults import CPUFault
from emu.cpu.state import A20, CPL, CR0, CR3, CR4, CPUState, views
from emu.mmu.paging import (A, CR0_PG, CR0_WP, CR4_PGE, CR4_PSE, D, P, PS, RW, US,
                            walk)
from emu.mmu.physmem import WATCH_CODE, WATCH_PT, PhysMem
from emu.mmu.shadow import MMU

MB = 1 << 20
PE = 1
PD = 0x10000
PD2 = 0x14000
PT0 = 0x11000           # page table for 0x00000000-0x003FFFFF
PT1 = 0x12000           # page table for 0x00400000-0x007FFFFF
PT2 = 0x15000
URW = P | RW | US


class VM:
    """Just enough machine for the MMU: state words, RAM, an MMU."""

    def __init__(self, ram=4 * MB, max_shadows=8):
        self.state = CPUState()
        self.R, _ = views(self.state)
        self.R[A20] = 1
        self.phys = PhysMem(ram)
        self.mmu = MMU(self.phys, self.R, max_shadows=max_shadows)

    def paging(self, cr3=PD, wp=False, pse=False, pge=False):
        R = self.R
        R[CR3] = cr3
        R[CR0] = CR0_PG | PE | (CR0_WP if wp else 0)
        R[CR4] = (CR4_PSE if pse else 0) | (CR4_PGE if pge else 0)
        self.mmu.paging_changed()

    def cr3(self, value):
        self.R[CR3] = value
        self.mmu.cr3_changed()

    def pde(self, lin, value, pd=PD):
        self.phys.write(pd + ((lin >> 22) << 2), 4, value)

    def pte(self, lin, value, pt=PT0):
        self.phys.write(pt + (((lin >> 12) & 0x3FF) << 2), 4, value)

    def audit_clean(self):
        errs = self.mmu.audit()
        assert errs == [], errs


def pf(fn):
    with pytest.raises(CPUFault) as e:
        fn()
    assert e.value.vector == 14
    return e.value


@pytest.fixture
def vm():
    v = VM()
    v.pde(0, PT0 | URW)
    v.pde(0x400000, PT1 | URW)
    return v


# ---------------------------------------------------------------- paging off
def test_paging_off_identity():
    v = VM()
    v.phys.add_rom(0xF0000, b"\x90" * 0x10000)
    v.phys.add_mmio(0xA0000, 0x20000, lambda a, s: 0x12, lambda a, s, x: None, "vga")
    m = v.mmu
    m.write(0x1234, 4, 0xDEADBEEF, False)
    assert m.read(0x1234, 4, False) == 0xDEADBEEF
    assert m.rtlb[1] == 0x1000 and m.wtlb[1] == 0x1000
    assert m.read(0xF0000, 1, False) == 0x90
    m.write(0xF0000, 1, 0, False)
    assert m.rtlb[0xF0] == 0xF0000 and 0xF0 not in m.wtlb
    assert m.read(0xA0000, 1, False) == 0x12 and 0xA0 not in m.rtlb
    assert m.read(0x10000000, 4, False) == 0xFFFFFFFF and 0x10000 not in m.rtlb
    m.set_privilege(True)                     # no page protection: same dicts
    assert m.rtlb is m.cur.sr and m.read(0x1234, 4, True) == 0xDEADBEEF
    v.audit_clean()


def test_paging_off_a20():
    v = VM()
    v.R[A20] = 0
    v.mmu.paging_changed()
    v.mmu.write(0x101000, 4, 0x55AA55AA, False)
    assert v.phys.read(0x1000, 4) == 0x55AA55AA
    assert v.mmu.rtlb[0x101] == 0x1000 and v.mmu.wtlb[0x101] == 0x1000
    v.audit_clean()
    v.R[A20] = 1
    v.mmu.paging_changed()
    assert v.mmu.rtlb == {}
    assert v.mmu.read(0x101000, 4, False) == 0


# ---------------------------------------------------------------- fills
def test_read_then_write_fill(vm):
    vm.pte(0x5000, 0x200000 | URW)
    vm.paging()
    m = vm.mmu
    vm.phys.write(0x200010, 4, 0x11223344)
    assert m.read(0x5010, 4, False) == 0x11223344
    sh = m.cur
    assert sh.sr == {5: 0x200000} and sh.ur == {5: 0x200000}
    assert sh.sw == {} and sh.uw == {}            # D clear: no write entry yet
    assert vm.phys.read(PT0 + 20, 4) & (A | D) == A
    m.write(0x5010, 4, 0x99, False)
    assert vm.phys.read(0x200010, 4) == 0x99
    assert vm.phys.read(PT0 + 20, 4) & D
    assert sh.sw == {5: 0x200000} and sh.uw == {5: 0x200000}
    assert m.counters["fills"] == 2 and m.counters["walks"] == 2
    assert m.counters["track_invalidations"] == 0   # our own A/D updates drop nothing
    assert vm.phys.watch[PT0 >> 12] & WATCH_PT and vm.phys.watch[PD >> 12] & WATCH_PT
    vm.audit_clean()


def test_dirty_page_gets_write_entry_on_read(vm):
    vm.pte(0x5000, 0x200000 | URW | A | D)
    vm.paging()
    vm.mmu.read(0x5000, 1, True)
    assert vm.mmu.cur.uw == {5: 0x200000}
    vm.audit_clean()


def test_rights_classes(vm):
    vm.pte(0x1000, 0x201000 | P | RW | D)           # supervisor page
    vm.pte(0x2000, 0x202000 | P | US | D)           # user read-only
    vm.paging(wp=True)
    m = vm.mmu
    assert pf(lambda: m.read(0x1000, 4, True)).error_code == 5
    m.read(0x1000, 4, False)
    assert 1 in m.cur.sr and 1 not in m.cur.ur and 1 in m.cur.sw
    assert pf(lambda: m.write(0x2000, 4, 0, True)).error_code == 7
    assert pf(lambda: m.write(0x2000, 4, 0, False)).error_code == 3
    assert m.read(0x2000, 4, True) == 0
    assert 2 in m.cur.ur and 2 in m.cur.sr and 2 not in m.cur.sw and 2 not in m.cur.uw
    assert m.counters["page_faults"] == 3
    vm.audit_clean()
    # WP=0: the supervisor may write a read-only user page, the user still not
    vm.paging(wp=False)
    m.write(0x2000, 4, 0xAB, False)
    assert vm.phys.read(0x202000, 4) == 0xAB
    assert 2 in m.cur.sw and 2 not in m.cur.uw
    assert pf(lambda: m.write(0x2000, 4, 0, True)).error_code == 7
    vm.audit_clean()


def test_translate_and_bytes_helpers(vm):
    vm.pte(0x3000, 0x203000 | URW)
    vm.pte(0x4000, 0x210000 | URW)
    vm.paging()
    m = vm.mmu
    assert m.translate(0x3ABC, False, False) == 0x203ABC
    assert m.translate(0x3ABC, True, True, fetch=False) == 0x203ABC
    m.write_bytes(0x3FFE, b"\x01\x02\x03\x04", user=False)
    assert vm.phys.read(0x203FFE, 2) == 0x0201 and vm.phys.read(0x210000, 2) == 0x0403
    assert m.read_bytes(0x3FFD, 5, user=True) == b"\x00\x01\x02\x03\x04"


def test_fast_dicts_are_the_current_shadows(vm):
    vm.pte(0x5000, 0x200000 | URW)
    vm.paging()
    m = vm.mmu
    sh = m.cur
    assert m.rtlb is sh.sr and m.wtlb is sh.sw
    m.set_privilege(True)
    assert m.rtlb is sh.ur and m.wtlb is sh.uw
    vm.pde(0, PT0 | URW, pd=PD2)
    vm.cr3(PD2)
    assert m.cur is not sh and m.rtlb is m.cur.ur and m.wtlb is m.cur.uw
    m.set_privilege(False)
    assert m.rtlb is m.cur.sr
    vm.audit_clean()


# ---------------------------------------------------------------- write tracking
def fill_pages(vm, lins, user=False):
    for lin in lins:
        vm.mmu.write(lin, 4, lin, user)


def test_pte_store_invalidates_exactly_that_entry(vm):
    for i in range(8):
        vm.pte(i << 12, (0x200000 + (i << 12)) | URW)
    vm.paging()
    m = vm.mmu
    fill_pages(vm, [i << 12 for i in range(8)])
    sh = m.cur
    assert len(sh.sr) == 8 and len(sh.sw) == 8
    vm.phys.write(PT0 + 3 * 4, 4, 0x300000 | URW)          # remap page 3
    assert m.counters["write_track_faults"] == 1
    assert m.counters["track_invalidations"] == 1
    for d in (sh.sr, sh.sw, sh.ur, sh.uw):
        assert sorted(d) == [0, 1, 2, 4, 5, 6, 7]
    assert m.read(0x3000, 4, False) == 0                     # new frame
    assert m.cur.sr[3] == 0x300000
    vm.audit_clean()


def test_partial_and_wide_stores_into_page_table(vm):
    for i in range(8):
        vm.pte(i << 12, (0x200000 + (i << 12)) | URW)
    vm.paging()
    m = vm.mmu
    fill_pages(vm, [i << 12 for i in range(8)])
    sh = m.cur
    vm.phys.write(PT0 + 2 * 4 + 1, 1, 0x00)                  # one byte of PTE 2
    assert sorted(sh.sr) == [0, 1, 3, 4, 5, 6, 7]
    vm.phys.write(PT0 + 4 * 4, 8, vm.phys.read(PT0 + 16, 8))  # PTEs 4 and 5, same values
    assert sorted(sh.sr) == [0, 1, 3, 6, 7]
    vm.phys.write(PT0 + 0x800, 4, 0)                          # an untracked PTE
    assert sorted(sh.sr) == [0, 1, 3, 6, 7]
    assert m.counters["write_track_faults"] == 3
    vm.phys.write_bytes(PT0, bytes(4096))                     # the guest zeroes its table
    assert sh.sr == {} and sh.sw == {} and sh.src == {}
    assert not vm.phys.watch[PT0 >> 12] & WATCH_PT      # nothing depends on it any more
    assert not vm.phys.watch[PD >> 12] & WATCH_PT and m.track == {}
    assert pf(lambda: m.read(0x1000, 4, False)).error_code == 0
    vm.audit_clean()


def test_pde_store_invalidates_everything_under_it(vm):
    vm.pte(0x1000, 0x201000 | URW)
    vm.pte(0x2000, 0x202000 | URW)
    vm.pte(0x401000, 0x203000 | URW, pt=PT1)
    vm.paging()
    m = vm.mmu
    fill_pages(vm, [0x1000, 0x2000, 0x401000])
    vm.pde(0, PT1 | URW)                                      # PDE 0 now points at PT1
    assert sorted(m.cur.sr) == [0x401]
    assert m.counters["track_invalidations"] == 2
    assert m.read(0x1000, 4, False) == 0x401000               # what PT1[1] maps
    vm.audit_clean()


def test_store_through_a_mapping_of_the_page_table(vm):
    vm.pte(0x5000, 0x200000 | URW)
    vm.pte(0x9000, PT0 | URW | A | D)                         # the PT mapped at 0x9000
    vm.paging()
    m = vm.mmu
    m.write(0x5000, 4, 0x1111, False)
    assert m.read(0x9000 + 5 * 4, 4, False) & 0xFFFFF000 == 0x200000
    assert 9 in m.cur.sr and 9 not in m.cur.sw                # watched: never fast-writable
    assert 9 in m.cur.psw                                     # ... but checked for the slow path
    walks = m.counters["walks"]
    m.write(0x9000 + 5 * 4, 4, 0x300000 | URW, False)         # the guest edits its PTE
    assert m.counters["walks"] == walks                       # no re-walk for the store
    assert 5 not in m.cur.sr
    assert m.read(0x5000, 4, False) == 0
    vm.audit_clean()


def test_invalidation_reaches_every_cached_shadow(vm):
    vm.pte(0x5000, 0x200000 | URW)
    vm.pde(0, PT0 | URW, pd=PD2)                              # both PDs share PT0
    vm.paging()
    m = vm.mmu
    m.read(0x5000, 4, False)
    a = m.cur
    vm.cr3(PD2)
    m.read(0x5000, 4, True)
    b = m.cur
    assert a is not b and 5 in a.sr and 5 in b.sr
    vm.pte(0x5000, 0x300000 | URW)
    assert 5 not in a.sr and 5 not in b.sr
    vm.audit_clean()


def test_page_becoming_a_page_table_loses_its_write_entries(vm):
    vm.pte(0x9000, 0x30000 | URW)                             # an ordinary data page...
    vm.paging()
    m = vm.mmu
    m.write(0x9000, 4, 0, False)
    m.set_privilege(True)
    m.write(0x9004, 4, 0, True)
    assert m.cur.sw[9] == 0x30000 and m.cur.uw[9] == 0x30000
    vm.phys.write(0x30000 + 4 * 1, 4, 0x200000 | URW)         # ...filled with PTEs...
    vm.pde(0x800000, 0x30000 | URW)                           # ...becomes a page table
    assert m.read(0x801000, 4, True) == 0
    assert 9 not in m.cur.sw and 9 not in m.cur.uw and 9 in m.cur.ur
    assert 9 not in m.wtlb
    m.write(0x9004, 4, 0x300000 | URW, True)                  # slow path: tracked
    assert 0x801 not in m.cur.ur
    assert m.read(0x801000, 4, True) == 0
    assert m.translate(0x801000, False, True) == 0x300000
    vm.audit_clean()


# ---------------------------------------------------------------- address spaces
def test_cr3_switch_and_back_reuses_shadow(vm):
    vm.pte(0x5000, 0x200000 | URW)
    vm.pde(0, PT2 | URW, pd=PD2)
    vm.pte(0x5000, 0x300000 | URW, pt=PT2)
    vm.paging()
    m = vm.mmu
    vm.phys.write(0x200000, 4, 0xA)
    vm.phys.write(0x300000, 4, 0xB)
    assert m.read(0x5000, 4, False) == 0xA
    first = m.cur
    first_sr = first.sr
    vm.cr3(PD2)
    assert m.read(0x5000, 4, False) == 0xB
    vm.cr3(PD | 0x18)                                         # PCD/PWT bits ignored
    assert m.cur is first and m.rtlb is first_sr and first_sr == {5: 0x200000}
    walks = m.counters["walks"]
    assert m.read(0x5000, 4, False) == 0xA and m.counters["walks"] == walks
    assert m.counters["cr3_switches"] == 2 and m.counters["shadow_cache_hits"] == 1
    vm.audit_clean()


def test_shadow_cache_is_bounded_lru():
    v = VM(max_shadows=2)
    pds = [0x20000, 0x21000, 0x22000]
    pts = [0x30000, 0x31000, 0x32000]
    for pd, pt in zip(pds, pts):
        v.pde(0, pt | URW, pd=pd)
        v.pte(0x5000, 0x200000 | URW, pt=pt)
    v.paging(cr3=pds[0])
    m = v.mmu
    m.read(0x5000, 4, False)
    first = m.cur
    v.cr3(pds[1])
    m.read(0x5000, 4, False)
    v.cr3(pds[2])
    m.read(0x5000, 4, False)
    assert len(m.cache) == 2 and m.counters["shadow_evictions"] == 1
    assert first.sr == {} and first.src == {}                 # its entries are gone
    assert not v.phys.watch[pts[0] >> 12] & WATCH_PT          # and its tracking
    assert not v.phys.watch[pds[0] >> 12] & WATCH_PT
    assert pts[0] >> 12 not in m.track
    v.audit_clean()
    v.cr3(pds[0])                                             # rebuilt from scratch
    assert m.cur is not first and m.rtlb == {}
    assert m.counters["shadow_evictions"] == 2
    v.audit_clean()


def test_entry_cap_bounds_host_memory():
    v = VM()
    v.mmu = m = MMU(v.phys, v.R, max_shadows=4, max_entries=6)
    v.pde(0, PT0 | URW)
    v.pde(0, PT0 | URW, pd=PD2)
    for i in range(16):
        v.pte(i << 12, (0x200000 + (i << 12)) | URW)
    v.paging()
    for i in range(16):
        m.write(i << 12, 4, i, False)
        assert m.nentries <= 6
        v.audit_clean()
    v.cr3(PD2)
    for i in range(16):
        assert m.read(i << 12, 4, True) == i
        assert m.nentries <= 6
    assert m.counters["reclaims"] >= 4
    v.audit_clean()


def test_invlpg(vm):
    vm.pte(0x5000, 0x200000 | URW)
    vm.pte(0x6000, 0x201000 | URW)
    vm.pde(0, PT0 | URW, pd=PD2)
    vm.paging()
    m = vm.mmu
    fill_pages(vm, [0x5000, 0x6000])
    a = m.cur
    vm.cr3(PD2)
    fill_pages(vm, [0x5000, 0x6000])
    m.invlpg(0x5ABC)
    assert sorted(a.sr) == [6] and sorted(m.cur.sr) == [6]
    assert sorted(a.sw) == [6] and not m.wrev.get(0x200)
    assert m.counters["invlpg"] == 1
    vm.audit_clean()


def test_invlpg_drops_whole_4m_page():
    v = VM(ram=8 * MB)
    v.pde(0x400000, 0x400000 | URW | PS)
    v.pde(0, PT0 | URW)
    v.pte(0x1000, 0x1000 | URW)
    v.paging(pse=True)
    m = v.mmu
    fill_pages(v, [0x400000, 0x401000, 0x5FF000, 0x1000])
    assert sorted(m.cur.sr) == [1, 0x400, 0x401, 0x5FF]
    m.invlpg(0x401000)
    assert sorted(m.cur.sr) == [1]
    v.audit_clean()


def test_paging_changed_flushes(vm):
    vm.pte(0x5000, 0x200000 | URW)
    vm.paging()
    m = vm.mmu
    fill_pages(vm, [0x5000])
    old = m.cur
    vm.R[CR0] |= CR0_WP
    m.paging_changed()
    assert old.sr == {} and old.sw == {} and m.cur.sr == {} and m.cache
    assert not vm.phys.watch.any() and m.track == {} and m.wrev == {}
    assert m.counters["flushes"] == 2
    vm.R[CR0] &= ~CR0_PG & 0xFFFFFFFF
    m.paging_changed()
    assert m.cur.key is None and not m.cache
    assert m.read(0x5000, 4, False) == 0                      # identity now
    vm.audit_clean()


# ---------------------------------------------------------------- code pages
def test_mark_code(vm):
    vm.pte(0x5000, 0x200000 | URW)
    vm.paging()
    m = vm.mmu
    seen = []
    vm.phys.add_watch_listener(lambda ppn, a, s: seen.append((ppn, a, s)))
    fill_pages(vm, [0x5000])
    assert 5 in m.wtlb
    m.mark_code(0x200)
    assert vm.phys.watch[0x200] & WATCH_CODE and 5 not in m.wtlb and 5 in m.rtlb
    m.write(0x5004, 4, 1, False)
    assert seen == [(0x200, 0x200004, 4)] and 5 not in m.wtlb
    vm.audit_clean()
    m.unmark_code(0x200)
    assert vm.phys.watch[0x200] == 0
    m.write(0x5004, 4, 2, False)
    m.invlpg(0x5000)
    m.write(0x5004, 4, 3, False)
    assert 5 in m.wtlb
    m.mark_code(0x7FFFF)                                       # past RAM: ignored
    vm.audit_clean()


def test_a_page_no_longer_watched_gets_its_fast_write_entry_back(vm):
    """A page that was code when its write right was cached stays on the slow
    path only while it is watched: the first store after unmark_code puts the
    fast entry back (before, every store to it walked the slow path until the
    translation was dropped - 79k stores on a Linux boot)."""
    vm.pte(0x5000, 0x200000 | URW)
    vm.paging()
    m = vm.mmu
    m.mark_code(0x200)
    m.write(0x5004, 4, 1, False)                 # cached while watched: checked entry only
    assert 5 in m.cur.psw and 5 not in m.wtlb
    m.unmark_code(0x200)
    m.write(0x5004, 4, 2, False)
    assert m.wtlb[5] == 0x200000
    assert (m.cur, 5) in m.wrev[0x200]
    vm.audit_clean()
    m.mark_code(0x200)                           # and it is revoked again as usual
    assert 5 not in m.wtlb
    vm.audit_clean()


def test_tier1_listeners_hear_page_table_stores_and_new_watches(vm):
    """The hooks tier 1's native walk relies on: pt_listener for a store into
    a write-watched page table (not the walker's own A/D update) and for a
    page that stops being watched; revoke_listener(ppn) for a page that
    becomes watched (a page table or code)."""
    vm.pte(0x5000, 0x200000 | URW)
    vm.pte(0x6000, 0x201000 | P | RW)           # A clear: the walk updates it
    vm.paging()
    m = vm.mmu
    heard = []
    m.pt_listener = lambda: heard.append("pt")
    m.revoke_listener = lambda ppn: heard.append(ppn)
    m.read(0x5000, 4, False)                    # PD and PT0 become watched
    assert PD >> 12 in heard and PT0 >> 12 in heard
    heard.clear()
    m.read(0x6000, 4, False)                    # our own A update: nothing
    assert heard == []
    vm.pte(0x7000, 0x202000 | URW)               # a store into the watched PT0
    assert heard == ["pt"]
    heard.clear()
    m.mark_code(0x201)
    assert heard == [0x201]
    heard.clear()
    m.invlpg(0x5000)
    m.invlpg(0x6000)                              # PT0's last entry: no longer watched
    assert "pt" in heard and not vm.phys.watch[PT0 >> 12] & WATCH_PT
    vm.audit_clean()


def test_ad_update_on_code_page_reaches_code_listener(vm):
    vm.pte(0x5000, 0x200000 | URW)
    vm.paging()
    seen = []
    vm.phys.add_watch_listener(lambda ppn, a, s: seen.append((ppn, a, s)))
    vm.mmu.mark_code(PT0 >> 12)                                # hostile: code in the PT page
    vm.mmu.read(0x5000, 4, False)
    assert (PT0 >> 12, PT0 + 20, 4) in seen
    vm.audit_clean()


# ---------------------------------------------------------------- page crossing
def test_page_crossing_write_checks_both_pages_first(vm):
    vm.pte(0x5000, 0x200000 | URW)
    vm.paging()
    m = vm.mmu
    vm.phys.write(0x200FFC, 4, 0x44332211)
    f = pf(lambda: m.write(0x5FFE, 4, 0xDDCCBBAA, False))
    assert f.cr2 == 0x6000 and f.error_code == 2
    assert vm.phys.read(0x200FFC, 4) == 0x44332211           # nothing written
    vm.pte(0x6000, 0x300000 | P | US)                         # read-only
    vm.paging(wp=True)
    f = pf(lambda: m.write(0x5FFE, 4, 0xDDCCBBAA, False))
    assert f.cr2 == 0x6000 and f.error_code == 3
    assert vm.phys.read(0x200FFC, 4) == 0x44332211
    vm.pte(0x6000, 0x300000 | URW)
    m.write(0x5FFE, 4, 0xDDCCBBAA, True)
    assert vm.phys.read(0x200FFC, 4) == 0xBBAA2211 and vm.phys.read(0x300000, 2) == 0xDDCC
    assert m.read(0x5FFE, 4, True) == 0xDDCCBBAA
    assert m.read(0x5FFF, 8, False) == 0x0000000000DDCCBB
    vm.audit_clean()


def test_access_spanning_three_pages(vm):
    for i in range(3):
        vm.pte((5 + i) << 12, (0x200000 + (i << 12)) | URW)
    vm.paging()
    m = vm.mmu
    m.write(0x5FFF, 4098, (1 << (8 * 4098)) - 1, False)
    assert vm.phys.read(0x200FFF, 1) == 0xFF and vm.phys.read(0x202000, 1) == 0xFF
    assert vm.phys.read(0x202001, 1) == 0
    assert m.read(0x5FFF, 4098, False) == (1 << (8 * 4098)) - 1
    f = pf(lambda: m.write(0x6FFF, 4098, 0, False))          # page 8 is not present
    assert f.cr2 == 0x8000 and vm.phys.read(0x201FFF, 1) == 0xFF


def test_page_crossing_read_fault(vm):
    vm.pte(0x5000, 0x200000 | URW)
    vm.pte(0x6000, 0x300000 | P | RW)
    vm.paging()
    assert pf(lambda: vm.mmu.read(0x5FFF, 2, True)).cr2 == 0x6000
    assert vm.mmu.read(0x5FFF, 2, False) == 0


def test_linear_wrap_at_4gib():
    v = VM()
    v.pde(0xFFC00000, PT1 | URW)
    v.pte(0xFFFFF000, 0x200000 | URW, pt=PT1)
    v.pde(0, PT0 | URW)
    v.pte(0, 0x201000 | URW)
    v.paging()
    v.mmu.write(0xFFFFFFFE, 4, 0x44332211, False)
    assert v.phys.read(0x200FFE, 2) == 0x2211 and v.phys.read(0x201000, 2) == 0x4433
    v.audit_clean()


# ---------------------------------------------------------------- hostile tables
def test_pte_past_end_of_ram(vm):
    vm.pte(0x5000, 0x7FFFF000 | URW | A | D)
    vm.pte(0x6000, (vm.phys.ram_size) | URW | A | D)          # first page after RAM
    vm.paging()
    m = vm.mmu
    assert m.read(0x5000, 4, False) == 0xFFFFFFFF
    m.write(0x5000, 4, 0, True)
    m.write(0x6FFC, 4, 0, False)
    assert m.read(0x6000, 4, True) == 0xFFFFFFFF
    assert vm.phys.counters["unmapped_writes"] == 2
    assert 5 not in m.rtlb and 6 not in m.wtlb and not m.cur.sr
    assert m.cur.psr[5] == 0x7FFFF000                          # checked, slow path only
    vm.audit_clean()


def test_pte_into_rom_and_mmio(vm):
    phys = vm.phys
    phys.add_rom(0xF0000, b"\xC3" * 0x10000)
    phys.add_rom(0xFFFF0000, b"\xF4" * 0x10000)
    log = []
    phys.add_mmio(0xFEC00000, 0x1000, lambda a, s: log.append(("r", a, s)) or 0x77,
                  lambda a, s, x: log.append(("w", a, s, x)), "ioapic")
    vm.pte(0x1000, 0xF0000 | URW | A | D)
    vm.pte(0x2000, 0xFFFF0000 | URW | A | D)
    vm.pte(0x3000, 0xFEC00000 | URW | A | D)
    vm.paging()
    m = vm.mmu
    assert m.read(0x1000, 4, False) == 0xC3C3C3C3
    m.write(0x1000, 4, 0, False)
    assert m.read(0x1000, 4, False) == 0xC3C3C3C3 and phys.counters["rom_writes"] == 1
    assert m.cur.sr[1] == 0xF0000 and 1 not in m.cur.sw       # ROM: readable, never writable
    assert m.read(0x2000, 4, True) == 0xF4F4F4F4
    m.write(0x2000, 1, 0, True)
    assert 2 not in m.cur.sr and 2 not in m.cur.ur
    assert m.read(0x3010, 4, False) == 0x77
    m.write(0x3010, 4, 5, False)
    assert log == [("r", 0xFEC00010, 4), ("w", 0xFEC00010, 4, 5)]
    assert 3 not in m.cur.sr
    walks = m.counters["walks"]
    m.read(0x3010, 4, False)                                   # checked dict: no re-walk
    assert m.counters["walks"] == walks
    vm.audit_clean()


def test_page_directory_mapping_itself():
    v = VM()
    v.pde(0xFFC00000, PD | URW)                                # PD[1023] -> PD
    v.pde(0, PT0 | URW)
    v.pte(0x5000, 0x200000 | URW)
    v.paging()
    m = v.mmu
    m.write(0x5000, 4, 0x5555, False)
    # the PD seen as a page table: 0xFFC00000 + 4K*i maps page table i
    assert m.read(0xFFC00000 + 5 * 4, 4, False) & 0xFFFFF000 == 0x200000
    assert m.read(0xFFFFF000, 4, False) & 0xFFFFF000 == PT0    # the PD itself
    assert m.read(0xFFFFFFFC, 4, False) & 0xFFFFF000 == PD
    v.audit_clean()
    assert 0xFFFFF not in m.cur.sw and 0xFFC00 not in m.cur.sw
    m.write(0xFFC00000 + 5 * 4, 4, 0x201000 | URW, False)      # edit a PTE via the self-map
    assert 5 not in m.cur.sr
    assert m.read(0x5000, 4, False) == 0
    m.write(0xFFFFF000, 4, 0, False)                           # clear PDE 0 via the self-map
    assert 5 not in m.cur.sr and 0xFFC00 not in m.cur.sr
    assert pf(lambda: m.read(0x5000, 4, False)).error_code == 0
    v.audit_clean()


def test_4m_page_over_end_of_ram():
    v = VM(ram=6 * MB)
    v.pde(0x400000, 0x400000 | URW | PS)                       # 4-8 MiB, RAM ends at 6
    v.paging(pse=True)
    m = v.mmu
    m.write(0x400000, 4, 0x12345678, True)
    assert v.phys.read(0x400000, 4) == 0x12345678
    assert m.cur.uw[0x400] == 0x400000
    m.write(0x5FFFFE, 4, 0xAABBCCDD, False)                    # straddles the end of RAM
    assert v.phys.read(0x5FFFFE, 2) == 0xCCDD
    assert m.read(0x600000, 4, False) == 0xFFFFFFFF
    m.write(0x7FF000, 4, 0, True)
    assert 0x600 not in m.cur.sr and 0x7FF not in m.cur.uw and 0x5FF in m.cur.sw
    v.audit_clean()


def test_4m_page_reserved_bits_fault():
    v = VM()
    v.pde(0x400000, 0x400000 | URW | PS | (1 << 13))
    v.paging(pse=True)
    assert pf(lambda: v.mmu.read(0x400000, 4, True)).error_code == 1 | 4 | 8


def test_cr3_past_ram_and_tables_in_mmio():
    v = VM()
    v.paging(cr3=0xC0000000)                                   # unmapped PD: all-ones
    m = v.mmu
    assert m.read(0x5000, 4, False) == 0xFFFFFFFF              # follows PT at 0xFFFFF000
    m.write(0x5000, 4, 0, True)
    assert m.cur.sr == {} and m.cur.psr == {}                  # nothing can be cached
    assert m.counters["uncached"] == 2
    v.audit_clean()
    reads = []
    v.phys.add_mmio(0xFEB00000, 0x1000, lambda a, s: reads.append(a) or 0x00200000 | URW | A | D,
                    lambda a, s, x: None, "dev")
    v.pde(0, 0xFEB00000 | URW | A, pd=PD)
    v.paging(cr3=PD)
    assert m.read(0x5000, 4, False) == 0
    assert m.read(0x5000, 4, False) == 0
    assert reads == [0xFEB00014, 0xFEB00014]                   # walked each time, never cached
    assert m.cur.sr == {}
    v.audit_clean()


def test_page_directory_in_mmio_inside_ram_range():
    v = VM()
    pdes = []

    def rd(a, s):
        pdes.append(a)
        return PT0 | URW | A
    v.phys.add_mmio(0xA0000, 0x20000, rd, lambda a, s, x: None, "vga")
    v.pte(0x5000, 0x200000 | URW | A | D)
    v.paging(cr3=0xA0000)                                       # the PD is device memory
    m = v.mmu
    assert m.read(0x5000, 4, True) == 0 and m.read(0x5004, 4, True) == 0
    assert pdes == [0xA0000, 0xA0000]                          # never cached
    assert m.cur.psr == {} and not v.phys.watch[0xA0]
    v.audit_clean()


def test_audit_reports_violations(vm):
    vm.pte(0x5000, 0x200000 | URW)
    vm.pte(0x6000, PT0 | URW | A | D)
    vm.paging()
    m = vm.mmu
    fill_pages(vm, [0x5000])
    vm.audit_clean()
    m.rtlb[0x123] = vm.phys.ram_size
    errs = m.audit()
    assert any("outside guest RAM" in e for e in errs)
    del m.rtlb[0x123]
    m.wtlb[6] = PT0                                            # writable page table
    errs = m.audit()
    assert any("watched page" in e for e in errs)
    del m.wtlb[6]
    vm.phys.watch[PT0 >> 12] = 0                               # tracking bit lost
    errs = m.audit()
    assert any("not write-watched" in e for e in errs)
    vm.phys.watch[PT0 >> 12] = WATCH_PT
    vm.audit_clean()
    vm.phys.ram[PT0 + 20:PT0 + 24] = (0x300000 | URW | A | D).to_bytes(4, "little")  # bypass
    errs = m.audit()
    assert any("fresh walk gives" in e for e in errs)


def test_counters_present():
    m = VM().mmu
    for name in ("fills", "write_track_faults", "flushes", "cr3_switches", "invlpg",
                 "page_faults", "shadow_cache_hits", "shadow_evictions"):
        assert m.counters[name] == 0


def test_privilege_from_cpl_at_construction():
    v = VM()
    v.R[CPL] = 3
    m = MMU(v.phys, v.R)
    assert m.user and m.rtlb is m.cur.ur


# ---------------------------------------------------------------- random tables
RAM = 512 * 1024
PDS = (0x10000, 0x11000)
PTS = (0x12000, 0x13000, 0x14000)
ROM_PAGE = 0x70000
MMIO_PAGE = 0x60000
FRAMES = (0x20000, 0x21000, 0x22000, 0x3F000, RAM - 0x1000, PDS[0], PDS[1], PTS[0],
          PTS[1], PTS[2], ROM_PAGE, MMIO_PAGE, RAM, 0xFFFF0000, 0x7FFF0000, 0x0, 0x400000)
FLAGS = st.integers(0, 0x1FF)
ENTRY = st.builds(lambda f, fl: f | fl, st.sampled_from(FRAMES), FLAGS)
GOOD_ENTRY = st.builds(lambda f, fl: f | fl | P, st.sampled_from(FRAMES),
                       st.sampled_from([RW | US, RW | US | A | D, US, RW, 0, PS | RW | US]))
LIN = st.builds(lambda pdi, pti, off: (pdi << 22) | (pti << 12) | off,
                st.sampled_from([0, 1, 2, 0x3FF]), st.integers(0, 7),
                st.sampled_from([0, 4, 0x7FE, 0xFFC, 0xFFE, 0xFFF]))

ACCESS = st.tuples(st.just("access"), LIN, st.sampled_from([1, 2, 4]), st.booleans(),
                   st.booleans(), st.integers(0, 0xFFFFFFFF))
OPS = st.one_of(
    ACCESS, ACCESS, ACCESS, ACCESS, ACCESS, ACCESS,
    st.tuples(st.just("store"), st.sampled_from(PDS + PTS), st.integers(0, 7),
              st.one_of(ENTRY, GOOD_ENTRY)),
    st.tuples(st.just("store_pde"), st.sampled_from(PDS), st.sampled_from([0, 1, 2, 0x3FF]),
              st.one_of(ENTRY, GOOD_ENTRY)),
    st.tuples(st.just("cr3"), st.sampled_from(PDS)),
    st.tuples(st.just("invlpg"), LIN),
    st.tuples(st.just("priv"), st.booleans()),
    st.tuples(st.just("code"), st.sampled_from([0x20, 0x21, 0x12, 0x10]), st.booleans()),
    st.tuples(st.just("mode"), st.booleans(), st.booleans(), st.booleans(), st.booleans()),
)


def _hostile_vm(max_shadows, max_entries):
    v = VM(ram=RAM)
    v.mmu = MMU(v.phys, v.R, max_shadows=max_shadows, max_entries=max_entries)
    v.phys.add_rom(ROM_PAGE, b"\xAB" * 0x1000)
    v.phys.add_rom(0xFFFF0000, b"\xCD" * 0x10000)
    regs = {}
    v.phys.add_mmio(MMIO_PAGE, 0x1000, lambda a, s: regs.get(a, 0x5A5A5A5A) & ((1 << 8 * s) - 1),
                    lambda a, s, x: regs.__setitem__(a, x), "dev")
    return v


def _expect(v, lin, write, user):
    """What the architecture says, from a side-effect-free walk of the tables now."""
    R = v.R
    mask = 0xFFFFFFFF if R[A20] else 0xFFEFFFFF
    if not R[CR0] & CR0_PG:
        return lin & mask
    try:
        # phys.read, not peek: page tables in the (deterministic) MMIO page count
        return walk(v.phys, R[CR3], R[CR0], R[CR4], lin, write, user, update=False,
                    a20_mask=mask)[0]
    except CPUFault as f:
        return ("pf", f.error_code, f.cr2)


def _setup_random(max_shadows, max_entries, pd_init, pt_init):
    v = _hostile_vm(max_shadows, max_entries)
    phys = v.phys
    for pd in PDS:
        for i, e in zip((0, 1, 2, 0x3FF), pd_init):
            phys.write(pd + 4 * i, 4, e)
    # every RAM frame holds plausible entries, so any of them can serve as a
    # page table (and be mapped writable before it does)
    for pt in PTS + (0x20000, 0x21000, 0x22000, 0x3F000, RAM - 0x1000):
        for i, e in enumerate(pt_init):
            phys.write(pt + 4 * i, 4, e)
    v.paging(cr3=PDS[0], wp=True, pse=True)
    return v


def _run_op(v, op):
    """Apply one op; for accesses check the MMU against a fresh walk, using the
    CPU's fast path (rtlb/wtlb straight into RAM) whenever it has an entry."""
    phys, m, R = v.phys, v.mmu, v.R
    kind = op[0]
    if kind == "access":
        _, lin, size, write, user, value = op
        lin2 = (lin + size - 1) & 0xFFFFFFFF
        exp = [_expect(v, lin, write, user)]
        if lin2 >> 12 != lin >> 12:
            exp.append(_expect(v, lin2 & ~0xFFF, write, user))
        faults = [e for e in exp if isinstance(e, tuple)]
        fast = user == m.user and len(exp) == 1
        try:
            if write:
                base = m.wtlb.get(lin >> 12) if fast else None
                if base is not None:                       # the CPU's fast path
                    assert not faults and base == exp[0] & ~0xFFF
                    off = base | (lin & 0xFFF)
                    phys.ram[off:off + size] = value.to_bytes(4, "little")[:size]
                else:
                    m.write(lin, size, value, user)
            else:
                base = m.rtlb.get(lin >> 12) if fast else None
                if base is not None:
                    assert not faults and base == exp[0] & ~0xFFF
                    off = base | (lin & 0xFFF)
                    got = int.from_bytes(phys.ram[off:off + size], "little")
                    assert got == phys.peek(exp[0], size)
                else:
                    m.read(lin, size, user)
        except CPUFault as f:
            assert faults, "MMU faulted where the tables allow the access"
            assert (f.vector, f.error_code, f.cr2) == (14,) + faults[0][1:]
        else:
            assert not faults, "MMU allowed an access the tables forbid: %r" % (exp,)
    elif kind in ("store", "store_pde"):
        _, table, idx, value = op
        phys.write(table + 4 * idx, 4, value)
    elif kind == "cr3":
        v.cr3(op[1])
    elif kind == "invlpg":
        m.invlpg(op[1])
    elif kind == "priv":
        m.set_privilege(op[1])
    elif kind == "code":
        (m.mark_code if op[2] else m.unmark_code)(op[1])
    elif kind == "mode":
        _, pg, pse, wp, a20 = op
        R[CR0] = PE | (CR0_PG if pg else 0) | (CR0_WP if wp else 0)
        R[CR4] = CR4_PSE if pse else 0
        R[A20] = int(a20)
        m.paging_changed()
    errs = m.audit()
    assert errs == [], (op, errs)


@given(pd_init=st.lists(GOOD_ENTRY, min_size=4, max_size=4),
       pt_init=st.lists(st.one_of(ENTRY, GOOD_ENTRY), min_size=8, max_size=8),
       ops=st.lists(OPS, max_size=40), max_shadows=st.sampled_from([1, 2, 8]),
       max_entries=st.sampled_from([3, 1 << 18]))
@settings(max_examples=100, deadline=None)
def test_random_tables_and_accesses(pd_init, pt_init, ops, max_shadows, max_entries):
    v = _setup_random(max_shadows, max_entries, pd_init, pt_init)
    for op in ops:
        _run_op(v, op)


# Long random sequences: hypothesis picks a seed, a plain PRNG makes a few
# hundred ops biased towards collisions (present entries, RAM frames that are
# also page tables, accesses), which short shrinkable lists rarely reach.
_RAM_FRAMES = (0x20000, 0x21000, 0x22000, 0x3F000, RAM - 0x1000) + PDS + PTS


def _rand_entry(rng, pde=False):
    if rng.random() < 0.8:
        frame = rng.choice(_RAM_FRAMES)
    else:
        frame = rng.choice(FRAMES)
    flags = 0
    for bit, p in ((P, 0.85), (RW, 0.7), (US, 0.7), (A, 0.5), (D, 0.5), (0x100, 0.2),
                   (PS, 0.15 if pde else 0.1), (0x18, 0.1), (0xE00, 0.1)):
        if rng.random() < p:
            flags |= bit
    if rng.random() < 0.03:
        return rng.getrandbits(32)
    return frame | flags


def _rand_lin(rng):
    return ((rng.choice([0, 1, 2, 0x3FF]) << 22) | (rng.randrange(8) << 12)
            | rng.choice([0, 4, 0x10, 0x7FE, 0xFFC, 0xFFE, 0xFFF, rng.randrange(0x1000)]))


def _rand_op(rng):
    r = rng.random()
    if r < 0.55:
        return ("access", _rand_lin(rng), rng.choice([1, 2, 4]), rng.random() < 0.5,
                rng.random() < 0.4, rng.getrandbits(32))
    if r < 0.70:
        return ("store", rng.choice(_RAM_FRAMES), rng.randrange(8), _rand_entry(rng))
    if r < 0.76:
        return ("store_pde", rng.choice(PDS), rng.choice([0, 1, 2, 0x3FF]),
                _rand_entry(rng, pde=True))
    if r < 0.83:
        return ("cr3", rng.choice(PDS))
    if r < 0.87:
        return ("invlpg", _rand_lin(rng))
    if r < 0.93:
        return ("priv", rng.random() < 0.5)
    if r < 0.97:
        return ("code", rng.choice(_RAM_FRAMES) >> 12, rng.random() < 0.6)
    return ("mode", rng.random() < 0.9, rng.random() < 0.5, rng.random() < 0.5,
            rng.random() < 0.9)


@given(seed=st.integers(0, (1 << 32) - 1), max_shadows=st.sampled_from([1, 2, 8]),
       max_entries=st.sampled_from([5, 1 << 18]))
@settings(max_examples=60, deadline=None)
def test_random_long_sequences(seed, max_shadows, max_entries):
    import random
    rng = random.Random(seed)
    v = _setup_random(max_shadows, max_entries,
                      [_rand_entry(rng, pde=True) for _ in range(4)],
                      [_rand_entry(rng) for _ in range(8)])
    done = []
    for _ in range(300):
        op = _rand_op(rng)
        done.append(op)
        try:
            _run_op(v, op)
        except AssertionError as e:
            raise AssertionError("seed %d, op #%d %r (last ops %r): %s"
                                 % (seed, len(done), op, done[-6:], e)) from None
