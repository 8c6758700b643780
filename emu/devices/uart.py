"""The 16550A UART (COM1 at 0x3F8, IRQ 4 on a PC).

Registers (offset from the base; DLAB is LCR bit 7):

    0  read RBR (receive buffer) / write THR (transmit holding); DLAB: DLL
    1  IER: 0 received data (and FIFO timeout), 1 THR empty, 2 line status,
       3 modem status; bits 4-7 read 0                      DLAB: DLM
    2  read IIR (interrupt identification) / write FCR (FIFO control)
    3  LCR   4 MCR   5 LSR   6 MSR   7 SCR (scratch)

Interrupts, highest priority first, as IIR reports them (bit 0 = 0 when one
is pending; bits 6-7 = 11 when the FIFOs are on):

    0x06  line status (overrun; parity/framing/break never occur here)
          cleared by reading LSR
    0x04  received data: FIFO at or above the trigger level (1, 4, 8, 14),
          or any byte in 16450 mode; cleared when it drops below
    0x0C  character timeout (FIFO mode): data has sat in the RX FIFO for 4
          character times with nothing received or read; cleared by RBR read
    0x02  THR empty: set when the TX FIFO/THR empties, or when IER bit 1 is
          turned on while it is empty; cleared by reading IIR while it is
          the reported source, or by writing THR
    0x00  modem status: a delta bit in MSR; cleared by reading MSR

The IRQ line follows "some enabled interrupt pending" (raised when one
appears, lowered when the last clears: the PIC latches the rising edge), and
is gated by MCR OUT2 as on a PC, where OUT2 enables the card's IRQ driver.
In loopback the 16550 forces its modem outputs, OUT2 included, inactive, so
on a PC the line stays low in loopback.

Timing is in virtual time (bus.clock).  One character takes 10 bit times
(start, 8 data, stop) at the programmed rate, 115200 / divisor baud,
whatever word length, parity and stop bits LCR selects (a fixed frame keeps
the rule simple and never slower than the line the guest asked for).  A
write to THR reaches the shift register one bit time later (THRE comes back
then), each character is on the wire for one character time, so a guest
polling THRE/TEMT sees them at the rate it programmed.  Received bytes enter
the RX FIFO one character time apart.  The power-on divisor is 1 (115200
baud) so that a guest that never programs the UART is not slowed down.
At the default 10 ns per instruction a character at 115200 baud is 8 680
instructions, at 9600 baud 104 167: a guest that polls THRE pays that per
character.  ``max_char_ns`` (None = exact) lets the machine cap the
character time for guests that pick a slow rate (Linux's console defaults
to 9600) when fast output matters more than exact line timing.

The host side is a backend (emu/frontend/serial_backends.py describes the
interface: ``write(bytes)``, ``read_available() -> bytes``, ``readable``,
``quit_requested``).  A backend that can supply input is polled every 1 ms
of virtual time while fewer than HOST_QUEUE_MAX received bytes wait in the
UART; received bytes wait there until the RX FIFO has room (flow control on
the host side: input from the host is never lost to an overrun).  An
overrun can still happen in loopback, where the guest feeds itself.  With
``backend=None`` the cable is unplugged: output is counted and dropped.
The modem inputs are those of a connected terminal: CTS, DSR and DCD on.
LCR's break bit and the parity/stop settings have no effect on the data.

Anything a guest writes leaves the UART in a defined state; handlers never
raise (a failing backend is counted in ``counters["backend_errors"]``).
"""
from collections import deque

from ..errors import VMStop

BASE_BAUD = 115200                 # 1.8432 MHz crystal / 16
BITS_PER_CHAR = 10                 # start + 8 data + stop
FIFO_SIZE = 16
POLL_NS = 1_000_000                # how often a readable backend is asked for input
HOST_QUEUE_MAX = 1024              # received-but-not-yet-in-FIFO bytes before we stop polling
TRIGGER_LEVELS = (1, 4, 8, 14)

# IER
IER_RDA, IER_THRE, IER_RLS, IER_MS = 0x01, 0x02, 0x04, 0x08
# IIR
IIR_NONE, IIR_RLS, IIR_RDA, IIR_TIMEOUT, IIR_THRE, IIR_MS = 0x01, 0x06, 0x04, 0x0C, 0x02, 0x00
IIR_FIFO_ON = 0xC0
# FCR
FCR_ENABLE, FCR_RX_RESET, FCR_TX_RESET, FCR_DMA = 0x01, 0x02, 0x04, 0x08
# LCR
LCR_DLAB = 0x80
# MCR
MCR_DTR, MCR_RTS, MCR_OUT1, MCR_OUT2, MCR_LOOP = 0x01, 0x02, 0x04, 0x08, 0x10
# LSR
LSR_DR, LSR_OE, LSR_PE, LSR_FE, LSR_BI = 0x01, 0x02, 0x04, 0x08, 0x10
LSR_THRE, LSR_TEMT, LSR_FIFO_ERR = 0x20, 0x40, 0x80
LSR_ERRORS = LSR_OE | LSR_PE | LSR_FE | LSR_BI
# MSR
MSR_DCTS, MSR_DDSR, MSR_TERI, MSR_DDCD = 0x01, 0x02, 0x04, 0x08
MSR_CTS, MSR_DSR, MSR_RI, MSR_DCD = 0x10, 0x20, 0x40, 0x80

# The modem inputs of a terminal at the end of the cable.
CONNECTED_LINES = MSR_CTS | MSR_DSR | MSR_DCD


class UART16550:
    def __init__(self, bus, base=0x3F8, irq=4, backend=None):
        self.bus = bus
        self.clock = bus.clock
        self.base = base
        self.irq_line = irq
        self.backend = backend
        self.max_char_ns = None            # cap on the character time (None: exact)
        self.counters = {"tx_bytes": 0, "rx_bytes": 0, "overruns": 0, "tx_dropped": 0,
                         "backend_errors": 0}
        self.last_backend_error = None
        self._host_rx = deque()            # bytes from the backend, not yet received
        self._irq_level = False
        self._quit_reported = False
        self._tx_timer = self._rx_timer = self._timeout_timer = self._poll_timer = None
        name = {0x3F8: "com1", 0x2F8: "com2", 0x3E8: "com3", 0x2E8: "com4"}.get(base,
                                                                               "uart@%x" % base)
        bus.ports.register(base, 8, read=self.port_read, write=self.port_write, name=name,
                           sizes=(1,))
        self.reset()

    # --- power-on state -------------------------------------------------------
    def reset(self):
        for t in (self._tx_timer, self._rx_timer, self._timeout_timer, self._poll_timer):
            if t is not None:
                self.clock.cancel(t)
        self._tx_timer = self._rx_timer = self._timeout_timer = self._poll_timer = None
        self.dll, self.dlm = 1, 0          # 115200 baud until the guest says otherwise
        self.ier = 0
        self.lcr = 0
        self.mcr = 0
        self.scr = 0
        self.fifo_enabled = False
        self.trigger = 1
        self.dma_mode = 0
        self.rx = deque()                  # RX FIFO (one deep in 16450 mode)
        self.tx = deque()                  # TX FIFO / THR
        self.tsr = None                    # the character being shifted out
        self.rbr_last = 0                  # what an RBR read returns when empty
        self.lsr_errors = 0                # OE (PE/FE/BI are never produced)
        self.thre_pending = False          # the THRE interrupt condition
        self.timeout_pending = False       # the character-timeout condition
        self.msr_lines = CONNECTED_LINES   # MSR bits 4-7
        self.msr_delta = 0                 # MSR bits 0-3
        self._update_irq()
        self._rx_kick()                    # host input that arrived before the reset
        self._schedule_poll()

    # --- timing -----------------------------------------------------------------
    @property
    def divisor(self):
        d = self.dll | (self.dlm << 8)
        return d or 0x10000                # 0 behaves as the largest divisor

    @property
    def baud(self):
        return BASE_BAUD / self.divisor

    def char_ns(self):
        """One character on the wire, in virtual nanoseconds (10 bits)."""
        t = BITS_PER_CHAR * 1_000_000_000 * self.divisor // BASE_BAUD
        if self.max_char_ns is not None:
            t = min(t, self.max_char_ns)
        return max(BITS_PER_CHAR, t)

    def _after(self, ns, callback):
        return self.clock.schedule(self.clock.now() + ns, callback)

    # --- the guest's side -------------------------------------------------------
    def port_read(self, port, size):
        off = (port - self.base) & 7
        dlab = self.lcr & LCR_DLAB
        if off == 0:
            return self.dll if dlab else self._read_rbr()
        if off == 1:
            return self.dlm if dlab else self.ier
        if off == 2:
            return self._read_iir()
        if off == 3:
            return self.lcr
        if off == 4:
            return self.mcr
        if off == 5:
            return self._read_lsr()
        if off == 6:
            return self._read_msr()
        return self.scr

    def port_write(self, port, size, value):
        off = (port - self.base) & 7
        v = value & 0xFF
        dlab = self.lcr & LCR_DLAB
        if off == 0:
            if dlab:
                self.dll = v               # a character already on the wire keeps its timing
            else:
                self._write_thr(v)
        elif off == 1:
            if dlab:
                self.dlm = v
            else:
                self._write_ier(v)
        elif off == 2:
            self._write_fcr(v)
        elif off == 3:
            self.lcr = v
        elif off == 4:
            self._write_mcr(v)
        elif off == 7:
            self.scr = v
        # LSR and MSR are read-only (writes are factory-test only): ignored

    # --- registers ----------------------------------------------------------------
    def lsr(self):
        """LSR as a read would see it, without the read's side effects."""
        v = self.lsr_errors
        if self.rx:
            v |= LSR_DR
        if not self.tx:
            v |= LSR_THRE
            if self.tsr is None:
                v |= LSR_TEMT
        return v

    def _read_lsr(self):
        v = self.lsr()
        if self.lsr_errors:
            self.lsr_errors = 0
            self._update_irq()
        return v

    def _read_msr(self):
        v = self.msr_lines | self.msr_delta
        if self.msr_delta:
            self.msr_delta = 0
            self._update_irq()
        return v

    def _read_rbr(self):
        if self.rx:
            self.rbr_last = self.rx.popleft()
        self._rx_activity()
        self._rx_kick()
        self._update_irq()
        return self.rbr_last

    def _rx_ready(self):
        n = len(self.rx)
        return n >= self.trigger if self.fifo_enabled else n > 0

    def identify(self):
        """The IIR interrupt code (bits 0-3) for the highest pending source."""
        ier = self.ier
        if ier & IER_RLS and self.lsr_errors:
            return IIR_RLS
        if ier & IER_RDA:
            if self._rx_ready():
                return IIR_RDA
            if self.timeout_pending:
                return IIR_TIMEOUT
        if ier & IER_THRE and self.thre_pending and not self.tx:
            return IIR_THRE
        if ier & IER_MS and self.msr_delta:
            return IIR_MS
        return IIR_NONE

    def _read_iir(self):
        ident = self.identify()
        if ident == IIR_THRE:
            self.thre_pending = False      # reading IIR is the THRE acknowledgement
            self._update_irq()
        return ident | (IIR_FIFO_ON if self.fifo_enabled else 0)

    def _write_ier(self, v):
        old, self.ier = self.ier, v & 0x0F
        turned_on = self.ier & ~old
        if turned_on & IER_THRE and not self.tx:
            self.thre_pending = True       # enabling it with THR empty interrupts at once
        elif not self.ier & IER_THRE:
            self.thre_pending = False
        self._update_irq()

    def _write_fcr(self, v):
        rx_changed = False
        if not v & FCR_ENABLE:
            # FCR0 = 0: FIFOs off (and emptied); the other bits are not programmed.
            if self.fifo_enabled:
                self.fifo_enabled = False
                self._clear_rx()
                self._clear_tx()
                rx_changed = True
        else:
            if not self.fifo_enabled:
                self.fifo_enabled = True   # switching mode empties both FIFOs
                self._clear_rx()
                self._clear_tx()
                rx_changed = True
            if v & FCR_RX_RESET:
                self._clear_rx()
                rx_changed = True
            if v & FCR_TX_RESET:
                self._clear_tx()
            self.trigger = TRIGGER_LEVELS[v >> 6]
            self.dma_mode = v & FCR_DMA
        if rx_changed:
            self._rx_activity()
            self._rx_kick()
        self._update_irq()

    def _clear_rx(self):
        self.rx.clear()
        self.timeout_pending = False

    def _clear_tx(self):
        if self.tx:
            self.tx.clear()
            self.thre_pending = True       # the THR just became empty

    def _write_mcr(self, v):
        v &= 0x1F
        was_loop = self.mcr & MCR_LOOP
        self.mcr = v
        if v & MCR_LOOP:
            # Loopback: the modem inputs are the modem outputs, wired
            # RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD.
            lines = ((MSR_CTS if v & MCR_RTS else 0) | (MSR_DSR if v & MCR_DTR else 0)
                     | (MSR_RI if v & MCR_OUT1 else 0) | (MSR_DCD if v & MCR_OUT2 else 0))
        else:
            lines = CONNECTED_LINES
        self._set_modem_lines(lines)
        if was_loop and not v & MCR_LOOP:
            self._rx_kick()                # the host's input can flow again
        self._update_irq()

    def _set_modem_lines(self, lines):
        changed = self.msr_lines ^ lines
        if changed & MSR_CTS:
            self.msr_delta |= MSR_DCTS
        if changed & MSR_DSR:
            self.msr_delta |= MSR_DDSR
        if changed & MSR_DCD:
            self.msr_delta |= MSR_DDCD
        if changed & MSR_RI and not lines & MSR_RI:
            self.msr_delta |= MSR_TERI     # trailing edge of RI only
        self.msr_lines = lines

    # --- transmitter ------------------------------------------------------------
    def _write_thr(self, v):
        self.thre_pending = False
        if self.fifo_enabled:
            if len(self.tx) < FIFO_SIZE:
                self.tx.append(v)
            else:
                self.counters["tx_dropped"] += 1      # written into a full FIFO: lost
        elif self.tx:
            self.tx[0] = v                 # 16450 mode: the THR is simply overwritten
            self.counters["tx_dropped"] += 1
        else:
            self.tx.append(v)
        if self.tsr is None and self._tx_timer is None:
            # The transmitter is idle: the byte moves to the shift register
            # one bit time from now.
            self._tx_timer = self._after(max(1, self.char_ns() // BITS_PER_CHAR), self._tx_load)
        self._update_irq()

    def _tx_load(self):
        """THR -> shift register; the character then takes one character time."""
        self._tx_timer = None
        if not self.tx:
            return                         # the TX FIFO was reset meanwhile
        self.tsr = self.tx.popleft()
        if not self.tx:
            self.thre_pending = True
        self._tx_timer = self._after(self.char_ns(), self._tx_done)
        self._update_irq()

    def _tx_done(self):
        self._tx_timer = None
        byte, self.tsr = self.tsr, None
        if byte is not None:
            if self.mcr & MCR_LOOP:
                self._receive(byte)
            else:
                self.counters["tx_bytes"] += 1
                self._backend_write(bytes((byte,)))
        if self.tx:
            self._tx_load()                # back to back: the next one goes at once
        else:
            self._update_irq()

    def flush(self):
        """The run is ending: hand whatever is still in the shift register and
        the transmit FIFO to the backend now, in order (nothing written is lost)."""
        if self.mcr & MCR_LOOP:
            return
        pending = ([self.tsr] if self.tsr is not None else []) + list(self.tx)
        if not pending:
            return
        # they are sent now: the transmitter is empty, as if the time had passed
        if self._tx_timer is not None:
            self.clock.cancel(self._tx_timer)
            self._tx_timer = None
        self.tsr = None
        self.tx.clear()
        self.thre_pending = True
        self.counters["tx_bytes"] += len(pending)
        self._backend_write(bytes(pending))
        self._update_irq()

    def _backend_write(self, data):
        if self.backend is None:
            return
        try:
            self.backend.write(data)
        except VMStop:
            raise
        except Exception as e:
            self._backend_failed(e)

    def _backend_failed(self, e):
        self.counters["backend_errors"] += 1
        self.last_backend_error = "%s: %s" % (type(e).__name__, e)

    # --- receiver -----------------------------------------------------------------
    def _rx_room(self):
        return len(self.rx) < (FIFO_SIZE if self.fifo_enabled else 1)

    def _receive(self, byte):
        """A character has been completely received (from the line or the loop)."""
        if self._rx_room():
            self.rx.append(byte)
            self.counters["rx_bytes"] += 1
        else:
            # Overrun: in FIFO mode the new character is lost, in 16450 mode
            # it overwrites the unread one.
            self.lsr_errors |= LSR_OE
            self.counters["overruns"] += 1
            if not self.fifo_enabled:
                self.rx[-1] = byte
        self._rx_activity()
        self._update_irq()

    def _rx_activity(self):
        """A byte entered or left the RX FIFO: restart the 4-character timeout."""
        self.timeout_pending = False
        if self._timeout_timer is not None:
            self.clock.cancel(self._timeout_timer)
            self._timeout_timer = None
        if self.fifo_enabled and self.rx:
            self._timeout_timer = self._after(4 * self.char_ns(), self._rx_timeout)

    def _rx_timeout(self):
        self._timeout_timer = None
        if self.fifo_enabled and self.rx:
            self.timeout_pending = True
            self._update_irq()

    def _rx_kick(self):
        """Start receiving the next host byte if there is one and room for it."""
        if (self._rx_timer is None and self._host_rx and not self.mcr & MCR_LOOP
                and self._rx_room()):
            self._rx_timer = self._after(self.char_ns(), self._rx_done)

    def _rx_done(self):
        self._rx_timer = None
        if self._host_rx and not self.mcr & MCR_LOOP and self._rx_room():
            self._receive(self._host_rx.popleft())
        self._rx_kick()

    # --- the host's side ----------------------------------------------------------
    def _schedule_poll(self):
        b = self.backend
        if b is not None and getattr(b, "readable", False) and self._poll_timer is None:
            self._poll_timer = self._after(POLL_NS, self._poll)

    def _poll(self):
        self._poll_timer = None
        b = self.backend
        if len(self._host_rx) < HOST_QUEUE_MAX:
            try:
                data = b.read_available()
            except VMStop:
                raise
            except Exception as e:
                self._backend_failed(e)
                data = b""
            if data:
                self._host_rx.extend(bytes(data))
        self._rx_kick()
        if getattr(b, "quit_requested", False) and not self._quit_reported:
            self._quit_reported = True
            self.bus.stop("quit from the terminal (Ctrl-A x)", "shutdown")
        self._schedule_poll()

    def _update_irq(self):
        level = (bool(self.mcr & MCR_OUT2) and not self.mcr & MCR_LOOP
                 and self.identify() != IIR_NONE)
        if level != self._irq_level:
            self._irq_level = level
            self.bus.irq(self.irq_line, level)
