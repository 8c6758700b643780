"""The Linux boot protocol (emu/boot/linux.py): bzImage (16-bit entry through
the setup code) and vmlinux (32-bit entry with a zero page).

The bzImage is synthetic (tests/guests/boot_cli_bzimage.py): a setup header
as Documentation/arch/x86/boot.rst defines it, around a small real-mode
program that prints the header fields the loader filled in and halts.  The
vmlinux (tests/guests/boot_cli_vmlinux.py) is an i386 ELF linked like the
real one, printing what the 32-bit protocol gave it.
"""
import os
import re
import struct
import subprocess
import sys

import pytest

from emu import boot
from emu.boot import linux, loader
from emu.boot.loader import BootImageError
from emu.cpu import state as S
from tests.guests import boot_cli_bzimage as bz
from tests.guests import boot_cli_vmlinux as vm
from tests.guests.multiboot_build import BareMachine, elf32

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def field(text, name):
    return re.search(r"\b%s=(\S+)" % name, text).group(1)


@pytest.fixture(scope="module")
def bzimage():
    return bz.build()


# --- bzImage: placement ----------------------------------------------------------------------
def test_bzimage_placement_follows_the_protocol(tmp_path, bzimage):
    k = write(tmp_path, "bzImage", bzimage)
    initrd = bytes(range(256)) * 300 + b"END"             # 76803 bytes: not page sized
    rd = write(tmp_path, "initrd", initrd)
    m = BareMachine(memory_mb=64, kernel=k, initrd=rd, append="console=ttyS0 root=/dev/ram0")
    plan = boot.prepare(m)
    assert plan.kind == "linux"
    ram = m.phys
    setup_size = (4 + 1) * 512
    real = ram.read_bytes(0x10000, setup_size)
    # the real-mode code sits at 0x10000 with the obligatory fields written
    assert real[0x202:0x206] == b"HdrS"
    assert real[0x210] == 0xFF                                      # type_of_loader
    assert real[0x211] == 0x01 | 0x80                               # LOADED_HIGH | CAN_USE_HEAP
    assert struct.unpack_from("<H", real, 0x224)[0] == 0xE000 - 0x200   # heap_end_ptr
    assert struct.unpack_from("<H", real, 0x1FA)[0] == 0xFFFF       # vid_mode "normal"
    cmd_ptr = struct.unpack_from("<I", real, 0x228)[0]
    assert cmd_ptr == 0x1E000 and 0x10000 + 0xE000 <= cmd_ptr < 0xA0000
    assert ram.read_bytes(cmd_ptr, 29) == b"console=ttyS0 root=/dev/ram0\0"
    # everything else of the setup is the file's own bytes
    same = [i for i in range(setup_size) if i not in range(0x1F1, 0x26C)]
    assert all(real[i] == bzimage[i] for i in same)
    # the protected-mode kernel at 0x100000
    kernel = bzimage[setup_size:]
    assert ram.read_bytes(0x100000, len(kernel)) == kernel
    assert kernel.startswith(bz.KERNEL_MARKER)
    # the initrd: page aligned, as high as RAM allows (initrd_addr_max is above RAM here)
    image, size = struct.unpack_from("<II", real, 0x218)
    assert size == len(initrd) and image % 4096 == 0
    assert image == (64 * MIB - len(initrd)) & ~0xFFF
    assert image + size <= 64 * MIB and image >= 0x100000 + len(kernel)
    assert ram.read_bytes(image, size) == initrd
    assert (plan.initrd_addr, plan.initrd_size, plan.cmdline_addr) == (image, size, cmd_ptr)


def test_initrd_stays_below_initrd_addr_max_and_mem(tmp_path):
    k = write(tmp_path, "bzImage", bz.build(initrd_addr_max=0x00FFFFFF))    # 16 MiB - 1
    rd = write(tmp_path, "initrd", b"R" * 10000)
    m = BareMachine(memory_mb=64, kernel=k, initrd=rd)
    plan = boot.prepare(m)
    assert plan.initrd_addr == (0x1000000 - 10000) & ~0xFFF
    # mem= limits the loader too (boot.rst "Special Command Line Options")
    k2 = write(tmp_path, "bzImage2", bz.build())
    m = BareMachine(memory_mb=64, kernel=k2, initrd=rd, append="quiet mem=20M")
    plan = boot.prepare(m)
    assert plan.initrd_addr == (20 * MIB - 10000) & ~0xFFF


def test_vga_option_sets_vid_mode(tmp_path, bzimage):
    k = write(tmp_path, "bzImage", bzimage)
    for arg, mode in (("vga=ext", 0xFFFE), ("vga=ask", 0xFFFD), ("vga=0x317", 0x317),
                      ("vga=791", 791), ("novga=1", 0xFFFF)):
        m = BareMachine(memory_mb=16, kernel=k, append="a " + arg)
        boot.prepare(m)
        assert m.phys.read(0x10000 + 0x1FA, 2) == mode, arg
    m = BareMachine(memory_mb=16, kernel=k, append="vga=wide")
    with pytest.raises(BootImageError, match="vga=wide"):
        boot.prepare(m)


def test_setup_sects_zero_means_four(tmp_path, bzimage):
    data = bytearray(bzimage)
    data[0x1F1] = 0
    k = write(tmp_path, "bzImage", bytes(data))
    m = BareMachine(memory_mb=16, kernel=k)
    plan, why = m.boot()
    assert why == "hlt" and plan.setup_sects == 4
    assert m.phys.read_bytes(0x100000, len(bz.KERNEL_MARKER)) == bz.KERNEL_MARKER
    assert "LX done" in m.text()


# --- bzImage: the setup code runs and sees what the protocol promises --------------------------
def test_setup_code_sees_its_registers_and_header(tmp_path, bzimage):
    k = write(tmp_path, "bzImage", bzimage)
    rd = write(tmp_path, "initrd", b"I" * 5000)
    m = BareMachine(memory_mb=32, kernel=k, initrd=rd, append="console=ttyS0,115200 quiet")
    plan, why = m.boot()
    assert why == "hlt"
    out = m.text()
    assert m.text(0x3F8) == out
    assert "LX cs=1020 ds=1000 es=1000 ss=1000 sp=E000 fs=1000 gs=1000 if=0" in out
    assert "LX loadflags=81 type_of_loader=FF vid_mode=FFFF heap_end_ptr=DE00" in out
    assert "LX ramdisk_image=%08X ramdisk_size=%08X" % (plan.initrd_addr, 5000) in out
    assert "LX cmd_line_ptr=0001E000" in out
    assert "LX cmdline=console=ttyS0,115200 quiet" in out
    assert out.rstrip().endswith("LX done")
    assert not m.cpu.protected


def test_no_initrd_leaves_ramdisk_fields_zero(tmp_path, bzimage):
    k = write(tmp_path, "bzImage", bzimage)
    m = BareMachine(memory_mb=16, kernel=k)
    plan, why = m.boot()
    assert "LX ramdisk_image=00000000 ramdisk_size=00000000" in m.text()
    assert "LX cmdline=\n" in m.text()
    assert plan.initrd_addr is None


# --- bzImage: malformed ---------------------------------------------------------------------------
def bad_bzimages(good):
    short_sys = bytearray(good)
    struct.pack_into("<I", short_sys, 0x1F4, (len(good) - 2560) // 16 + 100)
    no_flag = bytearray(good)
    no_flag[0x1FE:0x200] = b"\0\0"
    huge_setup = bytearray(good)
    huge_setup[0x1F1] = 70
    return {
        "truncated-setup": (good[:2000], "truncated"),
        "no-kernel": (good[:2560], "truncated: no protected-mode kernel"),
        "short-kernel": (bytes(short_sys), "truncated: the header says"),
        "old-protocol": (bz.build(version=0x0201), "too old"),
        "zimage": (bz.build(loadflags=0), "zImage"),
        "no-boot-flag": (bytes(no_flag), "0xAA55"),
        "huge-setup": (bytes(huge_setup) + bytes(70 * 512), "larger than 32 KiB"),
        "tiny": (good[:0x300], "too short"),
    }


@pytest.mark.parametrize("name", sorted(bad_bzimages(b"\0" * 4096)))
def test_malformed_bzimage_is_one_line_error(tmp_path, bzimage, name):
    data, expect = bad_bzimages(bzimage)[name]
    k = write(tmp_path, name, data)
    m = BareMachine(memory_mb=16, kernel=k)
    with pytest.raises(BootImageError) as e:
        boot.prepare(m)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(k) and expect in msg, msg


def test_bzimage_limits_cmdline_memory_and_initrd(tmp_path):
    k = write(tmp_path, "bzImage", bz.build(cmdline_size=16))
    m = BareMachine(memory_mb=16, kernel=k, append="x" * 17)
    with pytest.raises(BootImageError, match="command line is 17 bytes; this kernel takes at "
                                             "most 16"):
        boot.prepare(m)
    k = write(tmp_path, "bzImage2", bz.build(init_size=40 * MIB))
    m = BareMachine(memory_mb=32, kernel=k)
    with pytest.raises(BootImageError, match="give more --memory"):
        boot.prepare(m)
    k = write(tmp_path, "bzImage3", bz.build())
    rd = write(tmp_path, "big", bytes(15 * MIB))
    m = BareMachine(memory_mb=16, kernel=k, initrd=rd)
    with pytest.raises(BootImageError, match="initrd .* does not fit"):
        boot.prepare(m)


# --- vmlinux: the 32-bit boot protocol ---------------------------------------------------------------
def test_vmlinux_enters_32_bit_with_a_zero_page(tmp_path):
    k = write(tmp_path, "vmlinux", vm.build())
    rd = write(tmp_path, "initrd", b"Z" * 7000)
    m = BareMachine(memory_mb=64, kernel=k, initrd=rd, append="root=/dev/ram0 init=/bin/sh")
    plan, why = m.boot()
    assert why == "hlt"
    out = m.text()
    zp = plan.info_addr
    assert plan.kind == "vmlinux" and plan.entry == vm.PHYS
    assert ("VM esi=%08X ebx=00000000 ebp=00000000 edi=00000000 cs=0010 ds=0018 ss=0018"
            % zp) in out
    assert "VM boot_flag=AA55 hdr=HdrS type_of_loader=FF loadflags=01" in out
    e820 = loader.e820_map(m)
    assert "VM e820_entries=%d ram1=00100000+%08X" % (len(e820), 63 * MIB) in out
    assert "VM ramdisk_image=%08X ramdisk_size=%08X" % (plan.initrd_addr, 7000) in out
    assert "VM cmdline=root=/dev/ram0 init=/bin/sh" in out
    assert plan.initrd_addr % 4096 == 0 and plan.initrd_addr >= plan.kernel_end
    # the zero page's E820 table is the machine's map
    page = m.phys.read_bytes(zp, 4096)
    table = [struct.unpack_from("<QQI", page, 0x2D0 + 20 * i) for i in range(page[0x1E8])]
    assert table == e820
    assert struct.unpack_from("<I", page, 0x1E0)[0] == 63 * 1024       # alt_mem_k
    assert page[0x06:0x08] == bytes([3, 80]) and page[0x0E] == 25 and page[0x0F] == 1


def test_malformed_vmlinux(tmp_path):
    code = b"\xf4" * 64
    cases = {
        "low": (elf32([(0x00020000, code, 64)], 0x20000), "below 1 MiB"),
        "past-ram": (elf32([(0x01000000, code, 64 * MIB)], 0x1000000), "outside usable RAM"),
        "overlap": (elf32([(0x01000000, code, 0x2000), (0x01001000, code, 64)], 0x1000000),
                    "overlap"),
        "phdrs-past-eof": (elf32([(0x01000000, code, 64)], 0x1000000)[:70],
                           "program header table"),
        "x86-64": (elf32([(0x01000000, code, 64)], 0x1000000, machine=0x3E), "x86-64"),
        "not-exec": (elf32([(0x01000000, code, 64)], 0x1000000, etype=1), "not an executable"),
    }
    for name, (data, expect) in cases.items():
        k = write(tmp_path, name, data)
        m = BareMachine(memory_mb=32, kernel=k)
        with pytest.raises(BootImageError) as e:
            boot.prepare(m)
        msg = str(e.value)
        assert "\n" not in msg and expect in msg, (name, msg)


# --- the whole machine: BIOS first, the setup code can call it ---------------------------------------
def test_machine_boots_bzimage_with_bios_services(tmp_path):
    from emu.frontend.serial_backends import BufferBackend
    from emu.machine import EXIT_OK, Machine, MachineConfig
    k = write(tmp_path, "bzImage", bz.build(bios=True))
    rd = write(tmp_path, "initrd", b"Q" * 4096)
    serial = BufferBackend()
    m = Machine(MachineConfig(memory_mb=32, kernel=k, initrd=rd, append="console=ttyS0"),
                serial_backend=serial)
    res = m.run(timeout=60)
    assert res.code == EXIT_OK, res.reason
    out = bytes(serial.output).decode("latin-1")
    assert "LX cs=1020 ds=1000 es=1000 ss=1000 sp=E000 fs=1000 gs=1000 if=0" in out, out
    assert "LX cmdline=console=ttyS0" in out
    assert "LX ramdisk_image=%08X ramdisk_size=00001000" % m.boot_plan.initrd_addr in out
    assert "LX int12=639K" in out                    # the BIOS is there for the setup code
    # the BIOS's INT 15h E820 map is the one the loaders give Multiboot and vmlinux
    e820 = [ln for ln in out.splitlines() if ln.startswith("LX e820 ")]
    assert e820 == ["LX e820 base=%016X len=%016X type=%d" % entry
                    for entry in loader.e820_map(m)]
    assert "LX done" in out
    assert m.cpu.R[S.CR0] & 1 == 0


def test_cli_boots_bzimage(tmp_path):
    k = write(tmp_path, "bzImage", bz.build())
    out = tmp_path / "serial.txt"
    p = subprocess.run([sys.executable, "-m", "emu.cli", "run", "--kernel", k, "--append",
                        "console=ttyS0", "--serial", str(out), "--display", "none", "--memory",
                        "32", "--timeout", "60"], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    text = out.read_text("latin-1")
    assert "LX cmd_line_ptr=0001E000" in text and "LX cmdline=console=ttyS0" in text
    assert "LX done" in text
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_command_line_options_the_loader_reads():
    assert linux.mem_limit(b"console=ttyS0 mem=64M") == 64 * MIB
    assert linux.mem_limit(b"mem=0x1000000 quiet") == 0x1000000
    assert linux.mem_limit(b"mem=512k mem=2G") == 2 << 30          # the last one wins
    assert linux.mem_limit(b"mem=nopentium") is None
    assert linux.mem_limit(b"memmap=1M quiet") is None
    assert linux.vga_mode(b"") == 0xFFFF and linux.vga_mode(b"vga=normal") == 0xFFFF
