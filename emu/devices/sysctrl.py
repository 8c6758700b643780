"""The small system-control ports of a PC chipset.

    0x92   "port A" (PS/2 system control): bit 1 fast A20 gate, bit 0 a CPU
           reset on its 0 -> 1 transition; reads back what was written
    0x80   POST code / I/O-delay port: the BIOS writes progress codes here
           (kept: ``post_code`` and the bounded history ``post_codes``);
           reads return the last code
    0xE9   the Bochs/QEMU debug console: every byte written goes to
           ``debug_out`` (a callable taking ``bytes``, set by the machine),
           or, if none is set, into the bounded ``debug_buffer``; reads
           return 0xE9 so a guest can detect the port
    0xCF9  PIIX3 reset control register: bit 1 selects a hard (system) or
           soft reset, a 0 -> 1 write of bit 2 performs it; emu resets the
           machine either way (a soft reset also restarts the CPU at the
           reset vector).  Reads return bit 1.

0xCF9 sits inside 0xCF8-0xCFB, the PCI configuration address register,
which is accessed as a dword: the two only share one port range if the PCI
device forwards byte accesses at 0xCF9 here (``reset_control_read`` /
``reset_control_write``).  SystemControl claims 0xCF9 on the port bus only
when nobody holds it yet and ``claim_cf9`` is true.
"""

POST_HISTORY = 1024
DEBUG_BUFFER = 64 << 10


class SystemControl:
    def __init__(self, bus, claim_cf9=True):
        self.bus = bus
        self.port92 = 0
        self.reset_control = 0
        self.post_code = None
        self.post_codes = []
        self.debug_out = None
        self.debug_buffer = bytearray()
        self.counters = {"resets": 0, "a20_writes": 0, "debug_bytes": 0}
        ports = bus.ports
        ports.register(0x92, 1, read=self._read92, write=self._write92, name="port92",
                       sizes=(1,))
        ports.register(0x80, 1, read=self._read80, write=self._write80, name="post",
                       sizes=(1,))
        ports.register(0xE9, 1, read=self._readE9, write=self._writeE9, name="debugcon",
                       sizes=(1,))
        # SeaBIOS as Debian builds it writes its log to QEMU's debugcon at 0x402
        ports.register(0x402, 1, read=self._readE9, write=self._writeE9, name="debugcon-402",
                       sizes=(1,))
        if claim_cf9 and ports.owner(0xCF9) is None:
            ports.register(0xCF9, 1, read=lambda p, s: self.reset_control_read(),
                           write=lambda p, s, v: self.reset_control_write(v),
                           name="reset-control", sizes=(1,))

    def reset(self):
        # The A20 line itself belongs to the CPU's reset; only the latch clears.
        self.port92 = 0
        self.reset_control = 0

    # --- port 92h ---------------------------------------------------------------------
    def _read92(self, port, size):
        return self.port92

    def _write92(self, port, size, value):
        value &= 0xFF
        old = self.port92
        self.port92 = value
        if (old ^ value) & 0x02:
            # Only a change is passed on, so that a write made for bit 0 does
            # not undo an A20 the keyboard controller enabled.
            self.counters["a20_writes"] += 1
            self.bus.a20(bool(value & 0x02))
        if value & 0x01 and not old & 0x01:
            self.counters["resets"] += 1
            self.bus.reset_cpu()

    # --- port 80h ----------------------------------------------------------------------
    def _read80(self, port, size):
        return 0xFF if self.post_code is None else self.post_code

    def _write80(self, port, size, value):
        code = value & 0xFF
        self.post_code = code
        codes = self.post_codes
        codes.append(code)
        if len(codes) > POST_HISTORY:
            del codes[:len(codes) - POST_HISTORY]

    # --- port E9h -----------------------------------------------------------------------
    def _readE9(self, port, size):
        return 0xE9

    def _writeE9(self, port, size, value):
        data = bytes((value & 0xFF,))
        self.counters["debug_bytes"] += 1
        out = self.debug_out
        if out is not None:
            out(data)
            return
        buf = self.debug_buffer
        buf += data
        if len(buf) > DEBUG_BUFFER:
            del buf[:len(buf) - DEBUG_BUFFER]

    def debug_text(self):
        """What the guest wrote to port E9h (when no debug_out is set)."""
        return self.debug_buffer.decode("latin-1")

    # --- port CF9h (PIIX3 reset control) -------------------------------------------------------
    def reset_control_read(self):
        return self.reset_control

    def reset_control_write(self, value):
        value &= 0xFF
        if value & 0x04:
            # Bit 2 is a command, not state: it reads back as 0.
            self.reset_control = value & 0x02
            self.counters["resets"] += 1
            self.bus.reset_cpu()
        else:
            self.reset_control = value & 0x02
