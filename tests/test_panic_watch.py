"""A Linux kernel panic on the serial console ends the run with exit code 6
(emu/frontend/panic_watch.py, wired into emu/machine.py)."""
import os
import re
import subprocess
import sys

import pytest

from emu.frontend.panic_watch import PanicWatch
from emu.frontend.serial_backends import BufferBackend
from tests.guests.multiboot_build import elf32, nasm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PANIC = (b"[    2.65] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\r\n"
         b"[    2.66] CPU: 0 PID: 1 Comm: init Not tainted 6.1.0-50-686 #1\r\n"
         b"[    2.66] Call Trace:\r\n"
         b"[    2.67] ---[ end Kernel panic - not syncing: Attempted to kill init! "
         b"exitcode=0x00000100 ]---\r\n")
REASON = "Attempted to kill init! exitcode=0x00000100"


@pytest.mark.parametrize("step", [1, 3, 17, len(PANIC)])
def test_reports_once_at_the_end_line_whatever_the_chunking(step):
    seen = []
    w = PanicWatch(seen.append)
    data = b"boot boot\r\n" + PANIC + b"more\r\n" + PANIC
    for i in range(0, len(data), step):
        w.feed(data[i:i + step])
        # reported as soon as the whole end line has arrived, not before
        assert bool(seen) == bool(re.search(rb"---\[ end Kernel panic[^\n]*\n", data[:i + step]))
    assert seen == [REASON]
    assert w.panicked and w.reason == REASON


def test_no_end_line_reports_after_the_grace_bytes_or_at_flush():
    seen = []
    w = PanicWatch(seen.append, grace_bytes=100)
    w.feed(b"Kernel panic - not syncing: VFS: Unable to mount root fs\n")
    assert seen == [] and w.panicked
    w.feed(b"x" * 120)
    assert seen == ["VFS: Unable to mount root fs"]
    seen2 = []
    w2 = PanicWatch(seen2.append)
    w2.feed(b"Kernel panic - not syncing: Fatal exception")      # no newline yet
    assert seen2 == []
    w2.flush()
    assert seen2 == ["Fatal exception"]


def test_ordinary_output_is_not_a_panic():
    seen = []
    w = PanicWatch(seen.append, grace_bytes=10)
    w.feed(b"panic=10 on the command line\nKernel panic - syncing is not a thing\n" * 50)
    w.flush()
    assert seen == [] and not w.panicked


def test_wrapped_backend_passes_everything_through():
    inner = BufferBackend(b"keys")
    seen = []
    tap = PanicWatch.wrap(inner, seen.append)
    with tap:
        tap.write(PANIC)
        assert tap.read_available() == b"keys"
        assert tap.readable is True
    assert bytes(inner.output) == PANIC and seen == [REASON]


PANIC_KERNEL = r"""
bits 32
org 0x100000
    dd 0x1BADB002, 0, -0x1BADB002          ; Multiboot v1, flags 0: load by the ELF headers
start:
    mov esi, msg
.next:
    lodsb
    test al, al
    jz .spin
    mov bl, al
.wait:
    mov dx, 0x3FD
    in al, dx
    test al, 0x20
    jz .wait
    mov al, bl
    mov dx, 0x3F8
    out dx, al
    jmp .next
.spin:
    sti
    jmp .spin                              ; what panic() does: spin with interrupts on
msg:
    db "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100", 13, 10
    db "CPU: 0 PID: 1 Comm: init", 13, 10
    db "---[ end Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100 ]---"
    db 13, 10, 0
"""


def test_emu_run_exits_6_with_the_reason_and_the_serial_tail(tmp_path):
    code = nasm(PANIC_KERNEL)
    k = tmp_path / "panic.elf"
    k.write_bytes(elf32([(0x100000, code, len(code))], 0x10000C))
    out = tmp_path / "serial.txt"
    p = subprocess.run([sys.executable, "-m", "emu.cli", "run", "--kernel", str(k), "--serial",
                        str(out), "--memory", "16", "--timeout", "60"], cwd=REPO,
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == 6, p.stderr
    err = p.stderr.splitlines()
    assert err[0].startswith("emu: kernel panic: " + REASON + " (exit 6"), err
    assert "emu: last serial output:" in err
    assert err[-1].startswith("  | ---[ end Kernel panic")
    assert "Traceback" not in p.stderr
