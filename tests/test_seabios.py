"""--bios seabios: SeaBIOS from Debian's seabios package POSTs on emu's PC.

It finds our PCI host and ISA bridges, the serial port and the PS/2
keyboard, and prints its log to the debug console at 0x402.  It cannot boot
a disk yet: it has no driver for our BIOS's paravirtual disk channel and emu
has no IDE controller, so it ends in "No bootable device" (asserted here, so
that the day it boots, this test is updated on purpose)."""
import os
import shutil
import subprocess

import pytest

from emu.firmware import SEABIOS_PATHS
from emu.frontend.serial_backends import BufferBackend
from emu.machine import EXIT_TIMEOUT, Machine, MachineConfig


def _ensure_seabios():
    if any(os.path.exists(p) for p in SEABIOS_PATHS):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail("SeaBIOS is not installed and cannot be installed here (apt-get as root)")
    subprocess.run(["apt-get", "install", "-y", "-qq", "seabios"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_seabios_posts_and_finds_the_platform():
    _ensure_seabios()
    m = Machine(MachineConfig(memory_mb=32, bios="seabios", rtc_start=0),
                serial_backend=BufferBackend())
    res = m.run(max_instructions=8_000_000)
    assert res.code == EXIT_TIMEOUT, res.reason
    log = m.devices["sysctrl"].debug_text()
    for line in ("SeaBIOS (version", "RamSize: 0x02000000",
                 "PCI: init bdf=00:00.0 id=8086:1237", "PCI: init bdf=00:01.0 id=8086:7000",
                 "Found 1 serial ports", "PS2 keyboard initialized", "No bootable device"):
        assert line in log, line
