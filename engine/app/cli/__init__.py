"""The `dondoc` command line: Rich tables for people, --json for scripts."""

from __future__ import annotations

import json
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from engine import clock
from engine.errors import RulePackInvalid
from engine.instances import Instance, generate_instances
from engine.rules_loader import RulePack, load_pack
from engine.app.config import ConfigError, Settings, load_settings

app = typer.Typer(help="dondoc – đôn đốc báo cáo thực hiện Nghị quyết 57-NQ/TW.", no_args_is_help=True,
                  add_completion=False)
rules_app = typer.Typer(help="Quy tắc (rules/*.yaml).", no_args_is_help=True)
calendar_app = typer.Typer(help="Lịch làm việc và xuất lịch .ics.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
app.add_typer(calendar_app, name="calendar")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

WEEKDAYS_VI = ["Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ nhật"]


class State:
    now_text: str | None = None
    settings: Settings | None = None


STATE = State()


def settings() -> Settings:
    """The one configuration, read once per command (dondoc.toml + DONDOC_*)."""
    if STATE.settings is None:
        try:
            STATE.settings = load_settings()
        except ConfigError as exc:
            err.print("[bold red]Cấu hình không hợp lệ:[/]")
            for m in exc.messages:
                err.print(f"  • {m}", markup=False, highlight=False)
            raise typer.Exit(2) from None
    return STATE.settings


@app.callback()
def _root(now: Optional[str] = typer.Option(None, "--now", help="Thời điểm mô phỏng (yyyy-mm-dd[THH:MM]); mặc định: bây giờ.", envvar="DONDOC_NOW")) -> None:
    if now:
        try:
            clock.parse_moment(now)
        except clock.BadDate as exc:
            raise typer.BadParameter(str(exc), param_hint="--now") from None
    STATE.now_text = now
    STATE.settings = None
    settings()


def _now():
    return clock.now(STATE.now_text)


def _date_opt(value: Optional[str], name: str) -> Optional[date]:
    if value is None:
        return None
    try:
        return clock.parse_date(value)
    except clock.BadDate as exc:
        raise typer.BadParameter(str(exc), param_hint=name) from None


def _load(rules: Optional[Path], calendar_dir: Optional[Path]) -> RulePack:
    s = settings()
    try:
        return load_pack(rules or s.rules.path, calendar_dir or s.calendar.path)
    except RulePackInvalid as exc:
        _print_rule_errors(exc)
        raise typer.Exit(1) from None


def _print_rule_errors(exc: RulePackInvalid) -> None:
    err.print(f"[bold red]Quy tắc không hợp lệ: {len(exc.errors)} lỗi[/]")
    for e in exc.errors:
        err.print(f"  • {e}", markup=False, highlight=False)


def fmt_day(d: date) -> str:
    return f"{WEEKDAYS_VI[d.weekday()]}, {d:%d/%m/%Y}"


RulesOpt = typer.Option(None, "--rules", help="Thư mục quy tắc (mặc định: rules/).")
CalOpt = typer.Option(None, "--calendar", help="Thư mục dữ liệu lịch (mặc định: calendar/).")


@rules_app.command("check")
def rules_check(directory: Optional[Path] = typer.Argument(None, help="Thư mục quy tắc."),
                calendar_dir: Optional[Path] = CalOpt,
                templates: Optional[Path] = typer.Option(None, "--templates", help="Thư mục mẫu thư do Văn phòng sửa."),
                as_json: bool = typer.Option(False, "--json")) -> None:
    """Kiểm tra bộ quy tắc, chỉ tiêu và mẫu thư; thoát 0 nếu hợp lệ, 1 kèm danh sách lỗi (tệp, dòng, lý do)."""
    s = settings()
    try:
        pack = load_pack(directory or s.rules.path, calendar_dir or s.calendar.path)
    except RulePackInvalid as exc:
        if as_json:
            print(json.dumps({"valid": False, "errors": [e.as_dict() for e in exc.errors]}, ensure_ascii=False, indent=2))
        else:
            _print_rule_errors(exc)
        raise typer.Exit(1) from None
    from engine.kpi import kpi_check_errors

    from engine.app.checks import check_templates_for

    kerrs = kpi_check_errors(pack) + check_templates_for(templates or s.delivery.templates_dir)
    if kerrs:
        exc = RulePackInvalid(kerrs)
        if as_json:
            print(json.dumps({"valid": False, "errors": [e.as_dict() for e in exc.errors]}, ensure_ascii=False, indent=2))
        else:
            _print_rule_errors(exc)
        raise typer.Exit(1)
    summary = {"valid": True, "pack": pack.info.id, "files": pack.files, "units": len(pack.units),
               "groups": len(pack.groups), "obligations": len(pack.obligations), "reminder_policies": len(pack.policies)}
    if as_json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
        return
    out.print(f"[green]✓ Bộ quy tắc hợp lệ[/] ({pack.info.name}): {len(pack.files)} tệp, {len(pack.units)} đơn vị, "
              f"{len(pack.groups)} nhóm, {len(pack.obligations)} nghĩa vụ báo cáo, {len(pack.policies)} chính sách nhắc.")


def _instances_table(pack: RulePack, items: list[Instance], title: str) -> Table:
    t = Table(title=title, show_lines=False)
    for col in ("Hạn nộp", "Báo cáo", "Kỳ", "Đơn vị", "Nơi nhận", "Căn cứ"):
        t.add_column(col, overflow="fold")
    for i in items:
        ob = pack.obligations[i.obligation]
        due = fmt_day(i.due) + ("" if i.due == i.due_unrolled else f" (dời từ {i.due_unrolled:%d/%m})")
        unit = pack.units[i.unit].name + (f" (kế thừa {', '.join(i.inherited_from)})" if i.inherited_from else "")
        t.add_row(due, ob.title, i.period_label, unit, pack.units[i.recipient].name, ob.basis.text())
    return t


@app.command("deadlines")
def deadlines(from_: Optional[str] = typer.Option(None, "--from", help="Từ ngày (mặc định: hôm nay)."),
              to: Optional[str] = typer.Option(None, "--to", help="Đến ngày (mặc định: 60 ngày tới)."),
              unit: Optional[str] = typer.Option(None, "--unit", help="Chỉ một đơn vị (mã)."),
              as_json: bool = typer.Option(False, "--json"),
              rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt) -> None:
    """Liệt kê hạn nộp báo cáo của các đơn vị trong một khoảng ngày."""
    pack = _load(rules, calendar_dir)
    start = _date_opt(from_, "--from") or _now().date()
    end = _date_opt(to, "--to") or start + timedelta(days=60)
    if end < start:
        raise typer.BadParameter("--to phải sau --from", param_hint="--to")
    if unit is not None and unit not in pack.units:
        raise typer.BadParameter(f"không có đơn vị “{unit}”; xem mã đơn vị trong rules/units.yaml", param_hint="--unit")
    items = generate_instances(pack, start, end, unit=unit, tracking_start=settings().rules.tracking_start)
    if as_json:
        print(json.dumps([i.as_dict() for i in items], ensure_ascii=False, indent=2))
        return
    out.print(_instances_table(pack, items, f"Hạn nộp báo cáo từ {start:%d/%m/%Y} đến {end:%d/%m/%Y}"))
    out.print(f"{len(items)} hạn nộp.")


@calendar_app.command("ics")
def calendar_ics(unit: str = typer.Option(..., "--unit", help="Mã đơn vị."),
                 from_: Optional[str] = typer.Option(None, "--from"),
                 to: Optional[str] = typer.Option(None, "--to"),
                 output: Optional[Path] = typer.Option(None, "--output", "-o", help="Tệp .ics (mặc định: <mã đơn vị>.ics)."),
                 rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt) -> None:
    """Xuất hạn nộp của một đơn vị thành tệp iCalendar (.ics) để nhập vào lịch."""
    from engine.ics import build_ics

    pack = _load(rules, calendar_dir)
    if unit not in pack.units:
        raise typer.BadParameter(f"không có đơn vị “{unit}”", param_hint="--unit")
    now = _now()
    start = _date_opt(from_, "--from") or now.date()
    end = _date_opt(to, "--to") or start + timedelta(days=366)
    items = generate_instances(pack, start, end, unit=unit, tracking_start=settings().rules.tracking_start)
    data = build_ics(pack, unit, items, now)
    target = output or Path(f"{unit}.ics")
    target.write_bytes(data)
    out.print(f"Đã ghi {len(items)} hạn nộp vào {target}")


@calendar_app.command("days-off")
def calendar_days_off(year: int = typer.Option(..., "--year"), calendar_dir: Optional[Path] = CalOpt,
                      as_json: bool = typer.Option(False, "--json")) -> None:
    """Ngày nghỉ lễ, nghỉ hoán đổi và ngày làm bù của một năm."""
    from engine.workcalendar import WorkingCalendar, load_overrides

    try:
        cal = WorkingCalendar(load_overrides(calendar_dir or settings().calendar.path))
    except RulePackInvalid as exc:
        _print_rule_errors(exc)
        raise typer.Exit(1) from None
    rows = []
    d = date(year, 1, 1)
    while d.year == year:
        weekend = d.weekday() >= 5
        working = cal.is_working_day(d)
        if (not weekend and not working) or (weekend and working):
            rows.append({"date": d.isoformat(), "working": working,
                         "reason": cal.holiday_name(d) or ("Làm bù" if working else "")})
        d += timedelta(days=1)
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    t = Table(title=f"Ngày nghỉ và ngày làm bù năm {year}")
    t.add_column("Ngày")
    t.add_column("Loại")
    t.add_column("Lý do", overflow="fold")
    for r in rows:
        d = date.fromisoformat(r["date"])
        t.add_row(fmt_day(d), "Làm việc (bù)" if r["working"] else "Nghỉ", r["reason"])
    out.print(t)


DbOpt = typer.Option(None, "--db", help="URL cơ sở dữ liệu (mặc định: sqlite:///state.db).")


def _db_url(db: Optional[str]) -> str:
    return db or settings().database.url


def _session(db: Optional[str]):
    from engine.db import session

    try:
        return session(_db_url(db))
    except Exception as exc:  # connection refused, bad URL, migration failure
        err.print(f"[red]Không mở được cơ sở dữ liệu {_db_url(db)}:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _sync(ses, pack: RulePack, now) -> dict:
    from engine.sync import sync_instances

    return sync_instances(ses, pack, now, tracking_start=settings().rules.tracking_start).as_dict()


@app.command("sync")
def sync_cmd(rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt,
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Đồng bộ danh sách kỳ báo cáo trong cơ sở dữ liệu với bộ quy tắc hiện hành."""
    pack = _load(rules, calendar_dir)
    with _session(db) as ses:
        rep = _sync(ses, pack, _now())
    if as_json:
        print(json.dumps(rep))
    else:
        out.print(f"Đồng bộ xong: thêm {rep['inserted']}, dời {rep['moved']}, ngừng theo dõi {rep['retired']}, "
                  f"chuyển cho đơn vị kế thừa {rep['reassigned']}.")


def _input_error(exc: Exception) -> None:
    err.print(f"[red]Lỗi:[/] {exc}", highlight=False)
    raise typer.Exit(1)


@app.command("submit")
def submit_cmd(unit: str = typer.Option(..., "--unit"), obligation: str = typer.Option(..., "--obligation"),
               period: str = typer.Option(..., "--period", help="Kỳ: 2026-01, 2026-Q1, 2026-H1, 2026, once …"),
               on: Optional[str] = typer.Option(None, "--date", help="Ngày nộp (mặc định: hôm nay)."),
               ref: Optional[str] = typer.Option(None, "--ref", help="Số ký hiệu văn bản."),
               note: Optional[str] = typer.Option(None, "--note"),
               actor: str = typer.Option("cli", "--by", help="Người ghi nhận."),
               rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Ghi nhận một đơn vị đã nộp báo cáo (nộp lại = đính chính, có lưu vết)."""
    from engine.submissions import InputError, SubmissionIn, record_submission

    pack = _load(rules, calendar_dir)
    now = _now()
    day = _date_opt(on, "--date") or now.date()
    with _session(db) as ses:
        try:
            row = record_submission(ses, pack, SubmissionIn(obligation=obligation, unit=unit, period=period,
                                                            submitted_on=day, ref=ref, note=note), now, actor)
        except InputError as exc:
            _input_error(exc)
    late = "đúng hạn" if day <= row.due else "quá hạn"
    out.print(f"Đã ghi nhận: {pack.units[unit].name} nộp {pack.obligations[obligation].title} – {row.period_label} "
              f"ngày {day:%d/%m/%Y} ({late}, hạn {row.due:%d/%m/%Y}).")


@app.command("waive")
def waive_cmd(unit: str = typer.Option(..., "--unit"), obligation: str = typer.Option(..., "--obligation"),
              period: str = typer.Option(..., "--period"), reason: str = typer.Option("", "--reason"),
              revoke: bool = typer.Option(False, "--revoke", help="Hủy quyết định miễn nộp."),
              actor: str = typer.Option("cli", "--by"),
              rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Miễn nộp một kỳ báo cáo cho một đơn vị (bắt buộc ghi lý do)."""
    from engine.submissions import InputError, record_waiver

    pack = _load(rules, calendar_dir)
    with _session(db) as ses:
        try:
            record_waiver(ses, pack, obligation, unit, period, reason, _now(), actor, revoke)
        except InputError as exc:
            _input_error(exc)
    out.print("Đã hủy miễn nộp." if revoke else "Đã ghi nhận miễn nộp.")


import_app = typer.Typer(help="Nhập dữ liệu từ tệp.", no_args_is_help=True)
app.add_typer(import_app, name="import")


def _reject_import(file: Path, exc) -> None:
    """Every all-or-nothing import reports its bad rows the same way, then exits 1."""
    err.print(f"[red]Không nhập tệp {file}: {len(exc.errors)} dòng lỗi, chưa ghi dòng nào.[/]", highlight=False)
    for e in exc.errors:
        err.print(f"  • {file}: {e}", markup=False, highlight=False)
    raise typer.Exit(1)


@import_app.command("submissions")
def import_submissions_cmd(file: Path = typer.Argument(..., help="Tệp CSV (UTF-8, có hoặc không BOM)."),
                           rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt,
                           db: Optional[str] = DbOpt) -> None:
    """Nhập danh sách báo cáo đã nộp từ CSV: tất cả các dòng hợp lệ mới ghi, sai một dòng thì không ghi gì."""
    from engine.submissions import ImportRejected, import_submissions

    if not file.is_file():
        raise typer.BadParameter(f"không tìm thấy tệp {file}", param_hint="FILE")
    pack = _load(rules, calendar_dir)
    with _session(db) as ses:
        try:
            n = import_submissions(ses, pack, file, _now())
        except ImportRejected as exc:
            _reject_import(file, exc)
    out.print(f"Đã nhập {n} báo cáo đã nộp từ {file}.")


@app.command("status")
def status_cmd(as_of: Optional[str] = typer.Option(None, "--as-of", help="Tình trạng tính đến ngày (mặc định: hôm nay)."),
               unit: Optional[str] = typer.Option(None, "--unit"),
               all_: bool = typer.Option(False, "--all", help="Cả các kỳ chưa đến hạn."),
               as_json: bool = typer.Option(False, "--json"),
               rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Tình trạng nộp báo cáo: đúng hạn, quá hạn, sắp đến hạn …; và tỷ lệ đúng hạn của từng đơn vị."""
    from engine.status import STATUS_VI, on_time_rates, status_lines

    pack = _load(rules, calendar_dir)
    now = _now()
    day = _date_opt(as_of, "--as-of") or now.date()
    if unit is not None and unit not in pack.units:
        raise typer.BadParameter(f"không có đơn vị “{unit}”", param_hint="--unit")
    with _session(db) as ses:
        _sync(ses, pack, now)
        lines = status_lines(ses, pack, day, unit, include_future=all_)
    rates = on_time_rates(lines)
    if as_json:
        print(json.dumps({"as_of": day.isoformat(), "items": [l.as_dict() for l in lines], "units": rates},
                         ensure_ascii=False, indent=2))
        return
    t = Table(title=f"Tình trạng nộp báo cáo đến {day:%d/%m/%Y}")
    for col in ("Hạn nộp", "Báo cáo", "Kỳ", "Đơn vị", "Tình trạng"):
        t.add_column(col, overflow="fold")
    colours = {"done_on_time": "green", "done_late": "yellow", "overdue": "red", "due_soon": "magenta",
               "in_progress": "cyan", "waived": "dim"}
    for l in lines:
        extra = f" ({l.wd_late} ngày làm việc)" if l.wd_late else ""
        t.add_row(f"{l.due:%d/%m/%Y}", pack.obligations[l.obligation].title if l.obligation in pack.obligations else l.obligation,
                  l.period_label, pack.units[l.unit].name if l.unit in pack.units else l.unit,
                  f"[{colours[l.status]}]{STATUS_VI[l.status]}{extra}[/]")
    out.print(t)
    r = Table(title="Tỷ lệ nộp đúng hạn theo đơn vị")
    for col in ("Đơn vị", "Đến hạn", "Đúng hạn", "Quá hạn", "Chưa nộp", "Tỷ lệ đúng hạn"):
        r.add_column(col)
    for uid, a in sorted(rates.items(), key=lambda kv: (kv[1]["on_time_rate"] or 0)):
        r.add_row(pack.units[uid].name if uid in pack.units else uid, str(a["due"]), str(a["on_time"]), str(a["late"]),
                  str(a["missing"]), f"{a['on_time_rate']:.0%}" if a["on_time_rate"] is not None else "–")
    out.print(r)


STAGE_VI = {"reminder": "Nhắc trước hạn", "due_today": "Đến hạn hôm nay", "overdue": "Quá hạn", "escalation": "Báo cáo cấp trên",
            "kpi": "Chỉ tiêu chậm tiến độ", "kpi_summary": "Tổng hợp chỉ tiêu"}


def _notices_table(pack: RulePack, notices, title: str, day_col: bool = False) -> Table:
    t = Table(title=title)
    cols = (["Ngày"] if day_col else []) + ["Gửi đến", "Loại", "Báo cáo", "Kỳ", "Đơn vị"]
    for c in cols:
        t.add_column(c, overflow="fold")
    for item in notices:
        day, n = item if day_col else (None, item)
        name = lambda uid: pack.units[uid].name if uid in pack.units else uid  # noqa: E731
        ob = pack.obligations[n.obligation].title if n.obligation in pack.obligations else n.obligation
        detail = f" ({n.wd_late} ngày làm việc)" if n.wd_late else (f" (còn {n.wd_before} ngày làm việc)" if n.wd_before else "")
        row = ([f"{day:%d/%m/%Y}"] if day_col else []) + [name(n.recipient), STAGE_VI.get(n.kind, n.kind) + detail, ob,
                                                          n.period, name(n.unit)]
        t.add_row(*row)
    return t


@app.command("evaluate")
def evaluate_cmd(as_of: Optional[str] = typer.Option(None, "--as-of", help="Thời điểm đánh giá (mặc định: bây giờ)."),
                 dry_run: bool = typer.Option(False, "--dry-run", help="Chỉ xem, không ghi thông báo."),
                 as_json: bool = typer.Option(False, "--json"),
                 rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Đánh giá các kỳ báo cáo còn mở theo chính sách nhắc; ghi thông báo vào hộp thư đi."""
    from engine.pipeline import evaluate

    pack = _load(rules, calendar_dir)
    now = _moment_opt(as_of, "--as-of") or _now()
    with _session(db) as ses:
        _sync(ses, pack, now)
        rep = evaluate(ses, pack, now, dry_run=dry_run)
    if as_json:
        print(json.dumps(rep.as_dict(), ensure_ascii=False, indent=2))
        return
    out.print(_notices_table(pack, rep.notices, f"Thông báo {'sẽ tạo' if dry_run else 'cần gửi'} ngày {now:%d/%m/%Y}"))
    verb = "Sẽ tạo" if dry_run else "Đã tạo"
    out.print(f"{verb} {rep.created if not dry_run else rep.intents} thông báo mới ({rep.intents} thông báo đến hạn, "
              f"{rep.considered} kỳ báo cáo đang mở được xét).")


def _moment_opt(value: Optional[str], name: str):
    if value is None:
        return None
    try:
        return clock.parse_moment(value)
    except clock.BadDate as exc:
        raise typer.BadParameter(str(exc), param_hint=name) from None


@app.command("simulate")
def simulate_cmd(from_: str = typer.Option(..., "--from"), to: str = typer.Option(..., "--to"),
                 at: str = typer.Option("07:00", "--at", help="Giờ chạy đánh giá mỗi ngày."),
                 as_json: bool = typer.Option(False, "--json"),
                 rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Chạy thử từng ngày trên một bản sao dữ liệu: xem trước thông báo sẽ gửi khi đổi quy tắc."""
    from engine.app.simulation import simulate

    pack = _load(rules, calendar_dir)
    start, end = _date_opt(from_, "--from"), _date_opt(to, "--to")
    if end < start:
        raise typer.BadParameter("--to phải sau --from", param_hint="--to")
    if (end - start).days > 800:
        raise typer.BadParameter("khoảng mô phỏng tối đa 800 ngày", param_hint="--to")
    try:
        hh, mm = (int(x) for x in at.split(":"))
    except ValueError:
        raise typer.BadParameter("giờ dạng HH:MM", param_hint="--at") from None
    result = simulate(_db_url(db), pack, start, end, hh, mm, tracking_start=settings().rules.tracking_start)
    if as_json:
        print(json.dumps([{"day": d.isoformat(), "key": n.key, "stage": n.stage, "kind": n.kind, "recipient": n.recipient,
                           "obligation": n.obligation, "unit": n.unit, "period": n.period} for d, n in result],
                         ensure_ascii=False, indent=2))
        return
    out.print(_notices_table(pack, result, f"Mô phỏng {start:%d/%m/%Y} – {end:%d/%m/%Y} (không gửi, không ghi vào dữ liệu thật)", day_col=True))
    out.print(f"{len(result)} thông báo sẽ được tạo.")


@app.command("run")
def run(rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt,
        templates: Optional[Path] = typer.Option(None, "--templates", help="Thư mục mẫu thư (mặc định: notifications/templates)."),
        sim_start: Optional[str] = typer.Option(None, "--sim-start", help="Đồng hồ mô phỏng: thời điểm bắt đầu."),
        sim_rate: float = typer.Option(1.0, "--sim-rate", help="Đồng hồ mô phỏng: số giây mô phỏng mỗi giây thật."),
        once: bool = typer.Option(False, "--once", help="Chạy một lượt (đồng bộ, đánh giá, gửi) rồi thoát."),
        log_format: Optional[str] = typer.Option(None, "--log-format", help="text hoặc json."),
        deliver_every: Optional[int] = typer.Option(None, "--deliver-every", min=1, help="Số phút (mô phỏng) giữa hai lượt gửi."),
        lease_ttl: Optional[float] = typer.Option(None, "--lease-ttl", min=1.0, help="Giây: bản chờ (standby) tiếp quản sau khi bản chính im lặng chừng ấy."),
        days: int = typer.Option(14, "--days", help="Số ngày tới liệt kê khi khởi động.")) -> None:
    """Công việc chính: chạy nền, nhắc hạn và gửi thông báo theo lịch (Ctrl+C hoặc SIGTERM để dừng)."""
    from engine.app.daemon import Daemon, DaemonConfig, install_signal_handlers, setup_logging
    from engine.simclock import Clock

    s = settings()
    setup_logging(log_format or s.log.format, s.log.level)
    start_text = sim_start or STATE.now_text
    start_at = _moment_opt(start_text, "--sim-start") if start_text else None
    if sim_rate <= 0:
        raise typer.BadParameter("phải lớn hơn 0", param_hint="--sim-rate")
    clk = Clock(start_at, sim_rate)
    pack = _load(rules, calendar_dir)
    now = clk.now()
    out.print(f"[green]✓ Bộ quy tắc hợp lệ[/]: {len(pack.obligations)} nghĩa vụ, {len(pack.units)} đơn vị "
              f"(thời điểm {now:%d/%m/%Y %H:%M}{', đồng hồ mô phỏng ×' + str(sim_rate) if clk.simulated else ''}).")
    items = generate_instances(pack, now.date(), now.date() + timedelta(days=days), tracking_start=s.rules.tracking_start)
    out.print(_instances_table(pack, items[:40], f"Hạn nộp trong {days} ngày tới" + (f" (40/{len(items)} dòng đầu)" if len(items) > 40 else "")))
    cfg = DaemonConfig(rules_dir=rules or s.rules.path, calendar_dir=calendar_dir or s.calendar.path,
                       db_url=_db_url(db), templates_dir=templates or s.delivery.templates_dir, clock=clk,
                       lease_ttl=s.daemon.lease_ttl_seconds, evaluate_hour=s.daemon.evaluate_hour,
                       deliver_every_minutes=s.daemon.deliver_every_minutes, watch_interval=s.daemon.watch_interval,
                       standby_poll=s.daemon.standby_poll, smtp=s.smtp,
                       delivery=s.delivery.model_copy(update={"templates_dir": templates or s.delivery.templates_dir}),
                       tracking_start=s.rules.tracking_start)
    if deliver_every is not None:
        cfg.deliver_every_minutes = deliver_every
    if lease_ttl is not None:
        cfg.lease_ttl = lease_ttl
    daemon = Daemon(cfg)
    if once:
        daemon.run_once()
        return
    install_signal_handlers(daemon)
    raise typer.Exit(daemon.run())


@app.command("doctor")
def doctor(rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Kiểm tra cấu hình, cơ sở dữ liệu, phiên bản lược đồ, máy chủ thư và bộ quy tắc; nói rõ cần sửa gì."""
    from engine.app.doctor import run_checks

    results = run_checks(settings(), rules, calendar_dir, db, _now())
    bad = 0
    for ok, name, detail in results:
        mark = "[green]✓[/]" if ok is True else ("[yellow]![/]" if ok is None else "[red]✗[/]")
        bad += ok is False
        out.print(f"{mark} {name}: {detail}", highlight=False)
    raise typer.Exit(1 if bad else 0)


def main() -> None:
    """The `dondoc` console script."""
    app()


# Commands that live in their own modules register on `app` when imported (explicit, no plugin lookup).
from engine.app.cli import kpi as _kpi, notify as _notify  # noqa: E402,F401
