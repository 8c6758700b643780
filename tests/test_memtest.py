"""memtest86+ from Debian's memtest86+ package under emu (issue 3's acceptance).

The package is fetched with ``apt-get download`` through emu/images.py and
cached in the user's cache directory (the first run needs the Debian
archive; later runs do not).  The slow test boots its 32-bit image,
boot/memtest86+ia32.bin, through the Linux boot protocol (our BIOS runs
POST, then hands over to the kernel loader, which enters memtest's real-mode
setup code) and watches the VGA text screen until memtest shows that it is
testing memory: a "Test #N [name]" line, a "Testing: <range>" line and its
pass/test progress.

Command line (memtest86+ 6.x, README "Boot Options"):
    console=ttyS0,115200   mirror the screen on COM1 (0x3F8) at 115200 baud
    nopause                no pause for configuration at startup
    nobench                skip the integrated memory benchmark: under an
                           interpreter it costs far more than the first test
32 MiB of RAM keep the address test short.
"""
import re
import struct
import time

import pytest

from emu import images

MEMORY_MB = 32
APPEND = "console=ttyS0,115200 nopause nobench"
CHUNK = 5_000_000                 # instructions between looks at the screen
MAX_INSTRUCTIONS = 600_000_000    # measured: about 212 million to the first test (see the report)

TEST_LINE = re.compile(r"Test #\s*(\d+)\s+\[([^\]]+)\]")
TESTING_LINE = re.compile(r"Testing:\s+\d+[KMG]B\s+-\s+\d+[KMG]B")


@pytest.fixture(scope="module")
def memtest():
    """The package, from the cache or the Debian archive (a failure is a failure, not a skip)."""
    try:
        return images.memtest86plus()
    except images.ImageError as e:
        pytest.fail("cannot obtain memtest86+: %s" % e)


def test_package_has_the_32bit_linux_boot_image(memtest):
    """Fast: what the slow test boots is what the module docstring of
    emu/images.py says it is."""
    assert memtest.package == "memtest86+"
    with open(memtest.path(images.MEMTEST_KERNEL), "rb") as f:
        data = f.read()
    assert data[0x1FE:0x200] == b"\x55\xaa"          # also a boot sector
    assert data[0x202:0x206] == b"HdrS"              # Linux setup header
    version = struct.unpack_from("<H", data, 0x206)[0]
    assert version >= 0x0200
    assert data[0x211] & 0x01                        # LOADED_HIGH: code at 1 MiB
    assert struct.unpack_from("<I", data, 0x214)[0] == 0x100000   # code32_start
    setup_sects = data[0x1F1] or 4
    assert len(data) > (setup_sects + 1) * 512
    assert b"Memtest86+" in data
    with open(memtest.path(images.MEMTEST_DISK), "rb") as f:
        sector0 = f.read(512)
    assert sector0[510:] == b"\x55\xaa"              # the ISO boots as a disk too


@pytest.mark.slow
def test_memtest86plus_tests_memory_through_the_linux_boot_protocol(memtest):
    from emu.machine import Machine, MachineConfig, EXIT_TIMEOUT
    from emu.frontend.serial_backends import BufferBackend
    serial = BufferBackend()
    m = Machine(MachineConfig(memory_mb=MEMORY_MB, kernel=memtest.path(images.MEMTEST_KERNEL),
                              append=APPEND), serial_backend=serial)
    vga = m.devices["vga"]
    t0 = time.monotonic()
    done = 0
    screen = ""
    while done < MAX_INSTRUCTIONS:
        result = m.run(max_instructions=min(CHUNK, MAX_INSTRUCTIONS - done))
        done += result.instructions
        screen = vga.text()
        if TEST_LINE.search(screen) and TESTING_LINE.search(screen):
            break
        assert result.code == EXIT_TIMEOUT, "memtest86+ stopped: %s\n%s\n%s" % (
            result.reason, screen, serial.text()[-2000:])
    seconds = time.monotonic() - t0
    assert TEST_LINE.search(screen), "no test running after %d instructions:\n%s" % (done, screen)
    print("\nmemtest86+ %s is testing after %d instructions, %.1f s (%.2f MIPS), "
          "%.3f s of guest time" % (memtest.version, done, seconds, done / seconds / 1e6,
                                    m.clock.now() / 1e9))
    print(screen)
    lines = screen.split("\n")
    assert "Memtest86+ v6" in lines[0] or "Memtest86+" in screen
    assert re.search(r"Memory\s*:\s*%dMB" % MEMORY_MB, screen)
    assert re.search(r"Pass\s+\d+%", screen) and re.search(r"Test\s+\d+%", screen)
    assert "Status: Testing" in screen
    assert re.search(r"Errors:\s*0\b", screen)
    # the serial console mirrors the screen (VT100 sequences around the text)
    out = serial.text()
    assert "Memtest86+" in out and "\x1b[" in out
