"""The memory native code shares with Python: the context block, the native
TLB and the dispatch table.

Compiled blocks get one argument, the address of a context block (an array
of 64-bit words, ``CTX_*`` below).  Everything a block needs at run time is
reached through it, so a compiled object holds no host address and can be
reused by another process (the persistent code cache):

  CTX_R          address of the CPU state words (cpu/state.py, the one layout)
  CTX_RAM        address of guest RAM (PhysMem's buffer)
  CTX_TLBR/TLBW  the native TLB: NTLB direct-mapped entries each, one for
                 reads (and fetches), one for writes.  Entry = vpn << 32 |
                 host page offset; an empty slot holds a tag no vpn has
                 (JIT_NOTES trap 7: a zero-filled TLB would "hit" page 0).
                 It is filled from two sources (see "The native TLB" below)
  CTX_KIND/WATCH PhysMem's page-kind and watch byte arrays, CTX_NPAGES the
                 number of RAM pages: what the native walk checks
  CTX_WALKS      native walks that filled an entry (a counter)
  CTX_WMARK      one byte per RAM page, set by the native walk when it fills
                 a write entry to that page (so revoking looks only there)
  CTX_BUDGET     instructions the native code may still retire; each block
                 takes its length at entry or exits without running
  CTX_EXIT_REQ   non-zero: leave at the next block entry (an interrupt, a
                 device stop, code or mappings changed under a helper)
  CTX_UNTIL      the EIP the run must stop at (1 << 40 when none)
  CTX_MODE       the interpreter's mode key (block namespace)
  CTX_DISPATCH   the dispatch hash table: NDISP (key, function) pairs,
                 key = linear address | mode key
  CTX_SLOT       set by a direct exit whose slot is empty: the slot's address,
                 for Python to patch once the target is compiled
  CTX_CHAINS     native block-to-block transfers (a counter)
  CTX_SEGS       per segment register: base, rmin, rmax, wmin, wmax (signed),
                 mirrored from the interpreter's SegCache on every load
  CTX_SS_BIG     SS.B (the stack-address size follows it at run time)
  CTX_HOT        set by a block entered HOT_ENTRIES times or more: the address
                 of its entry counter, for Python to recompile it optimised

The native TLB
--------------
An entry comes either from the MMU's current fast dicts (``mmu.rtlb`` /
``mmu.wtlb``, copied after a Python access: ``tlb_fill``) or from native
code's own page walk (tlbwalk.py).  It never allows an access the shadow
page tables would not, because it is emptied:

* one vpn, when the MMU drops a fast entry for it (``mmu.tlb_listener(vpn)``);
* entirely, when the address space, the privilege class or the paging mode
  changes (``mmu.tlb_listener(None)``);
* entirely, when a page-table page the MMU watches is written (other than
  the walkers' own A/D updates) or stops being watched
  (``mmu.pt_listener``): the native walk fills only from PDEs/PTEs on
  watched pages, so until one of those events its entries are exact;
* the write entries to a page, when that page becomes watched (a page table
  or decoded code: ``mmu.revoke_listener(ppn)``), since the native walk
  fills write entries only for unwatched RAM pages.

The two "entirely" flushes after a native fill cost a numpy fill; while no
native walk has filled anything since the last flush they cost nothing.
"""
import numpy as np

CTX_R, CTX_RAM, CTX_TLBR, CTX_TLBW = 0, 1, 2, 3
CTX_BUDGET, CTX_EXIT_REQ, CTX_UNTIL, CTX_MODE = 4, 5, 6, 7
CTX_DISPATCH, CTX_SLOT, CTX_CHAINS, CTX_SS_BIG = 8, 9, 10, 11
CTX_HOT = 12
CTX_KIND, CTX_WATCH, CTX_NPAGES = 13, 14, 15
CTX_WALKS = 46             # after CTX_SEGS' 30 words
CTX_WMARK = 47
HOT_ENTRIES = 20000        # entries that make a block worth optimised code
CTX_SEGS = 16              # 6 x 5 words
SEG_WORDS = 5
CTX_WORDS = 64
NO_UNTIL = 1 << 40

NTLB = 1024                # entries per native TLB (a power of two)
TLB_EMPTY = np.uint64(0xFFFFFFFF << 32)    # tag 0xFFFFFFFF: no vpn (vpn < 2^20)
NDISP = 1 << 16            # dispatch table entries (a power of two; 1 MiB: a kernel has ~20k hot blocks)
DISP_EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)
_EMPTY = 0xFFFFFFFF << 32

# Exit codes a block returns to Python
EXIT_LOOKUP = 0            # the next block is not (known to be) compiled
EXIT_BUDGET = 1            # the instruction budget is spent
EXIT_EVENT = 2             # CTX_EXIT_REQ was set
EXIT_FAULT = 3             # a helper raised a guest exception (or a VM stop)
EXIT_UNTIL = 4             # the run's stop address lies in the next block
EXIT_INTERP = 5            # the next instruction has no native semantics
EXIT_STOP_AFTER = 6        # a helper asked to stop after its instruction
EXIT_BAIL = 7              # the block's run-time assumption failed (SS.B)
EXIT_NAMES = ("lookup", "budget", "event", "fault", "until", "interpret",
              "helper_stop", "bail")


def dispatch_index(lin):
    """Slot of linear address ``lin`` in the dispatch table (IR does the same)."""
    return ((lin >> 2) ^ (lin >> 14)) & (NDISP - 1)


class Context:
    """The context block of one CPU's JIT, with the tables it points to."""

    def __init__(self, cpu):
        self.words = np.zeros(CTX_WORDS, dtype=np.int64)
        self.tlbr = np.full(NTLB, TLB_EMPTY, dtype=np.uint64)
        self.tlbw = np.full(NTLB, TLB_EMPTY, dtype=np.uint64)
        self.disp = np.full(2 * NDISP, DISP_EMPTY, dtype=np.uint64)
        w = self.words
        import ctypes
        w[CTX_R] = ctypes.addressof(cpu.state)
        w[CTX_RAM] = cpu.phys.ram_np.ctypes.data
        w[CTX_TLBR] = self.tlbr.ctypes.data
        w[CTX_TLBW] = self.tlbw.ctypes.data
        w[CTX_DISPATCH] = self.disp.ctypes.data
        w[CTX_UNTIL] = NO_UNTIL
        phys = cpu.phys
        # the byte arrays are fixed for the machine's life (PhysMem never
        # resizes them), so native code may keep their addresses
        w[CTX_KIND] = phys.page_kind.ctypes.data
        w[CTX_WATCH] = phys.watch.ctypes.data
        w[CTX_NPAGES] = phys.ram_pages
        self.wmark = np.zeros(max(1, phys.ram_pages), dtype=np.uint8)
        self.WM = memoryview(self.wmark)
        w[CTX_WMARK] = self.wmark.ctypes.data
        self.address = w.ctypes.data
        # memoryviews over the same bytes: Python's scalar reads and writes are
        # several times cheaper through them than through numpy indexing
        self.W = memoryview(self.words).cast("B").cast("q")
        self.TR = memoryview(self.tlbr).cast("B").cast("Q")
        self.TW = memoryview(self.tlbw).cast("B").cast("Q")
        self.D = memoryview(self.disp).cast("B").cast("Q")
        self.cpu = cpu
        self.tlb_filled = False     # Python copied an entry in since the last flush
        self.walks_seen = 0         # CTX_WALKS at the last flush

    # --- native TLB -------------------------------------------------------------
    def native_fills(self):
        """Has the native walk filled an entry since the last full flush?"""
        return self.W[CTX_WALKS] != self.walks_seen

    def tlb_flush(self, vpn=None):
        if vpn is None:
            walks = self.W[CTX_WALKS]
            if self.tlb_filled or walks != self.walks_seen:
                self.tlbr.fill(TLB_EMPTY)
                self.tlbw.fill(TLB_EMPTY)
                self.tlb_filled = False
                self.walks_seen = walks
            return
        i = vpn & (NTLB - 1)
        if self.TR[i] >> 32 == vpn:
            self.TR[i] = _EMPTY
        if self.TW[i] >> 32 == vpn:
            self.TW[i] = _EMPTY

    def tlb_flush_native(self):
        """A page-table page changed or stopped being watched: entries of the
        native walk may be stale (the MMU's own ones are dropped one by one)."""
        if self.W[CTX_WALKS] != self.walks_seen:
            self.tlb_flush(None)

    def tlb_revoke_writes(self, ppn):
        """Page ``ppn`` became watched: no native write entry may point at it.
        (Entries copied from the MMU are revoked through tlb_listener; this
        finds the ones the native walk filled.)"""
        if ppn < len(self.WM) and self.WM[ppn]:
            self.WM[ppn] = 0
            hit = (self.tlbw & np.uint64(0xFFFFFFFF)) == np.uint64(ppn << 12)
            if hit.any():
                self.tlbw[hit] = TLB_EMPTY

    def tlb_fill(self, vpn):
        """Copy the MMU's current fast entries for ``vpn`` into the native TLB."""
        mmu = self.cpu.mmu
        i = vpn & (NTLB - 1)
        b = mmu.rtlb.get(vpn)
        if b is not None:
            self.TR[i] = (vpn << 32) | b
            self.tlb_filled = True
        b = mmu.wtlb.get(vpn)
        if b is not None:
            self.TW[i] = (vpn << 32) | b
            self.tlb_filled = True

    # --- segments -----------------------------------------------------------------
    def seg_changed(self, seg):
        """SegCache listener: mirror one segment register's bounds."""
        o = CTX_SEGS + SEG_WORDS * seg.sreg
        w = self.W
        w[o] = seg.base
        w[o + 1] = seg.rmin
        w[o + 2] = seg.rmax
        w[o + 3] = seg.wmin
        w[o + 4] = seg.wmax
        if seg.sreg == 2:
            w[CTX_SS_BIG] = 1 if seg.big else 0

    # --- dispatch table ---------------------------------------------------------------
    def disp_set(self, key, fn):
        i = dispatch_index(key & 0xFFFFFFFF)
        self.disp[2 * i] = key
        self.disp[2 * i + 1] = fn

    def disp_remove(self, key):
        i = dispatch_index(key & 0xFFFFFFFF)
        if int(self.disp[2 * i]) == key:
            self.disp[2 * i] = DISP_EMPTY

    def disp_clear(self):
        self.disp.fill(DISP_EMPTY)
