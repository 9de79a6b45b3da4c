"""`dondoc export tracking --xlsx FILE`: the open reports as an Excel sheet to fill in and import back."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from engine.app.cli.common import CalOpt, DbOpt, JsonOpt, RulesOpt, app, cfg, date_opt, dump_json, load, now, out, sub_app

export_app = sub_app("Xuất dữ liệu ra tệp.")
app.add_typer(export_app, name="export")


@export_app.command("tracking")
def export_tracking_cmd(xlsx: Path = typer.Option(..., "--xlsx", metavar="TỆP", help="Tệp Excel (.xlsx) sẽ ghi."),
                        from_: Optional[str] = typer.Option(None, "--from", metavar="NGÀY",
                                                            help="Hạn nộp từ ngày (mặc định: một năm trước)."),
                        to: Optional[str] = typer.Option(None, "--to", metavar="NGÀY",
                                                         help="Hạn nộp đến ngày (mặc định: 30 ngày tới)."),
                        unit: Optional[str] = typer.Option(None, "--unit", metavar="MÃ_ĐƠN_VỊ", help="Chỉ một đơn vị (mã)."),
                        rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt,
                        db: Optional[str] = DbOpt, as_json: bool = JsonOpt) -> None:
    """Xuất các báo cáo chưa nộp ra Excel, với cột “Ngày nộp”, “Số ký hiệu” để điền rồi nhập lại
    (dondoc import submissions TỆP.xlsx)."""
    from engine.app import services

    pack = load(rules, calendar_dir)
    lo, hi, items = services.export_tracking(cfg(rules, calendar_dir, db), pack, now(), xlsx,
                                             date_opt(from_, "--from"), date_opt(to, "--to"), unit)
    if as_json:
        dump_json({"file": str(xlsx), "from": lo.isoformat(), "to": hi.isoformat(), "count": len(items),
                   "items": [i.as_dict() for i in items]})
        return
    out.print(f"Đã ghi {len(items)} báo cáo chưa nộp (hạn từ {lo:%d/%m/%Y} đến {hi:%d/%m/%Y}) vào {xlsx}.")
    out.print(f"Điền “Ngày nộp” và “Số ký hiệu” của báo cáo đã nhận rồi nhập lại: dondoc import submissions {xlsx}")
