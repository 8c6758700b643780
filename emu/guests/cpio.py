"""The cpio "newc" format (SVR4 without CRC), as the Linux kernel reads an
initramfs (Documentation/driver-api/early-userspace/buffer-format.rst).

An archive is a sequence of entries, each

    header   "070701" then 13 fields of 8 ASCII hex digits (upper or lower
             case): c_ino, c_mode, c_uid, c_gid, c_nlink, c_mtime,
             c_filesize, c_devmajor, c_devminor, c_rdevmajor, c_rdevminor,
             c_namesize (with the terminating NUL), c_check (0 for newc)
    name     c_namesize bytes, NUL-terminated, then NULs up to a multiple of
             4 counted from the start of the header (110 + namesize, padded)
    data     c_filesize bytes (a symlink's data is its target), then NULs up
             to a multiple of 4

and the archive ends with an entry named "TRAILER!!!".  The kernel creates
entries in order, so a directory comes before what it holds; a regular file
with c_nlink > 1 is a hard link to an earlier entry with the same
(c_ino, c_dev), which this writer never produces: every entry gets its own
inode number.

``write_newc(entries)`` builds an archive from Entry objects (no cpio
binary), ``read_newc(data)`` parses one back (the tests use it to check
what the writer wrote; it rejects anything malformed with ValueError).
"""
import stat

MAGIC = b"070701"
HEADER_SIZE = 110
TRAILER = "TRAILER!!!"
FIELDS = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor", "devminor",
          "rdevmajor", "rdevminor", "namesize", "check")


class Entry:
    """One archive member: a directory, a regular file, a symlink or a device node."""

    def __init__(self, name, mode, data=b"", uid=0, gid=0, mtime=0, rdev=(0, 0), ino=None,
                 nlink=None):
        self.name = name
        self.mode = mode
        self.data = bytes(data)
        self.uid, self.gid, self.mtime = uid, gid, mtime
        self.rdev = rdev
        self.ino = ino
        self.nlink = nlink

    @classmethod
    def directory(cls, name, perm=0o755, **kw):
        return cls(name, stat.S_IFDIR | perm, **kw)

    @classmethod
    def file(cls, name, data, perm=0o644, **kw):
        return cls(name, stat.S_IFREG | perm, data, **kw)

    @classmethod
    def symlink(cls, name, target, **kw):
        return cls(name, stat.S_IFLNK | 0o777, target.encode(), **kw)

    @classmethod
    def chardev(cls, name, major, minor, perm=0o600, **kw):
        return cls(name, stat.S_IFCHR | perm, rdev=(major, minor), **kw)

    def __repr__(self):
        return "Entry(%r, 0o%o, %d bytes)" % (self.name, self.mode, len(self.data))


def _pad4(n):
    return (4 - n % 4) % 4


def _check_name(name):
    if not name or name.startswith("/") or "\0" in name:
        raise ValueError("cpio member name %r: must be relative, non-empty, without NUL" % name)
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts) and name != ".":
        raise ValueError("cpio member name %r: empty, '.' or '..' components" % name)


def _header(fields):
    out = bytearray(MAGIC)
    for v in fields:
        if not 0 <= v <= 0xFFFFFFFF:
            raise ValueError("cpio header field out of range: %r" % v)
        out += b"%08X" % v
    return bytes(out)


def _member(name, mode, data, uid, gid, nlink, mtime, rdev, ino):
    raw_name = name.encode() + b"\0"
    fields = (ino, mode, uid, gid, nlink, mtime, len(data), 0, 0, rdev[0], rdev[1],
              len(raw_name), 0)
    out = bytearray(_header(fields))
    out += raw_name
    out += b"\0" * _pad4(len(out))
    out += data
    out += b"\0" * _pad4(len(data))
    return bytes(out)


def write_newc(entries):
    """The archive (bytes) holding ``entries`` in order, then the trailer."""
    out = bytearray()
    seen = set()
    ino = 1000
    for e in entries:
        _check_name(e.name)
        if e.name in seen:
            raise ValueError("cpio member %r appears twice" % e.name)
        seen.add(e.name)
        kind = stat.S_IFMT(e.mode)
        if kind not in (stat.S_IFDIR, stat.S_IFREG, stat.S_IFLNK, stat.S_IFCHR, stat.S_IFBLK,
                        stat.S_IFIFO, stat.S_IFSOCK):
            raise ValueError("cpio member %r: unknown file type in mode 0o%o" % (e.name, e.mode))
        if e.data and kind not in (stat.S_IFREG, stat.S_IFLNK):
            raise ValueError("cpio member %r: only files and symlinks carry data" % e.name)
        if kind == stat.S_IFLNK and not e.data:
            raise ValueError("cpio member %r: a symlink needs a target" % e.name)
        ino += 1
        nlink = e.nlink if e.nlink is not None else (2 if kind == stat.S_IFDIR else 1)
        out += _member(e.name, e.mode, e.data, e.uid, e.gid, nlink, e.mtime, e.rdev,
                       e.ino if e.ino is not None else ino)
    out += _member(TRAILER, 0, b"", 0, 0, 1, 0, (0, 0), 0)
    return bytes(out)


def read_newc(data):
    """Parse an archive: a list of (fields dict, name, data) up to the trailer.

    Strict: the magic, hex fields, NUL-terminated names, the 4-byte padding
    (which must be NULs) and the trailer are all checked."""
    data = bytes(data)
    pos = 0
    members = []
    while True:
        if pos + HEADER_SIZE > len(data):
            raise ValueError("truncated cpio header at offset %d" % pos)
        if data[pos:pos + 6] != MAGIC:
            raise ValueError("bad cpio magic %r at offset %d" % (data[pos:pos + 6], pos))
        fields = {}
        for i, name in enumerate(FIELDS):
            text = data[pos + 6 + 8 * i:pos + 14 + 8 * i]
            try:
                fields[name] = int(text, 16)
            except ValueError:
                raise ValueError("cpio field %s is not hex: %r" % (name, text)) from None
        nsize = fields["namesize"]
        name_end = pos + HEADER_SIZE + nsize
        if nsize == 0 or name_end > len(data) or data[name_end - 1] != 0:
            raise ValueError("bad cpio name at offset %d" % pos)
        name = data[pos + HEADER_SIZE:name_end - 1].decode()
        if b"\0" in data[pos + HEADER_SIZE:name_end - 1]:
            raise ValueError("NUL inside cpio name %r" % name)
        dpos = name_end + _pad4(name_end - pos)
        if any(data[name_end:dpos]):
            raise ValueError("non-zero name padding after %r" % name)
        dend = dpos + fields["filesize"]
        if dend > len(data):
            raise ValueError("cpio member %r is truncated" % name)
        body = data[dpos:dend]
        nxt = dend + _pad4(dend - pos)
        if any(data[dend:nxt]):
            raise ValueError("non-zero data padding after %r" % name)
        if fields["check"] != 0:
            raise ValueError("cpio member %r: c_check must be 0 in newc" % name)
        pos = nxt
        if name == TRAILER:
            return members
        members.append((fields, name, body))
