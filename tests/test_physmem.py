"""PhysMem: RAM, ROM, MMIO, unmapped space, watch listeners, straddling."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from emu.mmu.physmem import (MAX_RAM, WATCH_CODE, WATCH_PT, PhysMem)

MB = 1 << 20


class Dev:
    """An MMIO device that records every access and returns a pattern."""

    def __init__(self):
        self.log = []
        self.regs = {}

    def read(self, addr, size):
        self.log.append(("r", addr, size))
        return 0x1122334455667788 & ((1 << (8 * size)) - 1) if addr not in self.regs \
            else self.regs[addr]

    def write(self, addr, size, value):
        self.log.append(("w", addr, size, value))
        self.regs[addr] = value


# ---------------------------------------------------------------- construction
@pytest.mark.parametrize("size", [0, -4096, 4095, 4097, 1 * MB + 1, MAX_RAM + 4096,
                                  4 << 30, 1.5, "1M", None, True])
def test_bad_ram_size(size):
    with pytest.raises(ValueError) as e:
        PhysMem(size)
    assert "RAM size" in str(e.value)


def test_ram_and_numpy_view_share_memory():
    p = PhysMem(64 * 1024)
    assert p.ram_size == 65536 and len(p.ram) == 65536
    assert p.ram_np.dtype == np.uint8 and p.ram_np.shape == (65536,)
    p.ram[100] = 0x5A
    assert p.ram_np[100] == 0x5A
    p.ram_np[200] = 0xA5
    assert p.ram[200] == 0xA5
    assert p.watch.shape == (16,) and p.watch.dtype == np.uint8
    with pytest.raises(BufferError):       # the buffer is exported: no resize
        p.ram.append(0)


def test_min_size_and_page_count():
    p = PhysMem(4096)
    assert p.ram_pages == 1
    p.write(4092, 4, 0x01020304)
    assert p.read(4092, 4) == 0x01020304
    assert p.read(4094, 4) == 0xFFFF0102   # upper half unmapped


# ---------------------------------------------------------------- plain RAM
def test_little_endian_sizes():
    p = PhysMem(MB)
    p.write(0x100, 8, 0x0807060504030201)
    assert bytes(p.ram[0x100:0x108]) == bytes(range(1, 9))
    assert p.read(0x100, 1) == 0x01
    assert p.read(0x100, 2) == 0x0201
    assert p.read(0x101, 4) == 0x05040302
    assert p.read(0x100, 8) == 0x0807060504030201
    p.write(0x200, 2, 0x123456)             # value masked to the size
    assert p.read(0x200, 4) == 0x3456
    p.write(0x300, 4, -1)
    assert p.read(0x300, 4) == 0xFFFFFFFF and p.read(0x304, 1) == 0


def test_page_straddle_inside_ram():
    p = PhysMem(MB)
    p.write(0xFFE, 4, 0xAABBCCDD)
    assert p.read(0xFFE, 4) == 0xAABBCCDD
    assert p.ram[0xFFE] == 0xDD and p.ram[0x1001] == 0xAA


def test_addresses_reduced_mod_2_32():
    p = PhysMem(MB)
    p.write((1 << 32) + 0x10, 4, 0xCAFEBABE)
    assert p.read(0x10, 4) == 0xCAFEBABE
    assert p.read(-(1 << 32) + 0x10, 4) == 0xCAFEBABE
    assert p.read((5 << 32) | 0x10, 2) == 0xBABE


# ---------------------------------------------------------------- unmapped
def test_unmapped_reads_all_ones_and_writes_dropped():
    p = PhysMem(MB)
    before = bytes(p.ram)
    for size in (1, 2, 4, 8):
        assert p.read(0x40000000, size) == (1 << (8 * size)) - 1
    assert p.counters["unmapped_reads"] == 4
    p.write(0x40000000, 4, 0)
    p.write(MB, 1, 0)
    assert p.counters["unmapped_writes"] == 2
    assert bytes(p.ram) == before
    assert p.read_bytes(0x80000000, 5) == b"\xff" * 5


def test_straddle_end_of_ram():
    p = PhysMem(MB)
    p.write(MB - 2, 4, 0x11223344)
    assert p.ram[MB - 2] == 0x44 and p.ram[MB - 1] == 0x33
    assert p.counters["unmapped_writes"] == 1
    assert p.read(MB - 2, 4) == 0xFFFF3344
    assert p.read(MB - 1, 8) == 0xFFFFFFFFFFFFFF33


def test_wrap_at_4gib():
    p = PhysMem(MB)
    p.ram[0:2] = b"\x12\x34"
    # 0xFFFFFFFE..0xFFFFFFFF unmapped, then wraps to 0
    assert p.read(0xFFFFFFFE, 4) == 0x3412FFFF
    p.write(0xFFFFFFFF, 2, 0xABCD)
    assert p.ram[0] == 0xAB
    assert p.read_bytes(0xFFFFFFFF, 3) == b"\xff\xab\x34"
    p.write_bytes(0xFFFFFFFE, b"\x01\x02\x03")
    assert p.ram[0] == 0x03


@given(addr=st.integers(min_value=-(1 << 40), max_value=1 << 40),
       size=st.sampled_from([1, 2, 4, 8]), value=st.integers(0, (1 << 64) - 1))
@settings(max_examples=200, deadline=None)
def test_any_address_is_safe(addr, size, value):
    p = _PM
    p.write(addr, size, value)
    v = p.read(addr, size)
    assert 0 <= v < (1 << (8 * size))
    p.read_bytes(addr, 9)
    p.write_bytes(addr, b"\x00" * 9)
    assert len(p.ram) == 2 * MB


_PM = PhysMem(2 * MB)
_PM.add_rom(0xF0000, b"\xEA" * 0x10000)
_PM.add_rom(0xFFFF0000, b"\xEB" * 0x10000)
_PM.add_mmio(0xA0000, 0x20000, lambda a, s: 0, lambda a, s, v: None, "vga")
_PM.add_mmio(0xFEC00000, 0x1000, lambda a, s: 0, lambda a, s, v: None, "ioapic")


# ---------------------------------------------------------------- ROM
def test_rom_inside_ram():
    p = PhysMem(MB)
    data = bytes((i * 7) & 0xFF for i in range(0x10000))
    p.add_rom(0xF0000, data)
    assert p.read_bytes(0xF0000, 0x10000) == data
    assert p.read(0xF0010, 4) == int.from_bytes(data[0x10:0x14], "little")
    p.write(0xF0010, 4, 0)
    p.write_bytes(0xF0000, b"\x00" * 16)
    assert p.read_bytes(0xF0000, 0x10000) == data
    assert p.counters["rom_writes"] == 2
    assert p.is_ram_page(0xF0) and p.rom_page(0xF0) and not p.writable_ram_page(0xF0)
    assert p.is_ram_page(0xEF) and not p.rom_page(0xEF) and p.writable_ram_page(0xEF)


def test_partial_rom_page():
    p = PhysMem(MB)
    p.add_rom(0xC0000, b"\x55" * 0x800)       # half a page of ROM
    assert p.rom_page(0xC0)
    p.write(0xC07FE, 4, 0xAABBCCDD)           # 2 bytes ROM, 2 bytes RAM
    assert p.read(0xC07FE, 4) == 0xAABB5555
    assert p.counters["rom_writes"] == 1
    p.write(0xC0900, 4, 0x12345678)           # RAM part of the ROM page
    assert p.read(0xC0900, 4) == 0x12345678


def test_rom_above_ram_and_straddling_ram_end():
    p = PhysMem(MB)
    p.add_rom(0xFFFF0000, bytes(range(256)) * 256)
    assert p.read(0xFFFFFFF0, 1) == 0xF0
    assert p.read(0xFFFF0001, 2) == 0x0201
    p.write(0xFFFF0000, 4, 0)
    assert p.read(0xFFFF0000, 4) == 0x03020100
    assert p.counters["rom_writes"] == 1
    assert not p.is_ram_page(0xFFFF0)
    q = PhysMem(MB)
    q.add_rom(MB - 0x1000, b"\x77" * 0x2000)  # half inside, half above
    assert q.read(MB - 2, 4) == 0x77777777
    assert q.rom_page((MB >> 12) - 1)
    q.write(MB - 2, 4, 0)
    assert q.read(MB - 2, 4) == 0x77777777
    assert q.read(MB + 0xFFF, 2) == 0xFF77     # ROM ends at MB+0x1000


def test_rom_wrapping_past_4gib_rejected():
    p = PhysMem(MB)
    with pytest.raises(ValueError):
        p.add_rom(0xFFFFF000, b"\x00" * 0x2000)
    with pytest.raises(ValueError):
        p.add_rom(0x100000, b"")


# ---------------------------------------------------------------- MMIO
def test_mmio_dispatch_sizes():
    p = PhysMem(MB)
    d = Dev()
    p.add_mmio(0xFEE00000, 0x1000, d.read, d.write, "apic")
    assert p.read(0xFEE00020, 4) == 0x55667788
    assert p.read(0xFEE00020, 2) == 0x7788
    p.write(0xFEE000B0, 4, 0x1FFFFFFFF)
    assert d.log[-1] == ("w", 0xFEE000B0, 4, 0xFFFFFFFF)
    assert p.read(0xFEE000B0, 4) == 0xFFFFFFFF
    d.log.clear()
    p.read(0xFEE00100, 8)
    assert d.log == [("r", 0xFEE00100, 4), ("r", 0xFEE00104, 4)]
    assert p.counters["mmio_reads"] >= 3 and p.counters["mmio_writes"] == 1
    assert p.describe(0xFEE00000) == "mmio:apic"


def test_mmio_inside_ram_range():
    p = PhysMem(MB)
    d = Dev()
    p.add_mmio(0xA0000, 0x20000, d.read, d.write, "vga")
    assert not p.is_ram_page(0xA0) and not p.is_ram_page(0xBF)
    assert p.is_ram_page(0x9F) and p.is_ram_page(0xC0)
    p.ram[0xA0000] = 0x99                     # the RAM behind is invisible
    p.write(0xA0000, 1, 0x42)
    assert d.log[-1] == ("w", 0xA0000, 1, 0x42)
    assert p.ram[0xA0000] == 0x99
    # a 4-byte access straddling RAM (0x9FFFE..F) and MMIO: byte by byte
    p.ram[0x9FFFE:0xA0000] = b"\x01\x02"
    d.log.clear()
    assert p.read(0x9FFFE, 4) == (0x88 << 24) | (0x42 << 16) | 0x0201
    assert d.log == [("r", 0xA0000, 1), ("r", 0xA0001, 1)]
    p.write(0x9FFFE, 4, 0xDDCCBBAA)
    assert p.ram[0x9FFFE] == 0xAA and p.ram[0x9FFFF] == 0xBB
    assert d.log[-2:] == [("w", 0xA0000, 1, 0xCC), ("w", 0xA0001, 1, 0xDD)]


def test_mmio_partial_page():
    p = PhysMem(MB)
    d = Dev()
    p.add_mmio(0x50010, 0x10, d.read, d.write, "tiny")
    assert not p.is_ram_page(0x50)
    p.write(0x50000, 4, 0x12345678)           # RAM part of the page
    assert p.read(0x50000, 4) == 0x12345678 and not d.log
    p.write(0x50010, 4, 7)
    assert d.log == [("w", 0x50010, 4, 7)]


def test_overlapping_regions_rejected():
    p = PhysMem(MB)
    p.add_mmio(0xFEC00000, 0x1000, Dev().read, Dev().write, "a")
    with pytest.raises(ValueError):
        p.add_mmio(0xFEC00800, 0x1000, Dev().read, Dev().write, "b")
    with pytest.raises(ValueError):
        p.add_rom(0xFEBFF000, b"\x00" * 0x1001)
    with pytest.raises(ValueError):
        p.add_mmio(0xFFFFF000, 0x2000, Dev().read, Dev().write, "c")
    p.add_mmio(0xFEC01000, 0x1000, Dev().read, Dev().write, "adjacent ok")


def test_peek_has_no_side_effects():
    p = PhysMem(MB)
    d = Dev()
    p.add_mmio(0xA0000, 0x1000, d.read, d.write, "vga")
    p.ram[0x10:0x14] = b"\x01\x02\x03\x04"
    c = dict(p.counters)
    assert p.peek(0x10, 4) == 0x04030201
    assert p.peek(0xA0000, 4) == 0xFFFFFFFF
    assert p.peek(0x40000000, 4) == 0xFFFFFFFF
    assert p.peek(0x9FFFE, 4) == 0xFFFF0000
    assert not d.log and p.counters == c


# ---------------------------------------------------------------- watch listeners
def test_watch_listener_called_before_store():
    p = PhysMem(MB)
    seen = []

    def listener(ppn, paddr, size):
        seen.append((ppn, paddr, size, p.read(paddr, size)))

    p.add_watch_listener(listener)
    p.write(0x5000, 4, 0x11111111)           # not watched: no call
    assert seen == []
    p.watch[5] = WATCH_PT
    p.write(0x5000, 4, 0x22222222)
    assert seen == [(5, 0x5000, 4, 0x11111111)]   # old value still there
    assert p.read(0x5000, 4) == 0x22222222


def test_watch_listener_straddle_and_bulk():
    p = PhysMem(MB)
    seen = []
    p.add_watch_listener(lambda ppn, a, s: seen.append((ppn, a, s)))
    p.watch[5] = WATCH_PT
    p.watch[6] = WATCH_CODE
    p.write(0x5FFE, 4, 0xAABBCCDD)
    assert seen == [(5, 0x5FFE, 2), (6, 0x6000, 2)]
    seen.clear()
    p.write_bytes(0x4F00, b"\x00" * 0x2200)   # pages 4,5,6,7: only 5 and 6 watched
    assert seen == [(5, 0x5000, 0x1000), (6, 0x6000, 0x1000)]
    seen.clear()
    p.write(0x7000, 4, 1)
    assert seen == []


def test_watch_on_rom_page_not_called_for_dropped_write():
    p = PhysMem(MB)
    seen = []
    p.add_watch_listener(lambda *a: seen.append(a))
    p.add_rom(0xF0000, b"\x00" * 0x1000)
    p.watch[0xF0] = WATCH_PT
    p.write(0xF0000, 4, 1)
    assert seen == [] and p.counters["rom_writes"] == 1


# ---------------------------------------------------------------- model check
_LAYOUT_RAM = 64 * 1024


def _model_layout():
    p = PhysMem(_LAYOUT_RAM)
    p.add_rom(0x8000, bytes(range(256)) * 8)                 # 2 KiB ROM inside RAM
    p.add_rom(_LAYOUT_RAM - 0x100, b"\xC3" * 0x200)          # straddles RAM end
    regs = bytearray(0x40)

    def mr(a, s):
        o = a - 0xC000
        return int.from_bytes(regs[o:o + s], "little")

    def mw(a, s, v):
        o = a - 0xC000
        regs[o:o + s] = v.to_bytes(s, "little")

    p.add_mmio(0xC000, 0x40, mr, mw, "regs")
    return p


def _kind(addr):
    if 0x8000 <= addr < 0x8800 or _LAYOUT_RAM - 0x100 <= addr < _LAYOUT_RAM + 0x100:
        return "rom"
    if 0xC000 <= addr < 0xC040:
        return "mmio"
    if addr < _LAYOUT_RAM:
        return "ram"
    return "none"


def _initial_model():
    p = _model_layout()
    out = bytearray()
    for a in range(0x11000 + 16):
        k = _kind(a)
        out.append(p.peek(a, 1) if k in ("rom", "ram") else 0 if k == "mmio" else 0xFF)
    return bytes(out)


_INITIAL = _initial_model()


@given(st.lists(st.tuples(st.integers(0, 0x11000), st.sampled_from([1, 2, 4, 8]),
                          st.integers(0, (1 << 64) - 1), st.booleans()),
                max_size=40))
@settings(max_examples=150, deadline=None)
def test_against_byte_model(ops):
    p = _model_layout()
    model = bytearray(_INITIAL)
    for addr, size, value, is_write in ops:
        if is_write:
            p.write(addr, size, value)
            for i in range(size):
                if _kind(addr + i) in ("ram", "mmio"):
                    model[addr + i] = (value >> (8 * i)) & 0xFF
        else:
            expect = sum(model[addr + i] << (8 * i) for i in range(size))
            assert p.read(addr, size) == expect
            assert p.read_bytes(addr, size) == expect.to_bytes(size, "little")
