"""Session-wide hooks: opcode coverage of the differential tests; EMU_TEST_JIT=1
runs every CPU with tier 1 attached (tests/jit_mode.py)."""
import json

import pytest

from tests import coverage_rows
from tests import jit_mode

jit_mode.install()           # before any test module builds a CPU


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    outcome = yield
    jit_mode.collect(item.nodeid)
    if outcome.excinfo is None:
        errs = jit_mode.audit()
        if errs:
            pytest.fail("native TLB audit: %d violations, e.g. %s" % (len(errs), errs[:3]))


def pytest_sessionfinish(session, exitstatus):
    rows = sorted(coverage_rows.EXERCISED_ROWS)
    if not rows:
        return
    try:
        with open(session.config.rootpath / ".opcode-coverage.json", "w") as f:
            json.dump({"rows": rows}, f)
    except OSError:
        pass


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if jit_mode.enabled():
        terminalreporter.write_line(jit_mode.summary_line())
    if not coverage_rows.EXERCISED_ROWS:
        return
    from emu.coverage import summary
    impl, hit, missed = summary(coverage_rows.EXERCISED_ROWS)
    terminalreporter.write_line(
        "opcode coverage: %d of %d implemented rows exercised by the differential tests"
        " (./emu.sh coverage lists them)" % (len(hit), len(impl)))


# CI explores the same hypothesis examples on every run (a landing never depends
# on luck); local runs keep exploring new ones.
import os as _os
from hypothesis import settings as _settings

_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if _os.environ.get("CI"):
    _settings.load_profile("ci")
