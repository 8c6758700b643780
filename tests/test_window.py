"""--display window: a pygame window on SDL's dummy video driver.

pygame is the optional 'display' dependency; the test of the message shown
without it runs always, the window tests need pygame installed.
"""
import os
import sys
import threading
import time

import numpy as np
import pytest

from emu.devices.base import DeviceBus
from emu.devices.clock import VirtualClock
from emu.devices.dma import DMA
from emu.devices.portbus import PortBus
from emu.devices.vga import VGA
from emu.frontend import window as W
from emu.mmu.physmem import PhysMem


def test_missing_pygame_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "pygame", None)      # import pygame -> ImportError
    with pytest.raises(W.DisplayError) as e:
        W.import_pygame()
    msg = str(e.value)
    assert "\n" not in msg and "pip install pygame" in msg


def test_key_names_cover_a_pc_keyboard():
    names = W.KEY_NAMES
    for n in ["a", "z", "0", "9", "f1", "f12", "return", "escape", "backspace", "tab",
              "space", "left shift", "right shift", "left ctrl", "right ctrl", "left alt",
              "right alt", "caps lock", "up", "down", "left", "right", "insert", "delete",
              "home", "end", "page up", "page down", "numlock", "keypad 0", "keypad 9",
              "keypad .", "keypad enter", "-", "=", "[", "]", "\\", ";", "'", "`", ",",
              ".", "/", "102nd", "pause", "print screen", "left meta", "menu"]:
        assert n in names, n
    # one name per key, except the ISO '#' key, which a PC scans as backslash
    assert len(names) == len(W.SCANCODE_NAMES) - 1


def test_every_key_name_is_one_the_i8042_takes():
    from emu.devices.i8042 import key_name
    canonical = {}
    for n in W.KEY_NAMES:
        canonical[n] = key_name(n)                           # ValueError if unknown
    assert len(set(canonical.values())) == len(canonical)    # and no two collide
    assert canonical["return"] != canonical["keypad enter"]


os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
try:
    import pygame as pg
except ImportError:
    pg = None
needs_pygame = pytest.mark.skipif(pg is None,
                                  reason="pygame (the 'display' extra) is not installed")


@pytest.fixture
def dummy_video(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    yield
    pg.display.quit()


class Recorder:
    """Stands in for the i8042's host API."""

    def __init__(self):
        self.events = []
        self.threads = set()

    def key_down(self, name):
        self.events.append(("down", name))
        self.threads.add(threading.current_thread().name)

    def key_up(self, name):
        self.events.append(("up", name))
        self.threads.add(threading.current_thread().name)


class StubMachine:
    """What run_window uses of emu.machine.Machine: devices, clock, bus.stop, run()."""

    def __init__(self, stop_after=None, fail=False):
        self.insns = 0
        self.clock = VirtualClock(lambda: self.insns, 10)
        self.ports = ports = PortBus()
        phys = PhysMem(1 << 20)
        self.stop_request = None
        self.bus = DeviceBus(ports, phys, DMA(phys), self.clock, stop=self._stop)
        self.devices = {"vga": VGA(self.bus), "i8042": Recorder()}
        self.stop_after = stop_after
        self.fail = fail

    def _stop(self, reason, kind):
        self.stop_request = (reason, kind)

    def run(self, timeout=None, max_instructions=None):
        t0 = time.monotonic()
        loops = 0
        while self.stop_request is None:
            if self.fail:
                raise RuntimeError("emulator bug")
            if time.monotonic() - t0 > (timeout or 20):
                return ("timeout",)
            if self.stop_after is not None and loops >= self.stop_after:
                return ("guest halted",)
            self.insns += 100_000                   # 1 ms of virtual time
            self.clock.fire_due()
            loops += 1
            time.sleep(0.001)
        return ("stopped",) + self.stop_request


def make_vga():
    return StubMachine().devices["vga"]


def key_event(kind, key, scancode):
    return pg.event.Event(kind, key=key, scancode=scancode, mod=0, unicode="")


@needs_pygame
@pytest.mark.usefixtures("dummy_video")
def test_window_opens_and_shows_the_screen():
    vga = make_vga()
    for i, ch in enumerate(b"Hi"):
        vga.mmio_write(0xB8000 + 2 * i, 2, ch | 0x1F << 8)
    win = W.Window(vga, lambda name, down: None)
    try:
        assert pg.display.get_surface().get_size() == (720, 400)
        assert win.pump()
        img = win.draw()
        shown = np.transpose(pg.surfarray.array3d(pg.display.get_surface()), (1, 0, 2))
        assert (shown == img).all()
        assert tuple(shown[2, 0]) == (0xFF, 0xFF, 0xFF)      # 'H', line 2: c6 = ##...##.
        assert tuple(shown[2, 3]) == (0, 0, 0xAA)
        assert tuple(shown[5, 9 + 8]) == (0, 0, 0xAA)        # blue background of 'i'
    finally:
        win.close()


@needs_pygame
@pytest.mark.usefixtures("dummy_video")
def test_window_follows_8_dot_mode():
    vga = make_vga()
    win = W.Window(vga, lambda name, down: None)
    try:
        vga.port_write(0x3C4, 1, 0x01)
        vga.port_write(0x3C5, 1, 0x01)
        win.draw()
        assert pg.display.get_surface().get_size() == (640, 400)
    finally:
        win.close()


@needs_pygame
@pytest.mark.usefixtures("dummy_video")
def test_key_events_map_to_names():
    got = []
    win = W.Window(make_vga(), lambda name, down: got.append((name, down)))
    try:
        pg.event.post(key_event(pg.KEYDOWN, pg.K_a, 4))
        pg.event.post(key_event(pg.KEYDOWN, pg.K_LSHIFT, 225))
        pg.event.post(key_event(pg.KEYDOWN, pg.K_q, 4))      # AZERTY 'q' is the 'a' key
        pg.event.post(key_event(pg.KEYUP, pg.K_a, 4))
        pg.event.post(key_event(pg.KEYDOWN, pg.K_RETURN, 0))  # no scancode: keycode name
        pg.event.post(key_event(pg.KEYDOWN, pg.K_KP_ENTER, 88))
        pg.event.post(key_event(pg.KEYDOWN, pg.K_KP1, 0))
        pg.event.post(key_event(pg.KEYDOWN, pg.K_F13, 104))   # not on a PC keyboard
        pg.event.post(key_event(pg.KEYUP, pg.K_b, 5))         # never pressed here
        assert win.pump()
        assert got == [("a", True), ("left shift", True), ("a", True), ("a", False),
                       ("return", True), ("keypad enter", True), ("keypad 1", True)]
        got.clear()
        win.release_all()                                    # e.g. focus lost
        assert sorted(got) == [("keypad 1", False), ("keypad enter", False),
                               ("left shift", False), ("return", False)]
        pg.event.post(pg.event.Event(pg.QUIT))
        assert not win.pump()
    finally:
        win.close()


@needs_pygame
@pytest.mark.usefixtures("dummy_video")
def test_run_window_keys_reach_the_keyboard_and_close_stops_cleanly():
    machine = StubMachine()
    script = {2: key_event(pg.KEYDOWN, pg.K_a, 4), 3: key_event(pg.KEYUP, pg.K_a, 4),
              4: key_event(pg.KEYDOWN, pg.K_ESCAPE, 41), 6: pg.event.Event(pg.QUIT)}
    frames = []

    def on_frame(win):
        frames.append(win.last_image.shape)
        ev = script.get(win.frames)
        if ev is not None:
            pg.event.post(ev)

    t0 = time.monotonic()
    result = W.run_window(machine, fps=60, on_frame=on_frame)
    assert time.monotonic() - t0 < 10
    assert result == ("stopped", "display window closed", "poweroff")
    kb = machine.devices["i8042"]
    assert kb.events[:3] == [("down", "a"), ("up", "a"), ("down", "escape")]
    assert kb.events[3:] == [("up", "escape")]             # released when the window went
    assert kb.threads == {"emu-machine"}                     # devices see one thread only
    assert len(frames) >= 6 and frames[0] == (400, 720, 3)
    assert machine.clock.next_deadline() is None             # poll timer removed
    assert pg.display.get_surface() is None                  # window closed


@needs_pygame
@pytest.mark.usefixtures("dummy_video")
def test_run_window_drives_the_real_i8042():
    from emu.devices.i8042 import I8042
    machine = StubMachine()
    machine.devices["i8042"] = I8042(machine.bus)
    script = {1: key_event(pg.KEYDOWN, pg.K_a, 4), 2: key_event(pg.KEYUP, pg.K_a, 4),
              3: key_event(pg.KEYDOWN, pg.K_KP_ENTER, 88), 4: pg.event.Event(pg.QUIT)}

    def on_frame(win):
        ev = script.get(win.frames)
        if ev is not None:
            pg.event.post(ev)

    assert W.run_window(machine, fps=60, on_frame=on_frame)[0] == "stopped"
    out = []
    while machine.ports.read(0x64, 1) & 0x01 and len(out) < 16:
        out.append(machine.ports.read(0x60, 1))
    # scan code set 1 (set 2 translated): 'a' make/break, keypad enter E0 1C / E0 9C
    assert out == [0x1E, 0x9E, 0xE0, 0x1C, 0xE0, 0x9C]


@needs_pygame
@pytest.mark.usefixtures("dummy_video")
def test_run_window_drops_names_the_keyboard_refuses():
    machine = StubMachine()

    def refuse(name):
        raise ValueError("unknown key name: %r" % name)
    machine.devices["i8042"].key_down = refuse
    script = {1: key_event(pg.KEYDOWN, pg.K_a, 4), 3: pg.event.Event(pg.QUIT)}

    def on_frame(win):
        ev = script.get(win.frames)
        if ev is not None:
            pg.event.post(ev)

    assert W.run_window(machine, fps=60, on_frame=on_frame) == (
        "stopped", "display window closed", "poweroff")
    assert machine.devices["i8042"].events == [("up", "a")]


@needs_pygame
@pytest.mark.usefixtures("dummy_video")
def test_run_window_closes_when_the_machine_stops():
    machine = StubMachine(stop_after=30)
    result = W.run_window(machine, fps=60)
    assert result == ("guest halted",)
    assert pg.display.get_surface() is None


@needs_pygame
@pytest.mark.usefixtures("dummy_video")
def test_run_window_hands_back_machine_errors():
    machine = StubMachine(fail=True)
    with pytest.raises(RuntimeError, match="emulator bug"):
        W.run_window(machine, fps=60)
    assert pg.display.get_surface() is None


@needs_pygame
@pytest.mark.usefixtures("dummy_video")
def test_no_video_device_is_a_display_error(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "no-such-driver")
    with pytest.raises(W.DisplayError):
        W.Window(make_vga(), lambda name, down: None)
    assert os.environ["SDL_VIDEODRIVER"] == "no-such-driver"


@needs_pygame
@pytest.mark.usefixtures("dummy_video")
def test_a_failing_frame_still_stops_the_machine():
    machine = StubMachine()

    def on_frame(win):
        if win.frames == 3:
            raise RuntimeError("frame trouble")

    with pytest.raises(RuntimeError, match="frame trouble"):
        W.run_window(machine, fps=60, on_frame=on_frame)
    assert machine.stop_request == ("display window closed", "poweroff")
    assert pg.display.get_surface() is None
