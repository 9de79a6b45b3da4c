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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def db_url(request, tmp_path: Path) -> str:
    """A fresh, empty state database (SQLite file or PostgreSQL database), migrated by the code under test.
    The PostgreSQL twin of each test is in the whole suite, not in the fast one (-m "not slow")."""
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


@pytest.fixture(scope="session", autouse=True)
def _cli_built_once():
    """Typer's CliRunner rebuilds the whole click command tree (every command, option and `--now`)
    at each invoke: ~0.04 s, hundreds of times in the suite. A process builds it once and runs it;
    so do the tests: the tree of an app is built at its first invoke in a worker and reused (the
    commands run exactly as before; what they do is in the context click creates per invoke)."""
    import typer.testing

    built: dict[int, tuple[object, object]] = {}
    build = typer.testing._get_command

    def once(app):
        hit = built.get(id(app))
        if hit is None or hit[0] is not app:
            hit = built[id(app)] = (app, build(app))
        return hit[1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(typer.testing, "_get_command", once)
        yield


@pytest.fixture(autouse=True)
def _wide_cli_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI tables do not depend on the terminal running the tests (pytest-xdist workers have none):
    a wide console, so a test reads whole titles instead of Rich's folding."""
    from engine.app.cli import common

    monkeypatch.setattr(common.out, "_width", 250)
    monkeypatch.setattr(common.err, "_width", 250)


# Seconds each module's tests take together on the 2-core CI machine (measured with --junitxml or
# --durations; rounded): only for the order below, never for a result. A module missing here counts
# as short. Refresh an entry when a module gets much longer or shorter.
EXPECTED_SECONDS: dict[str, float] = {
    "tests/test_daemon_faults.py": 195,
    "tests/test_daemon_run.py": 160,
    "tests/test_rules_daemon_flow.py": 30,
    "tests/test_inbox_daemon.py": 20,
    "tests/test_inbox_crash.py": 18,
    "tests/test_inbox_imap.py": 12,
    "tests/test_web_inbox.py": 10,
    "tests/test_inbox_store.py": 5,
    "tests/test_web_rules_edit.py": 28,
    "tests/test_web_confirm.py": 20,
    "tests/test_web_csrf.py": 18,
    "tests/test_config_wiring.py": 17,
    "tests/test_preview.py": 15,
    "tests/test_web_rules_browser.py": 14,
    "tests/test_daemon_health.py": 14,
    "tests/test_notify_smtp.py": 12,
    "tests/test_web_cache.py": 12,
    "tests/test_rule_versions.py": 10,
    "tests/test_web_reports.py": 10,
    "tests/test_web_daemon.py": 9,
    "tests/test_kpi_charts.py": 9,
    "tests/test_notify_crash.py": 7,
    "tests/test_web_instances.py": 7,
    "tests/test_web_flows_browser.py": 7,
    "tests/test_golive.py": 7,
    "tests/test_cli_errors.py": 7,
    "tests/test_state.py": 6,
    "tests/test_web_browser.py": 5,
    "tests/test_rules_mutation.py": 5,
    "tests/test_pass_chunks.py": 20,
    "tests/test_sync_bounded.py": 85,
    "tests/test_browse_matrix_sql.py": 15,
    "tests/test_dashboard_sql.py": 15,
    "tests/test_delivery_pipeline.py": 10,
}


def _expected(item: pytest.Item) -> float:
    return EXPECTED_SECONDS.get(item.nodeid.split("::", 1)[0], 0.0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest modules first, each module's tests kept together and in their order (several
    modules share state between their tests through module-scoped fixtures). With `--dist loadfile`
    (pyproject.toml) pytest-xdist gives a worker one whole module at a time, in this order: the long
    ones start at once and the many short ones even out the end of the run."""
    items.sort(key=lambda item: -_expected(item))


@pytest.fixture(scope="session")
def imap_server():
    """One dovecot for the session (tests/imapserver.py); each test gets its own account. Skipped
    where dovecot is missing, except when DONDOC_REQUIRE_IMAP=1 (CI): then it fails."""
    from tests.imapserver import ImapServer

    try:
        server = ImapServer().start()
    except Exception as exc:  # dovecot missing or cannot start
        if os.environ.get("DONDOC_REQUIRE_IMAP") == "1":
            pytest.fail(f"IMAP server needed (DONDOC_REQUIRE_IMAP=1) but not available: {exc}")
        pytest.skip(f"IMAP server (dovecot) not available: {exc}")
    yield server
    server.stop()


@pytest.fixture
def imap_account(imap_server):
    return imap_server.new_account()


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing():
    """Argon2id at its lowest cost in this test process: the console's tests log in hundreds of
    times and argon2-cffi's defaults take ~0.1 s a hash by design. The product keeps the defaults
    (tests/test_web_console.py checks them); daemons and commands started as subprocesses too."""
    from argon2 import PasswordHasher

    from engine.app import accounts

    kept = accounts.HASHER
    accounts.HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    yield kept
    accounts.HASHER = kept


@pytest.fixture(scope="session", autouse=True)
def private_pack_cache(tmp_path_factory):
    """Parsed packs cached by the commands (engine/app/packcache.py) go to a folder of this test
    session, not to the user's ~/.cache; subprocesses inherit it."""
    folder = tmp_path_factory.mktemp("xdg-cache")
    kept = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    yield folder
    if kept is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = kept
