"""Application services: what the CLI, the daemon and the web console all do, once.

Each service takes the :class:`~engine.app.config.Settings` (or the pieces it needs), opens its own
database sessions, and returns a typed result; it never prints and never exits. Failures a user can
act on are raised as :class:`ServiceError` (Vietnamese message, suggested exit code), invalid rules
as :class:`~engine.errors.RulePackInvalid`, bad rows of an import as
:class:`~engine.submissions.ImportRejected`. A front end (Typer, web) only parses input, calls one
service and presents the result.

Why here and not in the core: a service wires the core (rules, state, evaluation) to delivery
(notifications) with the configuration; only the application layer may know all three.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlmodel import Session

from engine import clock
from engine.app.config import Settings, mask_url
from engine.errors import RuleError, RulePackInvalid
from engine.instances import Instance, generate_instances
from engine.limits import MAX_YEAR, MIN_YEAR, YEARS_VI
from engine.rules_loader import RulePack, load_pack

if TYPE_CHECKING:  # heavy or optional imports only where used
    from engine.kpi.loader import KpiPack
    from engine.kpi.report import ReportRow
    from engine.pipeline import EvalReport
    from engine.status import StatusLine
    from engine.state import InstanceRow, KpiValueRow
    from notifications.delivery import LinkMaker, PassReport


# ─── errors ─────────────────────────────────────────────────────────────────────────────────────
class ServiceError(Exception):
    """Something the user can fix; ``message`` is Vietnamese, ``exit_code`` what a CLI should return."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code
        super().__init__(message)


class InvalidInput(ServiceError):
    """A value given by the user (unit, period, date …) that cannot be used."""


class DatabaseUnavailable(ServiceError):
    """The state database cannot be opened, read or written; says why and what to do."""

    exit_code = 2


def describe_db_error(exc: BaseException, url: str) -> str:
    """A Vietnamese sentence for a database failure: what is wrong and what to do (never the password)."""
    shown = mask_url(url)
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    low = text.lower()
    if "locked" in low or "busy" in low:
        return (f"cơ sở dữ liệu {shown} đang bị khóa bởi tiến trình khác (một lệnh nhập dữ liệu, bản sao lưu hay "
                "sqlite3 đang ghi). Chờ tiến trình đó xong rồi chạy lại lệnh.")
    if "readonly" in low or "read-only" in low or "read only" in low or isinstance(exc, PermissionError):
        return (f"không ghi được vào cơ sở dữ liệu {shown}: tệp chỉ đọc. Cấp quyền ghi cho tệp và cho thư mục chứa "
                "nó (SQLite cần tạo tệp -wal, -shm bên cạnh), hoặc chạy lệnh bằng đúng tài khoản dịch vụ.")
    if "unable to open" in low:
        return (f"không mở được tệp cơ sở dữ liệu {shown}: thư mục không tồn tại hoặc không có quyền. "
                "Kiểm tra DONDOC_DATABASE_URL (hoặc --db).")
    if "disk" in low and ("full" in low or "i/o" in low):
        return f"không ghi được vào cơ sở dữ liệu {shown}: đĩa đầy hoặc lỗi đọc ghi. Giải phóng dung lượng rồi chạy lại."
    if "malformed" in low or "not a database" in low:
        return (f"tệp cơ sở dữ liệu {shown} bị hỏng hoặc không phải cơ sở dữ liệu SQLite. "
                "Khôi phục từ bản sao lưu (docs/operations.md).")
    return (f"không làm việc được với cơ sở dữ liệu {shown}: {mask_url(text)}. "
            "Kiểm tra máy chủ cơ sở dữ liệu và DONDOC_DATABASE_URL (chạy dondoc doctor).")


DB_ERRORS: tuple[type[BaseException], ...] = (OperationalError, DatabaseError)


def is_unavailable(exc: BaseException) -> bool:
    """Locked, read-only, unreachable or corrupt: not a bug in dondoc (an IntegrityError would be)."""
    return isinstance(exc, OperationalError) or type(exc) is DatabaseError or isinstance(exc, PermissionError)


@contextmanager
def open_session(settings: Settings) -> Iterator[Session]:
    """A session on the configured database (migrated first); database failures become DatabaseUnavailable."""
    from engine.db import session

    url = settings.database.url
    try:
        ses = session(url)
    except Exception as exc:  # noqa: BLE001 - locked, read-only, bad URL, missing driver: say which database
        if is_unavailable(exc):
            raise DatabaseUnavailable(describe_db_error(exc, url)) from None
        if _from_db_layer(exc):
            raise DatabaseUnavailable(f"không mở được cơ sở dữ liệu {mask_url(url)}: {mask_url(str(exc))}") from None
        raise
    try:
        with ses:
            yield ses
    except Exception as exc:
        if is_unavailable(exc):
            raise DatabaseUnavailable(describe_db_error(exc, url)) from None
        raise


def _from_db_layer(exc: BaseException) -> bool:
    mod = type(exc).__module__
    return mod.startswith(("sqlalchemy", "alembic", "psycopg", "sqlite3"))


def database_engine(settings: Settings) -> Engine:
    """The migrated engine for the configured database."""
    from engine.db import get_engine

    try:
        return get_engine(settings.database.url)
    except Exception as exc:
        if is_unavailable(exc):
            raise DatabaseUnavailable(describe_db_error(exc, settings.database.url)) from None
        raise


def with_database(settings: Settings, url: str | None) -> Settings:
    """The same settings on another database (a --db option)."""
    if not url:
        return settings
    return settings.model_copy(update={"database": settings.database.model_copy(update={"url": url})})


def with_paths(settings: Settings, rules: Path | None = None, calendar: Path | None = None) -> Settings:
    """The same settings with another rules or calendar directory (--rules, --calendar)."""
    update: dict[str, Any] = {}
    if rules is not None:
        update["rules"] = settings.rules.model_copy(update={"dir": rules})
    if calendar is not None:
        update["calendar"] = settings.calendar.model_copy(update={"dir": calendar})
    return settings.model_copy(update=update) if update else settings


# ─── values a user types ────────────────────────────────────────────────────────────────────────
def check_year(d: date | datetime, what: str) -> None:
    """Dates outside the supported years are refused before the engine enumerates periods up to them."""
    if not (MIN_YEAR <= d.year <= MAX_YEAR):
        raise InvalidInput(f"{what}: năm {d.year} nằm ngoài khoảng năm hỗ trợ ({YEARS_VI})", exit_code=2)


def parse_date(text: str, what: str) -> date:
    try:
        d = clock.parse_date(text)
    except clock.BadDate as exc:
        raise InvalidInput(f"{what}: {exc}", exit_code=2) from None
    except (ValueError, OverflowError):
        raise InvalidInput(f"{what}: “{text}” không phải ngày hợp lệ", exit_code=2) from None
    check_year(d, what)
    return d


def parse_moment(text: str, what: str) -> datetime:
    try:
        m = clock.parse_moment(text)
    except clock.BadDate as exc:
        raise InvalidInput(f"{what}: {exc}", exit_code=2) from None
    except (ValueError, OverflowError):
        raise InvalidInput(f"{what}: “{text}” không phải thời điểm hợp lệ", exit_code=2) from None
    check_year(m, what)
    return m


def now(text: str | None = None) -> datetime:
    """The simulated or real "now" (--now, else DONDOC_NOW, else the clock), within the supported years."""
    src = text or os.environ.get("DONDOC_NOW")
    if src:
        return parse_moment(src, "--now" if text else "DONDOC_NOW")
    return clock.now()


def check_period(pack: RulePack, obligation: str, period: str) -> str:
    """The period key a user meant ("T11/2026", "Quý IV/2026", "2026-11" …, engine.periods), or
    InvalidInput with the core's message: the forms this obligation takes and, for a period of
    another report, which report it probably meant."""
    from engine.periods import BadPeriod, normalise_period_text, period_for_key

    key = normalise_period_text(period)
    ob = pack.obligations.get(obligation)
    if ob is None:
        return key   # the core names the unknown obligation, with suggestions
    try:
        return period_for_key(ob, key, pack.obligations.values()).key
    except BadPeriod as exc:
        raise InvalidInput(f"--period không hợp lệ: {exc}") from None


# ─── rules ──────────────────────────────────────────────────────────────────────────────────────
def load_rules(settings: Settings) -> RulePack:
    """The rule pack at settings.rules/calendar; raises RulePackInvalid with every error."""
    return load_pack(settings.rules.path, settings.calendar.path)


@dataclass
class RulesCheck:
    valid: bool
    errors: list[RuleError] = field(default_factory=list)
    stage: str = "rules"               # rules | kpi | templates: where the first error was found
    pack: RulePack | None = None

    def summary(self) -> dict[str, object]:
        if not self.valid or self.pack is None:
            return {"valid": False, "errors": [e.as_dict() for e in self.errors]}
        p = self.pack
        return {"valid": True, "pack": p.info.id, "files": p.files, "units": len(p.units), "groups": len(p.groups),
                "obligations": len(p.obligations), "reminder_policies": len(p.policies)}


def check_rules(settings: Settings, templates_dir: Path | None = None) -> RulesCheck:
    """Rules, KPI files and mail templates together: what `rules check` and the daemon's watcher need."""
    from engine.app.checks import check_templates_for
    from engine.kpi import kpi_check_errors

    try:
        pack = load_rules(settings)
    except RulePackInvalid as exc:
        return RulesCheck(False, exc.errors)
    kerrs = kpi_check_errors(pack)
    terrs = check_templates_for(templates_dir or settings.delivery.templates_dir)
    if kerrs or terrs:
        return RulesCheck(False, RulePackInvalid(kerrs + terrs).errors, "kpi" if kerrs else "templates", pack)
    return RulesCheck(True, [], "rules", pack)


def load_kpi_pack(pack: RulePack, kpi_dir: Path | None = None) -> KpiPack:
    """The KPI files beside the pack (or in kpi_dir); raises RulePackInvalid (also for a missing
    folder). Parsed once per version of the files (load_kpi_for_pack's cache, which the daemon's
    passes use): the console's KPI page parsed 220 targets on every visit (≈100 ms), and the
    remembered classification (engine/kpi/report.py) knows a KPI pack by identity."""
    from engine.kpi.loader import kpi_dir_of, load_kpi, load_kpi_for_pack

    d = kpi_dir_of(pack, kpi_dir)
    return load_kpi_for_pack(pack, kpi_dir) if d.is_dir() else load_kpi(d, pack)


def _unit_known(pack: RulePack, unit: str | None) -> None:
    from engine.submissions import unknown_unit

    if unit is not None and unit not in pack.units:
        raise InvalidInput(unknown_unit(pack, unit))


# ─── deadlines and calendar ─────────────────────────────────────────────────────────────────────
def deadlines(settings: Settings, pack: RulePack, start: date, end: date, unit: str | None = None) -> list[Instance]:
    """Every instance due between start and end (inclusive), for one unit or all."""
    check_year(start, "--from")
    check_year(end, "--to")
    if end < start:
        raise InvalidInput("--to phải sau --from", exit_code=2)
    _unit_known(pack, unit)
    return generate_instances(pack, start, end, unit=unit, tracking_start=settings.rules.tracking_start)


def export_ics(settings: Settings, pack: RulePack, unit: str, start: date, end: date, now: datetime,
               target: Path) -> int:
    """Write one unit's deadlines as iCalendar; returns how many."""
    from engine.ics import build_ics

    _unit_known(pack, unit)
    items = deadlines(settings, pack, start, end, unit)
    target.write_bytes(build_ics(pack, unit, items, now))
    return len(items)


@dataclass(frozen=True)
class DayOff:
    day: date
    working: bool       # True: a weekend day worked in exchange (làm bù)
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"date": self.day.isoformat(), "working": self.working, "reason": self.reason}


def days_off(settings: Settings, year: int) -> list[DayOff]:
    """Weekday holidays and swapped days off, and weekend make-up days, of one year."""
    from engine.workcalendar import WorkingCalendar, load_overrides

    if not (MIN_YEAR <= year <= MAX_YEAR):
        raise InvalidInput(f"--year: năm {year} nằm ngoài khoảng năm hỗ trợ ({YEARS_VI})", exit_code=2)
    cal = WorkingCalendar(load_overrides(settings.calendar.path))
    rows: list[DayOff] = []
    d = date(year, 1, 1)
    while d.year == year:
        weekend = d.weekday() >= 5
        working = cal.is_working_day(d)
        if weekend == working:
            rows.append(DayOff(d, working, cal.holiday_name(d) or ("Làm bù" if working else "")))
        d += timedelta(days=1)
    return rows


# ─── state: sync, submissions, waivers, status ──────────────────────────────────────────────────
def sync_in(ses: Session, settings: Settings, pack: RulePack, now: datetime) -> dict[str, int]:
    from engine.sync import record_installation, sync_instances

    record_installation(ses, now)        # go-live: the first command records the installation day
    return sync_instances(ses, pack, now, tracking_start=settings.rules.tracking_start).as_dict()


def sync(settings: Settings, pack: RulePack, now: datetime) -> dict[str, int]:
    """Bring the instance table in line with the rules; counts of inserted/moved/retired/reassigned."""
    with open_session(settings) as ses:
        return sync_in(ses, settings, pack, now)


@dataclass(frozen=True)
class SubmissionResult:
    unit: str
    unit_name: str
    obligation: str
    obligation_title: str
    period_label: str
    submitted_on: date
    due: date

    @property
    def on_time(self) -> bool:
        return self.submitted_on <= self.due


def _core_input(fn: Callable[[], Any]) -> Any:
    from engine.submissions import InputError

    try:
        return fn()
    except InputError as exc:
        raise InvalidInput(str(exc)) from None
    except clock.BadDate as exc:
        raise InvalidInput(str(exc)) from None
    except OverflowError:
        raise InvalidInput(f"ngày hoặc kỳ nằm ngoài khoảng năm hỗ trợ ({YEARS_VI})") from None


def submit(settings: Settings, pack: RulePack, obligation: str, unit: str, period: str, submitted_on: date,
           now: datetime, actor: str = "cli", ref: str | None = None, note: str | None = None) -> SubmissionResult:
    """Record (or correct, with an audit trail) that a unit submitted a report for a period."""
    from engine.submissions import SubmissionIn, record_submission

    check_year(submitted_on, "--date")
    period = check_period(pack, obligation, period)
    with open_session(settings) as ses:
        row: InstanceRow = _core_input(lambda: record_submission(
            ses, pack, SubmissionIn(obligation=obligation, unit=unit, period=period, submitted_on=submitted_on,
                                    ref=ref, note=note), now, actor))
    return SubmissionResult(unit, pack.units[unit].name, obligation, pack.obligations[obligation].title,
                            row.period_label, submitted_on, row.due)


def waive(settings: Settings, pack: RulePack, obligation: str, unit: str, period: str, reason: str, now: datetime,
          actor: str = "cli", revoke: bool = False) -> None:
    """Waive (or revoke the waiver of) one unit's report for one period; a reason is required."""
    from engine.submissions import record_waiver

    period = check_period(pack, obligation, period)
    with open_session(settings) as ses:
        _core_input(lambda: record_waiver(ses, pack, obligation, unit, period, reason, now, actor, revoke))


def import_submissions(settings: Settings, pack: RulePack, file: Path, now: datetime, actor: str = "import"):
    """All rows of a CSV or an xlsx tracking sheet or none; raises ImportRejected naming each bad
    row (sheet and row). Returns engine.submissions.ImportSummary: rows already recorded exactly so
    change nothing, so the same file imported twice writes nothing the second time."""
    from engine.submissions import import_submission_file

    if not file.is_file():
        raise InvalidInput(f"không tìm thấy tệp {file}", exit_code=2)
    with open_session(settings) as ses:
        return _core_input(lambda: import_submission_file(ses, pack, file, now, actor))


@dataclass
class StatusResult:
    as_of: date
    lines: list[StatusLine]
    rates: dict[str, dict[str, object]]

    def as_dict(self) -> dict[str, object]:
        return {"as_of": self.as_of.isoformat(), "items": [l.as_dict() for l in self.lines], "units": self.rates}


def status(settings: Settings, pack: RulePack, now: datetime, as_of: date | None = None, unit: str | None = None,
           include_future: bool = False) -> StatusResult:
    """Each instance's status as of a day, and each unit's on-time rate (syncs first)."""
    from engine.status import on_time_rates, status_lines

    day = as_of or now.date()
    check_year(day, "--as-of")
    _unit_known(pack, unit)
    with open_session(settings) as ses:
        sync_in(ses, settings, pack, now)
        lines = status_lines(ses, pack, day, unit, include_future=include_future)
    return StatusResult(day, lines, on_time_rates(lines))


# ─── evaluation, delivery, preview ──────────────────────────────────────────────────────────────
def evaluate(engine: Engine | str, pack: RulePack, now: datetime, settings: Settings, *, dry_run: bool = False,
             sync_first: bool = True) -> EvalReport:
    """Sync (unless the caller already did today) and evaluate every open instance at `now`.

    The daemon may call this with its own engine and `sync_first=False` when it synced this day."""
    from engine.pipeline import evaluate as _evaluate

    eng = engine if isinstance(engine, Engine) else database_engine(with_database(settings, engine))
    try:
        with Session(eng, expire_on_commit=False) as ses:
            if sync_first:
                sync_in(ses, settings, pack, now)
            return _evaluate(ses, pack, now, dry_run=dry_run)
    except Exception as exc:
        if is_unavailable(exc):
            raise DatabaseUnavailable(describe_db_error(exc, eng.url.render_as_string(hide_password=True))) from None
        raise


def deliver(engine: Engine | str, pack: RulePack, now: datetime, settings: Settings,
            should_stop: Callable[[], bool] | None = None, links: LinkMaker | None = None) -> PassReport:
    """One delivery pass with the configured SMTP server (or pickup folder) and sending window.

    ``links``: ``engine.app.confirmations.link_maker(settings)`` for the "Báo đã gửi" link in each
    digest. Passed in, not built here: confirmations builds on this module (open_session, errors),
    so importing it here would make an import cycle."""
    from notifications.delivery import deliver as _deliver

    kwargs: dict[str, Any] = {"smtp": settings.smtp, "delivery": settings.delivery}
    if should_stop is not None:
        kwargs["should_stop"] = should_stop
    if links is not None:
        kwargs["links"] = links
    return _deliver(engine, pack, now, **kwargs)


def delivery_moment(text: str | None, settings: Settings, tz: str, now: datetime) -> datetime:
    """`--as-of` of notify: a date alone means the opening of that day's sending window."""
    if text is None:
        return now
    moment = parse_moment(text, "--as-of")
    if re.fullmatch(r"\s*(\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{4})\s*", text):
        start, _ = settings.delivery.window()
        moment = datetime.combine(moment.date(), start, tzinfo=ZoneInfo(tz))
    return moment


def simulate(settings: Settings, pack: RulePack, start: date, end: date, at: time = time(7, 0)):
    """Notices each day would create, on a throw-away copy of the state (the real state is not written)."""
    from engine.app.simulation import simulate as _simulate

    check_year(start, "--from")
    check_year(end, "--to")
    if end < start:
        raise InvalidInput("--to phải sau --from", exit_code=2)
    if (end - start).days > 800:
        raise InvalidInput("khoảng mô phỏng tối đa 800 ngày", exit_code=2)
    try:
        return _simulate(settings.database.url, pack, start, end, at.hour, at.minute,
                         tracking_start=settings.rules.tracking_start)
    except Exception as exc:
        if is_unavailable(exc):
            raise DatabaseUnavailable(describe_db_error(exc, settings.database.url)) from None
        raise


# ─── outbox ─────────────────────────────────────────────────────────────────────────────────────
def outbox_list(settings: Settings, *, failed_only: bool = False, include_sent: bool = False,
                limit: int = 500, states: list[str] | None = None, unit: str | None = None,
                day: str | None = None) -> list[dict[str, object]]:
    """Digests newest first with their state, time, file and reason: every state but "dropped" by
    default (sent mail too), all with ``include_sent``; ``states`` ("gửi", "chờ", "lỗi", "bỏ" or the
    codes), ``unit`` (id or name) and ``day`` (dd/mm/yyyy: sent, or last handled, that day) filter."""
    from notifications.outbox import list_outbox, parse_states, resolve_unit

    try:
        codes = parse_states(states) if states else None
    except ValueError as exc:
        raise InvalidInput(f"--state: {exc}", exit_code=2) from None
    on = parse_date(day, "--day") if day else None
    if limit < 1:
        raise InvalidInput("--limit: cần một số lớn hơn 0", exit_code=2)
    with open_session(settings) as ses:
        uid = None
        if unit is not None:
            try:
                uid = resolve_unit(ses, unit)
            except ValueError as exc:
                raise InvalidInput(f"--unit: {exc}", exit_code=2) from None
        return list_outbox(ses, failed_only=failed_only, include_sent=include_sent, limit=limit, states=codes,
                           unit=uid, day=on, tz=str(clock.TZ))


@dataclass
class RetryResult:
    requeued: list[int]
    errors: list[str]


def outbox_retry(settings: Settings, ids: list[int], now: datetime, all_failed: bool = False,
                 actor: str = "cli") -> RetryResult:
    """Failed digests back to the queue (same Message-ID); unknown or not-failed ids are named in errors.
    Each retry is in the audit trail with its author, in the same transaction as the requeue."""
    import json

    from engine.state import AuditRow, DeliveryRow
    from notifications.outbox import requeue

    if not ids and not all_failed:
        raise InvalidInput("cần số thư hoặc --all-failed", exit_code=2)
    with open_session(settings) as ses:
        done, problems = requeue(ses, ids, now, all_failed, commit=False)
        for i in done:
            d = ses.get(DeliveryRow, i)
            ses.add(AuditRow(at=now, actor=actor, action="outbox_retry", entity="delivery", entity_id=str(i),
                             detail=json.dumps({"recipient": d.recipient if d else None}, ensure_ascii=False)))
        ses.commit()
    return RetryResult(done, problems)


# ─── KPI ────────────────────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class KpiRecordResult:
    indicator: str
    indicator_name: str
    unit: str
    value: float
    as_of: date
    corrected: bool


def kpi_record(settings: Settings, kpi: KpiPack, indicator: str, value: str, as_of: date, now: datetime,
               actor: str = "cli", source: str | None = None, note: str | None = None) -> KpiRecordResult:
    """Record one indicator's value (again on the same day = a correction, kept in the history)."""
    from engine.kpi.values import KpiValueIn, parse_value, record_value

    check_year(as_of, "--as-of")
    ind = kpi.indicators.get(indicator)
    if ind is None:
        raise InvalidInput(f"không có chỉ tiêu “{indicator}”")

    def run() -> tuple[KpiValueRow, bool]:
        item = KpiValueIn(indicator=indicator, value=parse_value(value, ind.unit), as_of=as_of, source=source, note=note)
        with open_session(settings) as ses:
            return record_value(ses, kpi, item, now, actor)

    row, corrected = _core_input(run)
    return KpiRecordResult(indicator, ind.name, ind.unit, row.value, row.as_of, corrected)


def kpi_import(settings: Settings, kpi: KpiPack, file: Path, now: datetime, actor: str = "import") -> int:
    """All rows of a KPI CSV or none; raises ImportRejected naming each bad row."""
    from engine.kpi.values import import_values

    if not file.is_file():
        raise InvalidInput(f"không tìm thấy tệp {file}", exit_code=2)
    with open_session(settings) as ses:
        return _core_input(lambda: import_values(ses, kpi, file, now, actor))


def kpi_report(settings: Settings, pack: RulePack, kpi: KpiPack, as_of: date, *, tolerance: float | None = None,
               group: str | None = None, unit: str | None = None, slipping: bool = False) -> list[ReportRow]:
    """Each target's status as of a day, filtered by group, responsible unit or slipping only."""
    from engine.kpi.classify import SLIPPING
    from engine.kpi.report import build_report

    check_year(as_of, "--as-of")
    if group is not None and group not in kpi.groups:
        raise InvalidInput(f"không có nhóm “{group}” (có: {', '.join(kpi.groups)})", exit_code=2)
    _unit_known(pack, unit)
    with open_session(settings) as ses:
        rows = build_report(ses, pack, as_of, kpi, tolerance)
    if group:
        rows = [r for r in rows if r.group == group]
    if unit:
        rows = [r for r in rows if r.responsible == unit or kpi.indicators[r.indicator].responsible == unit]
    if slipping:
        rows = [r for r in rows if r.status in SLIPPING]
    return rows


def kpi_charts(settings: Settings, pack: RulePack, kpi: KpiPack, as_of: date, out_dir: Path,
               groups: list[str] | None = None, tolerance: float | None = None) -> list[Path]:
    """One PNG per target group; returns the files written."""
    from engine.kpi.charts import write_charts
    from engine.kpi.classify import evaluate as classify
    from engine.kpi.values import load_values

    check_year(as_of, "--as-of")
    for g in groups or []:
        if g not in kpi.groups:
            raise InvalidInput(f"không có nhóm “{g}” (có: {', '.join(kpi.groups)})", exit_code=2)
    with open_session(settings) as ses:
        values = load_values(ses, list(kpi.indicators))
    results = classify(kpi, pack, values, as_of, tolerance)
    return write_charts(kpi, results, values, out_dir, as_of, pack.info.name, groups=groups or None)


def kpi_history(settings: Settings, kpi: KpiPack, indicator: str) -> list[KpiValueRow]:
    """Every value recorded for an indicator, corrections included."""
    from engine.kpi.values import history

    if indicator not in kpi.indicators:
        raise InvalidInput(f"không có chỉ tiêu “{indicator}”", exit_code=2)
    with open_session(settings) as ses:
        return list(history(ses, indicator))


# ─── preview of a staged edit of the rules ──────────────────────────────────────────────────────
def preview(settings: Settings, staged_dir: Path, start: date, end: date, unit: str | None = None,
            obligation: str | None = None, *, live: RulePack | None = None, at: time | None = None):
    """What moving the rules in `staged_dir` into the live rules directory would change between start
    and end (deadlines added, moved, removed; notices added, removed), on throw-away copies of the state.

    Raises engine.app.preview.StagedRulesInvalid (a RulePackInvalid carrying the `rules check`
    errors) when the staged rules are invalid, RulePackInvalid when the live ones are. Returns an
    engine.app.preview.PreviewResult (its as_dict() is the stable JSON of `dondoc preview --json`)."""
    from engine.app import preview as _preview

    check_year(start, "--from")
    check_year(end, "--to")
    if end < start:
        raise InvalidInput("--to phải sau --from", exit_code=2)
    if (end - start).days > _preview.MAX_DAYS:
        raise InvalidInput(f"khoảng xem trước tối đa {_preview.MAX_DAYS} ngày", exit_code=2)
    checked = check_rules(with_paths(settings, rules=Path(staged_dir)))
    if not checked.valid or checked.pack is None:
        raise _preview.StagedRulesInvalid(Path(staged_dir), checked.errors)
    staged = checked.pack
    live = live or load_rules(settings)
    for what, value, known in (("đơn vị", unit, lambda p: p.units), ("nghĩa vụ báo cáo", obligation, lambda p: p.obligations)):
        if value is not None and value not in known(live) and value not in known(staged):
            raise InvalidInput(f"không có {what} “{value}” trong quy tắc đang dùng hay quy tắc thử", exit_code=2)
    moment = at or time(settings.daemon.evaluate_hour, 0)
    try:
        return _preview.run(settings.database.url, live, staged, start, end, moment, unit=unit, obligation=obligation,
                            tracking_start=settings.rules.tracking_start)
    except Exception as exc:
        if is_unavailable(exc):
            raise DatabaseUnavailable(describe_db_error(exc, settings.database.url)) from None
        raise


# ─── go-live: installation day, tracking start, backlog ─────────────────────────────────────────
@dataclass(frozen=True)
class TrackingInfo:
    """When dondoc was installed on this database and from which due day it chases."""
    installed_on: date
    tracking_start: date | None
    source: str | None               # config | installation | pack (engine.sync)
    pack_tracking_start: date | None
    configured: date | None

    @property
    def source_vi(self) -> str:
        return {"config": "theo cấu hình (DONDOC_TRACKING_START)", "installation": "ngày cài đặt",
                "pack": "theo bộ quy tắc (pack.yaml: tracking_start)"}.get(self.source or "", "chưa xác định")

    def as_dict(self) -> dict[str, object]:
        return {"installed_on": self.installed_on.isoformat(),
                "tracking_start": self.tracking_start.isoformat() if self.tracking_start else None,
                "source": self.source,
                "pack_tracking_start": self.pack_tracking_start.isoformat() if self.pack_tracking_start else None,
                "configured": self.configured.isoformat() if self.configured else None}


def record_installation_in(ses: Session, now: datetime) -> date:
    """The first command that works on a database records the installation day (never overwritten)."""
    from engine.sync import record_installation

    return record_installation(ses, now)


def tracking_info_in(ses: Session, settings: Settings, pack: RulePack, now: datetime) -> TrackingInfo:
    from engine.sync import tracking_start_of

    installed = record_installation_in(ses, now)
    eff = tracking_start_of(ses, pack, settings.rules.tracking_start)
    return TrackingInfo(installed, eff.day if eff else None, eff.source if eff else None,
                        pack.info.tracking_start, settings.rules.tracking_start)


def tracking_info(settings: Settings, pack: RulePack, now: datetime) -> TrackingInfo:
    """Installation day (recorded now if this is the first start) and the effective tracking start."""
    with open_session(settings) as ses:
        return tracking_info_in(ses, settings, pack, now)


def backlog(settings: Settings, pack: RulePack, now: datetime, since: date | None = None,
            unit: str | None = None) -> tuple[TrackingInfo, Any]:
    """What fell due before the effective tracking start and is not recorded as submitted or waived
    (engine.backlog.Backlog), with the tracking information it was computed for."""
    from engine.backlog import build_backlog

    if since is not None:
        check_year(since, "--from")
    _unit_known(pack, unit)
    with open_session(settings) as ses:
        info = tracking_info_in(ses, settings, pack, now)
        start = info.tracking_start or now.date()
        if since is not None and since >= start:
            raise InvalidInput(f"--from {since:%d/%m/%Y} phải trước ngày bắt đầu theo dõi {start:%d/%m/%Y}", exit_code=2)
        return info, build_backlog(ses, pack, start, since, unit)


# ─── doctor: placeholder addresses, the next sending window ─────────────────────────────────────
PLACEHOLDER_DOMAINS = ("example.org", "example.com", "example.net", "localhost", "localhost.localdomain")
PLACEHOLDER_TLDS = (".example", ".test", ".invalid", ".localhost", ".local")


def is_placeholder_address(addr: str) -> bool:
    """An address that cannot reach anybody real (RFC 2606/6761 names, localhost)."""
    domain = addr.rsplit("@", 1)[-1].strip().strip(">").lower().rstrip(".")
    return (domain in PLACEHOLDER_DOMAINS or domain.endswith(tuple("." + d for d in PLACEHOLDER_DOMAINS))
            or domain.endswith(PLACEHOLDER_TLDS) or domain in ("127.0.0.1", "[127.0.0.1]", "::1"))


@dataclass
class PlaceholderReport:
    units: list[tuple[str, str, list[str]]] = field(default_factory=list)   # (unit, name, placeholder contacts)
    sender: list[tuple[str, str]] = field(default_factory=list)             # (what, address)


def placeholder_addresses(settings: Settings, pack: RulePack) -> PlaceholderReport:
    """Units whose contacts and the configured From/Reply-To that are placeholders."""
    rep = PlaceholderReport()
    for uid, u in pack.units.items():
        bad = [c for c in u.contacts if is_placeholder_address(c)]
        if bad:
            rep.units.append((uid, u.name, bad))
    smtp = settings.smtp
    admin = pack.units.get(pack.info.admin_contact or "")
    fallback = admin.contacts[0] if admin is not None and admin.contacts else None
    for what, addr, env in (("From", smtp.from_addr or fallback, "DONDOC_SMTP_FROM"),
                            ("Reply-To", smtp.reply_to or fallback, "DONDOC_SMTP_REPLY_TO")):
        if addr and is_placeholder_address(addr):
            rep.sender.append((f"{what} ({env}" + (")" if (smtp.from_addr if what == "From" else smtp.reply_to)
                                                   else ", mặc định: địa chỉ đầu tiên của admin_contact)"), addr))
    return rep


@dataclass(frozen=True)
class WindowForecast:
    """What the next sending window would send: one digest per recipient and route."""
    opens_at: datetime
    digests: int
    recipients: int
    notices: int                 # notices in them (waiting now + created by the evaluation before it)
    new_notices: int             # of which created by that evaluation (dry: on a throw-away copy)


def next_window_opening(settings: Settings, pack: RulePack, now: datetime) -> datetime:
    """``now`` when inside the sending window of a working day, else the next window's opening."""
    tz = ZoneInfo(pack.info.timezone)
    local = now.astimezone(tz)
    start, end = settings.delivery.window()
    day = local.date()
    for _ in range(60):
        if pack.calendar.is_working_day(day):
            if day > local.date() or local.time() < start:
                return datetime.combine(day, start, tzinfo=tz)
            if local.time() < end:
                return local
        day += timedelta(days=1)
    return datetime.combine(day, start, tzinfo=tz)   # pragma: no cover - 60 days without a working day


def peek_tracking(settings: Settings, pack: RulePack) -> TrackingInfo | None:
    """The installation record and tracking start, read without migrating or writing anything
    (doctor: running it during setup must not make its day the installation day). None when no
    dondoc command has worked on this database yet."""
    from sqlalchemy import inspect

    from engine.db import make_engine
    from engine.state import InstallationRow
    from engine.sync import effective_tracking_start

    eng = make_engine(settings.database.url)
    try:
        if not inspect(eng).has_table("installation"):
            return None
        with Session(eng) as ses:
            row = ses.get(InstallationRow, 1)
    finally:
        eng.dispose()
    if row is None:
        return None
    eff = effective_tracking_start(pack, settings.rules.tracking_start, row.installed_on)
    return TrackingInfo(row.installed_on, eff.day if eff else None, eff.source if eff else None,
                        pack.info.tracking_start, settings.rules.tracking_start)


def next_window_forecast(settings: Settings, pack: RulePack, now: datetime) -> WindowForecast:
    """A dry computation, nothing sent and nothing written to the state: the notices and digests
    waiting now, plus those the evaluation before the window would create (simulated on a
    throw-away copy), grouped as the sender groups them (recipient × route). On a database no
    command has worked on yet, the first run's installation day is assumed to be that evaluation's."""
    from sqlalchemy import inspect
    from sqlmodel import col, select

    from engine.app.simulation import simulate as _simulate
    from engine.db import make_engine
    from engine.state import DeliveryItemRow, DeliveryRow, NoticeRow
    from engine.sync import effective_tracking_start
    from types import SimpleNamespace

    from notifications.outbox import routes_for_notice

    opens = next_window_opening(settings, pack, now)
    groups: set[tuple[str, str]] = set()
    notices = 0
    eng = make_engine(settings.database.url)
    try:
        if inspect(eng).has_table("deliveries"):
            with Session(eng) as ses:
                waiting = ses.exec(select(NoticeRow).where(col(NoticeRow.status).in_(("pending", "retry")))).all()
                assigned = set(ses.exec(select(DeliveryItemRow.notice_id, DeliveryItemRow.route)).all())
                for n in waiting:
                    for r in routes_for_notice(pack, n):
                        if (n.id, r.route) not in assigned:
                            groups.add((n.recipient, r.route))
                notices += len(waiting)
                for d in ses.exec(select(DeliveryRow).where(col(DeliveryRow.status).in_(("pending", "retry")))).all():
                    groups.add((d.recipient, d.route))
    finally:
        eng.dispose()
    # The morning evaluation (daemon.evaluate_hour) of the window's day, or now if that has passed.
    local_now = now.astimezone(opens.tzinfo)
    evaluate_at = datetime.combine(opens.date(), time(settings.daemon.evaluate_hour, 0), tzinfo=opens.tzinfo)
    at = max(evaluate_at, local_now) if opens.date() == local_now.date() else evaluate_at
    info = peek_tracking(settings, pack)
    eff = effective_tracking_start(pack, settings.rules.tracking_start,
                                   info.installed_on if info is not None else at.date())
    created = _simulate(settings.database.url, pack, at.date(), at.date(), at.hour, at.minute,
                        tracking_start=eff.day if eff else None)
    for _, n in created:   # intents have no instance row; the KPI summary is told by its kind
        for r in routes_for_notice(pack, SimpleNamespace(recipient=n.recipient, kind=n.kind, instance_id=None)):
            groups.add((n.recipient, r.route))
    return WindowForecast(opens, len(groups), len({g[0] for g in groups}), notices + len(created), len(created))


# ─── the tracking sheet: export open reports to Excel, import them back ─────────────────────────
TRACKING_BACK_DAYS = 365     # `export tracking` without --from: reports due in the past year …
TRACKING_AHEAD_DAYS = 30     # … and in the coming month


def tracking_items(settings: Settings, pack: RulePack, now: datetime, start: date | None = None,
                   end: date | None = None, unit: str | None = None) -> tuple[date, date, list[Any]]:
    """The open reports (engine.tracking_xlsx.TrackingItem) due in [start, end]: the rules'
    instances not recorded as submitted or waived, by due day, unit, report."""
    from sqlalchemy import select as sa_select

    from engine.state import InstanceRow
    from engine.tracking_xlsx import TrackingItem

    lo = start or now.date() - timedelta(days=TRACKING_BACK_DAYS)
    hi = end or now.date() + timedelta(days=TRACKING_AHEAD_DAYS)
    check_year(lo, "--from")
    check_year(hi, "--to")
    if hi < lo:
        raise InvalidInput("--to phải sau --from", exit_code=2)
    _unit_known(pack, unit)
    planned = generate_instances(pack, lo, hi, unit=unit)
    with open_session(settings) as ses:
        closed = {tuple(k) for k in ses.execute(
            sa_select(InstanceRow.obligation, InstanceRow.unit, InstanceRow.period)
            .where(InstanceRow.closed == True, InstanceRow.due >= lo, InstanceRow.due <= hi)).all()}  # noqa: E712

    def name(uid: str) -> str:
        u = pack.units.get(uid)
        return u.name if u is not None else uid

    items = [TrackingItem(i.obligation, pack.obligations[i.obligation].title, i.unit, name(i.unit), i.period,
                          i.period_label, i.due, i.recipient, name(i.recipient))
             for i in planned if i.key not in closed]
    items.sort(key=lambda i: (i.due, i.unit_name, i.obligation, i.period))
    return lo, hi, items


def export_tracking(settings: Settings, pack: RulePack, now: datetime, target: Path, start: date | None = None,
                    end: date | None = None, unit: str | None = None) -> tuple[date, date, list[Any]]:
    """Write the tracking sheet (engine.tracking_xlsx) of the open reports due in the window."""
    from engine.tracking_xlsx import write_tracking_xlsx

    if target.suffix.lower() != ".xlsx":
        raise InvalidInput(f"--xlsx {target}: tên tệp phải có đuôi .xlsx", exit_code=2)
    lo, hi, items = tracking_items(settings, pack, now, start, end, unit)
    who = f" – {pack.units[unit].name}" if unit else ""
    write_tracking_xlsx(items, target, f"{pack.info.name}: báo cáo chưa nộp{who}", (lo, hi))
    return lo, hi, items
