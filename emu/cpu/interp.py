"""Tier 0: decoded blocks of closures, and the run loop.

A block is decoded once, from the guest's linear EIP, into a list of
closures (one per instruction, built by the opcode table's builders).  It
ends at a control transfer, a sensitive instruction (opcodes.py "sens"), a
page boundary or after MAX_BLOCK instructions.  Blocks are cached by linear
address + CPU mode and validated against the current physical translation of
their page on every dispatch, so a remapped page never runs stale code.
The physical pages a block was decoded from are marked as code in the MMU:
a write into one of them (by the CPU or by DMA) drops every block of that
page; if the running block is hit, it stops after the writing instruction
(self-modifying code sees its own stores, as on P6 and later).
"""
from .decode import decode
from .faults import CPUFault, VMStop, Restart, UD, GP, DB
from .flags import TF, IF
from .state import EIP, EFLAGS, CS, HALTED, INHIBIT_IRQ, CR0, CR2, DR0, NMI_BLOCKED
from . import interrupts
from ..mmu.physmem import WATCH_CODE

MAX_BLOCK = 64


class Block:
    __slots__ = ("fns", "eips", "next_eips", "n", "end_eip", "falls", "ppage", "ppns",
                 "key", "eipset", "hits", "native", "items")


def _raiser(vector, code=None):
    def f():
        raise CPUFault(vector, code)
    return f


class Interpreter:
    def __init__(self, cpu):
        self.cpu = cpu
        self.cache = {}          # lin | mode_key -> Block
        self.page_blocks = {}    # ppn -> set of keys
        self.mode_ids = {}
        self.mode_key = 0
        self.cur_iter = None
        self.smc_pos = None
        self.restarted = False
        self.counters = {"blocks_decoded": 0, "smc_invalidations": 0, "block_runs": 0}
        # tier 1 (emu/translate) attaches itself here; the interpreter works without it
        self.tier1 = None
        self.hot_threshold = 0
        cpu.phys.add_watch_listener(self._on_watch)

    # --- cache maintenance -------------------------------------------------------
    def flush(self):
        if self.tier1 is not None:
            self.tier1.drop_all()
        phys = self.cpu.phys
        for ppn in self.page_blocks:
            if ppn < len(phys.watch):
                self.cpu.mmu.unmark_code(ppn)
        self.cache.clear()
        self.page_blocks.clear()
        self.mode_changed()
        self.cpu.event = True

    def mode_changed(self):
        """CS (size/limit), CR0.PE or EFLAGS.VM changed: pick the block namespace."""
        cpu = self.cpu
        cs = cpu.segs[CS]
        t = (cs.big, cpu.R[CR0] & 1, cpu.v86, cs.xmax)
        mid = self.mode_ids.get(t)
        if mid is None:
            mid = self.mode_ids[t] = len(self.mode_ids) + 1
        if self.mode_key != mid << 32:
            self.mode_key = mid << 32
            cpu.event = True     # the run loop's fast path caches mode_key: make it look again

    def _on_watch(self, ppn, paddr, size):
        phys = self.cpu.phys
        if not (phys.watch[ppn] & WATCH_CODE):
            return
        self.invalidate_page(ppn)

    def invalidate_page(self, ppn):
        keys = self.page_blocks.pop(ppn, None)
        self.cpu.mmu.unmark_code(ppn)
        if not keys:
            return
        self.counters["smc_invalidations"] += 1
        t1 = self.tier1
        for k in keys:
            b = self.cache.pop(k, None)
            if b is not None:
                if t1 is not None:
                    t1.drop(b)
                for other in b.ppns:
                    if other != ppn:
                        s = self.page_blocks.get(other)
                        if s is not None:
                            s.discard(k)
        if self.cur_iter is not None and self.smc_pos is None:
            # Stop the running block (if any) after the instruction doing the
            # write: it may be one of the dropped blocks.  (A block that wrote
            # into another code page stops early too: harmless, and rare.)
            it = self.cur_iter
            st = it.__reduce__()
            if len(st) > 2:
                self.smc_pos = st[2]
                it.__setstate__(1 << 30)

    # --- decoding ---------------------------------------------------------------
    def _build(self, ins):
        cpu = self.cpu
        entry = ins.entry
        attrs = entry.attrs
        if "pm" in attrs and (not cpu.protected or cpu.v86):
            return _raiser(UD)
        b = entry.builder
        if b is None:
            mnem = ins.row.mnem
            cnt = cpu.count_unimplemented

            def unimplemented():
                cnt(mnem)
                raise CPUFault(UD)
            return unimplemented
        try:
            return b(cpu, ins)
        except CPUFault as e:
            return _raiser(e.vector, e.error_code)

    def decode_block(self, eip, lin, key):
        cpu = self.cpu
        mmu = cpu.mmu
        phys = cpu.phys
        ram = phys.ram
        ram_size = phys.ram_size
        cs = cpu.segs[CS]
        base = cs.base
        xmax = cs.xmax
        user = cpu.user
        code32 = cs.big
        pages = {}

        def fetch(off):
            if off > xmax:
                raise CPUFault(GP, 0)
            la = (base + off) & 0xFFFFFFFF
            vpn = la >> 12
            p = pages.get(vpn)
            if p is None:
                p = pages[vpn] = mmu.translate(la, False, user, fetch=True) & ~0xFFF
            pa = p | (la & 0xFFF)
            if pa < ram_size:
                return ram[pa]
            return phys.read(pa, 1)

        items, eips, nexts = [], [], []
        pc = eip
        first_vpn = lin >> 12
        falls = True
        mask = 0xFFFFFFFF if code32 else 0xFFFF
        while True:
            try:
                ins = decode(fetch, pc, code32)
            except CPUFault as e:
                if not items:
                    if e.vector == 14 or (e.vector == GP and pc > xmax):
                        raise        # fetch fault: deliver now, cache nothing
                    items.append(_raiser(e.vector, e.error_code))
                    eips.append(pc)
                    nexts.append(pc)
                    falls = False
                break
            items.append(ins)
            eips.append(pc)
            nxt = ins.next_eip & mask if code32 else ins.next_eip
            nexts.append(nxt)
            pc = nxt
            a = ins.entry.attrs
            if "jmp" in a:
                falls = False
                break
            if "sens" in a or len(items) >= MAX_BLOCK:
                break
            if ((base + pc) & 0xFFFFFFFF) >> 12 != first_vpn:
                break
        blk = Block()
        blk.n = len(items)
        # closures are built on the block's first interpreted run (_closures):
        # a block that tier 1 takes from its code cache never needs them
        blk.items = items
        blk.fns = None
        blk.eips = eips
        blk.next_eips = nexts
        blk.end_eip = pc
        blk.falls = falls
        blk.eipset = frozenset(eips)
        blk.key = key
        blk.hits = 0
        blk.native = None
        old = self.cache.get(key)
        if old is not None and self.tier1 is not None:
            self.tier1.drop(old)         # replaced (its page was remapped)
        blk.ppage = pages[first_vpn] if pages.get(first_vpn, 0) < ram_size else None
        ppns = set()
        for p in pages.values():
            if p < ram_size:
                ppns.add(p >> 12)
        blk.ppns = tuple(ppns)
        for ppn in ppns:
            mmu.mark_code(ppn)
            self.page_blocks.setdefault(ppn, set()).add(key)
        self.cache[key] = blk
        self.counters["blocks_decoded"] += 1
        return blk

    # --- running ------------------------------------------------------------------
    def run(self, max_insns=None, until=None):
        cpu = self.cpu
        R = cpu.R
        mmu = cpu.mmu
        cache = self.cache
        cs = cpu.segs[CS]            # the same SegCache object for the CPU's lifetime
        budget = (1 << 62) if max_insns is None else max_insns
        executed = 0
        cpu.last_fault = None
        if self.tier1 is not None:
            self.tier1.tick()        # e.g. install what a background compiler finished
        try:
            while True:
                # --- slow path: limits, events, block lookup with decode -----------
                if executed >= budget:
                    return "count"
                eip = R[EIP]
                if eip == until:
                    return "until"
                single = False
                if cpu.event:
                    r = self._events()
                    if r is not None:
                        return r
                    eip = R[EIP]
                    if eip == until:
                        return "until"
                    single = bool(R[INHIBIT_IRQ] or (R[EFLAGS] & TF))
                    R[INHIBIT_IRQ] = 0
                lin = (cs.base + eip) & 0xFFFFFFFF
                try:
                    blk = self._lookup(eip, lin)
                except CPUFault as e:
                    R[EIP] = eip
                    if cpu.stop_on_fault:
                        return self._stop_fault(e)
                    interrupts.raise_exception(cpu, e)
                    executed += 1    # a delivery is a step: handlers that fault at once
                    continue         # (an exception storm) must not run forever
                t1 = self.tier1
                if t1 is not None and not single:
                    # tier 1 also takes the first block of a run and the block
                    # after an event, as the fast path below would
                    nat = blk.native
                    if nat is None:
                        h = blk.hits + 1
                        blk.hits = h
                        if h >= self.hot_threshold:
                            t1.compile(blk)
                            nat = blk.native
                        elif h == 1 and t1.probing:
                            t1.probe(blk)        # in the code cache? (then never interpreted)
                            nat = blk.native
                    if nat and budget - executed >= nat.n:
                        done, fault = t1.enter(blk, budget - executed, until)
                        executed += done
                        if fault is not None:
                            if cpu.stop_on_fault:
                                return self._stop_fault(fault)
                            interrupts.raise_exception(cpu, fault)
                            executed += 1
                            continue
                        if done:
                            continue
                n = blk.n
                k = 1 if single else n
                if budget - executed < k:
                    k = budget - executed
                if until is not None and until in blk.eipset:
                    i = blk.eips.index(until)
                    if 0 < i < k:
                        k = i
                self.restarted = False
                done = self._exec(blk, k)
                executed += done if done >= 0 else ~done
                if self.restarted:
                    executed += 1        # charge the REP chunk (see the fast path)
                if done < 0:                       # a fault was raised
                    if cpu.stop_on_fault:
                        return self._stop_fault(cpu.last_fault)
                    interrupts.raise_exception(cpu, cpu.last_fault)
                    cpu.last_fault = None
                    executed += 1
                    continue
                if single:
                    if R[EFLAGS] & TF:
                        self._single_step_trap()
                    continue
                # --- fast path: whole cached blocks while nothing needs attention ---
                fast_limit = budget - MAX_BLOCK
                mode_key = self.mode_key
                t1 = self.tier1
                hot = self.hot_threshold
                warm = hot // 4 if hot >= 4 else -1
                probe = t1 is not None and t1.probing
                while executed < budget and not cpu.event:
                    eip = R[EIP]
                    if eip == until:
                        break
                    lin = (cs.base + eip) & 0xFFFFFFFF
                    blk = cache.get(lin | mode_key)
                    if blk is None:
                        break
                    pp = blk.ppage
                    if pp is None or pp != mmu.rtlb.get(lin >> 12):
                        break
                    if t1 is not None:
                        nat = blk.native
                        if nat:                  # (native code stops at until itself)
                            if budget - executed < nat.n:
                                break            # the slow path runs what still fits
                            done, fault = t1.enter(blk, budget - executed, until)
                            executed += done
                            if fault is not None:
                                if cpu.stop_on_fault:
                                    return self._stop_fault(fault)
                                interrupts.raise_exception(cpu, fault)
                                executed += 1
                                break
                            if not done:
                                break            # no progress natively: interpret it
                            continue
                        if nat is None:
                            h = blk.hits + 1
                            blk.hits = h
                            if h >= hot:
                                t1.compile(blk)
                                if blk.native:
                                    continue
                            elif h == warm:
                                t1.note_warm(blk)
                            elif h == 2 and probe:
                                t1.probe(blk)        # compiled before? (a code cache)
                                if blk.native:
                                    continue
                    if executed > fast_limit:
                        break                    # it may not fit: the slow path runs part of it
                    if until is not None and until in blk.eipset:
                        break
                    fns = blk.fns
                    it = iter(fns if fns is not None else self._closures(blk))
                    self.cur_iter = it
                    try:
                        for f in it:
                            f()
                    except CPUFault as e:
                        idx = self._fault_index(it)
                        cpu.icount += idx
                        executed += idx
                        R[EIP] = blk.eips[idx]
                        if cpu.stop_on_fault:
                            return self._stop_fault(e)
                        interrupts.raise_exception(cpu, e)
                        executed += 1
                        break
                    except Restart:
                        idx = self._fault_index(it)
                        cpu.icount += idx
                        executed += idx + 1      # a REP chunk is charged like a step:
                        R[EIP] = blk.eips[idx]   # one instruction's work stays bounded
                        break
                    n = blk.n if self.smc_pos is None else self._smc_finish(blk, blk.n)
                    cpu.icount += n
                    executed += n
        except VMStop:
            self.cur_iter = None
            raise

    def _closures(self, blk):
        """The block's closures (built once; a last one moves EIP when the
        block ends without a control transfer)."""
        fns = [x if callable(x) else self._build(x) for x in blk.items]
        if blk.falls:
            R = self.cpu.R
            end = blk.end_eip

            def fall_through():
                R[EIP] = end
            fns.append(fall_through)
        blk.fns = fns
        return fns

    def closure(self, blk, i):
        """The closure of instruction i of blk (tier 1's emu_op runs it)."""
        if blk.fns is not None:
            return blk.fns[i]
        x = blk.items[i]
        return x if callable(x) else self._build(x)

    def _lookup(self, eip, lin):
        """The valid cached block at lin for the current mode, decoding if needed."""
        mmu = self.cpu.mmu
        key = lin | self.mode_key
        blk = self.cache.get(key)
        if blk is not None and blk.ppage is not None:
            if blk.ppage == mmu.rtlb.get(lin >> 12):
                return blk
            # no fast entry yet, or remapped: translate (fills, or faults)
            mmu.translate(lin, False, self.cpu.user, fetch=True)
            blk = self.cache.get(key)
            if blk is not None and blk.ppage == mmu.rtlb.get(lin >> 12):
                return blk
        return self.decode_block(eip, lin, key)

    def _exec(self, blk, k):
        """Run the first k instructions of blk.  Returns how many retired, or
        ~retired when one faulted (the fault is left in cpu.last_fault)."""
        cpu = self.cpu
        R = cpu.R
        n = blk.n
        fns = blk.fns if blk.fns is not None else self._closures(blk)
        it = iter(fns if k == n else fns[:k])
        self.cur_iter = it
        try:
            for f in it:
                f()
        except CPUFault as e:
            idx = self._fault_index(it)
            cpu.icount += idx
            R[EIP] = blk.eips[idx]
            cpu.last_fault = e
            return ~idx
        except Restart:
            idx = self._fault_index(it)
            cpu.icount += idx
            R[EIP] = blk.eips[idx]
            self.restarted = True
            return idx
        if self.smc_pos is not None:
            done = self._smc_finish(blk, k)
        elif k < n:
            done = k
            R[EIP] = blk.next_eips[k - 1]
        else:
            done = n
        cpu.icount += done
        return done

    def _fault_index(self, it):
        """Index, in the running block, of the instruction that raised."""
        if self.smc_pos is not None:
            idx = self.smc_pos - 1
            self.smc_pos = None
        else:
            idx = it.__reduce__()[2] - 1
        self.cur_iter = None
        return idx

    def _smc_finish(self, blk, k):
        """The running block was invalidated by its own store: it stopped after
        the storing instruction; set EIP to the next one."""
        done = self.smc_pos
        self.smc_pos = None
        if done < blk.n:
            self.cpu.R[EIP] = blk.next_eips[done - 1]
        elif blk.falls:
            self.cpu.R[EIP] = blk.end_eip
        return done

    def _stop_fault(self, e):
        """API mode: report the fault instead of delivering it (EIP = faulting insn)."""
        cpu = self.cpu
        cpu.last_fault = e
        if e.vector == 14 and e.cr2 is not None:
            cpu.R[CR2] = e.cr2 & 0xFFFFFFFF
        return "exception"

    def _single_step_trap(self):
        cpu = self.cpu
        R = cpu.R
        R[DR0 + 6] |= 0x4000          # DR6.BS
        try:
            cpu.deliver(DB, None, "exception")
        except CPUFault as e:
            interrupts.raise_exception(cpu, e)
        cpu.event = True

    def _events(self):
        """Slow path at a block boundary: HLT, interrupts, single-step."""
        cpu = self.cpu
        R = cpu.R
        cpu.event = False
        if R[INHIBIT_IRQ]:
            cpu.shadow_over()
        if cpu.stop_requested:
            cpu.stop_requested = False
            return "stop"
        if cpu.nmi_pending and not R[INHIBIT_IRQ] and not R[NMI_BLOCKED]:
            cpu.nmi_pending = False
            R[HALTED] = 0
            R[NMI_BLOCKED] = 1
            self._take_interrupt(2)
        elif (R[EFLAGS] & IF) and not R[INHIBIT_IRQ] and cpu.irq_pending():
            R[HALTED] = 0
            self._take_interrupt(cpu.irq_acknowledge())
        if R[HALTED]:
            cpu.event = True
            return "hlt"
        if R[INHIBIT_IRQ] or (R[EFLAGS] & TF) or (cpu.nmi_pending and not R[NMI_BLOCKED]):
            cpu.event = True
        elif cpu.irq_pending() and (R[EFLAGS] & IF):
            cpu.event = True
        return None

    def _take_interrupt(self, vector):
        cpu = self.cpu
        cpu.counters["interrupts"] += 1
        try:
            cpu.deliver(vector, None, "external")
        except CPUFault as e:
            interrupts.raise_exception(cpu, e)
