"""The firmware interface: a paravirtual channel between the machine and OUR BIOS.

QEMU gives SeaBIOS the machine's configuration through fw_cfg; emu gives it
to firmware/bios.asm through this device.  It is not a model of any real
chip: it exists so that the BIOS needs no disk controller driver and no
knowledge of the command line.  Guests other than our BIOS have no reason to
use it, but may: every value they write leaves it in a defined state, and it
touches memory only through ``bus.dma`` under its own name ``"fwcfg"``.

Protocol (version 1)
--------------------

Configuration items, read a byte at a time::

    OUT 0x510, ax      select item AX (any write size; the value is the item
                       number) and rewind to its first byte
    IN  al, 0x511      next byte of the selected item; 0 past its end or for
                       an unknown item (so ``rep insb`` is safe)
    IN  ax, 0x510      the selected item number

    item    name        contents (little-endian)
    0x0000  SIGNATURE   b"EMU0"
    0x0001  VERSION     u32 protocol version (1)
    0x0002  RAM_SIZE    u64 bytes of guest RAM (low RAM + extended RAM)
    0x0003  BOOT        u8 mode: 0 BIOS disk boot, 1 Linux boot protocol,
                        2 Multiboot; u8 boot drive: 0x00 floppy, 0x80 first
                        hard disk, 0xFF "default order" (floppy, then 0x80)
    0x0004  DRIVES      u8 floppy type (0 none, else the CMOS type 1..5:
                        360K, 1.2M, 720K, 1.44M, 2.88M); u8 number of hard
                        disks (0..4); u16 entry size (16); then 5 entries,
                        floppy first, then hard disks 0x80..0x83 (zeros when
                        absent): u64 sectors, u16 cylinders, u16 heads,
                        u16 sectors per track, u16 reserved

Block I/O, one request at a time, completed before the OUT returns::

    OUT 0x514, eax     (32-bit write only) EAX = guest-physical address of a
                       16-byte request:
                          +0  u8  op: 1 read, 2 write, 3 verify
                          +1  u8  drive: 0x00 floppy, 0x80.. hard disks
                          +2  u16 sector count
                          +4  u64 first LBA
                          +12 u32 guest-physical buffer address
                       On completion the device writes back, by DMA, the
                       status over the op byte (+0) and the number of
                       sectors done over the count (+2).
    IN  al, 0x514      status of the last request (any read size)

    status: 0x00 ok; 0x01 bad request (unknown op, absent drive, or the
    request itself not in RAM: then nothing is written back and only the
    port tells); 0x04 sector not found (any sector outside the disk);
    0x09 the buffer is refused by DMA (ROM, MMIO, past RAM, wrapping at
    4 GiB, or longer than the DMA limit); 0x20 host I/O error.  These are
    INT 13h status codes, so the BIOS passes them on unchanged.  A request is
    all or nothing: on an error no sector is transferred and no byte of the
    buffer changes.

Kernel handoff::

    OUT 0x518, al      (any value, any size) the BIOS has finished POST and
                       the machine boots the --kernel it was given.  The
                       loader (``machine.boot_kernel()``, emu/boot/) sets
                       CS:EIP and the rest of the CPU state, so it must run
                       at an instruction boundary, not inside the OUT (the
                       interpreter would move EIP past the OUT afterwards):
                       the device schedules it on the virtual clock for
                       "now", and the machine's run loop fires it when the
                       CPU returns, at the latest after one run quantum.
    IN  al, 0x518      status of the handoff: 0 none asked, or done;
                       1 this machine has no kernel to boot (disk boot, or
                       no loader); 2 the loader refused the kernel (a
                       VMStop it raises ends the run with its reason);
                       3 pending: the BIOS spins on this port until the
                       loader takes the CPU away from it

Unknown ports around these (0x512-0x513, 0x515-0x517, 0x519) are not
claimed: they read all ones, as on any PC.
"""
import struct

from ..errors import VMStop
from .disk import DiskImage, DiskRangeError, SECTOR
from .dma import DMAError

PORT_SELECT = 0x510
PORT_DATA = 0x511
PORT_BLOCK = 0x514
PORT_HANDOFF = 0x518

ITEM_SIGNATURE = 0x0000
ITEM_VERSION = 0x0001
ITEM_RAM_SIZE = 0x0002
ITEM_BOOT = 0x0003
ITEM_DRIVES = 0x0004

VERSION = 1
BOOT_DISK, BOOT_LINUX, BOOT_MULTIBOOT = 0, 1, 2
BOOT_DEFAULT_ORDER = 0xFF
MAX_HARD_DISKS = 4
DRIVE_ENTRY = struct.Struct("<QHHHH")

OP_READ, OP_WRITE, OP_VERIFY = 1, 2, 3
REQUEST = struct.Struct("<BBHQI")          # 16 bytes
ST_OK, ST_BAD_REQUEST, ST_NOT_FOUND, ST_DMA, ST_HOST_IO = 0x00, 0x01, 0x04, 0x09, 0x20
HANDOFF_DONE, HANDOFF_UNSUPPORTED, HANDOFF_REFUSED, HANDOFF_PENDING = 0, 1, 2, 3

MULTIBOOT_MAGIC = 0x1BADB002


def kernel_boot_mode(path):
    """BOOT_MULTIBOOT if the file has a Multiboot v1 header (magic with a valid
    checksum, 4-byte aligned in its first 8 KiB), else BOOT_LINUX."""
    try:
        with open(path, "rb") as f:
            head = f.read(8192)
    except OSError:
        return BOOT_LINUX
    for off in range(0, len(head) - 11, 4):
        magic, flags, check = struct.unpack_from("<III", head, off)
        if magic == MULTIBOOT_MAGIC and (magic + flags + check) & 0xFFFFFFFF == 0:
            return BOOT_MULTIBOOT
    return BOOT_LINUX


class FirmwareInterface:
    NAME = "fwcfg"

    def __init__(self, bus, machine):
        self.bus = bus
        self.machine = machine
        cfg = machine.config
        self.drives = self._open_drives(cfg)
        self.ram_size = self._ram_size(machine)
        self.boot_mode = self._boot_mode(machine)
        self.boot_drive = self._boot_drive(cfg)
        self.items = self._build_items()
        self.counters = {"requests": 0, "errors": 0, "dma_refused": 0, "handoffs": 0}
        self.reset()
        bus.ports.register(PORT_SELECT, 2, read=self._read_cfg, write=self._write_cfg,
                           name="fwcfg", sizes=(1, 2))
        bus.ports.register(PORT_BLOCK, 4, read=self._read_block, write=self._write_block,
                           name="fwcfg-block")
        bus.ports.register(PORT_HANDOFF, 1, read=self._read_handoff, write=self._write_handoff,
                           name="fwcfg-handoff")

    # --- configuration --------------------------------------------------------------
    @staticmethod
    def _open(path, writable):
        try:
            return DiskImage(path, writable=writable)
        except ValueError as e:
            raise VMStop(str(e), kind="error") from None

    def _open_drives(self, cfg):
        """drive number -> DiskImage; the machine may already hold the images."""
        given = getattr(self.machine, "disk_images", None)
        if isinstance(given, dict):
            return dict(given)
        writable = bool(getattr(cfg, "disk_writable", False))
        drives = {}
        floppy = getattr(cfg, "floppy", None)
        if floppy:
            img = self._open(floppy, writable)
            if img.floppy_type() is None:
                raise VMStop("floppy image %s: %d bytes is larger than a 2.88 MB floppy"
                             % (floppy, img.size), kind="error")
            drives[0x00] = img
        disks = list(getattr(cfg, "disks", ()) or ())
        if len(disks) > MAX_HARD_DISKS:
            raise VMStop("at most %d hard disks, not %d" % (MAX_HARD_DISKS, len(disks)),
                         kind="error")
        for i, path in enumerate(disks):
            drives[0x80 + i] = self._open(path, writable)
        return drives

    @staticmethod
    def _ram_size(machine):
        phys = getattr(machine, "phys", None)
        if phys is not None and getattr(phys, "ram_size", None):
            return phys.ram_size
        return machine.config.memory_mb << 20

    @staticmethod
    def _boot_mode(machine):
        mode = getattr(machine, "boot_mode", None)
        if mode in (BOOT_DISK, BOOT_LINUX, BOOT_MULTIBOOT):
            return mode
        kernel = getattr(machine.config, "kernel", None)
        return kernel_boot_mode(kernel) if kernel else BOOT_DISK

    def _boot_drive(self, cfg):
        d = getattr(cfg, "boot_drive", None)
        if isinstance(d, int) and d in self.drives:
            return d
        return BOOT_DEFAULT_ORDER

    def _build_items(self):
        floppy = self.drives.get(0x00)
        hds = [self.drives[d] for d in sorted(self.drives) if d >= 0x80][:MAX_HARD_DISKS]
        table = bytearray(struct.pack("<BBH", floppy.floppy_type() if floppy else 0,
                                      len(hds), DRIVE_ENTRY.size))
        if floppy:
            c, h, s = floppy.floppy_geometry()
            table += DRIVE_ENTRY.pack(floppy.sectors, c, h, s, 0)
        else:
            table += bytes(DRIVE_ENTRY.size)
        for i in range(MAX_HARD_DISKS):
            if i < len(hds):
                c, h, s = hds[i].hd_geometry()
                table += DRIVE_ENTRY.pack(hds[i].sectors, c, h, s, 0)
            else:
                table += bytes(DRIVE_ENTRY.size)
        return {
            ITEM_SIGNATURE: b"EMU0",
            ITEM_VERSION: struct.pack("<I", VERSION),
            ITEM_RAM_SIZE: struct.pack("<Q", self.ram_size),
            ITEM_BOOT: struct.pack("<BB", self.boot_mode, self.boot_drive),
            ITEM_DRIVES: bytes(table),
        }

    def reset(self):
        timer = getattr(self, "_handoff_timer", None)
        if timer is not None:
            self.bus.clock.cancel(timer)
        self._handoff_timer = None
        self.selector = 0
        self.offset = 0
        self.status = ST_OK
        self.handoff_status = HANDOFF_DONE

    # --- configuration items ----------------------------------------------------------
    def _read_cfg(self, port, size):
        if port == PORT_SELECT:
            return self.selector & ((1 << (8 * size)) - 1)
        data = self.items.get(self.selector, b"")
        if self.offset < len(data):
            v = data[self.offset]
            self.offset += 1
            return v
        return 0

    def _write_cfg(self, port, size, value):
        if port == PORT_SELECT:
            self.selector = value & 0xFFFF
            self.offset = 0
        # writes to the data port are ignored: every item is read-only

    # --- block I/O ---------------------------------------------------------------------
    def _read_block(self, port, size):
        return self.status

    def _write_block(self, port, size, value):
        if port != PORT_BLOCK or size != 4:
            return                       # only a whole 32-bit write starts a request
        self.status = self._request(value)
        self.counters["requests"] += 1
        if self.status != ST_OK:
            self.counters["errors"] += 1

    def _request(self, addr):
        dma = self.bus.dma
        try:
            raw = dma.read(self.NAME, addr, REQUEST.size)
        except DMAError:
            self.counters["dma_refused"] += 1
            return ST_BAD_REQUEST
        op, drive, count, lba, buf = REQUEST.unpack(raw)
        status, done = self._transfer(op, drive, count, lba, buf)
        try:
            dma.write(self.NAME, addr, bytes([status]))
            dma.write(self.NAME, addr + 2, struct.pack("<H", done))
        except DMAError:                 # the request was readable: it is RAM
            self.counters["dma_refused"] += 1
        return status

    def _transfer(self, op, drive, count, lba, buf):
        """(status, sectors done) of one request; all or nothing."""
        disk = self.drives.get(drive)
        if disk is None or op not in (OP_READ, OP_WRITE, OP_VERIFY):
            return ST_BAD_REQUEST, 0
        dma = self.bus.dma
        nbytes = count * SECTOR
        try:
            disk.check(lba, count)
            if op == OP_VERIFY:
                return ST_OK, count
            if nbytes > getattr(dma, "max_request", 1 << 24):
                self.counters["dma_refused"] += 1
                return ST_DMA, 0
            if op == OP_READ:
                dma.write(self.NAME, buf, disk.read(lba, count))
            else:
                disk.write(lba, dma.read(self.NAME, buf, nbytes))
        except DiskRangeError:
            return ST_NOT_FOUND, 0
        except DMAError:
            self.counters["dma_refused"] += 1
            return ST_DMA, 0
        except OSError:
            return ST_HOST_IO, 0
        return ST_OK, count

    # --- kernel handoff ------------------------------------------------------------------
    def _read_handoff(self, port, size):
        return self.handoff_status

    def _write_handoff(self, port, size, value):
        self.counters["handoffs"] += 1
        if self.handoff_status == HANDOFF_PENDING:
            return                       # already on its way
        boot = getattr(self.machine, "boot_kernel", None)
        if boot is None or self.boot_mode == BOOT_DISK:
            self.handoff_status = HANDOFF_UNSUPPORTED
            return
        self.handoff_status = HANDOFF_PENDING
        clock = self.bus.clock
        self._handoff_timer = clock.schedule(clock.now(), self._handoff)

    def _handoff(self):
        """From the clock, between instructions: the loader takes the CPU."""
        self._handoff_timer = None
        try:
            self.machine.boot_kernel()
        except VMStop:
            self.handoff_status = HANDOFF_REFUSED
            raise                        # the loader's deliberate, reported stop
        except Exception:
            self.handoff_status = HANDOFF_REFUSED
            return
        self.handoff_status = HANDOFF_DONE
