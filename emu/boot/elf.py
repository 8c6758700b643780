"""Just enough ELF to load a 32-bit kernel: the file header, program headers
and section headers, every field checked against the file before use.

A kernel image is untrusted input like anything else the guest brings: a
table that points past the end of the file, a segment whose file part is
larger than its memory part or that wraps at 4 GiB, gives a one-line
``ValueError`` (the loader prefixes the file name), never an IndexError or a
struct.error.
"""
import struct

ELF_MAGIC = b"\x7fELF"
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB = 1
ET_EXEC, ET_DYN = 2, 3
EM_386 = 3
PT_LOAD = 1

_EHDR = struct.Struct("<16sHHIIIIIHHHHHH")     # Elf32_Ehdr, 52 bytes
_PHDR = struct.Struct("<IIIIIIII")             # Elf32_Phdr, 32 bytes
_SHDR_SIZE = 40                                # Elf32_Shdr
_MACHINES = {0x3E: "x86-64", 0x28: "ARM", 0xB7: "AArch64", 0xF3: "RISC-V", 0x08: "MIPS",
             0x14: "PowerPC", 0x15: "PowerPC64", 0x2B: "SPARC v9"}


def is_elf(data):
    return data[:4] == ELF_MAGIC


class Segment:
    """One PT_LOAD program header."""

    __slots__ = ("index", "offset", "vaddr", "paddr", "filesz", "memsz", "flags")

    def __init__(self, index, offset, vaddr, paddr, filesz, memsz, flags):
        self.index = index
        self.offset = offset
        self.vaddr = vaddr
        self.paddr = paddr
        self.filesz = filesz
        self.memsz = memsz
        self.flags = flags

    def __repr__(self):
        return "<PT_LOAD %d paddr 0x%x vaddr 0x%x filesz 0x%x memsz 0x%x>" % (
            self.index, self.paddr, self.vaddr, self.filesz, self.memsz)


class ELFImage:
    """A parsed, checked ELF32 i386 executable."""

    def __init__(self, data, etype, entry, segments, shoff, shentsize, shnum, shstrndx):
        self.data = data
        self.type = etype
        self.entry = entry
        self.segments = segments        # PT_LOAD segments with memsz > 0, file order
        self.shoff = shoff              # section header table (0/0 when absent or unusable)
        self.shentsize = shentsize
        self.shnum = shnum
        self.shstrndx = shstrndx

    def segment_bytes(self, seg):
        """The file part of a segment (checked in parse())."""
        return self.data[seg.offset:seg.offset + seg.filesz]

    def entry_physical(self):
        """The entry point as a physical address.

        Kernels link at virtual addresses and load at physical ones (p_paddr).
        As GRUB does, an entry that falls inside a segment's virtual range is
        moved by that segment's (paddr - vaddr); otherwise it is taken as is
        (Linux's i386 vmlinux already gives ENTRY(phys_startup_32))."""
        e = self.entry
        for s in self.segments:
            if s.vaddr <= e < s.vaddr + s.memsz:
                return (e - s.vaddr + s.paddr) & 0xFFFFFFFF
        return e

    def section_headers(self):
        """The raw section header table, or b'' when the file has none."""
        if not self.shnum:
            return b""
        return self.data[self.shoff:self.shoff + self.shnum * self.shentsize]


def parse(data):
    """Parse and check an ELF32 little-endian i386 executable; raises ValueError."""
    n = len(data)
    if n < 16 or data[:4] != ELF_MAGIC:
        raise ValueError("not an ELF file")
    if data[4] == ELFCLASS64:
        raise ValueError("64-bit ELF: emu is an IA-32 (32-bit) machine; use a 32-bit kernel")
    if data[4] != ELFCLASS32:
        raise ValueError("ELF class %d is neither 32- nor 64-bit" % data[4])
    if data[5] != ELFDATA2LSB:
        raise ValueError("big-endian ELF (EI_DATA=%d): not an x86 kernel" % data[5])
    if n < _EHDR.size:
        raise ValueError("truncated ELF header (%d bytes, need %d)" % (n, _EHDR.size))
    (_, etype, machine, _version, entry, phoff, shoff, _flags, _ehsize, phentsize, phnum,
     shentsize, shnum, shstrndx) = _EHDR.unpack_from(data, 0)
    if machine != EM_386:
        raise ValueError("ELF for %s (e_machine %d), not i386"
                         % (_MACHINES.get(machine, "another machine"), machine))
    if etype not in (ET_EXEC, ET_DYN):
        raise ValueError("ELF type %d is not an executable" % etype)
    if phnum == 0:
        raise ValueError("ELF has no program headers")
    if phentsize < _PHDR.size:
        raise ValueError("ELF program header size %d is smaller than %d" % (phentsize, _PHDR.size))
    if phoff + phnum * phentsize > n:
        raise ValueError("ELF program header table (0x%x + %d x %d) runs past the end of the "
                         "file (%d bytes): truncated?" % (phoff, phnum, phentsize, n))
    segments = []
    for i in range(phnum):
        (ptype, offset, vaddr, paddr, filesz, memsz, pflags, _align) = _PHDR.unpack_from(
            data, phoff + i * phentsize)
        if ptype != PT_LOAD:
            continue
        if filesz > memsz:
            raise ValueError("segment %d: file size 0x%x exceeds its memory size 0x%x"
                             % (i, filesz, memsz))
        if offset + filesz > n:
            raise ValueError("segment %d: file bytes 0x%x-0x%x run past the end of the file "
                             "(%d bytes): truncated?" % (i, offset, offset + filesz, n))
        if paddr + memsz > 1 << 32:
            raise ValueError("segment %d: 0x%x + 0x%x wraps past 4 GiB" % (i, paddr, memsz))
        if memsz == 0:
            continue
        segments.append(Segment(i, offset, vaddr, paddr, filesz, memsz, pflags))
    if not segments:
        raise ValueError("ELF has no loadable (PT_LOAD) segment")
    ordered = sorted(segments, key=lambda s: s.paddr)
    for a, b in zip(ordered, ordered[1:]):
        if a.paddr + a.memsz > b.paddr:
            raise ValueError("segments %d and %d overlap at 0x%x" % (a.index, b.index, b.paddr))
    # The section table is optional (Multiboot passes it on when it is sane).
    if not (shnum and shentsize >= _SHDR_SIZE and shoff + shnum * shentsize <= n
            and shstrndx < shnum):
        shoff = shentsize = shnum = shstrndx = 0
    return ELFImage(data, etype, entry, segments, shoff, shentsize, shnum, shstrndx)
