"""Segmented memory access for instruction semantics: the CPU's data fast path.

Every guest data access is offset -> segment check -> linear -> shadow TLB
lookup -> RAM.  The checks use bounds precomputed per segment register
(``SegCache``) whenever a segment register changes, so the hot path is a few
comparisons, one dict lookup and a slice of the RAM bytearray.  Anything
that misses (no shadow entry yet, MMIO, page-crossing, write-tracked page)
goes to the MMU's slow path, which fills the shadow or raises #PF.
"""
import struct

from .faults import CPUFault, GP, SS as SS_FAULT
from .state import SS, ATTR_P, ATTR_S, ATTR_CODE, ATTR_CONFORMING, ATTR_RW, ATTR_DB, ATTR_G

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class SegCache:
    """Derived, Python-side view of one segment register's hidden part."""

    __slots__ = ("sreg", "base", "limit", "attr", "rmin", "rmax", "wmin", "wmax",
                 "xmax", "big", "listener")

    def __init__(self, sreg):
        self.sreg = sreg
        self.base = 0
        self.limit = 0xFFFF
        self.attr = 0x93
        self.rmin = self.wmin = 0
        self.rmax = self.wmax = self.xmax = 0xFFFF
        self.big = False
        self.listener = None        # tier 1 mirrors the bounds (translate/runtime.py)

    def update(self, base, limit, attr, protected):
        """Recompute access bounds. ``limit`` is the byte-granular limit."""
        self.base = base
        self.limit = limit
        self.attr = attr
        self.big = bool(attr & ATTR_DB)
        if protected and not (attr & ATTR_P):
            # null or not-present (only possible through a null selector):
            # every access faults
            self.rmin = self.wmin = 1
            self.rmax = self.wmax = self.xmax = -1
            if self.listener is not None:
                self.listener(self)
            return
        lo, hi = 0, limit
        if protected and (attr & ATTR_S) and not (attr & ATTR_CODE) and (attr & ATTR_CONFORMING):
            lo, hi = limit + 1, (0xFFFFFFFF if attr & ATTR_DB else 0xFFFF)   # expand-down
        self.rmin = self.wmin = lo
        self.rmax = self.wmax = self.xmax = hi
        if protected:
            if attr & ATTR_CODE:
                self.wmin, self.wmax = 1, -1                   # code is never writable
                if not attr & ATTR_RW:
                    self.rmin, self.rmax = 1, -1               # execute-only
            elif not attr & ATTR_RW:
                self.wmin, self.wmax = 1, -1                   # read-only data
            if not attr & ATTR_S:
                self.rmin, self.rmax, self.wmin, self.wmax = 1, -1, 1, -1
        if self.listener is not None:
            self.listener(self)


def seg_fault(sreg):
    raise CPUFault(SS_FAULT if sreg == SS else GP, 0)


def make_accessors(cpu):
    """Bind the segmented accessors to one CPU; returns a namespace object."""
    segs = cpu.segs
    mmu = cpu.mmu
    ram = cpu.phys.ram
    u16 = _U16.unpack_from
    u32 = _U32.unpack_from
    p16 = _U16.pack_into
    p32 = _U32.pack_into

    def rd8(s, off):
        sg = segs[s]
        if off < sg.rmin or off > sg.rmax:
            seg_fault(s)
        lin = (sg.base + off) & 0xFFFFFFFF
        b = mmu.rtlb.get(lin >> 12)
        if b is None:
            return mmu.read(lin, 1, cpu.user)
        return ram[b | (lin & 0xFFF)]

    def rd16(s, off):
        sg = segs[s]
        if off < sg.rmin or off + 1 > sg.rmax:
            seg_fault(s)
        lin = (sg.base + off) & 0xFFFFFFFF
        b = mmu.rtlb.get(lin >> 12)
        if b is None or (lin & 0xFFF) == 0xFFF:
            return mmu.read(lin, 2, cpu.user)
        return u16(ram, b | (lin & 0xFFF))[0]

    def rd32(s, off):
        sg = segs[s]
        if off < sg.rmin or off + 3 > sg.rmax:
            seg_fault(s)
        lin = (sg.base + off) & 0xFFFFFFFF
        b = mmu.rtlb.get(lin >> 12)
        if b is None or (lin & 0xFFF) > 0xFFC:
            return mmu.read(lin, 4, cpu.user)
        return u32(ram, b | (lin & 0xFFF))[0]

    def wr8(s, off, v):
        sg = segs[s]
        if off < sg.wmin or off > sg.wmax:
            seg_fault(s)
        lin = (sg.base + off) & 0xFFFFFFFF
        b = mmu.wtlb.get(lin >> 12)
        if b is None:
            mmu.write(lin, 1, v, cpu.user)
        else:
            ram[b | (lin & 0xFFF)] = v

    def wr16(s, off, v):
        sg = segs[s]
        if off < sg.wmin or off + 1 > sg.wmax:
            seg_fault(s)
        lin = (sg.base + off) & 0xFFFFFFFF
        b = mmu.wtlb.get(lin >> 12)
        if b is None or (lin & 0xFFF) == 0xFFF:
            mmu.write(lin, 2, v, cpu.user)
        else:
            p16(ram, b | (lin & 0xFFF), v)

    def wr32(s, off, v):
        sg = segs[s]
        if off < sg.wmin or off + 3 > sg.wmax:
            seg_fault(s)
        lin = (sg.base + off) & 0xFFFFFFFF
        b = mmu.wtlb.get(lin >> 12)
        if b is None or (lin & 0xFFF) > 0xFFC:
            mmu.write(lin, 4, v, cpu.user)
        else:
            p32(ram, b | (lin & 0xFFF), v)

    RD = {1: rd8, 2: rd16, 4: rd32}
    WR = {1: wr8, 2: wr16, 4: wr32}

    def rd(s, off, size):
        return RD[size](s, off)

    def wr(s, off, size, v):
        WR[size](s, off, v)

    def check_write(s, off, size):
        """Segment + page checks for a write, without writing (RMW, string ops)."""
        sg = segs[s]
        if off < sg.wmin or off + size - 1 > sg.wmax:
            seg_fault(s)
        lin = (sg.base + off) & 0xFFFFFFFF
        if mmu.wtlb.get(lin >> 12) is None or (lin & 0xFFF) > 0x1000 - size:
            mmu.translate(lin, True, cpu.user)
            if (lin & 0xFFF) > 0x1000 - size:
                mmu.translate((lin + size - 1) & 0xFFFFFFFF, True, cpu.user)

    def read_bytes(s, off, n):
        sg = segs[s]
        if off < sg.rmin or off + n - 1 > sg.rmax:
            seg_fault(s)
        return mmu.read_bytes((sg.base + off) & 0xFFFFFFFF, n, cpu.user)

    def write_bytes(s, off, data):
        sg = segs[s]
        if off < sg.wmin or off + len(data) - 1 > sg.wmax:
            seg_fault(s)
        mmu.write_bytes((sg.base + off) & 0xFFFFFFFF, bytes(data), cpu.user)

    class Mem:
        pass
    m = Mem()
    m.rd8, m.rd16, m.rd32, m.wr8, m.wr16, m.wr32 = rd8, rd16, rd32, wr8, wr16, wr32
    m.RD, m.WR, m.rd, m.wr = RD, WR, rd, wr
    m.check_write = check_write
    m.read_bytes, m.write_bytes = read_bytes, write_bytes
    return m


def limit_from_descriptor(raw_limit, attr):
    """Byte-granular limit from the 20-bit descriptor limit and the G bit."""
    if attr & ATTR_G:
        return (raw_limit << 12) | 0xFFF
    return raw_limit
