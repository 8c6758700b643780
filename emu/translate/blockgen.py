"""From a batch of guest blocks (their code bytes) to LLVM modules.

Everything here is a pure function of the blocks' bytes, addresses and mode
(no CPU state): the JIT runs it on the guest's thread and hands the module
texts to LLVM, here or in the compile worker.

A block spec is a tuple ``(name, code, eip0, lin0, xmax, span, n)``: the
block's tier-1 name (jit._prepare), its code bytes, its first EIP and linear
address, CS's effective limit, the bytes it covers and its instruction count.
"""
from ..cpu.decode import decode
from ..cpu.faults import CPUFault
from .ir import BlockEmitter, Unsupported, module_text
from .semantics import emit_instruction


def decode_block(code, eip0, n):
    """The block's n instructions, decoded from its bytes (the interpreter
    decoded the same bytes); CPUFault if they run past them."""
    def fetch(off):
        i = (off - eip0) & 0xFFFFFFFF
        if i >= len(code):
            raise CPUFault(13, 0)
        return code[i]

    insns = []
    pc = eip0
    for _ in range(n):
        ins = decode(fetch, pc, True)
        insns.append(ins)
        pc = ins.next_eip & 0xFFFFFFFF
    return insns


def emit_block(name, insns, eip0, lin0, xmax, span):
    """IR emitter for the block: native semantics where a family has them,
    the interpreter's closure through emu_op for every other instruction.
    Returns (emitter, instructions covered)."""
    n = len(insns)
    e = BlockEmitter(name, eip0, lin0, n, xmax)
    e.span = span
    for i, ins in enumerate(insns):
        e.begin(i, ins)
        cp = e.checkpoint()
        try:
            emit_instruction(e, ins)
        except Unsupported:
            e.rollback(cp)
            e.helper_op(ins)
        e.finish()
        if e.ended:
            break
    if not e.ended:
        e.exit_direct(insns[-1].next_eip & 0xFFFFFFFF, n)
    return e, n


def build_modules(specs, optimise_all=False):
    """IR modules for a batch of block specs.

    Blocks that loop on themselves (and every block with ``optimise_all``, a
    tier up) get a module each, to be compiled optimised; the others share
    one plain module and count their entries (for the tier up).  Returns
    ``(modules, rejected)``: modules as ``(names, text, metas, optimise)``,
    rejected the names of blocks whose bytes do not decode."""
    plain, loops, rejected = [], [], []
    for name, code, eip0, lin0, xmax, span, n in specs:
        try:
            insns = decode_block(code, eip0, n)
        except CPUFault:
            rejected.append(name)
            continue
        e, count = emit_block(name, insns, eip0, lin0, xmax, span)
        e.count_entries = not (e.has_loop or optimise_all)
        meta = {"n": count, "slots": e.slots, "ops": e.helper_ops, "hot": e.count_entries}
        (loops if e.has_loop or optimise_all else plain).append((name, e.function(), meta))
    modules = [([name], module_text([text], inline_routines=True), {name: meta}, True)
               for name, text, meta in loops]
    if plain:
        modules.append(([x[0] for x in plain], module_text([x[1] for x in plain]),
                        {x[0]: x[2] for x in plain}, False))
    return modules, rejected
