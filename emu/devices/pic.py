"""The two 8259A programmable interrupt controllers of a PC, and the PIIX3 ELCR.

    master  ports 0x20-0x21   IRQ 0-7,  vector base from its ICW2
    slave   ports 0xA0-0xA1   IRQ 8-15, its INT output wired to master IR2
    ELCR    ports 0x4D0-0x4D1 edge (0) / level (1) trigger per IRQ line

What the machine and the CPU see (``PICPair``):

    set_irq(line, level)  drive ISA IRQ line 0-15 (a device's interrupt pin)
    pending()             INTR: an unmasked request outranks everything in service
    acknowledge()         the INTA cycle: IRR -> ISR, returns the vector
    on_intr               set by the machine; called whenever INTR may have
                          become asserted (the CPU then looks at pending())
    reset()               power-on state

Behaviour follows the 8259A datasheet: the ICW1-ICW4 initialisation sequence,
OCW1 (mask), OCW2 (non-specific/specific EOI, the rotate commands, set
priority), OCW3 (IRR/ISR read select, poll, special mask mode), fully nested
priorities with rotation, special fully nested mode on the master, automatic
EOI (with optional rotation) and the "default IR7" answer: when the request
that made INTR go high is gone by the time of INTA, the PIC answers with its
IR7 vector and sets no ISR bit (a spurious IRQ 7; from the slave, a spurious
IRQ 15, for which the master's IR2 *is* in service).

Edge-triggered lines latch their IRR bit on a rising edge and keep it until
INTA (so a device may pulse its line, as the PIT does); level-triggered lines
(ELCR bit set) have IRR follow the line.  Like the PIIX3, the LTIM bit of
ICW1 is ignored: ELCR alone picks the trigger mode.

Every register write leaves the pair in a defined state (THREATS.md); no
handler raises.
"""

# ELCR bits that exist on a PIIX3: IRQ 0, 1, 2, 8 and 13 are always edge.
ELCR_MASK = (0xF8, 0xDE)
CASCADE_IR = 2            # the master input the slave's INT drives
IRQ2_REDIRECT = 9         # the ISA bus IRQ2 pin is routed to IRQ9 on an AT


def _lowest_bit(x):
    return (x & -x).bit_length() - 1


class PIC8259:
    """One 8259A.  Pure logic: it knows its lines, not the bus or the CPU."""

    def __init__(self, name, is_master):
        self.name = name
        self.is_master = is_master
        self.elcr_mask = ELCR_MASK[0 if is_master else 1]
        self.lines = 0          # the present level of each IR input
        self.power_on()

    # --- state ------------------------------------------------------------------
    def power_on(self):
        """Power-on: nothing requested, nothing in service, all masked until the
        BIOS initialises it (an uninitialised PIC must not deliver vectors).
        The ELCR resets to all-edge (PIIX3 default)."""
        self.elcr = 0           # 1 = level-triggered (PIIX3 ELCR byte)
        self.irr = 0
        self.isr = 0
        self.imr = 0xFF
        self.base = 0
        self.priority_add = 0   # the IR with the highest priority
        self.init_step = 0      # 0 operational; 2, 3, 4 = ICW expected next
        self.single = False
        self.need_icw4 = False
        self.icw3 = 0
        self.auto_eoi = False
        self.rotate_on_aeoi = False
        self.sfnm = False       # special fully nested mode
        self.buffered = 0       # ICW4 BUF/M-S bits, kept for read-back only
        self.mcs80 = False      # uPM = 0 (8080 mode): meaningless on a PC
        self.read_isr = False
        self.poll = False
        self.special_mask = False

    # --- the pins -----------------------------------------------------------------
    def set_line(self, ir, level):
        bit = 1 << ir
        if self.elcr & bit:                  # level: IRR follows the line
            if level:
                self.irr |= bit
            else:
                self.irr &= ~bit
        elif level and not self.lines & bit:  # edge: latch the rising edge
            self.irr |= bit
        if level:
            self.lines |= bit
        else:
            self.lines &= ~bit

    def set_elcr(self, value):
        self.elcr = value & self.elcr_mask
        # A line that became level-triggered now reports its level.
        self.irr = (self.irr & ~self.elcr) | (self.lines & self.elcr)

    # --- priority ----------------------------------------------------------------
    def _priority(self, mask):
        """0 = highest priority ... 7 = lowest, 8 = none (rotation applied)."""
        mask &= 0xFF
        if not mask:
            return 8
        pa = self.priority_add
        rot = ((mask >> pa) | (mask << (8 - pa))) & 0xFF
        return _lowest_bit(rot)

    def highest_request(self):
        """The IR this PIC would interrupt for now, or -1 (its INT output)."""
        req = self.irr & ~self.imr & 0xFF
        if not req:
            return -1
        p = self._priority(req)
        in_service = self.isr
        if self.special_mask:
            # Special mask mode: a masked in-service level no longer holds
            # back the others (lower ones included).
            in_service &= ~self.imr
        cur = self._priority(in_service)
        irq = (p + self.priority_add) & 7
        if p < cur:
            return irq
        if (self.sfnm and self.is_master and p == cur
                and (self.icw3 >> irq) & 1 and not self.single):
            # Special fully nested mode: a slave whose request is in service
            # may interrupt again for a higher-priority line of its own.
            return irq
        return -1

    def intack(self, irq):
        """What an INTA (or a poll read) does to the chosen request."""
        bit = 1 << irq
        self.irr &= ~bit
        self.irr |= self.lines & self.elcr & bit   # a level line still asserts
        if self.auto_eoi:
            if self.rotate_on_aeoi:
                self.priority_add = (irq + 1) & 7
        else:
            self.isr |= bit

    # --- register interface ------------------------------------------------------------
    def write_command(self, value):
        """A0 = 0: ICW1, OCW2 or OCW3."""
        if value & 0x10:
            self._icw1(value)
        elif value & 0x08:
            self._ocw3(value)
        else:
            self._ocw2(value)

    def write_data(self, value):
        """A0 = 1: ICW2-ICW4 during initialisation, OCW1 (the mask) otherwise."""
        step = self.init_step
        if step == 2:
            self.base = value & 0xF8          # 8086 mode: T7-T3; IR number below
            if not self.single:
                self.init_step = 3
            else:
                self.init_step = 4 if self.need_icw4 else 0
        elif step == 3:
            self.icw3 = value
            self.init_step = 4 if self.need_icw4 else 0
        elif step == 4:
            self.mcs80 = not value & 0x01
            self.auto_eoi = bool(value & 0x02)
            self.buffered = value & 0x0C
            self.sfnm = bool(value & 0x10)
            self.init_step = 0
        else:
            self.imr = value

    def _icw1(self, value):
        self.single = bool(value & 0x02)
        self.need_icw4 = bool(value & 0x01)
        # ICW1 resets the logic: mask cleared, IR7 lowest priority, special
        # mask off, IRR selected for reads, slave address 7, and the edge
        # sense latches reset (an edge line must rise again to request).
        self.imr = 0
        self.isr = 0
        self.irr = self.lines & self.elcr
        self.priority_add = 0
        self.special_mask = False
        self.read_isr = False
        self.poll = False
        self.rotate_on_aeoi = False
        self.icw3 = 0 if self.is_master else 7
        if not self.need_icw4:                # "all ICW4 functions set to zero"
            self.auto_eoi = False
            self.sfnm = False
            self.buffered = 0
            self.mcs80 = True
        self.init_step = 2

    def _ocw2(self, value):
        cmd = value >> 5
        level = value & 7
        if cmd == 0b001 or cmd == 0b101:      # non-specific EOI (and rotate)
            p = self._priority(self.isr)
            if p != 8:
                irq = (p + self.priority_add) & 7
                self.isr &= ~(1 << irq)
                if cmd == 0b101:
                    self.priority_add = (irq + 1) & 7
        elif cmd == 0b011:                    # specific EOI
            self.isr &= ~(1 << level)
        elif cmd == 0b111:                    # rotate on specific EOI
            self.isr &= ~(1 << level)
            self.priority_add = (level + 1) & 7
        elif cmd == 0b110:                    # set priority: `level` becomes lowest
            self.priority_add = (level + 1) & 7
        elif cmd == 0b100:                    # rotate in automatic EOI mode: set
            self.rotate_on_aeoi = True
        elif cmd == 0b000:                    # ... clear
            self.rotate_on_aeoi = False
        # 0b010: no operation

    def _ocw3(self, value):
        if value & 0x04:
            self.poll = True
        if value & 0x02:
            self.read_isr = bool(value & 0x01)
        if value & 0x40:
            self.special_mask = bool(value & 0x20)

    def read(self, a0):
        """A read of either port; a pending poll command answers first."""
        if self.poll:
            self.poll = False
            return self.poll_read()
        if a0:
            return self.imr
        return self.isr if self.read_isr else self.irr

    def poll_read(self):
        """Poll word: bit 7 = a request, bits 2-0 = its level; acts as an INTA."""
        irq = self.highest_request()
        if irq < 0:
            return 0
        self.intack(irq)
        return 0x80 | irq


class PICPair:
    """The master and slave 8259A of a PC/AT, with the PIIX3 ELCR."""

    def __init__(self, bus):
        self.bus = bus
        self.master = PIC8259("master", True)
        self.slave = PIC8259("slave", False)
        self.on_intr = None
        self._intr = False
        self.counters = {"acknowledged": 0, "spurious_irq7": 0, "spurious_irq15": 0}
        bus.ports.register(0x20, 2, read=self._read, write=self._write, name="pic-master",
                           sizes=(1,))
        bus.ports.register(0xA0, 2, read=self._read, write=self._write, name="pic-slave",
                           sizes=(1,))
        bus.ports.register(0x4D0, 2, read=self._read_elcr, write=self._write_elcr,
                           name="elcr", sizes=(1,))

    # --- the machine's side -------------------------------------------------------
    def set_irq(self, line, level):
        """Drive ISA IRQ ``line`` (0-15) to ``level`` (true = asserted)."""
        line = int(line) & 15
        if line == CASCADE_IR:
            # The ISA bus's IRQ2 pin is routed to IRQ9 on an AT: IR2 is the cascade.
            line = IRQ2_REDIRECT
        if line < 8:
            self.master.set_line(line, bool(level))
        else:
            self.slave.set_line(line - 8, bool(level))
        self._update()

    def pending(self):
        """INTR: an unmasked request of higher priority than anything in service."""
        return self._intr

    def acknowledge(self):
        """The INTA cycle: returns the vector and moves the request into service."""
        m, s = self.master, self.slave
        irq = m.highest_request()
        if irq < 0:
            # The request that raised INTR vanished: default IR7, no ISR bit.
            self.counters["spurious_irq7"] += 1
            vector = m.base | 7
        else:
            m.intack(irq)
            if irq == CASCADE_IR and self._cascaded():
                if (s.icw3 & 7) != CASCADE_IR:
                    vector = 0xFF            # no slave answers this cascade address
                else:
                    sirq = s.highest_request()
                    if sirq < 0:
                        # Slave request gone: it answers IR7 (spurious IRQ 15) and
                        # the master's IR2 stays in service (needs an EOI).
                        self.counters["spurious_irq15"] += 1
                        vector = s.base | 7
                    else:
                        s.intack(sirq)
                        vector = s.base | sirq
            else:
                vector = m.base | irq
        self.counters["acknowledged"] += 1
        self._update()
        return vector

    def reset(self):
        self.master.power_on()
        self.slave.power_on()
        self._update()

    # --- cascade and INTR ----------------------------------------------------------
    def _cascaded(self):
        return not self.master.single and (self.master.icw3 >> CASCADE_IR) & 1

    def _update(self):
        """Propagate the slave's INT to master IR2 and recompute INTR.

        IR2's request is latched while the slave's INT is high and kept until
        the master acknowledges it (so the slave losing its request before
        INTA gives the datasheet's spurious IRQ 15, and a slave that keeps
        INT high across an acknowledge is not lost for want of a new edge)."""
        m = self.master
        bit = 1 << CASCADE_IR
        if self.slave.highest_request() >= 0:
            m.irr |= bit
            m.lines |= bit
        else:
            m.lines &= ~bit
        intr = m.highest_request() >= 0
        self._intr = intr
        if intr and self.on_intr is not None:
            self.on_intr()

    # --- ports ---------------------------------------------------------------------------
    def _chip(self, port):
        return self.slave if port & 0x80 else self.master

    def _read(self, port, size):
        value = self._chip(port).read(port & 1)
        self._update()            # a poll read acts as an acknowledge
        return value

    def _write(self, port, size, value):
        chip = self._chip(port)
        if port & 1:
            chip.write_data(value & 0xFF)
        else:
            chip.write_command(value & 0xFF)
        self._update()

    def _read_elcr(self, port, size):
        return (self.slave if port & 1 else self.master).elcr

    def _write_elcr(self, port, size, value):
        (self.slave if port & 1 else self.master).set_elcr(value)
        self._update()

    # --- for tests and the debugger ------------------------------------------------------
    def state(self):
        out = {}
        for chip in (self.master, self.slave):
            out[chip.name] = {"irr": chip.irr, "isr": chip.isr, "imr": chip.imr,
                              "base": chip.base, "elcr": chip.elcr,
                              "priority_add": chip.priority_add,
                              "init_step": chip.init_step}
        return out
