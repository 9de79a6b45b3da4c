"""`dondoc run`: the background daemon.

APScheduler 3 with its SQLAlchemy job store on the state database runs three jobs: evaluate on
working days at 07:00 and every hour, and deliver every minute. Jobs coalesce and have no misfire
limit, so a daemon that was down across a reminder moment runs the missed job once when it comes
back; the outbox's unique notice keys make the result exactly-once regardless. Rules are watched
and swapped atomically between jobs; an invalid edit keeps the last good rules.
"""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlmodel import Session

from engine.db import get_engine
from engine.errors import RulePackInvalid
from engine.leader import Heartbeat, leadership_for
from engine.rules_loader import RulePack, load_pack
from engine.simclock import TZ, Clock, install

log = logging.getLogger("dondoc.daemon")


class ClockedScheduler(BackgroundScheduler):
    """BackgroundScheduler whose sleeps follow a (possibly fast) simulated clock."""

    def __init__(self, clock: Clock, **kwargs):
        self.clock = clock
        super().__init__(**kwargs)

    def _main_loop(self):  # noqa: D401 - same contract as APScheduler's
        wait_seconds: float | None = 1.0
        while self.state != STATE_STOPPED:
            if wait_seconds is None:
                real = 1.0
            else:
                real = self.clock.real_seconds(wait_seconds)
                if self.clock.simulated:
                    real = min(real, 0.5)
            self._event.wait(min(real, 3600.0))
            self._event.clear()
            wait_seconds = self._process_jobs()


@dataclass
class DaemonConfig:
    rules_dir: Path
    calendar_dir: Path
    db_url: str
    templates_dir: Path | None = None
    clock: Clock = field(default_factory=Clock)
    watch_interval: float = 1.0           # real seconds between rule-file checks
    standby_poll: float = 2.0             # real seconds between leadership attempts
    lease_ttl: float = 20.0
    evaluate_hour: int = 7
    evaluate_minute: int = 0
    deliver_every_minutes: int = 1
    tracking_start: object = None


def fingerprint(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for root in paths:
        if root is None or not root.exists():
            continue
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
        for p in files:
            st = p.stat()
            h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


class Daemon:
    def __init__(self, cfg: DaemonConfig):
        self.cfg = cfg
        self.clock = cfg.clock
        self.stop_event = threading.Event()
        self.lost_leadership = threading.Event()
        self._pack_lock = threading.RLock()
        self.pack: RulePack | None = None
        self._fingerprint = ""
        self._reported_bad: set[str] = set()
        self.engine = get_engine(cfg.db_url)
        self.scheduler: ClockedScheduler | None = None
        self.on_rules_invalid: Callable[[RulePackInvalid, str], None] | None = self._alert_admin

    def _alert_admin(self, exc: RulePackInvalid, fp: str) -> None:
        """Tell the admin contact once per broken version; needs the last good pack for the address."""
        if self.pack is None:
            return
        from notifications.admin import send_rules_alert

        ok = send_rules_alert(self.pack, exc, fp, self.clock.now())
        log.info("rules alert %s", "sent" if ok else "NOT sent", extra={"event": "rules_alert", "sent": ok})

    # ---- rules --------------------------------------------------------------------------------
    def _watched(self) -> list[Path]:
        return [p for p in (self.cfg.rules_dir, self.cfg.calendar_dir, self.cfg.templates_dir) if p is not None]

    def load_rules(self, initial: bool = False) -> bool:
        """Validate the whole new set; swap only when it is valid. True if a new pack is live."""
        fp = fingerprint(self._watched())
        if fp == self._fingerprint:
            return False
        try:
            pack = load_pack(self.cfg.rules_dir, self.cfg.calendar_dir)
            from engine.templates_check import check_templates_for  # templates belong to the rule set

            errs = check_templates_for(self.cfg.templates_dir)
            if errs:
                raise RulePackInvalid(errs)
        except RulePackInvalid as exc:
            self._fingerprint = fp
            for e in exc.errors:
                log.error("rules invalid: %s", e, extra={"event": "rules_invalid", "file": e.file, "line": e.line})
            if fp not in self._reported_bad:
                self._reported_bad.add(fp)
                log.warning("keeping the last good rules (version %s)", self.pack.version if self.pack else "none")
                if self.on_rules_invalid is not None:
                    try:
                        self.on_rules_invalid(exc, fp)
                    except Exception:
                        log.exception("could not tell the admin contact about invalid rules")
            if initial and self.pack is None:
                raise
            return False
        with self._pack_lock:
            self.pack = pack
            self._fingerprint = fp
        log.info("rules loaded: version %s, %d obligations, %d units", pack.version, len(pack.obligations), len(pack.units),
                 extra={"event": "rules_loaded", "version": pack.version})
        return True

    def _watch_loop(self) -> None:
        while not self.stop_event.wait(self.cfg.watch_interval):
            try:
                self.load_rules()
            except Exception:
                log.exception("rule watcher failed")

    # ---- jobs ---------------------------------------------------------------------------------
    def job_evaluate(self) -> None:
        from engine.pipeline import evaluate
        from engine.sync import sync_instances

        now = self.clock.now()
        with self._pack_lock:       # a swap waits for the running evaluation
            pack = self.pack
            assert pack is not None
            with Session(self.engine, expire_on_commit=False) as ses:
                sync_instances(ses, pack, now, tracking_start=self.cfg.tracking_start)  # type: ignore[arg-type]
                rep = evaluate(ses, pack, now)
        log.info("evaluated at %s: %d new notices (%d open items)", now.isoformat(timespec="minutes"), rep.created,
                 rep.considered, extra={"event": "evaluated", "notices_created": rep.created, "sim_now": now.isoformat()})

    def job_deliver(self) -> None:
        from engine.delivery_hook import deliver

        now = self.clock.now()
        with self._pack_lock:
            pack = self.pack
        assert pack is not None
        sent = deliver(self.engine, pack, now, should_stop=self.stop_event.is_set)
        if sent:
            log.info("delivered %s at %s", sent, now.isoformat(timespec="minutes"), extra={"event": "delivered"})

    # ---- lifecycle ----------------------------------------------------------------------------
    def _build_scheduler(self) -> ClockedScheduler:
        store = SQLAlchemyJobStore(engine=self.engine, tablename="apscheduler_jobs")
        sched = ClockedScheduler(self.clock, jobstores={"default": store},
                                 executors={"default": ThreadPoolExecutor(1)},
                                 job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
                                 timezone=TZ)
        return sched

    def _ensure_jobs(self, sched: ClockedScheduler) -> None:
        """Add each job once; never replace a stored job (that would forget a missed run)."""
        specs = {
            "evaluate-morning": (_job_evaluate, CronTrigger(day_of_week="mon-sat", hour=self.cfg.evaluate_hour,
                                                             minute=self.cfg.evaluate_minute, timezone=TZ)),
            "evaluate-hourly": (_job_evaluate, CronTrigger(minute=5, timezone=TZ)),
            "deliver": (_job_deliver, IntervalTrigger(minutes=self.cfg.deliver_every_minutes, timezone=TZ,
                                                      start_date=self.clock.now())),
        }
        for job_id, (func, trigger) in specs.items():
            if sched.get_job(job_id) is None:
                sched.add_job(func, trigger, id=job_id, name=job_id)

    def request_stop(self, *_args) -> None:
        log.info("stop requested", extra={"event": "stopping"})
        self.stop_event.set()

    def run(self) -> int:
        global _DAEMON
        _DAEMON = self
        install(self.clock)
        self.load_rules(initial=True)
        lead = leadership_for(self.engine, ttl=self.cfg.lease_ttl)
        announced = False
        while not lead.try_acquire():
            if not announced:
                log.info("another dondoc is active on this database: waiting as standby", extra={"event": "standby"})
                announced = True
            if self.stop_event.wait(self.cfg.standby_poll):
                return 0
            self.load_rules()
        log.info("active (holder %s)", lead.holder, extra={"event": "active", "holder": lead.holder})
        hb = Heartbeat(lead, max(1.0, self.cfg.lease_ttl / 4), on_lost=self._lost)
        hb.start()
        watcher = threading.Thread(target=self._watch_loop, name="dondoc-watch", daemon=True)
        watcher.start()
        sched = self._build_scheduler()
        self.scheduler = sched
        sched.start(paused=True)
        self._ensure_jobs(sched)
        # Catch up at once: evaluation is idempotent, so running it now never sends twice.
        try:
            self.job_evaluate()
        except Exception:
            log.exception("initial evaluation failed")
        sched.resume()
        while not self.stop_event.wait(0.2):
            pass
        sched.pause()                  # no new submissions while the executor shuts down
        sched.shutdown(wait=True)      # the job in flight finishes (delivery stops between messages)
        hb.stop_event.set()
        if not self.lost_leadership.is_set():
            lead.release()
        log.info("stopped", extra={"event": "stopped"})
        return 0

    def run_once(self) -> None:
        """One sync + evaluation + delivery pass (for cron-style use and scripts)."""
        global _DAEMON
        _DAEMON = self
        self.load_rules(initial=True)
        self.job_evaluate()
        self.job_deliver()

    def _lost(self) -> None:
        log.error("leadership lost: stopping the scheduler", extra={"event": "leadership_lost"})
        self.lost_leadership.set()
        self.stop_event.set()


_DAEMON: Daemon | None = None


def _job_evaluate() -> None:
    assert _DAEMON is not None
    _DAEMON.job_evaluate()


def _job_deliver() -> None:
    assert _DAEMON is not None
    _DAEMON.job_deliver()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {"ts": datetime.now(TZ).isoformat(timespec="milliseconds"), "level": record.levelname,
                "logger": record.name, "msg": record.getMessage()}
        for k in ("event", "file", "line", "version", "notices_created", "sim_now", "holder", "sent"):
            if hasattr(record, k):
                data[k] = getattr(record, k)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def setup_logging(fmt: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def install_signal_handlers(d: Daemon) -> None:
    signal.signal(signal.SIGTERM, d.request_stop)
    signal.signal(signal.SIGINT, d.request_stop)
