"""An independent reference model of 32-bit paging on a PC physical map, for
random hostile page tables driven by random guest accesses.

The model knows nothing of emu: it holds its own copy of physical memory
(RAM bytes, ROM regions, memory-like MMIO devices with an access log) and
walks the page tables on EVERY access (no TLB).  emu caches translations in
shadow tables, but those are write-tracked: any store to a PDE/PTE drops the
shadows built from it, so the next access walks again.  Walking every time
is therefore exactly what emu must be equivalent to - including the A/D
updates (set on a successful walk only, PDE before PTE, each one a locked
read-modify-write of the whole dword: a re-read, then a 4-byte store, done
only when a bit actually changes) and the device accesses a table held in
MMIO sees.

Rules (Intel SDM Vol. 3A §4.3, §4.6, §4.7, §4.8), 32-bit paging, no PAE:

* PDE/PTE not present -> #PF, error code W/R | U/S (P = 0).
* CR4.PSE and PDE.PS: 4 MiB page; bits 21:13 reserved (no PSE-36: CPUID
  does not advertise it) -> #PF with P | RSVD.  PTE bit 7 and 4 MiB PDE
  bit 12 are PAT bits when CPUID advertises PAT, reserved otherwise (SDM
  Tables 4-4 and 4-6); ``PAT_RESERVED`` follows emu's CPUID.
* Rights: user needs U/S in every level, user write R/W in every level,
  supervisor write R/W in every level only with CR0.WP.
* Physical accesses: RAM; ROM readable, writes dropped; MMIO: one device
  access of the access's size when it lies in one region; anything else
  reads all-ones and drops writes.

Accesses are size-aligned (they never cross a page), so the page-crossing
rules are not modelled.
"""
import struct

from emu.cpu.cpuid import cpuid

PAT_RESERVED = not cpuid(1)[3] & (1 << 16)

P, RW, US, A, D, PS = 0x1, 0x2, 0x4, 0x20, 0x40, 0x80
PDE4M_RSVD = 0x003FE000
CR0_WP = 1 << 16
CR4_PSE = 1 << 4


class PageFault(Exception):
    def __init__(self, code, lin):
        super().__init__(code, lin)
        self.code = code
        self.lin = lin


class Dev:
    """Model of tests/guests/hostile_machine.Recorder (memory-like, logged)."""

    def __init__(self, base, size, pattern):
        self.base, self.size, self.pattern = base, size, pattern
        self.store = {}
        self.log = []

    def read(self, a, n):
        v = int.from_bytes(bytes(self.store.get(a + i, self.pattern(a + i)) for i in range(n)),
                           "little")
        self.log.append(("r", a, n, v))
        return v

    def write(self, a, n, v):
        self.log.append(("w", a, n, v))
        for i in range(n):
            self.store[a + i] = (v >> (8 * i)) & 0xFF


class PhysModel:
    def __init__(self, ram, roms=(), devs=()):
        self.ram = bytearray(ram)
        self.roms = [(b, bytes(d)) for b, d in roms]      # (base, bytes)
        self.devs = list(devs)

    def _rom(self, a):
        for b, d in self.roms:
            if b <= a < b + len(d):
                return b, d
        return None

    def _dev(self, a, n):
        for dv in self.devs:
            if dv.base <= a and a + n <= dv.base + dv.size:
                return dv
        for dv in self.devs:
            if dv.base < a + n and a < dv.base + dv.size:
                raise AssertionError("access straddles a device: not modelled")
        return None

    def kind(self, a):
        """'ram', 'rom', 'mmio' or 'none' for one physical byte."""
        if self._dev(a, 1):
            return "mmio"
        if self._rom(a):
            return "rom"
        return "ram" if a < len(self.ram) else "none"

    def read(self, a, n, peek=False):
        dv = self._dev(a, n)
        if dv is not None:
            if peek:                                # no side effect, not logged
                return int.from_bytes(bytes(dv.store.get(a + i, dv.pattern(a + i))
                                            for i in range(n)), "little")
            return dv.read(a, n)
        v = 0
        for i in range(n):
            x = a + i
            r = self._rom(x)
            if r is not None and x >= len(self.ram):
                b = r[1][x - r[0]]
            elif x < len(self.ram):
                b = self.ram[x]
            else:
                b = 0xFF
            v |= b << (8 * i)
        return v

    def write(self, a, n, v):
        dv = self._dev(a, n)
        if dv is not None:
            dv.write(a, n, v)
            return
        for i in range(n):
            x = a + i
            if self._rom(x) is None and x < len(self.ram):
                self.ram[x] = (v >> (8 * i)) & 0xFF


class PagingModel:
    def __init__(self, phys, cr0, cr3, cr4):
        self.phys = phys
        self.cr0, self.cr3, self.cr4 = cr0, cr3, cr4

    def _set_bits(self, addr, bits):
        cur = self.phys.read(addr, 4)
        if cur & bits != bits:
            self.phys.write(addr, 4, cur | bits)

    def translate(self, lin, write, user, peek=False):
        """Physical address of ``lin`` or PageFault.  ``peek``: no A/D update,
        no device access (where would it go - without touching anything)."""
        ph = self.phys
        wu = (2 if write else 0) | (4 if user else 0)
        pde_addr = (self.cr3 & 0xFFFFF000) | ((lin >> 20) & 0xFFC)
        pde = ph.read(pde_addr, 4, peek)
        if not pde & P:
            raise PageFault(wu, lin)
        if pde & PS and self.cr4 & CR4_PSE:
            rsvd = PDE4M_RSVD | (0x1000 if PAT_RESERVED else 0)
            if pde & rsvd:
                raise PageFault(1 | 8 | wu, lin)
            self._check(pde & US, pde & RW, write, user, lin)
            bits = A | D if write else A
            if pde & bits != bits and not peek:
                self._set_bits(pde_addr, bits)
            return (pde & 0xFFC00000) | (lin & 0x3FFFFF)
        pte_addr = (pde & 0xFFFFF000) | ((lin >> 10) & 0xFFC)
        pte = ph.read(pte_addr, 4, peek)
        if not pte & P:
            raise PageFault(wu, lin)
        if PAT_RESERVED and pte & 0x80:
            raise PageFault(1 | 8 | wu, lin)
        self._check(pde & pte & US, pde & pte & RW, write, user, lin)
        if peek:
            return (pte & 0xFFFFF000) | (lin & 0xFFF)
        if not pde & A:
            self._set_bits(pde_addr, A)
        bits = A | D if write else A
        if pte & bits != bits:
            self._set_bits(pte_addr, bits)
        return (pte & 0xFFFFF000) | (lin & 0xFFF)

    def _check(self, us, rw, write, user, lin):
        if user:
            if not us or (write and not rw):
                raise PageFault(1 | 4 | (2 if write else 0), lin)
        elif write and not rw and self.cr0 & CR0_WP:
            raise PageFault(1 | 2, lin)


def rd32(buf, a):
    return struct.unpack_from("<I", buf, a)[0]
