"""The loader core shared by rule packs (engine/rules_loader.py) and KPI files (engine/kpi/loader.py).

Load the sections of a folder of YAML files into pydantic models, remembering where each item came
from (`Source`), collecting every error (never stopping at the first), refusing duplicate ids, and
noting which ids were declared but could not be loaded (`broken`), so that the cross-checks do not
report a cascade of "unknown unit" errors whose cause is one bad unit or one syntax error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from engine.errors import CAUSE_FILE, CROSS_CHECK, RuleError, RulePackInvalid, display_path
from engine.yamlsource import LineMap, YamlDoc, load_yaml, validation_errors


@dataclass(frozen=True)
class Source:
    file: str
    line: int | None
    path: tuple[Any, ...]
    lines: LineMap

    def at(self, *sub: Any) -> int | None:
        p = self.path + sub
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.line

    def field(self, *sub: Any) -> str:
        """`obligations[3].due.obligation`: the field as the error list shows it."""
        head = f"{self.path[0]}[{self.path[1]}]" if len(self.path) > 1 else str(self.path[0])
        return head + "".join(f".{s}" if isinstance(s, str) else f"[{s}]" for s in sub)

    def error(self, message: str, *sub: Any, rank: int = CROSS_CHECK) -> RuleError:
        return RuleError(self.file, self.at(*sub), self.field(*sub), message, rank)


@dataclass(frozen=True)
class Section:
    """One top-level key of a file: a list of items (`many`) or a single block such as `pack:`."""
    model: type[BaseModel]
    many: bool = True
    namespace: str | None = None     # ids unique within; None: the section's own name
    has_id: bool = True


@dataclass
class Loaded:
    files: list[Path]
    blocks: dict[str, list[tuple[Any, Source]]]        # single blocks that validated
    block_seen: dict[str, list[Source]]                 # single blocks present, valid or not
    items: dict[str, list[tuple[Any, Source]]]          # every valid item, duplicates included
    tables: dict[str, dict[str, Any]]                   # id -> item, first declaration wins
    sources: dict[tuple[str, str], Source]
    broken: set[str] = field(default_factory=set)       # ids declared but not loaded
    errors: list[RuleError] = field(default_factory=list)


def yaml_files(directory: Path, missing: str, empty: str) -> list[Path]:
    """The folder's *.yaml/*.yml files, sorted; RulePackInvalid when there is no folder or no file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RulePackInvalid([RuleError(display_path(directory), None, "", missing, CAUSE_FILE)])
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if not files:
        raise RulePackInvalid([RuleError(display_path(directory), None, "", empty, CAUSE_FILE)])
    return files


_ID_LINE = re.compile(r"^[ \t]*(?:-[ \t]+)?id[ \t]*:[ \t]*[\"']?([a-z0-9][a-z0-9-]*)", re.M)


def _ids_in_text(path: Path) -> set[str]:
    """Ids a file that could not be parsed seems to declare (so references to them are not blamed)."""
    try:
        return set(_ID_LINE.findall(path.read_bytes()[:2_000_000].decode("utf-8", "replace")))
    except OSError:
        return set()


def load_sections(files: list[Path], sections: dict[str, Section], not_a_mapping: str,
                  unknown_key: str) -> Loaded:
    """Read every file's sections into models; `unknown_key` is formatted with {key}."""
    out = Loaded(files, {k: [] for k, s in sections.items() if not s.many},
                 {k: [] for k, s in sections.items() if not s.many},
                 {k: [] for k, s in sections.items() if s.many},
                 {k: {} for k, s in sections.items() if s.many and s.has_id}, {})
    for path in files:
        fname = display_path(path)
        doc: YamlDoc = load_yaml(path)
        out.errors.extend(_as_cause(e) for e in doc.errors)
        if doc.data is None:
            if doc.errors:
                out.broken |= _ids_in_text(path)
            continue
        if doc.errors:   # duplicate keys: the file was read, but one of two values was dropped
            out.broken |= _ids_in_text(path)
        data, lines = doc.data, doc.lines
        if not isinstance(data, dict):
            out.errors.append(RuleError(fname, 1, "", not_a_mapping))
            continue
        for key, value in data.items():
            sec = sections.get(key)
            if sec is None:
                out.errors.append(RuleError(fname, lines.get((key,)), str(key), unknown_key.format(key=key)))
                continue
            if not sec.many:
                src = Source(fname, lines.get((key,)), (key,), lines)
                out.block_seen[key].append(src)
                try:
                    out.blocks[key].append((sec.model.model_validate(value), src))
                except ValidationError as exc:
                    out.errors.extend(validation_errors(exc, fname, lines, (key,), value, doc.anchors))
                continue
            if not isinstance(value, list):
                out.errors.append(RuleError(fname, lines.get((key,)), str(key),
                                            "cần một danh sách (mỗi phần tử bắt đầu bằng “- ”)"))
                if isinstance(value, dict) and isinstance(value.get("id"), str):
                    out.broken.add(value["id"])
                continue
            for i, raw in enumerate(value):
                src = Source(fname, lines.get((key, i)), (key, i), lines)
                try:
                    out.items[key].append((sec.model.model_validate(raw), src))
                except ValidationError as exc:
                    out.errors.extend(validation_errors(exc, fname, lines, (key, i), raw, doc.anchors))
                    if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                        out.broken.add(raw["id"])
    _index(out, sections)
    return out


def _as_cause(e: RuleError) -> RuleError:
    return RuleError(e.file, e.line, e.field, e.message, CAUSE_FILE) if not e.field else e


def _index(out: Loaded, sections: dict[str, Section]) -> None:
    """Id tables: the first declaration wins; later ones are errors naming the first."""
    first_seen: dict[tuple[str, str], Source] = {}
    for key, sec in sections.items():
        if not sec.many or not sec.has_id:
            continue
        ns = sec.namespace or key
        for obj, src in out.items[key]:
            prev = first_seen.get((ns, obj.id))
            if prev is not None:
                out.errors.append(src.error(f"mã “{obj.id}” bị trùng: đã dùng ở {prev.file}:{prev.line}; "
                                            "mỗi mã chỉ được khai báo một lần", "id", rank=1))
                continue
            first_seen[(ns, obj.id)] = src
            out.tables[key][obj.id] = obj
            out.sources[(key, obj.id)] = src


def single_block(loaded: Loaded, key: str, label: str) -> list[RuleError]:
    """Errors for a block (`pack:`) written more than once."""
    seen = loaded.block_seen[key]
    return [RuleError(src.file, src.line, key, f"khối “{label}:” đã có ở {seen[0].file}:{seen[0].line}; chỉ được có một")
            for src in seen[1:]]


def dedup(errs: list[RuleError]) -> list[RuleError]:
    seen, out = set(), []
    for e in errs:
        if e not in seen:
            seen.add(e)
            out.append(e)
    return out


def content_hash(files: list[Path]) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode("utf-8", "surrogateescape"))
        h.update(p.read_bytes())
    return h.hexdigest()[:16]
