"""Which opcode-table rows the differential tests exercised.

Every piece of code run through the emulator side of the differential
harness (tests/emu_side.py: compared with Unicorn by tests/difftest.py, or,
where Unicorn is known to be wrong, checked against the SDM's result by the
test itself) is decoded with emu's decoder and its rows are noted here;
tests/conftest.py writes them to .opcode-coverage.json for `emu coverage`.
"""
EXERCISED_ROWS = set()


def record_rows(code, mode):
    """Decode ``code`` with emu's decoder and note the table rows it contains."""
    from emu.cpu.decode import decode
    from emu.coverage import row_key
    code = bytes(code)
    pos = 0
    while pos < len(code):
        try:
            ins = decode(lambda i: code[i] if i < len(code) else 0x90, pos, mode == 32)
        except Exception:
            pos += 1
            continue
        EXERCISED_ROWS.add(row_key(ins.row))
        pos = ins.next_eip
