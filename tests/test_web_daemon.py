"""`dondoc run` serves the console in the same process (the README's first command), and a console
that cannot start (port in use) never stops the daemon from chasing deadlines."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import CALENDAR, RULES
from tests.support import free_port, written_emls

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow          # real `dondoc run` processes


def _start(tmp_path: Path, port: int, now: str = "2026-12-02T09:00", rate: float = 1.0, **extra: str) -> tuple[subprocess.Popen, Path]:
    exe = Path(sys.executable).with_name("dondoc")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "engine.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DONDOC_")}
    env.update({"DONDOC_RULES_DIR": str(RULES), "DONDOC_CALENDAR_DIR": str(CALENDAR), "DONDOC_WEB_PORT": str(port),
                "DONDOC_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}", "DONDOC_MAIL_DIR": str(tmp_path / "mail"),
                "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **extra})
    log = tmp_path / "run.log"
    proc = subprocess.Popen(cmd + ["run", "--sim-start", now, "--sim-rate", str(rate), "--days", "1"], cwd=tmp_path, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    return proc, log


def _wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float = 60.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = log.read_text(encoding="utf-8", errors="replace")
        if text in out:
            return out
        assert proc.poll() is None, out
        time.sleep(0.1)
    raise AssertionError(f"“{text}” not seen:\n{log.read_text()}")


def _stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


def test_run_serves_the_console_and_says_where(tmp_path: Path) -> None:
    port = free_port()
    # Monday 07/12/2026: a fresh installation has reminders to send for the coming deadlines.
    proc, log = _start(tmp_path, port, "2026-12-07T09:00", 30.0, DONDOC_WEB_SECRET="k" * 40, DONDOC_WEB_PUBLIC_URL=f"http://127.0.0.1:{port}")
    try:
        out = _wait_for(log, "dondoc users add", proc)      # how to create the first account
        assert f"Bảng điều khiển web: http://127.0.0.1:{port}" in out
        _wait_for(log, "evaluated at", proc)                  # the daemon works beside it
        r = httpx.get(f"http://127.0.0.1:{port}/dang-nhap", timeout=10)
        assert r.status_code == 200 and "Đăng nhập" in r.text
        # The daemon's digests carry the unit's link, and the link opens that unit's page.
        import email
        from email import policy

        def links() -> list[str]:
            """The unit links of the digests written so far (the secretariat's KPI summary has none)."""
            found = []
            for path in written_emls(tmp_path / "mail"):
                msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
                body = msg.get_body(("plain",)).get_content()
                found += [w for w in body.split() if w.startswith(f"http://127.0.0.1:{port}/xn/")]
            return found

        end = time.monotonic() + 60
        while time.monotonic() < end and not links():
            time.sleep(0.2)
        assert links(), log.read_text()
        link = links()[0]
        page = httpx.get(link, timeout=10)
        assert page.status_code == 200, page.text
    finally:
        assert _stop(proc) == 0


def test_a_port_in_use_leaves_the_daemon_running(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc, log = _start(tmp_path, port)
        try:
            out = _wait_for(log, "evaluated at", proc)
            assert "Không mở được bảng điều khiển web" in out and "Traceback" not in out
            time.sleep(0.5)
            assert proc.poll() is None
        finally:
            assert _stop(proc) == 0


def test_json_journal_stays_json_with_the_console(tmp_path: Path) -> None:
    """With --log-format json every line of the journal is one JSON object, the console's included
    (uvicorn's own plain "ERROR: …" lines would break a log shipper)."""
    import json

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        exe = Path(sys.executable).with_name("dondoc")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "engine.cli"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DONDOC_")}
        env.update({"DONDOC_RULES_DIR": str(RULES), "DONDOC_CALENDAR_DIR": str(CALENDAR), "DONDOC_WEB_PORT": str(port),
                    "DONDOC_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}", "DONDOC_MAIL_DIR": str(tmp_path / "mail"),
                    "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
        errlog = tmp_path / "err.log"
        proc = subprocess.Popen(cmd + ["run", "--sim-start", "2026-12-02T09:00", "--days", "1", "--log-format", "json"],
                                cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=open(errlog, "w"))
        try:
            _wait_for(errlog, '"evaluated"', proc)
        finally:
            assert _stop(proc) == 0
    events = []
    for line in errlog.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)                     # a plain line fails here
            events.append(rec.get("event"))
    assert "web_not_started" in events
