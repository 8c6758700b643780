"""PCI configuration mechanism #1: the i440FX and PIIX3 identities and registers."""
import random

import pytest

from emu.devices.base import DeviceBus
from emu.devices.clock import VirtualClock
from emu.devices.dma import DMA
from emu.devices.pci import PCIBus, PCIConfigSpace
from emu.devices.portbus import PortBus
from emu.mmu.physmem import PhysMem


class Machine:
    def __init__(self, before=None):
        self.insns = 0
        self.ports = PortBus()
        self.phys = PhysMem(1 << 20)
        self.clock = VirtualClock(lambda: self.insns, 10)
        self.bus = DeviceBus(self.ports, self.phys, DMA(self.phys), self.clock)
        if before is not None:
            before(self)
        self.pci = PCIBus(self.bus)

    def address(self, dev, fn, reg, bus=0, enable=True):
        return (0x80000000 if enable else 0) | bus << 16 | dev << 11 | fn << 8 | reg

    def cfg_read(self, dev, fn, reg, size, bus=0):
        self.ports.write(0xCF8, 4, self.address(dev, fn, reg & 0xFC, bus))
        return self.ports.read(0xCFC + (reg & 3), size)

    def cfg_write(self, dev, fn, reg, size, value, bus=0):
        self.ports.write(0xCF8, 4, self.address(dev, fn, reg & 0xFC, bus))
        self.ports.write(0xCFC + (reg & 3), size, value)


@pytest.fixture
def m():
    return Machine()


def test_host_bridge_identity_all_widths(m):
    assert m.cfg_read(0, 0, 0x00, 4) == 0x12378086
    assert m.cfg_read(0, 0, 0x00, 2) == 0x8086
    assert m.cfg_read(0, 0, 0x02, 2) == 0x1237
    assert [m.cfg_read(0, 0, r, 1) for r in range(4)] == [0x86, 0x80, 0x37, 0x12]
    assert m.cfg_read(0, 0, 0x08, 4) >> 8 == 0x060000        # class: host bridge
    assert m.cfg_read(0, 0, 0x0B, 1) == 0x06
    assert m.cfg_read(0, 0, 0x0A, 1) == 0x00
    assert m.cfg_read(0, 0, 0x0E, 1) == 0x00                 # single-function header
    assert m.cfg_read(0, 0, 0x04, 2) == 0x0006


def test_isa_bridge_identity_all_widths(m):
    assert m.cfg_read(1, 0, 0x00, 4) == 0x70008086
    assert m.cfg_read(1, 0, 0x02, 2) == 0x7000
    assert m.cfg_read(1, 0, 0x03, 1) == 0x70
    assert m.cfg_read(1, 0, 0x08, 4) >> 8 == 0x060100        # class: ISA bridge
    assert m.cfg_read(1, 0, 0x0A, 2) == 0x0601
    assert m.cfg_read(1, 0, 0x0E, 1) == 0x80                 # multifunction
    assert m.cfg_read(1, 0, 0x0C, 4) >> 16 == 0x0080         # header type in the dword
    assert m.cfg_read(1, 0, 0x60, 4) == 0x80808080           # PIRQ routing disabled


def test_linux_style_type1_probe(m):
    # Linux pci_check_type1: save CF8, write 0x80000000, read it back.
    m.ports.write(0xCFB, 1, 0x01)
    old = m.ports.read(0xCF8, 4)
    m.ports.write(0xCF8, 4, 0x80000000)
    assert m.ports.read(0xCF8, 4) == 0x80000000
    m.ports.write(0xCF8, 4, old)
    # reserved bits and the low two bits read back as zero
    m.ports.write(0xCF8, 4, 0xFFFFFFFF)
    assert m.ports.read(0xCF8, 4) == 0x80FFFFFC


def test_mechanism_2_is_absent(m):
    # pci_check_type2: CSE at 0xCF8 and forward at 0xCFA must read back 0
    m.ports.write(0xCFB, 1, 0x00)
    m.ports.write(0xCF8, 1, 0x00)
    m.ports.write(0xCFA, 1, 0x00)
    assert m.ports.read(0xCF8, 1) == 0xFF and m.ports.read(0xCFA, 1) == 0xFF
    assert m.ports.read(0xCF8, 2) == 0xFFFF
    assert m.pci.address == 0                                # byte writes never reach it


def test_absent_devices_functions_buses(m):
    assert m.cfg_read(2, 0, 0x00, 4) == 0xFFFFFFFF
    assert m.cfg_read(31, 7, 0x00, 4) == 0xFFFFFFFF
    assert m.cfg_read(0, 1, 0x00, 4) == 0xFFFFFFFF
    assert m.cfg_read(1, 1, 0x00, 2) == 0xFFFF
    assert m.cfg_read(0, 0, 0x00, 4, bus=1) == 0xFFFFFFFF
    assert m.cfg_read(2, 0, 0x00, 1) == 0xFF
    m.cfg_write(2, 0, 0x04, 4, 0x12345678)                   # dropped
    assert m.cfg_read(2, 0, 0x04, 4) == 0xFFFFFFFF
    # enable bit clear: data port reads all ones
    m.ports.write(0xCF8, 4, m.address(0, 0, 0, enable=False))
    assert m.ports.read(0xCFC, 4) == 0xFFFFFFFF
    assert m.pci.counters["master_aborts"] >= 7


def test_read_only_fields_stay(m):
    for dev in (0, 1):
        before = [m.cfg_read(dev, 0, r, 4) for r in (0x00, 0x08, 0x0C, 0x2C, 0x3C)]
        m.cfg_write(dev, 0, 0x00, 4, 0xFFFFFFFF)
        m.cfg_write(dev, 0, 0x08, 4, 0xFFFFFFFF)
        m.cfg_write(dev, 0, 0x0E, 1, 0x00)
        m.cfg_write(dev, 0, 0x2C, 4, 0xFFFFFFFF)
        m.cfg_write(dev, 0, 0x10, 4, 0xFFFFFFFF)             # no BARs
        assert m.cfg_read(dev, 0, 0x10, 4) == 0
        after = [m.cfg_read(dev, 0, r, 4) for r in (0x00, 0x08, 0x0C, 0x2C, 0x3C)]
        assert [a & ~0xFF00 for a in after] == [b & ~0xFF00 for b in before]
    assert m.cfg_read(1, 0, 0x0E, 1) == 0x80


def test_command_register_writable_bits(m):
    m.cfg_write(0, 0, 0x04, 2, 0xFFFF)
    assert m.cfg_read(0, 0, 0x04, 2) == 0x0146                # MAE/BME stay 1, PERR/SERR set
    m.cfg_write(0, 0, 0x04, 2, 0x0000)
    assert m.cfg_read(0, 0, 0x04, 2) == 0x0006
    m.cfg_write(1, 0, 0x04, 2, 0x0000)
    assert m.cfg_read(1, 0, 0x04, 2) == 0x0007                # I/O, memory, master: always on
    m.cfg_write(1, 0, 0x04, 2, 0x0108)
    assert m.cfg_read(1, 0, 0x04, 2) == 0x010F


def test_status_register_is_write_one_to_clear(m):
    space = m.pci.host_bridge
    space.data[0x07] |= 0x30                                 # master/target abort received
    m.cfg_write(0, 0, 0x06, 2, 0x1000)                       # clear target abort only
    assert m.cfg_read(0, 0, 0x06, 2) == 0x2280
    m.cfg_write(0, 0, 0x06, 2, 0x0000)                       # writing 0 changes nothing
    assert m.cfg_read(0, 0, 0x06, 2) == 0x2280
    m.cfg_write(0, 0, 0x06, 2, 0xFFFF)
    assert m.cfg_read(0, 0, 0x06, 2) == 0x0280                # DEVSEL timing is read-only


def test_latency_timer(m):
    m.cfg_write(0, 0, 0x0D, 1, 0x47)
    assert m.cfg_read(0, 0, 0x0D, 1) == 0x40                 # granularity of 8 clocks
    assert m.cfg_read(0, 0, 0x0C, 4) == 0x00004000


def test_pam_registers_stored_and_reported(m):
    seen = []
    m.pci.host_bridge.on_pam_change = lambda reg, v: seen.append((reg, v))
    m.cfg_write(0, 0, 0x59, 1, 0xFF)
    assert m.cfg_read(0, 0, 0x59, 1) == 0x30                 # PAM0: only the F-segment half
    m.cfg_write(0, 0, 0x5C, 4, 0xFFFFFFFF)                   # PAM3-6 at once
    assert m.cfg_read(0, 0, 0x5C, 4) == 0x33333333
    m.cfg_write(0, 0, 0x5A, 2, 0x1122)
    assert m.cfg_read(0, 0, 0x58, 4) == 0x11223000 | m.cfg_read(0, 0, 0x58, 1)
    assert seen[0] == (0x59, 0x30)
    assert (0x5F, 0x33) in seen and (0x5B, 0x11) in seen


def test_smram_register_and_lock(m):
    assert m.cfg_read(0, 0, 0x72, 1) == 0x02
    m.cfg_write(0, 0, 0x72, 1, 0xEF)                         # all but D_LCK
    assert m.cfg_read(0, 0, 0x72, 1) == 0x6A                 # C_BASE_SEG stays 010b
    m.cfg_write(0, 0, 0x72, 1, 0x4A)                         # D_OPEN | G_SMRAME
    assert m.cfg_read(0, 0, 0x72, 1) == 0x4A
    m.cfg_write(0, 0, 0x72, 1, 0x5A)                         # lock: D_OPEN drops
    assert m.cfg_read(0, 0, 0x72, 1) == 0x1A
    m.cfg_write(0, 0, 0x72, 1, 0x42)                         # can't unlock or reopen
    assert m.cfg_read(0, 0, 0x72, 1) == 0x1A
    m.cfg_write(0, 0, 0x72, 1, 0x3A)                         # D_CLS still writable
    assert m.cfg_read(0, 0, 0x72, 1) == 0x3A
    m.pci.reset()
    assert m.cfg_read(0, 0, 0x72, 1) == 0x02
    m.cfg_write(0, 0, 0x72, 1, 0x4A)
    assert m.cfg_read(0, 0, 0x72, 1) == 0x4A
    m.cfg_write(0, 0, 0x72, 1, 0xFF)                         # open and lock at once
    assert m.cfg_read(0, 0, 0x72, 1) == 0x3A


def test_pirq_routing(m):
    isa = m.pci.isa_bridge
    assert [isa.pirq_route(n) for n in range(4)] == [None] * 4
    m.cfg_write(1, 0, 0x60, 4, 0x0B0A0B0A)
    assert m.cfg_read(1, 0, 0x60, 4) == 0x0B0A0B0A
    assert [isa.pirq_route(n) for n in range(4)] == [10, 11, 10, 11]
    m.cfg_write(1, 0, 0x62, 1, 0xF5)                         # reserved bits 6:4 read 0
    assert m.cfg_read(1, 0, 0x62, 1) == 0x85
    assert isa.pirq_route(2) is None
    m.cfg_write(1, 0, 0x63, 1, 0x02)                         # IRQ 2 is not a routing
    assert isa.pirq_route(3) is None


def test_unaligned_word_and_byte_data_ports(m):
    m.ports.write(0xCF8, 4, m.address(1, 0, 0x60))
    m.ports.write(0xCFD, 1, 0x05)
    m.ports.write(0xCFE, 2, 0x0A09)
    assert m.ports.read(0xCFC, 4) == 0x0A090580
    assert m.ports.read(0xCFD, 2) == 0x0905
    assert m.ports.read(0xCFF, 1) == 0x0A
    assert m.ports.read(0xCFE, 2) == 0x0A09
    # a word at 0xCFF spills into an unclaimed port: high byte all ones
    assert m.ports.read(0xCFF, 2) == 0xFF0A


def test_reset_restores_defaults(m):
    m.cfg_write(1, 0, 0x60, 4, 0x0B0A0B0A)
    m.cfg_write(0, 0, 0x59, 1, 0x30)
    m.pci.reset()
    assert m.ports.read(0xCF8, 4) == 0
    assert m.cfg_read(1, 0, 0x60, 4) == 0x80808080
    assert m.cfg_read(0, 0, 0x59, 1) == 0x00
    assert m.cfg_read(0, 0, 0x00, 4) == 0x12378086


def test_reset_control_port_shared_before_and_after():
    log = []

    def early(mach):
        mach.ports.register(0xCF9, 1, read=lambda p, s: 0x02,
                            write=lambda p, s, v: log.append(("cf9", v)), name="reset-control")

    mach = Machine(before=early)
    mach.ports.write(0xCF9, 1, 0x06)                         # byte: the reset register
    assert log == [("cf9", 0x06)]
    assert mach.ports.read(0xCF9, 1) == 0x02
    mach.ports.write(0xCF8, 4, 0x80000604)                   # dword: CONFIG_ADDRESS only
    assert log == [("cf9", 0x06)]
    assert mach.ports.read(0xCF8, 4) == 0x80000604
    mach.ports.write(0xCF8, 2, 0x0700)                       # word: byte 0xCF9 gets 0x07
    assert log[-1] == ("cf9", 0x07)
    assert mach.ports.read(0xCF8, 2) == 0x02FF
    assert mach.cfg_read(0, 0, 0, 4) == 0x12378086
    # and a device built after the bus
    later = []
    mach.pci.share_port(0xCFB, write=lambda p, s, v: later.append(v))
    mach.ports.write(0xCFB, 1, 0x5A)
    assert later == [0x5A]
    with pytest.raises(ValueError):
        mach.pci.share_port(0xCFC)


def test_add_device():
    mach = Machine()
    space = PCIConfigSpace(0x10EC, 0x8029, 0x020000, revision=0x01)
    space.set_writable(0x3C, 1, 0xFF)
    space.seal()
    mach.pci.add_device(3, 0, space)
    assert mach.cfg_read(3, 0, 0, 4) == 0x802910EC
    assert mach.cfg_read(3, 0, 0x0B, 1) == 0x02
    mach.cfg_write(3, 0, 0x3C, 1, 11)
    assert mach.cfg_read(3, 0, 0x3C, 1) == 11
    mach.pci.reset()
    assert mach.cfg_read(3, 0, 0x3C, 1) == 0
    with pytest.raises(ValueError):
        mach.pci.add_device(3, 0, space)
    with pytest.raises(ValueError):
        mach.pci.add_device(32, 0, space)
    assert mach.pci.config_read(3, 0, 0, 2) == 0x10EC
    assert mach.pci.config_read(4, 0, 0, 2) == 0xFFFF


def test_port_fuzz_never_raises(m):
    rng = random.Random(99)
    ids = (m.cfg_read(0, 0, 0, 4), m.cfg_read(1, 0, 0, 4), m.cfg_read(1, 0, 8, 4))
    for _ in range(30000):
        port = 0xCF8 + rng.randrange(8)
        size = rng.choice((1, 2, 4))
        if rng.random() < 0.3:
            # aim at the two devices more often than chance would
            m.ports.write(0xCF8, 4, 0x80000000 | rng.choice((0, 1, rng.randrange(32))) << 11
                          | rng.randrange(8) << 8 * (rng.random() < 0.2) | rng.randrange(256))
        if rng.random() < 0.5:
            m.ports.write(port, size, rng.getrandbits(32))
        else:
            assert 0 <= m.ports.read(port, size) < 1 << (8 * size)
    assert m.ports.counters["handler_errors"] == 0, m.ports.last_error
    assert (m.cfg_read(0, 0, 0, 4), m.cfg_read(1, 0, 0, 4), m.cfg_read(1, 0, 8, 4)) == ids
    assert m.cfg_read(1, 0, 0x0E, 1) == 0x80


def test_with_the_real_reset_control_register():
    from emu.devices.sysctrl import SystemControl
    resets = []
    ports = PortBus()
    phys = PhysMem(1 << 20)
    bus = DeviceBus(ports, phys, DMA(phys), VirtualClock(lambda: 0, 10),
                    reset_cpu=lambda: resets.append(1))
    SystemControl(bus)                  # built first, as machine.py does: claims 0xCF9
    pci = PCIBus(bus)
    ports.write(0xCF8, 4, 0x80000000)
    assert ports.read(0xCFC, 4) == 0x12378086 and not resets
    ports.write(0xCF9, 1, 0x02)         # hard-reset select, no reset yet
    assert ports.read(0xCF9, 1) == 0x02 and not resets
    ports.write(0xCF9, 1, 0x06)
    assert resets == [1]
    assert pci.address == 0x80000000    # the byte writes never touched CONFIG_ADDRESS
