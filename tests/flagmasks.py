"""THE table of EFLAGS bits the Intel SDM calls *undefined*, per instruction.

Differential tests mask flags ONLY through this module:

    from tests.flagmasks import undefined_flags
    check_same(L, "shl eax, cl", regs=..., flags_mask=undefined_flags("shl", count=cl, size=4))

``undefined_flags(mnemonic, **case) -> int`` returns the mask of EFLAGS bits
whose value after the instruction the SDM leaves undefined for that case.
Everything else (defined, "unaffected", set, cleared) must be compared.

Case keywords (only where the SDM distinguishes cases):
  count   the shift/rotate count AS ENCODED (CL or imm8); it is masked to
          5 bits here, as the instruction does.
  size    operand size in bytes (1, 2, 4): SHL/SHR CF beyond the operand
          width; SHLD/SHRD count > operand width.

Mnemonics not in the table: no flag is undefined (mask 0).  That is right
for MOV-like instructions and for everything whose flags the SDM fully
defines (ADD, SUB, CMP, ADC, SBB, INC, DEC, NEG, CMPXCHG, XADD, CMPS, SCAS,
SAHF, POPF ...).  A family that needs a new entry adds it here with the SDM
page it comes from.

References are to the Intel 64 and IA-32 Architectures Software Developer's
Manual, Vol. 2 (instruction set reference), the "Flags Affected" section of
the named instruction page.
"""
CF, PF, AF, ZF, SF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x800
ALL6 = CF | PF | AF | ZF | SF | OF

# Instructions whose undefined set does not depend on the operands.
_FIXED = {
    # AND / OR / XOR / TEST: "The OF and CF flags are cleared; the SF, ZF, and
    # PF flags are set according to the result. The state of the AF flag is
    # undefined."  (Vol. 2A "AND", Vol. 2B "OR", "XOR", "TEST")
    "and": AF, "or": AF, "xor": AF, "test": AF,
    # ADD ADC SUB SBB CMP NEG INC DEC: all affected flags are defined
    # (Vol. 2A "ADD", "ADC", "CMP", "DEC", "INC"; Vol. 2B "NEG", "SBB", "SUB").
    # NOT: "None" (Vol. 2B "NOT").
    "add": 0, "adc": 0, "sub": 0, "sbb": 0, "cmp": 0, "neg": 0, "inc": 0, "dec": 0,
    "not": 0,
    # MUL: "The OF and CF flags are set to 0 if the upper half of the result is
    # 0; otherwise, they are set to 1. The SF, ZF, AF, and PF flags are
    # undefined."  (Vol. 2B "MUL")
    "mul": SF | ZF | AF | PF,
    # IMUL: "For the one operand form ... CF and OF ... The SF, ZF, AF, and PF
    # flags are undefined."  (Vol. 2A "IMUL"; same for the 2- and 3-operand forms)
    "imul": SF | ZF | AF | PF,
    # DIV / IDIV: "The CF, OF, SF, ZF, AF, and PF flags are undefined."
    # (Vol. 2A "DIV", "IDIV")
    "div": ALL6, "idiv": ALL6,
    # BSF / BSR: "The ZF flag is set to 1 if the source operand is 0;
    # otherwise, the ZF flag is cleared. The CF, OF, SF, AF, and PF flags are
    # undefined."  (Vol. 2A "BSF", "BSR")
    "bsf": CF | OF | SF | AF | PF, "bsr": CF | OF | SF | AF | PF,
    # BT / BTS / BTR / BTC: "The CF flag contains the value of the selected
    # bit. The ZF flag is unaffected. The OF, SF, AF, and PF flags are
    # undefined."  (Vol. 2A "BT", "BTC", "BTR", "BTS")
    "bt": OF | SF | AF | PF, "bts": OF | SF | AF | PF,
    "btr": OF | SF | AF | PF, "btc": OF | SF | AF | PF,
    # AAA / AAS: "The AF and CF flags are set to 1 if the adjustment results
    # in a decimal carry [borrow]; otherwise they are set to 0. The OF, SF,
    # ZF, and PF flags are undefined."  (Vol. 2A "AAA", "AAS")
    "aaa": OF | SF | ZF | PF, "aas": OF | SF | ZF | PF,
    # DAA / DAS: "The CF and AF flags are set if the adjustment of the value
    # results in a decimal carry [borrow] in either digit of the result. The
    # SF, ZF, and PF flags are set according to the result. The OF flag is
    # undefined."  (Vol. 2A "DAA", "DAS")
    "daa": OF, "das": OF,
    # AAM / AAD: "The SF, ZF, and PF flags are set according to the resulting
    # binary value in the AL register. The OF, AF, and CF flags are
    # undefined."  (Vol. 2A "AAM", "AAD")
    "aam": OF | AF | CF, "aad": OF | AF | CF,
    # SALC (D6): undocumented in the SDM (listed as reserved/undefined
    # opcode); it sets AL from CF and changes no flag.
    "salc": 0,
}

_SHIFTS = ("shl", "sal", "shr", "sar")
_ROTATES = ("rol", "ror", "rcl", "rcr")


def _shift(mnem, count, size):
    # SAL/SAR/SHL/SHR (Vol. 2B "SAL/SAR/SHL/SHR—Shift"), Flags Affected:
    # "The CF flag contains the value of the last bit shifted out of the
    # destination operand; it is undefined for SHL and SHR instructions where
    # the count is greater than or equal to the size (in bits) of the
    # destination operand. The OF flag is affected only for 1-bit shifts (see
    # "Description" above); otherwise, it is undefined. The SF, ZF, and PF
    # flags are set according to the result. If the count is 0, the flags are
    # not affected. For a non-zero count, the AF flag is undefined."
    c = count & 0x1F
    if c == 0:
        return 0
    m = AF
    if c != 1:
        m |= OF
    if mnem in ("shl", "sal", "shr") and size is not None and c >= 8 * size:
        m |= CF
    return m


def _rotate(mnem, count, size):
    # RCL/RCR/ROL/ROR (Vol. 2B "RCL/RCR/ROL/ROR—Rotate"), Flags Affected:
    # "If the masked count is 0, the flags are not affected. If the masked
    # count is 1, then the OF flag is affected, otherwise (masked count is
    # greater than 1) the OF flag is undefined. The CF flag is affected when
    # the masked count is non-zero. The SF, ZF, AF, and PF flags are always
    # unaffected."
    c = count & 0x1F
    if c == 0 or c == 1:
        return 0
    return OF


def _shxd(mnem, count, size):
    # SHLD / SHRD (Vol. 2B "SHLD", "SHRD"), Flags Affected:
    # "If the count is 1 or greater, the CF flag is filled with the last bit
    # shifted out of the destination operand and the SF, ZF, and PF flags are
    # set according to the value of the result. For a 1-bit shift, the OF
    # flag is set if a sign change occurred; otherwise, it is cleared. For
    # shifts greater than 1 bit, the OF flag is undefined. If a shift occurs,
    # the AF flag is undefined. If the count operand is 0, the flags are not
    # affected. If the count is greater than the operand size, the flags are
    # undefined."  (The destination is undefined then too: see
    # tests/test_diff_shift.py for what is compared in that case.)
    c = count & 0x1F
    if c == 0:
        return 0
    if size is not None and c > 8 * size:
        return ALL6
    m = AF
    if c != 1:
        m |= OF
    return m


def undefined_flags(mnemonic, count=None, size=None, **case):
    """EFLAGS bits the SDM leaves undefined for ``mnemonic`` in this case."""
    m = mnemonic.lower()
    if m in _SHIFTS or m in _ROTATES or m in ("shld", "shrd"):
        if count is None:
            raise TypeError("undefined_flags(%r) needs count= (the encoded count)" % mnemonic)
        if m in _SHIFTS:
            return _shift(m, count, size)
        if m in _ROTATES:
            return _rotate(m, count, size)
        return _shxd(m, count, size)
    return _FIXED.get(m, 0)


__all__ = ["undefined_flags", "CF", "PF", "AF", "ZF", "SF", "OF", "ALL6"]
