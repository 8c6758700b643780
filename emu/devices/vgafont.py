"""The 8x16 VGA text-mode font (code page 437) as data, and where it comes from.

``GLYPHS`` holds 256 glyphs of 16 bytes each (4096 bytes): glyph ``c`` is
``GLYPHS[16*c : 16*c+16]``, one byte per scan line, top first, bit 7 the
leftmost pixel.  ``CP437`` maps each code to the Unicode character it shows
(the graphical reading of 0x00-0x1F and 0x7F, as on a PC screen).

Where the bitmaps come from
---------------------------
The glyphs were extracted (by ``build_from_psf`` below, run once; its output
is the table at the end of this file) from the VGA 8x16 console fonts of
Debian's ``console-setup-linux`` package (1.221), ``/usr/share/consolefonts/
*-VGA16.psf.gz``: for each CP437 code, the glyph that the fonts' Unicode
tables give for that code's character.  console-setup states: "All console
fonts are public domain by nature"; the BDF source of its VGA fonts is
``u_vga16.bdf``, whose notice (kept here as its licence asks) is:

    Copyright (c) 2000, 2001 by Dmitry Bolkhovityanov.  All Rights Reserved.

    Permission is hereby granted, free of charge, to any person obtaining a
    copy of this software and associated documentation files (the
    "Software"), to deal in the Software without restriction, including
    without limitation the rights to use, copy, modify, merge, publish,
    distribute, sublicense, and/or sell copies of the Software, and to
    permit persons to whom the Software is furnished to do so, subject to
    the following conditions:

    The above copyright notice and this permission notice shall be included
    in all copies or substantial portions of the Software.

    THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS
    OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF
    MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT.
    IN NO EVENT SHALL DMITRY BOLKHOVITYANOV BE LIABLE FOR ANY CLAIM, DAMAGES
    OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE,
    ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR
    OTHER DEALINGS IN THE SOFTWARE.

Two glyphs have no counterpart in those fonts (0x10 BLACK RIGHT-POINTING
POINTER and 0x11 BLACK LEFT-POINTING POINTER): ``_drawn_pointers`` draws them
here as filled triangles, 7 lines tall, the shape of the IBM glyphs.

Code 0x00 and 0xFF are blank, as on the VGA.

To regenerate: ``apt-get download console-setup-linux && dpkg -x *.deb x`` and
``python -m emu.devices.vgafont x/usr/share/consolefonts`` prints the table.
"""
import gzip
import os

# The characters a PC shows for the codes that are control codes in the
# cp437 codec (0x00-0x1F, 0x7F); 0x00 is shown blank.
_LOW = ("\u0020\u263A\u263B\u2665\u2666\u2663\u2660\u2022\u25D8\u25CB\u25D9\u2642\u2640\u266A"
        "\u266B\u263C\u25BA\u25C4\u2195\u203C\u00B6\u00A7\u25AC\u21A8\u2191\u2193\u2192\u2190"
        "\u221F\u2194\u25B2\u25BC")


def _cp437_table():
    out = []
    for code in range(256):
        if code < 0x20:
            out.append(_LOW[code])
        elif code == 0x7F:
            out.append("\u2302")
        else:
            out.append(bytes([code]).decode("cp437"))
    return tuple(out)


CP437 = _cp437_table()

GLYPH_HEIGHT = 16
GLYPH_WIDTH = 8


def glyph(code):
    """The 16 scan-line bytes of one character code (0-255)."""
    code &= 0xFF
    return GLYPHS[16 * code: 16 * code + 16]


# --- how the table was made (host-side tooling, not used at run time) -------

def _read_psf1(path):
    """{unicode code point: 16-byte bitmap} from a PSF1 font with a Unicode table."""
    with gzip.open(path) if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\x36\x04":
        raise ValueError("%s: not a PSF1 font" % path)
    mode, height = data[2], data[3]
    if height != GLYPH_HEIGHT or not mode & 0x02:
        raise ValueError("%s: need 8x16 glyphs with a Unicode table" % path)
    count = 512 if mode & 0x01 else 256
    bitmaps = [data[4 + i * height: 4 + (i + 1) * height] for i in range(count)]
    table = data[4 + count * height:]
    found = {}
    index = 0
    in_sequence = False     # 0xFFFE starts combining sequences: not single characters
    for pos in range(0, len(table) - 1, 2):
        if index >= count:
            break
        u = table[pos] | table[pos + 1] << 8
        if u == 0xFFFF:
            index += 1
            in_sequence = False
        elif u == 0xFFFE:
            in_sequence = True
        elif not in_sequence:
            found.setdefault(u, bitmaps[index])
    return found


def _drawn_pointers():
    """Filled triangles for 0x10 (pointing right) and 0x11 (pointing left)."""
    right = bytearray(16)
    left = bytearray(16)
    widths = (1, 2, 3, 4, 5, 7, 5, 4, 3, 2, 1)     # the widest line is the tip's row
    for i, w in enumerate(widths):
        bits = (0xFF << (8 - w)) & 0xFF
        right[2 + i] = bits
        left[2 + i] = int("{:08b}".format(bits)[::-1], 2)
    return bytes(right), bytes(left)


def build_from_psf(font_dir):
    """The 4096-byte table from the console-setup VGA16 fonts in ``font_dir``."""
    names = sorted(n for n in os.listdir(font_dir) if n.endswith("-VGA16.psf.gz"))
    # Uni2 first: the widest single-font coverage of CP437.
    names.sort(key=lambda n: not n.startswith("Uni2-"))
    found = {}
    for n in names:
        for u, bm in _read_psf1(os.path.join(font_dir, n)).items():
            found.setdefault(u, bm)
    right, left = _drawn_pointers()
    out = bytearray()
    for code in range(256):
        if code in (0x00, 0xFF):
            out += bytes(16)
        elif code == 0x10:
            out += right
        elif code == 0x11:
            out += left
        else:
            out += found[ord(CP437[code])]
    return bytes(out)


def format_table(table):
    """Python source for ``GLYPHS`` (one glyph a line, with its character)."""
    lines = ["GLYPHS = bytes.fromhex("]
    for code in range(256):
        ch = CP437[code]
        shown = ch if ch.isprintable() and ch not in " \\\"" else "U+%04X" % ord(ch)
        lines.append('    "%s"  # %02X %s' % (table[16 * code: 16 * code + 16].hex(), code, shown))
    lines.append(")")
    return "\n".join(lines) + "\n"


# --- the table -------------------------------------------------------------------
GLYPHS = bytes.fromhex(
    "00000000000000000000000000000000"  # 00 U+0020
    "00007e81a58181a59981817e00000000"  # 01 ☺
    "00007effdbffffdbe7ffff7e00000000"  # 02 ☻
    "000000006cfefefefe7c381000000000"  # 03 ♥
    "0000000010387cfe7c38100000000000"  # 04 ♦
    "000000183c3ce7e7e718183c00000000"  # 05 ♣
    "000000183c7effff7e18183c00000000"  # 06 ♠
    "000000000000183c3c18000000000000"  # 07 •
    "ffffffffffffe7c3c3e7ffffffffffff"  # 08 ◘
    "00003c42818181818181423c00000000"  # 09 ○
    "ffffc3bd7e7e7e7e7e7ebdc3ffffffff"  # 0A ◙
    "00001e060e1a78cccccccc7800000000"  # 0B ♂
    "00003c666666663c187e181800000000"  # 0C ♀
    "0000303c3e3230303070f0e000000000"  # 0D ♪
    "0000707f6f63636363e3e7c706000000"  # 0E ♫
    "00000010105428c62854101000000000"  # 0F ☼
    "000080c0e0f0f8fef8f0e0c080000000"  # 10 ►
    "00000103070f1f7f1f0f070301000000"  # 11 ◄
    "0000183c7e1818187e3c180000000000"  # 12 ↕
    "00006666666666666600666600000000"  # 13 ‼
    "00007fdbdbdb7b1b1b1b1b1b00000000"  # 14 ¶
    "007cc660386cc6c66c380cc67c000000"  # 15 §
    "00000000000000fefefefefe00000000"  # 16 ▬
    "0000183c7e1818187e3c187e00000000"  # 17 ↨
    "0000183c7e1818181818181800000000"  # 18 ↑
    "0000181818181818187e3c1800000000"  # 19 ↓
    "00000000000c06ff060c000000000000"  # 1A →
    "00000000003060ff6030000000000000"  # 1B ←
    "000000000000c0c0c0c0c0fe00000000"  # 1C ∟
    "00000000002466ff6624000000000000"  # 1D ↔
    "0000183c7e1818181818181800000000"  # 1E ▲
    "0000181818181818187e3c1800000000"  # 1F ▼
    "00000000000000000000000000000000"  # 20 U+0020
    "0000183c3c3c18181800181800000000"  # 21 !
    "00666666240000000000000000000000"  # 22 U+0022
    "0000006c6cfe6c6c6cfe6c6c00000000"  # 23 #
    "18187cc6c2c07c060686c67c18180000"  # 24 $
    "00000000c2c60c183060c68600000000"  # 25 %
    "0000386c6c3876dccccccc7600000000"  # 26 &
    "00303030200000000000000000000000"  # 27 '
    "00000c18303030303030180c00000000"  # 28 (
    "000030180c0c0c0c0c0c183000000000"  # 29 )
    "0000000000663cff3c66000000000000"  # 2A *
    "000000000018187e1818000000000000"  # 2B +
    "00000000000000000018181830000000"  # 2C ,
    "00000000000000fe0000000000000000"  # 2D -
    "00000000000000000000181800000000"  # 2E .
    "0000000002060c183060c08000000000"  # 2F /
    "0000386cc6c6d6d6c6c66c3800000000"  # 30 0
    "00001838781818181818187e00000000"  # 31 1
    "00007cc6060c183060c0c6fe00000000"  # 32 2
    "00007cc606063c060606c67c00000000"  # 33 3
    "00000c1c3c6cccfe0c0c0c1e00000000"  # 34 4
    "0000fec0c0c0fc060606c67c00000000"  # 35 5
    "00003860c0c0fcc6c6c6c67c00000000"  # 36 6
    "0000fec606060c183030303000000000"  # 37 7
    "00007cc6c6c67cc6c6c6c67c00000000"  # 38 8
    "00007cc6c6c67e0606060c7800000000"  # 39 9
    "00000000181800000018180000000000"  # 3A :
    "00000000181800000018183000000000"  # 3B ;
    "000000060c18306030180c0600000000"  # 3C <
    "00000000007e00007e00000000000000"  # 3D =
    "0000006030180c060c18306000000000"  # 3E >
    "00007cc6c60c18181800181800000000"  # 3F ?
    "0000007cc6c6dedededcc07c00000000"  # 40 @
    "000010386cc6c6fec6c6c6c600000000"  # 41 A
    "0000fc6666667c66666666fc00000000"  # 42 B
    "00003c66c2c0c0c0c0c2663c00000000"  # 43 C
    "0000f86c6666666666666cf800000000"  # 44 D
    "0000fe6662687868606266fe00000000"  # 45 E
    "0000fe6662687868606060f000000000"  # 46 F
    "00003c66c2c0c0dec6c6663a00000000"  # 47 G
    "0000c6c6c6c6fec6c6c6c6c600000000"  # 48 H
    "00003c18181818181818183c00000000"  # 49 I
    "00001e0c0c0c0c0ccccccc7800000000"  # 4A J
    "0000e666666c78786c6666e600000000"  # 4B K
    "0000f06060606060606266fe00000000"  # 4C L
    "0000c6eefefed6c6c6c6c6c600000000"  # 4D M
    "0000c6e6f6fedecec6c6c6c600000000"  # 4E N
    "00007cc6c6c6c6c6c6c6c67c00000000"  # 4F O
    "0000fc6666667c60606060f000000000"  # 50 P
    "00007cc6c6c6c6c6c6d6de7c0c0e0000"  # 51 Q
    "0000fc6666667c6c666666e600000000"  # 52 R
    "00007cc6c660380c06c6c67c00000000"  # 53 S
    "00007e7e5a1818181818183c00000000"  # 54 T
    "0000c6c6c6c6c6c6c6c6c67c00000000"  # 55 U
    "0000c6c6c6c6c6c6c66c381000000000"  # 56 V
    "0000c6c6c6c6d6d6d6feee6c00000000"  # 57 W
    "0000c6c66c7c38387c6cc6c600000000"  # 58 X
    "0000666666663c181818183c00000000"  # 59 Y
    "0000fec6860c183060c2c6fe00000000"  # 5A Z
    "00003c30303030303030303c00000000"  # 5B [
    "00000080c0e070381c0e060200000000"  # 5C U+005C
    "00003c0c0c0c0c0c0c0c0c3c00000000"  # 5D ]
    "10386cc6000000000000000000000000"  # 5E ^
    "00000000000000000000000000ff0000"  # 5F _
    "30301800000000000000000000000000"  # 60 `
    "0000000000780c7ccccccc7600000000"  # 61 a
    "0000e06060786c666666667c00000000"  # 62 b
    "00000000007cc6c0c0c0c67c00000000"  # 63 c
    "00001c0c0c3c6ccccccccc7600000000"  # 64 d
    "00000000007cc6fec0c0c67c00000000"  # 65 e
    "0000386c6460f060606060f000000000"  # 66 f
    "000000000076cccccccccc7c0ccc7800"  # 67 g
    "0000e060606c7666666666e600000000"  # 68 h
    "00001818003818181818183c00000000"  # 69 i
    "00000606000e06060606060666663c00"  # 6A j
    "0000e06060666c78786c66e600000000"  # 6B k
    "00003818181818181818183c00000000"  # 6C l
    "0000000000ecfed6d6d6d6c600000000"  # 6D m
    "0000000000dc66666666666600000000"  # 6E n
    "00000000007cc6c6c6c6c67c00000000"  # 6F o
    "0000000000dc66666666667c6060f000"  # 70 p
    "000000000076cccccccccc7c0c0c1e00"  # 71 q
    "0000000000dc7666606060f000000000"  # 72 r
    "00000000007cc660380cc67c00000000"  # 73 s
    "0000103030fc30303030361c00000000"  # 74 t
    "0000000000cccccccccccc7600000000"  # 75 u
    "000000000066666666663c1800000000"  # 76 v
    "0000000000c6c6d6d6d6fe6c00000000"  # 77 w
    "0000000000c66c3838386cc600000000"  # 78 x
    "0000000000c6c6c6c6c6c67e060cf800"  # 79 y
    "0000000000fecc183060c6fe00000000"  # 7A z
    "00000e18181870181818180e00000000"  # 7B {
    "00001818181818181818181800000000"  # 7C |
    "0000701818180e181818187000000000"  # 7D }
    "000076dc000000000000000000000000"  # 7E ~
    "0000000010386cc6c6c6fe0000000000"  # 7F ⌂
    "00003c66c2c0c0c0c0c2663c180c3800"  # 80 Ç
    "0000cccc00cccccccccccc7600000000"  # 81 ü
    "00000c18007cc6fec0c0c67c00000000"  # 82 é
    "0010386c00780c7ccccccc7600000000"  # 83 â
    "00006c6c00780c7ccccccc7600000000"  # 84 ä
    "0000603000780c7ccccccc7600000000"  # 85 à
    "00386c3800780c7ccccccc7600000000"  # 86 å
    "00000000007cc6c0c0c0c67c180c3800"  # 87 ç
    "0010386c007cc6fec0c0c67c00000000"  # 88 ê
    "00006c6c007cc6fec0c0c67c00000000"  # 89 ë
    "00006030007cc6fec0c0c67c00000000"  # 8A è
    "00006666003818181818183c00000000"  # 8B ï
    "0010386c003818181818183c00000000"  # 8C î
    "00003018003818181818183c00000000"  # 8D ì
    "6c6c0010386cc6c6fec6c6c600000000"  # 8E Ä
    "386c3810386cc6c6fec6c6c600000000"  # 8F Å
    "0c1800fe66626878686266fe00000000"  # 90 É
    "0000000000cc76367ed8d86e00000000"  # 91 æ
    "00003e6cccccfeccccccccce00000000"  # 92 Æ
    "0010386c007cc6c6c6c6c67c00000000"  # 93 ô
    "00006c6c007cc6c6c6c6c67c00000000"  # 94 ö
    "00006030007cc6c6c6c6c67c00000000"  # 95 ò
    "0010386c00cccccccccccc7600000000"  # 96 û
    "0000603000cccccccccccc7600000000"  # 97 ù
    "00006c6c00c6c6c6c6c6c67e060cf800"  # 98 ÿ
    "6c6c007cc6c6c6c6c6c6c67c00000000"  # 99 Ö
    "6c6c00c6c6c6c6c6c6c6c67c00000000"  # 9A Ü
    "0018183c66606060663c181800000000"  # 9B ¢
    "00386c6460f060606060e6fc00000000"  # 9C £
    "000066663c187e187e18181800000000"  # 9D ¥
    "0000fc66667c62666f6666f300000000"  # 9E ₧
    "00001c3632307830303030303030e000"  # 9F ƒ
    "0000183000780c7ccccccc7600000000"  # A0 á
    "00000c18003818181818183c00000000"  # A1 í
    "00000c18007cc6c6c6c6c67c00000000"  # A2 ó
    "0000183000cccccccccccc7600000000"  # A3 ú
    "000076dc00dc66666666666600000000"  # A4 ñ
    "76dc00c6e6f6fedecec6c6c600000000"  # A5 Ñ
    "003c6c6c3e007e000000000000000000"  # A6 ª
    "00386c6c38007c000000000000000000"  # A7 º
    "0000303000303060c0c6c67c00000000"  # A8 ¿
    "000000000000fec0c0c0c00000000000"  # A9 ⌐
    "000000000000fe060606060000000000"  # AA ¬
    "00c0c0c2c6cc183060dc860c183e0000"  # AB ½
    "00c0c0c2c6cc183066ce9e3e06060000"  # AC ¼
    "00001818001818183c3c3c1800000000"  # AD ¡
    "0000000000366cd86c36000000000000"  # AE «
    "0000000000d86c366cd8000000000000"  # AF »
    "11441144114411441144114411441144"  # B0 ░
    "55aa55aa55aa55aa55aa55aa55aa55aa"  # B1 ▒
    "dd77dd77dd77dd77dd77dd77dd77dd77"  # B2 ▓
    "18181818181818181818181818181818"  # B3 │
    "18181818181818f81818181818181818"  # B4 ┤
    "18181818181818f81818181818181818"  # B5 ╡
    "18181818181818f81818181818181818"  # B6 ╢
    "00000000000000f81818181818181818"  # B7 ╖
    "00000000000000f81818181818181818"  # B8 ╕
    "18181818181818f81818181818181818"  # B9 ╣
    "18181818181818181818181818181818"  # BA ║
    "00000000000000f81818181818181818"  # BB ╗
    "18181818181818f80000000000000000"  # BC ╝
    "18181818181818f80000000000000000"  # BD ╜
    "18181818181818f80000000000000000"  # BE ╛
    "00000000000000f81818181818181818"  # BF ┐
    "181818181818181f0000000000000000"  # C0 └
    "18181818181818ff0000000000000000"  # C1 ┴
    "00000000000000ff1818181818181818"  # C2 ┬
    "181818181818181f1818181818181818"  # C3 ├
    "00000000000000ff0000000000000000"  # C4 ─
    "18181818181818ff1818181818181818"  # C5 ┼
    "181818181818181f1818181818181818"  # C6 ╞
    "181818181818181f1818181818181818"  # C7 ╟
    "181818181818181f0000000000000000"  # C8 ╚
    "000000000000001f1818181818181818"  # C9 ╔
    "18181818181818ff0000000000000000"  # CA ╩
    "00000000000000ff1818181818181818"  # CB ╦
    "181818181818181f1818181818181818"  # CC ╠
    "00000000000000ff0000000000000000"  # CD ═
    "18181818181818ff1818181818181818"  # CE ╬
    "18181818181818ff0000000000000000"  # CF ╧
    "18181818181818ff0000000000000000"  # D0 ╨
    "00000000000000ff1818181818181818"  # D1 ╤
    "00000000000000ff1818181818181818"  # D2 ╥
    "181818181818181f0000000000000000"  # D3 ╙
    "181818181818181f0000000000000000"  # D4 ╘
    "000000000000001f1818181818181818"  # D5 ╒
    "000000000000001f1818181818181818"  # D6 ╓
    "18181818181818ff1818181818181818"  # D7 ╫
    "18181818181818ff1818181818181818"  # D8 ╪
    "18181818181818f80000000000000000"  # D9 ┘
    "000000000000001f1818181818181818"  # DA ┌
    "ffffffffffffffffffffffffffffffff"  # DB █
    "0000000000000000ffffffffffffffff"  # DC ▄
    "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0"  # DD ▌
    "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"  # DE ▐
    "ffffffffffffff000000000000000000"  # DF ▀
    "000000000076cccccccccc7600000000"  # E0 α
    "00003c6666666c66666666ec00000000"  # E1 ß
    "0000fe6662606060606060f000000000"  # E2 Γ
    "0000000000fe6c6c6c6c6c6600000000"  # E3 π
    "0000fec6623018183062c6fe00000000"  # E4 Σ
    "00000000007ecccccccccc7800000000"  # E5 σ
    "0000000000ccccccccccccf6c0c0c000"  # E6 µ
    "00000000007e18181818180e00000000"  # E7 τ
    "0000107cd6d6d6d6d67c101000000000"  # E8 Φ
    "00007cc6c6c6fec6c6c6c67c00000000"  # E9 Θ
    "00007cc6c6c6c6c66c6c6cee00000000"  # EA Ω
    "00003c6630187cc6c6c6c67c00000000"  # EB δ
    "000000000076dbdb6e00000000000000"  # EC ∞
    "00000000006cd6d6d6d6d67c10101000"  # ED φ
    "00000000007cc6c078c0c67c00000000"  # EE ε
    "000000007cc6c6c6c6c6c6c600000000"  # EF ∩
    "00000000fe0000fe0000fe0000000000"  # F0 ≡
    "0000000018187e1818007e0000000000"  # F1 ±
    "00000000e0380e38e000fe0000000000"  # F2 ≥
    "000000000e38e0380e00fe0000000000"  # F3 ≤
    "00000e1b1b1818181818181818181818"  # F4 ⌠
    "1818181818181818d8d8d87000000000"  # F5 ⌡
    "000000001818007e0018180000000000"  # F6 ÷
    "000000000076dc0076dc000000000000"  # F7 ≈
    "00386c6c380000000000000000000000"  # F8 °
    "0000000000183c3c1800000000000000"  # F9 ∙
    "00000000000000001800000000000000"  # FA ·
    "000003030606060ccc6c381800000000"  # FB √
    "0000b0d8d8d8d8000000000000000000"  # FC ⁿ
    "0070d83060c8f8000000000000000000"  # FD ²
    "000000fefefefefefefefefe00000000"  # FE ■
    "00000000000000000000000000000000"  # FF U+00A0
)

if __name__ == "__main__":
    import sys
    print(format_table(build_from_psf(sys.argv[1] if len(sys.argv) > 1
                                      else "/usr/share/consolefonts")))
