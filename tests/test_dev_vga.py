"""VGA text mode: memory window, registers, text/cursor views, rendering, PNG."""
import random
import struct
import zlib

import numpy as np
import pytest

from emu.devices.base import DeviceBus
from emu.devices.clock import VirtualClock
from emu.devices.dma import DMA
from emu.devices.portbus import PortBus
from emu.devices import vga as V
from emu.devices import vgafont
from emu.devices.vga import VGA
from emu.frontend.screenshot import encode_png, save_png, text_dump
from emu.mmu.physmem import PhysMem

NS_PER_INSN = 10


class Machine:
    """A DeviceBus made of real parts, with a clock driven by ``insns``."""

    def __init__(self):
        self.insns = 0
        self.ports = PortBus()
        self.phys = PhysMem(1 << 20)
        self.clock = VirtualClock(lambda: self.insns, NS_PER_INSN)
        self.bus = DeviceBus(self.ports, self.phys, DMA(self.phys), self.clock)
        self.vga = VGA(self.bus)

    def at_ns(self, ns):
        self.insns = -(-ns // NS_PER_INSN)          # the first instruction at or after ns

    def outb(self, port, value):
        self.ports.write(port, 1, value)

    def inb(self, port):
        return self.ports.read(port, 1)

    def crtc(self, index, value=None):
        self.outb(0x3D4, index)
        if value is not None:
            self.outb(0x3D5, value)
        return self.inb(0x3D5)

    def put(self, row, col, text, attr=0x07, base=0xB8000):
        for i, ch in enumerate(text.encode("cp437")):
            self.phys.write(base + 2 * (row * 80 + col + i), 2, ch | attr << 8)


@pytest.fixture
def m():
    return Machine()


WHITE = [0xFF, 0xFF, 0xFF]
BLUE = [0x00, 0x00, 0xAA]
LIGHT_GREY = [0xAA, 0xAA, 0xAA]
BLACK = [0, 0, 0]


def glyph_bits(code):
    return np.unpackbits(np.frombuffer(vgafont.glyph(code), dtype=np.uint8)).reshape(16, 8)


# --- memory and the text view ------------------------------------------------------------

def test_power_on_screen_is_blank_mode3(m):
    assert m.vga.text() == "\n" * 24
    assert m.vga.lines() == [""] * 25
    assert m.vga.cursor() == (0, 0)
    assert m.inb(0x3CC) == 0x67
    assert m.phys.read(0xB8000, 2) == 0x0720
    assert m.phys.describe(0xA0000) == "mmio:vga"
    assert m.phys.describe(0xBFFFF) == "mmio:vga"


def test_characters_and_attributes_through_mmio(m):
    m.put(0, 0, "Hello, VGA", attr=0x1F)
    m.put(24, 70, "bottom")
    assert m.vga.lines()[0] == "Hello, VGA"
    assert m.vga.lines()[24] == " " * 70 + "bottom"
    assert m.phys.read(0xB8000, 2) == 0x1F48          # 'H' on attribute 0x1F
    assert m.vga.text_memory[1] == 0x1F
    # dword store: two cells at once
    m.phys.write(0xB8000 + 160, 4, 0x0742_0741)
    assert m.vga.lines()[1] == "AB"
    assert m.phys.read(0xB8000 + 160, 4) == 0x07420741
    # bytes through write_bytes (the DMA/loader path) land the same way
    m.phys.write_bytes(0xB8000 + 320, b"x\x07y\x07")
    assert m.vga.lines()[2] == "xy"


def test_cp437_decoding_and_trailing_space_strip(m):
    for i, code in enumerate((0xC9, 0xCD, 0xBB, 0x01, 0x00, 0x03, 0xB1, 0xE0, 0x20, 0x20)):
        m.phys.write(0xB8000 + 2 * i, 1, code)
    assert m.vga.lines()[0] == "╔═╗☺ ♥▒α"
    m.put(1, 0, "a  b   ")
    assert m.vga.lines()[1] == "a  b"


def test_graphics_window_is_plain_storage(m):
    m.phys.write(0xA0000, 4, 0xDEADBEEF)
    m.phys.write(0xAFFFE, 2, 0x1234)
    m.phys.write(0xB0000, 1, 0x77)
    assert m.phys.read(0xA0000, 4) == 0xDEADBEEF
    assert m.phys.read(0xAFFFE, 2) == 0x1234
    assert m.phys.read(0xB0000, 1) == 0x77
    assert m.vga.text() == "\n" * 24                   # none of it is the text screen
    # an access straddling the end of the window reaches unmapped/RAM beyond it
    m.phys.write(0xBFFFF, 2, 0xAB41)
    assert m.phys.read(0xBFFFF, 1) == 0x41


def test_start_address_scrolls(m):
    for row in range(40):
        m.put(row, 0, "line %d" % row)
    m.crtc(0x0C, (80 * 5) >> 8)
    m.crtc(0x0D, (80 * 5) & 0xFF)
    lines = m.vga.lines()
    assert lines[0] == "line 5" and lines[24] == "line 29"
    # Linux's vgacon: a word OUT writes index (AL) then data (AH)
    m.ports.write(0x3D4, 2, 0x0C | (((80 * 10) >> 8) << 8))
    m.ports.write(0x3D4, 2, 0x0D | (((80 * 10) & 0xFF) << 8))
    assert m.vga.start_address() == 800
    assert m.vga.lines()[0] == "line 10"


def test_start_address_wraps_inside_the_text_window(m):
    last = V.TEXT_CELLS - 80                      # the last 80-character line
    m.put(0, 0, "first")
    m.phys.write(0xB8000 + 2 * last, 2, 0x0700 | ord("Z"))
    m.crtc(0x0C, last >> 8)
    m.crtc(0x0D, last & 0xFF)
    lines = m.vga.lines()
    assert lines[0] == "Z"
    assert lines[1] == "first"


def test_cursor_registers(m):
    m.crtc(0x0E, (80 * 3 + 7) >> 8)
    m.crtc(0x0F, (80 * 3 + 7) & 0xFF)
    assert m.vga.cursor() == (3, 7)
    assert m.vga.cursor_visible()
    m.crtc(0x0D, 80)                                  # scroll one line: cursor moves up
    assert m.vga.cursor() == (2, 7)
    m.crtc(0x0A, 0x20 | 0x0D)                         # cursor disable bit
    assert not m.vga.cursor_visible()
    m.crtc(0x0A, 0x0F)
    m.crtc(0x0B, 0x0E)                                # start > end: no cursor
    assert not m.vga.cursor_visible()
    assert m.crtc(0x0A) == 0x0F and m.crtc(0x0B) == 0x0E


# --- registers -------------------------------------------------------------------------

def test_crtc_index_data_and_write_protect(m):
    m.outb(0x3D4, 0x13)
    assert m.inb(0x3D4) == 0x13
    assert m.inb(0x3D5) == 0x28                       # mode 3 offset register
    m.outb(0x3D5, 0x50)
    assert m.crtc(0x13) == 0x50
    assert m.crtc(0x11) & 0x80                        # mode 3 protects 0-7
    before = m.crtc(0x00)
    m.crtc(0x00, 0x12)
    assert m.crtc(0x00) == before
    m.crtc(0x07, 0xFF)                                # only bit 4 (line compare 8) goes in
    assert m.crtc(0x07) == 0x1F
    m.crtc(0x07, 0x00)
    assert m.crtc(0x07) == 0x0F
    m.crtc(0x11, 0x0E)                                # unprotect
    m.crtc(0x00, 0x12)
    assert m.crtc(0x00) == 0x12
    m.outb(0x3D4, 0xFF)                               # any index: defined, masked
    assert m.inb(0x3D4) == 0x3F


def test_misc_output_selects_crtc_port_set(m):
    assert m.crtc(0x0F, 0x42) == 0x42
    m.outb(0x3C2, 0x66)                               # bit 0 clear: monochrome ports
    assert m.inb(0x3CC) == 0x66
    assert m.inb(0x3D5) == 0xFF and m.inb(0x3DA) == 0xFF
    m.outb(0x3D4, 0x0F)                               # ignored
    m.outb(0x3B4, 0x0F)
    assert m.inb(0x3B5) == 0x42
    m.outb(0x3B5, 0x43)
    m.outb(0x3C2, 0x67)
    assert m.inb(0x3B5) == 0xFF
    assert m.crtc(0x0F) == 0x43


def test_sequencer_and_graphics_controller_store(m):
    m.outb(0x3C4, 0x02)
    assert m.inb(0x3C5) == 0x03
    m.outb(0x3C5, 0x04)
    assert m.inb(0x3C5) == 0x04
    m.outb(0x3C4, 0xFA)
    assert m.inb(0x3C4) == 0x02                       # 3-bit index
    m.outb(0x3CE, 0x06)
    assert m.inb(0x3CF) == 0x0E
    m.outb(0x3CF, 0x05)
    assert m.inb(0x3CF) == 0x05
    m.outb(0x3C3, 0xFF)
    assert m.inb(0x3C3) == 1


def test_attribute_controller_flip_flop(m):
    m.inb(0x3DA)                                      # reset: next write is an index
    m.outb(0x3C0, 0x30)                               # index 0x10 with PAS
    m.outb(0x3C0, 0x08)                               # data
    assert m.inb(0x3C0) == 0x30
    assert m.inb(0x3C1) == 0x08
    # the flip-flop is now at "index"; a stray data write after a status read
    m.outb(0x3C0, 0x34)                               # index 0x14
    m.inb(0x3DA)                                      # resets to index
    m.outb(0x3C0, 0x33)                               # so this is an index, not data
    assert m.inb(0x3C0) == 0x33
    m.outb(0x3C0, 0x0F)                               # data for 0x13 (pel panning)
    assert m.inb(0x3C1) == 0x0F
    m.outb(0x3C0, 0x34)
    assert m.inb(0x3C1) == 0x00                       # colour select untouched
    # reading 0x3C0/0x3C1 does not toggle it
    m.inb(0x3DA)
    m.outb(0x3C0, 0x31)
    m.inb(0x3C0)
    m.inb(0x3C1)
    m.outb(0x3C0, 0x07)
    assert m.inb(0x3C1) == 0x07                       # overscan got the data


def test_palette_registers_need_pas_clear(m):
    m.inb(0x3DA)
    m.outb(0x3C0, 0x21)                               # palette 1, PAS set
    m.outb(0x3C0, 0x3C)
    assert m.inb(0x3C1) == 0x01                       # unchanged while the screen uses it
    m.inb(0x3DA)
    m.outb(0x3C0, 0x01)                               # palette 1, PAS clear
    m.outb(0x3C0, 0xFC)
    assert m.inb(0x3C1) == 0x3C                       # 6 bits stored
    m.outb(0x3C0, 0x20)                               # reconnect
    assert m.vga.attr_index & 0x20


def test_dac_palette_read_write(m):
    m.outb(0x3C8, 5)
    assert m.inb(0x3C7) == 0x00
    for v in (0x3F, 0x41, 0x01, 0x10, 0x20, 0x30):   # entries 5 and 6
        m.outb(0x3C9, v)
    assert m.inb(0x3C8) == 7
    m.outb(0x3C7, 5)
    assert m.inb(0x3C7) == 0x03
    assert [m.inb(0x3C9) for _ in range(6)] == [0x3F, 0x01, 0x01, 0x10, 0x20, 0x30]
    m.outb(0x3C7, 0xFF)                               # read index wraps to 0
    [m.inb(0x3C9) for _ in range(3)]
    assert [m.inb(0x3C9) for _ in range(3)] == [0, 0, 0]
    m.outb(0x3C6, 0x0F)
    assert m.inb(0x3C6) == 0x0F


def test_default_dac_is_the_ega_palette(m):
    m.outb(0x3C7, 0x14)                               # brown
    assert [m.inb(0x3C9) for _ in range(3)] == [0x2A, 0x15, 0x00]
    m.outb(0x3C7, 0x3F)
    assert [m.inb(0x3C9) for _ in range(3)] == [0x3F, 0x3F, 0x3F]


def test_input_status_1_follows_virtual_time(m):
    m.at_ns(0)
    assert m.inb(0x3DA) & 0x09 == 0x00                # drawing the first line
    m.at_ns(V.ACTIVE_NS + 100)
    assert m.inb(0x3DA) & 0x09 == 0x01                # horizontal blanking
    m.at_ns(V.LINE_NS * 405)
    assert m.inb(0x3DA) & 0x09 == 0x01                # vertical blanking, no retrace
    m.at_ns(V.LINE_NS * 412 + 10)
    assert m.inb(0x3DA) & 0x09 == 0x09                # vertical retrace
    m.at_ns(V.FRAME_NS + V.LINE_NS * 413)
    assert m.inb(0x3DA) & 0x08                        # next frame's retrace
    m.at_ns(V.FRAME_NS + V.LINE_NS * 414)
    assert not m.inb(0x3DA) & 0x08
    # a guest waiting for retrace polls: it sees it start once per frame
    starts = 0
    prev = 0
    for ns in range(0, 3 * V.FRAME_NS, 5_000):
        m.at_ns(ns)
        bit = m.inb(0x3DA) & 0x08
        starts += bool(bit and not prev)
        prev = bit
    assert starts == 3


def test_feature_control(m):
    m.outb(0x3DA, 0x03)
    assert m.inb(0x3CA) == 0x03


def test_reset_restores_mode3(m):
    m.put(0, 0, "junk")
    m.crtc(0x0D, 0x50)
    m.outb(0x3C2, 0x00)
    m.outb(0x3C8, 0)
    for _ in range(3):
        m.outb(0x3C9, 0x3F)
    m.vga.reset()
    assert m.vga.text() == "\n" * 24
    assert m.inb(0x3CC) == 0x67 and m.crtc(0x0D) == 0
    m.outb(0x3C7, 0)
    assert [m.inb(0x3C9) for _ in range(3)] == [0, 0, 0]


def test_register_fuzz_never_raises(m):
    rng = random.Random(1234)
    ports = [0x3B4, 0x3B5, 0x3BA] + list(range(0x3C0, 0x3D0)) + [0x3D4, 0x3D5, 0x3DA]
    for _ in range(20000):
        port = rng.choice(ports)
        size = rng.choice((1, 1, 1, 2, 4))
        if rng.random() < 0.5:
            m.ports.write(port, size, rng.getrandbits(32))
        else:
            v = m.ports.read(port, size)
            assert 0 <= v < 1 << (8 * size)
        if rng.random() < 0.2:
            a = 0xA0000 + rng.randrange(0x20000)
            s = rng.choice((1, 2, 4))
            m.phys.write(a, s, rng.getrandbits(32))
            assert 0 <= m.phys.read(a, s) < 1 << (8 * s)
        if rng.random() < 0.001:
            m.at_ns(rng.getrandbits(40))
            img = m.vga.render()
            assert img.dtype == np.uint8 and img.shape[0] == 400 and img.shape[1] in (640, 720)
    assert m.ports.counters["handler_errors"] == 0, m.ports.last_error
    assert len(m.vga.lines()) == 25
    row, col = m.vga.cursor()
    assert 0 <= col < 80 and row >= 0


# --- rendering -------------------------------------------------------------------------

def test_render_glyph_pixels(m):
    m.put(0, 0, "A", attr=0x1F)                       # white on blue
    img = m.vga.render(cursor=False)
    assert img.shape == (400, 720, 3) and img.dtype == np.uint8
    cell = img[0:16, 0:9]
    bits = glyph_bits(0x41)
    expected = np.where(bits[..., None], np.array(WHITE, np.uint8), np.array(BLUE, np.uint8))
    assert (cell[:, :8] == expected).all()
    assert (cell[:, 8] == BLUE).all()                 # 9th column: background
    # the VGA 'A': a point at the top (line 2, column 3), full bar on line 7
    assert list(cell[2, 3]) == WHITE and list(cell[2, 2]) == BLUE
    assert (cell[7, 0:7] == WHITE).all()
    # the next cell is a light-grey-on-black space
    assert (img[0:16, 9:18] == BLACK).all()


def test_render_line_graphics_ninth_column(m):
    m.put(0, 0, "\u2500\u2500")                       # 0xC4: horizontal line
    img = m.vga.render(cursor=False)
    row = int(np.nonzero(glyph_bits(0xC4)[:, 0])[0][0])
    assert (img[row, 0:18] == LIGHT_GREY).all()       # continuous across the 9th column
    m.inb(0x3DA)
    m.outb(0x3C0, 0x30)
    m.outb(0x3C0, 0x08)                               # mode control without line graphics
    img = m.vga.render(cursor=False)
    assert list(img[row, 8]) == BLACK


def test_render_8_dot_mode(m):
    m.outb(0x3C4, 0x01)
    m.outb(0x3C5, 0x01)
    m.put(0, 1, "A", attr=0x1F)
    img = m.vga.render(cursor=False)
    assert img.shape == (400, 640, 3)
    assert list(img[2, 8 + 3]) == WHITE


def test_render_cursor_and_blink(m):
    m.crtc(0x0E, 0)
    m.crtc(0x0F, 81)                                  # row 1, col 1
    img = m.vga.render()
    cell = img[16:32, 9:18]
    assert (cell[13:15] == LIGHT_GREY).all()          # scan lines 13-14 (CRTC 0x0A/0x0B)
    assert (cell[:13] == BLACK).all() and (cell[15] == BLACK).all()
    assert (m.vga.render(cursor=False)[16:32, 9:18] == BLACK).all()
    m.put(2, 0, "A", attr=0x9F)                       # blinking white on blue
    on = m.vga.render(blink_on=True)
    off = m.vga.render(blink_on=False)
    assert list(on[32 + 2, 3]) == WHITE
    assert list(off[32 + 2, 3]) == BLUE
    assert list(off[32 + 2, 2]) == BLUE               # background bit 7 is blink, not bright


def test_render_follows_dac_and_palette(m):
    m.put(0, 0, "\u2588", attr=0x04)                  # full block in red
    assert list(m.vga.render()[5, 3]) == [0xAA, 0, 0]
    m.outb(0x3C8, 0x04)                               # DAC entry 4 -> green
    for v in (0x00, 0x3F, 0x00):
        m.outb(0x3C9, v)
    assert list(m.vga.render()[5, 3]) == [0, 0xFF, 0]
    m.inb(0x3DA)
    m.outb(0x3C0, 0x04)                               # palette 4 -> DAC 0x3F, PAS clear
    m.outb(0x3C0, 0x3F)
    assert (m.vga.render() == BLACK).all()            # screen shows overscan (0) meanwhile
    m.outb(0x3C0, 0x20)
    assert list(m.vga.render()[5, 3]) == WHITE
    m.outb(0x3C4, 0x01)
    m.outb(0x3C5, 0x20)                               # screen off
    assert not m.vga.render().any()


def test_render_underline_location(m):
    m.put(0, 0, " ", attr=0x01)
    assert (m.vga.render(cursor=False)[0:16, 0:9] == BLACK).all()
    m.crtc(0x14, 0x0F)                                # underline on scan line 15
    img = m.vga.render(cursor=False)
    assert (img[15, 0:9] == BLUE).all()
    assert (img[0:15, 0:9] == BLACK).all()


# --- screenshots ---------------------------------------------------------------------------

def decode_png(data):
    """Minimal PNG reader for what encode_png writes; checks every CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos = 8
    chunks = []
    while pos < len(data):
        length, = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        crc, = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks.append((kind, body))
        pos += 12 + length
    assert [k for k, _ in chunks][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, ctype, comp, filt, inter = struct.unpack(">IIBBBBB", chunks[0][1])
    raw = zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + 3 * width)
    assert (rows[:, 0] == 0).all()
    return (width, height, depth, ctype, comp, filt, inter), rows[:, 1:].reshape(height, width, 3)


def test_png_round_trip(m, tmp_path):
    m.put(0, 0, "A", attr=0x1F)
    path = tmp_path / "screen.png"
    save_png(m.vga, str(path))
    header, img = decode_png(path.read_bytes())
    assert header == (720, 400, 8, 2, 0, 0, 0)
    assert list(img[2, 3]) == WHITE and list(img[2, 2]) == BLUE
    assert (img == m.vga.render()).all()


def test_encode_png_rejects_bad_shapes():
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4), dtype=np.uint8))
    header, img = decode_png(encode_png(np.full((1, 2, 3), 7, dtype=np.uint8)))
    assert header[:2] == (2, 1) and (img == 7).all()


def test_text_dump(m, tmp_path):
    m.put(3, 2, "memtest ╔═╗")
    out = text_dump(m.vga, str(tmp_path / "screen.txt"))
    lines = out.split("\n")
    assert len(lines) == 26 and lines[-1] == ""
    assert lines[3] == "  memtest ╔═╗"
    assert (tmp_path / "screen.txt").read_text(encoding="utf-8") == out


def test_font_table_is_complete():
    assert len(vgafont.GLYPHS) == 256 * 16
    assert vgafont.glyph(0x00) == bytes(16)
    assert vgafont.glyph(0xDB) == b"\xff" * 16        # full block
    assert vgafont.CP437[0xC9] == "╔" and vgafont.CP437[0x01] == "☺"
    # distinct glyphs for the printable ASCII range
    assert len({vgafont.glyph(c) for c in range(0x21, 0x7F)}) == 0x7F - 0x21


def test_cpu_stores_reach_the_screen():
    """Real-mode code through the CPU: REP STOSW into B800:0, a word OUT to
    the CRTC, a load back from text memory."""
    from emu.api import Emu
    ports = PortBus()
    e = Emu(ram_size=1 << 20, ports=ports)
    clock = VirtualClock(e.cpu.clock, NS_PER_INSN)
    vga = VGA(DeviceBus(ports, e.phys, DMA(e.phys), clock))
    code = bytes.fromhex(
        "b800b8"      # mov ax, 0xB800
        "8ec0"        # mov es, ax
        "31ff"        # xor di, di
        "b8411f"      # mov ax, 0x1F41   ('A', white on blue)
        "b95000"      # mov cx, 80
        "f3ab"        # rep stosw
        "bad403"      # mov dx, 0x3D4
        "b80f05"      # mov ax, 0x050F   (CRTC 0x0F := 5)
        "ef"          # out dx, ax
        "26a19e00"    # mov ax, [es:0x9E]
        "f4")         # hlt
    e.mem_write(0x7C00, code)
    e.set_segment("cs", 0)
    e.reg_write("eip", 0x7C00)
    assert e.run(count=1000).reason == "hlt"
    assert vga.lines()[0] == "A" * 80 and vga.lines()[1] == ""
    assert vga.cursor() == (0, 5)
    assert e.reg_read("ax") == 0x1F41
    assert list(vga.render(cursor=False)[7, 0]) == WHITE


def test_frame_key_tracks_what_render_shows(m):
    k0 = m.vga.frame_key()
    assert m.vga.frame_key() == k0
    m.put(0, 0, "x")
    k1 = m.vga.frame_key()
    assert k1 != k0
    m.crtc(0x0F, 3)                                   # cursor moves
    assert m.vga.frame_key() != k1
    k2 = m.vga.frame_key()
    m.outb(0x3C8, 1)
    m.outb(0x3C9, 0x3F)
    m.outb(0x3C9, 0x3F)
    m.outb(0x3C9, 0x3F)                               # a palette entry changes
    assert m.vga.frame_key() != k2
