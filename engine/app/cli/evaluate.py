"""`dondoc evaluate`, `simulate` and `preview`: which notices are due, now, on each coming day, or after a rules edit."""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from engine.app.cli.common import (CalOpt, DbOpt, JsonOpt, RulesOpt, app, cfg, date_opt, dump_json, load,
                                   moment_opt, now, obligation_title, out, print_rule_errors, unit_name)
from engine.errors import RulePackInvalid

if TYPE_CHECKING:
    from engine.rules_loader import RulePack

STAGE_VI = {"reminder": "Nhắc trước hạn", "due_today": "Đến hạn hôm nay", "overdue": "Quá hạn", "escalation": "Báo cáo cấp trên",
            "kpi": "Chỉ tiêu chậm tiến độ", "kpi_summary": "Tổng hợp chỉ tiêu"}


def notices_table(pack: RulePack, notices, title: str, day_col: bool = False) -> Table:
    t = Table(title=title)
    cols = (["Ngày"] if day_col else []) + ["Gửi đến", "Loại", "Báo cáo", "Kỳ", "Đơn vị"]
    for c in cols:
        t.add_column(c, overflow="fold")
    for item in notices:
        day, n = item if day_col else (None, item)
        detail = f" ({n.wd_late} ngày làm việc)" if n.wd_late else (f" (còn {n.wd_before} ngày làm việc)" if n.wd_before else "")
        row = ([f"{day:%d/%m/%Y}"] if day_col else []) + [unit_name(pack, n.recipient), STAGE_VI.get(n.kind, n.kind) + detail,
                                                          obligation_title(pack, n.obligation), n.period, unit_name(pack, n.unit)]
        t.add_row(*row)
    return t


@app.command("evaluate")
def evaluate_cmd(as_of: Optional[str] = typer.Option(None, "--as-of", metavar="THỜI_ĐIỂM", help="Thời điểm đánh giá (mặc định: bây giờ)."),
                 dry_run: bool = typer.Option(False, "--dry-run", help="Chỉ xem, không ghi thông báo."),
                 as_json: bool = JsonOpt,
                 rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Đánh giá các kỳ báo cáo còn mở theo chính sách nhắc; ghi thông báo vào hộp thư đi."""
    from engine.app import services

    pack = load(rules, calendar_dir)
    moment = moment_opt(as_of, "--as-of") or now()
    s = cfg(rules, calendar_dir, db)
    rep = services.evaluate(s.database.url, pack, moment, s, dry_run=dry_run)
    if as_json:
        dump_json(rep.as_dict())
        return
    out.print(notices_table(pack, rep.notices, f"Thông báo {'sẽ tạo' if dry_run else 'cần gửi'} ngày {moment:%d/%m/%Y}"))
    verb = "Sẽ tạo" if dry_run else "Đã tạo"
    out.print(f"{verb} {rep.created if not dry_run else rep.intents} thông báo mới ({rep.intents} thông báo đến hạn, "
              f"{rep.considered} kỳ báo cáo đang mở được xét).")


def _clock_time(text: str) -> time:
    try:
        hh, mm = (int(x) for x in text.split(":"))
        return time(hh, mm)
    except ValueError:
        raise typer.BadParameter("giờ dạng HH:MM (ví dụ 07:00)", param_hint="--at") from None


@app.command("simulate")
def simulate_cmd(from_: str = typer.Option(..., "--from", metavar="NGÀY", help="Từ ngày."), to: str = typer.Option(..., "--to", metavar="NGÀY", help="Đến ngày."),
                 at: str = typer.Option("07:00", "--at", metavar="GIỜ", help="Giờ chạy đánh giá mỗi ngày."),
                 as_json: bool = JsonOpt,
                 rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Chạy thử từng ngày trên một bản sao dữ liệu: xem trước thông báo sẽ gửi khi đổi quy tắc."""
    from engine.app import services

    pack = load(rules, calendar_dir)
    start, end = date_opt(from_, "--from"), date_opt(to, "--to")
    assert start is not None and end is not None
    result = services.simulate(cfg(rules, calendar_dir, db), pack, start, end, _clock_time(at))
    if as_json:
        dump_json([{"day": d.isoformat(), "key": n.key, "stage": n.stage, "kind": n.kind, "recipient": n.recipient,
                    "obligation": n.obligation, "unit": n.unit, "period": n.period} for d, n in result])
        return
    out.print(notices_table(pack, result, f"Mô phỏng {start:%d/%m/%Y} – {end:%d/%m/%Y} (không gửi, không ghi vào dữ liệu thật)",
                            day_col=True))
    out.print(f"{len(result)} thông báo sẽ được tạo.")


@app.command("preview")
def preview_cmd(staged: Path = typer.Option(..., "--rules", metavar="THƯ_MỤC", help="Thư mục quy tắc thử: bản sao của rules/ đã sửa."),
                from_: Optional[str] = typer.Option(None, "--from", metavar="NGÀY", help="Từ ngày (mặc định: hôm nay)."),
                to: Optional[str] = typer.Option(None, "--to", metavar="NGÀY", help="Đến ngày (mặc định: 35 ngày sau ngày bắt đầu)."),
                unit: Optional[str] = typer.Option(None, "--unit", metavar="MÃ_ĐƠN_VỊ", help="Chỉ xem một đơn vị (báo cáo của đơn vị, thư gửi đơn vị)."),
                obligation: Optional[str] = typer.Option(None, "--obligation", metavar="MÃ_BÁO_CÁO", help="Chỉ xem một nghĩa vụ báo cáo."),
                details: bool = typer.Option(False, "--details", help="Liệt kê từng hạn nộp, từng thông báo thay đổi."),
                as_json: bool = JsonOpt,
                calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Xem trước thay đổi của quy tắc thử so với quy tắc đang dùng: hạn nộp thêm, dời, bỏ; thông báo thêm, bớt."""
    from engine.app import services
    from engine.app.preview import StagedRulesInvalid, default_window

    s = cfg(None, calendar_dir, db)
    start, end = default_window(now().date(), date_opt(from_, "--from"), date_opt(to, "--to"))
    try:
        result = services.preview(s, staged, start, end, unit, obligation,
                                  live=load(None, calendar_dir))   # the live pack from the cache
    except StagedRulesInvalid as exc:
        if as_json:
            dump_json({"valid": False, "staged_rules": str(staged), "errors": [e.as_dict() for e in exc.errors]})
        else:
            print_rule_errors(RulePackInvalid(exc.errors), f"Quy tắc thử {staged} không hợp lệ, chưa xem trước được")
        raise typer.Exit(1) from None
    if as_json:
        dump_json(result.as_dict())
        return
    print_preview(result, details)


def print_preview(r, details: bool = False) -> None:
    """The summary first (what a secretary needs to decide), the lists only with --details."""
    from engine.vi import fmt_date

    scope = "".join([f", đơn vị {r.unit}" if r.unit else "", f", nghĩa vụ {r.obligation}" if r.obligation else ""])
    out.print(f"Xem trước quy tắc thử {r.staged_dir} so với quy tắc đang dùng {r.live_dir}, "
              f"từ {fmt_date(r.start)} đến {fmt_date(r.end)}{scope}.")
    out.print("(Chạy trên bản sao dữ liệu: không gửi thư, không ghi vào dữ liệu thật.)")
    if r.warnings:
        out.print(f"Cảnh báo của quy tắc thử: {len(r.warnings)}", style="yellow")
        for w in r.warnings:
            out.print(f"  • {w}")
    if r.unchanged:
        out.print(f"Không có thay đổi: cùng hạn nộp và cùng {r.live_notices} thông báo như quy tắc đang dùng.",
                  style="green")
        return
    groups = r.deadline_groups()
    out.print()
    out.print(f"HẠN NỘP: thêm {len(r.deadlines_added)}, dời {len(r.deadlines_moved)}, bỏ {len(r.deadlines_removed)}",
              style="bold")
    verbs = {"added": "Thêm", "moved": "Dời", "removed": "Bỏ"}
    for g in groups:
        when = (f"hạn {fmt_date(g.old_due)} → {fmt_date(g.new_due)}" if g.change == "moved"
                else f"hạn {fmt_date(g.due)}" if g.due else "hạn khác nhau theo đơn vị")
        if g.change == "added" and (g.due or g.new_due or r.start) < r.start:
            when += " (đã qua: bị nhắc quá hạn ngay)"
        out.print(f"  • {verbs[g.change]}: {g.obligation_title} – {g.period_label}: {g.count} đơn vị, {when}")
    out.print()
    out.print(f"THÔNG BÁO: thêm {len(r.notices_added)}, bớt {len(r.notices_removed)} "
              f"(quy tắc đang dùng: {r.live_notices}, quy tắc thử: {r.staged_notices})", style="bold")
    if r.notices_added or r.notices_removed:
        by_day = Table(title="Theo ngày")
        for c in ("Ngày", "Thêm", "Bớt"):
            by_day.add_column(c, justify="right" if c != "Ngày" else "left")
        for c in r.notices_by_day():
            by_day.add_row(c.label, str(c.added or ""), str(c.removed or ""))
        out.print(by_day)
        by_rec = Table(title="Theo nơi nhận")
        for c in ("Nơi nhận", "Thêm", "Bớt"):
            by_rec.add_column(c, justify="right" if c != "Nơi nhận" else "left", overflow="fold")
        for c in r.notices_by_recipient():
            by_rec.add_row(c.label, str(c.added or ""), str(c.removed or ""))
        out.print(by_rec)
    if not details:
        out.print("Xem từng hạn nộp và từng thông báo: thêm --details; cho chương trình khác: --json.")
        return
    if r.deadlines_added or r.deadlines_removed or r.deadlines_moved:
        t = Table(title="Hạn nộp thay đổi")
        for c in ("Thay đổi", "Báo cáo", "Kỳ", "Đơn vị", "Hạn cũ", "Hạn mới"):
            t.add_column(c, overflow="fold")
        for d in r.deadlines_added:
            t.add_row("Thêm", d.obligation_title, d.period_label, d.unit_name, "", fmt_date(d.due))
        for m in r.deadlines_moved:
            t.add_row("Dời", m.after.obligation_title, m.after.period_label, m.after.unit_name,
                      fmt_date(m.before.due), fmt_date(m.after.due))
        for d in r.deadlines_removed:
            t.add_row("Bỏ", d.obligation_title, d.period_label, d.unit_name, fmt_date(d.due), "")
        out.print(t)
    for title, items in (("Thông báo thêm", r.notices_added), ("Thông báo bớt", r.notices_removed)):
        if not items:
            continue
        t = Table(title=title)
        for c in ("Ngày", "Gửi đến", "Loại", "Báo cáo", "Kỳ", "Đơn vị"):
            t.add_column(c, overflow="fold")
        for n in items:
            detail = (f" ({n.working_days_late} ngày làm việc)" if n.working_days_late
                      else f" (còn {n.working_days_before} ngày làm việc)" if n.working_days_before else "")
            t.add_row(fmt_date(n.day), n.recipient_name, n.kind_label + detail, n.obligation_title, n.period_label,
                      n.unit_name)
        out.print(t)
