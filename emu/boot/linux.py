"""The Linux/x86 boot protocol (Documentation/arch/x86/boot.rst).

bzImage, 16-bit protocol (what QEMU and GRUB's "linux16" do)
-------------------------------------------------------------
The file is the real-mode part (the boot sector plus ``setup_sects``
sectors, default 4) followed by the protected-mode kernel.  The setup header
at 0x1F1 tells the loader what the kernel needs; emu requires protocol 2.02+
with LOADED_HIGH (a bzImage; zImage and older protocols are refused).

Placement (the layout boot.rst suggests for 2.02+, X = 0x10000):

    0x10000            boot sector + setup code (at most 32 KiB)
    0x10000 + 0xE000   end of the setup stack/heap: heap_end_ptr = 0xDE00,
                       SP = 0xE000 at entry
    0x1E000            the command line (cmd_line_ptr), NUL-terminated
    0x100000           the protected-mode kernel (code32_start)
    high               the initrd: as high as allowed (below initrd_addr_max,
                       the end of usable RAM and any mem= on the command
                       line), page aligned

The loader writes the "obligatory" header fields: vid_mode (0xFFFF, or
vga= from the command line), type_of_loader 0xFF (no assigned id),
loadflags |= CAN_USE_HEAP, heap_end_ptr, cmd_line_ptr, ramdisk_image and
ramdisk_size.  Entry: real mode at 0x1020:0000, DS = ES = FS = GS = SS =
0x1000, SP = 0xE000, interrupts off.  Our BIOS ran POST first, so the setup
code finds INT 10h/15h/16h and the BDA as it expects.

vmlinux, 32-bit protocol
------------------------
An ELF vmlinux has no setup header.  The loader builds the "zero page"
(struct boot_params, Documentation/arch/x86/zero-page.rst) with what the
32-bit entry reads: the E820 table (0x2D0, count at 0x1E8), screen_info for
the VGA text console, alt_mem_k, and a setup header at 0x1F1 with the boot
flag, "HdrS", type_of_loader, loadflags, cmd_line_ptr and the ramdisk
fields.  Entry: 32-bit protected mode at the ELF entry's physical address,
paging off, CS = 0x10 and DS = ES = SS = 0x18 (flat), ESI = zero page,
EBX = EBP = EDI = 0, interrupts off.
"""
import re
import struct

from . import elf
from .loader import (BootImageError, BootPlan, LowArea, GDT_ADDR, check_usable, enter_flat32,
                     enter_real16, flat_gdt, usable_end_at, mib, MIB)

# setup header offsets (boot.rst "The Real-Mode Kernel Header")
SETUP_SECTS, SYSSIZE, VID_MODE, BOOT_FLAG, JUMP, HEADER, VERSION = (
    0x1F1, 0x1F4, 0x1FA, 0x1FE, 0x200, 0x202, 0x206)
TYPE_OF_LOADER, LOADFLAGS, CODE32_START = 0x210, 0x211, 0x214
RAMDISK_IMAGE, RAMDISK_SIZE, HEAP_END_PTR = 0x218, 0x21C, 0x224
CMD_LINE_PTR, INITRD_ADDR_MAX, KERNEL_ALIGNMENT, RELOCATABLE = 0x228, 0x22C, 0x230, 0x234
CMDLINE_SIZE, PREF_ADDRESS, INIT_SIZE = 0x238, 0x258, 0x260

LOADED_HIGH, CAN_USE_HEAP = 0x01, 0x80
LOADER_TYPE = 0xFF                  # "undefined": emu has no assigned boot loader id

REAL_BASE = 0x10000                 # X in boot.rst's layout
REAL_SEG = REAL_BASE >> 4
HEAP_END = 0xE000                   # offset in the real-mode segment
CMDLINE_ADDR = REAL_BASE + HEAP_END
CMDLINE_ROOM = 0x9F000 - CMDLINE_ADDR
KERNEL_ADDR = 0x100000
MAX_SETUP = 0x8000                  # "The real-mode code can total up to 32K"

# zero page (struct boot_params) offsets
ZP_ALT_MEM_K, ZP_E820_ENTRIES, ZP_E820_TABLE, ZP_HDR = 0x1E0, 0x1E8, 0x2D0, 0x1F1
E820_MAX_ZEROPAGE = 128
ZERO_PAGE_SIZE = 4096
VMLINUX_VERSION = 0x020A            # the protocol the synthetic header claims (2.10)


def _u8(d, o):
    return d[o]


def _u16(d, o):
    return struct.unpack_from("<H", d, o)[0]


def _u32(d, o):
    return struct.unpack_from("<I", d, o)[0]


def vga_mode(cmdline):
    """vid_mode for the command line's vga= (boot.rst "Special Command Line Options")."""
    m = None
    for m in re.finditer(rb"(?:^|\s)vga=(\S+)", cmdline):
        pass
    if m is None:
        return 0xFFFF
    v = m.group(1).decode("ascii", "replace").lower()
    named = {"normal": 0xFFFF, "ext": 0xFFFE, "ask": 0xFFFD}
    if v in named:
        return named[v]
    try:
        return int(v, 0) & 0xFFFF
    except ValueError:
        raise BootImageError("vga=%s on the command line is not a number, 'normal', 'ext' or "
                             "'ask'" % v) from None


def mem_limit(cmdline):
    """The mem= on the command line in bytes (None if absent): it limits the
    loader too (boot.rst: the initrd belongs below it)."""
    m = None
    for m in re.finditer(rb"(?:^|\s)mem=(\S+)", cmdline):
        pass
    if m is None:
        return None
    v = m.group(1).decode("ascii", "replace")
    mm = re.fullmatch(r"(0[xX][0-9a-fA-F]+|[0-9]+)([kKmMgGtTpPeE]?)", v)
    if mm is None:
        return None                         # e.g. mem=nopentium: not a size
    n = int(mm.group(1), 0)
    shift = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}[mm.group(2).lower()]
    return n << shift


def place_initrd(initrd, lowest, addr_max, e820, cmdline):
    """Highest page-aligned address for the initrd below every limit, or an error."""
    size = len(initrd)
    top = min(addr_max + 1, usable_end_at(e820, KERNEL_ADDR))
    lim = mem_limit(cmdline)
    if lim is not None:
        top = min(top, lim)
    addr = (top - size) & ~0xFFF
    if top - size < lowest or addr < lowest:
        raise BootImageError("initrd (%s) does not fit in RAM between the kernel (up to 0x%x) "
                             "and 0x%x; give more --memory" % (mib(size), lowest, top))
    check_usable(e820, addr, size, "initrd")
    return addr


def plan_bzimage(data, cmdline, initrd, e820):
    n = len(data)
    if n < 1024:        # the boot sector and at least one setup sector hold the header
        raise ValueError("truncated: %d bytes is too short for a bzImage's boot sector and "
                         "setup code" % n)
    version = _u16(data, VERSION)
    if _u16(data, BOOT_FLAG) != 0xAA55:
        raise ValueError("Linux setup header without the 0xAA55 boot flag at 0x1FE")
    if version < 0x0202:
        raise ValueError("Linux boot protocol %d.%02d is too old (emu needs 2.02 or later)"
                         % (version >> 8, version & 0xFF))
    loadflags = _u8(data, LOADFLAGS)
    if not loadflags & LOADED_HIGH:
        raise ValueError("a zImage (LOADED_HIGH clear): only bzImage kernels are supported")
    setup_sects = _u8(data, SETUP_SECTS) or 4
    setup_size = (setup_sects + 1) * 512
    if setup_size > MAX_SETUP:
        raise ValueError("setup_sects %d: the real-mode code (%d bytes) is larger than 32 KiB"
                         % (setup_sects, setup_size))
    hdr_end = 0x202 + _u8(data, JUMP + 1)
    if hdr_end > setup_size:
        raise ValueError("setup header (to 0x%x) is longer than the setup code (%d sectors)"
                         % (hdr_end, setup_sects))
    if n <= setup_size:
        raise ValueError("truncated: no protected-mode kernel after the %d-byte setup code "
                         "(file is %d bytes)" % (setup_size, n))
    kernel = data[setup_size:]
    if version >= 0x0204:
        syssize = _u32(data, SYSSIZE) * 16
        if syssize - 15 > len(kernel):      # paragraphs: the last one may be partial
            raise ValueError("truncated: the header says the protected-mode kernel is %d bytes, "
                             "the file has %d" % (syssize, len(kernel)))
    initrd_addr_max = _u32(data, INITRD_ADDR_MAX) if version >= 0x0203 else 0x37FFFFFF
    cmdline_size = _u32(data, CMDLINE_SIZE) if version >= 0x0206 else 255
    if len(cmdline) > min(cmdline_size, CMDLINE_ROOM - 1):
        raise BootImageError("the command line is %d bytes; this kernel takes at most %d"
                             % (len(cmdline), min(cmdline_size, CMDLINE_ROOM - 1)))
    # The kernel needs init_size bytes from where it will run (boot.rst "init_size").
    runtime_start = KERNEL_ADDR
    init_size = 0
    if version >= 0x020A:
        init_size = _u32(data, INIT_SIZE)
        pref = struct.unpack_from("<Q", data, PREF_ADDRESS)[0]
        align = _u32(data, KERNEL_ALIGNMENT)
        if _u8(data, RELOCATABLE) and align and align & (align - 1) == 0:
            runtime_start = (KERNEL_ADDR + align - 1) & ~(align - 1)
        elif pref:
            runtime_start = pref
    check_usable(e820, KERNEL_ADDR, len(kernel), "the protected-mode kernel (%s)" % mib(len(kernel)))
    need_end = max(KERNEL_ADDR + len(kernel), runtime_start + init_size)
    ram_end = usable_end_at(e820, KERNEL_ADDR)
    if need_end > ram_end:
        raise BootImageError("this kernel needs RAM up to 0x%x (%d MiB) to unpack itself; the "
                             "machine has RAM up to 0x%x: give more --memory"
                             % (need_end, -(-need_end // MIB), ram_end))

    plan = BootPlan("linux")
    setup = bytearray(data[:setup_size])
    setup[SETUP_SECTS] = setup_sects
    struct.pack_into("<H", setup, VID_MODE, vga_mode(cmdline))
    setup[TYPE_OF_LOADER] = LOADER_TYPE
    setup[LOADFLAGS] = loadflags | CAN_USE_HEAP
    struct.pack_into("<H", setup, HEAP_END_PTR, HEAP_END - 0x200)
    struct.pack_into("<I", setup, CMD_LINE_PTR, CMDLINE_ADDR)
    rd_addr, rd_size = 0, 0
    if initrd is not None and len(initrd):
        rd_size = len(initrd)
        rd_addr = place_initrd(initrd, need_end, initrd_addr_max, e820, cmdline)
        plan.add(rd_addr, initrd)
    struct.pack_into("<II", setup, RAMDISK_IMAGE, rd_addr, rd_size)
    plan.add(REAL_BASE, setup)
    plan.add(CMDLINE_ADDR, cmdline + b"\0")
    plan.add(KERNEL_ADDR, kernel)
    plan.entry = ((REAL_SEG + 0x20) << 4)
    plan.kernel_addr, plan.kernel_end = KERNEL_ADDR, KERNEL_ADDR + len(kernel)
    plan.initrd_addr, plan.initrd_size = (rd_addr if rd_size else None), rd_size
    plan.cmdline = cmdline.decode("utf-8", "replace")
    plan.cmdline_addr = CMDLINE_ADDR
    plan.info_addr = REAL_BASE
    plan.protocol = version
    plan.setup_sects = setup_sects
    plan.enter = _enter_bzimage
    plan.description = ("Linux bzImage, boot protocol %d.%02d: setup (%d sectors) at 0x%x, "
                        "kernel (%s) at 0x%x%s, command line at 0x%x"
                        % (version >> 8, version & 0xFF, setup_sects, REAL_BASE, mib(len(kernel)),
                           KERNEL_ADDR, ", initrd (%s) at 0x%x" % (mib(rd_size), rd_addr)
                           if rd_size else "", CMDLINE_ADDR))
    return plan


def _enter_bzimage(machine, plan):
    enter_real16(machine, REAL_SEG, HEAP_END)


# --- vmlinux: the 32-bit boot protocol --------------------------------------------------------
def zero_page(e820, cmdline_addr, rd_addr, rd_size, entry, ram_top):
    """struct boot_params as the 32-bit entry reads it."""
    zp = bytearray(ZERO_PAGE_SIZE)
    ext_k = max(0, ram_top - 0x100000) // 1024
    # screen_info: the VGA text console, cursor at (0,0) (zero-page.rst 000/040)
    struct.pack_into("<BBH", zp, 0x00, 0, 0, min(ext_k, 0xFFFF))   # orig_x, orig_y, ext_mem_k
    zp[0x06] = 3                        # orig_video_mode: 80x25 colour text
    zp[0x07] = 80                       # orig_video_cols
    zp[0x0E] = 25                       # orig_video_lines
    zp[0x0F] = 1                        # orig_video_isVGA
    struct.pack_into("<H", zp, 0x10, 16)    # orig_video_points: 8x16 font
    struct.pack_into("<I", zp, ZP_ALT_MEM_K, ext_k)
    entries = [(b, n, t) for b, n, t in sorted(e820) if n > 0][:E820_MAX_ZEROPAGE]
    zp[ZP_E820_ENTRIES] = len(entries)
    for i, (b, n, t) in enumerate(entries):
        struct.pack_into("<QQI", zp, ZP_E820_TABLE + 20 * i, b, n, t)
    # the setup header a bzImage would have carried
    struct.pack_into("<H", zp, BOOT_FLAG, 0xAA55)
    zp[JUMP], zp[JUMP + 1] = 0xEB, 0x66             # header through 0x268
    zp[HEADER:HEADER + 4] = b"HdrS"
    struct.pack_into("<H", zp, VERSION, VMLINUX_VERSION)
    struct.pack_into("<H", zp, VID_MODE, 0xFFFF)
    zp[TYPE_OF_LOADER] = LOADER_TYPE
    zp[LOADFLAGS] = LOADED_HIGH
    struct.pack_into("<I", zp, CODE32_START, entry)
    struct.pack_into("<II", zp, RAMDISK_IMAGE, rd_addr, rd_size)
    struct.pack_into("<I", zp, CMD_LINE_PTR, cmdline_addr)
    struct.pack_into("<I", zp, INITRD_ADDR_MAX, 0x37FFFFFF)
    struct.pack_into("<I", zp, CMDLINE_SIZE, 2047)
    return zp


def plan_vmlinux(data, cmdline, initrd, e820):
    image = elf.parse(data)
    plan = BootPlan("vmlinux")
    lo, hi = 1 << 32, 0
    for s in image.segments:
        check_usable(e820, s.paddr, s.memsz, "segment %d" % s.index)
        if s.paddr < 0x100000:
            raise ValueError("segment %d at 0x%x is below 1 MiB: not a Linux vmlinux"
                             % (s.index, s.paddr))
        if s.memsz > s.filesz:
            plan.zeros.append((s.paddr + s.filesz, s.memsz - s.filesz))
        plan.add(s.paddr, image.segment_bytes(s))
        lo, hi = min(lo, s.paddr), max(hi, s.paddr + s.memsz)
    entry = image.entry_physical()
    if not any(s.paddr <= entry < s.paddr + s.memsz for s in image.segments):
        raise ValueError("entry point 0x%x is outside the loaded segments (0x%x-0x%x)"
                         % (image.entry, lo, hi - 1))
    area = LowArea()
    gdt = flat_gdt()
    assert area.alloc(len(gdt), 16) == GDT_ADDR
    plan.add(GDT_ADDR, gdt)
    zp_addr = area.alloc(ZERO_PAGE_SIZE, 4096)
    if len(cmdline) > 2047:
        raise BootImageError("the command line is %d bytes; Linux takes at most 2047"
                             % len(cmdline))
    cmd_addr = area.alloc(len(cmdline) + 1, 16, "the command line")
    plan.add(cmd_addr, cmdline + b"\0")
    rd_addr, rd_size = 0, 0
    if initrd is not None and len(initrd):
        rd_size = len(initrd)
        rd_addr = place_initrd(initrd, hi, 0x37FFFFFF, e820, cmdline)
        plan.add(rd_addr, initrd)
    zp = zero_page(e820, cmd_addr, rd_addr, rd_size, entry, usable_end_at(e820, 0x100000))
    plan.add(zp_addr, zp)
    plan.entry = entry
    plan.kernel_addr, plan.kernel_end = lo, hi
    plan.initrd_addr, plan.initrd_size = (rd_addr if rd_size else None), rd_size
    plan.cmdline = cmdline.decode("utf-8", "replace")
    plan.cmdline_addr = cmd_addr
    plan.info_addr = zp_addr
    plan.enter = _enter_vmlinux
    plan.description = ("Linux vmlinux (32-bit boot protocol): kernel at 0x%x-0x%x, entry 0x%x, "
                        "zero page at 0x%x%s" % (lo, hi - 1, entry, zp_addr,
                                                 ", initrd (%s) at 0x%x" % (mib(rd_size), rd_addr)
                                                 if rd_size else ""))
    return plan


def _enter_vmlinux(machine, plan):
    enter_flat32(machine, plan.entry, {"esi": plan.info_addr, "ebx": 0, "ebp": 0, "edi": 0})
