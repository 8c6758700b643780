"""Building boot images for the kernel-boot tests: NASM and a tiny ELF writer.

Guest kernels live in this directory as assembly source inside Python
modules; they are assembled at test time with NASM (Debian's ``nasm``, the
same assembler the BIOS is built with) into flat binaries, and wrapped here
into ELF executables.  The ELF writer is deliberately simple and explicit so
that tests can also build broken images (segments past RAM, truncated
files, bad headers) by changing one argument.
"""
import os
import shutil
import struct
import subprocess
import tempfile


class NasmMissing(RuntimeError):
    pass


def nasm(source, defines=None):
    """Assemble ``source`` (NASM syntax, flat binary) with ``-Dname=value`` defines."""
    exe = shutil.which("nasm")
    if exe is None:
        raise NasmMissing("the kernel-boot tests need NASM: apt-get install nasm")
    with tempfile.TemporaryDirectory(prefix="emu-guest-") as d:
        src = os.path.join(d, "guest.asm")
        out = os.path.join(d, "guest.bin")
        with open(src, "w") as f:
            f.write(source)
        cmd = [exe, "-f", "bin", "-o", out, src]
        for k, v in (defines or {}).items():
            cmd.append("-D%s=%s" % (k, v))
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError("nasm failed: %s" % (p.stderr or p.stdout))
        with open(out, "rb") as f:
            return f.read()


def elf32(segments, entry, machine=3, elf_class=1, etype=2, phoff=52, extra=b""):
    """An ELF32 little-endian executable.

    segments: [(paddr, data, memsz)] or [(paddr, data, memsz, vaddr)]; each
    becomes one PT_LOAD whose file bytes start on a 4 KiB boundary.
    """
    phnum = len(segments)
    header_end = phoff + 32 * phnum
    pos = (header_end + 0xFFF) & ~0xFFF
    phdrs = b""
    body = bytearray()
    for seg in segments:
        paddr, data, memsz = seg[:3]
        vaddr = seg[3] if len(seg) > 3 else paddr
        off = pos + len(body)
        phdrs += struct.pack("<IIIIIIII", 1, off, vaddr, paddr, len(data), memsz, 7, 0x1000)
        body += data
        body += bytes((-len(body)) % 0x1000)
    ident = b"\x7fELF" + bytes([elf_class, 1, 1]) + bytes(9)
    ehdr = struct.pack("<16sHHIIIIIHHHHHH", ident, etype, machine, 1, entry, phoff, 0, 0, 52,
                       32, phnum, 40, 0, 0)
    head = bytearray(ehdr)
    head += bytes(phoff - len(head)) if phoff > len(head) else b""
    head = head[:phoff] + phdrs
    head += bytes(pos - len(head))
    return bytes(head) + bytes(body) + extra


class BareMachine:
    """The parts of a Machine the kernel loaders use (config, phys, ports,
    cpu), without devices or a BIOS: a unit-test bench for emu/boot.

    COM1's data register and port 0xE9 are captured (``out[port]``); COM1's
    line status register is unclaimed and so reads 0xFF (transmitter ready).
    The low BIOS ROM sits at 0xF0000 as on the real machine.
    """

    def __init__(self, memory_mb=32, kernel=None, initrd=None, append=""):
        from emu.cpu.cpu import CPU
        from emu.devices.portbus import PortBus
        from emu.machine import MachineConfig
        from emu.mmu.physmem import PhysMem
        self.config = MachineConfig(memory_mb=memory_mb, kernel=kernel, initrd=initrd,
                                    append=append)
        self.phys = PhysMem(memory_mb << 20)
        self.phys.add_rom(0xF0000, b"\xf4" * 0x10000, name="bios")
        self.ports = PortBus()
        self.out = {0x3F8: bytearray(), 0xE9: bytearray()}
        for port in self.out:
            self.ports.register(port, 1, read=lambda p, s: 0,
                                write=lambda p, s, v, _port=port: self.out[_port].append(v & 0xFF),
                                name="capture-%x" % port)
        self.cpu = CPU(phys=self.phys, ports=self.ports)

    def text(self, port=0xE9):
        return self.out[port].decode("latin-1")

    def boot(self, max_insns=2_000_000):
        """prepare + handoff + run to the guest's HLT; returns (plan, stop reason)."""
        from emu import boot
        plan = boot.prepare(self)
        boot.handoff(self, plan)
        return plan, self.cpu.run(max_insns)
