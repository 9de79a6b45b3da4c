"""Vietnamese for what Typer (and the Click it vendors, ``typer._click``) prints by itself.

Typer ≥ 0.25 vendors Click with its texts written as English f-strings (no gettext), so they cannot
be translated by a catalogue. Instead: usage errors are reworded here from the exception's fields
(:func:`usage_message`), the remaining English sentences are matched by pattern (:data:`PATTERNS`),
and the help screen's fixed words are set once by :func:`install` (panel titles, "Usage:", the help
option's text, type labels such as ``<str>``). tests/test_cli_errors.py and tests/test_cli_vietnamese.py
check that no English reaches the user.
"""

from __future__ import annotations

import re
from typing import Any

HELP_TEXT = "Hiện hướng dẫn này rồi thoát."

_TYPES = {"integer": "số nguyên", "int": "số nguyên", "float": "số", "number": "số", "boolean": "giá trị có/không",
          "bool": "giá trị có/không", "text": "chuỗi", "str": "chuỗi", "string": "chuỗi", "path": "đường dẫn",
          "choice": "lựa chọn", "datetime": "ngày giờ", "date": "ngày", "list": "danh sách"}
_PATH_KINDS = {"file": "tệp", "dir": "thư mục", "directory": "thư mục", "path": "đường dẫn"}

# English sentence → Vietnamese, for messages built inside Typer/Click (first match wins).
PATTERNS: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"^Input should be a valid (\w+)\b.*$"),
     lambda m: f"không phải {_TYPES.get(m.group(1).lower(), m.group(1))} hợp lệ"),
    (re.compile(r"^Input should be (greater|less) than( or equal to)? (.+?)\.?$"),
     lambda m: f"phải {'lớn' if m.group(1) == 'greater' else 'nhỏ'} hơn{' hoặc bằng' if m.group(2) else ''} {m.group(3)}"),
    (re.compile(r"^Value (.+?) is not a valid (\w+)\.?$"),
     lambda m: f"{m.group(1)} không phải {_TYPES.get(m.group(2).lower(), m.group(2))} hợp lệ"),
    (re.compile(r"^(.+?) is not a valid (\w+)\.?$"),
     lambda m: f"{m.group(1)} không phải {_TYPES.get(m.group(2).lower(), m.group(2))} hợp lệ"),
    (re.compile(r"^(.+?) is not in the range (.+?)\.?$"), lambda m: f"{m.group(1)} nằm ngoài khoảng {m.group(2)}"),
    (re.compile(r"^(.+?) is not one of (.+?)\.?$"), lambda m: f"{m.group(1)} không phải một trong {m.group(2)}"),
    (re.compile(r"^Input should be a finite number\b.*$"), lambda m: "phải là một số hữu hạn"),
    (re.compile(r"^Got unexpected extra argument(?:\(s\)|s)? \((.*)\)$"), lambda m: f"thừa đối số: {m.group(1)}"),
    (re.compile(r"^(file|dir|directory|path) (.+?) does not exist\.?$", re.I),
     lambda m: f"{_PATH_KINDS[m.group(1).lower()]} {m.group(2)} không tồn tại"),
    (re.compile(r"^(file|dir|directory|path) (.+?) is a file\.?$", re.I), lambda m: f"{m.group(2)} là tệp, cần thư mục"),
    (re.compile(r"^(file|dir|directory|path) (.+?) is a directory\.?$", re.I), lambda m: f"{m.group(2)} là thư mục, cần tệp"),
    (re.compile(r"^(file|dir|directory|path) (.+?) is not (readable|writable)\.?$", re.I),
     lambda m: f"không có quyền {'đọc' if m.group(3) == 'readable' else 'ghi'} {m.group(2)}"),
    (re.compile(r"^Could not open file '?(.+?)'?: (.*)$"), lambda m: f"không mở được tệp {m.group(1)}: {m.group(2)}"),
    (re.compile(r"^Value must be an iterable\.?$"), lambda m: "cần một danh sách giá trị"),
    (re.compile(r"^Argument '?(.+?)'? takes (\d+) values\.?$"), lambda m: f"đối số {m.group(1)} cần {m.group(2)} giá trị"),
    (re.compile(r"^No such command '?(.+?)'?\.?$"), lambda m: f"không có lệnh “{m.group(1)}”"),
    (re.compile(r"^Missing command\.?$"), lambda m: "thiếu tên lệnh"),
    (re.compile(r"^Option '?(.+?)'? requires an argument\.?$"), lambda m: f"tùy chọn {m.group(1)} cần một giá trị"),
    (re.compile(r"^Option '?(.+?)'? requires (\d+) arguments\.?$"), lambda m: f"tùy chọn {m.group(1)} cần {m.group(2)} giá trị"),
    (re.compile(r"^Option '?(.+?)'? does not take a value\.?$"), lambda m: f"tùy chọn {m.group(1)} không nhận giá trị"),
    (re.compile(r"^No such option:? '?(.+?)'?\.?$"), lambda m: f"không có tùy chọn {m.group(1)}"),
]


def translate(text: str) -> str:
    text = text.strip()
    for pat, repl in PATTERNS:
        m = pat.match(text)
        if m:
            return repl(m)
    return text


def _param_label(param: Any) -> str:
    if param is None:
        return ""
    opts = [o for o in (getattr(param, "opts", None) or []) if o.startswith("--")] or list(getattr(param, "opts", None) or [])
    if getattr(param, "param_type_name", "") == "argument" or not opts:
        return (getattr(param, "metavar", None) or getattr(param, "name", "") or "").upper()
    return " / ".join(opts)


def usage_message(exc: Exception) -> str:
    """The Vietnamese sentence for a usage error raised by Typer/Click, from its fields."""
    from typer._click import exceptions as ce

    if isinstance(exc, ce.NoSuchOption):
        msg = f"không có tùy chọn {exc.option_name}"
        if exc.possibilities:
            msg += "; có phải ý bạn là " + ", ".join(sorted(exc.possibilities)) + "?"
        return msg
    if isinstance(exc, ce.MissingParameter):
        param = exc.param
        label = _param_label(param) or (exc.param_hint if isinstance(exc.param_hint, str) else "")
        kind = getattr(param, "param_type_name", "") or exc.param_type or "option"
        choices = _choices(param)
        tail = f" (chọn một trong: {choices})" if choices else ""
        if kind == "argument":
            return f"thiếu đối số bắt buộc {label}{tail}"
        return f"thiếu tùy chọn bắt buộc {label}{tail}"
    if isinstance(exc, ce.BadParameter):
        hint = exc.param_hint if isinstance(exc.param_hint, str) else _param_label(exc.param)
        text = translate(exc.message)
        return f"giá trị không hợp lệ cho {hint}: {text}" if hint else f"giá trị không hợp lệ: {text}"
    return translate(getattr(exc, "message", None) or str(exc))


def _choices(param: Any) -> str:
    """The allowed values of a choice parameter, comma-separated ("" for other parameters)."""
    desc = getattr(param, "type_descriptor", None)
    if desc is None or not desc.is_choice or not desc.choices:
        return ""
    return ", ".join(str(getattr(c, "value", c)) for c in desc.choices)


# Type labels shown in help instead of Typer's <str>, <int>, <float range>, <path> …
# (an option with its own metavar, e.g. MÃ_ĐƠN_VỊ, shows that instead; a switch shows nothing).
_LABELS = {bool: "CÓ/KHÔNG", int: "SỐ_NGUYÊN", float: "SỐ", str: "CHUỖI"}


def type_label(param: Any) -> str:
    """The Vietnamese label of a Typer parameter's value type, e.g. SỐ_NGUYÊN, TỆP, a|b|c."""
    from datetime import date, datetime
    from typing import get_args, get_origin

    desc = param.type_descriptor
    if desc.is_choice:
        label = "|".join(str(getattr(c, "value", c)) for c in desc.choices or ())
    elif desc.is_path or desc.is_file:
        label = {"file": "TỆP", "dir": "THƯ_MỤC"}.get(desc.path_type, "ĐƯỜNG_DẪN")
    else:
        annotation = desc.annotation
        if get_origin(annotation) in (list, tuple):
            args = [a for a in get_args(annotation) if a is not Ellipsis]
            annotation = args[0] if args else str
        if annotation is datetime:
            label = "NGÀY_GIỜ"
        elif annotation is date:
            label = "NGÀY"
        else:
            label = _LABELS.get(annotation, "GIÁ_TRỊ") if isinstance(annotation, type) else "GIÁ_TRỊ"
    if desc.is_list or getattr(param, "multiple", False) or getattr(param, "nargs", 1) != 1:
        label += "..."
    return label


_installed = False


def install() -> None:
    """Set the help screen's fixed words to Vietnamese (idempotent)."""
    global _installed
    if _installed:
        return
    import typer.rich_utils as ru
    from typer._click import core as cc
    from typer._click import formatting as cf

    ru.DEPRECATED_STRING = "(không còn dùng) "
    ru.DEFAULT_STRING = "[mặc định: {}]"
    ru.ENVVAR_STRING = "[biến môi trường: {}]"
    ru.REQUIRED_LONG_STRING = "[bắt buộc]"
    ru.ARGUMENTS_PANEL_TITLE = "Đối số"
    ru.OPTIONS_PANEL_TITLE = "Tùy chọn"
    ru.COMMANDS_PANEL_TITLE = "Lệnh"
    ru.ERRORS_PANEL_TITLE = "Lỗi"
    ru.ABORTED_TEXT = "Đã dừng."
    ru.RICH_HELP = "Xem hướng dẫn: [blue]{command_path} {help_option}[/]"

    write_usage = cf.HelpFormatter.write_usage

    def write_usage_vi(self: Any, prog: str, args: str = "", prefix: str | None = None) -> None:
        write_usage(self, prog, args, "Cách dùng: " if prefix is None else prefix)

    cf.HelpFormatter.write_usage = write_usage_vi  # type: ignore[method-assign]

    get_help_option = cc.Command.get_help_option

    def get_help_option_vi(self: Any, ctx: Any) -> Any:
        opt = get_help_option(self, ctx)
        if opt is not None:
            opt.help = HELP_TEXT
        return opt

    cc.Command.get_help_option = get_help_option_vi  # type: ignore[method-assign]

    from typer import core as tc

    def display_type_vi(self: Any, ctx: Any) -> str:
        return type_label(self)

    def option_type_vi(self: Any, ctx: Any) -> str | None:
        if self.metavar is not None:
            return self.metavar
        if self.is_flag and not self.count:
            return None   # a switch (--json, --help) takes no value
        return type_label(self)

    def argument_type_vi(self: Any, ctx: Any) -> str | None:
        return None if self.metavar is not None else type_label(self)   # the metavar already names it

    def number_range_vi(lo: float | None, hi: float | None) -> str | None:
        from engine.vi import fmt_num

        if lo is None and hi is None:
            return None
        if lo is None:
            return f"≤ {fmt_num(hi)}"
        return f"≥ {fmt_num(lo)}" if hi is None else f"{fmt_num(lo)}–{fmt_num(hi)}"

    tc.describe_number_range = number_range_vi  # type: ignore[attr-defined]
    tc._TyperParameter.display_type = display_type_vi  # type: ignore[method-assign]
    tc.TyperOption.display_type_rich = option_type_vi  # type: ignore[method-assign]
    tc.TyperArgument.display_type_rich = argument_type_vi  # type: ignore[method-assign]
    _installed = True
