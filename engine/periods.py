"""Reporting periods and their data cut-off windows (Nghị định 09/2019/NĐ-CP, Điều 12)."""

from __future__ import annotations

import calendar as _stdcal
import re
from collections.abc import Iterable
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


class BadPeriod(ValueError):
    """A period key an obligation cannot have; str() is the Vietnamese message naming the forms it takes."""


# Each frequency's key syntax: (pattern, how a secretary is told to write it, what the report is called).
_KEY_FORMS: dict[str, tuple[re.Pattern[str], str, str]] = {
    "monthly": (re.compile(r"(\d{4})-(\d{2})"), "năm-tháng, ví dụ {y}-09", "báo cáo tháng"),
    "quarterly": (re.compile(r"(\d{4})-[Qq]([1-4])"), "năm-Q và số quý, ví dụ {y}-Q3", "báo cáo quý"),
    "half_yearly": (re.compile(r"(\d{4})-[Hh]([12])"), "{y}-H1 (6 tháng đầu năm) hoặc {y}-H2 (6 tháng cuối năm)",
                    "báo cáo 6 tháng"),
    "yearly": (re.compile(r"(\d{4})"), "chỉ số năm, ví dụ {y}", "báo cáo năm"),
    "every_n_months": (re.compile(r"(\d{4})-(\d{2})\.\.(\d{4})-(\d{2})"),
                       "tháng đầu..tháng cuối của giai đoạn, ví dụ {example}", "báo cáo theo giai đoạn nhiều tháng"),
    "once": (re.compile(r"once"), "once", "nhiệm vụ một lần"),
}


def _form_of(key: str) -> str | None:
    for freq, (pattern, _, _) in _KEY_FORMS.items():
        if pattern.fullmatch(key):
            return freq
    return None


def accepted_forms(obligation: Obligation, year: int | None = None) -> str:
    """'“thang” (Báo cáo tháng) là báo cáo tháng, kỳ viết dạng năm-tháng, ví dụ 2026-09'."""
    from engine.limits import year_ok

    freq = obligation.recurrence.freq
    _, how, what = _KEY_FORMS[freq]
    y = year if year is not None and year_ok(year) else date.today().year
    found = [p.key for p in periods_between(obligation, date(y, 1, 1), date(y + 2, 12, 31))] if freq != "once" else []
    example = found[0] if found else f"{y}-01..{y}-06"
    text = how.format(y=y, example=example)
    template = re.search(r"\d{4}(-[QH]?\d{1,2})?", text)
    if freq != "every_n_months" and found and template and template.group(0) not in found:   # e.g. September has no monthly report
        text = text.replace(template.group(0), found[0])
    return f"“{obligation.id}” ({obligation.title}) là {what}, kỳ viết dạng {text}"


def period_for_key(obligation: Obligation, key: object, others: Iterable[Obligation] = ()) -> Period:
    """The period a user named (``--period``, a CSV cell), or BadPeriod saying which forms THIS
    obligation takes; when the key has another frequency's form, it also names obligations of
    `others` that take that form (the user probably meant one of them)."""
    from engine.limits import YEARS_VI, year_ok

    key = normalise_period_text(key)     # "T11/2026", "Quý IV/2026", an Excel date cell …
    rec = obligation.recurrence
    freq = rec.freq
    form = _form_of(key)
    years = [int(g) for g in (_KEY_FORMS[form][0].fullmatch(key).groups() if form else ()) if len(g) == 4]
    first_year = years[0] if years else None
    if form is None:
        raise BadPeriod(f"kỳ “{key}” không đúng dạng; {accepted_forms(obligation)}")
    bad = [y for y in years if not year_ok(y)]
    if bad:
        raise BadPeriod(f"kỳ “{key}”: năm {bad[0]} ngoài phạm vi hỗ trợ ({YEARS_VI}); {accepted_forms(obligation)}")
    if form in ("monthly", "every_n_months"):
        months = [int(g) for g in _KEY_FORMS[form][0].fullmatch(key).groups() if len(g) == 2]
        if any(not 1 <= m <= 12 for m in months):
            raise BadPeriod(f"kỳ “{key}” không hợp lệ: không có tháng {next(m for m in months if not 1 <= m <= 12)}; "
                            f"{accepted_forms(obligation, first_year)}")
    if form != freq:
        msg = f"kỳ “{key}” không dùng được cho “{obligation.id}”: {accepted_forms(obligation, first_year)}"
        fits = _siblings_first(obligation, [o for o in others if o.recurrence.freq == form and o.id != obligation.id])
        if fits:
            msg += f". Kỳ “{key}” là kỳ của {_KEY_FORMS[form][2]}, ví dụ {_names(fits)}"
        raise BadPeriod(msg)
    if freq == "once":
        assert rec.start and rec.end
        found = periods_between(obligation, rec.start, rec.end)
        if found:
            return found[0]
        raise BadPeriod(f"không tìm thấy kỳ của “{obligation.id}”")  # pragma: no cover - a once rule has one
    assert first_year is not None
    near = periods_between(obligation, date(first_year, 1, 1), date(min(first_year + 3, 9998), 12, 31))
    for p in near:
        if p.key == key:
            return p
    same_year = [p.key for p in near if p.key.startswith(str(first_year))][:12]
    listed = f"; các kỳ năm {first_year}: {', '.join(same_year)}" if same_year else ""
    msg = f"“{obligation.id}” ({obligation.title}) không có kỳ “{key}”{listed}"
    # A month left out by `months:` is usually covered by a sibling report (same reporters and
    # recipient): September by the quarterly report, June by the 6-month report.
    if rec.months is not None and freq in ("monthly", "quarterly", "half_yearly"):
        month = {"monthly": lambda n: n, "quarterly": lambda n: 3 * n, "half_yearly": lambda n: 6 * n}[freq](
            int(_KEY_FORMS[freq][0].fullmatch(key).group(2)))
        lo = date(first_year, month, 1)
        covering = [(o, p) for o in _siblings_first(obligation, [o for o in others if o.id != obligation.id])
                    if _same_people(o, obligation)
                    for p in periods_between(o, lo, _month_end(lo))]
        if covering:
            o, p = covering[0]
            msg += (f". Tháng {month:02d}/{first_year} thuộc {_KEY_FORMS[o.recurrence.freq][2]}: "
                    f"kỳ “{p.key}” của “{o.id}” ({o.title})")
    raise BadPeriod(msg)


def _same_people(a: Obligation, b: Obligation) -> bool:
    return set(a.reporters) == set(b.reporters) and a.recipient == b.recipient


def _siblings_first(obligation: Obligation, others: list[Obligation]) -> list[Obligation]:
    """Obligations with the same reporters and recipient first: the one the user most likely meant."""
    return sorted(others, key=lambda o: not _same_people(o, obligation))


def _names(obligations: list[Obligation], limit: int = 2) -> str:
    shown = ", ".join(f"“{o.id}” ({o.title})" for o in obligations[:limit])
    return shown + ("…" if len(obligations) > limit else "")


# ─── the forms people write ─────────────────────────────────────────────────────────────────────
_ROMAN_Q = {"i": 1, "ii": 2, "iii": 3, "iv": 4}
_EN_MONTHS = {m: n for n, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                          "nov", "dec"), start=1)}


def fold(text: str) -> str:
    """Lower case without Vietnamese diacritics ("Quý IV" → "quy iv", "Đơn vị" → "don vi"): what a
    secretary types without an input method, and the form names are compared in."""
    import unicodedata

    text = text.replace("đ", "d").replace("Đ", "D")
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c)).lower()


def _year(text: str) -> int:
    y = int(text)
    return 2000 + y if len(text) == 2 else y


# (pattern over the folded, space-normalised text, builder of the key). Order matters: first match wins.
_TEXT_FORMS: list[tuple[re.Pattern[str], object]] = [
    # months: 2026-11, 2026/11, 11/2026, 11-2026, T11/2026, Tháng 11/2026, tháng 11 năm 2026
    (re.compile(r"(\d{4})[-/.](\d{1,2})"), lambda m: f"{m[1]}-{int(m[2]):02d}"),
    (re.compile(r"(?:thang|t)?\s*(\d{1,2})\s*(?:[-/.]|nam)\s*(\d{4})"), lambda m: f"{m[2]}-{int(m[1]):02d}"),
    # what Excel shows for a typed "2026-11": Nov-26 (also Nov-2026, Nov 2026, November 2026)
    (re.compile(r"([a-z]{3})[a-z]*[-/ ]?(\d{2}|\d{4})"),
     lambda m: f"{_year(m[2])}-{_EN_MONTHS[m[1]]:02d}" if m[1] in _EN_MONTHS else None),
    # quarters: 2026-Q4, Q4/2026, Q4-2026, Quý IV/2026, Quý 4/2026, quý 4 năm 2026
    (re.compile(r"(\d{4})\s*-?\s*q\s*([1-4])"), lambda m: f"{m[1]}-Q{m[2]}"),
    (re.compile(r"(?:quy|q)\s*(iv|iii|ii|i|[1-4])\s*(?:[-/.]|nam)?\s*(\d{4})"),
     lambda m: f"{m[2]}-Q{_ROMAN_Q.get(m[1]) or int(m[1])}"),
    # halves: 2026-H1, H1/2026, 6 tháng đầu năm 2026, 6 tháng cuối năm 2026 (also "sáu tháng …")
    (re.compile(r"(\d{4})\s*-?\s*h\s*([12])"), lambda m: f"{m[1]}-H{m[2]}"),
    (re.compile(r"h\s*([12])\s*[-/.]?\s*(\d{4})"), lambda m: f"{m[2]}-H{m[1]}"),
    (re.compile(r"(?:6|sau) thang (dau|cuoi) (?:nam )?(\d{4})"),
     lambda m: f"{m[2]}-H{1 if m[1] == 'dau' else 2}"),
    # years: 2026, Năm 2026
    (re.compile(r"(?:nam\s*)?(\d{4})"), lambda m: m[1]),
]


def normalise_period_text(value: object) -> str:
    """The period key (2026-11, 2026-Q4, 2026-H1, 2026 …) for any form a secretary or a spreadsheet
    writes: "11/2026", "T11/2026", "Tháng 11/2026", "Q4/2026", "Quý IV/2026", "6 tháng đầu năm 2026",
    "Năm 2026", and what Excel makes of a typed "2026-11" (a date cell → its month; the text "Nov-26").

    One parser for `--period`, CSV and xlsx cells. Text of no known form is returned stripped, so
    :func:`period_for_key` can say which forms the obligation takes; it never raises."""
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        # Excel stores a typed "2026-11" as the date 01/11/2026; another day is not a period.
        return f"{value:%Y-%m}" if value.day == 1 else f"{value:%d/%m/%Y}"
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, (int, float)):
        return str(int(value)) if float(value).is_integer() else str(value)
    text = str(value).strip()
    if text == "once" or _KEY_FORMS["every_n_months"][0].fullmatch(text):
        return text
    folded = re.sub(r"\s+", " ", fold(text)).strip()
    for pattern, build in _TEXT_FORMS:
        m = pattern.fullmatch(folded)
        if m:
            key = build(m)   # type: ignore[operator]
            if key is not None:
                return key
    return text


_PERIOD_FORMS = ((re.compile(r"(\d{4})-(\d{2})"), "monthly"), (re.compile(r"(\d{4})-Q([1-4])"), "quarterly"),
                 (re.compile(r"(\d{4})-H([12])"), "half_yearly"), (re.compile(r"(\d{4})"), "yearly"))


def label_for_key(key: str | None) -> str:
    """A period code as a secretary writes it: "2026-11" → "Tháng 11/2026", "2026-Q4" → "Quý IV/2026",
    "2026-H1" → "6 tháng đầu năm 2026", "2026" → "Năm 2026" (the wording of the periods above); an unknown form is returned as it is."""
    if not key:
        return ""
    for pattern, freq in _PERIOD_FORMS:
        m = pattern.fullmatch(key.strip())
        if not m:
            continue
        year = int(m.group(1))
        try:
            if freq == "monthly":
                start = date(year, int(m.group(2)), 1)
            elif freq == "quarterly":
                start = date(year, 3 * int(m.group(2)) - 2, 1)
            elif freq == "half_yearly":
                start = date(year, 1 if m.group(2) == "1" else 7, 1)
            else:
                start = date(year, 1, 1)
        except ValueError:
            return key
        return _key_and_label(freq, start, start)[1]
    return key
