"""VGA in 80x25 colour text mode: the memory window, the registers, the screen.

What a BIOS and Linux's early console (vgacon) touch is modelled; the rest of
the VGA is stored so that a guest reads back what it wrote.

Memory (``vram``, 128 KiB, MMIO at 0xA0000-0xBFFFF)
    One flat bytearray behind the whole window: the text screen at 0xB8000
    (offset 0x18000, 32 KiB, character byte then attribute byte per cell), the
    monochrome window at 0xB0000 and the 64 KiB graphics window at 0xA0000 are
    plain storage.  The planar machinery (map mask, read/write modes, latches,
    odd/even, the memory-map select of GC register 6) is not modelled, so a
    font a guest uploads to plane 2 is stored but not used: the screen is
    always drawn with the built-in font (vgafont.py).

Registers (ports; every index and value is accepted and leaves a defined state)
    0x3C2 w / 0x3CC r   miscellaneous output; bit 0 puts the CRTC and input
                        status 1 at 0x3D4/0x3D5/0x3DA (1) or 0x3B4/0x3B5/0x3BA
                        (0); the inactive set reads 0xFF and ignores writes
    0x3D4/0x3D5         CRTC index/data (64 registers; 0x0A/0x0B cursor shape,
                        0x0C/0x0D start address, 0x0E/0x0F cursor location,
                        0x11 bit 7 write-protects 0x00-0x07 except bit 4 of 0x07)
    0x3C4/0x3C5         sequencer (8 registers; 0x01 bit 0 = 8-dot characters,
                        bit 5 = screen off)
    0x3CE/0x3CF         graphics controller (16 registers, stored)
    0x3C0/0x3C1         attribute controller: 0x3C0 alternates between index
                        and data (a flip-flop, reset by reading input status 1);
                        index bit 5 (PAS) set = the palette drives the screen,
                        clear = the screen shows the overscan colour and the
                        palette registers 0x00-0x0F may be written; 0x3C1 reads
                        the indexed register
    0x3DA r             input status 1: bit 3 vertical retrace, bit 0 display
                        disabled (horizontal or vertical blanking), both from
                        virtual time with the 720x400 70 Hz timing of mode 3;
                        writing it sets the feature control register (read 0x3CA)
    0x3C6, 0x3C7-0x3C9  DAC pixel mask, read index / state, write index, data
                        (three 6-bit components per entry, auto-increment)
    0x3C2 r, 0x3C3      input status 0 (reads 0: no retrace interrupt pending),
                        video subsystem enable

The power-on state (``reset()``) is mode 3 as the video BIOS leaves it: the
standard register set, the EGA-compatible DAC palette and a blank screen of
light-grey spaces.  Our BIOS has no video ROM of its own, so this is where
that state comes from.

The screen
    ``text()`` reads the 25 rows of 80 cells from the CRTC start address
    (character units, wrapping inside the 32 KiB text window), decodes CP437
    and strips trailing spaces; ``cursor()`` is the cursor location relative
    to the start address; ``render()`` draws the screen as an RGB numpy array
    (400 x 720, or 400 x 640 with 8-dot characters) through the attribute
    palette, colour select and the DAC, with blink, underline, the 9th-column
    rule for line-graphics characters and the cursor.  The geometry is fixed
    at 80x25 cells of 16 scan lines (the CRTC timing registers are stored,
    not interpreted), and graphics modes are not drawn.
"""
import numpy as np

from . import vgafont

VGA_BASE = 0xA0000
VGA_SIZE = 0x20000
TEXT_OFFSET = 0x18000          # 0xB8000 inside the window
TEXT_SIZE = 0x8000
TEXT_CELLS = TEXT_SIZE // 2    # the CRTC's character addresses wrap here
COLS, ROWS = 80, 25
CHAR_HEIGHT = 16

# Mode 3's timing: 28.322 MHz dot clock, 900 dots a line, 449 lines a frame
# (31.78 us lines, 14.27 ms frames = 70 Hz); 720 dots and 400 lines are shown,
# vertical retrace covers lines 412-413.
LINE_NS = 31_778
ACTIVE_NS = 25_422
FRAME_LINES = 449
FRAME_NS = LINE_NS * FRAME_LINES
VISIBLE_LINES = 400
VRETRACE_FIRST, VRETRACE_END = 412, 414

# Mode 3 register values (the VGA BIOS parameter table for mode 3).
MODE3_MISC = 0x67
MODE3_SEQ = (0x03, 0x00, 0x03, 0x00, 0x02)
MODE3_CRTC = (0x5F, 0x4F, 0x50, 0x82, 0x55, 0x81, 0xBF, 0x1F, 0x00, 0x4F, 0x0D, 0x0E,
              0x00, 0x00, 0x00, 0x00, 0x9C, 0x8E, 0x8F, 0x28, 0x1F, 0x96, 0xB9, 0xA3, 0xFF)
MODE3_GC = (0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0E, 0x00, 0xFF)
MODE3_ATTR = (0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07,
              0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F,
              0x0C, 0x00, 0x0F, 0x08, 0x00)
ATTR_REGS = 0x15               # 0x00-0x14 exist; other indices read 0

# CRTC registers
CR_MAX_SCAN = 0x09
CR_CURSOR_START = 0x0A
CR_CURSOR_END = 0x0B
CR_START_HI, CR_START_LO = 0x0C, 0x0D
CR_CURSOR_HI, CR_CURSOR_LO = 0x0E, 0x0F
CR_VRETRACE_END = 0x11         # bit 7: registers 0-7 write-protected
CR_UNDERLINE = 0x14
# attribute controller registers
AR_MODE = 0x10                 # bit 2 line graphics, bit 3 blink, bit 7 P54S
AR_OVERSCAN = 0x11
AR_PLANE_ENABLE = 0x12
AR_COLOR_SELECT = 0x14
AR_PAS = 0x20                  # the index register's palette address source bit


def _ega_dac():
    """The 64 EGA colours (rgbRGB bits: 2/3 + 1/3 intensity), then black."""
    dac = bytearray(256 * 3)
    for i in range(64):
        dac[3 * i + 0] = 0x2A * (i >> 2 & 1) + 0x15 * (i >> 5 & 1)
        dac[3 * i + 1] = 0x2A * (i >> 1 & 1) + 0x15 * (i >> 4 & 1)
        dac[3 * i + 2] = 0x2A * (i & 1) + 0x15 * (i >> 3 & 1)
    return dac


def _glyph_tables():
    """Glyph pixels as bool arrays [code, line, column]: 8 wide; 9 wide with
    a blank 9th column; 9 wide with the line-graphics rule (codes 0xC0-0xDF
    repeat their 8th column, so box drawings join up)."""
    rows = np.frombuffer(vgafont.GLYPHS, dtype=np.uint8).reshape(256, CHAR_HEIGHT, 1)
    g8 = np.unpackbits(rows, axis=2).astype(bool)
    g9 = np.zeros((256, CHAR_HEIGHT, 9), dtype=bool)
    g9[:, :, :8] = g8
    g9_lge = g9.copy()
    g9_lge[0xC0:0xE0, :, 8] = g8[0xC0:0xE0, :, 7]
    return g8, g9, g9_lge


_G8, _G9, _G9_LGE = _glyph_tables()
_DISPLAY_CHARS = tuple(" " if c == "\x00" else c for c in vgafont.CP437)


class VGA:
    def __init__(self, bus):
        self.bus = bus
        self.clock = bus.clock
        self.vram = bytearray(VGA_SIZE)
        self._vram_np = np.frombuffer(self.vram, dtype=np.uint8)
        self.crtc = bytearray(64)
        self.seq = bytearray(8)
        self.gc = bytearray(16)
        self.attr = bytearray(32)
        self.dac = bytearray(256 * 3)
        self.counters = {"mmio_reads": 0, "mmio_writes": 0}
        self.reset()
        bus.phys.add_mmio(VGA_BASE, VGA_SIZE, self.mmio_read, self.mmio_write, name="vga")
        ports = bus.ports
        # Byte registers only: a word OUT to 0x3D4 (index in AL, data in AH)
        # reaches index then data through the port bus's split, as on an ISA VGA.
        ports.register(0x3B4, 2, read=self.port_read, write=self.port_write,
                       name="vga-mono-crtc", sizes=(1,))
        ports.register(0x3BA, 1, read=self.port_read, write=self.port_write,
                       name="vga-mono-status", sizes=(1,))
        ports.register(0x3C0, 16, read=self.port_read, write=self.port_write,
                       name="vga", sizes=(1,))
        ports.register(0x3D4, 2, read=self.port_read, write=self.port_write,
                       name="vga-crtc", sizes=(1,))
        ports.register(0x3DA, 1, read=self.port_read, write=self.port_write,
                       name="vga-status", sizes=(1,))

    def reset(self):
        """Mode 3 as the video BIOS sets it, with a blank screen."""
        self.misc = MODE3_MISC
        self.feature = 0
        self.video_enable = 1
        self.crtc[:] = bytes(64)
        self.crtc[:len(MODE3_CRTC)] = bytes(MODE3_CRTC)
        self.crtc_index = 0
        self.seq[:] = bytes(8)
        self.seq[:len(MODE3_SEQ)] = bytes(MODE3_SEQ)
        self.seq_index = 0
        self.gc[:] = bytes(16)
        self.gc[:len(MODE3_GC)] = bytes(MODE3_GC)
        self.gc_index = 0
        self.attr[:] = bytes(32)
        self.attr[:len(MODE3_ATTR)] = bytes(MODE3_ATTR)
        self.attr_index = AR_PAS
        self.attr_flipflop = False         # False: the next 0x3C0 write is an index
        self.dac[:] = _ega_dac()
        self.pel_mask = 0xFF
        self.dac_read_index = 0
        self.dac_write_index = 0
        self.dac_component = 0
        self.dac_reading = False           # 0x3C7 reads 3 after a read index was set
        self._dac_latch = [0, 0, 0]
        self.vram[:] = bytes(VGA_SIZE)
        self.vram[TEXT_OFFSET:TEXT_OFFSET + TEXT_SIZE] = b"\x20\x07" * TEXT_CELLS

    # --- the memory window ------------------------------------------------------------
    def mmio_read(self, addr, size):
        self.counters["mmio_reads"] += 1
        off = addr - VGA_BASE
        if 0 <= off and off + size <= VGA_SIZE:
            return int.from_bytes(self.vram[off:off + size], "little")
        v = 0
        for i in range(size):
            v |= self.vram[(off + i) % VGA_SIZE] << (8 * i)
        return v

    def mmio_write(self, addr, size, value):
        self.counters["mmio_writes"] += 1
        off = addr - VGA_BASE
        value &= (1 << (8 * size)) - 1
        if 0 <= off and off + size <= VGA_SIZE:
            self.vram[off:off + size] = value.to_bytes(size, "little")
            return
        for i in range(size):
            self.vram[(off + i) % VGA_SIZE] = (value >> (8 * i)) & 0xFF

    @property
    def text_memory(self):
        """The 32 KiB at 0xB8000 (a view into vram)."""
        return memoryview(self.vram)[TEXT_OFFSET:TEXT_OFFSET + TEXT_SIZE]

    # --- ports ------------------------------------------------------------------------
    def _color(self):
        return self.misc & 1

    def port_read(self, port, size):
        if port in (0x3D4, 0x3D5, 0x3DA) and not self._color():
            return 0xFF
        if port in (0x3B4, 0x3B5, 0x3BA) and self._color():
            return 0xFF
        if port in (0x3D4, 0x3B4):
            return self.crtc_index
        if port in (0x3D5, 0x3B5):
            return self.crtc[self.crtc_index]
        if port in (0x3DA, 0x3BA):
            self.attr_flipflop = False
            return self.input_status_1()
        if port == 0x3C0:
            return self.attr_index
        if port == 0x3C1:
            i = self.attr_index & 0x1F
            return self.attr[i] if i < ATTR_REGS else 0
        if port == 0x3C2:
            return 0x00
        if port == 0x3C3:
            return self.video_enable
        if port == 0x3C4:
            return self.seq_index
        if port == 0x3C5:
            return self.seq[self.seq_index]
        if port == 0x3C6:
            return self.pel_mask
        if port == 0x3C7:
            return 0x03 if self.dac_reading else 0x00
        if port == 0x3C8:
            return self.dac_write_index
        if port == 0x3C9:
            return self._dac_read()
        if port == 0x3CA:
            return self.feature
        if port == 0x3CC:
            return self.misc
        if port == 0x3CE:
            return self.gc_index
        if port == 0x3CF:
            return self.gc[self.gc_index]
        return 0xFF

    def port_write(self, port, size, value):
        value &= 0xFF
        if port in (0x3D4, 0x3D5, 0x3DA) and not self._color():
            return
        if port in (0x3B4, 0x3B5, 0x3BA) and self._color():
            return
        if port in (0x3D4, 0x3B4):
            self.crtc_index = value & 0x3F
        elif port in (0x3D5, 0x3B5):
            self._crtc_write(self.crtc_index, value)
        elif port in (0x3DA, 0x3BA):
            self.feature = value
        elif port == 0x3C0:
            self._attr_write(value)
        elif port == 0x3C2:
            self.misc = value
        elif port == 0x3C3:
            self.video_enable = value & 1
        elif port == 0x3C4:
            self.seq_index = value & 0x07
        elif port == 0x3C5:
            self.seq[self.seq_index] = value
        elif port == 0x3C6:
            self.pel_mask = value
        elif port == 0x3C7:
            self.dac_read_index = value
            self.dac_component = 0
            self.dac_reading = True
        elif port == 0x3C8:
            self.dac_write_index = value
            self.dac_component = 0
            self.dac_reading = False
        elif port == 0x3C9:
            self._dac_write(value)
        elif port == 0x3CE:
            self.gc_index = value & 0x0F
        elif port == 0x3CF:
            self.gc[self.gc_index] = value
        # 0x3C1 (read-only on the VGA), 0x3CA/0x3CC (read ports): ignored

    def _crtc_write(self, index, value):
        if index <= 0x07 and self.crtc[CR_VRETRACE_END] & 0x80:
            if index != 0x07:
                return
            # Only the line-compare bit 8 stays writable in the overflow register.
            value = (self.crtc[0x07] & ~0x10) | (value & 0x10)
        self.crtc[index] = value

    def _attr_write(self, value):
        if not self.attr_flipflop:
            self.attr_index = value & 0x3F
        else:
            i = self.attr_index & 0x1F
            # Palette registers take writes only while the palette is
            # disconnected from the screen (PAS clear).
            if i < 0x10:
                if not self.attr_index & AR_PAS:
                    self.attr[i] = value & 0x3F
            elif i < ATTR_REGS:
                self.attr[i] = value
        self.attr_flipflop = not self.attr_flipflop

    def _dac_write(self, value):
        self._dac_latch[self.dac_component] = value & 0x3F
        self.dac_component += 1
        if self.dac_component == 3:
            i = self.dac_write_index * 3
            self.dac[i:i + 3] = bytes(self._dac_latch)
            self.dac_component = 0
            self.dac_write_index = (self.dac_write_index + 1) & 0xFF

    def _dac_read(self):
        v = self.dac[self.dac_read_index * 3 + self.dac_component]
        self.dac_component += 1
        if self.dac_component == 3:
            self.dac_component = 0
            self.dac_read_index = (self.dac_read_index + 1) & 0xFF
        return v

    def input_status_1(self):
        """Bit 3: in vertical retrace; bit 0: display disabled (blanking)."""
        t = self.clock.now() % FRAME_NS
        line, pos = divmod(t, LINE_NS)
        v = 0
        if line >= VISIBLE_LINES or pos >= ACTIVE_NS:
            v |= 0x01
        if VRETRACE_FIRST <= line < VRETRACE_END:
            v |= 0x08
        return v

    # --- the screen -------------------------------------------------------------------
    def start_address(self):
        """First character shown (character units into the text window)."""
        return (self.crtc[CR_START_HI] << 8 | self.crtc[CR_START_LO]) % TEXT_CELLS

    def cursor_address(self):
        return (self.crtc[CR_CURSOR_HI] << 8 | self.crtc[CR_CURSOR_LO]) % TEXT_CELLS

    def cursor(self):
        """(row, col) of the cursor relative to the start address; row may be
        25 or more when the cursor sits below the visible screen."""
        rel = (self.cursor_address() - self.start_address()) % TEXT_CELLS
        return divmod(rel, COLS)

    def cursor_visible(self):
        start = self.crtc[CR_CURSOR_START]
        end = self.crtc[CR_CURSOR_END] & 0x1F
        row, _ = self.cursor()
        return not start & 0x20 and (start & 0x1F) <= end and row < ROWS

    def _cells(self):
        """(chars, attrs) of the visible screen, each a (25, 80) uint8 array."""
        idx = (self.start_address() + np.arange(ROWS * COLS)) % TEXT_CELLS
        text = self._vram_np[TEXT_OFFSET:TEXT_OFFSET + TEXT_SIZE]
        chars = text[idx * 2].reshape(ROWS, COLS)
        attrs = text[idx * 2 + 1].reshape(ROWS, COLS)
        return chars, attrs

    def lines(self):
        """The 25 screen lines as str (CP437 decoded, trailing spaces stripped)."""
        chars, _ = self._cells()
        table = _DISPLAY_CHARS
        return ["".join(table[c] for c in row.tolist()).rstrip(" ") for row in chars]

    def text(self):
        """The screen as one str: 25 lines joined by newlines."""
        return "\n".join(self.lines())

    def _palette_rgb(self):
        """RGB (16, 3) uint8 for the 16 attribute colours, through the
        attribute palette, colour plane enable, colour select, pixel mask and DAC."""
        a = self.attr
        out = np.zeros((16, 3), dtype=np.uint8)
        for n in range(16):
            out[n] = self._dac_rgb(self._dac_index(n & a[AR_PLANE_ENABLE] & 0x0F))
        return out

    def _dac_index(self, n):
        a = self.attr
        p = a[n] & 0x3F
        if a[AR_MODE] & 0x80:
            p = (p & 0x0F) | (a[AR_COLOR_SELECT] & 0x03) << 4
        p |= (a[AR_COLOR_SELECT] & 0x0C) << 4
        return p & self.pel_mask

    def _dac_rgb(self, index):
        r, g, b = self.dac[3 * index: 3 * index + 3]
        # 6-bit DAC levels to 8 bits: 0x3F -> 0xFF, 0x2A -> 0xAA, 0x15 -> 0x55
        return [(c << 2) | (c >> 4) for c in (r, g, b)]

    def render(self, cursor=True, blink_on=True):
        """The screen as an RGB image: numpy uint8 (400, 720, 3) (640 wide
        with 8-dot characters).  ``blink_on``: whether blinking characters
        show their foreground in this frame; ``cursor``: draw the cursor."""
        width = 8 if self.seq[1] & 0x01 else 9
        h, w = ROWS * CHAR_HEIGHT, COLS * width
        if self.seq[1] & 0x20:                           # screen off
            return np.zeros((h, w, 3), dtype=np.uint8)
        if not self.attr_index & AR_PAS:                 # palette disconnected
            img = np.empty((h, w, 3), dtype=np.uint8)
            img[:, :] = self._dac_rgb(self._dac_index_overscan())
            return img
        chars, attrs = self._cells()
        mode = self.attr[AR_MODE]
        if width == 8:
            table = _G8
        else:
            table = _G9_LGE if mode & 0x04 else _G9
        pix = table[chars]                               # (25, 80, 16, width) bool, a copy
        fg = attrs & 0x0F
        bg = attrs >> 4
        if mode & 0x08:                                  # bit 7 of the attribute blinks
            bg = bg & 0x07
            if not blink_on:
                pix &= ~(attrs >= 0x80)[:, :, None, None]
        ul = self.crtc[CR_UNDERLINE] & 0x1F
        if ul < CHAR_HEIGHT:
            under = (attrs & 0x77) == 0x01
            if under.any():
                pix[:, :, ul, :] |= under[:, :, None]
        if cursor and self.cursor_visible():
            row, col = self.cursor()
            first = self.crtc[CR_CURSOR_START] & 0x1F
            last = min(self.crtc[CR_CURSOR_END] & 0x1F, CHAR_HEIGHT - 1)
            if first < CHAR_HEIGHT:
                pix[row, col, first:last + 1, :] = True
        rgb = self._palette_rgb()
        fg_rgb = rgb[fg][:, :, None, None, :]
        bg_rgb = rgb[bg][:, :, None, None, :]
        img = np.where(pix[..., None], fg_rgb, bg_rgb)   # (25, 80, 16, width, 3)
        return np.ascontiguousarray(img.transpose(0, 2, 1, 3, 4).reshape(h, w, 3))

    def frame_key(self):
        """Everything render() depends on but its arguments, as bytes: equal
        keys give equal images (the window skips redrawing then)."""
        return b"".join((self.vram[TEXT_OFFSET:TEXT_OFFSET + TEXT_SIZE], self.crtc, self.seq,
                         self.attr, self.dac, bytes((self.attr_index, self.pel_mask))))

    def _dac_index_overscan(self):
        return self.attr[AR_OVERSCAN] & self.pel_mask
