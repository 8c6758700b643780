"""DiskImage: raw images by LBA, geometry, bounds, and the copy-on-write overlay."""
import hashlib
import os

import pytest

from emu.devices.disk import DiskImage, DiskRangeError, SECTOR


def make(tmp_path, size, name="disk.img", fill=None):
    p = tmp_path / name
    if fill is None:
        # every sector starts with its own number, so reads can be checked
        data = bytearray(size)
        for lba in range(size // SECTOR):
            data[lba * SECTOR:lba * SECTOR + 4] = lba.to_bytes(4, "little")
        fill = bytes(data)
    p.write_bytes(fill)
    return str(p)


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# --- opening -------------------------------------------------------------------------
def test_size_must_be_a_multiple_of_512(tmp_path):
    p = make(tmp_path, 0, fill=b"x" * 1000)
    with pytest.raises(ValueError) as e:
        DiskImage(p)
    msg = str(e.value)
    assert "\n" not in msg and p in msg and "512" in msg


def test_empty_image_is_refused(tmp_path):
    p = make(tmp_path, 0, fill=b"")
    with pytest.raises(ValueError):
        DiskImage(p)


def test_missing_file_is_a_one_line_value_error(tmp_path):
    p = str(tmp_path / "nope.img")
    with pytest.raises(ValueError) as e:
        DiskImage(p)
    assert "\n" not in str(e.value) and p in str(e.value)


def test_directory_is_refused(tmp_path):
    with pytest.raises(ValueError):
        DiskImage(str(tmp_path))


# --- geometry ------------------------------------------------------------------------
@pytest.mark.parametrize("size, ftype, chs", [
    (1474560, 4, (80, 2, 18)),     # 1.44 MB
    (737280, 3, (80, 2, 9)),       # 720 KB
    (2949120, 5, (80, 2, 36)),     # 2.88 MB
    (1228800, 2, (80, 2, 15)),     # 1.2 MB
    (368640, 1, (40, 2, 9)),       # 360 KB
])
def test_floppy_geometry_by_size(tmp_path, size, ftype, chs):
    d = DiskImage(make(tmp_path, size, fill=bytes(size)))
    assert d.floppy_type() == ftype
    assert d.floppy_geometry() == chs
    c, h, s = chs
    assert c * h * s == d.sectors


def test_short_floppy_image_is_a_144_disk_with_a_missing_tail(tmp_path):
    d = DiskImage(make(tmp_path, 64 * 1024))
    assert d.floppy_geometry() == (80, 2, 18)
    assert d.read(127, 1)[:4] == (127).to_bytes(4, "little")
    with pytest.raises(DiskRangeError):
        d.read(128, 1)


def test_oversized_nonstandard_image_is_no_floppy(tmp_path):
    p = tmp_path / "big.img"
    with open(p, "wb") as f:
        f.truncate(4 << 20)
    d = DiskImage(str(p))
    assert d.floppy_type() is None and d.floppy_geometry() is None


def test_hard_disk_geometry_16_heads_63_sectors(tmp_path):
    d = DiskImage(make(tmp_path, 2 << 20, fill=bytes(2 << 20)))
    assert d.hd_geometry() == (4, 16, 63)          # 4096 sectors // 1008
    tiny = DiskImage(make(tmp_path, 512, name="tiny.img", fill=bytes(512)))
    assert tiny.hd_geometry() == (1, 16, 63)       # at least one cylinder


def test_hard_disk_cylinders_are_capped(tmp_path):
    p = tmp_path / "huge.img"
    with open(p, "wb") as f:
        f.truncate(20 << 30)                       # sparse: no disk space used
    d = DiskImage(str(p))
    assert d.sectors == (20 << 30) // 512
    assert d.hd_geometry() == (16383, 16, 63)


# --- reading and bounds --------------------------------------------------------------
def test_read_by_lba(tmp_path):
    d = DiskImage(make(tmp_path, 64 * SECTOR))
    data = d.read(5, 3)
    assert len(data) == 3 * SECTOR
    numbers = [int.from_bytes(data[i * SECTOR:i * SECTOR + 4], "little") for i in range(3)]
    assert numbers == [5, 6, 7]
    assert d.read(63, 1)[:4] == (63).to_bytes(4, "little")
    assert d.read(10, 0) == b""


@pytest.mark.parametrize("lba, count", [(64, 1), (63, 2), (-1, 1), (0, 65), (1 << 40, 1), (0, -1)])
def test_out_of_range_requests_raise_range_error(tmp_path, lba, count):
    d = DiskImage(make(tmp_path, 64 * SECTOR))
    with pytest.raises(DiskRangeError):
        d.read(lba, count)
    with pytest.raises(DiskRangeError):
        d.check(lba, count)
    if count > 0:
        with pytest.raises(DiskRangeError):
            d.write(lba, bytes(count * SECTOR))
    assert d.counters["range_errors"] >= 2


def test_write_must_be_whole_sectors(tmp_path):
    d = DiskImage(make(tmp_path, 64 * SECTOR))
    with pytest.raises(ValueError):
        d.write(0, b"abc")


# --- copy on write -------------------------------------------------------------------
def test_writes_go_to_the_overlay_and_leave_the_file_unchanged(tmp_path):
    p = make(tmp_path, 64 * SECTOR)
    before = digest(p)
    d = DiskImage(p)
    d.write(10, b"A" * SECTOR + b"B" * SECTOR)
    assert d.read(10, 2) == b"A" * SECTOR + b"B" * SECTOR
    # a read across written and unwritten sectors mixes both
    got = d.read(9, 4)
    assert got[:4] == (9).to_bytes(4, "little")
    assert got[SECTOR:3 * SECTOR] == b"A" * SECTOR + b"B" * SECTOR
    assert got[3 * SECTOR:3 * SECTOR + 4] == (12).to_bytes(4, "little")
    d.write(10, b"C" * SECTOR)                   # overwriting the overlay
    assert d.read(10, 1) == b"C" * SECTOR
    assert sorted(d.overlay) == [10, 11]
    d.close()
    assert digest(p) == before
    # a new DiskImage of the same file sees the original data
    assert DiskImage(p).read(10, 1)[:4] == (10).to_bytes(4, "little")


def test_writable_image_writes_the_file(tmp_path):
    p = make(tmp_path, 64 * SECTOR)
    d = DiskImage(p, writable=True)
    d.write(3, b"Z" * SECTOR)
    assert d.overlay == {}
    d.close()
    with open(p, "rb") as f:
        f.seek(3 * SECTOR)
        assert f.read(SECTOR) == b"Z" * SECTOR
    assert os.path.getsize(p) == 64 * SECTOR
