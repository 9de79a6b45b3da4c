"""`dondoc kpi …`: check, record, import, report, charts, history (registered on the root app)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table
from rich.text import Text

from engine.app.cli.common import (CalOpt, DbOpt, JsonOpt, RulesOpt, app, cfg, date_opt, dump_json, load, now, out,
                                   print_rule_errors, sub_app)
from engine.errors import RulePackInvalid

if TYPE_CHECKING:
    from engine.kpi.loader import KpiPack
    from engine.rules_loader import RulePack

kpi_app = sub_app("Chỉ tiêu (KPI) của kế hoạch: kiểm tra, ghi số liệu, báo cáo, biểu đồ.")
app.add_typer(kpi_app, name="kpi")

KpiOpt = typer.Option(None, "--kpi", metavar="THƯ_MỤC", help="Thư mục tệp chỉ tiêu (mặc định: <thư mục quy tắc>/kpi).")
_COLOURS = {"met": "green", "on_track": "cyan", "behind": "yellow", "missed": "red", "no_data": "magenta",
            "not_due": "dim"}
KPI_HEADING = "Tệp chỉ tiêu không hợp lệ"


def _load_kpi(pack: RulePack, kpi_dir: Optional[Path]) -> KpiPack:
    from engine.app import services

    try:
        return services.load_kpi_pack(pack, kpi_dir)
    except RulePackInvalid as exc:
        print_rule_errors(exc, KPI_HEADING)
        raise typer.Exit(1) from None


@kpi_app.command("check")
def kpi_check(directory: Optional[Path] = typer.Argument(None, metavar="THƯ_MỤC", help="Thư mục quy tắc (chứa kpi/)."),
              kpi_dir: Optional[Path] = KpiOpt, calendar_dir: Optional[Path] = CalOpt, as_json: bool = JsonOpt) -> None:
    """Kiểm tra tệp chỉ tiêu (đối chiếu đơn vị, báo cáo của bộ quy tắc); thoát 0 nếu hợp lệ, 1 kèm lỗi."""
    from engine.app import services

    stage = "rules"
    try:
        pack = services.load_rules(cfg(directory, calendar_dir))
        stage = "kpi"
        kpi = services.load_kpi_pack(pack, kpi_dir)
    except RulePackInvalid as exc:
        if as_json:
            dump_json({"valid": False, "stage": stage, "errors": [e.as_dict() for e in exc.errors]})
        else:
            print_rule_errors(exc, KPI_HEADING if stage == "kpi" else "Quy tắc không hợp lệ")
        raise typer.Exit(1) from None
    per_ms: dict[str, int] = {}
    for t in kpi.targets.values():
        per_ms[str(t.milestone.year)] = per_ms.get(str(t.milestone.year), 0) + 1
    summary = {"valid": True, "files": kpi.files, "groups": len(kpi.groups), "indicators": len(kpi.indicators),
               "targets": len(kpi.targets), "targets_per_milestone": dict(sorted(per_ms.items())),
               "not_tracked": len(kpi.not_tracked)}
    if as_json:
        dump_json(summary)
        return
    out.print(Text.assemble(("✓ Tệp chỉ tiêu hợp lệ", "green"),
                            f": {len(kpi.files)} tệp, {len(kpi.groups)} nhóm, {len(kpi.indicators)} chỉ tiêu, "
                            f"{len(kpi.targets)} mục tiêu (" + ", ".join(f"{k}: {v}" for k, v in sorted(per_ms.items())) + ")."))


@kpi_app.command("record")
def kpi_record(indicator: str = typer.Option(..., "--indicator", metavar="MÃ_CHỈ_TIÊU", help="Mã chỉ tiêu."),
               value: str = typer.Option(..., "--value", metavar="GIÁ_TRỊ", help="Giá trị (12.5 hoặc 12,5; có/không với chỉ tiêu có/không)."),
               as_of: str = typer.Option(..., "--as-of", metavar="NGÀY", help="Số liệu tính đến ngày (yyyy-mm-dd hoặc dd/mm/yyyy)."),
               source: Optional[str] = typer.Option(None, "--source", metavar="NGUỒN", help="Nguồn: số ký hiệu báo cáo, …"),
               note: Optional[str] = typer.Option(None, "--note", metavar="GHI_CHÚ", help="Ghi chú."),
               actor: str = typer.Option("cli", "--by", metavar="NGƯỜI_GHI", help="Người ghi nhận."),
               rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, kpi_dir: Optional[Path] = KpiOpt,
               db: Optional[str] = DbOpt) -> None:
    """Ghi nhận số liệu của một chỉ tiêu (ghi lại cùng ngày số liệu = đính chính, có lưu vết)."""
    from engine.app import services
    from engine.kpi.classify import val_text

    pack = load(rules, calendar_dir)
    kpi = _load_kpi(pack, kpi_dir)
    day = date_opt(as_of, "--as-of")
    assert day is not None
    r = services.kpi_record(cfg(rules, calendar_dir, db), kpi, indicator, value, day, now(), actor, source, note)
    verb = "Đã đính chính" if r.corrected else "Đã ghi nhận"
    out.print(f"{verb}: {r.indicator_name} = {val_text(r.value, r.unit)} (số liệu đến ngày {r.as_of:%d/%m/%Y}).")


@kpi_app.command("import")
def kpi_import(file: Path = typer.Argument(..., metavar="TỆP_CSV",
                                help="Tệp CSV (UTF-8, có hoặc không BOM), các cột: chi_tieu, gia_tri, ngay_so_lieu[, nguon, ghi_chu]."),
               actor: str = typer.Option("import", "--by", metavar="NGƯỜI_GHI", help="Người ghi nhận."),
               rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, kpi_dir: Optional[Path] = KpiOpt,
               db: Optional[str] = DbOpt) -> None:
    """Nhập số liệu chỉ tiêu từ CSV: mọi dòng hợp lệ mới ghi, sai một dòng thì không ghi gì."""
    from engine.app import services

    pack = load(rules, calendar_dir)
    kpi = _load_kpi(pack, kpi_dir)
    n = services.kpi_import(cfg(rules, calendar_dir, db), kpi, file, now(), actor)
    out.print(f"Đã nhập {n} số liệu chỉ tiêu từ {file}.")


@kpi_app.command("report")
def kpi_report(as_of: Optional[str] = typer.Option(None, "--as-of", metavar="NGÀY", help="Tình trạng tính đến ngày (mặc định: hôm nay)."),
               as_json: bool = JsonOpt,
               xlsx: Optional[Path] = typer.Option(None, "--xlsx", metavar="TỆP", help="Xuất tệp Excel để gửi đi."),
               group: Optional[str] = typer.Option(None, "--group", metavar="MÃ_NHÓM", help="Chỉ một nhóm chỉ tiêu."),
               unit: Optional[str] = typer.Option(None, "--unit", metavar="MÃ_ĐƠN_VỊ", help="Chỉ các chỉ tiêu do đơn vị này chịu trách nhiệm."),
               slipping: bool = typer.Option(False, "--slipping", help="Chỉ các mục tiêu chậm, không đạt, thiếu số liệu."),
               tolerance: Optional[float] = typer.Option(None, "--tolerance", metavar="TỶ_LỆ", min=0, max=1,
                                                         help="Sai số cho phép so với lộ trình (0–1; mặc định theo tệp chỉ tiêu)."),
               rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, kpi_dir: Optional[Path] = KpiOpt,
               db: Optional[str] = DbOpt) -> None:
    """Tình trạng các chỉ tiêu: Đạt, Đúng tiến độ, Chậm tiến độ, Không đạt, Thiếu số liệu."""
    from engine.app import services
    from engine.kpi.classify import STATUS_VI
    from engine.kpi.classify import val_text
    from engine.kpi.report import write_xlsx

    pack = load(rules, calendar_dir)
    kpi = _load_kpi(pack, kpi_dir)
    day = date_opt(as_of, "--as-of") or now().date()
    rows = services.kpi_report(cfg(rules, calendar_dir, db), pack, kpi, day, tolerance=tolerance, group=group, unit=unit,
                               slipping=slipping)
    if xlsx is not None:
        write_xlsx(rows, xlsx, day, f"Tình hình thực hiện chỉ tiêu – {pack.info.name}")
    counts = {k: sum(1 for r in rows if r.status == k) for k in STATUS_VI}
    if as_json:
        dump_json({"as_of": day.isoformat(), "counts": counts, "items": [r.as_dict() for r in rows]})
        return
    t = Table(title=f"Tình hình thực hiện chỉ tiêu đến {day:%d/%m/%Y}", show_lines=False)
    for col, ratio in (("Chỉ tiêu", 4), ("Mốc", 1), ("Yêu cầu", 2), ("Số liệu quyết định", 2), ("Theo lộ trình", 2),
                       ("Tình trạng", 2), ("Đơn vị", 2)):
        t.add_column(col, overflow="fold", ratio=ratio)
    last_group = None
    for r in rows:
        if r.group != last_group:
            if last_group is not None:
                t.add_section()
            t.add_row(Text(r.group_name, style="bold"), "", "", "", "", "", "")
            last_group = r.group
        # the value the status rests on (the one the chart rings), not merely the newest one
        judged = val_text(r.judged_value, r.unit) + (f" ({r.judged_as_of:%d/%m/%Y})" if r.judged_as_of else "")
        t.add_row(r.indicator_name, f"{r.milestone:%Y}", r.requirement, judged,
                  val_text(r.expected, r.unit) if r.status in ("on_track", "behind", "no_data") else "",
                  Text(r.status_vi, style=_COLOURS[r.status]), r.responsible_name)
    out.print(t)
    out.print(f"{len(rows)} mục tiêu: " + ", ".join(f"{STATUS_VI[k]} {v}" for k, v in counts.items() if v) + ".")
    if xlsx is not None:
        out.print(f"Đã xuất {xlsx}")


@kpi_app.command("charts")
def kpi_charts(out_dir: Path = typer.Option(..., "--out", metavar="THƯ_MỤC", help="Thư mục ghi ảnh PNG (một ảnh cho mỗi nhóm)."),
               as_of: Optional[str] = typer.Option(None, "--as-of", metavar="NGÀY", help="Tính đến ngày (mặc định: hôm nay)."),
               group: Optional[list[str]] = typer.Option(None, "--group", metavar="MÃ_NHÓM", help="Chỉ nhóm này (lặp lại được)."),
               tolerance: Optional[float] = typer.Option(None, "--tolerance", metavar="TỶ_LỆ", min=0, max=1, help="Sai số cho phép (0–1)."),
               rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, kpi_dir: Optional[Path] = KpiOpt,
               db: Optional[str] = DbOpt) -> None:
    """Biểu đồ lộ trình và số liệu của từng nhóm chỉ tiêu (PNG)."""
    from engine.app import services

    pack = load(rules, calendar_dir)
    kpi = _load_kpi(pack, kpi_dir)
    day = date_opt(as_of, "--as-of") or now().date()
    for p in services.kpi_charts(cfg(rules, calendar_dir, db), pack, kpi, day, out_dir, group or None, tolerance):
        out.print(f"Đã ghi {p}")


@kpi_app.command("history")
def kpi_history(indicator: str = typer.Option(..., "--indicator", metavar="MÃ_CHỈ_TIÊU", help="Mã chỉ tiêu."), as_json: bool = JsonOpt,
                rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, kpi_dir: Optional[Path] = KpiOpt,
                db: Optional[str] = DbOpt) -> None:
    """Mọi số liệu đã ghi của một chỉ tiêu, kể cả số liệu đã được đính chính."""
    from engine.app import services
    from engine.clock import TZ

    kpi = _load_kpi(load(rules, calendar_dir), kpi_dir)
    rows = services.kpi_history(cfg(rules, calendar_dir, db), kpi, indicator)
    if as_json:
        dump_json([{"id": r.id, "value": r.value, "as_of": r.as_of.isoformat(), "source": r.source, "note": r.note,
                    "active": r.active, "replaces_id": r.replaces_id, "recorded_at": r.recorded_at.isoformat(),
                    "recorded_by": r.recorded_by} for r in rows])
        return
    t = Table(title=f"Số liệu đã ghi: {kpi.indicators[indicator].name} ({indicator})")
    for col in ("Ngày số liệu", "Giá trị", "Nguồn", "Ghi lúc", "Người ghi", "Hiệu lực"):
        t.add_column(col, overflow="fold")
    for r in rows:
        at = r.recorded_at.astimezone(TZ) if r.recorded_at.tzinfo else r.recorded_at
        t.add_row(f"{r.as_of:%d/%m/%Y}", f"{r.value:g}", r.source or "", f"{at:%d/%m/%Y %H:%M}", r.recorded_by,
                  "đang dùng" if r.active else "đã đính chính")
    out.print(t)
