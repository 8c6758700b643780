"""Notice a Linux kernel panic in the guest's serial output.

Linux's panic() prints

    Kernel panic - not syncing: <reason>
    ... (CPU, registers, call trace) ...
    ---[ end Kernel panic - not syncing: <reason> ]---

and then spins forever (panic_timeout=0) with interrupts on: without help,
emu would run until --timeout.  ``PanicWatch`` reads the bytes the guest
sends to its serial port and calls ``on_panic(reason)`` once, when the
closing "---[ end Kernel panic" line arrives, or, should that never come
(a panic inside the console code), ``grace_bytes`` of further output after
the first line (also at ``flush``).  The machine turns that into exit code
EXIT_PANIC (6) with the reason "kernel panic: <reason>".

Use it as a wrapper around a serial backend (``PanicWatch.wrap``): it
passes every call through, so the UART does not notice, or feed it bytes
yourself with ``feed(data)``.
"""
import re

PANIC_RE = re.compile(rb"Kernel panic - not syncing: ?([^\r\n]*)")
END_RE = re.compile(rb"---\[ end Kernel panic - not syncing")
GRACE_BYTES = 16384           # the stack trace that follows is a few KiB
MAX_LINE = 4096               # a line longer than this is not looked into further


class PanicWatch:
    def __init__(self, on_panic=None, grace_bytes=GRACE_BYTES):
        self.on_panic = on_panic
        self.grace_bytes = grace_bytes
        self.reason = None            # the first panic's reason (str), once seen
        self.reported = False
        self._line = bytearray()
        self._since = 0               # bytes seen after the panic line

    @property
    def panicked(self):
        return self.reason is not None

    def feed(self, data):
        """Look at more guest output."""
        if self.reported:
            return
        data = bytes(data)
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                self._line += data[start:]
                if len(self._line) > MAX_LINE:
                    del self._line[:-MAX_LINE]
                break
            self._line += data[start:nl]
            self._end_of_line(bytes(self._line))
            self._line.clear()
            start = nl + 1
            if self.reported:
                return
        if self.reason is not None:
            self._since += len(data)
            if self._since >= self.grace_bytes:
                self._report()

    def _end_of_line(self, line):
        if self.reason is None:
            m = PANIC_RE.search(line)
            if m:
                self.reason = m.group(1).decode("utf-8", "replace").strip() or "(no reason)"
                self._since = 0
        elif END_RE.search(line):
            self._report()

    def flush(self):
        """The run is ending: report a panic whose end line never came."""
        if self._line:
            self._end_of_line(bytes(self._line))
            self._line.clear()
        if self.reason is not None:
            self._report()

    def _report(self):
        if self.reported:
            return
        self.reported = True
        if self.on_panic is not None:
            self.on_panic(self.reason)

    @classmethod
    def wrap(cls, backend, on_panic, **kw):
        """A serial backend that is ``backend`` with a PanicWatch listening in."""
        return _Tap(backend, cls(on_panic, **kw))


class _Tap:
    """Passes everything to the backend; ``write`` also goes to the watch."""

    def __init__(self, backend, watch):
        self._backend = backend
        self.watch = watch

    def write(self, data):
        self._backend.write(data)
        self.watch.feed(data)

    def __getattr__(self, name):       # read_available, readable, quit_requested, ...
        return getattr(self._backend, name)

    def open(self):
        self._backend.open()
        return self

    def close(self):
        self._backend.close()

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()


def panic_reason_line(reason):
    """The one-line reason for the run's end."""
    return "kernel panic: %s" % reason
