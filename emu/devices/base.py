"""What a device gets from the machine, and what it gives back.

A device is one module in emu/devices/ with one class.  It is built as
``Dev(bus)`` where ``bus`` is the machine's ``DeviceBus`` (below; tests pass
their own), registers its ports with ``bus.ports.register(...)`` and its MMIO
with ``bus.phys.add_mmio(...)`` in ``__init__``, and never imports the CPU.

Guest-facing rules (THREATS.md): any value written to any register leaves the
device in a defined state; nothing a guest does may raise out of a handler
(the port bus contains it, but a device should not rely on that); memory is
touched only through ``bus.dma`` with the device's own name.
"""


class DeviceBus:
    """The machine as devices see it.

    ports   the PortBus (register(base, count, read=, write=, name=, sizes=))
    phys    PhysMem (add_mmio/add_rom; devices never write RAM directly)
    dma     the DMA engine: dma.read(name, addr, n) / dma.write(name, addr, data)
    clock   the VirtualClock: now() ns, schedule(when_ns, cb) -> handle, cancel(h)
    irq(line, level)   drive an ISA IRQ line (0-15) of the PIC pair: level
                       True/False; edge-triggered lines latch on the rising edge
    stop(reason, kind) end the run cleanly (power-off, reset request, ...)
    a20(enabled)       this device's A20 input (i8042 output port, port 92h);
                       the machine ORs the inputs
    reset_cpu()        a CPU reset request (i8042 0xFE, port 92h bit 0, CF9h)
    """

    def __init__(self, ports, phys, dma, clock, irq=None, stop=None, a20=None, reset_cpu=None):
        self.ports = ports
        self.phys = phys
        self.dma = dma
        self.clock = clock
        self._irq = irq
        self._stop = stop
        self._a20 = a20
        self._reset_cpu = reset_cpu

    def irq(self, line, level):
        if self._irq is not None:
            self._irq(line, level)

    def stop(self, reason, kind="shutdown"):
        if self._stop is not None:
            self._stop(reason, kind)

    def a20(self, enabled):
        if self._a20 is not None:
            self._a20(enabled)

    def with_a20(self, a20):
        """The same bus with its own A20 input: the machine gives the i8042 and
        port 92h one each and ORs them, as a PC's chipset does."""
        import copy
        b = copy.copy(self)
        b._a20 = a20
        return b

    def reset_cpu(self):
        if self._reset_cpu is not None:
            self._reset_cpu()
