"""DMA: the only way a device touches guest memory (HY-DV4, HY-DV5).

Each device gets a window table, IOMMU-style: the guest-physical ranges it
may read and write (default: guest RAM only, never ROM, MMIO or anything
outside).  Every request is range-checked as a whole before a byte moves; a
request that leaves the windows, wraps at 4 GiB, or is longer than the
device's limit is refused (``DMAError``, which the device turns into its own
error status, e.g. a PCI master abort), counted, and never partially done.
Writes go through ``PhysMem.write_bytes``, so code caches and write-tracked
page tables see them.
"""


class DMAError(Exception):
    """A refused DMA request (the device reports it in its own status)."""


class DMA:
    def __init__(self, phys, max_request=1 << 24):
        self.phys = phys
        self.max_request = max_request
        self.windows = {}                 # device name -> [(base, end)]
        self.counters = {}                # device name -> {"reads", "writes", "refused"}

    def _ram_windows(self):
        """Plain-RAM ranges of the physical map (ROM/MMIO holes excluded)."""
        phys = self.phys
        out = []
        start = None
        for ppn in range(phys.ram_pages):
            ok = phys.writable_ram_page(ppn)
            if ok and start is None:
                start = ppn
            elif not ok and start is not None:
                out.append((start << 12, ppn << 12))
                start = None
        if start is not None:
            out.append((start << 12, phys.ram_pages << 12))
        return out

    def attach(self, device, windows=None):
        """Give ``device`` (a name) its window table; default all plain RAM."""
        self.windows[device] = list(windows) if windows is not None else self._ram_windows()
        self.counters[device] = {"reads": 0, "writes": 0, "refused": 0, "bytes": 0}

    def _check(self, device, addr, n):
        c = self.counters.get(device)
        if c is None:
            raise DMAError("%s: no DMA window table" % device)
        if n < 0 or n > self.max_request or addr < 0 or addr + n > 1 << 32:
            c["refused"] += 1
            raise DMAError("%s: DMA of %d bytes at %#x refused (length or 4 GiB wrap)"
                           % (device, n, addr))
        for base, end in self.windows[device]:
            if base <= addr and addr + n <= end:
                return c
        c["refused"] += 1
        raise DMAError("%s: DMA of %d bytes at %#x is outside its windows" % (device, n, addr))

    def read(self, device, addr, n):
        c = self._check(device, addr, n)
        c["reads"] += 1
        c["bytes"] += n
        return bytes(self.phys.read_bytes(addr, n))

    def write(self, device, addr, data):
        data = bytes(data)
        c = self._check(device, addr, len(data))
        c["writes"] += 1
        c["bytes"] += len(data)
        self.phys.write_bytes(addr, data)
