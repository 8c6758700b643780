"""`emu run`: boot a PC, the way one would with qemu-system-i386.

``add_parser(subparsers)`` adds the subcommand to the `emu` command line and
``cmd_run(args)`` runs it, returning the exit code.  Every failure is one
line on stderr (``emu: ...``) and an exit code from EXIT_CODES; no
traceback reaches the user.  The machine is built from the options
(emu.machine.MachineConfig), its COM1 is connected to the --serial backend,
and ``Machine.run`` runs it until the guest stops or a limit is hit.
"""
import argparse
import os
import sys
import time

from .machine import EXIT_OK, EXIT_USAGE, EXIT_ERROR, MAX_RAM, MIB

EXIT_CODES = """\
exit codes:
  0  the guest powered off, or executed HLT with interrupts disabled (and no
     NMI pending): the normal end of a test guest
  2  bad usage: an unknown or invalid option, a missing, unreadable or
     malformed image (kernel, initrd, disk, floppy, BIOS)
  3  triple fault: the guest's CPU shut down (a real PC would reset)
  4  --timeout or --max-instructions was reached
  5  emulator error: something emu does not support or could not do
     (an unimplemented instruction, a device or firmware failure, NASM or
     SeaBIOS missing, interrupted)
  6  kernel panic: the guest's serial output showed Linux's "Kernel panic -
     not syncing" (emu/frontend/panic_watch.py); the run ends at the
     panic's "---[ end Kernel panic" line
At exit a one-line reason is printed on stderr; after a non-zero exit also
the last lines the guest wrote to its serial port."""

DESCRIPTION = """\
Boot an emulated IA-32 PC: our BIOS (or SeaBIOS) runs POST, then boots the
first bootable disk or floppy, or, with --kernel, a Linux bzImage, a Linux
vmlinux or a Multiboot kernel directly."""

EXAMPLES = """\
examples:
  emu run --disk disk.img --serial stdio
  emu run --floppy boot.img --display window
  emu run --kernel bzImage --initrd initrd.gz --append "console=ttyS0" --serial stdio
  emu run --kernel kernel.elf --serial out.txt --timeout 10"""

SERIAL_TAIL_LINES = 8
SERIAL_TAIL_BYTES = 4096


def one_line_errors(parser):
    """Make ``parser`` report usage errors in one line, exit code 2 (argparse
    prints the whole usage first; the usage is one --help away)."""
    parser.error = lambda message: parser.exit(
        EXIT_USAGE, "%s: error: %s (see %s --help)\n" % (parser.prog, message, parser.prog))
    return parser


def _memory(text):
    try:
        mb = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number of MiB: %r" % text) from None
    if not 2 <= mb <= MAX_RAM // MIB:
        raise argparse.ArgumentTypeError("must be between 2 and %d MiB, not %d"
                                         % (MAX_RAM // MIB, mb))
    return mb


def _seconds(text):
    try:
        s = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number of seconds: %r" % text) from None
    if not s > 0 or s != s or s == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return s


def _count(text):
    try:
        n = int(text.replace("_", ""), 0)
    except ValueError:
        raise argparse.ArgumentTypeError("not a whole number: %r" % text) from None
    if n <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return n


def _threshold(text):
    try:
        n = int(text.replace("_", ""), 0)
    except ValueError:
        raise argparse.ArgumentTypeError("not a whole number: %r" % text) from None
    if n < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return n


def add_parser(subparsers):
    p = subparsers.add_parser(
        "run", help="boot a PC from a disk, a floppy or a kernel",
        description=DESCRIPTION, epilog=EXAMPLES + "\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    one_line_errors(p)
    g = p.add_argument_group("machine")
    g.add_argument("--memory", "-m", type=_memory, default=128, metavar="MB",
                   help="guest RAM in MiB (default 128, at most %d)" % (MAX_RAM // MIB))
    g.add_argument("--bios", default="builtin", metavar="builtin|seabios|PATH",
                   help="firmware: emu's own BIOS (default, built from firmware/ with NASM), "
                        "SeaBIOS from Debian's seabios package, or an image file")
    g.add_argument("--realtime", action="store_true",
                   help="pace the guest's timers to the wall clock (default: virtual time "
                        "driven by instructions, deterministic)")
    g = p.add_argument_group("boot media")
    g.add_argument("--disk", action="append", default=[], metavar="PATH",
                   help="raw hard disk image (repeatable: 0x80, 0x81, ...); never modified: "
                        "writes go to a copy-on-write overlay in memory")
    g.add_argument("--disk-writable", action="store_true",
                   help="let the guest write to the --disk/--floppy image files themselves")
    g.add_argument("--floppy", metavar="PATH", help="raw floppy image (drive A:)")
    g.add_argument("--kernel", metavar="FILE",
                   help="boot this kernel directly: a Linux bzImage, an i386 vmlinux (ELF) or "
                        "a Multiboot v1 kernel")
    g.add_argument("--initrd", metavar="FILE",
                   help="initial ramdisk for --kernel (a Multiboot module for Multiboot kernels)")
    g.add_argument("--append", default="", metavar="CMDLINE",
                   help="kernel command line for --kernel")
    g = p.add_argument_group("input and output")
    g.add_argument("--serial", default="stdio", metavar="stdio|FILE|none",
                   help="where COM1 goes: this terminal, both ways (default; C-a x quits), "
                        "a file, or nowhere")
    g.add_argument("--display", default="none", choices=("none", "window"),
                   help="none (default), or a window showing the VGA screen (needs pygame)")
    g = p.add_argument_group("binary translation (tier 1, emu/translate)")
    g.add_argument("--jit", default="on", choices=("on", "off"),
                   help="compile hot guest blocks to native code with llvmlite (default on)")
    g.add_argument("--jit-threshold", type=_threshold, default=None, metavar="N",
                   help="interpreted runs of a block before it is compiled (default %d; "
                        "0 compiles every block on first use)" % _default_threshold())
    g.add_argument("--jit-cache", default="on", choices=("on", "off"),
                   help="keep compiled blocks on disk between runs (default on; directory "
                        "$EMU_JIT_CACHE_DIR or ~/.cache/emu/jit)")
    g = p.add_argument_group("limits and diagnostics")
    g.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                   help="stop after this much wall-clock time (exit code 4)")
    g.add_argument("--max-instructions", type=_count, metavar="N",
                   help="stop after N guest instructions (exit code 4)")
    g.add_argument("--trace", metavar="FILE",
                   help="write an instruction trace (capstone disassembly) to FILE; slow")
    g.add_argument("--trace-regs", action="store_true",
                   help="with --trace: add the general registers and EFLAGS to each line")
    g.add_argument("--trace-max-mb", type=_count, default=None, metavar="MB",
                   help="with --trace: stop tracing when the file reaches this size "
                        "(default 64)")
    g.add_argument("--screenshot", metavar="PNG",
                   help="when the run ends, save the VGA screen as a PNG image")
    g.add_argument("--screen-text", metavar="FILE",
                   help="when the run ends, write the VGA text screen to FILE ('-': stderr)")
    g.add_argument("--stats", action="store_true",
                   help="print counters at exit: instructions, MIPS, MMU, exceptions, "
                        "interrupts, unhandled ports")
    p.set_defaults(fn=cmd_run)
    return p


def _default_threshold():
    from .translate.jit import DEFAULT_THRESHOLD
    return DEFAULT_THRESHOLD


# --- helpers ----------------------------------------------------------------------------------
def _say(text):
    print("emu: %s" % text, file=sys.stderr)
    sys.stderr.flush()


def _fail(text, code):
    _say(text.replace("\n", " "))
    return code


def _check_file(path, what):
    """One-line problem with an input file, or None."""
    if not path:
        return "%s: empty file name" % what
    if not os.path.exists(path):
        return "%s %s does not exist" % (what, path)
    if os.path.isdir(path):
        return "%s %s is a directory, not an image file" % (what, path)
    if not os.access(path, os.R_OK):
        return "%s %s is not readable" % (what, path)
    return None


def _validate(args):
    """The first usage problem the options have, or None."""
    if (args.initrd or args.append) and not args.kernel:
        return "--initrd and --append need --kernel"
    for path in args.disk:
        problem = _check_file(path, "disk image")
        if problem:
            return problem
    for path, what in ((args.floppy, "floppy image"), (args.kernel, "kernel"),
                       (args.initrd, "initrd")):
        if path is not None:
            problem = _check_file(path, what)
            if problem:
                return problem
    if args.bios not in ("builtin", "emu", "seabios"):
        problem = _check_file(args.bios, "BIOS image")
        if problem:
            return problem
    if args.kernel and args.bios == "seabios":
        return "--kernel needs emu's own BIOS (it hands over to the kernel); drop --bios seabios"
    if (args.trace_regs or args.trace_max_mb is not None) and not args.trace:
        return "--trace-regs and --trace-max-mb need --trace"
    if not (args.disk or args.floppy or args.kernel):
        return "nothing to boot: give --disk, --floppy or --kernel"
    return None


class _SerialTail:
    """Passes the guest's serial output on to the real backend and keeps its
    last few KiB, to show after a failed run."""

    def __init__(self, backend):
        self._backend = backend
        self.tail = bytearray()

    def write(self, data):
        self.tail += data
        if len(self.tail) > 2 * SERIAL_TAIL_BYTES:
            del self.tail[:-SERIAL_TAIL_BYTES]
        self._backend.write(data)

    def __getattr__(self, name):            # read_available, readable, quit_requested, ...
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

    def last_lines(self, n=SERIAL_TAIL_LINES):
        text = bytes(self.tail[-SERIAL_TAIL_BYTES:]).decode("utf-8", "replace")
        text = "".join(c if c.isprintable() or c == "\n" else " " for c in text.replace("\r", ""))
        lines = [ln.rstrip() for ln in text.split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        return lines[-n:]


def _run(machine, args):
    """Machine.run, or the same inside a window (--display window)."""
    if args.display != "window":
        return machine.run(timeout=args.timeout, max_instructions=args.max_instructions)
    from .frontend import window
    try:
        return window.run_window(machine, timeout=args.timeout,
                                 max_instructions=args.max_instructions)
    except window.DisplayError as e:
        raise _SetupError(str(e), EXIT_ERROR) from None


class _SetupError(Exception):
    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def _build_machine(args, backend):
    from .boot.loader import BootImageError
    from .errors import VMStop
    from .firmware import FirmwareError
    from .machine import Machine, MachineConfig
    try:
        cfg = MachineConfig(memory_mb=args.memory, bios=args.bios, disks=args.disk,
                            floppy=args.floppy, disk_writable=args.disk_writable,
                            kernel=args.kernel, initrd=args.initrd, append=args.append,
                            serial=args.serial, display=args.display, realtime=args.realtime,
                            trace=args.trace, jit=args.jit == "on",
                            jit_threshold=args.jit_threshold, jit_cache=args.jit_cache == "on")
        return Machine(cfg, serial_backend=backend)
    except BootImageError as e:
        raise _SetupError(str(e), EXIT_USAGE) from None
    except FirmwareError as e:
        # a --bios file we cannot use is a usage error; NASM or SeaBIOS missing is ours
        code = EXIT_USAGE if args.bios not in ("builtin", "emu", "seabios") else EXIT_ERROR
        raise _SetupError(str(e), code) from None
    except VMStop as e:
        raise _SetupError(e.reason, EXIT_USAGE) from None
    except (ValueError, OSError) as e:
        raise _SetupError(str(e), EXIT_USAGE) from None


def _stats(machine, result):
    cpu = machine.cpu
    secs = max(result.seconds, 1e-9)
    mmu = getattr(cpu.mmu, "counters", {}) or {}
    ports = getattr(machine.ports, "counters", {}) or {}
    phys = getattr(machine.phys, "counters", {}) or {}
    exc = cpu.counters.get("exceptions", {}) or {}
    unimpl = cpu.counters.get("unimplemented", {}) or {}
    out = ["instructions %d in %.2f s (%.2f MIPS); virtual time %.3f s"
           % (result.instructions, result.seconds, result.instructions / secs / 1e6,
              machine.clock.now() / 1e9),
           "mmu: " + (", ".join("%s %d" % (k, v) for k, v in sorted(mmu.items())
                                if isinstance(v, int)) or "none"),
           "exceptions: " + (", ".join("#%d x%d" % (v, n) for v, n in sorted(exc.items()))
                             or "none"),
           "interrupts: %d" % cpu.counters.get("interrupts", 0),
           "ports: unhandled reads %d, unhandled writes %d, handler errors %d"
           % (ports.get("unhandled_reads", 0), ports.get("unhandled_writes", 0),
              ports.get("handler_errors", 0)),
           "memory: unmapped reads %d, unmapped writes %d, ROM writes %d"
           % (phys.get("unmapped_reads", 0), phys.get("unmapped_writes", 0),
              phys.get("rom_writes", 0))]
    if unimpl:
        out.append("unimplemented instructions: " + ", ".join(
            "%s x%d" % (k, v) for k, v in sorted(unimpl.items())))
    if machine.boot_plan is not None:
        out.append("kernel: " + machine.boot_plan.description)
    jit = getattr(machine, "jit", None)
    if jit is not None:
        j = jit.stats()
        med = j["compile_ms_median"]
        out.append("jit: %d blocks compiled (%.0f ms, median %s ms/block), %d from the code cache "
                   "(%d object files; %d lookups missed), %d rejected, %d invalidated"
                   % (j["blocks_compiled"], j["compile_ms_total"],
                      "-" if med is None else "%.2f" % med, j["blocks_from_cache"],
                      j["cache_hits"], j["cache_misses"], j["blocks_rejected"], j["invalidated"]))
        native = j["native_instructions"]
        out.append("jit: %d native instructions (%.1f%% of all), %d entries from Python, "
                   "%d chain hits, %d slots patched"
                   % (native, 100.0 * native / max(1, result.instructions), j["native_entries"],
                      j["chain_hits"], j["chains_patched"]))
        out.append("jit: %d instructions run through the interpreter's code (emu_op); "
                   "%d native TLB misses walked in native code; %d reads and %d writes "
                   "went to Python (fault, MMIO, watched page, first walk)"
                   % (j["helper_ops"], j["native_walks"], j["slow_reads"], j["slow_writes"]))
        out.append("jit: exits to Python by reason: " + ", ".join(
            "%s %d" % (k, v) for k, v in j["exits"].items()))
    for line in out:
        print("[emu] " + line, file=sys.stderr)


# --- the command ----------------------------------------------------------------------------------
def cmd_run(args):
    from .frontend.serial_backends import SerialSpecError, make_backend
    problem = _validate(args)
    if problem:
        return _fail(problem, EXIT_USAGE)
    try:
        backend = _SerialTail(make_backend(args.serial))
    except SerialSpecError as e:
        return _fail(str(e), EXIT_USAGE)
    tracer = None
    try:
        with backend:
            try:
                machine = _build_machine(args, backend)
                if args.trace:
                    from .trace import InstructionTrace
                    try:
                        tracer = InstructionTrace(args.trace, regs=args.trace_regs,
                                                  max_bytes=(args.trace_max_mb or 64) * MIB)
                    except OSError as e:
                        raise _SetupError("--trace %s: %s" % (args.trace, e.strerror or e),
                                          EXIT_USAGE) from None
                    tracer.attach(machine.cpu)
            except _SetupError as e:
                return _fail(str(e), e.code)
            t0 = time.monotonic()
            try:
                result = _run(machine, args)
            except _SetupError as e:
                return _fail(str(e), e.code)
            except KeyboardInterrupt:
                _say("interrupted after %.1f s (exit %d)" % (time.monotonic() - t0, EXIT_ERROR))
                return EXIT_ERROR
            except Exception as e:      # a bug in emu: one line, and what the guest said last
                _say("internal error: %s: %s (exit %d)" % (type(e).__name__, e, EXIT_ERROR))
                _print_tail(backend)
                return EXIT_ERROR
    finally:
        if tracer is not None:
            tracer.close()
    code = result.code
    _say("%s (exit %d, %d instructions in %.2f s)"
         % (result.reason, code, result.instructions, result.seconds))
    if tracer is not None and tracer.truncated:
        _say("the trace in %s was cut at %d MiB" % (args.trace, args.trace_max_mb or 64))
    if args.stats:
        _stats(machine, result)
    _save_screen(machine, args)
    if code != EXIT_OK:
        _print_tail(backend)
    return code


def _save_screen(machine, args):
    """--screenshot / --screen-text: the VGA screen as the run left it."""
    from .frontend.screenshot import save_png
    vga = machine.devices["vga"]
    if args.screenshot:
        try:
            save_png(vga, args.screenshot)
        except OSError as e:
            _say("--screenshot %s: %s" % (args.screenshot, e.strerror or e))
    if args.screen_text:
        text = vga.text()
        if args.screen_text == "-":
            print(text, file=sys.stderr)
        else:
            try:
                with open(args.screen_text, "w") as f:
                    f.write(text + "\n")
            except OSError as e:
                _say("--screen-text %s: %s" % (args.screen_text, e.strerror or e))


def _print_tail(backend):
    lines = backend.last_lines()
    if lines:
        print("emu: last serial output:", file=sys.stderr)
        for ln in lines:
            print("  | " + ln, file=sys.stderr)


def main(argv=None):
    """`python -m emu.run_command ...`: the run subcommand on its own."""
    parser = one_line_errors(argparse.ArgumentParser(prog="emu"))
    sub = parser.add_subparsers(dest="cmd", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except Exception as e:          # the VMM's own failure: one line, never a traceback
        print("emu: internal error: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
