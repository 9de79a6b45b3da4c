"""What the console's read-only pages show: the matrix (units × periods), a unit's page, an
obligation's page — as plain typed results, computed from selected columns, not ORM objects.

Why its own module: these pages are read many times a day and on 1,000 units × a year of
instances, so every query names only the columns it needs and narrows by obligation, unit or
instance id; the status of each instance comes from engine.status.classify (the rule `dondoc
status` and the overview use), memoised per request because many cells share the same facts.
The rule in words (recurrence, cut-off, due rule, reminder ladder) is written here, since no
other layer describes a rule to a reader (see the report of issue 12: the lead may move it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Iterable
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session

from engine.app.config import Settings
from engine.app.dashboard import current_terms, status_sql
from engine.app.services import InvalidInput, open_session
from engine.duedates import Due
from engine.limits import MAX_YEAR, MIN_YEAR
from engine.periods import Period, periods_between
from engine.rules_loader import RulePack
from engine.rules_model import (KIND_VI, BeforeDate, Cutoff, DayOfLastMonth, FixedDate, Obligation, OnDate,
                                ReminderPolicy, WorkingDaysAfterObligation, WorkingDaysAfterPeriod)
from engine.state import (AttachmentRow, ConfirmationRow, DeliveryRow, InstanceRow, SubmissionRow, UnitRow, UserRow,
                          WaiverRow)
from engine.status import classify
from engine.vi import REPORT_STATUS, fmt_date, fmt_num

# Unit kinds (engine.rules_model.UnitKind) as the secretariat names them; the order groups the unit list.
UNIT_KIND_VI = {
    "bcd": "Ban Chỉ đạo", "cap_uy": "Cấp ủy", "ban_dang": "Các ban của Tỉnh ủy", "van_phong": "Văn phòng",
    "so": "Sở, ban, ngành", "ubnd": "Ủy ban nhân dân", "mat_tran": "Mặt trận Tổ quốc", "doan_the": "Đoàn thể",
    "bao_dai": "Báo, Đài", "trung_uong": "Cơ quan Trung ương", "khac": "Khác",
}
# What a matrix cell says in a few letters (the full status word is its title and in the legend).
STATUS_SHORT = {
    "done_on_time": "Đúng hạn", "done_late": "Nộp muộn", "in_progress": "Trong hạn", "due_soon": "Sắp đến hạn",
    "overdue": "Quá hạn", "awaiting": "Chờ xác nhận", "waived": "Miễn",
}
STATUS_ORDER = list(REPORT_STATUS)
LIST_LIMIT = 500           # rows of a status list (?tinh-trang=…) shown at most
MAIL_LIMIT = 200           # mails shown on a unit's page
PAGE_UNITS = 200           # matrix rows per page (1,000 units × 8 periods is a 900 KB page otherwise)

_INST = (InstanceRow.id, InstanceRow.obligation, InstanceRow.unit, InstanceRow.period, InstanceRow.period_label,
         InstanceRow.due, InstanceRow.submitted_on, InstanceRow.waived, InstanceRow.awaiting_since)


class _Judge:
    """engine.status.classify as of one day, memoised: a matrix of 1,000 units shares a few dozen
    distinct (due, submitted, waived, awaiting) facts per report, and counting working days is the
    costly part."""

    def __init__(self, pack: RulePack, today: date):
        self.pack, self.today = pack, today
        self._memo: dict[tuple[str, date, date | None, bool, date | None], str] = {}

    def __call__(self, obligation: str, due: date, submitted_on: date | None, waived: bool,
                 awaiting_since: date | None) -> str:
        key = (obligation, due, submitted_on, bool(waived), awaiting_since)
        hit = self._memo.get(key)
        if hit is None:
            hit = classify(self.pack, due, self.today, submitted_on, bool(waived), obligation, awaiting_since)[0]
            self._memo[key] = hit
        return hit


# ─── small helpers ──────────────────────────────────────────────────────────────────────────────
def parse_year(text: str | None, today: date) -> int:
    """The ``nam`` of a query (default: this year); a Vietnamese refusal otherwise."""
    if text is None or not text.strip():
        return today.year
    t = text.strip()
    if not t.isdigit() or not (MIN_YEAR <= int(t) <= MAX_YEAR):
        raise InvalidInput(f"Năm phải là một số từ {MIN_YEAR} đến {MAX_YEAR}.")
    return int(t)


def year_span(year: int) -> tuple[date, date]:
    return date(year, 1, 1), date(year, 12, 31)


def years_available(settings: Settings, today: date, selected: int | None = None) -> list[int]:
    """The years that have instances (and this year, and the one selected), newest first.

    The first and last due day are read per (closed, active) pair, four each: every one is the
    end of the index ix_instances_open_due (closed, active, due), where one ``min``/``max`` over
    the table scans it (≈25 ms for 200,000 instances on PostgreSQL)."""
    ends = [sa.select(agg(InstanceRow.due)).where(InstanceRow.closed == c, InstanceRow.active == a).scalar_subquery()
            for agg in (sa.func.min, sa.func.max) for c in (sa.false(), sa.true()) for a in (sa.false(), sa.true())]
    with open_session(settings) as ses:
        found = ses.execute(sa.select(*ends)).one()
    lows, highs = [d for d in found[:4] if d is not None], [d for d in found[4:] if d is not None]
    years = {today.year} | ({selected} if selected else set())
    if lows and highs:
        years |= set(range(min(lows).year, max(highs).year + 1))
    return sorted(years, reverse=True)


def join_vi(items: Iterable[str]) -> str:
    """“a, b và c”."""
    xs = list(items)
    if len(xs) <= 1:
        return "".join(xs)
    return ", ".join(xs[:-1]) + " và " + xs[-1]


def fmt_size(n: int) -> str:
    """1234567 → “1,2 MB” (Vietnamese decimals)."""
    if n < 1024:
        return f"{fmt_num(n)} byte"
    if n < 1024 * 1024:
        return f"{fmt_num(round(n / 1024, 1), 1)} KB"
    return f"{fmt_num(round(n / 1024 / 1024, 1), 1)} MB"


def unit_name(pack: RulePack, uid: str) -> str:
    u = pack.units.get(uid)
    return u.name if u is not None else "(đơn vị không còn trong bộ quy tắc)"


def obligation_title(pack: RulePack, oid: str) -> str:
    ob = pack.obligations.get(oid)
    return ob.title if ob is not None else "(báo cáo không còn trong bộ quy tắc)"


def actor_vi(actor: str | None, users: dict[str, str]) -> str:
    """Who recorded something, as the audit trail names them: a console account by its name."""
    if not actor:
        return "–"
    if actor.startswith("web:"):
        name = actor[4:]
        return users.get(name) or name
    return {"cli": "Dòng lệnh", "import": "Nhập từ tệp", "sync": "Đồng bộ quy tắc"}.get(actor, actor)


def _users(ses: Session) -> dict[str, str]:
    return {u: (n or u) for u, n in ses.execute(sa.select(UserRow.username, UserRow.full_name)).all()}


def expand(pack: RulePack, refs: Iterable[str]) -> list[str]:
    """The units named by unit or group ids, each once, in the order RulePack.expand gives them."""
    return list(dict.fromkeys(u for ref in refs for u in pack.expand(ref)))


def reporter_sets(pack: RulePack) -> dict[str, frozenset[str]]:
    """Each obligation's reporting units, once per loaded pack."""
    return pack.derived("reporters", lambda: {o.id: frozenset(expand(pack, o.reporters))
                                               for o in pack.obligations.values()})


def due_days(pack: RulePack, ob: Obligation, year: int) -> list[tuple[Period, Due]]:
    """The periods of ``ob`` due in ``year`` and their due days, as engine.instances places them
    (the due calculator, in force on the due day)."""
    def compute() -> list[tuple[Period, Due]]:
        lo, hi = year_span(year)
        calc = pack.due_calculator()
        out = []
        for p in periods_between(ob, lo - timedelta(days=400), hi + timedelta(days=370)):
            d = calc.due(ob, p)
            if d is not None and lo <= d.day <= hi and pack.in_force(ob, d.day):
                out.append((p, d))
        return sorted(out, key=lambda x: (x[1].day, x[0].key))
    return pack.derived(("due", ob.id, year), compute)


def _unit_order(pack: RulePack) -> dict[str, int]:
    """The order of units.yaml: the secretariat's own order (by kind, then as they list them)."""
    return pack.derived("order", lambda: {uid: i for i, uid in enumerate(pack.units)})


# ─── the rule in words ──────────────────────────────────────────────────────────────────────────
_QUARTER = {3: "quý I", 6: "quý II", 9: "quý III", 12: "quý IV"}


def recurrence_vi(ob: Obligation) -> str:
    """“Hằng tháng, chỉ các tháng 1, 2, 4, …”, “Hằng quý, chỉ quý I và quý III”, “Một lần …”."""
    r = ob.recurrence
    months = sorted(r.months) if r.months else None
    if r.freq == "monthly":
        return "Hằng tháng" + (f", chỉ các tháng {join_vi(str(m) for m in months)}" if months else "")
    if r.freq == "quarterly":
        return "Hằng quý" + (f", chỉ {join_vi(_QUARTER[m] for m in months)}" if months else "")
    if r.freq == "half_yearly":
        if months == [6]:
            return "6 tháng một lần, chỉ báo cáo 6 tháng đầu năm"
        if months == [12]:
            return "6 tháng một lần, chỉ báo cáo 6 tháng cuối năm"
        return "6 tháng một lần (6 tháng đầu năm và 6 tháng cuối năm)"
    if r.freq == "yearly":
        return "Hằng năm"
    if r.freq == "every_n_months":
        return f"{r.months_interval} tháng một lần, chu kỳ đầu tiên bắt đầu ngày {fmt_date(r.anchor)}"
    return f"Một lần, cho khoảng thời gian từ {fmt_date(r.start)} đến {fmt_date(r.end)}"


def cutoff_vi(ob: Obligation) -> str:
    if ob.recurrence.freq == "once":
        return "Không áp dụng (nhiệm vụ một lần)"
    if not isinstance(ob.cutoff, Cutoff):
        return "Không chốt số liệu riêng: số liệu tính theo đúng kỳ báo cáo"
    if ob.cutoff.month is not None:
        return (f"Chốt số liệu ngày {ob.cutoff.day:02d}/{ob.cutoff.month:02d} hằng năm, tính từ ngày sau ngày chốt "
                "của năm trước")
    return (f"Chốt số liệu ngày {ob.cutoff.day} của tháng cuối kỳ, tính từ ngày sau ngày chốt của kỳ trước "
            "(Nghị định 09/2019/NĐ-CP, Điều 12)")


def due_rule_vi(ob: Obligation, pack: RulePack) -> str:
    """The due rule as the plan would say it (before the weekend/holiday roll, see roll_vi)."""
    d = ob.due
    if isinstance(d, DayOfLastMonth):
        if d.day == "last":
            return "Ngày cuối cùng của tháng cuối kỳ báo cáo"
        return f"Ngày {d.day} của tháng cuối kỳ báo cáo"
    if isinstance(d, BeforeDate):
        before = date(2023, d.month, d.day) - timedelta(days=1)     # a common year; 01/03 → end of February
        last = "ngày cuối tháng 02" if (d.day, d.month) == (1, 3) else f"ngày {before:%d/%m}"
        return (f"Trước ngày {d.day:02d}/{d.month:02d}" + (" năm sau" if d.year_offset else "")
                + f", tức là chậm nhất hết {last}")
    if isinstance(d, OnDate):
        return f"Ngày {d.day:02d}/{d.month:02d}" + (" của năm sau năm kết thúc kỳ" if d.year_offset else "")
    if isinstance(d, WorkingDaysAfterPeriod):
        base = "ngày chốt số liệu" if d.from_ == "cutoff_end" else "ngày kết thúc kỳ báo cáo"
        return f"{d.days} ngày làm việc sau {base}"
    if isinstance(d, WorkingDaysAfterObligation):
        return f"{d.days} ngày làm việc sau hạn nộp của “{obligation_title(pack, d.obligation)}”"
    if isinstance(d, FixedDate):
        return f"Ngày {fmt_date(d.date)}"
    return "–"  # pragma: no cover - every due rule is handled above


def roll_vi(ob: Obligation) -> str:
    return {"forward": "Hạn rơi vào ngày nghỉ thì chuyển sang ngày làm việc tiếp theo (Bộ luật Dân sự 2015, Điều 148)",
            "backward": "Hạn rơi vào ngày nghỉ thì chuyển về ngày làm việc liền trước",
            "keep": "Hạn rơi vào ngày nghỉ vẫn giữ nguyên ngày đó"}[ob.due.roll]


def ladder_vi(policy: ReminderPolicy, pack: RulePack) -> list[str]:
    """The reminder ladder of a policy, one line per step."""
    out: list[str] = []
    before = sorted(set(policy.before_due_working_days), reverse=True)
    out.append(f"Nhắc trước hạn {join_vi(str(n) for n in before)} ngày làm việc" if before else "Không nhắc trước hạn")
    out.append("Nhắc vào ngày đến hạn" if policy.on_due_day else "Không nhắc vào ngày đến hạn")
    n = policy.overdue_after_working_days
    line = "Báo quá hạn ngay sau ngày đến hạn" if n == 0 else f"Báo quá hạn sau {n} ngày làm việc kể từ hạn nộp"
    if policy.repeat_every_working_days and policy.max_repeats:
        line += (f"; nhắc lại mỗi {policy.repeat_every_working_days} ngày làm việc, "
                 f"tối đa {policy.max_repeats} lần")
    else:
        line += "; không nhắc lại"
    out.append(line)
    if policy.escalate_after_working_days is None:
        out.append("Không báo cáo cấp trên")
    else:
        who = ["cơ quan cấp trên trực tiếp của đơn vị" if t == "supervisor" else unit_name(pack, t)
               for t in policy.escalate_to]
        out.append(f"Quá hạn {policy.escalate_after_working_days} ngày làm việc thì báo cáo cấp trên: {join_vi(who)}")
    return out


# ─── the matrix ─────────────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class MatrixQuery:
    """What the matrix shows: one report (``obligation``), the reports sent to one ``recipient``,
    or all of them; units of one ``kind`` or all; ``status`` turns it into a list of instances."""
    year: int
    obligation: str | None = None
    recipient: str | None = None
    kind: str | None = None
    status: str | None = None
    page: int = 1                    # of the matrix rows, PAGE_UNITS units a page


@dataclass(frozen=True)
class Cell:
    id: int
    obligation: str
    title: str
    period_label: str
    due: date
    status: str

    @property
    def short(self) -> str:
        return STATUS_SHORT.get(self.status, "")


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    due: date | None = None          # one report: the period's due day


@dataclass(frozen=True)
class MatrixRow:
    unit: str
    name: str
    cells: list[list[Cell]]          # one list per column (empty: nothing owed)


@dataclass
class Matrix:
    query: MatrixQuery
    heading: str
    by_month: bool
    columns: list[Column]
    rows: list[MatrixRow]
    counts: dict[str, int]                 # over every unit, not only this page's
    obligations: list[tuple[str, str]]     # (id, title) of the reports in it
    unit_count: int = 0
    page: int = 1
    pages: int = 1


@dataclass(frozen=True)
class ListItem:
    id: int
    unit: str
    unit_name: str
    obligation: str
    title: str
    period_label: str
    due: date
    status: str
    submitted_on: date | None


@dataclass
class StatusList:
    query: MatrixQuery
    today: date
    items: list[ListItem]
    total: int

    @property
    def truncated(self) -> bool:
        return self.total > len(self.items)


@dataclass(frozen=True)
class FilterOptions:
    obligations: list[tuple[str, str]]
    recipients: list[tuple[str, str]]
    kinds: list[tuple[str, str]]
    years: list[int]
    statuses: list[tuple[str, str]] = field(default_factory=lambda: list(REPORT_STATUS.items()))


def filter_options(settings: Settings, pack: RulePack, today: date, year: int) -> FilterOptions:
    recipients: dict[str, str] = {}
    for ob in pack.obligations.values():
        recipients.setdefault(ob.recipient, unit_name(pack, ob.recipient))
    present = {u.kind for u in pack.units.values()}
    return FilterOptions([(o.id, o.title) for o in pack.obligations.values()], list(recipients.items()),
                         [(k, v) for k, v in UNIT_KIND_VI.items() if k in present],
                         years_available(settings, today, year))


def check_query(pack: RulePack, q: MatrixQuery) -> tuple[int, str] | None:
    """(HTTP status, Vietnamese reason) when the query names something the rules do not have."""
    if q.obligation is not None and q.obligation not in pack.obligations:
        return 404, "Không có báo cáo này."
    if q.recipient is not None and q.recipient not in pack.units:
        return 404, "Không có đơn vị này."
    if q.kind is not None and q.kind not in UNIT_KIND_VI:
        return 400, "Không có loại đơn vị này."
    if q.status is not None and q.status not in REPORT_STATUS:
        return 400, "Không có tình trạng này."
    return None


def default_obligation(pack: RulePack, year: int) -> str | None:
    """The report the most units owe among those due in ``year`` (ties: the first in the rules)."""
    owes = reporter_sets(pack)
    due = [o.id for o in pack.obligations.values() if due_days(pack, o, year)]
    if due:
        return max(due, key=lambda oid: len(owes[oid]))        # max keeps the first of equals
    return next(iter(pack.obligations), None)


def _selected(pack: RulePack, q: MatrixQuery) -> list[str] | None:
    """The obligation ids the query covers; None for all."""
    if q.obligation is not None:
        return [q.obligation]
    if q.recipient is not None:
        return [o.id for o in pack.obligations.values() if o.recipient == q.recipient]
    return None


def _heading(pack: RulePack, q: MatrixQuery) -> str:
    if q.obligation is not None:
        head = pack.obligations[q.obligation].title
    elif q.recipient is not None:
        head = f"Các báo cáo gửi {unit_name(pack, q.recipient)}"
    else:
        head = "Tất cả báo cáo"
    if q.kind is not None:
        head += f" – đơn vị loại “{UNIT_KIND_VI[q.kind]}”"
    return head


def _scope(pack: RulePack, q: MatrixQuery) -> list[sa.ColumnElement[bool]]:
    """The instances the matrix covers, but for the unit kind (_kind_filter): active, due in
    ``q.year``, of the selected reports."""
    lo, hi = year_span(q.year)
    where: list[sa.ColumnElement[bool]] = [InstanceRow.active == sa.true(), InstanceRow.due >= lo,
                                           InstanceRow.due <= hi]
    obs = _selected(pack, q)
    if obs is not None:
        where.append(InstanceRow.obligation.in_(obs) if len(obs) != 1 else InstanceRow.obligation == obs[0])
    return where


def _kind_filter(pack: RulePack, kind: str, dialect: str) -> sa.ColumnElement[bool]:
    """Instances of the units of ``kind`` as the rules list them: on PostgreSQL one array
    parameter, since a national installation's kind is 8,500 units and as many bound parameters
    cost ≈50 ms a statement."""
    units = sorted(u.id for u in pack.units.values() if u.kind == kind)
    if dialect == "postgresql" and units:
        return InstanceRow.unit == sa.any_(sa.bindparam("kind_units", units, type_=sa.ARRAY(sa.String)))
    return InstanceRow.unit.in_(units)


def _tally(conn: sa.Connection, where: list[sa.ColumnElement[bool]], today: date,
           by_month: bool) -> tuple[list[tuple], list[str]]:
    """The matrix's instances counted per (count, report, due day, status_sql's status[, period,
    period label]), and the units that have any.

    On PostgreSQL both in one pass over the table (``GROUPING SETS``: the scan is most of the
    cost; a national monthly report ≈50 ms, as two queries ≈90 ms); elsewhere two queries."""
    names = ["obligation", "due", "status"] + ([] if by_month else ["period", "period_label"])
    inner = sa.select(InstanceRow.obligation, InstanceRow.due, status_sql(today).label("status"),
                      InstanceRow.period, InstanceRow.period_label, InstanceRow.unit).where(*where).subquery()
    keys = [inner.c[n] for n in names]
    if conn.dialect.name == "postgresql":
        both = conn.execute(sa.select(sa.func.count(), *keys, inner.c.unit).group_by(
            sa.func.grouping_sets(sa.tuple_(*keys), sa.tuple_(inner.c.unit)))).all()
        # a row of the unit set has no report (never null in a row of the other set), and back
        return [tuple(r[:-1]) for r in both if r[-1] is None], [r[-1] for r in both if r[-1] is not None]
    groups = conn.execute(sa.select(sa.func.count(), *keys).group_by(*keys)).all()
    present = conn.execute(sa.select(inner.c.unit).distinct()).scalars().all()
    return [tuple(r) for r in groups], list(present)


def matrix(settings: Settings, pack: RulePack, today: date, q: MatrixQuery) -> Matrix:
    """Units × periods of ``q.year`` (one report: its periods; several: the months their due days
    fall in), each cell the status as of the end of ``today``.

    Computed for the page shown: the counts (over every unit), the columns and the list of units
    come from the database grouped (_tally: per report, due day and status_sql's status, and
    classify only for the groups still open, which depend on the report and the due day alone),
    and only the page's units' instances are read. A national installation's monthly report is
    70,000 instances for 200 rows shown: reading and classifying them all took ≈300 ms, this
    ≈75 ms on PostgreSQL (tests/test_browse_matrix_sql.py compares the two: same counts,
    columns, rows, cells and pages)."""
    by_month = q.obligation is None
    with open_session(settings) as ses:
        conn = ses.connection()                                     # plain rows: no ORM result processing
        where = _scope(pack, q)
        kind = [_kind_filter(pack, q.kind, conn.dialect.name)] if q.kind is not None else []
        groups, present = _tally(conn, where + kind, today, by_month)
        order = _unit_order(pack)
        units = sorted(present, key=lambda u: (order.get(u, len(order)), u))
        pages = max(1, -(-len(units) // PAGE_UNITS))
        page = min(max(q.page, 1), pages)
        shown = units[(page - 1) * PAGE_UNITS:page * PAGE_UNITS]
        # the page's units are of the kind already (a long kind list here would only slow the plan)
        rows = conn.execute(sa.select(*_INST).where(*where, InstanceRow.unit.in_(shown))
                            .order_by(InstanceRow.id)).all() if shown else []
    judge = _Judge(pack, today)
    titles = {o.id: o.title for o in pack.obligations.values()}
    cols: dict[str, Column] = {}
    col_sort: dict[str, tuple[date, str]] = {}
    counts: Counter[str] = Counter()
    seen_obs: set[str] = set()
    # (due, label) order: of a period's due days the earliest names its column (its first label)
    for n, ob, due, st, *period in sorted(groups, key=lambda g: (g[2], g[5] if len(g) > 5 else "")):
        counts[st if st != "open" else judge(ob, due, None, False, None)] += n
        seen_obs.add(ob)
        if by_month:
            key = f"{due.month:02d}"
            if key not in cols:
                cols[key] = Column(key, f"Tháng {due.month:02d}")
                col_sort[key] = (date(q.year, due.month, 1), key)
        else:
            key, label = period
            if key not in cols:
                cols[key] = Column(key, label, due)
                col_sort[key] = (due, key)
    keys = sorted(cols, key=lambda k: col_sort[k])
    # unit → column → plain tuples, for the page's units only
    grid: dict[str, dict[str, list[tuple[int, str, str, date, str]]]] = {}
    for iid, ob, unit, period, label, due, sub, waived, awaiting in rows:
        key = f"{due.month:02d}" if by_month else period
        grid.setdefault(unit, {}).setdefault(key, []).append((iid, ob, label, due, judge(ob, due, sub, waived, awaiting)))
    out_rows = []
    for unit in shown:
        cells = grid.get(unit, {})
        out_rows.append(MatrixRow(unit, unit_name(pack, unit), [
            [Cell(iid, ob, titles.get(ob, ob), label, due, st)
             for iid, ob, label, due, st in sorted(cells.get(k, ()), key=lambda c: (c[3], titles.get(c[1], "")))]
            for k in keys]))
    listed = [(o.id, o.title) for o in pack.obligations.values() if o.id in seen_obs]
    return Matrix(q, _heading(pack, q), by_month, [cols[k] for k in keys], out_rows, dict(counts), listed,
                  len(units), page, pages)


def status_list(settings: Settings, pack: RulePack, today: date, q: MatrixQuery) -> StatusList:
    """The instances at ``q.status`` as of ``today``, with the query's report/recipient/kind filters.

    This year: exactly those behind the overview's count (engine.app.dashboard.overview: this
    year's instances due so far and every earlier one still open, plus what was already submitted,
    confirmed or waived among those due this week). Another year: that year's instances.

    Narrowed in the database with status_sql (the open ones, "in progress" and "due soon", told
    apart by classify), and only the rows shown made into items: a national installation's
    “Đúng hạn” is 70,000 instances for 500 rows."""
    current = q.year == today.year
    obs = _selected(pack, q)
    decided = q.status in ("done_on_time", "done_late", "awaiting", "waived")
    if current:
        week_end = today + timedelta(days=6 - today.weekday())
        where = [InstanceRow.active == sa.true(), sa.or_(*current_terms(today, week_end if decided else today))]
    else:
        lo, hi = year_span(q.year)
        where = [InstanceRow.active == sa.true(), InstanceRow.due >= lo, InstanceRow.due <= hi]
    if obs is not None:
        where.append(InstanceRow.obligation.in_(obs))
    where.append(status_sql(today) == ("open" if q.status in ("in_progress", "due_soon") else q.status))
    with open_session(settings) as ses:
        conn = ses.connection()
        if q.kind is not None:
            where.append(_kind_filter(pack, q.kind, conn.dialect.name))
        rows = conn.execute(sa.select(*_INST).where(*where).order_by(InstanceRow.id)).all()
    judge = _Judge(pack, today)
    names = {u.id: u.name for u in pack.units.values()}
    titles = {o.id: o.title for o in pack.obligations.values()}
    keyed: list[tuple] = []
    for row in rows:
        _iid, ob, unit, _period, _label, due, sub, waived, awaiting = row
        if judge(ob, due, sub, waived, awaiting) != q.status:
            continue
        if not current or due <= today or decided:
            keyed.append((due, titles.get(ob) or obligation_title(pack, ob), names.get(unit) or unit_name(pack, unit),
                          len(keyed), row))
    keyed.sort()
    items = [ListItem(iid, unit, name, ob, title, label, due, q.status, sub if sub is not None and sub <= today else None)
             for due, title, name, _n, (iid, ob, unit, _p, label, _d, sub, _w, _a) in keyed[:LIST_LIMIT]]
    return StatusList(q, today, items, len(keyed))


# ─── units ──────────────────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class UnitSummary:
    unit: str
    name: str
    ended: date | None               # valid_until when it is in the past
    overdue: int
    awaiting: int
    on_time: int
    late: int
    missing: int

    @property
    def due(self) -> int:
        return self.on_time + self.late + self.missing

    @property
    def rate(self) -> float | None:
        return self.on_time / self.due if self.due else None


@dataclass
class KindGroup:
    kind: str
    label: str
    units: list[UnitSummary]


def units_overview(settings: Settings, pack: RulePack, today: date) -> list[KindGroup]:
    """Every unit of the rules, grouped by kind: overdue and awaiting now, and the on-time rate of
    this year's reports due so far (the overview's ranking rule), counted in the database with
    the overview's status expression (engine.app.dashboard.status_sql: classify in SQL)."""
    year_start = date(today.year, 1, 1)
    status = status_sql(today).label("status")
    rated = sa.and_(InstanceRow.due >= year_start, InstanceRow.due <= today).label("rated")
    # The overview's instances and those a unit said it sent before their due day (each term of
    # the OR an index search), then grouped — not merged (OFFSET 0): grouped directly, SQLite
    # walked every instance of every year in unit order (20 years of a province: 188 ms).
    early = sa.and_(InstanceRow.due > today, InstanceRow.awaiting_since.is_not(None))
    sub = sa.select(InstanceRow.unit, status, rated).where(
        InstanceRow.active == sa.true(), sa.or_(*current_terms(today, today), early)).offset(0).subquery()
    with open_session(settings) as ses:
        rows = ses.connection().execute(sa.select(sub.c.unit, sub.c.status, sub.c.rated, sa.func.count())
                                        .group_by(sub.c.unit, sub.c.status, sub.c.rated)).all()
    acc: dict[str, list[int]] = {}                    # overdue, awaiting, on time, late, missing
    for unit, st, in_window, n in rows:
        a = acc.setdefault(unit, [0, 0, 0, 0, 0])
        if st == "overdue":
            a[0] += n
        elif st == "awaiting":
            a[1] += n
        if in_window and st not in ("waived", "awaiting"):
            a[2 if st == "done_on_time" else 3 if st == "done_late" else 4] += n
    groups: dict[str, KindGroup] = {}
    for u in pack.units.values():
        g = groups.setdefault(u.kind, KindGroup(u.kind, UNIT_KIND_VI.get(u.kind, u.kind), []))
        ended = u.valid_until if u.valid_until is not None and u.valid_until < today else None
        g.units.append(UnitSummary(u.id, u.name, ended, *acc.get(u.id, [0, 0, 0, 0, 0])))
    rank = {k: i for i, k in enumerate(UNIT_KIND_VI)}
    return sorted(groups.values(), key=lambda g: rank.get(g.kind, len(rank)))


@dataclass(frozen=True)
class Ref:
    """Something to link to, shown by its name (never by its id)."""
    id: str
    name: str
    note: str = ""                   # e.g. "không còn hiệu lực"


@dataclass(frozen=True)
class UnitItem:
    id: int
    obligation: str
    title: str
    period_label: str
    due: date
    status: str
    submitted_on: date | None
    ref: str | None
    inherited_from: list[str]          # names of the units whose duty this is


@dataclass(frozen=True)
class SubmissionItem:
    instance_id: int
    title: str
    period_label: str
    submitted_on: date
    ref: str | None
    note: str | None
    recorded_at: datetime
    recorded_by: str
    active: bool


@dataclass(frozen=True)
class WaiverItem:
    instance_id: int
    title: str
    period_label: str
    reason: str
    recorded_at: datetime
    recorded_by: str
    active: bool


@dataclass(frozen=True)
class ConfirmationItem:
    instance_id: int
    title: str
    period_label: str
    submitted_on: date
    ref: str | None
    note: str | None
    state: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None


@dataclass(frozen=True)
class AttachmentItem:
    id: int
    instance_id: int
    title: str
    period_label: str
    filename: str
    size: str
    created_at: datetime


@dataclass(frozen=True)
class MailItem:
    subject: str | None
    status: str
    channel: str
    created_at: datetime
    sent_at: datetime | None
    attempts: int
    last_error: str | None


@dataclass
class UnitDetail:
    unit: str
    name: str
    kind: str
    in_rules: bool
    year: int
    contacts: list[str] = field(default_factory=list)
    webhooks: int = 0
    supervisor: Ref | None = None
    successor: Ref | None = None
    valid_from: date | None = None
    valid_until: date | None = None
    notes: str | None = None
    owes: list[Ref] = field(default_factory=list)
    receives: list[Ref] = field(default_factory=list)
    items: list[UnitItem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    submissions: list[SubmissionItem] = field(default_factory=list)
    waivers: list[WaiverItem] = field(default_factory=list)
    confirmations: list[ConfirmationItem] = field(default_factory=list)
    attachments: list[AttachmentItem] = field(default_factory=list)
    mails: list[MailItem] = field(default_factory=list)


def unit_detail(settings: Settings, pack: RulePack, unit: str, year: int, today: date) -> UnitDetail | None:
    """One unit's page for ``year``; None when neither the rules nor the database know the unit."""
    lo, hi = year_span(year)
    with open_session(settings) as ses:
        u = pack.units.get(unit)
        if u is not None:
            d = UnitDetail(unit, u.name, UNIT_KIND_VI.get(u.kind, u.kind), True, year, list(u.contacts), len(u.webhooks),
                           Ref(u.supervisor, unit_name(pack, u.supervisor)) if u.supervisor else None,
                           Ref(u.successor, unit_name(pack, u.successor)) if u.successor else None,
                           u.valid_from, u.valid_until, u.notes)
        else:
            kept = ses.execute(sa.select(UnitRow.name, UnitRow.kind).where(UnitRow.id == unit)).first()
            if kept is None:
                return None
            d = UnitDetail(unit, kept[0], UNIT_KIND_VI.get(kept[1], kept[1]), False, year)
        gone = lambda o: "" if pack.in_force(o, today) else "không còn hiệu lực"  # noqa: E731
        owes = reporter_sets(pack)
        d.owes = [Ref(o.id, o.title, gone(o)) for o in pack.obligations.values() if unit in owes[o.id]]
        d.receives = [Ref(o.id, o.title, gone(o)) for o in pack.obligations.values() if o.recipient == unit]
        rows = ses.execute(sa.select(*_INST, InstanceRow.submission_ref, InstanceRow.inherited_from).where(
            InstanceRow.unit == unit, InstanceRow.active == sa.true(), InstanceRow.due >= lo, InstanceRow.due <= hi)
            .order_by(InstanceRow.due, InstanceRow.obligation)).all()
        judge = _Judge(pack, today)
        known: dict[int, tuple[str, str]] = {}
        counts: Counter[str] = Counter()
        for iid, ob, _u, _p, label, due, sub, waived, awaiting, ref, inherited in rows:
            status = judge(ob, due, sub, waived, awaiting)
            counts[status] += 1
            title = obligation_title(pack, ob)
            known[iid] = (title, label)
            d.items.append(UnitItem(iid, ob, title, label, due, status, sub if sub is not None and sub <= today else None,
                                    ref, [unit_name(pack, x) for x in inherited.split(",") if x]))
        d.counts = dict(counts)
        ids = list(known)
        users = _users(ses)
        if ids:
            for iid, on, ref, note, active, at, by in ses.execute(
                    sa.select(SubmissionRow.instance_id, SubmissionRow.submitted_on, SubmissionRow.ref,
                              SubmissionRow.note, SubmissionRow.active, SubmissionRow.recorded_at,
                              SubmissionRow.recorded_by)
                    .where(SubmissionRow.instance_id.in_(ids)).order_by(SubmissionRow.recorded_at.desc(),
                                                                        SubmissionRow.id.desc())).all():
                d.submissions.append(SubmissionItem(iid, *known[iid], on, ref, note, at, actor_vi(by, users), bool(active)))
            for iid, reason, active, at, by in ses.execute(
                    sa.select(WaiverRow.instance_id, WaiverRow.reason, WaiverRow.active, WaiverRow.recorded_at,
                              WaiverRow.recorded_by)
                    .where(WaiverRow.instance_id.in_(ids)).order_by(WaiverRow.recorded_at.desc(),
                                                                    WaiverRow.id.desc())).all():
                d.waivers.append(WaiverItem(iid, *known[iid], reason, at, actor_vi(by, users), bool(active)))
            for iid, on, ref, note, state, at, dec_at, dec_by, reason in ses.execute(
                    sa.select(ConfirmationRow.instance_id, ConfirmationRow.submitted_on, ConfirmationRow.ref,
                              ConfirmationRow.note, ConfirmationRow.state, ConfirmationRow.created_at,
                              ConfirmationRow.decided_at, ConfirmationRow.decided_by, ConfirmationRow.reason)
                    .where(ConfirmationRow.instance_id.in_(ids), ConfirmationRow.unit == unit)
                    .order_by(ConfirmationRow.created_at.desc(), ConfirmationRow.id.desc())).all():
                d.confirmations.append(ConfirmationItem(iid, *known[iid], on, ref, note, state, at, dec_at,
                                                        actor_vi(dec_by, users) if dec_by else None, reason))
            for aid, iid, name, size, at in ses.execute(
                    sa.select(AttachmentRow.id, AttachmentRow.instance_id, AttachmentRow.filename, AttachmentRow.size,
                              AttachmentRow.created_at)
                    .where(AttachmentRow.instance_id.in_(ids), AttachmentRow.unit == unit)
                    .order_by(AttachmentRow.created_at.desc(), AttachmentRow.id.desc())).all():
                d.attachments.append(AttachmentItem(aid, iid, *known[iid], name, fmt_size(size), at))
        tz = ZoneInfo(pack.info.timezone)
        start, end = datetime(year, 1, 1, tzinfo=tz), datetime(year + 1, 1, 1, tzinfo=tz)
        for subject, status, channel, created, sent, attempts, error in ses.execute(
                sa.select(DeliveryRow.subject, DeliveryRow.status, DeliveryRow.channel, DeliveryRow.created_at,
                          DeliveryRow.sent_at, DeliveryRow.attempts, DeliveryRow.last_error)
                .where(DeliveryRow.recipient == unit, DeliveryRow.created_at >= start, DeliveryRow.created_at < end)
                .order_by(DeliveryRow.created_at.desc(), DeliveryRow.id.desc()).limit(MAIL_LIMIT)).all():
            d.mails.append(MailItem(subject, status, channel, created, sent, attempts, error))
    return d


# ─── obligations ────────────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class ObligationSummary:
    id: str
    title: str
    kind: str
    recurrence: str
    recipient: Ref
    reporters: int
    in_force: bool
    next_due: date | None
    overdue: int


def obligations_overview(settings: Settings, pack: RulePack, today: date) -> list[ObligationSummary]:
    """Every report of the rules: how often, to whom, by how many units, the next due day and how
    many are overdue now (the condition engine.status.classify calls overdue, counted in SQL among
    the overview's reports: this year's and the earlier ones still open)."""
    def per_report(agg: sa.ColumnElement, *where: sa.ColumnElement[bool]) -> dict[str, object]:
        # The rows first, then grouped (OFFSET 0: not merged): grouped directly, SQLite walks the
        # whole (obligation, due) index in report order rather than the few rows the due day picks.
        rows = sa.select(InstanceRow.obligation, InstanceRow.due).where(InstanceRow.active == sa.true(), *where)
        sub = rows.offset(0).subquery()
        return dict(ses.execute(sa.select(sub.c.obligation, agg(sub.c.due)).group_by(sub.c.obligation)).all())

    with open_session(settings) as ses:
        nxt = per_report(sa.func.min, InstanceRow.due >= today)
        late = per_report(sa.func.count, sa.or_(*current_terms(today, today - timedelta(days=1))),
                          status_sql(today) == "overdue")
    owes = reporter_sets(pack)
    return [ObligationSummary(o.id, o.title, KIND_VI.get(o.kind, o.kind), recurrence_vi(o),
                              Ref(o.recipient, unit_name(pack, o.recipient)), len(owes[o.id]),
                              pack.in_force(o, today), nxt.get(o.id), late.get(o.id, 0))
            for o in pack.obligations.values()]


@dataclass(frozen=True)
class ReporterRef:
    """One entry of ``reporters`` as written: a unit, or a group with the units it stands for."""
    name: str
    unit: str | None                 # a unit: its id (for the link)
    members: list[Ref]               # a group: its units


@dataclass(frozen=True)
class DueDate:
    period: str
    period_label: str
    cutoff_start: date | None
    cutoff_end: date | None
    due: date
    unrolled: date
    units: int


@dataclass(frozen=True)
class PeriodTally:
    period: str
    period_label: str
    due: date
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class ObligationDetail:
    id: str
    title: str
    kind: str
    basis: str
    reporters: list[ReporterRef]
    reporter_count: int
    recipient: Ref
    recurrence: str
    cutoff: str
    due_rule: str
    roll: str
    ladder: list[str]
    effective_from: date | None
    effective_until: date | None
    in_force: bool
    assumptions: list[str]
    compiles: list[Ref]
    follows: Ref | None
    supersedes: list[Ref]
    superseded_by: list[Ref]
    year: int
    due_dates: list[DueDate]
    tallies: list[PeriodTally]


def _ob_ref(pack: RulePack, oid: str) -> Ref:
    return Ref(oid, obligation_title(pack, oid))


def obligation_detail(settings: Settings, pack: RulePack, oid: str, year: int, today: date) -> ObligationDetail | None:
    """One report's rule in words, its due days in ``year`` (as engine.duedates places them, the
    same calls engine.instances makes) and, per period, how many units are at each status."""
    ob = pack.obligations.get(oid)
    if ob is None:
        return None
    reporters: list[ReporterRef] = []
    for ref in ob.reporters:
        if ref in pack.units:
            reporters.append(ReporterRef(pack.units[ref].name, ref, []))
        else:
            reporters.append(ReporterRef(pack.groups[ref].name, None,
                                         [Ref(u, unit_name(pack, u)) for u in expand(pack, [ref])]))
    units = expand(pack, ob.reporters)
    lo, hi = year_span(year)
    due_dates: list[DueDate] = []
    for p, d in due_days(pack, ob, year):
        owners = {pack.owner_on(u, d.day) for u in units} - {None}
        due_dates.append(DueDate(p.key, p.label, p.cutoff_start, p.cutoff_end, d.day, d.unrolled, len(owners)))
    with open_session(settings) as ses:
        rows = ses.execute(sa.select(*_INST).where(
            InstanceRow.obligation == oid, InstanceRow.active == sa.true(), InstanceRow.due >= lo,
            InstanceRow.due <= hi)).all()
    judge = _Judge(pack, today)
    tallies: dict[str, tuple[str, date, Counter[str]]] = {}
    for _i, _o, _u, period, label, due, sub, waived, awaiting in rows:
        t = tallies.setdefault(period, (label, due, Counter()))
        t[2][judge(oid, due, sub, waived, awaiting)] += 1
    tally_list = sorted((PeriodTally(k, lab, due, dict(c)) for k, (lab, due, c) in tallies.items()),
                        key=lambda t: (t.due, t.period))
    follows = _ob_ref(pack, ob.due.obligation) if isinstance(ob.due, WorkingDaysAfterObligation) else None
    superseded_by = [Ref(o.id, o.title) for o in pack.obligations.values() if oid in o.supersedes]
    return ObligationDetail(
        ob.id, ob.title, KIND_VI.get(ob.kind, ob.kind), ob.basis.text(), reporters, len(units),
        Ref(ob.recipient, unit_name(pack, ob.recipient)), recurrence_vi(ob), cutoff_vi(ob), due_rule_vi(ob, pack),
        roll_vi(ob), ladder_vi(pack.policy_for(ob), pack), ob.effective_from, ob.effective_until,
        pack.in_force(ob, today), list(ob.assumptions), [_ob_ref(pack, x) for x in ob.compiles], follows,
        [_ob_ref(pack, x) for x in ob.supersedes], superseded_by, year, due_dates, tally_list)
