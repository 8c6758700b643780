"""The firmware interface (emu/devices/fwcfg.py): items, block I/O by DMA,
DMA refusal, and the kernel handoff, against the protocol in its docstring."""
import hashlib
import random
import struct
from types import SimpleNamespace

import pytest

from emu.devices.base import DeviceBus
from emu.devices.clock import VirtualClock
from emu.devices.dma import DMA
from emu.devices.fwcfg import (FirmwareInterface, kernel_boot_mode, BOOT_DISK, BOOT_LINUX,
                               BOOT_MULTIBOOT)
from emu.devices.portbus import PortBus
from emu.errors import VMStop
from emu.machine import MachineConfig
from emu.mmu.physmem import PhysMem

RAM = 2 << 20
SECTOR = 512
REQ = 0x1000            # where tests put block requests
BUF = 0x2000            # and buffers


class Rig:
    """A DeviceBus of real parts, a PC-like map (VGA MMIO, BIOS ROM), and the
    firmware interface built for ``config``."""

    def __init__(self, config, boot_kernel=None, boot_mode=None):
        self.insns = 0
        self.ports = PortBus()
        self.phys = PhysMem(RAM)
        self.mmio_writes = []
        self.phys.add_mmio(0xA0000, 0x20000, read=lambda a, s: 0,
                           write=lambda a, s, v: self.mmio_writes.append((a, s, v)), name="vga")
        self.rom = bytes(range(256)) * 256
        self.phys.add_rom(0xF0000, self.rom, name="bios")
        self.dma = DMA(self.phys)
        self.clock = VirtualClock(lambda: self.insns)
        self.bus = DeviceBus(self.ports, self.phys, self.dma, self.clock)
        machine = SimpleNamespace(config=config, phys=self.phys)
        if boot_kernel is not None:
            machine.boot_kernel = boot_kernel
        if boot_mode is not None:
            machine.boot_mode = boot_mode
        self.machine = machine
        self.fw = FirmwareInterface(self.bus, machine)
        self.dma.attach("fwcfg")

    def item(self, n, length):
        self.ports.write(0x510, 2, n)
        return bytes(self.ports.read(0x511, 1) for _ in range(length))

    def request(self, op, drive, count, lba, buf, at=REQ):
        self.phys.write_bytes(at, struct.pack("<BBHQI", op, drive, count, lba, buf))
        self.ports.write(0x514, 4, at)
        return self.ports.read(0x514, 1)

    def ram_digest(self):
        return hashlib.sha256(bytes(self.phys.ram)).hexdigest()


def image(tmp_path, name, sectors):
    data = bytearray(sectors * SECTOR)
    for lba in range(sectors):
        data[lba * SECTOR:lba * SECTOR + 8] = b"LBA%05d" % lba
    p = tmp_path / name
    p.write_bytes(bytes(data))
    return str(p)


def file_digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def rig(tmp_path):
    hd0 = image(tmp_path, "hd0.img", 4096)            # 2 MiB: 4 x 16 x 63
    hd1 = image(tmp_path, "hd1.img", 100)
    fd = image(tmp_path, "fd.img", 2880)              # 1.44 MB
    r = Rig(MachineConfig(memory_mb=2, disks=[hd0, hd1], floppy=fd))
    r.paths = {"hd0": hd0, "hd1": hd1, "fd": fd}
    return r


# --- items ---------------------------------------------------------------------------
def test_signature_version_and_ram_size(rig):
    assert rig.item(0x0000, 4) == b"EMU0"
    assert struct.unpack("<I", rig.item(0x0001, 4))[0] == 1
    assert struct.unpack("<Q", rig.item(0x0002, 8))[0] == RAM


def test_selector_reads_back_and_rewinds(rig):
    rig.ports.write(0x510, 2, 0x0002)
    assert rig.ports.read(0x510, 2) == 0x0002
    first = rig.ports.read(0x511, 1)
    rig.ports.write(0x510, 2, 0x0002)                 # selecting again rewinds
    assert rig.ports.read(0x511, 1) == first


def test_reads_past_the_end_and_unknown_items_give_zero(rig):
    assert rig.item(0x0000, 8) == b"EMU0\0\0\0\0"
    assert rig.item(0x7777, 4) == bytes(4)


def test_boot_item_default_order_for_disk_boot(rig):
    assert rig.item(0x0003, 2) == bytes([BOOT_DISK, 0xFF])


def test_drive_table(rig):
    t = rig.item(0x0004, 4 + 5 * 16)
    ftype, nhd, esize = struct.unpack_from("<BBH", t, 0)
    assert (ftype, nhd, esize) == (4, 2, 16)
    ent = [struct.unpack_from("<QHHHH", t, 4 + 16 * i) for i in range(5)]
    assert ent[0] == (2880, 80, 2, 18, 0)
    assert ent[1] == (4096, 4, 16, 63, 0)
    assert ent[2] == (100, 1, 16, 63, 0)
    assert ent[3] == ent[4] == (0, 0, 0, 0, 0)


def test_no_drives(tmp_path):
    r = Rig(MachineConfig(memory_mb=2))
    t = r.item(0x0004, 4 + 5 * 16)
    assert t[:2] == b"\0\0" and t[4:] == bytes(80)


def test_data_port_writes_are_ignored(rig):
    rig.ports.write(0x510, 2, 0)
    rig.ports.write(0x511, 1, 0x41)
    assert rig.item(0x0000, 4) == b"EMU0"


# --- configuration errors ----------------------------------------------------------------
def test_missing_disk_image_stops_with_one_line(tmp_path):
    with pytest.raises(VMStop) as e:
        Rig(MachineConfig(memory_mb=2, disks=[str(tmp_path / "missing.img")]))
    assert "missing.img" in e.value.reason and "\n" not in e.value.reason


def test_floppy_too_large(tmp_path):
    big = image(tmp_path, "big.img", 8192)
    with pytest.raises(VMStop) as e:
        Rig(MachineConfig(memory_mb=2, floppy=big))
    assert "floppy" in e.value.reason


def test_at_most_four_hard_disks(tmp_path):
    paths = [image(tmp_path, "d%d.img" % i, 8) for i in range(5)]
    with pytest.raises(VMStop):
        Rig(MachineConfig(memory_mb=2, disks=paths))


# --- block I/O -------------------------------------------------------------------------
def test_read_sectors_into_ram(rig):
    assert rig.request(1, 0x80, 3, 1000, BUF) == 0
    got = rig.phys.read_bytes(BUF, 3 * SECTOR)
    assert [got[i * SECTOR:i * SECTOR + 8] for i in range(3)] == [b"LBA01000", b"LBA01001",
                                                                  b"LBA01002"]
    # completion written back: status over the op byte, sectors done over the count
    assert rig.phys.read_bytes(REQ, 4) == bytes([0, 0x80]) + struct.pack("<H", 3)


def test_read_from_floppy_and_second_disk(rig):
    assert rig.request(1, 0x00, 1, 2879, BUF) == 0
    assert rig.phys.read_bytes(BUF, 8) == b"LBA02879"
    assert rig.request(1, 0x81, 1, 99, BUF) == 0
    assert rig.phys.read_bytes(BUF, 8) == b"LBA00099"


def test_write_lands_in_the_overlay_not_the_file(rig):
    before = file_digest(rig.paths["hd0"])
    rig.phys.write_bytes(BUF, b"W" * SECTOR * 2)
    assert rig.request(2, 0x80, 2, 7, BUF) == 0
    rig.phys.write_bytes(BUF, bytes(2 * SECTOR))
    assert rig.request(1, 0x80, 3, 6, BUF) == 0
    got = rig.phys.read_bytes(BUF, 3 * SECTOR)
    assert got[:8] == b"LBA00006" and got[SECTOR:] == b"W" * SECTOR * 2
    assert file_digest(rig.paths["hd0"]) == before


def test_writable_disk_is_written(tmp_path):
    p = image(tmp_path, "w.img", 16)
    r = Rig(MachineConfig(memory_mb=2, disks=[p], disk_writable=True))
    r.phys.write_bytes(BUF, b"Q" * SECTOR)
    assert r.request(2, 0x80, 1, 5, BUF) == 0
    r.fw.drives[0x80].close()
    with open(p, "rb") as f:
        f.seek(5 * SECTOR)
        assert f.read(SECTOR) == b"Q" * SECTOR


def test_verify_checks_range_only(rig):
    before = rig.phys.read_bytes(BUF, 4 * SECTOR)
    assert rig.request(3, 0x80, 4, 4092, BUF) == 0
    assert rig.phys.read_bytes(BUF, 4 * SECTOR) == before
    assert rig.request(3, 0x80, 5, 4092, BUF) == 0x04


@pytest.mark.parametrize("lba, count", [(4096, 1), (4095, 2), (1 << 40, 1), ((1 << 64) - 1, 2)])
def test_out_of_range_is_sector_not_found_and_ram_unchanged(rig, lba, count):
    rig.phys.write_bytes(REQ, bytes(16))
    before = rig.phys.read_bytes(BUF, 2 * SECTOR)
    assert rig.request(1, 0x80, count, lba, BUF) == 0x04
    assert rig.phys.read_bytes(BUF, 2 * SECTOR) == before
    assert rig.phys.read_bytes(REQ, 4) == bytes([0x04, 0x80, 0, 0])


@pytest.mark.parametrize("op, drive", [(0, 0x80), (4, 0x80), (0xFF, 0x80), (1, 0x82), (1, 0x01),
                                       (1, 0x7F)])
def test_bad_op_or_absent_drive_is_status_1(rig, op, drive):
    assert rig.request(op, drive, 1, 0, BUF) == 0x01


def test_zero_sectors_is_a_no_op(rig):
    assert rig.request(1, 0x80, 0, 0, BUF) == 0
    assert rig.phys.read_bytes(BUF, SECTOR) == bytes(SECTOR)


def test_only_a_32_bit_write_starts_a_request(rig):
    rig.phys.write_bytes(REQ, struct.pack("<BBHQI", 1, 0x80, 1, 5, BUF))
    rig.ports.write(0x514, 1, REQ & 0xFF)
    rig.ports.write(0x514, 2, REQ)
    assert rig.fw.counters["requests"] == 0
    assert rig.phys.read_bytes(BUF, 8) == bytes(8)


# --- DMA refusal: the device reports, RAM does not change --------------------------------
@pytest.mark.parametrize("buf", [
    0xF0000,                  # the BIOS ROM
    0xEFF00,                  # RAM running into the ROM
    0xA0000,                  # VGA MMIO
    0x9FF00,                  # low RAM running into MMIO
    RAM,                      # past the end of RAM
    RAM - SECTOR // 2,        # straddling the end of RAM
    0xFFFFFF00,               # wrapping at 4 GiB
    0xFFFF0000,               # far outside RAM
])
def test_read_into_refused_buffer_is_status_9(rig, buf):
    rig.phys.write_bytes(REQ, struct.pack("<BBHQI", 1, 0x80, 1, 0, buf))
    req_before = rig.ram_digest()
    rig.ports.write(0x514, 4, REQ)
    assert rig.ports.read(0x514, 1) == 0x09
    # only the request's own status/count changed
    rig.phys.write_bytes(REQ, struct.pack("<BBHQI", 1, 0x80, 1, 0, buf))
    assert rig.ram_digest() == req_before
    assert rig.phys.read_bytes(0xF0000, 0x10000) == rig.rom
    assert rig.mmio_writes == []
    assert rig.dma.counters["fwcfg"]["refused"] >= 1


def test_write_from_rom_or_mmio_is_refused_and_disk_unchanged(rig):
    for buf in (0xF0000, 0xA0000, RAM - 16):
        assert rig.request(2, 0x80, 1, 9, buf) == 0x09
        assert rig.fw.drives[0x80].overlay == {}
    assert rig.request(1, 0x80, 1, 9, BUF) == 0
    assert rig.phys.read_bytes(BUF, 8) == b"LBA00009"


@pytest.mark.parametrize("at", [0xF0000, 0xA0000, RAM, RAM - 8, 0xFFFFFFF8, 0xFFFFFFFF])
def test_request_outside_ram_is_status_1_and_nothing_moves(rig, at):
    before = rig.ram_digest()
    rig.ports.write(0x514, 4, at)
    assert rig.ports.read(0x514, 1) == 0x01
    assert rig.ram_digest() == before
    assert rig.phys.read_bytes(0xF0000, 0x10000) == rig.rom
    assert rig.mmio_writes == []


def test_transfer_longer_than_the_dma_limit_is_refused(tmp_path):
    p = tmp_path / "big.img"
    with open(p, "wb") as f:
        f.truncate(40 << 20)
    r = Rig(MachineConfig(memory_mb=2, disks=[str(p)]))
    r.phys.write_bytes(REQ, struct.pack("<BBHQI", 1, 0x80, 0xFFFF, 0, BUF))
    snap = r.ram_digest()
    r.ports.write(0x514, 4, REQ)
    assert r.ports.read(0x514, 1) == 0x09
    r.phys.write_bytes(REQ, struct.pack("<BBHQI", 1, 0x80, 0xFFFF, 0, BUF))
    assert r.ram_digest() == snap


def test_hostile_port_writes_never_raise(rig):
    """Any value at any size on every port of the device: the bus sees no
    handler error, and the device still works afterwards."""
    rnd = random.Random(1234)
    for _ in range(3000):
        port = rnd.choice([0x510, 0x511, 0x512, 0x514, 0x515, 0x516, 0x517, 0x518])
        size = rnd.choice([1, 2, 4])
        if rnd.random() < 0.5:
            rig.ports.write(port, size, rnd.getrandbits(32))
        else:
            rig.ports.read(port, size)
    assert rig.ports.counters["handler_errors"] == 0
    assert rig.phys.read_bytes(0xF0000, 0x10000) == rig.rom
    assert rig.item(0x0000, 4) == b"EMU0"
    assert rig.request(1, 0x80, 1, 3, BUF) == 0
    assert rig.phys.read_bytes(BUF, 8) == b"LBA00003"


def test_reset_clears_selection_and_status(rig):
    rig.request(1, 0x80, 1, 99999, BUF)
    rig.ports.write(0x510, 2, 4)
    rig.fw.reset()
    assert rig.ports.read(0x514, 1) == 0 and rig.ports.read(0x510, 2) == 0


# --- kernel handoff --------------------------------------------------------------------
def test_handoff_without_a_loader_reports_status_1():
    r = Rig(MachineConfig(memory_mb=2))
    r.ports.write(0x518, 1, 1)
    assert r.ports.read(0x518, 1) == 1


def test_handoff_calls_boot_kernel_at_the_next_boundary(tmp_path):
    """The loader sets CS:EIP: not inside the OUT, but from the clock, which the
    machine fires between CPU runs (at an instruction boundary)."""
    calls = []
    k = tmp_path / "bzImage"
    k.write_bytes(bytes(0x202) + b"HdrS" + bytes(100))
    r = Rig(MachineConfig(memory_mb=2, kernel=str(k)), boot_kernel=lambda: calls.append(1))
    assert r.item(0x0003, 2) == bytes([BOOT_LINUX, 0xFF])
    r.ports.write(0x518, 1, 0)
    assert calls == [] and r.ports.read(0x518, 1) == 3          # pending
    r.ports.write(0x518, 1, 0)                                   # a second write: no second call
    assert r.clock.fire_due() == 1
    assert calls == [1] and r.ports.read(0x518, 1) == 0


def test_handoff_failure_is_status_2_and_vmstop_passes(tmp_path):
    k = tmp_path / "k"
    k.write_bytes(bytes(64))

    def refuse():
        raise ValueError("bad kernel")

    r = Rig(MachineConfig(memory_mb=2, kernel=str(k)), boot_kernel=refuse)
    r.ports.write(0x518, 1, 0)
    r.clock.fire_due()
    assert r.ports.read(0x518, 1) == 2

    def stop():
        raise VMStop("no kernel given")

    r = Rig(MachineConfig(memory_mb=2, kernel=str(k)), boot_kernel=stop)
    r.ports.write(0x518, 1, 0)
    with pytest.raises(VMStop):
        r.clock.fire_due()
    assert r.ports.read(0x518, 1) == 2


def test_reset_cancels_a_pending_handoff(tmp_path):
    calls = []
    k = tmp_path / "k"
    k.write_bytes(bytes(64))
    r = Rig(MachineConfig(memory_mb=2, kernel=str(k)), boot_kernel=lambda: calls.append(1))
    r.ports.write(0x518, 1, 0)
    r.fw.reset()
    assert r.clock.fire_due() == 0 and calls == []
    assert r.ports.read(0x518, 1) == 0


def test_disk_boot_machine_ignores_handoff(tmp_path):
    calls = []
    r = Rig(MachineConfig(memory_mb=2), boot_kernel=lambda: calls.append(1))
    r.ports.write(0x518, 1, 0)
    assert calls == [] and r.ports.read(0x518, 1) == 1


def test_boot_mode_detection(tmp_path):
    mb = tmp_path / "mb.elf"
    magic, flags = 0x1BADB002, 0x3
    hdr = struct.pack("<III", magic, flags, (-(magic + flags)) & 0xFFFFFFFF)
    mb.write_bytes(bytes(4096) + hdr + bytes(100))
    assert kernel_boot_mode(str(mb)) == BOOT_MULTIBOOT
    bad = tmp_path / "bad.elf"
    bad.write_bytes(bytes(4096) + struct.pack("<III", magic, flags, 0) + bytes(100))
    assert kernel_boot_mode(str(bad)) == BOOT_LINUX
    late = tmp_path / "late.elf"
    late.write_bytes(bytes(8192) + hdr)
    assert kernel_boot_mode(str(late)) == BOOT_LINUX
    r = Rig(MachineConfig(memory_mb=2, kernel=str(mb)))
    assert r.item(0x0003, 1) == bytes([BOOT_MULTIBOOT])
    # a machine that knows better says so
    r = Rig(MachineConfig(memory_mb=2, kernel=str(mb)), boot_mode=BOOT_LINUX)
    assert r.item(0x0003, 1) == bytes([BOOT_LINUX])
