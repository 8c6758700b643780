"""The Linux guest (emu/guests/linux.py, emu/guests/cpio.py): the cpio newc
writer, the initramfs, the vmlinux taken out of a bzImage, and the fetch with
its manifest, against a local Debian repository of fake packages (the real
``apt-get update`` / ``apt-get download`` / ``dpkg-deb -x`` path, no network).

The real kernel appears in one fast test: its bzImage setup code runs on our
BIOS until it enters protected mode at code32_start (skipped only when the
image cannot be fetched).  Booting it to the shell is the slow test in
tests/test_linux_boot.py.
"""
import gzip
import hashlib
import json
import lzma
import os
import stat
import struct
import subprocess

import pytest

from emu import images
from emu.guests import cpio, linux
from tests.guests.multiboot_build import elf32

ARCH = "i386"


# --- cpio newc -------------------------------------------------------------------------------
def test_cpio_newc_round_trip_and_layout():
    E = cpio.Entry
    entries = [E.directory("bin"), E.file("bin/prog", b"\x7fELF" + bytes(range(200)), perm=0o755),
               E.symlink("bin/sh", "prog"), E.chardev("console", 5, 1),
               E.file("empty", b""), E.file("name-with-odd-len", b"xyz")]
    data = cpio.write_newc(entries)
    members = cpio.read_newc(data)
    assert [n for _, n, _ in members] == ["bin", "bin/prog", "bin/sh", "console", "empty",
                                         "name-with-odd-len"]
    by = {n: (f, body) for f, n, body in members}
    f, body = by["bin/prog"]
    assert stat.S_ISREG(f["mode"]) and f["mode"] & 0o7777 == 0o755
    assert body == b"\x7fELF" + bytes(range(200)) and f["filesize"] == 204 and f["nlink"] == 1
    f, body = by["bin/sh"]
    assert stat.S_ISLNK(f["mode"]) and body == b"prog"
    f, _ = by["console"]
    assert stat.S_ISCHR(f["mode"]) and (f["rdevmajor"], f["rdevminor"]) == (5, 1)
    f, _ = by["bin"]
    assert stat.S_ISDIR(f["mode"]) and f["nlink"] == 2
    # every inode distinct (no accidental hard links), c_check 0
    inos = [f["ino"] for f, _, _ in members]
    assert len(set(inos)) == len(inos)


def test_cpio_newc_follows_the_format_rules_byte_by_byte():
    data = cpio.write_newc([cpio.Entry.file("abc", b"12345")])
    # header: magic + 13 eight-digit hex fields = 110 bytes
    assert data[:6] == b"070701" and len(data) % 4 == 0
    fields = [int(data[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
    assert fields[6] == 5 and fields[11] == 4 and fields[12] == 0   # filesize, namesize, check
    # name "abc\0" at 110, padded to 116 (a multiple of 4 from the header start)
    assert data[110:114] == b"abc\0" and data[114:116] == b"\0\0"
    assert data[116:121] == b"12345" and data[121:124] == b"\0\0\0"
    # then the trailer, nlink 1, everything else 0
    assert data[124:130] == b"070701"
    assert data[124 + 110:124 + 110 + 11] == b"TRAILER!!!\0"
    trailer_fields = [int(data[130 + 8 * i:138 + 8 * i], 16) for i in range(13)]
    assert trailer_fields[4] == 1 and trailer_fields[11] == 11 and trailer_fields[6] == 0


@pytest.mark.parametrize("name", ["/abs", "", "a//b", "a/../b", "./x", "nul\0"])
def test_cpio_refuses_bad_names(name):
    with pytest.raises(ValueError):
        cpio.write_newc([cpio.Entry.file(name, b"x")])


def test_cpio_reader_rejects_damage():
    good = cpio.write_newc([cpio.Entry.file("f", b"data")])
    for bad in (good[:50], b"070707" + good[6:], good[:110 + 2], good.replace(b"TRAILER", b"TRAILEX")
                [:len(good) - 8]):
        with pytest.raises(ValueError):
            cpio.read_newc(bad)


# --- the initramfs ---------------------------------------------------------------------------
def test_initramfs_has_busybox_init_and_console():
    busybox = b"\x7fELF fake busybox"
    rd = linux.build_initramfs(busybox)
    assert rd[:2] == b"\x1f\x8b"
    assert rd == linux.build_initramfs(busybox)          # reproducible (gzip mtime 0)
    members = {n: (f, body) for f, n, body in cpio.read_newc(gzip.decompress(rd))}
    f, body = members["init"]
    assert stat.S_ISREG(f["mode"]) and f["mode"] & 0o111
    script = body.decode()
    assert script.startswith("#!/bin/sh\n")
    for line in ("mount -t proc proc /proc", "mount -t sysfs sysfs /sys",
                 "mount -t devtmpfs devtmpfs /dev", 'echo "%s"' % linux.MARKER,
                 "setsid cttyhack sh", "poweroff -f"):
        assert line in script, line
    assert members["bin/busybox"][1] == busybox and members["bin/busybox"][0]["mode"] & 0o111
    assert members["bin/sh"][1] == b"busybox"
    f, _ = members["dev/console"]
    assert stat.S_ISCHR(f["mode"]) and (f["rdevmajor"], f["rdevminor"]) == (5, 1)
    for d in ("proc", "sys", "dev", "sbin", "usr/bin", "usr/sbin"):
        assert stat.S_ISDIR(members[d][0]["mode"]), d
    # every directory comes before what it holds
    names = [n for _, n, _ in cpio.read_newc(gzip.decompress(rd))]
    for i, n in enumerate(names):
        if "/" in n:
            assert names.index(n.rsplit("/", 1)[0]) < i, n


def test_busybox_sh_runs_the_init_script_syntax(tmp_path):
    """The host's sh parses /init (a syntax check: the guest runs busybox ash)."""
    p = tmp_path / "init"
    p.write_text(linux.INIT_SCRIPT)
    r = subprocess.run(["sh", "-n", str(p)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# --- vmlinux out of a bzImage -------------------------------------------------------------------------
def fake_vmlinux():
    code = b"\xfa\xf4" + bytes(range(256)) * 63 + b"\x90" * 254   # 16 KiB: no padding after
    return elf32([(0x1000000, code, len(code) + 0x2000, 0xC1000000)], 0x1000000)


def fake_bzimage(payload_raw, setup_sects=3, version=0x020F, compress="xz", size_tail=True):
    if compress == "xz":
        comp = lzma.compress(payload_raw, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32,
                             filters=[{"id": lzma.FILTER_X86},
                                      {"id": lzma.FILTER_LZMA2, "preset": 6}])
    else:
        comp = gzip.compress(payload_raw)
    if size_tail:
        comp += struct.pack("<I", len(payload_raw))
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x1FE:0x200] = b"\x55\xaa"
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, version)
    head = b"\xfc" * 0x300                       # the decompressor's code, before the payload
    struct.pack_into("<II", setup, 0x248, len(head), len(comp))
    return bytes(setup) + head + comp + b"\0" * 100


def test_extract_vmlinux_cuts_the_appended_relocations():
    elf = fake_vmlinux()
    relocs = struct.pack("<4I", 0, 0xC1000010, 0xC1000020, 0)
    out = linux.extract_vmlinux(fake_bzimage(elf + relocs))
    assert out == elf


def test_extract_vmlinux_errors_are_one_line():
    elf = fake_vmlinux()
    cases = {
        "not-bzimage": (b"\0" * 4096, "HdrS"),
        "old-protocol": (fake_bzimage(elf, version=0x0206), "2.08"),
        "gzip": (fake_bzimage(elf, compress="gzip"), "gzip"),
        "truncated": (fake_bzimage(elf)[:-2000], "outside"),
        "not-elf": (fake_bzimage(b"MZ" + bytes(5000)), "not a 32-bit ELF"),
    }
    bad_size = bytearray(fake_bzimage(elf))
    # the 4-byte size after the stream says something else
    end = len(bad_size) - 100
    struct.pack_into("<I", bad_size, end - 4, len(elf) + 1)
    cases["wrong-size"] = (bytes(bad_size), "unpacks to")
    for name, (data, expect) in cases.items():
        with pytest.raises(linux.ExtractError) as e:
            linux.extract_vmlinux(data)
        assert expect in str(e.value) and "\n" not in str(e.value), (name, str(e.value))


# --- fetch: a local repository of fake packages --------------------------------------------------------
def _sha(data):
    return hashlib.sha256(data).hexdigest()


def _deb(repo, package, version, files):
    root = repo.parent / ("pkg-%s-%s" % (package, version))
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        "Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: emu tests "
        "<tests@example.invalid>\nDescription: fake\n" % (package, version, ARCH))
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    deb = repo / ("%s_%s_%s.deb" % (package, version, ARCH))
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(root), str(deb)], check=True,
                   capture_output=True)
    data = deb.read_bytes()
    return ("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: emu tests "
            "<tests@example.invalid>\nFilename: ./%s\nSize: %d\nSHA256: %s\n"
            "Description: fake\n\n" % (package, version, ARCH, deb.name, len(data), _sha(data)))


BUSYBOX = b"\x7fELF busybox for the tests"


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "repo"
    r.mkdir()
    elf = fake_vmlinux()
    index = ""
    # two ABIs of the unsigned 686 flavour (the newer must win), and packages that
    # must not be taken: the signed flavour, the PAE flavour, a 5.10 kernel
    for pkg, abi in (("linux-image-6.1.0-9-686-unsigned", "6.1.0-9"),
                     ("linux-image-6.1.0-12-686-unsigned", "6.1.0-12"),
                     ("linux-image-6.1.0-13-686", "6.1.0-13"),
                     ("linux-image-6.1.0-14-686-pae-unsigned", "6.1.0-14"),
                     ("linux-image-5.10.0-30-686-unsigned", "5.10.0-30")):
        marker = abi.encode()
        index += _deb(r, pkg, "%s.1-1" % abi, {
            "boot/vmlinuz-%s-686" % abi: fake_bzimage(elf + marker),
            "boot/config-%s-686" % abi: b"CONFIG_KERNEL_XZ=y\n"})
    index += _deb(r, "busybox-static", "1:1.35.0-4", {"bin/busybox": BUSYBOX})
    (r / "Packages").write_text(index)
    sources = tmp_path / "sources.list"
    sources.write_text("deb [trusted=yes] file:%s ./\n" % r)
    return r, str(sources), str(tmp_path / "cache")


def _fetch(repo):
    r, sources, cache = repo
    return linux.fetch(cache, sources=sources)


def test_fetch_picks_the_newest_686_unsigned_and_makes_vmlinux_and_initramfs(repo):
    im = _fetch(repo)
    assert im.kernel_package == "linux-image-6.1.0-12-686-unsigned"
    assert im.kernel_version == "6.1.0-12.1-1"
    assert im.bzimage.endswith("boot/vmlinuz-6.1.0-12-686")
    assert open(im.vmlinux, "rb").read() == fake_vmlinux()
    members = {n: body for _, n, body in cpio.read_newc(gzip.decompress(
        open(im.initramfs, "rb").read()))}
    assert members["bin/busybox"] == BUSYBOX and "init" in members
    assert im.sources == {"kernel": "download", "busybox": "download", "vmlinux": "made",
                          "initramfs": "made"}
    m = json.load(open(im.manifest))
    assert m["kernel_package"] == im.kernel_package
    assert m["busybox_sha256"] == _sha(BUSYBOX)
    for path in (im.vmlinux, im.initramfs):
        entry = m["files"][os.path.basename(path)]
        assert entry["sha256"] == _sha(open(path, "rb").read())
    assert m["bzimage_sha256"] == _sha(open(im.bzimage, "rb").read())
    assert im.kernel("vmlinux") == im.vmlinux and im.kernel("bzimage") == im.bzimage
    args = linux.run_args(im, "bzimage", "quiet")
    assert args[:4] == ["--kernel", im.bzimage, "--initrd", im.initramfs]
    assert args[5] == linux.DEFAULT_APPEND + " quiet"


def test_second_fetch_uses_the_cache_without_the_archive(repo):
    first = _fetch(repo)
    r, _, _ = repo
    for f in r.iterdir():
        f.unlink()
    second = _fetch(repo)
    assert set(second.sources.values()) == {"cache"}
    assert (second.vmlinux, second.initramfs, second.bzimage) == (first.vmlinux, first.initramfs,
                                                                   first.bzimage)


def test_corrupted_made_files_are_made_again(repo):
    im = _fetch(repo)
    good_vml = open(im.vmlinux, "rb").read()
    good_rd = open(im.initramfs, "rb").read()
    with open(im.vmlinux, "r+b") as f:
        f.seek(200)
        f.write(b"\xff\xff")
    os.unlink(im.initramfs)
    r, _, _ = repo
    for f in r.iterdir():          # remade from the cached packages: no archive needed
        f.unlink()
    again = _fetch(repo)
    assert again.sources == {"kernel": "cache", "busybox": "cache", "vmlinux": "made",
                             "initramfs": "made"}
    assert open(again.vmlinux, "rb").read() == good_vml
    assert open(again.initramfs, "rb").read() == good_rd


def test_corrupted_package_file_is_fetched_again(repo):
    im = _fetch(repo)
    # damage the bzImage in the extracted tree and the cached .deb: a new download
    with open(im.bzimage, "r+b") as f:
        f.write(b"XXXX")
    deb = [p for p in os.listdir(os.path.dirname(os.path.dirname(os.path.dirname(im.bzimage))))
           if p.endswith(".deb")]
    entry = os.path.dirname(os.path.dirname(os.path.dirname(im.bzimage)))
    with open(os.path.join(entry, deb[0]), "r+b") as f:
        f.seek(100)
        f.write(b"\0\0\0\0")
    again = _fetch(repo)
    assert again.sources["kernel"] == "download"
    assert again.sources["vmlinux"] == "cache"     # the bzImage is the same again
    assert open(again.vmlinux, "rb").read() == fake_vmlinux()


def test_damaged_manifest_means_a_fresh_lookup(repo):
    im = _fetch(repo)
    with open(im.manifest, "w") as f:
        f.write("{")
    again = _fetch(repo)
    assert again.kernel_package == im.kernel_package
    assert again.sources["vmlinux"] == "made"
    json.load(open(again.manifest))


def test_no_network_is_one_line(tmp_path):
    sources = tmp_path / "sources.list"
    sources.write_text("deb [trusted=yes] http://127.0.0.1:9/ ./\n")
    with pytest.raises(images.ImageError) as e:
        linux.fetch(str(tmp_path / "cache"), sources=str(sources))
    msg = str(e.value)
    assert "\n" not in msg and "686" in msg and "127.0.0.1" in msg, msg


def test_cli_boot_options(capsys):
    from emu import cli
    assert cli.main(["boot", "demo", "--kernel-format", "vmlinux"]) == cli.EXIT_USAGE
    assert "--kernel-format is for 'emu boot linux'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["boot", "linux", "--kernel-format", "zimage"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        cli.main(["images", "fetch", "nothing"])
    assert e.value.code == 2
