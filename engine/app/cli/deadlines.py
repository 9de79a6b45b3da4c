"""`dondoc deadlines` and `dondoc calendar …`: due dates on the working calendar."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from engine.app.cli.common import (CalOpt, JsonOpt, RulesOpt, app, cfg, date_opt, dump_json, fmt_day, load, now, out,
                                   sub_app, unit_name)

if TYPE_CHECKING:
    from engine.instances import Instance
    from engine.rules_loader import RulePack

calendar_app = sub_app("Lịch làm việc và xuất lịch .ics.")
app.add_typer(calendar_app, name="calendar")


def instances_table(pack: RulePack, items: list[Instance], title: str) -> Table:
    """Deadlines with the codes `dondoc submit` and the import take (report / period, and the unit's)."""
    t = Table(title=title, show_lines=False)
    for col in ("Hạn nộp", "Báo cáo", "Kỳ", "Mã báo cáo / kỳ", "Đơn vị (mã)", "Nơi nhận", "Căn cứ"):
        t.add_column(col, overflow="fold")
    for i in items:
        ob = pack.obligations[i.obligation]
        due = fmt_day(i.due) + ("" if i.due == i.due_unrolled else f" (dời từ {i.due_unrolled:%d/%m})")
        unit = (f"{unit_name(pack, i.unit)} ({i.unit})"
                + (f" (kế thừa {', '.join(i.inherited_from)})" if i.inherited_from else ""))
        t.add_row(due, ob.title, i.period_label, codes(i.obligation, i.period), unit, unit_name(pack, i.recipient),
                  ob.basis.text())
    return t


def codes(obligation: str, period: str) -> str:
    """“khhd57-thang / 2026-10”: what --obligation and --period (or the CSV columns) take."""
    return f"{obligation} / {period}"


@app.command("deadlines")
def deadlines(from_: Optional[str] = typer.Option(None, "--from", metavar="NGÀY", help="Từ ngày (mặc định: hôm nay)."),
              to: Optional[str] = typer.Option(None, "--to", metavar="NGÀY", help="Đến ngày (mặc định: 60 ngày tới)."),
              unit: Optional[str] = typer.Option(None, "--unit", metavar="MÃ_ĐƠN_VỊ", help="Chỉ một đơn vị (mã)."),
              as_json: bool = JsonOpt,
              rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt) -> None:
    """Liệt kê hạn nộp báo cáo của các đơn vị trong một khoảng ngày."""
    from engine.app import services

    pack = load(rules, calendar_dir)
    start = date_opt(from_, "--from") or now().date()
    end = date_opt(to, "--to") or start + timedelta(days=60)
    items = services.deadlines(cfg(rules, calendar_dir), pack, start, end, unit)
    if as_json:
        dump_json([i.as_dict() for i in items])
        return
    out.print(instances_table(pack, items, f"Hạn nộp báo cáo từ {start:%d/%m/%Y} đến {end:%d/%m/%Y}"))
    out.print(f"{len(items)} hạn nộp.")


@calendar_app.command("ics")
def calendar_ics(unit: str = typer.Option(..., "--unit", metavar="MÃ_ĐƠN_VỊ", help="Mã đơn vị."),
                 from_: Optional[str] = typer.Option(None, "--from", metavar="NGÀY", help="Từ ngày (mặc định: hôm nay)."),
                 to: Optional[str] = typer.Option(None, "--to", metavar="NGÀY", help="Đến ngày (mặc định: một năm tới)."),
                 output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="TỆP", help="Tệp .ics (mặc định: <mã đơn vị>.ics)."),
                 rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt) -> None:
    """Xuất hạn nộp của một đơn vị thành tệp iCalendar (.ics) để nhập vào lịch."""
    from engine.app import services

    pack = load(rules, calendar_dir)
    moment = now()
    start = date_opt(from_, "--from") or moment.date()
    end = date_opt(to, "--to") or start + timedelta(days=366)
    target = output or Path(f"{unit}.ics")
    n = services.export_ics(cfg(rules, calendar_dir), pack, unit, start, end, moment, target)
    out.print(f"Đã ghi {n} hạn nộp vào {target}")


@calendar_app.command("days-off")
def calendar_days_off(year: int = typer.Option(..., "--year", metavar="NĂM", help="Năm (ví dụ 2026)."),
                      calendar_dir: Optional[Path] = CalOpt, as_json: bool = JsonOpt) -> None:
    """Ngày nghỉ lễ, nghỉ hoán đổi và ngày làm bù của một năm."""
    from engine.app import services

    rows = services.days_off(cfg(calendar=calendar_dir), year)
    if as_json:
        dump_json([r.as_dict() for r in rows])
        return
    t = Table(title=f"Ngày nghỉ và ngày làm bù năm {year}")
    t.add_column("Ngày")
    t.add_column("Loại")
    t.add_column("Lý do", overflow="fold")
    for r in rows:
        t.add_row(fmt_day(r.day), "Làm việc (bù)" if r.working else "Nghỉ", r.reason)
    out.print(t)
