"""Serial backends (emu/frontend/serial_backends.py) and the raw terminal
(emu/frontend/terminal.py): alone, through a UART, and on a real pseudo-terminal."""
import os
import pty
import termios
import time

import pytest

from emu.devices.base import DeviceBus
from emu.devices.clock import VirtualClock
from emu.devices.dma import DMA
from emu.devices.portbus import PortBus
from emu.devices.uart import UART16550
from emu.frontend.serial_backends import (BufferBackend, FileBackend, NullBackend,
                                          SerialSpecError, StdioBackend, make_backend)
from emu.frontend.terminal import RawTerminal
from emu.mmu.physmem import PhysMem

COM1 = 0x3F8


class UartRig:
    def __init__(self, backend):
        self.insns = 0
        self.ports = PortBus()
        phys = PhysMem(1 << 20)
        self.clock = VirtualClock(lambda: self.insns, ns_per_insn=1)
        self.stops = []
        bus = DeviceBus(self.ports, phys, DMA(phys), self.clock,
                        stop=lambda r, k: self.stops.append((r, k)))
        self.uart = UART16550(bus, base=COM1, irq=4, backend=backend)

    def run_for(self, ns):
        end = self.clock.now() + ns
        while True:
            d = self.clock.next_deadline()
            if d is None or d > end:
                break
            self.insns = max(self.insns, d)
            self.clock.fire_due()
        self.insns = end

    def send(self, data):
        """The guest transmits, polling THRE between bytes."""
        for b in data:
            while not self.ports.read(COM1 + 5, 1) & 0x20:
                self.run_for(10_000)
            self.ports.write(COM1, 1, b)
        while not self.ports.read(COM1 + 5, 1) & 0x40:
            self.run_for(10_000)

    def receive(self, n, limit_ns=100_000_000):
        got = bytearray()
        spent = 0
        while len(got) < n and spent < limit_ns:
            if self.ports.read(COM1 + 5, 1) & 0x01:
                got.append(self.ports.read(COM1, 1))
            else:
                self.run_for(50_000)
                spent += 50_000
        return bytes(got)


# --- the in-memory and file backends ----------------------------------------------------
def test_buffer_backend_both_ways_through_a_uart():
    be = BufferBackend()
    rig = UartRig(be)
    rig.send(b"hello, host\r\n")
    assert be.output == b"hello, host\r\n"
    assert be.text() == "hello, host\r\n"
    be.inject("hi guest")
    assert rig.receive(8) == b"hi guest"
    assert be.pending_input == 0


def test_buffer_backend_alone():
    be = BufferBackend(input=b"ab")
    assert be.readable
    be.inject(b"c")
    assert be.read_available() == b"abc"
    assert be.read_available() == b""
    be.write(b"xy")
    assert be.output == b"xy"


def test_file_backend(tmp_path):
    path = tmp_path / "com1.log"
    be = FileBackend(str(path))
    assert not be.readable and be.read_available() == b""
    rig = UartRig(be)
    rig.send(b"line one\n")
    assert path.read_bytes() == b"line one\n"    # flushed at the newline
    rig.send(b"partial")
    be.close()
    assert path.read_bytes() == b"line one\npartial"
    be.write(b"after close")                     # dropped, no error
    be.close()


def test_null_backend_counts_and_drops():
    be = NullBackend()
    rig = UartRig(be)
    rig.send(b"12345")
    assert be.bytes_dropped == 5
    assert rig.clock.next_deadline() is None     # never polled


def test_make_backend(tmp_path):
    assert isinstance(make_backend("none"), NullBackend)
    assert isinstance(make_backend(None), NullBackend)
    assert isinstance(make_backend("stdio"), StdioBackend)
    f = make_backend(str(tmp_path / "out.txt"))
    assert isinstance(f, FileBackend)
    f.close()
    f = make_backend("file:" + str(tmp_path / "stdio"))
    assert isinstance(f, FileBackend) and f.path.endswith("stdio")
    f.close()


@pytest.mark.parametrize("spec", ["", "   ", "file:", "DIR", "DIR/missing/x.log", 17])
def test_make_backend_errors_are_one_line(tmp_path, spec):
    if isinstance(spec, str):
        spec = spec.replace("DIR", str(tmp_path))
    with pytest.raises(SerialSpecError) as e:
        make_backend(spec)
    msg = str(e.value)
    assert msg.startswith("--serial") and "\n" not in msg
    assert isinstance(e.value, ValueError)


# --- the terminal ------------------------------------------------------------------------
def read_all(fd, want, timeout=2.0):
    """Read from fd until ``want`` bytes came or the timeout."""
    import select
    got = b""
    end = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            got += os.read(fd, 1024)
    return got


def poll_backend(be, want, timeout=2.0):
    got = b""
    end = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < end and not be.quit_requested:
        got += be.read_available()
        if len(got) < want:
            time.sleep(0.005)
    return got


@pytest.fixture
def tty():
    master, slave = pty.openpty()
    yield master, slave
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


def test_stdio_backend_on_a_pty_both_ways(tty):
    master, slave = tty
    before = termios.tcgetattr(slave)
    be = StdioBackend(infd=slave, outfd=slave)
    with be:
        assert be.raw
        now = termios.tcgetattr(slave)
        lflag = now[3]
        assert not lflag & (termios.ICANON | termios.ECHO | termios.ISIG)
        assert not now[0] & (termios.ICRNL | termios.IXON)
        assert now[1] & termios.OPOST
        be.write(b"guest says hi\n")
        assert read_all(master, 15) == b"guest says hi\r\n"   # the host's ONLCR still applies
        os.write(master, b"typed\r\x03")                        # CR and Ctrl-C reach the guest
        assert poll_backend(be, 7) == b"typed\r\x03"
    assert not be.raw
    assert termios.tcgetattr(slave) == before


def test_stdio_escape_keys(tty):
    master, slave = tty
    be = StdioBackend(infd=slave, outfd=slave)
    with be:
        os.write(master, b"a\x01\x01b\x01zc")   # C-a C-a -> C-a; C-a z dropped
        assert poll_backend(be, 4) == b"a\x01bc"
        os.write(master, b"\x01h")
        help_text = b""
        end = time.monotonic() + 2.0
        while b"quit emu" not in help_text and time.monotonic() < end:
            assert be.read_available() == b""    # the help goes to the terminal ...
            help_text += read_all(master, 1, timeout=0.02)
        assert b"C-a x" in help_text             # ... not to the guest
        assert not be.quit_requested
        os.write(master, b"x\x01xignored")
        assert poll_backend(be, 1) == b"x"
        assert be.quit_requested
        assert be.read_available() == b""


def test_quit_through_a_uart_stops_the_machine(tty):
    master, slave = tty
    be = StdioBackend(infd=slave, outfd=slave)
    with be:
        rig = UartRig(be)
        os.write(master, b"\x01x")
        end = time.monotonic() + 2.0
        while not rig.stops and time.monotonic() < end:
            rig.run_for(1_000_000)
            time.sleep(0.002)
    assert rig.stops == [("quit from the terminal (Ctrl-A x)", "shutdown")]


def test_terminal_restored_when_the_block_raises(tty):
    master, slave = tty
    before = termios.tcgetattr(slave)
    with pytest.raises(RuntimeError):
        with StdioBackend(infd=slave, outfd=slave):
            assert termios.tcgetattr(slave) != before
            raise RuntimeError("guest blew up")
    assert termios.tcgetattr(slave) == before


def test_raw_terminal_keeps_signals_when_asked(tty):
    _, slave = tty
    with RawTerminal(slave, signals=True) as t:
        assert t.active
        assert termios.tcgetattr(slave)[3] & termios.ISIG
    assert not t.active


def test_raw_terminal_is_a_noop_on_a_pipe():
    r, w = os.pipe()
    try:
        with RawTerminal(r) as t:
            assert not t.active
        be = StdioBackend(infd=r, outfd=w)
        with be:
            assert not be.raw
            be.write(b"out")
            assert os.read(r, 10) == b"out"
    finally:
        os.close(r)
        os.close(w)


def test_stdio_backend_end_of_input_on_a_pipe():
    r, w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        be = StdioBackend(infd=r, outfd=out_w)
        os.write(w, b"last words")
        os.close(w)
        w = None
        assert poll_backend(be, 10) == b"last words"
        assert be.read_available() == b""        # EOF: input stops, nothing raises
        assert be.read_available() == b""
    finally:
        for fd in (r, w, out_r, out_w):
            if fd is not None:
                os.close(fd)


def test_stdio_backend_output_to_a_closed_pipe_is_counted():
    r, w = os.pipe()
    os.close(r)
    try:
        be = StdioBackend(infd=w, outfd=w)
        be.write(b"nobody listens")              # EPIPE (SIGPIPE is ignored by Python)
        assert be.write_errors == 1
    finally:
        os.close(w)
