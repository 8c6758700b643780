"""The `emu` command.

  emu run       a PC: our BIOS, devices, disks, kernels (see `emu run --help`)
  emu boot demo the demonstration kernel (guests/demo_kernel.asm) on that PC
  emu boot linux  Debian's i386 Linux (686 kernel, busybox initramfs) to a shell
                on the serial console; fetched from Debian's archive on first use
  emu images fetch linux|memtest86+
                fetch a guest into the image cache (or check the cached copy)
  emu demo      the bare-CPU demonstration (emu/guests/demo.py): no devices, no
                BIOS; real mode -> protected mode -> paging -> interrupts, its
                debug-port output on stdout, counters on stderr.
  emu coverage  print which opcode-table rows the differential tests exercised.

Exit codes: 0 guest halted normally, 2 bad usage, 3 triple fault,
4 timeout / instruction limit, 5 emulator error, 6 kernel panic (one line
on stderr).
"""
import argparse
import sys
import time

EXIT_OK, EXIT_USAGE, EXIT_TRIPLE, EXIT_TIMEOUT, EXIT_ERROR, EXIT_PANIC = 0, 2, 3, 4, 5, 6


class DebugPorts:
    """Port bus for the bare-CPU demo: port 0xE9 prints, everything else floats."""

    def __init__(self, out):
        self.out = out
        self.unhandled = 0

    def read(self, port, size):
        if port == 0xE9:
            return 0xE9
        self.unhandled += 1
        return (1 << (8 * size)) - 1

    def write(self, port, size, value):
        if port == 0xE9:
            self.out.write(chr(value & 0xFF))
            self.out.flush()
        else:
            self.unhandled += 1


def cmd_demo(args):
    from .api import Emu
    from .guests import demo
    try:
        images = demo.assemble()
    except ImportError:
        print("emu: the demo guest needs keystone-engine (pip install keystone-engine)",
              file=sys.stderr)
        return EXIT_ERROR
    ports = DebugPorts(sys.stdout)
    e = Emu(ram_size=args.memory << 20, ports=ports, stop_on_exception=False)
    for addr, data in images:
        e.mem_write(addr, data)
    e.set_segment("cs", 0)
    e.reg_write("eip", demo.REAL_BASE)
    limit = args.max_instructions
    t0 = time.perf_counter()
    total = 0
    reason = None
    while True:
        chunk = args.tick
        if limit is not None:
            chunk = min(chunk, limit - total)
            if chunk <= 0:
                reason = "limit"
                break
        st = e.run(count=chunk)
        total += st.instructions
        if st.reason == "vmstop":
            dt = time.perf_counter() - t0
            print("emu: %s (after %d instructions)" % (st.message, total), file=sys.stderr)
            return EXIT_TRIPLE if st.message.startswith("triple fault") else EXIT_ERROR
        if st.reason == "hlt":
            if not (e.reg_read("eflags") & 0x200):
                reason = "hlt"
                break
        e.interrupt(0x20)          # the "timer": one tick per chunk
    dt = time.perf_counter() - t0
    if args.stats or True:
        c = e.counters
        mmu = c["mmu"]
        print("\n[emu] %s after %d instructions in %.2f s (%.2f MIPS); shadow fills %d, "
              "write-tracking faults %d, flushes %d, CR3 switches %d, interrupts %d, "
              "exceptions %s"
              % ("guest halted" if reason == "hlt" else "instruction limit reached",
                 total, dt, total / dt / 1e6 if dt else 0.0, mmu.get("fills", 0),
                 mmu.get("write_track_faults", 0), mmu.get("flushes", 0),
                 mmu.get("cr3_switches", 0), c["interrupts"],
                 dict(c["exceptions"]) or "none"), file=sys.stderr)
    return EXIT_OK if reason == "hlt" else EXIT_TIMEOUT


def cmd_boot(args, extra):
    """`emu boot demo|linux [run options]`: build or fetch a guest, then `emu run` it."""
    if args.guest == "linux":
        return cmd_boot_linux(args, extra)
    if args.kernel_format is not None:
        print("emu: --kernel-format is for 'emu boot linux'", file=sys.stderr)
        return EXIT_USAGE
    from .guests import demo_kernel
    if args.append is not None:
        extra = ["--append", args.append] + list(extra)
    try:
        kernel = demo_kernel.build()
    except demo_kernel.BuildError as e:
        print("emu: %s" % e, file=sys.stderr)
        return EXIT_ERROR
    # the demo's tick count is meant to be watched: pace it to the wall clock
    return main(["run", "--kernel", kernel, "--serial", "stdio", "--display", "none",
                 "--realtime"] + list(extra))


def cmd_boot_linux(args, extra):
    """`emu boot linux`: Debian's kernel and our busybox initramfs, COM1 on the terminal."""
    from .guests import linux
    from .images import ImageError
    try:
        im = linux.fetch(log=lambda text: print("emu: %s" % text, file=sys.stderr))
    except ImageError as e:
        print("emu: %s" % e, file=sys.stderr)
        return EXIT_ERROR
    # the user's own options come last, so they win (e.g. --memory, --serial)
    run = linux.run_args(im, args.kernel_format or "vmlinux", args.append or "")
    return main(["run"] + run + ["--serial", "stdio", "--display", "none", "--realtime"]
                + list(extra))


def cmd_images(args):
    """`emu images fetch GUEST`: fetch a guest into the image cache and say where it is."""
    from .images import ImageError, memtest86plus
    try:
        if args.guest == "linux":
            from .guests import linux
            im = linux.fetch(dest_dir=args.dir,
                             log=lambda text: print("emu: %s" % text, file=sys.stderr))
            lines = im.describe()
            fresh = sorted(k for k, v in im.sources.items() if v != "cache")
            lines.append("from     %s" % ("the cache (every SHA-256 checked)" if not fresh else
                                          ", ".join("%s: %s" % (k, im.sources[k])
                                                    for k in sorted(im.sources))))
        else:
            im = memtest86plus(dest_dir=args.dir)
            lines = ["%s %s (%s): %s" % (im.package, im.version, im.source, im.root)]
    except ImageError as e:
        print("emu: %s" % e, file=sys.stderr)
        return EXIT_ERROR
    for line in lines:
        print(line)
    return EXIT_OK


def cmd_coverage(args):
    from .coverage import report
    return report(args.file, verbose=args.verbose)


def main(argv=None):
    from .run_command import add_parser as add_run, one_line_errors
    from .guests.linux import DEFAULT_APPEND as linux_append
    p = argparse.ArgumentParser(prog="emu", description="emu: an IA-32 PC emulator in Python")
    one_line_errors(p)
    sub = p.add_subparsers(dest="cmd", required=True)
    add_run(sub)
    d = sub.add_parser("demo", help="boot the demonstration guest on the bare CPU")
    d.add_argument("--memory", type=int, default=16, help="RAM in MiB (default 16)")
    d.add_argument("--max-instructions", type=int, default=None)
    d.add_argument("--tick", type=int, default=20000,
                   help="instructions between timer interrupts (default 20000)")
    d.add_argument("--stats", action="store_true")
    d.set_defaults(fn=cmd_demo)
    b = sub.add_parser("boot", help="boot a guest that ships with emu: 'demo' (the "
                       "demonstration kernel) or 'linux' (Debian's i386 kernel with a busybox "
                       "shell on COM1); any `emu run` option may follow")
    b.add_argument("guest", choices=("demo", "linux"))
    b.add_argument("--kernel-format", choices=("vmlinux", "bzimage"), default=None,
                   help="linux: boot the vmlinux extracted from the package's bzImage through "
                        "the 32-bit protocol (default: skips the kernel's xz decompressor), or "
                        "the bzImage itself through its real-mode setup code")
    b.add_argument("--append", default=None, metavar="ARGS",
                   help="linux: kernel arguments added to emu's ('%s')" % linux_append)
    b.set_defaults(fn=None)
    i = sub.add_parser("images", help="guest images from Debian's archive, in the user's "
                       "cache directory")
    isub = i.add_subparsers(dest="images_cmd", required=True)
    f = isub.add_parser("fetch", help="fetch a guest (or verify the cached copy): 'linux' "
                        "(686 kernel, busybox-static, the vmlinux and initramfs emu makes) or "
                        "'memtest86+'")
    f.add_argument("guest", choices=("linux", "memtest86+"))
    f.add_argument("--dir", default=None, help="image cache (default: ~/.cache/emu/images)")
    f.set_defaults(fn=cmd_images)
    c = sub.add_parser("coverage", help="opcode rows exercised by the differential tests")
    c.add_argument("--file", default=".opcode-coverage.json")
    c.add_argument("--verbose", "-v", action="store_true")
    c.set_defaults(fn=cmd_coverage)
    args, extra = p.parse_known_args(argv)
    if args.cmd == "boot":
        return cmd_boot(args, extra)
    if extra:
        p.error("unrecognized arguments: %s" % " ".join(extra))
    if args.cmd == "demo" and args.memory <= 0:
        p.error("--memory must be positive")
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print("emu: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:   # the VMM's own failure: one line, no traceback
        print("emu: internal error: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
