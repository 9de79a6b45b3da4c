"""`dondoc evaluate` and `dondoc simulate`: which notices are due, now or on each coming day."""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from engine.app import services
from engine.app.cli.common import (CalOpt, DbOpt, JsonOpt, RulesOpt, app, cfg, date_opt, dump_json, load,
                                   moment_opt, now, obligation_title, out, unit_name)
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
def evaluate_cmd(as_of: Optional[str] = typer.Option(None, "--as-of", help="Thời điểm đánh giá (mặc định: bây giờ)."),
                 dry_run: bool = typer.Option(False, "--dry-run", help="Chỉ xem, không ghi thông báo."),
                 as_json: bool = JsonOpt,
                 rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Đánh giá các kỳ báo cáo còn mở theo chính sách nhắc; ghi thông báo vào hộp thư đi."""
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
def simulate_cmd(from_: str = typer.Option(..., "--from", help="Từ ngày."), to: str = typer.Option(..., "--to", help="Đến ngày."),
                 at: str = typer.Option("07:00", "--at", help="Giờ chạy đánh giá mỗi ngày."),
                 as_json: bool = JsonOpt,
                 rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Chạy thử từng ngày trên một bản sao dữ liệu: xem trước thông báo sẽ gửi khi đổi quy tắc."""
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
