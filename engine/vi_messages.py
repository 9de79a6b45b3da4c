"""pydantic's validation errors in Vietnamese, placed on the field as the secretary wrote it.

One table, keyed by pydantic's error `type`, formatted with the error's `ctx` values: no English
text ("String should have at most 80 characters") reaches a user. Internal path parts that pydantic
adds for unions (`cutoff.Cutoff.day`, `due.day.constrained-int`, `due.day_of_last_month.day`) are
dropped by walking the path through the data actually written, and the errors of the branches of
one union are merged into the one a secretary can act on.
"""

from __future__ import annotations

import enum
import re
import types
from typing import Annotated, Any, Iterable, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError


def _show(value: Any, limit: int = 60) -> str:
    text = str(value)
    text = re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", " ", text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _choices(expected: Any) -> str:
    """pydantic's "'forward', 'backward' or 'keep'" as "forward, backward, keep" (no English "or")."""
    text = str(expected or "")
    found = re.findall(r"'([^']*)'", text)
    return ", ".join(found) if found else text.replace(" or ", ", ")


def _bound(ctx: dict[str, Any]) -> Any:
    return next(iter(ctx.values()), "")


_SIGN = {"greater_than_equal": "≥", "less_than_equal": "≤", "greater_than": ">", "less_than": "<"}
_MAPPING = "cần một mục có các trường (mapping)"
_LIST = "cần một danh sách"

# type -> text; a callable gets (input, ctx). Keep every text Vietnamese.
MESSAGES: dict[str, Any] = {
    "missing": "thiếu trường bắt buộc",
    "extra_forbidden": "trường không được hỗ trợ (kiểm tra chính tả tên trường)",
    "date_from_datetime_parsing": lambda i, c: f"“{_show(i)}”: ngày không hợp lệ, cần dạng yyyy-mm-dd",
    "date_parsing": lambda i, c: f"“{_show(i)}”: ngày không hợp lệ, cần dạng yyyy-mm-dd",
    "date_from_datetime_inexact": lambda i, c: f"“{_show(i)}”: cần một ngày (yyyy-mm-dd), không kèm giờ",
    "date_type": "cần một ngày dạng yyyy-mm-dd",
    "datetime_type": "cần ngày giờ dạng yyyy-mm-ddTHH:MM",
    "datetime_parsing": lambda i, c: f"“{_show(i)}”: ngày giờ không hợp lệ, cần dạng yyyy-mm-ddTHH:MM",
    "datetime_from_date_parsing": lambda i, c: f"“{_show(i)}”: ngày giờ không hợp lệ, cần dạng yyyy-mm-ddTHH:MM",
    "time_type": "cần giờ dạng HH:MM",
    "time_parsing": lambda i, c: f"“{_show(i)}”: giờ không hợp lệ, cần dạng HH:MM",
    "timezone_naive": "không được kèm múi giờ",
    "timezone_aware": "cần kèm múi giờ (ví dụ +07:00)",
    "int_parsing": lambda i, c: f"“{_show(i)}”: cần một số nguyên",
    "int_type": "cần một số nguyên",
    "int_from_float": lambda i, c: f"{_show(i)}: cần một số nguyên (không có phần thập phân)",
    "int_parsing_size": "số quá lớn",
    "float_parsing": lambda i, c: f"“{_show(i)}”: cần một số",
    "float_type": "cần một số",
    "finite_number": "cần một số hữu hạn",
    "multiple_of": lambda i, c: f"giá trị {_show(i)} phải là bội số của {c.get('multiple_of')}",
    "decimal_parsing": lambda i, c: f"“{_show(i)}”: cần một số",
    "decimal_type": "cần một số",
    "string_type": "cần một chuỗi ký tự",
    "string_unicode": "chuỗi chứa ký tự không hợp lệ",
    "string_not_ascii": "chỉ được dùng ký tự không dấu",
    "string_too_short": lambda i, c: ("không được để trống" if c.get("min_length", 1) <= 1
                                      else f"cần ít nhất {c.get('min_length')} ký tự"),
    "string_too_long": lambda i, c: f"dài {len(str(i))} ký tự, tối đa {c.get('max_length')} ký tự",
    "string_pattern_mismatch": lambda i, c: (f"“{_show(i)}” không hợp lệ: mã chỉ gồm chữ thường không dấu, "
                                             "số và dấu gạch ngang"),
    "list_type": _LIST, "tuple_type": _LIST, "set_type": _LIST, "frozen_set_type": _LIST,
    "iterable_type": _LIST, "deque_type": _LIST,
    "too_short": lambda i, c: ("không được để trống" if isinstance(i, str)   # a folded one-line name
                               else "danh sách không được để trống" if c.get("min_length", 1) <= 1
                               else f"danh sách cần ít nhất {c.get('min_length')} phần tử"),
    "too_long": lambda i, c: f"danh sách có {c.get('actual_length')} phần tử, tối đa {c.get('max_length')}",
    "dict_type": _MAPPING, "model_type": _MAPPING, "model_attributes_type": _MAPPING,
    "mapping_type": _MAPPING, "dataclass_type": _MAPPING,
    "invalid_key": "tên trường không hợp lệ",
    "set_item_not_hashable": "phần tử không hợp lệ trong danh sách",
    "bool_type": "cần true hoặc false",
    "bool_parsing": lambda i, c: f"“{_show(i)}”: cần true hoặc false",
    "none_required": "không được có giá trị ở đây",
    "literal_error": lambda i, c: f"giá trị “{_show(i)}” không hợp lệ; chọn một trong: {_choices(c.get('expected'))}",
    "enum": lambda i, c: f"giá trị “{_show(i)}” không hợp lệ; chọn một trong: {_choices(c.get('expected'))}",
    "union_tag_invalid": lambda i, c: f"loại “{_show(c.get('tag'))}” không có; chọn một trong: {c.get('expected_tags')}",
    "union_tag_not_found": lambda i, c: f"thiếu trường “{str(c.get('discriminator', '')).strip(chr(39))}”",
    "greater_than_equal": lambda i, c: f"giá trị {_show(i)} phải ≥ {_bound(c)}",
    "less_than_equal": lambda i, c: f"giá trị {_show(i)} phải ≤ {_bound(c)}",
    "greater_than": lambda i, c: f"giá trị {_show(i)} phải > {_bound(c)}",
    "less_than": lambda i, c: f"giá trị {_show(i)} phải < {_bound(c)}",
    "value_error": lambda i, c: str(c.get("error", "giá trị không hợp lệ")),
    "assertion_error": lambda i, c: str(c.get("error", "giá trị không hợp lệ")),
    "recursion_loop": "giá trị tự tham chiếu đến chính nó",
    "recursion_depth_exceeded": "cấu trúc lồng nhau quá sâu",
    "frozen_field": "trường này không được sửa",
    "frozen_instance": "mục này không được sửa",
    "url_parsing": lambda i, c: f"“{_show(i)}”: địa chỉ URL không hợp lệ",
    "url_type": "cần một địa chỉ URL",
    "url_scheme": lambda i, c: f"“{_show(i)}”: địa chỉ phải bắt đầu bằng {c.get('expected_schemes', '')}",
    "url_too_long": "địa chỉ URL quá dài",
}

# Errors that only say "this branch of a union does not fit the type written".
_MISMATCH = {"literal_error", "int_type", "int_parsing", "string_type", "model_type", "model_attributes_type",
             "dict_type", "float_type", "float_parsing", "bool_type", "bool_parsing", "date_type", "date_parsing",
             "list_type", "none_required", "is_instance_of", "enum", "mapping_type"}
_FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")
_TYPE_LABELS = {"int", "str", "float", "bool", "none", "list", "dict"}
# Tag values of discriminated unions (rules_model.DueRule), which pydantic puts in the path.
_UNION_TAGS = {"day_of_last_month", "before_date", "on_date", "working_days_after_period",
               "working_days_after_obligation", "fixed"}


def message(err: dict[str, Any], model: type[BaseModel] | None = None) -> str:
    """The Vietnamese text of one pydantic error (from ValidationError.errors()). With the model
    that was validated, a missing field that is a choice lists its allowed values."""
    kind = err.get("type", "")
    if kind == "missing" and model is not None:
        allowed = allowed_values(model, tuple(err.get("loc", ())))
        if allowed:
            return f"thiếu trường bắt buộc; chọn một trong: {', '.join(allowed)}"
    if kind == "union_tag_not_found" and model is not None:
        name = str((err.get("ctx") or {}).get("discriminator", "")).strip("'")
        tags = union_tags(model, tuple(err.get("loc", ())), name)
        if tags:
            return f"thiếu trường “{name}”; chọn một trong: {', '.join(tags)}"
    text = MESSAGES.get(kind)
    ctx = err.get("ctx") or {}
    if callable(text):
        try:
            return text(err.get("input"), ctx)
        except Exception:  # a ctx we did not foresee: still Vietnamese
            text = None
    if text:
        return text
    inp = err.get("input")
    shown = f" “{_show(inp)}”" if isinstance(inp, (str, int, float)) else ""
    return f"giá trị{shown} không hợp lệ"


def clean_loc(loc: Iterable[Any], data: Any, kind: str, walk: bool = True) -> tuple[tuple[Any, ...], bool]:
    """The path as written in the file, and whether pydantic's own parts (union branches) were dropped."""
    loc = tuple(loc)
    out: list[Any] = []
    dropped = False
    cur = data
    for n, part in enumerate(loc):
        if walk:
            if isinstance(cur, dict) and part in cur:
                out.append(part)
                cur = cur[part]
                continue
            if isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
                out.append(part)
                cur = cur[part]
                continue
            if kind == "missing" and n == len(loc) - 1 and isinstance(part, str) and _FIELD.match(part):
                out.append(part)
                continue
            dropped = True     # a union branch label: the next part is looked up in the same value
            continue
        # No data to walk: keep what looks like a field name or an index.
        if isinstance(part, int) or (isinstance(part, str) and _FIELD.match(part)
                                     and part not in _UNION_TAGS and part not in _TYPE_LABELS):
            out.append(part)
        else:
            dropped = True
    return tuple(out), dropped


def translate_errors(exc: ValidationError, data: Any = None) -> list[tuple[tuple[Any, ...], str]]:
    """[(path as written, Vietnamese message)]; union branches merged, duplicates removed.

    Errors from the branches of one union (same path up to the first part pydantic added) are
    reduced to what the secretary can act on: a real problem inside a branch that fits the value
    written (`cutoff: {day: 40}` → “phải ≤ 28”, not also “chọn 'none'”), else one message."""
    walk = data is not None
    model = _model_named(exc.title)
    rows = []
    for err in exc.errors():
        # A discriminated union's tag (`due.day_of_last_month.roll`) picks one branch: not an alternative.
        raw_loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
        loc, root = _split(raw_loc, data, err["type"], walk)
        rows.append((loc, root, err))
    unions: dict[tuple[Any, ...], list[int]] = {}
    for n, (_, root, _) in enumerate(rows):
        if root is not None:
            unions.setdefault(root, []).append(n)
    keep: dict[int, tuple[tuple[Any, ...], str]] = {}
    for n, (loc, root, err) in enumerate(rows):
        if root is None:
            keep[n] = (loc, message(err, model))
    for root, members in unions.items():
        real = [n for n in members if rows[n][2]["type"] not in _MISMATCH]
        if real:
            for n in real:
                keep[n] = (rows[n][0], message(rows[n][2], model))
            continue
        errs = [rows[n][2] for n in members]
        literal = [e for e in errs if e["type"] == "literal_error"]
        if literal and isinstance(errs[0].get("input"), str):
            keep[members[0]] = (root, message(literal[0]))
        else:
            keep[members[0]] = (root, _merge([message(e) for e in errs]))
    out: list[tuple[tuple[Any, ...], str]] = []
    for n in sorted(keep):
        if keep[n] not in out:
            out.append(keep[n])
    return out


def _split(loc: Iterable[Any], data: Any, kind: str, walk: bool) -> tuple[tuple[Any, ...], tuple[Any, ...] | None]:
    """(path as written, the path up to the first union branch label or None if there is none)."""
    cleaned, dropped = clean_loc(loc, data, kind, walk)
    if not dropped:
        return cleaned, None
    root, _ = clean_loc(_upto_branch(tuple(loc), data, kind, walk), data, kind, walk)
    return cleaned, root


def _upto_branch(loc: tuple[Any, ...], data: Any, kind: str, walk: bool) -> tuple[Any, ...]:
    """loc up to (not including) its last union branch label: where that union's value is written."""
    last = 0
    for n in range(1, len(loc) + 1):
        if len(clean_loc(loc[:n], data, kind, walk)[0]) < n - _labels(loc[:n - 1], data, kind, walk):
            last = n - 1
    return loc[:last]


def _labels(loc: tuple[Any, ...], data: Any, kind: str, walk: bool) -> int:
    return len(loc) - len(clean_loc(loc, data, kind, walk)[0])


def _merge(msgs: list[str]) -> str:
    uniq: list[str] = []
    for m in msgs:
        if m not in uniq:
            uniq.append(m)
    return uniq[0] if len(uniq) == 1 else "giá trị không hợp lệ: " + "; hoặc ".join(uniq)


# ─── the allowed values of a choice (Literal or Enum), found from the model and the error's path ──
def _model_named(title: str) -> type[BaseModel] | None:
    """The model a ValidationError is about (its title is the class name), among loaded models."""
    stack, seen = [BaseModel], set()
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            if sub in seen:
                continue
            seen.add(sub)
            if sub.__name__ == title and "pydantic" not in sub.__module__:
                return sub
            stack.append(sub)
    return None


def _members(ann: Any) -> list[Any]:
    """The alternatives of an annotation, Annotated and unions unwrapped."""
    origin = get_origin(ann)
    if origin is Annotated:
        return _members(get_args(ann)[0])
    if origin in (Union, types.UnionType):
        return [m for a in get_args(ann) for m in _members(a)]
    return [ann]


def _field(model: type[BaseModel], name: Any) -> Any:
    for fname, f in model.model_fields.items():
        if name in (fname, f.alias):
            return f.annotation
    return None


def _tags(model: type[BaseModel]) -> set[Any]:
    """Values of the one-value Literal fields of a model: the tags pydantic puts in a union's path."""
    out: set[Any] = set()
    for f in model.model_fields.values():
        args = get_args(f.annotation) if get_origin(f.annotation) is Literal else ()
        if len(args) == 1:
            out.add(args[0])
    return out


def _resolve(ann: Any, loc: tuple[Any, ...]) -> Any:
    if not loc:
        return ann
    part, rest = loc[0], loc[1:]
    members = [m for m in _members(ann) if m is not type(None)]
    for m in members:
        origin, args = get_origin(m), get_args(m)
        if isinstance(part, int) and origin in (list, tuple, set, frozenset) and args:
            return _resolve(args[0], rest)
        if origin is dict and len(args) == 2 and not (isinstance(part, str) and _models(members)):
            return _resolve(args[1], rest)
    models = _models(members)
    if isinstance(part, str):
        for m in models:
            a = _field(m, part)
            if a is not None:
                return _resolve(a, rest)
        for m in models:                      # a union branch label: the class name or its tag
            if part == m.__name__ or part in _tags(m):
                return _resolve(m, rest)
    return None


def _models(members: list[Any]) -> list[type[BaseModel]]:
    return [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]


def allowed_values(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """["forward", "backward", "keep"] for the path of a Literal (or Enum) field; None when the
    field is not a closed choice (a number, a text, a mapping …) or the path cannot be followed."""
    try:
        ann = _resolve(model, loc)
    except Exception:  # noqa: BLE001 - an annotation we did not foresee: no list, the plain message
        return None
    if ann is None:
        return None
    values: list[str] = []
    for m in _members(ann):
        if m is type(None):
            continue
        if get_origin(m) is Literal:
            values += [str(v) for v in get_args(m)]
        elif isinstance(m, type) and issubclass(m, enum.Enum):
            values += [str(v.value) for v in m]
        else:
            return None
    return values or None


def union_tags(model: type[BaseModel], loc: tuple[Any, ...], discriminator: str) -> list[str] | None:
    """The values a discriminated union's tag field takes (`rule:` of a due rule)."""
    try:
        ann = _resolve(model, loc)
    except Exception:  # noqa: BLE001 - as in allowed_values
        return None
    out: list[str] = []
    for m in _models([x for x in _members(ann)] if ann is not None else []):
        a = _field(m, discriminator)
        if a is not None and get_origin(a) is Literal:
            out += [str(v) for v in get_args(a) if str(v) not in out]
    return out or None
