"""Opcode-table coverage of the differential tests.

tests/difftest.py decodes every piece of code it runs in both emu and Unicorn
and records the opcode-table rows it contains; at the end of a test session
tests/conftest.py writes them to ``.opcode-coverage.json``.  ``emu coverage``
prints, per row of emu/cpu/opcodes.py, whether it is implemented and whether
the differential suite exercised it.
"""
import json
import os
import sys

from .cpu.opcodes import ROWS, _resolve


def row_key(row):
    return "%04x/%s" % (row.code, "-" if row.reg is None else row.reg)


def row_name(row):
    code = ("0F %02X" % (row.code & 0xFF)) if row.code > 0xFF else "%02X" % row.code
    if row.reg is not None:
        code += " /%d" % row.reg
    return "%-9s %-10s %s" % (code, row.mnem, ",".join(row.operands))


def summary(exercised):
    """(implemented rows, exercised implemented rows, implemented-but-missed rows)."""
    impl = [r for r in ROWS if _resolve(r.build) is not None]
    hit = [r for r in impl if row_key(r) in exercised]
    missed = [r for r in impl if row_key(r) not in exercised]
    return impl, hit, missed


def report(path, verbose=False):
    if not os.path.exists(path):
        print("emu coverage: %s not found; run the tests first (./emu.sh test)" % path,
              file=sys.stderr)
        return 2
    with open(path) as f:
        exercised = set(json.load(f)["rows"])
    impl, hit, missed = summary(exercised)
    unimpl = [r for r in ROWS if _resolve(r.build) is None]
    for r in ROWS:
        k = row_key(r)
        state = ("exercised" if k in exercised else "NOT EXERCISED") \
            if _resolve(r.build) is not None else "not implemented (#UD)"
        if verbose or state != "exercised":
            print("%-40s %s" % (row_name(r), state))
    print("%d rows in the opcode table; %d implemented; %d of them exercised by the "
          "differential tests; %d not implemented"
          % (len(ROWS), len(impl), len(hit), len(unimpl)))
    return 0 if not missed else 1
