"""Tier 1: compile hot interpreter blocks to native code and run them chained.

The interpreter (cpu/interp.py) stays in charge of the run loop.  It counts
how often each cached block runs and, at ``threshold``, asks ``compile``
for native code; from then on its fast path calls ``enter`` instead of the
block's closures.  Native code runs block after block (exit slots patched
to their targets, a hash table for indirect transfers) and comes back only
for: a block not compiled (yet), the instruction budget, a pending event,
the run's stop address, an instruction without native semantics, a
helper's guest exception, or a helper that changed what the native code
relies on (self-modifying code, page mappings).  The exit codes are counted
by reason (``counters``).

The JIT attaches to a CPU from outside (``attach``): the interpreter knows
only the ``tier1`` hook and works unchanged without it.
"""
import ctypes
import hashlib
import os
import time
import weakref

from ..cpu.faults import CPUFault, Restart
from ..cpu.state import CR0, CR3, CR4, CS
from . import runtime as rt
from . import llvm_engine
from .codecache import CodeCache
from .blockgen import build_modules
from .ir import ROUTINES

def _version():
    """The code cache's namespace: a hash of the sources that decide what
    compiled code looks like (and the LLVM in use), so that a cache written by
    another emu or llvmlite is never consulted."""
    import llvmlite
    here = os.path.dirname(os.path.abspath(__file__))
    h = hashlib.sha256(llvmlite.__version__.encode())
    for name in ("ir.py", "semantics.py", "semantics_more.py", "runtime.py", "llvm_engine.py",
                 "tlbwalk.py", "blockgen.py", "jit.py"):
        with open(os.path.join(here, name), "rb") as f:
            h.update(f.read())
    for mod in ("state.py", "flags.py"):
        with open(os.path.join(os.path.dirname(here), "cpu", mod), "rb") as f:
            h.update(f.read())
    return "emu-jit-" + h.hexdigest()[:16]


VERSION = _version()
DEFAULT_THRESHOLD = 32        # measured on the Linux boot: see INTERNALS.md ("When")

_JITS = weakref.WeakValueDictionary()       # context address -> JIT


# --- helpers called from native code (one set per process) ------------------------------
@llvm_engine.HELPER_PROTOS["emu_rd"]
def _helper_rd(ctx, sreg, off, size, ahead):
    jit = _JITS.get(ctx)
    if jit is None:
        return -1
    return jit.helper_read(sreg, off, size, ahead)


@llvm_engine.HELPER_PROTOS["emu_wr"]
def _helper_wr(ctx, sreg, off, size, value, ahead):
    jit = _JITS.get(ctx)
    if jit is None:
        return -1
    return jit.helper_write(sreg, off, size, value, ahead)


@llvm_engine.HELPER_PROTOS["emu_op"]
def _helper_op(ctx, eip, ahead):
    jit = _JITS.get(ctx)
    if jit is None:
        return -1
    return jit.helper_op(eip, ahead)


_helpers_registered = False


def _register():
    global _helpers_registered
    if not _helpers_registered:
        from .ir import ROUTINES, runtime_module_text
        llvm_engine.set_runtime(ROUTINES, runtime_module_text())
        llvm_engine.register_helpers({"emu_rd": _helper_rd, "emu_wr": _helper_wr,
                                      "emu_op": _helper_op})
        _helpers_registered = True


MAX_BATCH = 16             # blocks per compiled module, at most
EXIT_BOOST = 3             # extra hits for a block native code had to leave for


class _Prep:
    """A block named for tier 1 (its bytes, address and mode), waiting to be
    compiled or taken from the code cache."""
    __slots__ = ("blk", "code", "eip0", "lin0", "xmax", "used", "name", "tier2", "old")


class NativeBlock:
    """Compiled code of one interpreter block."""

    __slots__ = ("name", "fn", "call", "n", "slots", "incoming", "pglobal", "key", "dead", "ops",
                 "hglobal", "tier2")


class JIT:
    def __init__(self, cpu, threshold=DEFAULT_THRESHOLD, cache_dir=None, use_cache=True,
                 background=False):
        _register()
        self.cpu = cpu
        self.threshold = max(0, int(threshold))
        self.ctx = rt.Context(cpu)
        self.engine = llvm_engine.Engine()
        self.model = self.engine.model          # objects are compiled for it
        # (the code cache keeps large-model objects apart: llvm_engine.py)
        version = VERSION if self.model == "small" else VERSION + "-" + self.model
        self.cache = CodeCache(cache_dir, version) if use_cache else None
        # look blocks up in the code cache early (their second run) when it
        # has something in it; an empty cache is not worth the lookups
        self.probing = self.cache is not None and self.cache.has_entries()
        self.loaded = {}            # name -> NativeBlock (code objects in the engine)
        self.objects = set()        # sha256 of every object file in the engine
        self.by_hot = {}            # address of a block's entry counter -> NativeBlock
        self.warm = []              # blocks past half the threshold (see note_warm)
        self.backlog = []           # _Preps waiting for the busy compile worker (compile)
        self.op_closures = {}       # lin | mode key -> interpreter closure (helper_op)
        self.worker = None          # compile_worker.CompileWorker when compiling in background
        if background:
            try:
                from .compile_worker import CompileWorker
                self.worker = CompileWorker()
                weakref.finalize(self, self.worker.close)
            except Exception:
                self.worker = None
        self.poll_countdown = 0
        self.by_key = {}            # interpreter key -> NativeBlock
        self.pending = None         # exception raised by a helper
        self.pending_slot = None    # (slot address, eip, mode key) of the last empty-slot exit
        self.dirty = False
        self.entry_icount = 0
        self.entry_budget = 0
        # LLVM's CPU time per compiled block (parse, passes, code generation of
        # its module, shared out over the module's blocks; thread CPU time, so
        # a loaded host does not inflate it)
        self.compile_ms = []
        self.counters = {
            "blocks_compiled": 0, "modules_compiled": 0, "modules_queued": 0,
            "blocks_from_cache": 0, "cache_hits": 0,
            "cache_misses": 0, "compile_ms_total": 0.0, "native_entries": 0,
            "chain_hits": 0, "chains_patched": 0, "blocks_rejected": 0,
            "native_instructions": 0, "invalidated": 0, "helper_ops": 0,
            "slow_reads": 0, "slow_writes": 0,     # native TLB misses, MMIO, watched pages
            "tier_ups": 0,                         # blocks recompiled optimised
            "exits": {n: 0 for n in rt.EXIT_NAMES},
        }
        _JITS[self.ctx.address] = self
        # hooks into the layers below (they never import us)
        interp = cpu.interp
        interp.tier1 = self
        interp.hot_threshold = self.threshold
        cpu.mmu.tlb_listener = self._tlb_changed
        cpu.mmu.pt_listener = self.ctx.tlb_flush_native
        cpu.mmu.revoke_listener = self.ctx.tlb_revoke_writes
        for s in cpu.segs:
            s.listener = self.ctx.seg_changed
            self.ctx.seg_changed(s)

    # --- hooks from below ---------------------------------------------------------------
    def _tlb_changed(self, vpn):
        # Native code re-reads the native TLB at every access and every block
        # checks its code page on entry, so a dropped translation needs no
        # stop: the next access misses and asks the MMU.
        self.ctx.tlb_flush(vpn)

    def drop(self, blk):
        """The interpreter dropped ``blk`` (self-modifying code, flush, remap)."""
        nb = blk.native
        blk.native = None
        if not nb:                   # None, False, or 0 (being compiled: the result is dropped)
            return
        self.counters["invalidated"] += 1
        self.dirty = True
        if self.by_key.get(blk.key) is nb:
            del self.by_key[blk.key]
            self.ctx.disp_remove(blk.key)
        for addr in nb.incoming:
            ctypes.c_int64.from_address(addr).value = 0
        nb.incoming = []

    def drop_all(self):
        self.dirty = True
        for nb in self.by_key.values():
            for addr in nb.incoming:
                ctypes.c_int64.from_address(addr).value = 0
            nb.incoming = []
        self.by_key.clear()
        self.ctx.disp_clear()
        self.pending_slot = None

    # --- helpers ------------------------------------------------------------------------
    def _sync_clock(self, ahead):
        w = self.ctx.W
        self.cpu.icount = self.entry_icount + (self.entry_budget - w[rt.CTX_BUDGET]) - ahead

    def helper_read(self, sreg, off, size, ahead):
        cpu = self.cpu
        self.counters["slow_reads"] += 1
        try:
            self._sync_clock(ahead)
            v = cpu.mem.RD[size](sreg, off)
            self._after_access(sreg, off)
            return v
        except BaseException as ex:          # delivered by enter() after the exit
            self.pending = ex
            return -1

    def helper_write(self, sreg, off, size, value, ahead):
        cpu = self.cpu
        self.counters["slow_writes"] += 1
        try:
            self._sync_clock(ahead)
            self.dirty = False
            cpu.mem.WR[size](sreg, off, value & ((1 << (8 * size)) - 1))
            self._after_access(sreg, off)
            return 1 if self.dirty or cpu.event else 0
        except BaseException as ex:
            self.pending = ex
            return -1

    def helper_op(self, eip, ahead):
        """Native code hands one instruction to its interpreter closure."""
        cpu = self.cpu
        interp = cpu.interp
        try:
            self._sync_clock(ahead)
            mode = interp.mode_key
            f = self.op_closures.get(((cpu.segs[CS].base + eip) & 0xFFFFFFFF) | mode)
            if f is None:
                return 2
            self.counters["helper_ops"] += 1
            self.dirty = False
            f()
            if self.dirty or cpu.event or interp.mode_key != mode:
                if cpu.event:
                    self.ctx.W[rt.CTX_EXIT_REQ] = 1
                return 1
            return 0
        except Restart:
            return 2             # a REP instruction did a chunk: the interpreter resumes it
        except BaseException as ex:
            self.pending = ex
            return -1

    def _after_access(self, sreg, off):
        cpu = self.cpu
        lin = (cpu.segs[sreg].base + off) & 0xFFFFFFFF
        self.ctx.tlb_fill(lin >> 12)
        if cpu.event:
            self.ctx.W[rt.CTX_EXIT_REQ] = 1

    # --- compiling ------------------------------------------------------------------------
    def note_warm(self, blk):
        """The interpreter saw ``blk`` run a quarter of the threshold: compile it with
        the next hot block (several blocks per module amortise LLVM's fixed
        cost per module, JIT_NOTES.md)."""
        if len(self.warm) < 4 * MAX_BATCH:
            self.warm.append(blk)

    def _tier_up(self, haddr):
        """A compiled block was entered HOT_ENTRIES times: compile it again
        with optimisation (instcombine, simplifycfg, the memory routines
        inlined, codegen opt 2) and swap it in.  Same IR, same results."""
        nb = self.by_hot.get(haddr)
        if nb is None or nb.tier2 or nb.key is None:
            return
        nb.tier2 = True                      # asked once
        interp = self.cpu.interp
        blk = interp.cache.get(nb.key)
        if blk is None or blk.native is not nb or nb.key & ~0xFFFFFFFF != interp.mode_key:
            return
        p = self._prepare(blk)
        if p is None or p.name != nb.name:
            return
        p.tier2 = True
        p.old = nb
        p.name = nb.name + "o2"
        nb2 = self._find(p.name)
        if nb2 is not None:
            self._install(blk, nb2, p)
            self.counters["tier_ups"] += 1
            return
        self._compile_batch([p], optimise_all=True)

    def _find(self, name):
        """A loaded or cached NativeBlock called name, or None."""
        nb = self.loaded.get(name)
        if nb is None and self.cache is not None:
            nb = self._from_cache(name)
        return nb

    def probe(self, blk):
        """A block runs for the second time: if the code cache (or this engine)
        has it already, install it now instead of waiting for the threshold."""
        p = self._prepare(blk)
        if p is None:
            return
        nb = self._find(p.name + "o2") or self._find(p.name)   # optimised code first
        if nb is not None:
            self._install(blk, nb, p)

    def compile(self, blk):
        """Give ``blk`` native code (from the code cache or compiled now),
        together with the warm blocks waiting; a block tier 1 cannot run is
        left with native = False."""
        if self.worker is not None and self.worker.inflight:
            self.collect()
            if blk.native:
                return
        cpu = self.cpu
        interp = cpu.interp
        mode = interp.mode_key
        batch = [blk]
        for b in self.warm:
            if len(batch) >= MAX_BATCH:
                break
            if b is not blk and b.native is None and interp.cache.get(b.key) is b \
                    and b.key & ~0xFFFFFFFF == mode:
                batch.append(b)
        self.warm = []
        todo = []
        for b in batch:
            p = self._prepare(b)
            if p is None:
                b.native = False
                self.counters["blocks_rejected"] += 1
                continue
            nb = self._find(p.name + "o2") or self._find(p.name)
            if nb is not None:
                self._install(b, nb, p)
            else:
                todo.append(p)
        if not todo:
            return
        w = self.worker
        if w is not None and w.inflight:
            # The worker is busy (a cold boot keeps it so): keep these for its
            # next module instead of queueing a module of one or two blocks.
            # LLVM's cost is ~0.65 ms per module plus ~0.86 ms per block, and
            # most modules held one block.  The blocks run interpreted meanwhile,
            # as they would while queued.
            for p in todo:
                p.blk.native = 0
            self.backlog.extend(todo)
            if len(self.backlog) < MAX_BATCH:
                return
            todo, self.backlog = self.backlog, []
        self._compile_batch(todo)

    def _flush_backlog(self):
        """The worker is free: give it the blocks kept back for it (those the
        interpreter has not dropped meanwhile)."""
        interp = self.cpu.interp
        todo = [p for p in self.backlog
                if p.blk.native == 0 and interp.cache.get(p.blk.key) is p.blk]
        self.backlog = []
        for p in todo:
            p.blk.native = None
        if todo:
            self._compile_batch(todo)

    def _prepare(self, blk):
        """Name blk for tier 1 (a hash of its code bytes, address and mode):
        a _Prep, or None when tier 1 cannot take it.  Nothing is decoded here
        (a code-cache hit needs no decoding: blockgen.py decodes for compiling)."""
        cpu = self.cpu
        cs = cpu.segs[CS]
        if not cs.big or cpu.v86 or blk.ppage is None:
            return None
        n = blk.n
        if blk.next_eips[n - 1] == blk.eips[n - 1]:
            return None                      # the block only raises a fetch fault
        eip0 = blk.eips[0]
        lin0 = (cs.base + eip0) & 0xFFFFFFFF
        if cpu.mmu.rtlb.get(lin0 >> 12) != blk.ppage:
            return None
        used = (blk.end_eip - eip0) & 0xFFFFFFFF
        if used == 0 or used > 4096:
            return None
        code = self._code_bytes(lin0, used)
        if code is None or len(code) != used:
            return None
        p = _Prep()
        p.blk = blk
        p.tier2 = False
        p.old = None
        p.code = code
        p.eip0 = eip0
        p.lin0 = lin0
        p.xmax = cs.xmax
        p.used = used
        mode = (cs.big, cpu.R[14] & 1, cs.xmax, cs.base)
        h = hashlib.sha256()
        h.update(repr((VERSION, eip0, lin0, mode, n)).encode())
        h.update(code)
        p.name = h.hexdigest()[:24]
        return p

    def _install(self, blk, nb, p):
        if nb.ops:
            # the instructions run through emu_op get the interpreter's own
            # closures for them, from the block it decoded
            cpu = self.cpu
            base = cpu.segs[CS].base
            mode = cpu.interp.mode_key
            where = {eip: i for i, eip in enumerate(blk.eips)}
            for eip in nb.ops:
                i = where.get(eip)
                if i is None:               # cannot happen for a matching key
                    blk.native = False
                    return
                self.op_closures[((base + eip) & 0xFFFFFFFF) | mode] = cpu.interp.closure(blk, i)
        vpn = p.lin0 >> 12
        # the native TLB entry the block's code-page check expects
        ctypes.c_int64.from_address(nb.pglobal).value = (vpn << 32) | blk.ppage
        self.ctx.tlb_fill(vpn)
        nb.key = blk.key
        blk.native = nb
        old = self.by_key.get(blk.key)
        if old is not None and old is not nb:
            for addr in old.incoming:
                ctypes.c_int64.from_address(addr).value = 0
            old.incoming = []
        self.by_key[blk.key] = nb
        self.ctx.disp_set(blk.key, nb.fn)

    def _from_cache(self, name):
        got = self.cache.get(name)
        if got is None:
            self.counters["cache_misses"] += 1
            return None
        sha, obj, metas = got
        if sha in self.objects:           # loaded, but this block was not in it: cannot be
            return None
        before = len(self.loaded)
        try:
            self._load(obj, sha, metas)
        except RuntimeError:
            return None
        self.counters["cache_hits"] += 1             # object files loaded
        self.counters["blocks_from_cache"] += len(self.loaded) - before
        return self.loaded.get(name)

    def _load(self, obj, sha, metas):
        """Add an object to the engine; register every block it holds."""
        names = []
        for name, m in metas.items():
            if name in self.loaded:
                continue
            names += ["b_" + name, "p_" + name] + ["s_%s_%d" % (name, i) for i in range(m["slots"])]
            if m.get("hot"):
                names.append("h_" + name)
        addrs = self.engine.load(obj, names)
        self.objects.add(sha)
        for name, m in metas.items():
            if name in self.loaded:
                continue
            nb = NativeBlock()
            nb.name = name
            nb.fn = addrs["b_" + name]
            nb.call = llvm_engine.BLOCK_PROTO(nb.fn)
            nb.n = m["n"]
            nb.ops = m.get("ops", [])
            nb.slots = [addrs["s_%s_%d" % (name, i)] for i in range(m["slots"])]
            nb.pglobal = addrs["p_" + name]
            nb.hglobal = addrs.get("h_" + name, 0)
            nb.tier2 = False
            if nb.hglobal:
                self.by_hot[nb.hglobal] = nb
            nb.incoming = []
            nb.key = None
            nb.dead = False
            self.loaded[name] = nb

    def _compile_batch(self, preps, optimise_all=False):
        """Compile the prepared blocks: blockgen.build_modules decodes them,
        writes their IR and groups them into modules, which are compiled in
        the compile worker when there is one, or here."""
        specs = [(p.name, p.code, p.eip0, p.lin0, p.xmax, p.used, p.blk.n) for p in preps]
        byname = {p.name: p for p in preps}
        modules, rejected = build_modules(specs, optimise_all)
        self._reject(byname, rejected)
        for names, text, metas, optimise in modules:
            group = [byname[n] for n in names]
            if self.worker is not None:
                try:
                    self.worker.submit(text, optimise, ROUTINES, (group, metas, text, optimise),
                                       self.model)
                    for p in group:
                        if not p.tier2:         # (a tier up keeps the running code meanwhile)
                            p.blk.native = 0    # being compiled: interpreted meanwhile
                    self.counters["modules_queued"] += 1
                    continue
                except (OSError, ValueError):
                    self._worker_failed()
            for p in group:
                if p.blk.native is None:
                    p.blk.native = 0            # being compiled: _finish installs it
            self._compile_here(group, metas, text, optimise)

    def _compile_here(self, group, metas, text, optimise):
        t0 = time.thread_time()
        try:
            obj = llvm_engine.compile_object(text, optimise=optimise, model=self.model)
        except Exception:
            for p in group:
                if p.blk.native == 0:
                    p.blk.native = False
            return
        self._finish(group, metas, obj, (time.thread_time() - t0) * 1e3)

    def _reject(self, byname, names):
        """Blocks tier 1 cannot take: the interpreter keeps them for good."""
        for name in names:
            p = byname[name]
            if not p.tier2 and p.blk.native in (None, 0):
                p.blk.native = False
                self.counters["blocks_rejected"] += 1

    def _finish(self, group, metas, obj, ms):
        """Load a compiled module and install its blocks that are still wanted."""
        sha = hashlib.sha256(obj).hexdigest()
        try:
            self._load(obj, sha, metas)
        except RuntimeError:
            for p in group:
                if p.blk.native == 0:
                    p.blk.native = False
            return
        if self.cache is not None:
            if self.worker is not None:
                self.cache.put_later(obj, metas)     # off the guest's thread too
            else:
                self.cache.put(obj, metas)
        self.counters["modules_compiled"] += 1
        self.counters["blocks_compiled"] += len(group)
        self.counters["compile_ms_total"] += ms
        per = ms / len(group)
        interp = self.cpu.interp
        for p in group:
            self.compile_ms.append(per)
            blk = p.blk
            if p.tier2:
                nb = self.loaded.get(p.name)
                if nb is not None and blk.native is p.old and interp.cache.get(blk.key) is blk:
                    self._install(blk, nb, p)
                    self.counters["tier_ups"] += 1
                continue
            if blk.native is not None and blk.native is not False and blk.native != 0:
                continue            # installed meanwhile (another module had it)
            if blk.native is None or interp.cache.get(blk.key) is not blk:
                continue            # dropped while it was being compiled
            if blk.ppage != self.cpu.mmu.rtlb.get(p.lin0 >> 12):
                blk.native = None   # its page is mapped elsewhere now: count again
                continue
            nb = self.loaded.get(p.name)
            if nb is not None:
                self._install(blk, nb, p)

    def settle(self, timeout=10.0):
        """Wait (at most ``timeout`` seconds) for the modules the background
        compiler still has, install them and write them to the code cache, so
        that a run leaves the cache as complete as it would be compiling
        in-process (the next run then finds everything)."""
        w = self.worker
        deadline = time.monotonic() + timeout
        while w is not None and w.inflight and time.monotonic() < deadline:
            if not w.wait(min(0.5, max(0.0, deadline - time.monotonic()))):
                continue
            self.collect()
            w = self.worker
        if self.cache is not None:
            self.cache.flush()

    def tick(self):
        """Called by the interpreter at the start of every run slice."""
        if self.worker is not None and self.worker.inflight:
            self.collect()

    def collect(self):
        """Install what the compile worker has finished."""
        w = self.worker
        if w is None:
            return
        for (group, metas, text, optimise), obj, info in w.poll():
            if obj is None:                   # the worker could not: do it here
                self._compile_here(group, metas, text, optimise)
            else:
                self._finish(group, metas, obj, info)
        if self.backlog and not w.inflight:
            self._flush_backlog()
        if not w.inflight and not w.alive():
            self._worker_failed()

    def _worker_failed(self):
        w, self.worker = self.worker, None
        if w is not None:
            for (group, metas, text, optimise) in w.inflight.values():
                for p in group:
                    if p.blk.native == 0:
                        p.blk.native = None
            for p in self.backlog:
                if p.blk.native == 0:
                    p.blk.native = None
            self.backlog = []
            try:
                w.close()
            except Exception:
                pass

    def _code_bytes(self, lin, n):
        """Guest code bytes at linear ``lin`` (RAM pages only), or None."""
        cpu = self.cpu
        out = bytearray()
        ram = cpu.phys.ram
        while n > 0:
            vpn = lin >> 12
            base = cpu.mmu.rtlb.get(vpn)
            if base is None:
                if not out:
                    return None
                break
            chunk = min(n, 0x1000 - (lin & 0xFFF))
            off = base | (lin & 0xFFF)
            out += ram[off:off + chunk]
            n -= chunk
            lin = (lin + chunk) & 0xFFFFFFFF
        return bytes(out)

    # --- running ----------------------------------------------------------------------------
    def enter(self, blk, budget, until):
        """Run native code starting with ``blk`` (EIP = its start).
        Returns (instructions retired, guest fault or None)."""
        cpu = self.cpu
        ctx = self.ctx
        w = ctx.W
        interp = cpu.interp
        mode_key = interp.mode_key
        if self.worker is not None:
            self.poll_countdown -= 1
            if self.poll_countdown < 0:
                self.poll_countdown = 32
                if self.worker.inflight:
                    self.collect()
                    if not blk.native:
                        return 0, None
        ps = self.pending_slot
        if ps is not None:
            self.pending_slot = None
            addr, eip, mk = ps
            if mk == mode_key and eip == blk.eips[0]:
                ctypes.c_int64.from_address(addr).value = blk.native.fn
                blk.native.incoming.append(addr)
                self.counters["chains_patched"] += 1
        nb = blk.native
        i = rt.dispatch_index(blk.key & 0xFFFFFFFF) << 1
        if ctx.D[i] != blk.key:
            ctx.D[i] = blk.key              # evicted by a colliding block: back in
            ctx.D[i + 1] = nb.fn
        # the fast path checked blk.ppage against mmu.rtlb: make the native TLB
        # agree, so the block's code-page check passes (it may have been flushed)
        vpn = (blk.key & 0xFFFFFFFF) >> 12
        i = vpn & (rt.NTLB - 1)
        exp = (vpn << 32) | blk.ppage
        if ctx.TR[i] != exp:
            ctx.TR[i] = exp
            ctx.tlb_filled = True
        w[rt.CTX_BUDGET] = budget
        w[rt.CTX_UNTIL] = rt.NO_UNTIL if until is None else until
        w[rt.CTX_MODE] = mode_key
        w[rt.CTX_EXIT_REQ] = 0
        w[rt.CTX_SLOT] = 0
        self.entry_icount = cpu.icount
        self.entry_budget = budget
        interp.cur_iter = None
        self.counters["native_entries"] += 1
        rc = blk.native.call(ctx.address)
        done = budget - w[rt.CTX_BUDGET]
        cpu.icount = self.entry_icount + done
        self.counters["native_instructions"] += done
        self.counters["exits"][rt.EXIT_NAMES[rc]] += 1
        if w[rt.CTX_HOT]:
            hot = w[rt.CTX_HOT]
            w[rt.CTX_HOT] = 0
            self._tier_up(hot)
        if rc == rt.EXIT_FAULT:
            ex = self.pending
            self.pending = None
            if isinstance(ex, CPUFault):
                return done, ex
            raise ex
        if rc == rt.EXIT_LOOKUP:
            slot = w[rt.CTX_SLOT]
            eip = cpu.R[8]
            if slot:
                self.pending_slot = (slot, eip, mode_key)
            # native code left for a block still interpreted: each of its runs
            # costs a round trip through Python, so it counts extra towards
            # the threshold
            t = interp.cache.get(((cpu.segs[CS].base + eip) & 0xFFFFFFFF) | mode_key)
            if t is not None and t.native is None and t.hits >= 2:   # (2: the cache probe)
                t.hits += EXIT_BOOST
        elif rc == rt.EXIT_BAIL:
            blk.native = False           # its run-time assumption (SS.B) does not hold here
        return done, None

    def audit_tlb(self):
        """Every native TLB entry the guest's tables do not allow right now, one
        line each ([] when all is well).  An entry must be what a fresh walk
        (no A/D updates) gives for the current privilege class; a write entry
        needs the D bit and must point at plain RAM no one watches; and the
        PDE/PTE it came from must lie on write-watched pages, or a store to
        them would not reach the MMU (HYP-DV3)."""
        from ..mmu import paging
        from ..mmu.physmem import KIND_MMIO, KIND_RAM, WATCH_PT
        cpu = self.cpu
        mmu = cpu.mmu
        phys = cpu.phys
        R = cpu.R
        errs = []
        kind = phys.page_kind
        watch = phys.watch
        npages = phys.ram_pages
        user = bool(mmu.user)
        for name, tbl, write in (("r", self.ctx.tlbr, False), ("w", self.ctx.tlbw, True)):
            for slot in range(rt.NTLB):
                e = int(tbl[slot])
                vpn = e >> 32
                if vpn == 0xFFFFFFFF:
                    continue
                base = e & 0xFFFFFFFF
                where = "%s[%d] vpn 0x%05x -> 0x%x" % (name, slot, vpn, base)
                if vpn & (rt.NTLB - 1) != slot:
                    errs.append("%s: in the wrong slot" % where)
                ppn = base >> 12
                if base & 0xFFF or ppn >= npages:
                    errs.append("%s: host offset outside guest RAM" % where)
                    continue
                if kind[ppn] == KIND_MMIO:
                    errs.append("%s: an MMIO page" % where)
                if write and (kind[ppn] != KIND_RAM or watch[ppn]):
                    errs.append("%s: write entry to a ROM or watched page" % where)
                if not mmu.paging:
                    if base != (vpn << 12) & mmu.a20_mask:
                        errs.append("%s: not the identity (A20) map" % where)
                    continue
                try:
                    paddr, info = paging.walk(phys, R[CR3], R[CR0], R[CR4], vpn << 12,
                                              write, user, update=False,
                                              a20_mask=mmu.a20_mask, read=phys.peek)
                except CPUFault as f:
                    errs.append("%s: the guest's tables fault (%s)" % (where, f))
                    continue
                if paddr & 0xFFFFF000 != base:
                    errs.append("%s: the guest's tables give 0x%x" % (where, paddr))
                if write and not info.dirty:
                    errs.append("%s: write entry but D is clear" % where)
                for a in (info.pde_addr, info.pte_addr):
                    if a is not None and not (a >> 12 < npages and watch[a >> 12] & WATCH_PT):
                        errs.append("%s: its PDE/PTE at 0x%x is not write-watched" % (where, a))
        return errs

    def stats(self):
        c = dict(self.counters)
        c["exits"] = dict(c["exits"])
        # every native block entry passes the prologue, which counts it; those
        # not made by Python are native-to-native transfers
        c["chain_hits"] = int(self.ctx.words[rt.CTX_CHAINS]) - c["native_entries"]
        c["native_walks"] = int(self.ctx.words[rt.CTX_WALKS])
        ms = sorted(self.compile_ms)
        c["compile_ms_median"] = ms[len(ms) // 2] if ms else None
        return c


def attach(cpu, threshold=DEFAULT_THRESHOLD, cache_dir=None, use_cache=True, background=False):
    """Give ``cpu`` a tier-1 JIT; returns it.  ``background``: compile in a
    second process (compile_worker.py) while the guest runs on."""
    return JIT(cpu, threshold=threshold, cache_dir=cache_dir, use_cache=use_cache,
               background=background)


def default_cache_dir():
    d = os.environ.get("EMU_JIT_CACHE_DIR")
    if d:
        return d
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "emu", "jit")
