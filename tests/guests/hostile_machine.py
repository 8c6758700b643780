"""A PROT32_PAGED machine for hostile-paging tests, driven through emu.api.

Each ``Box`` is a fresh ``Emu`` (a fresh physical map: ROM and MMIO regions
cannot be removed from a PhysMem, so no machine is reused across tests) set
up as the tests/layout.py machine it is given, with helpers to:

* add ROM and MMIO regions (``rom``/``mmio``; ``Recorder`` is an MMIO device
  that logs every access with its physical address, size and value and
  behaves like memory, so what the CPU reads back is predictable),
* edit the guest's page tables the way the guest itself would see them
  (``pte_lin``/``pde_lin``: linear addresses, in the supervisor system
  region, of a PTE of the user page table and of a PDE),
* run a program one instruction at a time with ``mmu.audit()`` after every
  step (``run_stepped``) or in one ``run()`` call (``run_blocks``),
* check that RAM changed only where the test says it may (``ram_changes``).

Physical pages free in PROT32_PAGED (used here): 0x13000-0x1F000 (spare
page tables / directories), 0x20000-0x2F000, 0x70000-0x3FFFFF.  Linear
slots free in the user page table (PDE 1, 0x00400000-0x007FFFFF): PTE
indices 0x1B-0x1F and 0x24-0x3FF (0x0041B000, 0x00424000-0x007FFFFF).
"""
import struct

import numpy as np

from emu.cpu import state as S
from tests.emu_side import EmuSide
from tests.layout import PROT32_PAGED as P
from tests.oracle import assemble

PTE_P, PTE_RW, PTE_US, PTE_A, PTE_D, PTE_PS = 0x1, 0x2, 0x4, 0x20, 0x40, 0x80
URW = PTE_P | PTE_RW | PTE_US
SRW = PTE_P | PTE_RW


def pte_lin(lin, L=P):
    """Linear address (supervisor system region) of lin's PTE in the user PT."""
    assert lin >> 22 == 1, "only PDE 1's page table is reachable this way"
    return L.sys_lin + L.pt_user_phys + 4 * ((lin >> 12) & 0x3FF)


def pde_lin(lin, L=P):
    """Linear address (supervisor system region) of lin's PDE."""
    return L.sys_lin + L.pd_phys + 4 * ((lin >> 22) & 0x3FF)


def pte_phys(lin, L=P):
    return L.pt_user_phys + 4 * ((lin >> 12) & 0x3FF)


def pde_phys(lin, L=P):
    return L.pd_phys + 4 * ((lin >> 22) & 0x3FF)


class Recorder:
    """An MMIO device that behaves like memory and logs every access.

    ``log``: list of ("r", paddr, size, value) / ("w", paddr, size, value)
    in the order the CPU made them.  Unwritten bytes read as ``pattern(a)``
    (a deterministic function of the physical address), so a read of any size
    at any address has a known value.
    """

    def __init__(self, base, size, name="rec"):
        self.base = base
        self.size = size
        self.name = name
        self.log = []
        self.store = {}

    @staticmethod
    def pattern(a):
        return (a * 0x9D + 0x5B) & 0xFF

    def byte(self, a):
        return self.store.get(a, self.pattern(a))

    def value(self, a, size):
        return int.from_bytes(bytes(self.byte(a + i) for i in range(size)), "little")

    def read(self, addr, size):
        assert self.base <= addr and addr + size <= self.base + self.size, (hex(addr), size)
        v = self.value(addr, size)
        self.log.append(("r", addr, size, v))
        return v

    def write(self, addr, size, value):
        assert self.base <= addr and addr + size <= self.base + self.size, (hex(addr), size)
        self.log.append(("w", addr, size, value))
        for i in range(size):
            self.store[addr + i] = (value >> (8 * i)) & 0xFF

    def bytes_touched(self, kind):
        """Every physical byte address an access of ``kind`` ("r"/"w") covered."""
        out = []
        for k, a, n, _ in self.log:
            if k == kind:
                out.extend(range(a, a + n))
        return out


class Box:
    def __init__(self, layout=P, stop_on_exception=True, regs=None):
        self.L = layout
        self.side = EmuSide(layout)
        self.emu = self.side.emu
        self.cpu = self.emu.cpu
        self.phys = self.cpu.phys
        self.mmu = self.cpu.mmu
        self.R = self.cpu.R
        self.side.reset(regs=regs)
        self.cpu.stop_on_fault = stop_on_exception
        self.code_end = None
        self.addrs = None
        self.devs = []

    # --- physical map ---------------------------------------------------------
    def rom(self, base, data, name="rom"):
        self.phys.add_rom(base, data, name=name)

    def mmio(self, base, size, name="rec"):
        dev = Recorder(base, size, name)
        self.phys.add_mmio(base, size, dev.read, dev.write, name)
        self.devs.append(dev)
        return dev

    # --- guest memory ------------------------------------------------------------
    def pte_lin(self, lin):
        return pte_lin(lin, self.L)

    def pde_lin(self, lin):
        return pde_lin(lin, self.L)

    def pte_phys(self, lin):
        return pte_phys(lin, self.L)

    def pde_phys(self, lin):
        return pde_phys(lin, self.L)

    def write_lin(self, lin, data):
        self.side._write_lin(lin, bytes(data))

    def wphys(self, pa, data):
        self.phys.write_bytes(pa, bytes(data))

    def rd32(self, pa):
        return struct.unpack_from("<I", self.phys.ram, pa)[0]

    def load(self, code, at=None):
        """Assemble (32-bit) and place ``code`` at linear ``at`` (default code_lin);
        the run ends when EIP reaches its end."""
        at = self.L.code_lin if at is None else at
        b = assemble(code, 32, addr=at) if isinstance(code, str) else bytes(code)
        self.write_lin(at, b)
        self.code_end = at + len(b)
        return b

    def load_lines(self, lines, at=None):
        """Assemble ``lines`` one instruction each (so that ``addrs[i]`` is the
        address of line i and ``addrs[-1]`` the end) and place them at ``at``."""
        at = self.L.code_lin if at is None else at
        code = b""
        addrs = []
        for line in lines:
            addrs.append(at + len(code))
            code += assemble(line, 32, addr=at + len(code))
        self.write_lin(at, code)
        self.code_end = at + len(code)
        self.addrs = addrs + [self.code_end]
        return code

    def skip(self):
        """After a fault at line i (stop_on_exception): go on at line i+1."""
        i = self.addrs.index(self.R[S.EIP])
        self.emu.reg_write("eip", self.addrs[i + 1])

    def run_program(self, stepped=True, max_faults=16):
        """Run the ``load_lines`` program to its end, skipping each faulting line.
        Returns [(line index, vector, error code, cr2)] of the faults, or, when
        the run ends otherwise (HLT, VM stop), that Stop as the last item."""
        out = []
        for _ in range(max_faults + 1):
            st = self.run_stepped()[0] if stepped else self.run_blocks()
            if st.reason == "until":
                return out
            if st.reason != "exception":
                out.append(st)
                return out
            eip = self.R[S.EIP]
            if eip not in self.addrs:       # outside the program: cannot go on
                out.append((None, st.vector, st.error_code, st.cr2))
                return out
            out.append((self.addrs.index(eip), st.vector, st.error_code, st.cr2))
            self.skip()
        raise AssertionError("too many faults: %r" % out)

    def snapshot(self):
        return np.frombuffer(bytes(self.phys.ram), dtype=np.uint8)

    # --- running ------------------------------------------------------------------
    def run_stepped(self, max_steps=500, until=None):
        """One instruction per run() call, ``mmu.audit()`` after each; returns the
        last Stop and the number of steps."""
        until = self.code_end if until is None else until
        for n in range(max_steps):
            st = self.emu.run(count=1, until=until)
            errs = self.mmu.audit()
            assert errs == [], "audit after step %d (eip=%#x): %s" % (n, self.R[S.EIP], errs)
            if st.reason != "count":
                return st, n
        raise AssertionError("program did not finish in %d steps" % max_steps)

    def run_blocks(self, count=10000, until=None):
        until = self.code_end if until is None else until
        st = self.emu.run(count=count, until=until)
        errs = self.mmu.audit()
        assert errs == [], errs
        return st

    def regs(self):
        names = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip")
        return {n: self.emu.reg_read(n) for n in names}

    # --- checks --------------------------------------------------------------------
    def ram_changes(self, before):
        """{physical address: new byte} of every RAM byte that differs from ``before``."""
        after = np.frombuffer(bytes(self.phys.ram), dtype=np.uint8)
        idx = np.flatnonzero(after != before)
        return {int(i): int(after[i]) for i in idx}

    def assert_ram_changes(self, before, allowed=(), exact=None):
        """RAM differs from ``before`` only inside the ``allowed`` [start, end)
        ranges and at the ``exact`` {paddr: bytes} places, which must hold
        exactly those bytes."""
        exact = dict(exact or {})
        ch = self.ram_changes(before)
        ok = set()
        for pa, data in exact.items():
            got = bytes(self.phys.ram[pa:pa + len(data)])
            assert got == bytes(data), "phys %#x: %s, expected %s" % (pa, got.hex(), bytes(data).hex())
            ok.update(range(pa, pa + len(data)))
        bad = [a for a in ch if a not in ok and not any(s <= a < e for s, e in allowed)]
        assert not bad, "RAM changed outside the allowed places: %s" % ", ".join(
            "%#x=%02x" % (a, ch[a]) for a in bad[:16])
        return ch


def pt_entries_range(L, *lins):
    """[start, end) physical ranges of the user-PT PTEs of ``lins`` (A/D updates)."""
    out = []
    for lin in lins:
        pa = L.pt_user_phys + 4 * ((lin >> 12) & 0x3FF)
        out.append((pa, pa + 4))
    return out
