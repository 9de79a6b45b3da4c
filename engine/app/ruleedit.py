"""Editing rule files without disturbing them: one change in a form is one change in the YAML.

The rule packs are written by hand (comments explaining every assumption, aligned trailing
comments, anchors such as ``&ngay_hieu_luc_khhd57``, flow lists broken over several lines). The
console edits a *staged copy* of them (engine/app/ruleversions.py) and the secretariat reviews the
diff before applying, so a save must not reformat what it did not touch.

How: ruamel.yaml round-trips the document (comments, quotes, flow/block style, key order). What
it still cannot reproduce (a flow list broken over lines, a blank line inside a flow mapping) is
kept by a three-way merge of lines: ``base`` = ruamel's rendering of the file as loaded, ``mine``
= the file as written, ``theirs`` = ruamel's rendering after the edit. Lines only ruamel rewrote
stay as written; lines the edit changed come from ``theirs`` (where both touch the same lines, the
edit wins there). The merged text is parsed again and must mean exactly what ``theirs`` means,
else ``theirs`` is written whole: the merge can cost formatting, never correctness.

Settings measured on rules/*.yaml and rules/kpi/*.yaml: mapping indent 2, sequence indent 4 with
the dash at offset 2 (``obligations:\\n  - id: …``), no line folding (width 4096), quotes kept.
Dates carrying an anchor keep its name (ruamel would rename it ``&id001``): :class:`AnchoredDate`.

Nothing here reads the live rules or the database; a front end (CLI, web form) calls
:class:`RuleFolder` on a staged folder, then ``save()``; errors are :class:`EditError` (Vietnamese).
"""

from __future__ import annotations

import copy
import difflib
import io
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.anchor import Anchor
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import YAMLError
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

from engine.app.services import ServiceError

WIDTH = 4096                    # never fold a line: the packs have 200-character titles on one line
INDENT = dict(mapping=2, sequence=4, offset=2)

# The sections of a rule pack whose items carry an `id` (engine/rules_loader.py _SECTIONS).
SECTIONS_VI = {"obligations": "nghĩa vụ báo cáo", "units": "đơn vị", "groups": "nhóm đơn vị",
               "reminder_policies": "chính sách nhắc"}


class EditError(ServiceError):
    """An edit that cannot be made (unknown id, a file that is not a rule file …), in Vietnamese."""


# ─── ruamel with dates that keep their anchor ───────────────────────────────────────────────────
class AnchoredDate(date):
    """A date written as ``&name 2025-05-01``: ruamel keeps anchors on strings and numbers but not
    on dates, and a renamed anchor would change every line that uses it."""

    _anchor_name: str | None

    def __new__(cls, d: date, anchor: str | None) -> "AnchoredDate":
        obj = date.__new__(cls, d.year, d.month, d.day)
        obj._anchor_name = anchor
        return obj

    def __deepcopy__(self, memo: Any) -> "AnchoredDate":
        return self                     # immutable; copying must not duplicate the anchor

    @property
    def anchor(self) -> Anchor:
        a = Anchor()
        a.value = self._anchor_name
        a.always_dump = True
        return a


class _Constructor(RoundTripConstructor):
    def construct_yaml_timestamp(self, node: Any, values: Any = None) -> Any:
        value = super().construct_yaml_timestamp(node, values)
        if node.anchor and type(value) is date:
            return AnchoredDate(value, node.anchor)
        return value


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _Constructor.construct_yaml_timestamp)


class _Representer(RoundTripRepresenter):
    def represent_anchored_date(self, data: AnchoredDate) -> Any:
        return self.represent_scalar("tag:yaml.org,2002:timestamp", data.isoformat(), anchor=data.anchor)


_Representer.add_representer(AnchoredDate, _Representer.represent_anchored_date)


def make_yaml() -> YAML:
    """The round-trip YAML instance with the packs' layout (see the module docstring)."""
    y = YAML(typ="rt")
    y.Constructor = _Constructor
    y.Representer = _Representer
    y.preserve_quotes = True
    y.width = WIDTH
    y.indent(**INDENT)
    y.allow_unicode = True
    return y


# ─── the three-way merge of lines ───────────────────────────────────────────────────────────────
def _ops(a: list[str], b: list[str]) -> list[tuple[str, int, int, int, int]]:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()


def _map_start(ops: list[tuple[str, int, int, int, int]], a: int, n: int) -> int:
    for tag, i1, i2, j1, _ in ops:
        if tag == "equal" and i1 <= a < i2:
            return j1 + (a - i1)
        if tag != "equal" and i1 == a:
            return j1
    return n


def _map_end(ops: list[tuple[str, int, int, int, int]], a: int) -> int:
    found = 0
    for tag, i1, i2, j1, j2 in ops:
        if tag == "equal" and i1 < a <= i2:
            found = j1 + (a - i1)
        elif tag != "equal" and i2 == a:
            found = j2
    return found


def merge3(base: list[str], mine: list[str], theirs: list[str], conflicts: list[int] | None = None) -> list[str]:
    """``theirs``' changes to ``base`` applied to ``mine`` (lines); where both changed the same or
    adjacent lines differently, ``theirs`` wins for that region and, if ``conflicts`` is given, the
    region's first line in ``mine`` (1-based) is appended to it."""
    om, ot = _ops(base, mine), _ops(base, theirs)
    hunks = sorted([(i1, i2, 0) for tag, i1, i2, _, _ in om if tag != "equal"]
                   + [(i1, i2, 1) for tag, i1, i2, _, _ in ot if tag != "equal"])
    out: list[str] = []
    pos = k = 0
    while k < len(hunks):
        r1, r2, side = hunks[k]
        sides = {side}
        k += 1
        while k < len(hunks) and hunks[k][0] <= r2:       # overlapping or touching: one region
            r2 = max(r2, hunks[k][1])
            sides.add(hunks[k][2])
            k += 1
        out += base[pos:r1]
        if sides == {0}:
            out += mine[_map_start(om, r1, len(mine)):_map_end(om, r2)]
        else:
            ours = mine[_map_start(om, r1, len(mine)):_map_end(om, r2)]
            new = theirs[_map_start(ot, r1, len(theirs)):_map_end(ot, r2)]
            if conflicts is not None and sides == {0, 1} and ours != new:
                conflicts.append(_map_start(om, r1, len(mine)) + 1)
            out += new
        pos = r2
    out += base[pos:]
    return out


def _meaning(text: str) -> Any:
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))   # noqa: S506 - safe loader


# ─── one file ───────────────────────────────────────────────────────────────────────────────────
class RuleDoc:
    """One YAML file of a rule pack, loaded for editing; ``render()`` is the text to write."""

    def __init__(self, path: Path, text: str | None = None):
        self.path = Path(path)
        raw = self.path.read_bytes().decode("utf-8", "surrogateescape") if text is None else text
        self.bom = raw.startswith("\ufeff")
        self.original = raw[1:] if self.bom else raw
        self.newline = "\r\n" if "\r\n" in self.original else "\n"
        self._yaml = make_yaml()
        try:
            self.data: Any = self._yaml.load(self.original)
        except YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            raise EditError(f"{self.path.name}{where}: tệp YAML không đọc được để sửa tự động "
                            f"({getattr(exc, 'problem', None) or 'lỗi cú pháp'}); sửa tệp bằng tay hoặc khôi phục phiên bản trước") from None
        if self.data is None:
            self.data = CommentedMap()
        self._base = self._dump(self.data)
        self.header = ""               # a new file's top comment (RuleFolder.new_file)

    def _dump(self, data: Any) -> str:
        buf = io.StringIO()
        self._yaml.dump(data, buf)
        text = buf.getvalue()
        return text.replace("\n", self.newline) if self.newline != "\n" else text

    def render(self) -> str:
        """The file's new text: the edit, and everything else as it was written."""
        theirs = self._dump(self.data)
        if self.header and not self.original:
            return self.header + theirs
        if theirs == self._base:
            text = self.original
        else:
            merged = "".join(merge3(self._base.splitlines(True), self.original.splitlines(True),
                                    theirs.splitlines(True)))
            try:
                same = _meaning(merged) == _meaning(theirs)
            except yaml.YAMLError:
                same = False
            text = merged if same else theirs
        return ("\ufeff" if self.bom else "") + text

    @property
    def changed(self) -> bool:
        return self.render() != ("\ufeff" if self.bom else "") + self.original

    def save(self) -> bool:
        """Write the file if it changed (atomically: a reader never sees half a file); True if written."""
        text = self.render()
        if text == ("\ufeff" if self.bom else "") + self.original:
            return False
        write_text_atomic(self.path, text)
        self.original = text[1:] if self.bom else text
        self._base = self._dump(self.data)
        return True


def write_text_atomic(path: Path, text: str) -> None:
    """Write beside the target, then rename over it (same folder, same file system)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8", "surrogateescape"))
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ─── values as the hand-written packs write them ────────────────────────────────────────────────
_FLOW_KEYS = {"basis", "recurrence", "cutoff", "due"}         # short mappings written on one line
_FLOW_LISTS = {"reporters", "months", "before_due_working_days", "escalate_to", "members", "contacts",
               "compiles", "supersedes"}
_QUOTED = {"title", "name", "notes", "document", "section", "text"}


def styled(value: Any, key: str | None = None, like: Any = None) -> Any:
    """A Python value as the seed packs would write it: titles and texts in double quotes, short
    mappings and id lists in flow style, lists of sentences as block lists of quoted strings.
    ``like``: the value it replaces (its quoting and flow style are kept)."""
    if isinstance(value, (CommentedMap, CommentedSeq)):
        return value
    if isinstance(value, Mapping):
        m = CommentedMap()
        for k, v in value.items():
            m[k] = styled(v, k, like.get(k) if isinstance(like, Mapping) else None)
        flow = like.fa.flow_style() if isinstance(like, CommentedMap) else key in _FLOW_KEYS
        if flow:
            m.fa.set_flow_style()
        return m
    if isinstance(value, (list, tuple)):
        block_of_texts = key not in _FLOW_LISTS and any(isinstance(v, str) and len(v) >= 40 for v in value)
        s = CommentedSeq(DoubleQuotedScalarString(v) if isinstance(v, str) and (block_of_texts or key == "assumptions")
                         else styled(v) for v in value)
        flow = like.fa.flow_style() if isinstance(like, CommentedSeq) else not (block_of_texts or key == "assumptions")
        if flow:
            s.fa.set_flow_style()
        return s
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        if isinstance(like, SingleQuotedScalarString):
            return SingleQuotedScalarString(value)
        if isinstance(like, DoubleQuotedScalarString) or (like is None and key in _QUOTED):
            return DoubleQuotedScalarString(value)
        return value
    return value


# ─── a folder of rule files ─────────────────────────────────────────────────────────────────────
class RuleFolder:
    """The top-level rule files of one (staged) folder, edited by id. Only files that were changed
    are written by :meth:`save`. The KPI files (kpi/) are not edited here."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise EditError(f"không có thư mục quy tắc {self.directory}")
        self._docs: dict[str, RuleDoc] = {}

    # files
    def files(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir()
                      if p.suffix in (".yaml", ".yml") and p.is_file() and not p.name.startswith("."))

    def doc(self, name: str) -> RuleDoc:
        """One file by name (``units.yaml``), loaded once."""
        if name not in self._docs:
            path = self.directory / name
            if path.parent != self.directory or not path.is_file():
                raise EditError(f"không có tệp quy tắc “{name}” trong {self.directory.name}")
            self._docs[name] = RuleDoc(path)
        return self._docs[name]

    def new_file(self, name: str, header: str = "") -> RuleDoc:
        """A new rule file (for a new plan), written on save; ``header`` becomes its top comment."""
        if "/" in name or "\\" in name or name.startswith(".") or not name.endswith((".yaml", ".yml")):
            raise EditError(f"tên tệp “{name}” không hợp lệ: chỉ một tên tệp, đuôi .yaml")
        path = self.directory / name
        if path.exists() or name in self._docs:
            raise EditError(f"tệp “{name}” đã có")
        doc = RuleDoc(path, "")
        doc.header = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) + ("\n" if header else "")
        self._docs[name] = doc
        return doc

    def find(self, section: str, item_id: str) -> tuple[RuleDoc, CommentedSeq, int]:
        """The file, list and index where ``section`` declares ``item_id``."""
        for path in self.files():
            doc = self.doc(path.name)
            seq = doc.data.get(section) if isinstance(doc.data, Mapping) else None
            if isinstance(seq, list):
                for i, item in enumerate(seq):
                    if isinstance(item, Mapping) and str(item.get("id")) == item_id:
                        return doc, seq, i
        raise EditError(f"không có {SECTIONS_VI.get(section, section)} “{item_id}” trong bộ quy tắc")

    def item(self, section: str, item_id: str) -> CommentedMap:
        doc, seq, i = self.find(section, item_id)
        return seq[i]

    # generic edits
    def set_field(self, section: str, item_id: str, field: str | Sequence[str], value: Any) -> None:
        """Set one field (``"due.day"`` or ``("due", "day")``) of one item; ``None`` removes it.
        A nested mapping shared through an anchor is copied first, so only this item changes."""
        path = field.split(".") if isinstance(field, str) else list(field)
        if not path or not all(path):
            raise EditError("thiếu tên trường cần sửa")
        node: Any = self.item(section, item_id)
        for name in path[:-1]:
            child = node.get(name)
            if child is None:
                child = styled({}, name)
                node[name] = child
            elif not isinstance(child, Mapping):
                raise EditError(f"trường “{'.'.join(path)}” của “{item_id}”: “{name}” không phải nhóm trường")
            elif getattr(getattr(child, "anchor", None), "value", None):
                child = _unshared(child)
                node[name] = child
            node = child
        last = path[-1]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = styled(value, last, node.get(last))

    def insert_field(self, section: str, item_id: str, key: str, value: Any, after: Iterable[str] = ()) -> None:
        """Set a top-level field of an item, placing a new key after the first of ``after`` present."""
        item = self.item(section, item_id)
        if key in item:
            item[key] = styled(value, key, item[key])
            return
        keys = list(item.keys())
        pos = len(keys)
        for a in after:
            if a in item:
                pos = keys.index(a) + 1
                break
        rest = _take_tail(item) if pos == len(keys) else ""
        item.insert(pos, key, styled(value, key))
        _put_tail(item, rest)

    def add_item(self, section: str, data: Mapping[str, Any], file: str, after: str | None = None) -> None:
        """Append (or insert after the item ``after``) a new item in ``file``'s ``section``, in the
        packs' layout, separated from its neighbour by a blank line."""
        item_id = str(data.get("id") or "")
        if not item_id:
            raise EditError(f"{SECTIONS_VI.get(section, section)} mới cần mã (id)")
        try:
            self.find(section, item_id)
        except EditError:
            pass
        else:
            raise EditError(f"mã “{item_id}” đã có trong bộ quy tắc: chọn mã khác")
        doc = self.doc(file) if (self.directory / file).exists() or file in self._docs else self.new_file(file)
        if not isinstance(doc.data, CommentedMap):
            raise EditError(f"{file}: tệp không phải một mapping các mục quy tắc")
        seq = doc.data.get(section)
        if seq is None:
            seq = CommentedSeq()
            doc.data[section] = seq
        end = len(seq)
        pos = end
        if after is not None:
            ids = [str(x.get("id")) if isinstance(x, Mapping) else "" for x in seq]
            if after not in ids:
                raise EditError(f"không có “{after}” trong {file}")
            pos = ids.index(after) + 1
        item = CommentedMap()
        for k, v in data.items():
            item[k] = styled(v, k)
        # What followed the previous item (a blank line, the next section's heading) now follows
        # the new one; the previous item is separated from the new one by a blank line.
        rest = _take_tail(seq[pos - 1]) if pos > 0 else "\n"
        seq.insert(pos, item)
        if pos > 0 and (rest.startswith("\n") or pos == end):
            _put_tail(seq[pos - 1], "\n")
        _put_tail(item, rest)

    # the edits the console offers
    def set_obligation_field(self, obligation: str, field: str | Sequence[str], value: Any) -> None:
        self.set_field("obligations", obligation, field, value)

    def add_obligation(self, data: Mapping[str, Any], file: str, after: str | None = None) -> None:
        self.add_item("obligations", data, file, after)

    def end_obligation(self, obligation: str, until: date) -> None:
        """The obligation stops asking for periods after ``until`` (``effective_until``)."""
        self.insert_field("obligations", obligation, "effective_until", until, after=("effective_from", "due"))

    def add_unit(self, data: Mapping[str, Any], file: str = "units.yaml", after: str | None = None) -> None:
        self.add_item("units", data, file, after)

    def end_unit(self, unit: str, until: date, successor: str | None = None) -> None:
        """The unit ends on ``until``; its open reports pass to ``successor`` (engine: successor)."""
        if successor is not None:
            self.item("units", successor)      # the successor must exist (a clear message if not)
        self.insert_field("units", unit, "valid_until", until, after=("valid_from", "supervisor", "contacts", "kind"))
        if successor is not None:
            self.insert_field("units", unit, "successor", successor, after=("valid_until",))

    def set_policy_field(self, policy: str, field: str, value: Any) -> None:
        self.set_field("reminder_policies", policy, field, value)

    def save(self) -> list[Path]:
        """Write the files that changed; returns them."""
        return [d.path for d in self._docs.values() if d.save()]


def _unshared(node: CommentedMap) -> CommentedMap:
    """A copy of an anchored mapping without the anchor (edits of one item stay in that item)."""
    c = copy.deepcopy(node)
    if hasattr(c, "anchor"):
        c.anchor.value = None
        c.anchor.always_dump = False
    return c


def _tail(node: Any) -> tuple[Any, Any] | None:
    """Where ruamel keeps the comment that follows the last line of a block item: the last key of
    the innermost last block (a list of assumptions ends an obligation)."""
    if isinstance(node, CommentedMap) and len(node) and not node.fa.flow_style():
        key = list(node.keys())[-1]
        inner = _tail(node[key]) if isinstance(node[key], (CommentedMap, CommentedSeq)) else None
        return inner or (node, key)
    if isinstance(node, CommentedSeq) and len(node) and not node.fa.flow_style():
        inner = _tail(node[-1]) if isinstance(node[-1], (CommentedMap, CommentedSeq)) else None
        return inner or (node, len(node) - 1)
    return None


def _slot(holder: Any) -> int:
    return 2 if isinstance(holder, CommentedMap) else 0


def _take_tail(node: Any) -> str:
    """Detach the blank lines and full-line comments after ``node``'s last line (an end-of-line
    comment stays where it is) and return them."""
    loc = _tail(node)
    if loc is None:
        return ""
    holder, key = loc
    entry = holder.ca.items.get(key)
    tok = entry[_slot(holder)] if entry else None
    if tok is None:
        return ""
    value = tok.value
    cut = value.find("\n")
    head, rest = (value, "") if cut < 0 else (value[:cut + 1], value[cut + 1:])
    if head.strip():
        tok.value = head
    else:
        entry[_slot(holder)] = None
    return rest


def _put_tail(node: Any, rest: str) -> None:
    """Put ``rest`` (blank lines, comments) after ``node``'s last line."""
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    loc = _tail(node)
    if not rest or loc is None:
        return
    holder, key = loc
    entry = holder.ca.items.setdefault(key, [None, None, None, None])
    tok = entry[_slot(holder)]
    if tok is None:
        entry[_slot(holder)] = CommentToken("\n" + rest, CommentMark(0), None)
    else:
        tok.value = tok.value + rest


def locate(directory: Path, file: str, line: int | None) -> tuple[str, str] | None:
    """(section, id) of the item written at ``file``:``line`` of a rule folder, or None: lets a form
    put a `rules check` error next to the item (and RuleError.field names the field)."""
    if not line:
        return None
    try:
        doc = RuleDoc(Path(directory) / file)
    except (OSError, EditError):
        return None
    found: tuple[str, str] | None = None
    best = -1
    if isinstance(doc.data, Mapping):
        for section in SECTIONS_VI:
            seq = doc.data.get(section)
            if not isinstance(seq, CommentedSeq):
                continue
            for item in seq:
                start = item.lc.line + 1 if isinstance(item, CommentedMap) else None
                if start is not None and best < start <= line:
                    best, found = start, (section, str(item.get("id")))
    return found
