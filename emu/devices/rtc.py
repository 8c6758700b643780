"""The MC146818 real-time clock and its 128 bytes of CMOS RAM (ports 70h-71h).

    port 70h (write)  bit 7: NMI disable (kept, no effect); bits 6-0: index
    port 71h          the indexed byte

    0x00-0x09  seconds, alarm s, minutes, alarm m, hours, alarm h, day of
               week (1 = Sunday), day of month, month, year
    0x0A  A    UIP (read only), DV2-0 divider (010 = running), RS3-0 rate
    0x0B  B    SET PIE AIE UIE SQWE DM(1 = binary) 24/12(1 = 24 h) DSE
    0x0C  C    IRQF PF AF UF - read only, cleared by reading (lowers IRQ 8)
    0x0D  D    VRT (always 1)
    0x0E-0x7F  NVRAM: the PC's CMOS bytes (floppy types, equipment, memory
               sizes, checksum over 0x10-0x2D at 0x2E-0x2F, century at 0x32)

Time is virtual.  The clock starts from the host's clock (UTC) when the
device is built, or from ``start_time`` (epoch seconds or a datetime, for
deterministic runs), and advances with ``bus.clock``: update cycles happen
at whole virtual seconds counted from the divider's start.  Nothing ticks:
the time registers, UIP and the PF/AF/UF flags are brought up to date
whenever the guest looks, and a timer is armed only when an *enabled*
interrupt can fire (so a guest that enables none keeps the machine free of
RTC deadlines).  IRQ 8 follows IRQF: it rises when a flag meets its enable
and falls when register C is read - a guest that never reads C gets one
interrupt, as on the chip.

The time registers are stored as the guest sees them (BCD or binary, 12 or
24 hour, per register B at the time of writing, as on the chip: changing DM
does not convert them).  A value that is not a valid time (say hours 0x99) is
kept until the next update cycle, which first resets that field to its
lowest legal value (the chip's datasheet leaves the result undefined).
Daylight-saving updates (DSE) are not done: the bit is only kept.
"""
import calendar
import datetime
import time as _time

NS = 1_000_000_000
UIP_WINDOW_NS = 244_000          # UIP is set this long before each update
DIVIDER_HZ = 32768

SEC, SEC_ALARM, MIN, MIN_ALARM, HOUR, HOUR_ALARM, DOW, DAY, MONTH, YEAR = range(10)
REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D
CENTURY = 0x32

A_UIP = 0x80
B_SET, B_PIE, B_AIE, B_UIE = 0x80, 0x40, 0x20, 0x10
B_SQWE, B_DM, B_24H, B_DSE = 0x08, 0x04, 0x02, 0x01
C_IRQF, C_PF, C_AF, C_UF = 0x80, 0x40, 0x20, 0x10

# PC CMOS layout (IBM AT and successors).
CMOS_FLOPPY = 0x10
CMOS_EQUIPMENT = 0x14
CMOS_BASE_MEM = 0x15
CMOS_EXT_MEM = 0x17
CMOS_CHECKSUM = 0x2E
CMOS_EXT_MEM2 = 0x30
CMOS_HIGH_MEM = 0x34             # 64 KiB blocks above 16 MiB
CHECKSUM_RANGE = range(0x10, 0x2E)

FLOPPY_NONE, FLOPPY_360K, FLOPPY_1_2M, FLOPPY_720K, FLOPPY_1_44M, FLOPPY_2_88M = range(6)


# --- the Gregorian calendar, in days since 1970-01-01 (any year) ----------------------
def days_from_civil(y, m, d):
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z):
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


def days_in_month(y, m):
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m in (4, 6, 9, 11) else 31


def _epoch_of(start_time):
    """(whole seconds, nanoseconds into the second) of a start time, UTC."""
    if start_time is None:
        start_time = _time.time()
    if isinstance(start_time, datetime.datetime):
        if start_time.tzinfo is not None:
            start_time = start_time.astimezone(datetime.timezone.utc)
        secs = calendar.timegm(start_time.timetuple())
        return secs, start_time.microsecond * 1000
    ns = int(round(float(start_time) * NS))
    return ns // NS, ns % NS


class RTC:
    def __init__(self, bus, ram_size, start_time=None):
        self.bus = bus
        self.clock = bus.clock
        self.cmos = bytearray(128)
        self.index = 0
        self.nmi_masked = False          # port 70h bit 7: kept, has no effect here
        self._flags = 0                  # PF | AF | UF of register C
        self._irq_level = False
        self._timer = None
        self.counters = {"updates": 0, "interrupts": 0}
        now = self.clock.now()
        secs, frac = _epoch_of(start_time)
        cm = self.cmos
        cm[REG_A] = 0x26                 # 32.768 kHz divider running, 1024 Hz rate
        cm[REG_B] = B_24H                # 24 hour, BCD, no interrupts
        cm[REG_D] = 0x80                 # VRT: the battery is fine
        # The divider chain's phase: update cycles at div_ref + k seconds, so the
        # first one comes when the start time's second is over.
        self._div_ref = now - frac
        self._next_update = self._div_ref + NS
        self._pf_index = self._periodic_index(now)
        self._store_time(secs // 86400, secs % 86400, (secs // 86400 + 4) % 7 + 1)
        self._fill_nvram(ram_size)
        bus.ports.register(0x70, 2, read=self._read, write=self._write, name="rtc",
                           sizes=(1,))

    # --- NVRAM contents the BIOS and the OS expect ---------------------------------------
    def _fill_nvram(self, ram_size):
        cm = self.cmos
        ram_size = max(0, int(ram_size))
        cm[CMOS_EQUIPMENT] = 0x02        # x87 present; display 00 = VGA (own BIOS)
        base_kib = min(640, ram_size >> 10)
        cm[CMOS_BASE_MEM] = base_kib & 0xFF
        cm[CMOS_BASE_MEM + 1] = base_kib >> 8
        ext_kib = min(max(ram_size - (1 << 20), 0) >> 10, 0xFFFF)
        for reg in (CMOS_EXT_MEM, CMOS_EXT_MEM2):
            cm[reg] = ext_kib & 0xFF
            cm[reg + 1] = ext_kib >> 8
        high = min(max(ram_size - (16 << 20), 0) >> 16, 0xFFFF)
        cm[CMOS_HIGH_MEM] = high & 0xFF
        cm[CMOS_HIGH_MEM + 1] = high >> 8
        self.update_checksum()

    def update_checksum(self):
        s = sum(self.cmos[i] for i in CHECKSUM_RANGE) & 0xFFFF
        self.cmos[CMOS_CHECKSUM] = s >> 8
        self.cmos[CMOS_CHECKSUM + 1] = s & 0xFF

    def set_floppy(self, drive_a, drive_b=FLOPPY_NONE):
        """Drive types (FLOPPY_*) at 0x10, and the equipment byte's drive count."""
        a, b = int(drive_a) & 15, int(drive_b) & 15
        self.cmos[CMOS_FLOPPY] = (a << 4) | b
        n = (a != 0) + (b != 0)
        eq = self.cmos[CMOS_EQUIPMENT] & 0x3E
        if n:
            eq |= 0x01 | ((n - 1) << 6)
        self.cmos[CMOS_EQUIPMENT] = eq
        self.update_checksum()

    def set_byte(self, index, value):
        """Host-side NVRAM write (the machine or firmware loader); keeps the checksum."""
        index &= 0x7F
        if index < 0x0E:
            raise ValueError("set_byte is for NVRAM (0x0E-0x7F), not clock registers")
        self.cmos[index] = value & 0xFF
        if index in CHECKSUM_RANGE:
            self.update_checksum()

    # --- reset (the chip's RESET pin) -----------------------------------------------------
    def reset(self):
        """Clears PIE, AIE, UIE, SQWE and the flags of C; time and NVRAM stay."""
        now = self.clock.now()
        self._advance(now)
        self.cmos[REG_B] &= ~(B_PIE | B_AIE | B_UIE | B_SQWE) & 0xFF
        self._flags = 0
        self._update_irq()
        self._reschedule(now)

    # --- the divider chain ---------------------------------------------------------------
    def _running(self):
        return (self.cmos[REG_A] >> 4) & 7 == 0b010

    def _periodic_cycles(self):
        rs = self.cmos[REG_A] & 15
        if not rs:
            return None
        if rs < 3:
            rs += 7                      # RS 1 and 2 repeat the 256 and 128 Hz taps
        return 1 << (rs - 1)             # 32.768 kHz cycles per periodic edge

    def _periodic_index(self, now):
        cycles = self._periodic_cycles()
        if cycles is None:
            return 0
        return ((now - self._div_ref) * DIVIDER_HZ) // (cycles * NS)

    def periodic_period_ns(self):
        """Exact period of the periodic interrupt (float ns), or None when off."""
        cycles = self._periodic_cycles()
        return None if cycles is None else cycles * NS / DIVIDER_HZ

    def _advance(self, now):
        """Bring the flags and the time registers up to virtual time ``now``."""
        if not self._running():
            return
        cycles = self._periodic_cycles()
        if cycles is not None:
            idx = self._periodic_index(now)
            if idx > self._pf_index:
                self._flags |= C_PF
            self._pf_index = idx
        if now < self._next_update:
            return
        k = (now - self._next_update) // NS + 1
        self._next_update += k * NS
        if self.cmos[REG_B] & B_SET:
            return                       # SET inhibits updates; the divider goes on
        self.counters["updates"] += k
        self._tick_seconds(k)

    # --- time registers -------------------------------------------------------------------
    def _binary(self):
        return bool(self.cmos[REG_B] & B_DM)

    def _dec(self, v):
        return v if self._binary() else (v >> 4) * 10 + (v & 15)

    def _enc(self, n):
        return n & 0xFF if self._binary() else (((n // 10) % 10) << 4) | (n % 10)

    def _hour24(self):
        h = self.cmos[HOUR]
        if self.cmos[REG_B] & B_24H:
            v = self._dec(h)
            return v if v < 24 else None
        v = self._dec(h & 0x7F)
        if not 1 <= v <= 12:
            return None
        return v % 12 + (12 if h & 0x80 else 0)

    def _enc_hour(self, hour):
        if self.cmos[REG_B] & B_24H:
            return self._enc(hour)
        return self._enc(hour % 12 or 12) | (0x80 if hour >= 12 else 0)

    def _decoded(self):
        """(day number, second of day, day of week) from the registers; any
        field that is not a legal value is replaced by its lowest legal one."""
        cm = self.cmos
        s, m = self._dec(cm[SEC]), self._dec(cm[MIN])
        h = self._hour24()
        s = s if s < 60 else 0
        m = m if m < 60 else 0
        h = h if h is not None else 0
        century = self._dec(cm[CENTURY])
        century = century if century < 100 else 20
        year = self._dec(cm[YEAR])
        year = century * 100 + (year if year < 100 else 0)
        month = self._dec(cm[MONTH])
        month = month if 1 <= month <= 12 else 1
        day = self._dec(cm[DAY])
        day = day if 1 <= day <= days_in_month(year, month) else 1
        dow = self._dec(cm[DOW])
        dow = dow if 1 <= dow <= 7 else 1
        return days_from_civil(year, month, day), h * 3600 + m * 60 + s, dow

    def _store_time(self, days, sod, dow):
        cm = self.cmos
        y, mo, d = civil_from_days(days)
        cm[SEC] = self._enc(sod % 60)
        cm[MIN] = self._enc(sod // 60 % 60)
        cm[HOUR] = self._enc_hour(sod // 3600)
        cm[DOW] = self._enc(dow)
        cm[DAY] = self._enc(d)
        cm[MONTH] = self._enc(mo)
        cm[YEAR] = self._enc(y % 100)
        cm[CENTURY] = self._enc(y // 100 % 100)

    def _alarm_sets(self):
        """For seconds, minutes, hours: None (don't care) or the set of values
        whose register encoding equals the alarm byte (the chip compares bytes)."""
        out = []
        for reg, limit, enc in ((SEC_ALARM, 60, self._enc), (MIN_ALARM, 60, self._enc),
                                (HOUR_ALARM, 24, self._enc_hour)):
            b = self.cmos[reg]
            out.append(None if b & 0xC0 == 0xC0 else {v for v in range(limit) if enc(v) == b})
        return out

    def _tick_seconds(self, k):
        """k update cycles: advance the time, set UF, and AF if the alarm matched
        the time after any of them."""
        days, sod, dow = self._decoded()
        total = days * 86400 + sod
        alarm_s, alarm_m, alarm_h = self._alarm_sets()
        hit = False
        for t in range(total + k - min(k, 86400) + 1, total + k + 1):
            x = t % 86400
            if ((alarm_s is None or x % 60 in alarm_s)
                    and (alarm_m is None or x // 60 % 60 in alarm_m)
                    and (alarm_h is None or x // 3600 in alarm_h)):
                hit = True
                break
        new_days, new_sod = divmod(total + k, 86400)
        self._store_time(new_days, new_sod, (dow - 1 + new_days - days) % 7 + 1)
        self._flags |= C_UF | (C_AF if hit else 0)

    # --- interrupts --------------------------------------------------------------------
    def _update_irq(self):
        level = bool(self._flags & self.cmos[REG_B] & (C_PF | C_AF | C_UF))
        if level != self._irq_level:
            self._irq_level = level
            if level:
                self.counters["interrupts"] += 1
            self.bus.irq(8, level)

    def _reschedule(self, now):
        """Arm a timer for the next moment an enabled interrupt can fire."""
        if self._timer is not None:
            self.clock.cancel(self._timer)
            self._timer = None
        if self._irq_level or not self._running():
            return                       # IRQ 8 stays up until C is read
        b = self.cmos[REG_B]
        when = None
        cycles = self._periodic_cycles()
        if b & B_PIE and cycles is not None:
            j = self._pf_index + 1
            when = self._div_ref + -(-(j * cycles * NS) // DIVIDER_HZ)
        if b & (B_UIE | B_AIE) and not b & B_SET:
            if when is None or self._next_update < when:
                when = self._next_update
        if when is not None:
            self._timer = self.clock.schedule(max(when, now), self._on_timer)

    def _on_timer(self):
        self._timer = None
        now = self.clock.now()
        self._advance(now)
        self._update_irq()
        self._reschedule(now)

    # --- ports ------------------------------------------------------------------------
    def _read(self, port, size):
        if port == 0x70:
            return 0xFF                  # the index register is write-only
        return self.read_register(self.index)

    def _write(self, port, size, value):
        value &= 0xFF
        if port == 0x70:
            self.nmi_masked = bool(value & 0x80)
            self.index = value & 0x7F
        else:
            self.write_register(self.index, value)

    def read_register(self, index):
        """What the guest reads at CMOS ``index`` (with the chip's side effects)."""
        index &= 0x7F
        if index > REG_D and index != CENTURY:
            return self.cmos[index]
        now = self.clock.now()
        self._advance(now)
        if index == REG_A:
            v = self.cmos[REG_A] & 0x7F
            if (self._running() and not self.cmos[REG_B] & B_SET
                    and self._next_update - now <= UIP_WINDOW_NS):
                v |= A_UIP
            return v
        if index == REG_C:
            v = self._flags
            if v & self.cmos[REG_B] & (C_PF | C_AF | C_UF):
                v |= C_IRQF
            self._flags = 0
            self._update_irq()
            self._reschedule(now)
            return v
        if index == REG_D:
            return 0x80
        return self.cmos[index]

    def write_register(self, index, value):
        index &= 0x7F
        value &= 0xFF
        if index > REG_D and index != CENTURY:
            self.cmos[index] = value
            return
        now = self.clock.now()
        self._advance(now)
        if index == REG_A:
            was_running = self._running()
            self.cmos[REG_A] = value & 0x7F
            if self._running() and not was_running:
                # Out of divider reset: the first update comes half a second later.
                self._div_ref = now - NS // 2
                self._next_update = self._div_ref + NS
            self._pf_index = self._periodic_index(now)
        elif index == REG_B:
            if value & B_SET and not self.cmos[REG_B] & B_SET:
                value &= ~B_UIE          # SET going high clears UIE
            self.cmos[REG_B] = value
        elif index in (REG_C, REG_D):
            return                       # read-only
        else:
            self.cmos[index] = value
            return
        self._update_irq()
        self._reschedule(now)

    # --- for tests and the debugger ------------------------------------------------------
    def datetime(self):
        """The clock registers as a datetime (after bringing them up to date);
        fields the guest made invalid read as their lowest legal value, and a
        year 0 (century and year registers both zero) raises ValueError."""
        self._advance(self.clock.now())
        days, sod, _ = self._decoded()
        y, m, d = civil_from_days(days)
        return datetime.datetime(y, m, d, sod // 3600, sod // 60 % 60, sod % 60)
