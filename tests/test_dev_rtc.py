"""The MC146818 RTC/CMOS (emu/devices/rtc.py) against the Motorola MC146818 /
Dallas DS12887 datasheets and the PC CMOS layout, in virtual time."""
import datetime
import random

import pytest

from emu.devices.base import DeviceBus
from emu.devices.clock import VirtualClock
from emu.devices.dma import DMA
from emu.devices.portbus import PortBus
from emu.devices.rtc import RTC, FLOPPY_1_44M, FLOPPY_720K
from emu.mmu.physmem import PhysMem

S = 1_000_000_000
MIB = 1 << 20
START = datetime.datetime(2024, 2, 28, 23, 59, 58)     # a Wednesday


class Rig:
    def __init__(self, start=START, ram=128 * MIB):
        self.now = 0
        self.clock = VirtualClock(lambda: self.now, ns_per_insn=1)
        self.ports = PortBus()
        self.phys = PhysMem(1 << 20)
        self.bus = DeviceBus(self.ports, self.phys, DMA(self.phys), self.clock, irq=self._irq)
        self.rtc = RTC(self.bus, ram_size=ram, start_time=start)
        self.level = False
        self.rises = []               # virtual ns of each IRQ 8 rising edge
        self.bad_irq = []

    def _irq(self, line, level):
        if line != 8 or bool(level) == self.level:
            self.bad_irq.append((line, level))
        if level:
            self.rises.append(self.clock.now())
        self.level = bool(level)

    def run_to(self, ns, serve=False):
        """Advance like the machine; with serve=True an 'ISR' reads register C
        each time IRQ 8 is up (as every RTC interrupt handler must)."""
        while True:
            d = self.clock.next_deadline()
            if d is None or d > ns:
                break
            self.now = max(self.now, d)
            self.clock.fire_due()
            if serve and self.level:
                self.reg(0x0C)
        self.now = ns
        self.clock.fire_due()

    def reg(self, index):
        self.ports.write(0x70, 1, index)
        return self.ports.read(0x71, 1)

    def setreg(self, index, value):
        self.ports.write(0x70, 1, index)
        self.ports.write(0x71, 1, value)

    def clock_regs(self):
        return [self.reg(i) for i in (0, 2, 4, 6, 7, 8, 9, 0x32)]


@pytest.fixture
def rig():
    r = Rig()
    yield r
    assert r.ports.counters["handler_errors"] == 0, r.ports.last_error
    assert not r.bad_irq


# --- time keeping ------------------------------------------------------------------------
def test_start_time_in_bcd(rig):
    #                     s     m     h     dow   day   mon   year  century
    assert rig.clock_regs() == [0x58, 0x59, 0x23, 0x04, 0x28, 0x02, 0x24, 0x20]
    assert rig.reg(0x0A) == 0x26 and rig.reg(0x0B) == 0x02 and rig.reg(0x0D) == 0x80


def test_advances_with_virtual_time_over_a_leap_day(rig):
    rig.run_to(S - 1)
    assert rig.reg(0) == 0x58
    rig.run_to(S)
    assert rig.reg(0) == 0x59
    rig.run_to(2 * S)
    assert rig.clock_regs() == [0x00, 0x00, 0x00, 0x05, 0x29, 0x02, 0x24, 0x20]
    rig.run_to(2 * S + 86400 * S)
    assert rig.clock_regs() == [0x00, 0x00, 0x00, 0x06, 0x01, 0x03, 0x24, 0x20]
    assert rig.rtc.datetime() == datetime.datetime(2024, 3, 1)


def test_fractional_start_second():
    r = Rig(start=datetime.datetime(2020, 1, 1, 0, 0, 0, 750000))
    r.run_to(S // 4 - 1)
    assert r.reg(0) == 0x00
    r.run_to(S // 4)                          # the rest of the start second
    assert r.reg(0) == 0x01


def test_binary_mode(rig):
    rig.setreg(0x0B, 0x86)                    # SET, binary, 24 h
    for reg, v in ((0, 59), (2, 59), (4, 23), (6, 7), (7, 31), (8, 12), (9, 99), (0x32, 19)):
        rig.setreg(reg, v)
    rig.setreg(0x0B, 0x06)
    rig.run_to(S)                             # 1999-12-31 23:59:59 -> 2000-01-01
    assert rig.clock_regs() == [0, 0, 0, 1, 1, 1, 0, 20]


def test_12_hour_mode(rig):
    rig.setreg(0x0B, 0x80)                    # SET, BCD, 12 h
    rig.setreg(4, 0x91)                       # 11 PM
    rig.setreg(2, 0x59)
    rig.setreg(0, 0x59)
    rig.setreg(0x0B, 0x00)
    rig.run_to(S)
    assert (rig.reg(4), rig.reg(2), rig.reg(0)) == (0x12, 0x00, 0x00)   # 12 AM
    assert rig.reg(7) == 0x29
    rig.setreg(0x0B, 0x80)
    rig.setreg(4, 0x11)                       # 11 AM
    rig.setreg(2, 0x59)
    rig.setreg(0, 0x59)
    rig.setreg(0x0B, 0x00)
    rig.run_to(2 * S)
    assert rig.reg(4) == 0x92                 # 12 PM
    rig.run_to(2 * S + 3600 * S)
    assert rig.reg(4) == 0x81                 # 1 PM


def test_changing_format_does_not_convert_registers(rig):
    rig.setreg(0x0B, 0x06)                    # binary now; the registers stay as they are
    assert rig.reg(0) == 0x58


def test_century_rollover():
    r = Rig(start=datetime.datetime(2099, 12, 31, 23, 59, 59))
    r.run_to(S)
    assert r.clock_regs() == [0x00, 0x00, 0x00, 0x06, 0x01, 0x01, 0x00, 0x21]
    r.run_to(S + 59 * 86400 * S)
    assert (r.reg(7), r.reg(8)) == (0x01, 0x03)        # 2100 is not a leap year


def test_invalid_fields_are_reset_at_the_next_update(rig):
    rig.setreg(0x0B, 0x82)
    rig.setreg(4, 0x99)                       # not an hour
    rig.setreg(7, 0x31)                       # Feb 31st
    rig.setreg(0x0B, 0x02)
    assert rig.reg(4) == 0x99                 # kept until the update
    rig.run_to(S)
    assert rig.reg(4) == 0x00 and rig.reg(7) == 0x01 and rig.reg(0) == 0x59


def test_long_unobserved_interval(rig):
    rig.setreg(1, 0x30)
    rig.setreg(3, 0x15)
    rig.setreg(5, 0x07)                       # alarm 07:15:30, passed on the way
    rig.run_to(3 * 86400 * S + 5 * S)
    assert rig.rtc.datetime() == datetime.datetime(2024, 3, 3, 0, 0, 3)
    assert rig.reg(6) == 0x01                 # Sunday
    assert rig.reg(0x0C) == 0x70              # PF, AF, UF; no IRQF (nothing enabled)
    assert rig.rises == []


def test_host_clock_by_default():
    r = Rig(start=None)
    host = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert abs((r.rtc.datetime() - host).total_seconds()) < 5


# --- register A: UIP and the divider ---------------------------------------------------------
def test_uip_is_set_for_the_last_244_us_of_each_second(rig):
    for t, uip in ((S - 244_001, 0), (S - 244_000, 0x80), (S - 1, 0x80), (S, 0),
                   (2 * S - 300_000, 0), (2 * S - 100_000, 0x80)):
        rig.run_to(t)
        assert rig.reg(0x0A) & 0x80 == uip, t


def test_set_inhibits_updates_and_clears_uip_and_uie(rig):
    rig.setreg(0x0B, 0x12)                    # UIE
    rig.setreg(0x0B, 0x92)                    # SET going high clears UIE
    assert rig.reg(0x0B) == 0x82
    rig.run_to(S - 100_000)
    assert not rig.reg(0x0A) & 0x80           # no UIP while SET
    rig.run_to(5 * S + 100)
    assert rig.reg(0) == 0x58                 # frozen
    rig.setreg(0x0B, 0x02)
    rig.run_to(6 * S - 1)
    assert rig.reg(0) == 0x58
    rig.run_to(6 * S)                         # the divider kept its phase
    assert rig.reg(0) == 0x59
    assert rig.rises == []


def test_divider_reset_and_first_update_half_a_second_later(rig):
    rig.run_to(S // 10)
    rig.setreg(0x0A, 0x76)                    # 11x: divider held in reset
    rig.run_to(10 * S)
    assert rig.reg(0) == 0x58
    rig.setreg(0x0A, 0x26)                    # released at t = 10 s
    rig.run_to(10 * S + S // 2 - 1)
    assert rig.reg(0) == 0x58
    rig.run_to(10 * S + S // 2)
    assert rig.reg(0) == 0x59


def test_register_a_uip_bit_is_read_only(rig):
    rig.setreg(0x0A, 0xA6)
    assert rig.reg(0x0A) == 0x26


# --- interrupts ---------------------------------------------------------------------------
@pytest.mark.parametrize("rs,hz", [(6, 1024), (3, 8192), (15, 2), (1, 256), (2, 128), (8, 256)])
def test_periodic_interrupt_rate(rig, rs, hz):
    rig.setreg(0x0A, 0x20 | rs)
    rig.setreg(0x0B, 0x42)                    # PIE
    rig.run_to(2 * S, serve=True)
    assert len(rig.rises) == 2 * hz
    period = S / hz
    for k, t in enumerate(rig.rises[:50], start=1):
        assert t == -(-(k * S) // hz)         # exactly on the divider's taps
    assert abs((rig.rises[-1] - rig.rises[0]) - (len(rig.rises) - 1) * period) < 1


def test_periodic_flag_without_pie(rig):
    rig.run_to(S // 1000)                     # 1 ms at 1024 Hz: an edge happened
    assert rig.reg(0x0C) == 0x40              # PF, but no IRQF
    assert rig.reg(0x0C) == 0x00              # reading cleared it
    assert rig.rises == [] and rig.clock.next_deadline() is None


def test_rs_zero_means_no_periodic_flag(rig):
    rig.setreg(0x0A, 0x20)
    rig.setreg(0x0B, 0x42)
    rig.run_to(S // 2)
    assert rig.reg(0x0C) == 0x00 and rig.rises == []


def test_update_ended_interrupt(rig):
    rig.setreg(5, 0x12)                       # an alarm (noon) that is not reached
    rig.setreg(0x0A, 0x20)                    # no periodic flag
    rig.setreg(0x0B, 0x12)                    # UIE
    for k in range(1, 4):
        rig.run_to(k * S)
        assert rig.level and rig.rises[-1] == k * S
        assert rig.reg(0x0C) == 0x90          # IRQF | UF
        assert not rig.level
    assert len(rig.rises) == 3


def test_irq_stays_up_until_register_c_is_read(rig):
    rig.setreg(5, 0x12)                       # an alarm (noon) that is not reached
    rig.setreg(0x0A, 0x20)                    # no periodic flag
    rig.setreg(0x0B, 0x12)
    rig.run_to(5 * S + 10)
    assert len(rig.rises) == 1 and rig.level
    assert rig.clock.next_deadline() is None  # nothing more can change the pin
    assert rig.reg(0x0C) == 0x90
    assert not rig.level
    rig.run_to(6 * S)
    assert len(rig.rises) == 2


def test_alarm_interrupt(rig):
    rig.setreg(0x0A, 0x20)                    # no periodic flag
    # start 23:59:58; updates at 1 s (23:59:59), 2 s (00:00:00), 3 s (00:00:01)
    rig.setreg(1, 0x01)
    rig.setreg(3, 0x00)
    rig.setreg(5, 0x00)
    rig.setreg(0x0B, 0x22)                    # AIE
    rig.run_to(10 * S, serve=False)
    assert rig.rises == [3 * S]
    assert rig.reg(0x0C) == 0xB0              # IRQF | AF | UF
    rig.run_to(20 * S)
    assert rig.reg(0x0C) == 0x10              # the alarm did not match again


def test_alarm_dont_care_every_second(rig):
    for reg in (1, 3, 5):
        rig.setreg(reg, 0xC0)
    rig.setreg(0x0B, 0x22)
    rig.run_to(5 * S, serve=True)
    assert rig.rises == [k * S for k in range(1, 6)]


def test_alarm_in_12_hour_mode_compares_bytes(rig):
    rig.setreg(0x0B, 0x80)                    # SET, 12 h BCD
    rig.setreg(4, 0x81)                       # 1 PM
    rig.setreg(2, 0x00)
    rig.setreg(0, 0x00)
    rig.setreg(1, 0x02)
    rig.setreg(3, 0x00)
    rig.setreg(5, 0x81)                       # alarm 1 PM 00:02
    rig.setreg(0x0B, 0x20)                    # AIE
    rig.run_to(5 * S, serve=True)
    assert rig.rises == [2 * S]


def test_enabling_an_interrupt_with_its_flag_pending_raises_irq(rig):
    rig.run_to(S + 5)
    assert not rig.level
    rig.setreg(0x0B, 0x12)                    # UF is already set
    assert rig.level and rig.rises == [S + 5]
    rig.setreg(0x0B, 0x02)                    # IRQF follows the enables
    assert not rig.level


def test_register_c_and_d_are_read_only(rig):
    rig.setreg(5, 0x12)                       # an alarm (noon) that is not reached
    rig.setreg(0x0A, 0x20)                    # no periodic flag
    rig.setreg(0x0D, 0x00)
    assert rig.reg(0x0D) == 0x80
    rig.run_to(S)
    rig.setreg(0x0C, 0x00)
    assert rig.reg(0x0C) == 0x10              # UF survives the write


def test_reset_pin(rig):
    rig.setreg(0x0B, 0x7A)                    # PIE AIE UIE SQWE + 24 h
    rig.run_to(S)
    assert rig.level
    rig.rtc.reset()
    assert not rig.level
    assert rig.reg(0x0B) == 0x02
    assert rig.reg(0x0C) == 0
    assert rig.clock.next_deadline() is None
    assert rig.reg(0) == 0x59                 # time survives


# --- NVRAM --------------------------------------------------------------------------------
def _word(r, index):
    return r.reg(index) | r.reg(index + 1) << 8


def _checksum_ok(r):
    return sum(r.reg(i) for i in range(0x10, 0x2E)) & 0xFFFF == r.reg(0x2E) << 8 | r.reg(0x2F)


@pytest.mark.parametrize("ram,ext,high", [
    (2 * MIB, 1024, 0),
    (16 * MIB, 15 * 1024, 0),
    (32 * MIB + 64 * 1024, 31 * 1024 + 64, 257),
    (64 * MIB, 63 * 1024, (48 * MIB) >> 16),
    (128 * MIB, 65535, (112 * MIB) >> 16),           # capped at 64 MiB - 1 KiB
    (3 * 1024 * MIB, 65535, (3 * 1024 * MIB - 16 * MIB) >> 16),
])
def test_memory_size_bytes(ram, ext, high):
    r = Rig(ram=ram)
    assert _word(r, 0x15) == 640
    assert _word(r, 0x17) == ext and _word(r, 0x30) == ext
    assert _word(r, 0x34) == high
    assert _checksum_ok(r)


def test_equipment_and_floppy(rig):
    assert rig.reg(0x14) == 0x02 and rig.reg(0x10) == 0
    rig.rtc.set_floppy(FLOPPY_1_44M)
    assert rig.reg(0x10) == 0x40 and rig.reg(0x14) == 0x03
    rig.rtc.set_floppy(FLOPPY_1_44M, FLOPPY_720K)
    assert rig.reg(0x10) == 0x43 and rig.reg(0x14) == 0x43
    assert _checksum_ok(rig)


def test_nvram_read_write_and_index_port(rig):
    rig.ports.write(0x70, 1, 0x80 | 0x40)     # NMI disabled, index 0x40
    assert rig.rtc.nmi_masked and rig.rtc.index == 0x40
    rig.ports.write(0x71, 1, 0xA5)
    assert rig.reg(0x40) == 0xA5
    assert not rig.rtc.nmi_masked
    assert rig.ports.read(0x70, 1) == 0xFF    # the index register is write-only
    rig.rtc.set_byte(0x2D, 0x11)
    assert _checksum_ok(rig)


# --- fuzz -------------------------------------------------------------------------------------
def _check_consistent(r):
    rtc = r.rtc
    irqf = bool(rtc._flags & rtc.cmos[0x0B] & 0x70)
    assert r.level == irqf == rtc._irq_level
    assert rtc._flags & ~0x70 == 0
    d = r.clock.next_deadline()
    assert d is None or d > r.now
    if irqf:
        assert d is None
    assert all(0 <= b <= 0xFF for b in rtc.cmos)


@pytest.mark.parametrize("seed", range(6))
def test_fuzz_ports_and_time(rig, seed):
    rnd = random.Random(seed)
    for _ in range(3000):
        op = rnd.random()
        if op < 0.3:
            rig.ports.write(0x70, 1, rnd.choice((rnd.getrandbits(8), rnd.randrange(0x0E),
                                                 0x32, 0x8A, 0x8B, 0x8C)))
        elif op < 0.55:
            rig.ports.write(0x71, 1, rnd.getrandbits(8))
        elif op < 0.75:
            assert 0 <= rig.ports.read(rnd.choice((0x70, 0x71)), 1) <= 0xFF
        elif op < 0.78:
            rig.ports.write(0x70, rnd.choice((2, 4)), rnd.getrandbits(32))
        else:
            step = rnd.choice((1, 1000, 122_070, 10 ** 6, 3 * 10 ** 7, 2 * S, 4000 * S))
            # An interrupt handler that serves 8192 Hz for an hour of virtual
            # time takes real time: long steps run unserved.
            rig.run_to(rig.now + step, serve=step <= 10 ** 7 and rnd.random() < 0.5)
        _check_consistent(rig)
    rig.rtc.reset()
    _check_consistent(rig)


# --- with the PIC, as in the machine ------------------------------------------------------
def test_irq8_through_the_cascade():
    from emu.devices.pic import PICPair
    r = Rig()
    pic = PICPair(r.bus)
    r.bus._irq = lambda line, level: pic.set_irq(line, level)
    for port, vals in ((0x20, (0x11, 0x08, 0x04, 0x01)), (0xA0, (0x11, 0x70, 0x02, 0x01))):
        for i, v in enumerate(vals):
            r.ports.write(port + (i > 0), 1, v)
    r.ports.write(0x21, 1, 0xFB)
    r.ports.write(0xA1, 1, 0xFE)
    r.setreg(0x0A, 0x2F)                      # 2 Hz
    r.setreg(0x0B, 0x42)

    def advance(ns):
        while (d := r.clock.next_deadline()) is not None and d <= ns:
            r.now = d
            r.clock.fire_due()
        r.now = ns

    advance(S // 2)
    assert pic.acknowledge() == 0x70
    r.ports.write(0xA0, 1, 0x20)
    r.ports.write(0x20, 1, 0x20)
    advance(3 * S)
    assert not pic.pending()                  # register C was not read: no new edge
    assert r.reg(0x0C) & 0xC0 == 0xC0          # IRQF and PF (UF, AF from updates too)
    advance(3 * S + S // 2)
    assert pic.acknowledge() == 0x70
    assert r.ports.counters["handler_errors"] == 0
