"""Debian's i386 Linux on emu (emu/guests/linux.py): the real kernel.

* fast: the bzImage's real-mode setup code runs on our BIOS (console,
  memory detection with E820, keyboard, video, A20) until it enters protected
  mode at code32_start.  The first bytes there are replaced by ``cli; hlt``,
  so the run ends exactly when the setup code jumps to the 32-bit kernel.
* slow: `emu boot linux` boots to the busybox shell on COM1; the test types
  commands into emu's stdin and checks what comes back, then ``poweroff -f``
  ends emu with exit code 0.

The image is fetched from Debian's archive on first use (emu images fetch
linux); these tests are skipped only when it cannot be fetched.
"""
import os
import re
import struct
import subprocess
import sys
import threading
import time

import pytest

from emu.cpu import state as S
from emu.guests import linux
from emu.images import ImageError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def images():
    try:
        return linux.fetch()
    except ImageError as e:
        pytest.skip("Debian's kernel image cannot be fetched here: %s" % e)


def test_bzimage_setup_code_enters_protected_mode(images):
    from emu.frontend.serial_backends import BufferBackend
    from emu.machine import EXIT_OK, Machine, MachineConfig
    from emu.boot.linux import KERNEL_ADDR
    serial = BufferBackend()
    m = Machine(MachineConfig(memory_mb=128, kernel=images.bzimage, initrd=images.initramfs,
                              append=linux.DEFAULT_APPEND), serial_backend=serial)
    plan = m.boot_plan
    assert plan.kind == "linux" and plan.protocol >= 0x020F
    # the protected-mode kernel starts with `cli; hlt` instead of its own code
    i = [n for n, (addr, _) in enumerate(plan.writes) if addr == KERNEL_ADDR][0]
    kernel = plan.writes[i][1]
    plan.writes[i] = (KERNEL_ADDR, b"\xfa\xf4" + bytes(kernel[2:]))
    t0 = time.monotonic()
    res = m.run(timeout=120, max_instructions=50_000_000)
    secs = time.monotonic() - t0
    R = m.cpu.R
    assert res.code == EXIT_OK, res.reason
    assert R[S.CR0] & 1, "not in protected mode"
    assert R[S.EIP] == KERNEL_ADDR + 2                      # right after our hlt
    # ESI: the boot_params the setup code filled in (boot.rst: 32-bit entry)
    bp = R[S.ESI]
    page = m.phys.read_bytes(bp, 4096)
    assert page[0x202:0x206] == b"HdrS"
    n_e820 = page[0x1E8]
    assert n_e820 >= 3
    table = [struct.unpack_from("<QQI", page, 0x2D0 + 20 * k) for k in range(n_e820)]
    assert (0x100000, 127 << 20, 1) in table                # what our BIOS's INT 15h E820 said
    cmd_ptr = struct.unpack_from("<I", page, 0x228)[0]
    assert m.phys.read_bytes(cmd_ptr, len(linux.DEFAULT_APPEND)) == linux.DEFAULT_APPEND.encode()
    rd_addr, rd_size = struct.unpack_from("<II", page, 0x218)
    assert rd_size == os.path.getsize(images.initramfs) and rd_addr == plan.initrd_addr
    assert secs < 60, "the setup code took %.1f s" % secs


# --- the whole boot --------------------------------------------------------------------------
class Console:
    """emu's stdin/stdout as a serial terminal."""

    def __init__(self, proc):
        self.proc = proc
        self.buf = bytearray()
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        while True:
            chunk = self.proc.stdout.read1(4096)
            if not chunk:
                return
            with self.lock:
                self.buf += chunk

    def text(self):
        with self.lock:
            return bytes(self.buf).decode("utf-8", "replace").replace("\r", "")

    def wait_for(self, pattern, start, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = self.text()
            m = re.search(pattern, text[start:])
            if m:
                return text, start + m.end()
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError("no %r within %s s; output ends with:\n%s"
                             % (pattern, timeout, self.text()[-3000:]))

    def command(self, cmd, start, timeout=600):
        """Type ``cmd``; return (its output, where the next prompt ends)."""
        self.proc.stdin.write(cmd.encode() + b"\n")
        self.proc.stdin.flush()
        text, pos = self.wait_for(re.escape(linux.PROMPT), start + 1, timeout)
        out = text[start:pos - len(linux.PROMPT)]
        lines = out.split("\n")
        assert cmd in lines[0], (cmd, out)       # the echo of the command line
        return "\n".join(lines[1:]), pos


@pytest.mark.slow
def test_boot_linux_to_a_shell(images):
    timeout = float(os.environ.get("EMU_LINUX_TIMEOUT", "5400"))
    proc = subprocess.Popen([sys.executable, "-m", "emu.cli", "boot", "linux", "--timeout",
                             str(timeout)], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    con = Console(proc)
    try:
        text, pos = con.wait_for(re.escape(linux.MARKER), 0, timeout)
        boot_log = text[:pos]
        assert "Kernel command line: " + linux.DEFAULT_APPEND in boot_log
        assert "serial8250: ttyS0 at I/O 0x3f8 (irq = 4, base_baud = 115200) is a 16550A" \
            in boot_log
        assert "rtc_cmos rtc_cmos: registered as rtc0" in boot_log
        assert "i8042 KBD port at 0x60,0x64 irq 1" in boot_log
        _, pos = con.wait_for(re.escape(linux.PROMPT), pos, 600)

        out, pos = con.command("uname -a", pos)
        assert re.search(r"^Linux emu 6\.1\.\d+-\d+-686 #1 SMP .* i686 GNU/Linux$", out, re.M), out

        out, pos = con.command("cat /proc/cpuinfo", pos)
        assert re.search(r"^vendor_id\s*: GenuineIntel$", out, re.M), out
        assert re.search(r"^cpu family\s*: 6$", out, re.M), out
        flags = re.search(r"^flags\s*: (.*)$", out, re.M).group(1).split()
        for f in ("fpu", "tsc", "cx8", "cmov"):
            assert f in flags, (f, flags)
        for f in ("sse", "sse2", "mmx", "apic", "pae", "nx", "lm"):
            assert f not in flags, (f, flags)

        out, pos = con.command("echo $((6*7))", pos)
        assert out.strip() == "42", out

        # the clock: `date` comes from the RTC (started at the host's time), and
        # two seconds of sleep are two seconds of the guest's uptime
        out, pos = con.command("date +%s", pos)
        assert abs(int(out.strip()) - time.time()) < 3600, out
        out, pos = con.command("cat /proc/uptime; sleep 2; cat /proc/uptime", pos)
        a, b = [float(ln.split()[0]) for ln in out.split("\n") if ln.strip()]
        assert 1.9 <= b - a <= 3.5, out

        out, pos = con.command("ls /proc", pos)
        names = out.split()
        for n in ("1", "cpuinfo", "meminfo", "interrupts", "uptime"):
            assert n in names, (n, out)

        proc.stdin.write(b"poweroff -f\n")
        proc.stdin.flush()
        code = proc.wait(600)
        err = proc.stderr.read().decode("utf-8", "replace")
        assert code == 0, err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
