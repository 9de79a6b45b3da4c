"""`dondoc rules check`: the rule pack, KPI files and mail templates, checked together."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from engine.app.cli.common import CalOpt, JsonOpt, app, cfg, dump_json, out, print_rule_errors, sub_app
from engine.errors import RulePackInvalid

rules_app = sub_app("Quy tắc (rules/*.yaml).")
app.add_typer(rules_app, name="rules")


@rules_app.command("check")
def rules_check(directory: Optional[Path] = typer.Argument(None, metavar="THƯ_MỤC", help="Thư mục quy tắc (mặc định: rules/)."),
                calendar_dir: Optional[Path] = CalOpt,
                templates: Optional[Path] = typer.Option(None, "--templates", metavar="THƯ_MỤC", help="Thư mục mẫu thư do Văn phòng sửa."),
                as_json: bool = JsonOpt) -> None:
    """Kiểm tra bộ quy tắc, chỉ tiêu và mẫu thư; thoát 0 nếu hợp lệ, 1 kèm danh sách lỗi (tệp, dòng, lý do)."""
    from engine.app import services

    result = services.check_rules(cfg(directory, calendar_dir), templates)
    warnings = result.pack.warnings if result.pack is not None else []
    if as_json:
        dump_json({**result.summary(), "warnings": [w.as_dict() for w in warnings]})
    elif not result.valid:
        print_rule_errors(RulePackInvalid(result.errors))
    else:
        p = result.pack
        assert p is not None
        out.print(Text.assemble(("✓ Bộ quy tắc hợp lệ", "green"),
                                f" ({p.info.name}): {len(p.files)} tệp, {len(p.units)} đơn vị, {len(p.groups)} nhóm, "
                                f"{len(p.obligations)} nghĩa vụ báo cáo, {len(p.policies)} chính sách nhắc."))
        print_rule_warnings(warnings)
    if not result.valid:
        raise typer.Exit(1)


def print_rule_warnings(warnings: list) -> None:
    """Warnings do not make the pack invalid (exit 0); they name what is probably a slip."""
    if warnings:
        out.print(f"Cảnh báo: {len(warnings)}", style="yellow")
        for w in warnings:
            out.print(f"  • {w}")
