"""Multiboot v1: the way teaching kernels (and memtest86+, Xen, ...) boot.

The header (Multiboot Specification 0.6.96, section 3.1) is a 32-bit
aligned structure in the first 8192 bytes of the image:

    +0  magic     0x1BADB002
    +4  flags     bits 0-15 are requirements (the loader must refuse a kernel
                  whose requirement it cannot meet): 0 = page-align modules,
                  1 = memory information, 2 = video mode information;
                  bit 16: the address fields below are valid (the "a.out
                  kludge": load without reading the image's format)
    +8  checksum  magic + flags + checksum == 0 (mod 2**32)
    +12 header_addr, +16 load_addr, +20 load_end_addr, +24 bss_end_addr,
    +28 entry_addr                       (flag 16)
    +32 mode_type, +36 width, +40 height, +44 depth   (flag 2)

The loader puts the kernel where the ELF program headers (p_paddr) or the
address fields say, builds the Multiboot information structure in low memory
and enters in 32-bit protected mode: EAX = 0x2BADB002, EBX = the structure's
physical address, flat 4 GiB segments, paging and interrupts off, A20 on.

Information structure (section 3.3) as built here:

    +0 flags: 0 mem_lower/mem_upper, 2 cmdline, 3 mods, 6 mmap,
              9 boot_loader_name, 12 framebuffer (the VGA text screen)
    +4 mem_lower (KiB below 640 KiB), +8 mem_upper (KiB of contiguous RAM from 1 MiB)
    +16 cmdline, +20 mods_count, +24 mods_addr
    +44 mmap_length, +48 mmap_addr: entries of (size=20, base u64, length u64, type)
    +64 boot_loader_name
    +88 framebuffer_addr u64, +96 pitch, +100 width, +104 height, +108 bpp, +109 type
"""
import struct

from . import elf
from .loader import (BootImageError, BootPlan, LowArea, BOOT_AREA, GDT_ADDR, check_usable,
                     enter_flat32, flat_gdt, overlaps, usable_end_at, mib)

MAGIC = 0x1BADB002
BOOT_MAGIC = 0x2BADB002             # in EAX at entry
MB2_MAGIC = 0xE85250D6
SEARCH_BYTES = 8192

F_PAGE_ALIGN, F_MEMINFO, F_VIDEO, F_ADDRESSES = 1 << 0, 1 << 1, 1 << 2, 1 << 16
SUPPORTED_REQUIREMENTS = F_PAGE_ALIGN | F_MEMINFO | F_VIDEO

INFO_MEM, INFO_CMDLINE, INFO_MODS, INFO_MMAP = 1 << 0, 1 << 2, 1 << 3, 1 << 6
INFO_LOADER_NAME, INFO_FRAMEBUFFER = 1 << 9, 1 << 12
INFO_SIZE = 116
LOADER_NAME = b"emu\0"

_MAGIC_BYTES = struct.pack("<I", MAGIC)


class Header:
    """A Multiboot v1 header found at ``offset`` in the image."""

    def __init__(self, data, offset):
        self.offset = offset
        self.flags = struct.unpack_from("<I", data, offset + 4)[0]
        self.addresses = None
        if self.flags & F_ADDRESSES:
            if offset + 32 > len(data):
                raise ValueError("Multiboot header at 0x%x sets flag 16 but its address "
                                 "fields run past the end of the file" % offset)
            (self.header_addr, self.load_addr, self.load_end_addr, self.bss_end_addr,
             self.entry_addr) = struct.unpack_from("<5I", data, offset + 12)
            self.addresses = True


def find_header(data):
    """The first valid Multiboot v1 header in the first 8 KiB, or None.

    A magic number whose checksum is wrong (and no valid header anywhere)
    is an error: the image was meant to be a Multiboot kernel."""
    limit = min(len(data), SEARCH_BYTES) - 12
    bad = None
    pos = data.find(_MAGIC_BYTES, 0, limit + 4) if limit >= 0 else -1
    while pos != -1:
        if pos % 4 == 0:
            flags, check = struct.unpack_from("<II", data, pos + 4)
            if (MAGIC + flags + check) & 0xFFFFFFFF == 0:
                return Header(data, pos)
            if bad is None:
                bad = (pos, (MAGIC + flags + check) & 0xFFFFFFFF)
        pos = data.find(_MAGIC_BYTES, pos + 1, limit + 4)
    if bad is not None:
        raise ValueError("Multiboot header at offset 0x%x has a wrong checksum (magic + flags "
                         "+ checksum = 0x%08x, must be 0)" % bad)
    return None


def has_multiboot2(data):
    head = data[:32768]
    pos = head.find(struct.pack("<I", MB2_MAGIC))
    while pos != -1:
        if pos % 8 == 0:
            return True
        pos = head.find(struct.pack("<I", MB2_MAGIC), pos + 1)
    return False


def _load_chunks(data, hdr):
    """[(paddr, file bytes, memsz)] and the physical entry point."""
    if hdr.addresses:
        if hdr.load_addr > hdr.header_addr:
            raise ValueError("Multiboot load_addr 0x%x is above header_addr 0x%x"
                             % (hdr.load_addr, hdr.header_addr))
        start = hdr.offset - (hdr.header_addr - hdr.load_addr)
        if start < 0:
            raise ValueError("Multiboot header_addr - load_addr (0x%x) reaches before the "
                             "start of the file" % (hdr.header_addr - hdr.load_addr))
        if hdr.load_end_addr == 0:
            size = len(data) - start
        else:
            if hdr.load_end_addr < hdr.load_addr:
                raise ValueError("Multiboot load_end_addr 0x%x is below load_addr 0x%x"
                                 % (hdr.load_end_addr, hdr.load_addr))
            size = hdr.load_end_addr - hdr.load_addr
            if start + size > len(data):
                raise ValueError("Multiboot load_end_addr asks for %d bytes from file offset "
                                 "0x%x; the file has %d: truncated?" % (size, start, len(data)))
        memsz = size
        if hdr.bss_end_addr:
            if hdr.bss_end_addr < hdr.load_addr + size:
                raise ValueError("Multiboot bss_end_addr 0x%x is below the end of the loaded "
                                 "image 0x%x" % (hdr.bss_end_addr, hdr.load_addr + size))
            memsz = hdr.bss_end_addr - hdr.load_addr
        if hdr.load_addr + memsz > 1 << 32:
            raise ValueError("Multiboot image at 0x%x + 0x%x wraps past 4 GiB"
                             % (hdr.load_addr, memsz))
        if memsz == 0:
            raise ValueError("Multiboot address fields load nothing")
        chunks = [(hdr.load_addr, data[start:start + size], memsz)]
        return chunks, hdr.entry_addr
    if not elf.is_elf(data):
        raise ValueError("Multiboot header without address fields (flag 16) in an image that "
                         "is not ELF: cannot tell where to load it")
    image = elf.parse(data)
    chunks = [(s.paddr, image.segment_bytes(s), s.memsz) for s in image.segments]
    return chunks, image.entry_physical()


def plan_multiboot(data, cmdline, initrd, e820, kernel_name="kernel", initrd_name="initrd"):
    hdr = find_header(data)
    if hdr is None:
        raise ValueError("no Multiboot header in the first 8 KiB")
    missing = hdr.flags & 0xFFFF & ~SUPPORTED_REQUIREMENTS
    if missing:
        raise ValueError("the Multiboot header requires features emu's loader does not have "
                         "(flags 0x%04x)" % missing)
    chunks, entry = _load_chunks(data, hdr)
    plan = BootPlan("multiboot")
    low, high = BOOT_AREA
    kernel_lo, kernel_hi = 1 << 32, 0
    for paddr, blob, memsz in chunks:
        check_usable(e820, paddr, memsz, "kernel segment")
        if overlaps(paddr, paddr + memsz, low, high):
            raise ValueError("kernel segment at 0x%x-0x%x overlaps the boot information area "
                             "0x%x-0x%x" % (paddr, paddr + memsz - 1, low, high - 1))
        if memsz > len(blob):
            plan.zeros.append((paddr + len(blob), memsz - len(blob)))
        plan.add(paddr, blob)
        kernel_lo = min(kernel_lo, paddr)
        kernel_hi = max(kernel_hi, paddr + memsz)
    if not any(p <= entry < p + m for p, _, m in chunks):
        raise ValueError("entry point 0x%x is outside the loaded image (0x%x-0x%x)"
                         % (entry, kernel_lo, kernel_hi - 1))
    plan.entry = entry
    plan.kernel_addr, plan.kernel_end = kernel_lo, kernel_hi

    area = LowArea()
    gdt = flat_gdt()
    assert area.alloc(len(gdt), 16) == GDT_ADDR
    plan.add(GDT_ADDR, gdt)
    info_addr = area.alloc(INFO_SIZE, 16)
    info = bytearray(INFO_SIZE)
    flags = INFO_MEM | INFO_CMDLINE | INFO_MMAP | INFO_LOADER_NAME | INFO_FRAMEBUFFER

    # memory: mem_lower from the range at 0, mem_upper from the one at 1 MiB
    mem_lower = min(640, usable_end_at(e820, 0) // 1024)
    mem_upper = max(0, usable_end_at(e820, 0x100000) - 0x100000) // 1024
    struct.pack_into("<II", info, 4, mem_lower, mem_upper)

    entries = [(b, n, t) for b, n, t in sorted(e820) if n > 0]
    mmap = b"".join(struct.pack("<IQQI", 20, b, n, t) for b, n, t in entries)
    mmap_addr = area.alloc(len(mmap), 8, "the memory map")
    plan.add(mmap_addr, mmap)
    struct.pack_into("<II", info, 44, len(mmap), mmap_addr)

    name_addr = area.alloc(len(LOADER_NAME), 4)
    plan.add(name_addr, LOADER_NAME)
    struct.pack_into("<I", info, 64, name_addr)

    # framebuffer: the VGA text screen (type 2 = EGA text, 80x25, 2 bytes a cell)
    struct.pack_into("<QIIIBB", info, 88, 0xB8000, 160, 80, 25, 16, 2)

    # the command line: "<kernel> <args>", as GRUB and QEMU pass it (argv[0] first)
    full = kernel_name.encode("utf-8", "replace") + (b" " + cmdline if cmdline else b"")
    cmd_addr = area.alloc(len(full) + 1, 4, "the command line (%d bytes)" % len(full))
    plan.add(cmd_addr, full + b"\0")
    struct.pack_into("<I", info, 16, cmd_addr)
    plan.cmdline = full.decode("utf-8", "replace")
    plan.cmdline_addr = cmd_addr

    if initrd is not None:
        # the module goes page-aligned above the kernel (and above 1 MiB)
        start = max((kernel_hi + 0xFFF) & ~0xFFF, 0x100000)
        size = len(initrd)
        top = usable_end_at(e820, start)
        if start + size > top:
            raise BootImageError("initrd (%s) does not fit in usable RAM above the kernel "
                                 "(from 0x%x); give more --memory" % (mib(size), start))
        plan.add(start, initrd)
        plan.initrd_addr, plan.initrd_size = start, size
        mod_name = (initrd_name or "initrd").encode("utf-8", "replace") + b"\0"
        mods_addr = area.alloc(16, 16)
        str_addr = area.alloc(len(mod_name), 4, "the module name")
        plan.add(str_addr, mod_name)
        plan.add(mods_addr, struct.pack("<IIII", start, start + size, str_addr, 0))
        struct.pack_into("<II", info, 20, 1, mods_addr)
        flags |= INFO_MODS
    struct.pack_into("<I", info, 0, flags)
    plan.add(info_addr, info)
    plan.info_addr = info_addr
    plan.enter = _enter
    plan.description = "Multiboot kernel at 0x%x-0x%x, entry 0x%x%s, info at 0x%x" % (
        kernel_lo, kernel_hi - 1, entry,
        ", module %s at 0x%x" % (mib(plan.initrd_size), plan.initrd_addr) if initrd is not None
        else "", info_addr)
    return plan


def _enter(machine, plan):
    enter_flat32(machine, plan.entry, {"eax": BOOT_MAGIC, "ebx": plan.info_addr})
