"""The i8042 keyboard controller, with a PS/2 keyboard and a PS/2 mouse behind it.

Ports: 0x60 data (read: the output buffer; write: to the keyboard, or the
data byte of a controller command), 0x64 read status / write command.

Status (0x64):  bit 0 OBF output buffer full, 1 IBF input buffer full
(always 0: we take every write at once), 2 SYS (command byte bit 2, set by
the self-test), 3 A2 (the last write went to 0x64), 4 INH (1 = keyboard not
inhibited by the key lock; always 1), 5 AUXB (the output buffer holds mouse
data), 6 timeout, 7 parity error (never).

Command byte (controller RAM byte 0): bit 0 IRQ 1 on keyboard data, 1 IRQ 12
on mouse data, 2 SYS, 4 keyboard interface disabled, 5 mouse interface
disabled, 6 XLAT (translate scan code set 2 to set 1).  Power-on value 0x41
(XLAT, IRQ 1 on), what a PC BIOS leaves, minus SYS, which the BIOS's
self-test (0xAA) sets.

Controller commands (0x64): 0x20-0x3F read RAM byte n (0x20: the command
byte), 0x60-0x7F write it, 0xA4 password installed? (no: 0xF1), 0xA7/0xA8
disable/enable the mouse interface, 0xA9 mouse interface test (0x00 = ok),
0xAA self-test (0x55), 0xAB keyboard interface test (0x00), 0xAD/0xAE
disable/enable the keyboard interface, 0xC0 read input port, 0xD0/0xD1
read/write the output port (bit 0 low = CPU reset, bit 1 = A20 gate), 0xD2
/ 0xD3 put the next data byte in the output buffer as if it came from the
keyboard / the mouse, 0xD4 send the next data byte to the mouse, 0xDD/0xDF
A20 off/on, 0xE0 read test inputs, 0xF0-0xFF pulse output-port bits 0-3
low for each 0 bit of the low nibble (bit 0 is the CPU reset: 0xFE is the
usual reset).  Unknown commands are counted and ignored.  A data byte
written to 0x60 with no command waiting for it goes to the keyboard and
re-enables the keyboard interface, as on the real part.

The output buffer holds one byte; the controller refills it, the moment it
is read, from (in order) its own replies, the keyboard, the mouse.
Keyboard bytes go through the set 2 -> set 1 translation table when XLAT is
on (a set-2 0xF0 break prefix becomes bit 7 of the next byte), exactly like
the part: so does the keyboard's ID 0xAB 0x83, which arrives as 0xAB 0x41,
and its "scan code set" answer 1/2/3, which arrives as 0x43/0x41/0x3F.
IRQ 1 is high while the output buffer holds keyboard or controller data and
command byte bit 0 is set; IRQ 12 likewise for mouse data and bit 1.  Reading
0x60 drops the line and, if another byte is ready, raises it again (a fresh
edge for the PIC).

The keyboard (PS2Keyboard) answers reset 0xFF (0xFA 0xAA), 0xF2 identify
(0xFA 0xAB 0x83), 0xF0 get/set scan code set 1/2/3, 0xED LEDs, 0xF3
typematic rate, 0xF4/0xF5/0xF6 enable/disable/defaults, 0xEE echo, 0xFE
resend, 0xF7-0xFD (set-3 key modes: all typematic, make/break, make only;
per-key lists), anything else 0xFE.  Keys come from the host through
``key_down(name)``, ``key_up(name)`` and ``type_text(text)`` (US layout;
names in KEYS, aliases in ALIASES); they are dropped while the keyboard
has scanning disabled.  No typematic repeat is generated (the host's own
key repeat sends repeated key_down), and the set-2 "fake shift" bytes some
keyboards add around the navigation keys are not produced.

The mouse port: a plain PS/2 mouse (ID 0x00, 3-byte packets) that answers
reset (0xFA 0xAA 0x00), identify, status request, sample rate, resolution,
scaling, stream/remote/wrap modes and enable/disable, so an OS that probes
the aux port (Linux's i8042 loop test and psmouse) finds a "generic PS/2
mouse".  It moves only when the host calls ``mouse_move``.

The host-side API is not thread-safe: call it from the thread that runs the
machine.  Anything a guest writes leaves the controller in a defined state;
every queue is bounded.
"""
from collections import deque

IRQ_KBD, IRQ_AUX = 1, 12

# status register
ST_OBF, ST_IBF, ST_SYS, ST_A2, ST_INH, ST_AUXB = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
# command byte
CB_KBD_INT, CB_AUX_INT, CB_SYS, CB_KBD_OFF, CB_AUX_OFF, CB_XLAT = 0x01, 0x02, 0x04, 0x10, 0x20, 0x40
POWER_ON_COMMAND_BYTE = CB_XLAT | CB_KBD_INT
# output port
OP_RESET, OP_A20 = 0x01, 0x02
POWER_ON_OUTPUT_PORT = 0xCF        # not in reset, A20 on (as the CPU comes up), lines high
INPUT_PORT = 0xA0                  # keyboard not inhibited, no jumper, colour display

ACK, RESEND, BAT_OK, ECHO = 0xFA, 0xFE, 0xAA, 0xEE

REPLY_QUEUE_MAX = 8                # controller replies not yet read
DEVICE_QUEUE_MAX = 16              # a PS/2 device's own output buffer
HOST_EVENTS_MAX = 4096             # key events from the host waiting for room

# The 8042's translation table, set 2 -> set 1, for bytes 0x00-0x7F; bytes
# from 0x80 up pass unchanged except 0x83 (set-2 F7) and 0x84 (Alt+SysRq).
_XLAT_LOW = bytes.fromhex("""
    ff 43 41 3f 3d 3b 3c 58  64 44 42 40 3e 0f 29 59
    65 38 2a 70 1d 10 02 5a  66 71 2c 1f 1e 11 03 5b
    67 2e 2d 20 12 05 04 5c  68 39 2f 21 14 13 06 5d
    69 31 30 23 22 15 07 5e  6a 72 32 24 16 08 09 5f
    6b 33 25 17 18 0b 0a 60  6c 34 35 26 27 19 0c 61
    6d 73 28 74 1a 0d 62 6e  3a 36 1c 1b 75 2b 63 76
    55 56 77 78 79 7a 0e 7b  7c 4f 7d 4b 47 7e 7f 6f
    52 53 50 4c 4d 48 01 45  57 4e 51 4a 37 49 46 54
""")
XLAT = _XLAT_LOW + bytes((0x80, 0x81, 0x82, 0x41, 0x54)) + bytes(range(0x85, 0x100))


def translate_set2(data):
    """Set-2 bytes as the 8042 passes them on with XLAT on (stateless helper)."""
    out = bytearray()
    brk = False
    for b in data:
        if b == 0xF0:
            brk = True
            continue
        t = XLAT[b]
        out.append(t | 0x80 if brk else t)
        brk = False
    return bytes(out)


# --- the keys ------------------------------------------------------------------
# name: (set-2 make code, set-3 make code); a set-2 code above 0xFF is an
# 0xE0-prefixed one.  Set 1 is set 2 through the translation table.
KEYS = {
    "esc": (0x76, 0x08),
    "f1": (0x05, 0x07), "f2": (0x06, 0x0F), "f3": (0x04, 0x17), "f4": (0x0C, 0x1F),
    "f5": (0x03, 0x27), "f6": (0x0B, 0x2F), "f7": (0x83, 0x37), "f8": (0x0A, 0x3F),
    "f9": (0x01, 0x47), "f10": (0x09, 0x4F), "f11": (0x78, 0x56), "f12": (0x07, 0x5E),
    "printscreen": (None, 0x57), "scrolllock": (0x7E, 0x5F), "pause": (None, 0x62),
    "`": (0x0E, 0x0E), "1": (0x16, 0x16), "2": (0x1E, 0x1E), "3": (0x26, 0x26),
    "4": (0x25, 0x25), "5": (0x2E, 0x2E), "6": (0x36, 0x36), "7": (0x3D, 0x3D),
    "8": (0x3E, 0x3E), "9": (0x46, 0x46), "0": (0x45, 0x45), "-": (0x4E, 0x4E),
    "=": (0x55, 0x55), "backspace": (0x66, 0x66),
    "tab": (0x0D, 0x0D), "q": (0x15, 0x15), "w": (0x1D, 0x1D), "e": (0x24, 0x24),
    "r": (0x2D, 0x2D), "t": (0x2C, 0x2C), "y": (0x35, 0x35), "u": (0x3C, 0x3C),
    "i": (0x43, 0x43), "o": (0x44, 0x44), "p": (0x4D, 0x4D), "[": (0x54, 0x54),
    "]": (0x5B, 0x5B), "\\": (0x5D, 0x5C),
    "capslock": (0x58, 0x14), "a": (0x1C, 0x1C), "s": (0x1B, 0x1B), "d": (0x23, 0x23),
    "f": (0x2B, 0x2B), "g": (0x34, 0x34), "h": (0x33, 0x33), "j": (0x3B, 0x3B),
    "k": (0x42, 0x42), "l": (0x4B, 0x4B), ";": (0x4C, 0x4C), "'": (0x52, 0x52),
    "enter": (0x5A, 0x5A),
    "lshift": (0x12, 0x12), "102nd": (0x61, 0x13), "z": (0x1A, 0x1A), "x": (0x22, 0x22),
    "c": (0x21, 0x21), "v": (0x2A, 0x2A), "b": (0x32, 0x32), "n": (0x31, 0x31),
    "m": (0x3A, 0x3A), ",": (0x41, 0x41), ".": (0x49, 0x49), "/": (0x4A, 0x4A),
    "rshift": (0x59, 0x59),
    "lctrl": (0x14, 0x11), "lwin": (0xE01F, 0x8B), "lalt": (0x11, 0x19),
    "space": (0x29, 0x29), "ralt": (0xE011, 0x39), "rwin": (0xE027, 0x8C),
    "menu": (0xE02F, 0x8D), "rctrl": (0xE014, 0x58),
    "insert": (0xE070, 0x67), "home": (0xE06C, 0x6E), "pageup": (0xE07D, 0x6F),
    "delete": (0xE071, 0x64), "end": (0xE069, 0x65), "pagedown": (0xE07A, 0x6D),
    "up": (0xE075, 0x63), "left": (0xE06B, 0x61), "down": (0xE072, 0x60),
    "right": (0xE074, 0x6A),
    "numlock": (0x77, 0x76), "kp/": (0xE04A, 0x77), "kp*": (0x7C, 0x7E),
    "kp-": (0x7B, 0x84), "kp+": (0x79, 0x7C), "kpenter": (0xE05A, 0x79),
    "kp.": (0x71, 0x71), "kp0": (0x70, 0x70), "kp1": (0x69, 0x69), "kp2": (0x72, 0x72),
    "kp3": (0x7A, 0x7A), "kp4": (0x6B, 0x6B), "kp5": (0x73, 0x73), "kp6": (0x74, 0x74),
    "kp7": (0x6C, 0x6C), "kp8": (0x75, 0x75), "kp9": (0x7D, 0x7D),
}

# Keys whose set-2 sequences are not a plain (E0) code: (make, break).
_SPECIAL_SET2 = {
    "printscreen": (b"\xe0\x12\xe0\x7c", b"\xe0\xf0\x7c\xe0\xf0\x12"),
    "pause": (b"\xe1\x14\x77\xe1\xf0\x14\xf0\x77", b""),        # make only
}

ALIASES = {
    "escape": "esc", "return": "enter", "bksp": "backspace", "spacebar": "space",
    " ": "space", "\t": "tab", "\n": "enter",
    "shift": "lshift", "leftshift": "lshift", "rightshift": "rshift",
    "ctrl": "lctrl", "control": "lctrl", "leftctrl": "lctrl", "leftcontrol": "lctrl",
    "lcontrol": "lctrl", "rightctrl": "rctrl", "rightcontrol": "rctrl", "rcontrol": "rctrl",
    "alt": "lalt", "leftalt": "lalt", "rightalt": "ralt", "altgr": "ralt",
    "win": "lwin", "super": "lwin", "leftsuper": "lwin", "lsuper": "lwin", "lmeta": "lwin",
    "leftmeta": "lwin", "rightsuper": "rwin", "rsuper": "rwin", "rmeta": "rwin",
    "rightmeta": "rwin", "application": "menu", "compose": "menu",
    "caps": "capslock", "scroll": "scrolllock", "scrlk": "scrolllock",
    "print": "printscreen", "prtsc": "printscreen", "prtscr": "printscreen",
    "sysrq": "printscreen", "break": "pause",
    "ins": "insert", "del": "delete", "pgup": "pageup", "pgdn": "pagedown",
    "uparrow": "up", "downarrow": "down", "leftarrow": "left", "rightarrow": "right",
    "grave": "`", "backquote": "`", "minus": "-", "equals": "=", "equal": "=",
    "leftbracket": "[", "rightbracket": "]", "backslash": "\\", "semicolon": ";",
    "quote": "'", "apostrophe": "'", "comma": ",", "period": ".", "slash": "/",
    "kpdivide": "kp/", "kpmultiply": "kp*", "kpminus": "kp-", "kpplus": "kp+",
    "kpperiod": "kp.", "kpdecimal": "kp.", "kpreturn": "kpenter",
    "lessthan": "102nd", "iso": "102nd",
}

# US layout: characters typed with Shift, and the key that carries them.
_SHIFTED = {"!": "1", "@": "2", "#": "3", "$": "4", "%": "5", "^": "6", "&": "7", "*": "8",
            "(": "9", ")": "0", "_": "-", "+": "=", "{": "[", "}": "]", "|": "\\",
            ":": ";", '"': "'", "<": ",", ">": ".", "?": "/", "~": "`"}
_CONTROL_CHARS = {"\n": "enter", "\r": "enter", "\t": "tab", "\b": "backspace",
                  "\x1b": "esc", " ": "space"}


def key_name(name):
    """The canonical KEYS name for ``name`` (case, spaces, pygame's "keypad 1"
    and "[1]" forms accepted); ValueError when there is none."""
    if not isinstance(name, str) or not name:
        raise ValueError("not a key name: %r" % (name,))
    if name in KEYS:
        return name
    if name in ALIASES:
        return ALIASES[name]
    n = name.lower().replace(" ", "").replace("_", "")
    if n.startswith("keypad"):
        n = "kp" + n[6:]
    elif len(n) == 3 and n[0] == "[" and n[2] == "]":
        n = "kp" + n[1]                                  # pygame 1.x "[1]", "[+]"
    if n in KEYS:
        return n
    if n in ALIASES:
        return ALIASES[n]
    raise ValueError("unknown key name: %r" % (name,))


def _set2_sequences(key):
    """(make, break) byte strings of ``key`` in scan code set 2."""
    special = _SPECIAL_SET2.get(key)
    if special is not None:
        return special
    code = KEYS[key][0]
    if code > 0xFF:
        return bytes((0xE0, code & 0xFF)), bytes((0xE0, 0xF0, code & 0xFF))
    return bytes((code,)), bytes((0xF0, code))


class PS2Keyboard:
    """The keyboard on the first port: commands in, responses and scan codes out."""

    def __init__(self):
        self.out = deque()                 # bytes for the controller
        self.events = deque()              # host key events (byte strings) waiting
        self.counters = {"events_dropped": 0, "bytes_dropped": 0, "unknown_commands": 0}
        self.last_sent = None
        self.reset_state()

    def reset_state(self):
        self.out.clear()
        self.events.clear()
        self.scanning = True
        self.scanset = 2
        self.leds = 0
        self.typematic = 0x2B              # 10.9 characters/s after 500 ms
        self.arg_for = None                # a command waiting for its data byte
        self.make_only_all = False         # set 3: 0xF9
        self.make_only = set()             # set 3: per-key (0xFD lists)

    # --- bytes to the controller ------------------------------------------------
    def _send(self, *data):
        for b in data:
            if len(self.out) < DEVICE_QUEUE_MAX:
                self.out.append(b)
            else:
                self.counters["bytes_dropped"] += 1

    def ready(self):
        """Is a byte waiting?  Moves the next whole key event in when there is room."""
        if not self.out and self.events and self.arg_for is None:
            self.out.extend(self.events.popleft())
        return bool(self.out)

    def pop(self):
        if not self.ready():
            return None
        b = self.out.popleft()
        self.last_sent = b
        return b

    # --- bytes from the controller ----------------------------------------------
    def command(self, b):
        # A byte from the host interrupts whatever the keyboard was sending.
        self.out.clear()
        arg_for = self.arg_for
        if arg_for is not None:
            if arg_for == 0xED and not b & 0xF8:
                self.arg_for = None
                self.leds = b
                self._send(ACK)
                return
            if arg_for == 0xF3 and not b & 0x80:
                self.arg_for = None
                self.typematic = b
                self._send(ACK)
                return
            if arg_for == 0xF0 and b <= 3:
                self.arg_for = None
                if b == 0:
                    self._send(ACK, self.scanset)
                else:
                    self.scanset = b
                    self._send(ACK)
                return
            if arg_for in (0xFB, 0xFC, 0xFD) and b < 0xED:
                # a key of a set-3 per-key list: stays in list mode until a command
                if arg_for == 0xFD:
                    self.make_only.add(b)
                else:
                    self.make_only.discard(b)
                self._send(ACK)
                return
            self.arg_for = None
            if b < 0xED:
                self._send(RESEND)         # a bad argument
                return
            # a command byte instead of the argument: obey the command
        if b == 0xFF:                      # reset and self-test
            self.reset_state()
            self._send(ACK, BAT_OK)
        elif b == 0xFE:                    # resend the last byte
            if self.last_sent is not None:
                self._send(self.last_sent)
        elif b in (0xED, 0xF3, 0xF0):      # LEDs, typematic rate, scan code set: + data
            self.arg_for = b
            self._send(ACK)
        elif b == 0xEE:
            self._send(ECHO)
        elif b == 0xF2:                    # identify: an MF2 keyboard
            self._send(ACK, 0xAB, 0x83)
        elif b == 0xF4:
            self.scanning = True
            self.events.clear()
            self._send(ACK)
        elif b == 0xF5:                    # disable: defaults, stop scanning
            self._defaults()
            self.scanning = False
            self._send(ACK)
        elif b == 0xF6:
            self._defaults()
            self._send(ACK)
        elif b in (0xF7, 0xF8, 0xFA):      # set 3: all keys typematic / make-break / both
            self.make_only_all = False
            self.make_only.clear()
            self._send(ACK)
        elif b == 0xF9:                    # set 3: all keys make only
            self.make_only_all = True
            self._send(ACK)
        elif b in (0xFB, 0xFC, 0xFD):      # set 3: per-key lists follow
            self.arg_for = b
            self._send(ACK)
        else:
            self.counters["unknown_commands"] += 1
            self._send(RESEND)

    def _defaults(self):
        self.events.clear()
        self.typematic = 0x2B
        self.make_only_all = False
        self.make_only.clear()

    # --- keys from the host -------------------------------------------------------
    def sequence(self, key, down):
        """The bytes the keyboard sends for ``key`` going down/up in its current set."""
        mk, br = _set2_sequences(key)
        if self.scanset == 1:
            return translate_set2(mk if down else br)
        if self.scanset == 3:
            code = KEYS[key][1]
            if down:
                return bytes((code,))
            if self.make_only_all or code in self.make_only:
                return b""
            return bytes((0xF0, code))
        return mk if down else br

    def key(self, key, down):
        if not self.scanning:
            return
        seq = self.sequence(key, down)
        if not seq:
            return
        if len(self.events) >= HOST_EVENTS_MAX:
            self.counters["events_dropped"] += 1
            return
        self.events.append(seq)


class PS2Mouse:
    """A plain PS/2 mouse on the aux port (ID 0x00, 3-byte packets)."""

    def __init__(self):
        self.out = deque()
        self.counters = {"bytes_dropped": 0, "unknown_commands": 0}
        self.last_sent = None
        self.reset_state()

    def reset_state(self):
        self.out.clear()
        self.reporting = False
        self.remote = False
        self.wrap = False
        self.rate = 100
        self.resolution = 2
        self.scaling21 = False
        self.arg_for = None
        self.buttons = 0
        self.dx = self.dy = 0              # movement not yet reported (remote mode)

    def _send(self, *data):
        for b in data:
            if len(self.out) < DEVICE_QUEUE_MAX:
                self.out.append(b)
            else:
                self.counters["bytes_dropped"] += 1

    def ready(self):
        return bool(self.out)

    def pop(self):
        if not self.out:
            return None
        b = self.out.popleft()
        self.last_sent = b
        return b

    def _packet(self):
        dx = max(-255, min(255, self.dx))
        dy = max(-255, min(255, self.dy))
        self.dx = self.dy = 0
        head = 0x08 | (self.buttons & 7) | (0x10 if dx < 0 else 0) | (0x20 if dy < 0 else 0)
        return (head, dx & 0xFF, dy & 0xFF)

    def command(self, b):
        if self.arg_for is not None:
            cmd, self.arg_for = self.arg_for, None
            if cmd == 0xF3:
                self.rate = b
            else:                          # 0xE8
                self.resolution = b & 3
            self._send(ACK)
            return
        if self.wrap and b not in (0xEC, 0xFF):
            self._send(b)                  # wrap mode echoes everything else
            return
        if b == 0xFF:
            self.reset_state()
            self._send(ACK, BAT_OK, 0x00)
        elif b == 0xFE:
            if self.last_sent is not None:
                self._send(self.last_sent)
        elif b == 0xF6:                    # defaults
            self.rate, self.resolution, self.scaling21, self.reporting = 100, 2, False, False
            self._send(ACK)
        elif b == 0xF5:
            self.reporting = False
            self._send(ACK)
        elif b == 0xF4:
            self.reporting = True
            self._send(ACK)
        elif b in (0xF3, 0xE8):
            self.arg_for = b
            self._send(ACK)
        elif b == 0xF2:
            self._send(ACK, 0x00)
        elif b == 0xF0:
            self.remote = True
            self._send(ACK)
        elif b == 0xEA:
            self.remote = False
            self._send(ACK)
        elif b == 0xEE:
            self.wrap = True
            self._send(ACK)
        elif b == 0xEC:
            self.wrap = False
            self._send(ACK)
        elif b == 0xEB:
            self._send(ACK, *self._packet())
        elif b == 0xE9:
            status = ((0x40 if self.remote else 0) | (0x20 if self.reporting else 0)
                      | (0x10 if self.scaling21 else 0) | (self.buttons & 1) << 2
                      | (self.buttons & 4) >> 1 | (self.buttons & 2) >> 1)
            self._send(ACK, status, self.resolution, self.rate)
        elif b in (0xE6, 0xE7):
            self.scaling21 = b == 0xE7
            self._send(ACK)
        else:
            self.counters["unknown_commands"] += 1
            self._send(RESEND)

    def move(self, dx, dy, buttons):
        self.dx += int(dx)
        self.dy += int(dy)
        self.buttons = int(buttons) & 7
        if self.reporting and not self.remote and not self.wrap and len(self.out) <= 13:
            self._send(*self._packet())


class I8042:
    def __init__(self, bus):
        self.bus = bus
        self.keyboard = PS2Keyboard()
        self.mouse = PS2Mouse()
        self.counters = {"unknown_commands": 0, "replies_dropped": 0}
        self._irq1 = self._irq12 = False
        bus.ports.register(0x60, 1, read=self.port_read, write=self.port_write,
                           name="i8042-data", sizes=(1,))
        bus.ports.register(0x64, 1, read=self.port_read, write=self.port_write,
                           name="i8042-cmd", sizes=(1,))
        self.reset()

    def reset(self):
        self.ram = bytearray(32)
        self.ram[0] = POWER_ON_COMMAND_BYTE
        self.output_port = POWER_ON_OUTPUT_PORT
        self.replies = deque()             # (byte, from_aux) made by the controller
        self.obf = False
        self.obf_aux = False
        self.data = 0                      # the output buffer (kept after reading)
        self.a2 = False
        self.expect = None                 # the command whose data byte comes next
        self._xlat_break = False           # a set-2 0xF0 seen, waiting for its code
        self.keyboard.reset_state()
        self.mouse.reset_state()
        self._update_irq()

    @property
    def command_byte(self):
        return self.ram[0]

    # --- the guest's side ---------------------------------------------------------
    def port_read(self, port, size):
        if port == 0x64:
            return self.status()
        v = self.data
        if self.obf:
            self.obf = False
            self.obf_aux = False
            self._update_irq()             # the line drops ...
            self._fill()                   # ... and rises again for the next byte
        return v

    def port_write(self, port, size, value):
        v = value & 0xFF
        if port == 0x64:
            self.a2 = True
            self.expect = None
            self._command(v)
        else:
            self.a2 = False
            cmd, self.expect = self.expect, None
            if cmd is None:
                self.ram[0] &= ~CB_KBD_OFF & 0xFF   # talking to the keyboard enables it
                self._xlat_break = False   # the keyboard drops what it was sending
                self.keyboard.command(v)
            else:
                self._data_for(cmd, v)
        self._fill()

    def status(self):
        s = ST_INH
        if self.obf:
            s |= ST_OBF
            if self.obf_aux:
                s |= ST_AUXB
        if self.ram[0] & CB_SYS:
            s |= ST_SYS
        if self.a2:
            s |= ST_A2
        return s

    # --- controller commands -------------------------------------------------------
    def _reply(self, b, aux=False):
        if len(self.replies) < REPLY_QUEUE_MAX:
            self.replies.append((b & 0xFF, aux))
        else:
            self.counters["replies_dropped"] += 1

    def _command(self, c):
        ram = self.ram
        if 0x20 <= c <= 0x3F:
            self._reply(ram[c & 0x1F])
        elif 0x60 <= c <= 0x7F or c in (0xD1, 0xD2, 0xD3, 0xD4):
            self.expect = c
        elif c == 0xA4:
            self._reply(0xF1)              # no password installed
        elif c == 0xA7:
            ram[0] |= CB_AUX_OFF
        elif c == 0xA8:
            ram[0] &= ~CB_AUX_OFF & 0xFF
        elif c == 0xA9 or c == 0xAB:
            self._reply(0x00)              # interface test: no error
        elif c == 0xAA:
            ram[0] |= CB_SYS
            self._reply(0x55)
        elif c == 0xAD:
            ram[0] |= CB_KBD_OFF
        elif c == 0xAE:
            ram[0] &= ~CB_KBD_OFF & 0xFF
        elif c == 0xC0:
            self._reply(INPUT_PORT)
        elif c == 0xD0:
            self._reply(self.read_output_port())
        elif c == 0xDD:
            self._set_a20(False)
        elif c == 0xDF:
            self._set_a20(True)
        elif c == 0xE0:
            self._reply(0x00)
        elif c >= 0xF0:
            if not c & OP_RESET:
                self.bus.reset_cpu()       # bit 0 pulsed low: the CPU's RESET line
            # pulsing bits 1-3 low for a few microseconds changes nothing that stays
        else:
            self.counters["unknown_commands"] += 1
        self._update_irq()

    def _data_for(self, cmd, v):
        if 0x60 <= cmd <= 0x7F:
            self.ram[cmd & 0x1F] = v
            if cmd == 0x60:
                self._xlat_break = False
                self._update_irq()
        elif cmd == 0xD1:
            self.write_output_port(v)
        elif cmd == 0xD2:
            self._reply(v)
        elif cmd == 0xD3:
            self._reply(v, aux=True)
        elif cmd == 0xD4:
            self.mouse.command(v)

    def read_output_port(self):
        v = self.output_port & ~0x30
        if self.obf:
            v |= 0x20 if self.obf_aux else 0x10
        return v

    def write_output_port(self, v):
        self.output_port = v & ~0x30 & 0xFF
        self.bus.a20(bool(v & OP_A20))
        if not v & OP_RESET:
            self.bus.reset_cpu()

    def _set_a20(self, on):
        self.output_port = (self.output_port | OP_A20) if on else (self.output_port & ~OP_A20)
        self.bus.a20(on)

    # --- output buffer and interrupts ---------------------------------------------
    def _fill(self):
        """Load the output buffer when it is empty and someone has a byte."""
        if not self.obf:
            byte = aux = None
            if self.replies:
                byte, aux = self.replies.popleft()
            elif not self.ram[0] & CB_KBD_OFF and self.keyboard.ready():
                byte = self._from_keyboard()
                aux = False
            if byte is None and not self.ram[0] & CB_AUX_OFF and self.mouse.ready():
                byte, aux = self.mouse.pop(), True
            if byte is not None:
                self.data = byte
                self.obf = True
                self.obf_aux = aux
        self._update_irq()

    def _from_keyboard(self):
        kbd = self.keyboard
        while kbd.ready():
            b = kbd.pop()
            if not self.ram[0] & CB_XLAT:
                return b
            if b == 0xF0:
                self._xlat_break = True    # swallowed: it becomes bit 7 of the next byte
                continue
            t = XLAT[b]
            if self._xlat_break:
                self._xlat_break = False
                t |= 0x80
            return t
        return None

    def _update_irq(self):
        cb = self.ram[0]
        irq1 = self.obf and not self.obf_aux and bool(cb & CB_KBD_INT)
        irq12 = self.obf and self.obf_aux and bool(cb & CB_AUX_INT)
        if irq1 != self._irq1:
            self._irq1 = irq1
            self.bus.irq(IRQ_KBD, irq1)
        if irq12 != self._irq12:
            self._irq12 = irq12
            self.bus.irq(IRQ_AUX, irq12)

    # --- the host's side ------------------------------------------------------------
    def key_down(self, name):
        self.keyboard.key(key_name(name), True)
        self._fill()

    def key_up(self, name):
        self.keyboard.key(key_name(name), False)
        self._fill()

    def type_text(self, text):
        """Type ``text`` on a US keyboard: press and release each key, with
        Shift around upper case and shifted symbols.  Raises ValueError (and
        types nothing) when a character has no key."""
        strokes = []
        for ch in text:
            if ch in _CONTROL_CHARS:
                strokes.append((_CONTROL_CHARS[ch], False))
            elif ch in _SHIFTED:
                strokes.append((_SHIFTED[ch], True))
            elif "A" <= ch <= "Z":
                strokes.append((ch.lower(), True))
            elif ch in KEYS and len(ch) == 1:
                strokes.append((ch, False))
            else:
                raise ValueError("cannot type %r on a US keyboard" % ch)
        kbd = self.keyboard
        for key, shift in strokes:
            if shift:
                kbd.key("lshift", True)
            kbd.key(key, True)
            kbd.key(key, False)
            if shift:
                kbd.key("lshift", False)
        self._fill()

    def mouse_move(self, dx, dy, buttons=0):
        """Move the mouse (dy > 0 is up, as PS/2 counts) with buttons
        (bit 0 left, 1 right, 2 middle) held."""
        self.mouse.move(dx, dy, buttons)
        self._fill()
