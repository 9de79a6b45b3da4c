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


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A fresh SQLite state database file, migrated by the code under test."""
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def minipack():
    from engine.rules_loader import load_pack

    return load_pack(MINIPACK, CALENDAR)
