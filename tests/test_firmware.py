"""Our BIOS (firmware/bios.asm), built with NASM and booted in emu.machine.Machine.

The guests are boot sectors assembled at test time (tests/guests/boot_*.py);
each prints tagged lines through the BIOS, which reach the VGA text screen
and, by the BIOS's teletype echo, COM1 (a BufferBackend here).
"""
import datetime
import hashlib

import pytest

from emu.firmware import build_builtin
from emu.frontend.serial_backends import BufferBackend
from emu.machine import EXIT_OK, Machine, MachineConfig
from tests.guests import boot_hello, boot_resume, boot_services
from tests.guests.boot_common import tagged_lines, tiny_boot_sector

BANNER = ["emu BIOS (firmware/bios.asm)"]
POST_CODES = list(range(0x01, 0x0E))


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def boot(config, backend=None, timeout=60):
    serial = backend or BufferBackend()
    m = Machine(config, serial_backend=serial)
    if hasattr(serial, "machine"):
        serial.machine = m
    res = m.run(timeout=timeout)
    return m, res, serial.text().replace("\r", "")


def e820_lines(ram):
    entries = [(0, 0x9FC00, 1), (0x9FC00, 0x400, 2), (0xF0000, 0x10000, 2),
               (0x100000, ram - 0x100000, 1), (0xFFFF0000, 0x10000, 2)]
    return ["%016X %016X %02X" % e for e in entries]


# --- the image -----------------------------------------------------------------------
def test_bios_image_is_64k_with_the_pc_fixed_addresses(tmp_path):
    path = build_builtin(cache=str(tmp_path))
    with open(path, "rb") as f:
        img = f.read()
    assert len(img) == 64 * 1024
    # F000:FFF0: jmp far F000:E05B; the date; model byte FCh (AT)
    assert img[0xFFF0:0xFFF5] == bytes([0xEA, 0x5B, 0xE0, 0x00, 0xF0])
    assert img[0xFFF5:0xFFFD] == b"06/01/25"
    assert img[0xFFFE] == 0xFC
    assert img[0xE05B] == 0xE9                       # POST entry: a near jmp
    assert img[0xFF53] == 0xCF                       # the dummy IRET
    assert img[0xE6F5:0xE6F8] == bytes([8, 0, 0xFC])  # INT 15h C0h table
    assert img[0xEFC7 + 4] == 18                     # diskette table: 18 sectors/track
    assert build_builtin(cache=str(tmp_path)) == path  # cached by the sources' digest


# --- boot_hello: hard disk and floppy ----------------------------------------------------
def expected_hello(drive, params, ram):
    return ([("HELLO", "boot sector running, drive %02X" % drive),
             ("STAGE2", "loaded by CHS"),
             ("EDD", boot_hello.EDD_TEXT.decode()[len("EDD: "):]),
             ("CHS", boot_hello.CHS_TEXT.decode()[len("CHS: "):]),
             ("PARAMS", params),
             ("PASTEND", "01 04")]
            + [("E820", ln) for ln in e820_lines(ram)]
            + [("PM", "switching")])


def check_hello(m, res, out, kind, drive, params, ram_mb):
    assert res.code == EXIT_OK, res.reason
    assert "interrupts disabled" in res.reason
    lines = out.split("\n")
    boot_msg = "Booting from %s..." % ("floppy" if kind == "floppy" else "hard disk")
    assert lines[:3] == BANNER + ["RAM: %d MiB" % ram_mb, boot_msg]
    want = ["%s: %s" % t for t in expected_hello(drive, params, ram_mb << 20)]
    assert lines[3:3 + len(want)] == want
    assert lines[3 + len(want):] == ["PM OK", ""]    # written in protected mode, to COM1
    # the same text on the VGA screen (the protected-mode line went to COM1 only)
    screen = m.devices["vga"].lines()
    assert screen[:3 + len(want)] == lines[:3 + len(want)]
    assert all(s == "" for s in screen[3 + len(want):])
    assert m.devices["vga"].cursor() == (3 + len(want), 0)   # the CRTC follows the BDA
    assert m.devices["sysctrl"].post_codes[:15] == POST_CODES + [0x31, 0x32]


def test_boot_hello_from_hard_disk(tmp_path):
    img = boot_hello.write_image(tmp_path / "hello.img", "hd")
    before = digest(img)
    m, res, out = boot(MachineConfig(memory_mb=32, disks=[img]))
    check_hello(m, res, out, "hd", 0x80, "0003 0F 3F", 32)
    assert digest(img) == before


def test_boot_hello_from_floppy(tmp_path):
    img = boot_hello.write_image(tmp_path / "hello.flp", "floppy")
    m, res, out = boot(MachineConfig(memory_mb=64, floppy=img))
    check_hello(m, res, out, "floppy", 0x00, "004F 01 12", 64)
    # POST recorded the floppy in CMOS (type 4 = 1.44 MB in the high nibble) and the BDA
    rtc = m.devices["rtc"]
    assert rtc.cmos[0x10] == 0x40
    assert rtc.cmos[0x14] & 1
    assert sum(rtc.cmos[0x10:0x2E]) == rtc.cmos[0x2E] << 8 | rtc.cmos[0x2F]
    assert m.phys.read_bytes(0x410, 2) == bytes([0x23, 0x02])     # equipment word


# --- no bootable device --------------------------------------------------------------------
def test_no_disks_means_int18_message_and_halt(tmp_path):
    m, res, out = boot(MachineConfig(memory_mb=16))
    assert res.code == EXIT_OK and "interrupts disabled" in res.reason
    assert out.split("\n")[:2] == BANNER + ["RAM: 16 MiB"]
    assert out.endswith("No bootable device.\n")


def test_boot_order_skips_a_floppy_without_signature(tmp_path):
    flp = tmp_path / "blank.flp"
    flp.write_bytes(bytes(1474560))
    hd = tmp_path / "tiny.img"
    hd.write_bytes(tiny_boot_sector("TINY: booted from ") + bytes(1 << 20))
    m, res, out = boot(MachineConfig(memory_mb=32, disks=[str(hd)], floppy=str(flp)))
    assert res.code == EXIT_OK
    assert out.split("\n")[2:] == ["Booting from floppy... not bootable",
                                   "Booting from hard disk...",
                                   "TINY: booted from 80", ""]


def test_boot_drive_from_the_firmware_interface_goes_first(tmp_path):
    """Both drives bootable: the default order takes the floppy; a machine
    whose config names drive 80h as the boot drive boots the hard disk."""
    flp = tmp_path / "tiny.flp"
    flp.write_bytes(tiny_boot_sector("TINY: booted from ") + bytes(1474560 - 512))
    hd = tmp_path / "tiny.img"
    hd.write_bytes(tiny_boot_sector("TINY: booted from ") + bytes(1 << 20))
    cfg = MachineConfig(memory_mb=16, disks=[str(hd)], floppy=str(flp))
    m, res, out = boot(cfg)
    assert tagged_lines(out, "TINY") == ["booted from 00"]
    cfg = MachineConfig(memory_mb=16, disks=[str(hd)], floppy=str(flp))
    cfg.boot_drive = 0x80
    m, res, out = boot(cfg)
    assert tagged_lines(out, "TINY") == ["booted from 80"]
    assert "floppy" not in out


def test_cmos_shutdown_code_0a_resumes_after_a_cpu_reset(tmp_path):
    hd = tmp_path / "resume.img"
    hd.write_bytes(boot_resume.build_image())
    m, res, out = boot(MachineConfig(memory_mb=16, disks=[str(hd)]))
    assert res.code == EXIT_OK, res.reason
    assert tagged_lines(out, "RESUME") == ["first", "back"]
    assert out.count(BANNER[0]) == 1                 # no second POST
    assert m.devices["rtc"].cmos[0x0F] == 0          # the code is used once


def test_unbootable_disk_alone(tmp_path):
    hd = tmp_path / "zero.img"
    hd.write_bytes(bytes(1 << 20))
    m, res, out = boot(MachineConfig(memory_mb=16, disks=[str(hd)]))
    assert res.code == EXIT_OK
    assert "Booting from hard disk... not bootable\n" in out
    assert out.endswith("No bootable device.\n")


# --- the services, one by one ----------------------------------------------------------------
class TypingBackend(BufferBackend):
    """COM1 for the services guest: when it says it waits for keys, type them."""

    def __init__(self):
        super().__init__()
        self.machine = None
        self.typed = False

    def write(self, data):
        super().write(data)
        if not self.typed and b"KBD: ready" in self.output:
            self.typed = True
            kbd = self.machine.devices["i8042"]
            kbd.type_text("aB\n")
            for _ in range(2):
                kbd.key_down("up")
                kbd.key_up("up")


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    d = tmp_path_factory.mktemp("services")
    img = boot_services.write_image(d / "services.img")
    before = digest(img)
    m, res, out = boot(MachineConfig(memory_mb=32, disks=[img]), backend=TypingBackend())
    return m, res, out, img, before


def one(out, tag):
    got = tagged_lines(out, tag)
    assert len(got) == 1, (tag, got, out)
    return got[0]


def test_services_guest_ran_to_the_end(services):
    m, res, out, img, before = services
    assert res.code == EXIT_OK, res.reason
    assert out.endswith("DONE: \nEND\n"), out
    assert digest(img) == before                     # the guest's write stayed in the overlay


def test_memory_and_equipment(services):
    out = services[2]
    assert one(out, "MEM12") == "027F"               # 639 KB below the EBDA
    assert one(out, "EQUIP") == "0222"               # FPU, 80x25 colour, one COM port
    assert one(out, "E801") == "3C00 0100 3C00 0100"  # 15 MiB to 16 MiB, 256 x 64 KiB above
    assert one(out, "EXT88") == "7C00"               # 31 MiB above 1 MiB
    assert one(out, "CONFIG") == "0008 FC"


def test_int15_a20_and_unsupported(services):
    out = services[2]
    assert one(out, "A20") == "01 00 01 0003"        # on after POST, off, on; kbc + port 92h
    assert one(out, "UNSUP") == "01 86"


def test_int15_wait_and_ticks(services):
    out = services[2]
    cf, ticks = one(out, "WAIT").split()
    assert cf == "00"
    assert 8 <= int(ticks, 16) <= 10                 # 500 ms is 9.1 ticks of 54.9 ms
    assert one(out, "MIDNIGHT").split()[:2] == ["01", "00"]   # flag once, then cleared
    assert int(one(out, "MIDNIGHT").split()[2], 16) < 0x10    # rolled over to 0


def test_rtc_time_and_date_agree_with_the_rtc_and_the_tick_count(services):
    m, _, out = services[:3]
    rtc_now = m.devices["rtc"].datetime()
    bcd, ticks = one(out, "RTC").split()
    h, mi, s, dst = (int(bcd[i:i + 2]) for i in range(0, 8, 2))
    assert dst == 0
    secs = h * 3600 + mi * 60 + s
    now_secs = rtc_now.hour * 3600 + rtc_now.minute * 60 + rtc_now.second
    assert (now_secs - secs) % 86400 < 120           # the run took little virtual time
    # POST started the tick count from the RTC: ticks / 18.2065 = seconds of the day
    assert abs(int(ticks, 16) / 18.2065 - secs) < 3 or abs(int(ticks, 16) / 18.2065 - secs) > 86397
    date = one(out, "DATE")
    got = datetime.date(int(date[0:4]), int(date[4:6]), int(date[6:8]))
    assert got in (rtc_now.date(), rtc_now.date() - datetime.timedelta(days=1))


def test_pci_bios(services):
    out = services[2]
    assert one(out, "PCI") == "0001 0210 20494350 00"   # mechanism 1, v2.10, "PCI ", CF clear
    devs = tagged_lines(out, "PCIDEV")
    assert devs[0] == "00 0000 00"                   # i440FX at 00:00.0
    assert devs[1] == "00 0008 00"                   # PIIX3 at 00:01.0
    assert devs[2].split()[0::2] == ["86", "01"]     # not found
    assert devs[3].split()[0::2] == ["83", "01"]     # vendor FFFF
    assert one(out, "PCICLASS") == "00 0008 00"      # ISA bridge class 060100
    assert one(out, "PCIREAD") == "12378086"
    assert one(out, "PCIREADW") == "0601"
    assert one(out, "PCIALIGN") == "87 01"


def test_int13_services(services):
    out = services[2]
    assert one(out, "TYPE80") == "03 00001000"       # a hard disk of 4096 sectors
    assert one(out, "TYPE81") == "00 00"             # no such drive (not an error)
    assert one(out, "ABSENT") == "01 01"
    assert one(out, "STATUS") == "01"                # the last hard disk status
    assert one(out, "EDDCHECK") == "30 AA55 0001 00"
    assert one(out, "EDDPARAMS") == ("001E 0002 00000004 00000010 0000003F 00001000 0200 "
                                     "FFFFFFFF")
    assert one(out, "WRITE") == "0001 00"
    assert one(out, "READBACK") == boot_services.WRITE_TEXT.decode()
    assert one(out, "VERIFY") == "0002 00"
    assert one(out, "ROMBUF") == "0900 01"           # DMA into the ROM refused: AH = 09h
    assert one(out, "BADCHS") == "0100 01"


def test_int10_services(services):
    m, _, out = services[:3]
    assert one(out, "VIDEO") == "5003 00"            # mode 3, 80 columns, page 0
    assert one(out, "EGA") == "0003"
    assert one(out, "DCC") == "1A 0008"
    assert one(out, "PAGE1") == "050A 1E58"          # cursor kept; 'X' with attribute 1Eh
    assert one(out, "STRING") == "060C"
    assert one(out, "IRQ4") == "F8 F8"               # unmasked, then masked by the BIOS
    text = bytes(m.devices["vga"].text_memory)
    page1 = text[0x1000:0x2000]
    vga = m.devices["vga"]
    # the guest showed page 1 and scrolled rows 5-7 up by one, blanking row 7
    assert vga.start_address() == 0x800
    screen = vga.lines()
    assert screen[5] == "Write string" and screen[6] == "AB" and screen[7] == ""
    row = lambda r: page1[r * 160:(r + 1) * 160]
    assert row(5)[1:24:2] == bytes([0x4F]) * 12      # AH=13h with BL = 4Fh
    assert row(6)[:4] == b"A\x2fB\x3f"               # AH=13h with attributes in the string
    assert row(7) == b" \x1f" * 80
    assert row(8) == b" \x07" * 80
    # AH=07h moved "Down" from row 10 to 11 and blanked row 10 with 2Eh
    assert screen[10] == "" and screen[11] == "Down"
    assert row(10) == b" \x2e" * 80 and row(12) == b" \x07" * 80
    # AH=0Ah wrote characters only; AH=06h with AL=0 cleared rows 20-21 ("Gone")
    assert row(14)[:6] == b"Q\x07Q\x07 \x07"
    assert row(20) == row(21) == b" \x5a" * 80 and row(22) == b" \x07" * 80


def test_int16_keyboard(services):
    out = services[2]
    assert tagged_lines(out, "KEY") == ["1E61", "3042", "1C0D", "4800"]
    assert one(out, "KEY10") == "48E0"               # the gray Up key, extended form
    assert one(out, "PEEK") == "01"                  # ZF: nothing waiting
    assert one(out, "SHIFT") == "00"
    assert one(out, "STORE") == "2E63 00 00"         # AH=05h stored it; peek saw it
