"""The console's rule forms: what a secretary types (titles, names, dd/mm/yyyy dates, ticked units)
turned into edits of a *staged* rules folder (engine/app/ruleedit.RuleFolder), and `rules check`
errors turned back into messages next to the field that caused them.

Why a module of its own: the web routes only present; the rules about which fields a new
obligation needs, how a date is written, which inputs an error belongs to, and how an edit must
touch only the lines it changes (one due day = one line in the diff) live here, testable without
HTTP. Nothing here writes the live rules: the folder is always a draft (engine/app/ruleversions.py).

Validation is a pydantic model per form whose validators raise Vietnamese messages; the model's
errors are mapped to the form's fields (``FormErrors``). Cross-checks that need the whole pack
(a due day after the cut-off, a unit that ends without a successor) are `rules check`'s job, run on
the draft afterwards and shown next to the field through :func:`errors_by_item`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from engine.app.ruleedit import SECTIONS_VI, EditError, RuleFolder, locate
from engine.app.services import ServiceError
from engine.errors import RuleError
from engine.rules_model import KIND_VI

# ─── words for the choices ──────────────────────────────────────────────────────────────────────
FREQ_VI = {"monthly": "Hằng tháng", "quarterly": "Hằng quý", "half_yearly": "6 tháng một lần", "yearly": "Hằng năm",
           "every_n_months": "Nhiều tháng một lần (chu kỳ N tháng)", "once": "Một lần"}
DUE_RULE_VI = {
    "day_of_last_month": "Ngày D của tháng cuối kỳ (ví dụ: ngày 20 tháng cuối quý)",
    "before_date": "Trước ngày D/M (hạn là ngày liền trước)",
    "on_date": "Đúng ngày D/M",
    "working_days_after_period": "N ngày làm việc sau khi hết kỳ (hoặc sau ngày chốt số liệu)",
    "working_days_after_obligation": "N ngày làm việc sau hạn của một báo cáo khác (báo cáo tổng hợp)",
    "fixed": "Một ngày cố định (chỉ cho nhiệm vụ một lần)",
}
ROLL_VI = {"forward": "Chuyển sang ngày làm việc tiếp theo (Bộ luật Dân sự 2015, Điều 148)",
           "backward": "Chuyển về ngày làm việc liền trước", "keep": "Giữ nguyên ngày đó"}
CUTOFF_VI = {"default": "Ngày 14 của tháng cuối kỳ (Nghị định 09/2019/NĐ-CP, Điều 12)",
             "custom": "Ngày khác (nhập bên dưới)", "none": "Không chốt riêng: số liệu theo đúng kỳ báo cáo"}
FROM_VI = {"period_end": "ngày kết thúc kỳ", "cutoff_end": "ngày chốt số liệu"}
UNIT_KIND_VI = {
    "so": "Sở, ban, ngành", "ban_dang": "Ban của Tỉnh ủy", "cap_uy": "Cấp ủy", "mat_tran": "Mặt trận Tổ quốc",
    "doan_the": "Đoàn thể", "bao_dai": "Báo, Đài", "ubnd": "Ủy ban nhân dân", "bcd": "Ban Chỉ đạo",
    "van_phong": "Văn phòng", "trung_uong": "Cơ quan Trung ương", "khac": "Khác",
}
SUPERVISOR = "supervisor"

# The form's fields, by the name of the rule field an error names (RuleError.field after the item).
FIELD_VI = {
    "title": "Tên báo cáo", "basis": "Căn cứ", "kind": "Loại báo cáo", "reporters": "Đơn vị báo cáo",
    "recipient": "Nơi nhận", "recurrence": "Kỳ báo cáo", "cutoff": "Chốt số liệu", "due": "Hạn nộp",
    "effective_from": "Hiệu lực từ ngày", "effective_until": "Hiệu lực đến hết ngày",
    "reminder_policy": "Chính sách nhắc", "assumptions": "Giả định", "compiles": "Báo cáo được tổng hợp",
    "supersedes": "Thay thế báo cáo", "name": "Tên đơn vị", "contacts": "Địa chỉ thư", "supervisor": "Cơ quan cấp trên",
    "valid_from": "Bắt đầu từ ngày", "valid_until": "Chấm dứt sau ngày", "successor": "Đơn vị kế thừa",
    "members": "Thành viên", "notes": "Ghi chú", "before_due_working_days": "Nhắc trước hạn",
    "on_due_day": "Nhắc ngày đến hạn", "overdue_after_working_days": "Báo quá hạn sau",
    "repeat_every_working_days": "Nhắc lại mỗi", "max_repeats": "Số lần nhắc lại tối đa",
    "escalate_after_working_days": "Báo cấp trên sau", "escalate_to": "Báo cấp trên cho", "form": "Chung",
}
# A form input → the field group its error is shown next to.
INPUT_FIELD = {
    "title": "title", "document": "basis", "section": "basis", "kind": "kind", "reporters": "reporters",
    "recipient": "recipient", "freq": "recurrence", "months": "recurrence", "months_interval": "recurrence",
    "anchor": "recurrence", "start": "recurrence", "end": "recurrence", "cutoff": "cutoff", "cutoff_day": "cutoff",
    "cutoff_month": "cutoff", "due_rule": "due", "due_day": "due", "due_month": "due", "due_year_offset": "due",
    "due_days": "due", "due_from": "due", "due_obligation": "due", "due_date": "due", "roll": "due",
    "reminder_policy": "reminder_policy", "effective_from": "effective_from", "effective_until": "effective_until",
    "assumptions": "assumptions", "file": "file", "new_file": "file",
}
MAX_TEXT = 1000
_DATE = re.compile(r"^\s*(\d{1,2})\s*/\s*(\d{1,2})\s*/\s*(\d{4})\s*$")
_ISO = re.compile(r"^\s*(\d{4})-(\d{2})-(\d{2})\s*$")
_EMAIL = re.compile(r"^[^@\s<>;,]+@[^@\s<>;,]+\.[^@\s<>;,]+$")
_ITEM_FIELD = re.compile(r"^[a-z_]+\[\d+\]\.?")


@dataclass
class FormErrors:
    """Vietnamese messages by field group (``"form"``: the form as a whole)."""
    fields: dict[str, list[str]] = field(default_factory=dict)

    def add(self, key: str, message: str) -> None:
        lst = self.fields.setdefault(key, [])
        if message not in lst:
            lst.append(message)

    def get(self, key: str) -> list[str]:
        return self.fields.get(key, [])

    def __bool__(self) -> bool:
        return bool(self.fields)


class FormRejected(ServiceError):
    """The form cannot be applied to the draft; nothing was written."""

    def __init__(self, errors: FormErrors):
        self.errors = errors
        super().__init__("; ".join(m for ms in errors.fields.values() for m in ms))


# ─── small parsers (Vietnamese messages) ────────────────────────────────────────────────────────
def parse_day(text: str | None, what: str) -> date | None:
    """dd/mm/yyyy (or yyyy-mm-dd) → date; empty → None."""
    text = (text or "").strip()
    if not text:
        return None
    m = _DATE.match(text)
    iso = _ISO.match(text)
    try:
        if m:
            d = date(int(m.group(3)), int(m.group(2)), int(m.group(1)))
        elif iso:
            d = date(int(iso.group(1)), int(iso.group(2)), int(iso.group(3)))
        else:
            raise ValueError
    except ValueError:
        raise ValueError(f"{what}: “{text}” không phải ngày hợp lệ; viết dạng dd/mm/yyyy, ví dụ 01/01/2027") from None
    if not 2000 <= d.year <= 2100:
        raise ValueError(f"{what}: năm {d.year} nằm ngoài khoảng 2000–2100")
    return d


def parse_int(text: str | None, what: str, lo: int, hi: int) -> int | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"{what}: “{text}” không phải số nguyên") from None
    if not lo <= n <= hi:
        raise ValueError(f"{what}: phải từ {lo} đến {hi}")
    return n


def one_line(text: str | None) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


def slug(text: str, limit: int = 60) -> str:
    """A rule id from Vietnamese words: “Báo cáo quý gửi Sở KH&CN” → ``bao-cao-quy-gui-so-kh-cn``."""
    t = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    t = "".join(ch for ch in t if not unicodedata.combining(ch)).lower()
    t = re.sub(r"[^a-z0-9]+", "-", t).strip("-")
    if len(t) > limit:
        t = t[:limit].rsplit("-", 1)[0]
    return t or "muc-moi"


def fmt_day(d: Any) -> str:
    return f"{d:%d/%m/%Y}" if isinstance(d, date) else ""


def _plain(value: Any) -> Any:
    """A ruamel value as plain Python (dicts, lists, str, int, date) for comparing."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, date):
        return date(value.year, value.month, value.day)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    return value


# ─── what a draft offers to choose from ─────────────────────────────────────────────────────────
@dataclass(frozen=True)
class Choice:
    id: str
    label: str
    ended: bool = False
    kind: str = ""


@dataclass
class Choices:
    """Units, groups, policies, obligations and obligation files of a draft, read from its YAML (so
    the forms work on a draft that does not pass the check yet)."""
    units: list[Choice]
    groups: list[Choice]
    policies: list[Choice]
    obligations: list[Choice]
    files: list[Choice]                   # obligation files: name, label (its first comment line)

    def unit_name(self, uid: str) -> str:
        for c in self.units + self.groups:
            if c.id == uid:
                return c.label
        return uid

    def ids(self, which: str) -> set[str]:
        return {c.id for c in getattr(self, which)}


def choices(folder: RuleFolder, today: date) -> Choices:
    units: list[Choice] = []
    groups: list[Choice] = []
    policies: list[Choice] = []
    obligations: list[Choice] = []
    files: list[Choice] = []
    for path in folder.files():
        try:
            doc = folder.doc(path.name)
        except EditError:
            continue
        data = doc.data if isinstance(doc.data, Mapping) else {}
        for item in data.get("units") or []:
            if isinstance(item, Mapping) and item.get("id"):
                until = item.get("valid_until")
                units.append(Choice(str(item["id"]), one_line(str(item.get("name") or item["id"])),
                                    isinstance(until, date) and until < today, str(item.get("kind") or "")))
        for item in data.get("groups") or []:
            if isinstance(item, Mapping) and item.get("id"):
                groups.append(Choice(str(item["id"]), one_line(str(item.get("name") or item["id"]))))
        for item in data.get("reminder_policies") or []:
            if isinstance(item, Mapping) and item.get("id"):
                policies.append(Choice(str(item["id"]), policy_label(item)))
        if "obligations" in data:
            for item in data.get("obligations") or []:
                if isinstance(item, Mapping) and item.get("id"):
                    until = item.get("effective_until")
                    obligations.append(Choice(str(item["id"]), one_line(str(item.get("title") or item["id"])),
                                              isinstance(until, date) and until < today))
            files.append(Choice(path.name, _file_label(doc.original, path.name)))
    return Choices(units, groups, policies, obligations, files)


def _file_label(text: str, name: str) -> str:
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#") and s.strip("# ").strip():
            label = s.strip("# ").strip()
            label = re.sub(r"^Nguồn:\s*", "", label)
            return label[:140] + ("…" if len(label) > 140 else "")
        if s and not s.startswith("#"):
            break
    return name


POLICY_NAMES = {"mac-dinh": "Mặc định", "hang-thang": "Báo cáo tháng", "hang-quy": "Báo cáo quý, 6 tháng",
                "hang-nam": "Báo cáo năm", "tong-hop": "Báo cáo tổng hợp", "mot-lan": "Nhiệm vụ một lần"}


def policy_label(item: Mapping[str, Any]) -> str:
    """A reminder policy in a few words (policies have no name field: what they do is their name)."""
    pid = str(item.get("id"))
    before = item.get("before_due_working_days") or [3, 1]
    words = f"nhắc trước {', '.join(str(n) for n in before)} ngày làm việc"
    return f"{POLICY_NAMES.get(pid, pid)} – {words}"


# ─── obligations ────────────────────────────────────────────────────────────────────────────────
class ObligationForm(BaseModel):
    """An obligation as the form gives it (every value a string or a list of strings)."""
    model_config = ConfigDict(extra="ignore")

    title: str
    document: str
    section: str = ""
    kind: Literal["dinh_ky", "chuyen_de", "dot_xuat", "mot_lan"]
    reporters: list[str]
    recipient: str
    freq: Literal["monthly", "quarterly", "half_yearly", "yearly", "every_n_months", "once"]
    months: list[int] = []
    months_interval: int | None = None
    anchor: date | None = None
    start: date | None = None
    end: date | None = None
    cutoff: Literal["default", "custom", "none"] = "default"
    cutoff_day: int | None = None
    cutoff_month: int | None = None
    due_rule: Literal["day_of_last_month", "before_date", "on_date", "working_days_after_period",
                      "working_days_after_obligation", "fixed"]
    due_day: int | Literal["last"] | None = None
    due_month: int | None = None
    due_year_offset: int = 0
    due_days: int | None = None
    due_from: Literal["period_end", "cutoff_end"] = "period_end"
    due_obligation: str = ""
    due_date: date | None = None
    roll: Literal["forward", "backward", "keep"]
    reminder_policy: str = ""
    effective_from: date | None = None
    effective_until: date | None = None
    assumptions: list[str] = []

    @field_validator("title", mode="before")
    @classmethod
    def _title(cls, v: Any) -> str:
        v = one_line(v)
        if not v:
            raise ValueError("Nhập tên báo cáo (ví dụ: “Báo cáo quý kết quả … gửi Sở Khoa học và Công nghệ”).")
        if len(v) > 500:
            raise ValueError("Tên báo cáo dài quá 500 ký tự.")
        return v

    @field_validator("document", mode="before")
    @classmethod
    def _document(cls, v: Any) -> str:
        v = one_line(v)
        if not v:
            raise ValueError("Nhập văn bản làm căn cứ (ví dụ: “Kế hoạch số 12/KH-UBND ngày 05/01/2026”).")
        return v[:MAX_TEXT]

    @field_validator("section", "due_obligation", "reminder_policy", "recipient", mode="before")
    @classmethod
    def _line(cls, v: Any) -> str:
        return one_line(v)[:MAX_TEXT]

    @field_validator("reporters", mode="before")
    @classmethod
    def _reporters(cls, v: Any) -> list[str]:
        items = [one_line(x) for x in (v or []) if one_line(x)]
        if not items:
            raise ValueError("Chọn ít nhất một đơn vị hoặc nhóm đơn vị phải báo cáo.")
        return list(dict.fromkeys(items))

    @field_validator("months", mode="before")
    @classmethod
    def _months(cls, v: Any) -> list[int]:
        out = []
        for x in v or []:
            n = parse_int(str(x), "Tháng", 1, 12)
            if n is not None and n not in out:
                out.append(n)
        return sorted(out)

    @field_validator("months_interval", mode="before")
    @classmethod
    def _interval(cls, v: Any) -> int | None:
        return parse_int(v, "Số tháng của một chu kỳ", 1, 240)

    @field_validator("cutoff_day", mode="before")
    @classmethod
    def _cday(cls, v: Any) -> int | None:
        return parse_int(v, "Ngày chốt số liệu", 1, 28)

    @field_validator("cutoff_month", "due_month", mode="before")
    @classmethod
    def _month(cls, v: Any) -> int | None:
        return parse_int(v, "Tháng", 1, 12)

    @field_validator("due_day", mode="before")
    @classmethod
    def _dday(cls, v: Any) -> int | str | None:
        text = one_line(v).lower()
        if text in ("last", "cuối", "cuoi", "cuối tháng", "ngày cuối tháng"):
            return "last"
        return parse_int(text, "Ngày của hạn nộp", 1, 31)

    @field_validator("due_year_offset", mode="before")
    @classmethod
    def _offset(cls, v: Any) -> int:
        return 1 if str(v or "").strip() in ("1", "on", "true") else 0

    @field_validator("due_days", mode="before")
    @classmethod
    def _days(cls, v: Any) -> int | None:
        return parse_int(v, "Số ngày làm việc", 1, 60)

    @field_validator("anchor", "start", "end", "due_date", "effective_from", "effective_until", mode="before")
    @classmethod
    def _date(cls, v: Any, info: Any) -> date | None:
        what = {"anchor": "Ngày bắt đầu chu kỳ đầu tiên", "start": "Kỳ từ ngày", "end": "Kỳ đến ngày",
                "due_date": "Ngày hạn cố định", "effective_from": "Hiệu lực từ ngày",
                "effective_until": "Hiệu lực đến hết ngày"}[info.field_name]
        return v if isinstance(v, date) else parse_day(v, what)

    @field_validator("assumptions", mode="before")
    @classmethod
    def _assumptions(cls, v: Any) -> list[str]:
        text = v if isinstance(v, str) else "\n".join(v or [])
        return [one_line(x)[:MAX_TEXT] for x in text.splitlines() if one_line(x)]

    @field_validator("due_rule", "freq", "kind", "roll", "cutoff", "due_from", mode="before")
    @classmethod
    def _choice(cls, v: Any) -> str:
        return one_line(v)


_CHOICE_MESSAGES = {"kind": "Chọn loại báo cáo.", "freq": "Chọn kỳ báo cáo.", "due_rule": "Chọn cách tính hạn nộp.",
                    "roll": "Chọn cách xử lý khi hạn rơi vào ngày nghỉ.", "cutoff": "Chọn cách chốt số liệu.",
                    "due_from": "Chọn mốc tính ngày làm việc."}


def _validate(model: type[BaseModel], values: Mapping[str, Any], errors: FormErrors,
              field_of: Mapping[str, str]) -> Any:
    """The model, or None with Vietnamese messages in ``errors`` (by field group)."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        for e in exc.errors():
            name = str(e["loc"][0]) if e["loc"] else "form"
            key = field_of.get(name, name)
            if e["type"] == "value_error":
                msg = str(e.get("ctx", {}).get("error") or e["msg"]).removeprefix("Value error, ")
            elif name in _CHOICE_MESSAGES:
                msg = _CHOICE_MESSAGES[name]
            elif e["type"] == "missing":
                msg = f"Chưa nhập “{FIELD_VI.get(key, name)}”."
            else:
                msg = f"“{FIELD_VI.get(key, name)}” không hợp lệ."
            errors.add(key, msg)
        return None


def obligation_data(values: Mapping[str, Any], ch: Choices, errors: FormErrors,
                    item_id: str | None = None) -> dict[str, Any] | None:
    """The YAML mapping of an obligation from the form, in the packs' key order; None (with
    ``errors``) when the form is incomplete."""
    f: ObligationForm | None = _validate(ObligationForm, values, errors, INPUT_FIELD)
    if f is None:
        return None
    known_reporters = ch.ids("units") | ch.ids("groups")
    if any(r not in known_reporters for r in f.reporters):
        errors.add("reporters", "Có đơn vị được chọn không còn trong bộ quy tắc; tải lại trang và chọn lại.")
    if f.recipient not in ch.ids("units"):
        errors.add("recipient", "Chọn nơi nhận báo cáo.")
    if f.reminder_policy and f.reminder_policy not in ch.ids("policies"):
        errors.add("reminder_policy", "Chọn một chính sách nhắc có trong danh sách.")
    # recurrence
    rec: dict[str, Any] = {"freq": f.freq}
    if f.freq == "every_n_months":
        if f.months_interval is None or f.anchor is None:
            errors.add("recurrence", "Kỳ nhiều tháng một lần cần số tháng của một chu kỳ và ngày bắt đầu chu kỳ đầu tiên.")
        rec.update({"months_interval": f.months_interval, "anchor": f.anchor})
    elif f.freq == "once":
        if f.start is None or f.end is None:
            errors.add("recurrence", "Nhiệm vụ một lần cần khoảng thời gian (từ ngày, đến ngày).")
        elif f.end < f.start:
            errors.add("recurrence", "“Kỳ đến ngày” phải sau “Kỳ từ ngày”.")
        rec.update({"start": f.start, "end": f.end})
    elif f.months and f.freq != "yearly":
        rec["months"] = f.months
    # due rule
    due: dict[str, Any] = {"rule": f.due_rule}
    need = {"day_of_last_month": ("due_day",), "before_date": ("due_day", "due_month"),
            "on_date": ("due_day", "due_month"), "working_days_after_period": ("due_days",),
            "working_days_after_obligation": ("due_obligation", "due_days"), "fixed": ("due_date",)}[f.due_rule]
    missing = [n for n in need if getattr(f, n) in (None, "")]
    words = {"due_day": "ngày", "due_month": "tháng", "due_days": "số ngày làm việc",
             "due_obligation": "báo cáo được tổng hợp", "due_date": "ngày hạn cố định"}
    if missing:
        errors.add("due", f"Cách tính hạn đã chọn cần: {', '.join(words[n] for n in missing)}.")
    if f.due_rule != "day_of_last_month" and f.due_day == "last":
        errors.add("due", "“Ngày cuối tháng” chỉ dùng với cách tính “Ngày D của tháng cuối kỳ”.")
    if f.due_rule == "day_of_last_month":
        due["day"] = f.due_day
    elif f.due_rule in ("before_date", "on_date"):
        due.update({"day": f.due_day, "month": f.due_month})
        if f.due_year_offset:
            due["year_offset"] = 1
    elif f.due_rule == "working_days_after_period":
        due["days"] = f.due_days
        if f.due_from != "period_end":
            due["from"] = f.due_from
    elif f.due_rule == "working_days_after_obligation":
        if f.due_obligation and f.due_obligation not in ch.ids("obligations"):
            errors.add("due", "Chọn báo cáo được tổng hợp trong danh sách.")
        due.update({"obligation": f.due_obligation, "days": f.due_days})
    else:
        if f.freq != "once":
            errors.add("due", "Hạn cố định chỉ dùng cho nhiệm vụ một lần (kỳ báo cáo “Một lần”).")
        due["date"] = f.due_date
    due["roll"] = f.roll
    cutoff: Any = None
    if f.cutoff == "none":
        cutoff = "none"
    elif f.cutoff == "custom":
        if f.cutoff_day is None:
            errors.add("cutoff", "Nhập ngày chốt số liệu (1–28).")
        cutoff = {"day": f.cutoff_day}
        if f.cutoff_month is not None:
            if f.freq != "yearly":
                errors.add("cutoff", "Tháng chốt số liệu chỉ dùng cho báo cáo hằng năm.")
            cutoff["month"] = f.cutoff_month
    if f.effective_from and f.effective_until and f.effective_until < f.effective_from:
        errors.add("effective_until", "“Hiệu lực đến hết ngày” phải sau “Hiệu lực từ ngày”.")
    if errors:
        return None
    data: dict[str, Any] = {"id": item_id or "", "title": f.title,
                            "basis": {"document": f.document, **({"section": f.section} if f.section else {})},
                            "kind": f.kind, "reporters": f.reporters, "recipient": f.recipient, "recurrence": rec}
    if cutoff is not None:
        data["cutoff"] = cutoff
    data["due"] = due
    if f.effective_from:
        data["effective_from"] = f.effective_from
    if f.effective_until:
        data["effective_until"] = f.effective_until
    if f.reminder_policy:
        data["reminder_policy"] = f.reminder_policy
    if f.assumptions:
        data["assumptions"] = f.assumptions
    return data


# The keys the obligation form manages (others, e.g. compiles, supersedes, are left as written).
OBLIGATION_KEYS = ("title", "basis", "kind", "reporters", "recipient", "recurrence", "cutoff", "due",
                   "effective_from", "effective_until", "reminder_policy", "assumptions")
_ORDER = ("id", "title", "basis", "kind", "reporters", "recipient", "recurrence", "cutoff", "due", "compiles",
          "effective_from", "effective_until", "supersedes", "reminder_policy", "assumptions")


def obligation_values(item: Mapping[str, Any]) -> dict[str, Any]:
    """An obligation of the YAML as the form's values (to prefill the change form)."""
    d = _plain(item)
    basis = d.get("basis") if isinstance(d.get("basis"), dict) else {}
    rec = d.get("recurrence") if isinstance(d.get("recurrence"), dict) else {}
    due = d.get("due") if isinstance(d.get("due"), dict) else {}
    cut = d.get("cutoff")
    v: dict[str, Any] = {
        "title": d.get("title") or "", "document": basis.get("document") or "", "section": basis.get("section") or "",
        "kind": d.get("kind") or "", "reporters": [str(x) for x in d.get("reporters") or []],
        "recipient": d.get("recipient") or "", "freq": rec.get("freq") or "",
        "months": [str(m) for m in rec.get("months") or []], "months_interval": str(rec.get("months_interval") or ""),
        "anchor": fmt_day(rec.get("anchor")), "start": fmt_day(rec.get("start")), "end": fmt_day(rec.get("end")),
        "cutoff": "none" if cut == "none" else ("custom" if isinstance(cut, dict) else "default"),
        "cutoff_day": str(cut.get("day", "")) if isinstance(cut, dict) else "",
        "cutoff_month": str(cut.get("month", "") or "") if isinstance(cut, dict) else "",
        "due_rule": due.get("rule") or "", "due_day": str(due.get("day", "") or ""),
        "due_month": str(due.get("month", "") or ""), "due_year_offset": "1" if due.get("year_offset") else "",
        "due_days": str(due.get("days", "") or ""), "due_from": due.get("from") or "period_end",
        "due_obligation": due.get("obligation") or "", "due_date": fmt_day(due.get("date")),
        "roll": due.get("roll") or "", "reminder_policy": d.get("reminder_policy") or "",
        "effective_from": fmt_day(d.get("effective_from")), "effective_until": fmt_day(d.get("effective_until")),
        "assumptions": "\n".join(str(a) for a in d.get("assumptions") or []),
    }
    return v


def new_obligation_id(title: str, taken: set[str]) -> str:
    base = slug(title)
    oid, n = base, 2
    while oid in taken:
        oid = f"{base}-{n}"
        n += 1
    return oid


def add_obligation(folder: RuleFolder, values: Mapping[str, Any], today: date) -> str:
    """Add the form's obligation to the draft; returns its id. FormRejected when the form is not usable."""
    ch = choices(folder, today)
    errors = FormErrors()
    taken = ch.ids("obligations") | ch.ids("units") | ch.ids("groups") | ch.ids("policies")
    oid = new_obligation_id(one_line(str(values.get("title") or "")), taken)
    data = obligation_data(values, ch, errors, oid)
    file = one_line(str(values.get("file") or ""))
    new_file = file == "__moi__"
    if not new_file and file not in ch.ids("files"):
        errors.add("file", "Chọn tệp quy tắc để ghi báo cáo này vào.")
    if errors or data is None:
        raise FormRejected(errors)
    if new_file:
        numbers = [int(m.group(1)) for c in ch.files if (m := re.match(r"obligations-(\d+)", c.id))]
        file = f"obligations-{(max(numbers) + 1) if numbers else 0:03d}-{slug(data['basis']['document'], 40)}.yaml"
        folder.new_file(file, f"Nguồn: {data['basis']['document']}\nTệp tạo từ trang Quy tắc của dondoc.")
    try:
        folder.add_obligation(data, file)
    except EditError as exc:
        errors.add("form", exc.message)
        raise FormRejected(errors) from None
    folder.save()
    return oid


def change_obligation(folder: RuleFolder, oid: str, values: Mapping[str, Any], today: date) -> int:
    """Write only what the form changed (one due day = one line); returns how many fields changed."""
    ch = choices(folder, today)
    errors = FormErrors()
    data = obligation_data(values, ch, errors, oid)
    if errors or data is None:
        raise FormRejected(errors)
    item = folder.item("obligations", oid)
    old = _plain(item)
    changed = 0
    for key in OBLIGATION_KEYS:
        new, was = data.get(key), old.get(key)
        if new == was:
            continue
        changed += 1
        if new is None:
            folder.set_obligation_field(oid, key, None)
        elif isinstance(new, dict) and isinstance(was, dict) and (key != "due" or new.get("rule") == was.get("rule")) \
                and (key != "recurrence" or new.get("freq") == was.get("freq")):
            for sub in list(dict.fromkeys([*was, *new])):
                if new.get(sub) != was.get(sub):
                    folder.set_obligation_field(oid, (key, sub), new.get(sub))
        elif key in item:
            folder.set_obligation_field(oid, key, new)
        else:
            pos = _ORDER.index(key)
            folder.insert_field("obligations", oid, key, new, after=reversed(_ORDER[:pos]))
    if changed:
        folder.save()
    return changed


def end_obligation(folder: RuleFolder, oid: str, until_text: str) -> date:
    errors = FormErrors()
    try:
        until = parse_day(until_text, "Ngày cuối cùng còn hiệu lực")
    except ValueError as exc:
        errors.add("effective_until", str(exc))
        raise FormRejected(errors) from None
    if until is None:
        errors.add("effective_until", "Nhập ngày cuối cùng báo cáo còn hiệu lực (dd/mm/yyyy).")
        raise FormRejected(errors)
    folder.end_obligation(oid, until)
    folder.save()
    return until


# ─── units ──────────────────────────────────────────────────────────────────────────────────────
class UnitForm(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    kind: Literal["so", "ban_dang", "cap_uy", "mat_tran", "doan_the", "bao_dai", "ubnd", "bcd", "van_phong",
                  "trung_uong", "khac"]
    contacts: list[str] = []
    supervisor: str = ""
    valid_from: date | None = None
    notes: str = ""
    groups: list[str] = []

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, v: Any) -> str:
        v = one_line(v)
        if not v:
            raise ValueError("Nhập tên đơn vị.")
        if any(c in v for c in "<>;"):
            raise ValueError("Tên đơn vị không được chứa các ký tự < > ; (tên được dùng làm tên người nhận thư).")
        return v[:300]

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, v: Any) -> str:
        return one_line(v)

    @field_validator("contacts", mode="before")
    @classmethod
    def _contacts(cls, v: Any) -> list[str]:
        text = v if isinstance(v, str) else "\n".join(v or [])
        out = [x for x in re.split(r"[\s,;]+", text) if x]
        bad = [x for x in out if not _EMAIL.match(x)]
        if bad:
            raise ValueError(f"Địa chỉ thư không hợp lệ: {', '.join(bad[:3])}.")
        return list(dict.fromkeys(out))

    @field_validator("supervisor", "notes", mode="before")
    @classmethod
    def _text(cls, v: Any) -> str:
        return one_line(v)[:MAX_TEXT]

    @field_validator("valid_from", mode="before")
    @classmethod
    def _from(cls, v: Any) -> date | None:
        return parse_day(v, "Bắt đầu từ ngày")

    @field_validator("groups", mode="before")
    @classmethod
    def _groups(cls, v: Any) -> list[str]:
        return [one_line(x) for x in v or [] if one_line(x)]


UNIT_INPUT_FIELD = {"name": "name", "kind": "kind", "contacts": "contacts", "supervisor": "supervisor",
                    "valid_from": "valid_from", "notes": "notes", "groups": "members"}


def add_unit(folder: RuleFolder, values: Mapping[str, Any], today: date) -> str:
    """Add a unit (and put it in the chosen groups); returns its id."""
    ch = choices(folder, today)
    errors = FormErrors()
    f: UnitForm | None = _validate(UnitForm, values, errors, {**UNIT_INPUT_FIELD, "kind": "kind"})
    if f is not None:
        if f.supervisor and f.supervisor not in ch.ids("units"):
            errors.add("supervisor", "Chọn cơ quan cấp trên trong danh sách.")
        if any(g not in ch.ids("groups") for g in f.groups):
            errors.add("members", "Có nhóm được chọn không còn trong bộ quy tắc; tải lại trang và chọn lại.")
    if f is None and "kind" in errors.fields:
        errors.fields["kind"] = ["Chọn loại đơn vị."]
    if errors or f is None:
        raise FormRejected(errors)
    taken = ch.ids("obligations") | ch.ids("units") | ch.ids("groups") | ch.ids("policies")
    uid, n = slug(f.name, 50), 2
    base = uid
    while uid in taken:
        uid = f"{base}-{n}"
        n += 1
    data: dict[str, Any] = {"id": uid, "name": f.name, "kind": f.kind, "contacts": f.contacts}
    if f.supervisor:
        data["supervisor"] = f.supervisor
    if f.valid_from:
        data["valid_from"] = f.valid_from
    if f.notes:
        data["notes"] = f.notes
    unit_file = next((p.name for p in folder.files()
                      if isinstance(folder.doc(p.name).data, Mapping) and "units" in folder.doc(p.name).data),
                     "units.yaml")
    folder.add_unit(data, unit_file)
    for g in f.groups:
        members = _plain(folder.item("groups", g).get("members")) or []
        folder.set_field("groups", g, "members", [*members, uid])
    folder.save()
    return uid


def end_unit(folder: RuleFolder, uid: str, values: Mapping[str, Any], today: date) -> None:
    ch = choices(folder, today)
    errors = FormErrors()
    until = None
    try:
        until = parse_day(str(values.get("valid_until") or ""), "Ngày cuối cùng đơn vị hoạt động")
    except ValueError as exc:
        errors.add("valid_until", str(exc))
    else:
        if until is None:
            errors.add("valid_until", "Nhập ngày cuối cùng đơn vị hoạt động (dd/mm/yyyy).")
    successor = one_line(str(values.get("successor") or "")) or None
    if successor is not None and (successor not in ch.ids("units") or successor == uid):
        errors.add("successor", "Chọn đơn vị kế thừa trong danh sách (khác đơn vị đang chấm dứt).")
    if errors or until is None:
        raise FormRejected(errors)
    folder.end_unit(uid, until, successor)
    folder.save()


# ─── reminder policies ──────────────────────────────────────────────────────────────────────────
class PolicyForm(BaseModel):
    model_config = ConfigDict(extra="ignore")
    before_due_working_days: list[int]
    on_due_day: bool = False
    overdue_after_working_days: int
    repeat_every_working_days: int
    max_repeats: int
    escalate_after_working_days: int
    escalate_to: list[str] = []

    @field_validator("before_due_working_days", mode="before")
    @classmethod
    def _before(cls, v: Any) -> list[int]:
        out: list[int] = []
        for x in re.split(r"[\s,;]+", str(v or "")):
            if x:
                n = parse_int(x, "Nhắc trước hạn", 1, 60)
                if n is not None and n not in out:
                    out.append(n)
        return sorted(out, reverse=True)

    @field_validator("on_due_day", mode="before")
    @classmethod
    def _bool(cls, v: Any) -> bool:
        return str(v or "").strip() in ("1", "on", "true")

    @field_validator("overdue_after_working_days", "repeat_every_working_days", mode="before")
    @classmethod
    def _n60(cls, v: Any, info: Any) -> int:
        n = parse_int(v, FIELD_VI[info.field_name], 0, 60)
        if n is None:
            raise ValueError(f"Nhập “{FIELD_VI[info.field_name]}” (số ngày làm việc, 0–60).")
        return n

    @field_validator("max_repeats", mode="before")
    @classmethod
    def _max(cls, v: Any) -> int:
        n = parse_int(v, "Số lần nhắc lại tối đa", 0, 50)
        if n is None:
            raise ValueError("Nhập số lần nhắc lại tối đa (0–50).")
        return n

    @field_validator("escalate_after_working_days", mode="before")
    @classmethod
    def _esc(cls, v: Any) -> int:
        n = parse_int(v, "Báo cấp trên sau", 1, 120)
        if n is None:
            raise ValueError("Nhập số ngày làm việc quá hạn thì báo cấp trên (1–120).")
        return n

    @field_validator("escalate_to", mode="before")
    @classmethod
    def _to(cls, v: Any) -> list[str]:
        items = [one_line(x) for x in v or [] if one_line(x)]
        if not items:
            raise ValueError("Chọn ít nhất một nơi được báo khi quá hạn lâu.")
        return list(dict.fromkeys(items))


POLICY_KEYS = ("before_due_working_days", "on_due_day", "overdue_after_working_days", "repeat_every_working_days",
               "max_repeats", "escalate_after_working_days", "escalate_to")


def policy_values(item: Mapping[str, Any]) -> dict[str, Any]:
    d = _plain(item)
    before = d.get("before_due_working_days", [3, 1])
    return {"before_due_working_days": ", ".join(str(n) for n in before),
            "on_due_day": "1" if d.get("on_due_day", True) else "",
            "overdue_after_working_days": str(d.get("overdue_after_working_days", 1)),
            "repeat_every_working_days": str(d.get("repeat_every_working_days", 5)),
            "max_repeats": str(d.get("max_repeats", 3)),
            "escalate_after_working_days": str(d.get("escalate_after_working_days", 10) or ""),
            "escalate_to": [str(x) for x in d.get("escalate_to", [SUPERVISOR])]}


def change_policy(folder: RuleFolder, pid: str, values: Mapping[str, Any], today: date) -> int:
    ch = choices(folder, today)
    errors = FormErrors()
    f: PolicyForm | None = _validate(PolicyForm, values, errors, {k: k for k in POLICY_KEYS})
    if f is not None and any(t != SUPERVISOR and t not in ch.ids("units") for t in f.escalate_to):
        errors.add("escalate_to", "Có nơi nhận được chọn không còn trong bộ quy tắc; tải lại trang và chọn lại.")
    if errors or f is None:
        raise FormRejected(errors)
    item = folder.item("reminder_policies", pid)
    old = policy_values(item)
    new = f.model_dump()
    changed = 0
    for key in POLICY_KEYS:
        was = _plain(item.get(key)) if key in item else None
        if key in item and was == new[key]:
            continue
        if key not in item and policy_values({key: new[key]})[key] == old[key]:
            continue                               # the default, written nowhere: leave it unwritten
        folder.set_policy_field(pid, key, new[key])
        changed += 1
    if changed:
        folder.save()
    return changed


# ─── check errors next to their field ───────────────────────────────────────────────────────────
@dataclass(frozen=True)
class PlacedError:
    """A `rules check` error placed on an item and a field of the form (or on the whole draft)."""
    section: str | None
    item: str | None
    item_label: str
    field: str                      # field group ("due", "reporters" …) or "form"
    field_label: str
    message: str
    where: str                      # file:line, for the YAML diff

    @property
    def edit_url_part(self) -> str | None:
        return {"obligations": "bao-cao", "reminder_policies": "nhac"}.get(self.section or "")


def place_errors(directory: Path, errors: list[RuleError], ch: Choices) -> list[PlacedError]:
    """Each error with the item (obligation, unit, policy) written at its line and the form field."""
    out: list[PlacedError] = []
    labels = {("obligations", c.id): c.label for c in ch.obligations}
    labels.update({("units", c.id): c.label for c in ch.units})
    labels.update({("groups", c.id): c.label for c in ch.groups})
    labels.update({("reminder_policies", c.id): c.label for c in ch.policies})
    for e in errors:
        found = locate(directory, e.file, e.line) if e.line else None
        section, item = found if found else (None, None)
        fld = _ITEM_FIELD.sub("", e.field or "").split(".")[0].split("[")[0] if section else ""
        fld = fld if fld in FIELD_VI else "form"
        label = ""
        if section:
            what = SECTIONS_VI.get(section, section)
            label = f"{what[0].upper()}{what[1:]} “{labels.get((section, item), item)}”"
        where = e.file if e.line is None else f"{e.file}:{e.line}"
        out.append(PlacedError(section, item, label, fld, FIELD_VI.get(fld, ""), e.message, where))
    return out


def errors_for(placed: list[PlacedError], section: str, item: str) -> FormErrors:
    fe = FormErrors()
    for p in placed:
        if p.section == section and p.item == item:
            fe.add(p.field, p.message)
    return fe


# ─── what changed, in words ─────────────────────────────────────────────────────────────────────
def _items(files: Mapping[str, str], names: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for name in names:
        text = files.get(name)
        if text is None or "/" in name:
            continue
        try:
            data = yaml.load(text, Loader=loader)  # noqa: S506 - safe loader
        except yaml.YAMLError:
            continue
        if not isinstance(data, dict):
            continue
        for section in SECTIONS_VI:
            for item in data.get(section) or []:
                if isinstance(item, dict) and item.get("id") is not None:
                    out[(section, str(item["id"]))] = item
    return out


_WHAT = {"obligations": "báo cáo", "units": "đơn vị", "groups": "nhóm đơn vị", "reminder_policies": "chính sách nhắc"}


def changes_vi(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """“Thêm báo cáo “…””, “Sửa báo cáo “…” (Hạn nộp)”, “Bỏ đơn vị “…”” between two folders' files."""
    names = sorted(n for n in set(old) | set(new) if old.get(n) != new.get(n))
    if not names:
        return []
    a, b = _items(old, names), _items(new, names)
    # an item moved to another changed file is found in both; one in an unchanged file is not compared
    lines: list[str] = []
    for key in sorted(set(a) | set(b), key=lambda k: (list(_WHAT).index(k[0]), k[1])):
        x, y = a.get(key), b.get(key)
        if x == y:
            continue
        item = y or x or {}
        label = one_line(str(item.get("title") or item.get("name") or "")) or (
            policy_label(item) if key[0] == "reminder_policies" else key[1])
        what = _WHAT[key[0]]
        if x is None:
            lines.append(f"Thêm {what} “{label}”")
        elif y is None:
            lines.append(f"Bỏ {what} “{label}”")
        else:
            fields = [FIELD_VI.get(k, k) for k in dict.fromkeys([*x, *y]) if x.get(k) != y.get(k)]
            lines.append(f"Sửa {what} “{label}” ({', '.join(fields)})")
    other = [n for n in names if not n.endswith((".yaml", ".yml")) or "/" in n]
    if other:
        lines.append(f"Sửa tệp khác: {', '.join(other)}")
    return lines


# ─── versions and people, as the pages name them ────────────────────────────────────────────────
HAND_EDIT_AUTHOR = "không rõ người sửa"


def user_names(settings: Any) -> dict[str, str]:
    """Console accounts by username → full name (an author ``web:thu.ky`` is shown by name)."""
    from sqlmodel import select

    from engine.app import services
    from engine.state import UserRow

    with services.open_session(settings) as ses:
        return {u: (n or u) for u, n in ses.exec(select(UserRow.username, UserRow.full_name)).all()}


def author_vi(author: str, kind: str, users: Mapping[str, str]) -> str:
    if kind in ("hand_edit", "initial"):
        return HAND_EDIT_AUTHOR
    if author.startswith("web:"):
        name = author[4:]
        return users.get(name) or name
    return author or "–"


def version_changes(settings: Any, numbers: list[int]) -> dict[int, list[str]]:
    """What each listed version changed from the one before it, in words (one query for the files)."""
    from sqlmodel import col, select

    from engine.app import services
    from engine.state import RuleVersionRow

    if not numbers:
        return {}
    wanted = set(numbers) | {n - 1 for n in numbers}
    R = RuleVersionRow
    with services.open_session(settings) as ses:
        rows = ses.exec(select(R.number, R.files).where(col(R.number).in_(sorted(wanted)))).all()
    import json

    files = {n: json.loads(f) for n, f in rows}
    out: dict[int, list[str]] = {}
    for n in numbers:
        if n in files and n - 1 in files:
            out[n] = changes_vi(files[n - 1], files[n])
        else:
            out[n] = []
    return out
