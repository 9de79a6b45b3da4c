"""Errors a secretary can act on: every one names the file, the line and the field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.limits import MAX_YEAR, MIN_YEAR, YEARS_VI  # noqa: F401  (re-exported: one place for the year range)

# How an error ranks in a list: the cause of a cascade first (a file that cannot be read, an item
# that fails validation), then what the cross-checks found.
CAUSE_FILE, CAUSE_ITEM, CROSS_CHECK = 0, 1, 2


@dataclass(frozen=True)
class RuleError:
    file: str
    line: int | None
    field: str
    message: str
    rank: int = field(default=CAUSE_ITEM, compare=False)

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        field_ = f" [{self.field}]" if self.field else ""
        return f"{where}{field_}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "field": self.field, "message": self.message}


class RulePackInvalid(Exception):
    """Raised with every problem found, so a secretary fixes them in one pass.

    Root causes come first (files that cannot be read, items that fail validation), then the
    cross-checks; within each, by file and line."""

    def __init__(self, errors: list[RuleError]):
        self.errors = sorted(errors, key=lambda e: (e.rank, e.file, e.line or 0, e.field))
        super().__init__("\n".join(str(e) for e in self.errors))


def display_path(path: Path) -> str:
    """Paths relative to the working directory read better in error lists.

    A file name that is not valid UTF-8 (bytes kept as surrogates by the OS layer) is shown with
    U+FFFD in their place: the text must survive printing, JSON and e-mail."""
    try:
        text = str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        text = str(path)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
