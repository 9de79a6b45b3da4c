"""The KPI language (kpi/*.yaml beside a rule pack) as pydantic models.

Unknown keys are errors, as in the rule language: a misspelt comparator must not silently turn a
target into "no target". Checks that need the whole pack (units, obligations, other files) live in
engine/kpi/loader.py; checks that need only one indicator (its unit against its targets) live here
in `unit_problems`, so the loader can place each error on its line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.rules_model import OneLine
from engine.vi import fmt_num

Id = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=80)]
UnitName = Literal["percent", "percent_grdp", "count", "per_10000_people", "per_1000_people", "index",
                   "rank", "boolean"]
Kind = Literal["stock", "flow"]
COMPARATORS = ("ge", "gt", "le", "lt", "eq", "range", "top")


@dataclass(frozen=True)
class UnitSpec:
    label: str            # shown after a number ("60 %", "25 doanh nghiệp" is the indicator's name)
    name_vi: str          # the unit itself, for headers and errors
    lo: float | None
    hi: float | None
    integer: bool = False


UNITS: dict[str, UnitSpec] = {
    "percent": UnitSpec("%", "tỷ lệ phần trăm (0–100)", 0, 100),
    "percent_grdp": UnitSpec("% GRDP", "phần trăm GRDP (0–100)", 0, 100),
    "count": UnitSpec("", "số lượng (số nguyên không âm)", 0, None, integer=True),
    "per_10000_people": UnitSpec("/1 vạn dân", "số trên 1 vạn dân", 0, None),
    "per_1000_people": UnitSpec("/1.000 dân", "số trên 1.000 dân", 0, None),
    "index": UnitSpec("", "chỉ số (0–1)", 0, 1),
    "rank": UnitSpec("", "thứ hạng (số nguyên dương, 1 là cao nhất)", 1, None, integer=True),
    "boolean": UnitSpec("", "có/không (1 = đã có/đã hoàn thành, 0 = chưa)", 0, 1, integer=True),
}


class _HasKind(Protocol):
    """An indicator, or a report row of one."""
    @property
    def unit(self) -> str: ...
    @property
    def kind(self) -> str: ...


def is_cumulative(ind: _HasKind) -> bool:
    """"Tích lũy" (a running total up to a date) is true only of a count that is a stock: a rate, a
    percentage, an index, a rank or a yes/no is a level at a date, and a flow is a yearly amount.
    The one rule behind the xlsx "Loại" column and the chart's y-axis label."""
    return ind.kind == "stock" and ind.unit == "count"


def kind_label(ind: _HasKind) -> str:
    """What the number of an indicator (or a report row) is, for the "Loại" column."""
    if ind.kind == "flow":
        return "Mỗi năm (số trong năm)"
    return "Tích lũy (tổng đến thời điểm)" if is_cumulative(ind) else "Giá trị tại thời điểm"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KpiSettings(_Strict):
    # Behind = more than `tolerance` × (the planned change over the segment) short of the path.
    tolerance: Annotated[float, Field(ge=0, le=1)] = 0.1


class Document(_Strict):
    id: Id
    title: str = Field(min_length=1)


class KpiGroup(_Strict):
    id: Id
    code: str | None = None          # the document's own label: "a", "b", …
    name: str = Field(min_length=1)
    order: int = 0


class Baseline(_Strict):
    value: float
    date: date
    source: str | None = None


class Target(_Strict):
    """One number the plan sets for one indicator at one milestone."""
    id: Id | None = None             # default: <indicator>-<year of milestone>
    milestone: date
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    eq: float | None = None
    range: list[float] | None = None
    top: Annotated[int, Field(ge=1)] | None = None
    document: Id | None = None       # default: the indicator's document
    section: str = Field(min_length=1)
    text: str = Field(min_length=1)  # the plan's wording, verbatim
    group: Id | None = None          # where the plan lists it, when not the indicator's group
    since: date | None = None        # flows: first year judged (default: after the previous milestone)
    assumptions: list[str] = []

    @field_validator("range")
    @classmethod
    def _range(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if len(v) != 2:
            raise ValueError("range cần đúng hai số: [cận dưới, cận trên]")
        if v[0] > v[1]:
            raise ValueError(f"cận dưới {v[0]:g} lớn hơn cận trên {v[1]:g}; viết [nhỏ, lớn]")
        return v

    @model_validator(mode="after")
    def _one_comparator(self) -> "Target":
        given = [c for c in COMPARATORS if getattr(self, c) is not None]
        if len(given) != 1:
            raise ValueError("mỗi mục tiêu cần đúng một phép so sánh: ge (≥), gt (>), le (≤), lt (<), eq (=), "
                             f"range ([a, b]) hoặc top (nhóm N dẫn đầu); đang có: {', '.join(given) or 'không có'}")
        if self.since is not None and self.since > self.milestone:
            raise ValueError(f"since {self.since:%d/%m/%Y} sau mốc {self.milestone:%d/%m/%Y}")
        return self

    @property
    def comparator(self) -> str:
        return next(c for c in COMPARATORS if getattr(self, c) is not None)


class Indicator(_Strict):
    id: Id
    name: OneLine                    # line breaks (CR/LF, \v, \f, NEL, U+2028/9) fold to one space
    group: Id
    unit: UnitName
    kind: Kind
    responsible: Id
    responsible_assumption: str | None = None   # present = the plan does not name the unit
    source: Id                                  # obligation whose report supplies the value
    document: Id | None = None
    baseline: Baseline | None = None
    tolerance: Annotated[float, Field(ge=0, le=1)] | None = None
    notes: str | None = None
    assumptions: list[str] = []
    targets: list[Target] = Field(min_length=1)


class NotTracked(_Strict):
    """A statement of the plan's objectives that sets no measurable target (kept for the record)."""
    document: Id
    section: str
    text: str
    reason: str


def in_unit(unit: str, value: float) -> str | None:
    """None if `value` is admissible for the unit, else the reason (Vietnamese)."""
    spec = UNITS[unit]
    if value != value or value in (float("inf"), float("-inf")):
        return "không phải một số"
    if spec.integer and value != int(value):
        return f"{_num(value)} không phải số nguyên ({spec.name_vi})"
    if spec.lo is not None and value < spec.lo:
        return f"{_num(value)} nhỏ hơn {_num(spec.lo)} ({spec.name_vi})"
    if spec.hi is not None and value > spec.hi:
        return f"{_num(value)} lớn hơn {_num(spec.hi)} ({spec.name_vi})"
    return None


def unit_problems(ind: Indicator) -> list[tuple[tuple, str]]:
    """(path inside the indicator, reason) for every target or baseline the unit does not admit."""
    out: list[tuple[tuple, str]] = []
    u = ind.unit
    if ind.kind == "flow" and u in ("rank", "boolean", "index"):
        out.append((("kind",), f"đơn vị {u} không đo được theo năm (kind: flow); dùng kind: stock"))
    if ind.baseline is not None:
        why = in_unit(u, ind.baseline.value)
        if why:
            out.append((("baseline", "value"), f"giá trị cơ sở {why}"))
    for i, t in enumerate(ind.targets):
        c = t.comparator
        if u == "rank" and c != "top":
            out.append((("targets", i, c), "chỉ tiêu xếp hạng (unit: rank) dùng top: N (nhóm N dẫn đầu)"))
            continue
        if c == "top" and u != "rank":
            out.append((("targets", i, "top"), "top: N chỉ dùng với unit: rank"))
            continue
        if u == "boolean" and not (c == "eq" and t.eq == 1):
            out.append((("targets", i, c), "chỉ tiêu có/không (unit: boolean) viết eq: 1 (đã có/đã hoàn thành)"))
            continue
        values = t.range if c == "range" else [getattr(t, c)]
        for v in values or []:
            why = in_unit(u, float(v))
            if why:
                out.append((("targets", i, c), f"mục tiêu {why}"))
        if c in ("gt",) and UNITS[u].hi is not None and t.gt is not None and t.gt >= UNITS[u].hi:
            out.append((("targets", i, "gt"), f"không thể lớn hơn {_num(UNITS[u].hi)} ({UNITS[u].name_vi})"))
        if c in ("lt",) and UNITS[u].lo is not None and t.lt is not None and t.lt <= UNITS[u].lo:
            out.append((("targets", i, "lt"), f"không thể nhỏ hơn {_num(UNITS[u].lo)} ({UNITS[u].name_vi})"))
    return out


def _num(v: float) -> str:
    return fmt_num(v)
