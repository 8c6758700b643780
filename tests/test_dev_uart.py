"""The 16550A UART (emu/devices/uart.py) against the datasheet's register
semantics, built on a real PortBus / PhysMem / DMA and a VirtualClock whose
instruction counter the test drives (1 ns per instruction)."""
import random

import pytest

from emu.devices.base import DeviceBus
from emu.devices.clock import VirtualClock
from emu.devices.dma import DMA
from emu.devices.portbus import PortBus
from emu.devices.uart import UART16550
from emu.frontend.serial_backends import BufferBackend
from emu.mmu.physmem import PhysMem

COM1 = 0x3F8
RBR = THR = DLL = COM1
IER = DLM = COM1 + 1
IIR = FCR = COM1 + 2
LCR, MCR, LSR, MSR, SCR = COM1 + 3, COM1 + 4, COM1 + 5, COM1 + 6, COM1 + 7

CHAR_9600 = 10 * 1_000_000_000 * 12 // 115200      # 1 041 666 ns
BIT_9600 = CHAR_9600 // 10


class Rig:
    """A machine without a CPU: ports, memory, DMA, and a clock we wind."""

    def __init__(self, backend=None):
        self.insns = 0
        self.ports = PortBus()
        self.phys = PhysMem(1 << 20)
        self.dma = DMA(self.phys)
        self.clock = VirtualClock(lambda: self.insns, ns_per_insn=1)
        self.irq_log = []
        self.levels = {}
        self.stops = []
        self.bus = DeviceBus(self.ports, self.phys, self.dma, self.clock,
                             irq=self._irq, stop=lambda r, k: self.stops.append((r, k)))
        self.backend = backend
        self.uart = UART16550(self.bus, base=COM1, irq=4, backend=backend)

    def _irq(self, line, level):
        self.irq_log.append((line, level))
        self.levels[line] = level

    def irq4(self):
        return self.levels.get(4, False)

    def inb(self, port):
        return self.ports.read(port, 1)

    def outb(self, port, value):
        self.ports.write(port, 1, value)

    def now(self):
        return self.clock.now()

    def run_until(self, t):
        """Advance virtual time to t, firing each timer at its own deadline
        (as the machine's run loop does: it runs the CPU up to the deadline)."""
        while True:
            d = self.clock.next_deadline()
            if d is None or d > t:
                break
            self.insns = max(self.insns, d)
            self.clock.fire_due()
        self.insns = max(self.insns, t)

    def run_for(self, ns):
        self.run_until(self.now() + ns)

    def set_divisor(self, div, lcr=0x03):
        self.outb(LCR, 0x80 | lcr)
        self.outb(DLL, div & 0xFF)
        self.outb(DLM, div >> 8)
        self.outb(LCR, lcr)

    def assert_clean(self):
        assert self.ports.counters["handler_errors"] == 0, self.ports.last_error


@pytest.fixture
def rig():
    return Rig()


# --- registers --------------------------------------------------------------------
def test_power_on_values(rig):
    assert rig.inb(IER) == 0
    assert rig.inb(IIR) == 0x01                  # no interrupt, FIFOs off
    assert rig.inb(LCR) == 0
    assert rig.inb(MCR) == 0
    assert rig.inb(LSR) == 0x60                  # THRE | TEMT
    assert rig.inb(MSR) == 0xB0                  # a connected terminal: DCD DSR CTS
    assert rig.uart.divisor == 1
    assert not rig.irq4()


def test_dlab_selects_divisor_latch(rig):
    rig.outb(IER, 0x05)
    rig.outb(LCR, 0x83)                          # DLAB, 8N1
    rig.outb(DLL, 0x0C)
    rig.outb(DLM, 0x00)
    assert rig.inb(DLL) == 0x0C and rig.inb(DLM) == 0x00
    assert rig.uart.ier == 0x05                  # IER untouched under DLAB
    assert rig.uart.divisor == 12 and rig.uart.baud == 9600
    assert rig.uart.tx == type(rig.uart.tx)()    # DLL write did not transmit
    rig.outb(LCR, 0x03)
    assert rig.inb(IER) == 0x05                  # the same offsets are IER/RBR again
    rig.outb(IER, 0xFF)
    assert rig.inb(IER) == 0x0F                  # bits 4-7 read 0 on a 16550A
    rig.outb(LCR, 0x80)
    rig.outb(DLM, 0x01)
    assert rig.uart.divisor == 0x10C
    rig.assert_clean()


def test_scratch_and_lcr_mcr_readback(rig):
    for v in (0x00, 0x55, 0xAA, 0xFF):
        rig.outb(SCR, v)
        assert rig.inb(SCR) == v
    rig.outb(LCR, 0x1B)
    assert rig.inb(LCR) == 0x1B
    rig.outb(MCR, 0xFF)
    assert rig.inb(MCR) == 0x1F                  # bits 5-7 are always 0


def test_linux_8250_autoconfig_sequence(rig):
    """What Linux's 8250 driver checks before it believes in a 16550A."""
    rig.outb(IER, 0)
    assert rig.inb(IER) & 0x0F == 0
    rig.outb(IER, 0x0F)
    assert rig.inb(IER) & 0x0F == 0x0F
    rig.outb(IER, 0)
    rig.outb(MCR, 0x10 | 0x0A)                   # loop, OUT2, RTS
    assert rig.inb(MSR) & 0xF0 == 0x90           # DCD (from OUT2) | CTS (from RTS)
    rig.outb(MCR, 0)
    rig.outb(FCR, 0x01)
    assert rig.inb(IIR) >> 6 == 3                # FIFOs on: a 16550A
    assert rig.inb(IIR) & 0x30 == 0              # no 64-byte FIFO (not a 16750)


# --- transmitter timing ---------------------------------------------------------------
def test_transmit_timing_in_virtual_time_at_9600():
    rig = Rig(BufferBackend())
    rig.set_divisor(12)
    t0 = rig.now()
    rig.outb(THR, ord("A"))
    assert rig.inb(LSR) & 0x60 == 0              # THR full, transmitter busy
    rig.run_until(t0 + BIT_9600 - 1)
    assert rig.inb(LSR) & 0x60 == 0
    rig.run_until(t0 + BIT_9600)                 # THR -> shift register
    assert rig.inb(LSR) & 0x60 == 0x20           # THRE, not TEMT
    rig.outb(THR, ord("B"))                      # waits in the THR
    assert rig.inb(LSR) & 0x60 == 0
    rig.run_until(t0 + BIT_9600 + CHAR_9600 - 1)
    assert rig.backend.output == b""
    assert rig.inb(LSR) & 0x20 == 0              # a character time has not passed
    rig.run_until(t0 + BIT_9600 + CHAR_9600)
    assert rig.backend.output == b"A"
    assert rig.inb(LSR) & 0x60 == 0x20           # B moved on, THR empty again
    rig.run_until(t0 + BIT_9600 + 2 * CHAR_9600)
    assert rig.backend.output == b"AB"
    assert rig.inb(LSR) & 0x60 == 0x60
    assert rig.uart.counters["tx_bytes"] == 2


def test_transmit_rate_follows_divisor():
    """A polling guest gets exactly one character per 10 bit times."""
    for div in (1, 3, 12, 384):
        rig = Rig(BufferBackend())
        rig.set_divisor(div)
        char = 10 * 1_000_000_000 * div // 115200
        t0 = rig.now()
        for ch in b"0123456789":
            while not rig.inb(LSR) & 0x20:       # poll THRE as a BIOS does
                rig.run_for(char // 50)
            rig.outb(THR, ch)
        while not rig.inb(LSR) & 0x40:
            rig.run_for(char // 50)
        elapsed = rig.now() - t0
        assert rig.backend.output == b"0123456789"
        assert 10 * char <= elapsed <= 10 * char + char // 10 + 2 * (char // 50) + 2


def test_fifo_transmit_holds_16_and_drops_the_rest():
    rig = Rig(BufferBackend())
    rig.outb(FCR, 0x07)
    data = bytes(range(0x41, 0x41 + 20))
    for b in data:
        rig.outb(THR, b)
    assert rig.uart.counters["tx_dropped"] == 4
    rig.run_for(rig.uart.char_ns() * 20)
    assert rig.backend.output == data[:16]
    assert rig.inb(LSR) & 0x60 == 0x60


def test_16450_mode_thr_is_overwritten_when_full():
    rig = Rig(BufferBackend())
    rig.outb(THR, ord("a"))
    rig.run_for(rig.uart.char_ns() // 10)        # a -> shift register
    rig.outb(THR, ord("b"))
    rig.outb(THR, ord("c"))                      # THR still full: b is lost
    rig.run_for(rig.uart.char_ns() * 3)
    assert rig.backend.output == b"ac"


# --- interrupts ------------------------------------------------------------------------
def test_thre_interrupt_after_ier_write_and_its_clearing(rig):
    rig.outb(MCR, 0x08)                          # OUT2: IRQ driver on
    assert not rig.irq4()
    rig.outb(IER, 0x02)                          # THR is empty: interrupts at once
    assert rig.irq4()
    assert rig.inb(IIR) == 0x02
    assert not rig.irq4()                        # reading IIR acknowledged it
    assert rig.inb(IIR) == 0x01
    rig.outb(IER, 0x02)                          # no 0->1 change: nothing new
    assert rig.inb(IIR) == 0x01
    rig.outb(IER, 0x00)
    rig.outb(IER, 0x02)                          # 0->1 again: again
    assert rig.inb(IIR) == 0x02
    # a write clears it; the THR emptying (one bit time later) sets it again
    rig.outb(THR, 0x41)
    assert rig.inb(IIR) == 0x01 and not rig.irq4()
    rig.run_for(rig.uart.char_ns() // 10)
    assert rig.irq4() and rig.inb(IIR) == 0x02
    # writing THR also clears a pending THRE
    rig.outb(IER, 0)
    rig.outb(IER, 0x02)
    assert rig.irq4()
    rig.outb(THR, 0x42)
    assert not rig.irq4()
    rig.assert_clean()


def test_out2_gates_the_irq_line(rig):
    rig.outb(IER, 0x02)
    assert not rig.irq4()                        # pending, but OUT2 is off
    assert rig.inb(IIR) == 0x02                  # (and that acknowledged it)
    rig.outb(IER, 0)
    rig.outb(IER, 0x02)
    rig.outb(MCR, 0x08)
    assert rig.irq4()                            # OUT2 on: the line follows
    rig.outb(MCR, 0x00)
    assert not rig.irq4()
    rig.outb(MCR, 0x18)                          # loopback forces OUT2 inactive
    assert not rig.irq4()
    rig.outb(MCR, 0x08)
    assert rig.irq4()


def test_iir_priorities_and_clearing_rules(rig):
    u = rig.uart
    rig.outb(FCR, 0x07 | 0x40)                   # FIFO on, trigger 4
    rig.outb(MCR, 0x10)                          # loopback
    for ch in b"wxyz":
        rig.outb(THR, ch)
    rig.run_for(u.char_ns() * 5)                 # 4 bytes looped back: trigger reached
    rig.outb(MCR, 0x10 | 0x02)                   # RTS -> CTS changes: DCTS
    # an overrun: 13 more bytes into the 16-byte FIFO
    for ch in range(13):
        rig.outb(THR, 0x30 + ch)
        rig.run_for(u.char_ns() * 2)
    assert u.lsr() & 0x02 and len(u.rx) == 16
    rig.outb(IER, 0x0F)
    assert rig.inb(IIR) == 0xC6                  # line status first
    assert rig.inb(LSR) & 0x02                   # reading LSR clears OE ...
    assert not rig.inb(LSR) & 0x02
    assert rig.inb(IIR) == 0xC4                  # ... then received data
    for _ in range(13):
        rig.inb(RBR)
    assert len(u.rx) == 3
    assert rig.inb(IIR) == 0xC2                  # below trigger: THR empty next
    assert rig.inb(IIR) == 0xC0                  # IIR read cleared THRE: modem status
    assert rig.inb(MSR) & 0x01                   # DCTS, cleared by the read
    assert rig.inb(IIR) == 0xC1
    # the FIFO timeout (4 character times with no activity) comes last
    rig.run_for(u.char_ns() * 4)
    assert rig.inb(IIR) == 0xCC
    assert rig.inb(RBR) == ord("0") + 9          # a read clears it and restarts the timer
    assert rig.inb(IIR) == 0xC1
    rig.run_for(u.char_ns() * 4)
    assert rig.inb(IIR) == 0xCC
    rig.inb(RBR)
    rig.inb(RBR)
    rig.run_for(u.char_ns() * 10)
    assert rig.inb(IIR) == 0xC1                  # empty FIFO: no timeout
    assert not rig.inb(LSR) & 0x01
    rig.assert_clean()


@pytest.mark.parametrize("fcr_bits, level", [(0x00, 1), (0x40, 4), (0x80, 8), (0xC0, 14)])
def test_fifo_trigger_levels(fcr_bits, level):
    rig = Rig()
    u = rig.uart
    rig.outb(FCR, 0x01 | fcr_bits)
    rig.outb(IER, 0x01)
    rig.outb(MCR, 0x10)
    for i in range(level - 1):
        rig.outb(THR, 0x40 + i)
    rig.run_for(u.char_ns() * (level + 1))
    assert len(u.rx) == level - 1
    assert rig.inb(IIR) == 0xC1                  # one short of the trigger
    rig.outb(THR, 0x7F)
    rig.run_for(u.char_ns() * 2)
    assert rig.inb(IIR) == 0xC4
    rig.inb(RBR)
    assert rig.inb(IIR) == 0xC1                  # dropped below the trigger again


def test_16450_mode_received_data_interrupt_per_byte_and_overrun():
    rig = Rig()
    u = rig.uart
    rig.outb(IER, 0x05)
    rig.outb(MCR, 0x10)
    rig.outb(THR, 0x11)
    rig.run_for(u.char_ns() * 2)
    assert rig.inb(IIR) == 0x04 and rig.inb(LSR) & 0x01
    rig.outb(THR, 0x22)                          # not read: the second overruns
    rig.run_for(u.char_ns() * 2)
    assert rig.inb(IIR) == 0x06
    lsr = rig.inb(LSR)
    assert lsr & 0x03 == 0x03
    assert rig.inb(RBR) == 0x22                  # the RBR was overwritten
    assert rig.inb(IIR) == 0x01
    assert rig.inb(RBR) == 0x22                  # empty RBR reads the last byte


# --- loopback ----------------------------------------------------------------------
def test_loopback_wiring_and_delta_bits(rig):
    assert rig.inb(MSR) == 0xB0
    rig.outb(MCR, 0x10)                          # loop, all outputs off
    assert rig.inb(MSR) == 0x0B                  # CTS, DSR, DCD fell: deltas; no TERI
    assert rig.inb(MSR) == 0x00                  # deltas cleared by the read
    rig.outb(MCR, 0x10 | 0x01)                   # DTR -> DSR
    assert rig.inb(MSR) == 0x22
    rig.outb(MCR, 0x10 | 0x02)                   # RTS -> CTS (DTR off)
    assert rig.inb(MSR) == 0x13
    rig.outb(MCR, 0x10 | 0x04)                   # OUT1 -> RI (rising: no TERI)
    assert rig.inb(MSR) == 0x41
    rig.outb(MCR, 0x10 | 0x08)                   # OUT2 -> DCD; RI falls: TERI
    assert rig.inb(MSR) == 0x8C
    rig.outb(MCR, 0x1F)
    assert rig.inb(MSR) & 0xF0 == 0xF0
    rig.outb(MCR, 0x00)                          # back to the terminal's lines
    assert rig.inb(MSR) & 0xF0 == 0xB0


def test_loopback_data_stays_inside():
    rig = Rig(BufferBackend())
    rig.outb(FCR, 0x01)
    rig.outb(MCR, 0x10)
    for ch in b"loop":
        rig.outb(THR, ch)
    rig.run_for(rig.uart.char_ns() * 6)
    got = bytes(rig.inb(RBR) for _ in range(4))
    assert got == b"loop"
    assert rig.backend.output == b""
    assert not rig.inb(LSR) & 0x01


def test_modem_status_interrupt(rig):
    rig.outb(MCR, 0x08)
    rig.outb(IER, 0x08)
    assert not rig.irq4()
    rig.outb(MCR, 0x10 | 0x08)                   # loopback: deltas appear, line gated
    assert rig.inb(IIR) == 0x00
    rig.outb(MCR, 0x08)
    assert rig.irq4()
    rig.inb(MSR)
    assert not rig.irq4() and rig.inb(IIR) == 0x01


# --- FIFO control ---------------------------------------------------------------------
def test_fcr_resets_and_mode_bits(rig):
    u = rig.uart
    rig.outb(FCR, 0x01)
    assert rig.inb(IIR) & 0xC0 == 0xC0
    rig.outb(MCR, 0x10)
    for ch in b"abc":
        rig.outb(THR, ch)
    rig.run_for(u.char_ns() * 5)
    assert len(u.rx) == 3
    rig.outb(FCR, 0x03)                          # RX reset
    assert len(u.rx) == 0 and not rig.inb(LSR) & 0x01
    for ch in b"abcdef":
        rig.outb(THR, ch)
    rig.outb(FCR, 0x05)                          # TX reset: the waiting bytes are gone
    assert rig.inb(LSR) & 0x20
    rig.run_for(u.char_ns() * 10)
    assert len(u.rx) <= 1                        # at most the one already shifting
    rig.outb(FCR, 0xC6)                          # FCR0 = 0: FIFOs off, rest ignored
    assert rig.inb(IIR) & 0xC0 == 0
    assert u.trigger == 1


def test_fifo_mode_change_empties_fifos(rig):
    u = rig.uart
    rig.outb(MCR, 0x10)
    rig.outb(THR, 0x55)
    rig.run_for(u.char_ns() * 2)
    assert rig.inb(LSR) & 0x01
    rig.outb(FCR, 0x01)
    assert not rig.inb(LSR) & 0x01


# --- receive from the host ----------------------------------------------------------------
def test_host_input_arrives_at_the_baud_rate():
    be = BufferBackend()
    rig = Rig(be)
    u = rig.uart
    rig.set_divisor(12)
    rig.outb(FCR, 0x01)
    rig.outb(IER, 0x01)
    rig.outb(MCR, 0x08)
    be.inject(b"hello")
    rig.run_for(1_000_000)                       # the 1 ms poll takes it
    assert be.pending_input == 0
    t0 = rig.now()
    assert not rig.irq4() and len(u.rx) == 0
    rig.run_until(t0 + CHAR_9600)
    assert len(u.rx) == 1 and rig.irq4()         # trigger 1: interrupts
    rig.run_until(t0 + 5 * CHAR_9600 - 1)
    assert len(u.rx) == 4
    rig.run_until(t0 + 5 * CHAR_9600)
    assert bytes(rig.inb(RBR) for _ in range(5)) == b"hello"
    assert not rig.irq4()


def test_host_input_is_flow_controlled_not_overrun():
    be = BufferBackend()
    rig = Rig(be)
    u = rig.uart
    rig.outb(FCR, 0x01)
    be.inject(bytes(range(100)))
    rig.run_for(50_000_000)
    assert len(u.rx) == 16 and not rig.inb(LSR) & 0x02
    got = []
    while len(got) < 100:
        while rig.inb(LSR) & 0x01:
            got.append(rig.inb(RBR))
        rig.run_for(u.char_ns())
    assert got == list(range(100))
    assert u.counters["overruns"] == 0


def test_no_host_input_during_loopback():
    be = BufferBackend()
    rig = Rig(be)
    rig.outb(MCR, 0x10)
    be.inject(b"x")
    rig.run_for(5_000_000)
    assert not rig.inb(LSR) & 0x01
    rig.outb(MCR, 0x00)
    rig.run_for(rig.uart.char_ns() + 1)
    assert rig.inb(RBR) == ord("x")


def test_quit_request_from_the_backend_stops_the_run():
    class Quitter(BufferBackend):
        quit_requested = True
    rig = Rig(Quitter())
    rig.run_for(1_000_000)
    assert rig.stops == [("quit from the terminal (Ctrl-A x)", "shutdown")]
    rig.run_for(5_000_000)
    assert len(rig.stops) == 1


def test_failing_backend_is_counted_not_raised():
    class Broken(BufferBackend):
        def write(self, data):
            raise OSError(5, "Input/output error")

        def read_available(self):
            raise OSError(5, "Input/output error")
    rig = Rig(Broken())
    rig.outb(THR, 0x41)
    rig.run_for(3_000_000)
    assert rig.uart.counters["backend_errors"] >= 2
    assert "Input/output error" in rig.uart.last_backend_error
    assert rig.inb(LSR) & 0x60 == 0x60


def test_no_backend_and_non_readable_backend_are_not_polled(rig):
    assert rig.clock.next_deadline() is None     # nothing to poll: no timer armed
    rig.outb(THR, 0x41)
    rig.run_for(rig.uart.char_ns() * 2)
    assert rig.uart.counters["tx_bytes"] == 1
    assert rig.clock.next_deadline() is None


def test_reset_returns_to_power_on_state():
    rig = Rig(BufferBackend())
    rig.outb(MCR, 0x08)
    rig.outb(IER, 0x02)
    rig.outb(FCR, 0xC7)
    rig.outb(SCR, 0x12)
    assert rig.irq4()
    rig.uart.reset()
    assert not rig.irq4()
    assert rig.inb(IIR) == 0x01 and rig.inb(LSR) == 0x60 and rig.inb(MCR) == 0
    assert rig.uart.divisor == 1


def test_divisor_zero_is_defined(rig):
    rig.set_divisor(0)
    assert rig.uart.divisor == 0x10000
    rig.outb(THR, 0x41)
    rig.run_for(rig.uart.char_ns() * 2)
    assert rig.inb(LSR) & 0x40


# --- hostile guest -----------------------------------------------------------------------
def test_random_port_fuzz_never_raises():
    be = BufferBackend()
    rig = Rig(be)
    u = rig.uart
    rnd = random.Random(1234)
    for i in range(30000):
        op = rnd.random()
        port = COM1 + rnd.randrange(8)
        if op < 0.45:
            rig.outb(port, rnd.randrange(256))
        elif op < 0.9:
            rig.inb(port)
        elif op < 0.95:
            size = rnd.choice((2, 4))
            if rnd.random() < 0.5:
                rig.ports.write(COM1 + rnd.randrange(8), size, rnd.getrandbits(32))
            else:
                rig.ports.read(COM1 + rnd.randrange(8), size)
        elif op < 0.98:
            be.inject(bytes(rnd.randrange(256) for _ in range(rnd.randrange(8))))
        else:
            rig.run_for(rnd.randrange(2_000_000))
        assert len(u.rx) <= 16 and len(u.tx) <= 16
        # the line always says what the registers say
        expect = bool(u.mcr & 0x08) and not u.mcr & 0x10 and u.identify() != 0x01
        assert rig.irq4() == expect
    rig.assert_clean()
    assert 0 <= rig.inb(IIR) <= 0xFF


def test_interrupt_driven_transmit_like_a_driver():
    """An ISR that refills the FIFO on each THRE interrupt sends everything,
    one interrupt per 16 bytes."""
    be = BufferBackend()
    rig = Rig(be)
    u = rig.uart
    rig.outb(FCR, 0x07)
    rig.outb(MCR, 0x0B)
    message = bytes(range(32, 127)) * 2
    pos = 0
    interrupts = 0
    rig.outb(IER, 0x02)                          # start: THR empty interrupts at once
    for _ in range(10000):
        if rig.irq4():
            interrupts += 1
            iir = rig.inb(IIR)
            assert iir == 0xC2
            n = min(16, len(message) - pos)
            for b in message[pos:pos + n]:
                rig.outb(THR, b)
            pos += n
            if pos == len(message):
                rig.outb(IER, 0)
        if pos == len(message) and rig.inb(LSR) & 0x40:
            break
        rig.run_for(u.char_ns() // 3)
    assert be.output == message
    assert interrupts == -(-len(message) // 16)


def test_character_time_cap():
    rig = Rig(BufferBackend())
    rig.set_divisor(12)
    assert rig.uart.char_ns() == CHAR_9600
    rig.uart.max_char_ns = 100_000
    assert rig.uart.char_ns() == 100_000
    t0 = rig.now()
    rig.outb(THR, 0x41)
    while not rig.inb(LSR) & 0x40:
        rig.run_for(1000)
    assert rig.now() - t0 <= 110_000 + 1000
    rig.set_divisor(1)
    assert rig.uart.char_ns() == 10 * 1_000_000_000 // 115200   # below the cap: exact


def test_a_real_mode_guest_talks_through_the_uart():
    """The CPU's IN/OUT reach the UART; the guest polls LSR as a BIOS does,
    prints a line, then echoes one received byte."""
    from emu.api import Emu
    from tests.oracle import assemble
    ports = PortBus()
    e = Emu(ram_size=1 << 20, ports=ports, stop_on_exception=True)
    clock = VirtualClock(e.cpu.clock, ns_per_insn=10)
    bus = DeviceBus(ports, e.phys, DMA(e.phys), clock)
    be = BufferBackend()
    UART16550(bus, backend=be)
    code = assemble("""
        mov si, msg
    next:
        lodsb
        test al, al
        jz rx
        mov ah, al
        mov dx, 0x3FD
    w1: in al, dx
        test al, 0x20
        jz w1
        mov dx, 0x3F8
        mov al, ah
        out dx, al
        jmp next
    rx: mov dx, 0x3FD
    r1: in al, dx
        test al, 1
        jz r1
        mov dx, 0x3F8
        in al, dx
        mov ah, al
        mov dx, 0x3FD
    w2: in al, dx
        test al, 0x20
        jz w2
        mov dx, 0x3F8
        mov al, ah
        out dx, al
        mov dx, 0x3FD
    w3: in al, dx
        test al, 0x40
        jz w3
        hlt
    msg: db 0x4F, 0x4B, 0x0D, 0x0A, 0
    """, 16, addr=0x7C00)
    e.mem_write(0x7C00, code)
    for seg in ("cs", "ds", "es", "ss"):
        e.set_segment(seg, 0)
    e.reg_write("eip", 0x7C00)
    be.inject(b"!")
    for _ in range(10000):
        d = clock.next_deadline()
        budget = 5000 if d is None else max(1, min(5000, clock.insns_until(d)))
        stop = e.run(count=budget)
        clock.fire_due()
        if stop.reason == "hlt":
            break
    assert stop.reason == "hlt"
    assert be.output == b"OK\r\n!"


def test_flush_hands_pending_bytes_over_once():
    """Machine.run() flushes the UART when it returns; running again must not
    send the same bytes twice."""
    from emu.frontend.serial_backends import BufferBackend
    from emu.guests import demo_kernel
    from emu.machine import Machine, MachineConfig
    out = BufferBackend()
    m = Machine(MachineConfig(memory_mb=8, kernel=demo_kernel.build()), serial_backend=out)
    while m.run(max_instructions=97).code == 4:
        pass
    text = bytes(out.output).decode("latin-1")
    assert text.startswith("emu BIOS") and "eemmuu" not in text
