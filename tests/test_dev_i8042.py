"""The i8042 keyboard controller with its PS/2 keyboard and mouse
(emu/devices/i8042.py), built on a real PortBus / PhysMem / DMA and a
VirtualClock driven by a counter of our own."""
import random

import pytest

from emu.devices.base import DeviceBus
from emu.devices.clock import VirtualClock
from emu.devices.dma import DMA
from emu.devices.i8042 import I8042, KEYS, XLAT, key_name
from emu.devices.portbus import PortBus
from emu.mmu.physmem import PhysMem

DATA, CMD = 0x60, 0x64

# Scan code set 1 (the XT codes), written down independently of the
# translation table: the controller's output for these keys must be these.
SET1 = {
    "esc": 0x01, "1": 0x02, "2": 0x03, "3": 0x04, "4": 0x05, "5": 0x06, "6": 0x07,
    "7": 0x08, "8": 0x09, "9": 0x0A, "0": 0x0B, "-": 0x0C, "=": 0x0D, "backspace": 0x0E,
    "tab": 0x0F, "q": 0x10, "w": 0x11, "e": 0x12, "r": 0x13, "t": 0x14, "y": 0x15,
    "u": 0x16, "i": 0x17, "o": 0x18, "p": 0x19, "[": 0x1A, "]": 0x1B, "enter": 0x1C,
    "lctrl": 0x1D, "a": 0x1E, "s": 0x1F, "d": 0x20, "f": 0x21, "g": 0x22, "h": 0x23,
    "j": 0x24, "k": 0x25, "l": 0x26, ";": 0x27, "'": 0x28, "`": 0x29, "lshift": 0x2A,
    "\\": 0x2B, "z": 0x2C, "x": 0x2D, "c": 0x2E, "v": 0x2F, "b": 0x30, "n": 0x31,
    "m": 0x32, ",": 0x33, ".": 0x34, "/": 0x35, "rshift": 0x36, "kp*": 0x37, "lalt": 0x38,
    "space": 0x39, "capslock": 0x3A, "f1": 0x3B, "f2": 0x3C, "f3": 0x3D, "f4": 0x3E,
    "f5": 0x3F, "f6": 0x40, "f7": 0x41, "f8": 0x42, "f9": 0x43, "f10": 0x44,
    "numlock": 0x45, "scrolllock": 0x46, "kp7": 0x47, "kp8": 0x48, "kp9": 0x49,
    "kp-": 0x4A, "kp4": 0x4B, "kp5": 0x4C, "kp6": 0x4D, "kp+": 0x4E, "kp1": 0x4F,
    "kp2": 0x50, "kp3": 0x51, "kp0": 0x52, "kp.": 0x53, "102nd": 0x56, "f11": 0x57,
    "f12": 0x58,
    # E0-prefixed
    "kpenter": 0xE01C, "rctrl": 0xE01D, "kp/": 0xE035, "ralt": 0xE038, "home": 0xE047,
    "up": 0xE048, "pageup": 0xE049, "left": 0xE04B, "right": 0xE04D, "end": 0xE04F,
    "down": 0xE050, "pagedown": 0xE051, "insert": 0xE052, "delete": 0xE053,
    "lwin": 0xE05B, "rwin": 0xE05C, "menu": 0xE05D,
}


class Rig:
    def __init__(self):
        self.insns = 0
        self.ports = PortBus()
        self.phys = PhysMem(1 << 20)
        self.dma = DMA(self.phys)
        self.clock = VirtualClock(lambda: self.insns, ns_per_insn=1)
        self.levels = {}
        self.edges = {1: 0, 12: 0}
        self.a20_log = []
        self.resets = 0
        self.bus = DeviceBus(self.ports, self.phys, self.dma, self.clock, irq=self._irq,
                             a20=self.a20_log.append, reset_cpu=self._reset)
        self.kbc = I8042(self.bus)

    def _irq(self, line, level):
        if level and not self.levels.get(line, False):
            self.edges[line] = self.edges.get(line, 0) + 1
        self.levels[line] = level

    def _reset(self):
        self.resets += 1

    def irq(self, line):
        return self.levels.get(line, False)

    def inb(self, port):
        return self.ports.read(port, 1)

    def outb(self, port, value):
        self.ports.write(port, 1, value)

    def status(self):
        return self.inb(CMD)

    def command(self, c, data=None):
        self.outb(CMD, c)
        if data is not None:
            self.outb(DATA, data)

    def drain(self, limit=64):
        """Read the output buffer while OBF says there is something."""
        out = []
        while self.status() & 0x01 and len(out) < limit:
            out.append(self.inb(DATA))
        return out

    def kbd(self, *data):
        """Send bytes to the keyboard, returning what comes back."""
        got = []
        for b in data:
            self.outb(DATA, b)
            got += self.drain()
        return got

    def aux(self, *data):
        got = []
        for b in data:
            self.command(0xD4, b)
            got += self.drain()
        return got

    def assert_clean(self):
        assert self.ports.counters["handler_errors"] == 0, self.ports.last_error


@pytest.fixture
def rig():
    return Rig()


# --- the controller -----------------------------------------------------------------
def test_power_on_status_and_command_byte(rig):
    assert rig.status() == 0x10                  # not inhibited, nothing to read, SYS 0
    rig.command(0x20)
    assert rig.status() & 0x09 == 0x09           # OBF, A2 (last write was a command)
    assert rig.inb(DATA) == 0x41                 # XLAT + keyboard IRQ
    assert rig.status() & 0x01 == 0


def test_self_test_and_interface_tests(rig):
    rig.command(0xAA)
    assert rig.drain() == [0x55]
    assert rig.status() & 0x04                   # SYS flag set by the self-test
    rig.command(0xAB)
    assert rig.drain() == [0x00]
    rig.command(0xA9)
    assert rig.drain() == [0x00]
    rig.command(0xA4)
    assert rig.drain() == [0xF1]
    rig.command(0xC0)
    assert rig.drain() == [0xA0]
    rig.command(0xE0)
    assert rig.drain() == [0x00]


def test_command_byte_write_and_sys_flag(rig):
    rig.command(0x60, 0x65)
    assert rig.status() & 0x08 == 0              # the data byte cleared A2
    rig.command(0x20)
    assert rig.drain() == [0x65]
    assert rig.status() & 0x04
    rig.command(0x60, 0x00)
    assert not rig.status() & 0x04
    rig.command(0x7F, 0x99)                      # other RAM bytes read back
    rig.command(0x3F)
    assert rig.drain() == [0x99]


def test_enable_disable_ports_in_the_command_byte(rig):
    rig.command(0xAD)
    rig.command(0xA7)
    rig.command(0x20)
    assert rig.drain() == [0x41 | 0x10 | 0x20]
    rig.command(0xAE)
    rig.command(0xA8)
    rig.command(0x20)
    assert rig.drain() == [0x41]


def test_disabled_keyboard_interface_holds_keys(rig):
    rig.command(0xAD)
    rig.kbc.key_down("a")
    assert rig.drain() == []
    rig.command(0xAE)
    assert rig.drain() == [0x1E]


def test_a20_via_output_port(rig):
    rig.command(0xD0)
    assert rig.drain() == [0xCF]                 # A20 on, not in reset
    rig.command(0xD1, 0xDD)                      # bit 1 clear: A20 off
    assert rig.a20_log == [False]
    rig.command(0xD0)
    assert rig.drain()[0] & 0x02 == 0
    rig.command(0xD1, 0xDF)                      # what Linux and DOS write: A20 on
    assert rig.a20_log == [False, True]
    rig.command(0xD0)
    assert rig.drain()[0] & 0x03 == 0x03
    assert rig.resets == 0


def test_a20_via_dd_df_commands(rig):
    rig.command(0xDD)
    rig.command(0xD0)
    assert rig.drain()[0] & 0x02 == 0
    rig.command(0xDF)
    rig.command(0xD0)
    assert rig.drain()[0] & 0x02 == 0x02
    assert rig.a20_log == [False, True]


def test_output_port_reports_buffer_full_bits(rig):
    rig.command(0xD3, 0x12)                      # mouse byte waiting, unread
    rig.command(0xD0)                            # read while it waits: bit 5 set
    assert rig.drain() == [0x12, 0xEF]
    rig.kbc.key_down("a")
    rig.command(0xD0)                            # keyboard byte waiting: bit 4 set
    assert rig.drain() == [0x1E, 0xDF]
    rig.command(0xD0)
    assert rig.drain() == [0xCF]


def test_cpu_reset_via_fe_and_pulse_commands(rig):
    rig.command(0xFE)
    assert rig.resets == 1
    rig.command(0xF0)                            # all four lines pulsed: reset too
    assert rig.resets == 2
    rig.command(0xFF)                            # nothing pulsed
    rig.command(0xFD)                            # bit 1 only
    assert rig.resets == 2
    rig.command(0xD1, 0xDE)                      # output port bit 0 low
    assert rig.resets == 3


def test_reset_restores_power_on_state(rig):
    rig.command(0x60, 0x03)
    rig.kbc.key_down("a")
    rig.kbc.reset()
    assert rig.status() == 0x10
    rig.command(0x20)
    assert rig.drain() == [0x41]


def test_unknown_commands_are_ignored(rig):
    for c in (0x00, 0x10, 0x80, 0xA0, 0xB5, 0xC8, 0xE5):
        rig.command(c)
    assert rig.drain() == []
    assert rig.kbc.counters["unknown_commands"] == 7
    rig.assert_clean()


# --- the keyboard ------------------------------------------------------------------
def test_keyboard_reset_and_identify(rig):
    assert rig.kbd(0xFF) == [0xFA, 0xAA]
    assert rig.kbd(0xF2) == [0xFA, 0xAB, 0x41]   # 0x83 through the translation
    rig.command(0x60, 0x01)                      # XLAT off
    assert rig.kbd(0xF2) == [0xFA, 0xAB, 0x83]


def test_keyboard_scan_code_set_get_and_set(rig):
    assert rig.kbd(0xF0, 0x00) == [0xFA, 0xFA, 0x41]   # set 2, translated
    assert rig.kbd(0xF0, 0x01) == [0xFA, 0xFA]
    assert rig.kbd(0xF0, 0x00) == [0xFA, 0xFA, 0x43]   # set 1, translated
    rig.command(0x60, 0x01)
    assert rig.kbd(0xF0, 0x03) == [0xFA, 0xFA]
    assert rig.kbd(0xF0, 0x00) == [0xFA, 0xFA, 0x03]
    assert rig.kbd(0xF0, 0x07) == [0xFA, 0xFE]         # no such set


def test_keyboard_small_commands(rig):
    assert rig.kbd(0xED, 0x07) == [0xFA, 0xFA]
    assert rig.kbc.keyboard.leds == 7
    assert rig.kbd(0xF3, 0x20) == [0xFA, 0xFA]
    assert rig.kbc.keyboard.typematic == 0x20
    assert rig.kbd(0xEE) == [0xEE]
    assert rig.kbd(0xFE) == [0xEE]               # resend the last byte
    assert rig.kbd(0xF6) == [0xFA]
    assert rig.kbd(0x42) == [0xFE]               # not a command
    assert rig.kbd(0xEF) == [0xFE]
    assert rig.kbd(0xED, 0xF2) == [0xFA, 0xFA, 0xAB, 0x41]   # a command instead of the LEDs


def test_keyboard_disable_enable_scanning(rig):
    assert rig.kbd(0xF5) == [0xFA]
    rig.kbc.key_down("a")
    assert rig.drain() == []
    assert rig.kbd(0xF4) == [0xFA]
    rig.kbc.key_down("a")
    assert rig.drain() == [0x1E]


def test_set1_codes_of_every_key_through_translation(rig):
    for name, code in SET1.items():
        rig.kbc.key_down(name)
        rig.kbc.key_up(name)
        got = rig.drain()
        if code > 0xFF:
            assert got == [0xE0, code & 0xFF, 0xE0, code & 0xFF | 0x80], name
        else:
            assert got == [code, code | 0x80], name


def test_set1_direct_without_translation(rig):
    rig.command(0x60, 0x01)                      # XLAT off
    assert rig.kbd(0xF0, 0x01) == [0xFA, 0xFA]
    for name, code in SET1.items():
        rig.kbc.key_down(name)
        rig.kbc.key_up(name)
        want = [code, code | 0x80] if code <= 0xFF else \
            [0xE0, code & 0xFF, 0xE0, code & 0xFF | 0x80]
        assert rig.drain() == want, name


def test_set2_raw_without_translation(rig):
    rig.command(0x60, 0x01)
    rig.kbc.key_down("a")
    rig.kbc.key_up("a")
    rig.kbc.key_down("up")
    rig.kbc.key_up("up")
    rig.kbc.key_down("f7")
    assert rig.drain() == [0x1C, 0xF0, 0x1C, 0xE0, 0x75, 0xE0, 0xF0, 0x75, 0x83]


def test_set3(rig):
    rig.command(0x60, 0x01)
    rig.kbd(0xF0, 0x03)
    rig.kbc.key_down("lshift")
    rig.kbc.key_up("lshift")
    rig.kbc.key_down("up")
    rig.kbc.key_up("up")
    assert rig.drain() == [0x12, 0xF0, 0x12, 0x63, 0xF0, 0x63]
    assert rig.kbd(0xF9) == [0xFA]               # all keys make-only
    rig.kbc.key_down("a")
    rig.kbc.key_up("a")
    assert rig.drain() == [0x1C]
    assert rig.kbd(0xFA) == [0xFA]
    assert rig.kbd(0xFD, 0x1C, 0x1B, 0xF4) == [0xFA, 0xFA, 0xFA, 0xFA]   # a, s make-only
    for k in "asd":
        rig.kbc.key_down(k)
        rig.kbc.key_up(k)
    assert rig.drain() == [0x1C, 0x1B, 0x23, 0xF0, 0x23]


def test_print_screen_and_pause(rig):
    rig.kbc.key_down("printscreen")
    rig.kbc.key_up("printscreen")
    assert rig.drain() == [0xE0, 0x2A, 0xE0, 0x37, 0xE0, 0xB7, 0xE0, 0xAA]
    rig.kbc.key_down("pause")
    rig.kbc.key_up("pause")                      # Pause has no break code
    assert rig.drain() == [0xE1, 0x1D, 0x45, 0xE1, 0x9D, 0xC5]


def test_typed_text_gives_set1_codes_with_shift(rig):
    rig.kbc.type_text("Hi!\n")
    assert rig.drain() == [
        0x2A, 0x23, 0xA3, 0xAA,                  # Shift+h
        0x17, 0x97,                              # i
        0x2A, 0x02, 0x82, 0xAA,                  # Shift+1
        0x1C, 0x9C,                              # Enter
    ]


def test_typing_a_long_text_is_not_lost(rig):
    text = "The quick brown fox jumps over the lazy dog. 0123456789 ~!@#$%^&*()_+{}|:\"<>?\n" * 3
    rig.kbc.type_text(text)
    got = rig.drain(limit=100000)
    # decode the set-1 stream back with the table above and a US layout
    inv = {v: k for k, v in SET1.items() if v <= 0xFF}
    shifted = {"1": "!", "2": "@", "3": "#", "4": "$", "5": "%", "6": "^", "7": "&", "8": "*",
               "9": "(", "0": ")", "-": "_", "=": "+", "[": "{", "]": "}", "\\": "|", ";": ":",
               "'": '"', ",": "<", ".": ">", "/": "?", "`": "~"}
    out, shift = [], False
    for b in got:
        name = inv[b & 0x7F]
        if name == "lshift":
            shift = not b & 0x80
        elif not b & 0x80:
            ch = {"space": " ", "enter": "\n"}.get(name, name)
            if shift:
                ch = shifted.get(ch, ch.upper())
            out.append(ch)
    assert "".join(out) == text


def test_type_text_rejects_what_a_us_keyboard_cannot_type(rig):
    with pytest.raises(ValueError):
        rig.kbc.type_text("ok é")
    assert rig.drain() == []                     # nothing typed at all
    with pytest.raises(ValueError):
        rig.kbc.key_down("nosuchkey")


def test_key_names_and_aliases():
    assert key_name("Left Shift") == "lshift"
    assert key_name("return") == "enter"
    assert key_name("keypad 7") == "kp7"
    assert key_name("keypad -") == "kp-"
    assert key_name("[+]") == "kp+"
    assert key_name("A") == "a"
    assert key_name("page up") == "pageup"
    assert key_name("-") == "-"
    assert set(SET1) <= set(KEYS)


def test_translation_table_matches_set1_for_every_key():
    for name, (s2, _) in KEYS.items():
        if name in SET1 and s2 is not None:
            assert XLAT[s2 & 0xFF] == SET1[name] & 0xFF, name


# --- interrupts ---------------------------------------------------------------------
def test_irq1_follows_the_output_buffer(rig):
    assert not rig.irq(1)
    rig.kbc.key_down("up")                       # two bytes: E0 48
    assert rig.irq(1) and rig.edges[1] == 1
    assert rig.inb(DATA) == 0xE0
    assert rig.irq(1) and rig.edges[1] == 2      # dropped and rose again: a new edge
    assert rig.inb(DATA) == 0x48
    assert not rig.irq(1)
    rig.command(0x60, 0x40)                      # keyboard interrupt off
    rig.kbc.key_down("a")
    assert rig.status() & 0x01 and not rig.irq(1)
    rig.command(0x60, 0x41)                      # on again with the byte waiting
    assert rig.irq(1)
    rig.drain()
    assert not rig.irq(12)


def test_controller_replies_raise_irq1(rig):
    rig.command(0x20)
    assert rig.irq(1)
    rig.inb(DATA)
    assert not rig.irq(1)


# --- the mouse --------------------------------------------------------------------
def test_aux_loop_test_and_irq12_as_linux_probes_it(rig):
    rig.command(0x60, 0x43)                      # both interrupts on
    rig.command(0xD3, 0x5A)
    assert rig.status() & 0x21 == 0x21           # OBF + AUXB
    assert rig.irq(12) and not rig.irq(1)
    assert rig.inb(DATA) == 0x5A
    assert not rig.irq(12)


def test_mouse_reset_identify_and_status(rig):
    rig.command(0x60, 0x43)
    rig.command(0xA8)
    assert rig.aux(0xFF) == [0xFA, 0xAA, 0x00]
    assert rig.aux(0xF2) == [0xFA, 0x00]
    assert rig.aux(0xF3, 200) == [0xFA, 0xFA]
    assert rig.aux(0xE8, 3) == [0xFA, 0xFA]
    assert rig.aux(0xE9) == [0xFA, 0x00, 3, 200]
    assert rig.aux(0xF4) == [0xFA]
    assert rig.aux(0x12) == [0xFE]


def test_mouse_packets(rig):
    rig.command(0x60, 0x43)
    rig.aux(0xF4)
    rig.kbc.mouse_move(5, -3, buttons=1)
    assert rig.status() & 0x20
    assert rig.drain() == [0x08 | 0x01 | 0x20, 5, 0xFD]
    rig.aux(0xF5)
    rig.kbc.mouse_move(1, 1)
    assert rig.drain() == []


def test_mouse_data_held_while_aux_disabled(rig):
    rig.command(0xA7)
    rig.command(0xD4, 0xF2)
    assert rig.drain() == []
    rig.command(0xA8)
    assert rig.drain() == [0xFA, 0x00]


def test_write_keyboard_output_buffer(rig):
    rig.command(0xD2, 0x99)
    assert rig.status() & 0x21 == 0x01 and rig.irq(1)
    assert rig.inb(DATA) == 0x99


# --- hostile guest --------------------------------------------------------------------
def test_random_port_fuzz_never_raises():
    rig = Rig()
    kbc = rig.kbc
    rnd = random.Random(42)
    names = sorted(KEYS)
    for _ in range(30000):
        r = rnd.random()
        if r < 0.3:
            rig.outb(CMD, rnd.randrange(256))
        elif r < 0.6:
            rig.outb(DATA, rnd.randrange(256))
        elif r < 0.85:
            rig.inb(rnd.choice((DATA, CMD)))
        elif r < 0.9:
            rig.ports.write(rnd.choice((DATA, CMD)), rnd.choice((2, 4)), rnd.getrandbits(32))
        elif r < 0.95:
            getattr(kbc, rnd.choice(("key_down", "key_up")))(rnd.choice(names))
        else:
            kbc.mouse_move(rnd.randrange(-300, 300), rnd.randrange(-300, 300), rnd.randrange(8))
        assert len(kbc.replies) <= 8
        assert len(kbc.keyboard.out) <= 16 and len(kbc.mouse.out) <= 16
        cb = kbc.command_byte
        assert rig.irq(1) == (kbc.obf and not kbc.obf_aux and bool(cb & 1))
        assert rig.irq(12) == (kbc.obf and kbc.obf_aux and bool(cb & 2))
    rig.assert_clean()
    assert rig.resets > 0 and rig.a20_log         # the fuzz did reach those paths


def test_every_key_the_display_window_sends_is_known():
    """The window frontend's contract (emu/frontend/window.py KEY_NAMES)."""
    from emu.frontend import window
    rig = Rig()
    for name in sorted(window.KEY_NAMES):
        rig.kbc.key_down(name)
        rig.kbc.key_up(name)
        assert rig.drain(), name
