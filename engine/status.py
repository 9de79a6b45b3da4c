"""Status of each instance in the categories Vietnamese task-tracking systems use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlmodel import Session, select

from engine.rules_loader import RulePack
from engine.state import InstanceRow, SubmissionRow, WaiverRow
from engine.vi import REPORT_STATUS

STATUS_VI = REPORT_STATUS
DUE_SOON_DEFAULT = 3


@dataclass(frozen=True)
class StatusLine:
    obligation: str
    unit: str
    period: str
    period_label: str
    due: date
    recipient: str
    status: str
    submitted_on: date | None
    ref: str | None
    wd_late: int
    wd_left: int

    @property
    def status_vi(self) -> str:
        return STATUS_VI[self.status]

    def as_dict(self) -> dict[str, object]:
        return {"obligation": self.obligation, "unit": self.unit, "period": self.period, "period_label": self.period_label,
                "due": self.due.isoformat(), "recipient": self.recipient, "status": self.status,
                "status_vi": self.status_vi, "submitted_on": self.submitted_on.isoformat() if self.submitted_on else None,
                "ref": self.ref, "working_days_late": self.wd_late, "working_days_left": self.wd_left}


def classify(pack: RulePack, due: date, as_of: date, submitted_on: date | None, waived: bool, obligation: str,
             awaiting_since: date | None = None) -> tuple[str, int, int]:
    """(status, working days late, working days left) as they stood at the end of `as_of`.

    ``awaiting_since``: the unit said "đã gửi" from its link and the secretariat has not decided yet;
    the day counts are those of the date the unit gave (late by then, or days that were left)."""
    cal = pack.calendar
    if waived:
        return "waived", 0, 0
    if submitted_on is not None and submitted_on <= as_of:
        late = max(0, cal.working_days_between(due, submitted_on)) if submitted_on > due else 0
        return ("done_on_time" if submitted_on <= due else "done_late"), late, 0
    if awaiting_since is not None and awaiting_since <= as_of:
        late = max(0, cal.working_days_between(due, awaiting_since)) if awaiting_since > due else 0
        return "awaiting", late, 0
    if as_of > due:
        return "overdue", cal.working_days_between(due, as_of), 0
    left = cal.working_days_between(as_of, due)
    ob = pack.obligations.get(obligation)
    soon = DUE_SOON_DEFAULT
    if ob is not None:
        before = pack.policy_for(ob).before_due_working_days
        soon = max(before) if before else DUE_SOON_DEFAULT
    return ("due_soon" if left <= soon else "in_progress"), 0, left


def status_lines(session: Session, pack: RulePack, as_of: date, unit: str | None = None,
                 include_future: bool = False) -> list[StatusLine]:
    """Instances due up to as_of (or all when include_future), judged as of that day.

    Submissions and waivers recorded later than as_of are ignored, so a past date shows the
    picture the secretariat had then.
    """
    q = select(InstanceRow).where(InstanceRow.active == True)  # noqa: E712
    if unit:
        q = q.where(InstanceRow.unit == unit)
    rows = session.exec(q.order_by(InstanceRow.due, InstanceRow.obligation, InstanceRow.unit)).all()
    subs = {s.instance_id: s for s in session.exec(select(SubmissionRow).where(SubmissionRow.active == True)).all()}  # noqa: E712
    waivers = {w.instance_id: w for w in session.exec(select(WaiverRow).where(WaiverRow.active == True)).all()}  # noqa: E712
    out: list[StatusLine] = []
    for r in rows:
        sub = subs.get(r.id)
        w = waivers.get(r.id)
        waived = w is not None and w.recorded_at.date() <= as_of
        submitted = sub.submitted_on if sub is not None else None
        status, late, left = classify(pack, r.due, as_of, submitted, waived, r.obligation, r.awaiting_since)
        if not include_future and status in ("in_progress",) and r.due > as_of:
            continue
        out.append(StatusLine(r.obligation, r.unit, r.period, r.period_label, r.due, r.recipient, status,
                              submitted if submitted and submitted <= as_of else None,
                              sub.ref if sub else None, late, left))
    return out


def on_time_rates(lines: list[StatusLine]) -> dict[str, dict[str, object]]:
    """Per unit: on-time share of the reports already due (waived ones excluded)."""
    acc: dict[str, dict[str, int]] = {}
    for l in lines:
        if l.status in ("waived", "in_progress", "due_soon", "awaiting"):
            continue
        a = acc.setdefault(l.unit, {"on_time": 0, "late": 0, "missing": 0})
        a["on_time" if l.status == "done_on_time" else "late" if l.status == "done_late" else "missing"] += 1
    out: dict[str, dict[str, object]] = {}
    for unit, a in acc.items():
        total = sum(a.values())
        out[unit] = {**a, "due": total, "on_time_rate": round(a["on_time"] / total, 4) if total else None}
    return out
