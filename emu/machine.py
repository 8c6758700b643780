"""One PC: the CPU, the physical memory map, the port bus, the devices and the clock.

Memory map (guest-physical):

    0x00000000-0x0009FFFF  low RAM (640 KiB)
    0x000A0000-0x000BFFFF  VGA window (MMIO, devices/vga.py)
    0x000C0000-0x000EFFFF  option-ROM space (empty ROM: reads 0)
    0x000F0000-0x000FFFFF  the BIOS (ROM; our BIOS is 64 KiB; SeaBIOS's last
                           128 KiB reach down to 0xE0000); the whole image is
                           also at the top of the 4 GiB space (reset vector)
    0x00100000-RAM end     extended RAM (default 128 MiB in all, up to 3 GiB)

Devices (one module each in emu/devices/): two 8259A PICs, the 8254 PIT with
port 61h, the MC146818 RTC/CMOS, a 16550A UART on COM1, the i8042 keyboard
controller, port 92h/80h/E9h/CF9h (sysctrl.py), VGA text mode, PCI
configuration mechanism #1 (i440FX + PIIX3), and the firmware interface the
BIOS uses for disks and boot information (fwcfg.py).

``Machine.run()`` interleaves the CPU with the virtual clock: the CPU runs up
to the next timer deadline, due timers fire, and HLT with interrupts enabled
jumps the clock to the next deadline (an idle guest costs no host CPU).
"""
import gc
import os
import time

from .cpu.cpu import CPU
from .cpu.flags import IF
from .cpu.faults import VMStop
from .cpu import state as S
from .mmu.physmem import PhysMem
from .devices.portbus import PortBus
from .devices.clock import VirtualClock
from .devices.dma import DMA
from .devices.base import DeviceBus

MIB = 1 << 20
BIOS_MAX = 256 << 10       # SeaBIOS's bios-256k.bin is the largest we take
BIOS_LOW_MAX = 128 << 10   # how much of it is visible below 1 MiB
VGA_BASE, VGA_SIZE = 0xA0000, 0x20000
OPTROM_BASE, OPTROM_SIZE = 0xC0000, 0x30000
MAX_RAM = 3 << 30
QUANTUM = 200_000          # instructions between looks at the host (timeouts, pacing)
RUN_GC_THRESHOLDS = (100_000, 50, 100)   # see Machine.run

# Exit codes of `emu run`, documented in its --help.
EXIT_OK, EXIT_USAGE, EXIT_TRIPLE, EXIT_TIMEOUT, EXIT_ERROR = 0, 2, 3, 4, 5
EXIT_PANIC = 6             # the guest's serial output said "Kernel panic - not syncing"


class MachineConfig:
    """Everything a machine is built from (validated by the CLI / config loader)."""

    def __init__(self, memory_mb=128, bios="builtin", disks=(), floppy=None,
                 disk_writable=False, kernel=None, initrd=None, append="",
                 serial="none", display="none", realtime=False, ns_per_insn=10,
                 trace=None, rtc_start=None, panic_watch=True,
                 jit=True, jit_threshold=None, jit_cache=True, jit_cache_dir=None,
                 jit_background=True):
        if not 2 <= memory_mb <= MAX_RAM // MIB:
            raise ValueError("memory must be between 2 and %d MiB, not %d" % (MAX_RAM // MIB,
                                                                             memory_mb))
        self.memory_mb = memory_mb
        self.bios = bios
        self.disks = list(disks)
        self.floppy = floppy
        self.disk_writable = disk_writable
        self.kernel = kernel
        self.initrd = initrd
        self.append = append
        self.serial = serial
        self.display = display
        self.realtime = realtime
        self.ns_per_insn = ns_per_insn
        self.trace = trace
        # RTC time at power-on: None = the host's clock now (what `date` in a guest
        # should show); a fixed value (epoch seconds) makes runs reproducible.
        self.rtc_start = rtc_start
        # Stop with EXIT_PANIC when COM1 shows a Linux kernel panic
        # (emu/frontend/panic_watch.py).
        self.panic_watch = panic_watch
        # tier 1 (emu/translate): on by default; the threshold is how many
        # times a block runs interpreted before it is compiled; the code cache
        # keeps compiled blocks on disk between runs
        self.jit = jit
        self.jit_threshold = jit_threshold
        self.jit_cache = jit_cache
        self.jit_cache_dir = jit_cache_dir
        # compile in a second process while the guest runs (same results; the
        # library API and the tests compile in-process, deterministically)
        self.jit_background = jit_background


class RunResult:
    def __init__(self, code, reason, instructions, seconds):
        self.code = code            # exit code (EXIT_*)
        self.reason = reason        # one line
        self.instructions = instructions
        self.seconds = seconds


class Machine:
    def __init__(self, config, serial_backend=None):
        self.config = cfg = config
        self.phys = PhysMem(cfg.memory_mb * MIB)
        self.ports = PortBus()
        self.cpu = CPU(phys=self.phys, ports=self.ports)
        self.jit = None
        if config.jit and not config.trace:
            from .translate.jit import attach, DEFAULT_THRESHOLD
            th = DEFAULT_THRESHOLD if config.jit_threshold is None else config.jit_threshold
            self.jit = attach(self.cpu, threshold=th, cache_dir=config.jit_cache_dir,
                              use_cache=config.jit_cache, background=config.jit_background)
        self.clock = VirtualClock(self.cpu.clock, cfg.ns_per_insn)
        self.clock.on_earlier = self.cpu.request_stop
        self.clock.on_idle = self._tsc_counts_idle_time
        self.dma = DMA(self.phys)
        self._stop_request = None
        # A20 inputs at power-on: the i8042's output port has A20 set (as QEMU
        # and most PCs start), port 92h bit 1 is clear.
        self._a20_inputs = {"i8042": True, "port92": False}
        self.bus = DeviceBus(self.ports, self.phys, self.dma, self.clock,
                             irq=self._irq, stop=self._request_stop,
                             reset_cpu=self._reset_request)
        self.devices = {}
        self.panic_watch = None
        if serial_backend is not None and cfg.panic_watch:
            from .frontend.panic_watch import PanicWatch
            serial_backend = PanicWatch.wrap(serial_backend, self._kernel_panic)
            self.panic_watch = serial_backend.watch
        self._build_devices(serial_backend)
        self._load_firmware()
        self.dma_windows()
        self.cpu.on_triple_fault = self._triple_fault
        self.triple_faults = 0
        self.boot_plan = None
        if cfg.kernel:
            from . import boot
            self.boot_plan = boot.prepare(self)   # images in RAM; fwcfg says "kernel boot"

    def boot_kernel(self):
        """The BIOS finished POST and asks to enter the loaded kernel (port 0x518)."""
        if self.boot_plan is None:
            raise VMStop("the BIOS asked to boot a kernel, but none was given (--kernel)")
        # fwcfg calls this from a clock timer, i.e. between instructions (never
        # from inside the BIOS's OUT), so the loader may set CS:EIP here.
        from . import boot
        boot.handoff(self, self.boot_plan)

    # --- construction -----------------------------------------------------------
    def _build_devices(self, serial_backend):
        from .devices.pic import PICPair
        from .devices.pit import PIT
        from .devices.rtc import RTC
        from .devices.uart import UART16550
        from .devices.i8042 import I8042
        from .devices.sysctrl import SystemControl
        from .devices.vga import VGA
        from .devices.pci import PCIBus
        from .devices.fwcfg import FirmwareInterface
        bus = self.bus
        d = self.devices
        d["pic"] = pic = PICPair(bus)
        pic.on_intr = self._intr_changed
        self.cpu.irq = pic
        d["pit"] = PIT(bus)
        d["rtc"] = RTC(bus, ram_size=self.config.memory_mb * MIB,
                             start_time=self.config.rtc_start)
        d["uart"] = uart = UART16550(bus, base=0x3F8, irq=4, backend=serial_backend)
        # Exact line timing would make a guest polling THRE at 9600 baud (Linux's
        # console default) spend ~100k instructions per character; like QEMU we
        # transmit fast: a character takes at most 1 us of virtual time.
        uart.max_char_ns = 1000
        d["i8042"] = I8042(bus.with_a20(lambda on: self._a20("i8042", on)))
        d["sysctrl"] = SystemControl(bus.with_a20(lambda on: self._a20("port92", on)))
        d["vga"] = VGA(bus)
        d["pci"] = PCIBus(bus)
        d["fwcfg"] = FirmwareInterface(bus, self)

    def _load_firmware(self):
        """The BIOS image sits at the top of the 4 GiB space; its last 128 KiB
        (or all of it, if smaller) also appear just below 1 MiB, as on a PC."""
        from .firmware import bios_image
        image = bios_image(self.config.bios)
        if not image or len(image) > BIOS_MAX or len(image) % 0x1000:
            raise VMStop("BIOS image must be a non-empty multiple of 4 KiB, at most %d KiB "
                         "(%d bytes)" % (BIOS_MAX >> 10, len(image)))
        low = image[-BIOS_LOW_MAX:]
        low_base = 0x100000 - len(low)
        if self.config.bios in (None, "builtin", "emu"):
            if low_base > OPTROM_BASE:
                self.phys.add_rom(OPTROM_BASE, bytes(low_base - OPTROM_BASE), name="option-roms")
            self.phys.add_rom(low_base, low, name="bios")
        else:
            # A foreign BIOS (SeaBIOS) shadows itself: it opens the i440FX PAM
            # registers and writes into 0xC0000-0xFFFFF.  We keep that range as
            # RAM holding the image (the PAM read-only setting is not enforced).
            self.phys.write_bytes(low_base, low)
        self.phys.add_rom(0x100000000 - len(image), image, name="bios-high")

    def dma_windows(self):
        for name in self.devices:
            self.dma.attach(name)

    # --- device callbacks --------------------------------------------------------------
    def _irq(self, line, level):
        self.devices["pic"].set_irq(line, level)

    def _a20(self, source, enabled):
        """A20 is the OR of its inputs (the i8042's output port, port 92h)."""
        self._a20_inputs[source] = bool(enabled)
        self.cpu.set_a20(any(self._a20_inputs.values()))

    def _intr_changed(self):
        self.cpu.event = True

    def _request_stop(self, reason, kind):
        self._stop_request = (reason, kind)
        self.cpu.request_stop()

    def _tsc_counts_idle_time(self, n):
        """The clock jumped n instructions' worth of time over a HLT: the TSC
        (instructions retired + the offset in TSC_HI:TSC_LO, emu/cpu/msr.py)
        must jump too, or a guest timing itself with the TSC (Linux's
        clocksource) sees no time pass while halted and every timer it arms
        on the PIT fire early (an interrupt storm with time crawling)."""
        R = self.cpu.R
        off = ((R[S.TSC_HI] << 32 | R[S.TSC_LO]) + n) & 0xFFFFFFFFFFFFFFFF
        R[S.TSC_LO] = off & 0xFFFFFFFF
        R[S.TSC_HI] = off >> 32

    def _kernel_panic(self, reason):
        from .frontend.panic_watch import panic_reason_line
        self._request_stop(panic_reason_line(reason), "panic")

    def _reset_request(self):
        self._stop_request = ("reset", "reset")
        self.cpu.request_stop()

    def flush_output(self):
        """Hand buffered guest output (the UART's FIFO) to its backend."""
        for dev in self.devices.values():
            f = getattr(dev, "flush", None)
            if f is not None:
                f()

    def _triple_fault(self, why):
        # A PC resets on a triple fault (shutdown cycle -> chipset reset); emu
        # stops instead, which is what a test or a user wants to know about.
        raise VMStop("triple fault: " + why, kind="triple-fault")

    def reset(self):
        """Power-on reset of the CPU and every device."""
        self._a20_inputs = {"i8042": True, "port92": False}
        self.cpu.reset()
        for dev in self.devices.values():
            r = getattr(dev, "reset", None)
            if r is not None:
                r()

    # --- running -------------------------------------------------------------------
    def run(self, timeout=None, max_instructions=None):
        """Run until the guest powers off, halts for good, faults beyond repair,
        or a limit is hit.  Returns a RunResult (never raises for guest causes).

        While it runs, Python's cyclic garbage collector is made to run less
        often (the thresholds are put back afterwards).  The interpreter
        allocates a closure per decoded instruction and keeps millions of
        them alive.  At the default thresholds, collections that rescan them
        took 5.3 s of a 21 s warm Linux boot; at these, 0.8 s.  Little of
        what the emulator allocates is cyclic garbage, so memory hardly grows."""
        old = gc.get_threshold()
        gc.set_threshold(*RUN_GC_THRESHOLDS)
        try:
            return self._run(timeout, max_instructions)
        finally:
            gc.set_threshold(*old)

    def _run(self, timeout, max_instructions):
        cpu = self.cpu
        clock = self.clock
        R = cpu.R
        t0 = time.monotonic()
        start = cpu.icount
        realtime = self.config.realtime
        v0 = clock.now()

        def result(code, reason):
            self.flush_output()
            if self.jit is not None:
                self.jit.settle()        # what is being compiled reaches the code cache
            watch = self.panic_watch
            if watch is not None and code in (EXIT_OK, EXIT_TIMEOUT) and watch.panicked:
                # the panic's last lines never came: the run still ended in a panic
                from .frontend.panic_watch import panic_reason_line
                code, reason = EXIT_PANIC, "%s (%s)" % (panic_reason_line(watch.reason), reason)
            return RunResult(code, reason, cpu.icount - start, time.monotonic() - t0)

        try:
            while True:
                if self._stop_request is not None:
                    reason, kind = self._stop_request
                    self._stop_request = None
                    if kind == "reset":
                        self.reset()
                        continue
                    if kind == "panic":
                        return result(EXIT_PANIC, reason)
                    return result(EXIT_OK if kind in ("poweroff", "shutdown") else EXIT_ERROR,
                                  reason)
                if timeout is not None and time.monotonic() - t0 > timeout:
                    return result(EXIT_TIMEOUT, "timeout after %.1f s" % timeout)
                budget = QUANTUM
                if max_instructions is not None:
                    left = max_instructions - (cpu.icount - start)
                    if left <= 0:
                        return result(EXIT_TIMEOUT, "instruction limit (%d) reached"
                                      % max_instructions)
                    budget = min(budget, left)
                deadline = clock.next_deadline()
                if deadline is not None:
                    budget = max(1, min(budget, clock.insns_until(deadline)))
                clock.slice_end = clock.now() + budget * clock.ns_per_insn
                try:
                    why = cpu.run(budget)
                finally:
                    clock.slice_end = None
                clock.fire_due()
                if why == "hlt":
                    if not (R[S.EFLAGS] & IF) and not cpu.nmi_pending:
                        return result(EXIT_OK, "guest halted with interrupts disabled")
                    if cpu.irq_pending() or cpu.nmi_pending:
                        continue
                    deadline = clock.next_deadline()
                    if deadline is None:
                        return result(EXIT_OK, "guest halted with no timer armed")
                    clock.advance_idle_to(deadline)
                    clock.fire_due()
                if realtime:
                    ahead = (clock.now() - v0) / 1e9 - (time.monotonic() - t0)
                    if ahead > 0.002:
                        time.sleep(min(ahead, 0.05))
        except VMStop as e:
            code = EXIT_TRIPLE if e.kind == "triple-fault" else EXIT_ERROR
            if e.kind in ("poweroff", "shutdown"):
                code = EXIT_OK
            return result(code, e.reason)


def cache_dir():
    """The user's cache directory for emu (images, firmware builds, code cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "emu")
