"""Digest content and its rendering through the secretariat-editable Jinja2 templates.

A *digest* is everything one recipient should read in one run: its own reports grouped by status
(Chưa hoàn thành – quá hạn / Đến hạn hôm nay / Sắp đến hạn), for supervising bodies the late
units they were escalated, the KPI targets the recipient answers for that slip (Chậm tiến độ, Không
đạt, Thiếu số liệu) and, for the secretariat, the weekly summary of every slipping target. Status
and day counts (and the KPI status) are computed on the day the message is *sent*, not the day the
notice was written, so a digest held back by an SMTP outage never says "còn 3 ngày" when the
deadline has passed.

Templates are looked up first in the override directory (``DONDOC_TEMPLATES_DIR``), then in the
templates shipped in ``notifications/templates/``; a secretariat may override one file only.
HTML templates (``*.html.j2``) are autoescaped; every template runs with StrictUndefined so a
misspelt variable fails ``check_templates`` instead of silently printing nothing.
"""

from __future__ import annotations

import abc

import re
import traceback
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

from jinja2 import (ChoiceLoader, FileSystemLoader, StrictUndefined, TemplateError, TemplateNotFound,
                    TemplateSyntaxError, select_autoescape)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.errors import RuleError, display_path
from engine.periods import label_for_key
from engine.vi import KPI_STATUS, REPORT_STATUS, fmt_date, fmt_day, weekday

SHIPPED_DIR = Path(__file__).resolve().parent / "templates"

# Template names the sender uses; files starting with "_" are partials (macros, includes).
SUBJECT, TEXT, HTML, CHAT = "digest.subject.j2", "digest.txt.j2", "digest.html.j2", "digest.chat.j2"
TEMPLATE_NAMES = (SUBJECT, TEXT, HTML, CHAT)

# Section order: the most urgent first. Titles are the categories Vietnamese trackers use.
SECTION_TITLES = {
    "overdue": REPORT_STATUS["overdue"],
    "due_today": "Đến hạn hôm nay",
    "due_soon": REPORT_STATUS["due_soon"],
}
# KPI targets: their own section (items of another shape than reports), worst status first.
KPI_SECTION_TITLE = "Chỉ tiêu chậm tiến độ, không đạt hoặc thiếu số liệu"
KPI_SUMMARY_TITLE = "Tổng hợp chỉ tiêu chậm tiến độ, không đạt hoặc thiếu số liệu"
KPI_STATUS_VI = {k: KPI_STATUS[k] for k in ("missed", "behind", "no_data")}
NO_VALUE = "chưa có số liệu"
# A report the unit said it had sent (from the link in its reminder) and the secretariat returned.
RETURNED_TITLE = "Báo cáo bị trả lại"


ngay = fmt_day          # "Thứ Hai, 30/11/2026" (template filter names kept for override templates)
ngay_so = fmt_date      # "30/11/2026"


def period_label(key: str | None) -> str:
    """A period code as a secretary writes it ("2026-Q4" → "Quý IV/2026"): engine.periods.label_for_key."""
    return label_for_key(key)


def moved_due_text(unrolled: date | None, due: date, why: str | None = None) -> str:
    """"hạn dời từ Chủ nhật 30/11/2025 sang Thứ Hai 01/12/2025" ("" when the due day was not moved)."""
    if unrolled is None or unrolled == due:
        return ""
    reason = f" ({why})" if why else ""
    return (f"hạn dời từ {weekday(unrolled)} {fmt_date(unrolled)}{reason} "
            f"sang {weekday(due)} {fmt_date(due)}")


@dataclass
class Party:
    id: str
    name: str
    email: str | None = None


@dataclass
class DigestItem:
    """One report of the recipient (several notices about one instance collapse into one item)."""
    obligation: str
    title: str
    basis: str
    unit: Party
    period: str
    period_label: str
    due: date
    status: str                 # overdue | due_today | due_soon
    wd_left: int = 0            # working days until the due day
    days_left: int = 0          # calendar days until the due day
    wd_late: int = 0            # working days since the due day
    own: bool = True            # the recipient is the reporting unit
    moved: str = ""             # "hạn dời từ Chủ nhật 30/11/2025 sang Thứ Hai 01/12/2025" (a day off moved it)

    @property
    def status_vi(self) -> str:
        return SECTION_TITLES[self.status]

    def urgency(self) -> tuple:
        """Which items a digest lists in full when it cannot list all: what is due today (still on
        time today), then the most recently overdue (still worth doing; a year-old report is counted,
        not listed), then what comes due soonest."""
        rank = {"due_today": 0, "overdue": 1, "due_soon": 2}[self.status]
        return rank, -self.due.toordinal() if self.status == "overdue" else self.due.toordinal(), self.title, \
            self.unit.name, self.period


@dataclass
class ReturnedItem:
    """A report the unit said it had sent (its reminder's link) and the secretariat returned, with
    the reason: the unit reads it and answers again through the digest's fresh link."""
    obligation: str
    title: str
    period: str
    period_label: str
    due: date
    submitted_on: date          # the date the unit gave
    ref: str | None = None      # the số ký hiệu the unit gave
    reason: str = ""
    returned_on: date | None = None


@dataclass
class LateUnit:
    """One row of an escalation table: a unit and the periods of one report it has not sent."""
    unit: Party
    wd_late: int                # working days since the due day of its oldest missing period
    periods: list[str] = field(default_factory=list)   # labels of the missing periods, oldest first

    @property
    def name(self) -> str:
        return self.unit.name

    @property
    def periods_text(self) -> str:
        """"Tháng 10/2026", "Tháng 10/2026, Tháng 11/2026" or "11 kỳ: Tháng 01/2026 … Tháng 11/2026"."""
        if len(self.periods) <= 3:
            return ", ".join(self.periods)
        return f"{len(self.periods)} kỳ: {self.periods[0]} … {self.periods[-1]}"


@dataclass
class Escalation:
    """One report (obligation) and, as a short table, the units under the recipient that have not
    sent it: one row per unit with its missing periods and how many working days late it is."""
    obligation: str
    title: str
    basis: str
    period: str                 # the oldest missing period
    period_label: str           # its label, or "3 kỳ, từ Tháng 09/2026 đến Tháng 11/2026"
    due: date                   # the oldest due day
    units: list[LateUnit] = field(default_factory=list)
    periods: int = 1            # how many periods the rows miss together

    @property
    def due_text(self) -> str:
        """"hạn nộp Thứ Hai, 30/11/2026" (several periods: the first one's)."""
        return f"{'hạn nộp' if self.periods <= 1 else 'kỳ đầu tiên hạn nộp'} {ngay(self.due)}"


@dataclass
class Overflow:
    """What a digest counts instead of listing (it lists at most ``digest_max_items`` entries)."""
    total: int = 0
    parts: list[tuple[str, int]] = field(default_factory=list)   # (obligation title or status, how many)

    def __bool__(self) -> bool:
        return self.total > 0

    @property
    def text(self) -> str:
        """"Báo cáo tháng (12), Báo cáo quý (3)"."""
        return ", ".join(f"{label} ({n})" for label, n in self.parts)


def overflow(labels: list[str]) -> Overflow:
    """Counts per label, the largest first."""
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return Overflow(len(labels), sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def allocate(budget: int, sizes: list[int]) -> list[int]:
    """Share ``budget`` listed entries fairly between sections of ``sizes`` entries (max-min fair:
    a small section is listed whole, the rest is split evenly), so every section shows something."""
    alloc = [0] * len(sizes)
    left = budget
    open_ = [i for i, n in enumerate(sizes) if n > 0]
    while left > 0 and open_:
        share = max(1, left // len(open_))
        for i in list(open_):
            take = min(share, sizes[i] - alloc[i], left)
            alloc[i] += take
            left -= take
            if alloc[i] == sizes[i]:
                open_.remove(i)
            if left == 0:
                break
    return alloc


@dataclass
class KpiLine:
    """One slipping KPI target in a digest (from engine.kpi's KpiItem, as of the sending day)."""
    target: str
    indicator: str
    indicator_name: str
    requirement: str            # "≥ 60 %" ("" when unknown: the KPI files could not be read)
    milestone: date | None
    status: str                 # missed | behind | no_data
    unit: Party                 # the responsible unit
    latest_value: str = NO_VALUE   # "62 %", or "chưa có số liệu"
    latest_as_of: date | None = None
    expected: str | None = None    # the plan's value at expected_at ("66,97 %"); None: no path
    expected_at: date | None = None
    period: str | None = None      # the missing period (Thiếu số liệu) or the judged year (flows)
    basis: str = ""                # "Căn cứ": the plan and section of the target
    detail: str = ""               # one Vietnamese sentence
    own: bool = True               # the recipient is the responsible unit
    period_label: str = ""         # the period as a secretary writes it ("Năm 2026"); set from period

    def __post_init__(self) -> None:
        if self.period and not self.period_label:
            self.period_label = period_label(self.period)

    @property
    def status_vi(self) -> str:
        return KPI_STATUS_VI.get(self.status, self.status)

    @property
    def has_value(self) -> bool:
        return self.latest_as_of is not None


@dataclass
class KpiStatusGroup:
    key: str                    # missed | behind | no_data
    title: str
    items: list[KpiLine]
    more: int = 0               # slipping targets of this status not listed (digest_max_items)


@dataclass
class KpiOverview:
    """The secretariat's summary: counts per status and every slipping target grouped by status."""
    as_of: date
    total: int = 0
    counts: list[tuple[str, int]] = field(default_factory=list)   # (status in Vietnamese, targets), non-zero
    groups: list[KpiStatusGroup] = field(default_factory=list)
    error: str | None = None    # the KPI files could not be read when the digest was made
    distant: int = 0            # targets left out: only data missing, milestone years away
    horizon: int | None = None  # … the last milestone year still listed for them

    @property
    def slipping(self) -> int:
        return sum(len(g.items) + g.more for g in self.groups)

    def limited(self, budget: int) -> "KpiOverview":
        """At most ``budget`` targets listed, the worst statuses first; the rest counted per status."""
        sizes = [len(g.items) for g in self.groups]
        if sum(sizes) <= budget:
            return self
        groups, left = [], budget
        for g in self.groups:
            take = min(left, len(g.items))
            left -= take
            groups.append(replace(g, items=g.items[:take], more=g.more + len(g.items) - take))
        return replace(self, groups=groups)


@dataclass
class Section:
    key: str
    title: str
    items: list[DigestItem]


@dataclass
class Listing:
    """What one digest lists in full and what it only counts (at most ``max_items`` entries)."""
    items: list[DigestItem]
    escalations: list[Escalation]
    kpi: list[KpiLine]
    more_items: Overflow
    more_escalations: Overflow
    more_kpi: Overflow


@dataclass
class Digest:
    recipient: Party
    today: date
    secretariat: Party
    items: list[DigestItem] = field(default_factory=list)
    escalations: list[Escalation] = field(default_factory=list)
    kpi: list[KpiLine] = field(default_factory=list)
    kpi_overview: KpiOverview | None = None
    max_items: int | None = None    # entries listed in full (reports, escalation rows, KPI targets)
    # The signed link ("Báo đã gửi") to the page where the recipient confirms its own reports of this
    # digest (engine/app/confirmations); None: no link (no secret configured, or no report of its own).
    link: str | None = None
    returned: list[ReturnedItem] = field(default_factory=list)

    @property
    def kpi_items(self) -> list[KpiLine]:
        return self.listing().kpi

    def _kpi_sorted(self) -> list[KpiLine]:
        order = {k: n for n, k in enumerate(KPI_STATUS_VI)}
        return sorted(self.kpi, key=lambda i: (order.get(i.status, 9), not i.own, i.unit.name, i.indicator_name,
                                               i.milestone or date.max))

    def listing(self) -> Listing:
        """The most urgent entries up to ``max_items``, shared fairly between the digest's own
        reports, the escalation rows and the KPI targets; the rest counted per obligation/status."""
        kpi = self._kpi_sorted()
        rows = [(e, u) for e in self.escalations for u in e.units]
        if self.max_items is None or len(self.items) + len(rows) + len(kpi) <= self.max_items:
            return Listing(list(self.items), list(self.escalations), kpi, Overflow(), Overflow(), Overflow())
        n_items, n_rows, n_kpi = allocate(self.max_items, [len(self.items), len(rows), len(kpi)])
        ranked = sorted(self.items, key=DigestItem.urgency)
        items, rest = ranked[:n_items], ranked[n_items:]
        rows.sort(key=lambda r: (-len(r[1].periods), -r[1].wd_late, r[0].title, r[1].name))   # most behind
        keep = {(id(e), id(u)) for e, u in rows[:n_rows]}
        escalations = []
        for e in self.escalations:
            units = [u for u in e.units if (id(e), id(u)) in keep]
            if units:
                escalations.append(replace(e, units=units))
        return Listing(items, escalations, kpi[:n_kpi],
                       overflow([i.title for i in rest]),
                       overflow([e.title for e, _ in rows[n_rows:]]),
                       overflow([k.status_vi for k in kpi[n_kpi:]]))

    @property
    def sections(self) -> list[Section]:
        return self._sections(self.listing().items)

    @staticmethod
    def _sections(listed: list[DigestItem]) -> list[Section]:
        out = []
        for key, title in SECTION_TITLES.items():
            items = sorted((i for i in listed if i.status == key), key=lambda i: (i.due, i.title, i.unit.name))
            if items:
                out.append(Section(key, title, items))
        return out

    @property
    def counts(self) -> dict[str, int]:
        c = {k: 0 for k in SECTION_TITLES}
        for i in self.items:
            c[i.status] += 1
        c["escalated_units"] = sum(len(e.units) for e in self.escalations)   # rows: unit × report
        c["kpi"] = len(self.kpi)
        for k in KPI_STATUS_VI:
            c[f"kpi_{k}"] = sum(1 for i in self.kpi if i.status == k)
        c["kpi_summary"] = 1 if self.kpi_overview is not None else 0
        c["returned"] = len(self.returned)
        return c

    @property
    def empty(self) -> bool:
        return (not self.items and not self.escalations and not self.kpi and self.kpi_overview is None
                and not self.returned)

    def context(self) -> dict[str, object]:
        shown = self.listing()
        overview = self.kpi_overview
        if overview is not None and self.max_items is not None:
            overview = overview.limited(self.max_items)
        return {"recipient": self.recipient, "today": self.today, "secretariat": self.secretariat,
                "sections": self._sections(shown.items),
                "escalations": sorted(shown.escalations, key=lambda e: (e.due, e.title)),
                "counts": self.counts, "items": shown.items, "kpi_title": KPI_SECTION_TITLE,
                "kpi_items": shown.kpi, "kpi_summary_title": KPI_SUMMARY_TITLE, "kpi_overview": overview,
                "more_items": shown.more_items, "more_escalations": shown.more_escalations,
                "more_kpi": shown.more_kpi, "link": self.link, "returned_title": RETURNED_TITLE,
                "returned": sorted(self.returned, key=lambda r: (r.due, r.title, r.period)),
                "more_any": bool(shown.more_items or shown.more_escalations or shown.more_kpi
                                 or (overview is not None and any(g.more for g in overview.groups)))}


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    chat: str


def _one_line(text: str, limit: int = 250) -> str:
    text = re.sub(r"[\x00-\x1f\x7f\u2028\u2029]+", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text[:limit].rstrip()


def _memo(fmt):
    """A date filter remembered per value: a pass writes the same few dates thousands of times, and
    ``strftime`` costs ~8 µs. (Anything unhashable is formatted, or refused, by ``fmt`` itself.)"""
    cache: dict[object, str] = {}

    def memo(value):
        try:
            return cache[value]
        except KeyError:
            out = cache[value] = fmt(value)
            if len(cache) > 4096:
                cache.clear()
            return out
        except TypeError:
            return fmt(value)
    memo.__name__ = memo.__qualname__ = getattr(fmt, "__name__", "memo")
    memo.__doc__ = fmt.__doc__
    return memo


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, its attribute verdict remembered per (type, attribute name).

    ``ImmutableSandboxedEnvironment.is_safe_attribute`` decides from the attribute's name and from
    ``isinstance`` checks of the object (function, method, type, code, frame, generator …; list,
    dict, set, deque and the mutable ABCs); it never looks at the value. A digest asks the same
    ~60 questions (a quarter of the rendering time), so the answers are remembered, under these
    conditions, each of which would otherwise let the remembered answer differ from Jinja's own:
    * only objects whose ``__class__`` is their type (``isinstance`` also consults ``__class__``)
      and plain ``str`` names; names starting with ``_`` are refused at once, never remembered;
    * the whole memo is forgotten when the ABC cache token moves (``abc.get_cache_token``: any
      ``ABC.register`` anywhere, which can make a type a ``MutableSequence`` after the fact);
    * the base method must be Jinja's own, whose inputs are the ones above (``_VERIFIED``): a
      Jinja release that changes it turns the memo off instead of trusting it.
    The keys are attributes the templates name on their objects, a bounded set; the memo is
    cleared anyway if it ever grows past ``_MEMO_MAX``. tests/test_templates_sandbox.py compares
    the memo with Jinja's verdicts."""

    _MEMO_MAX = 4096

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._safe: dict[tuple[type, str], bool] = {}
        self._token = abc.get_cache_token()

    def is_safe_attribute(self, obj, attr: str, value) -> bool:
        if type(attr) is not str or not _VERIFIED:
            return super().is_safe_attribute(obj, attr, value)
        if attr.startswith("_"):
            return False                 # Jinja's first rule, whatever the object
        tp = type(obj)
        token = abc.get_cache_token()
        if token != self._token:         # an ABC registration may have changed an isinstance answer
            self._safe.clear()
            self._token = token
        key = (tp, attr)
        found = self._safe.get(key)
        if found is not None:
            return found
        verdict = super().is_safe_attribute(obj, attr, value)
        if getattr(obj, "__class__", None) is tp:
            if len(self._safe) >= self._MEMO_MAX:
                self._safe.clear()
            self._safe[key] = verdict
        return verdict


def _jinja_checks_are_known() -> bool:
    """True when the sandbox's attribute check is the code the memo's reasoning is about (Jinja2
    3.1: name rules, ``is_internal_attribute``, ``modifies_known_mutable``)."""
    import jinja2.sandbox as sb

    imm = ImmutableSandboxedEnvironment.is_safe_attribute
    base = sb.SandboxedEnvironment.is_safe_attribute
    try:
        names = set(imm.__code__.co_names) | set(base.__code__.co_names)
    except AttributeError:
        return False
    return names <= {"super", "is_safe_attribute", "startswith", "is_internal_attribute",
                     "modifies_known_mutable"}


_VERIFIED = _jinja_checks_are_known()


class Renderer:
    """A sandboxed Jinja2 environment over the override directory and the shipped templates.

    The secretariat edits these files, so a template is untrusted input: the immutable sandbox
    refuses attribute paths such as ``cycler.__init__.__globals__`` (no code can run as the
    daemon's user) and any call that changes an object (``list.append``)."""

    def __init__(self, override_dir: Path | None = None):
        self.override_dir = Path(override_dir) if override_dir else None
        loaders = [FileSystemLoader(str(self.override_dir))] if self.override_dir else []
        loaders.append(FileSystemLoader(str(SHIPPED_DIR)))
        self.env = _Sandbox(
            loader=ChoiceLoader(loaders),
            autoescape=select_autoescape(enabled_extensions=("html.j2", "htm.j2"), default_for_string=False,
                                         default=False),
            undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
            # Each template file is read once per Renderer (a delivery pass makes its own): an edit
            # applies from the next pass, never halfway through one (and no stat() per message).
            auto_reload=False,
        )
        self.env.filters["ngay"] = _memo(ngay)
        self.env.filters["ngay_so"] = _memo(ngay_so)
        self.env.globals["SECTION_TITLES"] = SECTION_TITLES
        self.env.globals["KPI_STATUS_VI"] = KPI_STATUS_VI

    def render(self, digest: Digest, channel: str | None = None) -> Rendered:
        """All four texts, or only those a channel uses ("email": subject, text, html; "webhook":
        subject, chat); the others are left empty."""
        ctx = digest.context()
        subject = _one_line(self.env.get_template(SUBJECT).render(ctx)) or "Nhắc hạn nộp báo cáo"
        ctx["subject"] = subject
        mail, chat = channel in (None, "email"), channel in (None, "webhook")
        return Rendered(subject,
                        self.env.get_template(TEXT).render(ctx) if mail else "",
                        self.env.get_template(HTML).render(ctx) if mail else "",
                        self.env.get_template(CHAT).render(ctx) if chat else "")

    def source_path(self, name: str) -> Path:
        if self.override_dir and (self.override_dir / name).is_file():
            return self.override_dir / name
        return SHIPPED_DIR / name


def resolve_templates_dir(explicit: Path | None = None) -> Path | None:
    """The override directory as configured (DeliveryConfig.templates_dir), or none: shipped only."""
    return explicit


# ---------------------------------------------------------------------------------------------
# check_templates: called by `dondoc rules check`


def sample_digests(today: date = date(2026, 11, 25)) -> list[Digest]:
    """Sample data covering every branch a template may take (and Vietnamese diacritics)."""
    vp = Party("vp-tinh-uy", "Văn phòng Tỉnh ủy", "vanthu.vp-tinh-uy@example.org")
    so = Party("so-khcn", "Sở Khoa học và Công nghệ", "vanthu@example.org")
    other = Party("so-tai-chinh", "Sở Tài chính <Phòng Kế hoạch & Ngân sách>")
    items = [
        DigestItem("khhd57-skhcn-nam", "Báo cáo năm về thực hiện Nghị quyết 57-NQ/TW", "Kế hoạch hành động, mục V.7",
                   so, "2026", "Năm 2026", date(2026, 11, 30), "due_soon", wd_left=3, days_left=5,
                   moved=moved_due_text(date(2026, 11, 29), date(2026, 11, 30))),
        DigestItem("khhd57-thang", "Báo cáo tháng", "Kế hoạch hành động, mục V.7", so, "2026-11", "Tháng 11/2026",
                   today, "due_today"),
        DigestItem("khhd57-quy", "Báo cáo quý", "Kế hoạch hành động, mục V.5", other, "2026-Q3", "Quý III/2026",
                   date(2026, 9, 18), "overdue", wd_late=48, own=False),
    ]
    esc = [Escalation("khhd57-thang", "Báo cáo tháng", "Kế hoạch hành động, mục V.7", "2026-09",
                      "2 kỳ, từ Tháng 09/2026 đến Tháng 10/2026", date(2026, 10, 19),
                      [LateUnit(other, 27, ["Tháng 09/2026", "Tháng 10/2026"]), LateUnit(so, 1, ["Tháng 10/2026"])])]
    basis = "Kế hoạch hành động của Ban Thường vụ Tỉnh ủy thực hiện Nghị quyết 57-NQ/TW, mục III.2.2 a)"
    kpi = [  # every status, with and without a value and a path, own and another unit's (a supervisor's)
        KpiLine("phu-song-5g-2030", "phu-song-5g", "Tỷ lệ phủ sóng 5G trên địa bàn", "≥ 100 %", date(2030, 12, 31),
                "behind", so, "62 %", date(2026, 11, 14), "66,97 %", date(2026, 11, 14), None, basis,
                "Chậm tiến độ: 62 % (ngày 14/11/2026); theo lộ trình cần khoảng 66,97 %.", own=False),
        KpiLine("cds-dang-2025", "cds-dang", "Cơ quan đảng hoàn thành mục tiêu chuyển đổi số <Đề án 06>", "= có",
                date(2025, 12, 31), "missed", vp, "Chưa", date(2025, 12, 31), None, None, "2025", basis,
                "Không đạt: tại mốc 31/12/2025 giá trị Chưa, yêu cầu = có."),
        KpiLine("vneid-2030", "vneid", "Tỷ lệ người dân có tài khoản định danh điện tử (VNeID)", "≥ 80 %",
                date(2030, 12, 31), "no_data", vp, NO_VALUE, None, "57,5 %", today, "2026", basis,
                "Chưa có số liệu kỳ Năm 2026 (hạn báo cáo “Báo cáo năm” 18/12/2026)."),
    ]
    overview = KpiOverview(today, 221, [("Đạt", 1), ("Chậm tiến độ", 1), ("Không đạt", 1), ("Thiếu số liệu", 1)],
                           [KpiStatusGroup(k, KPI_STATUS_VI[k], [i for i in kpi if i.status == k]) for k in KPI_STATUS_VI])
    return [Digest(so, today, vp, items=items),
            Digest(vp, today, vp, escalations=esc),
            Digest(vp, today, vp, items=items[:1], escalations=esc, kpi=kpi, kpi_overview=overview)]


def _check_samples() -> list[Digest]:
    """What check_templates renders: the samples, plus the branches a sample digest cannot show
    together (a summary made while the KPI files could not be read; a digest of KPI items only)."""
    samples = sample_digests()
    vp, today = samples[1].recipient, samples[1].today
    so = samples[0].recipient
    kpi_only = Digest(so, today, vp, kpi=[replace(i, own=True) for i in samples[2].kpi if i.unit.id == so.id])
    error = "tệp chỉ tiêu không hợp lệ (rules/kpi)"
    unread = KpiLine("vneid-2030", "vneid-2030", "vneid-2030", "", None, "no_data", vp, period="2026",
                     detail=f"Không đọc được tệp chỉ tiêu để cập nhật ({error}).")
    broken = Digest(vp, today, vp, kpi=[unread], kpi_overview=KpiOverview(today, error=error))
    returned = [ReturnedItem("khhd57-thang", "Báo cáo tháng", "2026-10", "Tháng 10/2026", date(2026, 10, 19),
                             date(2026, 10, 16), "123/BC-SKHCN", "Thiếu phụ lục số liệu <bảng 2>", today)]
    linked = replace(samples[0], link="https://dondoc.example.org/xn/abc.def", returned=returned)
    only_returned = Digest(so, today, vp, returned=returned, link="https://dondoc.example.org/xn/abc.def")
    return samples + [kpi_only, broken, linked, only_returned]


def _limited_sample() -> Digest:
    """A digest that lists only 2 of its entries: the lines that count what is not listed."""
    samples = sample_digests()
    full, vp = samples[2], samples[2].recipient
    overview = replace(full.kpi_overview, distant=12, horizon=2031) if full.kpi_overview else None
    return Digest(vp, full.today, vp, items=samples[0].items, escalations=full.escalations, kpi=full.kpi,
                  kpi_overview=overview, max_items=2)


def _error_line(exc: BaseException, path: Path) -> int | None:
    if isinstance(exc, TemplateSyntaxError):
        return exc.lineno
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename and Path(frame.filename).name == path.name:
            line = frame.lineno
    return line


def check_templates(directory: Path | None = None) -> list[RuleError]:
    """Compile and test-render every template; one RuleError (file, line, message) per problem.

    ``directory`` is the override directory (default: DONDOC_TEMPLATES_DIR, else the shipped
    templates are checked). Files there whose names the sender does not use are reported too,
    since a misspelt override would otherwise be silently ignored.
    """
    directory = resolve_templates_dir(directory)
    errors: list[RuleError] = []
    if directory is not None and not Path(directory).is_dir():
        return [RuleError(display_path(Path(directory)), None, "templates", "không tìm thấy thư mục mẫu thư")]
    renderer = Renderer(directory)
    base = Path(directory) if directory else SHIPPED_DIR
    for p in sorted(base.glob("*.j2")):
        if p.name not in TEMPLATE_NAMES and not p.name.startswith("_"):
            errors.append(RuleError(display_path(p), None, "template",
                                    f"tệp mẫu “{p.name}” không được dùng; tên mẫu hợp lệ: {', '.join(TEMPLATE_NAMES)} "
                                    "(tệp dùng chung bắt đầu bằng “_”)"))
    compiled = []
    for p in sorted(base.glob("_*.j2")) + [renderer.source_path(n) for n in TEMPLATE_NAMES]:
        try:
            renderer.env.get_template(p.name)
            compiled.append(p)
        except TemplateSyntaxError as exc:
            errors.append(RuleError(display_path(p), exc.lineno, "template", f"lỗi cú pháp mẫu thư: {exc.message}"))
        except TemplateNotFound:
            errors.append(RuleError(display_path(p), None, "template", "thiếu tệp mẫu thư"))
    for name in TEMPLATE_NAMES:
        p = renderer.source_path(name)
        if p not in compiled:
            continue
        for digest in _check_samples() + [_limited_sample()]:
            ctx = digest.context()
            ctx["subject"] = "Tiêu đề mẫu"
            try:
                out = renderer.env.get_template(name).render(ctx)
            except SecurityError as exc:   # the sandbox refused: never sent, and said plainly
                errors.append(RuleError(display_path(p), _error_line(exc, p), "template",
                                        f"mẫu thư dùng thao tác không được phép (truy cập thuộc tính nội bộ hoặc sửa "
                                        f"dữ liệu; mẫu thư chỉ được đọc dữ liệu): {exc}"))
                break
            except (TemplateError, Exception) as exc:  # any failure: the template cannot be sent
                errors.append(RuleError(display_path(p), _error_line(exc, p), "template",
                                        f"lỗi khi thử điền dữ liệu mẫu: {type(exc).__name__}: {exc}"))
                break
            if name == SUBJECT and not _one_line(out):
                errors.append(RuleError(display_path(p), None, "template", "tiêu đề thư rỗng"))
                break
    return errors
