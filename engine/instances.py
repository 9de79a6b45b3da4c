"""Obligation instances: every (obligation, unit, period) with its cut-off window and due moment."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from engine.duedates import due_moment
from engine.periods import periods_between
from engine.rules_loader import RulePack


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
    tracking = tracking_start if tracking_start is not None else pack.info.tracking_start
    calc = pack.due_calculator()
    tz = pack.info.timezone
    # Periods may end long before their due day (compiled reports, yearly windows): look back; and a
    # document due inside its own period (the yearly plan due 31/01) ends up to a year after it.
    lo, hi = start - timedelta(days=400), end + timedelta(days=370)
    out: dict[tuple[str, str, str], Instance] = {}
    # Units without a validity period answer for themselves on every day (owner_on's first step):
    # asked ~200,000 times in a national pack, so answered without the call.
    timeless = {uid for uid, u in pack.units.items() if u.valid_from is None and u.valid_until is None}
    for ob in pack.obligations.values():
        reporters = pack.reporters(ob)
        direct = set(reporters)
        for period in periods_between(ob, lo, hi):
            d = calc.due(ob, period)
            if d is None or not (start <= d.day <= end) or not pack.in_force(ob, d.day):
                continue
            for uid in reporters:
                owner = uid if uid in timeless else pack.owner_on(uid, d.day)
                if owner is None or (unit is not None and owner != unit):
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
                    period.cutoff_start, period.cutoff_end, d.day, d.unrolled, due_moment(d.day, tz),
                    ob.recipient, tracking is None or d.day >= tracking, inherited,
                )
    return sorted(out.values(), key=lambda i: (i.due, i.obligation, i.unit, i.period))


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
