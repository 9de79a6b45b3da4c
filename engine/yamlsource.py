"""YAML reading that remembers where every value came from.

pydantic reports errors by path (`obligations.3.due.day`); a secretary needs a line number. We
compose the YAML node tree ourselves and keep a map from each path to its line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from engine.errors import RuleError, display_path

Path_ = tuple[Any, ...]
LineMap = dict[Path_, int]


def _build(loader: yaml.SafeLoader, node: yaml.Node, path: Path_, lines: LineMap,
           errors: list[RuleError], file: str) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<: *anchor)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            sub = path + (key,)
            if key in result:
                errors.append(RuleError(file, key_node.start_mark.line + 1, _dotted(sub),
                                        f"khóa “{key}” bị lặp lại trong cùng một mục"))
            lines[sub] = key_node.start_mark.line + 1
            result[key] = _build(loader, value_node, sub, lines, errors, file)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, path + (i,), lines, errors, file) for i, item in enumerate(node.value)]
    try:
        return loader.construct_object(node, deep=True)
    except ValueError:
        # e.g. 2026-02-30 matches YAML's date pattern but is no date: let validation say so.
        return node.value


def load_yaml(path: Path) -> tuple[Any, LineMap, list[RuleError]]:
    """Parse one file; syntax errors come back as RuleErrors, not exceptions."""
    file = display_path(path)
    lines: LineMap = {}
    errors: list[RuleError] = []
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, lines, [RuleError(file, None, "", f"tệp không phải UTF-8 (byte lỗi ở vị trí {exc.start}); hãy lưu lại với mã hóa UTF-8")]
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, lines, errors
        data = _build(loader, node, (), lines, errors, file)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        reason = exc.problem or str(exc)
        return None, lines, [RuleError(file, line, "", f"lỗi cú pháp YAML: {reason}"
                                       " (kiểm tra thụt lề, dấu “:” và dấu ngoặc kép)")]
    except yaml.YAMLError as exc:
        return None, lines, [RuleError(file, None, "", f"lỗi cú pháp YAML: {exc}")]
    finally:
        loader.dispose()
    return data, lines, errors


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def line_for(lines: LineMap, path: Path_) -> int | None:
    """Line of the longest known prefix of path."""
    path = tuple(path)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


_MESSAGES = {
    "missing": "thiếu trường bắt buộc",
    "extra_forbidden": "trường không được hỗ trợ (kiểm tra chính tả tên trường)",
    "date_from_datetime_parsing": "ngày không hợp lệ, cần dạng yyyy-mm-dd",
    "date_parsing": "ngày không hợp lệ, cần dạng yyyy-mm-dd",
    "date_type": "cần một ngày dạng yyyy-mm-dd",
    "int_parsing": "cần một số nguyên",
    "int_type": "cần một số nguyên",
    "string_type": "cần một chuỗi ký tự",
    "list_type": "cần một danh sách",
    "dict_type": "cần một mục có các trường (mapping)",
    "model_type": "cần một mục có các trường (mapping)",
    "string_too_short": "không được để trống",
    "too_short": "danh sách không được để trống",
    "bool_type": "cần true hoặc false",
    "bool_parsing": "cần true hoặc false",
}


def validation_errors(exc: ValidationError, file: str, lines: LineMap, prefix: Path_) -> list[RuleError]:
    """Translate pydantic errors into Vietnamese, located by file and line."""
    out: list[RuleError] = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # Discriminated unions add the tag name to the path; drop it so lines resolve.
        loc = tuple(p for p in loc if p not in _UNION_TAGS)
        full = prefix + loc
        kind = err["type"]
        if kind == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            msg = f"giá trị “{err.get('input')}” không hợp lệ; chọn một trong: {expected}"
        elif kind == "union_tag_invalid":
            ctx = err.get("ctx", {})
            msg = f"loại “{ctx.get('tag')}” không có; chọn một trong: {ctx.get('expected_tags')}"
        elif kind == "union_tag_not_found":
            msg = f"thiếu trường “{err.get('ctx', {}).get('discriminator', '').strip(chr(39))}”"
        elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
            ctx = err.get("ctx", {})
            bound = next(iter(ctx.values()), "")
            sign = {"greater_than_equal": "≥", "less_than_equal": "≤", "greater_than": ">", "less_than": "<"}[kind]
            msg = f"giá trị {err.get('input')} phải {sign} {bound}"
        elif kind == "string_pattern_mismatch":
            msg = f"“{err.get('input')}” không hợp lệ: mã chỉ gồm chữ thường không dấu, số và dấu gạch ngang"
        elif kind == "value_error":
            msg = str(err.get("ctx", {}).get("error", err["msg"]))
        elif kind in _MESSAGES:
            msg = _MESSAGES[kind]
            if kind in ("date_from_datetime_parsing", "date_parsing", "int_parsing") and "input" in err:
                msg = f"“{err['input']}”: {msg}"
        else:
            msg = err["msg"]
        out.append(RuleError(file, line_for(lines, full), _dotted(full), msg))
    return out


_UNION_TAGS = {
    "day_of_last_month", "before_date", "on_date", "working_days_after_period",
    "working_days_after_obligation", "fixed",
}
