"""Guest-visible faults and VMM stops, as Python exceptions.

A ``CPUFault`` is architectural: raised anywhere inside instruction
semantics, caught by the run loop, which rewinds EIP to the faulting
instruction and delivers the vector through the IVT/IDT.  A ``VMStop`` is not
architectural: the VMM itself ends the run (triple fault, unsupported mode) and
reports a one-line reason.
"""

DE, DB, NMI, BP, OF, BR, UD, NM, DF, CSO, TS, NP, SS, GP, PF = range(15)
MF, AC, MC, XM = 16, 17, 18, 19      # vector 15 is reserved
VECTOR_NAMES = {
    0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM",
    8: "#DF", 9: "CSO", 10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF",
    16: "#MF", 17: "#AC", 18: "#MC", 19: "#XM",
}
# Vectors that push an error code in protected mode.
HAS_ERROR_CODE = frozenset({8, 10, 11, 12, 13, 14, 17})
# Contributory exceptions (SDM Vol. 3 Table 6-5) for the double-fault rules.
CONTRIBUTORY = frozenset({0, 10, 11, 12, 13})


class CPUFault(Exception):
    """An exception the guest sees: vector, optional error code, optional CR2."""

    __slots__ = ("vector", "error_code", "cr2")

    def __init__(self, vector, error_code=None, cr2=None):
        super().__init__(vector, error_code)
        self.vector = vector
        self.error_code = error_code
        self.cr2 = cr2

    def __str__(self):
        name = VECTOR_NAMES.get(self.vector, "vector %d" % self.vector)
        if self.error_code is None:
            return name
        return "%s(0x%x)" % (name, self.error_code)


def fault(vector, error_code=None):
    raise CPUFault(vector, error_code)


def gp(code=0):
    raise CPUFault(GP, code)


def ud():
    raise CPUFault(UD)


class Restart(Exception):
    """Not a fault: the instruction committed part of its work (a long REP
    string operation) and asks to be resumed at the same EIP, so that the run
    loop can take interrupts and count time between the pieces."""


from ..errors import VMStop  # noqa: E402,F401  (shared with the devices)
