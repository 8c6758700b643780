"""The 8254 PIT and port 61h (emu/devices/pit.py) against the Intel 8254
datasheet, in virtual time: the clock is a counter the test sets."""
import random

import pytest

from emu.devices.base import DeviceBus
from emu.devices.clock import VirtualClock
from emu.devices.dma import DMA
from emu.devices.pit import PIT, PIT_HZ, IDLE, ARMED, RUN, ns_to_ticks, ticks_to_ns
from emu.devices.portbus import PortBus
from emu.mmu.physmem import PhysMem


class Rig:
    def __init__(self):
        self.now = 0
        self.clock = VirtualClock(lambda: self.now, ns_per_insn=1)
        self.ports = PortBus()
        self.phys = PhysMem(1 << 20)
        self.bus = DeviceBus(self.ports, self.phys, DMA(self.phys), self.clock, irq=self._irq)
        self.pit = PIT(self.bus)
        self.level = False
        self.edges = []               # virtual ns of each IRQ 0 rising edge
        self.bad_irq = []

    def _irq(self, line, level):
        if line != 0 or bool(level) == self.level:
            self.bad_irq.append((line, level))
        if level and not self.level:
            self.edges.append(self.clock.now())
        self.level = bool(level)

    # time ------------------------------------------------------------------
    def run_to(self, ns):
        """Advance like the machine does: stop at each timer deadline, fire it."""
        assert ns >= self.now
        while True:
            d = self.clock.next_deadline()
            if d is None or d > ns:
                break
            self.now = max(self.now, d)
            self.clock.fire_due()
        self.now = ns
        self.clock.fire_due()

    def tick(self, t, offset=0):
        """Go to PIT clock edge t (plus offset ns, less than one period)."""
        self.run_to(ticks_to_ns(t) + offset)

    # ports ---------------------------------------------------------------------
    def out(self, port, value):
        self.ports.write(port, 1, value)

    def inb(self, port):
        return self.ports.read(port, 1)

    def program(self, ch, mode, count, rw=3, bcd=False):
        self.out(0x43, (ch << 6) | (rw << 4) | (mode << 1) | int(bcd))
        if rw in (1, 3):
            self.out(0x40 + ch, count & 0xFF)
        if rw in (2, 3):
            self.out(0x40 + ch, (count >> 8) & 0xFF)

    def latched(self, ch):
        self.out(0x43, ch << 6)       # counter latch command
        lo = self.inb(0x40 + ch)
        return lo | (self.inb(0x40 + ch) << 8)

    def status(self, ch):
        self.out(0x43, 0xE0 | (2 << ch))   # read-back: status only
        return self.inb(0x40 + ch)

    def out_pin(self, ch):
        return bool(self.status(ch) & 0x80)

    def gate2(self, level):
        self.out(0x61, (self.inb(0x61) & 0x0E) | int(level))


@pytest.fixture
def rig():
    r = Rig()
    yield r
    assert r.ports.counters["handler_errors"] == 0, r.ports.last_error
    assert not r.bad_irq


def trace(rig, ch, ticks):
    """(count, OUT) at each of the given PIT clock edges."""
    out = []
    for t in ticks:
        rig.tick(t)
        out.append((rig.latched(ch), rig.out_pin(ch)))
    return out


def test_tick_conversion_is_exact():
    assert ns_to_ticks(10 ** 9) == PIT_HZ
    for t in (0, 1, 17, 65536, 10 ** 9, 3 * 10 ** 12 + 7):
        assert ns_to_ticks(ticks_to_ns(t)) == t
        assert ns_to_ticks(ticks_to_ns(t) - 1) == t - 1 or t == 0


# --- mode 0 ------------------------------------------------------------------------------
def test_mode0_counts_down_and_out_rises_n_plus_1_clocks_after_write(rig):
    rig.out(0x43, 0x30)
    assert not rig.out_pin(0)                 # control word: OUT low
    rig.out(0x40, 100)
    rig.out(0x40, 0)                          # count written at clock 0
    assert trace(rig, 0, [1, 51, 100, 101, 102]) == [
        (100, False), (50, False), (1, False), (0, True), (0xFFFF, True)]
    assert rig.edges == [ticks_to_ns(101)]    # IRQ 0 on terminal count, once
    rig.tick(200000)
    assert len(rig.edges) == 1


def test_mode0_write_mid_tick_loads_on_the_next_clock(rig):
    rig.tick(1000, offset=300)
    rig.program(0, 0, 10)
    rig.tick(1001)
    assert rig.latched(0) == 10
    rig.tick(1011)
    assert rig.out_pin(0) and rig.edges == [ticks_to_ns(1011)]


def test_mode0_new_count_restarts(rig):
    rig.program(0, 0, 100)
    rig.tick(40)
    rig.out(0x40, 30)
    rig.out(0x40, 0)                          # new count at clock 40
    rig.tick(41)
    assert rig.latched(0) == 30
    rig.tick(71)
    assert rig.out_pin(0) and rig.edges == [ticks_to_ns(71)]


def test_mode0_first_byte_stops_counting_and_drops_out(rig):
    rig.program(0, 0, 5)
    rig.tick(20)
    assert rig.out_pin(0)
    before = rig.latched(0)
    rig.out(0x40, 8)                          # low byte only
    assert not rig.out_pin(0)
    rig.tick(30)
    assert rig.latched(0) == before           # counting disabled
    rig.out(0x40, 0)                          # high byte: N = 8, load next clock
    rig.tick(31 + 8)
    assert rig.out_pin(0)
    assert rig.edges == [ticks_to_ns(6), ticks_to_ns(39)]


def test_mode0_gate_low_suspends_counting(rig):
    rig.gate2(False)
    rig.program(2, 0, 50)
    rig.tick(20)
    assert rig.latched(2) == 50               # loaded but not counting
    rig.gate2(True)
    rig.tick(30)
    assert rig.latched(2) == 40
    rig.gate2(False)
    rig.tick(100)
    assert rig.latched(2) == 40 and not rig.out_pin(2)
    rig.gate2(True)
    rig.tick(140)
    assert rig.latched(2) == 0 and rig.out_pin(2)


# --- mode 1 -------------------------------------------------------------------------------
def test_mode1_one_shot_on_gate_trigger(rig):
    rig.gate2(False)
    rig.program(2, 1, 5)
    rig.tick(50)
    assert rig.out_pin(2)                     # armed, waiting for a trigger
    assert rig.status(2) & 0x40               # NULL COUNT until triggered
    rig.tick(100)
    rig.gate2(True)                           # trigger at clock 100
    assert trace(rig, 2, [101, 105, 106]) == [(5, False), (1, False), (0, True)]
    assert not rig.status(2) & 0x40


def test_mode1_retrigger_restarts_the_pulse(rig):
    rig.program(2, 1, 5)
    rig.tick(100)
    rig.gate2(True)
    rig.tick(102)
    rig.gate2(False)
    rig.tick(103)
    rig.gate2(True)                           # retrigger: load at 104
    rig.tick(108)
    assert not rig.out_pin(2)
    rig.tick(109)
    assert rig.out_pin(2)


def test_mode1_on_counter0_never_fires(rig):
    rig.program(0, 1, 5)                      # GATE 0 is tied high: no edge ever
    rig.tick(100000)
    assert rig.out_pin(0) and rig.edges == []


# --- mode 2 ---------------------------------------------------------------------------------
def test_mode2_rate_generator(rig):
    rig.program(0, 2, 10)
    assert trace(rig, 0, [1, 5, 9, 10, 11, 20, 21]) == [
        (10, True), (6, True), (2, True), (1, False), (10, True), (1, False), (10, True)]
    rig.tick(1001)
    assert rig.edges == [ticks_to_ns(11 + 10 * k) for k in range(100)]


def test_mode2_new_count_waits_for_the_period_end(rig):
    rig.program(0, 2, 10)
    rig.tick(4)
    rig.out(0x40, 20)
    rig.out(0x40, 0)
    assert rig.status(0) & 0x40               # NULL COUNT: not in the CE yet
    rig.tick(10)
    assert rig.latched(0) == 1                # the old period finishes
    rig.tick(11)
    assert rig.latched(0) == 20 and not rig.status(0) & 0x40
    rig.tick(60)
    assert rig.edges == [ticks_to_ns(t) for t in (11, 31, 51)]


def test_mode2_gate(rig):
    rig.gate2(True)
    rig.program(2, 2, 10)
    rig.tick(10)
    assert not rig.out_pin(2)                 # the low pulse
    rig.gate2(False)
    assert rig.out_pin(2)                     # GATE low forces OUT high at once
    rig.tick(40)
    assert rig.out_pin(2) and rig.latched(2) == 1
    rig.gate2(True)                           # trigger: reload next clock
    assert trace(rig, 2, [41, 49, 50, 51]) == [(10, True), (2, True), (1, False), (10, True)]


def test_mode2_count_of_one_never_pulses(rig):
    rig.program(0, 2, 1)
    rig.tick(1000)
    assert rig.edges == [] and rig.out_pin(0)


# --- mode 3 -------------------------------------------------------------------------------------
def test_mode3_even_count(rig):
    rig.program(0, 3, 10)
    got = trace(rig, 0, range(1, 12))
    assert got == [(10, True), (8, True), (6, True), (4, True), (2, True),
                   (10, False), (8, False), (6, False), (4, False), (2, False), (10, True)]
    rig.tick(100)
    assert rig.edges == [ticks_to_ns(11 + 10 * k) for k in range(9)]


def test_mode3_odd_count_high_longer(rig):
    rig.program(0, 3, 11)
    got = trace(rig, 0, range(1, 23))
    assert [o for _, o in got] == [True] * 6 + [False] * 5 + [True] * 6 + [False] * 5
    # N-1 loaded, down by two; the high half lasts one clock past zero.
    assert [c for c, _ in got[:11]] == [10, 8, 6, 4, 2, 0, 10, 8, 6, 4, 2]


def test_mode3_new_count_at_end_of_half_cycle(rig):
    rig.program(0, 3, 10)
    rig.tick(3)                               # high half
    rig.out(0x40, 6)
    rig.out(0x40, 0)
    rig.tick(5)
    assert rig.out_pin(0) and rig.latched(0) == 2    # the old half cycle
    outs = [o for _, o in trace(rig, 0, range(6, 16))]
    assert outs == [False] * 3 + [True] * 3 + [False] * 3 + [True]
    assert rig.edges == [ticks_to_ns(9), ticks_to_ns(15)]


def test_mode3_gate_low_forces_out_high(rig):
    rig.gate2(True)
    rig.program(2, 3, 100)
    rig.tick(70)
    assert not rig.out_pin(2)
    rig.gate2(False)
    assert rig.out_pin(2)
    c = rig.latched(2)
    rig.tick(500)
    assert rig.latched(2) == c                # stopped
    rig.gate2(True)
    rig.tick(501)
    assert rig.latched(2) == 100


def test_mode_6_and_7_are_2_and_3(rig):
    rig.out(0x43, 0x3C)                       # mode bits 110
    assert rig.pit.counters[0].mode == 2
    assert rig.status(0) & 0x0E == 0x0C       # status shows what was written
    rig.out(0x43, 0x3E)
    assert rig.pit.counters[0].mode == 3


# --- modes 4 and 5 -----------------------------------------------------------------------------
def test_mode4_software_strobe(rig):
    rig.program(0, 4, 5)
    assert rig.out_pin(0)
    assert trace(rig, 0, [1, 5, 6, 7, 8]) == [
        (5, True), (1, True), (0, False), (0xFFFF, True), (0xFFFE, True)]
    rig.tick(70000)
    assert rig.edges == [ticks_to_ns(7)]


def test_mode5_hardware_strobe(rig):
    rig.program(2, 5, 4)
    rig.tick(50)
    assert rig.out_pin(2)
    rig.gate2(True)
    outs = [o for _, o in trace(rig, 2, range(51, 58))]
    assert outs == [True, True, True, True, False, True, True]


# --- reading -----------------------------------------------------------------------------------
def test_counter_latch_freezes_the_value(rig):
    rig.program(0, 2, 1000)
    rig.tick(10)
    rig.out(0x43, 0x00)
    rig.tick(500)
    rig.out(0x43, 0x00)                       # a second latch before reading: ignored
    lo = rig.inb(0x40)
    hi = rig.inb(0x40)
    assert lo | hi << 8 == 991
    assert rig.latched(0) == 1000 - 499


def test_unlatched_lo_hi_reads_alternate(rig):
    rig.program(0, 2, 0x1234)
    rig.tick(1)
    assert rig.inb(0x40) == 0x34
    assert rig.inb(0x40) == 0x12


def test_lo_only_and_hi_only_access(rig):
    rig.program(0, 0, 0x80, rw=1)
    rig.tick(1)
    assert rig.inb(0x40) == 0x80 and rig.inb(0x40) == 0x80
    rig.program(1, 0, 0x0300, rw=2)
    rig.tick(2)
    assert rig.inb(0x41) == 0x03              # 0x300: high byte only
    assert rig.pit.counters[1].count(ns_to_ticks(rig.now)) == 0x300


def test_read_back_status_and_count(rig):
    rig.out(0x43, 0x34)
    assert rig.status(0) == 0x80 | 0x40 | 0x34          # OUT high, NULL COUNT
    rig.out(0x40, 100)
    rig.out(0x40, 0)
    assert rig.status(0) & 0x40                          # not yet loaded
    rig.tick(1)
    assert rig.status(0) == 0x80 | 0x34
    rig.tick(50)
    rig.out(0x43, 0xC2)                       # latch count and status of counter 0
    rig.tick(80)
    assert rig.inb(0x40) == 0x80 | 0x34       # status first
    assert rig.inb(0x40) | rig.inb(0x40) << 8 == 51


def test_read_back_several_counters(rig):
    rig.program(1, 2, 18)
    rig.program(2, 0, 1000)
    rig.tick(1)                               # the counts reach the CEs
    rig.out(0x43, 0xD6)                       # count only, counters 1 and 2
    assert rig.inb(0x41) | rig.inb(0x41) << 8 == 18
    assert rig.inb(0x42) | rig.inb(0x42) << 8 == 1000


def test_bcd_counting(rig):
    rig.program(0, 0, 0x1000, bcd=True)       # 1000 decimal
    rig.tick(2)
    assert rig.latched(0) == 0x0999
    rig.program(0, 2, 0x0000, bcd=True)       # 0 = 10000 in BCD
    assert trace(rig, 0, [3, 4]) == [(0x0000, True), (0x9999, True)]
    rig.tick(3 + 10000)
    assert rig.edges[-1] == ticks_to_ns(3 + 10000)


def test_control_port_reads_ff(rig):
    assert rig.inb(0x43) == 0xFF


# --- IRQ 0 timing --------------------------------------------------------------------------
def test_irq0_period_for_reload_0_is_exactly_65536_clocks(rig):
    rig.program(0, 2, 0)
    periods = 200
    rig.run_to(ticks_to_ns(1 + 65536 * (periods + 1)) - 1)
    assert len(rig.edges) == periods
    assert rig.edges == [ticks_to_ns(1 + 65536 * (k + 1)) for k in range(periods)]
    span = rig.edges[-1] - rig.edges[0]
    assert abs(span - (periods - 1) * 65536 * 1e9 / PIT_HZ) < 1
    for a, b in zip(rig.edges, rig.edges[1:]):
        assert abs((b - a) - 65536 * 1e9 / PIT_HZ) < 1


def test_irq0_under_a_coarse_clock(rig):
    # As in the machine: 10 ns per instruction, timers fire at block ends.
    r = Rig()
    r.clock.ns_per_insn = 10
    insns = [0]
    r.clock._insns = lambda: insns[0]
    r.program(0, 3, 11932)                    # ~100 Hz
    while len(r.edges) < 100:
        d = r.clock.next_deadline()
        insns[0] += r.clock.insns_until(d) + 3
        r.clock.fire_due()
    assert r.edges[-1] < ticks_to_ns(1 + 11932 * 100) + 50
    assert ns_to_ticks(r.edges[0]) >= 11933


def test_due_edge_is_not_lost_when_counter0_is_reprogrammed(rig):
    rig.program(0, 2, 10)
    rig.now = ticks_to_ns(15)                 # past the first edge, timer not run
    rig.out(0x43, 0x30)                       # reprogram before the machine fires it
    assert len(rig.edges) == 1
    rig.tick(1000)
    assert len(rig.edges) == 1                # mode 0 waits for a count


def test_control_word_raising_out_is_an_edge(rig):
    rig.program(0, 0, 1000)
    rig.tick(10)
    rig.out(0x43, 0x34)                       # mode 2: OUT goes high now
    assert rig.edges == [ticks_to_ns(10)]


# --- port 61h -------------------------------------------------------------------------------
def test_port61_refresh_toggle(rig):
    seen = []
    for t in range(0, 80, 6):
        rig.tick(t)
        seen.append((rig.inb(0x61) >> 4) & 1)
    assert seen == [(t // 18) & 1 for t in range(0, 80, 6)]


def test_port61_bits(rig):
    rig.out(0x61, 0xFF)
    v = rig.inb(0x61)
    assert v & 0x0F == 0x0F and v & 0xC0 == 0
    rig.program(2, 3, 1193)
    rig.tick(5)
    assert rig.pit.speaker() == (True, PIT_HZ / 1193)
    rig.out(0x61, 0x01)
    assert rig.pit.speaker() == (False, None)


def test_linux_style_tsc_calibration_via_port61(rig):
    # arch/x86 pit_calibrate_tsc: gate on, speaker off, counter 2 mode 0,
    # then poll port 61h bit 5 until OUT rises.
    rig.tick(5000, offset=123)
    rig.out(0x61, (rig.inb(0x61) & ~0x02) | 0x01)
    latch = PIT_HZ // 20
    rig.out(0x43, 0xB0)
    rig.out(0x42, latch & 0xFF)
    rig.out(0x42, latch >> 8)
    start = rig.now
    polls = 0
    while not rig.inb(0x61) & 0x20:
        rig.run_to(rig.now + 997)
        polls += 1
    assert polls > 1000
    rise = ticks_to_ns(5000 + 1 + latch)
    assert rise <= rig.now < rise + 997
    assert abs((rise - start) - 50e6) < 2000          # 50 ms of virtual time


def test_gate2_edge_through_port61_only(rig):
    rig.program(2, 1, 3)
    rig.out(0x61, 0x00)
    rig.out(0x61, 0x02)                       # speaker bit: not a trigger
    rig.tick(10)
    assert rig.pit.counters[2].state == ARMED
    rig.out(0x61, 0x03)
    rig.tick(12)
    assert rig.pit.counters[2].state == RUN and not rig.out_pin(2)


def test_reset(rig):
    rig.program(0, 2, 100)
    rig.out(0x61, 3)
    rig.pit.reset()
    assert rig.clock.next_deadline() is None
    assert rig.inb(0x61) & 0x0F == 0
    assert all(c.state == IDLE for c in rig.pit.counters)
    rig.tick(100000)
    assert rig.edges == []


# --- fuzz ------------------------------------------------------------------------------------
def _check_consistent(rig):
    t = ns_to_ticks(rig.now)
    for c in rig.pit.counters:
        assert c.state in (IDLE, ARMED, RUN)
        assert 0 <= c.count(t) < c.modulus
        assert isinstance(c.out(t), bool)
        assert 0 < c.cr <= 0x10000 and 0 < c.n <= 0x10000
        assert 0 <= c.mode <= 5 and 1 <= c.rw <= 3
    d = rig.clock.next_deadline()
    assert d is None or d > rig.now
    if rig.pit._irq0_tick is not None:
        assert ticks_to_ns(rig.pit._irq0_tick) > rig.now


@pytest.mark.parametrize("seed", range(6))
def test_fuzz_ports_and_time(rig, seed):
    rnd = random.Random(seed)
    ports = (0x40, 0x41, 0x42, 0x43, 0x61)
    for _ in range(3000):
        op = rnd.random()
        if op < 0.45:
            port = rnd.choice(ports)
            v = rnd.getrandbits(8)
            if port == 0x43 and rnd.random() < 0.5:
                # a well-formed control word, so that every mode gets exercised
                v = (rnd.randrange(3) << 6) | (rnd.randrange(1, 4) << 4) | (rnd.randrange(6) << 1)
                v |= rnd.random() < 0.2
            rig.out(port, v)
        elif op < 0.7:
            assert 0 <= rig.inb(rnd.choice(ports)) <= 0xFF
        elif op < 0.75:
            rig.ports.write(0x40, rnd.choice((2, 4)), rnd.getrandbits(32))
        else:
            rig.run_to(rig.now + rnd.choice((1, 10, 837, 5000, 10 ** 6, 6 * 10 ** 7)))
        _check_consistent(rig)
    assert not rig.level                      # every edge was a full pulse
    rig.pit.reset()
    _check_consistent(rig)


# --- against a clock-by-clock model written from the datasheet ------------------------------
class RefCounter:
    """An 8254 counter stepped one CLK at a time, from the datasheet's mode
    descriptions (binary counting; a count of 1 in modes 2/3 is illegal and
    never written).  ``ce is None`` while the datasheet calls it undefined."""

    M = 0x10000

    def __init__(self):
        self.gate = False
        self.control(0, 3)

    def control(self, mode, rw):
        self.mode, self.rw = mode, rw
        self.out = mode != 0
        self.ce = None
        self.cr = None
        self.wbyte = None
        self.reload = self.trigger = False
        self.running = False          # the CE holds a count and may decrement
        self.hold = False             # mode 0: first byte of a lo/hi count written
        self.strobed = True
        self.nload = None

    def write(self, v):
        if self.rw == 1:
            self._count(v)
        elif self.rw == 2:
            self._count(v << 8)
        elif self.wbyte is None:
            self.wbyte = v
            if self.mode == 0:        # "writing the first byte disables counting"
                self.hold = True
                self.out = False
        else:
            raw, self.wbyte = self.wbyte | v << 8, None
            self._count(raw)

    def _count(self, raw):
        self.cr = raw or self.M
        m = self.mode
        if m in (0, 4):
            self.reload = True
            if m == 0:
                self.out = False
        elif m in (2, 3) and not self.running:
            self.reload = True

    def set_gate(self, g):
        if g and not self.gate and self.cr is not None and self.mode in (1, 2, 3, 5):
            self.trigger = True
        if not g and self.mode in (2, 3):
            self.out = True           # "OUT is set high immediately"
        self.gate = g

    def clock(self):
        m, M = self.mode, self.M
        if m in (0, 4):
            if self.reload:
                self.ce, self.reload, self.running, self.hold = self.cr, False, True, False
                self.strobed = False
                if m == 4:
                    self.out = True
            elif self.running and self.gate and not self.hold:
                self.ce = (self.ce - 1) % M
                if m == 0:
                    if self.ce == 0:
                        self.out = True
                else:
                    self.out = not (self.ce == 0 and not self.strobed)
                    self.strobed |= self.ce == 0
        elif m in (1, 5):
            if self.trigger:
                self.ce, self.trigger, self.running = self.cr, False, True
                self.strobed = False
                if m == 1:
                    self.out = False
            elif self.running:
                self.ce = (self.ce - 1) % M
                if m == 1:
                    if self.ce == 0:
                        self.out = True
                else:
                    self.out = not (self.ce == 0 and not self.strobed)
                    self.strobed |= self.ce == 0
        elif m == 2:
            if self.reload or self.trigger:
                self.ce, self.reload, self.trigger, self.running = self.cr, False, False, True
                self.out = True
            elif self.running and self.gate:
                if self.ce == 1:      # reload at the end of the period (new CR)
                    self.ce, self.out = self.cr, True
                else:
                    self.ce -= 1
                    if self.ce == 1:
                        self.out = False
        else:
            if self.reload or self.trigger:
                self.nload = self.cr
                self.ce = self.cr & ~1
                self.reload, self.trigger, self.running, self.out = False, False, True, True
            elif self.running and self.gate:
                odd_high = self.nload & 1 and self.out
                if self.ce == 0 or (self.ce == 2 and not odd_high):
                    # the half cycle is over: toggle, reload (odd: N-1)
                    self.out = not self.out
                    self.nload = self.cr
                    self.ce = self.cr & ~1
                else:
                    self.ce -= 2


@pytest.mark.parametrize("seed", range(8))
def test_counter2_matches_clock_by_clock_reference(rig, seed):
    rnd = random.Random(1000 + seed)
    ref = RefCounter()
    dev = rig.pit.counters[2]
    rig.out(0x43, 0xB0)
    ref.control(0, 3)
    rig.out(0x61, 0)
    for k in range(1, 2500):
        rig.tick(k)
        ref.clock()
        t = ns_to_ticks(rig.now)
        assert dev.out(t) == ref.out, (seed, k, ref.mode)
        if ref.ce is not None:
            assert dev.count(t) == ref.ce % 0x10000, (seed, k, ref.mode)
        r = rnd.random()
        if r < 0.01:
            mode, rw = rnd.randrange(6), rnd.choice((1, 2, 3, 3, 3))
            rig.out(0x43, 0x80 | rw << 4 | mode << 1)
            ref.control(mode, rw)
        elif r < 0.05:
            if ref.rw == 2:
                v = rnd.choice((0, 1))            # 256 or 65536
            elif ref.rw == 1 or ref.wbyte is None:
                v = rnd.randrange(2, 40)
            else:
                v = 0
            rig.out(0x42, v)
            ref.write(v)
        elif r < 0.09:
            g = not ref.gate
            rig.gate2(g)
            ref.set_gate(g)


# --- with the PIC, as in the machine ---------------------------------------------------------
def test_irq0_through_the_pic():
    from emu.devices.pic import PICPair
    now = [0]
    clock = VirtualClock(lambda: now[0], ns_per_insn=1)
    ports = PortBus()
    phys = PhysMem(1 << 20)
    holder = {}
    bus = DeviceBus(ports, phys, DMA(phys), clock,
                    irq=lambda line, level: holder["pic"].set_irq(line, level))
    pic = holder["pic"] = PICPair(bus)
    pit = PIT(bus)
    for port, vals in ((0x20, (0x11, 0x08, 0x04, 0x01)), (0xA0, (0x11, 0x70, 0x02, 0x01))):
        for i, v in enumerate(vals):
            ports.write(port + (i > 0), 1, v)
    ports.write(0x21, 1, 0xFE)
    ports.write(0x43, 1, 0x34)
    ports.write(0x40, 1, 1000 & 0xFF)
    ports.write(0x40, 1, 1000 >> 8)

    def advance(ns):
        while (d := clock.next_deadline()) is not None and d <= ns:
            now[0] = d
            clock.fire_due()
        now[0] = ns

    taken = []
    for k in range(1, 21):
        advance(ticks_to_ns(1 + 1000 * k))
        assert pic.pending()
        taken.append(pic.acknowledge())
        ports.write(0x20, 1, 0x20)
        assert not pic.pending()
    assert taken == [0x08] * 20
    # a CPU with interrupts off for several periods sees one request, not many
    advance(ticks_to_ns(1 + 1000 * 25) + 5)
    assert pic.acknowledge() == 0x08
    ports.write(0x20, 1, 0x20)
    assert not pic.pending()
    assert pit.irq0_edges == 25


def test_counter2_reads_its_new_count_before_the_load_clock(rig):
    """Linux's quick_pit_calibrate: gate high, mode 0, 0xFFFF, then at once
    reads LSB/MSB pairs of counter 2 and needs MSB 0xFF from the first pair
    (on a PC the ISA reads themselves take longer than one PIT clock)."""
    rig.gate2(True)
    rig.tick(10, offset=100)                  # between two clock edges
    rig.out(0x43, 0xB0)                       # counter 2, lo/hi, mode 0, binary
    rig.out(0x42, 0xFF)
    rig.out(0x42, 0xFF)
    assert rig.inb(0x42) == 0xFF and rig.inb(0x42) == 0xFF      # before the load clock
    rig.tick(11 + 256)                        # 256 clocks after the load: 0xFEFF
    assert rig.inb(0x42) == 0xFF and rig.inb(0x42) == 0xFE
