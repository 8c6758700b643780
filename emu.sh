#!/usr/bin/env bash
# emu's entry point: sets up its own environment on first use, then runs.
#   ./emu.sh run [args]      boot the default guest (the demonstration kernel; `emu run` options)
#   ./emu.sh test [args]     the test suite (what CI runs)
#   ./emu.sh test-slow       the long tests (marked slow)
#   ./emu.sh coverage        opcode rows exercised by the differential tests
#   ./emu.sh bench           benchmarks/cpu_mips.py
#   ./emu.sh emu ARGS        any `emu` subcommand
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
venv="$here/.venv"
py="$venv/bin/python"

need_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

ensure_system_tools() {
    # NASM builds our BIOS and the demonstration kernel (firmware/, guests/)
    if ! command -v nasm >/dev/null; then
        echo "emu.sh: installing nasm (apt-get)" >&2
        need_root apt-get update -qq && need_root apt-get install -y -qq nasm >/dev/null
    fi
}

ensure_env() {
    ensure_system_tools
    local stamp="$venv/.installed"
    if [ -x "$py" ] && [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
        return
    fi
    if ! command -v python3 >/dev/null; then
        echo "emu.sh: installing python3 (apt-get)" >&2
        need_root apt-get update -qq && need_root apt-get install -y -qq python3 python3-venv >/dev/null
    fi
    if [ ! -x "$py" ]; then
        if ! python3 -m venv "$venv" 2>/dev/null; then
            echo "emu.sh: installing python3-venv (apt-get)" >&2
            rm -rf "$venv"
            need_root apt-get update -qq && need_root apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$venv"
        fi
    fi
    echo "emu.sh: installing emu and its dependencies into .venv (first run)" >&2
    "$py" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    if ! "$py" -m pip install -q -e ".[test,bench,display]" >"$venv/pip.log" 2>&1; then
        cat "$venv/pip.log" >&2
        echo "emu.sh: installing the Python dependencies failed (log above)" >&2
        exit 1
    fi
    touch "$stamp"
}

cmd="${1:-run}"
[ $# -gt 0 ] && shift
# the CPU tests that run a second time under the JIT (./emu.sh test)
JIT_TESTS="tests/test_diff_alu.py tests/test_diff_bcd.py tests/test_diff_bits.py
  tests/test_diff_control.py tests/test_diff_datamov.py tests/test_diff_int.py
  tests/test_diff_muldiv.py tests/test_diff_shift.py tests/test_diff_stack.py
  tests/test_diff_string.py tests/test_fpu_diff.py tests/test_fpu_unit.py
  tests/test_interp_core.py tests/test_system_insns.py tests/test_segments.py tests/test_far.py
  tests/test_protected_interrupts.py tests/test_paging.py tests/test_paging_programs.py
  tests/test_io.py tests/test_hostile_paging.py tests/test_fuzz_robustness.py
  tests/test_shadow.py tests/test_demo_kernel.py tests/test_boot_multiboot.py"

case "$cmd" in
    run)       ensure_env; exec "$py" -m emu.cli boot demo "$@" ;;
    test)      ensure_env
               # every CPU test runs twice: interpreted, then with the JIT
               # compiling every block (tests/jit_mode.py); extra arguments
               # go to the first run only
               "$py" -m pytest -q -p no:cacheprovider "$@" || exit $?
               [ $# -eq 0 ] || exit 0
               echo "--- the CPU tests again, with the JIT compiling every block (EMU_TEST_JIT=1) ---"
               EMU_TEST_JIT=1 exec "$py" -m pytest -q -p no:cacheprovider $JIT_TESTS ;;
    test-slow) ensure_env; exec "$py" -m pytest -q -p no:cacheprovider -m slow "$@" ;;
    coverage)  ensure_env; exec "$py" -m emu.cli coverage "$@" ;;
    bench)     ensure_env; exec "$py" benchmarks/cpu_mips.py "$@" ;;
    emu)       ensure_env; exec "$py" -m emu.cli "$@" ;;
    *) echo "usage: ./emu.sh run|test|test-slow|coverage|bench|emu ..." >&2; exit 2 ;;
esac
