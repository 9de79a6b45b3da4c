"""Reporting periods and their data cut-off windows (Nghị định 09/2019/NĐ-CP, Điều 12)."""

from __future__ import annotations

import calendar as _stdcal
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from dateutil.relativedelta import relativedelta
from dateutil.rrule import MONTHLY, rrule

from engine.rules_model import Cutoff, Obligation, Recurrence

_STEP = {"monthly": 1, "quarterly": 3, "half_yearly": 6, "yearly": 12}
_ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV"}


@dataclass(frozen=True)
class Period:
    key: str          # stable id used in submissions: 2026-01, 2026-Q1, 2026-H1, 2026, once …
    label: str        # Vietnamese, as a secretary writes it
    start: date
    end: date
    cutoff_start: date | None
    cutoff_end: date | None


def _month_end(d: date) -> date:
    return d.replace(day=_stdcal.monthrange(d.year, d.month)[1])


def _key_and_label(freq: str, start: date, end: date) -> tuple[str, str]:
    if freq == "monthly":
        return f"{start:%Y-%m}", f"Tháng {start:%m/%Y}"
    if freq == "quarterly":
        q = (start.month - 1) // 3 + 1
        return f"{start.year}-Q{q}", f"Quý {_ROMAN[q]}/{start.year}"
    if freq == "half_yearly":
        h = 1 if start.month <= 6 else 2
        return f"{start.year}-H{h}", (f"6 tháng đầu năm {start.year}" if h == 1 else f"6 tháng cuối năm {start.year}")
    if freq == "yearly":
        return f"{start.year}", f"Năm {start.year}"
    if freq == "every_n_months":
        return f"{start:%Y-%m}..{end:%Y-%m}", f"Giai đoạn {start:%d/%m/%Y} – {end:%d/%m/%Y}"
    return "once", f"{start:%d/%m/%Y} – {end:%d/%m/%Y}"


def _cutoff_end(period_end: date, cutoff: Cutoff) -> date:
    month = cutoff.month or period_end.month
    return date(period_end.year, month, cutoff.day)


def periods_between(obligation: Obligation, lo: date, hi: date) -> list[Period]:
    """Periods whose end falls in [lo, hi], in order."""
    rec: Recurrence = obligation.recurrence
    cutoff = obligation.cutoff if obligation.has_cutoff else None
    out: list[Period] = []
    if rec.freq == "once":
        assert rec.start and rec.end
        if lo <= rec.end <= hi:
            key, label = _key_and_label("once", rec.start, rec.end)
            out.append(Period(key, label, rec.start, rec.end, None, None))
        return out
    if rec.freq == "every_n_months":
        assert rec.anchor and rec.months_interval
        step = rec.months_interval
        starts = rrule(MONTHLY, interval=step, dtstart=datetime.combine(rec.anchor, datetime.min.time()),
                       until=datetime.combine(hi, datetime.min.time()))
    else:
        step = _STEP[rec.freq]
        first = date(lo.year - 1, 1, 1)
        starts = rrule(MONTHLY, interval=step, dtstart=datetime.combine(first, datetime.min.time()),
                       until=datetime.combine(hi, datetime.min.time()))
    for dt in starts:
        start = dt.date()
        end = start + relativedelta(months=step) - timedelta(days=1)
        if end < lo or end > hi:
            continue
        if rec.months is not None and end.month not in rec.months:
            continue
        key, label = _key_and_label(rec.freq, start, end)
        if cutoff is not None:
            c_end = _cutoff_end(end, cutoff)
            c_start = _cutoff_end(start - timedelta(days=1), cutoff) + timedelta(days=1)
        else:
            c_end = c_start = None
        out.append(Period(key, label, start, end, c_start, c_end))
    return out


def period_for_key(obligation: Obligation, key: str) -> Period | None:
    """Find a period by its key (used when a submission names one)."""
    if key == "once" or obligation.recurrence.freq == "once":
        found = periods_between(obligation, date.min, date.max)
        return found[0] if found and found[0].key == key else None
    try:
        year = int(key[:4])
    except ValueError:
        return None
    for p in periods_between(obligation, date(year, 1, 1), date(year + 3, 12, 31)):
        if p.key == key:
            return p
    return None
