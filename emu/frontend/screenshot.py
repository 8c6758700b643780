"""The VGA screen for humans and for tests: a PNG screenshot and a text dump.

The PNG encoder uses only the standard library (zlib for the compressed
stream and the CRCs, struct for the chunk framing): 8-bit RGB, no
interlace, filter type 0 on every scan line.
"""
import struct
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def encode_png(image):
    """PNG bytes of an RGB image (numpy uint8, height x width x 3)."""
    img = np.ascontiguousarray(image, dtype=np.uint8)
    if img.ndim != 3 or img.shape[2] != 3 or not img.shape[0] or not img.shape[1]:
        raise ValueError("expected a non-empty height x width x 3 image, got shape %r"
                         % (img.shape,))
    height, width = img.shape[:2]
    # Each scan line is preceded by its filter type byte (0: none).
    raw = np.zeros((height, 1 + width * 3), dtype=np.uint8)
    raw[:, 1:] = img.reshape(height, width * 3)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (PNG_SIGNATURE + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + _chunk(b"IEND", b""))


def save_png(vga, path, cursor=True):
    """Write the VGA screen (``vga.render()``) to ``path`` as a PNG."""
    data = encode_png(vga.render(cursor=cursor))
    with open(path, "wb") as f:
        f.write(data)
    return path


def text_dump(vga, path=None):
    """The screen as text: 25 lines, trailing spaces stripped, each ending in
    a newline; also written to ``path`` (UTF-8) when given."""
    text = vga.text() + "\n"
    if path is not None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return text
