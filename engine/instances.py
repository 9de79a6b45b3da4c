"""Obligation instances: every (obligation, unit, period) with its cut-off window and due moment."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from engine.duedates import due_moment
from engine.periods import periods_between
from engine.rules_loader import RulePack
from engine.rules_model import Obligation


@dataclass(frozen=True)
class Instance:
    obligation: str
    unit: str
    period: str
    period_label: str
    period_start: date
    period_end: date
    cutoff_start: date | None
    cutoff_end: date | None
    due: date
    due_unrolled: date
    due_at: datetime
    recipient: str
    tracked: bool
    inherited_from: tuple[str, ...] = field(default=())

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.obligation, self.unit, self.period)

    def as_dict(self) -> dict[str, object]:
        return {
            "obligation": self.obligation, "unit": self.unit, "period": self.period,
            "period_label": self.period_label,
            "period_start": self.period_start.isoformat(), "period_end": self.period_end.isoformat(),
            "cutoff_start": self.cutoff_start.isoformat() if self.cutoff_start else None,
            "cutoff_end": self.cutoff_end.isoformat() if self.cutoff_end else None,
            "due": self.due.isoformat(), "due_unrolled": self.due_unrolled.isoformat(),
            "due_at": self.due_at.isoformat(), "recipient": self.recipient, "tracked": self.tracked,
            "inherited_from": list(self.inherited_from),
        }


def generate_instances(pack: RulePack, start: date, end: date, unit: str | None = None,
                       tracking_start: date | None = None) -> list[Instance]:
    """Instances whose due day is in [start, end].

    An obligation applies to a period when it is in force on the period's due day. A reporter that
    no longer exists on the due day hands the duty to its successor (followed through chains); a
    unit not yet created owes nothing. Where a successor already owes the same report, the two
    collapse into one instance that records whom it inherited from.
    """
    gen = Generator(pack, start, end, tracking_start)
    out: list[Instance] = []
    for ob in pack.obligations.values():
        out.extend(gen.instances(ob, owners=None if unit is None else {unit}))
    return sorted(out, key=lambda i: (i.due, i.obligation, i.unit, i.period))


class Generator:
    """:func:`generate_instances` one obligation at a time, and for parts of one: the due days in a
    window, the periods or the owners asked for. Every instance it yields is the very one
    ``generate_instances(pack, start, end, tracking_start=...)`` makes for that key, so a caller
    can work through an installation's history a piece at a time (engine/sync.py)."""

    def __init__(self, pack: RulePack, start: date, end: date, tracking_start: date | None = None) -> None:
        self.pack, self.start, self.end = pack, start, end
        self.tracking = tracking_start if tracking_start is not None else pack.info.tracking_start
        self.calc = pack.due_calculator()
        self.tz = pack.info.timezone
        # Periods may end long before their due day (compiled reports, yearly windows): look back; and a
        # document due inside its own period (the yearly plan due 31/01) ends up to a year after it.
        self.lo, self.hi = start - timedelta(days=400), end + timedelta(days=370)
        # Units without a validity period answer for themselves on every day (owner_on's first step):
        # asked ~200,000 times in a national pack, so answered without the call.
        self.timeless = {uid for uid, u in pack.units.items() if u.valid_from is None and u.valid_until is None}
        self._chains: dict[str, frozenset[str]] = {}

    def chain(self, uid: str) -> frozenset[str]:
        """Every unit that can answer for ``uid`` on some day: itself and its successors."""
        got = self._chains.get(uid)
        if got is None:
            seen: list[str] = []
            cur: str | None = uid
            while cur is not None and cur not in seen and cur in self.pack.units:
                seen.append(cur)
                cur = self.pack.units[cur].successor
            got = self._chains[uid] = frozenset(seen)
        return got

    def periods(self, ob: Obligation) -> list[tuple[str, date]]:
        """The obligation's periods that have instances due in [start, end] (when they have
        reporters), as (key, due day), in order: a caller can take them a few at a time."""
        out = []
        for period in periods_between(ob, self.lo, self.hi):
            d = self.calc.due(ob, period)
            if d is not None and self.start <= d.day <= self.end and self.pack.in_force(ob, d.day):
                out.append((period.key, d.day))
        return out

    def instances(self, ob: Obligation, *, due_from: date | None = None, due_until: date | None = None,
                  periods: set[str] | None = None, owners: set[str] | None = None) -> list[Instance]:
        """The obligation's instances due in [start, end] (narrowed to [due_from, due_until]), of the
        given period keys and owners when given, in the order of :func:`generate_instances`."""
        pack, calc = self.pack, self.calc
        lo_due = self.start if due_from is None else max(self.start, due_from)
        hi_due = self.end if due_until is None else min(self.end, due_until)
        if lo_due > hi_due:
            return []
        reporters = pack.reporters(ob)
        direct = set(reporters)
        if owners is not None:      # only reporters whose duty can reach one of the owners
            reporters = [uid for uid in reporters if not owners.isdisjoint(self.chain(uid))]
            if not reporters:
                return []
        out: dict[tuple[str, str, str], Instance] = {}
        for period in periods_between(ob, self.lo, self.hi):
            if periods is not None and period.key not in periods:
                continue
            d = calc.due(ob, period)
            if d is None or not (lo_due <= d.day <= hi_due) or not pack.in_force(ob, d.day):
                continue
            for uid in reporters:
                owner = uid if uid in self.timeless else pack.owner_on(uid, d.day)
                if owner is None or (owners is not None and owner not in owners):
                    continue
                k = (ob.id, owner, period.key)
                # A successor that owes the report in its own right inherits nothing from it.
                inherited = () if owner == uid or owner in direct else (uid,)
                prev = out.get(k)
                if prev is not None:
                    if inherited and inherited[0] not in prev.inherited_from:
                        out[k] = _with_inherited(prev, prev.inherited_from + inherited)
                    continue
                out[k] = Instance(
                    ob.id, owner, period.key, period.label, period.start, period.end,
                    period.cutoff_start, period.cutoff_end, d.day, d.unrolled, due_moment(d.day, self.tz),
                    ob.recipient, self.tracking is None or d.day >= self.tracking, inherited,
                )
        return sorted(out.values(), key=lambda i: (i.due, i.unit, i.period))


def _with_inherited(inst: Instance, inherited: tuple[str, ...]) -> Instance:
    from dataclasses import replace
    return replace(inst, inherited_from=inherited)


@dataclass(frozen=True)
class ReportItem:
    """One unit's report for one period as a secretary reads it: codes (for `submit` and the
    import files) beside titles, names and the period in words. Shown by `backlog` and written to
    the tracking sheet."""
    obligation: str
    obligation_title: str
    unit: str
    unit_name: str
    period: str
    period_label: str
    due: date
    recipient: str
    recipient_name: str

    def as_dict(self) -> dict[str, object]:
        return {"obligation": self.obligation, "obligation_title": self.obligation_title, "unit": self.unit,
                "unit_name": self.unit_name, "period": self.period, "period_label": self.period_label,
                "due": self.due.isoformat(), "due_vi": f"{self.due:%d/%m/%Y}", "recipient": self.recipient,
                "recipient_name": self.recipient_name}
