"""Errors a secretary can act on: every one names the file, the line and the field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RuleError:
    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        field = f" [{self.field}]" if self.field else ""
        return f"{where}{field}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "field": self.field, "message": self.message}


class RulePackInvalid(Exception):
    """Raised with every problem found, so a secretary fixes them in one pass."""

    def __init__(self, errors: list[RuleError]):
        self.errors = sorted(errors, key=lambda e: (e.file, e.line or 0, e.field))
        super().__init__("\n".join(str(e) for e in self.errors))


def display_path(path: Path) -> str:
    """Paths relative to the working directory read better in error lists."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
