"""Session-wide hooks: opcode coverage of the differential tests."""
import json

from tests import coverage_rows


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
