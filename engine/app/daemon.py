"""`dondoc run`: the background daemon.

APScheduler 3 with its SQLAlchemy job store on the state database runs three jobs: evaluate on
working days at 07:00 and every hour, and deliver every minute. Jobs coalesce and have no misfire
limit, so a daemon that was down across a reminder moment runs the missed job once when it comes
back; the outbox's unique notice keys make the result exactly-once regardless. Rules are watched
and swapped atomically between jobs; an invalid edit keeps the last good rules and the active
daemon mails the pack's admin contact once per broken version. Tuning knobs (environment, until
the CLI and engine/settings.py carry them): DONDOC_DELIVER_EVERY_MINUTES, DONDOC_WATCH_INTERVAL,
DONDOC_STANDBY_POLL. Exit codes of run(): 0 stopped on request, 75 leadership lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
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
from apscheduler.schedulers.base import STATE_RUNNING, STATE_STOPPED
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlmodel import Session

from engine.db import get_engine
from engine.errors import RulePackInvalid
from engine.leader import Heartbeat, leadership_for
from engine.rules_loader import RulePack, load_pack
from engine.simclock import TZ, Clock, install
from notifications.admin import send_rules_alert
from notifications.config import DeliveryConfig, SmtpConfig
from notifications.delivery import deliver

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

    def _process_jobs(self):
        # APScheduler checks "paused" before taking the job-store lock, so a pass that began just
        # before pause()/shutdown() could submit a job to an executor already shut down ("cannot
        # schedule new futures after shutdown", logged as an error) and still advance that job's
        # next run time, i.e. lose the run. Check the state under the (re-entrant) lock instead:
        # shutdown() sets STOPPED first and then needs this lock.
        with self._jobstores_lock:
            if self.state != STATE_RUNNING:
                return None
            return super()._process_jobs()


@dataclass
class DaemonConfig:
    rules_dir: Path
    calendar_dir: Path
    db_url: str
    templates_dir: Path | None = None
    clock: Clock = field(default_factory=Clock)
    # real seconds between rule-file checks (a change is applied once it has been stable for one check)
    watch_interval: float = 1.0
    # real seconds between leadership attempts of a standby
    standby_poll: float = 2.0
    lease_ttl: float = 20.0
    evaluate_hour: int = 7
    evaluate_minute: int = 0
    # simulated minutes between delivery passes (raise it for very fast simulated clocks)
    deliver_every_minutes: int = 1
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    tracking_start: object = None


EXIT_LEADERSHIP_LOST = 75   # EX_TEMPFAIL: the service manager restarts us (Restart=on-failure); we come back as standby


def fingerprint(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for root in paths:
        if root is None or not root.exists():
            continue
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
        for p in files:
            try:
                st = p.stat()
            except FileNotFoundError:      # replaced by an editor between listing and stat
                h.update(f"{p}:gone".encode())
                continue
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
        self._seen_fingerprint = ""     # last fingerprint the watcher observed (debounce)
        self._reported_bad: set[str] = set()
        # Only the active daemon mails the admin contact; a standby remembers what it would have sent.
        self.alerts_enabled = False
        self._unreported: tuple[RulePackInvalid, str] | None = None
        self.engine = get_engine(cfg.db_url)
        self.scheduler: ClockedScheduler | None = None
        self._synced: tuple[RulePack, object] | None = None   # (pack, day) of the last instance sync
        self.on_rules_invalid: Callable[[RulePackInvalid, str], None] | None = self._alert_admin

    def _alert_admin(self, exc: RulePackInvalid, fp: str) -> None:
        """Tell the admin contact once per broken version; needs the last good pack for the address."""
        if self.pack is None:
            return
        ok = send_rules_alert(self.pack, exc, fp, self.clock.now(), smtp=self.cfg.smtp)
        log.info("rules alert %s", "sent" if ok else "NOT sent", extra={"event": "rules_alert", "sent": ok})

    # ---- rules --------------------------------------------------------------------------------
    def _watched(self) -> list[Path]:
        return [p for p in (self.cfg.rules_dir, self.cfg.calendar_dir, self.cfg.templates_dir) if p is not None]

    def load_rules(self, initial: bool = False) -> bool:
        """Validate the whole new set; swap only when it is valid. True if a new pack is live."""
        fp = fingerprint(self._watched())
        self._seen_fingerprint = fp
        if fp == self._fingerprint:
            return False
        try:
            pack = load_pack(self.cfg.rules_dir, self.cfg.calendar_dir)
            from engine.app.checks import check_templates_for  # templates belong to the rule set

            errs = check_templates_for(self.cfg.templates_dir)
            if errs:
                raise RulePackInvalid(errs)
        except RulePackInvalid as exc:
            self._fingerprint = fp
            for e in exc.errors:
                log.error("rules invalid: %s", e, extra={"event": "rules_invalid", "file": e.file, "line": e.line})
            if fp not in self._reported_bad:
                log.warning("keeping the last good rules (version %s)", self.pack.version if self.pack else "none")
                if self.alerts_enabled:
                    self._report_bad(exc, fp)
                else:
                    self._unreported = (exc, fp)
            if initial and self.pack is None:
                raise
            return False
        with self._pack_lock:
            self.pack = pack
            self._fingerprint = fp
            self._unreported = None
        log.info("rules loaded: version %s, %d obligations, %d units", pack.version, len(pack.obligations), len(pack.units),
                 extra={"event": "rules_loaded", "version": pack.version})
        return True

    def _report_bad(self, exc: RulePackInvalid, fp: str) -> None:
        self._reported_bad.add(fp)
        self._unreported = None
        if self.on_rules_invalid is not None:
            try:
                self.on_rules_invalid(exc, fp)
            except Exception:
                log.exception("could not tell the admin contact about invalid rules")

    def enable_alerts(self) -> None:
        """Called on becoming active: from now on this process mails the admin contact (once per
        broken version), including about a broken version it saw while it was a standby."""
        self.alerts_enabled = True
        pending = self._unreported
        if pending is not None and pending[1] == self._fingerprint and pending[1] not in self._reported_bad:
            self._report_bad(*pending)

    def check_rules(self) -> bool:
        """One watcher tick: apply a change only once the files have stopped changing (the same
        mtime/size fingerprint on two consecutive checks), so a file caught half-written by an
        editor is neither loaded nor reported to the admin contact."""
        fp = fingerprint(self._watched())
        if fp != self._seen_fingerprint:
            self._seen_fingerprint = fp
            return False
        if fp == self._fingerprint:
            return False
        return self.load_rules()

    def _watch_loop(self) -> None:
        while not self.stop_event.wait(self.cfg.watch_interval):
            try:
                self.check_rules()
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
                # The instance table depends only on the rules and the date: sync once per rules
                # version and day, not at every hourly pass (with 1,000 units a sync costs ~0.8 s
                # and rewrites every unit row; the evaluation itself ~0.05 s).
                day = now.date()
                if self._synced is None or self._synced[0] is not pack or self._synced[1] != day:
                    sync_instances(ses, pack, now, tracking_start=self.cfg.tracking_start)  # type: ignore[arg-type]
                    synced = (pack, day)
                else:
                    synced = self._synced
                rep = evaluate(ses, pack, now)
                self._synced = synced
        log.info("evaluated at %s: %d new notices (%d open items)", now.isoformat(timespec="minutes"), rep.created,
                 rep.considered, extra={"event": "evaluated", "notices_created": rep.created, "sim_now": now.isoformat()})

    def job_deliver(self) -> None:
        now = self.clock.now()
        with self._pack_lock:
            pack = self.pack
        assert pack is not None
        report = deliver(self.engine, pack, now, smtp=self.cfg.smtp, delivery=self.cfg.delivery,
                         should_stop=self.stop_event.is_set)
        sent = report.sent
        if sent:
            log.info("delivered %s at %s", sent, now.isoformat(timespec="minutes"),
                     extra={"event": "delivered", "sent": sent, "sim_now": now.isoformat()})

    # ---- lifecycle ----------------------------------------------------------------------------
    def _build_scheduler(self) -> ClockedScheduler:
        store = SQLAlchemyJobStore(engine=self.engine, tablename="apscheduler_jobs")
        sched = ClockedScheduler(self.clock, jobstores={"default": store},
                                 executors={"default": ThreadPoolExecutor(1)},
                                 job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
                                 timezone=TZ)
        return sched

    def _ensure_jobs(self, sched: ClockedScheduler) -> None:
        """Add each job once; never replace a stored job (that would forget a missed run). A stored
        job whose schedule differs from the configuration (e.g. a new evaluate hour) gets the new
        trigger; a run it missed while the daemon was down is kept (it runs once, at start)."""
        specs = {
            "evaluate-morning": (_job_evaluate, CronTrigger(day_of_week="mon-sat", hour=self.cfg.evaluate_hour,
                                                             minute=self.cfg.evaluate_minute, timezone=TZ)),
            "evaluate-hourly": (_job_evaluate, CronTrigger(minute=5, timezone=TZ)),
            "deliver": (_job_deliver, IntervalTrigger(minutes=self.cfg.deliver_every_minutes, timezone=TZ,
                                                      start_date=self.clock.now())),
        }
        now = self.clock.now()
        for job_id, (func, trigger) in specs.items():
            job = sched.get_job(job_id)
            if job is None:
                sched.add_job(func, trigger, id=job_id, name=job_id)
            elif str(job.trigger) != str(trigger):
                nxt = trigger.get_next_fire_time(None, now)
                if job.next_run_time is not None and job.next_run_time <= now:
                    nxt = job.next_run_time          # a run missed while we were down: keep it
                log.info("schedule of %s changed: %s → %s", job_id, job.trigger, trigger, extra={"event": "job_rescheduled"})
                sched.modify_job(job_id, trigger=trigger, next_run_time=nxt)

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
            self.check_rules()
        log.info("active (holder %s)", lead.holder, extra={"event": "active", "holder": lead.holder})
        self.enable_alerts()
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
        if self.lost_leadership.is_set():
            log.info("stopped after losing leadership", extra={"event": "stopped"})
            return EXIT_LEADERSHIP_LOST
        lead.release()
        log.info("stopped", extra={"event": "stopped"})
        return 0

    def run_once(self) -> None:
        """One sync + evaluation + delivery pass (for cron-style use and scripts)."""
        global _DAEMON
        _DAEMON = self
        self.alerts_enabled = True
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


class _SkippedRunFilter(logging.Filter):
    """APScheduler warns each time a job's run is skipped because its previous run is still going.
    Our jobs coalesce by design (a long delivery pass simply absorbs the next ticks; nothing is
    lost), so at a fast simulated clock, or during a big sending day, these warnings are noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("apscheduler") and "maximum number of running instances" in record.getMessage())


def setup_logging(fmt: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_SkippedRunFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def install_signal_handlers(d: Daemon) -> None:
    signal.signal(signal.SIGTERM, d.request_stop)
    signal.signal(signal.SIGINT, d.request_stop)
