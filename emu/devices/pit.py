"""The 8254 programmable interval timer, and port 61h (NMI status and control).

    0x40-0x42  counters 0-2 (data)      0x43  control word (write only)
    0x61       bit 0 channel 2 GATE, bit 1 speaker data enable, bits 2-3
               parity/IOCHK check disables (kept); read: bit 4 the refresh
               toggle, bit 5 channel 2 OUT, bits 6-7 (NMI sources) zero

Counter 0's OUT drives IRQ 0; counter 1 was the DRAM refresh timer (counts
but drives nothing); counter 2 is gated by port 61h bit 0 and its OUT is read
back at port 61h bit 5 - Linux calibrates the TSC by polling that bit.

The counters run at 1.193182 MHz *in virtual time*: nothing ticks.  A
counter remembers the clock tick at which its count element (CE) was loaded;
its value and OUT at any moment are computed from ``bus.clock.now()``.  For
IRQ 0 the next rising edge of OUT is computed and scheduled with
``bus.clock.schedule``; the handler pulses the line (raise, then lower: the
PIC latches the edge) and schedules the following one.

Modes (8254 datasheet): 0 interrupt on terminal count, 1 hardware one-shot,
2 rate generator, 3 square wave, 4 software strobe, 5 hardware strobe (6 and
7 are 2 and 3).  Binary and BCD counting, the lo/hi/lo-then-hi access modes,
the counter latch command and the read-back command with status (OUT, NULL
COUNT, programmed mode).  As on the chip, a count written after a control
word is loaded into the CE on the *next* clock: in mode 0 OUT rises N+1
clocks after the count is written.  A new count written while counting
takes effect as the datasheet says: mode 0 and 4 on the next clock, mode 2
at the end of the period, mode 3 at the end of the half cycle, modes 1 and
5 at the next trigger.

Every value written leaves the timer in a defined state (THREATS.md).
"""

PIT_HZ = 1_193_182
NS_PER_S = 1_000_000_000
REFRESH_TICKS = 18            # DRAM refresh every 18 PIT clocks (~15.1 us)

IDLE, ARMED, RUN = "idle", "armed", "run"


def ns_to_ticks(ns):
    """PIT clock edges that have happened by virtual time ``ns``."""
    return ns * PIT_HZ // NS_PER_S


def ticks_to_ns(tick):
    """The virtual time (ns, rounded up) of PIT clock edge number ``tick``."""
    return -(-tick * NS_PER_S // PIT_HZ)


def _from_bcd(v):
    # Invalid digits (A-F) count at face value; the result wraps at 10^4.
    return (((v >> 12) & 15) * 1000 + ((v >> 8) & 15) * 100
            + ((v >> 4) & 15) * 10 + (v & 15)) % 10000


def _to_bcd(n):
    n %= 10000
    return ((n // 1000) << 12) | (((n // 100) % 10) << 8) | (((n // 10) % 10) << 4) | (n % 10)


class Counter:
    """One of the three 8254 counters; every method takes the current tick t.

    While counting, the counter's position is e = t - load: the clocks since
    its count element (CE) was loaded with n (negative during the clock
    between a count write and the load, when the CE still shows ``ce_hold``
    and OUT ``out_hold``).  Count and OUT are functions of e and the mode.
    GATE low freezes e (``paused``); a mode 2/3 count written mid-cycle waits
    in ``pend`` for its boundary and is committed lazily when time passes it.
    """

    def __init__(self, index, gate):
        self.index = index
        self.gate = gate
        self.reset()

    def reset(self):
        self.ctrl = 0x36          # lo/hi, mode 3, binary (what a BIOS programs)
        self.rw = 3
        self.mode = 3
        self.bcd = False
        self.cr = 0x10000         # the count register (initial count N)
        self.wbyte = None         # low byte of a lo/hi write, waiting for the high
        self.read_hi = False      # unlatched lo/hi reads: next is the high byte
        self.latched = None       # output latch after a latch command
        self.latch_hi = False
        self.status = None        # latched status byte (read-back)
        self.state = IDLE         # IDLE: no count since the control word
        self.ce_hold = 0          # CE value while not counting / before the load
        self.out_hold = True      # OUT before the load clock
        self.load = 0             # tick at which the CE holds n
        self.n = 0x10000
        self.phase = 0            # mode 3: clocks into the period at load time
        self.paused = None        # e frozen while GATE stops counting
        self.pend = None          # (tick, n, phase): mode 2/3 count at a boundary
        self.null = True          # NULL COUNT: a count not yet in the CE
        self.null_until = None    # tick at which it gets there (None: not yet known)

    @property
    def modulus(self):
        return 10000 if self.bcd else 0x10000

    # --- where the counter is --------------------------------------------------
    def _commit(self, t):
        p = self.pend
        if p is not None and t >= p[0]:
            self.load, self.n, self.phase = p
            self.pend = None

    def _elapsed(self, t):
        self._commit(t)
        if self.paused is not None:
            return self.paused
        return t - self.load

    def count(self, t):
        """The CE's value at tick t (binary integer, before any BCD encoding)."""
        if self.state != RUN:
            return self.ce_hold % self.modulus
        e = self._elapsed(t)
        if e < 0:
            return self.ce_hold % self.modulus
        n, mode = self.n, self.mode
        if mode == 2:
            v = 1 if n == 1 else n - e % n
        elif mode == 3:
            half = (n + 1) // 2
            x = (e + self.phase) % n
            j = x if x < half else x - half
            v = (n & ~1) - 2 * j
        else:
            v = n - e
        return v % self.modulus

    def out(self, t):
        """The OUT pin at tick t."""
        mode = self.mode
        if self.state != RUN:
            return mode != 0              # mode 0 OUT is low after the control word
        e = self._elapsed(t)
        if mode in (2, 3) and not self.gate:
            return True                   # GATE low forces OUT high in modes 2/3
        if e < 0:
            return self.out_hold
        n = self.n
        if mode == 0 or mode == 1:
            return e >= n
        if mode == 2:
            return n == 1 or e % n != n - 1
        if mode == 3:
            return (e + self.phase) % n < (n + 1) // 2
        return e != n                     # modes 4, 5: low for one clock at zero

    def null_count(self, t):
        return self.null and (self.null_until is None or t < self.null_until)

    def next_rise(self, t):
        """Tick of the next rising edge of OUT strictly after tick t (or None)."""
        if self.state != RUN or self.paused is not None:
            return None
        if self.mode in (2, 3) and not self.gate:
            return None
        self._commit(t)
        r = self._rise_in(self.mode, self.load, self.n, self.phase, t)
        p = self.pend
        if p is None or (r is not None and r <= p[0]):
            return r
        return self._rise_in(self.mode, p[0], p[1], p[2], max(t, p[0]))

    @staticmethod
    def _rise_in(mode, load, n, phase, t):
        after = t - load                  # want the first e > after with OUT rising
        if mode in (0, 1):
            e = n
        elif mode in (4, 5):
            e = n + 1
        elif n < 2:
            return None                   # a count of 1: OUT never pulses
        elif mode == 2:
            e = (max(after, 0) // n + 1) * n
        else:
            e = ((max(after, 0) + phase) // n + 1) * n - phase
        return load + e if e > after else None

    # --- programming --------------------------------------------------------------
    def control(self, value, t):
        """A control word for this counter (not a latch or read-back command)."""
        self.ce_hold = self.count(t)
        self.ctrl = value & 0x3F
        self.rw = (value >> 4) & 3
        m = (value >> 1) & 7
        self.mode = m - 4 if m >= 6 else m
        self.bcd = bool(value & 1)
        self.state = IDLE
        self.pend = None
        self.paused = None
        self.wbyte = None
        self.read_hi = False
        self.latched = None
        self.latch_hi = False
        self.status = None
        self.null = True
        self.null_until = None

    def write(self, value, t):
        """A byte written to the counter's data port."""
        rw = self.rw
        if rw == 1:
            self._new_count(value, t)
        elif rw == 2:
            self._new_count(value << 8, t)
        elif self.wbyte is None:
            self.wbyte = value
            if self.mode == 0:
                # Mode 0: the first byte stops counting and drops OUT at once.
                self.ce_hold = self.count(t)
                self.state = IDLE
        else:
            v = self.wbyte | (value << 8)
            self.wbyte = None
            self._new_count(v, t)

    def _new_count(self, raw, t):
        if self.bcd:
            n = _from_bcd(raw) or 10000
        else:
            n = raw or 0x10000
        self.cr = n
        self.null = True
        mode = self.mode
        if mode in (1, 5):
            # Armed: the count reaches the CE on the clock after a GATE trigger.
            if self.state == IDLE:
                self.state = ARMED
            self.null_until = None
            return
        if mode in (2, 3) and self.state == RUN:
            if self.gate:
                self._count_at_boundary(n, t)
            else:
                self.null_until = None    # loaded by the next GATE trigger
            return
        self._start(n, t, out_before_load=(mode != 0))

    def _start(self, n, t, out_before_load):
        """Load n into the CE on the next clock and count from there."""
        if self.state == RUN:
            self.ce_hold = self.count(t)
        else:
            # The first count after a control word: until the load clock the
            # datasheet leaves the CE undefined; reads there give n.  (On a PC
            # an ISA IN takes ~1 us, longer than that clock, and Linux's
            # quick_pit_calibrate relies on it: it writes 0xFFFF to counter 2
            # and expects MSB 0xFF from its very next reads.)
            self.ce_hold = n % self.modulus
        self.out_hold = out_before_load
        self.state = RUN
        self.load = t + 1
        self.n = n
        self.phase = 0
        self.pend = None
        self.paused = None
        self.null_until = t + 1
        if not self.gate and self.mode in (0, 2, 3, 4):
            self.paused = 0               # loaded, but GATE low holds it

    def _count_at_boundary(self, n, t):
        """Mode 2: reload at the end of the period; mode 3: of the half cycle."""
        e = self._elapsed(t)
        if e < 0:                          # not loaded yet: simply load the new one
            self.n = n
            self.null_until = self.load
            return
        cur = self.n
        if self.mode == 2:
            switch = self.load + (e // cur + 1) * cur
            phase = 0
        else:
            half = (cur + 1) // 2
            x = (e + self.phase) % cur
            if x < half:                   # end of the high half: start low
                switch = t + (half - x)
                phase = (n + 1) // 2 % n
            else:                          # end of the low half: start high
                switch = t + (cur - x)
                phase = 0
        self.pend = (switch, n, phase)
        self.null_until = switch

    def set_gate(self, level, t):
        level = bool(level)
        if level == self.gate:
            return
        rising = level
        if self.state == RUN:
            self._commit(t)
        mode = self.mode
        if mode in (1, 5):
            self.gate = level
            if rising and self.state != IDLE:
                # Trigger: (re)load the CE from the count register next clock.
                out_now = self.out(t)
                self.ce_hold = self.count(t)
                self.out_hold = out_now
                self.state = RUN
                self.load = t + 1
                self.n = self.cr
                self.phase = 0
                self.pend = None
                if self.null_count(t):
                    self.null_until = t + 1
            return
        if self.state != RUN:
            self.gate = level
            return
        if mode in (0, 4):
            if not rising:
                self.paused = max(self._elapsed(t), 0)
            elif self.paused is not None:
                self.load = t - self.paused
                self.paused = None
            self.gate = level
            return
        # modes 2 and 3
        if not rising:
            self.ce_hold = self.count(t)
            self.paused = max(self._elapsed(t), 0)
            if self.pend is not None:     # that count now waits for the trigger
                self.pend = None
                self.null_until = None
            self.gate = level
        else:
            self.ce_hold = self.count(t)
            self.gate = level
            self.out_hold = True
            if self.null_count(t):
                self.null_until = t + 1
            self.load = t + 1
            self.n = self.cr
            self.phase = 0
            self.paused = None
            self.pend = None

    # --- reading -------------------------------------------------------------------
    def _value_for_read(self, t):
        c = self.count(t)
        return _to_bcd(c) if self.bcd else c & 0xFFFF

    def latch_count(self, t):
        if self.latched is None:           # a second latch before reading is ignored
            self.latched = self._value_for_read(t)
            self.latch_hi = False

    def latch_status(self, t):
        if self.status is None:
            self.status = (self.out(t) << 7) | (self.null_count(t) << 6) | self.ctrl

    def read(self, t):
        if self.status is not None:
            v = self.status
            self.status = None
            return v
        rw = self.rw
        if self.latched is not None:
            v = self.latched
            if rw == 3 and not self.latch_hi:
                self.latch_hi = True
                return v & 0xFF
            self.latched = None
            self.latch_hi = False
            return (v >> 8) & 0xFF if rw == 2 or rw == 3 else v & 0xFF
        v = self._value_for_read(t)
        if rw == 1:
            return v & 0xFF
        if rw == 2:
            return (v >> 8) & 0xFF
        hi = self.read_hi
        self.read_hi = not hi
        return (v >> 8) & 0xFF if hi else v & 0xFF


class PIT:
    """The 8254 at 0x40-0x43 plus port 61h; counter 0 drives IRQ 0."""

    def __init__(self, bus):
        self.bus = bus
        self.clock = bus.clock
        self.counters = [Counter(0, True), Counter(1, True), Counter(2, False)]
        self.port61 = 0
        self._irq0_handle = None
        self._irq0_tick = None
        self.irq0_edges = 0
        bus.ports.register(0x40, 4, read=self._read, write=self._write, name="pit",
                           sizes=(1,))
        bus.ports.register(0x61, 1, read=self._read61, write=self._write61,
                           name="port61", sizes=(1,))

    def reset(self):
        for c in self.counters:
            c.reset()
        self.counters[2].gate = False
        self.port61 = 0
        self._cancel_irq0()

    def tick(self):
        """The PIT clock edges so far (virtual time)."""
        return ns_to_ticks(self.clock.now())

    # --- IRQ 0 -------------------------------------------------------------------------
    def _pulse_irq0(self):
        self.irq0_edges += 1
        self.bus.irq(0, True)
        self.bus.irq(0, False)

    def _cancel_irq0(self):
        if self._irq0_handle is not None:
            self.clock.cancel(self._irq0_handle)
        self._irq0_handle = None
        self._irq0_tick = None

    def _catch_up_irq0(self, t):
        """An edge that is due but whose timer has not run yet still happened."""
        if self._irq0_tick is not None and self._irq0_tick <= t:
            self._cancel_irq0()
            self._pulse_irq0()

    def _schedule_irq0(self, t):
        self._cancel_irq0()
        r = self.counters[0].next_rise(t)
        if r is not None:
            self._irq0_tick = r
            self._irq0_handle = self.clock.schedule(ticks_to_ns(r), self._irq0_timer)

    def _irq0_timer(self):
        self._irq0_handle = None
        self._irq0_tick = None
        self._pulse_irq0()
        # Edges missed while the clock jumped would merge in the PIC's IRR
        # anyway: continue from now.
        self._schedule_irq0(self.tick())

    def _changing(self, ch, t, change):
        """Apply ``change()`` to counter ``ch`` keeping IRQ 0 in step."""
        if ch.index != 0:
            change()
            return
        self._catch_up_irq0(t)
        before = ch.out(t)
        change()
        if not before and ch.out(t):
            self._pulse_irq0()            # e.g. a control word that raises OUT
        self._schedule_irq0(t)

    # --- ports ---------------------------------------------------------------------------
    def _write(self, port, size, value):
        t = self.tick()
        value &= 0xFF
        idx = port - 0x40
        if idx < 3:
            ch = self.counters[idx]
            self._changing(ch, t, lambda: ch.write(value, t))
            return
        sc = value >> 6
        if sc == 3:                       # read-back command
            for i, ch in enumerate(self.counters):
                if value & (2 << i):
                    if not value & 0x20:
                        ch.latch_count(t)
                    if not value & 0x10:
                        ch.latch_status(t)
            return
        ch = self.counters[sc]
        if (value >> 4) & 3 == 0:         # counter latch command
            ch.latch_count(t)
            return
        self._changing(ch, t, lambda: ch.control(value, t))

    def _read(self, port, size):
        idx = port - 0x40
        if idx == 3:
            return 0xFF                   # the control register is write-only
        return self.counters[idx].read(self.tick())

    def _read61(self, port, size):
        t = self.tick()
        v = self.port61 & 0x0F
        if (t // REFRESH_TICKS) & 1:
            v |= 0x10
        if self.counters[2].out(t):
            v |= 0x20
        return v

    def _write61(self, port, size, value):
        t = self.tick()
        self.port61 = value & 0x0F
        self.counters[2].set_gate(value & 1, t)

    # --- for the frontend, tests and the debugger ------------------------------------------
    def speaker(self):
        """(on, frequency in Hz or None): the PC speaker driven by counter 2."""
        c = self.counters[2]
        on = (self.port61 & 3) == 3 and c.state == RUN
        freq = PIT_HZ / c.n if on and c.mode == 3 else None
        return on, freq

    def next_irq0_ns(self):
        return None if self._irq0_tick is None else ticks_to_ns(self._irq0_tick)
