"""`dondoc sync|submit|waive|import submissions|status`: the state of each report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from engine.app.cli.deadlines import codes
from engine.app.cli.common import (CalOpt, DbOpt, JsonOpt, RulesOpt, app, cfg, date_opt, dump_json, load, now,
                                   obligation_title, out, sub_app, unit_name)

import_app = sub_app("Nhập dữ liệu từ tệp.")
app.add_typer(import_app, name="import")

STATUS_COLOURS = {"done_on_time": "green", "done_late": "yellow", "overdue": "red", "due_soon": "magenta",
                  "in_progress": "cyan", "waived": "dim"}


@app.command("sync")
def sync_cmd(rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt,
             as_json: bool = JsonOpt) -> None:
    """Đồng bộ danh sách kỳ báo cáo trong cơ sở dữ liệu với bộ quy tắc hiện hành."""
    from engine.app import services

    pack = load(rules, calendar_dir)
    rep = services.sync(cfg(rules, calendar_dir, db), pack, now())
    if as_json:
        print(json.dumps(rep))
    else:
        out.print(f"Đồng bộ xong: thêm {rep['inserted']}, dời {rep['moved']}, ngừng theo dõi {rep['retired']}, "
                  f"chuyển cho đơn vị kế thừa {rep['reassigned']}.")


@app.command("submit")
def submit_cmd(unit: str = typer.Option(..., "--unit", metavar="MÃ_ĐƠN_VỊ", help="Mã đơn vị nộp."),
               obligation: str = typer.Option(..., "--obligation", metavar="MÃ_BÁO_CÁO", help="Mã báo cáo (nghĩa vụ báo cáo)."),
               period: str = typer.Option(..., "--period", metavar="KỲ", help="Kỳ: 2026-01, 2026-Q1, 2026-H1, 2026, once …"),
               on: Optional[str] = typer.Option(None, "--date", metavar="NGÀY", help="Ngày nộp (mặc định: hôm nay)."),
               ref: Optional[str] = typer.Option(None, "--ref", metavar="SỐ_KÝ_HIỆU", help="Số ký hiệu văn bản."),
               note: Optional[str] = typer.Option(None, "--note", metavar="GHI_CHÚ", help="Ghi chú."),
               actor: str = typer.Option("cli", "--by", metavar="NGƯỜI_GHI", help="Người ghi nhận."),
               rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Ghi nhận một đơn vị đã nộp báo cáo (nộp lại = đính chính, có lưu vết)."""
    from engine.app import services

    pack = load(rules, calendar_dir)
    moment = now()
    day = date_opt(on, "--date") or moment.date()
    r = services.submit(cfg(rules, calendar_dir, db), pack, obligation, unit, period, day, moment, actor, ref, note)
    late = "đúng hạn" if r.on_time else "quá hạn"
    out.print(f"Đã ghi nhận: {r.unit_name} nộp {r.obligation_title} – {r.period_label} "
              f"ngày {r.submitted_on:%d/%m/%Y} ({late}, hạn {r.due:%d/%m/%Y}).")


@app.command("waive")
def waive_cmd(unit: str = typer.Option(..., "--unit", metavar="MÃ_ĐƠN_VỊ", help="Mã đơn vị."),
              obligation: str = typer.Option(..., "--obligation", metavar="MÃ_BÁO_CÁO", help="Mã báo cáo."),
              period: str = typer.Option(..., "--period", metavar="KỲ", help="Kỳ báo cáo."),
              reason: str = typer.Option("", "--reason", metavar="LÝ_DO", help="Lý do miễn nộp (bắt buộc)."),
              revoke: bool = typer.Option(False, "--revoke", help="Hủy quyết định miễn nộp."),
              actor: str = typer.Option("cli", "--by", metavar="NGƯỜI_GHI", help="Người ghi nhận."),
              rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Miễn nộp một kỳ báo cáo cho một đơn vị (bắt buộc ghi lý do)."""
    from engine.app import services

    pack = load(rules, calendar_dir)
    services.waive(cfg(rules, calendar_dir, db), pack, obligation, unit, period, reason, now(), actor, revoke)
    out.print("Đã hủy miễn nộp." if revoke else "Đã ghi nhận miễn nộp.")


@import_app.command("submissions")
def import_submissions_cmd(file: Path = typer.Argument(..., metavar="TỆP_CSV_HOẶC_XLSX",
                                                       help="Tệp CSV (UTF-8, có hoặc không BOM) hoặc Excel .xlsx "
                                                            "(bảng theo dõi của dondoc export tracking)."),
                           actor: str = typer.Option("import", "--by", metavar="NGƯỜI_GHI", help="Người ghi nhận."),
                           rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt,
                           db: Optional[str] = DbOpt, as_json: bool = JsonOpt) -> None:
    """Nhập danh sách báo cáo đã nộp từ CSV hoặc Excel: sai một dòng thì không ghi gì; nhập lại cùng tệp không ghi thêm gì."""
    from engine.app import services

    pack = load(rules, calendar_dir)
    r = services.import_submissions(cfg(rules, calendar_dir, db), pack, file, now(), actor)
    if as_json:
        dump_json({"file": str(file), **r.as_dict()})
        return
    skipped = f" Bỏ qua {r.skipped} dòng chưa ghi ngày nộp." if r.skipped else ""
    if not r.written:
        out.print(f"Không thay đổi: {r.unchanged} báo cáo đã có trong {file}.{skipped}" if r.unchanged
                  else f"Không thay đổi: {file} không có báo cáo nào ghi ngày nộp.{skipped}")
        return
    parts = [f"ghi nhận mới {r.submitted}"] + ([f"đính chính {r.corrected} (có lưu vết)"] if r.corrected else [])
    same = f"; {r.unchanged} báo cáo đã có, không thay đổi" if r.unchanged else ""
    out.print(f"Đã nhập {r.written} báo cáo đã nộp từ {file} ({', '.join(parts)}{same}).{skipped}")


@app.command("status")
def status_cmd(as_of: Optional[str] = typer.Option(None, "--as-of", metavar="NGÀY", help="Tình trạng tính đến ngày (mặc định: hôm nay)."),
               unit: Optional[str] = typer.Option(None, "--unit", metavar="MÃ_ĐƠN_VỊ", help="Chỉ một đơn vị (mã)."),
               all_: bool = typer.Option(False, "--all", help="Cả các kỳ chưa đến hạn."),
               as_json: bool = JsonOpt,
               rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Tình trạng nộp báo cáo: đúng hạn, quá hạn, sắp đến hạn …; và tỷ lệ đúng hạn của từng đơn vị."""
    from engine.app import services

    pack = load(rules, calendar_dir)
    res = services.status(cfg(rules, calendar_dir, db), pack, now(), date_opt(as_of, "--as-of"), unit, include_future=all_)
    if as_json:
        dump_json(res.as_dict())
        return
    t = Table(title=f"Tình trạng nộp báo cáo đến {res.as_of:%d/%m/%Y}")
    for col in ("Hạn nộp", "Báo cáo", "Kỳ", "Mã báo cáo / kỳ", "Đơn vị (mã)", "Tình trạng"):
        t.add_column(col, overflow="fold")
    for l in res.lines:
        extra = f" ({l.wd_late} ngày làm việc)" if l.wd_late else ""
        t.add_row(f"{l.due:%d/%m/%Y}", obligation_title(pack, l.obligation), l.period_label,
                  codes(l.obligation, l.period), f"{unit_name(pack, l.unit)} ({l.unit})",
                  Text(l.status_vi + extra, style=STATUS_COLOURS[l.status]))
    out.print(t)
    r = Table(title="Tỷ lệ nộp đúng hạn theo đơn vị")
    for col in ("Đơn vị", "Đến hạn", "Đúng hạn", "Quá hạn", "Chưa nộp", "Tỷ lệ đúng hạn"):
        r.add_column(col)
    for uid, a in sorted(res.rates.items(), key=lambda kv: (kv[1]["on_time_rate"] or 0)):
        rate = a["on_time_rate"]
        r.add_row(unit_name(pack, uid), str(a["due"]), str(a["on_time"]), str(a["late"]), str(a["missing"]),
                  f"{rate:.0%}" if isinstance(rate, float) else "–")
    out.print(r)
