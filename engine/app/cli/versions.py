"""`dondoc rules stage|diff|rebase|apply|history|restore|drafts|discard`: change the rules through a
draft with a version, for operators (the console's Rules pages call the same services,
engine/app/ruleversions.py)."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table
from rich.text import Text

from engine.app.cli.common import CalOpt, DbOpt, JsonOpt, RulesOpt, cfg, dump_json, now, out, print_rule_errors
from engine.app.cli.rules import print_rule_warnings, rules_app
from engine.errors import RulePackInvalid
from engine.vi import fmt_moment

if TYPE_CHECKING:
    from engine.app import ruleversions as rv

NameArg = typer.Argument(None, metavar="TÊN", help="Tên bản nháp (mặc định: ban-nhap).")
AuthorOpt = typer.Option(None, "--author", metavar="NGƯỜI", help="Người thực hiện ghi vào lịch sử (mặc định: tài khoản máy, $USER).")
ReasonOpt = typer.Option(..., "--reason", metavar="LÝ_DO", help="Lý do, bắt buộc (ví dụ: “Theo Kế hoạch số 12/KH-UBND”).")


def _author(value: Optional[str]) -> str:
    if value and value.strip():
        return value.strip()
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return "không rõ"


def _print_invalid(exc: rv.DraftInvalid) -> None:
    print_rule_errors(RulePackInvalid(exc.errors), f"Lỗi: {exc.message}")


@rules_app.command("stage")
def stage_cmd(name: Optional[str] = NameArg,
              replace: bool = typer.Option(False, "--replace", help="Tạo lại bản nháp đã có (mất các sửa đổi trong đó)."),
              author: Optional[str] = AuthorOpt,
              rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Chép bộ quy tắc đang dùng thành bản nháp để sửa (không đụng tới thư mục quy tắc đang dùng)."""
    from engine.app import ruleversions as rv

    st = rv.stage(cfg(rules, calendar_dir, db), name, _author(author), now(), replace=replace)
    out.print(Text.assemble(("✓ Đã tạo bản nháp ", "green"), (st.name, "bold"),
                            f" từ phiên bản số {st.base_number}: {st.path}"))
    out.print(f"Sửa các tệp .yaml trong thư mục trên, rồi: dondoc rules diff {st.name} (xem thay đổi), "
              f"dondoc preview --rules {st.path} (xem trước hạn nộp, thông báo), "
              f"dondoc rules apply {st.name} --reason \"Theo …\" (áp dụng).")


@rules_app.command("drafts")
def drafts_cmd(as_json: bool = JsonOpt,
               rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Liệt kê các bản nháp đang có."""
    from engine.app import ruleversions as rv

    items = rv.drafts(cfg(rules, calendar_dir, db))
    if as_json:
        dump_json([d.as_dict() for d in items])
        return
    if not items:
        out.print("Chưa có bản nháp nào.")
        return
    t = Table(title="Bản nháp quy tắc")
    for c in ("Tên", "Tạo lúc", "Người tạo", "Từ phiên bản", "Thư mục"):
        t.add_column(c, overflow="fold")
    for d in items:
        t.add_row(d.name, fmt_moment(rv.local_time(d.created_at)), d.created_by,
                  str(d.base_number or "–") + (f" (khôi phục số {d.restored_from})" if d.restored_from else ""), str(d.path))
    out.print(t)


@rules_app.command("diff")
def diff_cmd(name: Optional[str] = NameArg,
             rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """So sánh bản nháp với bộ quy tắc đang dùng (định dạng unified diff) và kiểm tra bản nháp."""
    from engine.app import ruleversions as rv

    s = cfg(rules, calendar_dir, db)
    st = rv.open_staged(s, name)
    text = rv.diff(st)
    if not text:
        out.print(f"Bản nháp “{st.name}” giống hệt bộ quy tắc đang dùng.")
    for line in text.splitlines():
        style = ("green" if line.startswith("+") and not line.startswith("+++") else
                 "red" if line.startswith("-") and not line.startswith("---") else
                 "cyan" if line.startswith("@@") else None)
        out.print(line, style=style, overflow="ignore", crop=False)
    checked = rv.check(s, st)
    if checked.valid:
        out.print(Text("✓ Bản nháp hợp lệ (dondoc rules check).", style="green"))
        print_rule_warnings(checked.warnings)
    else:
        print_rule_errors(RulePackInvalid(checked.errors), f"Bản nháp “{st.name}” chưa hợp lệ, chưa áp dụng được")


@rules_app.command("rebase")
def rebase_cmd(name: Optional[str] = NameArg,
               rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Cập nhật bản nháp lên phiên bản đang dùng mới nhất, giữ các sửa đổi của bản nháp."""
    from engine.app import ruleversions as rv

    s = cfg(rules, calendar_dir, db)
    st = rv.open_staged(s, name)
    new = rv.rebase(s, st, now())
    if new.base_hash == st.base_hash:
        out.print(f"Bản nháp “{st.name}” đã dựa trên phiên bản đang dùng (số {st.base_number}): không cần cập nhật.")
    else:
        out.print(Text.assemble(("✓ Đã cập nhật bản nháp ", "green"), (st.name, "bold"),
                                f" lên phiên bản số {new.base_number}. Xem lại: dondoc rules diff {st.name}"))


@rules_app.command("apply")
def apply_cmd(name: Optional[str] = NameArg, reason: str = ReasonOpt, author: Optional[str] = AuthorOpt,
              rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Kiểm tra rồi đưa bản nháp vào dùng (một bước, ghi phiên bản mới kèm người thực hiện và lý do)."""
    from engine.app import ruleversions as rv

    s = cfg(rules, calendar_dir, db)
    st = rv.open_staged(s, name)
    try:
        v = rv.apply(s, st, _author(author), reason, now())
    except rv.DraftInvalid as exc:
        _print_invalid(exc)
        raise typer.Exit(1) from None
    _print_applied(v)


def _print_applied(v: rv.RuleVersion) -> None:
    from engine.app import ruleversions as rv

    out.print(Text.assemble(("✓ Đã áp dụng: phiên bản số ", "green"), (str(v.number), "bold green"),
                            f" ({v.kind_vi}; {v.author}; {fmt_moment(rv.local_time(v.created_at))}). "
                            f"Tệp thay đổi: {', '.join(v.files_changed) or 'không'} "
                            f"(+{v.lines_added} −{v.lines_removed} dòng)."))
    out.print("Hệ thống đang chạy (dondoc run) tự nạp lại quy tắc mới.")


@rules_app.command("history")
def history_cmd(number: Optional[int] = typer.Argument(None, metavar="SỐ_PHIÊN_BẢN", help="Xem chi tiết một phiên bản (kèm diff)."),
                as_json: bool = JsonOpt,
                rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Lịch sử các phiên bản bộ quy tắc: ai, khi nào, lý do, tệp nào thay đổi."""
    from engine.app import ruleversions as rv

    s = cfg(rules, calendar_dir, db)
    items = rv.history(s, now())
    if number is not None:
        v = rv.version(s, number)
        if as_json:
            dump_json(v.as_dict())
            return
        out.print(f"Phiên bản số {v.number}: {v.kind_vi}; {v.author}; {fmt_moment(rv.local_time(v.created_at))}",
                  style="bold")
        out.print(f"Lý do: {v.reason or '–'}")
        for line in (v.diff or "").splitlines():
            out.print(line, overflow="ignore", crop=False)
        return
    if as_json:
        dump_json([v.as_dict() for v in items])
        return
    t = Table(title="Lịch sử phiên bản bộ quy tắc")
    for c in ("Số", "Thời điểm", "Người thực hiện", "Loại", "Lý do", "Thay đổi"):
        t.add_column(c, overflow="fold", justify="right" if c == "Số" else "left")
    for i, v in enumerate(items):
        change = (f"{', '.join(v.files_changed)} (+{v.lines_added} −{v.lines_removed})" if v.files_changed else "–")
        t.add_row(str(v.number) + (" (đang dùng)" if i == 0 else ""), fmt_moment(rv.local_time(v.created_at)),
                  v.author, v.kind_vi, v.reason, change)
    out.print(t)
    out.print("Xem một phiên bản: dondoc rules history SỐ_PHIÊN_BẢN; khôi phục: dondoc rules restore SỐ_PHIÊN_BẢN --reason \"…\".")


@rules_app.command("restore")
def restore_cmd(number: int = typer.Argument(..., metavar="SỐ_PHIÊN_BẢN", help="Số phiên bản cần khôi phục (xem dondoc rules history)."),
                reason: str = ReasonOpt, author: Optional[str] = AuthorOpt,
                rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Khôi phục một phiên bản cũ: kiểm tra như một bản nháp rồi áp dụng thành phiên bản mới."""
    from engine.app import ruleversions as rv

    s = cfg(rules, calendar_dir, db)
    try:
        v = rv.restore(s, number, _author(author), reason, now())
    except rv.DraftInvalid as exc:
        _print_invalid(exc)
        raise typer.Exit(1) from None
    _print_applied(v)


@rules_app.command("discard")
def discard_cmd(name: Optional[str] = NameArg,
                rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Bỏ một bản nháp (xóa thư mục nháp; bộ quy tắc đang dùng không đổi)."""
    from engine.app import ruleversions as rv

    s = cfg(rules, calendar_dir, db)
    rv.discard(s, name)
    out.print(f"Đã bỏ bản nháp “{rv.check_name(name)}”.")
