"""Smoke tests of the benchmarks' --json output (tiny iteration counts, no QEMU).

They check the shape the issues ask for - one JSON object on stdout with the
named figures - not the speeds.  Each benchmark runs as a subprocess, as a
user runs it (and so without the EMU_TEST_JIT wrapping of tests/jit_mode.py).
"""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_json(script, *args, timeout=60):
    env = dict(os.environ)
    env.pop("EMU_TEST_JIT", None)
    p = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", script), "--json"]
                       + list(args), capture_output=True, text=True, timeout=timeout, cwd=REPO,
                       env=env, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stdout[-2000:]          # ONE JSON object, nothing else
    return json.loads(lines[0]), p.stderr


@pytest.fixture(scope="module")
def demo_kernel_builds():
    from emu.guests import demo_kernel
    try:
        demo_kernel.build()
    except demo_kernel.BuildError as e:
        pytest.skip(str(e))


def test_cpu_mips_json_has_the_jit_figures(demo_kernel_builds):
    out, err = _run_json("cpu_mips.py", "--iters", "3000", "--interp-iters", "200",
                         "--repeat", "1")
    for key in ("unicorn_mips_reg", "unicorn_mips_mem", "interp_mips_reg", "interp_mips_mem",
                "ratio_reg", "ratio_mem", "jit_mips_reg", "jit_mips_mem", "jit_ratio_reg",
                "jit_ratio_mem", "compile_ms_per_block_median", "compile_blocks"):
        assert key in out, key
    assert [n for n in out["notes"] if "warm run compiled" not in n] == [], out["notes"]
    for key in ("unicorn_mips_reg", "interp_mips_reg", "jit_mips_reg", "jit_mips_mem",
                "jit_ratio_reg", "jit_ratio_mem", "compile_ms_per_block_median"):
        assert isinstance(out[key], (int, float)) and out[key] > 0, (key, out[key])
    assert out["jit_iterations"] == 3000
    # the median is over the demonstration kernel's blocks plus the two loop blocks
    assert out["compile_blocks"] == out["compile_blocks_demo_kernel"] + out["compile_blocks_loops"]
    assert out["compile_blocks_demo_kernel"] >= 10 and out["compile_blocks_loops"] >= 2
    assert 0.9 < out["jit_native_fraction_reg"] <= 1.0


def test_jit_boot_json_shape(demo_kernel_builds):
    out, err = _run_json("jit_boot.py", "--repeat", "1", "--no-qemu", timeout=120)
    for key in ("emu_cold_s", "emu_warm_s", "emu_interp_s", "qemu_s", "ratio_cold",
                "ratio_warm", "blocks_compiled_cold", "cache_hits_warm"):
        assert key in out, key
    for key in ("emu_cold_s", "emu_warm_s", "emu_interp_s"):
        assert isinstance(out[key], float) and out[key] > 0, (key, out[key])
    assert out["qemu_s"] is None and out["ratio_cold"] is None      # --no-qemu
    assert out["blocks_compiled_cold"] > 0
    # every block the cold run compiled comes from the code cache in the warm
    # run (which may compile a few more: blocks become native earlier there,
    # so others reach the threshold that did not before)
    assert out["cache_hits_warm"] > 0
    assert out["blocks_from_cache_warm"] >= out["blocks_compiled_cold"]
    assert out["blocks_compiled_warm"] <= out["blocks_compiled_cold"] // 10
    assert [n for n in out["notes"] if "warm run compiled" not in n] == [], out["notes"]
