"""The virtual clock: time is instructions retired.

Every device timer (PIT, RTC, UART baud timing, ...) and the TSC read this
one clock, so a guest that calibrates one against another gets consistent
answers, and the same inputs give the same run (deterministic by default).

    virtual ns = (instructions retired + idle instructions) * ns_per_insn

``idle`` grows when the CPU halts with interrupts enabled: the machine jumps
the clock straight to the next timer deadline instead of spinning.  With
``realtime=True`` the machine paces virtual time to the wall clock (sleeping
when the guest is ahead), for interactive use; the clock itself stays
instruction-driven.

Timers: ``schedule(when_ns, callback)`` returns a handle; ``cancel(handle)``;
``fire_due()`` runs every callback whose deadline has passed, in deadline
order (ties in scheduling order).  Callbacks may schedule new timers.
"""
import heapq
import itertools


class VirtualClock:
    def __init__(self, insns, ns_per_insn=10):
        """``insns``: a callable returning instructions retired (cpu.clock)."""
        if ns_per_insn <= 0:
            raise ValueError("ns_per_insn must be positive")
        self._insns = insns
        self.ns_per_insn = ns_per_insn
        self.idle = 0                     # instructions' worth of time spent halted
        self._heap = []
        self._seq = itertools.count()
        self._live = {}                   # handle -> entry (for cancel)
        # While the CPU runs a slice computed from the next deadline, the machine
        # sets ``slice_end`` to that deadline and ``on_earlier`` to a callback
        # that ends the slice: a device scheduling something sooner (a UART
        # transmit, the kernel handoff) is then served on time.
        self.slice_end = None
        self.on_earlier = None
        self.on_idle = None

    # --- reading time -------------------------------------------------------
    def now(self):
        """Virtual time in nanoseconds."""
        return (self._insns() + self.idle) * self.ns_per_insn

    def insns_until(self, when_ns):
        """Instructions to run before virtual time reaches when_ns (>= 0)."""
        d = when_ns - self.now()
        if d <= 0:
            return 0
        return -(-d // self.ns_per_insn)

    def advance_idle_to(self, when_ns):
        """HLT: let virtual time jump forward to when_ns without running code.
        Returns the instructions' worth of time skipped; ``on_idle(n)`` (the
        machine's: the TSC counts halted time too) hears each jump."""
        n = self.insns_until(when_ns)
        if n > 0:
            self.idle += n
            if self.on_idle is not None:
                self.on_idle(n)
        return max(n, 0)

    # --- timers -----------------------------------------------------------------
    def schedule(self, when_ns, callback):
        h = next(self._seq)
        entry = [int(when_ns), h, callback]
        self._live[h] = entry
        heapq.heappush(self._heap, entry)
        if self.slice_end is not None and entry[0] < self.slice_end and self.on_earlier:
            self.slice_end = None
            self.on_earlier()
        return h

    def cancel(self, handle):
        entry = self._live.pop(handle, None)
        if entry is not None:
            entry[2] = None               # lazily dropped from the heap

    def next_deadline(self):
        heap = self._heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def fire_due(self):
        """Run the callbacks whose deadline has passed; returns how many ran."""
        n = 0
        now = self.now()
        heap = self._heap
        while heap:
            when, h, cb = heap[0]
            if cb is None:
                heapq.heappop(heap)
                continue
            if when > now:
                break
            heapq.heappop(heap)
            self._live.pop(h, None)
            cb()
            n += 1
            now = self.now()
        return n
