"""The emulator side of the differential tests: emu set up as a tests/layout.py
machine, returning results in the shape of tests/oracle.py's ``Result``.

    side = EmuSide(PROT32_PAGED)
    r = side.run(code, regs=dict(eax=1), mem=[(lin, b"..")], count=1)

Semantics match ``UnicornOracle.run``: every run starts from the layout's
initial state; ``count`` instructions run (None: until the end of the code),
the run stops at the end of the code, at HLT or at the first exception.  A
CPU fault is reported, not delivered (``stop_on_fault``): registers are the
state at the fault, EIP the faulting instruction.  A software interrupt
(INT n / INT3 / INTO) is delivered through the layout's IDT/IVT like on
hardware; the result is then recovered from the frame the CPU pushed (vector
from the stub address, EIP/EFLAGS/ESP from the frame), as oracle.py
describes, so both sides report trap=True with EIP = next instruction.

Differences from Unicorn's ``count``: a REP string instruction counts as
one instruction here (it is one instruction); use count=None for REP tests.
"""
from collections import namedtuple

import numpy as np

from emu.api import Emu
from emu.cpu import state as S
from tests.layout import GPRS, SEGS, Seg
from tests.oracle import Exc, HAS_ERROR_CODE, Result, assemble
from tests.coverage_rows import record_rows


class EmuResult(Result):
    """oracle.Result's fields (``writes`` is None: emu's RAM is compared instead),
    plus the Emu that produced it."""
    __slots__ = ("emu",)

    def __repr__(self):
        r = " ".join("%s=%08x" % (k, v) for k, v in self.regs.items())
        s = " ".join("%s=%04x" % (k, v) for k, v in self.sregs.items())
        return "<EmuResult stop=%s exc=%s %s %s cr2=%08x>" % (
            self.stop, self.exception, r, s, self.cr2)


class EmuSide:
    def __init__(self, layout):
        self.L = layout
        self.emu = Emu(ram_size=layout.ram_size, stop_on_exception=True)
        self.cpu = self.emu.cpu
        self.base = bytes(layout.initial_ram())

    def _seg_for(self, name, v):
        """Seg (hidden parts) for a selector override, as loading it would give."""
        if isinstance(v, Seg):
            return v
        L = self.L
        if not L.paging:
            return Seg(v, v << 4, 0xFFFF, 0x009B if name == "cs" else 0x0093)
        if v & ~3 == 0:
            return Seg(v, 0, 0, 0)
        return L.seg(v) if (v >> 3) < len(L.gdt_entries) else None

    def reset(self, regs=None, mem=None, phys_mem=None, code=b"", code_lin=None):
        L = self.L
        cpu = self.cpu
        R = cpu.R
        phys = cpu.phys
        regs = dict(regs or {})
        if regs.get("cpl") == 3 or (L.paging and isinstance(regs.get("cs"), int) and regs["cs"] & 3 == 3):
            r3 = dict(L.ring3_regs)
            r3.update(regs)
            regs = r3
        # RAM back to the images (bypassing watch listeners: caches are flushed below)
        phys.ram[:] = self.base
        cpu.interp.flush()
        for addr, data in phys_mem or ():
            phys.ram[addr:addr + len(data)] = bytes(data)
        # state words
        words = L.state_words({k: v for k, v in regs.items()
                               if k in GPRS or k in ("eip", "eflags", "cr0", "cr2", "cr3", "cr4", "cpl")})
        for i in range(len(R)):
            R[i] = 0
        for i, v in words.items():
            R[i] = v & 0xFFFFFFFF
        for name in SEGS:
            if name in regs:
                sg = self._seg_for(name, regs[name])
                if sg is None:
                    raise ValueError("selector 0x%x is not in the layout's GDT" % regs[name])
                for f, v in enumerate(sg):
                    R[S.seg_index(SEGS.index(name), f)] = v
        R[S.FPU_CW] = 0x37F
        R[S.FPU_TW] = 0xFFFF
        cpu.set_cpl(R[S.CPL])
        cpu.refresh_segs()
        cpu.mmu.flush()
        cpu.interp.flush()
        cpu.event = True
        cpu.R[S.HALTED] = 0
        # code and data through the page tables now in RAM
        code_lin = L.code_lin if code_lin is None else code_lin
        self._write_lin(code_lin, code)
        for addr, data in mem or ():
            self._write_lin(addr, data)

    def _write_lin(self, lin, data):
        data = bytes(data)
        ram = self.cpu.phys.ram
        while data:
            n = min(len(data), 0x1000 - (lin & 0xFFF))
            pa = self.L.lin_to_phys(lin, ram=ram) if self.L.paging else lin
            if pa is None:
                raise ValueError("linear 0x%x is not mapped" % lin)
            ram[pa:pa + n] = data[:n]
            lin, data = lin + n, data[n:]

    def run(self, code, regs=None, mem=None, phys_mem=None, count=1, code_lin=None):
        L = self.L
        code_lin = L.code_lin if code_lin is None else code_lin
        if isinstance(code, str):
            code = assemble(code, L.mode, addr=code_lin)
        code = bytes(code)
        record_rows(code, L.mode)
        self.reset(regs, mem, phys_mem, code, code_lin)
        cpu = self.cpu
        R = cpu.R
        end_eip = (code_lin - R[S.seg_index(S.CS, 1)] + len(code)) & 0xFFFFFFFF
        st = self.emu.run(count=count, until=end_eip)
        res = EmuResult()
        res.emu = self.emu
        res.regs = {n: R[i] for i, n in enumerate(GPRS)}
        res.regs["eip"] = R[S.EIP]
        res.regs["eflags"] = self.emu.reg_read("eflags")
        res.sregs = {n: R[S.seg_index(i, 0)] for i, n in enumerate(SEGS)}
        res.hidden = {n: Seg(*cpu.get_seg(i)) for i, n in enumerate(SEGS)}
        res.cr0, res.cr2, res.cr3, res.cr4 = R[S.CR0], R[S.CR2], R[S.CR3], R[S.CR4]
        res.cpl = R[S.CPL]
        res.writes = None
        res.exception = None
        if st.reason == "exception":
            ec = st.error_code
            if not L.paging or st.vector not in HAS_ERROR_CODE:
                ec = None
            res.exception = Exc(st.vector, ec, False)
            res.stop = "exception"
        elif st.reason == "vmstop":
            res.stop = "vmstop: " + st.message
        else:
            lin_eip = res.hidden["cs"].base + R[S.EIP]
            vec = L.vector_of(lin_eip)
            if vec is not None:
                self._recover_trap(res, vec)
            elif st.reason == "until":
                res.stop = "end"
            elif st.reason == "hlt":
                res.stop = "hlt"
            else:
                res.stop = "count"
        return res

    def _recover_trap(self, res, vec):
        """A software interrupt was delivered: read the pre-interrupt state back."""
        L = self.L
        e = self.emu
        R = self.cpu.R
        sp = R[S.ESP]
        if L.paging:
            eip, cs, fl = np.frombuffer(e.virt_read(sp, 12), "<u4")
            frame = 12
            if int(cs) & 3 != res.cpl:           # privilege change: SS:ESP pushed too
                old_esp, old_ss = np.frombuffer(e.virt_read(sp + 12, 8), "<u4")
                res.regs["esp"] = int(old_esp)
                res.sregs["ss"] = int(old_ss) & 0xFFFF
            else:
                res.regs["esp"] = (sp + frame) & 0xFFFFFFFF
            res.sregs["cs"] = int(cs) & 0xFFFF
        else:
            ss_base = R[S.seg_index(S.SS, 1)]
            raw = e.virt_read((ss_base + (sp & 0xFFFF)) & 0xFFFFFFFF, 6)
            eip, cs, fl = np.frombuffer(raw, "<u2")
            res.regs["esp"] = (R[S.ESP] & 0xFFFF0000) | ((sp + 6) & 0xFFFF)
            res.sregs["cs"] = int(cs)
            fl = (res.regs["eflags"] & 0xFFFF0000) | int(fl)
        res.regs["eip"] = int(eip)
        res.regs["eflags"] = int(fl)
        res.exception = Exc(vec, None, True)
        res.stop = "exception"


Diff = namedtuple("Diff", "what emu unicorn")
