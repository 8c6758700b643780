"""The demonstration kernel (guests/demo_kernel.asm, built by emu/guests/demo_kernel.py).

* build: NASM into the cache, keyed by the source's SHA-256, one-line errors;
* its Multiboot v1 header ("a.out kludge": load addresses in the header);
* on the bare CPU (emu.api.Emu, a hand-made Multiboot entry state and a
  port stub): the kernel's own logic, independent of the platform, including
  its panic path (a triple fault on purpose);
* on the PC (emu.machine.Machine with --kernel, our BIOS, the Multiboot
  loader and the devices): what `./emu.sh run` shows, on COM1 and on VGA.
"""
import os
import re
import struct

import pytest

from emu.guests import demo_kernel

MB_MAGIC, MB_BOOT_MAGIC = 0x1BADB002, 0x2BADB002
LOAD_ADDR = 0x100000


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    return demo_kernel.build(cache=str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def image(kernel):
    with open(kernel, "rb") as f:
        return f.read()


# --- building ---------------------------------------------------------------------------
def test_build_is_cached_by_source_digest(tmp_path, monkeypatch):
    a = demo_kernel.build(cache=str(tmp_path))
    assert os.path.dirname(a) == str(tmp_path / "guests")
    # a second build must not need NASM at all
    monkeypatch.setattr(demo_kernel.shutil, "which", lambda name: None)
    assert demo_kernel.build(cache=str(tmp_path)) == a
    # a changed source is a different key, and then NASM is needed again
    src = tmp_path / "changed.asm"
    src.write_bytes(open(demo_kernel.SOURCE, "rb").read() + b"\n; changed\n")
    with pytest.raises(demo_kernel.BuildError) as e:
        demo_kernel.build(cache=str(tmp_path), source=str(src))
    assert "nasm" in str(e.value).lower() and "\n" not in str(e.value)


def test_broken_source_is_a_one_line_error(tmp_path):
    src = tmp_path / "broken.asm"
    src.write_text("bits 32\n  mov eax, [\n")
    with pytest.raises(demo_kernel.BuildError) as e:
        demo_kernel.build(cache=str(tmp_path), source=str(src))
    msg = str(e.value)
    assert "\n" not in msg and "broken.asm" in msg
    assert not [n for n in os.listdir(tmp_path / "guests") if n.endswith((".bin", ".tmp"))]


def test_missing_source_is_a_one_line_error(tmp_path):
    with pytest.raises(demo_kernel.BuildError) as e:
        demo_kernel.build(cache=str(tmp_path), source=str(tmp_path / "nope.asm"))
    assert "\n" not in str(e.value)


# --- the Multiboot header ----------------------------------------------------------------
def test_multiboot_header_uses_the_aout_kludge(image):
    # The header must lie 4-byte aligned in the first 8 KiB (Multiboot 0.6.96, 3.1.1).
    off = next(o for o in range(0, 8192, 4)
               if struct.unpack_from("<I", image, o)[0] == MB_MAGIC)
    magic, flags, checksum = struct.unpack_from("<III", image, off)
    assert (magic + flags + checksum) & 0xFFFFFFFF == 0
    assert flags & (1 << 16), "address fields present: a flat binary needs no ELF loader"
    assert flags & (1 << 1), "asks for the memory map"
    assert not flags & 0xFFFC & ~(1 << 1), "asks for nothing a loader may refuse"
    header_addr, load_addr, load_end, bss_end, entry = struct.unpack_from("<5I", image, off + 12)
    assert load_addr == LOAD_ADDR
    assert header_addr - load_addr == off
    assert load_end - load_addr == len(image)       # the whole file is text + data
    assert bss_end > load_end
    assert load_addr <= entry < load_end
    # the page directory in the BSS must be page aligned: it is the first BSS object
    assert (load_end + 0xFFF) & ~0xFFF < bss_end


# --- on the bare CPU -------------------------------------------------------------------------
class _StubPorts:
    """COM1 that is always ready and records bytes; everything else floats."""

    def __init__(self):
        self.serial = bytearray()
        self.pic_writes = []
        self.pit_writes = []
        self.lcr = 0
        self.divisor = {}

    def read(self, port, size):
        if port == 0x3FD:
            return 0x60                      # LSR: THRE and TEMT
        return (1 << (8 * size)) - 1

    def write(self, port, size, value):
        if port == 0x3FB:
            self.lcr = value & 0xFF
        elif port in (0x3F8, 0x3F9) and self.lcr & 0x80:   # DLAB: the baud divisor
            self.divisor[port] = value & 0xFF
        elif port == 0x3F8:
            self.serial.append(value & 0xFF)
        elif port in (0x20, 0x21, 0xA0, 0xA1):
            self.pic_writes.append((port, value))
        elif port in (0x40, 0x43):
            self.pit_writes.append((port, value))


MMAP = [(0, 0x9FC00, 1), (0x9FC00, 0x400, 2), (0xF0000, 0x10000, 2), (0x100000, 0xF00000, 1)]


def _boot_bare(image, magic=MB_BOOT_MAGIC, max_chunks=2000):
    from emu.api import Emu
    ports = _StubPorts()
    e = Emu(ram_size=16 << 20, ports=ports, stop_on_exception=False)
    e.mem_write(LOAD_ADDR, image)
    mmap = b"".join(struct.pack("<IQQI", 20, b, n, t) for b, n, t in MMAP)
    e.mem_write(0x9100, mmap)
    e.mem_write(0x9200, b"bare-cpu test\0")
    e.mem_write(0x9300, b"demo console=both\0")
    info = bytearray(88)
    struct.pack_into("<III", info, 0, 1 | 4 | 64 | 512, 639, 15 << 10)
    struct.pack_into("<I", info, 16, 0x9300)
    struct.pack_into("<II", info, 44, len(mmap), 0x9100)
    struct.pack_into("<I", info, 64, 0x9200)
    e.mem_write(0x9000, bytes(info))
    # The Multiboot machine state (0.6.96, 3.2): flat 32-bit segments, PE on, PG off, IF off.
    e.reg_write("cr0", 1)
    e.set_segment("cs", 0x08, base=0, limit=0xFFFFFFFF, attr=0xC09B)
    for s in ("ds", "es", "ss", "fs", "gs"):
        e.set_segment(s, 0x10, base=0, limit=0xFFFFFFFF, attr=0xC093)
    entry = struct.unpack_from("<I", image, 28)[0]
    e.reg_write("eax", magic)
    e.reg_write("ebx", 0x9000)
    e.reg_write("eip", entry)
    ticks = 0
    for _ in range(max_chunks):
        st = e.run(count=5000)
        if st.reason == "vmstop":
            return e, ports, st, ticks
        if st.reason == "hlt" and not e.reg_read("eflags") & 0x200:
            return e, ports, st, ticks
        if e.reg_read("eflags") & 0x200:
            e.interrupt(0x20)                # the "PIT": one tick per chunk
            ticks += 1
    raise AssertionError("the kernel did not finish: %r" % ports.serial[-300:])


def _vga_lines(e):
    vram = e.mem_read(0xB8000, 80 * 25 * 2)
    return [bytes(vram[r * 160:(r + 1) * 160:2]).decode("latin-1").rstrip() for r in range(25)]


def test_bare_cpu_run_shows_every_step(image):
    e, ports, st, ticks = _boot_bare(image)
    out = ports.serial.decode("latin-1")
    assert st.reason == "hlt"
    assert "\r\n" in out and "\n" not in out.replace("\r\n", "")
    lines = out.split("\r\n")
    assert lines[0].startswith("emu demonstration kernel")
    assert "boot loader: bare-cpu test" in lines
    assert 'command line: "demo console=both"' in lines
    assert "memory: 639 KiB low, 15360 KiB above 1 MiB" in lines
    assert lines[lines.index("memory map (from the boot loader):") + 1:][:4] == [
        "  0000000000000000-000000000009fbff available",
        "  000000000009fc00-000000000009ffff reserved",
        "  00000000000f0000-00000000000fffff reserved",
        "  0000000000100000-0000000000ffffff available"]
    assert "CR0 = 0x00000011 (PE: protected mode)" in lines
    assert "CR0 = 0x80010011 (PE: protected mode, PG: paging)" in lines
    alias = [ln for ln in lines if ln.startswith("running through the higher-half alias")]
    assert alias and re.search(r"EIP = 0xc01[0-9a-f]{5}$", alias[0])
    assert [ln for ln in lines if ln.startswith("timer:")] == [
        "timer: 100 ticks, 1 s of guest time", "timer: 200 ticks, 2 s of guest time",
        "timer: 300 ticks, 3 s of guest time"]
    assert ("#PF at CR2 = 0x0080048c, error 0x00000002: page mapped on demand, retrying"
            in lines)
    assert "survived the page fault; the value reads back: 0x00c0ffee" in lines
    assert lines[-2] == demo_kernel.GOODBYE and lines[-1] == ""
    assert ticks >= 300
    assert ports.divisor == {0x3F8: 1, 0x3F9: 0} and ports.lcr == 0x03    # 115200 8N1
    # PIC pair: ICW1-4 then OCW1; PIT: mode 2 on channel 0, divisor 11932 (100 Hz)
    assert ports.pic_writes[:10] == [(0x20, 0x11), (0xA0, 0x11), (0x21, 0x20), (0xA1, 0x28),
                                     (0x21, 0x04), (0xA1, 0x02), (0x21, 0x01), (0xA1, 0x01),
                                     (0x21, 0xFE), (0xA1, 0xFF)]
    assert ports.pit_writes == [(0x43, 0x34), (0x40, 11932 & 0xFF), (0x40, 11932 >> 8)]
    vga = _vga_lines(e)
    assert vga[0].startswith("emu demonstration kernel")
    assert "timer: 300 ticks = 3.00 s" in vga
    assert demo_kernel.GOODBYE in vga
    # the VGA tick line was rewritten in place: it appears once, not per second
    assert sum(ln.startswith("timer:") for ln in vga) == 1


def test_bad_boot_magic_panics_with_a_triple_fault(image):
    e, ports, st, _ = _boot_bare(image, magic=0x12345678)
    out = ports.serial.decode("latin-1")
    assert "PANIC: not started by a Multiboot loader" in out
    assert st.reason == "vmstop" and "triple fault" in st.message
    assert demo_kernel.GOODBYE not in out


# --- on the PC ---------------------------------------------------------------------------------
TYPE_NAMES = {1: "available", 2: "reserved", 3: "ACPI reclaimable", 4: "ACPI NVS",
              5: "bad memory"}


@pytest.fixture(scope="module")
def pc_run(kernel):
    """The kernel booted on the PC by our BIOS and the Multiboot loader."""
    from emu.machine import Machine, MachineConfig
    from emu.frontend.serial_backends import BufferBackend
    serial = BufferBackend()
    m = Machine(MachineConfig(kernel=kernel, append="demo=1"), serial_backend=serial)
    result = m.run(max_instructions=50_000_000)
    return m, result, serial.text()


def test_pc_boot_ends_with_a_clean_halt(pc_run):
    from emu.machine import EXIT_OK
    m, result, out = pc_run
    assert result.code == EXIT_OK, (result.reason, out[-2000:])
    assert result.reason == "guest halted with interrupts disabled"
    # three seconds of guest time passed at 100 Hz, mostly idle in HLT
    assert 3.0 <= m.clock.now() / 1e9 < 3.5
    assert result.instructions < 10_000_000


def test_pc_serial_console_shows_protected_mode_paging_and_interrupts(pc_run):
    from emu.boot.loader import e820_map
    m, result, out = pc_run
    lines = out.replace("\r\n", "\n").split("\n")
    start = next(i for i, ln in enumerate(lines) if ln.startswith("emu demonstration kernel"))
    lines = lines[start:]
    assert "GDT loaded: flat 32-bit code 0x08, data 0x10" in lines
    assert any(re.fullmatch(r'command line: ".*demo_kernel-[0-9a-f]+\.bin demo=1"', ln)
               for ln in lines), lines
    mem = m.config.memory_mb
    assert "memory: 639 KiB low, %d KiB above 1 MiB" % ((mem - 1) * 1024) in lines
    # the memory map is the machine's E820 map, as the loader passed it on
    i = lines.index("memory map (from the boot loader):") + 1
    expected = ["  %016x-%016x %s" % (b, b + n - 1, TYPE_NAMES.get(t, "type %d" % t))
                for b, n, t in e820_map(m)]
    assert lines[i:i + len(expected)] == expected
    assert any(ln.startswith("CR0 = ") and ln.endswith("(PE: protected mode, PG: paging)")
               for ln in lines)
    assert any(re.fullmatch(r"running through the higher-half alias: EIP = 0xc01[0-9a-f]{5}", ln)
               for ln in lines)
    assert [ln for ln in lines if ln.startswith("timer:")] == [
        "timer: 100 ticks, 1 s of guest time", "timer: 200 ticks, 2 s of guest time",
        "timer: 300 ticks, 3 s of guest time"]
    assert ("#PF at CR2 = 0x0080048c, error 0x00000002: page mapped on demand, retrying"
            in lines)
    assert lines[-2:] == [demo_kernel.GOODBYE, ""]
    assert "PANIC" not in out


def test_pc_vga_screen_shows_the_same_with_a_live_tick_line(pc_run):
    m, result, out = pc_run
    vga = m.devices["vga"].lines()
    assert vga[0].startswith("emu demonstration kernel")
    assert "timer: 300 ticks = 3.00 s" in vga
    assert sum(ln.startswith("timer:") for ln in vga) == 1       # rewritten in place
    assert "memory map (from the boot loader):" in vga
    last = max(i for i, ln in enumerate(vga) if ln)
    assert vga[last] == demo_kernel.GOODBYE
    # the hardware cursor (CRTC 0Eh/0Fh) follows the text: start of the next line
    assert m.devices["vga"].cursor() == (last + 1, 0)


def test_readme_first_command_boots_it(kernel, tmp_path):
    """What `./emu.sh run` does: emu run --kernel <demo> --serial stdio --display none."""
    import subprocess
    import sys
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    p = subprocess.run([sys.executable, "-m", "emu.cli", "run", "--kernel", kernel,
                        "--serial", "stdio", "--display", "none",
                        "--max-instructions", "50000000"],
                       stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=120,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = p.stdout.decode("latin-1")
    assert p.returncode == 0, p.stderr.decode("latin-1")[-2000:]
    assert "emu demonstration kernel" in out
    assert "timer: 300 ticks, 3 s of guest time" in out
    assert demo_kernel.GOODBYE in out
    assert "\n" not in p.stderr.decode().strip()      # at most the one-line reason
