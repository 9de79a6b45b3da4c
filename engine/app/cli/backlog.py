"""`dondoc backlog`: what fell due before the tracking start, for the secretariat (never mailed)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from engine.app.cli.common import CalOpt, DbOpt, JsonOpt, RulesOpt, app, cfg, date_opt, dump_json, load, now, out

SHOWN = 200     # table rows on screen; --xlsx or --json give every item


@app.command("backlog")
def backlog_cmd(xlsx: Optional[Path] = typer.Option(None, "--xlsx", metavar="TỆP",
                                                    help="Ghi danh sách ra tệp Excel (.xlsx), kèm mã để ghi nhận."),
                since: Optional[str] = typer.Option(None, "--from", metavar="NGÀY",
                                                    help="Xét từ hạn nộp này (mặc định: tracking_start của bộ quy tắc, "
                                                         "hoặc một năm trước ngày bắt đầu theo dõi)."),
                unit: Optional[str] = typer.Option(None, "--unit", metavar="MÃ_ĐƠN_VỊ", help="Chỉ một đơn vị (liệt kê từng báo cáo)."),
                details: bool = typer.Option(False, "--details", help="Liệt kê từng báo cáo (mặc định: số báo cáo theo đơn vị)."),
                rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt,
                as_json: bool = JsonOpt) -> None:
    """Báo cáo có hạn trước ngày bắt đầu theo dõi mà chưa ghi nhận đã nộp hay được miễn (dondoc không nhắc các báo cáo này)."""
    from engine.app import services

    pack = load(rules, calendar_dir)
    info, b = services.backlog(cfg(rules, calendar_dir, db), pack, now(), date_opt(since, "--from"), unit)
    if xlsx is not None:
        from engine.backlog import write_backlog_xlsx

        if xlsx.suffix.lower() != ".xlsx":
            raise services.InvalidInput(f"--xlsx {xlsx}: tên tệp phải có đuôi .xlsx", exit_code=2)
        write_backlog_xlsx(b, xlsx, f"{pack.info.name}: báo cáo tồn trước ngày bắt đầu theo dõi")
    if as_json:
        dump_json({"installation": info.as_dict(), **b.as_dict(), "xlsx": str(xlsx) if xlsx else None})
        return
    out.print(f"Ngày cài đặt: {info.installed_on:%d/%m/%Y}. Bắt đầu theo dõi: {b.tracking_start:%d/%m/%Y} "
              f"({info.source_vi}).")
    if not b.items:
        out.print(f"Không có báo cáo nào hạn từ {b.since:%d/%m/%Y} đến trước {b.tracking_start:%d/%m/%Y} "
                  f"còn thiếu (đã ghi nhận {b.recorded}).")
    else:
        out.print(Text(f"{len(b.items)} báo cáo hạn từ {b.since:%d/%m/%Y} đến trước {b.tracking_start:%d/%m/%Y} chưa ghi "
                       f"nhận đã nộp hay được miễn ({len(b.by_unit())} đơn vị; đã ghi nhận {b.recorded}). "
                       "dondoc không nhắc các báo cáo này.", style="bold"))
        t = Table(title="Theo báo cáo")
        for c in ("Báo cáo", "Mã nghĩa vụ", "Số báo cáo", "Các kỳ"):
            t.add_column(c, overflow="fold")
        for o, title, k, periods in b.by_obligation():
            t.add_row(title, o, str(k), ", ".join(periods))
        out.print(t)
        if details or unit is not None:
            t = Table(title="Danh sách" + (f" ({SHOWN}/{len(b.items)} dòng đầu; đủ trong --xlsx)" if len(b.items) > SHOWN else ""))
            for c in ("Đơn vị", "Mã đơn vị", "Báo cáo", "Mã nghĩa vụ", "Kỳ", "Mã kỳ", "Hạn nộp"):
                t.add_column(c, overflow="fold")
            for i in b.items[:SHOWN]:
                t.add_row(i.unit_name, i.unit, i.obligation_title, i.obligation, i.period_label, i.period,
                          f"{i.due:%d/%m/%Y}")
        else:
            t = Table(title="Theo đơn vị (danh sách từng báo cáo: --unit MÃ_ĐƠN_VỊ, --details hoặc --xlsx)")
            for c in ("Đơn vị", "Mã đơn vị", "Số báo cáo"):
                t.add_column(c, overflow="fold")
            for u, name, k in b.by_unit():
                t.add_row(name, u, str(k))
        out.print(t)
        out.print("Ghi nhận báo cáo đã nhận: dondoc submit --unit MÃ_ĐƠN_VỊ --obligation MÃ_NGHĨA_VỤ --period MÃ_KỲ "
                  "--date NGÀY (hoặc dondoc import submissions TỆP). Muốn đôn đốc tiếp các báo cáo còn lại: đặt "
                  "DONDOC_TRACKING_START (hoặc [rules] tracking_start) về ngày sớm hơn.")
    if xlsx is not None:
        out.print(f"Đã ghi {xlsx}.")
