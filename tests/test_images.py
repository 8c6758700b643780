"""The guest-image library (emu/images.py) against a local Debian repository.

A fake package is built with ``dpkg-deb -b`` in tmp_path and served from a
flat ``file:`` repository, so the real ``apt-get update`` / ``apt-get
download`` / ``dpkg-deb -x`` path runs without the network.
"""
import hashlib
import json
import os
import subprocess

import pytest

from emu import images

PACKAGE = "emu-fake-guest"
VERSION = "1.0-1"
ARCH = "i386"
GUEST_BYTES = bytes(range(256)) * 16
README = b"a fake guest for emu's tests\n"

def _sha(data):
    return hashlib.sha256(data).hexdigest()


def _publish(repo, version, guest):
    """Build the fake .deb and (re)write the flat repository's Packages index."""
    root = repo.parent / ("pkg-" + version)
    (root / "DEBIAN").mkdir(parents=True)
    (root / "boot").mkdir()
    (root / "usr/share/doc" / PACKAGE).mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        "Package: %s\nVersion: %s\nArchitecture: %s\n"
        "Maintainer: emu tests <tests@example.invalid>\nDescription: fake guest\n"
        % (PACKAGE, version, ARCH))
    (root / "boot/guest.bin").write_bytes(guest)
    (root / "usr/share/doc" / PACKAGE / "README").write_bytes(README)
    os.symlink("guest.bin", root / "boot/guest-link.bin")
    for old in repo.glob("*.deb"):
        old.unlink()
    deb = repo / ("%s_%s_%s.deb" % (PACKAGE, version, ARCH))
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(root), str(deb)],
                   check=True, capture_output=True)
    data = deb.read_bytes()
    (repo / "Packages").write_text(
        "Package: %s\nVersion: %s\nArchitecture: %s\n"
        "Maintainer: emu tests <tests@example.invalid>\nFilename: ./%s\nSize: %d\n"
        "SHA256: %s\nDescription: fake guest\n\n"
        % (PACKAGE, version, ARCH, deb.name, len(data), _sha(data)))
    return deb


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "repo"
    r.mkdir()
    _publish(r, VERSION, GUEST_BYTES)
    sources = tmp_path / "sources.list"
    sources.write_text("deb [trusted=yes] file:%s ./\n" % r)
    return r, str(sources), str(tmp_path / "cache")


def _fetch(repo):
    r, sources, cache = repo
    return images.fetch_deb(PACKAGE, ARCH, cache, sources=sources)


def test_first_fetch_downloads_extracts_and_writes_a_manifest(repo):
    im = _fetch(repo)
    assert im.source == "download"
    assert (im.package, im.arch, im.version) == (PACKAGE, ARCH, VERSION)
    with open(im.path("boot/guest.bin"), "rb") as f:
        assert f.read() == GUEST_BYTES
    assert os.path.basename(im.deb) == "%s_%s_%s.deb" % (PACKAGE, VERSION, ARCH)
    manifest = json.load(open(os.path.join(os.path.dirname(im.deb), "manifest.json")))
    assert manifest["files"] == {
        "boot/guest.bin": _sha(GUEST_BYTES),
        "usr/share/doc/%s/README" % PACKAGE: _sha(README),
    }
    assert manifest["deb_sha256"] == _sha(open(im.deb, "rb").read())
    assert manifest["package_version"] == VERSION
    # the package's symlink is extracted but not part of what is verified
    assert os.path.islink(os.path.join(im.root, "boot/guest-link.bin"))
    with pytest.raises(images.ImageError):
        im.path("boot/no-such-file")


def test_second_fetch_reuses_the_cache_without_apt(repo):
    first = _fetch(repo)
    r, sources, cache = repo
    # Take the repository away: a second fetch must not need it.
    for f in r.iterdir():
        f.unlink()
    second = _fetch(repo)
    assert second.source == "cache"
    assert second.root == first.root
    assert open(second.path("boot/guest.bin"), "rb").read() == GUEST_BYTES


def test_corrupted_extracted_file_is_restored_from_the_cached_deb(repo):
    im = _fetch(repo)
    with open(im.path("boot/guest.bin"), "r+b") as f:
        f.seek(100)
        f.write(b"\xff")
    r, _, _ = repo
    for f in r.iterdir():      # no repository: the .deb in the cache is enough
        f.unlink()
    again = _fetch(repo)
    assert again.source == "re-extracted"
    assert open(again.path("boot/guest.bin"), "rb").read() == GUEST_BYTES


def test_deleted_extracted_file_is_restored(repo):
    im = _fetch(repo)
    os.unlink(im.path("usr/share/doc/%s/README" % PACKAGE))
    again = _fetch(repo)
    assert again.source == "re-extracted"
    assert open(again.path("usr/share/doc/%s/README" % PACKAGE), "rb").read() == README


def test_corrupted_deb_is_fetched_again(repo):
    im = _fetch(repo)
    with open(im.path("boot/guest.bin"), "ab") as f:
        f.write(b"tampered")
    with open(im.deb, "r+b") as f:
        f.seek(os.path.getsize(im.deb) // 2)
        f.write(b"\x00\x00\x00\x00")
    again = _fetch(repo)
    assert again.source == "download"
    assert open(again.path("boot/guest.bin"), "rb").read() == GUEST_BYTES
    assert _sha(open(again.deb, "rb").read()) == _sha(
        next(repo[0].glob("*.deb")).read_bytes())


def test_refetch_takes_the_archive_s_current_version(repo):
    im = _fetch(repo)
    os.unlink(im.deb)
    os.unlink(im.path("boot/guest.bin"))
    r, _, _ = repo
    _publish(r, "2.0-1", b"new guest")
    again = _fetch(repo)
    assert again.source == "download"
    assert again.version == "2.0-1"
    assert open(again.path("boot/guest.bin"), "rb").read() == b"new guest"
    assert os.listdir(os.path.dirname(again.deb)).count(os.path.basename(again.deb)) == 1
    assert [n for n in os.listdir(os.path.dirname(again.deb)) if n.endswith(".deb")] == [
        "%s_2.0-1_%s.deb" % (PACKAGE, ARCH)]


def test_damaged_manifest_means_a_fresh_fetch(repo):
    im = _fetch(repo)
    with open(os.path.join(os.path.dirname(im.deb), "manifest.json"), "w") as f:
        f.write("{not json")
    again = _fetch(repo)
    assert again.source == "download"
    assert open(again.path("boot/guest.bin"), "rb").read() == GUEST_BYTES


def test_no_network_is_a_one_line_image_error(tmp_path):
    sources = tmp_path / "sources.list"
    # Port 9 (discard) on the loopback address: nothing listens, connect fails.
    sources.write_text("deb [trusted=yes] http://127.0.0.1:9/ ./\n")
    with pytest.raises(images.ImageError) as e:
        images.fetch_deb(PACKAGE, ARCH, str(tmp_path / "cache"), sources=str(sources))
    msg = str(e.value)
    assert "\n" not in msg
    assert PACKAGE in msg and "127.0.0.1" in msg


def test_unknown_package_is_a_one_line_image_error(repo):
    r, sources, cache = repo
    with pytest.raises(images.ImageError) as e:
        images.fetch_deb("emu-no-such-package", ARCH, cache, sources=sources)
    assert "\n" not in str(e.value)
    assert "emu-no-such-package" in str(e.value)


@pytest.mark.parametrize("package,arch", [("", "i386"), ("../etc", "i386"), ("-o", "i386"),
                                          ("memtest86+", "../x"), ("memtest86+", "")])
def test_bad_names_are_refused_before_apt_runs(tmp_path, package, arch):
    with pytest.raises(images.ImageError):
        images.fetch_deb(package, arch, str(tmp_path / "cache"),
                         sources=str(tmp_path / "nonexistent.list"))
    assert not (tmp_path / "cache" / "apt").exists()


def test_host_apt_state_is_not_touched(repo):
    watched = ["/var/lib/apt/lists", "/var/cache/apt/archives"]
    before = {d: sorted(os.listdir(d)) for d in watched if os.path.isdir(d)}
    _fetch(repo)
    after = {d: sorted(os.listdir(d)) for d in watched if os.path.isdir(d)}
    assert before == after
