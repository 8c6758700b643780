"""Instruction trace (``emu run --trace FILE``): one line per instruction.

    count  CS:EIP  bytes  disassembly          [EAX=.. EBX=.. ... ESP=.. EFL=..]

e.g. ``12345  0010:00100040  bc e0 43 10 00        mov esp, 0x1043e0``.

The trace is exact because it single-steps: while it is attached, the
machine's ``cpu.run(n)`` becomes n calls of the real ``cpu.run(1)``, with
the interpreter's event check (interrupt delivery, HLT) done first, so the
line written before each step names the instruction that step executes.
Guest exceptions are stopped at the faulting instruction, written as a
``-- exception`` line, and then delivered exactly as the interpreter would;
external interrupts and NMIs get a ``-- interrupt`` line.  Tracing is
therefore slow (tens of thousands of instructions per second) but changes
nothing the guest can observe.

Code bytes are read with a side-effect-free page walk (no accessed bits
set, no device touched): a line shows ``??`` where the bytes cannot be read.
The file is bounded (``max_bytes``, default 64 MiB); when the bound is
reached a last line says so and tracing stops while the guest runs on.
"""
from .cpu import interrupts
from .cpu import state as S
from .cpu.faults import CPUFault
from .mmu.paging import walk

DEFAULT_MAX_BYTES = 64 << 20
_GPR_NAMES = ("EAX", "EBX", "ECX", "EDX", "ESI", "EDI", "EBP", "ESP")
_GPR_INDEX = (S.EAX, S.EBX, S.ECX, S.EDX, S.ESI, S.EDI, S.EBP, S.ESP)


class InstructionTrace:
    def __init__(self, path, regs=False, max_bytes=DEFAULT_MAX_BYTES):
        self.path = path
        self.regs = regs
        self.max_bytes = max_bytes
        self.written = 0
        self.lines = 0
        self.truncated = False
        self._f = open(path, "w", encoding="ascii", errors="replace")
        self._md = {}
        self.cpu = None
        self._orig_run = None
        self._orig_deliver = None

    # --- wiring ------------------------------------------------------------------
    def attach(self, cpu):
        """Trace everything ``cpu.run`` executes from now on."""
        self.cpu = cpu
        self._orig_run = cpu.run
        self._orig_deliver = cpu.deliver
        cpu.run = self._run
        cpu.deliver = self._deliver
        return self

    def detach(self):
        cpu = self.cpu
        if cpu is not None and self._orig_run is not None:
            cpu.run = self._orig_run
            cpu.deliver = self._orig_deliver
        self.cpu = None

    def close(self):
        self.detach()
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- output ------------------------------------------------------------------------
    def _write(self, text):
        f = self._f
        if f is None:
            return
        if self.written + len(text) + 1 > self.max_bytes:
            note = ("-- trace truncated: the file reached its limit of %d bytes after %d "
                    "instructions; the guest ran on untraced\n" % (self.max_bytes, self.lines))
            f.write(note)
            self.written += len(note)
            self.truncated = True
            f.close()
            self._f = None
            self.detach()
            return
        f.write(text)
        f.write("\n")
        self.written += len(text) + 1

    def _deliver(self, vector, error_code=None, kind="exception", next_eip=None):
        # called by the interpreter for external interrupts and NMIs
        self._write("-- %s interrupt, vector 0x%02x" % (kind, vector & 0xFF))
        return self._orig_deliver(vector, error_code, kind, next_eip)

    # --- the single-stepping run -----------------------------------------------------------
    def _run(self, max_insns=None, until=None):
        cpu = self.cpu
        orig = self._orig_run
        if self._f is None or cpu is None:       # truncated or detached meanwhile
            return orig(max_insns, until)
        R = cpu.R
        interp = cpu.interp
        budget = (1 << 62) if max_insns is None else max_insns
        done = 0
        while done < budget:
            if self._f is None:                  # the bound was reached: run on untraced
                return orig(budget - done, until)
            if R[S.EIP] == until:
                return "until"
            if cpu.event:
                r = interp._events()            # interrupts first: the line must be exact
                if r is not None:
                    return r
            self.lines += 1
            self._write(self.describe(cpu.icount))     # before the step: a VM stop keeps it
            saved = cpu.stop_on_fault
            cpu.stop_on_fault = True
            try:
                why = orig(1, None)
            finally:
                cpu.stop_on_fault = saved
            if why == "exception":
                fault = cpu.last_fault
                cpu.last_fault = None
                self._write("-- exception %s%s" % (
                    _VEC_NAMES.get(fault.vector, "vector %d" % fault.vector),
                    "" if fault.error_code is None else " (error code 0x%x)" % fault.error_code))
                if saved:
                    cpu.last_fault = fault
                    return why
                interrupts.raise_exception(cpu, fault)
                done += 1
                continue
            if why not in ("count", "until"):
                return why
            done += 1
        return "count"

    # --- one line -----------------------------------------------------------------------------
    def _disassembler(self, bits):
        md = self._md.get(bits)
        if md is None:
            import capstone
            md = capstone.Cs(capstone.CS_ARCH_X86,
                             capstone.CS_MODE_32 if bits == 32 else capstone.CS_MODE_16)
            self._md[bits] = md
        return md

    def _code_bytes(self, lin, n):
        """Up to n bytes at linear ``lin``, read without side effects; shorter
        where a page cannot be translated."""
        cpu = self.cpu
        R = cpu.R
        phys = cpu.phys
        out = bytearray()
        while len(out) < n:
            a = (lin + len(out)) & 0xFFFFFFFF
            take = min(n - len(out), 0x1000 - (a & 0xFFF))
            try:
                if R[S.CR0] & 0x80000000:
                    paddr, _ = walk(phys, R[S.CR3], R[S.CR0], R[S.CR4], a, False, cpu.user,
                                    fetch=True, update=False, a20_mask=cpu.mmu.a20_mask,
                                    read=phys.peek)
                else:
                    paddr = a & cpu.mmu.a20_mask
            except CPUFault:
                break
            for i in range(take):
                out.append(phys.peek(paddr + i, 1))
        return bytes(out)

    def describe(self, count):
        """The trace line for the instruction at CS:EIP now."""
        cpu = self.cpu
        R = cpu.R
        cs = cpu.segs[S.CS]
        eip = R[S.EIP]
        bits = 32 if (cpu.protected and not cpu.v86 and cs.big) else 16
        code = self._code_bytes(cs.base + eip, 15)
        text, length = "??", 0
        for insn in self._disassembler(bits).disasm(code, eip, 1):
            text = ("%s %s" % (insn.mnemonic, insn.op_str)).strip()
            length = insn.size
        raw = " ".join("%02x" % b for b in code[:length]) if length else (
            "??" if not code else "%02x.." % code[0])
        line = "%9d  %04x:%08x  %-30s %s" % (count, R[S.SEG0 + 4 * S.CS], eip, raw, text)
        if self.regs:
            line += "  " + " ".join("%s=%08x" % (n, R[i]) for n, i in zip(_GPR_NAMES, _GPR_INDEX))
            line += " EFL=%08x" % cpu.get_eflags()
        return line


_VEC_NAMES = {0: "#DE", 1: "#DB", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM", 8: "#DF",
              10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF", 17: "#AC",
              18: "#MC", 19: "#XM"}
