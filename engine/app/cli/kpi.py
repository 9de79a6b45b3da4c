"""`dondoc kpi …`: check, record, import, report, charts, history.

Registered on engine.cli.app when engine/cli.py's `_register_plugins()` imports this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from engine.app.cli import settings, CalOpt, DbOpt, RulesOpt, _date_opt, _load, _now, _print_rule_errors, _reject_import, _session, app, err, out
from engine.errors import RulePackInvalid
from engine.kpi.classify import STATUS_VI
from engine.kpi.loader import KpiPack, kpi_dir_of, load_kpi
from engine.rules_loader import RulePack, load_pack

kpi_app = typer.Typer(help="Chỉ tiêu (KPI) của kế hoạch: kiểm tra, ghi số liệu, báo cáo, biểu đồ.", no_args_is_help=True)
app.add_typer(kpi_app, name="kpi")

KpiOpt = typer.Option(None, "--kpi", help="Thư mục tệp chỉ tiêu (mặc định: <thư mục quy tắc>/kpi).")
_COLOURS = {"met": "green", "on_track": "cyan", "behind": "yellow", "missed": "red", "no_data": "magenta",
            "not_due": "dim"}


def _print_kpi_errors(exc: RulePackInvalid) -> None:
    err.print(f"[bold red]Tệp chỉ tiêu không hợp lệ: {len(exc.errors)} lỗi[/]")
    for e in exc.errors:
        err.print(f"  • {e}", markup=False, highlight=False)


def _load_kpi(pack: RulePack, kpi_dir: Optional[Path]) -> KpiPack:
    try:
        return load_kpi(kpi_dir_of(pack, kpi_dir), pack)
    except RulePackInvalid as exc:
        _print_kpi_errors(exc)
        raise typer.Exit(1) from None


@kpi_app.command("check")
def kpi_check(directory: Optional[Path] = typer.Argument(None, help="Thư mục quy tắc (chứa kpi/)."),
              kpi_dir: Optional[Path] = KpiOpt, calendar_dir: Optional[Path] = CalOpt,
              as_json: bool = typer.Option(False, "--json")) -> None:
    """Kiểm tra tệp chỉ tiêu (đối chiếu đơn vị, báo cáo của bộ quy tắc); thoát 0 nếu hợp lệ, 1 kèm lỗi."""
    s = settings()
    stage = "rules"
    try:
        pack = load_pack(directory or s.rules.path, calendar_dir or s.calendar.path)
        stage = "kpi"
        kpi = load_kpi(kpi_dir_of(pack, kpi_dir), pack)
    except RulePackInvalid as exc:
        if as_json:
            print(json.dumps({"valid": False, "stage": stage, "errors": [e.as_dict() for e in exc.errors]},
                             ensure_ascii=False, indent=2))
        elif stage == "rules":
            _print_rule_errors(exc)
        else:
            _print_kpi_errors(exc)
        raise typer.Exit(1) from None
    per_ms: dict[str, int] = {}
    for t in kpi.targets.values():
        per_ms[str(t.milestone.year)] = per_ms.get(str(t.milestone.year), 0) + 1
    summary = {"valid": True, "files": kpi.files, "groups": len(kpi.groups), "indicators": len(kpi.indicators),
               "targets": len(kpi.targets), "targets_per_milestone": dict(sorted(per_ms.items())),
               "not_tracked": len(kpi.not_tracked)}
    if as_json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
        return
    out.print(f"[green]✓ Tệp chỉ tiêu hợp lệ[/]: {len(kpi.files)} tệp, {len(kpi.groups)} nhóm, {len(kpi.indicators)} chỉ tiêu, "
              f"{len(kpi.targets)} mục tiêu (" + ", ".join(f"{k}: {v}" for k, v in sorted(per_ms.items())) + ").")


@kpi_app.command("record")
def kpi_record(indicator: str = typer.Option(..., "--indicator", help="Mã chỉ tiêu."),
               value: str = typer.Option(..., "--value", help="Giá trị (12.5 hoặc 12,5; có/không với chỉ tiêu có/không)."),
               as_of: str = typer.Option(..., "--as-of", help="Số liệu tính đến ngày (yyyy-mm-dd hoặc dd/mm/yyyy)."),
               source: Optional[str] = typer.Option(None, "--source", help="Nguồn: số ký hiệu báo cáo, …"),
               note: Optional[str] = typer.Option(None, "--note"),
               actor: str = typer.Option("cli", "--by", help="Người ghi nhận."),
               rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, kpi_dir: Optional[Path] = KpiOpt,
               db: Optional[str] = DbOpt) -> None:
    """Ghi nhận số liệu của một chỉ tiêu (ghi lại cùng ngày số liệu = đính chính, có lưu vết)."""
    from engine.kpi.values import KpiValueIn, parse_value, record_value
    from engine.submissions import InputError

    pack = _load(rules, calendar_dir)
    kpi = _load_kpi(pack, kpi_dir)
    day = _date_opt(as_of, "--as-of")
    now = _now()
    try:
        ind = kpi.indicators.get(indicator)
        if ind is None:
            raise InputError(f"không có chỉ tiêu “{indicator}”")
        item = KpiValueIn(indicator=indicator, value=parse_value(value, ind.unit), as_of=day, source=source, note=note)
        with _session(db) as ses:
            row, corrected = record_value(ses, kpi, item, now, actor)
    except InputError as exc:
        err.print(f"[red]Lỗi:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    from engine.kpi.classify import val_text

    verb = "Đã đính chính" if corrected else "Đã ghi nhận"
    out.print(f"{verb}: {ind.name} = {val_text(row.value, ind.unit)} (số liệu đến ngày {row.as_of:%d/%m/%Y}).", highlight=False)


@kpi_app.command("import")
def kpi_import(file: Path = typer.Argument(..., help="Tệp CSV (UTF-8, có hoặc không BOM): indicator,value,as_of[,source,note]."),
               actor: str = typer.Option("import", "--by"),
               rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, kpi_dir: Optional[Path] = KpiOpt,
               db: Optional[str] = DbOpt) -> None:
    """Nhập số liệu chỉ tiêu từ CSV: mọi dòng hợp lệ mới ghi, sai một dòng thì không ghi gì."""
    from engine.kpi.values import import_values
    from engine.submissions import ImportRejected

    if not file.is_file():
        raise typer.BadParameter(f"không tìm thấy tệp {file}", param_hint="FILE")
    pack = _load(rules, calendar_dir)
    kpi = _load_kpi(pack, kpi_dir)
    with _session(db) as ses:
        try:
            n = import_values(ses, kpi, file, _now(), actor)
        except ImportRejected as exc:
            _reject_import(file, exc)
    out.print(f"Đã nhập {n} số liệu chỉ tiêu từ {file}.")


@kpi_app.command("report")
def kpi_report(as_of: Optional[str] = typer.Option(None, "--as-of", help="Tình trạng tính đến ngày (mặc định: hôm nay)."),
               as_json: bool = typer.Option(False, "--json"),
               xlsx: Optional[Path] = typer.Option(None, "--xlsx", help="Xuất tệp Excel để gửi đi."),
               group: Optional[str] = typer.Option(None, "--group", help="Chỉ một nhóm chỉ tiêu."),
               unit: Optional[str] = typer.Option(None, "--unit", help="Chỉ các chỉ tiêu do đơn vị này chịu trách nhiệm."),
               slipping: bool = typer.Option(False, "--slipping", help="Chỉ các mục tiêu chậm, không đạt, thiếu số liệu."),
               tolerance: Optional[float] = typer.Option(None, "--tolerance", min=0, max=1,
                                                         help="Sai số cho phép so với lộ trình (0–1; mặc định theo tệp chỉ tiêu)."),
               rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, kpi_dir: Optional[Path] = KpiOpt,
               db: Optional[str] = DbOpt) -> None:
    """Tình trạng các chỉ tiêu: Đạt, Đúng tiến độ, Chậm tiến độ, Không đạt, Thiếu số liệu."""
    from engine.kpi.classify import SLIPPING, val_text
    from engine.kpi.report import build_report, write_xlsx

    pack = _load(rules, calendar_dir)
    kpi = _load_kpi(pack, kpi_dir)
    day = _date_opt(as_of, "--as-of") or _now().date()
    if group is not None and group not in kpi.groups:
        raise typer.BadParameter(f"không có nhóm “{group}” (có: {', '.join(kpi.groups)})", param_hint="--group")
    if unit is not None and unit not in pack.units:
        raise typer.BadParameter(f"không có đơn vị “{unit}”", param_hint="--unit")
    with _session(db) as ses:
        rows = build_report(ses, pack, day, kpi, tolerance)
    if group:
        rows = [r for r in rows if r.group == group]
    if unit:
        rows = [r for r in rows if r.responsible == unit or kpi.indicators[r.indicator].responsible == unit]
    if slipping:
        rows = [r for r in rows if r.status in SLIPPING]
    if xlsx is not None:
        write_xlsx(rows, xlsx, day, f"Tình hình thực hiện chỉ tiêu – {pack.info.name}")
    if as_json:
        counts = {k: sum(1 for r in rows if r.status == k) for k in STATUS_VI}
        print(json.dumps({"as_of": day.isoformat(), "counts": counts, "items": [r.as_dict() for r in rows]},
                         ensure_ascii=False, indent=2))
        return
    t = Table(title=f"Tình hình thực hiện chỉ tiêu đến {day:%d/%m/%Y}", show_lines=False)
    for col, ratio in (("Chỉ tiêu", 4), ("Mốc", 1), ("Yêu cầu", 2), ("Mới nhất", 2), ("Theo lộ trình", 2),
                       ("Tình trạng", 2), ("Đơn vị", 2)):
        t.add_column(col, overflow="fold", ratio=ratio)
    last_group = None
    for r in rows:
        if r.group != last_group:
            if last_group is not None:
                t.add_section()
            t.add_row(f"[bold]{r.group_name}[/]", "", "", "", "", "", "")
            last_group = r.group
        latest = val_text(r.latest_value, r.unit) + (f" ({r.latest_as_of:%d/%m/%Y})" if r.latest_as_of else "")
        t.add_row(r.indicator_name, f"{r.milestone:%Y}", r.requirement, latest,
                  val_text(r.expected, r.unit) if r.status in ("on_track", "behind", "no_data") else "",
                  f"[{_COLOURS[r.status]}]{r.status_vi}[/]", r.responsible_name)
    out.print(t)
    counts = {k: sum(1 for r in rows if r.status == k) for k in STATUS_VI}
    out.print(f"{len(rows)} mục tiêu: " + ", ".join(f"{STATUS_VI[k]} {v}" for k, v in counts.items() if v) + ".")
    if xlsx is not None:
        out.print(f"Đã xuất {xlsx}")


@kpi_app.command("charts")
def kpi_charts(out_dir: Path = typer.Option(..., "--out", help="Thư mục ghi ảnh PNG (một ảnh cho mỗi nhóm)."),
               as_of: Optional[str] = typer.Option(None, "--as-of"),
               group: Optional[list[str]] = typer.Option(None, "--group", help="Chỉ nhóm này (lặp lại được)."),
               tolerance: Optional[float] = typer.Option(None, "--tolerance", min=0, max=1),
               rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, kpi_dir: Optional[Path] = KpiOpt,
               db: Optional[str] = DbOpt) -> None:
    """Biểu đồ lộ trình và số liệu của từng nhóm chỉ tiêu (PNG)."""
    from engine.kpi.charts import write_charts
    from engine.kpi.classify import evaluate
    from engine.kpi.values import load_values

    pack = _load(rules, calendar_dir)
    kpi = _load_kpi(pack, kpi_dir)
    day = _date_opt(as_of, "--as-of") or _now().date()
    for g in group or []:
        if g not in kpi.groups:
            raise typer.BadParameter(f"không có nhóm “{g}” (có: {', '.join(kpi.groups)})", param_hint="--group")
    with _session(db) as ses:
        values = load_values(ses, list(kpi.indicators))
    results = evaluate(kpi, pack, values, day, tolerance)
    paths = write_charts(kpi, results, values, out_dir, day, pack.info.name, groups=group or None)
    for p in paths:
        out.print(f"Đã ghi {p}")


@kpi_app.command("history")
def kpi_history(indicator: str = typer.Option(..., "--indicator"), as_json: bool = typer.Option(False, "--json"),
                rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, kpi_dir: Optional[Path] = KpiOpt,
                db: Optional[str] = DbOpt) -> None:
    """Mọi số liệu đã ghi của một chỉ tiêu, kể cả số liệu đã được đính chính."""
    from engine.kpi.values import history

    kpi = _load_kpi(_load(rules, calendar_dir), kpi_dir)
    if indicator not in kpi.indicators:
        raise typer.BadParameter(f"không có chỉ tiêu “{indicator}”", param_hint="--indicator")
    with _session(db) as ses:
        rows = history(ses, indicator)
    data = [{"id": r.id, "value": r.value, "as_of": r.as_of.isoformat(), "source": r.source, "note": r.note,
             "active": r.active, "replaces_id": r.replaces_id, "recorded_at": r.recorded_at.isoformat(),
             "recorded_by": r.recorded_by} for r in rows]
    if as_json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    t = Table(title=f"Số liệu đã ghi: {kpi.indicators[indicator].name} ({indicator})")
    for col in ("Ngày số liệu", "Giá trị", "Nguồn", "Ghi lúc", "Người ghi", "Hiệu lực"):
        t.add_column(col, overflow="fold")
    from engine.clock import TZ

    for r in rows:
        at = r.recorded_at.astimezone(TZ) if r.recorded_at.tzinfo else r.recorded_at
        t.add_row(f"{r.as_of:%d/%m/%Y}", f"{r.value:g}", r.source or "", f"{at:%d/%m/%Y %H:%M}", r.recorded_by,
                  "đang dùng" if r.active else "đã đính chính")
    out.print(t)
