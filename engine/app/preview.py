"""`dondoc preview`: what a staged edit of the rules would change, as data.

The secretariat edits a copy of rules/ and asks "what will my edit change?" before moving the files
into rules/ (the daemon reloads them). The answer is computed twice on throw-away copies of the
state, once with the live rules and once with the staged ones, over the same days
(engine/app/simulation.py), and returned as a :class:`PreviewResult`: deadlines added, moved and
removed, notices added and removed. A front end (CLI, web console) only presents it.

Deadlines are compared as sync leaves them tracked on each copy (sync decides what a rules change
does: it never moves a submitted or overdue item, it applies the tracking start), so a moved due
day is one "moved" entry, not a removal plus an addition. Notices are compared by day and by their
key (obligation, unit, period, stage, recipient).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

from engine.app.simulation import SideRun, Tracked
from engine.errors import RuleError, RulePackInvalid, display_path
from engine.evaluation import NoticeIntent
from engine.kpi.subject import decode as decode_kpi
from engine.rules_loader import RulePack
from engine.vi import KPI_STATUS, NOTICE_KIND, fmt_date

MAX_DAYS = 400
DEFAULT_DAYS = 35


@dataclass(frozen=True)
class Deadline:
    """One unit's report for one period, as the rules place it."""
    obligation: str
    obligation_title: str
    unit: str
    unit_name: str
    period: str
    period_label: str
    due: date
    recipient: str
    recipient_name: str

    def as_dict(self) -> dict[str, Any]:
        return {"obligation": self.obligation, "obligation_title": self.obligation_title, "unit": self.unit,
                "unit_name": self.unit_name, "period": self.period, "period_label": self.period_label,
                "due": self.due.isoformat(), "recipient": self.recipient, "recipient_name": self.recipient_name}


@dataclass(frozen=True)
class MovedDeadline:
    """The same report and period with another due day (or another recipient) under the staged rules."""
    before: Deadline
    after: Deadline

    def as_dict(self) -> dict[str, Any]:
        d = self.after.as_dict()
        d.pop("due")
        d.pop("recipient")
        d.pop("recipient_name")
        return {**d, "old_due": self.before.due.isoformat(), "new_due": self.after.due.isoformat(),
                "old_recipient": self.before.recipient, "new_recipient": self.after.recipient}


@dataclass(frozen=True)
class Notice:
    """One notice the engine would create on `day`."""
    day: date
    key: str
    obligation: str
    obligation_title: str
    unit: str
    unit_name: str
    period: str
    period_label: str
    stage: str
    kind: str
    kind_label: str
    recipient: str
    recipient_name: str
    working_days_before: int
    working_days_late: int

    def as_dict(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "key": self.key, "obligation": self.obligation,
                "obligation_title": self.obligation_title, "unit": self.unit, "unit_name": self.unit_name,
                "period": self.period, "period_label": self.period_label, "stage": self.stage, "kind": self.kind,
                "kind_label": self.kind_label, "recipient": self.recipient, "recipient_name": self.recipient_name,
                "working_days_before": self.working_days_before, "working_days_late": self.working_days_late}


@dataclass(frozen=True)
class DeadlineGroup:
    """Deadlines of one obligation and period that changed the same way (the summary's line)."""
    change: str                 # added | moved | removed
    obligation: str
    obligation_title: str
    period: str
    period_label: str
    count: int                  # how many units
    due: date | None            # added, removed: the due day (None when the units' days differ)
    old_due: date | None = None  # moved
    new_due: date | None = None

    def as_dict(self) -> dict[str, Any]:
        iso = lambda d: d.isoformat() if d else None  # noqa: E731
        return {"change": self.change, "obligation": self.obligation, "obligation_title": self.obligation_title,
                "period": self.period, "period_label": self.period_label, "units": self.count, "due": iso(self.due),
                "old_due": iso(self.old_due), "new_due": iso(self.new_due)}


@dataclass(frozen=True)
class NoticeCount:
    """Notices added and removed for one day or one recipient."""
    key: str                    # the day (yyyy-mm-dd) or the recipient's id
    label: str                  # dd/mm/yyyy or the recipient's name
    added: int
    removed: int

    def as_dict(self, name: str) -> dict[str, Any]:
        return {name: self.key, "label": self.label, "added": self.added, "removed": self.removed}


@dataclass
class PreviewResult:
    """The difference between the staged and the live rules over [start, end]."""
    start: date
    end: date
    live_dir: str
    staged_dir: str
    unit: str | None = None
    obligation: str | None = None
    deadlines_added: list[Deadline] = field(default_factory=list)
    deadlines_moved: list[MovedDeadline] = field(default_factory=list)
    deadlines_removed: list[Deadline] = field(default_factory=list)
    notices_added: list[Notice] = field(default_factory=list)
    notices_removed: list[Notice] = field(default_factory=list)
    live_notices: int = 0       # all notices of the window under each set of rules (after the filters)
    staged_notices: int = 0
    warnings: list[RuleError] = field(default_factory=list)   # `rules check` warnings of the staged rules

    @property
    def unchanged(self) -> bool:
        return not (self.deadlines_added or self.deadlines_moved or self.deadlines_removed
                    or self.notices_added or self.notices_removed)

    def deadline_groups(self) -> list[DeadlineGroup]:
        """Added, moved, removed deadlines counted by obligation and period (and due days)."""
        out: list[DeadlineGroup] = []
        for change, items in (("added", self.deadlines_added), ("removed", self.deadlines_removed)):
            groups: dict[tuple[str, str], list[Deadline]] = {}
            for d in items:
                groups.setdefault((d.obligation, d.period), []).append(d)
            for ds in groups.values():
                days = {d.due for d in ds}
                first = min(ds, key=lambda d: d.due)
                out.append(DeadlineGroup(change, first.obligation, first.obligation_title, first.period,
                                         first.period_label, len(ds), first.due if len(days) == 1 else None))
        moved: dict[tuple[str, str, date, date], list[MovedDeadline]] = {}
        for m in self.deadlines_moved:
            moved.setdefault((m.after.obligation, m.after.period, m.before.due, m.after.due), []).append(m)
        for (_, _, old, new), ms in moved.items():
            a = ms[0].after
            out.append(DeadlineGroup("moved", a.obligation, a.obligation_title, a.period, a.period_label, len(ms),
                                     None, old, new))
        order = {"added": 0, "moved": 1, "removed": 2}
        return sorted(out, key=lambda g: (order[g.change], g.obligation, g.due or g.new_due or date.min, g.period))

    def notices_by_day(self) -> list[NoticeCount]:
        added = Counter(n.day for n in self.notices_added)
        removed = Counter(n.day for n in self.notices_removed)
        return [NoticeCount(d.isoformat(), fmt_date(d), added[d], removed[d]) for d in sorted(set(added) | set(removed))]

    def notices_by_recipient(self) -> list[NoticeCount]:
        added = Counter(n.recipient for n in self.notices_added)
        removed = Counter(n.recipient for n in self.notices_removed)
        names = {n.recipient: n.recipient_name for n in self.notices_added + self.notices_removed}
        keys = sorted(set(added) | set(removed), key=lambda r: (-(added[r] + removed[r]), names[r]))
        return [NoticeCount(r, names[r], added[r], removed[r]) for r in keys]

    def as_dict(self) -> dict[str, Any]:
        """Stable keys for scripts (`dondoc preview --json`); dates are yyyy-mm-dd."""
        return {
            "from": self.start.isoformat(), "to": self.end.isoformat(),
            "live_rules": self.live_dir, "staged_rules": self.staged_dir,
            "unit": self.unit, "obligation": self.obligation,
            "unchanged": self.unchanged,
            "summary": {"deadlines_added": len(self.deadlines_added), "deadlines_moved": len(self.deadlines_moved),
                        "deadlines_removed": len(self.deadlines_removed), "notices_added": len(self.notices_added),
                        "notices_removed": len(self.notices_removed), "live_notices": self.live_notices,
                        "staged_notices": self.staged_notices},
            "deadlines": {"by_obligation": [g.as_dict() for g in self.deadline_groups()],
                          "added": [d.as_dict() for d in self.deadlines_added],
                          "moved": [m.as_dict() for m in self.deadlines_moved],
                          "removed": [d.as_dict() for d in self.deadlines_removed]},
            "notices": {"by_day": [c.as_dict("day") for c in self.notices_by_day()],
                        "by_recipient": [c.as_dict("recipient") for c in self.notices_by_recipient()],
                        "added": [n.as_dict() for n in self.notices_added],
                        "removed": [n.as_dict() for n in self.notices_removed]},
            "warnings": [w.as_dict() for w in self.warnings],
        }


class StagedRulesInvalid(RulePackInvalid):
    """The staged rules do not pass `rules check` (rules, KPI files, templates): nothing is
    previewed; ``errors`` says where and why, ``directory`` which folder."""

    exit_code = 1

    def __init__(self, directory: Path, errors: list[RuleError]):
        self.directory = directory
        super().__init__(errors)


# ─── computing it ───────────────────────────────────────────────────────────────────────────────
class _Names:
    """Vietnamese names for ids, from one pack (the staged one names what it added, the live one
    what it removed), KPI subjects included."""

    def __init__(self, pack: RulePack, tracked: dict[tuple[str, str, str], Tracked]):
        self.pack = pack
        self.tracked = tracked
        self._kpi: Any = None

    def unit(self, uid: str) -> str:
        u = self.pack.units.get(uid)
        return u.name if u else uid

    def _kpi_pack(self) -> Any:
        if self._kpi is None:
            try:
                from engine.kpi.loader import load_kpi_for_pack

                self._kpi = load_kpi_for_pack(self.pack)
            except Exception:  # noqa: BLE001 - a broken KPI folder only costs the nicer names
                self._kpi = False
        return self._kpi

    def obligation(self, oid: str) -> str:
        ob = self.pack.obligations.get(oid)
        if ob is not None:
            return ob.title
        if oid == "kpi-summary":
            return NOTICE_KIND["kpi_summary"]
        subject = decode_kpi(oid, "x:x")
        if subject is not None:
            kpi = self._kpi_pack()
            target = kpi.targets.get(subject.target) if kpi else None
            return f"Chỉ tiêu: {target.text}" if target is not None else f"Chỉ tiêu {subject.target}"
        return oid

    def period(self, oid: str, unit: str, period: str) -> str:
        inst = self.tracked.get((oid, unit, period))
        if inst is not None:
            return inst.period_label
        subject = decode_kpi(oid, period)
        if subject is not None:
            status = KPI_STATUS.get(subject.status, subject.status)
            ref = fmt_date(subject.milestone) if subject.milestone else f"năm {subject.ref}" if subject.ref.isdigit() else subject.ref
            return f"{status} – {ref}"
        if oid == "kpi-summary" and "-W" in period:
            year, week = period.split("-W", 1)
            return f"Tuần {int(week)}/{year}"
        return period


def _deadline(t: Tracked, names: _Names) -> Deadline:
    return Deadline(t.obligation, names.obligation(t.obligation), t.unit, names.unit(t.unit), t.period,
                    t.period_label, t.due, t.recipient, names.unit(t.recipient))


def _notice(day: date, n: NoticeIntent, names: _Names) -> Notice:
    return Notice(day, n.key, n.obligation, names.obligation(n.obligation), n.unit, names.unit(n.unit), n.period,
                  names.period(n.obligation, n.unit, n.period), n.stage, n.kind, NOTICE_KIND.get(n.kind, n.kind),
                  n.recipient, names.unit(n.recipient), n.wd_before, n.wd_late)


def compare(live: RulePack, staged: RulePack, start: date, end: date, live_run: SideRun, staged_run: SideRun, *,
            unit: str | None = None, obligation: str | None = None) -> PreviewResult:
    """The differences between the two sides of engine/app/simulation.simulate_pair.

    Deadlines are what sync left tracked on each side: added (new, or brought back), moved (due day
    or recipient changed), removed (retired); sync itself decides, so an overdue or submitted item
    never "moves" and a new rule's periods due since the tracking start are added (chased at once)."""
    def keep(key: tuple[str, str, str]) -> bool:
        return (obligation is None or key[0] == obligation) and (unit is None or key[1] == unit)

    old = {k: t for k, t in live_run.tracked.items() if keep(k)}
    new = {k: t for k, t in staged_run.tracked.items() if keep(k)}
    old_names, new_names = _Names(live, live_run.tracked), _Names(staged, staged_run.tracked)
    inside = lambda t: t is not None and start <= t.due <= end  # noqa: E731
    result = PreviewResult(start, end, display_path(live.directory), display_path(staged.directory), unit, obligation,
                           warnings=list(staged.warnings))
    for key in sorted(set(old) | set(new), key=lambda k: ((new.get(k) or old[k]).due, k)):
        a, b = old.get(key), new.get(key)
        if a is None:
            assert b is not None
            if b.due <= end:             # due before the window too: a new item that is overdue at once
                result.deadlines_added.append(_deadline(b, new_names))
        elif b is None:
            if inside(a):
                result.deadlines_removed.append(_deadline(a, old_names))
        elif (a.due != b.due or a.recipient != b.recipient) and (inside(a) or inside(b)):
            result.deadlines_moved.append(MovedDeadline(_deadline(a, old_names), _deadline(b, new_names)))

    def wanted(n: NoticeIntent) -> bool:
        return (obligation is None or n.obligation == obligation) and (unit is None or unit in (n.unit, n.recipient))

    before = {(d, n.key): (d, n) for d, n in live_run.notices if wanted(n)}
    after = {(d, n.key): (d, n) for d, n in staged_run.notices if wanted(n)}
    result.live_notices, result.staged_notices = len(before), len(after)
    result.notices_added = [_notice(*after[k], new_names) for k in sorted(set(after) - set(before))]   # by day, key
    result.notices_removed = [_notice(*before[k], old_names) for k in sorted(set(before) - set(after))]
    return result


def default_window(today: date, start: date | None, end: date | None) -> tuple[date, date]:
    """From today (or --from) to 35 days later (or --to)."""
    first = start or today
    return first, end or first + timedelta(days=DEFAULT_DAYS)


def run(source_url: str, live: RulePack, staged: RulePack, start: date, end: date, at: time, *,
        unit: str | None = None, obligation: str | None = None, tracking_start: date | None = None) -> PreviewResult:
    """Both simulations, then the comparison."""
    from engine.app.simulation import simulate_pair

    live_run, staged_run = simulate_pair(source_url, live, staged, start, end, at, tracking_start=tracking_start)
    return compare(live, staged, start, end, live_run, staged_run, unit=unit, obligation=obligation)
