"""YAML reading that remembers where every value came from, and refuses hostile input.

pydantic reports errors by path (`obligations.3.due.day`); a secretary needs a line number. We
compose the YAML node tree ourselves from libyaml's events (the C parser: a 1 MB file in well
under a second, where PyYAML's pure-Python scanner took a minute for 5 MB) and keep a map from each
path to its line.

Composing ourselves is also where the limits of engine/limits.py are enforced, before anything is
expanded: the file size, the nesting depth, the number of `*alias` uses and the number of values
after alias expansion ("billion laughs"). An alias may not point into its own anchor (a recursive
node), a mapping key must be a plain scalar, and a scalar that cannot be constructed (an anchored
`&ngay 2025-04-31`) stays a string, so validation reports it on its line. Every problem is a
RuleError; this module never raises.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from engine.errors import RuleError, display_path
from engine.limits import MAX_ALIASES, MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES

Path_ = tuple[Any, ...]
LineMap = dict[Path_, int]

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MAP, _SEQ, _MERGE = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:merge"
_SYNTAX_HINT = " (kiểm tra thụt lề, dấu “:” và dấu ngoặc kép)"


class _Refused(Exception):
    """A limit or a structural rule was broken: one RuleError, the file is not read further."""

    def __init__(self, line: int | None, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


class _Alias:
    """A `*name` use: the anchored node, and where the alias itself is written."""
    __slots__ = ("target", "line", "anchor")

    def __init__(self, target: yaml.Node, line: int, anchor: str):
        self.target, self.line, self.anchor = target, line, anchor


def _line(mark: Any) -> int | None:
    return mark.line + 1 if mark is not None else None


def _compose(loader: Any) -> yaml.Node | None:
    """One document's node tree, built iteratively from parser events, with limits enforced."""
    anchors: dict[str, tuple[yaml.Node, int, int]] = {}   # name -> (node, expanded size, height)
    total = aliases = 0
    stack: list[list[Any]] = []    # [node, anchor, total at start, max depth below, pending key]
    root: yaml.Node | None = None
    loader.get_event()             # StreamStart
    if loader.check_event(yaml.StreamEndEvent):
        return None
    loader.get_event()             # DocumentStart

    def attach(item: Any, height: int) -> None:
        nonlocal root
        if not stack:
            root = item.target if isinstance(item, _Alias) else item
            return
        frame = stack[-1]
        frame[3] = max(frame[3], height)
        frame[0].value.append(item)

    while True:
        event = loader.get_event()
        line = _line(event.start_mark)
        depth = len(stack)
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in anchors:
                raise _Refused(line, f"tham chiếu “*{event.anchor}” chưa được khai báo trước đó bằng “&{event.anchor}” "
                                     "(hoặc trỏ vào chính mục chứa nó)")
            node, size, height = anchors[event.anchor]
            aliases += 1
            total += size
            if aliases > MAX_ALIASES:
                raise _Refused(line, f"tệp dùng quá nhiều tham chiếu “*…” (hơn {MAX_ALIASES})")
            if total > MAX_NODES:
                raise _Refused(line, f"tệp quá lớn sau khi mở rộng các tham chiếu “*…” (hơn {MAX_NODES:,} giá trị); "
                                     "hãy viết trực tiếp các giá trị thay vì lồng tham chiếu")
            if depth + height > MAX_DEPTH:
                raise _Refused(line, f"cấu trúc lồng nhau quá sâu sau khi mở rộng “*{event.anchor}” (tối đa {MAX_DEPTH} cấp)")
            attach(_Alias(node, line or 0, event.anchor), height)
        elif isinstance(event, yaml.ScalarEvent):
            tag = event.tag
            if tag is None or tag == "!":
                tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
            node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
            total += 1
            if event.anchor is not None:
                anchors[event.anchor] = (node, 1, 1)
            attach(node, 1)
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if depth + 1 > MAX_DEPTH:
                raise _Refused(line, f"cấu trúc lồng nhau quá sâu (tối đa {MAX_DEPTH} cấp)")
            is_map = isinstance(event, yaml.MappingStartEvent)
            kind = yaml.MappingNode if is_map else yaml.SequenceNode
            tag = event.tag
            if tag is None or tag == "!":
                tag = loader.resolve(kind, None, event.implicit)
            if tag != (_MAP if is_map else _SEQ):
                raise _Refused(line, f"thẻ YAML “{tag}” không được hỗ trợ; bỏ thẻ “!…” đứng trước giá trị")
            node = kind(tag, [], event.start_mark, event.end_mark, flow_style=event.flow_style)
            total += 1
            stack.append([node, event.anchor, total, 0])
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            node, anchor, start, below = stack.pop()
            node.end_mark = event.end_mark
            if isinstance(node, yaml.MappingNode):
                items = node.value
                node.value = []
                for k, v in zip(items[0::2], items[1::2]):
                    if isinstance(k, _Alias):
                        k = k.target
                    if k.tag == _MERGE:   # `<<: *anchor`: the constructor's flatten_mapping needs plain nodes
                        v = v.target if isinstance(v, _Alias) else v
                        if isinstance(v, yaml.SequenceNode):
                            v = yaml.SequenceNode(v.tag, [x.target if isinstance(x, _Alias) else x for x in v.value],
                                                  v.start_mark, v.end_mark)
                    node.value.append((k, v))
            height = below + 1
            if anchor is not None:
                anchors[anchor] = (node, total - start + 1, height)
            attach(node, height)
        elif isinstance(event, yaml.DocumentEndEvent):
            break
        else:  # pragma: no cover - libyaml sends no other event inside a document
            raise _Refused(line, f"sự kiện YAML không mong đợi: {type(event).__name__}")
    if not loader.check_event(yaml.StreamEndEvent):
        event = loader.get_event()
        raise _Refused(_line(event.start_mark), "tệp chỉ được chứa một tài liệu YAML (bỏ dòng “---” thứ hai)")
    return root


class _Builder:
    def __init__(self, loader: Any, file: str):
        self.loader = loader
        self.file = file
        self.lines: LineMap = {}
        self.anchors: dict[Path_, tuple[str, int]] = {}   # path -> (anchor name, line of the anchor)
        self.errors: list[RuleError] = []

    def scalar(self, node: yaml.ScalarNode) -> Any:
        fn = self.loader.yaml_constructors.get(node.tag)
        if fn is None:
            raise _Refused(_line(node.start_mark), f"thẻ YAML “{node.tag}” không được hỗ trợ; bỏ thẻ “!…” đứng trước giá trị")
        try:
            return fn(self.loader, node)
        except Exception:
            # e.g. 2026-02-30 matches YAML's date pattern but is no date: validation says so, on its line.
            return node.value

    def build(self, node: Any, path: Path_) -> Any:
        if isinstance(node, _Alias):
            self.lines[path] = node.line
            self.anchors.setdefault(path, (node.anchor, _line(node.target.start_mark) or 0))
            node = node.target
        self.lines.setdefault(path, _line(node.start_mark) or 0)
        if isinstance(node, yaml.MappingNode):
            try:
                self.loader.flatten_mapping(node)  # resolves YAML merge keys (<<: *anchor)
            except yaml.MarkedYAMLError as exc:
                raise _Refused(_line(exc.problem_mark) or _line(node.start_mark),
                               "“<<:” chỉ gộp được một mapping hoặc danh sách các mapping") from None
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                kline = _line(key_node.start_mark)
                if not isinstance(key_node, yaml.ScalarNode):
                    raise _Refused(kline, "khóa phải là một tên đơn giản (không được là danh sách hay mapping)")
                key = self.scalar(key_node)
                try:
                    hash(key)
                except TypeError:
                    key = key_node.value
                sub = path + (key,)
                if key in result:
                    self.errors.append(RuleError(self.file, kline, _dotted(sub), f"khóa “{key}” bị lặp lại trong cùng một mục"))
                self.lines[sub] = kline or 0
                result[key] = self.build(value_node, sub)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        return self.scalar(node)


class YamlDoc:
    """What load_yaml found: data, line map, errors, and where aliased values were anchored."""

    def __init__(self, data: Any, lines: LineMap, errors: list[RuleError], anchors: dict[Path_, tuple[str, int]]):
        self.data, self.lines, self.errors, self.anchors = data, lines, errors, anchors

    def __iter__(self):  # data, lines, errors = load_yaml(path)
        return iter((self.data, self.lines, self.errors))


def load_yaml(path: Path) -> YamlDoc:
    """Parse one file; every problem comes back as a RuleError, never as an exception."""
    file = display_path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return _failed(file, 1, f"tệp quá lớn ({size / 1e6:.1f} MB; tối đa {MAX_FILE_BYTES / 1e6:g} MB): "
                                    "hãy tách thành nhiều tệp nhỏ hơn")
        raw = path.read_bytes()[:MAX_FILE_BYTES + 1]
    except OSError as exc:
        return _failed(file, None, f"không đọc được tệp: {exc.strerror or exc}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return _failed(file, line, f"tệp không phải UTF-8 (ký tự lỗi ở dòng {line}, cột {col}); "
                                   "hãy lưu lại với mã hóa UTF-8")
    loader = _Loader(text)
    builder = _Builder(loader, file)
    try:
        node = _compose(loader)
        if node is None:
            return YamlDoc(None, {}, [], {})
        data = builder.build(node, ())
    except _Refused as exc:
        return _failed(file, exc.line, exc.message)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = _syntax_vi(exc.problem or str(exc))
        return _failed(file, _line(mark), f"lỗi cú pháp YAML: {reason}{_SYNTAX_HINT}")
    except yaml.reader.ReaderError as exc:
        pos = exc.position if isinstance(exc.position, int) else 0   # libyaml: a byte offset in UTF-8
        line = text.encode("utf-8", "surrogatepass")[:pos].count(b"\n") + 1
        ch = exc.character
        code = f"U+{ch:04X}" if isinstance(ch, int) else repr(ch)
        return _failed(file, line, f"tệp chứa ký tự điều khiển không được phép ({code}) ở dòng {line}; "
                                   "hãy xóa ký tự đó (thường do sao chép từ Word hoặc PDF)")
    except yaml.YAMLError as exc:
        return _failed(file, 1, f"lỗi cú pháp YAML: {exc}{_SYNTAX_HINT}")
    except RecursionError:  # pragma: no cover - MAX_DEPTH keeps recursion shallow
        return _failed(file, 1, f"cấu trúc lồng nhau quá sâu (tối đa {MAX_DEPTH} cấp)")
    finally:
        loader.dispose()
    return YamlDoc(data, builder.lines, builder.errors, builder.anchors)


def _failed(file: str, line: int | None, message: str) -> YamlDoc:
    return YamlDoc(None, {}, [RuleError(file, line, "", message)], {})


_SYNTAX_VI = {
    "mapping values are not allowed here": "không được có dấu “:” ở đây (giá trị có dấu “:” cần đặt trong ngoặc kép)",
    "found character that cannot start any token": "ký tự không được phép đứng đầu giá trị (ví dụ tab, @, `); "
                                                   "đặt giá trị trong ngoặc kép và thụt lề bằng dấu cách",
    "found unexpected end of stream": "tệp kết thúc giữa chừng (thiếu dấu ngoặc đóng?)",
    "could not find expected ':'": "thiếu dấu “:” sau tên trường",
    "did not find expected key": "thụt lề không khớp hoặc thiếu dấu “:”",
    "did not find expected '-' indicator": "phần tử danh sách phải bắt đầu bằng “- ” cùng thụt lề",
    "found undefined alias": "tham chiếu “*…” chưa được khai báo",
    "did not find expected node content": "thiếu giá trị",
    "found unknown escape character": "ký tự thoát “\\…” không hợp lệ trong chuỗi ngoặc kép",
    "did not find expected ',' or ']'": "thiếu dấu “,” hoặc “]” trong danh sách […]",
    "did not find expected ',' or '}'": "thiếu dấu “,” hoặc “}” trong mapping {…}",
    "found a tab character that violates indentation": "thụt lề bằng tab; chỉ dùng dấu cách",
    "found duplicate anchor": "tên “&…” đã dùng trước đó",
    "expected a single document in the stream": "tệp chỉ được chứa một tài liệu YAML",
    "exceeded maximum nesting depth": "cấu trúc lồng nhau quá sâu",
    "found unexpected ':'": "dấu “:” không đúng chỗ",
    "found unknown escape character": "ký tự thoát “\\…” không hợp lệ trong chuỗi ngoặc kép",
    "found a tab character where an indentation space is expected": "thụt lề bằng tab; chỉ dùng dấu cách",
}


def _syntax_vi(problem: str) -> str:
    for en, vi in _SYNTAX_VI.items():
        if problem.startswith(en):
            return vi
    return problem


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
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


def validation_errors(exc: ValidationError, file: str, lines: LineMap, prefix: Path_,
                      data: Any = None, anchors: dict[Path_, tuple[str, int]] | None = None) -> list[RuleError]:
    """Translate pydantic errors into Vietnamese, located by file, line and the field as written."""
    from engine.vi_messages import translate_errors

    out: list[RuleError] = []
    for loc, msg in translate_errors(exc, data):
        full = prefix + loc
        if anchors:
            hit = next((full[:n] for n in range(len(full), 0, -1) if full[:n] in anchors), None)
            if hit is not None:
                name, aline = anchors[hit]
                msg += f" (giá trị lấy từ “&{name}” ở dòng {aline})"
        out.append(RuleError(file, line_for(lines, full), _dotted(full), msg))
    return out
