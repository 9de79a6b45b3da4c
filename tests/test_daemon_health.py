"""The daemon's own fault handling, in process (issue 10 items 1, 2, 4, 5, 7): health check and
exit 70, leases across a busy database, the rule watcher on whatever the loader raises, JSON logs,
sd_notify, and the modes of the state database files. The same faults against real subprocesses
are in tests/test_daemon_faults.py and tests/test_daemon_run.py.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import sqlite3
import stat
import sys
import threading
import time
import warnings
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from engine.app.daemon import (EXIT_UNHEALTHY, ClockedScheduler, Daemon, DaemonConfig, JsonFormatter, Watchdog,
                               setup_logging)
from engine.clock import TZ
from engine.db import get_engine, make_engine
from engine.leader import Heartbeat, SqliteLease
from engine.simclock import Clock
from notifications.config import SmtpConfig
from tests.support import write_units_pack
from tests.conftest import CALENDAR


def make_daemon(tmp_path: Path, **kw) -> Daemon:
    rules = tmp_path / "rules"
    if not rules.exists():
        write_units_pack(rules, 2)
    cfg = DaemonConfig(rules_dir=rules, calendar_dir=CALENDAR, db_url=f"sqlite:///{tmp_path / 'state.db'}",
                       clock=Clock(datetime(2026, 11, 25, 6, 0, tzinfo=TZ), 60), watch_interval=0.1,
                       standby_poll=0.1, lease_ttl=2.0, smtp=SmtpConfig(pickup_dir=tmp_path / "mail-out"),
                       hard_exit_when_stuck=False, **kw)
    return Daemon(cfg)


def run_in_thread(d: Daemon) -> tuple[threading.Thread, dict]:
    out: dict = {}
    t = threading.Thread(target=lambda: out.setdefault("rc", d.run()), daemon=True)
    t.start()
    return t, out


def wait_for(pred, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def lease_row(db: str) -> tuple[str, float]:
    c = sqlite3.connect(db.removeprefix("sqlite:///"))
    try:
        return c.execute("SELECT holder, expires_at FROM leases").fetchone()
    finally:
        c.close()


# -- 1. the zombie: a scheduler that cannot work makes the daemon leave, non-zero ----------------

@pytest.mark.slow   # a daemon in a thread, stalled for real seconds
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("failure", ["error-every-pass", "thread-dies"])
def test_scheduler_that_cannot_work_exits_70_and_frees_the_lease(tmp_path, monkeypatch, failure) -> None:
    """Before the fix an error escaping APScheduler's pass (its job-store update) ended the scheduler
    thread; the process kept renewing its lease, ran nothing, and exited 0 on SIGTERM."""
    d = make_daemon(tmp_path, stall_limit=1.0)
    t, out = run_in_thread(d)
    wait_for(lambda: d.scheduler is not None and d.scheduler.last_pass_ok > 0 and d.heartbeat is not None, 30, "active")
    exc: BaseException = OperationalError("UPDATE apscheduler_jobs", {}, Exception("disk I/O error")) \
        if failure == "error-every-pass" else SystemExit()

    def broken(self):
        raise exc
    monkeypatch.setattr(ClockedScheduler, "_process_jobs", broken)
    t.join(30)
    assert not t.is_alive(), "the daemon kept running with a scheduler that does nothing"
    assert out["rc"] == EXIT_UNHEALTHY
    assert d.unhealthy_reason
    holder, expires = lease_row(d.cfg.db_url)
    assert expires == 0, "the lease must be released so that a standby takes over at once"


def test_daemon_does_not_renew_its_lease_while_unhealthy() -> None:
    class Lead:
        ttl, holder, renewals = 2.0, "x", 0

        def renew(self):
            self.renewals += 1
            return True

    lead = Lead()
    status: list[str | None] = [None]
    hb = Heartbeat(lead, 0.1, on_lost=lambda: None, healthy=lambda: status[0])  # type: ignore[arg-type]
    assert hb.beat() and lead.renewals == 1
    status[0] = "the scheduler thread has stopped"
    assert hb.beat() and lead.renewals == 1


def test_transient_renewal_error_keeps_the_lease_a_lost_row_loses_it() -> None:
    class Lead:
        ttl, holder = 2.0, "x"
        answers: list = [OperationalError("UPDATE leases", {}, Exception("database is locked")), True, False]

        def renew(self):
            a = self.answers.pop(0)
            if isinstance(a, Exception):
                raise a
            return a

    hb = Heartbeat(Lead(), 0.1, on_lost=lambda: None)  # type: ignore[arg-type]
    assert hb.beat() is True         # busy: retried at the next beat, not "lost"
    assert hb.beat() is True
    assert hb.beat() is False        # someone else holds the row


# -- 2. leases across a busy database ---------------------------------------------------------------

@pytest.mark.slow   # leases expire on the wall clock: ~5 s
def test_standby_waits_out_a_locked_database_and_lets_the_holder_renew_first(tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'state.db'}"
    get_engine(db)
    holder = SqliteLease(make_engine(db, busy_timeout=0.1), ttl=1.0)
    standby = SqliteLease(make_engine(db, busy_timeout=0.1), ttl=1.0)
    assert holder.try_acquire()
    assert not standby.try_acquire()
    lock = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    lock.execute("update leases set holder=holder")
    t_end = time.monotonic() + 2.5                  # the lease expires under the lock
    while time.monotonic() < t_end:
        assert standby.try_acquire() is False       # never raises "database is locked"
        with pytest.raises(OperationalError):
            holder.renew()
        time.sleep(0.1)
    lock.execute("COMMIT")
    lock.close()
    assert standby.try_acquire() is False           # the database was busy: the holder goes first
    assert holder.renew() is True
    for _ in range(15):
        assert standby.try_acquire() is False
        assert holder.renew() is True
        time.sleep(0.1)
    # the holder dies: the standby takes over once the lease expired and a ttl passed
    t0 = time.monotonic()
    while not standby.try_acquire():
        time.sleep(0.1)
        assert time.monotonic() - t0 < 5
    assert lease_row(db)[0] == standby.holder
    assert holder.renew() is False


def test_standby_survives_database_errors_while_waiting(tmp_path) -> None:
    d = make_daemon(tmp_path)
    d.load_rules(initial=True)

    class Lead:
        ttl, holder = 2.0, "x"
        answers: list = [OperationalError("SELECT", {}, Exception("database is locked")),
                         OperationalError("SELECT", {}, Exception("unable to open database file")), False, True]

        def try_acquire(self):
            a = self.answers.pop(0)
            if isinstance(a, Exception):
                raise a
            return a

    assert d._acquire(Lead(), Watchdog()) is True


# -- 3. the rule watcher and whatever the loader raises ----------------------------------------------

@pytest.mark.parametrize("boom", [RecursionError("maximum recursion depth exceeded"), MemoryError(),
                                  ValueError("year 0 is out of range")], ids=["recursion", "memory", "value"])
@pytest.mark.parametrize("role", ["active", "standby"])
def test_any_loader_exception_is_a_broken_version_reported_once(tmp_path, monkeypatch, caplog, boom, role) -> None:
    d = make_daemon(tmp_path)
    d.load_rules(initial=True)
    good = d.pack
    alerts: list = []
    d.on_rules_invalid = lambda exc, fp: alerts.append((exc, fp))
    d.alerts_enabled = role == "active"

    def loader(*_a, **_k):
        raise boom
    monkeypatch.setattr("engine.app.daemon.load_pack", loader)
    (d.cfg.rules_dir / "obligations.yaml").write_text("obligations: []\n# hostile\n", encoding="utf-8")
    caplog.set_level(logging.INFO)
    for _ in range(10):                 # ten watcher ticks
        assert d.check_rules() is False
    assert d.pack is good
    invalid = [r for r in caplog.records if getattr(r, "event", None) == "rules_invalid"]
    assert len(invalid) == 1, [r.getMessage() for r in invalid]      # once per version, not every tick
    if role == "standby":
        assert alerts == []
        d.enable_alerts()               # it becomes active: the pending alert goes out then
    assert len(alerts) == 1
    msg = str(alerts[0][0])
    assert type(boom).__name__ in msg and "dondoc rules check" in msg


# -- 4. JSON logs ----------------------------------------------------------------------------------

def test_json_logs_every_line_is_json_tracebacks_warnings_apscheduler_threads(monkeypatch) -> None:
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        with warnings.catch_warnings():
            setup_logging("json", "INFO")
            log = logging.getLogger("dondoc.daemon")
            try:
                raise OperationalError("UPDATE apscheduler_jobs", {}, Exception("database is locked\nsecond line"))
            except OperationalError:
                log.exception("job store failed", extra={"event": "scheduler_error", "attempt": 1})
            warnings.warn("một cảnh báo\nhai dòng", DeprecationWarning)
            logging.getLogger("apscheduler.scheduler").error("Job raised\nan exception", exc_info=(ValueError, ValueError("x"), None))
            th = threading.Thread(target=lambda: 1 / 0, name="t-crash")
            th.start()
            th.join()
            sys.excepthook(RuntimeError, RuntimeError("uncaught"), None)
    finally:
        logging.captureWarnings(False)
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    lines = [line for line in buf.getvalue().splitlines() if line.strip()]
    recs = [json.loads(line) for line in lines]          # every line parses
    assert len(recs) == 5, lines
    first = recs[0]
    assert first["event"] == "scheduler_error" and first["attempt"] == 1
    assert "Traceback" in first["exc_info"] and "database is locked" in first["exc_info"]
    assert first["exc_type"] == "OperationalError"
    assert recs[1]["logger"] == "py.warnings" and "một cảnh báo" in recs[1]["msg"]
    assert recs[2]["logger"] == "apscheduler.scheduler"
    assert recs[3]["event"] == "crash" and "ZeroDivisionError" in recs[3]["exc_info"]
    assert recs[4]["event"] == "crash" and recs[4]["exc_type"] == "RuntimeError"


def test_json_formatter_keeps_extra_fields() -> None:
    r = logging.LogRecord("dondoc.daemon", logging.INFO, "", 0, "delivered %s", (3,), None)
    r.event, r.sent, r.sim_now = "delivered", 3, "2026-11-25T08:00:00+07:00"
    rec = json.loads(JsonFormatter().format(r))
    assert rec["msg"] == "delivered 3" and rec["event"] == "delivered" and rec["sent"] == 3 and rec["sim_now"]


# -- 5. systemd notify and watchdog ----------------------------------------------------------------

@pytest.mark.slow   # a daemon in a thread pinging a real watchdog: ~2.5 s
def test_sd_notify_ready_watchdog_while_healthy_and_stopping(tmp_path, monkeypatch) -> None:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")           # WatchdogSec=0.4 s: a ping every 0.2 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    d = make_daemon(tmp_path)
    t, out = run_in_thread(d)
    got: list[str] = []
    end = time.monotonic() + 30
    while time.monotonic() < end and got.count("WATCHDOG=1") < 3:
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
    d.request_stop()
    t.join(20)
    while True:
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    sock.close()
    assert out["rc"] == 0
    assert got[0].startswith("READY=1") and "STATUS=active" in got[0]
    assert got.count("WATCHDOG=1") >= 3
    assert got[-1] == "STOPPING=1"


# -- 6. files are not world-readable -----------------------------------------------------------------

def test_state_database_files_are_created_private_and_tightened(tmp_path, monkeypatch) -> None:
    old = os.umask(0o022)
    try:
        db = f"sqlite:///{tmp_path / 'state.db'}"
        eng = get_engine(db)
        with eng.begin() as c:              # keeps -wal/-shm alive while we look
            c.execute(text("UPDATE leases SET holder = holder"))
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir() if p.name.startswith("state.db")}
        assert modes["state.db"] == 0o600
        assert modes.get("state.db-wal") in (None, 0o600) and modes.get("state.db-shm") in (None, 0o600), modes
        assert modes["state.db.migrate-lock"] == 0o600
        assert not any(m & 0o004 for m in modes.values()), modes
        eng.dispose()

        other = tmp_path / "old.db"             # a database made world-readable by an earlier version
        sqlite3.connect(other).execute("create table t(x)").connection.close()
        (tmp_path / "old.db.notify.lock").touch()
        for p in (other, tmp_path / "old.db.notify.lock"):
            os.chmod(p, 0o644)
        make_engine(f"sqlite:///{other}").dispose()
        assert stat.S_IMODE(other.stat().st_mode) == 0o640
        assert stat.S_IMODE((tmp_path / "old.db.notify.lock").stat().st_mode) == 0o640
    finally:
        os.umask(old)


# -- 7. the tuning knobs come from the one configuration ------------------------------------------

def test_daemon_knobs_come_from_the_configuration(tmp_path, monkeypatch) -> None:
    """`dondoc run` passes DONDOC_WATCH_INTERVAL, DONDOC_STANDBY_POLL, DONDOC_DELIVER_EVERY_MINUTES and
    DONDOC_LEASE_TTL_SECONDS (read by engine/app/config.py) to the daemon; the options win over them."""
    from typer.testing import CliRunner

    from engine.app.cli import app

    seen: list[DaemonConfig] = []
    monkeypatch.setattr(Daemon, "run", lambda self: seen.append(self.cfg) or 0)
    monkeypatch.setattr("engine.app.daemon.install_signal_handlers", lambda d: None)
    monkeypatch.setattr("engine.app.daemon.setup_logging", lambda *a, **k: None)
    rules = tmp_path / "rules"
    write_units_pack(rules, 2)
    monkeypatch.chdir(tmp_path)
    for k in [k for k in os.environ if k.startswith("DONDOC_")]:
        monkeypatch.delenv(k)
    env = {"DONDOC_WATCH_INTERVAL": "0.3", "DONDOC_STANDBY_POLL": "0.7", "DONDOC_DELIVER_EVERY_MINUTES": "9",
           "DONDOC_LEASE_TTL_SECONDS": "4.5", "DONDOC_EVALUATE_HOUR": "6"}
    args = ["run", "--rules", str(rules), "--calendar", str(CALENDAR), "--db", f"sqlite:///{tmp_path / 'state.db'}",
            "--sim-start", "2026-11-25T07:00", "--sim-rate", "60"]
    res = CliRunner().invoke(app, args, env=env)
    assert res.exit_code == 0, res.output
    cfg = seen[-1]
    assert (cfg.watch_interval, cfg.standby_poll, cfg.deliver_every_minutes, cfg.lease_ttl, cfg.evaluate_hour) == \
        (0.3, 0.7, 9, 4.5, 6)
    res = CliRunner().invoke(app, args + ["--deliver-every", "2", "--lease-ttl", "8"], env=env)
    assert res.exit_code == 0, res.output
    assert (seen[-1].deliver_every_minutes, seen[-1].lease_ttl) == (2, 8.0)


def test_json_mode_writes_only_json_lines_to_stdout_and_stderr(tmp_path) -> None:
    """systemd sends stdout to the journal too: with --log-format json no line there may be a table."""
    import json as _json
    import os as _os
    import subprocess as _sp
    import sys as _sys

    root = Path(__file__).resolve().parent.parent
    env = {**_os.environ, "DONDOC_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}", "DONDOC_MAIL_DIR": str(tmp_path / "out"),
           "DONDOC_RULES_DIR": str(root / "rules"), "DONDOC_CALENDAR_DIR": str(root / "calendar")}
    env.pop("DONDOC_CONFIG", None)
    res = _sp.run([_sys.executable, "-m", "engine.cli", "--now", "2026-12-02T09:00", "run", "--once", "--log-format", "json"],
                  cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [l for l in (res.stdout + res.stderr).splitlines() if l.strip()]
    assert lines
    for line in lines:
        assert isinstance(_json.loads(line), dict), line
