from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
CALENDAR = ROOT / "calendar"
MINIPACK = Path(__file__).resolve().parent / "fixtures" / "minipack"


@pytest.fixture
def pack_copy(tmp_path: Path) -> Path:
    """A writable copy of the seed rule packs, to break in one way per test."""
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target
