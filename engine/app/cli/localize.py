"""Vietnamese for what Typer (and the Click it vendors, ``typer._click``) prints by itself.

Typer ≥ 0.25 vendors Click with its texts written as English f-strings (no gettext), so they cannot
be translated by a catalogue. Instead: usage errors are reworded here from the exception's fields
(:func:`usage_message`), the remaining English sentences are matched by pattern (:data:`PATTERNS`),
and the help screen's fixed words are set once by :func:`install` (panel titles, "Usage:", the help
option's text). tests/test_cli_errors.py checks that no English reaches the user.
"""

from __future__ import annotations

import re
from typing import Any

HELP_TEXT = "Hiện hướng dẫn này rồi thoát."

_TYPES = {"integer": "số nguyên", "int": "số nguyên", "float": "số", "boolean": "giá trị có/không", "bool": "giá trị có/không",
          "text": "chuỗi", "str": "chuỗi", "path": "đường dẫn", "choice": "lựa chọn"}

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
    (re.compile(r"^Got unexpected extra arguments? \((.*)\)$"), lambda m: f"thừa đối số: {m.group(1)}"),
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
        if kind == "argument":
            return f"thiếu đối số bắt buộc {label}"
        return f"thiếu tùy chọn bắt buộc {label}"
    if isinstance(exc, ce.BadParameter):
        hint = exc.param_hint if isinstance(exc.param_hint, str) else _param_label(exc.param)
        text = translate(exc.message)
        return f"giá trị không hợp lệ cho {hint}: {text}" if hint else f"giá trị không hợp lệ: {text}"
    return translate(getattr(exc, "message", None) or str(exc))


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
    _installed = True
