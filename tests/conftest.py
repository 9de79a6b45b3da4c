from __future__ import annotations

import os
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


_PG = {}


@pytest.fixture(scope="session")
def pg_server():
    """One PostgreSQL server for the session; each test gets its own database in it."""
    from tests.pgserver import PgServer

    try:
        server = PgServer().start()
    except Exception as exc:  # binaries missing (a machine without Debian's postgresql)
        pytest.skip(f"PostgreSQL not available: {exc}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path: Path) -> str:
    """A fresh, empty state database (SQLite file or PostgreSQL database), migrated by the code under test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    server = request.getfixturevalue("pg_server")
    _PG["n"] = _PG.get("n", 0) + 1
    return server.create_db(f"t{_PG['n']}_{abs(hash(request.node.nodeid)) % 10**8}")


@pytest.fixture
def smtp():
    """A real aiosmtpd server on loopback recording every message: (handler, port)."""
    from tests.support import EphemeralController, RecordingHandler

    handler = RecordingHandler()
    ctl = EphemeralController(handler)
    ctl.start()
    yield handler, ctl.port
    ctl.stop()


@pytest.fixture
def seed_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI on a fresh state: seed rules and calendar, an empty SQLite file, mail to a folder, and
    no DONDOC_* setting of the machine running the tests (a developer's shell must not leak in)."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("DONDOC_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DONDOC_RULES_DIR", str(RULES))
    monkeypatch.setenv("DONDOC_CALENDAR_DIR", str(CALENDAR))
    monkeypatch.setenv("DONDOC_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("DONDOC_MAIL_DIR", str(tmp_path / "mail-out"))
    return tmp_path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def minipack():
    from engine.rules_loader import load_pack

    return load_pack(MINIPACK, CALENDAR)


@pytest.fixture(autouse=True)
def _wide_cli_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI tables do not depend on the terminal running the tests (pytest-xdist workers have none):
    a wide console, so a test reads whole titles instead of Rich's folding."""
    from engine.app.cli import common

    monkeypatch.setattr(common.out, "_width", 250)
    monkeypatch.setattr(common.err, "_width", 250)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long tests first: with pytest-xdist's workers they run beside the many short ones instead
    of ending the run alone (the order of everything else is kept)."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("slow") else 1)
