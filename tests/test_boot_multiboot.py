"""Multiboot v1 loading (emu/boot/multiboot.py) and the boot-image checks.

The guest is tests/guests/multiboot_hello.py: a kernel that prints what its
loader gave it (EAX magic, the information structure's memory fields, memory
map, command line, loader name and modules) and halts.  It runs three ways:
on a bench with only CPU + memory + ports (the loader alone), in-process on a
whole Machine (BIOS POST, then the handoff), and through `emu run`.
"""
import os
import re
import struct
import subprocess
import sys

import pytest

from emu import boot
from emu.boot import loader, multiboot
from emu.boot.loader import BootImageError
from emu.cpu import state as S
from tests.guests import multiboot_hello as mh
from tests.guests.multiboot_build import BareMachine, elf32

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def kernel_elf():
    return mh.build_elf()


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def lines(text):
    return [ln for ln in text.splitlines() if ln.startswith("MB ")]


def expected_mmap_lines(e820):
    return ["MB mmap base=%016X len=%016X type=%d" % (b, n, t) for b, n, t in e820]


# --- the loader on a bench (no BIOS, no devices) ----------------------------------------------
def test_elf_kernel_gets_magic_memory_map_cmdline_and_name(tmp_path, kernel_elf):
    k = write(tmp_path, "kernel.elf", kernel_elf)
    m = BareMachine(memory_mb=32, kernel=k, append="hello world")
    plan, why = m.boot()
    assert why == "hlt"
    assert not m.cpu.R[S.EFLAGS] & 0x200            # halted for good: cli; hlt
    out = m.text()
    assert m.text(0x3F8) == out                     # COM1 and port 0xE9 carry the same text
    got = lines(out)
    assert got[0] == "MB magic ok"
    flags = int(re.search(r"MB flags=([0-9A-F]{8})", out).group(1), 16)
    # mem, cmdline, mmap, boot loader name, framebuffer; no modules without --initrd
    assert flags & 0x1 and flags & 0x4 and flags & 0x40 and flags & 0x200 and flags & 0x1000
    assert not flags & 0x8
    assert "MB mem_lower=639K mem_upper=%dK" % (31 * 1024) in got
    assert "MB cmdline=%s hello world" % k in got
    assert "MB loader=emu" in got
    e820 = loader.e820_map(m)
    assert [ln for ln in got if ln.startswith("MB mmap")] == expected_mmap_lines(e820)
    assert e820[0] == (0, 0x9FC00, 1) and e820[-1] == (0x100000, 31 << 20, 1)
    assert "MB bss ok" in got
    cr0, efl = re.search(r"MB cr0=([0-9A-F]{8}) eflags=([0-9A-F]{8})", out).groups()
    assert int(cr0, 16) & 1 and not int(cr0, 16) & 0x80000000      # PE on, paging off
    assert not int(efl, 16) & 0x200                                  # interrupts off
    assert "MB gdt reload ok" in got and got[-1] == "MB done"
    assert plan.kind == "multiboot" and plan.entry == mh.LOAD_ADDR + mh.ENTRY_OFFSET


def test_cpu_state_and_information_structure_at_entry(tmp_path, kernel_elf):
    k = write(tmp_path, "kernel.elf", kernel_elf)
    m = BareMachine(memory_mb=16, kernel=k)
    plan = boot.prepare(m)
    m.cpu.set_a20(False)                            # the handoff must turn A20 on
    boot.handoff(m, plan)
    cpu, R = m.cpu, m.cpu.R
    assert R[S.EAX] == 0x2BADB002 and R[S.EBX] == plan.info_addr
    assert R[S.EIP] == plan.entry and R[S.A20] == 1
    assert cpu.get_seg(S.CS) == (0x10, 0, 0xFFFFFFFF, 0xC09B)
    for s in (S.DS, S.ES, S.FS, S.GS, S.SS):
        assert cpu.get_seg(s) == (0x18, 0, 0xFFFFFFFF, 0xC093)
    assert R[S.CR0] & 1 and not R[S.CR0] & 0x80000000
    assert not cpu.get_eflags() & 0x200
    # the GDT in RAM holds the same flat descriptors, so a reload finds them
    base, limit = R[S.GDTR_BASE], R[S.GDTR_LIMIT]
    gdt = m.phys.read_bytes(base, limit + 1)
    assert struct.unpack_from("<Q", gdt, 0x10)[0] == 0x00CF9A000000FFFF
    assert struct.unpack_from("<Q", gdt, 0x18)[0] == 0x00CF92000000FFFF
    # the information structure (Multiboot spec 3.3) lies in low memory
    info = m.phys.read_bytes(plan.info_addr, 116)
    flags, mem_lower, mem_upper = struct.unpack_from("<III", info, 0)
    assert plan.info_addr + 116 <= 0x10000
    assert (mem_lower, mem_upper) == (639, 15 * 1024)
    mmap_len, mmap_addr = struct.unpack_from("<II", info, 44)
    entries = []
    for off in range(0, mmap_len, 24):
        size, b, n, t = struct.unpack_from("<IQQI", m.phys.read_bytes(mmap_addr + off, 24))
        assert size == 20
        entries.append((b, n, t))
    assert entries == loader.e820_map(m)
    name = m.phys.read_bytes(struct.unpack_from("<I", info, 64)[0], 4)
    assert name == b"emu\0"
    fb = struct.unpack_from("<QIIIBB", info, 88)
    assert fb == (0xB8000, 160, 80, 25, 16, 2)       # the VGA text screen


def test_initrd_becomes_a_page_aligned_module_above_the_kernel(tmp_path, kernel_elf):
    k = write(tmp_path, "kernel.elf", kernel_elf)
    payload = b"MODULE42" + bytes(range(256)) * 40
    rd = write(tmp_path, "initrd.img", payload)
    m = BareMachine(memory_mb=16, kernel=k, initrd=rd, append="root=/dev/ram0")
    plan, why = m.boot()
    assert why == "hlt"
    got = lines(m.text())
    mod = [ln for ln in got if ln.startswith("MB mod ")]
    assert len(mod) == 1
    start, end = (int(x, 16) for x in re.search(r"start=(\w+) end=(\w+)", mod[0]).groups())
    assert start % 4096 == 0 and start >= plan.kernel_end
    assert end - start == len(payload)
    assert mod[0].endswith("name=%s head=MODULE42" % rd)
    assert m.phys.read_bytes(start, len(payload)) == payload
    flags = int(re.search(r"MB flags=([0-9A-F]{8})", m.text()).group(1), 16)
    assert flags & 0x8


def test_aout_kludge_image_loads_by_its_address_fields(tmp_path):
    raw = mh.build_aout()
    assert raw[:4] != b"\x7fELF"
    k = write(tmp_path, "kernel.bin", raw)
    m = BareMachine(memory_mb=8, kernel=k, append="aout")
    plan, why = m.boot()
    assert why == "hlt"
    got = lines(m.text())
    assert got[0] == "MB magic ok" and "MB bss ok" in got and got[-1] == "MB done"
    assert "MB cmdline=%s aout" % k in got
    assert plan.kernel_addr == mh.LOAD_ADDR
    assert plan.kernel_end == mh.LOAD_ADDR + len(raw) + mh.BSS_SIZE


def test_handoff_writes_the_image_again(tmp_path, kernel_elf):
    """A reboot (or POST) may have used the memory: the handoff restores it."""
    k = write(tmp_path, "kernel.elf", kernel_elf)
    m = BareMachine(memory_mb=8, kernel=k)
    plan = boot.prepare(m)
    m.phys.write_bytes(plan.kernel_addr, b"\xcc" * 64)
    m.phys.write_bytes(plan.kernel_end - 2048, b"\xff" * 2048)      # dirty the .bss
    m.phys.write_bytes(plan.info_addr, bytes(64))
    boot.handoff(m, plan)
    assert m.cpu.run(2_000_000) == "hlt"
    got = lines(m.text())
    assert "MB bss ok" in got and got[-1] == "MB done"


# --- malformed images: one line, naming the file ------------------------------------------------
def bad_images(code):
    """name -> (bytes, expected message part)."""
    ok = elf32([(mh.LOAD_ADDR, code, len(code) + mh.BSS_SIZE)], mh.LOAD_ADDR + mh.ENTRY_OFFSET)
    bad_sum = bytearray(ok)
    hdr = ok.find(struct.pack("<I", multiboot.MAGIC))
    bad_sum[hdr + 8] ^= 1
    header_needs = bytearray(ok)
    flags = 0x0000000B                                 # bit 3: a requirement we lack
    struct.pack_into("<II", header_needs, hdr + 4, flags, (-(multiboot.MAGIC + flags)) & 0xFFFFFFFF)
    no_addr_raw = bytes(mh.assemble())                 # multiboot header, not ELF, no flag 16
    aout = bytearray(mh.build_aout())
    struct.pack_into("<I", aout, 20, mh.LOAD_ADDR + len(aout) + 0x10000)     # load_end past EOF
    mb2 = bytes(64) + struct.pack("<IIII", 0xE85250D6, 0, 24, (-(0xE85250D6 + 24)) & 0xFFFFFFFF)
    return {
        "bad-checksum": (bytes(bad_sum), "wrong checksum"),
        "past-ram": (elf32([(0x00F00000, code, 0x00200000)], 0x00F00000 + mh.ENTRY_OFFSET),
                     "outside usable RAM"),
        "vga-hole": (elf32([(0x000A0000, code, len(code))], 0xA0000 + mh.ENTRY_OFFSET),
                     "outside usable RAM"),
        "boot-area": (elf32([(0x00009000, code, len(code))], 0x9000 + mh.ENTRY_OFFSET),
                      "boot information area"),
        "truncated": (ok[:0x1000 + len(code) // 2], "truncated"),
        "requirement": (bytes(header_needs), "requires features"),
        "entry-outside": (elf32([(mh.LOAD_ADDR, code, len(code))], 0x300000),
                          "entry point 0x300000 is outside"),
        "no-addresses": (no_addr_raw, "not ELF"),
        "aout-truncated": (bytes(aout), "truncated"),
        "elf64": (bytes(ok[:4]) + b"\x02" + bytes(ok[5:]), "64-bit"),
        "arm": (ok[:18] + struct.pack("<H", 0x28) + ok[20:], "ARM"),
        "not-a-kernel": (b"hello, I am a text file\n" * 100, "not a Linux bzImage"),
        "empty": (b"", "is empty"),
        "multiboot2": (mb2 + bytes(600), "Multiboot2"),
        "bootsector": (bytes(510) + b"\x55\xaa", "boot sector"),
    }


@pytest.fixture(scope="module")
def code():
    return mh.assemble()


@pytest.mark.parametrize("name", sorted(bad_images(b"\x90" * 64)))
def test_malformed_kernel_is_one_line_error(tmp_path, code, name):
    data, expect = bad_images(code)[name]
    k = write(tmp_path, name + ".img", data)
    m = BareMachine(memory_mb=16, kernel=k)
    with pytest.raises(BootImageError) as e:
        boot.prepare(m)
    msg = str(e.value)
    assert "\n" not in msg and k in msg, msg
    assert expect in msg, msg


def test_missing_and_oversized_initrd(tmp_path, kernel_elf):
    k = write(tmp_path, "kernel.elf", kernel_elf)
    m = BareMachine(memory_mb=4, kernel=k, initrd=str(tmp_path / "nope.img"))
    with pytest.raises(BootImageError, match="initrd .*nope.img does not exist"):
        boot.prepare(m)
    big = write(tmp_path, "big.img", bytes(4 << 20))
    m = BareMachine(memory_mb=4, kernel=k, initrd=big)
    with pytest.raises(BootImageError, match="initrd .* does not fit"):
        boot.prepare(m)


def test_header_search_rules():
    # the magic must be 32-bit aligned and within the first 8 KiB
    flags = 3
    hdr = struct.pack("<III", multiboot.MAGIC, flags, (-(multiboot.MAGIC + flags)) & 0xFFFFFFFF)
    assert multiboot.find_header(bytes(8) + hdr).offset == 8
    assert multiboot.find_header(bytes(6) + hdr) is None
    assert multiboot.find_header(bytes(8192) + hdr) is None
    assert multiboot.find_header(bytes(8192 - 12) + hdr).offset == 8192 - 12


# --- the whole machine: BIOS POST, then the handoff -------------------------------------------------
def test_machine_boots_multiboot_kernel_through_the_bios(tmp_path, kernel_elf):
    from emu.frontend.serial_backends import BufferBackend
    from emu.machine import EXIT_OK, Machine, MachineConfig
    k = write(tmp_path, "kernel.elf", kernel_elf)
    rd = write(tmp_path, "initrd.img", b"INITRD!!" + bytes(3000))
    serial = BufferBackend()
    m = Machine(MachineConfig(memory_mb=32, kernel=k, initrd=rd, append="console=ttyS0"),
                serial_backend=serial)
    res = m.run(timeout=60)
    assert res.code == EXIT_OK, res.reason
    out = bytes(serial.output).decode("latin-1")
    got = lines(out)
    assert got[0] == "MB magic ok" and got[-1] == "MB done", out
    assert "MB mem_lower=639K mem_upper=%dK" % (31 * 1024) in got
    assert "MB cmdline=%s console=ttyS0" % k in got
    assert [ln for ln in got if ln.startswith("MB mmap")] == expected_mmap_lines(
        loader.e820_map(m))
    assert any(ln.startswith("MB mod ") and ln.endswith("head=INITRD!!") for ln in got)
    assert "MB gdt reload ok" in got
    # port 0xE9 got the kernel's text only (the BIOS writes its banner to COM1)
    kernel_text = out[out.index("MB magic ok"):]
    assert m.devices["sysctrl"].debug_text().replace("\r", "") == kernel_text


def emu_run(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "emu.cli", "run", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_boots_multiboot_kernel(tmp_path, kernel_elf):
    k = write(tmp_path, "kernel.elf", kernel_elf)
    out = tmp_path / "serial.txt"
    p = emu_run("--kernel", k, "--append", "a b c", "--serial", str(out), "--display", "none",
                "--memory", "16", "--timeout", "60")
    assert p.returncode == 0, p.stderr
    text = out.read_text("latin-1")
    got = lines(text)
    assert got[0] == "MB magic ok" and got[-1] == "MB done"
    assert "MB cmdline=%s a b c" % k in got
    assert "MB mem_lower=639K mem_upper=%dK" % (15 * 1024) in got
    assert "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1          # the reason line
    assert "halted" in p.stderr


@pytest.mark.parametrize("name", ["bad-checksum", "past-ram", "truncated", "not-a-kernel"])
def test_cli_malformed_kernel_exit_2_one_line(tmp_path, code, name):
    data, expect = bad_images(code)[name]
    k = write(tmp_path, name + ".img", data)
    p = emu_run("--kernel", k, "--serial", "none", "--memory", "16", "--timeout", "30")
    assert p.returncode == 2, p.stderr
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and expect in err[0] and k in err[0], p.stderr
