"""Raw disk images: sectors by LBA, geometry, and a copy-on-write overlay.

A ``DiskImage`` is the backing store behind a BIOS drive (floppy 0x00, hard
disks 0x80+) and, later, behind an IDE channel.  The file is a flat array of
512-byte sectors; nothing else is recognised (no qcow2, no partition table
parsing).

The file is never modified unless the image is opened ``writable=True``
(``emu run --disk-writable``).  Otherwise a write lands in an in-memory
overlay: a dict of sector number -> 512 bytes that later reads see first.
The guest gets a disk that behaves as writable for the whole run; the user's
image is left as it was (HY-SR-9: images are not altered by the VMs that use
them).

Geometry:

* floppies are recognised by their size, as BIOSes and QEMU do: 360 KB,
  1.2 MB, 720 KB, 1.44 MB and 2.88 MB, with the CMOS drive-type numbers
  (register 0x10) 1..5.  A smaller image of another size is treated as a
  1.44 MB disk whose tail is missing (reads there fail with "sector not
  found"), which is what a padded-less boot floppy needs;
* hard disks get the translation every BIOS uses for small disks: 16 heads,
  63 sectors per track, cylinders = sectors / (16 * 63), at least 1 and at
  most 16383 (the ATA CHS limit; INT 13h AH=08 further caps it at 1024).

Errors: a constructor problem (missing file, size not a multiple of 512) is a
one-line ``ValueError`` the command line shows as is.  A request outside the
disk is a ``DiskRangeError``, which the firmware interface maps to INT 13h
status 0x04 ("sector not found").
"""
import os

SECTOR = 512

# CMOS floppy type -> (cylinders, heads, sectors per track), and image size.
FLOPPY_TYPES = {
    1: (40, 2, 9),      # 360 KB 5.25"
    2: (80, 2, 15),     # 1.2 MB 5.25"
    3: (80, 2, 9),      # 720 KB 3.5"
    4: (80, 2, 18),     # 1.44 MB 3.5"
    5: (80, 2, 36),     # 2.88 MB 3.5"
}
FLOPPY_BY_SIZE = {c * h * s * SECTOR: t for t, (c, h, s) in FLOPPY_TYPES.items()}
FLOPPY_144 = 4

HD_HEADS = 16
HD_SPT = 63
HD_MAX_CYLINDERS = 16383


class DiskRangeError(Exception):
    """A request that reaches outside the disk (INT 13h status 0x04)."""


class DiskImage:
    def __init__(self, path, writable=False):
        self.path = path
        self.writable = bool(writable)
        try:
            size = os.path.getsize(path)
        except OSError as e:
            raise ValueError("disk image %s: %s" % (path, e.strerror or e)) from None
        if not os.path.isfile(path):
            raise ValueError("disk image %s is not a regular file" % path)
        if size == 0 or size % SECTOR:
            raise ValueError("disk image %s: size %d is not a non-zero multiple of %d bytes"
                             % (path, size, SECTOR))
        try:
            self._file = open(path, "r+b" if self.writable else "rb")
        except OSError as e:
            raise ValueError("disk image %s: %s" % (path, e.strerror or e)) from None
        self.size = size
        self.sectors = size // SECTOR
        self.overlay = {}                 # lba -> bytes(512), only when not writable
        self.counters = {"reads": 0, "writes": 0, "sectors_read": 0, "sectors_written": 0,
                         "range_errors": 0}

    def close(self):
        f = self._file
        self._file = None
        if f is not None:
            f.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # --- geometry ---------------------------------------------------------------
    def floppy_type(self):
        """CMOS floppy type (1..5) for this image's size, or None if it is
        larger than any floppy and of no standard size."""
        t = FLOPPY_BY_SIZE.get(self.size)
        if t is not None:
            return t
        c, h, s = FLOPPY_TYPES[FLOPPY_144]
        return FLOPPY_144 if self.size < c * h * s * SECTOR else None

    def floppy_geometry(self):
        """(cylinders, heads, sectors per track) as a floppy, or None."""
        t = self.floppy_type()
        return None if t is None else FLOPPY_TYPES[t]

    def hd_geometry(self):
        """(cylinders, heads, sectors per track) as a hard disk (16 x 63 translation)."""
        cyl = self.sectors // (HD_HEADS * HD_SPT)
        return max(1, min(cyl, HD_MAX_CYLINDERS)), HD_HEADS, HD_SPT

    # --- I/O ----------------------------------------------------------------------
    def _check(self, lba, count):
        if lba < 0 or count < 0 or lba + count > self.sectors:
            self.counters["range_errors"] += 1
            raise DiskRangeError("sectors %d..%d outside a disk of %d sectors"
                                 % (lba, lba + count - 1, self.sectors))

    def check(self, lba, count):
        """Raise DiskRangeError unless sectors lba .. lba+count-1 exist."""
        self._check(lba, count)

    def read(self, lba, count):
        """``count`` sectors from ``lba`` as bytes (the overlay wins)."""
        self._check(lba, count)
        self.counters["reads"] += 1
        self.counters["sectors_read"] += count
        if count == 0:
            return b""
        self._file.seek(lba * SECTOR)
        data = self._file.read(count * SECTOR)
        if len(data) < count * SECTOR:       # the file shrank under us: zeros
            data = data.ljust(count * SECTOR, b"\0")
        if self.overlay:
            buf = bytearray(data)
            for i in range(count):
                s = self.overlay.get(lba + i)
                if s is not None:
                    buf[i * SECTOR:(i + 1) * SECTOR] = s
            data = bytes(buf)
        return data

    def write(self, lba, data):
        """Write whole sectors at ``lba`` (to the file only when writable)."""
        data = bytes(data)
        if len(data) % SECTOR:
            raise ValueError("a disk write must be whole sectors, not %d bytes" % len(data))
        count = len(data) // SECTOR
        self._check(lba, count)
        self.counters["writes"] += 1
        self.counters["sectors_written"] += count
        if self.writable:
            self._file.seek(lba * SECTOR)
            self._file.write(data)
            self._file.flush()
        else:
            for i in range(count):
                self.overlay[lba + i] = data[i * SECTOR:(i + 1) * SECTOR]
