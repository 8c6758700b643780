"""Direct kernel boot: identify the image, plan its placement, hand over.

``prepare(machine)`` runs when the machine is built.  It reads --kernel and
--initrd, decides what the kernel is, and computes every byte the boot
protocol puts in guest RAM (kernel, initrd, command line, boot information,
GDT) as a ``BootPlan``; it also writes them once, so that a machine can be
inspected right after it is built.  Anything wrong with the images is found
here, before the guest runs: a ``BootImageError`` (a ValueError) with one
line that names the file.

``handoff(machine, plan)`` runs after our BIOS finished POST and asked for
the kernel.  It writes the plan again (POST, or the guest before a reboot,
may have used that memory) and sets the CPU state the protocol defines.  It
must run at an instruction boundary: it sets CS:EIP.

The three kinds (checked in this order, as QEMU does):

* a Linux bzImage ("HdrS" at 0x202): the 16-bit boot protocol, entered in
  real mode at the setup code, with the BIOS still there (linux.py);
* an image with a Multiboot v1 header in its first 8 KiB (multiboot.py);
* any other i386 ELF: taken as a Linux vmlinux, entered through the 32-bit
  boot protocol with a "zero page" (linux.py).

Guest RAM is written only through ``phys.write_bytes`` (it honours the MMU's
write tracking), and only inside usable RAM of the E820 map.
"""
import os

from ..cpu import state as S

MIB = 1 << 20
E820_RAM, E820_RESERVED = 1, 2
E820_NAMES = {1: "usable", 2: "reserved", 3: "ACPI data", 4: "ACPI NVS", 5: "unusable"}

# The low-memory area the protected-mode protocols put their structures in
# (GDT, Multiboot information, Linux zero page, command line).  It is free
# conventional memory above the BIOS's boot sector area and below the 64 KiB
# mark; by the time these protocols enter the kernel the BIOS is done.
BOOT_AREA = (0x8000, 0x10000)
GDT_ADDR = 0x8000
BOOT_STACK = 0x8000                 # ESP for kernels that use a stack before setting one
FLAT_CS, FLAT_DS = 0x10, 0x18       # the Linux 32-bit protocol's __BOOT_CS / __BOOT_DS
FLAT_CODE_ATTR, FLAT_DATA_ATTR = 0xC09B, 0xC093
MAX_IMAGE = 3 << 30


class BootImageError(ValueError):
    """A kernel, initrd or command line that cannot be booted; one line."""


class BootPlan:
    """What a boot protocol puts in RAM and how it enters the kernel.

    writes   [(paddr, bytes)] stored in order at prepare and at handoff
    zeros    [(paddr, length)] cleared first (ELF .bss, a.out bss)
    enter    enter(machine, plan): set the CPU state (called by handoff)
    Other attributes describe the placement for users and tests: kind,
    entry, kernel_addr, kernel_end, initrd_addr, initrd_size, cmdline,
    cmdline_addr, info_addr, description.
    """

    def __init__(self, kind, description=""):
        self.kind = kind
        self.description = description
        self.writes = []
        self.zeros = []
        self.enter = None
        self.entry = None
        self.kernel_addr = None
        self.kernel_end = None
        self.initrd_addr = None
        self.initrd_size = 0
        self.cmdline = ""
        self.cmdline_addr = None
        self.info_addr = None

    def add(self, paddr, data):
        self.writes.append((paddr, bytes(data)))

    def __repr__(self):
        return "<BootPlan %s: %s>" % (self.kind, self.description)


# --- reading the images -------------------------------------------------------------
def read_image(path, what):
    """The bytes of an image file, or a one-line BootImageError."""
    if not path:
        raise BootImageError("no %s file given" % what)
    try:
        if os.path.isdir(path):
            raise BootImageError("%s %s is a directory, not an image file" % (what, path))
        size = os.path.getsize(path)
        if size > MAX_IMAGE:
            raise BootImageError("%s %s is %d MiB, larger than any guest RAM"
                                 % (what, path, size >> 20))
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise BootImageError("%s %s does not exist" % (what, path)) from None
    except OSError as e:
        raise BootImageError("cannot read %s %s: %s" % (what, path, e.strerror or e)) from None
    if what == "kernel" and not data:
        raise BootImageError("kernel %s is empty" % path)
    return data


def check_cmdline(cmdline):
    """The command line as bytes: printable text without NUL."""
    cmdline = cmdline or ""
    try:
        raw = cmdline.encode("utf-8")
    except UnicodeEncodeError:
        raise BootImageError("the kernel command line is not valid text") from None
    if b"\0" in raw or b"\n" in raw:
        raise BootImageError("the kernel command line must not contain NUL or newline characters")
    return raw


# --- the memory map -----------------------------------------------------------------
def e820_map(machine):
    """The E820 map the BIOS reports: [(base, length, type)], sorted.

    The machine owns it when it says so (``machine.e820_map()``), so that the
    BIOS's INT 15h E820, Linux's zero page and Multiboot's mmap agree;
    otherwise it is derived from the physical memory map the same way."""
    fn = getattr(machine, "e820_map", None)
    if callable(fn):
        return sorted((int(b), int(n), int(t)) for b, n, t in fn())
    return default_e820(machine.phys)


def default_e820(phys):
    """A PC's map: 639 KiB of low RAM, a 1 KiB EBDA, the BIOS below 1 MiB, RAM
    from 1 MiB to the end, and the BIOS's alias below 4 GiB."""
    ram = phys.ram_size
    low_end = min(ram, 0x9FC00)
    out = [(0, low_end, E820_RAM)]
    if ram > low_end:
        out.append((low_end, 0xA0000 - low_end, E820_RESERVED))
    bios_low = 0xF0000
    for r in phys.regions:
        if r.name == "bios" and r.base < 0x100000:
            bios_low = min(bios_low, r.base & ~0xFFFF)
    out.append((bios_low, 0x100000 - bios_low, E820_RESERVED))
    if ram > 0x100000:
        out.append((0x100000, ram - 0x100000, E820_RAM))
    for r in phys.regions:
        if r.base >= max(ram, 0x100000) and r.name.startswith("bios"):
            out.append((r.base, r.end - r.base, E820_RESERVED))
    return sorted(out)


def usable_ranges(e820):
    """Usable RAM as [(start, end)], adjacent ranges merged."""
    out = []
    for base, length, kind in sorted(e820):
        if kind != E820_RAM or length <= 0:
            continue
        end = base + length
        if out and base <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((base, end))
    return out


def usable_end_at(e820, addr):
    """End of the usable range that holds ``addr`` (0 when none does)."""
    for start, end in usable_ranges(e820):
        if start <= addr < end:
            return end
    return 0


def describe_ram(e820):
    return ", ".join("0x%x-0x%x" % (s, e - 1) for s, e in usable_ranges(e820))


def check_usable(e820, start, length, what):
    """Raise unless [start, start+length) lies in one usable RAM range."""
    end = start + length
    for s, e in usable_ranges(e820):
        if s <= start and end <= e:
            return
    raise BootImageError("%s at 0x%x-0x%x is outside usable RAM (usable: %s)"
                         % (what, start, end - 1, describe_ram(e820)))


def overlaps(a0, a1, b0, b1):
    return a0 < b1 and b0 < a1


def mib(n):
    return "%.1f MiB" % (n / MIB) if n >= MIB else "%d KiB" % -(-n // 1024)


class LowArea:
    """A bump allocator over BOOT_AREA for the protocols' small structures."""

    def __init__(self, start=BOOT_AREA[0], end=BOOT_AREA[1]):
        self.pos = start
        self.end = end

    def alloc(self, size, align=16, what="boot information"):
        addr = (self.pos + align - 1) & ~(align - 1)
        if addr + size > self.end:
            raise BootImageError("%s does not fit in the boot information area (%d bytes left)"
                                 % (what, max(0, self.end - addr)))
        self.pos = addr + size
        return addr


# --- the CPU states the protocols define -------------------------------------------------
def flat_gdt():
    """GDT: null, null, 0x10 flat 4 GiB code (execute/read), 0x18 flat data (read/write)."""
    code = (0xFFFF | (0x9A << 40) | (0xCF << 48)).to_bytes(8, "little")
    data = (0xFFFF | (0x92 << 40) | (0xCF << 48)).to_bytes(8, "little")
    return bytes(16) + code + data


def enable_a20(machine):
    """A20 on, through the fast-A20 port (so the chipset agrees) and the CPU line."""
    ports = getattr(machine, "ports", None)
    if ports is not None:
        v = ports.read(0x92, 1)
        ports.write(0x92, 1, (v | 0x02) & 0xFE)     # bit 0 would reset the CPU
    machine.cpu.set_a20(True)


def _quiet_cpu(cpu):
    R = cpu.R
    for i in range(8):
        R[i] = 0
    R[S.HALTED] = 0
    R[S.INHIBIT_IRQ] = 0
    cpu.pending_vectors = []
    cpu.set_eflags(0x2)                 # IF = 0: the protocols enter with interrupts off
    cpu.event = True


def enter_flat32(machine, entry, regs):
    """32-bit protected mode, paging off, flat 4 GiB segments from our GDT
    (CS 0x10, data 0x18: a later reload of any of them finds the same
    descriptor), interrupts off, A20 on; ``regs`` sets GPRs by name."""
    cpu = machine.cpu
    R = cpu.R
    enable_a20(machine)
    gdt = flat_gdt()
    R[S.GDTR_BASE] = GDT_ADDR
    R[S.GDTR_LIMIT] = len(gdt) - 1
    _quiet_cpu(cpu)
    cpu.write_cr0((R[S.CR0] | 0x1) & ~0x80000000 & 0xFFFFFFFF)     # PE on, PG off
    cpu.set_cpl(0)
    cpu.set_seg(S.CS, FLAT_CS, 0, 0xFFFFFFFF, FLAT_CODE_ATTR)
    for s in (S.ES, S.SS, S.DS, S.FS, S.GS):
        cpu.set_seg(s, FLAT_DS, 0, 0xFFFFFFFF, FLAT_DATA_ATTR)
    R[S.ESP] = BOOT_STACK
    for name, value in regs.items():
        R[_GPR[name]] = value & 0xFFFFFFFF
    R[S.EIP] = entry & 0xFFFFFFFF
    cpu.mmu.paging_changed()


def enter_real16(machine, seg, sp):
    """Real mode at seg+0x20:0000 with DS=ES=FS=GS=SS=seg, SP=sp, interrupts
    off (the Linux boot protocol's "Running the Kernel")."""
    cpu = machine.cpu
    R = cpu.R
    _quiet_cpu(cpu)
    if R[S.CR0] & 0x80000001:
        cpu.write_cr0(R[S.CR0] & ~0x80000001 & 0xFFFFFFFF)
    cpu.set_cpl(0)
    for s in (S.ES, S.SS, S.DS, S.FS, S.GS):
        cpu.set_seg(s, seg, seg << 4, 0xFFFF, 0x93)
    cs = seg + 0x20
    cpu.set_seg(S.CS, cs, cs << 4, 0xFFFF, 0x9B)
    R[S.ESP] = sp
    R[S.EIP] = 0


_GPR = {"eax": S.EAX, "ecx": S.ECX, "edx": S.EDX, "ebx": S.EBX, "esp": S.ESP, "ebp": S.EBP,
        "esi": S.ESI, "edi": S.EDI}


# --- the entry points -----------------------------------------------------------------
def identify(data):
    """'bzimage', 'multiboot', 'elf', or a BootImageError saying what it is not."""
    from . import multiboot
    if len(data) >= 0x206 and data[0x202:0x206] == b"HdrS":
        return "bzimage"
    if multiboot.find_header(data) is not None:
        return "multiboot"
    if data[:4] == b"\x7fELF":
        return "elf"
    if multiboot.has_multiboot2(data):
        raise ValueError("Multiboot2 kernels are not supported (only Multiboot v1, Linux "
                         "bzImage and ELF)")
    if len(data) >= 0x200 and data[0x1FE:0x200] == b"\x55\xaa":
        raise ValueError("a boot sector or old zImage without a Linux setup header; "
                         "boot it with --disk or --floppy")
    raise ValueError("not a Linux bzImage, a Multiboot kernel or an i386 ELF")


def prepare(machine):
    """Read, check and place --kernel/--initrd/--append; returns a BootPlan."""
    from . import linux, multiboot
    cfg = machine.config
    path = cfg.kernel
    data = read_image(path, "kernel")
    initrd = read_image(cfg.initrd, "initrd") if cfg.initrd else None
    cmdline = check_cmdline(cfg.append)
    e820 = e820_map(machine)
    try:
        kind = identify(data)
        if kind == "bzimage":
            plan = linux.plan_bzimage(data, cmdline, initrd, e820)
        elif kind == "multiboot":
            plan = multiboot.plan_multiboot(data, cmdline, initrd, e820, kernel_name=path,
                                            initrd_name=cfg.initrd)
        else:
            plan = linux.plan_vmlinux(data, cmdline, initrd, e820)
    except BootImageError as e:
        raise BootImageError("%s: %s" % (path, e)) from None
    except ValueError as e:
        raise BootImageError("%s: %s" % (path, e)) from None
    place(machine, plan)
    return plan


def place(machine, plan):
    """Store the plan's bytes in guest RAM (bss first, then the images)."""
    phys = machine.phys
    for addr, length in plan.zeros:
        pos = 0
        while pos < length:                 # in 16 MiB pieces: no huge temporaries
            n = min(length - pos, 16 * MIB)
            phys.write_bytes(addr + pos, bytes(n))
            pos += n
    for addr, data in plan.writes:
        phys.write_bytes(addr, data)


def handoff(machine, plan):
    """Write the plan again and enter the kernel (at an instruction boundary)."""
    place(machine, plan)
    plan.enter(machine, plan)
