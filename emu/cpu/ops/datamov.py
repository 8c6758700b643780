"""Data movement: MOV forms, LEA, NOP (more of the family below)."""
from ..operands import operand_get, operand_set, ea, reg_set, MASKS


def mov(cpu, insn):
    R = cpu.R
    size = insn.size
    dform, sform = insn.row.operands[:2]
    mem = cpu.mem
    if dform[0] == "O":        # moffs store: mov [moffs], AL/eAX
        s = insn.seg
        off = insn.imm
        wr = mem.WR[size]
        get = operand_get(cpu, insn, sform, size)
        return lambda: wr(s, off, get())
    if sform[0] == "O":        # moffs load
        s = insn.seg
        off = insn.imm
        rd = mem.RD[size]
        put = operand_set(cpu, insn, dform, size)
        return lambda: put(rd(s, off))
    # register <- register / memory / immediate, 32-bit fast forms
    if size == 4:
        dk = dform[0]
        d = None
        if dk == "G":
            d = insn.reg
        elif dk == "Z":
            d = insn.opcode & 7
        elif dk == "E" and insn.mod == 3:
            d = insn.rm
        if d is not None:
            if sform[0] == "I":
                v = insn.imm & 0xFFFFFFFF

                def f():
                    R[d] = v
                return f
            if sform[0] == "G" or (sform[0] == "E" and insn.mod == 3):
                s = insn.reg if sform[0] == "G" else insn.rm

                def g():
                    R[d] = R[s]
                return g
            addr = ea(cpu, insn)
            rd32 = mem.rd32
            sg = insn.seg

            def h():
                R[d] = rd32(sg, addr())
            return h
        if dk == "E" and sform[0] == "G":
            addr = ea(cpu, insn)
            wr32 = mem.wr32
            sg = insn.seg
            s = insn.reg

            def st():
                wr32(sg, addr(), R[s])
            return st
    get = operand_get(cpu, insn, sform, size)
    put = operand_set(cpu, insn, dform, size)
    return lambda: put(get())


def lea(cpu, insn):
    addr = ea(cpu, insn)
    put = reg_set(cpu, insn.reg, insn.opsize >> 3)
    mask = MASKS[insn.opsize >> 3]
    return lambda: put(addr() & mask)


def nop(cpu, insn):
    return lambda: None
