"""What sits at the other end of the guest's serial cable (COM1).

The UART (emu/devices/uart.py) talks to one backend object through this
interface, and knows nothing else about the host:

    backend.write(data: bytes)          the guest transmitted these bytes
    backend.read_available() -> bytes   bytes the host has for the guest, now;
                                        never blocks, b"" when there are none
    backend.readable                    False when it never has input: the
                                        UART then does not poll it at all
    backend.quit_requested              True once the user asked to end the
                                        run (StdioBackend's Ctrl-A x); the
                                        UART turns that into a clean stop
    backend.open() / backend.close()    take / give back host resources (the
                                        terminal's mode, a file); also usable
                                        as ``with backend:``

The UART polls ``read_available`` from a virtual-clock timer (every 1 ms of
virtual time) and takes bytes into its receiver at the programmed baud
rate; it stops polling while it already holds enough unreceived input, so a
backend never has to buffer without bound.

Backends:

    NullBackend      nothing attached: output dropped, no input (``none``)
    FileBackend      output appended to a file, no input (``FILE``)
    BufferBackend    in memory, for tests: ``output`` collects what the
                     guest sent, ``inject(data)`` queues input
    StdioBackend     the user's terminal, both ways (``stdio``)

``make_backend(spec)`` builds one from the ``--serial stdio|FILE|none``
option and raises ``SerialSpecError`` (one line, for the CLI) when it cannot.

The stdio escape, as in QEMU's character multiplexer: Ctrl-A then

    x        quit emu (the run ends with exit code 0 and the reason
             "quit from the terminal (Ctrl-A x)")
    Ctrl-A   send one Ctrl-A to the guest
    h or ?   print this list (to the terminal, not to the guest)

Any other key after Ctrl-A is dropped.  Ctrl-C goes to the guest.
"""
import os
import select

from .terminal import RawTerminal

ESCAPE = 0x01                    # Ctrl-A
READ_CHUNK = 4096                # at most this much per read_available()

ESCAPE_HELP = (b"\r\nC-a x    quit emu\r\n"
               b"C-a C-a  send C-a to the guest\r\n"
               b"C-a h    this help\r\n")


class SerialSpecError(ValueError):
    """A --serial value emu cannot use; str() is one line for the user."""


class SerialBackend:
    """The interface, with the defaults of a backend that does nothing."""

    readable = False
    quit_requested = False

    def write(self, data):
        pass

    def read_available(self):
        return b""

    def open(self):
        return self

    def close(self):
        pass

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()
        return False


class NullBackend(SerialBackend):
    """No cable: what the guest sends is counted and dropped."""

    def __init__(self):
        self.bytes_dropped = 0

    def write(self, data):
        self.bytes_dropped += len(data)


class FileBackend(SerialBackend):
    """The guest's output goes to a file (created or truncated); no input.

    Opened at construction, so a bad path is reported before the guest
    starts.  Output is flushed at each newline and on close, so the file can
    be followed with ``tail -f`` while the guest runs."""

    def __init__(self, path):
        self.path = path
        self._f = open(path, "wb")

    def write(self, data):
        f = self._f
        if f is None:
            return
        f.write(data)
        if b"\n" in data:
            f.flush()

    def close(self):
        f, self._f = self._f, None
        if f is not None:
            f.close()


class BufferBackend(SerialBackend):
    """In memory, both ways (tests, scripting)."""

    readable = True

    def __init__(self, input=b""):
        self.output = bytearray()
        self._input = bytearray(input)

    def inject(self, data):
        """Queue bytes for the guest to receive."""
        if isinstance(data, str):
            data = data.encode("latin-1")
        self._input += data

    @property
    def pending_input(self):
        """Injected bytes the UART has not taken yet."""
        return len(self._input)

    def write(self, data):
        self.output += data

    def read_available(self):
        data = bytes(self._input[:READ_CHUNK])
        del self._input[:READ_CHUNK]
        return data

    def text(self):
        """The output so far as text (latin-1: every byte is a character)."""
        return self.output.decode("latin-1")


class StdioBackend(SerialBackend):
    """The user's terminal: guest output to stdout, keys from stdin.

    ``open()`` (or ``with``) puts stdin in raw mode when it is a TTY
    (emu/frontend/terminal.py); ``close()`` restores it, and so does the
    interpreter's exit.  Input is read without blocking (select with a zero
    timeout); end of input (a pipe that closed) just stops input.  The
    Ctrl-A escape is described in the module docstring; ``escape=None``
    turns it off."""

    readable = True

    def __init__(self, infd=None, outfd=None, escape=ESCAPE, signals=False):
        # The process's descriptors 0 and 1, not sys.stdin/sys.stdout, which
        # a test runner or an embedding program may have replaced.
        self.infd = 0 if infd is None else infd
        self.outfd = 1 if outfd is None else outfd
        self.escape = escape
        self.quit_requested = False
        self._terminal = RawTerminal(self.infd, signals=signals)
        self._in_escape = False
        self._eof = False
        self.write_errors = 0

    @property
    def raw(self):
        """True while the terminal is in raw mode because of this backend."""
        return self._terminal.active

    def open(self):
        self._terminal.enter()
        return self

    def close(self):
        self._terminal.restore()

    def write(self, data):
        self._write_all(data)

    def _write_all(self, data):
        view = memoryview(bytes(data))
        while view:
            try:
                n = os.write(self.outfd, view)
            except InterruptedError:
                continue
            except BlockingIOError:
                select.select([], [self.outfd], [], 1.0)
                continue
            except OSError:
                # The terminal or pipe is gone (EIO, EPIPE): nobody can see
                # the output any more; count it rather than fail the guest.
                self.write_errors += 1
                return
            view = view[n:]

    def read_available(self):
        if self._eof or self.quit_requested:
            return b""
        try:
            ready, _, _ = select.select([self.infd], [], [], 0)
            if not ready:
                return b""
            data = os.read(self.infd, READ_CHUNK)
        except InterruptedError:
            return b""
        except (OSError, ValueError):
            self._eof = True            # stdin closed or unusable: no more input
            return b""
        if not data:
            self._eof = True
            return b""
        if self.escape is None:
            return data
        return self._unescape(data)

    def _unescape(self, data):
        out = bytearray()
        esc = self.escape
        for b in data:
            if self._in_escape:
                self._in_escape = False
                if b == esc:
                    out.append(esc)
                elif b in (0x78, 0x58):               # x, X
                    self.quit_requested = True
                    break
                elif b in (0x68, 0x48, 0x3F):         # h, H, ?
                    self._write_all(ESCAPE_HELP)
                # anything else after the escape is dropped, as in QEMU
            elif b == esc:
                self._in_escape = True
            else:
                out.append(b)
        return bytes(out)


def make_backend(spec):
    """The backend for ``--serial SPEC``: ``stdio``, ``none`` or a file path
    (``file:PATH`` also works, for a file literally named "stdio" or "none")."""
    if spec is None:
        return NullBackend()
    if not isinstance(spec, str):
        raise SerialSpecError("--serial: expected stdio, none or a file path, not %r" % (spec,))
    s = spec.strip()
    if s in ("none", "null"):
        return NullBackend()
    if s == "stdio":
        return StdioBackend()
    path = s[5:] if s.startswith("file:") else s
    if not path:
        raise SerialSpecError("--serial: expected stdio, none or a file path, got %r" % spec)
    if os.path.isdir(path):
        raise SerialSpecError("--serial %s: is a directory" % path)
    try:
        return FileBackend(path)
    except OSError as e:
        raise SerialSpecError("--serial %s: cannot write: %s" % (path, e.strerror or e)) from None
