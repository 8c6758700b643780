"""The user's terminal, handed to a guest: raw mode while the guest owns it.

    with RawTerminal(sys.stdin.fileno()):
        ...                      # every key reaches us as one byte, unechoed

A serial console needs the keys as typed: no line editing (ICANON), no
local echo (the guest echoes), CR left as CR (a serial terminal sends CR
for Enter), no XON/XOFF, 8-bit clean.  By default the terminal's own signal
keys are turned off too (ISIG), so Ctrl-C and Ctrl-Z reach the guest, as
with QEMU's ``-nographic``; the way out is then the serial backend's escape
(Ctrl-A x, see serial_backends.StdioBackend).  Output post-processing
(OPOST, so the host terminal still turns a bare LF into CR LF) is kept, as
QEMU does.

The saved settings are put back on ``restore()``, on leaving the ``with``
block whatever the reason (an exception, KeyboardInterrupt, SystemExit),
and at interpreter exit as a last resort.  When the descriptor is not a TTY
(a pipe, a file, /dev/null under a test runner) every operation is a no-op.
"""
import atexit
import os
import termios


class RawTerminal:
    """Context manager: the TTY on ``fd`` in raw mode inside the block."""

    def __init__(self, fd, signals=False):
        self.fd = fd
        self.signals = signals          # keep ISIG: Ctrl-C/Ctrl-Z act on emu itself
        self._saved = None

    @property
    def active(self):
        """True while the terminal is in raw mode because of us."""
        return self._saved is not None

    def enter(self):
        if self._saved is not None:
            return
        try:
            if not os.isatty(self.fd):
                return
            saved = termios.tcgetattr(self.fd)
        except (OSError, termios.error, ValueError):
            return                      # not a terminal after all: nothing to do
        new = [list(a) if isinstance(a, list) else a for a in saved]
        iflag, oflag, cflag, lflag = 0, 1, 2, 3
        new[iflag] &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP
                        | termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON)
        new[oflag] |= termios.OPOST
        new[cflag] = (new[cflag] & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
        new[lflag] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.IEXTEN)
        if not self.signals:
            new[lflag] &= ~termios.ISIG
        cc = new[6]
        cc[termios.VMIN] = 1
        cc[termios.VTIME] = 0
        try:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, new)
        except (OSError, termios.error):
            return
        self._saved = saved
        atexit.register(self.restore)

    def restore(self):
        saved, self._saved = self._saved, None
        if saved is None:
            return
        atexit.unregister(self.restore)
        try:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, saved)
        except (OSError, termios.error):
            pass                        # the terminal went away: nothing left to restore

    def __enter__(self):
        self.enter()
        return self

    def __exit__(self, *exc):
        self.restore()
        return False


def raw_terminal(fd, signals=False):
    """``with raw_terminal(sys.stdin.fileno()):`` - see RawTerminal."""
    return RawTerminal(fd, signals=signals)
