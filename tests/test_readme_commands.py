"""Every `dondoc …` line in README.md's and docs/*.md's fenced `sh` blocks runs as written.

The commands run in order, as a newcomer would type them, on a fresh state: a temporary directory
with a copy of rules/, calendar/ and examples/, a new state.db, mail written to a pickup folder, and
a fixed time (DONDOC_NOW). Lines that are not dondoc commands (./setup.sh, systemctl, journalctl …)
are not ours to run; `dondoc run` is the long-running daemon (tests/test_daemon_run.py covers it).
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.app.cli import app
from tests.conftest import ROOT

FENCE = re.compile(r"^```(\w*)\s*\n(.*?)^```", re.S | re.M)
SHELL = {"sh", "bash", "shell", "console"}
SKIP = {"run": "dondoc run is the long-running daemon; tests/test_daemon_run.py runs it",
        "web": "dondoc web is the long-running console; tests/test_web_*.py serve it",
        "./setup.sh": "./setup.sh builds .venv and runs the whole suite or the daemon; CI runs it (.ci/run)"}
# Exit codes a document states for a command (none today: every example succeeds).
EXPECTED_EXIT: dict[str, int] = {}
NOW = "2026-11-26T09:00"
TYPED_PASSWORD = "mat-khau-trong-readme-1"


def commands(doc: Path) -> list[str]:
    """The dondoc command lines of a document's shell blocks, comments removed, continuations joined."""
    found = []
    for lang, body in FENCE.findall(doc.read_text(encoding="utf-8")):
        if lang not in SHELL:
            continue
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] in ("dondoc", ".venv/bin/dondoc"):
                found.append(shlex.join(words[1:]))
            elif words and words[0] == "./setup.sh":
                found.append(shlex.join(words))
    return found


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ALL = [(doc.relative_to(ROOT).as_posix(), cmd) for doc in DOCS for cmd in commands(doc)]


def test_the_readme_has_commands_to_run() -> None:
    readme = [c for d, c in ALL if d == "README.md"]
    assert len(readme) >= 9 and any(c.startswith("submit ") for c in readme)


def test_no_placeholder_in_a_command_line() -> None:
    """`[--json]`, `...` or `ID` in a command line cannot be typed as written."""
    for doc, cmd in ALL:
        if cmd.startswith("./setup.sh"):
            continue
        assert not re.search(r"\[--|\.\.\.|…| ID\b", cmd), f"{doc}: dondoc {cmd}"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("fresh-clone")
    for d in ("rules", "calendar", "examples"):
        shutil.copytree(ROOT / d, home / d)
    return home


def test_documented_commands_run_in_order(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """All of them, in document order, in one test: they build on each other (export, then import;
    add an account, then disable it), so they must not be spread over pytest-xdist's workers."""
    monkeypatch.chdir(fresh)
    for var in ("DONDOC_RULES_DIR", "DONDOC_CALENDAR_DIR", "DONDOC_SMTP_HOST", "DONDOC_CONFIG", "DONDOC_TEMPLATES_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DONDOC_DATABASE_URL", f"sqlite:///{fresh / 'state.db'}")
    monkeypatch.setenv("DONDOC_MAIL_DIR", str(fresh / "mail-out"))
    monkeypatch.setenv("DONDOC_NOW", NOW)
    failures, ran = [], 0
    for doc, cmd in ALL:
        args = shlex.split(cmd)
        if args[0] in SKIP:
            continue
        # What a person types at a prompt (`users add` asks for the password twice).
        res = CliRunner().invoke(app, args, input=f"{TYPED_PASSWORD}\n{TYPED_PASSWORD}\n")
        ran += 1
        if res.exit_code != EXPECTED_EXIT.get(cmd, 0) or "Traceback" in res.output:
            failures.append(f"{doc}: dondoc {cmd} → exit {res.exit_code}\n{res.output}")
    assert ran >= 20
    assert not failures, "\n\n".join(failures)


def test_the_console_script_is_where_the_readme_says() -> None:
    """README: `./setup.sh` puts `dondoc` into .venv/bin/."""
    script = ROOT / ".venv" / "bin" / "dondoc"
    if not script.exists():
        pytest.skip("no .venv here (CI installs elsewhere)")
    assert "engine.app.cli" in script.read_text(encoding="utf-8", errors="replace")
