"""memtest86+ from Debian's memtest86+ package under emu (issue 3's acceptance).

The package is fetched with ``apt-get download`` through emu/images.py and
cached in the user's cache directory (the first run needs the Debian
archive; later runs do not).  The slow tests boot it two ways and watch the
VGA text screen until memtest shows that it is testing memory: a "Test #N
[name]" line, a "Testing: <range>" line and its pass/test progress:

* boot/memtest86+ia32.bin through the Linux boot protocol (our BIOS runs
  POST, then hands over to the kernel loader, which enters memtest's
  real-mode setup code);
* usr/lib/memtest86+/memtest86+ia32.iso as a hard disk, booted by our BIOS.

Command line (memtest86+ 6.x, README "Boot Options"):
    nopause                no pause for configuration at startup
32 MiB of RAM keep the address test short.  With console=ttyS0,115200
memtest also mirrors its screen on COM1 (a third test checks that); the
test that waits for the first memory test leaves it off, because every
character it sends costs a THRE-polling wait.
"""
import re
import struct
import time

import pytest

from emu import images

MEMORY_MB = 32
APPEND = "nopause"
CHUNK = 2_000_000                 # instructions between looks at the screen
MAX_INSTRUCTIONS = 40_000_000     # measured: about 8 million to the first test
SERIAL_INSTRUCTIONS = 30_000_000

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


def _boot(memtest, **config):
    from emu.machine import Machine, MachineConfig
    from emu.frontend.serial_backends import BufferBackend
    serial = BufferBackend()
    m = Machine(MachineConfig(memory_mb=MEMORY_MB, **config), serial_backend=serial)
    return m, serial


def _run_until_testing(m, serial, limit, what, press_enter=False):
    """Run in CHUNK steps until the VGA screen shows a running test; report figures.
    With ``press_enter``, answer memtest's startup prompt with the Enter key
    (through the i8042, as a user at the keyboard would)."""
    from emu.machine import EXIT_TIMEOUT
    vga = m.devices["vga"]
    t0 = time.monotonic()
    done = 0
    screen = ""
    while done < limit:
        result = m.run(max_instructions=min(CHUNK, limit - done))
        done += result.instructions
        screen = vga.text()
        if TEST_LINE.search(screen) and TESTING_LINE.search(screen):
            break
        if press_enter and "<Enter> to start testing" in screen:
            m.devices["i8042"].type_text("\n")
            press_enter = False
        assert result.code == EXIT_TIMEOUT, "memtest86+ stopped: %s\n%s\n%s" % (
            result.reason, screen, serial.text()[-2000:])
    seconds = time.monotonic() - t0
    assert TEST_LINE.search(screen), "no test running after %d instructions:\n%s" % (done, screen)
    print("\nmemtest86+ (%s) is testing after %d instructions, %.1f s (%.2f MIPS), "
          "%.3f s of guest time" % (what, done, seconds, done / seconds / 1e6,
                                    m.clock.now() / 1e9))
    print(screen)
    return screen


def _check_testing_screen(screen):
    assert "Memtest86+ v6" in screen
    assert re.search(r"Memory\s*:\s*%dMB" % MEMORY_MB, screen)
    assert re.search(r"Pass\s+\d+%", screen) and re.search(r"Test\s+\d+%", screen)
    assert "Status: Testing" in screen
    assert re.search(r"Errors:\s*0\b", screen)


@pytest.mark.slow
def test_memtest86plus_tests_memory_through_the_linux_boot_protocol(memtest):
    m, serial = _boot(memtest, kernel=memtest.path(images.MEMTEST_KERNEL), append=APPEND)
    screen = _run_until_testing(m, serial, MAX_INSTRUCTIONS, "Linux boot protocol")
    _check_testing_screen(screen)


@pytest.mark.slow
def test_memtest86plus_tests_memory_booted_from_a_disk_by_the_bios(memtest):
    """The ISO's first sector is memtest's own boot sector: the BIOS boots it
    as a hard disk, it loads the rest with INT 13h.  No command line here, so
    memtest waits at its configuration prompt (it would start by itself after
    a while: about 300 million instructions): we press Enter."""
    m, serial = _boot(memtest, disks=[memtest.path(images.MEMTEST_DISK)])
    screen = _run_until_testing(m, serial, MAX_INSTRUCTIONS, "BIOS disk boot",
                                press_enter=True)
    assert "Booting from hard disk" in serial.text()
    _check_testing_screen(screen)


@pytest.mark.slow
def test_memtest86plus_mirrors_its_screen_on_the_serial_console(memtest):
    """console=ttyS0,115200: the screen goes to COM1 too, as VT100 text.  One
    run() call: the header is among the first things memtest sends."""
    m, serial = _boot(memtest, kernel=memtest.path(images.MEMTEST_KERNEL),
                      append="console=ttyS0,115200 " + APPEND)
    m.run(max_instructions=SERIAL_INSTRUCTIONS)
    out = serial.text()
    memtest_out = out[out.index("Booting the kernel"):]
    assert "\x1b[2J" in memtest_out                 # it clears the terminal first
    assert "Memtest86+ v6.10" in memtest_out
    assert "emu IA-32 virtual CPU" in memtest_out    # our CPUID brand string
