"""Soak over years: the real daemon (`dondoc run`) through two simulated years on a fast clock,
with units that submit, a rule edit every month and 200 rule reloads (issue 15, item 2).

What runs:
- the seed packs (rules/) copied to a temporary directory with N synthetic units (default 1,000,
  `soak0001` …) in the group `bao-cao-khhd57` (as benchmarks/bench_daemon_soak.py does);
- `dondoc run` in its own process on a simulated clock (default ×72,000: one simulated day =
  1.2 s), the web console served on a free loopback port, signed "Báo đã gửi" links in digests,
  mail to a local aiosmtpd sink (a separate process), the rule watcher checking every 0.5 s real
  (`--watch-interval`; the default 1 s is 20 simulated hours at this rate);
- this process, on the same clock (the daemon reports its Clock's start and CLOCK_MONOTONIC
  origin) and the same database, plays the secretariat, in two threads:
  * **submissions** through `engine.app.services.submit` (what `dondoc submit` and the console's
    record form call): each report has a fate fixed by a hash of (obligation, unit, period):
    80 % on time (0–7 days before the due day), 12 % late (1–30 days after), 8 % never;
  * **rule reloads**: `--reloads` (default 200) changes of the live rules folder spread evenly
    over the first 90 % of the span, each one waiting for the daemon's reload of the previous one.
    The first change after the 10th of each month is a **console edit** (a draft through
    engine.app.ruleversions.stage, edited with engine.app.rulesforms.change_policy — the "nhắc
    trước hạn" offsets of the monthly policy, odd months — or RuleFolder's title edit — even
    months —, then ruleversions.apply: check, swap, version recorded); the others are **hand
    edits** (a synthetic unit renamed in units-soak.yaml, written atomically as an editor does),
    which the daemon records as versions itself. Each change is one reload of the daemon.
- Measuring: the daemon's VmRSS from /proc every 0.25 s (per month: at the month's end, median,
  maximum); its passes are timed inside the daemon process by a thin wrapper (this file run with
  `--as-daemon`: engine.pipeline.evaluate, engine.sync.sync_instances, the delivery pass and the
  rules loader wrapped with perf_counter and thread CPU time, reported as JSON log lines; nothing
  else changes); at each month's end a probe (SIGUSR2, taken right after the next evaluation job)
  reports VmRSS, live Python objects, pymalloc arenas, glibc's heap (mallinfo2), SQLite's memory
  and SQLAlchemy's statement caches; row counts are read from the database.
- Pass times measured in the daemon follow the machine's load (it is shared). So the database
  (and the rules) are also copied at the end of month 2 and at the end, and after the soak the
  daemon's evaluation job is **replayed side by side** on both copies (`--replays` rounds,
  interleaved, each in a fresh process: instance sync with fresh rules, then the evaluation pass),
  which gives the ratio month 24 / month 2 under one load, and the memory one job needs.
- `--tracemalloc N`: the daemon runs under tracemalloc (N frames); snapshots are dumped (SIGUSR1)
  right after the first evaluation job after month 1 and after the end; the top growth sites
  and the traced peak per month
  printed. Slow (the daemon does far fewer passes): for diagnosis only.

    .venv/bin/python benchmarks/bench_soak_years.py [--units 1000] [--years 2 | --to 2028-01-01]
        [--rate 72000] [--reloads 200] [--replays 5] [--png benchmarks/soak-2-years.png]
        [--json out.json] [--no-web] [--tracemalloc FRAMES] [--keep]
    .venv/bin/python benchmarks/bench_soak_years.py --replot out.json other.png   # redraw from --json
    .venv/bin/python benchmarks/bench_soak_years.py --replay-kept ROUNDS LABEL=FOLDER@AT[+nokpi] ...
        # the job replayed side by side on a --keep run's snapshots (DIR/replay/m02, m24) at chosen
        # days; +nokpi without the rules' kpi/ folder (the grown rows apart from the KPI work)

Prints a Markdown table per simulated month and the summary figures (RSS of the last month vs the
first, evaluation pass time of the last month vs month 2), and draws the PNG.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# inside the daemon process: `bench_soak_years.py --as-daemon run …`

def as_daemon(argv: list[str]) -> None:
    """`dondoc run` with timings and probes reported as JSON log lines (the daemon's own handler).

    Wrapping a function adds two clock reads and one log line per call; the daemon's code and
    configuration are otherwise the real ones (engine.app.cli:main)."""
    import gc
    import logging

    frames = int(os.environ.get("SOAK_TRACEMALLOC") or 0)
    if frames:
        import tracemalloc

        tracemalloc.start(frames)
    import engine.app.daemon as daemon_mod
    import engine.pipeline as pipeline
    import engine.simclock as simclock
    import engine.sync as sync_mod

    log = logging.getLogger("dondoc.soak")
    clock: list[simclock.Clock] = []

    def rss_now() -> float:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    try:                            # glibc's view: bytes in use vs free but kept by the allocator
        import ctypes

        class MallInfo2(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                         "fsmblks", "uordblks", "fordblks", "keepcost")]

        _libc = ctypes.CDLL("libc.so.6")
        _libc.mallinfo2.restype = MallInfo2

        def malloc_info() -> dict:
            mi = _libc.mallinfo2()
            return {"malloc_heap_mib": round((mi.arena + mi.hblkhd) / 2**20, 1),
                    "malloc_used_mib": round((mi.uordblks + mi.hblkhd) / 2**20, 1),
                    "malloc_free_mib": round(mi.fordblks / 2**20, 1)}
    except (OSError, AttributeError):
        def malloc_info() -> dict:
            return {}

    try:                            # SQLite's own allocations (page caches, statements), all connections
        import ctypes

        _sqlite = ctypes.CDLL("libsqlite3.so.0")
        _sqlite.sqlite3_memory_used.restype = ctypes.c_int64
    except (OSError, AttributeError):
        _sqlite = None

    def pymalloc_info() -> dict:
        """pymalloc's arenas (sys._debugmallocstats writes to fd 2: caught in a temporary file for the
        few milliseconds it takes; a log line of another thread in that moment lands there too)."""
        import tempfile

        with tempfile.TemporaryFile(mode="w+") as f:
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(f.fileno(), 2)
            try:
                sys._debugmallocstats()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            f.seek(0)
            text = f.read()
        out = {}
        for key, pattern in (("pymalloc_arenas", r"# arenas allocated current\s*=\s*([\d,]+)"),
                             ("pymalloc_arenas_highwater", r"# arenas highwater mark\s*=\s*([\d,]+)"),
                             ("pymalloc_used", r"# bytes in allocated blocks\s*=\s*([\d,]+)"),
                             ("pymalloc_free", r"# bytes in available blocks\s*=\s*([\d,]+)"),
                             ("pymalloc_total", r"Total\s*=\s*([\d,]+)")):
            m = re.search(pattern, text)
            if m:
                out[key] = int(m.group(1).replace(",", ""))
        for k in ("pymalloc_used", "pymalloc_free", "pymalloc_total"):
            if k in out:
                out[k + "_mib"] = round(out.pop(k) / 2**20, 1)
        return out

    def sqlite_info() -> dict:
        out: dict = {}
        if _sqlite is not None:
            out["sqlite_mib"] = round(_sqlite.sqlite3_memory_used() / 2**20, 1)
            try:        # per open connection: page cache, schema, prepared statements (sqlite3_db_status)
                import sqlite3

                cur, hi = ctypes.c_int(), ctypes.c_int()
                sums = {"cache": 0, "schema": 0, "stmt": 0}
                n = 0
                for o in gc.get_objects():
                    if not isinstance(o, sqlite3.Connection):
                        continue
                    # pysqlite_Connection starts with PyObject_HEAD, then its sqlite3 *db (CPython 3.11–3.13)
                    handle = ctypes.c_void_p.from_address(id(o) + object.__basicsize__).value
                    if not handle:
                        continue
                    n += 1
                    for key, op in (("cache", 1), ("schema", 2), ("stmt", 3)):
                        _sqlite.sqlite3_db_status(ctypes.c_void_p(handle), op, ctypes.byref(cur), ctypes.byref(hi), 0)
                        sums[key] += cur.value
                out["sqlite_connections"] = n
                out.update({f"sqlite_{k}_mib": round(v / 2**20, 2) for k, v in sums.items()})
            except Exception:  # noqa: BLE001 - a probe never breaks the daemon
                pass
        try:
            from sqlalchemy.engine import Engine

            caches = [len(o._compiled_cache) for o in gc.get_objects()
                      if isinstance(o, Engine) and getattr(o, "_compiled_cache", None) is not None]
            out["sa_compiled_cache"] = caches
        except Exception:  # noqa: BLE001 - a probe never breaks the daemon
            pass
        return out

    def sim_now() -> str | None:
        return clock[0].now().isoformat() if clock else None

    def timed(what: str, fn, describe=None):
        def wrapper(*a, **k):
            w0, c0 = time.perf_counter(), time.thread_time()
            result = fn(*a, **k)
            extra = {"event": "soak_timing", "what": what, "wall_ms": round(1000 * (time.perf_counter() - w0), 2),
                     "cpu_ms": round(1000 * (time.thread_time() - c0), 2), "sim_now": sim_now(),
                     "py_blocks": sys.getallocatedblocks(), "rss_mib": rss_now()}
            if describe is not None:
                extra.update(describe(result))
            log.info("soak timing %s", what, extra=extra)
            return result
        return wrapper

    pipeline.evaluate = timed("evaluate", pipeline.evaluate,
                              lambda r: {"considered": r.considered, "open_items": r.open_items, "notices_created": r.created})
    sync_mod.sync_instances = timed("sync", sync_mod.sync_instances)
    daemon_mod.deliver = timed("deliver", daemon_mod.deliver, lambda r: {"sent": r.sent})
    daemon_mod.Daemon._load_candidate = timed("load_rules", daemon_mod.Daemon._load_candidate)

    class SoakClock(simclock.Clock):
        def __init__(self, *a, **k) -> None:
            super().__init__(*a, **k)
            clock.append(self)
            log.info("soak clock", extra={"event": "soak_clock", "t0": self._t0, "rate": self.rate,
                                          "start": self._start.isoformat() if self._start else None})

    simclock.Clock = SoakClock  # type: ignore[misc]   # engine/app/cli/daemon.py imports it at call time

    probe_wanted = threading.Event()

    def label_of_probe() -> str | None:
        path = os.environ.get("SOAK_PROBE_LABEL")
        try:
            return Path(path).read_text().strip() if path else None
        except OSError:
            return None

    def probe() -> None:
        """Live Python objects and RSS, taken right after an evaluation job (no job in flight)."""
        objs = gc.get_objects()
        types = Counter(type(o).__qualname__ for o in objs)
        n = len(objs)
        del objs
        extra = {"event": "soak_probe", "sim_now": sim_now(), "gc_objects": n, "rss_mib": rss_now(),
                 "py_blocks": sys.getallocatedblocks(), "types": dict(types.most_common(60)),
                 "threads": threading.active_count(), "label": label_of_probe(),
                 **malloc_info(), **sqlite_info(), **pymalloc_info()}
        if frames:
            import tracemalloc

            cur, peak = tracemalloc.get_traced_memory()      # the peak since the last probe
            tracemalloc.reset_peak()
            extra.update(traced_mib=round(cur / 2**20, 1), traced_peak_mib=round(peak / 2**20, 1))
        log.info("soak probe", extra=extra)

    job_evaluate = daemon_mod.Daemon.job_evaluate

    def job_evaluate_then_probe(self) -> None:
        job_evaluate(self)
        if probe_wanted.is_set():
            probe_wanted.clear()
            probe()
        if snapshot_wanted.is_set():
            snapshot_wanted.clear()
            snapshot()

    daemon_mod.Daemon.job_evaluate = job_evaluate_then_probe

    snapshot_wanted = threading.Event()

    def snapshot() -> None:
        import tracemalloc

        if not tracemalloc.is_tracing():
            return
        target = Path(os.environ["SOAK_SNAP_DIR"])
        n = len(list(target.glob("snap-*.pickle")))
        gc.collect()
        tmp = target / f".snap-{n}.tmp"
        tracemalloc.take_snapshot().dump(str(tmp))
        tmp.rename(target / f"snap-{n}.pickle")
        log.info("soak snapshot", extra={"event": "soak_snapshot", "n": n, "sim_now": sim_now()})

    signal.signal(signal.SIGUSR2, lambda *_a: probe_wanted.set())
    signal.signal(signal.SIGUSR1, lambda *_a: snapshot_wanted.set())
    from engine.app.cli import main as dondoc_main

    sys.argv = ["dondoc", *argv]
    dondoc_main()


def replay(db: Path, at_text: str, rules: Path, calendar: Path) -> None:
    """The daemon's evaluation job on a copy of a database snapshot, in a fresh process: the instance
    sync with freshly loaded rules (as after a reload), then the evaluation pass four times (the
    first writes the day's notices; the median of the other three is the steady pass the daemon
    runs every hour). Its time, and the memory it needs at that state.

    Prints one JSON line: wall and thread-CPU ms of each step, RSS before and after, and the peak
    RSS of the job (VmHWM, reset after loading the rules through /proc/self/clear_refs)."""
    import engine.pipeline as pipeline
    import engine.sync as sync_mod
    from sqlmodel import Session

    from engine.db import get_engine, make_engine
    from engine.rules_loader import load_pack

    at = datetime.fromisoformat(at_text)
    pack = load_pack(rules, calendar)
    url = f"sqlite:///{db}"
    get_engine(url)
    eng = make_engine(url)
    pipeline.evaluator_for(pack)                # compiled once per rules version in the daemon too
    Path("/proc/self/clear_refs").write_text("5")
    rss0 = proc_rss(os.getpid())
    out: dict[str, object] = {"rss_before": rss0}
    trace = os.environ.get("SOAK_PEAK_TOP")
    with Session(eng, expire_on_commit=False) as ses:
        if trace:
            # What is alive when the sync commits (its peak: generated instances, loaded rows, …),
            # grouped by the line that allocated it. Tracing slows the job: timings of this run unused.
            import tracemalloc

            tracemalloc.start(1)
            commit = ses.commit

            def commit_and_look() -> None:
                if "peak_top" not in out:
                    snap = tracemalloc.take_snapshot().filter_traces(
                        [tracemalloc.Filter(False, tracemalloc.__file__)])
                    out["peak_traced_mib"] = sum(t.size for t in snap.traces) / 2**20
                    out["peak_top"] = [(f"{st.traceback[0].filename.replace(str(ROOT) + '/', '')}:{st.traceback[0].lineno}",
                                        st.size / 2**20, st.count) for st in snap.statistics("lineno")[:int(trace)]]
                commit()

            ses.commit = commit_and_look  # type: ignore[method-assign]
        w, c = time.perf_counter(), time.thread_time()
        sync_mod.sync_instances(ses, pack, at)
        out.update(sync_wall_ms=1000 * (time.perf_counter() - w), sync_cpu_ms=1000 * (time.thread_time() - c))
        walls, cpus = [], []
        for _ in range(4):          # the first pass writes the day's notices; the next ones are the steady pass
            w, c = time.perf_counter(), time.thread_time()
            rep = pipeline.evaluate(ses, pack, at)
            walls.append(1000 * (time.perf_counter() - w))
            cpus.append(1000 * (time.thread_time() - c))
        out.update(eval_first_ms=walls[0], eval_wall_ms=statistics.median(walls[1:]),
                   eval_cpu_ms=statistics.median(cpus[1:]), considered=rep.considered, kpi_items=rep.kpi_items)
    out.update(rss_after=proc_rss(os.getpid()), job_peak=proc_hwm(os.getpid()))
    print(json.dumps(out))


def snapshot_db(db: Path, rules: Path, target: Path) -> None:
    """A consistent copy of the live database (SQLite online backup) and of the rules folder."""
    target.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)) as src, \
            closing(sqlite3.connect(target / "state.db")) as dst:
        src.backup(dst)
    shutil.copytree(rules, target / "rules", ignore=shutil.ignore_patterns(".*"))


def replay_side_by_side(snaps: list[tuple[str, Path, str]], rounds: int) -> dict[str, dict[str, float]]:
    """Each snapshot's job `rounds` times, interleaved (A B A B …) so both see the same machine load;
    every run on a fresh copy of the snapshot, in a fresh process. Medians per snapshot."""
    runs: dict[str, list[dict]] = {label: [] for label, _, _ in snaps}
    for _ in range(rounds):
        for label, folder, at in snaps:
            work = folder / "run.db"
            shutil.copy(folder / "state.db", work)
            res = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--replay", str(work), at,
                                  str(folder / "rules"), str(ROOT / "calendar")],
                                 capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if res.returncode != 0:
                raise SystemExit(f"replay of {label} failed:\n{res.stderr[-2000:]}")
            runs[label].append(json.loads(res.stdout.strip().splitlines()[-1]))
            for p in folder.glob("run.db*"):
                p.unlink()
    return {label: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for label, rs in runs.items()}


def add_old_kpi_notices(db: Path, n: int) -> None:
    """N KPI notices of earlier years (sent; the subjects of the snapshot's KPI notices with periods
    before 2000), as the outbox holds them after decades of chasing."""
    con = sqlite3.connect(db)
    try:
        obligations = [r[0] for r in con.execute(
            "SELECT DISTINCT obligation FROM notices WHERE instance_id IS NULL AND obligation LIKE 'kpi:%'")]
        assert obligations, "the snapshot has no KPI notice to take subjects from"
        con.executemany(
            "INSERT INTO notices (key, instance_id, obligation, unit, period, stage, kind, recipient, wd_before, "
            "wd_late, as_of, created_at, status, attempts) VALUES (?, NULL, ?, ?, ?, ?, 'overdue', ?, 0, 0, ?, ?, 'sent', 1)",
            [(f"old-kpi|{k}", obligations[k % len(obligations)], "don-vi-cu", f"no_data:{1000 + k // len(obligations)}",
              "overdue-1", "don-vi-cu", "1999-01-04", "1999-01-04 08:00:00.000000") for k in range(n)])
        con.commit()
    finally:
        con.close()


def add_old_kpi_values(db: Path, rules: Path, n: int) -> None:
    """N recorded KPI values of earlier years, spread over the rules' indicators (one a month each,
    going back from 2025), as years of the secretariat's entries leave them."""
    from engine.kpi.loader import load_kpi_for_pack
    from engine.rules_loader import load_pack

    indicators = sorted(load_kpi_for_pack(load_pack(rules, ROOT / "calendar")).indicators)
    con = sqlite3.connect(db)
    try:
        rows = []
        for k in range(n):
            month = k // len(indicators)
            day = date(2025 - month // 12, 12 - month % 12, 1) - timedelta(days=1)
            rows.append((indicators[k % len(indicators)], float(k % 50), day.isoformat(), f"{day:%Y-%m-%d} 09:00:00.000000"))
        con.executemany("INSERT INTO kpi_values (indicator, value, as_of, source, active, recorded_at, recorded_by) "
                        "VALUES (?, ?, ?, 'báo cáo cũ', 1, ?, 'soak')", rows)
        con.commit()
    finally:
        con.close()


def replay_kept(rounds: int, specs: list[str]) -> None:
    """Side-by-side replays on snapshots a ``--keep`` run left (its ``replay/m02``, ``replay/m24``), at
    days of one's choosing: ``LABEL=FOLDER@AT``; ``+nokpi`` replays with the rules' kpi/ folder taken
    out, to tell the rows that grew from the KPI targets that slip (chased every pass) apart;
    ``+kpinotices=N`` adds N KPI notices of earlier years to the outbox first (what decades of
    chasing leave: the soak's two years leave ≈300); ``+kpivalues=N`` N recorded KPI values of
    earlier years (nobody records values in the soak)."""
    snaps: list[tuple[str, Path, str]] = []
    scratch = Path(tempfile.mkdtemp(prefix="dondoc-soak-replay-"))
    try:
        for spec in specs:
            label, rest = spec.split("=", 1)
            folder_text, at = rest.split("@", 1)
            m = re.fullmatch(r"(.*?)((?:\+nokpi|\+kpinotices=\d+|\+kpivalues=\d+)*)", at)
            assert m is not None
            at, mods = m.group(1), m.group(2)
            folder = scratch / f"s{len(snaps)}"
            folder.mkdir()
            shutil.copy(Path(folder_text) / "state.db", folder / "state.db")
            shutil.copytree(Path(folder_text) / "rules", folder / "rules")
            if "+nokpi" in mods:
                shutil.rmtree(folder / "rules" / "kpi", ignore_errors=True)
            extra = re.search(r"\+kpinotices=(\d+)", mods)
            if extra:
                add_old_kpi_notices(folder / "state.db", int(extra.group(1)))
            values = re.search(r"\+kpivalues=(\d+)", mods)
            if values:
                add_old_kpi_values(folder / "state.db", folder / "rules", int(values.group(1)))
            snaps.append((label, folder, at))
        out = replay_side_by_side(snaps, rounds)
        first = out[snaps[0][0]]
        print(f"| replay ({rounds} rounds interleaved, medians) | open items | KPI items | steady pass wall ms | "
              f"CPU ms | ÷ {snaps[0][0]} (wall) |")
        print("|---|---:|---:|---:|---:|---:|")
        for label, _, _ in snaps:
            r = out[label]
            print(f"| {label} | {r['considered']:,.0f} | {r.get('kpi_items', 0):,.0f} | {r['eval_wall_ms']:.1f} | "
                  f"{r['eval_cpu_ms']:.1f} | {r['eval_wall_ms'] / first['eval_wall_ms']:.2f}× |")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# SMTP sink (own process: its CPU is not the daemon's)

def _sink(conn) -> None:
    from aiosmtpd.controller import Controller

    class Handler:
        def __init__(self) -> None:
            self.count = 0
            self.rcpts: Counter[str] = Counter()

        async def handle_DATA(self, server, session, envelope):
            self.count += 1
            for r in envelope.rcpt_tos:
                self.rcpts[r] += 1
            return "250 2.0.0 OK"

    class Ctl(Controller):
        def _trigger_server(self):
            if not self.port:
                self.port = self.server.sockets[0].getsockname()[1]
            super()._trigger_server()

    h = Handler()
    ctl = Ctl(h, hostname="127.0.0.1", port=0, data_size_limit=0)
    ctl.start()
    conn.send(ctl.port)
    while True:
        cmd = conn.recv()
        if cmd == "count":
            conn.send(h.count)
        elif cmd == "stats":
            conn.send({"messages": h.count, "recipients": len(h.rcpts)})
        elif cmd == "stop":
            ctl.stop()
            conn.send("ok")
            return


# ---------------------------------------------------------------------------------------------
# the pack (as bench_daemon_soak.soak_pack) and its edits

SYNTH_NAME = "Đơn vị giả lập số {i}"


def soak_pack(target: Path, n_units: int) -> Path:
    shutil.copytree(ROOT / "rules", target)
    lines = ["# Đơn vị giả lập cho bài đo soak (benchmarks/bench_soak_years.py).", "units:"]
    for i in range(1, n_units + 1):
        lines += [f"  - id: soak{i:04d}", f"    name: \"{SYNTH_NAME.format(i=i)}\"", "    kind: so",
                  f"    contacts: [soak{i:04d}@soak.example.org]", "    supervisor: ubnd-tinh"]
    lines += ["groups:", "  - id: soak-don-vi", "    name: \"Các đơn vị giả lập\"",
              "    members: [" + ", ".join(f"soak{i:04d}" for i in range(1, n_units + 1)) + "]"]
    (target / "units-soak.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    units = target / "units.yaml"
    text = units.read_text(encoding="utf-8")
    old = "members: [cap-uy-truc-thuoc, ban-dang, so-ban-nganh, mat-tran-doan-the]"
    if old not in text:
        raise SystemExit("rules/units.yaml: group bao-cao-khhd57 changed; update soak_pack()")
    units.write_text(text.replace(old, old[:-1] + ", soak-don-vi]"), encoding="utf-8")
    return target


def hand_edit(rules: Path, k: int, n_units: int) -> None:
    """Rename one synthetic unit in the live folder, the way an editor saves (write beside, rename)."""
    path = rules / "units-soak.yaml"
    i = (k % n_units) + 1
    text = path.read_text(encoding="utf-8")
    new, n = re.subn(rf'(  - id: soak{i:04d}\n    name: )"[^"\n]*"', rf'\1"{SYNTH_NAME.format(i=i)} (sửa tay lần {k})"', text)
    if n != 1:
        raise SystemExit(f"hand edit {k}: unit soak{i:04d} not found in {path}")
    tmp = rules / f".units-soak.yaml.{k}.tmp"
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)


def console_edit(settings, k: int, month: date, now: datetime) -> str:
    """One change made as the console makes it: draft, form edit, apply (check, swap, version)."""
    from engine.app import ruleversions
    from engine.app import rulesforms as rf
    from engine.app.ruleedit import RuleFolder

    st = ruleversions.stage(settings, f"soak-{k}", "web:thu.ky", now, replace=True)
    folder = RuleFolder(st.path)
    if month.month % 2:
        item = folder.item("reminder_policies", "hang-thang")
        values = rf.policy_values(item)
        values["before_due_working_days"] = "3, 2" if values["before_due_working_days"] == "2" else "2"
        rf.change_policy(folder, "hang-thang", values, now.date())
        what = f"hang-thang: nhắc trước hạn {values['before_due_working_days']} ngày làm việc"
    else:
        title = str(folder.item("obligations", "khhd57-quy")["title"]).split(" (sửa ")[0]
        folder.set_obligation_field("khhd57-quy", "title", f"{title} (sửa lần {k}, {month:%m/%Y})")
        folder.save()
        what = f"khhd57-quy: tên báo cáo (sửa lần {k})"
    ruleversions.apply(settings, st, "web:thu.ky", f"Bài đo soak: {what}", now)
    return what


# ---------------------------------------------------------------------------------------------
# submissions: each report's fate

ON_TIME, LATE = 80, 92        # percent thresholds: < 80 on time, < 92 late, else never


def planned_day(obligation: str, unit: str, period: str, due: date, earliest: date) -> date | None:
    h = zlib.crc32(f"{obligation}|{unit}|{period}".encode())
    fate, spread = h % 100, (h // 100) % 31
    if fate < ON_TIME:
        return max(earliest, due - timedelta(days=spread % 8)) if earliest <= due else earliest
    if fate < LATE:
        return max(earliest, due + timedelta(days=1 + spread % 30))
    return None


@dataclass
class Secretariat:
    """Records the submissions that are due by the simulated day, through services.submit."""
    settings: object
    pack: object
    db_path: Path
    done: int = 0
    on_time: int = 0
    late: int = 0
    refused: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    lag_days: list[int] = field(default_factory=list)     # simulated days between the planned day and the record
    on_time_recorded_late: int = 0      # dated on time, but recorded after the due day (the daemon may have chased)

    def run(self, today: date, now: datetime) -> int:
        from engine.app import services
        from engine.submissions import earliest_submission

        t0, c0 = time.perf_counter(), time.thread_time()
        with closing(sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=60)) as c:
            rows = c.execute("SELECT obligation, unit, period, due, period_start, period_end, cutoff_start FROM instances "
                             "WHERE active = 1 AND closed = 0 AND waived = 0 AND due BETWEEN ? AND ?",
                             ((today - timedelta(days=40)).isoformat(), (today + timedelta(days=10)).isoformat())).fetchall()
        n = 0
        for ob, unit, period, due_s, ps, pe, cs in rows:
            due = date.fromisoformat(due_s)
            earliest = earliest_submission(date.fromisoformat(ps), date.fromisoformat(pe), due,
                                           date.fromisoformat(cs) if cs else None)
            day = planned_day(ob, unit, period, due, earliest)
            if day is None or day > today:
                continue
            try:
                services.submit(self.settings, self.pack, ob, unit, period, day, now,
                                actor="web:thu.ky" if n % 2 else "cli", ref=f"{n % 997}/BC")
            except services.ServiceError as exc:
                self.refused.append(f"{ob}|{unit}|{period} {day}: {exc.message}")
                continue
            n += 1
            self.on_time += day <= due
            self.late += day > due
            self.lag_days.append((today - day).days)
            self.on_time_recorded_late += day <= due < today
        self.done += n
        self.seconds += time.perf_counter() - t0
        self.cpu_seconds += time.thread_time() - c0
        return n


# ---------------------------------------------------------------------------------------------
# /proc

def proc_rss(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def proc_hwm(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


# ---------------------------------------------------------------------------------------------
# the daemon's log

class LogReader(threading.Thread):
    def __init__(self, stream, keep: Path) -> None:
        super().__init__(daemon=True)
        self.stream, self.keep = stream, keep
        self.lock = threading.Lock()
        self.clock: dict | None = None
        self.timings: list[dict] = []
        self.probes: list[dict] = []
        self.events: Counter[str] = Counter()
        self.reloads: list[str] = []            # sim_now of each rules_loaded after the first
        self.errors: list[str] = []
        self.warnings: Counter[str] = Counter()
        self.last_sim: str | None = None

    def run(self) -> None:
        with open(self.keep, "w", encoding="utf-8") as out:
            for line in self.stream:
                out.write(line)
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                ev = rec.get("event")
                with self.lock:
                    if ev:
                        self.events[ev] += 1
                    if rec.get("sim_now"):
                        self.last_sim = rec["sim_now"]
                    if ev == "soak_clock":
                        self.clock = rec
                    elif ev == "soak_timing":
                        self.timings.append(rec)
                    elif ev == "soak_probe":
                        self.probes.append(rec)
                    elif ev == "rules_loaded" and self.events[ev] > 1:
                        self.reloads.append(self.last_sim or "")
                    if rec.get("level") in ("ERROR", "CRITICAL"):
                        self.errors.append(line.strip()[:400])
                    elif rec.get("level") == "WARNING":
                        self.warnings[re.sub(r"\d+", "N", str(rec.get("msg")))[:160]] += 1


# ---------------------------------------------------------------------------------------------

def month_start(d: datetime) -> datetime:
    return d.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(d: datetime) -> datetime:
    return d.replace(year=d.year + (d.month == 12), month=1 if d.month == 12 else d.month + 1, day=1,
                     hour=0, minute=0, second=0, microsecond=0)


TABLES = ("instances", "submissions", "notices", "deliveries", "delivery_items", "audit_log", "unit_links",
          "rule_versions")


def db_counts(db: Path) -> dict[str, int]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)) as c:
        out = {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
        out["open"] = c.execute("SELECT count(*) FROM instances WHERE active = 1 AND closed = 0").fetchone()[0]
    out["db_mib"] = round(sum(p.stat().st_size for p in db.parent.glob(db.name + "*")) / 2**20, 1)
    return out


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def compare_snapshots(a: Path, b: Path, top: int = 15) -> str:
    import tracemalloc

    s0, s1 = tracemalloc.Snapshot.load(str(a)), tracemalloc.Snapshot.load(str(b))
    filt = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap*>")]
    s0, s1 = s0.filter_traces(filt), s1.filter_traces(filt)
    lines = [f"tracemalloc: traced {sum(t.size for t in s0.traces) / 2**20:.1f} → "
             f"{sum(t.size for t in s1.traces) / 2**20:.1f} MiB", "", "Top growth by line:"]
    for st in s1.compare_to(s0, "lineno")[:top]:
        lines.append(f"  {st.size_diff / 1024:+9.0f} KiB {st.count_diff:+8d} blocks  {st.traceback[0]}")
    lines += ["", "Top growth by traceback (3 largest):"]
    for st in s1.compare_to(s0, "traceback")[:3]:
        lines.append(f"  {st.size_diff / 1024:+9.0f} KiB {st.count_diff:+8d} blocks")
        lines += [f"      {fr}" for fr in st.traceback.format()[-16:]]
    return "\n".join(lines)


def draw(path: Path, months: list[dict], title: str, replayed: dict | None = None) -> None:
    """Three panels over the simulated months: the daemon's memory (and what it is made of), the
    pass times (log scale; the side-by-side replays as stars), the rows and the machine's load."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [m["label"] for m in months]
    x = list(range(1, len(months) + 1))
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(11, 11.5), sharex=True,
                                        gridspec_kw={"height_ratios": [3.2, 3, 2]})

    def series(key: str) -> list:
        return [m.get(key) if m.get(key) is not None else float("nan") for m in months]

    ax1.plot(x, series("rss_end"), "o-", color="tab:blue", label="VmRSS at the month's end")
    ax1.plot(x, series("rss_probe"), "d-", color="tab:olive", markersize=4, label="VmRSS right after an evaluation job")
    ax1.plot(x, series("rss_max"), "^:", color="tab:gray", markersize=4, label="VmRSS, maximum of the month")
    ax1.plot(x, [m["pymalloc_arenas"] if m.get("pymalloc_arenas") else float("nan") for m in months], "s--",
             color="tab:purple", markersize=3, label="of which pymalloc arenas (1 MiB each)")
    ax1.plot(x, series("pymalloc_used_mib"), "--", color="tab:pink", label="  Python objects in them (MiB)")
    ax1.plot(x, [(m["malloc_used_mib"] or 0) + (m["malloc_free_mib"] or 0) if m.get("malloc_used_mib") is not None
                 else float("nan") for m in months], "v--", color="tab:brown", markersize=3,
             label="of which glibc heap (in use + free kept)")
    base = months[0]["rss_end"]
    ax1.axhspan(base * 0.85, base * 1.15, color="tab:green", alpha=0.10, label="month 1 ± 15 % (target)")
    ax1.set_ylabel("MiB")
    ax1.set_ylim(0, max(m["rss_max"] for m in months) * 1.12)
    ax1.legend(loc="lower right", fontsize=7.5, ncol=2)
    ax1.grid(alpha=0.3)
    ax1.set_title(title, fontsize=9.5)

    ax2.set_yscale("log")
    ax2.plot(x, series("eval_wall_ms"), "o-", color="tab:red", label="evaluation pass in the daemon, median wall ms")
    ax2.plot(x, series("eval_cpu_ms"), "s--", color="tab:orange", label="evaluation pass in the daemon, median CPU ms")
    ax2.plot(x, series("sync_wall_ms"), "^:", color="tab:purple", label="instance sync in the daemon, median wall ms")
    if replayed and len(replayed) == 2:
        (_, ra), (_, rb) = list(replayed.items())
        xs = [2, len(months)]
        ax2.plot(xs, [ra["eval_cpu_ms"], rb["eval_cpu_ms"]], "*", color="black", markersize=13,
                 label="evaluation pass replayed side by side, CPU ms")
        ax2.plot(xs, [ra["sync_cpu_ms"], rb["sync_cpu_ms"]], "P", color="indigo", markersize=10,
                 label="instance sync replayed side by side, CPU ms")
    if len(months) >= 2 and months[1].get("eval_cpu_ms"):
        b2 = months[1]["eval_cpu_ms"]
        ax2.axhspan(b2 * 0.8, b2 * 1.2, color="tab:green", alpha=0.10, label="month 2 ± 20 % (CPU, target)")
    top = max([v for m in months for v in (m.get("eval_wall_ms"), m.get("sync_wall_ms")) if v] or [1])
    ax2.set_ylim(top=top * 12)                      # room for the legend above the curves
    ax2.set_ylabel("milliseconds (log scale)")
    ax2.legend(loc="upper left", fontsize=7.5, ncol=2)
    ax2.grid(alpha=0.3, which="both")

    for key, style, name in (("notices", "o-", "notices"), ("audit_log", "s-", "audit rows"),
                             ("delivery_items", "^-", "delivery items"), ("deliveries", "v-", "deliveries (digests)"),
                             ("submissions", "d-", "submissions")):
        ax3.plot(x, [m["rows"].get(key, 0) / 1000 for m in months], style, markersize=3, label=name)
    ax3.plot(x, [(m.get("eval_considered") or float("nan")) / 1000 for m in months], "x--", color="black",
             markersize=4, label="open items per evaluation pass")
    ax3b = ax3.twinx()
    ax3b.plot(x, [m["load"] for m in months], "k:", alpha=0.6, label="load average, 1 min (2 cores)")
    ax3b.set_ylabel("load average")
    ax3b.set_ylim(0, max(4.0, max(m["load"] for m in months) * 1.2))
    ax3.set_ylabel("rows (thousands)")
    ax3.legend(loc="upper left", fontsize=7.5, ncol=3)
    ax3b.legend(loc="lower right", fontsize=7.5)
    ax3.grid(alpha=0.3)
    ax3.set_xticks(x)
    ax3.set_xticklabels(labels, rotation=60, fontsize=8)
    ax3.set_xlabel("simulated month")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=72000.0, help="simulated seconds per real second")
    ap.add_argument("--from", dest="start", default="2026-01-01")
    ap.add_argument("--to", dest="end", default=None, help="end date (default: --years after --from)")
    ap.add_argument("--years", type=int, default=2)
    ap.add_argument("--reloads", type=int, default=200, help="rule changes (one reload each) over the span")
    ap.add_argument("--deliver-every", type=int, default=30, help="simulated minutes between delivery passes")
    ap.add_argument("--no-web", action="store_true", help="do not serve the web console in the daemon")
    ap.add_argument("--replays", type=int, default=5, help="side-by-side replays of the evaluation job on the "
                    "databases of month 2 and of the last month (0: none)")
    ap.add_argument("--watch-interval", type=float, default=0.5,
                    help="real seconds between the daemon's rule-file checks (DONDOC_WATCH_INTERVAL)")
    ap.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES", help="run the daemon under tracemalloc")
    ap.add_argument("--png", type=Path, default=ROOT / "benchmarks" / "soak-2-years.png")
    ap.add_argument("--json", type=Path, default=None, help="write the raw figures here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    from engine.clock import TZ

    start = datetime.fromisoformat(args.start).replace(tzinfo=TZ)
    end = (datetime.fromisoformat(args.end).replace(tzinfo=TZ) if args.end
           else start.replace(year=start.year + args.years))
    tmp = Path(tempfile.mkdtemp(prefix="dondoc-soak-years-"))
    rules = soak_pack(tmp / "rules", args.units)
    db_path = tmp / "state.db"
    db = f"sqlite:///{db_path}"

    parent, child = mp.Pipe()
    sink = mp.get_context("spawn").Process(target=_sink, args=(child,), daemon=True)
    sink.start()
    port = parent.recv()

    env = {k: v for k, v in os.environ.items() if not k.startswith("DONDOC_")}
    env.update({"DONDOC_DATABASE_URL": db, "DONDOC_RULES_DIR": str(rules), "DONDOC_CALENDAR_DIR": str(ROOT / "calendar"),
                "DONDOC_SMTP_HOST": "127.0.0.1", "DONDOC_SMTP_PORT": str(port), "DONDOC_SMTP_SECURITY": "none",
                "DONDOC_SMTP_FROM": "dondoc@vptu.example.org", "DONDOC_SMTP_HELO": "soak.local",
                "DONDOC_SMTP_CONCURRENCY": "3", "DONDOC_DELIVER_EVERY_MINUTES": str(args.deliver_every),
                "DONDOC_WEB_SECRET": "soak-" + "x" * 40, "DONDOC_WEB_HOST": "127.0.0.1",
                "DONDOC_WEB_PORT": str(free_port()), "DONDOC_WEB_SERVE": "false" if args.no_web else "true",
                "DONDOC_WATCH_INTERVAL": str(args.watch_interval), "SOAK_PROBE_LABEL": str(tmp / "probe-label.txt"),
                "PYTHONPATH": str(ROOT)})
    if args.tracemalloc:
        (tmp / "snaps").mkdir()
        env.update({"SOAK_TRACEMALLOC": str(args.tracemalloc), "SOAK_SNAP_DIR": str(tmp / "snaps")})
    # This process uses the same configuration (same database and rules) for its services.
    for k in ("DONDOC_DATABASE_URL", "DONDOC_RULES_DIR", "DONDOC_CALENDAR_DIR", "DONDOC_WEB_SECRET"):
        os.environ[k] = env[k]
    os.environ.pop("DONDOC_CONFIG", None)
    os.chdir(tmp)
    from engine.app import services
    from engine.app.config import load_settings

    settings = load_settings()
    pack = services.load_rules(settings)
    n_units, n_obligations = len(pack.units), len(pack.obligations)

    cmd = [sys.executable, str(Path(__file__).resolve()), "--as-daemon", "run", "--sim-start",
           start.strftime("%Y-%m-%dT%H:%M"), "--sim-rate", str(args.rate), "--log-format", "json"]
    t0 = time.monotonic()
    load0 = loadavg()
    proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            encoding="utf-8", errors="replace")
    reader = LogReader(proc.stderr, tmp / "daemon.log")
    reader.start()
    while reader.events.get("active", 0) == 0 or reader.clock is None:
        if proc.poll() is not None:
            raise SystemExit(f"daemon exited early ({proc.returncode}); see {tmp / 'daemon.log'}")
        time.sleep(0.05)
    t_active = time.monotonic() - t0
    ck = reader.clock
    c_t0, c_rate = float(ck["t0"]), float(ck["rate"])
    c_start = datetime.fromisoformat(ck["start"])

    def sim() -> datetime:      # the daemon's clock (CLOCK_MONOTONIC is shared by all processes)
        return c_start + timedelta(seconds=(time.monotonic() - c_t0) * c_rate)

    secretariat = Secretariat(settings, pack, db_path)
    # The rule changes: evenly spread over the span but its last 10 % (a change waits for the reload
    # of the one before, so a loaded machine may push the last ones back); the first one after the
    # 10th of each month is a console edit.
    span = 0.90 * (end - start).total_seconds()
    changes = [start + timedelta(seconds=span * (i + 0.5) / args.reloads) for i in range(args.reloads)]
    console_at: set[int] = set()
    m = month_start(start)
    while m < end:
        tenth = m.replace(day=10, hour=9)
        idx = next((i for i, t in enumerate(changes) if t >= tenth), None)
        if idx is not None and changes[idx] < next_month(m):
            console_at.add(idx)
        m = next_month(m)
    edits_done: list[dict] = []
    edit_failures: list[str] = []
    stop = threading.Event()

    def change_rules() -> None:
        """Each change at its simulated moment, and never before the daemon reloaded the previous one
        (two changes inside one watcher interval would be one reload)."""
        for k, at in enumerate(changes):
            while sim() < at:
                if stop.wait(0.02):
                    return
            seen = len(reader.reloads)
            moment = sim()
            t_edit = time.perf_counter()
            try:
                what = console_edit(settings, k, moment.date(), moment) if k in console_at else None
                if what is None:
                    hand_edit(rules, k, args.units)
                    what = "hand edit"
            except Exception as exc:          # noqa: BLE001 - reported, the soak goes on
                edit_failures.append(f"{moment:%d/%m/%Y} change {k}: {type(exc).__name__}: {exc}")
                continue
            took = time.perf_counter() - t_edit
            deadline = time.monotonic() + 60
            while len(reader.reloads) == seen and time.monotonic() < deadline:
                if stop.wait(0.05):
                    return
            edits_done.append({"at": moment.isoformat(timespec="minutes"), "late_h": round((moment - at).total_seconds() / 3600, 1),
                               "what": what, "edit_s": round(took, 2), "reloaded": len(reader.reloads) > seen,
                               "reload_after_s": round(time.perf_counter() - t_edit - took, 2)})

    def submit_daily() -> None:
        last_day: date | None = None
        while not stop.is_set():
            now = sim()
            if now >= end:
                return
            if now.date() != last_day:
                last_day = now.date()
                secretariat.run(last_day, now)
            else:
                stop.wait(0.05)

    workers = [threading.Thread(target=change_rules, name="soak-rules", daemon=True),
               threading.Thread(target=submit_daily, name="soak-submit", daemon=True)]
    for w in workers:
        w.start()

    months: list[dict] = []
    db_snaps: list[tuple[str, Path, str]] = []
    rss_samples: list[float] = []
    cur_month = month_start(sim())
    mark = next_month(cur_month)
    snaps_sent = 0
    cpu_prev = proc_cpu(proc.pid)
    wall_prev = time.monotonic()
    loads: list[float] = [load0]

    def close_month(label_month: datetime, at: datetime) -> None:
        nonlocal rss_samples, cpu_prev, wall_prev
        rss_end = proc_rss(proc.pid)
        (tmp / "probe-label.txt").write_text(f"{label_month:%m/%Y}")
        os.kill(proc.pid, signal.SIGUSR2)                  # a probe after the next evaluation job
        lo, hi = label_month, next_month(label_month)
        with reader.lock:
            tm = [t for t in reader.timings if t.get("sim_now") and lo <= datetime.fromisoformat(t["sim_now"]) < hi]
            reloads = sum(1 for x in reader.reloads if x and lo <= datetime.fromisoformat(x) < hi)
        ev = [t for t in tm if t["what"] == "evaluate"]
        sy = [t for t in tm if t["what"] == "sync"]
        dl = [t for t in tm if t["what"] == "deliver"]
        lr = [t for t in tm if t["what"] == "load_rules"]
        cpu_now, wall_now = proc_cpu(proc.pid), time.monotonic()
        parent.send("count")
        ld = loadavg()
        loads.append(ld)
        months.append({
            "label": f"{label_month:%m/%Y}", "sim_at": at.isoformat(timespec="minutes"),
            "rss_end": round(rss_end, 1), "rss_median": round(med(rss_samples) or rss_end, 1),
            "rss_max": round(max(rss_samples or [rss_end]), 1), "rss_min": round(min(rss_samples or [rss_end]), 1),
            "eval_n": len(ev), "eval_wall_ms": med([t["wall_ms"] for t in ev]), "eval_cpu_ms": med([t["cpu_ms"] for t in ev]),
            "eval_considered": med([t["considered"] for t in ev]), "notices_created": sum(t["notices_created"] for t in ev),
            "sync_n": len(sy), "sync_wall_ms": med([t["wall_ms"] for t in sy]), "sync_cpu_ms": med([t["cpu_ms"] for t in sy]),
            "deliver_n": len(dl), "deliver_wall_ms": med([t["wall_ms"] for t in dl]),
            "deliver_cpu_ms": med([t["cpu_ms"] for t in dl]), "sent": sum(t.get("sent") or 0 for t in dl),
            "load_rules_ms": med([t["wall_ms"] for t in lr]), "reloads": reloads,
            "py_blocks": ev[-1]["py_blocks"] if ev else None,
            "daemon_cpu_pct": round(100 * (cpu_now - cpu_prev) / max(1e-9, wall_now - wall_prev)),
            "rows": db_counts(db_path), "sink_messages": parent.recv(), "load": ld,
            "submitted_total": secretariat.done,
        })
        rss_samples, cpu_prev, wall_prev = [], cpu_now, wall_now

    def snapshot_daemon() -> None:
        nonlocal snaps_sent
        os.kill(proc.pid, signal.SIGUSR1)
        target = tmp / "snaps" / f"snap-{snaps_sent}.pickle"
        snaps_sent += 1
        deadline = time.monotonic() + 300
        while not target.exists() and time.monotonic() < deadline:
            time.sleep(0.2)

    while True:
        if proc.poll() is not None:
            stop.set()
            raise SystemExit(f"daemon exited ({proc.returncode}) at {sim()}; see {tmp / 'daemon.log'}")
        rss_samples.append(proc_rss(proc.pid))
        now = sim()
        if now >= mark:
            close_month(cur_month, now)
            mo = months[-1]
            print(f"  {cur_month:%m/%Y}: RSS {mo['rss_end']:.0f} MiB (median {mo['rss_median']:.0f}), evaluation "
                  f"{mo['eval_wall_ms'] or 0:.0f} ms wall / {mo['eval_cpu_ms'] or 0:.0f} ms CPU × {mo['eval_n']}, "
                  f"sync {mo['sync_wall_ms'] or 0:.0f} ms, reloads {mo['reloads']}, load {mo['load']:.2f}",
                  file=sys.stderr, flush=True)
            if args.tracemalloc and len(months) == 1:
                snapshot_daemon()
            if args.replays and (len(months) == 2 or mark >= end):
                snapshot_db(db_path, rules, tmp / "replay" / f"m{len(months):02d}")
                db_snaps.append((mo["label"], tmp / "replay" / f"m{len(months):02d}", now.isoformat()))
            if mark >= end:
                break
            cur_month, mark = mark, next_month(mark)
        time.sleep(0.25)
    stop.set()
    for w in workers:
        w.join(timeout=120)
    deadline = time.monotonic() + 60      # the last probe comes after the next evaluation job
    while (not reader.probes or reader.probes[-1].get("label") != months[-1]["label"]) \
            and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    wall = time.monotonic() - t0
    hwm = proc_hwm(proc.pid)
    cpu_end = proc_cpu(proc.pid)
    if args.tracemalloc:
        snapshot_daemon()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=120)
    reader.join(timeout=10)
    parent.send("stats")
    stats = parent.recv()
    parent.send("stop")
    parent.recv()

    replayed: dict[str, dict[str, float]] = {}
    peak_sites: dict[str, dict] = {}
    load_replay = loadavg()
    if args.replays and len(db_snaps) == 2:
        print(f"  replaying the evaluation job on the databases of {db_snaps[0][0]} and {db_snaps[1][0]} "
              f"({args.replays} rounds)…", file=sys.stderr, flush=True)
        replayed = replay_side_by_side(db_snaps, args.replays)
        load_replay = max(load_replay, loadavg())
        for label, folder, at in db_snaps:
            work = folder / "run.db"
            shutil.copy(folder / "state.db", work)
            res = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--replay", str(work), at,
                                  str(folder / "rules"), str(ROOT / "calendar")], capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": str(ROOT), "SOAK_PEAK_TOP": "8"})
            for p in folder.glob("run.db*"):
                p.unlink()
            if res.returncode == 0:
                traced = json.loads(res.stdout.strip().splitlines()[-1])
                peak_sites[label] = {"traced_mib": traced["peak_traced_mib"], "top": traced["peak_top"]}

    # ------------------------------------------------------------------ report
    probes = reader.probes
    by_label = {pr.get("label"): pr for pr in probes}    # a month whose probe was overtaken by the next has none
    probe_keys = ("rss_mib", "gc_objects", "malloc_heap_mib", "malloc_used_mib", "malloc_free_mib", "traced_mib",
                  "traced_peak_mib", "sqlite_mib", "sqlite_connections", "sqlite_cache_mib", "sqlite_schema_mib",
                  "sqlite_stmt_mib", "sa_compiled_cache", "pymalloc_arenas", "pymalloc_used_mib",
                  "pymalloc_free_mib", "pymalloc_total_mib")
    for mo in months:
        pr = by_label.get(mo["label"], {})
        for k in probe_keys:
            mo["rss_probe" if k == "rss_mib" else k] = pr.get(k)
    probed = [m for m in months if m["rss_probe"] is not None]
    p_first, p_last = (probed[0], probed[-1]) if probed else ({}, {})
    first, last = months[0], months[-1]
    second = months[1] if len(months) > 1 else months[0]
    rss_ratio = last["rss_end"] / first["rss_end"] - 1
    rss_med_ratio = last["rss_median"] / first["rss_median"] - 1
    pass_ratio = (last["eval_wall_ms"] / second["eval_wall_ms"] - 1) if second["eval_wall_ms"] and last["eval_wall_ms"] else None
    cpu_ratio = (last["eval_cpu_ms"] / second["eval_cpu_ms"] - 1) if second["eval_cpu_ms"] and last["eval_cpu_ms"] else None
    kinds = Counter(e["what"] for e in edits_done)
    n_console = sum(1 for e in edits_done if e["what"] != "hand edit")
    title = (f"dondoc run, {start:%d/%m/%Y} → {end:%d/%m/%Y} simulated ×{args.rate:g}; {n_units} units "
             f"({args.units} synthetic); {len(reader.reloads)} rule reloads; {nproc()} cores, load {min(loads):.1f}–{max(loads):.1f}")

    print()
    print(f"## Soak over years: {start:%d/%m/%Y} → {end:%d/%m/%Y} (simulated), {n_units} units "
          f"({args.units} synthetic), {n_obligations} obligations")
    print()
    print(f"Machine: {cpu_model()}, {nproc()} cores (shared), Python {platform.python_version()}; "
          f"clock ×{args.rate:g} (1 simulated day = {86400 / args.rate:.2f} s); delivery pass every "
          f"{args.deliver_every} simulated min; SQLite; web console {'off' if args.no_web else 'served'}"
          f"{'; tracemalloc ' + str(args.tracemalloc) + ' frames' if args.tracemalloc else ''}. "
          f"Load average (1 min) at start and at each month's end: min {min(loads):.2f}, "
          f"median {statistics.median(loads):.2f}, max {max(loads):.2f}.")
    print()
    print("| month | RSS end MiB | RSS median | RSS max | RSS after a job | eval passes | eval pass ms (wall) | eval pass ms (CPU) "
          "| open items considered | sync ms | delivery passes | notices | deliveries | delivery items | audit rows "
          "| submissions | rule versions | reloads | load |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def f0(v) -> str:
        return "–" if v is None else f"{v:,.0f}"

    for mo in months:
        r = mo["rows"]
        print(f"| {mo['label']} | {mo['rss_end']:.0f} | {mo['rss_median']:.0f} | {mo['rss_max']:.0f} | {f0(mo['rss_probe'])} "
              f"| {mo['eval_n']} "
              f"| {f0(mo['eval_wall_ms'])} | {f0(mo['eval_cpu_ms'])} | {f0(mo['eval_considered'])} | {f0(mo['sync_wall_ms'])} "
              f"| {mo['deliver_n']} | {r['notices']:,} | {r['deliveries']:,} | {r['delivery_items']:,} | {r['audit_log']:,} "
              f"| {r['submissions']:,} | {r['rule_versions']} | {mo['reloads']} | {mo['load']:.2f} |")
    print()
    pct = lambda v: "–" if v is None else f"{100 * v:+.1f} %"  # noqa: E731
    rows = [
        ("RSS at the end of the last month vs the first (target ±15 %)",
         f"{first['rss_end']:.0f} → {last['rss_end']:.0f} MiB ({pct(rss_ratio)})"),
        ("RSS, median of the last month vs the first", f"{first['rss_median']:.0f} → {last['rss_median']:.0f} MiB ({pct(rss_med_ratio)})"),
        (f"RSS right after an evaluation job (probe in the daemon), {p_first.get('label')} → {p_last.get('label')}",
         f"{f0(p_first.get('rss_probe'))} → {f0(p_last.get('rss_probe'))} MiB"
         + (f" ({pct(p_last['rss_probe'] / p_first['rss_probe'] - 1)})" if probed else "")),
        ("  of which pymalloc (Python's small objects): arenas in use, MiB used / free inside them",
         f"{p_first.get('pymalloc_arenas')} arenas, {f0(p_first.get('pymalloc_used_mib'))} / "
         f"{f0(p_first.get('pymalloc_free_mib'))} → {p_last.get('pymalloc_arenas')} arenas, "
         f"{f0(p_last.get('pymalloc_used_mib'))} / {f0(p_last.get('pymalloc_free_mib'))} MiB"),
        ("VmHWM (peak RSS)", f"{hwm:.0f} MiB"),
        ("  of which glibc malloc (large objects, SQLite, C extensions): in use / free but kept",
         f"{f0(p_first.get('malloc_used_mib'))} / {f0(p_first.get('malloc_free_mib'))} → "
         f"{f0(p_last.get('malloc_used_mib'))} / {f0(p_last.get('malloc_free_mib'))} MiB"),
        ("  of which SQLite (sqlite3_memory_used: page caches of all connections)",
         f"{f0(p_first.get('sqlite_mib'))} → {f0(p_last.get('sqlite_mib'))} MiB"),
        ("    open connections; their page caches / schemas / prepared statements (sqlite3_db_status)",
         f"{p_first.get('sqlite_connections')}; {p_first.get('sqlite_cache_mib')} / {p_first.get('sqlite_schema_mib')} / "
         f"{p_first.get('sqlite_stmt_mib')} → {p_last.get('sqlite_connections')}; {p_last.get('sqlite_cache_mib')} / "
         f"{p_last.get('sqlite_schema_mib')} / {p_last.get('sqlite_stmt_mib')} MiB"),
        ("SQLAlchemy compiled-statement caches (entries per engine, limit 500)",
         f"{p_first.get('sa_compiled_cache')} → {p_last.get('sa_compiled_cache')}"),
        ("Python heap blocks (sys.getallocatedblocks), month 1 → last",
         f"{f0(first['py_blocks'])} → {f0(last['py_blocks'])}"),
        ("live Python objects (gc)",
         f"{p_first['gc_objects']:,} → {p_last['gc_objects']:,}" if probed else "–"),
        ("evaluation pass, median of the last month vs month 2 (target ±20 %)",
         f"wall {f0(second['eval_wall_ms'])} → {f0(last['eval_wall_ms'])} ms ({pct(pass_ratio)}); "
         f"thread CPU {f0(second['eval_cpu_ms'])} → {f0(last['eval_cpu_ms'])} ms ({pct(cpu_ratio)})"),
        ("open items considered per pass, month 2 → last", f"{f0(second['eval_considered'])} → {f0(last['eval_considered'])}"),
        ("instance sync, median month 2 → last", f"{f0(second['sync_wall_ms'])} → {f0(last['sync_wall_ms'])} ms"),
        ("delivery pass, median month 2 → last", f"{f0(second['deliver_wall_ms'])} → {f0(last['deliver_wall_ms'])} ms"),
        ("rules load on reload, median month 2 → last", f"{f0(second['load_rules_ms'])} → {f0(last['load_rules_ms'])} ms"),
        ("wall time", f"{wall:.0f} s (daemon active after {t_active:.1f} s)"),
        ("daemon CPU time", f"{cpu_end:.0f} s ({100 * cpu_end / wall:.0f} % of one core)"),
        ("evaluation / delivery passes", f"{sum(m['eval_n'] for m in months):,} / {sum(m['deliver_n'] for m in months):,}"),
        ("rule changes made / daemon reloads seen",
         f"{len(edits_done)} ({n_console} console edits, {kinds.get('hand edit', 0)} hand edits; {len(edit_failures)} failed) "
         f"/ {len(reader.reloads)}"),
        ("rule changes: behind schedule (simulated hours, median / max); daemon reload seen after (s, median)",
         f"{med([e['late_h'] for e in edits_done]) or 0:.1f} / {max([e['late_h'] for e in edits_done] or [0]):.1f} h; "
         f"{med([e['reload_after_s'] for e in edits_done]) or 0:.1f} s"),
        ("submissions recorded (services.submit)",
         f"{secretariat.done:,}: {secretariat.on_time:,} on time, {secretariat.late:,} late; "
         f"{len(secretariat.refused)} refused; {secretariat.seconds:.0f} s in this process "
         f"({secretariat.cpu_seconds:.0f} s CPU)"),
        ("  recorded behind their simulated day (days, median / 95th percentile / max); dated on time but recorded "
         "after the due day",
         f"{med(secretariat.lag_days) or 0:.0f} / "
         f"{sorted(secretariat.lag_days)[int(0.95 * (len(secretariat.lag_days) - 1))] if secretariat.lag_days else 0} / "
         f"{max(secretariat.lag_days or [0])}; {secretariat.on_time_recorded_late:,}"),
        ("messages received by the sink", f"{stats['messages']:,} to {stats['recipients']:,} recipients"),
        ("rows at the end", ", ".join(f"{k} {v:,}" for k, v in last["rows"].items() if k != "db_mib")),
        ("state.db size (with WAL)", f"{last['rows']['db_mib']} MiB"),
        ("SIGTERM → exit", f"exit {rc}"),
        ("errors / warnings logged", f"{len(reader.errors)} / {sum(reader.warnings.values())}"),
    ]
    print("| figure | value |")
    print("|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    if replayed:
        (la, ra), (lb, rb) = list(replayed.items())
        print()
        print(f"Side by side, after the soak (daemon stopped; load average {load_replay:.2f}): the daemon's evaluation "
              f"job (instance sync with freshly loaded rules, then the evaluation pass) on a copy of the database as it was at the end of {la} "
              f"and at the end of {lb}, each in a fresh process, {args.replays} rounds interleaved, medians:")
        print()
        print(f"| step | {la} | {lb} | ratio |")
        print("|---|---:|---:|---:|")
        for key, name in (("eval_wall_ms", "evaluation pass (steady), wall ms"),
                          ("eval_cpu_ms", "evaluation pass (steady), CPU ms"),
                          ("eval_first_ms", "first evaluation pass of the day (writes its notices), wall ms"),
                          ("considered", "open items considered"), ("sync_wall_ms", "instance sync, wall ms"),
                          ("sync_cpu_ms", "instance sync, CPU ms"), ("rss_before", "RSS before the job, MiB"),
                          ("job_peak", "peak RSS during the job, MiB"), ("rss_after", "RSS after the job, MiB")):
            print(f"| {name} | {ra[key]:,.0f} | {rb[key]:,.0f} | {rb[key] / ra[key]:.2f}× |")
        print(f"| memory the job needs (peak − before), MiB | {ra['job_peak'] - ra['rss_before']:,.0f} "
              f"| {rb['job_peak'] - rb['rss_before']:,.0f} | "
              f"{(rb['job_peak'] - rb['rss_before']) / max(1e-9, ra['job_peak'] - ra['rss_before']):.2f}× |")
    if peak_sites:
        print()
        print("Where the instance sync's memory is when it commits (tracemalloc in a replay, 1 frame; Python "
              "objects alive at that moment, by allocating line):")
        for label, info in peak_sites.items():
            print(f"\n{label}: {info['traced_mib']:.0f} MiB traced")
            for where, mib, count in info["top"]:
                print(f"  {mib:7.1f} MiB {count:9,} blocks  {where}")
    if len(probes) >= 2:
        t0_, t1_ = Counter(probes[0]["types"]), Counter(probes[-1]["types"])
        grow = sorted(((t1_[k] - t0_.get(k, 0), k) for k in t1_), reverse=True)[:10]
        print("\nLive objects by type, growth from month 1 to the last month (top 10 of the 40 most common): "
              + ", ".join(f"{k} {d:+,}" for d, k in grow))
    if reader.errors:
        print("\nErrors:\n" + "\n".join(reader.errors[:10]))
    if reader.warnings:
        print("\nWarnings (distinct):\n" + "\n".join(f"{n} × {w}" for w, n in reader.warnings.most_common(10)))
    if edit_failures:
        print("\nRule changes that failed:\n" + "\n".join(edit_failures[:10]))
    if secretariat.refused:
        print("\nSubmissions refused (first 5):\n" + "\n".join(secretariat.refused[:5]))
    if args.tracemalloc:
        print("\nPeak of traced Python memory per month (tracemalloc, reset at each probe): "
              + ", ".join(f"{m['label']} {f0(m.get('traced_peak_mib'))}" for m in months) + " MiB")
        snaps = sorted((tmp / "snaps").glob("snap-*.pickle"))
        if len(snaps) >= 2:
            print("\n" + compare_snapshots(snaps[0], snaps[-1]))
    draw(args.png, months, title, replayed)
    print(f"\nPNG: {args.png}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "title": title, "months": months,
                                         "probes": probes, "edits": edits_done, "wall_s": wall, "hwm": hwm,
                                         "cpu_s": cpu_end, "loads": loads, "sink": stats,
                                         "errors": reader.errors[:50], "warnings": dict(reader.warnings),
                                         "replay": replayed, "load_replay": load_replay,
                                         "peak_sites": peak_sites},
                                        ensure_ascii=False, indent=1), encoding="utf-8")
    if args.keep:
        print(f"Kept: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def nproc() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--as-daemon":
        as_daemon(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--replot":        # --replot RESULT.json OUT.png
        saved = json.loads(Path(sys.argv[2]).read_text(encoding="utf-8"))
        draw(Path(sys.argv[3]), saved["months"], saved.get("title", ""), saved.get("replay"))
    elif len(sys.argv) > 1 and sys.argv[1] == "--replay":
        replay(Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]), Path(sys.argv[5]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--replay-kept":   # --replay-kept ROUNDS LABEL=FOLDER@AT[+nokpi] …
        replay_kept(int(sys.argv[2]), sys.argv[3:])
    else:
        main()
