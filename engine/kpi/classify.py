"""Status of each KPI target as of a date. Pure functions: no database, so every rule is testable
by hand-computed examples (tests/test_kpi_classify.py).

Semantics (docs/kpi.md, "Cách phân loại"):
* The plan's path for an indicator runs from its anchor (the baseline, or the previous milestone's
  target, whichever is later; else the first reported value) linearly to each milestone.
* Stock targets (a level at a date): after the milestone's reporting period is due, the value of
  that period decides Đạt / Không đạt; before it, the latest value is compared with the path at
  the value's own date: more than `tolerance` × (the segment's planned change) short = behind.
* Flow targets ("mỗi năm"): each year of the target's window is judged on its own; a year's
  requirement is the path value for that year. The latest judged year missed = Không đạt; a year
  in progress is compared pro rata with its requirement.
* Thiếu số liệu: the latest period whose report is due has no value (or the milestone's period,
  or the latest judged year). Chưa đến kỳ đánh giá (not_due): nothing is due yet and nothing is
  reported, so nothing can be said.
"""

from __future__ import annotations

import calendar as _stdcal
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from engine.kpi.loader import DOWN, UP, KpiPack, KTarget
from engine.kpi.model import UNITS, Indicator, fmt_num
from engine.periods import Period, periods_between
from engine.rules_loader import RulePack
from engine.vi import KPI_STATUS

STATUS_VI = KPI_STATUS
SLIPPING = ("behind", "missed", "no_data")
STATUS_ORDER = {"missed": 0, "behind": 1, "no_data": 2, "on_track": 3, "not_due": 4, "met": 5}


@dataclass(frozen=True)
class Obs:
    """One reported value (the active one when it was corrected)."""
    value: float
    as_of: date
    source: str | None = None
    recorded_at: datetime | None = None


@dataclass(frozen=True)
class TargetResult:
    target: KTarget
    status: str
    latest: Obs | None          # newest value up to the date
    # The value the status rests on: the charts ring it and `kpi report` shows it (with its date).
    # None when no value decided (Thiếu số liệu, Chưa đến kỳ đánh giá).
    judged: Obs | None
    expected: float | None      # where the plan's path puts the indicator at `expected_at`
    expected_at: date | None
    period: str | None          # the period (key) or year the status concerns
    detail: str                 # one Vietnamese sentence

    @property
    def status_vi(self) -> str:
        return STATUS_VI[self.status]


class Schedule:
    """When the report that supplies an indicator is due: the periods come from the rule pack."""

    def __init__(self, pack: RulePack):
        self.pack = pack
        self.calc = pack.due_calculator()
        self._cache: dict[tuple[str, int, int], list[tuple[Period, date]]] = {}

    @classmethod
    def of(cls, pack: RulePack) -> "Schedule":
        """The pack's schedule, shared by every pass over the same pack: its periods and due days
        depend on the pack alone, and a preview of five weeks makes 72 passes (the daemon one an
        hour)."""
        return pack.derived("kpi-schedule", lambda: cls(pack))

    def periods(self, obligation_id: str, y0: int, y1: int) -> list[tuple[Period, date]]:
        """(period, due day) for periods ending in years y0..y1 whose due day is in force."""
        key = (obligation_id, y0, y1)
        if key not in self._cache:
            ob = self.pack.obligations[obligation_id]
            out = []
            for p in periods_between(ob, date(y0, 1, 1), date(y1, 12, 31)):
                d = self.calc.due(ob, p)
                if d is not None and self.pack.in_force(ob, d.day):
                    out.append((p, d.day))
            self._cache[key] = out
        return self._cache[key]

    def latest_due(self, obligation_id: str, as_of: date) -> tuple[Period, date] | None:
        due = [pd for pd in self.periods(obligation_id, as_of.year - 3, as_of.year + 1) if pd[1] <= as_of]
        return max(due, key=lambda pd: pd[1]) if due else None

    def period_at(self, obligation_id: str, day: date) -> tuple[Period, date] | None:
        """The period containing `day`, else the latest one ending before it."""
        ps = self.periods(obligation_id, day.year - 2, day.year + 1)
        inside = [pd for pd in ps if pd[0].start <= day <= pd[0].end]
        if inside:
            return inside[-1]
        before = [pd for pd in ps if pd[0].end <= day]
        return before[-1] if before else None

    def year_due(self, obligation_id: str, year: int) -> date:
        """The day year `year`'s figures are due: the due day of the last period ending that year."""
        ps = [pd for pd in self.periods(obligation_id, year - 1, year + 1) if pd[0].end.year == year]
        return max(d for _, d in ps) if ps else date(year + 1, 1, 31)


@dataclass(frozen=True)
class _Anchor:
    day: date
    value: float
    target: KTarget | None      # None: the baseline or the first reported value


class IndicatorPath:
    """The plan's path for one indicator, shared by all its targets."""

    def __init__(self, ind: Indicator, targets: list[KTarget], first: Obs | None):
        self.ind = ind
        self.targets = [t for t in targets]
        self.first = first
        self._anchors: dict[str, _Anchor | None] = {}

    def anchor(self, t: KTarget) -> _Anchor | None:
        if t.id in self._anchors:
            return self._anchors[t.id]
        if self.ind.unit == "boolean":
            self._anchors[t.id] = None
            return None
        cands: list[_Anchor] = []
        b = self.ind.baseline
        if b is not None and b.date < t.milestone:
            cands.append(_Anchor(b.date, b.value, None))
        earlier = [o for o in self.targets if o.milestone < t.milestone]
        if earlier:
            last = max(o.milestone for o in earlier)
            at_last = [o for o in earlier if o.milestone == last]
            mid = t.value if t.op != "range" else (t.lo + t.hi) / 2
            best = min(at_last, key=lambda o: abs(self.ref(o) - mid))
            if not cands or last > cands[0].day:
                cands = [_Anchor(last, self.ref(best), best)]
        if not cands and self.first is not None and self.first.as_of < t.milestone:
            cands.append(_Anchor(self.first.as_of, self.first.value, None))
        a = cands[0] if cands else None
        self._anchors[t.id] = a
        return a

    def ref(self, t: KTarget) -> float:
        a = self.anchor(t)
        return t.ref_from(a.value if a else None)

    def expected(self, t: KTarget, day: date) -> tuple[float, float] | None:
        """(expected value, planned change of the segment used) at `day`; None without an anchor."""
        a = self.anchor(t)
        if a is None:
            return None
        ref = t.ref_from(a.value)
        span = abs(ref - a.value)
        if day >= t.milestone:
            return ref, span
        if day >= a.day:
            frac = (day - a.day).days / max((t.milestone - a.day).days, 1)
            return a.value + (ref - a.value) * frac, span
        if a.target is not None:
            return self.expected(a.target, day)
        return a.value, span

    def direction(self, t: KTarget) -> int | None:
        d = t.fixed_direction
        if d is not None:
            return d
        a = self.anchor(t)
        if a is None:
            return None
        ref = t.ref_from(a.value)
        return UP if ref > a.value else DOWN if ref < a.value else None

    # --- flows --------------------------------------------------------------------------
    def flow_anchor(self, t: KTarget) -> tuple[int, float] | None:
        b = self.ind.baseline
        cand: tuple[int, float] | None = (b.date.year, b.value) if b is not None and b.date.year < t.milestone.year else None
        earlier = [o for o in self.targets if o.milestone.year < t.milestone.year]
        if earlier:
            last = max(o.milestone.year for o in earlier)
            at_last = [o for o in earlier if o.milestone.year == last]
            mid = t.value if t.op != "range" else (t.lo + t.hi) / 2
            best = min(at_last, key=lambda o: abs(_flow_ref(o) - mid))
            if cand is None or last > cand[0]:
                cand = (last, _flow_ref(best))
        return cand

    def window(self, t: KTarget) -> tuple[int, int]:
        if t.since is not None:
            return t.since.year, t.milestone.year
        a = self.flow_anchor(t)
        return (a[0] + 1 if a else t.milestone.year), t.milestone.year

    def requirement(self, t: KTarget, year: int) -> tuple[float, float]:
        """(lo, hi) a year's amount must lie in; one side is ±inf for one-sided comparators."""
        if t.op == "range":
            return t.lo, t.hi
        a = self.flow_anchor(t)
        v = t.value
        if a is not None and a[0] < year < t.milestone.year:
            v = a[1] + (t.value - a[1]) * (year - a[0]) / (t.milestone.year - a[0])
        if t.op in ("ge", "gt"):
            return v, float("inf")
        if t.op in ("le", "lt"):
            return float("-inf"), v
        return v, v


def _flow_ref(t: KTarget) -> float:
    return t.lo if t.op == "range" else float(t.value)


def _year_ok(t: KTarget, v: float, lo: float, hi: float, eps: float = 1e-9) -> bool:
    """A year's amount against that year's requirement [lo, hi] (one side infinite for ≥/≤)."""
    if t.op == "gt":
        return v > lo + eps
    if t.op == "lt":
        return v < hi - eps
    return (lo == float("-inf") or v >= lo - eps) and (hi == float("inf") or v <= hi + eps)


def _req_text(t: KTarget, unit: str, lo: float, hi: float) -> str:
    u = UNITS[unit].label
    s = f" {u}" if u else ""
    if t.op == "range":
        return f"{fmt_num(lo)}–{fmt_num(hi)}{s}"
    if t.op in ("ge", "gt"):
        return f"{'≥' if t.op == 'ge' else '>'} {fmt_num(round(lo, 2))}{s}"
    if t.op in ("le", "lt"):
        return f"{'≤' if t.op == 'le' else '<'} {fmt_num(round(hi, 2))}{s}"
    return f"= {fmt_num(round(lo, 2))}{s}"


def val_text(v: float | None, unit: str) -> str:
    if v is None:
        return "–"
    if unit == "boolean":
        return "Có" if v >= 0.5 else "Chưa"
    u = UNITS[unit].label
    if unit == "rank":
        return f"hạng {fmt_num(round(v, 1))}"
    return f"{fmt_num(round(v, 2))}{(' ' + u) if u else ''}"


def classify_target(t: KTarget, path: IndicatorPath, obs: list[Obs], as_of: date, sched: Schedule,
                    tolerance: float) -> TargetResult:
    """Status of one target as of the end of `as_of`; `obs` are the indicator's active values."""
    seen = sorted((o for o in obs if o.as_of <= as_of), key=lambda o: (o.as_of, o.recorded_at or datetime.min))
    b = path.ind.baseline
    if path.ind.kind == "stock" and b is not None and b.date <= as_of and all(o.as_of != b.date for o in seen):
        # the baseline is a known value of its period: it is data, not a gap to chase
        seen = sorted(seen + [Obs(b.value, b.date, "giá trị cơ sở")], key=lambda o: o.as_of)
    latest = seen[-1] if seen else None
    if path.ind.kind == "flow":
        return _classify_flow(t, path, seen, latest, as_of, sched, tolerance)
    return _classify_stock(t, path, seen, latest, as_of, sched, tolerance)


def _classify_stock(t: KTarget, path: IndicatorPath, seen: list[Obs], latest: Obs | None, as_of: date,
                    sched: Schedule, tol: float) -> TargetResult:
    ind = path.ind
    unit = ind.unit
    req = t.requirement(unit)
    ms = sched.period_at(ind.source, t.milestone)
    judged_now = as_of >= ms[1] if ms else as_of > t.milestone
    if judged_now:
        lo_day = ms[0].start if ms else t.milestone - timedelta(days=366)
        in_window = [o for o in seen if lo_day <= o.as_of <= t.milestone]
        period = ms[0].key if ms else str(t.milestone.year)
        if not in_window:
            return TargetResult(t, "no_data", latest, None, path.ref(t), t.milestone, period,
                                f"Chưa có số liệu tại mốc {t.milestone:%d/%m/%Y} "
                                f"(kỳ {ms[0].label if ms else period}, báo cáo “{ind.source}”); yêu cầu {req}.")
        v = in_window[-1]
        ok = t.satisfied(v.value)
        return TargetResult(t, "met" if ok else "missed", latest, v, path.ref(t), t.milestone, period,
                            f"{'Đạt' if ok else 'Không đạt'}: tại mốc {t.milestone:%d/%m/%Y} giá trị "
                            f"{val_text(v.value, unit)} (số liệu ngày {v.as_of:%d/%m/%Y}), yêu cầu {req}.")
    due = sched.latest_due(ind.source, as_of)
    exp_now = path.expected(t, as_of)
    if due is not None and (latest is None or latest.as_of < due[0].start):
        return TargetResult(t, "no_data", latest, None, exp_now[0] if exp_now else None, as_of, due[0].key,
                            f"Chưa có số liệu kỳ {due[0].label} (hạn báo cáo “{ind.source}” {due[1]:%d/%m/%Y}).")
    if latest is None:
        return TargetResult(t, "not_due", None, None, exp_now[0] if exp_now else None, as_of, None,
                            "Chưa đến kỳ báo cáo đầu tiên; chưa có số liệu.")
    if t.satisfied(latest.value):
        return TargetResult(t, "met", latest, latest, path.ref(t), t.milestone, None,
                            f"Đạt trước mốc: {val_text(latest.value, unit)} (ngày {latest.as_of:%d/%m/%Y}), yêu cầu {req} "
                            f"vào {t.milestone:%d/%m/%Y}.")
    e = path.expected(t, latest.as_of)
    if e is None:
        return TargetResult(t, "on_track", latest, latest, None, None, None,
                            f"Chưa hoàn thành ({val_text(latest.value, unit)}); mốc {t.milestone:%d/%m/%Y}.")
    exp, span = e
    tol_abs = tol * (span if span > 0 else max(abs(path.ref(t)), 1e-9))
    d = path.direction(t)
    v = latest.value
    if d == UP:
        behind = v < exp - tol_abs
    elif d == DOWN:
        behind = v > exp + tol_abs
    elif t.op == "range":
        behind = v < t.lo - tol_abs or v > t.hi + tol_abs
    else:
        behind = abs(v - exp) > tol_abs
    word = "Chậm tiến độ" if behind else "Đúng tiến độ"
    return TargetResult(t, "behind" if behind else "on_track", latest, latest, exp, latest.as_of, None,
                        f"{word}: {val_text(v, unit)} (ngày {latest.as_of:%d/%m/%Y}); theo lộ trình đến "
                        f"{t.milestone:%d/%m/%Y} ({req}) cần khoảng {val_text(exp, unit)} "
                        f"(sai số cho phép {fmt_num(round(tol_abs, 2))}).")


def _classify_flow(t: KTarget, path: IndicatorPath, seen: list[Obs], latest: Obs | None, as_of: date,
                   sched: Schedule, tol: float) -> TargetResult:
    ind = path.ind
    unit = ind.unit
    y0, y1 = path.window(t)
    judged = [y for y in range(y0, y1 + 1) if sched.year_due(ind.source, y) <= as_of]
    by_year: dict[int, Obs] = {}
    for o in seen:
        by_year[o.as_of.year] = o           # seen is sorted: the last one of a year wins
    if judged:
        y = judged[-1]
        lo, hi = path.requirement(t, y)
        req = _req_text(t, unit, lo, hi)
        exp = lo if lo != float("-inf") else hi
        v = by_year.get(y)
        if v is None:
            return TargetResult(t, "no_data", latest, None, exp, date(y, 12, 31), str(y),
                                f"Chưa có số liệu năm {y} (hạn báo cáo “{ind.source}” {sched.year_due(ind.source, y):%d/%m/%Y}); "
                                f"yêu cầu năm {y}: {req}.")
        if not _year_ok(t, v.value, lo, hi):
            return TargetResult(t, "missed", latest, v, exp, date(y, 12, 31), str(y),
                                f"Không đạt năm {y}: {val_text(v.value, unit)}, yêu cầu {req}.")
        if y == y1:
            return TargetResult(t, "met", latest, v, exp, date(y, 12, 31), str(y),
                                f"Đạt năm {y} (năm của mốc): {val_text(v.value, unit)}, yêu cầu {req}.")
    yc = as_of.year
    if y0 <= yc <= y1 and yc not in judged:
        lo, hi = path.requirement(t, yc)
        ytd = by_year.get(yc)
        if ytd is not None and t.op not in ("le", "lt"):
            frac = ytd.as_of.timetuple().tm_yday / (366 if _stdcal.isleap(yc) else 365)
            need = lo * frac
            tol_abs = tol * (lo if lo > 0 else 1)
            behind = ytd.value < need - tol_abs
            return TargetResult(t, "behind" if behind else "on_track", latest, ytd, need, ytd.as_of, str(yc),
                                f"{'Chậm tiến độ' if behind else 'Đúng tiến độ'} năm {yc}: lũy kế {val_text(ytd.value, unit)} "
                                f"đến {ytd.as_of:%d/%m/%Y}, theo tỷ lệ thời gian cần khoảng {val_text(need, unit)} "
                                f"(cả năm: {_req_text(t, unit, lo, hi)}).")
    if judged:
        y = judged[-1]
        lo, hi = path.requirement(t, y)
        return TargetResult(t, "on_track", latest, by_year.get(y), lo if lo != float("-inf") else hi, date(y, 12, 31), str(y),
                            f"Năm {y} đạt yêu cầu ({val_text(by_year[y].value, unit)}, cần {_req_text(t, unit, lo, hi)}); "
                            f"mốc {t.milestone:%d/%m/%Y}.")
    return TargetResult(t, "not_due", latest, None, None, None, None,
                        f"Chưa đến kỳ đánh giá: các năm được tính là {y0}–{y1}." if y0 != y1 else
                        f"Chưa đến kỳ đánh giá: năm được tính là {y1}.")


def evaluate(kpi: KpiPack, pack: RulePack, values: dict[str, list[Obs]], as_of: date,
             tolerance: float | None = None, sched: Schedule | None = None) -> list[TargetResult]:
    """Every target's status, in the KPI pack's order (group, indicator, milestone)."""
    sched = sched or Schedule.of(pack)
    paths: dict[str, IndicatorPath] = {}
    out: list[TargetResult] = []
    for t in kpi.targets.values():
        p = paths.get(t.indicator)
        if p is None:
            obs = sorted((o for o in values.get(t.indicator, []) if o.as_of <= as_of), key=lambda o: o.as_of)
            p = paths[t.indicator] = IndicatorPath(kpi.indicators[t.indicator], kpi.by_indicator[t.indicator],
                                                   obs[0] if obs else None)
        out.append(classify_target(t, p, values.get(t.indicator, []), as_of, sched, kpi.tolerance(t.indicator, tolerance)))
    return out
