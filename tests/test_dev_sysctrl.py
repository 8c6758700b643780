"""Ports 92h, 80h, E9h and CF9h (emu/devices/sysctrl.py)."""
import random

import pytest

from emu.devices.base import DeviceBus
from emu.devices.clock import VirtualClock
from emu.devices.dma import DMA
from emu.devices.portbus import PortBus
from emu.devices.sysctrl import SystemControl, POST_HISTORY, DEBUG_BUFFER
from emu.mmu.physmem import PhysMem


class Rig:
    def __init__(self, preclaim_cf9=False):
        self.clock = VirtualClock(lambda: 0, ns_per_insn=1)
        self.ports = PortBus()
        if preclaim_cf9:
            self.ports.register(0xCF8, 4, read=lambda p, s: 0, write=lambda p, s, v: None,
                                name="pci-address")
        self.phys = PhysMem(1 << 20)
        self.a20 = []
        self.resets = 0
        self.bus = DeviceBus(self.ports, self.phys, DMA(self.phys), self.clock,
                             a20=self.a20.append, reset_cpu=self._reset)
        self.sc = SystemControl(self.bus)

    def _reset(self):
        self.resets += 1

    def out(self, port, value, size=1):
        self.ports.write(port, size, value)

    def inb(self, port):
        return self.ports.read(port, 1)


@pytest.fixture
def rig():
    r = Rig()
    yield r
    assert r.ports.counters["handler_errors"] == 0, r.ports.last_error


# --- port 92h -------------------------------------------------------------------------
def test_port92_fast_a20(rig):
    rig.out(0x92, 0x02)
    assert rig.a20 == [True] and rig.inb(0x92) == 0x02
    rig.out(0x92, 0x02)                       # no change: nothing passed on
    assert rig.a20 == [True]
    rig.out(0x92, 0x00)
    assert rig.a20 == [True, False]
    assert rig.resets == 0


def test_port92_reset_on_rising_bit0(rig):
    rig.out(0x92, 0x03)
    assert rig.resets == 1 and rig.a20 == [True]
    rig.out(0x92, 0x03)                       # still 1: no new edge
    assert rig.resets == 1
    assert rig.inb(0x92) == 0x03              # reads back
    rig.out(0x92, 0x02)
    rig.out(0x92, 0x03)
    assert rig.resets == 2
    rig.sc.reset()                            # the machine's reset clears the latch
    assert rig.inb(0x92) == 0x00


# --- port 80h ---------------------------------------------------------------------------
def test_post_codes(rig):
    assert rig.sc.post_code is None and rig.inb(0x80) == 0xFF
    for code in (0x01, 0x02, 0x55, 0xAA):
        rig.out(0x80, code)
    assert rig.sc.post_code == 0xAA and rig.inb(0x80) == 0xAA
    assert rig.sc.post_codes == [0x01, 0x02, 0x55, 0xAA]


def test_post_history_is_bounded(rig):
    for i in range(POST_HISTORY * 3 + 7):
        rig.out(0x80, i & 0xFF)
    codes = rig.sc.post_codes
    assert len(codes) == POST_HISTORY
    assert codes[-1] == (POST_HISTORY * 3 + 6) & 0xFF
    assert codes[0] == (2 * POST_HISTORY + 7) & 0xFF


# --- port E9h -----------------------------------------------------------------------------
def test_debug_console_buffer_and_detection(rig):
    assert rig.inb(0xE9) == 0xE9
    for ch in b"hello\n":
        rig.out(0xE9, ch)
    assert rig.sc.debug_text() == "hello\n"


def test_debug_console_callable(rig):
    got = []
    rig.sc.debug_out = got.append
    rig.out(0xE9, ord("A"))
    rig.out(0xE9, 0x4342, size=2)             # the high byte goes to port 0xEA
    assert b"".join(got) == b"AB"
    assert rig.ports.counters["unhandled_writes"] == 1
    assert all(isinstance(b, bytes) and len(b) == 1 for b in got)
    assert rig.sc.debug_buffer == b""


def test_debug_buffer_is_bounded(rig):
    for i in range(DEBUG_BUFFER + 100):
        rig.out(0xE9, i & 0x7F)
    buf = rig.sc.debug_buffer
    assert len(buf) == DEBUG_BUFFER
    assert buf[-1] == (DEBUG_BUFFER + 99) & 0x7F


# --- port CF9h --------------------------------------------------------------------------------
def test_cf9_hard_reset(rig):
    rig.out(0xCF9, 0x02)                      # select hard reset: nothing yet
    assert rig.resets == 0 and rig.inb(0xCF9) == 0x02
    rig.out(0xCF9, 0x06)                      # Linux's reboot=pci sequence
    assert rig.resets == 1
    assert rig.inb(0xCF9) == 0x02             # bit 2 is a command, reads 0


def test_cf9_soft_reset_also_resets(rig):
    rig.out(0xCF9, 0x04)
    assert rig.resets == 1


def test_cf9_other_bits_ignored(rig):
    rig.out(0xCF9, 0xF9)
    assert rig.resets == 0 and rig.inb(0xCF9) == 0x00


def test_cf9_not_claimed_when_the_pci_address_port_owns_it():
    r = Rig(preclaim_cf9=True)
    assert r.ports.owner(0xCF9) == "pci-address"
    r.sc.reset_control_write(0x06)            # what the PCI device forwards
    assert r.resets == 1


# --- fuzz -------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_fuzz(rig, seed):
    rnd = random.Random(seed)
    ports = (0x92, 0x80, 0xE9, 0xCF9)
    for _ in range(5000):
        port = rnd.choice(ports)
        if rnd.random() < 0.6:
            rig.out(port, rnd.getrandbits(32), size=rnd.choice((1, 1, 2, 4)))
        else:
            assert 0 <= rig.inb(port) <= 0xFF
        sc = rig.sc
        assert 0 <= sc.port92 <= 0xFF and sc.reset_control in (0, 2)
        assert len(sc.post_codes) <= POST_HISTORY and len(sc.debug_buffer) <= DEBUG_BUFFER
    assert all(isinstance(v, bool) for v in rig.a20)
