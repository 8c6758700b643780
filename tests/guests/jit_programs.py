"""Guest programs for the tier-1 tests (tests/test_jit*.py), PROT32_PAGED layout.

``random_program(seed)`` writes a random program from the instruction
families tier 1 compiles (emu/translate/semantics.py: ALU, INC/DEC, NOT/NEG,
MOV/LEA/MOVZX/MOVSX/CWDE/CDQ/SETcc/CMOVcc/XCHG, PUSH/POP/LEAVE, Jcc/JMP/CALL/
RET), in every operand size and form (register, immediate, memory through
ESI/EDI/absolute/FS, page-crossing accesses), mixed with instructions tier 1
leaves to the interpreter (shifts, multiplies, bit tests, BSWAP, string
moves) so that native blocks end and resume in the middle of interpreter
blocks; the body runs in a loop (chaining), calls local functions, branches
on every condition code and may end in a fault (#PF on an unmapped or
read-only page, #GP beyond FS's limit).

Registers at the start: ESI = data page 0, EDI = 16 bytes below the end of
data page 1 (its accesses cross into page 2, mapped to a lower frame: the
data pages are mapped in reverse), FS = the small data segment (base
data_lin, limit 0xFFF).  The loop counter lives at data_lin + 0x7FFC.
"""
import random
import struct

from tests.layout import PROT32_PAGED as P

DATA = P.data_lin[0]
COUNTER = DATA + 0x7FFC
RO = P.extra["ro_lin"]
UNMAPPED = P.extra["unmapped_lin"]

R32 = ("eax", "ebx", "ecx", "edx", "ebp")
R16 = ("ax", "bx", "cx", "dx", "bp")
R8 = ("al", "bl", "cl", "dl", "ah", "bh", "ch", "dh")
SRC32 = R32 + ("esi", "edi", "esp")
CONDS = ("o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g")
ALU = ("add", "or", "adc", "sbb", "and", "sub", "xor", "cmp", "test")
PTR = {1: "byte ptr", 2: "word ptr", 4: "dword ptr"}


def regs():
    """Initial registers of the programs."""
    return dict(esi=DATA, edi=DATA + 0x1000 - 0x10, fs=P.extra["sel_data_small"],
                eax=0x89ABCDEF, ebx=0x7FFFFFFF, ecx=0x80000000, edx=0xFFFFFFFF, ebp=0x12345678)


def mem(seed=0, loops=3):
    """Data the programs read: random bytes in pages 0-2, the loop counter."""
    rnd = random.Random(seed ^ 0x5EED)
    data = bytes(rnd.getrandbits(8) for _ in range(0x3000))
    return [(DATA, data), (COUNTER, struct.pack("<I", loops))]


class _Gen:
    def __init__(self, seed, faults):
        self.r = random.Random(seed)
        self.faults = faults
        self.lines = []
        self.nlab = 0
        self.funcs = []

    def label(self):
        self.nlab += 1
        return "L%d" % self.nlab

    def imm(self, size):
        r = self.r
        k = r.random()
        if k < 0.3:
            v = r.choice((0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF,
                          0x80000000, 0xFFFFFFFF))
        elif k < 0.6:
            v = r.randrange(-128, 128)
        else:
            v = r.getrandbits(32)
        return v & (0xFF, 0xFFFF, 0, 0xFFFFFFFF)[size - 1]

    def reg(self, size, src=False):
        r = self.r
        if size == 4:
            return r.choice(SRC32 if src else R32)
        return r.choice(R16 if size == 2 else R8)

    def mem(self, size):
        r = self.r
        k = r.random()
        if k < 0.35:
            a = "[esi + %#x]" % r.randrange(0, 0x7F0)
        elif k < 0.6:
            a = "[edi + %#x]" % r.randrange(0, 0x20)        # around a page boundary
        elif k < 0.75:
            a = "[%#x]" % (DATA + r.randrange(0, 0x2FF0))
        elif k < 0.9:
            a = "fs:[%#x]" % r.randrange(0, 0x1000 - size + 1)
        else:
            a = "[esi + %#x]" % (0x1000 - r.randrange(1, 4))   # crosses into page 1
        return "%s %s" % (PTR[size], a)

    def size(self):
        return self.r.choice((1, 2, 4, 4, 4))

    def emit(self, s):
        self.lines.append("    " + s)

    # --- instruction kinds -----------------------------------------------------
    def alu(self):
        r = self.r
        op, size = r.choice(ALU), self.size()
        form = r.choice(("rr", "ri", "rm", "mr", "mi"))
        if op == "test" and form == "rm":
            form = "mr"
        d = self.reg(size)
        if form == "rr":
            self.emit("%s %s, %s" % (op, d, self.reg(size, src=True)))
        elif form == "ri":
            self.emit("%s %s, %#x" % (op, d, self.imm(size)))
        elif form == "rm":
            self.emit("%s %s, %s" % (op, d, self.mem(size)))
        elif form == "mr":
            self.emit("%s %s, %s" % (op, self.mem(size), self.reg(size, src=True)))
        else:
            self.emit("%s %s, %#x" % (op, self.mem(size), self.imm(size)))

    def unary(self):
        r = self.r
        op, size = r.choice(("inc", "dec", "not", "neg")), self.size()
        self.emit("%s %s" % (op, self.reg(size) if r.random() < 0.5 else self.mem(size)))

    def mov(self):
        r = self.r
        size = self.size()
        k = r.randrange(7)
        d = self.reg(size)
        if k == 0:
            self.emit("mov %s, %s" % (d, self.reg(size, src=True)))
        elif k == 1:
            self.emit("mov %s, %#x" % (d, self.imm(size)))
        elif k == 2:
            self.emit("mov %s, %s" % (d, self.mem(size)))
        elif k == 3:
            self.emit("mov %s, %s" % (self.mem(size), self.reg(size, src=True)))
        elif k == 4:
            self.emit("mov %s, %#x" % (self.mem(size), self.imm(size)))
        elif k == 5:                                          # moffs forms
            acc = {1: "al", 2: "ax", 4: "eax"}[size]
            a = "%s [%#x]" % (PTR[size], DATA + r.randrange(0, 0x2FF0))
            self.emit("mov %s, %s" % ((acc, a) if r.random() < 0.5 else (a, acc)))
        else:
            self.emit("lea %s, [%s + %s*%d + %#x]" % (
                self.reg(4), r.choice(SRC32), r.choice(R32), r.choice((1, 2, 4, 8)),
                r.getrandbits(32)))

    def ext(self):
        r = self.r
        op = r.choice(("movzx", "movsx"))
        k = r.randrange(4)
        if k == 0:
            self.emit("%s %s, %s" % (op, self.reg(4), self.reg(1)))
        elif k == 1:
            self.emit("%s %s, %s" % (op, self.reg(4), r.choice(R16 + ("si", "di"))))
        elif k == 2:
            self.emit("%s %s, %s" % (op, self.reg(4), self.mem(r.choice((1, 2)))))
        else:
            self.emit("%s %s, %s" % (op, self.reg(2), self.reg(1)
                                     if r.random() < 0.5 else self.mem(1)))

    def cond(self):
        r = self.r
        cc = r.choice(CONDS)
        k = r.randrange(4)
        if k == 0:
            self.emit("set%s %s" % (cc, self.reg(1)))
        elif k == 1:
            self.emit("set%s %s" % (cc, self.mem(1)))
        elif k == 2:
            self.emit("cmov%s %s, %s" % (cc, self.reg(4), self.reg(4, src=True)))
        else:
            self.emit("cmov%s %s, %s" % (cc, self.reg(4), self.mem(4)))

    def misc(self):
        r = self.r
        k = r.randrange(6)
        if k == 0:
            self.emit(r.choice(("cwde", "cdq", "nop")))
        elif k == 1:
            size = self.size()
            self.emit("xchg %s, %s" % (self.reg(size), self.reg(size)))
        elif k == 2:
            size = self.size()
            self.emit("xchg %s, %s" % (self.mem(size), self.reg(size)))
        elif k == 3:
            # push/pop pair around one more instruction
            s = r.randrange(4)
            if s == 0:
                self.emit("push %s" % r.choice(SRC32))
            elif s == 1:
                self.emit("push %#x" % self.imm(4))
            elif s == 2:
                self.emit("push %#x" % (r.randrange(-128, 128) & 0xFFFFFFFF))
            else:
                self.emit("push %s" % self.mem(4))
            self.one(flow=False)
            self.emit("pop %s" % self.reg(4))
        elif k == 4:
            # a stack frame: ENTER-like prologue, LEAVE
            self.emit("push ebp")
            self.emit("mov ebp, esp")
            self.emit("push %s" % self.reg(4))
            self.emit("mov dword ptr [ebp - 4], %#x" % self.imm(4))
            self.emit("add %s, dword ptr [ebp - 4]" % self.reg(4))
            self.emit("leave")
        else:
            self.other()

    def other(self):
        """The other families: shifts, multiplies and divides, bit tests,
        strings, flags, segment registers, the clock, ports, BCD ..."""
        r = self.r
        k = r.randrange(12)
        size = self.size()
        d = self.reg(size) if r.random() < 0.6 else self.mem(size)
        if k == 0:
            op = r.choice(("shl", "shr", "sar", "rol", "ror", "rcl", "rcr"))
            cnt = r.choice(("1", "cl", str(r.randrange(0, 32)), "0"))
            self.emit("%s %s, %s" % (op, d, cnt))
        elif k == 1:
            if size == 1:
                size, d = 4, self.reg(4)
            src = self.reg(size, src=True)
            if src in ("si", "di", "esi", "edi", "esp"):
                src = self.reg(size)
            self.emit("%s %s, %s, %s" % (r.choice(("shld", "shrd")), d, src,
                                         r.choice(("cl", str(r.randrange(0, 32))))))
        elif k == 2:
            op = r.choice(("mul", "imul"))
            self.emit("%s %s" % (op, d))
            if r.random() < 0.5:
                self.emit("imul %s, %s, %#x" % (self.reg(4), self.reg(4, src=True),
                                                self.imm(4)))
        elif k == 3:
            # a divide that cannot overflow, or one that may (#DE ends the program)
            if r.random() < 0.8:
                self.emit("xor edx, edx")
                self.emit("mov ebx, %#x" % (self.imm(4) | 1))
                self.emit("%s ebx" % r.choice(("div", "idiv")))
            else:
                self.emit("%s %s" % (r.choice(("div", "idiv")), d))
        elif k == 4:
            op = r.choice(("bt", "bts", "btr", "btc"))
            if size == 1:
                size, d = 4, self.reg(4)
            if r.random() < 0.5:
                self.emit("%s %s, %d" % (op, d, r.randrange(0, 64)))
            else:
                self.emit("and ecx, 0x3ff")
                self.emit("%s %s, %s" % (op, d, {2: "cx", 4: "ecx"}[size]))
        elif k == 5:
            if size == 1:
                size = 4
            self.emit("%s %s, %s" % (r.choice(("bsf", "bsr")), self.reg(size), self.mem(size)
                                     if r.random() < 0.5 else self.reg(size, src=True)))
        elif k == 6:
            self.emit(r.choice(("bswap ecx", "cld", "std", "cmc", "stc", "clc",
                                "lahf", "sahf", "pushfd", "popfd", "cbw", "cwd", "cwde", "cdq",
                                "daa", "das", "aaa", "aas", "salc" if False else "nop")))
            if self.lines[-1].strip() == "pushfd":
                self.emit("pop %s" % self.reg(4))
            elif self.lines[-1].strip() == "popfd":
                self.lines[-1] = "    push %#x" % (r.getrandbits(12) & 0xCD5 | 2)
                self.emit("popfd")
        elif k == 7:
            # string operations over the data pages, forward or backward
            self.emit("push esi")
            self.emit("push edi")
            self.emit("lea edi, [esi + %#x]" % r.randrange(0x800, 0x1800))
            self.emit("mov ecx, %d" % r.randrange(0, 20))
            self.emit(r.choice(("cld", "std")))
            self.emit("%s%s" % (r.choice(("", "rep ", "repe ", "repne ")),
                                r.choice(("movsb", "movsd", "stosb", "stosd", "lodsb",
                                          "cmpsb", "scasd", "movsw"))))
            self.emit("cld")
            self.emit("pop edi")
            self.emit("pop esi")
        elif k == 8:
            # segment registers: a data selector reloaded, read back
            self.emit("mov ax, %s" % r.choice(("ds", "es", "ss", "fs")))
            self.emit("mov %s, ax" % r.choice(("ds", "es", "gs")))
            self.emit("db 0x1e, 0x0f, 0xa9")                 # push ds; pop gs (keystone: 66 1e)
        elif k == 9:
            # the clock: the TSC read in the middle of a block is exact
            self.emit("rdtsc")
            if r.random() < 0.5:
                self.emit("in al, 0x80")
                self.emit("out 0x80, al")
        elif k == 10:
            op = r.choice(("xadd", "cmpxchg"))
            self.emit("%s %s, %s" % (op, d, self.reg(size)))
        else:
            self.emit(r.choice(("xlatb", "cpuid", "lea eax, [eax]", "enter 8, 0\n    leave",
                                "pushad\n    popad", "jecxz $+2", "loop $+2",
                                "movd mm0, eax" if False else "fnop")))

    def flow(self):
        r = self.r
        k = r.randrange(4)
        if k == 0:
            lab = self.label()
            self.emit("j%s %s" % (r.choice(CONDS), lab))
            for _ in range(r.randrange(1, 3)):
                self.one(flow=False)
            self.lines.append(lab + ":")
        elif k == 1:
            lab = self.label()
            self.emit("jmp %s" % lab)
            self.one(flow=False)
            self.lines.append(lab + ":")
        elif k == 2:
            fn = "F%d" % len(self.funcs)
            body = []
            saved, self.lines = self.lines, body
            for _ in range(r.randrange(1, 4)):
                self.one(flow=False, stack=False)
            self.lines = saved
            self.funcs.append((fn, body, r.choice(("ret", "ret", "ret 0"))))
            if r.random() < 0.7:
                self.emit("call %s" % fn)
            else:
                self.emit("mov edx, offset %s" % fn if False else "lea edx, [%s]" % fn)
                self.emit("call edx")
        else:
            fn = "F%d" % len(self.funcs)
            self.funcs.append((fn, [], "ret 4"))
            self.emit("push %#x" % self.imm(4))
            self.emit("call %s" % fn)

    def one(self, flow=True, stack=True):
        r = self.r
        kinds = [self.alu] * 5 + [self.unary, self.mov, self.mov, self.ext, self.cond,
                                  self.cond]
        if stack:
            kinds += [self.misc]
        if flow:
            kinds += [self.flow, self.flow]
        r.choice(kinds)()

    def fault(self):
        r = self.r
        k = r.randrange(4)
        if k == 0:
            self.emit("mov eax, dword ptr [%#x]" % (UNMAPPED + r.randrange(0, 0x1000, 4)))
        elif k == 1:
            self.emit("add dword ptr [%#x], ebx" % (RO + r.randrange(0, 0x1000, 4)))
        elif k == 2:
            self.emit("mov dword ptr fs:[%#x], ecx" % (0x1000 - r.randrange(1, 4)))
        else:
            self.emit("mov esp, %#x" % (RO + 0x800))
            self.emit("push eax")                           # #PF in a push


def random_program(seed, n=30, faults=0.2):
    """(assembler text, regs, mem) of a random tier-1 program."""
    g = _Gen(seed, faults)
    g.lines.append("top:")
    for i in range(n):
        g.one()
        if g.r.random() < faults / n:
            g.fault()
    g.emit("dec dword ptr [%#x]" % COUNTER)
    g.emit("jnz top")
    g.emit("jmp the_end")
    for fn, body, ret in g.funcs:
        g.lines.append(fn + ":")
        g.lines.extend(body)
        g.emit(ret)
    g.lines.append("the_end:")
    g.emit("nop")
    return "\n".join(g.lines) + "\n", regs(), mem(seed)


# --- a few fixed programs -------------------------------------------------------------

LOOP_SUM = """
    mov ecx, 300
    xor eax, eax
    mov esi, {data:#x}
next:
    add eax, ecx
    mov [esi], eax
    add esi, 4
    test ecx, 3
    jnz skip
    call fn
skip:
    dec ecx
    jnz next
    jmp done
fn:
    push ebx
    mov ebx, [esi - 4]
    adc ebx, 7
    setc dl
    pop ebx
    ret
done:
    nop
""".format(data=DATA)

# memcpy + checksum + compare loops, byte and dword, with flags carried across blocks
MEMOPS = """
    mov esi, {data:#x}
    lea edi, [esi + 0x2000]
    mov ecx, 0x400
copy:
    mov eax, [esi + ecx*4 - 4]
    not eax
    mov [edi + ecx*4 - 4], eax
    dec ecx
    jnz copy
    xor edx, edx
    mov ecx, 0x1000
sum:
    movzx eax, byte ptr [edi + ecx - 1]
    add edx, eax
    adc edx, 0
    rol edx, 1
    loop sum
    mov ebx, 0x100
cmp_loop:
    mov al, [esi + ebx]
    cmp al, [edi + ebx]
    setne ah
    sbb ebp, 0
    dec ebx
    jns cmp_loop
    nop
""".format(data=DATA)

# a recursive function: calls and returns through the stack, frames with LEAVE
RECURSE = """
    mov eax, 12
    call fib
    jmp done
fib:
    push ebp
    mov ebp, esp
    push ebx
    cmp eax, 2
    jb small
    push eax
    dec eax
    call fib
    mov ebx, eax
    pop eax
    sub eax, 2
    call fib
    add eax, ebx
    jmp out
small:
    mov eax, 1
out:
    mov ebx, [ebp - 4]
    leave
    ret
done:
    nop
"""
