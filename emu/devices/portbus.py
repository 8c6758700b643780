"""The I/O port bus: 65536 byte-addressed ports, devices claim ranges.

    bus = PortBus()
    bus.register(0x3F8, 8, read=uart.port_read, write=uart.port_write, name="com1")
    cpu = CPU(ports=bus)

A handler is called as ``read(port, size) -> int`` and
``write(port, size, value)`` with ``size`` 1, 2 or 4 and ``value`` already
masked to the size.  An access is passed whole to the handler that owns its
first port when that handler's range holds every byte of it and the handler
accepts that size (``sizes=``, default 1, 2 and 4); otherwise it is split
into two halves (a dword into words, a word into bytes), low port first,
and the halves combined little-endian - so a word access that straddles two
devices, or a dword access to a byte-only device, reaches each port.

The guest drives this bus, so it must never fail on the host side:

* a read of a port nobody claimed returns all ones (0xFF per byte) and a
  write to one is dropped; both are counted (``counters``);
* a handler that raises (any Exception) or returns a non-integer is
  contained: the error is counted and remembered (``last_error``), the
  access is treated as unhandled.  Nothing but ``VMStop`` - the VMM's own,
  deliberate way to end a run (a "debug exit" or power-off port) - leaves
  ``read``/``write``.
* ports are taken modulo 0x10000, values are masked to the access size.
"""
import operator

from ..errors import VMStop

NPORTS = 0x10000
_MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}


class _Range:
    __slots__ = ("base", "end", "read", "write", "name", "sizes")

    def __init__(self, base, count, read, write, name, sizes):
        self.base = base
        self.end = base + count          # one past the last port
        self.read = read
        self.write = write
        self.name = name
        self.sizes = frozenset(sizes)

    def __repr__(self):
        return "<ports 0x%04x-0x%04x %s>" % (self.base, self.end - 1, self.name)


class PortBus:
    def __init__(self):
        self._map = [None] * NPORTS     # port -> _Range
        self.ranges = []
        self.counters = {"reads": 0, "writes": 0, "unhandled_reads": 0,
                         "unhandled_writes": 0, "handler_errors": 0}
        self.last_error = None          # (name, port, size, "Exception text")

    # --- configuration (host side: errors here are programming errors) -------
    def register(self, base, count, read=None, write=None, name="", sizes=(1, 2, 4)):
        """Claim ports base .. base+count-1 for one device."""
        if not (0 <= base < NPORTS) or count < 1 or base + count > NPORTS:
            raise ValueError("port range 0x%x+%d outside 0..0xFFFF" % (base, count))
        if not set(sizes) <= {1, 2, 4} or not sizes:
            raise ValueError("sizes must be a non-empty subset of (1, 2, 4)")
        for p in range(base, base + count):
            if self._map[p] is not None:
                raise ValueError("port 0x%x already claimed by %r" % (p, self._map[p]))
        r = _Range(base, count, read, write, name, sizes)
        for p in range(base, base + count):
            self._map[p] = r
        self.ranges.append(r)
        return r

    def unregister(self, base):
        """Release the range that starts at ``base``."""
        r = self._map[base & 0xFFFF]
        if r is None or r.base != base:
            raise ValueError("no range starts at port 0x%x" % base)
        for p in range(r.base, r.end):
            self._map[p] = None
        self.ranges.remove(r)

    def owner(self, port):
        r = self._map[port & 0xFFFF]
        return None if r is None else r.name

    # --- the guest's side ------------------------------------------------------
    def read(self, port, size):
        """Value of an IN of ``size`` bytes at ``port`` (never raises but VMStop)."""
        self.counters["reads"] += 1
        return self._read(port & 0xFFFF, size)

    def write(self, port, size, value):
        """An OUT of ``size`` bytes (never raises but VMStop)."""
        self.counters["writes"] += 1
        if size not in _MASK:
            self.counters["unhandled_writes"] += 1
            return
        self._write(port & 0xFFFF, size, value & _MASK[size])

    def _claimed(self, port, size, attr):
        """Does any port of the access have a handler of kind ``attr``?"""
        m = self._map
        for i in range(size):
            r = m[(port + i) & 0xFFFF]
            if r is not None and getattr(r, attr) is not None:
                return True
        return False

    def _read(self, port, size):
        mask = _MASK.get(size)
        if mask is None:
            self.counters["unhandled_reads"] += 1
            return 0xFFFFFFFF
        r = self._map[port]
        if r is not None and r.read is not None and port + size <= r.end and size in r.sizes:
            try:
                v = r.read(port, size)
            except VMStop:
                raise
            except Exception as e:
                self._error(r, port, size, e)
            else:
                try:
                    return operator.index(v) & mask
                except Exception:
                    self._error(r, port, size, TypeError("read returned a %s" % type(v).__name__))
        elif size > 1 and self._claimed(port, size, "read"):
            h = size >> 1
            lo = self._read(port, h)
            hi = self._read((port + h) & 0xFFFF, h)
            return lo | (hi << (8 * h))
        self.counters["unhandled_reads"] += 1
        return mask

    def _write(self, port, size, value):
        r = self._map[port]
        if r is not None and r.write is not None and port + size <= r.end and size in r.sizes:
            try:
                r.write(port, size, value)
                return
            except VMStop:
                raise
            except Exception as e:
                self._error(r, port, size, e)
        elif size > 1 and self._claimed(port, size, "write"):
            h = size >> 1
            self._write(port, h, value & _MASK[h])
            self._write((port + h) & 0xFFFF, h, value >> (8 * h))
            return
        self.counters["unhandled_writes"] += 1

    def _error(self, r, port, size, e):
        self.counters["handler_errors"] += 1
        try:
            text = "%s: %s" % (type(e).__name__, e)
        except Exception:
            text = type(e).__name__
        self.last_error = (r.name, port, size, text)
