"""Shadow page tables: the software MMU the CPU uses.

For each guest address space (a CR3 value) a ``Shadow`` caches translations
guest-virtual page -> host offset into ``phys.ram``, in four *fast* dicts:

    sr  supervisor read     sw  supervisor write
    ur  user read           uw  user write

``mmu.rtlb`` / ``mmu.wtlb`` are the two fast dicts of the current privilege
class; the CPU's hot path is ``base = mmu.rtlb.get(lin >> 12)`` followed by a
direct access to ``phys.ram[base | (lin & 0xFFF)]``.  The invariants that make
that safe against a hostile guest (THREATS.md, HYP-DV3):

* a fast entry only ever holds ``ppn << 12`` of a page that lies wholly
  inside ``phys.ram`` and is not MMIO (read dicts may hold RAM-backed ROM
  pages; write dicts only plain RAM pages);
* a write entry exists only if the guest's tables allow the write *and* the
  walk has set the D bit, and only while the page's watch byte is 0 (not a
  page table any shadow was built from, not decoded code);
* every entry is registered against the guest PDE/PTE it was built from; the
  pages holding those entries are write-watched (``WATCH_PT``), so any store
  to them reaches ``_on_phys_write`` (never the fast path) and drops exactly
  the entries built from the dwords it overlaps, in every cached shadow.

Behind the fast dicts each shadow has four *checked* dicts (``psr``,
``psw``, ``pur``, ``puw``): vpn -> physical page base of any kind (MMIO,
ROM, unmapped, watched RAM) whose rights were verified by a walk.  The slow
paths use them to skip the walk for stores into page tables and code pages
and for MMIO; the access still goes through ``PhysMem`` (watch listeners,
device callbacks).  Fast dicts are subsets of the checked ones.

Translations whose PDE/PTE themselves do not lie in RAM (page tables in
MMIO or unmapped space) cannot be write-tracked, so they are never cached:
each access walks again.  A hostile guest can make itself slow, nothing else.

With paging off a separate shadow holds the identity map (with the A20
mask), its user dicts being the supervisor ones.

Bounds: at most ``max_shadows`` address spaces (LRU) and ``max_entries``
cached pages over all of them; past that, shadows are evicted or emptied, so
a guest cannot grow host memory by touching its whole linear space.

Every store into guest RAM that does not go through ``wtlb`` must go through
``PhysMem.write``/``write_bytes`` (listeners); whoever clears code-watch bits
must clear only WATCH_CODE (``unmark_code``), never WATCH_PT.  After a
snapshot restore call ``paging_changed()``: all of this is derived state.
"""
from collections import OrderedDict

from ..cpu.faults import CPUFault
from ..cpu.state import A20, CPL, CR0, CR3, CR4
from . import paging
from .paging import CR0_PG, walk
from .physmem import KIND_MMIO, KIND_RAM, PAGE_SIZE, WATCH_CODE, WATCH_PT

MASK32 = 0xFFFFFFFF
A20_OFF_MASK = MASK32 & ~(1 << 20)
DEFAULT_MAX_SHADOWS = 8
DEFAULT_MAX_ENTRIES = 1 << 18   # cached pages over all shadows (bounds host memory)

_DICT_NAMES = ("sr", "sw", "ur", "uw", "psr", "psw", "pur", "puw")


class Shadow:
    """The cached translations of one address space."""

    __slots__ = ("key", "paging", "sr", "sw", "ur", "uw",
                 "psr", "psw", "pur", "puw", "src")

    def __init__(self, key, paging_on):
        self.key = key              # CR3 & 0xFFFFF000, or None with paging off
        self.paging = paging_on
        self.sr = {}
        self.sw = {}
        self.psr = {}
        self.psw = {}
        if paging_on:
            self.ur = {}
            self.uw = {}
            self.pur = {}
            self.puw = {}
        else:                       # no page protection: one class
            self.ur = self.sr
            self.uw = self.sw
            self.pur = self.psr
            self.puw = self.psw
        # vpn -> tuple of tracking keys (dword address >> 2 of the PDE, PTE)
        self.src = {}

    def dicts(self):
        """(name, dict) for every distinct dict of this shadow."""
        seen = set()
        out = []
        for name in _DICT_NAMES:
            d = getattr(self, name)
            if id(d) not in seen:
                seen.add(id(d))
                out.append((name, d))
        return out

    def clear(self):
        for _, d in self.dicts():
            d.clear()
        self.src.clear()

    def __len__(self):
        return len(self.sr) + (len(self.ur) if self.paging else 0)

    def __repr__(self):
        if not self.paging:
            return "<Shadow paging-off %d pages>" % len(self.sr)
        return "<Shadow cr3=0x%08x sr=%d sw=%d ur=%d uw=%d>" % (
            self.key, len(self.sr), len(self.sw), len(self.ur), len(self.uw))


class MMU:
    """Shadow-paging MMU of one CPU; see the module docstring and INTERNALS.md."""

    def __init__(self, phys, R, max_shadows=DEFAULT_MAX_SHADOWS,
                 max_entries=DEFAULT_MAX_ENTRIES):
        if max_shadows < 1:
            raise ValueError("max_shadows must be at least 1")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.nentries = 0               # (shadow, vpn) pairs with a tracking record
        self.phys = phys
        self.R = R
        self.max_shadows = max_shadows
        self.counters = {
            "fills": 0,                 # walks whose result was cached
            "walks": 0,                 # every guest page walk
            "uncached": 0,              # successful walks that could not be cached
            "page_faults": 0,
            "write_track_faults": 0,    # stores trapped on a WATCH_PT page
            "track_invalidations": 0,   # shadow entries dropped by those stores
            "flushes": 0,
            "cr3_switches": 0,
            "shadow_cache_hits": 0,
            "shadow_evictions": 0,
            "invlpg": 0,
            "reclaims": 0,              # shadows emptied because max_entries was hit
        }
        # tracking: ppn of a page-table page -> {dword index -> {(shadow, vpn)}}
        self.track = {}
        # write entries: target ppn -> {(shadow, vpn)} with a fast write entry to it
        self.wrev = {}
        self.cache = OrderedDict()      # CR3 key -> Shadow (paging on)
        self.nopg = None                # paging-off Shadow
        self.user = bool(R[CPL] == 3)
        self._ad_target = -1            # the paddr of the A/D update in flight
        # called with a vpn whose fast entries may be dropped, or None for
        # "any": tier 1 keeps a native copy of rtlb/wtlb (translate/runtime.py)
        self.tlb_listener = None
        # tier 1 also fills its native TLB by walking the guest's tables
        # itself, from PDEs/PTEs on WATCH_PT pages only, and keeps no record
        # the MMU could drop one by one.  pt_listener() is called when a
        # WATCH_PT page is written (not an A/D update) or loses WATCH_PT;
        # revoke_listener(ppn) when page ppn becomes watched, so that no
        # write entry of its own points there any more.
        self.pt_listener = None
        self.revoke_listener = None
        self._ram_pages = phys.ram_pages
        self._kind = phys._kindb
        self._watch = phys._watchb
        phys.add_watch_listener(self._on_phys_write)
        self._setup_mode()

    # ------------------------------------------------------------------
    # modes, address spaces, privilege
    def _setup_mode(self):
        R = self.R
        self.a20_mask = MASK32 if R[A20] else A20_OFF_MASK
        self.paging = bool(R[CR0] & CR0_PG)
        if self.paging:
            self.cur = self._shadow_for(R[CR3] & paging.FRAME_4K)
        else:
            if self.nopg is None:
                self.nopg = Shadow(None, False)
            self.cur = self.nopg
        self._rebind()

    def _rebind(self):
        sh = self.cur
        if self.tlb_listener is not None:
            self.tlb_listener(None)
        if self.user:
            self.rtlb = sh.ur
            self.wtlb = sh.uw
        else:
            self.rtlb = sh.sr
            self.wtlb = sh.sw

    def set_privilege(self, user):
        """CPL 3 (user=True) or 0-2: make rtlb/wtlb that class's dicts."""
        self.user = bool(user)
        self._rebind()

    def _shadow_for(self, key):
        cache = self.cache
        sh = cache.get(key)
        if sh is not None:
            cache.move_to_end(key)
            self.counters["shadow_cache_hits"] += 1
            return sh
        sh = Shadow(key, True)
        cache[key] = sh
        while len(cache) > self.max_shadows:
            _, old = cache.popitem(last=False)
            self._evict(old)
            self.counters["shadow_evictions"] += 1
        return sh

    def cr3_changed(self):
        """MOV CR3 / task switch: select (or build) the shadow of the new CR3."""
        self.counters["cr3_switches"] += 1
        if self.paging:
            self.cur = self._shadow_for(self.R[CR3] & paging.FRAME_4K)
            self._rebind()

    def paging_changed(self):
        """CR0.PG/WP, CR4.PSE/PGE or A20 changed: drop every shadow."""
        self.counters["flushes"] += 1
        self._flush_all()
        self._setup_mode()

    def flush(self):
        """Drop every cached translation (same as paging_changed)."""
        self.paging_changed()

    def _flush_all(self):
        for sh in self.cache.values():
            sh.clear()
        self.cache.clear()
        if self.nopg is not None:
            self.nopg.clear()
        self.track.clear()
        self.wrev.clear()
        self.nentries = 0
        w = self.phys.watch
        w &= 0xFF ^ WATCH_PT

    def _reclaim(self, keep):
        """Too many cached pages: evict least recently used shadows, then, if
        need be, empty ``keep`` itself.  A hostile guest touching its whole
        linear space cannot make the host hold more than max_entries pages."""
        self.counters["reclaims"] += 1
        for key in list(self.cache):
            if self.nentries < self.max_entries // 2 + 1:
                return
            sh = self.cache[key]
            if sh is not keep:
                del self.cache[key]
                self._evict(sh)
                self.counters["shadow_evictions"] += 1
        if self.nentries >= self.max_entries:
            self._evict(keep)

    def _evict(self, sh):
        if self.tlb_listener is not None and sh is self.cur:
            self.tlb_listener(None)
        for vpn in list(sh.src):
            self._drop(sh, vpn)
        for vpn, base in sh.sw.items():
            self._wrev_discard(base >> 12, sh, vpn)
        for vpn, base in sh.uw.items():
            self._wrev_discard(base >> 12, sh, vpn)
        sh.clear()

    def invlpg(self, lin):
        """INVLPG: drop the page of ``lin`` (the whole 4 MiB page for a large
        mapping) from every shadow."""
        self.counters["invlpg"] += 1
        vpn = (lin & MASK32) >> 12
        for sh in self._all_shadows():
            keys = sh.src.get(vpn)
            if keys is not None and len(keys) == 1:     # a 4 MiB page
                key = keys[0]
                t = self.track.get(key >> 10)
                s = t.get(key & 0x3FF) if t else None
                if s:
                    for (osh, ovpn) in [x for x in s if x[0] is sh]:
                        self._drop(osh, ovpn)
            self._drop(sh, vpn)

    def _all_shadows(self):
        out = list(self.cache.values())
        if self.nopg is not None:
            out.append(self.nopg)
        return out

    @property
    def shadows(self):
        """Every live shadow (cached address spaces, then the paging-off one)."""
        return self._all_shadows()

    # ------------------------------------------------------------------
    # code pages
    def mark_code(self, ppn):
        """Page ``ppn`` holds decoded code: stores to it must reach PhysMem."""
        if 0 <= ppn < self._ram_pages:
            self._watch[ppn] |= WATCH_CODE
            self._revoke_writes(ppn)

    def unmark_code(self, ppn):
        """The CPU no longer holds code decoded from ``ppn``."""
        if 0 <= ppn < self._ram_pages:
            self._watch[ppn] &= 0xFF ^ WATCH_CODE

    # ------------------------------------------------------------------
    # entry bookkeeping
    def _wrev_discard(self, ppn, sh, vpn):
        s = self.wrev.get(ppn)
        if s is not None:
            s.discard((sh, vpn))
            if not s:
                del self.wrev[ppn]

    def _revoke_writes(self, ppn):
        """Remove every fast write entry pointing at page ``ppn``."""
        if self.revoke_listener is not None:
            self.revoke_listener(ppn)
        s = self.wrev.pop(ppn, None)
        if not s:
            return
        base = ppn << 12
        lst = self.tlb_listener
        for sh, vpn in s:
            if lst is not None:
                lst(vpn)
            if sh.sw.get(vpn) == base:
                del sh.sw[vpn]
            if sh.uw.get(vpn) == base:
                del sh.uw[vpn]

    def _drop(self, sh, vpn):
        """Forget everything ``sh`` caches about ``vpn``."""
        if self.tlb_listener is not None:
            self.tlb_listener(vpn)
        b = sh.sw.pop(vpn, None)
        if b is not None:
            self._wrev_discard(b >> 12, sh, vpn)
        b = sh.uw.pop(vpn, None)
        if b is not None:
            self._wrev_discard(b >> 12, sh, vpn)
        sh.sr.pop(vpn, None)
        sh.ur.pop(vpn, None)
        sh.psr.pop(vpn, None)
        sh.psw.pop(vpn, None)
        sh.pur.pop(vpn, None)
        sh.puw.pop(vpn, None)
        keys = sh.src.pop(vpn, None)
        if keys:
            self.nentries -= 1
            track = self.track
            item = (sh, vpn)
            for key in keys:
                ppn = key >> 10
                t = track.get(ppn)
                if t is None:
                    continue
                idx = key & 0x3FF
                s = t.get(idx)
                if s is None:
                    continue
                s.discard(item)
                if not s:
                    del t[idx]
                    if not t:
                        del track[ppn]
                        self._watch[ppn] &= 0xFF ^ WATCH_PT
                        if self.pt_listener is not None:
                            self.pt_listener()

    def _on_phys_write(self, ppn, paddr, size):
        """PhysMem listener: a store into a watched RAM page, before it lands."""
        if not self._watch[ppn] & WATCH_PT:
            return
        if paddr == self._ad_target and size == 4:
            return      # our own A/D update: only A/D bits change, no right is lost
        self.counters["write_track_faults"] += 1
        if self.pt_listener is not None:
            self.pt_listener()
        t = self.track.get(ppn)
        if t is None:
            return
        lo = (paddr & 0xFFF) >> 2
        hi = min(((paddr & 0xFFF) + size - 1) >> 2, 1023)
        victims = []
        if hi - lo + 1 > len(t):
            for idx, s in t.items():
                if lo <= idx <= hi:
                    victims.extend(s)
        else:
            for idx in range(lo, hi + 1):
                s = t.get(idx)
                if s:
                    victims.extend(s)
        if victims:
            self.counters["track_invalidations"] += len(victims)
            for sh, vpn in victims:
                self._drop(sh, vpn)

    def _ad_write(self, addr, size, value):
        """The walker's A/D update (a locked OR that only sets A/D bits)."""
        self._ad_target = addr
        try:
            self.phys.write(addr, size, value)
        finally:
            self._ad_target = -1

    # ------------------------------------------------------------------
    # translation
    def _walk(self, sh, lin, write, user):
        R = self.R
        self.counters["walks"] += 1
        try:
            return walk(self.phys, sh.key, R[CR0], R[CR4], lin, write, user,
                        a20_mask=self.a20_mask, ad_write=self._ad_write)
        except CPUFault:
            self.counters["page_faults"] += 1
            raise

    def _fill(self, sh, vpn, paddr, info):
        """Cache the walk result ``(paddr, info)`` for ``vpn`` in ``sh``."""
        kind = self._kind
        watch = self._watch
        npages = self._ram_pages
        pde_ppn = info.pde_addr >> 12
        if pde_ppn >= npages or kind[pde_ppn] == KIND_MMIO:
            self.counters["uncached"] += 1
            return
        if info.pte_addr is None:
            keys = (info.pde_addr >> 2,)
        else:
            pte_ppn = info.pte_addr >> 12
            if pte_ppn >= npages or kind[pte_ppn] == KIND_MMIO:
                self.counters["uncached"] += 1
                return
            keys = (info.pde_addr >> 2, info.pte_addr >> 2)
        old = sh.src.get(vpn)
        if old is not None and old != keys:
            self._drop(sh, vpn)
            old = None
        item = (sh, vpn)
        if old is None:
            if self.nentries >= self.max_entries:
                self._reclaim(sh)
            self.nentries += 1
            track = self.track
            for key in keys:
                tppn = key >> 10
                t = track.get(tppn)
                if t is None:
                    t = track[tppn] = {}
                s = t.get(key & 0x3FF)
                if s is None:
                    s = t[key & 0x3FF] = set()
                s.add(item)
                if not watch[tppn] & WATCH_PT:
                    watch[tppn] |= WATCH_PT
                    self._revoke_writes(tppn)
            sh.src[vpn] = keys
        self.counters["fills"] += 1
        page = paddr & 0xFFFFF000
        # checked dicts: any kind of page
        sh.psr[vpn] = page
        user_ok = info.user
        if user_ok:
            sh.pur[vpn] = page
        dirty = info.dirty
        if dirty:
            # a D bit "set" in a page table held in ROM was dropped: do not
            # cache the write right, so that every write walks (and tries) again
            d_addr = info.pde_addr if info.pte_addr is None else info.pte_addr
            if kind[d_addr >> 12] != KIND_RAM and not self.phys.peek(d_addr, 4) & paging.D:
                dirty = False
        sup_w = dirty and info.sup_write
        user_w = dirty and user_ok and info.rw
        if sup_w:
            sh.psw[vpn] = page
        if user_w:
            sh.puw[vpn] = page
        # fast dicts: RAM pages only
        ppn = page >> 12
        if ppn >= npages:
            return
        k = kind[ppn]
        if k == KIND_MMIO:
            return
        sh.sr[vpn] = page
        if user_ok:
            sh.ur[vpn] = page
        if (sup_w or user_w) and k == KIND_RAM and not watch[ppn]:
            if sup_w:
                sh.sw[vpn] = page
            if user_w:
                sh.uw[vpn] = page
            s = self.wrev.get(ppn)
            if s is None:
                s = self.wrev[ppn] = set()
            s.add(item)

    def _fill_flat(self, sh, vpn, paddr):
        """Paging off: cache the identity translation if it is a RAM page."""
        ppn = paddr >> 12
        if ppn >= self._ram_pages:
            return
        k = self._kind[ppn]
        if k == KIND_MMIO:
            return
        page = ppn << 12
        self.counters["fills"] += 1
        sh.sr[vpn] = page
        if k == KIND_RAM and not self._watch[ppn]:
            sh.sw[vpn] = page
            s = self.wrev.get(ppn)
            if s is None:
                s = self.wrev[ppn] = set()
            s.add((sh, vpn))

    def _promote_writes(self, sh, vpn, page):
        """A checked write right to a page that is now plain unwatched RAM (it
        was a page table or held code when the entry was built): give it its
        fast entries back, or every store to it would stay on the slow path
        until the translation is dropped."""
        added = False
        if sh.psw.get(vpn) == page:
            sh.sw[vpn] = page
            added = True
        if sh.puw.get(vpn) == page:
            sh.uw[vpn] = page
            added = True
        if added:
            ppn = page >> 12
            s = self.wrev.get(ppn)
            if s is None:
                s = self.wrev[ppn] = set()
            s.add((sh, vpn))

    def _xlate(self, lin, write, user):
        """Physical address of ``lin`` for this access; fills the shadow."""
        vpn = lin >> 12
        sh = self.cur
        if not sh.paging:
            paddr = lin & self.a20_mask
            if vpn not in (sh.sw if write else sh.sr):
                self._fill_flat(sh, vpn, paddr)
            return paddr
        if write:
            page = (sh.puw if user else sh.psw).get(vpn)
        else:
            page = (sh.pur if user else sh.psr).get(vpn)
        if page is not None:
            if write:
                ppn = page >> 12
                if ppn < self._ram_pages and not self._watch[ppn] \
                        and self._kind[ppn] == KIND_RAM:
                    self._promote_writes(sh, vpn, page)
            return page | (lin & 0xFFF)
        paddr, info = self._walk(sh, lin, write, user)
        self._fill(sh, vpn, paddr, info)
        return paddr

    def translate(self, lin, write, user, fetch=False):
        """Physical address of ``lin`` (raises CPUFault #PF); fills the shadow."""
        return self._xlate(lin & MASK32, write, user)

    # ------------------------------------------------------------------
    # slow paths
    def read(self, lin, size, user):
        lin &= MASK32
        off = lin & 0xFFF
        if off + size <= PAGE_SIZE:
            return self.phys.read(self._xlate(lin, False, user), size)
        return int.from_bytes(self.read_bytes(lin, size, user), "little")

    def write(self, lin, size, value, user):
        lin &= MASK32
        off = lin & 0xFFF
        if off + size <= PAGE_SIZE:
            self.phys.write(self._xlate(lin, True, user), size, value)
            return
        # page-crossing: every page is translated (and may fault) before any
        # byte is stored
        self.write_bytes(lin, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"), user)

    def _pages(self, lin, n, write, user):
        lin &= MASK32
        parts = []
        while n > 0:
            chunk = min(n, PAGE_SIZE - (lin & 0xFFF))
            parts.append((self._xlate(lin, write, user), chunk))
            lin = (lin + chunk) & MASK32
            n -= chunk
        return parts

    def read_bytes(self, lin, n, user=False):
        """``n`` bytes at linear ``lin``; every page is translated first."""
        parts = self._pages(lin, n, False, user)
        rb = self.phys.read_bytes
        return b"".join(rb(p, c) for p, c in parts)

    def write_bytes(self, lin, data, user=False):
        """Store ``data`` at linear ``lin``; every page is translated (and may
        fault) before any byte is written."""
        data = bytes(data)
        parts = self._pages(lin, len(data), True, user)
        pos = 0
        wb = self.phys.write_bytes
        for p, c in parts:
            wb(p, data[pos:pos + c])
            pos += c

    # ------------------------------------------------------------------
    # audit
    def audit(self):
        """Every violated invariant, as one line each; [] when all is well."""
        errs = []
        phys = self.phys
        npages = self._ram_pages
        kind = self._kind
        watch = self._watch
        R = self.R
        cr0, cr4 = R[CR0], R[CR4]
        exp_r, exp_w = (self.cur.ur, self.cur.uw) if self.user else (self.cur.sr, self.cur.sw)
        if self.rtlb is not exp_r or self.wtlb is not exp_w:
            errs.append("rtlb/wtlb are not the current shadow's dicts")
        if self.paging != bool(cr0 & CR0_PG):
            errs.append("MMU paging mode disagrees with CR0.PG (paging_changed not called)")
        shadows = self._all_shadows()
        if self.cur not in shadows:
            errs.append("current shadow is not a live shadow")
        if len(self.cache) > self.max_shadows:
            errs.append("shadow cache holds %d > %d shadows" % (len(self.cache), self.max_shadows))
        peek = phys.peek
        for sh in shadows:
            tag = repr(sh)
            fast = (("sr", sh.sr, False, False), ("sw", sh.sw, True, False),
                    ("ur", sh.ur, False, True), ("uw", sh.uw, True, True))
            checked = {"sr": sh.psr, "sw": sh.psw, "ur": sh.pur, "uw": sh.puw}
            for name, d, is_w, is_u in fast:
                for vpn, base in d.items():
                    where = "%s %s[0x%05x]=%r" % (tag, name, vpn, base)
                    if not isinstance(base, int) or base & 0xFFF or base < 0 \
                            or base + PAGE_SIZE > phys.ram_size:
                        errs.append("%s: host offset outside guest RAM" % where)
                        continue
                    ppn = base >> 12
                    if kind[ppn] == KIND_MMIO:
                        errs.append("%s: maps an MMIO page" % where)
                    if is_w:
                        if kind[ppn] != KIND_RAM:
                            errs.append("%s: write entry to a ROM page" % where)
                        if watch[ppn]:
                            errs.append("%s: write entry to a watched page (0x%x)"
                                        % (where, watch[ppn]))
                        if (sh, vpn) not in self.wrev.get(ppn, ()):
                            errs.append("%s: write entry missing from the reverse map" % where)
                    if sh.paging and checked[name].get(vpn) != base:
                        errs.append("%s: fast entry without matching checked entry" % where)
            if not sh.paging:
                for name, d in sh.dicts():
                    for vpn, base in d.items():
                        if base != ((vpn << 12) & self.a20_mask):
                            errs.append("%s %s[0x%05x]=0x%x: not the identity (A20) map"
                                        % (tag, name, vpn, base))
                continue
            for name, d, is_w, is_u in fast:
                for vpn, page in checked[name].items():
                    where = "%s p%s[0x%05x]=0x%x" % (tag, name, vpn, page)
                    keys = sh.src.get(vpn)
                    if keys is None:
                        errs.append("%s: entry without tracking record" % where)
                        continue
                    for key in keys:
                        kppn = key >> 10
                        if kppn >= npages or not watch[kppn] & WATCH_PT:
                            errs.append("%s: page table page 0x%x not write-watched"
                                        % (where, kppn))
                        elif (sh, vpn) not in self.track.get(kppn, {}).get(key & 0x3FF, ()):
                            errs.append("%s: missing from tracking of 0x%x" % (where, key << 2))
                    try:
                        paddr, info = walk(phys, sh.key, cr0, cr4, vpn << 12, is_w, is_u,
                                           update=False, a20_mask=self.a20_mask, read=peek)
                    except CPUFault as f:
                        errs.append("%s: a fresh walk faults (%s)" % (where, f))
                        continue
                    if paddr & 0xFFFFF000 != page:
                        errs.append("%s: a fresh walk gives 0x%x" % (where, paddr))
                    if is_w and not info.dirty:
                        errs.append("%s: write entry but D is clear" % where)
                    fresh = (info.pde_addr >> 2,) if info.pte_addr is None else \
                        (info.pde_addr >> 2, info.pte_addr >> 2)
                    if fresh != keys:
                        errs.append("%s: built from other PDE/PTE than a fresh walk" % where)
            for vpn in sh.src:
                if vpn not in sh.psr:
                    errs.append("%s: tracking record for 0x%05x without an entry" % (tag, vpn))
        n = sum(len(sh.src) for sh in shadows)
        if n != self.nentries:
            errs.append("entry count %d disagrees with the tracking records (%d)"
                        % (self.nentries, n))
        if n > self.max_entries:
            errs.append("%d cached pages exceed max_entries=%d" % (n, self.max_entries))
        for ppn, t in self.track.items():
            if not t:
                errs.append("empty tracking record for page 0x%x" % ppn)
            if ppn >= npages or not watch[ppn] & WATCH_PT:
                errs.append("tracked page 0x%x without WATCH_PT" % ppn)
        return errs
