"""Unicorn as a differential-testing oracle for one instruction or a short sequence.

Usage::

    from tests.layout import PROT32_PAGED as L
    from tests.oracle import UnicornOracle, assemble

    o = UnicornOracle(L)                         # build once (~30 ms), reuse
    r = o.run("add al, bl", regs=dict(eax=0x7f, ebx=1))
    r.eax, r.eflags, r.eip, r.writes, r.exception
    r = o.run(code_bytes, mem=[(L.data_lin[0], b"...")], count=None)
    r = o.run("mov [%d], eax" % L.ro_lin, regs=L.ring3_regs)   # ring 3

Every ``run`` starts again from the layout's initial state (registers, RAM
images, TLB, translated code, Unicorn's pending-exception state); nothing
leaks from one run to the next.  A run costs ~0.2-0.4 ms.

run(code, regs=None, mem=None, phys_mem=None, count=1, code_lin=None)
    code      bytes, or assembler text (``assemble`` for the layout's mode at
              ``code_lin``), placed at LINEAR ``code_lin`` (default
              ``layout.code_lin``); execution starts there (or at CS:``eip``
              when regs has eip) and ends when EIP reaches the end of the code.
    regs      overrides of ``layout.regs``: GPR names, eip (offset in CS),
              eflags, cr0/cr2/cr3/cr4, segment names (a selector, or a Seg:
              Unicorn always (re)loads from the GDT or the real-mode rule; for
              a Seg the hidden parts it got are checked against yours), and
              cpl=3 (PROT32_PAGED only).  ``layout.ring3_regs`` is a ready
              ring-3 override; a CS selector with RPL 3 also means ring 3.
    mem       list of (LINEAR address, bytes), written through the page
              tables as they are after ``phys_mem`` (like a debugger: U/S and
              R/W bits ignored, must be present).
    phys_mem  list of (PHYSICAL address, bytes), written first (page tables,
              descriptors, ...).
    count     instructions to execute (Unicorn's count: each iteration of a
              REP string instruction is one!); None = until the end of the
              code.  A run also stops at the first exception, at HLT, or
              after ``timeout_us`` (default 2 s).
returns a ``Result``:
    .regs       dict eax..edi, eip, eflags            (also r.eax, r.eip, ...)
    .sregs      dict es..gs -> selector
    .hidden     dict es..gs -> Seg(sel, base, limit, attr) from Unicorn's
                descriptor caches (attr in state.py format; see Q6)
    .cr0 .cr2 .cr3 .cr4 .cpl
    .writes     [(linear addr, size, value)] in execution order, one entry per
                store as Unicorn reports it (a page-crossing store is ONE entry
                at its first byte).  Unicorn reports physical addresses (Q15);
                the linear address is recovered through the page tables at the
                end of the run (lowest linear address mapping that frame).
    .phys_writes  the same with Unicorn's physical addresses.
    .exception  None or Exc(vector, error_code, trap): error_code only in
                protected mode for vectors 8, 10-14, 17 (else None);
                trap=True for INT n / INT3 / INTO (EIP = the next instruction).
    .stop       'end' | 'count' | 'exception' | 'hlt' | 'timeout' | 'error: ...'
    After a run, ``o.read_lin(lin, n)`` / ``o.read_phys(pa, n)`` / ``o.ram``
    (numpy view of all guest RAM) show memory as the run left it.

    A run that ends in an exception reports the state AT the exception,
    which is what the CPU would push: EIP = the faulting instruction (fault)
    or the next one (INT n/INT3/INTO, single-step #DB); nothing of the
    faulting instruction is committed; EFLAGS are those before it (Unicorn's
    EFLAGS at a fault are reliable, also mid-block: checked by the
    selfcheck).  RF is never set by Unicorn; real CPUs set RF in the pushed
    EFLAGS image of a fault: compare EFLAGS without bit 16.

How exceptions are recovered (and what the emulator side must match)
--------------------------------------------------------------------
Unicorn 2.1.4 does NOT deliver exceptions through the IDT/IVT: a CPU
exception (or INT n) reaches the UC_HOOK_INTR callback with the vector only,
before any delivery, and if the callback returns Unicorn just moves EIP on.
The oracle's hook records the vector and EIP and stops emulation.  The error
code, "was it a software interrupt" and a trap's next EIP are not in
Unicorn's API: the oracle reads them from the CPU context (the bytes of
``uc.context_save()`` are a copy of QEMU's CPUX86State: ``error_code``,
``exception_is_int``, ``exception_next_eip``).  Their offsets are calibrated
when the first oracle is built, with #GPs of known error codes (``mov ds,
ax`` with selectors beyond the GDT limit raise #GP(selector)) and an INT
0x21, so another Unicorn build cannot silently give wrong codes.  #UD is not
reported through the hook at all: emu_start fails with UC_ERR_INSN_INVALID,
which the oracle turns into vector 6 (EIP is exact).
The layouts nevertheless install a complete IDT (PROT32_PAGED) / IVT (REAL16)
whose vectors lead to HLT stubs at ``layout.handler_lin(v)``: that is for the
emulator, which delivers exceptions for real.  The emulator side recovers
vector = layout.vector_of(EIP at the stub), error code = the dword on top of
the handler's stack (vectors 8, 10-14, 17 in protected mode), and the
pre-exception state from the frame (EIP, CS, EFLAGS; ESP = frame + size), or
stops before delivery (tests/emu_side.py does both), and reports the same
Result.

Unicorn 2.1.4 quirks found (API and state)
------------------------------------------
  Q1  No IDT/IVT delivery (above): no stack frame, no CS/EFLAGS change, TF/IF
      not cleared, and no INT n gate-DPL check (see A3).
  Q2  Unicorn keeps QEMU's ``old_exception`` after a caught exception: the
      next #PF/contributory fault in a LATER emu_start becomes #DF (8), the
      one after a triple fault.  The oracle restores a pristine CPU context
      before every run, which clears it.
  Q3  Writing a segment register in protected mode goes through a check
      (uc_check_cpu_x86_load_seg) and a descriptor load from the GDT - at a
      LINEAR address, so paging must be on first.  SS can only be loaded with
      RPL = DPL = CPL, and CPL comes from SS.DPL, so ring 3 cannot be reached
      by register writes: the oracle executes an ``iretd`` from a ring-0
      trampoline (phys TRAMP_PHYS, frame on the ring-0 stack; not captured,
      and both put back afterwards), then loads DS/ES/FS/GS.
  Q4  GDTR/IDTR/LDTR/TR are written as (selector, base, limit, flags) with
      QEMU's raw flags = attr << 8 (descriptor high dword bits 8-23), not the
      access byte; TR/LDTR writes are not checked against the GDT.  QEMU's
      LTR caches the TSS type BEFORE it marks the descriptor busy, and any
      inner-privilege transition (call gate to a lower ring, ...) with a
      "busy" type in the TR cache ABORTS THE PROCESS (cpu_abort "invalid tss
      type").  The oracle writes TR with the available type (9) while the
      layout's GDT entry and state.py value say busy (0x8B).
  Q5  Hidden segment parts cannot be read or written through the API; the
      oracle reads them from the context (QEMU SegmentCache) -> Result.hidden.
  Q6  Real mode: a segment written by reg_write or loaded by MOV gets flags
      P|S|W|A = attr 0x0093, CS included (state.py's reset value is 0x009B).
      Compare real-mode CS attr with a mask (or not at all).
  Q7  EFLAGS writes are not sanitised: 0xFFFFFFFF reads back as 0xFFFFFFFF
      (reserved bits 3, 5, 15, 22-31, VM, RF accepted).  Keep overrides
      architectural (bit 1 set, reserved bits clear).
  Q8  UC_MODE_32 starts with CR0 = PE|ET (0x11) and CR4 = 0x50200
      (OSFXSR|FSGSBASE|OSXSAVE); UC_MODE_16 with CR0 = CR4 = 0.  The oracle
      writes the layout's CR4 (PSE only), so SSE instructions are #UD.
  Q9  ``count`` is a code hook: each iteration of a REP string instruction is
      one "instruction"; use count=None for REP tests.
  Q10 Translated code is not invalidated when RAM changes behind Unicorn's
      back (the oracle maps its own buffer with mem_map_ptr): the oracle
      flushes the translation cache before every run.
  Q11 The TLB is not part of the context: the oracle rewrites CR3 (a TLB
      flush) on every run after restoring the context.
  Q12 A/D bits of PDEs/PTEs and descriptor accessed/busy bits are written by
      Unicorn without any UC_HOOK_MEM_WRITE callback.  The layouts preset them
      so that no such write happens unless a test clears them (then compare
      RAM, not ``writes``).
  Q13 The EIP QEMU moves to after a caught fault (exception_next_eip) is set
      before the guest state is restored and can be stale; the oracle takes
      EIP inside the hook (exact for faults) and exception_next_eip only for
      software interrupts.
  Q14 uc_emu_start translates the linear address ``until - 1`` through the
      guest MMU with the CURRENT privilege (at least when the run ends).  If
      that page is not mapped for it, CR2 is silently overwritten and a
      spurious #PF can be raised at the next instruction.  The oracle's
      ``until`` is always the end of the code (its last byte is mapped);
      don't let a test unmap its own last code byte or run ring-3 code from a
      supervisor page.
  Q15 UC_HOOK_MEM_WRITE/READ callbacks get PHYSICAL addresses when paging is
      on (2.1 uses the guest MMU), and a page-crossing access is ONE callback
      with the physical address of its first byte even when the second page
      is a non-adjacent frame.
  Q16 The write callback runs before the access is checked for a page
      crossing: a store that faults on its SECOND page is in ``writes``
      although memory did not change.  Compare memory, not ``writes``, when
      a run ends in #PF.
  Q17 The Python binding's timeout is in microseconds (its docstring says ms).
  Q18 #UD is reported as UC_ERR_INSN_INVALID from emu_start, not through
      UC_HOOK_INTR (the oracle maps it to vector 6).
  Q19 IDIV r/m32 with EDX:EAX = 0x80000000_00000000 and divisor -1 kills the
      host process with SIGFPE (QEMU divides in int64).  The oracle places a
      code hook on every 32-bit IDIV of the code that turns exactly this case
      into #DE before Unicorn executes it (IDIV r/m16 and r/m8 are safe).
      IDIVs reached outside the given code are not guarded.
  Q20 SYSENTER is intercepted by Unicorn (UC_HOOK_INSN) and does nothing -
      no #GP with SYSENTER_CS = 0, no transfer.  RDTSC reads the host clock;
      CPUID returns QEMU's model.  Don't compare those.
  Q21 HLT at CPL 0 ends emu_start without saying why; the oracle reports
      stop='hlt' when EIP follows a HLT of the code.

Architectural differences (Unicorn/QEMU TCG vs the Intel SDM) - mask table
-------------------------------------------------------------------------
  A1  Segment limits are not checked for data accesses in protected mode
      (``mov eax, [0x1000]`` with a DS limit of 0xFFF reads; SDM: #GP(0)).
  A2  Real mode: no #GP/#SS for an operand crossing offset 0xFFFF (a word at
      0xFFFF is read/written at base+0xFFFF..base+0x10000), for 32-bit
      effective addresses > 0xFFFF, or for a PUSH with SP = 1.
  A3  INT n at CPL 3 through a DPL-0 gate reports vector n (SDM: #GP(n*8+2)).
  A4  A memory access through a null data selector is not #GP(0): base 0
      is used (so it usually faults as #PF at a low address).
  A5  IN/OUT/INS/OUTS at CPL > IOPL do not consult the TSS I/O bitmap and
      never #GP; without a hook IN returns 0.
  A6  F6 /1 and F7 /1 (the undocumented TEST aliases, executed as TEST by
      Intel and AMD CPUs) are #UD.
  A7  ICEBP/INT1 (F1) is #UD (hardware: a #DB trap).
  A8  RDMSR/WRMSR of an unimplemented MSR do not #GP (RDMSR returns 0).
  A9  SDM-undefined flags where Unicorn and a real CPU disagree (found by
      running the same encodings natively on the AMD EPYC host and in
      Unicorn, random + edge operands; Intel parts may differ again):
        MUL, IMUL (all forms)        SF ZF AF PF
        DIV, IDIV                    CF OF SF ZF AF PF (Unicorn leaves ALL
                                     flags unchanged; the host changes them)
        SHL SHR SAR SHLD SHRD        AF (Unicorn: always 0)
        RCL RCR                      OF when the masked count is > 1
        SHLD/SHRD r16, count > 16    the result and CF OF SF ZF PF
        BSF BSR                      SF PF
      Undefined per SDM but equal to the host on every sample: OF of
      SHL/SHR/SAR/SHLD/SHRD/ROL/ROR for count > 1, AF of AND/OR/XOR/TEST,
      OF SF AF PF of BT/BTS/BTR/BTC, CF OF AF of BSF/BSR and their destination
      for a zero source (left unchanged).  Mask them anyway.
      Every SDM-DEFINED flag and result matched: ADD ADC SUB SBB CMP AND OR
      XOR TEST NEG NOT INC DEC XADD CMPXCHG (8/16/32-bit), shifts and rotates
      by 1 and by CL (0..63), SHLD/SHRD r32, BT*, BSF/BSR (ZF, dest), IMUL
      (CF/OF, results), DIV/IDIV results; and AAA AAS DAA DAS AAM AAD (not
      encodable natively in 64-bit mode) over AX = 0..0xFFFF step 7 x {CF,
      AF} against the SDM pseudo-code (undefined: AAA/AAS OF SF ZF PF,
      DAA/DAS OF, AAM/AAD OF AF CF).
"""
import ctypes
import mmap
import re
import struct
from collections import namedtuple

import numpy as np
from unicorn import (Uc, UcError, UC_ARCH_X86, UC_MODE_16, UC_MODE_32,
                     UC_HOOK_INTR, UC_HOOK_MEM_WRITE, UC_HOOK_CODE, UC_PROT_ALL,
                     UC_ERR_INSN_INVALID)
from unicorn import x86_const as X

from tests.layout import GPRS, SEGS, Seg, PTE_P, PTE_PS, CR4_PSE, CR0_PG


class Exc(namedtuple("Exc", "vector error_code trap")):
    """An exception a run ended with.  ``trap``: a software interrupt (INT n,
    INT3, INTO) - EIP is the next instruction.  ``soft`` is an alias."""
    __slots__ = ()

    @property
    def soft(self):
        return self.trap


# Vectors that push an error code in protected mode (same as emu.cpu.faults).
HAS_ERROR_CODE = frozenset({8, 10, 11, 12, 13, 14, 17})

_GPR_IDS = {
    "eax": X.UC_X86_REG_EAX, "ecx": X.UC_X86_REG_ECX, "edx": X.UC_X86_REG_EDX,
    "ebx": X.UC_X86_REG_EBX, "esp": X.UC_X86_REG_ESP, "ebp": X.UC_X86_REG_EBP,
    "esi": X.UC_X86_REG_ESI, "edi": X.UC_X86_REG_EDI,
}
_SEG_IDS = {
    "es": X.UC_X86_REG_ES, "cs": X.UC_X86_REG_CS, "ss": X.UC_X86_REG_SS,
    "ds": X.UC_X86_REG_DS, "fs": X.UC_X86_REG_FS, "gs": X.UC_X86_REG_GS,
}
_READ_IDS = ([_GPR_IDS[n] for n in GPRS] + [X.UC_X86_REG_EIP, X.UC_X86_REG_EFLAGS]
             + [_SEG_IDS[n] for n in SEGS]
             + [X.UC_X86_REG_CR0, X.UC_X86_REG_CR2, X.UC_X86_REG_CR3, X.UC_X86_REG_CR4])


class OracleError(Exception):
    pass


# --------------------------------------------------------------------------
# Offsets inside Unicorn's saved context (a copy of QEMU's CPUX86State)
# --------------------------------------------------------------------------
class _CtxLayout:
    """Byte offsets inside ``bytes(uc.context_save())``; found at run time."""
    env = None          # start of CPUX86State (after Unicorn's uc_context header)
    hflags = None       # env + 176
    segs = None         # env + 184, 6 x SegmentCache {u32 sel; u64 base; u32 limit; u32 flags}
    error_code = None   # calibrated (env + 5384 in 2.1.4)
    is_int = None       # error_code + 4
    next_eip = None     # error_code + 8 (u64)
    calibrated = False


_CTX = _CtxLayout()
SEGCACHE_SIZE = 24


def _ctx_seg(ctx, i):
    sel, base, limit, flags = struct.unpack_from("<I4xQII", ctx, _CTX.segs + SEGCACHE_SIZE * i)
    return Seg(sel & 0xFFFF, base & 0xFFFFFFFF, limit, (flags >> 8) & 0xF0FF)


class Result:
    __slots__ = ("regs", "sregs", "hidden", "cr0", "cr2", "cr3", "cr4", "cpl",
                 "writes", "phys_writes", "exception", "stop")

    def __getattr__(self, name):
        regs = object.__getattribute__(self, "regs")
        if name in regs:
            return regs[name]
        raise AttributeError(name)

    @property
    def vector(self):
        return None if self.exception is None else self.exception.vector

    @property
    def error_code(self):
        return None if self.exception is None else self.exception.error_code

    def __repr__(self):
        r = " ".join("%s=%08x" % (k, v) for k, v in self.regs.items())
        s = " ".join("%s=%04x" % (k, v) for k, v in self.sregs.items())
        return "<Result stop=%s exc=%s %s %s cr2=%08x writes=%s>" % (
            self.stop, self.exception, r, s, self.cr2,
            [(hex(a), n, hex(v)) for a, n, v in self.writes])


class UnicornOracle:
    """One Unicorn instance set up as ``layout``; ``run`` resets it each time."""

    TRAMP_PHYS = 0x5000          # PROT32: ring-3 trampoline (iretd) in the system region

    def __init__(self, layout, timeout_us=2_000_000, capture_writes=True):
        self.L = layout
        self.timeout_us = timeout_us
        self.capture_writes = capture_writes
        self.mode = layout.mode
        self.uc = Uc(UC_ARCH_X86, UC_MODE_16 if layout.mode == 16 else UC_MODE_32)
        # RAM: our own page-aligned buffer, mapped at physical 0
        self._mm = mmap.mmap(-1, layout.ram_size)
        self.ram = np.frombuffer(self._mm, dtype=np.uint8)
        self._ram_addr = ctypes.addressof(ctypes.c_char.from_buffer(self._mm))
        self.uc.mem_map_ptr(0, layout.ram_size, UC_PROT_ALL, self._ram_addr)
        base = np.frombuffer(bytes(layout.initial_ram()), dtype=np.uint8).copy()
        self._always = set()             # pages restored before every run
        for addr, data in layout.images:
            self._always.update(range(addr >> 12, (addr + len(data) + 0xFFF) >> 12))
        if layout.paging:                  # the ring-3 trampoline's scratch pages
            self._always.add(self.TRAMP_PHYS >> 12)
            self._always.add(layout.kstack_phys >> 12)
        self.base = base
        self.ram[:] = base
        self._dirty = set()
        self._writes = []
        self._exc = None
        self._capture = False
        self._dirty_unknown = False
        if capture_writes:                 # a Python callback per store: slow
            self.uc.hook_add(UC_HOOK_MEM_WRITE, self._on_write)
        self.uc.hook_add(UC_HOOK_INTR, self._on_intr)
        self._setup()
        self._ctx0 = self.uc.context_save()
        if not _CTX.calibrated:
            self._calibrate()
        self._check_initial()

    # -- setup ---------------------------------------------------------------
    def _setup(self):
        uc, r = self.uc, self.L.regs
        uc.reg_write(X.UC_X86_REG_GDTR, (0, r["gdtr"][0], r["gdtr"][1], 0))
        uc.reg_write(X.UC_X86_REG_IDTR, (0, r["idtr"][0], r["idtr"][1], 0))
        uc.reg_write(X.UC_X86_REG_CR4, r["cr4"])
        uc.reg_write(X.UC_X86_REG_CR3, r["cr3"])
        uc.reg_write(X.UC_X86_REG_CR0, r["cr0"])
        got = (uc.reg_read(X.UC_X86_REG_CR0), uc.reg_read(X.UC_X86_REG_CR3),
               uc.reg_read(X.UC_X86_REG_CR4))
        if got != (r["cr0"], r["cr3"], r["cr4"]):
            raise OracleError("%s: CR0/CR3/CR4 read back as %s" % (self.L.name,
                              [hex(x) for x in got]))
        if self.L.paging:
            # QEMU's LTR loads the TR cache BEFORE it marks the descriptor busy,
            # and aborts the process on an inner-privilege transition when the
            # cached type is not "available" (quirk Q4): write type 9, not 11.
            s = r["tr"]
            attr = s.attr & ~0x2 if s.attr & 0x1F in (0x03, 0x0B) else s.attr
            uc.reg_write(X.UC_X86_REG_TR, (s.sel, s.base, s.limit, attr << 8))
            s = r["ldtr"]
            uc.reg_write(X.UC_X86_REG_LDTR, (s.sel, s.base, s.limit, s.attr << 8))
        for name in SEGS:                 # CS too: Unicorn reloads from the GDT
            uc.reg_write(_SEG_IDS[name], r[name].sel)
        for name in GPRS:
            uc.reg_write(_GPR_IDS[name], r[name])
        uc.reg_write(X.UC_X86_REG_EFLAGS, r["eflags"])

    def _check_initial(self):
        """The state Unicorn built must be the layout's, hidden parts included."""
        ctx = bytes(self._ctx0)
        for i, name in enumerate(SEGS):
            want, got = self.L.regs[name], _ctx_seg(ctx, i)
            if self.mode == 16 and name == "cs":
                want = want._replace(attr=0x0093)          # quirk Q6
            if got != want:
                raise OracleError("%s: Unicorn loaded %s as %s, layout says %s"
                                  % (self.L.name, name, got, want))
        if self.L.paging:
            # translation really is on and uses our tables
            pa = self._vmem_translate(self.L.data_lin[0])
            if pa != self.L.lin_to_phys(self.L.data_lin[0]):
                raise OracleError("paging check failed: data_lin -> %r" % pa)

    def _vmem_translate(self, lin):
        from unicorn.unicorn_py3.unicorn import uclib
        out = ctypes.c_uint64()
        fn = uclib.uc_vmem_translate
        fn.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int,
                       ctypes.POINTER(ctypes.c_uint64)]
        err = fn(self.uc._uch, lin, 1, ctypes.byref(out))     # UC_PROT_READ
        return None if err else out.value

    def _calibrate(self):
        """Find CPUX86State fields inside Unicorn's context bytes (quirk Q1/Q5)."""
        uc = self.uc
        uc.context_restore(self._ctx0)
        uc.reg_write(X.UC_X86_REG_EAX, 0x5A5A1234)
        uc.reg_write(X.UC_X86_REG_ECX, 0xA5A56789)
        ctx = bytes(uc.context_save())
        env = ctx.find(struct.pack("<QQ", 0x5A5A1234, 0xA5A56789))
        if env < 0:
            raise OracleError("cannot find CPUX86State in Unicorn's context")
        _CTX.env, _CTX.hflags, _CTX.segs = env, env + 176, env + 184
        sels = [uc.reg_read(_SEG_IDS[n]) for n in SEGS]
        if [_ctx_seg(ctx, i).sel for i in range(6)] != sels:
            raise OracleError("unexpected CPUX86State layout (segment caches)")
        if self.mode != 32:
            # error codes need protected mode: calibrate with a PROT32 machine
            from tests.layout import PROT32_PAGED
            UnicornOracle(PROT32_PAGED)
            uc.context_restore(self._ctx0)
            return
        # --- error_code: two #GPs with known codes (selector beyond GDT limit)
        probe = b"\x8e\xd8"                                  # mov ds, ax
        cands = None
        for sel in (0x0FF8, 0x0FF0, 0x7FF8):
            snaps = []
            self._probe(probe, dict(eax=sel), snaps)
            if not snaps or snaps[0][0] != 13:
                raise OracleError("calibration: mov ds, 0x%x gave %r" % (sel, snaps))
            ctx = snaps[0][1]
            hits = {o for o in range(_CTX.segs + 6 * SEGCACHE_SIZE, len(ctx) - 4, 4)
                    if struct.unpack_from("<i", ctx, o)[0] == sel}
            cands = hits if cands is None else cands & hits
        if len(cands) != 1:
            raise OracleError("calibration: error_code offset ambiguous: %s" % sorted(cands))
        ec = cands.pop()
        _CTX.error_code, _CTX.is_int, _CTX.next_eip = ec, ec + 4, ec + 8
        # --- is_int / next_eip: INT 0x21 is a software interrupt
        snaps = []
        self._probe(b"\xcd\x21", {}, snaps)
        ctx = snaps[0][1]
        isint, neip = struct.unpack_from("<iQ", ctx, _CTX.is_int)[0], \
            struct.unpack_from("<Q", ctx, _CTX.next_eip)[0]
        if snaps[0][0] != 0x21 or isint != 1 or neip != self.L.code_lin + 2:
            raise OracleError("calibration: exception_is_int/next_eip not where expected")
        _CTX.calibrated = True
        uc.context_restore(self._ctx0)

    def _probe(self, code, regs, out):
        """Run ``code`` raw, capturing (vector, context bytes) from the hook."""
        self._probe_out = out
        try:
            self.run(code, regs=regs, count=1)
        finally:
            self._probe_out = None

    _probe_out = None

    # -- hooks ---------------------------------------------------------------
    def _on_write(self, uc, access, address, size, value, user_data):
        # Unicorn 2.1 reports the PHYSICAL address of the first byte (quirk Q15)
        if not self._capture:
            return
        self._writes.append((address, size, value & ((1 << (8 * size)) - 1)))
        if (address & 0xFFF) + size <= 0x1000:
            self._dirty.add(address >> 12)
        else:                       # second page's frame is unknown: diff all RAM
            self._dirty_unknown = True

    def _on_intr(self, uc, intno, user_data):
        if self._capture:
            eip = uc.reg_read(X.UC_X86_REG_EIP)
            ctx = bytes(uc.context_save())
            if self._probe_out is not None:
                self._probe_out.append((intno, ctx))
            if _CTX.error_code is not None:
                ec, is_int, neip = struct.unpack_from("<iiQ", ctx, _CTX.error_code)
            else:
                ec, is_int, neip = None, 0, eip
            if is_int:
                eip = neip & 0xFFFFFFFF
            code = None
            if self.L.paging and intno in HAS_ERROR_CODE and not is_int and ec is not None:
                code = ec & 0xFFFFFFFF
            self._exc = (Exc(intno, code, bool(is_int)), eip)
        else:
            self._exc = (Exc(intno, None, False), uc.reg_read(X.UC_X86_REG_EIP))
        uc.emu_stop()

    def _live_translate(self, lin):
        """lin -> phys with the page tables now in RAM (None if not mapped)."""
        if not self.L.paging:
            return lin & 0xFFFFFFFF
        cr0 = self.uc.reg_read(X.UC_X86_REG_CR0)
        if not cr0 & CR0_PG:
            return lin & 0xFFFFFFFF
        cr3 = self.uc.reg_read(X.UC_X86_REG_CR3) & 0xFFFFF000
        cr4 = self.uc.reg_read(X.UC_X86_REG_CR4)
        ram = self._mm
        try:
            pde = struct.unpack_from("<I", ram, cr3 + 4 * (lin >> 22))[0]
            if not pde & PTE_P:
                return None
            if pde & PTE_PS and cr4 & CR4_PSE:
                return (pde & 0xFFC00000) | (lin & 0x3FFFFF)
            pte = struct.unpack_from("<I", ram, (pde & 0xFFFFF000) + 4 * ((lin >> 12) & 0x3FF))[0]
        except struct.error:
            return None
        if not pte & PTE_P:
            return None
        return (pte & 0xFFFFF000) | (lin & 0xFFF)

    def _reverse_map(self):
        """(dict ppn -> lowest vpn, [(phys_base, lin_base) of 4 MiB pages]) now."""
        uc = self.uc
        cr0, cr3, cr4 = (uc.reg_read(X.UC_X86_REG_CR0), uc.reg_read(X.UC_X86_REG_CR3),
                         uc.reg_read(X.UC_X86_REG_CR4))
        if not (self.L.paging and cr0 & CR0_PG):
            return None
        cr3 &= 0xFFFFF000
        if cr3 + 4096 > self.L.ram_size:
            return {}, []
        pd = self.ram[cr3:cr3 + 4096].view("<u4")
        pse = bool(cr4 & CR4_PSE)
        key = [cr3, pse, pd.tobytes()]
        tables = []
        for i in np.flatnonzero(pd & PTE_P):
            e = int(pd[i])
            if pse and e & PTE_PS:
                continue
            a = e & 0xFFFFF000
            if a + 4096 <= self.L.ram_size:
                pt = self.ram[a:a + 4096].view("<u4")
                tables.append((int(i), pt))
                key.append(pt.tobytes())
        key = hash(tuple(key))
        if self._rmap_key == key:
            return self._rmap
        pages, big = {}, []
        for i in np.flatnonzero(pd & PTE_P):
            e = int(pd[i])
            if pse and e & PTE_PS:
                big.append((e & 0xFFC00000, int(i) << 22))
        for i, pt in tables:
            for j in np.flatnonzero(pt & PTE_P):
                ppn, vpn = int(pt[j]) >> 12, (i << 10) | int(j)
                if ppn not in pages or vpn < pages[ppn]:
                    pages[ppn] = vpn
        self._rmap_key, self._rmap = key, (pages, big)
        return self._rmap

    _rmap_key = None
    _rmap = None

    def phys_to_lin(self, phys, rmap=None):
        """Lowest linear address that maps ``phys`` now (None if none does)."""
        rmap = self._reverse_map() if rmap is None else rmap
        if rmap is None:
            return phys
        pages, big = rmap
        vpn = pages.get(phys >> 12)
        cands = [] if vpn is None else [(vpn << 12) | (phys & 0xFFF)]
        for pbase, lbase in big:
            if pbase <= phys < pbase + 0x400000:
                cands.append(lbase + phys - pbase)
        return min(cands) if cands else None

    # -- memory --------------------------------------------------------------
    def _restore_ram(self):
        if self._dirty_unknown or not self.capture_writes:
            diff = np.flatnonzero((self.ram != self.base).reshape(-1, 4096).any(axis=1))
            self._dirty.update(int(p) for p in diff)
            self._dirty_unknown = False
        for p in self._dirty | self._always:
            a = p << 12
            self.ram[a:a + 4096] = self.base[a:a + 4096]
        self._dirty = set()

    def _write_phys(self, addr, data):
        if addr < 0 or addr + len(data) > self.L.ram_size:
            raise OracleError("physical write 0x%x+%d outside RAM" % (addr, len(data)))
        self.ram[addr:addr + len(data)] = np.frombuffer(bytes(data), dtype=np.uint8)
        self._dirty.update(range(addr >> 12, (addr + len(data) + 0xFFF) >> 12))

    def _write_lin(self, lin, data):
        data = bytes(data)
        while data:
            n = min(len(data), 0x1000 - (lin & 0xFFF))
            pa = self._live_translate(lin) if self.L.paging else lin
            if pa is None:
                raise OracleError("linear 0x%x is not mapped" % lin)
            self._write_phys(pa, data[:n])
            lin, data = lin + n, data[n:]

    def read_phys(self, addr, n):
        return bytes(self.ram[addr:addr + n])

    def read_lin(self, lin, n):
        """Read guest memory through the CURRENT page tables (after a run)."""
        out = b""
        while n:
            k = min(n, 0x1000 - (lin & 0xFFF))
            pa = self._live_translate(lin) if self.L.paging else lin
            if pa is None:
                raise OracleError("linear 0x%x is not mapped" % lin)
            out += self.read_phys(pa, k)
            lin, n = lin + k, n - k
        return out

    # -- running -------------------------------------------------------------
    def _enter_ring3(self, regs):
        """IRET from a ring-0 trampoline into ring 3 (quirk Q3); not captured."""
        uc, L = self.uc, self.L
        cs = regs.get("cs", L.ring3_regs["cs"])
        ss = regs.get("ss", L.ring3_regs["ss"])
        cs = cs.sel if isinstance(cs, Seg) else cs
        ss = ss.sel if isinstance(ss, Seg) else ss
        frame = struct.pack("<5I", L.code_lin, cs, 0x2, regs.get("esp", L.regs["esp"]), ss)
        esp = L.kstack_top - len(frame)
        tramp = L.sys_lin + self.TRAMP_PHYS
        # the iretd and its frame are scratch: put back what was there, so
        # that RAM at the start of the test is exactly the layout + the test's
        saved = [(tramp, self.read_lin(tramp, 1)), (esp, self.read_lin(esp, len(frame)))]
        self._write_lin(tramp, b"\xcf")                                  # iretd
        self._write_lin(esp, frame)
        uc.reg_write(X.UC_X86_REG_ESP, esp)
        self._exc = None
        # until-1 must be mapped for ring 3 as well as ring 0 (quirk Q14):
        # code_lin + 1; count=1 stops right after the iretd anyway.
        try:
            uc.emu_start(tramp, L.code_lin + 1, timeout=self.timeout_us, count=1)
        finally:
            for lin, data in saved:
                self._write_lin(lin, data)
        if (self._exc is not None or uc.reg_read(X.UC_X86_REG_CS) != cs
                or uc.reg_read(X.UC_X86_REG_SS) != ss
                or uc.reg_read(X.UC_X86_REG_CR2) != L.regs["cr2"]):
            raise OracleError("ring-3 entry failed: cs=%x ss=%x"
                              % (uc.reg_read(X.UC_X86_REG_CS), uc.reg_read(X.UC_X86_REG_SS)))

    def run(self, code, regs=None, mem=None, phys_mem=None, count=1, code_lin=None):
        """Run ``code`` from the layout's state + overrides; see the module docstring."""
        begin, end, code = self.prepare(code, regs, mem, phys_mem, code_lin)
        uc = self.uc
        self._code_range = (end - len(code), end)
        self._hlt_ends = frozenset(a + 1 for a, b, _ in disasm(code, self.mode, end - len(code))
                                   if b == b"\xf4") if b"\xf4" in code else frozenset()
        guards = [uc.hook_add(UC_HOOK_CODE, self._on_idiv, begin=a, end=a)
                  for a in self._scan_idiv32(code, end - len(code))]
        self._capture = True
        stop = None
        try:
            uc.emu_start(begin, end, timeout=self.timeout_us, count=count or 0)
        except UcError as e:
            if e.errno == UC_ERR_INSN_INVALID and self._exc is None:   # quirk Q18
                self._exc = (Exc(6, None, False), uc.reg_read(X.UC_X86_REG_EIP))
            else:
                stop = "error: %s" % e
        finally:
            self._capture = False
            for h in guards:
                uc.hook_del(h)
        return self._result(stop, end, count)

    def prepare(self, code, regs=None, mem=None, phys_mem=None, code_lin=None):
        """Reset and load everything ``run`` would; return (begin, end, code bytes).

        ``begin``/``end`` are linear addresses for ``self.uc.emu_start``.  For
        callers that drive Unicorn themselves (benchmarks/cpu_mips.py).
        """
        uc, L = self.uc, self.L
        regs = dict(regs or {})
        code_lin = L.code_lin if code_lin is None else code_lin
        if isinstance(code, str):
            code = assemble(code, self.mode, addr=code_lin)
        code = bytes(code)
        self._capture = False
        self._exc = None
        self._writes = []
        # 1. CPU back to the initial context, RAM back to the images
        uc.context_restore(self._ctx0)
        self._restore_ram()
        # 2. memory: physical first, then linear (through the tables now in RAM)
        for addr, data in phys_mem or ():
            self._write_phys(addr, data)
        self._write_lin(code_lin, code)
        for addr, data in mem or ():
            self._write_lin(addr, data)
        # 3. control registers (CR3 always: flushes the TLB, quirk Q11)
        uc.reg_write(X.UC_X86_REG_CR4, regs.pop("cr4", L.regs["cr4"]))
        uc.reg_write(X.UC_X86_REG_CR3, regs.pop("cr3", L.regs["cr3"]))
        if "cr0" in regs:
            uc.reg_write(X.UC_X86_REG_CR0, regs.pop("cr0"))
        if "cr2" in regs:
            uc.reg_write(X.UC_X86_REG_CR2, regs.pop("cr2"))
        uc.ctl_flush_tb()                                     # quirk Q10
        # 4. privilege level and segments
        want_cpl = regs.pop("cpl", None)
        if want_cpl not in (None, 0, 3) or (want_cpl == 3 and not L.paging):
            raise OracleError("%s: cpl=%r is not supported" % (L.name, want_cpl))
        cs_o = regs.get("cs")
        cs_rpl = (cs_o.sel if isinstance(cs_o, Seg) else cs_o or 0) & 3
        if L.paging and (want_cpl == 3 or cs_rpl == 3):
            self._enter_ring3(regs)
            regs.pop("cs", None)
            regs.pop("ss", None)
            for name in ("ds", "es", "fs", "gs"):
                regs.setdefault(name, L.ring3_regs[name])
        seg_check = {}
        for name in SEGS:
            if name in regs:
                v = regs.pop(name)
                sel = v.sel if isinstance(v, Seg) else v
                try:
                    uc.reg_write(_SEG_IDS[name], sel)
                except UcError as e:
                    raise OracleError("Unicorn refuses %s=0x%x: %s" % (name, sel, e))
                if isinstance(v, Seg):
                    seg_check[name] = v
        # 5. general registers and flags
        eip = regs.pop("eip", None)
        for name in GPRS:
            if name in regs:
                uc.reg_write(_GPR_IDS[name], regs.pop(name) & 0xFFFFFFFF)
        if "eflags" in regs:
            uc.reg_write(X.UC_X86_REG_EFLAGS, regs.pop("eflags"))
        if regs:
            raise OracleError("unknown register overrides: %s" % sorted(regs))
        if seg_check:
            ctx = bytes(uc.context_save())
            for name, want in seg_check.items():
                got = _ctx_seg(ctx, SEGS.index(name))
                if got != want:
                    raise OracleError("%s loaded as %s, override says %s" % (name, got, want))
        # 6. where to start and stop (linear)
        cs_base = _ctx_seg(bytes(uc.context_save()), 1).base if eip is not None else 0
        begin = (cs_base + eip) if eip is not None else code_lin
        return begin, code_lin + len(code), code

    # -- IDIV r/m32 guard (quirk Q19) ---------------------------------------------
    def _scan_idiv32(self, code, code_lin):
        """Addresses of 32-bit IDIVs in ``code``; remembers their operand."""
        self._idiv_ops = {}
        if b"\xf7" not in code:
            return []
        import capstone.x86 as CX
        for insn in _cs(self.mode).disasm(code, code_lin):
            if insn.id == CX.X86_INS_IDIV and insn.operands[0].size == 4:
                self._idiv_ops[insn.address] = insn
        return list(self._idiv_ops)

    def _on_idiv(self, uc, address, size, user_data):
        """EDX:EAX = 2**63 and divisor -1 would kill the host (SIGFPE): raise #DE."""
        insn = self._idiv_ops.get(address)
        if insn is None or not self._capture:
            return
        if uc.reg_read(X.UC_X86_REG_EAX) != 0 or uc.reg_read(X.UC_X86_REG_EDX) != 0x80000000:
            return
        import capstone.x86 as CX
        op = insn.operands[0]
        if op.type == CX.X86_OP_REG:
            div = uc.reg_read(getattr(X, "UC_X86_REG_" + insn.reg_name(op.reg).upper()))
        else:
            m = op.mem
            ea = m.disp
            for r, k in ((m.base, 1), (m.index, m.scale)):
                if r:
                    ea += k * uc.reg_read(getattr(X, "UC_X86_REG_" + insn.reg_name(r).upper()))
            ea &= 0xFFFF if insn.addr_size == 2 else 0xFFFFFFFF
            if m.segment:
                seg = insn.reg_name(m.segment)
            elif m.base and insn.reg_name(m.base) in ("esp", "ebp", "sp", "bp"):
                seg = "ss"
            else:
                seg = "ds"
            base = _ctx_seg(bytes(uc.context_save()), SEGS.index(seg)).base
            try:
                div = struct.unpack("<I", self.read_lin((base + ea) & 0xFFFFFFFF, 4))[0]
            except OracleError:
                return                              # Unicorn raises the #PF itself
        if div == 0xFFFFFFFF:
            self._exc = (Exc(0, None, False), uc.reg_read(X.UC_X86_REG_EIP))
            uc.emu_stop()

    def _result(self, stop, end, count):
        uc = self.uc
        vals = uc.reg_read_batch(_READ_IDS)
        res = Result()
        res.regs = dict(zip(GPRS + ("eip", "eflags"), vals[:10]))
        res.sregs = dict(zip(SEGS, vals[10:16]))
        res.cr0, res.cr2, res.cr3, res.cr4 = vals[16:20]
        ctx = bytes(uc.context_save())
        res.hidden = {n: _ctx_seg(ctx, i) for i, n in enumerate(SEGS)}
        res.cpl = struct.unpack_from("<I", ctx, _CTX.hflags)[0] & 3
        res.phys_writes = self._writes
        if self._writes:
            rmap = self._reverse_map()
            res.writes = [(self.phys_to_lin(a, rmap), n, v) for a, n, v in self._writes]
        else:
            res.writes = []
        if self._exc is not None:
            res.exception, res.regs["eip"] = self._exc
            res.stop = "exception"
        else:
            res.exception = None
            lin_eip = res.hidden["cs"].base + res.regs["eip"]
            if stop is not None:
                res.stop = stop
            elif lin_eip == end:
                res.stop = "end"
            elif count and self._ends_in_hlt(lin_eip):
                res.stop = "hlt"
            elif count:
                res.stop = "count"
            else:
                res.stop = "hlt" if self._ends_in_hlt(lin_eip) else "timeout"
        return res

    def _ends_in_hlt(self, lin_eip):
        """Did the run stop right after a HLT?  (Unicorn does not say.)"""
        if lin_eip in self._hlt_ends:
            return True
        if self._code_range[0] <= lin_eip - 1 < self._code_range[1]:
            return False                # inside the code: decoded boundaries are exact
        try:
            return self.read_lin(lin_eip - 1, 1) == b"\xf4"
        except OracleError:
            return False

    _hlt_ends = frozenset()
    _code_range = (0, 0)


# --------------------------------------------------------------------------
# Assembling and disassembling
# --------------------------------------------------------------------------
class AssembleError(Exception):
    pass


_KS = {}
_CS = {}


def _ks(mode):
    if mode not in _KS:
        import keystone
        _KS[mode] = keystone.Ks(keystone.KS_ARCH_X86,
                                keystone.KS_MODE_16 if mode == 16 else keystone.KS_MODE_32)
    return _KS[mode]


def _cs(mode):
    if mode not in _CS:
        import capstone
        md = capstone.Cs(capstone.CS_ARCH_X86,
                         capstone.CS_MODE_16 if mode == 16 else capstone.CS_MODE_32)
        md.detail = True
        _CS[mode] = md
    return _CS[mode]


def disasm(code, mode, addr=0):
    """List of (address, bytes, 'mnemonic op_str') decoded by capstone."""
    md = _cs(mode)
    return [(i.address, bytes(i.bytes), ("%s %s" % (i.mnemonic, i.op_str)).strip())
            for i in md.disasm(bytes(code), addr)]


# Instructions whose stack width / far-pointer / IP width keystone 0.9.2 gets
# wrong by adding an operand-size prefix nobody asked for (found by decoding
# its output with capstone): in 16-bit mode retf, ret n, call rel, push imm,
# push fs/gs; in 32-bit mode ljmp ptr16:32, iret, push/pop es cs ss ds, pushf,
# popf, lgdt/sgdt/lidt/sidt.  With 0x66 each of these changes how many bytes
# go to/from the stack, the size of the far pointer or the EIP truncation.
_WIDTH_SENSITIVE_1 = {0x06, 0x07, 0x0E, 0x16, 0x17, 0x1E, 0x1F, 0x60, 0x61, 0x68, 0x6A,
                      0x9A, 0x9C, 0x9D, 0xC2, 0xC3, 0xC8, 0xC9, 0xCA, 0xCB, 0xCF,
                      0xE8, 0xE9, 0xEA}
_WIDTH_SENSITIVE_0F = {0xA0, 0xA1, 0xA8, 0xA9} | set(range(0x80, 0x90))
_PREFIXES = (0x66, 0x67, 0xF0, 0xF2, 0xF3, 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65)
_SIZE_WORDS_16 = re.compile(r"\b(e[abcd]x|e[sd]i|e[sb]p|dword|fword|pushfd|popfd|pushad|popad|"
                            r"iretd|o32)\b", re.I)
_SIZE_WORDS_32 = re.compile(r"\b([abcd]x|[sd]i|[sb]p|word|o16)\b", re.I)
_DATA = re.compile(r"^(db|\.byte)\s+(.*)$", re.I)
_BARE_STRING_D = re.compile(r"^(?:(rep|repe|repz|repne|repnz)\s+)?(movsd|cmpsd)$", re.I)
_LABEL = re.compile(r"^([A-Za-z_.$][\w.$]*)\s*:\s*")


def _parse(asm, mode):
    """[(kind, text)] with kind 'label' | 'bytes' | 'insn'; keystone-ready text."""
    items = []
    for line in asm.replace("\n", ";").split(";"):
        line = line.split("#")[0].strip()
        while True:
            m = _LABEL.match(line)
            if not m:
                break
            items.append(("label", m.group(1) + ":"))
            line = line[m.end():].strip()
        if not line:
            continue
        m = _DATA.match(line)
        if m:
            items.append(("bytes", ".byte " + m.group(2)))
            continue
        m = _BARE_STRING_D.match(line)
        if m:                           # keystone only knows the SSE movsd/cmpsd
            pfx = {"rep": [0xF3], "repe": [0xF3], "repz": [0xF3], "repne": [0xF2],
                   "repnz": [0xF2], None: []}[m.group(1) and m.group(1).lower()]
            op = 0xA5 if m.group(2).lower() == "movsd" else 0xA7
            items.append(("bytes", ".byte " + ", ".join(
                str(b) for b in pfx + ([0x66] if mode == 16 else []) + [op])))
            continue
        items.append(("insn", line))
    return items


def _width_sensitive(insn):
    """True when the opcode's stack/far-pointer/IP width follows the operand size."""
    b = bytes(insn.bytes)
    i = 0
    while i < len(b) and b[i] in _PREFIXES:
        i += 1
    if i >= len(b):
        return False
    op = b[i]
    if op in _WIDTH_SENSITIVE_1:
        return True
    if op == 0x0F and i + 1 < len(b):
        if b[i + 1] in _WIDTH_SENSITIVE_0F:
            return True
        if b[i + 1] == 0x01 and i + 2 < len(b) and ((b[i + 2] >> 3) & 7) in (0, 1, 2, 3):
            return True                                    # sgdt sidt lgdt lidt
    if op == 0xFF and i + 1 < len(b) and ((b[i + 1] >> 3) & 7) in (2, 3, 4, 5, 6):
        return True                                        # call/jmp near+far, push
    return False


def _opcode_index(raw):
    i = 0
    while i < len(raw) and raw[i] in _PREFIXES:
        i += 1
    return i


def assemble(asm, mode, addr=0, check=True):
    """Assemble Intel-syntax ``asm`` for a 16- or 32-bit code segment at ``addr``.

    Statements are separated by newlines or ';' ('#' starts a comment);
    labels (``x:``) work.  ``db a, b, ...`` emits raw bytes (keystone's
    ``.byte``); bare ``movsd``/``cmpsd`` (which keystone only knows as SSE
    instructions) are emitted as the string instructions.  With ``check``
    keystone's output is decoded with capstone statement by statement and
    rejected (AssembleError) when:
      * capstone cannot decode it, or the statements do not cover the bytes;
      * keystone added an operand-size prefix (0x66) to a stack-width,
        far-pointer or branch instruction the source did not size explicitly
        (keystone 0.9.2 bugs: 16-bit ``retf``/``ret n``/``call``/``push imm``,
        32-bit ``ljmp``/``iret``/``push ds``/``pushf``/``lgdt`` ...);
      * in 16-bit mode a memory operand holds an absolute address > 0xFFFF
        without an address-size prefix (keystone truncates it silently).
    Work around with ``db`` bytes or the helpers far_jmp / far_call / retf.
    Keystone also rejects ``jmp SEL:OFF``, ``call SEL:OFF``, ``jmp far [m]``,
    ``retfw/retfd``, ``iretw``; use ``ljmp``/``lcall`` (16-bit mode only for
    the immediate form), ``ljmp [m]`` / ``lcall [m]``, or bytes.
    """
    items = _parse(asm, mode)
    try:
        enc, _ = _ks(mode).asm("\n".join(t for _, t in items), addr)
    except Exception as e:           # keystone.KsError
        raise AssembleError("keystone (%d-bit) rejects %r: %s" % (mode, asm, e)) from None
    code = bytes(enc or b"")
    if not check:
        return code
    md = _cs(mode)
    words = _SIZE_WORDS_16 if mode == 16 else _SIZE_WORDS_32
    off = 0
    for kind, s in items:
        if kind == "label":
            continue
        if kind == "bytes":
            off += len([x for x in s[len(".byte"):].split(",") if x.strip()])
            continue
        if s.startswith("."):
            raise AssembleError("directive %r: pass check=False" % s)
        insns = list(md.disasm(code[off:], addr + off, 1))
        if not insns:
            raise AssembleError("capstone cannot decode keystone's output for %r: %s"
                                % (s, code[off:off + 16].hex()))
        insn = insns[0]
        raw = bytes(insn.bytes)
        if _width_sensitive(insn):
            has66 = 0x66 in raw[:insn.size - 1] and raw.index(0x66) < _opcode_index(raw)
            explicit = bool(words.search(re.sub(r"\[[^\]]*\]", "", s)))
            if has66 != explicit:
                raise AssembleError(
                    "keystone mis-assembles %r in %d-bit mode as %s (%s %s): %s operand-size "
                    "prefix changes its stack/far-pointer/IP width; emit it with db"
                    % (s, mode, raw.hex(), insn.mnemonic, insn.op_str,
                       "an unrequested" if has66 else "a missing"))
        if mode == 16 and "[" in s and 0x67 not in raw[:4]:
            for num in re.findall(r"0x[0-9a-f]+|\b\d+\b", s[s.index("["):], re.I):
                if int(num, 0) > 0xFFFF:
                    raise AssembleError("keystone truncates the address in %r to 16 bits "
                                        "(%s); use db" % (s, raw.hex()))
        off += insn.size
    if off != len(code):
        raise AssembleError("statements of %r do not cover keystone's %d bytes (%d)"
                            % (asm, len(code), off))
    return code


def far_jmp(sel, off, mode):
    """JMP ptr16:16/32 (EA) bytes for a code segment of ``mode`` bits."""
    return b"\xea" + struct.pack("<H" if mode == 16 else "<I", off) + struct.pack("<H", sel)


def far_call(sel, off, mode):
    """CALL ptr16:16/32 (9A) bytes."""
    return b"\x9a" + struct.pack("<H" if mode == 16 else "<I", off) + struct.pack("<H", sel)


def retf(imm=None):
    """RETF / RETF imm16 with the segment's default operand size."""
    return b"\xcb" if imm is None else b"\xca" + struct.pack("<H", imm)
