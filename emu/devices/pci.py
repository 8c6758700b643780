"""PCI configuration mechanism #1 with an i440FX host bridge and a PIIX3 ISA bridge.

Just enough of a PCI bus that a BIOS or an OS probing it finds a sane
machine: bus 0, device 0 = the 82441FX PMC host bridge (8086:1237, class
06/00/00), device 1 function 0 = the 82371SB PIIX3 PCI-to-ISA bridge
(8086:7000, class 06/01/00, multifunction header).  Anything else - other
devices, functions, buses - reads all ones (master abort) and ignores writes.

Mechanism #1 (PCI Local Bus spec 3.3.2.3)
    0xCF8  CONFIG_ADDRESS, decoded only for dword accesses: bit 31 enable,
           23:16 bus, 15:11 device, 10:8 function, 7:2 register; reserved
           bits 30:24 and 1:0 read back 0.
    0xCFC-0xCFF  CONFIG_DATA: byte, word or dword at any offset reaches
           register (CONFIG_ADDRESS & 0xFC) + (port & 3) of the addressed
           function while the enable bit is set; otherwise reads all ones.
    Byte and word accesses to 0xCF8-0xCFB are ordinary I/O cycles, not
    CONFIG_ADDRESS: the chipset's reset control register at 0xCF9 lives
    there.  A device that claimed a port in 0xCF8-0xCFB before the PCI bus
    was built (sysctrl.py's 0xCF9) keeps its handlers: the bus takes the
    port over and passes non-dword accesses to it; ``share_port`` does the
    same for devices built later.  Mechanism #2 is not supported: its
    registers (byte accesses at 0xCF8 and 0xCFA) read 0xFF, so a probe for
    it fails, as on chipsets without it.

Configuration space (``PCIConfigSpace``): 256 bytes, a mask of the bits the
guest may write, a mask of write-1-to-clear status bits, and reset defaults.
Read-only fields (IDs, class, header type, ...) stay as they are whatever
is written.  Registers with side conditions (the i440FX SMRAM lock) override
``write_byte``.

More devices: ``PCIBus.add_device(dev, fn, config_space)`` with any object
that has ``read(offset, size)``, ``write(offset, size, value)`` and
``reset()`` (``PCIConfigSpace`` or a subclass).
"""
CONFIG_ADDRESS = 0xCF8
CONFIG_DATA = 0xCFC
ENABLE = 0x80000000
ADDRESS_MASK = 0x80FFFFFC      # what CONFIG_ADDRESS keeps of a written value

# Standard header offsets
VENDOR_ID = 0x00
DEVICE_ID = 0x02
COMMAND = 0x04
STATUS = 0x06
REVISION = 0x08
CLASS_PROG = 0x09
LATENCY = 0x0D
HEADER_TYPE = 0x0E
SUBSYS_VENDOR = 0x2C
INTERRUPT_LINE = 0x3C

# Status bits cleared by writing 1: parity error, signalled system error,
# received master abort, received target abort, signalled target abort,
# master data parity error.
STATUS_W1C = 0xF900


class PCIConfigSpace:
    """One function's 256-byte configuration space."""

    def __init__(self, vendor, device, class_code, revision=0, header_type=0x00,
                 command=0x0000, status=0x0000, command_writable=0x0000,
                 latency_writable=0x00):
        self.data = bytearray(256)
        self.wmask = bytearray(256)         # bits the guest may change
        self.w1c = bytearray(256)           # bits the guest clears by writing 1
        self.defaults = None
        d = self.data
        d[VENDOR_ID:VENDOR_ID + 2] = vendor.to_bytes(2, "little")
        d[DEVICE_ID:DEVICE_ID + 2] = device.to_bytes(2, "little")
        d[COMMAND:COMMAND + 2] = command.to_bytes(2, "little")
        d[STATUS:STATUS + 2] = status.to_bytes(2, "little")
        d[REVISION] = revision
        d[CLASS_PROG:CLASS_PROG + 3] = class_code.to_bytes(3, "little")   # prog-if, sub, base
        d[HEADER_TYPE] = header_type
        self.set_writable(COMMAND, 2, command_writable)
        self.set_w1c(STATUS, 2, STATUS_W1C)
        self.set_writable(LATENCY, 1, latency_writable)

    # --- building ------------------------------------------------------------------
    def set_writable(self, offset, size, mask):
        self.wmask[offset:offset + size] = mask.to_bytes(size, "little")

    def set_w1c(self, offset, size, mask):
        self.w1c[offset:offset + size] = mask.to_bytes(size, "little")

    def set_default(self, offset, size, value):
        self.data[offset:offset + size] = value.to_bytes(size, "little")

    def seal(self):
        """Take the current contents as the reset defaults."""
        self.defaults = bytes(self.data)

    def reset(self):
        if self.defaults is not None:
            self.data[:] = self.defaults

    # --- the guest's side ----------------------------------------------------------
    def read(self, offset, size):
        offset &= 0xFF
        if offset + size > 256:
            size = 256 - offset
        return int.from_bytes(self.data[offset:offset + size], "little")

    def write(self, offset, size, value):
        offset &= 0xFF
        for i in range(size):
            if offset + i < 256:
                self.write_byte(offset + i, (value >> (8 * i)) & 0xFF)

    def write_byte(self, offset, value):
        old = self.data[offset]
        keep = old & ~self.wmask[offset]
        new = keep | (value & self.wmask[offset])
        new &= ~(value & self.w1c[offset]) & 0xFF
        self.data[offset] = new


class I440FXHostBridge(PCIConfigSpace):
    """82441FX PCI and Memory Controller (device 0).

    Stored and read back: PAM0-PAM6 (0x59-0x5F, the read/write enables of
    the BIOS and option-ROM shadow areas), the DRAM row boundaries
    (0x60-0x67), SMRAM (0x72) and the other chipset registers a BIOS
    programs.  The memory map does not follow PAM yet: ``on_pam_change`` is
    called with (register, value) so the machine can make shadow RAM
    writable when it supports that.

    SMRAM (0x72): bits 2:0 (C_BASE_SEG) read 010b; D_OPEN (6), D_CLS (5),
    D_LCK (4) and G_SMRAME (3) are writable until D_LCK is set, after which
    D_OPEN reads 0 and only D_CLS stays writable (until reset).
    """

    PAM_FIRST, PAM_LAST = 0x59, 0x5F
    SMRAM = 0x72
    SMRAM_D_OPEN, SMRAM_D_CLS, SMRAM_D_LCK, SMRAM_G_SMRAME = 0x40, 0x20, 0x10, 0x08

    def __init__(self):
        super().__init__(0x8086, 0x1237, 0x060000, revision=0x02, header_type=0x00,
                         command=0x0006, status=0x0280,
                         command_writable=0x0140,     # PERR and SERR response
                         latency_writable=0xF8)       # MLT, in units of 8 clocks
        self.on_pam_change = None
        self.set_writable(0x50, 2, 0x70EF)    # PMCCFG
        self.set_writable(0x51, 1, 0x80)      # DETURBO
        self.set_writable(0x52, 2, 0xFFFF)    # DBC
        self.set_writable(0x54, 1, 0xFF)      # AXC
        self.set_writable(0x55, 2, 0xFFFF)    # DRT
        self.set_writable(0x57, 1, 0xFF)      # DRAMC
        self.set_writable(0x58, 1, 0xFF)      # DRAMT
        self.set_writable(0x59, 1, 0x30)      # PAM0: only the 0xF0000 half exists
        for reg in range(0x5A, 0x60):
            self.set_writable(reg, 1, 0x33)   # PAM1-6: two areas, RE/WE each
        for reg in range(0x60, 0x68):         # DRB0-7
            self.set_writable(reg, 1, 0xFF)
            self.set_default(reg, 1, 0x01)
        self.set_writable(0x68, 1, 0xC0)      # FDHC
        self.set_writable(0x70, 1, 0xFC)      # MTT
        self.set_writable(0x71, 1, 0xFF)      # CLT
        self.set_default(0x71, 1, 0x10)
        self.set_default(self.SMRAM, 1, 0x02)
        self.set_writable(self.SMRAM, 1, 0x78)
        self.set_writable(0x90, 1, 0xFF)      # ERRCMD
        self.set_w1c(0x91, 1, 0xFF)           # ERRSTS
        self.seal()

    def reset(self):
        super().reset()
        self.set_writable(self.SMRAM, 1, 0x78)

    def write_byte(self, offset, value):
        if offset == self.SMRAM:
            locked = self.data[offset] & self.SMRAM_D_LCK
            if locked:
                value &= ~self.SMRAM_D_OPEN
            super().write_byte(offset, value)
            if self.data[offset] & self.SMRAM_D_LCK:
                self.data[offset] &= ~self.SMRAM_D_OPEN & 0xFF
                self.set_writable(self.SMRAM, 1, self.SMRAM_D_CLS)
            return
        super().write_byte(offset, value)
        if self.PAM_FIRST <= offset <= self.PAM_LAST and self.on_pam_change is not None:
            self.on_pam_change(offset, self.data[offset])


class PIIX3ISABridge(PCIConfigSpace):
    """82371SB PIIX3 function 0, the PCI-to-ISA bridge (device 1).

    PIRQRC[A:D] (0x60-0x63): bit 7 set = routing disabled (the reset value
    0x80), bits 3:0 the ISA IRQ; ``pirq_route(n)`` gives the IRQ a PCI
    interrupt line is routed to, or None.  The other registers a BIOS sets
    (ISA I/O recovery, XBCS, top of memory, motherboard IRQ/DMA routing,
    APIC base, SMI control) are stored.
    """

    PIRQRC = 0x60

    def __init__(self):
        super().__init__(0x8086, 0x7000, 0x060100, revision=0x00, header_type=0x80,
                         command=0x0007, status=0x0200,
                         command_writable=0x0148)     # special cycles, PERR, SERR
        self.set_writable(0x4C, 1, 0x7F)      # IORT
        self.set_default(0x4C, 1, 0x4D)
        self.set_writable(0x4E, 2, 0x07FF)    # XBCS
        self.set_default(0x4E, 2, 0x0003)
        for reg in range(self.PIRQRC, self.PIRQRC + 4):
            self.set_writable(reg, 1, 0x8F)
            self.set_default(reg, 1, 0x80)
        self.set_writable(0x69, 1, 0xFE)      # TOM
        self.set_default(0x69, 1, 0x02)
        self.set_writable(0x6A, 2, 0x00FF)    # MSTAT
        self.set_writable(0x70, 2, 0xCFCF)    # MBIRQ0-1
        self.set_default(0x70, 2, 0x8080)
        self.set_writable(0x76, 2, 0x8F8F)    # MBDMA0-1
        self.set_default(0x76, 2, 0x0C0C)
        self.set_writable(0x78, 2, 0xFFFF)    # PCSC
        self.set_default(0x78, 2, 0x0002)
        self.set_writable(0x80, 1, 0x3F)      # APICBASE
        self.set_writable(0x82, 1, 0x0F)      # DLC
        self.set_writable(0xA0, 1, 0x1F)      # SMICNTL
        self.set_default(0xA0, 1, 0x08)
        self.set_writable(0xA2, 2, 0x00FF)    # SMIEN
        self.set_writable(0xA4, 4, 0xFFFFFFFF)  # SEE
        self.set_writable(0xA8, 1, 0xFF)      # FTMR
        self.set_default(0xA8, 1, 0x0F)
        self.set_writable(0xAA, 2, 0x01FF)    # SMIREQ
        self.set_writable(0xAC, 1, 0xFF)      # CTLTMR
        self.set_writable(0xAE, 1, 0xFF)      # CTHTMR
        self.seal()

    def pirq_route(self, n):
        """ISA IRQ of PCI interrupt line PIRQ[n] (0-3 = A-D), or None when disabled."""
        v = self.data[self.PIRQRC + (n & 3)]
        if v & 0x80:
            return None
        irq = v & 0x0F
        # IRQ 0-2, 8 and 13 are reserved routings on the PIIX3.
        return None if irq in (0, 1, 2, 8, 13) else irq


class PCIBus:
    """Bus 0 behind configuration mechanism #1."""

    def __init__(self, bus):
        self.bus = bus
        self.address = 0
        self.functions = {}              # (device, function) -> config space
        self.counters = {"config_reads": 0, "config_writes": 0, "master_aborts": 0}
        self._shared = {}                # port in 0xCF8-0xCFB -> (read, write)
        ports = bus.ports
        for r in list(ports.ranges):     # e.g. the reset control register at 0xCF9
            if CONFIG_ADDRESS <= r.base and r.end <= CONFIG_ADDRESS + 4:
                for p in range(r.base, r.end):
                    self._shared[p] = (r.read, r.write)
                ports.unregister(r.base)
        ports.register(CONFIG_ADDRESS, 4, read=self._address_read, write=self._address_write,
                       name="pci-config-address")
        ports.register(CONFIG_DATA, 4, read=self._data_read, write=self._data_write,
                       name="pci-config-data")
        self.host_bridge = I440FXHostBridge()
        self.isa_bridge = PIIX3ISABridge()
        self.add_device(0, 0, self.host_bridge)
        self.add_device(1, 0, self.isa_bridge)

    # --- host side ---------------------------------------------------------------------
    def add_device(self, dev, fn, config_space):
        """Put a function at bus 0, device ``dev`` (0-31), function ``fn`` (0-7)."""
        if not (0 <= dev < 32 and 0 <= fn < 8):
            raise ValueError("PCI device %r function %r out of range" % (dev, fn))
        if (dev, fn) in self.functions:
            raise ValueError("PCI slot %02x.%d already taken" % (dev, fn))
        self.functions[(dev, fn)] = config_space

    def share_port(self, port, read=None, write=None):
        """A register of another device inside 0xCF8-0xCFB (byte/word access)."""
        if not CONFIG_ADDRESS <= port < CONFIG_ADDRESS + 4:
            raise ValueError("port 0x%x is not in 0xCF8-0xCFB" % port)
        self._shared[port] = (read, write)

    def reset(self):
        self.address = 0
        for space in self.functions.values():
            space.reset()

    def lookup(self, address):
        """The config space CONFIG_ADDRESS ``address`` selects, or None."""
        if not address & ENABLE:
            return None
        bus = (address >> 16) & 0xFF
        dev = (address >> 11) & 0x1F
        fn = (address >> 8) & 0x07
        if bus != 0:
            return None
        return self.functions.get((dev, fn))

    def config_read(self, dev, fn, offset, size):
        """Host-side read of bus 0 (tests, debuggers); all ones when absent."""
        space = self.functions.get((dev, fn))
        if space is None:
            return (1 << (8 * size)) - 1
        return space.read(offset, size)

    # --- CONFIG_ADDRESS and the registers that share its ports -------------------------------
    # A shared register's errors propagate: the port bus contains and counts them.
    def _address_read(self, port, size):
        if port == CONFIG_ADDRESS and size == 4:
            return self.address
        v = 0
        for i in range(size):
            handler = self._shared.get(port + i, (None, None))[0]
            b = 0xFF if handler is None else handler(port + i, 1) & 0xFF
            v |= b << (8 * i)
        return v

    def _address_write(self, port, size, value):
        if port == CONFIG_ADDRESS and size == 4:
            self.address = value & ADDRESS_MASK
            return
        for i in range(size):
            handler = self._shared.get(port + i, (None, None))[1]
            if handler is not None:
                handler(port + i, 1, (value >> (8 * i)) & 0xFF)

    # --- CONFIG_DATA -----------------------------------------------------------------
    def _data_read(self, port, size):
        space = self.lookup(self.address)
        self.counters["config_reads"] += 1
        if space is None:
            self.counters["master_aborts"] += 1
            return (1 << (8 * size)) - 1
        return space.read((self.address & 0xFC) + (port & 3), size)

    def _data_write(self, port, size, value):
        space = self.lookup(self.address)
        self.counters["config_writes"] += 1
        if space is None:
            self.counters["master_aborts"] += 1
            return
        space.write((self.address & 0xFC) + (port & 3), size, value)
