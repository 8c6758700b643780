"""``--display window``: the VGA screen in a pygame window, the host keyboard
into the guest's i8042.

    from emu.frontend.window import run_window
    result = run_window(machine, timeout=None, max_instructions=None)

The machine runs in a worker thread; the window (pygame wants the main
thread) shows ``vga.render()`` about 30 times a second of wall time, with
the cursor and blinking characters paced by the wall clock.  Nothing of
pygame touches the machine: key events and the close request go through a
thread-safe queue that a timer on the machine's virtual clock drains every
``POLL_NS`` of virtual time, in the machine's own thread, so devices are
only ever called from that thread.  (That timer also means a guest halted
with interrupts enabled waits for a key instead of ending the run.)  The
window reads the VGA's memory and registers from its own thread without a
lock: a frame may show a screen half-way through an update, nothing worse.

Closing the window stops the machine cleanly (``bus.stop("display window
closed", "poweroff")``: exit code 0); when the machine stops on its own, the
window closes.  Either way ``run_window`` returns the machine's RunResult.

Keys
----
The i8042 gets ``key_down(name)`` / ``key_up(name)``, where ``name`` names a
physical key of a PC keyboard by its US-layout legend, lower case, spelled
as pygame names it (``pygame.key.name``; its SDL-2 spelling "keypad 1",
"keypad enter", "pause" where the pygame-1 one is ambiguous: "enter" would
be the keypad's and "[1]" is not self-explaining), plus "102nd" for the ISO
key right of left shift, which has no layout-free name.  Keys are identified
by position (the SDL scancode, a USB HID usage), not by the host's layout,
so the guest's own keyboard layout applies, as on a real PC; the ISO key
left of return sends "\\" (the PC gives it the backslash scan code).
Holding a key repeats ``key_down`` (the host's typematic, ``KEY_REPEAT``)
without ``key_up`` in between, as a PS/2 keyboard repeats make codes; the
i8042 adds no repeat of its own.  When the window loses focus or closes,
every held key is released.  ``KEY_NAMES`` lists every name sent:

    a .. z, 0 .. 9, f1 .. f12
    escape  backspace  tab  return  space  caps lock
    -  =  [  ]  \\  ;  '  `  ,  .  /  102nd
    left shift  right shift  left ctrl  right ctrl  left alt  right alt
    left meta  right meta  menu
    print screen  scroll lock  pause
    insert  delete  home  end  page up  page down  up  down  left  right
    numlock  keypad /  keypad *  keypad -  keypad +  keypad enter
    keypad 0 .. keypad 9  keypad .

A name the keyboard does not take (ValueError) is dropped and counted.

pygame is an optional dependency (the ``display`` extra); without it
``run_window`` raises ``DisplayError`` with a one-line message.
"""
import os
import queue
import threading
import time

FPS = 30
POLL_NS = 2_000_000            # virtual time between looks at the key queue
KEY_REPEAT = (500, 33)         # ms before a held key repeats, ms between repeats
CURSOR_BLINK_S = 16 / 70       # the VGA blinks the cursor every 16 frames at 70 Hz
CHAR_BLINK_S = 32 / 70         # and blinking characters every 32
STOP_GRACE_S = 5.0             # how long a closed window waits for the machine


class DisplayError(Exception):
    """The window cannot be shown (pygame missing, no display), or the
    machine did not stop when it was closed.  The message is one line."""


def _scancode_names():
    """USB HID usage (= SDL scancode) -> key name."""
    names = {4 + i: c for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")}
    names.update({30 + i: c for i, c in enumerate("1234567890")})
    names.update({58 + i: "f%d" % (i + 1) for i in range(12)})
    names.update({89 + i: "keypad %d" % (i + 1) for i in range(9)})
    names.update({
        40: "return", 41: "escape", 42: "backspace", 43: "tab", 44: "space",
        45: "-", 46: "=", 47: "[", 48: "]", 49: "\\", 50: "\\", 51: ";", 52: "'",
        53: "`", 54: ",", 55: ".", 56: "/", 57: "caps lock",
        70: "print screen", 71: "scroll lock", 72: "pause", 73: "insert", 74: "home",
        75: "page up", 76: "delete", 77: "end", 78: "page down",
        79: "right", 80: "left", 81: "down", 82: "up",
        83: "numlock", 84: "keypad /", 85: "keypad *", 86: "keypad -", 87: "keypad +",
        88: "keypad enter", 98: "keypad 0", 99: "keypad .", 100: "102nd", 101: "menu",
        224: "left ctrl", 225: "left shift", 226: "left alt", 227: "left meta",
        228: "right ctrl", 229: "right shift", 230: "right alt", 231: "right meta",
    })
    return names


SCANCODE_NAMES = _scancode_names()
KEY_NAMES = frozenset(SCANCODE_NAMES.values())

# pygame's (pygame-1 compatible) keycode names that differ from ours, for
# events without a scancode.
_KEYCODE_RENAMES = {"enter": "keypad enter", "break": "pause", "[/]": "keypad /",
                    "[*]": "keypad *", "[-]": "keypad -", "[+]": "keypad +",
                    "[.]": "keypad .", "<": "102nd"}
_KEYCODE_RENAMES.update({"[%d]" % i: "keypad %d" % i for i in range(10)})


def import_pygame():
    """pygame, or DisplayError with a one-line reason."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame
    except ImportError:
        raise DisplayError("--display window needs pygame: pip install pygame "
                           "(or install emu with the 'display' extra)") from None
    return pygame


def key_name(pygame, event):
    """The key name of a KEYDOWN/KEYUP event, or None for keys a PC lacks."""
    name = SCANCODE_NAMES.get(getattr(event, "scancode", None))
    if name is None:
        # Synthetic events and odd drivers carry no scancode: use the keycode.
        name = pygame.key.name(getattr(event, "key", 0)).lower()
        name = _KEYCODE_RENAMES.get(name, name)
    return name if name in KEY_NAMES else None


class Window:
    """The pygame side: a window showing ``vga`` and key events out to
    ``on_key(name, down)``.  Call ``pump()`` then ``draw()`` each frame."""

    def __init__(self, vga, on_key, title="emu", key_repeat=KEY_REPEAT):
        self.pygame = pg = import_pygame()
        self.vga = vga
        self.on_key = on_key
        self.held = set()
        self.closed = False
        try:
            pg.display.init()
            pg.display.set_caption(title)
            self.size = None
            self.surface = None
            self._resize(vga.render(cursor=False).shape)
        except pg.error as e:
            raise DisplayError("cannot open a window: %s" % e) from None
        if key_repeat:
            pg.key.set_repeat(*key_repeat)
        self.t0 = time.monotonic()
        self.frames = 0
        self.last_image = None
        self._last_key = None

    def _resize(self, shape):
        size = (shape[1], shape[0])
        if size != self.size:
            self.size = size
            self.surface = self.pygame.display.set_mode(size)

    def pump(self):
        """Handle pending window events; False once the window was closed."""
        pg = self.pygame
        for event in pg.event.get():
            if event.type == pg.QUIT:
                self.closed = True
            elif event.type in (pg.KEYDOWN, pg.KEYUP):
                name = key_name(pg, event)
                if name is None:
                    continue
                down = event.type == pg.KEYDOWN
                if down:
                    self.held.add(name)
                elif name in self.held:
                    self.held.discard(name)
                else:
                    continue            # a release whose press went elsewhere
                self.on_key(name, down)
            elif event.type == getattr(pg, "WINDOWFOCUSLOST", None):
                self.release_all()
        return not self.closed

    def release_all(self):
        for name in sorted(self.held):
            self.on_key(name, False)
        self.held.clear()

    def draw(self):
        """Render the screen and show it (unless nothing changed since the
        last frame: rendering costs milliseconds the guest could use)."""
        pg = self.pygame
        t = time.monotonic() - self.t0
        cursor_on = int(t / CURSOR_BLINK_S) % 2 == 0
        blink_on = int(t / CHAR_BLINK_S) % 2 == 0
        key = (cursor_on, blink_on, self.vga.frame_key())
        self.frames += 1
        if key == self._last_key:
            return self.last_image
        self._last_key = key
        img = self.vga.render(cursor=cursor_on, blink_on=blink_on)
        self.last_image = img
        self._resize(img.shape)
        frame = pg.image.frombuffer(img.tobytes(), self.size, "RGB")
        self.surface.blit(frame, (0, 0))
        pg.display.flip()
        return img

    def close(self):
        self.release_all()
        self.pygame.display.quit()


class _Inbox:
    """Key events and the close request, from the window to the machine thread."""

    def __init__(self, machine, poll_ns=POLL_NS):
        self.machine = machine
        self.poll_ns = poll_ns
        self.queue = queue.SimpleQueue()
        self.keyboard = machine.devices.get("i8042")
        self.closing = False
        self.dropped_keys = 0
        self.timer = None

    def start(self):
        clock = self.machine.clock
        self.timer = clock.schedule(clock.now() + self.poll_ns, self._poll)

    def stop(self):
        """Drop the poll timer (only once the machine thread has ended)."""
        if self.timer is not None:
            self.machine.clock.cancel(self.timer)
            self.timer = None

    def _poll(self):
        """Runs in the machine's thread, from the clock's fire_due()."""
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self.closing = True
            elif self.keyboard is not None:
                name, down = item
                try:
                    (self.keyboard.key_down if down else self.keyboard.key_up)(name)
                except ValueError:
                    self.dropped_keys += 1
        if self.closing:
            self.machine.bus.stop("display window closed", "poweroff")
        clock = self.machine.clock
        self.timer = clock.schedule(clock.now() + self.poll_ns, self._poll)


def run_window(machine, timeout=None, max_instructions=None, fps=FPS, title="emu",
               on_frame=None):
    """Run ``machine`` with its VGA in a window until either ends; returns
    the machine's RunResult.  ``on_frame(window)`` is called after each frame
    (tests use it to post events)."""
    inbox = _Inbox(machine)
    window = Window(machine.devices["vga"], lambda name, down: inbox.queue.put((name, down)),
                    title=title)
    outcome = {}

    def worker():
        try:
            outcome["result"] = machine.run(timeout=timeout, max_instructions=max_instructions)
        except BaseException as e:          # handed to the caller's thread below
            outcome["error"] = e

    inbox.start()
    thread = threading.Thread(target=worker, name="emu-machine", daemon=True)
    thread.start()
    ticker = window.pygame.time.Clock()
    try:
        while thread.is_alive():
            open_ = window.pump()
            window.draw()
            if on_frame is not None:
                on_frame(window)
            if not open_:
                break
            ticker.tick(fps)
    except KeyboardInterrupt:
        pass                            # Ctrl-C in the terminal: close, like the window
    finally:
        # Whatever ended the loop, the machine stops before we return.
        window.release_all()            # the guest sees held keys come up
        inbox.queue.put(None)
        thread.join(STOP_GRACE_S)
        if thread.is_alive():
            # The machine thread is not reaching its clock (a very long
            # instruction run): ask the run loop directly.
            machine.bus.stop("display window closed", "poweroff")
            thread.join(STOP_GRACE_S)
        window.close()
    if not thread.is_alive():
        inbox.stop()
    if "error" in outcome:
        raise outcome["error"]
    if "result" not in outcome:
        raise DisplayError("the machine did not stop after the window closed")
    return outcome["result"]
