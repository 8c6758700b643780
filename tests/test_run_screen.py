"""`emu run --screenshot/--screen-text`: the VGA screen a disk boot left, for
humans (PNG) and for scripts (text)."""
import struct
import subprocess
import sys
import zlib
import pathlib

from tests.guests.boot_hello import write_image

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_disk_boot_screen_as_text_and_png(tmp_path):
    img = tmp_path / "hello.img"
    write_image(str(img), "hd")
    png = tmp_path / "screen.png"
    txt = tmp_path / "screen.txt"
    p = subprocess.run([sys.executable, "-m", "emu.cli", "run", "--disk", str(img),
                        "--serial", "none", "--display", "none", "--timeout", "60",
                        "--screenshot", str(png), "--screen-text", str(txt)],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = txt.read_text().splitlines()
    assert lines[0].startswith("emu BIOS") and "HELLO: boot sector running, drive 80" in lines
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    assert (w, h) == (720, 400)
    # the IDAT stream decompresses to h rows of 1 filter byte + w*3 RGB bytes,
    # and the text makes some pixels light
    idat = b""
    pos = 8
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    raw = zlib.decompress(idat)
    assert len(raw) == h * (1 + w * 3)
    assert max(raw[1:1 + w * 3 * 16]) > 128          # the first text row is drawn
