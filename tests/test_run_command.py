"""`emu run` (emu/run_command.py) and the instruction trace (emu/trace.py).

Usage errors are checked in-process through ``run_command.main`` (the same
parser `emu run` uses) and through the real command line; runs that boot
the machine go through ``python -m emu.cli run`` as a user would.  Every
error must be exactly one line on stderr with the documented exit code.
"""
import os
import re
import subprocess
import sys

import pytest

from emu import boot, run_command
from emu.trace import InstructionTrace
from tests.guests import multiboot_hello as mh
from tests.guests.multiboot_build import BareMachine

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACE_LINE = re.compile(r"^\s*\d+  [0-9a-f]{4}:[0-9a-f]{8}  ([0-9a-f]{2}( [0-9a-f]{2})*)\s+\S")


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    d = tmp_path_factory.mktemp("kernels")
    out = {}
    for name, data in (("hello", mh.build_elf()), ("spin", mh.build_elf(spin=True))):
        p = d / (name + ".elf")
        p.write_bytes(data)
        out[name] = str(p)
    return out


def emu_run(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "emu.cli", "run", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def run_main(capsys, argv):
    """run_command.main in-process: (exit code, stdout, stderr)."""
    try:
        code = run_command.main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


# --- help and usage errors ----------------------------------------------------------------------
def test_help_documents_options_and_exit_codes(capsys):
    code, out, err = run_main(capsys, ["run", "--help"])
    assert code == 0
    for opt in ("--memory", "--kernel", "--initrd", "--append", "--disk", "--disk-writable",
                "--floppy", "--serial", "--display", "--timeout", "--max-instructions",
                "--trace", "--bios", "--realtime", "--stats"):
        assert opt in out, opt
    codes = out[out.index("exit codes:"):]
    for n, word in ((0, "HLT with interrupts disabled"), (2, "bad usage"), (3, "triple fault"),
                    (4, "--timeout or --max-instructions"), (5, "emulator error")):
        assert re.search(r"^  %d  " % n, codes, re.M), n
        assert word in codes


def usage_cases(tmp, kernel):
    return {
        "unknown-flag": ["run", "--kernel", kernel, "--bogus"],
        "memory-not-a-number": ["run", "--kernel", kernel, "--memory", "lots"],
        "memory-too-small": ["run", "--kernel", kernel, "--memory", "1"],
        "memory-too-large": ["run", "--kernel", kernel, "--memory", "4096"],
        "nothing-to-boot": ["run"],
        "initrd-without-kernel": ["run", "--disk", kernel, "--initrd", kernel],
        "missing-kernel": ["run", "--kernel", os.path.join(tmp, "nope")],
        "disk-is-a-directory": ["run", "--disk", tmp],
        "missing-floppy": ["run", "--floppy", os.path.join(tmp, "nope.img")],
        "negative-timeout": ["run", "--kernel", kernel, "--timeout", "-1"],
        "zero-instructions": ["run", "--kernel", kernel, "--max-instructions", "0"],
        "bad-display": ["run", "--kernel", kernel, "--display", "tv"],
        "serial-is-a-directory": ["run", "--kernel", kernel, "--serial", tmp],
        "missing-bios-file": ["run", "--kernel", kernel, "--bios", os.path.join(tmp, "b.bin")],
        "kernel-with-seabios": ["run", "--kernel", kernel, "--bios", "seabios"],
        "trace-regs-without-trace": ["run", "--kernel", kernel, "--trace-regs"],
    }


@pytest.mark.parametrize("case", sorted(usage_cases("/t", "/k")))
def test_usage_errors_are_one_line_exit_2(capsys, tmp_path, kernels, case):
    argv = usage_cases(str(tmp_path), kernels["hello"])[case]
    code, out, err = run_main(capsys, argv)
    assert code == 2, (case, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("emu"), (case, err)
    assert "Traceback" not in err


def test_cli_usage_errors_one_line(tmp_path, kernels):
    for argv in (["--kernel", kernels["hello"], "--bogus"],
                 ["--memory", "lots", "--kernel", kernels["hello"]],
                 ["--kernel", str(tmp_path / "missing.elf")]):
        p = emu_run(*argv)
        assert p.returncode == 2, (argv, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, (argv, p.stderr)
        assert "Traceback" not in p.stderr


# --- the trace on the loader bench (no BIOS) -------------------------------------------------------
def test_trace_writes_one_capstone_line_per_instruction(tmp_path, kernels):
    m = BareMachine(memory_mb=8, kernel=kernels["hello"], append="traced")
    plan = boot.prepare(m)
    boot.handoff(m, plan)
    path = tmp_path / "trace.txt"
    with InstructionTrace(str(path), regs=True).attach(m.cpu) as tr:
        assert m.cpu.run(2_000_000) == "hlt"
        n = tr.lines
    assert "MB done" in m.text()                    # the guest ran as it does untraced
    lines = path.read_text().splitlines()
    insns = [ln for ln in lines if not ln.startswith("--")]
    assert len(insns) == n and n > 1000
    assert all(TRACE_LINE.match(ln) for ln in insns), [ln for ln in insns
                                                       if not TRACE_LINE.match(ln)][:3]
    first = insns[0]
    assert "0010:00100040" in first and "mov esp, 0x%x" % (
        mh.LOAD_ADDR + len(mh.assemble()) + mh.BSS_SIZE) in first
    assert "EAX=2badb002" in first and "EFL=" in first
    # counts are consecutive instructions retired; the last one is the HLT
    counts = [int(ln.split()[0]) for ln in insns]
    assert counts == list(range(counts[0], counts[0] + n))
    assert re.search(r"\bhlt\b", insns[-1])
    assert any(" ljmp 0x10:" in ln for ln in insns)          # the far jump of the GDT reload
    assert any(re.search(r"\bout dx, al\b", ln) for ln in insns)


def test_trace_is_bounded_with_a_note(tmp_path, kernels):
    m = BareMachine(memory_mb=8, kernel=kernels["hello"])
    boot.handoff(m, boot.prepare(m))
    path = tmp_path / "trace.txt"
    with InstructionTrace(str(path), max_bytes=20_000).attach(m.cpu) as tr:
        assert m.cpu.run(2_000_000) == "hlt"          # the guest finishes untraced
        assert tr.truncated
    assert "MB done" in m.text()
    text = path.read_text()
    assert len(text) <= 20_000 + 200
    assert text.splitlines()[-1].startswith("-- trace truncated")


def test_trace_reports_exceptions_and_delivers_them(tmp_path):
    """A #UD in real mode: the trace names it, then follows the handler."""
    from emu.cpu import state as S
    m = BareMachine(memory_mb=2)
    cpu = m.cpu
    cpu.reset()
    cpu.set_seg(S.CS, 0, 0, 0xFFFF, 0x9B)
    m.phys.write_bytes(0x7C00, bytes.fromhex("0f0b" "f4"))       # ud2; hlt
    m.phys.write_bytes(0x8000, bytes.fromhex("fa" "f4"))         # handler: cli; hlt
    m.phys.write(6 * 4, 4, 0x00008000)                           # IVT[6] = 0000:8000
    cpu.R[S.EIP] = 0x7C00
    path = tmp_path / "t.txt"
    with InstructionTrace(str(path)).attach(cpu):
        assert cpu.run(100) == "hlt"
    lines = path.read_text().splitlines()
    assert "ud2" in lines[0] and "0000:00007c00" in lines[0]
    assert lines[1] == "-- exception #UD"
    assert "0000:00008000" in lines[2] and "cli" in lines[2]
    assert cpu.R[S.EIP] == 0x8002


# --- whole runs through `emu run` ---------------------------------------------------------------------
def test_run_kernel_stats_and_reason(tmp_path, kernels):
    out = tmp_path / "serial.txt"
    p = emu_run("--kernel", kernels["hello"], "--serial", str(out), "--display", "none",
                "--memory", "16", "--timeout", "60", "--stats")
    assert p.returncode == 0, p.stderr
    assert "MB done" in out.read_text("latin-1")
    err = p.stderr
    assert re.search(r"^emu: .*halted.*\(exit 0, \d+ instructions", err, re.M)
    for word in (r"\[emu\] instructions \d+ in [\d.]+ s \([\d.]+ MIPS\)", r"\[emu\] mmu: ",
                 r"\[emu\] exceptions: ", r"\[emu\] interrupts: \d+",
                 r"\[emu\] ports: unhandled reads \d+, unhandled writes \d+",
                 r"\[emu\] kernel: Multiboot kernel at 0x100000"):
        assert re.search(word, err), word
    assert "Traceback" not in err


def test_timeout_exits_4_and_shows_the_serial_tail(tmp_path, kernels):
    p = emu_run("--kernel", kernels["spin"], "--serial", str(tmp_path / "s.txt"),
                "--memory", "16", "--timeout", "4")
    assert p.returncode == 4, p.stderr
    err = p.stderr.splitlines()
    assert re.match(r"emu: timeout after 4\.0 s \(exit 4", err[0])
    assert "emu: last serial output:" in err
    assert err[-1] == "  | MB done"


def test_max_instructions_exits_4(tmp_path, kernels):
    p = emu_run("--kernel", kernels["spin"], "--serial", "none", "--memory", "16",
                "--max-instructions", "20000", "--timeout", "60")
    assert p.returncode == 4, p.stderr
    assert re.match(r"emu: instruction limit \(20000\) reached \(exit 4, 20000 instructions",
                    p.stderr)


def test_trace_from_the_reset_vector(tmp_path, kernels):
    trace = tmp_path / "trace.txt"
    p = emu_run("--kernel", kernels["hello"], "--serial", "none", "--memory", "16",
                "--max-instructions", "3000", "--trace", str(trace), "--trace-regs")
    assert p.returncode == 4, p.stderr
    lines = [ln for ln in trace.read_text().splitlines() if not ln.startswith("--")]
    assert len(lines) == 3000
    assert all(TRACE_LINE.match(ln) for ln in lines)
    assert re.match(r"\s*0  f000:0000fff0  ", lines[0])          # the reset vector
    assert "EAX=" in lines[0]
