"""The daily instance sync at month 2 and at month 24 of an installation (issue 15, item 2).

    .venv/bin/python benchmarks/bench_sync_age.py [--units 1000] [--rounds 3] [--keep DIR]

Builds the soak's installation (benchmarks/bench_soak_years.py: the seed rules plus N synthetic
units in the group of the Kế hoạch hành động, tracking from 01/01/2026) by syncing twice a month
from 01/01/2026, each report closed on the day the soak's secretariat would record it (80 % on
time, 12 % late, 8 % never), and keeps the database as it is at the end of 02/2026 and of 12/2027.
On a fresh copy of each, in a fresh process, the next morning's sync with the same rules files:

- ``before``: the whole-history sync (the oracle copied in tests/test_sync_bounded.py);
- ``full``: engine.sync, one obligation at a time (what a rules change that moves instances runs);
- ``daily``: engine.sync as the daemon runs it (from the last sync: the rules generate the same).

Each figure: wall and thread-CPU ms (median of ``--rounds`` copies), tracemalloc's peak during the
sync (a separate copy: tracing slows it), and the process's peak RSS above its RSS before the sync.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SNAPSHOTS = {"02/2026": date(2026, 2, 28), "12/2027": date(2027, 12, 31)}
MODES = ("before", "full", "daily")


def fate_day(ob: str, unit: str, period: str, due: date, period_start: date) -> date | None:
    """The soak's secretariat (bench_soak_years.planned_day, without the earliest-day clamp)."""
    h = zlib.crc32(f"{ob}|{unit}|{period}".encode())
    f, spread = h % 100, (h // 100) % 31
    if f < 80:
        return max(period_start, due - timedelta(days=spread % 8))
    if f < 92:
        return due + timedelta(days=1 + spread % 30)
    return None


def build(work: Path, units: int) -> tuple[Path, Path, dict[str, Path]]:
    import sqlite3
    from contextlib import closing

    from sqlmodel import Session

    from benchmarks.bench_soak_years import soak_pack
    from engine.clock import TZ
    from engine.db import get_engine
    from engine.rules_loader import load_pack
    from engine.sync import record_installation, sync_instances

    rules = soak_pack(work / "rules", units)
    calendar = ROOT / "calendar"
    pack = load_pack(rules, calendar)
    db = work / "state.db"
    url = f"sqlite:///{db}"
    eng = get_engine(url)
    snaps: dict[str, Path] = {}
    last = max(SNAPSHOTS.values())
    days = sorted({date(y, m, d) for y in (2026, 2027) for m in range(1, 13) for d in (1, 15)} | set(SNAPSHOTS.values()))
    with Session(eng, expire_on_commit=False) as ses:
        record_installation(ses, datetime.combine(days[0], datetime.min.time(), tzinfo=TZ).replace(hour=7))
    for day in (d for d in days if d <= last):
        with closing(sqlite3.connect(db)) as c:     # the reports recorded by this day
            todo = []
            for iid, ob, unit, period, due, ps in c.execute(
                    "SELECT id, obligation, unit, period, due, period_start FROM instances "
                    "WHERE closed = 0 AND active = 1 AND due <= ?", ((day + timedelta(days=8)).isoformat(),)):
                when = fate_day(ob, unit, period, date.fromisoformat(due), date.fromisoformat(ps))
                if when is not None and when <= day:
                    todo.append((when.isoformat(), iid))
            c.executemany("UPDATE instances SET closed = 1, submitted_on = ? WHERE id = ?", todo)
            c.commit()
        with Session(eng, expire_on_commit=False) as ses:
            sync_instances(ses, pack, datetime.combine(day, datetime.min.time(), tzinfo=TZ).replace(hour=7))
        for label, at in SNAPSHOTS.items():
            if at == day:
                snaps[label] = work / f"snap-{at:%Y-%m}.db"
                eng.dispose()
                with closing(sqlite3.connect(db)) as src, closing(sqlite3.connect(snaps[label])) as dst:
                    src.backup(dst)
    return rules, calendar, snaps


def measure(snap: Path, at: str, rules: Path, calendar: Path, mode: str, trace: bool) -> None:
    """In a fresh process: one sync of a copy of ``snap`` at ``at``; prints one JSON line."""
    from sqlmodel import Session

    import engine.sync as sync_mod
    from engine.db import get_engine
    from engine.rules_loader import load_pack

    pack = load_pack(rules, calendar)
    eng = get_engine(f"sqlite:///{snap}")
    fn = sync_mod.sync_instances
    if mode == "before":
        from tests.test_sync_bounded import oracle_sync_instances as fn  # type: ignore[no-redef]
    kwargs = {"incremental": False} if mode == "full" else {}
    now = datetime.fromisoformat(at)
    with Session(eng, expire_on_commit=False) as ses:
        ses.connection()        # connection opened before the clock starts
        Path("/proc/self/clear_refs").write_text("5")
        rss0 = _status("VmRSS")
        if trace:
            import tracemalloc
            tracemalloc.start()
        w, c = time.perf_counter(), time.thread_time()
        rep = fn(ses, pack, now, **kwargs)
        wall, cpu = time.perf_counter() - w, time.thread_time() - c
        peak = None
        if trace:
            import tracemalloc
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    print(json.dumps({"wall_ms": 1000 * wall, "cpu_ms": 1000 * cpu, "traced_peak_mib": peak and peak / 2**20,
                      "rss_before": rss0, "rss_peak_above": _status("VmHWM") - rss0, "report": rep.as_dict()}))


def _status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_one(snap: Path, at: str, rules: Path, calendar: Path, mode: str, trace: bool, tmp: Path) -> dict:
    copy = tmp / f"copy-{os.getpid()}-{time.monotonic_ns()}.db"
    shutil.copy(snap, copy)
    try:
        out = subprocess.run([sys.executable, __file__, "--measure", str(copy), at, str(rules), str(calendar), mode,
                              "1" if trace else "0"], check=True, capture_output=True, text=True, cwd=ROOT)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        for p in tmp.glob(copy.name + "*"):
            p.unlink()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        snap, at, rules, calendar, mode, trace = sys.argv[2:8]
        measure(Path(snap), at, Path(rules), Path(calendar), mode, trace == "1")
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", type=Path, default=None, help="build (or reuse) the databases in this folder")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="dondoc-sync-age-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if not (work / "snap-2027-12.db").exists():
        rules, calendar, snaps = build(work, args.units)
    else:
        rules, calendar = work / "rules", ROOT / "calendar"
        snaps = {label: work / f"snap-{at:%Y-%m}.db" for label, at in SNAPSHOTS.items()}
    print(f"built in {time.perf_counter() - t0:.0f} s: {work}", file=sys.stderr)
    rows = []
    for label, at_day in SNAPSHOTS.items():
        at = f"{at_day + timedelta(days=1)}T07:00:00+07:00"
        import sqlite3
        with sqlite3.connect(snaps[label]) as c:
            n = c.execute("SELECT count(*) FROM instances").fetchone()[0]
        for mode in MODES:
            timed = [run_one(snaps[label], at, rules, calendar, mode, False, work) for _ in range(args.rounds)]
            traced = run_one(snaps[label], at, rules, calendar, mode, True, work)
            rows.append({"month": label, "instances": n, "mode": mode,
                         "wall_ms": statistics.median(t["wall_ms"] for t in timed),
                         "cpu_ms": statistics.median(t["cpu_ms"] for t in timed),
                         "rss_peak_above_mib": statistics.median(t["rss_peak_above"] for t in timed),
                         "traced_peak_mib": traced["traced_peak_mib"], "report": timed[0]["report"]})
            r = rows[-1]
            print(f"{label} {mode:7s} instances {n:6,d}  wall {r['wall_ms']:7.0f} ms  cpu {r['cpu_ms']:7.0f} ms  "
                  f"tracemalloc peak {r['traced_peak_mib']:6.1f} MiB  RSS peak above start {r['rss_peak_above_mib']:6.1f} MiB",
                  flush=True)
    print(json.dumps(rows))
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
