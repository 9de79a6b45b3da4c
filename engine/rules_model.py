"""The rule language as pydantic models: what a secretary may write in rules/*.yaml.

Each model forbids unknown keys, so a misspelt field is an error rather than a silent default.
The full language is documented in docs/rule-language.md.
"""

from __future__ import annotations

import calendar as _stdcal
import re
from datetime import date, timedelta
from typing import TYPE_CHECKING, Annotated, Literal, Protocol, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from engine.limits import MAX_YEAR, MIN_YEAR, YEARS_VI

if TYPE_CHECKING:
    from engine.periods import Period
    from engine.workcalendar import WorkingCalendar

Id = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=80)]


def _in_years(v: date) -> date:
    if not (MIN_YEAR <= v.year <= MAX_YEAR):
        raise ValueError(f"ngày {v.day:02d}/{v.month:02d}/{v.year:04d}: năm {v.year} nằm ngoài khoảng được hỗ trợ ({YEARS_VI})")
    return v


Day = Annotated[date, AfterValidator(_in_years)]
"""A date in the supported years (engine/limits.py): 0001-01-01 or 9999-12-31 is a typo."""

# Line and paragraph separators a YAML string may carry ("\v", "\f", NEL, U+2028, CR/LF, tabs)
# and other control characters: in a name they become line breaks in a mail body or a header.
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\s]+")


def _fold(v: object) -> object:
    return _BREAKS.sub(" ", v).strip() if isinstance(v, str) else v


OneLine = Annotated[str, BeforeValidator(_fold), Field(min_length=1)]
"""Text shown on one line (names, titles): every run of line breaks and spaces becomes one space."""
Roll = Literal["forward", "backward", "keep"]
UnitKind = Literal["so", "ban_dang", "cap_uy", "mat_tran", "doan_the", "bao_dai", "ubnd", "bcd",
                   "van_phong", "trung_uong", "khac"]
ObligationKind = Literal["dinh_ky", "chuyen_de", "dot_xuat", "mot_lan"]
Freq = Literal["monthly", "quarterly", "half_yearly", "yearly", "every_n_months", "once"]

KIND_VI: dict[str, str] = {
    "dinh_ky": "Báo cáo định kỳ",
    "chuyen_de": "Báo cáo chuyên đề",
    "dot_xuat": "Báo cáo đột xuất",
    "mot_lan": "Nhiệm vụ một lần",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PackInfo(_Strict):
    id: Id
    name: OneLine
    timezone: str = "Asia/Ho_Chi_Minh"
    tracking_start: Day | None = None
    admin_contact: Id | None = None
    check_from: Day | None = None
    check_until: Day | None = None
    default_reminder_policy: Id = "mac-dinh"


def _check_email(value: str) -> str:
    # Imported here: ~55 ms that a command reading a cached pack never needs.
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"địa chỉ e-mail “{value}” không hợp lệ: {exc}") from None


class Unit(_Strict):
    id: Id
    name: OneLine
    kind: UnitKind
    contacts: list[str] = []
    webhooks: list[str] = []
    supervisor: Id | None = None
    valid_from: Day | None = None
    valid_until: Day | None = None
    successor: Id | None = None
    notes: str | None = None

    @field_validator("name")
    @classmethod
    def _header_safe(cls, v: str) -> str:
        # The name is the display name of the unit's e-mail address. Commas are quoted by the
        # mail layer (seed names have them); these characters only ever come from a slip.
        bad = sorted({c for c in v if c in "<>;"})
        if bad:
            raise ValueError("tên đơn vị không được chứa ký tự " + " ".join(f"“{c}”" for c in bad)
                             + " (tên được dùng làm tên người nhận trong thư điện tử)")
        return v

    @field_validator("contacts")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        return [_check_email(x) for x in v]

    @model_validator(mode="after")
    def _validity(self) -> "Unit":
        if self.valid_from and self.valid_until and self.valid_until < self.valid_from:
            raise ValueError(f"valid_until {self.valid_until:%d/%m/%Y} trước valid_from {self.valid_from:%d/%m/%Y}")
        if self.successor == self.id:
            raise ValueError("đơn vị không thể là đơn vị kế thừa của chính nó")
        return self

    def valid_on(self, day: date) -> bool:
        return (self.valid_from is None or self.valid_from <= day) and (
            self.valid_until is None or day <= self.valid_until)


class Group(_Strict):
    id: Id
    name: OneLine
    members: list[Id] = Field(min_length=1)


class Basis(_Strict):
    document: str = Field(min_length=1)
    section: str | None = None

    def text(self) -> str:
        return f"{self.document}, mục {self.section}" if self.section else self.document


class Recurrence(_Strict):
    freq: Freq
    months: list[Annotated[int, Field(ge=1, le=12)]] | None = None
    months_interval: Annotated[int, Field(ge=1, le=240)] | None = None
    anchor: Day | None = None
    start: Day | None = None
    end: Day | None = None

    @field_validator("months")
    @classmethod
    def _some_month(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and not v:
            raise ValueError("months rỗng: nghĩa vụ sẽ không bao giờ đến hạn; bỏ months để dùng mọi kỳ")
        return v

    @model_validator(mode="after")
    def _shape(self) -> "Recurrence":
        if self.freq == "every_n_months" and (self.months_interval is None or self.anchor is None):
            raise ValueError("freq every_n_months cần months_interval và anchor (ngày bắt đầu chu kỳ đầu tiên)")
        if self.freq == "once":
            if self.start is None or self.end is None:
                raise ValueError("freq once cần start và end (khoảng thời gian của nhiệm vụ)")
            if self.end < self.start:
                raise ValueError(f"end {self.end:%d/%m/%Y} trước start {self.start:%d/%m/%Y}")
        if self.months is not None and self.freq in ("every_n_months", "once"):
            raise ValueError("months chỉ dùng với monthly, quarterly, half_yearly, yearly")
        if self.months is not None:
            allowed = {"monthly": set(range(1, 13)), "quarterly": {3, 6, 9, 12},
                       "half_yearly": {6, 12}, "yearly": {12}}[self.freq]
            bad = sorted(set(self.months) - allowed)
            if bad:
                raise ValueError(f"months {bad}: với freq {self.freq} kỳ báo cáo chỉ kết thúc vào tháng {sorted(allowed)}")
        return self


class Cutoff(_Strict):
    """Data cut-off window end (Nghị định 09/2019 Điều 12: day 14 of the period's last month)."""
    day: Annotated[int, Field(ge=1, le=28)] = 14
    month: Annotated[int, Field(ge=1, le=12)] | None = None


def _real_day(day: int, month: int) -> None:
    # 2023 is not a leap year: 29/02 is rejected because it does not exist every year.
    if day > _stdcal.monthrange(2023, month)[1]:
        raise ValueError(f"ngày {day:02d}/{month:02d} không tồn tại (hoặc không có trong mọi năm)")


class DueContext(Protocol):
    """What a due rule may ask while placing a period's deadline (engine.duedates.DueCalculator)."""
    calendar: "WorkingCalendar"

    def source_due(self, obligation_id: str, period: "Period") -> date | None:
        """The (rolled) due day of another obligation for the same period, if it has one."""


class _DueBase(_Strict):
    roll: Roll

    def unrolled(self, period: "Period", ctx: DueContext) -> date | None:
        """The day this rule names for `period`, before the working-day roll; None if it has none."""
        raise NotImplementedError  # pragma: no cover - every rule below overrides it


class DayOfLastMonth(_DueBase):
    rule: Literal["day_of_last_month"]
    day: Annotated[int, Field(ge=1, le=31)] | Literal["last"]

    @field_validator("day")
    @classmethod
    def _every_month(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v > 28:
            raise ValueError(f"ngày {v} không có trong mọi tháng (tháng 2); dùng ngày ≤ 28 hoặc day: last")
        return v

    def unrolled(self, period: "Period", ctx: DueContext) -> date | None:
        end = period.end
        return end.replace(day=_stdcal.monthrange(end.year, end.month)[1] if self.day == "last" else self.day)


class BeforeDate(_DueBase):
    """“trước ngày D/M”: the last day of the limit is the day before D/M."""
    rule: Literal["before_date"]
    day: Annotated[int, Field(ge=1, le=31)]
    month: Annotated[int, Field(ge=1, le=12)]
    year_offset: Annotated[int, Field(ge=0, le=1)] = 0

    @model_validator(mode="after")
    def _exists(self) -> "BeforeDate":
        _real_day(self.day, self.month)
        return self

    def unrolled(self, period: "Period", ctx: DueContext) -> date | None:
        return date(period.end.year + self.year_offset, self.month, self.day) - timedelta(days=1)


class OnDate(_DueBase):
    rule: Literal["on_date"]
    day: Annotated[int, Field(ge=1, le=31)]
    month: Annotated[int, Field(ge=1, le=12)]
    year_offset: Annotated[int, Field(ge=0, le=1)] = 0

    @model_validator(mode="after")
    def _exists(self) -> "OnDate":
        _real_day(self.day, self.month)
        return self

    def unrolled(self, period: "Period", ctx: DueContext) -> date | None:
        return date(period.end.year + self.year_offset, self.month, self.day)


class WorkingDaysAfterPeriod(_DueBase):
    rule: Literal["working_days_after_period"]
    days: Annotated[int, Field(ge=1, le=60)]
    from_: Literal["period_end", "cutoff_end"] = Field("period_end", alias="from")
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def unrolled(self, period: "Period", ctx: DueContext) -> date | None:
        base = period.cutoff_end if self.from_ == "cutoff_end" and period.cutoff_end else period.end
        return ctx.calendar.add_working_days(base, self.days)


class WorkingDaysAfterObligation(_DueBase):
    rule: Literal["working_days_after_obligation"]
    obligation: Id
    days: Annotated[int, Field(ge=1, le=60)]

    def unrolled(self, period: "Period", ctx: DueContext) -> date | None:
        source = ctx.source_due(self.obligation, period)
        return ctx.calendar.add_working_days(source, self.days) if source else None


class FixedDate(_DueBase):
    rule: Literal["fixed"]
    date: Day

    def unrolled(self, period: "Period", ctx: DueContext) -> date | None:
        return self.date


DueRule = Annotated[
    Union[DayOfLastMonth, BeforeDate, OnDate, WorkingDaysAfterPeriod, WorkingDaysAfterObligation, FixedDate],
    Field(discriminator="rule"),
]


class Obligation(_Strict):
    id: Id
    title: OneLine
    basis: Basis
    kind: ObligationKind
    reporters: list[Id] = Field(min_length=1)
    recipient: Id
    recurrence: Recurrence
    cutoff: Cutoff | Literal["none"] = Cutoff()
    due: DueRule
    compiles: list[Id] = []
    effective_from: Day | None = None
    effective_until: Day | None = None
    supersedes: list[Id] = []
    reminder_policy: Id | None = None
    assumptions: list[str] = []

    @model_validator(mode="after")
    def _coherent(self) -> "Obligation":
        if self.effective_from and self.effective_until and self.effective_until < self.effective_from:
            raise ValueError(f"effective_until {self.effective_until:%d/%m/%Y} trước effective_from {self.effective_from:%d/%m/%Y}")
        freq = self.recurrence.freq
        if isinstance(self.due, FixedDate) and freq != "once":
            raise ValueError("due rule fixed chỉ dùng với freq once")
        if isinstance(self.due, (BeforeDate, OnDate)) and freq not in ("yearly", "once"):
            raise ValueError(f"due rule {self.due.rule} (ngày/tháng cố định) chỉ dùng với freq yearly hoặc once")
        if isinstance(self.cutoff, Cutoff) and self.cutoff.month is not None and freq != "yearly":
            raise ValueError("cutoff.month chỉ dùng với freq yearly")
        if freq == "once" and isinstance(self.cutoff, Cutoff) and "cutoff" in self.model_fields_set:
            raise ValueError("nhiệm vụ một lần (freq once) không có kỳ chốt số liệu: dùng cutoff: none")
        if self.id in self.compiles or self.id in self.supersedes:
            raise ValueError("báo cáo không thể tổng hợp hoặc thay thế chính nó")
        return self

    @property
    def has_cutoff(self) -> bool:
        return self.cutoff != "none" and self.recurrence.freq != "once"

    def in_force_on(self, day: date) -> bool:
        return (self.effective_from is None or self.effective_from <= day) and (
            self.effective_until is None or day <= self.effective_until)


class ReminderPolicy(_Strict):
    id: Id
    before_due_working_days: list[Annotated[int, Field(ge=1, le=60)]] = [3, 1]
    on_due_day: bool = True
    overdue_after_working_days: Annotated[int, Field(ge=0, le=60)] = 1
    repeat_every_working_days: Annotated[int, Field(ge=0, le=60)] = 5
    max_repeats: Annotated[int, Field(ge=0, le=50)] = 3
    escalate_after_working_days: Annotated[int, Field(ge=1, le=120)] | None = 10
    escalate_to: list[str] = ["supervisor"]

    @model_validator(mode="after")
    def _escalation(self) -> "ReminderPolicy":
        if self.escalate_after_working_days is not None and not self.escalate_to:
            raise ValueError("escalate_after_working_days cần escalate_to (đơn vị nhận báo cáo vượt cấp)")
        return self
