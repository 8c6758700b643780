"""A PROT32_PAGED machine for protected-mode system tests, driven directly.

Unlike tests/emu_side.py (which reports faults like Unicorn does), this
harness lets the CPU *deliver* exceptions through the IDT, so the tests can
look at what a handler would see: the vector (from the HLT stub the IDT sends
it to), the error code and the frame on the handler's stack.

    m = Machine(ring3=True)
    m.gdt(9, descriptor(...))              # extend the GDT in guest memory
    m.idt(0x80, gate(handler, 0x08, 0xEE)) # replace an IDT gate
    m.code("mov eax, 1; int 0x80")         # at layout.code_lin
    st = m.run()                           # -> api.Stop
    m.stub_vector(), m.frame(error_code=False)
"""
import struct

from emu.cpu import state as S
from emu.cpu.faults import HAS_ERROR_CODE
from tests.emu_side import EmuSide
from tests.layout import PROT32_PAGED as L, descriptor, gate, Seg
from tests.oracle import assemble

GDT_MAX = 64                  # entries the tests may use (the GDT page holds 512)
HANDLER_LIN = L.code_lin + 0x800     # ring-0 handler code the tests install
USER_END = L.code_lin + 0x7F0        # "until" address: end of user programs


def d32(base, limit, access, flags=0xC):
    return descriptor(base, limit, access, flags)


def call_gate(offset, sel, dpl=3, count=0, size=32, present=True):
    t = 0xC if size == 32 else 0x4
    access = (0x80 if present else 0) | (dpl << 5) | t
    return struct.pack("<HHBBH", offset & 0xFFFF, sel, count & 0x1F, access, offset >> 16)


def task_gate(tss_sel, dpl=3, present=True):
    access = (0x80 if present else 0) | (dpl << 5) | 0x5
    return struct.pack("<HHBBH", 0, tss_sel, 0, access, 0)


def int_gate(offset, sel=0x08, dpl=0, trap=False, size=32, present=True):
    t = (0xF if trap else 0xE) if size == 32 else (0x7 if trap else 0x6)
    return gate(offset, sel, (0x80 if present else 0) | (dpl << 5) | t)


class Machine:
    def __init__(self, ring3=False, regs=None):
        self.side = EmuSide(L)
        self.emu = self.side.emu
        self.cpu = self.side.cpu
        self.R = self.cpu.R
        r = dict(regs or {})
        if ring3:
            r["cpl"] = 3
        self.side.reset(regs=r)
        self.cpu.stop_on_fault = False
        self.R[S.GDTR_LIMIT] = 8 * GDT_MAX - 1
        # the layout's GDT is 8 entries: clear the rest of the enlarged table
        self.cpu.phys.write_bytes(L.gdt_phys + 64, bytes(8 * GDT_MAX - 64))
        # TSS.CR3 is a static field (never saved by a task switch): an OS fills it
        # in; the layout leaves it 0, which a task switch back to task 1 would load
        self.cpu.phys.write_bytes(L.tss_phys + 0x1C, struct.pack("<I", L.regs["cr3"]))

    # --- guest memory -------------------------------------------------------------
    def gdt(self, index, desc):
        self.cpu.phys.write_bytes(L.gdt_phys + 8 * index, bytes(desc))

    def gdt_raw(self, index):
        return bytes(self.cpu.phys.read_bytes(L.gdt_phys + 8 * index, 8))

    def idt(self, vector, g):
        self.cpu.phys.write_bytes(L.idt_phys + 8 * vector, bytes(g))

    def write(self, lin, data):
        """Store through the layout's page tables like a device would (PhysMem
        watch listeners run: decoded code and shadow entries stay coherent)."""
        data = bytes(data)
        while data:
            n = min(len(data), 0x1000 - (lin & 0xFFF))
            pa = L.lin_to_phys(lin, ram=self.cpu.phys.ram)
            assert pa is not None, hex(lin)
            self.cpu.phys.write_bytes(pa, data[:n])
            lin, data = lin + n, data[n:]

    def read(self, lin, n):
        pa = L.lin_to_phys(lin, ram=self.cpu.phys.ram)
        assert pa is not None and (lin & 0xFFF) + n <= 0x1000
        return bytes(self.cpu.phys.read_bytes(pa, n))

    def rd32(self, lin):
        return struct.unpack("<I", self.read(lin, 4))[0]

    def code(self, src, at=None):
        """Assemble ``src`` (32-bit) at ``at`` (default code_lin); returns its end."""
        at = L.code_lin if at is None else at
        b = src if isinstance(src, (bytes, bytearray)) else assemble(src, 32, addr=at)
        self.write(at, b)
        return at + len(b)

    def handler(self, src):
        return self.code(src, HANDLER_LIN)

    # --- running ---------------------------------------------------------------------
    def run(self, until=None, count=200):
        return self.emu.run(count=count, until=until)

    def seg(self, name):
        return Seg(*self.emu.get_segment(name))

    # --- what a handler sees -------------------------------------------------------------
    def stub_vector(self):
        """Vector whose HLT stub the CPU stopped in (EIP is just past the HLT)."""
        cs_base = self.R[S.seg_index(S.CS, 1)]
        return L.vector_of((cs_base + self.R[S.EIP] - 1) & 0xFFFFFFFF)

    def frame(self, error_code):
        """The 32-bit frame at the handler's ESP: dict err, eip, cs, eflags[, esp, ss]."""
        sp = self.R[S.ESP]
        out = {}
        if error_code:
            out["err"] = self.rd32(sp)
            sp += 4
        out["eip"], out["cs"], out["eflags"] = (self.rd32(sp), self.rd32(sp + 4),
                                                self.rd32(sp + 8))
        if out["cs"] & 3 != self.R[S.CPL]:
            out["esp"], out["ss"] = self.rd32(sp + 12), self.rd32(sp + 16)
        return out

    def delivered(self):
        """(vector, frame) after a run that stopped in a stub."""
        v = self.stub_vector()
        return v, self.frame(v in HAS_ERROR_CODE)
