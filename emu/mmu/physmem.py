"""Guest-physical memory map: RAM, ROM and MMIO regions.

Guest RAM is one ``bytearray`` whose offset *is* the guest-physical address
(``ram[paddr]``), with a numpy view ``ram_np`` over the same bytes.  On top of
it sit:

* ROM regions.  A ROM that lies inside RAM's range (the BIOS at 0xF0000 on a
  machine with >= 1 MiB) is copied into the bytearray and its bytes become
  read-only: slow-path writes to them are dropped and counted, and the pages
  it touches are marked so that the MMU never maps them writable.  A ROM above
  RAM (the 0xFFFF0000 alias of the BIOS) is kept as a separate ``bytes``.
* MMIO regions (``read(addr, size) -> int``, ``write(addr, size, value)``).
  An MMIO region may sit inside RAM's range (the VGA window at 0xA0000); the
  pages it touches are then never mapped by the MMU's fast path.
* Everything else is unmapped: reads return all-ones, writes are dropped,
  both counted.

``watch`` has one byte per 4 KiB RAM page (``WATCH_PT``: the page holds a
guest page table some shadow entry was built from; ``WATCH_CODE``: the page
holds decoded code).  Every store through this class into a RAM page whose
watch byte is non-zero first calls each listener ``fn(ppn, paddr, size)``
(``size`` is the part of the store that falls inside that page), then stores.
The MMU never maps a watched page writable, so the CPU fast path cannot skip
the listeners; anything else that writes guest RAM (devices, loaders) must go
through ``write``/``write_bytes`` too.

Every guest-controlled address is reduced mod 2**32 and checked against the
map before use: nothing in here indexes outside ``ram`` or raises
``IndexError`` for any address.
"""
from bisect import bisect_right
import struct

import numpy as np

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = PAGE_SIZE - 1
ADDR_MASK = 0xFFFFFFFF
ADDR_SPACE = 1 << 32

WATCH_PT = 1
WATCH_CODE = 2

MAX_RAM = 3 << 30       # 3 GiB: leaves the top GiB for ROM/MMIO

# Page kinds (``PhysMem.page_kind``), one byte per RAM page.
KIND_RAM = 0            # every byte is plain RAM
KIND_ROM = 1            # some bytes are ROM (read-only), the rest RAM; all readable from ram
KIND_MMIO = 2           # some bytes are MMIO: never in the fast path

# Region kinds in the sorted region list.
_R_ROM = 1
_R_MMIO = 2

_SIZE_MASK = {n: (1 << (8 * n)) - 1 for n in range(1, 9)}
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


class Region:
    """A ROM or MMIO region [base, end)."""

    __slots__ = ("base", "end", "kind", "data", "read", "write", "name")

    def __init__(self, base, end, kind, data=None, read=None, write=None, name=""):
        self.base = base
        self.end = end
        self.kind = kind
        self.data = data        # ROM above RAM: the bytes; ROM inside RAM: None
        self.read = read
        self.write = write
        self.name = name

    def __repr__(self):
        kind = "rom" if self.kind == _R_ROM else "mmio"
        return "<%s %s 0x%08x-0x%08x>" % (kind, self.name, self.base, self.end - 1)


def _check_ram_size(ram_size):
    if isinstance(ram_size, bool) or not isinstance(ram_size, int):
        raise ValueError("RAM size must be an integer number of bytes, got %r" % (ram_size,))
    if ram_size <= 0 or ram_size % PAGE_SIZE:
        raise ValueError("RAM size must be a positive multiple of 4 KiB, got %d bytes" % ram_size)
    if ram_size > MAX_RAM:
        raise ValueError("RAM size %d bytes exceeds the 3 GiB maximum (%d bytes)"
                         % (ram_size, MAX_RAM))


class PhysMem:
    """The guest-physical address space of one VM."""

    def __init__(self, ram_size):
        _check_ram_size(ram_size)
        self.ram_size = ram_size
        self.ram_pages = ram_size >> PAGE_SHIFT
        self.ram = bytearray(ram_size)
        # np.frombuffer exports the bytearray's buffer: it can no longer be
        # resized, so ram_np and ram stay one piece of memory for good.
        self.ram_np = np.frombuffer(self.ram, dtype=np.uint8)
        # watch/page_kind: numpy views over bytearrays, so Python code reads
        # them as plain ints (fast) and numpy users get vector operations.
        self._watchb = bytearray(self.ram_pages)
        self.watch = np.frombuffer(self._watchb, dtype=np.uint8)
        self._kindb = bytearray(self.ram_pages)
        self.page_kind = np.frombuffer(self._kindb, dtype=np.uint8)
        self._regions = []      # sorted, non-overlapping Regions
        self._starts = []       # their bases, for bisect
        self._listeners = []
        self.counters = {
            "unmapped_reads": 0,
            "unmapped_writes": 0,
            "rom_writes": 0,
            "mmio_reads": 0,
            "mmio_writes": 0,
        }

    # ------------------------------------------------------------------
    # configuration
    def _add_region(self, region, check_only=False):
        if region.end <= region.base:
            raise ValueError("%s: empty region" % (region.name or "region"))
        if region.base < 0 or region.end > ADDR_SPACE:
            raise ValueError("%s: region 0x%x-0x%x lies outside the 4 GiB physical space"
                             % (region.name or "region", region.base, region.end))
        i = bisect_right(self._starts, region.base)
        if i > 0 and self._regions[i - 1].end > region.base:
            raise ValueError("%r overlaps %r" % (region, self._regions[i - 1]))
        if i < len(self._regions) and self._regions[i].base < region.end:
            raise ValueError("%r overlaps %r" % (region, self._regions[i]))
        if check_only:
            return
        self._regions.insert(i, region)
        self._starts.insert(i, region.base)

    def _mark_pages(self, base, end, kind):
        end = min(end, self.ram_size)
        if base >= end:
            return
        for ppn in range(base >> PAGE_SHIFT, ((end - 1) >> PAGE_SHIFT) + 1):
            if self._kindb[ppn] < kind:
                self._kindb[ppn] = kind

    def add_rom(self, base, data, name="rom"):
        """Map read-only ``data`` at ``base``.  Writes are dropped and counted."""
        data = bytes(data)
        if not isinstance(base, int) or base < 0:
            raise ValueError("ROM base must be a non-negative integer")
        end = base + len(data)
        if not data:
            raise ValueError("%s: empty ROM" % name)
        if end > ADDR_SPACE:
            raise ValueError("%s: ROM 0x%x+0x%x goes past 4 GiB" % (name, base, len(data)))
        split = min(max(base, self.ram_size), end)
        parts = []
        if base < split:        # the part inside RAM: copied in, marked read-only
            parts.append(Region(base, split, _R_ROM, None, name=name))
        if split < end:         # the part above RAM: its own bytes
            parts.append(Region(split, end, _R_ROM, data[split - base:], name=name))
        for r in parts:
            self._add_region(r, check_only=True)
        for r in parts:
            self._add_region(r)
        if base < split:
            self.ram[base:split] = data[: split - base]
            self._mark_pages(base, split, KIND_ROM)

    def add_mmio(self, base, size, read, write, name="mmio"):
        """Map an MMIO region: ``read(addr, size) -> int``, ``write(addr, size, value)``."""
        if not isinstance(base, int) or not isinstance(size, int) or base < 0 or size <= 0:
            raise ValueError("%s: bad MMIO base/size" % name)
        self._add_region(Region(base, base + size, _R_MMIO, None, read, write, name))
        self._mark_pages(base, base + size, KIND_MMIO)

    def add_watch_listener(self, fn):
        """``fn(ppn, paddr, size)`` is called before every store into a watched RAM page."""
        self._listeners.append(fn)

    def remove_watch_listener(self, fn):
        self._listeners.remove(fn)

    @property
    def regions(self):
        return list(self._regions)

    # ------------------------------------------------------------------
    # page queries (for the MMU)
    def is_ram_page(self, ppn):
        """True when the whole 4 KiB page ``ppn`` is readable straight from ``ram``
        (plain RAM, or RAM-backed ROM: see ``rom_page``)."""
        return 0 <= ppn < self.ram_pages and self._kindb[ppn] != KIND_MMIO

    def rom_page(self, ppn):
        """True when page ``ppn`` is RAM-backed but (partly) read-only."""
        return 0 <= ppn < self.ram_pages and self._kindb[ppn] == KIND_ROM

    def writable_ram_page(self, ppn):
        """True when every byte of page ``ppn`` is plain, writable RAM."""
        return 0 <= ppn < self.ram_pages and self._kindb[ppn] == KIND_RAM

    def region_at(self, paddr):
        """The ROM/MMIO Region containing ``paddr``, or None."""
        i = bisect_right(self._starts, paddr) - 1
        if i >= 0:
            r = self._regions[i]
            if paddr < r.end:
                return r
        return None

    def describe(self, paddr):
        """'ram', 'rom', 'mmio:<name>' or 'unmapped' for one address (for views/tests)."""
        paddr &= ADDR_MASK
        r = self.region_at(paddr)
        if r is not None:
            return "rom" if r.kind == _R_ROM else "mmio:" + r.name
        return "ram" if paddr < self.ram_size else "unmapped"

    # ------------------------------------------------------------------
    # the slow paths
    def read(self, paddr, size):
        """Read ``size`` bytes (little-endian int) at ``paddr`` from any region."""
        paddr &= ADDR_MASK
        end = paddr + size
        if end <= self.ram_size and (paddr & PAGE_MASK) + size <= PAGE_SIZE \
                and self._kindb[paddr >> PAGE_SHIFT] != KIND_MMIO:
            if size == 4:
                return _U32.unpack_from(self.ram, paddr)[0]
            if size == 1:
                return self.ram[paddr]
            if size == 2:
                return _U16.unpack_from(self.ram, paddr)[0]
            return int.from_bytes(self.ram[paddr:end], "little")
        return self._read_slow(paddr, size)

    def write(self, paddr, size, value):
        """Write the low ``size`` bytes of ``value`` at ``paddr`` to any region."""
        paddr &= ADDR_MASK
        end = paddr + size
        if end <= self.ram_size and (paddr & PAGE_MASK) + size <= PAGE_SIZE:
            ppn = paddr >> PAGE_SHIFT
            if self._kindb[ppn] == KIND_RAM:
                if self._watchb[ppn]:
                    for fn in self._listeners:
                        fn(ppn, paddr, size)
                if size == 4:
                    _U32.pack_into(self.ram, paddr, value & 0xFFFFFFFF)
                elif size == 1:
                    self.ram[paddr] = value & 0xFF
                elif size == 2:
                    _U16.pack_into(self.ram, paddr, value & 0xFFFF)
                else:
                    self.ram[paddr:end] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
                return
        self._write_slow(paddr, size, value)

    def read_bytes(self, paddr, n):
        """``n`` bytes from ``paddr`` (wrapping at 4 GiB), any region."""
        if n < 0:
            raise ValueError("negative length")
        if n == 0:
            return b""
        paddr &= ADDR_MASK
        end = paddr + n
        if end <= self.ram_size and KIND_MMIO not in \
                self._kindb[paddr >> PAGE_SHIFT: ((end - 1) >> PAGE_SHIFT) + 1]:
            return bytes(self.ram[paddr:end])
        out = bytearray()
        for a, length, kind, obj in self._pieces(paddr, n):
            out += self._read_piece(a, length, kind, obj)
        return bytes(out)

    def write_bytes(self, paddr, data):
        """Store ``data`` at ``paddr`` (wrapping at 4 GiB), any region; honours watch bits."""
        data = bytes(data)
        paddr &= ADDR_MASK
        pos = 0
        for a, length, kind, obj in self._pieces(paddr, len(data)):
            self._write_piece(a, data[pos:pos + length], kind, obj)
            pos += length

    def peek(self, paddr, size):
        """Side-effect-free read: RAM/ROM bytes, all-ones for MMIO and unmapped.
        Nothing is counted and no device is called (audits, debuggers)."""
        paddr &= ADDR_MASK
        if paddr + size <= self.ram_size and (paddr & PAGE_MASK) + size <= PAGE_SIZE \
                and self._kindb[paddr >> PAGE_SHIFT] != KIND_MMIO:
            return int.from_bytes(self.ram[paddr:paddr + size], "little")
        v = 0
        for i in range(size):
            a = (paddr + i) & ADDR_MASK
            r = self.region_at(a)
            if r is None:
                b = self.ram[a] if a < self.ram_size else 0xFF
            elif r.kind == _R_ROM:
                b = self.ram[a] if r.data is None else r.data[a - r.base]
            else:
                b = 0xFF
            v |= b << (8 * i)
        return v

    # ------------------------------------------------------------------
    # internals
    def _pieces(self, paddr, n):
        """Split [paddr, paddr+n) (mod 2**32) into pieces of one kind each.

        Yields (addr, length, kind, obj) with kind one of 'ram' (plain RAM,
        never crossing a page), 'romram' (RAM-backed ROM), 'rom' (obj: Region
        with its own bytes), 'mmio' (obj: Region), 'unmapped'.
        """
        a = paddr & ADDR_MASK
        ram_size = self.ram_size
        regions = self._regions
        starts = self._starts
        while n > 0:
            stop = min(a + n, ADDR_SPACE)
            i = bisect_right(starts, a) - 1
            r = regions[i] if i >= 0 and a < regions[i].end else None
            if r is not None:
                end = min(stop, r.end)
                if r.kind == _R_MMIO:
                    yield a, end - a, "mmio", r
                elif r.data is None:
                    yield a, end - a, "romram", r
                else:
                    yield a, end - a, "rom", r
            else:
                nxt = starts[i + 1] if i + 1 < len(starts) else ADDR_SPACE
                if a < ram_size:
                    end = min(stop, nxt, ram_size, (a | PAGE_MASK) + 1)
                    yield a, end - a, "ram", None
                else:
                    end = min(stop, nxt)
                    yield a, end - a, "unmapped", None
            n -= end - a
            a = end & ADDR_MASK

    def _read_piece(self, a, length, kind, obj):
        if kind == "ram" or kind == "romram":
            return self.ram[a:a + length]
        if kind == "rom":
            return obj.data[a - obj.base: a - obj.base + length]
        if kind == "mmio":
            self.counters["mmio_reads"] += 1
            out = bytearray()
            for i in range(length):
                out.append(obj.read(a + i, 1) & 0xFF)
            return out
        self.counters["unmapped_reads"] += 1
        return b"\xff" * length

    def _write_piece(self, a, chunk, kind, obj):
        if kind == "ram":
            ppn = a >> PAGE_SHIFT
            if self._watchb[ppn]:
                for fn in self._listeners:
                    fn(ppn, a, len(chunk))
            self.ram[a:a + len(chunk)] = chunk
        elif kind == "mmio":
            self.counters["mmio_writes"] += 1
            for i, b in enumerate(chunk):
                obj.write(a + i, 1, b)
        elif kind == "unmapped":
            self.counters["unmapped_writes"] += 1
        else:
            self.counters["rom_writes"] += 1

    def _mmio_whole(self, paddr, size):
        """The MMIO region holding all of [paddr, paddr+size), if any."""
        r = self.region_at(paddr)
        if r is not None and r.kind == _R_MMIO and paddr + size <= r.end:
            return r
        return None

    def _read_slow(self, paddr, size):
        r = self._mmio_whole(paddr, size)
        if r is not None and size in (1, 2, 4, 8):
            self.counters["mmio_reads"] += 1
            if size == 8:
                return (r.read(paddr, 4) & 0xFFFFFFFF) | ((r.read(paddr + 4, 4) & 0xFFFFFFFF) << 32)
            return r.read(paddr, size) & _SIZE_MASK[size]
        data = bytearray()
        for a, length, kind, obj in self._pieces(paddr, size):
            data += self._read_piece(a, length, kind, obj)
        return int.from_bytes(data, "little")

    def _write_slow(self, paddr, size, value):
        value &= (1 << (8 * size)) - 1
        r = self._mmio_whole(paddr, size)
        if r is not None and size in (1, 2, 4, 8):
            self.counters["mmio_writes"] += 1
            if size == 8:
                r.write(paddr, 4, value & 0xFFFFFFFF)
                r.write(paddr + 4, 4, value >> 32)
            else:
                r.write(paddr, size, value)
            return
        data = value.to_bytes(size, "little")
        pos = 0
        for a, length, kind, obj in self._pieces(paddr, size):
            self._write_piece(a, data[pos:pos + length], kind, obj)
            pos += length
