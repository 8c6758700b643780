"""The 8259A pair (emu/devices/pic.py) against the Intel 8259A datasheet and
the PIIX3 ELCR, driven through a real PortBus."""
import random

import pytest

from emu.devices.base import DeviceBus
from emu.devices.clock import VirtualClock
from emu.devices.dma import DMA
from emu.devices.pic import PICPair
from emu.devices.portbus import PortBus
from emu.mmu.physmem import PhysMem

MASTER_BASE, SLAVE_BASE = 0x08, 0x70


class Rig:
    def __init__(self):
        self.insns = 0
        self.clock = VirtualClock(lambda: self.insns, ns_per_insn=1)
        self.ports = PortBus()
        self.phys = PhysMem(1 << 20)
        self.bus = DeviceBus(self.ports, self.phys, DMA(self.phys), self.clock)
        self.pic = PICPair(self.bus)
        self.intr_calls = 0
        self.pic.on_intr = self._on_intr

    def _on_intr(self):
        self.intr_calls += 1

    def out(self, port, value):
        self.ports.write(port, 1, value)

    def inb(self, port):
        return self.ports.read(port, 1)

    def init(self, icw4=0x01, master_icw4=None, slave_icw4=None):
        """What a PC BIOS / Linux does: cascade, ICW4 needed, 8086 mode."""
        m4 = icw4 if master_icw4 is None else master_icw4
        s4 = icw4 if slave_icw4 is None else slave_icw4
        for port, vals in ((0x20, (0x11, MASTER_BASE, 0x04, m4)),
                           (0xA0, (0x11, SLAVE_BASE, 0x02, s4))):
            self.out(port, vals[0])
            for v in vals[1:]:
                self.out(port + 1, v)
        self.out(0x21, 0x00)
        self.out(0xA1, 0x00)

    def isr(self, port=0x20):
        self.out(port, 0x0B)          # OCW3: read ISR
        v = self.inb(port)
        self.out(port, 0x0A)          # back to IRR
        return v

    def irr(self, port=0x20):
        self.out(port, 0x0A)
        return self.inb(port)

    def pulse(self, line):
        self.pic.set_irq(line, True)
        self.pic.set_irq(line, False)

    def eoi(self, port=0x20):
        self.out(port, 0x20)


@pytest.fixture
def rig():
    r = Rig()
    yield r
    assert r.ports.counters["handler_errors"] == 0, r.ports.last_error


@pytest.fixture
def pc(rig):
    rig.init()
    return rig


# --- initialisation ------------------------------------------------------------------
def test_power_on_is_masked_and_silent(rig):
    rig.pulse(0)
    assert not rig.pic.pending()
    assert rig.inb(0x21) == 0xFF and rig.inb(0xA1) == 0xFF


def test_init_sequence_sets_vector_base_and_clears_mask(rig):
    rig.out(0x21, 0x5A)
    rig.out(0x20, 0x11)                # ICW1: edge, cascade, ICW4 needed
    assert rig.inb(0x21) == 0x00       # ICW1 clears the IMR
    rig.out(0x21, 0x20)                # ICW2
    rig.out(0x21, 0x04)                # ICW3: slave on IR2
    rig.out(0x21, 0x01)                # ICW4: 8086 mode
    rig.out(0x21, 0xFA)                # now an OCW1
    assert rig.inb(0x21) == 0xFA
    assert rig.pic.master.base == 0x20 and rig.pic.master.init_step == 0
    rig.pulse(0)
    assert rig.pic.pending()
    assert rig.pic.acknowledge() == 0x20


def test_icw2_low_bits_are_the_ir_number(rig):
    rig.out(0x20, 0x13)                # single, ICW4
    rig.out(0x21, 0x47)                # ICW2: T7-T3 = 0x40, low bits ignored
    rig.out(0x21, 0x01)                # ICW4 follows directly (no ICW3 in single mode)
    rig.out(0x21, 0xF7)                # OCW1
    assert rig.inb(0x21) == 0xF7
    rig.pulse(3)
    assert rig.pic.acknowledge() == 0x43


def test_icw1_without_icw4_ends_after_icw3(rig):
    rig.out(0x20, 0x10)                # cascade, no ICW4
    rig.out(0x21, 0x08)
    rig.out(0x21, 0x04)
    rig.out(0x21, 0x3C)                # OCW1
    assert rig.inb(0x21) == 0x3C and rig.pic.master.init_step == 0
    assert not rig.pic.master.auto_eoi


def test_icw1_resets_in_service_and_requires_a_new_edge(pc):
    pc.pic.set_irq(4, True)
    assert pc.pic.acknowledge() == MASTER_BASE + 4
    assert pc.isr() == 0x10
    pc.init()                          # line 4 still high
    assert pc.isr() == 0 and pc.irr() == 0
    assert not pc.pic.pending()        # an edge line must rise again
    pc.pic.set_irq(4, False)
    pc.pic.set_irq(4, True)
    assert pc.pic.pending()


# --- masking, priority, nesting, EOI -------------------------------------------------
def test_mask_holds_request_until_unmasked(pc):
    pc.out(0x21, 0x02)
    pc.pulse(1)
    assert not pc.pic.pending()
    assert pc.irr() == 0x02            # latched in IRR even while masked
    calls = pc.intr_calls
    pc.out(0x21, 0x00)
    assert pc.pic.pending() and pc.intr_calls > calls
    assert pc.pic.acknowledge() == MASTER_BASE + 1


def test_ack_moves_irr_to_isr(pc):
    pc.pulse(6)
    assert pc.irr() == 0x40
    assert pc.pic.acknowledge() == MASTER_BASE + 6
    assert pc.irr() == 0 and pc.isr() == 0x40
    pc.eoi()
    assert pc.isr() == 0


def test_fully_nested_priority(pc):
    pc.pulse(3)
    assert pc.pic.acknowledge() == MASTER_BASE + 3
    pc.pulse(5)
    assert not pc.pic.pending()        # lower than IR3 in service
    pc.pulse(3)
    assert not pc.pic.pending()        # equal priority waits too
    pc.pulse(1)
    assert pc.pic.pending()            # higher: nests
    assert pc.pic.acknowledge() == MASTER_BASE + 1
    assert pc.isr() == 0x0A
    pc.eoi()                           # non-specific: the highest (IR1)
    assert pc.isr() == 0x08
    assert not pc.pic.pending()
    pc.eoi()                           # IR3 done: IR3 (again) outranks IR5
    assert pc.pic.acknowledge() == MASTER_BASE + 3
    pc.eoi()
    assert pc.pic.acknowledge() == MASTER_BASE + 5


def test_simultaneous_requests_resolve_by_priority(pc):
    for line in (7, 4, 2 + 8, 0):
        pc.pic.set_irq(line, True)
    got = []
    while pc.pic.pending():
        v = pc.pic.acknowledge()
        got.append(v)
        if v >= SLAVE_BASE:
            pc.eoi(0xA0)
        pc.eoi()
    assert got == [MASTER_BASE + 0, SLAVE_BASE + 2, MASTER_BASE + 4, MASTER_BASE + 7]


def test_specific_eoi(pc):
    pc.pulse(5)
    pc.pic.acknowledge()
    pc.pulse(0)                        # IR0 (higher) nests
    pc.pic.acknowledge()
    assert pc.isr() == 0x21
    pc.out(0x20, 0x65)                 # specific EOI for IR5
    assert pc.isr() == 0x01
    pc.out(0x20, 0x60)
    assert pc.isr() == 0


def test_auto_eoi(rig):
    rig.init(icw4=0x03)
    rig.pulse(4)
    assert rig.pic.acknowledge() == MASTER_BASE + 4
    assert rig.isr() == 0              # nothing stays in service
    rig.pulse(6)
    assert rig.pic.pending()           # so a lower level is not held back


def test_rotate_on_nonspecific_eoi(pc):
    pc.pulse(0)
    pc.pic.acknowledge()
    pc.out(0x20, 0xA0)                 # rotate on non-specific EOI: IR0 lowest
    assert pc.pic.master.priority_add == 1
    pc.pic.set_irq(0, True)
    pc.pic.set_irq(7, True)
    assert pc.pic.acknowledge() == MASTER_BASE + 7   # IR7 now outranks IR0


def test_set_priority_and_rotate_on_specific_eoi(pc):
    pc.out(0x20, 0xC4)                 # IR4 lowest -> IR5 highest
    pc.pic.set_irq(3, True)
    pc.pic.set_irq(6, True)
    assert pc.pic.acknowledge() == MASTER_BASE + 6
    pc.out(0x20, 0xE6)                 # rotate on specific EOI 6: IR6 lowest
    assert pc.isr() == 0 and pc.pic.master.priority_add == 7
    assert pc.pic.acknowledge() == MASTER_BASE + 3


def test_rotate_in_auto_eoi_mode(rig):
    rig.init(icw4=0x03)
    rig.out(0x20, 0x80)                # rotate in AEOI: set
    rig.pulse(3)
    assert rig.pic.acknowledge() == MASTER_BASE + 3
    assert rig.pic.master.priority_add == 4
    rig.out(0x20, 0x00)                # clear
    rig.pulse(5)
    rig.pic.acknowledge()
    assert rig.pic.master.priority_add == 4


def test_nonspecific_eoi_respects_rotation(pc):
    pc.out(0x20, 0xC2)                 # IR3 highest ... IR2 lowest
    pc.pulse(1)
    pc.pic.acknowledge()
    pc.pulse(4)                        # IR4 outranks IR1 now
    assert pc.pic.acknowledge() == MASTER_BASE + 4
    pc.eoi()                           # clears IR4, the highest in service
    assert pc.isr() == 0x02


# --- cascade --------------------------------------------------------------------------
def test_slave_irq_through_cascade(pc):
    pc.pulse(12)
    assert pc.pic.pending()
    assert pc.pic.acknowledge() == SLAVE_BASE + 4
    assert pc.isr() == 0x04 and pc.isr(0xA0) == 0x10
    pc.eoi(0xA0)
    pc.eoi()
    assert pc.isr() == 0 and pc.isr(0xA0) == 0


def test_slave_masked_in_master(pc):
    pc.out(0x21, 0x04)
    pc.pulse(9)
    assert not pc.pic.pending()
    pc.out(0x21, 0x00)
    assert pc.pic.acknowledge() == SLAVE_BASE + 1


def test_second_slave_request_after_slave_eoi(pc):
    pc.pic.set_irq(8, True)
    pc.pic.set_irq(11, True)
    assert pc.pic.acknowledge() == SLAVE_BASE + 0
    assert not pc.pic.pending()
    pc.eoi(0xA0)
    assert not pc.pic.pending()        # master IR2 still in service
    pc.eoi()
    assert pc.pic.acknowledge() == SLAVE_BASE + 3


def test_isa_irq2_is_routed_to_irq9(pc):
    pc.pulse(2)
    assert pc.pic.acknowledge() == SLAVE_BASE + 1


def test_special_fully_nested_mode(rig):
    rig.init(master_icw4=0x11, slave_icw4=0x01)
    rig.pulse(12)
    assert rig.pic.acknowledge() == SLAVE_BASE + 4
    rig.pulse(9)                       # higher priority on the same slave
    assert rig.pic.pending()
    assert rig.pic.acknowledge() == SLAVE_BASE + 1
    rig.pulse(3)                       # but lower master levels still wait
    assert not rig.pic.pending()


def test_without_sfnm_the_slave_is_locked_out(pc):
    pc.pulse(12)
    pc.pic.acknowledge()
    pc.pulse(9)
    assert not pc.pic.pending()


# --- spurious interrupts ---------------------------------------------------------------
def test_spurious_irq7_when_level_request_vanishes(pc):
    pc.out(0x4D0, 0x20)                # IRQ5 level-triggered
    pc.pic.set_irq(5, True)
    assert pc.pic.pending()
    pc.pic.set_irq(5, False)           # gone before INTA
    assert pc.pic.acknowledge() == MASTER_BASE + 7
    assert pc.isr() == 0               # the default IR7 sets no ISR bit
    assert pc.pic.counters["spurious_irq7"] == 1


def test_spurious_irq7_when_masked_before_inta(pc):
    pc.pulse(1)
    assert pc.pic.pending()
    pc.out(0x21, 0x02)
    assert pc.pic.acknowledge() == MASTER_BASE + 7
    assert pc.isr() == 0


def test_spurious_irq15(pc):
    pc.out(0x4D1, 0x04)                # IRQ10 level-triggered
    pc.pic.set_irq(10, True)
    assert pc.pic.pending()
    pc.pic.set_irq(10, False)
    assert pc.pic.pending()            # the master latched IR2
    assert pc.pic.acknowledge() == SLAVE_BASE + 7
    assert pc.isr(0xA0) == 0           # slave: nothing in service
    assert pc.isr() == 0x04            # master: IR2 is, and needs an EOI
    assert pc.pic.counters["spurious_irq15"] == 1
    pc.eoi()
    assert pc.isr() == 0 and not pc.pic.pending()


# --- trigger modes (ELCR) ----------------------------------------------------------------
def test_elcr_masks_reserved_bits(pc):
    pc.out(0x4D0, 0xFF)
    pc.out(0x4D1, 0xFF)
    assert pc.inb(0x4D0) == 0xF8       # IRQ 0, 1, 2 always edge
    assert pc.inb(0x4D1) == 0xDE       # IRQ 8 and 13 always edge
    assert pc.ports.read(0x4D0, 2) == 0xDEF8


def test_edge_line_needs_a_new_edge(pc):
    pc.pic.set_irq(3, True)
    assert pc.pic.acknowledge() == MASTER_BASE + 3
    pc.eoi()
    assert not pc.pic.pending()        # still high, but no new edge
    pc.pic.set_irq(3, True)            # repeating the level is not an edge
    assert not pc.pic.pending()
    pc.pic.set_irq(3, False)
    pc.pic.set_irq(3, True)
    assert pc.pic.pending()


def test_edge_request_latched_after_line_drops(pc):
    pc.pulse(6)                        # raise then lower, as the PIT does
    assert pc.pic.pending()
    assert pc.pic.acknowledge() == MASTER_BASE + 6


def test_level_line_reasserts_after_eoi(pc):
    pc.out(0x4D0, 0x08)                # IRQ3 level
    pc.pic.set_irq(3, True)
    assert pc.pic.acknowledge() == MASTER_BASE + 3
    assert not pc.pic.pending()        # in service
    pc.eoi()
    assert pc.pic.pending()            # still asserted: interrupts again
    pc.pic.set_irq(3, False)
    assert not pc.pic.pending()
    assert pc.irr() == 0


def test_switching_a_line_to_level_picks_up_its_level(pc):
    pc.pic.set_irq(11, True)
    pc.pic.acknowledge()
    pc.eoi(0xA0)
    pc.eoi()
    assert not pc.pic.pending()
    pc.out(0x4D1, 0x08)
    assert pc.pic.pending()
    assert pc.pic.acknowledge() == SLAVE_BASE + 3


# --- OCW3 ---------------------------------------------------------------------------------
def test_poll_mode(pc):
    pc.pulse(5)
    pc.out(0x20, 0x0C)                 # OCW3: poll
    assert pc.inb(0x20) == 0x85
    assert pc.isr() == 0x20            # the poll read acknowledged it
    pc.out(0x20, 0x0C)
    assert pc.inb(0x20) == 0x00        # nothing more
    pc.eoi()
    assert pc.isr() == 0


def test_poll_through_cascade(pc):
    pc.pulse(13)
    pc.out(0x20, 0x0C)
    assert pc.inb(0x20) == 0x82        # the master says: the slave
    pc.out(0xA0, 0x0C)
    assert pc.inb(0xA0) == 0x85
    assert pc.isr(0xA0) == 0x20


def test_read_irr_isr_select_is_sticky(pc):
    pc.pulse(1)
    pc.pulse(4)
    pc.pic.acknowledge()
    pc.out(0x20, 0x0B)
    assert pc.inb(0x20) == 0x02 and pc.inb(0x20) == 0x02
    pc.out(0x20, 0x08)                 # RR = 0: no change
    assert pc.inb(0x20) == 0x02
    pc.out(0x20, 0x0A)
    assert pc.inb(0x20) == 0x10


def test_special_mask_mode(pc):
    pc.pulse(3)
    pc.pic.acknowledge()
    pc.pulse(5)
    assert not pc.pic.pending()
    pc.out(0x21, 0x08)                 # mask IR3 (in service)
    assert not pc.pic.pending()        # plain masking does not unblock lower levels
    pc.out(0x20, 0x68)                 # OCW3: set special mask
    assert pc.pic.pending()
    assert pc.pic.acknowledge() == MASTER_BASE + 5
    pc.out(0x20, 0x48)                 # reset special mask
    assert not pc.pic.master.special_mask


# --- the machine's contract ----------------------------------------------------------------
def test_on_intr_called_when_intr_rises(pc):
    n = pc.intr_calls
    pc.pulse(0)
    assert pc.intr_calls > n


def test_reset_returns_to_power_on(pc):
    pc.pulse(1)
    pc.pic.acknowledge()
    pc.out(0x4D0, 0x20)
    pc.pic.reset()
    assert pc.isr() == 0 and pc.inb(0x21) == 0xFF and pc.inb(0x4D0) == 0
    assert not pc.pic.pending()


def test_word_access_to_elcr_and_unclaimed_neighbours(pc):
    pc.ports.write(0x4D0, 2, 0x0C20)
    assert pc.inb(0x4D0) == 0x20 and pc.inb(0x4D1) == 0x0C


# --- fuzz -------------------------------------------------------------------------------
PORTS = (0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1)


def _check_consistent(pic):
    for chip in (pic.master, pic.slave):
        for v in (chip.irr, chip.isr, chip.imr, chip.elcr, chip.lines):
            assert 0 <= v <= 0xFF
        assert chip.init_step in (0, 2, 3, 4)
        assert 0 <= chip.priority_add <= 7
        assert chip.elcr & ~chip.elcr_mask == 0
        # a level line's IRR bit is its level
        assert chip.irr & chip.elcr == chip.lines & chip.elcr
    assert pic.pending() == (pic.master.highest_request() >= 0)


@pytest.mark.parametrize("seed", range(6))
def test_fuzz_ports_and_lines(rig, seed):
    rnd = random.Random(seed)
    if seed % 2:
        rig.init()
    for _ in range(4000):
        op = rnd.random()
        if op < 0.45:
            rig.out(rnd.choice(PORTS), rnd.getrandbits(8))
        elif op < 0.6:
            v = rig.inb(rnd.choice(PORTS))
            assert 0 <= v <= 0xFF
        elif op < 0.85:
            rig.pic.set_irq(rnd.randrange(16), rnd.random() < 0.5)
        else:
            if rig.pic.pending() or rnd.random() < 0.2:
                v = rig.pic.acknowledge()
                assert 0 <= v <= 0xFF
        _check_consistent(rig.pic)
    rig.pic.reset()
    _check_consistent(rig.pic)
