"""What every `dondoc` command shares: the root app, consoles, options, settings, error reporting.

Why one error handler at the root (:class:`DondocGroup`): services raise typed errors
(:class:`~engine.app.services.ServiceError`, invalid rules, rejected imports, database failures,
Click usage errors) and the commands only print results; turning each error into one Vietnamese
message and an exit code happens here, once, so no input ends in a traceback.

Consoles print with Rich markup off: every text a user typed (unit names, sources, file names)
reaches the screen as typed; colour is given with ``style=`` or :class:`rich.text.Text`.
"""

from __future__ import annotations

import copy
import errno
import re
import sys
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer._click import exceptions as click_exc   # Typer vendors Click: its exceptions live here
from typer.core import TyperGroup

from engine.app.cli import localize
from engine.errors import RulePackInvalid
from engine.vi import WEEKDAYS

if TYPE_CHECKING:
    from engine.app.config import ConfigError, Settings
    from engine.rules_loader import RulePack

# ─── long tables: plain aligned text ────────────────────────────────────────────────────────────
LONG_TABLE_ROWS = 40    # more rows than a screen: printed as plain aligned text, one line per row

# Control characters in data (a unit name with an ESC sequence, a title with a newline) must not reach
# the terminal; each becomes one character so the cell keeps its width and a Text's spans their place.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _safe(text: str) -> str:
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(lambda m: " " if m.group() in "\t\n\r" else "\ufffd", text)


def _plain_cell(value: Any) -> tuple[str, Any] | None:
    """(text, style) of a cell that is plain text; None for any other renderable."""
    if isinstance(value, str):
        return _safe(value), None
    if isinstance(value, Text):
        return _safe(value.plain), value.style or None
    return None


def plain_table(table: Table) -> list[list[tuple[str, Any]]] | None:
    """Every row of `table` as (text, style) cells, aligned to the widest cell of each column (the
    header and a rule first); None when a cell is not text (such a table is left to Rich)."""
    cols = table.columns
    rows = [[_plain_cell(c.header) for c in cols]] if table.show_header else []
    cells = [list(c.cells) for c in cols]
    for i in range(table.row_count):
        rows.append([_plain_cell(col[i]) if i < len(col) else ("", None) for col in cells])
    if any(c is None for r in rows for c in r):
        return None
    widths = [cell_len(c[0]) for c in rows[0]] if rows else [0] * len(cols)
    lens = [[cell_len(c[0]) for c in r] for r in rows]     # type: ignore[index]
    for row in lens:
        widths = [max(a, b) for a, b in zip(widths, row)]
    out: list[list[tuple[str, Any]]] = []
    last = len(cols) - 1
    for r, row_lens in zip(rows, lens):
        line: list[tuple[str, Any]] = []
        for j, ((text, style), n) in enumerate(zip(r, row_lens)):   # type: ignore[misc]
            pad = widths[j] - n
            just = cols[j].justify
            if just == "right":
                text = " " * pad + text
            elif just == "center":
                text = " " * (pad // 2) + text + ("" if j == last else " " * (pad - pad // 2))
            elif j != last:
                text += " " * pad
            line.append((text, style))
        out.append(line)
        if table.show_header and len(out) == 1:
            out.append([("─" * w, None) for w in widths])
    return out


class DondocConsole(Console):
    """A Console on which a table longer than :data:`LONG_TABLE_ROWS` is printed as plain aligned text.

    Why: Rich lays out every cell of every row (measure, wrap, pad): 0.55 s for the 472 + 48 rows
    of `status` on the seed pack, 2 s for the 2,009 rows of a five-week `simulate`, and the cells
    it folds into a narrow column are hard to read and to grep. The plain form has the same title, columns and cells, one line per row, so nothing is cut
    and every row is shown; data is printed as text (markup is off everywhere, control characters
    replaced), styles (the status colours) are kept on a terminal. Short tables keep Rich's boxes."""

    def print(self, *objects: Any, **kwargs: Any) -> None:  # type: ignore[override]
        if len(objects) == 1 and not kwargs and isinstance(objects[0], Table) \
                and objects[0].row_count > LONG_TABLE_ROWS and not self.record:
            rows = plain_table(objects[0])
            if rows is not None:
                self._print_plain(objects[0], rows)
                return
        super().print(*objects, **kwargs)

    def _print_plain(self, table: Table, rows: list[list[tuple[str, Any]]]) -> None:
        title = _plain_cell(table.title) if table.title is not None else None
        if not self.is_terminal:       # a file or a pipe: no styles to keep, so no layout to do
            lines = [title[0]] if title else []
            lines += ["  ".join(text for text, _ in row).rstrip() for row in rows]
            self.file.write("\n".join(lines) + "\n")
            self.file.flush()
            return
        doc = Text()
        if title:
            doc.append(title[0] + "\n", style=table.title_style or "table.title")
        for i, row in enumerate(rows):
            head = table.show_header and i == 0
            for j, (text, style) in enumerate(row):
                if j:
                    doc.append("  ")
                doc.append(text, style=(table.header_style or "table.header") if head else style)
            doc.append("\n")
        super().print(doc, end="")


out = DondocConsole(soft_wrap=True, markup=False, highlight=False)
err = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)

NOW_HELP = "Thời điểm mô phỏng (yyyy-mm-dd[THH:MM]); mặc định: bây giờ (hoặc DONDOC_NOW)."
CONTEXT = {"help_option_names": ["-h", "--help"]}


class State:
    now_text: str | None = None
    settings: Settings | None = None
    db_url: str | None = None          # the database this command works on (for error messages)


STATE = State()


# ─── errors → one message and an exit code ──────────────────────────────────────────────────────
def print_rule_errors(exc: RulePackInvalid, heading: str = "Quy tắc không hợp lệ") -> None:
    err.print(f"{heading}: {len(exc.errors)} lỗi", style="bold red")
    for e in exc.errors:
        err.print(f"  • {e}")


def print_error(message: str) -> None:
    err.print(Text.assemble(("Lỗi: ", "red"), message))


_OS_ERRORS = {errno.EACCES: "không có quyền", errno.EPERM: "không có quyền", errno.ENOENT: "không tồn tại",
              errno.ENOSPC: "đĩa đầy", errno.EROFS: "hệ thống tệp chỉ đọc", errno.EISDIR: "là thư mục, cần tệp",
              errno.ENOTDIR: "không phải thư mục"}


def _usage_error(e: click_exc.UsageError) -> None:
    ctx = e.ctx
    if ctx is not None:
        err.print(ctx.get_usage())
    print_error(localize.usage_message(e))
    if ctx is not None:
        err.print(f"Xem hướng dẫn: {ctx.command_path} --help")


def report(exc: BaseException) -> int | None:
    """Print a known failure in Vietnamese and return its exit code; None for a real bug."""
    localize.install()       # usage lines and parameter labels of the messages below
    from engine import clock
    from engine.app import services
    from engine.app.config import ConfigError
    from engine.submissions import ImportRejected

    if isinstance(exc, click_exc.NoArgsIsHelpError):
        text = exc.format_message()   # Typer's Rich help was already printed when the exception was built
        if text:
            out.print(text)
        return exc.exit_code
    if isinstance(exc, click_exc.UsageError):
        _usage_error(exc)
        return exc.exit_code
    if isinstance(exc, click_exc.ClickException):
        print_error(localize.translate(exc.format_message()))
        return exc.exit_code
    if isinstance(exc, typer.Abort):
        err.print("Đã dừng.")
        return 1
    if isinstance(exc, services.ServiceError):
        print_error(exc.message)
        return exc.exit_code
    if isinstance(exc, ImportRejected):
        print_import_rejected(Path(exc.file), exc)
        return 1
    if isinstance(exc, RulePackInvalid):
        print_rule_errors(exc)
        return 1
    if isinstance(exc, ConfigError):
        print_config_error(exc)
        return 2
    if isinstance(exc, clock.BadDate):
        print_error(str(exc))
        return 2
    if services.is_unavailable(exc) and not isinstance(exc, OSError):
        url = STATE.db_url or (STATE.settings.database.url if STATE.settings else "?")
        print_error(services.describe_db_error(exc, url))
        return 2
    if isinstance(exc, OSError) and exc.filename is not None:
        why = _OS_ERRORS.get(exc.errno or 0, exc.strerror or "lỗi hệ thống")
        print_error(f"không đọc/ghi được {exc.filename}: {why}")
        return 1
    if isinstance(exc, OverflowError):
        from engine.limits import YEARS_VI

        print_error(f"ngày hoặc kỳ nằm ngoài khoảng năm hỗ trợ ({YEARS_VI})")
        return 2
    return None


def print_config_error(exc: ConfigError) -> None:
    err.print("Cấu hình không hợp lệ:", style="bold red")
    for m in exc.messages:
        err.print(f"  • {m}")


def print_import_rejected(file: Path, exc: Any) -> None:
    """Every all-or-nothing import reports its bad rows the same way."""
    err.print(f"Không nhập tệp {file}: {len(exc.errors)} dòng lỗi, chưa ghi dòng nào.", style="red")
    for e in exc.errors:
        err.print(f"  • {file}: {e}")


def _now_callback(value: Optional[str]) -> Optional[str]:
    from engine.app import services

    if value is not None:
        try:
            services.parse_moment(value, "--now")
        except services.ServiceError as exc:
            raise typer.BadParameter(exc.message.removeprefix("--now: "), param_hint="--now") from None
        STATE.now_text = value
    return value


def _now_option() -> Any:
    """A fresh `--now` parameter, built by Typer itself so it parses like every other option (once:
    building it costs 0.2 ms, times 90 commands at every start; each command gets its own copy)."""
    global _NOW_PARAM
    if _NOW_PARAM is None:
        _NOW_PARAM = _build_now_option()
    return copy.copy(_NOW_PARAM)


_NOW_PARAM: Any = None


def _build_now_option() -> Any:
    proto = typer.Typer()

    @proto.command()
    def _proto(now_after: Optional[str] = typer.Option(None, "--now", help=NOW_HELP, metavar="THỜI_ĐIỂM",
                                                       callback=_now_callback)) -> None:
        pass  # pragma: no cover

    param = typer.main.get_command(proto).params[0]
    param.expose_value = False
    return param


def _add_now_everywhere(group: TyperGroup) -> None:
    """`--now` is accepted after any subcommand too (`dondoc status --now …`), as the README promises."""
    for cmd in group.commands.values():
        if not any(p.name == "now_after" for p in cmd.params):
            cmd.params.append(_now_option())
        if isinstance(cmd, TyperGroup):
            _add_now_everywhere(cmd)


def _vietnamese_usage(cmd: Any) -> None:
    cmd.options_metavar = "[TÙY CHỌN]"
    if isinstance(cmd, TyperGroup):
        cmd.subcommand_metavar = "LỆNH [ĐỐI SỐ]..."
        for sub in cmd.commands.values():
            _vietnamese_usage(sub)


def _localize_help_on_demand() -> None:
    """Typer's help screens in Vietnamese, translated when one is about to be shown.

    Why not at start-up: the translation (:func:`localize.install`) imports typer.rich_utils (Rich's
    Markdown, tracebacks …, ≈50 ms) that a command printing its result never needs. Every help
    screen, `--help` or a group called without a command, is drawn by a Typer command's
    ``format_help``; errors are translated in :func:`report`."""
    from typer import core as tc

    for cls in (tc.TyperCommand, tc.TyperGroup):
        original = cls.__dict__.get("format_help")
        if original is None or getattr(original, "_dondoc_localized", False):
            continue

        def format_help(self: Any, ctx: Any, formatter: Any, _original: Any = original) -> None:
            localize.install()
            _original(self, ctx, formatter)

        format_help._dondoc_localized = True  # type: ignore[attr-defined]
        cls.format_help = format_help  # type: ignore[method-assign]


class DondocGroup(TyperGroup):
    """The root command: Vietnamese usage and errors, `--now` everywhere, no traceback for known failures."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        _localize_help_on_demand()
        _add_now_everywhere(self)
        _vietnamese_usage(self)
        if not standalone_mode:
            return super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, **extra)
        try:
            rv = super().main(args=args, prog_name=prog_name or "dondoc", complete_var=complete_var,
                              standalone_mode=False, **extra)
        except KeyboardInterrupt:
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - known failures become a message; bugs keep their traceback
            code = report(exc)
            if code is None:
                raise
            sys.exit(code)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(cls=DondocGroup, name="dondoc", help="dondoc – đôn đốc báo cáo thực hiện Nghị quyết 57-NQ/TW.",
                  no_args_is_help=True, add_completion=False, context_settings=CONTEXT)


def sub_app(help_text: str, **kwargs: Any) -> typer.Typer:
    """A command group (rules, calendar, kpi …) with the shared help options."""
    return typer.Typer(help=help_text, no_args_is_help=kwargs.pop("no_args_is_help", True),
                       context_settings=CONTEXT, **kwargs)


def settings() -> Settings:
    """The one configuration, read once per command (dondoc.toml + DONDOC_*)."""
    from engine.app.config import ConfigError, load_settings

    if STATE.settings is None:
        try:
            STATE.settings = load_settings()
        except ConfigError as exc:
            print_config_error(exc)
            raise typer.Exit(2) from None
    return STATE.settings


@app.callback()
def _root(now: Optional[str] = typer.Option(None, "--now", metavar="THỜI_ĐIỂM", help=NOW_HELP, envvar="DONDOC_NOW")) -> None:
    from engine.app import services

    if now:
        try:
            services.parse_moment(now, "--now")
        except services.ServiceError as exc:
            raise typer.BadParameter(exc.message.removeprefix("--now: "), param_hint="--now") from None
    STATE.now_text = now
    STATE.settings = None
    STATE.db_url = None
    settings()


# ─── helpers for commands ───────────────────────────────────────────────────────────────────────
def cfg(rules: Optional[Path] = None, calendar: Optional[Path] = None, db: Optional[str] = None) -> Settings:
    """The settings with this command's --rules/--calendar/--db applied."""
    from engine.app import services

    s = services.with_paths(services.with_database(settings(), db), rules, calendar)
    STATE.db_url = s.database.url
    return s


def now() -> datetime:
    from engine.app import services

    return services.now(STATE.now_text)


def date_opt(value: Optional[str], name: str) -> Optional[date]:
    from engine.app import services

    if value is None:
        return None
    return services.parse_date(value, name)


def moment_opt(value: Optional[str], name: str) -> Optional[datetime]:
    from engine.app import services

    if value is None:
        return None
    return services.parse_moment(value, name)


def load(rules: Optional[Path], calendar_dir: Optional[Path]) -> RulePack:
    """The pack at --rules/--calendar (or the configured one), parsed once per content (a cache on disk:
    engine.app.packcache); invalid rules are printed, exit 1."""
    from engine.app.packcache import load_pack_cached

    s = cfg(rules, calendar_dir)
    try:
        return load_pack_cached(s.rules.path, s.calendar.path)
    except RulePackInvalid as exc:
        print_rule_errors(exc)
        raise typer.Exit(1) from None


def fmt_day(d: date) -> str:
    return f"{WEEKDAYS[d.weekday()]}, {d:%d/%m/%Y}"


def unit_name(pack: RulePack, uid: str) -> str:
    return pack.units[uid].name if uid in pack.units else uid


def obligation_title(pack: RulePack, oid: str) -> str:
    return pack.obligations[oid].title if oid in pack.obligations else oid


def dump_json(data: Any) -> None:
    """JSON for scripts: dates and moments as ISO 8601 (yyyy-mm-dd, with the offset)."""
    import json

    def iso(v: Any) -> Any:
        if isinstance(v, (date, datetime)):
            return v.isoformat()
        raise TypeError(f"{type(v).__name__} is not JSON serializable")

    print(json.dumps(data, ensure_ascii=False, indent=2, default=iso))


RulesOpt = typer.Option(None, "--rules", metavar="THƯ_MỤC", help="Thư mục quy tắc (mặc định: rules/).")
CalOpt = typer.Option(None, "--calendar", metavar="THƯ_MỤC", help="Thư mục dữ liệu lịch (mặc định: calendar/).")
DbOpt = typer.Option(None, "--db", metavar="URL", help="URL cơ sở dữ liệu (mặc định: sqlite:///state.db).")
JsonOpt = typer.Option(False, "--json", help="In kết quả dạng JSON cho chương trình khác đọc.")


# Older names, kept for modules written against engine.app.cli's helpers.
_now = now
_date_opt = date_opt
_moment_opt = moment_opt
_load = load
_print_rule_errors = print_rule_errors


def _db_url(db: Optional[str]) -> str:
    return db or settings().database.url


def _session(db: Optional[str]):
    """A session on --db or the configured database (database failures are reported at the root)."""
    from engine.app import services

    return services.open_session(cfg(db=db))


def _reject_import(file: Path, exc: Any) -> None:
    print_import_rejected(file, exc)
    raise typer.Exit(1)
