"""Benchmark: one evaluation pass end to end on SQLite (load open instances, evaluate with
durable-rules, write notices), beside durable-rules alone and the plain-Python evaluator on the same
items, in one run.

Run: .venv/bin/python benchmarks/bench_evaluation_pass.py [--sizes 10000 100000 1000000] [--runs 5] [--pg]

``--pg`` runs the same table on a PostgreSQL server the benchmark starts on loopback
(tests/pgserver.py, Debian's binaries). The ratio is measured side by side: in each run durable-rules
alone and the whole pass work on the same items, one after the other; the table shows the median of
the per-run ratios. The pass is called as the daemon calls it (``keep_notices=False``); its writer
leaves SQLite's checkpoint (copying the write-ahead log back into the file) to the next commit of
another connection: it is timed right after the pass and shown beside it, with the ratio both ways.

Population (worst case): every open instance is due within ±15 days of the evaluation day
(02/03/2026), so nearly all of them are posted to the engine; a quarter already have their
earlier stages in the outbox. Each pass starts from a fresh copy of the prepared database, so every
run writes the same notices.
"""

from __future__ import annotations

import argparse
import platform
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace as dc_replace
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, text  # noqa: E402
from sqlmodel import Session  # noqa: E402

from engine.clock import TZ  # noqa: E402
from engine.db import checkpoint, get_engine, make_engine, migrate  # noqa: E402
from engine.evaluation import DurableEvaluator, PythonEvaluator  # noqa: E402
from engine.kpi.report import forget_kpi_items  # noqa: E402
from engine.pipeline import evaluate, load_open_items  # noqa: E402
from engine.rules_loader import load_pack  # noqa: E402
from engine.rules_model import Unit  # noqa: E402
from engine.state import InstanceRow, NoticeRow  # noqa: E402

AS_OF = date(2026, 3, 2)
NOW = datetime(2026, 3, 2, 7, 0, tzinfo=TZ)


def bench_pack(n_units: int):
    pack = load_pack(ROOT / "rules", ROOT / "calendar")
    units = dict(pack.units)
    for k in range(n_units):
        units[f"u{k:05d}"] = Unit(id=f"u{k:05d}", name=f"Đơn vị {k}", kind="so", contacts=[f"u{k}@example.org"],
                                  supervisor="ubnd-tinh")
    return dc_replace(pack, units=units)


def prepare(url: str, pack, n: int, seed: int = 57) -> None:
    migrate(url)
    eng = make_engine(url)
    rnd = random.Random(seed)
    obligations = [o for o in pack.obligations]
    units = [u for u in pack.units if u.startswith("u")]
    stages = ["remind-10", "remind-5", "remind-3", "remind-2", "due-today", "overdue"]
    rows, notes = [], []
    for i in range(n):
        due = AS_OF + timedelta(days=rnd.randint(-15, 15))
        ob = rnd.choice(obligations)
        rows.append(dict(id=i + 1, obligation=ob, unit=rnd.choice(units), period=f"b{i}", period_label=f"Kỳ {i}",
                         period_start=due - timedelta(days=30), period_end=due, due=due,
                         due_at=datetime.combine(due, datetime.max.time().replace(microsecond=0), tzinfo=TZ),
                         recipient="vp-tinh-uy", inherited_from="", active=True, closed=False, waived=False,
                         rules_version="bench", created_at=NOW, updated_at=NOW))
        if rnd.random() < 0.25:
            st = rnd.choice(stages)
            notes.append(dict(key=f"{ob}|x|b{i}|{st}|x", instance_id=i + 1, obligation=ob, unit="x", period=f"b{i}",
                              stage=st, kind="reminder", recipient="x", wd_before=0, wd_late=0, as_of=AS_OF,
                              created_at=NOW, status="sent", attempts=1))
    with eng.begin() as c:
        for k in range(0, len(rows), 5000):
            c.execute(insert(InstanceRow.__table__), rows[k:k + 5000])
        for k in range(0, len(notes), 5000):
            c.execute(insert(NoticeRow.__table__), notes[k:k + 5000])
    if url.startswith("postgresql"):
        with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM ANALYZE"))
    eng.dispose()


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(n: int, runs: int, tmp: Path, pg=None) -> dict[str, float]:
    pack = bench_pack(2000)
    if pg is None:
        base = tmp / f"base-{n}.db"
        prepare(f"sqlite:///{base}", pack, n)
    else:
        template = f"bench_{n}"
        prepare(pg.create_db(template), pack, n)
    evaluator = DurableEvaluator(pack.policies, batch=True)
    oracle = PythonEvaluator(pack.policies)
    passes, durable, python, ratios, created = [], [], [], [], 0
    checkpoints: list[float] = []
    with_checkpoint: list[float] = []
    for r in range(runs):
        if pg is None:
            db = tmp / f"run-{n}-{r}.db"
            shutil.copy(base, db)
            url = f"sqlite:///{db}"
        else:   # a fresh copy of the prepared database for every run
            with get_engine(pg.url()).connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text(f"CREATE DATABASE run_{n}_{r} TEMPLATE {template}"))
            url = pg.url(f"run_{n}_{r}")
        eng = get_engine(url)
        with Session(eng) as s:
            items = load_open_items(s, pack, AS_OF)
        t0 = time.perf_counter()
        evaluator.evaluate(items, AS_OF, pack.calendar)
        durable.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        oracle.evaluate(items, AS_OF, pack.calendar)
        python.append(time.perf_counter() - t0)
        del items
        forget_kpi_items()        # each run is the day's first pass: its KPI items are classified
        with Session(eng) as s:   # the daemon's pass, then the checkpoint it leaves to the next commit
            t0 = time.perf_counter()
            rep = evaluate(s, pack, NOW, evaluator=evaluator, keep_notices=False)
            passes.append(time.perf_counter() - t0)
            checkpoint(s)
            checkpoints.append(time.perf_counter() - t0 - passes[-1])
        ratios.append(passes[-1] / durable[-1])
        with_checkpoint.append((passes[-1] + checkpoints[-1]) / durable[-1])
        created = rep.created
        eng.dispose()
        if pg is None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
    evaluator.close()
    return {"n": n, "items": rep.considered, "created": created, "pass": statistics.median(passes),
            "pass_min": min(passes), "durable": statistics.median(durable), "python": statistics.median(python),
            "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios), "rss": rss_mb(),
            "checkpoint": statistics.median(checkpoints), "with_checkpoint": statistics.median(with_checkpoint)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000, 1000000])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pg", action="store_true", help="PostgreSQL on loopback instead of SQLite files")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {__import__('os').getloadavg()[0]:.1f}, {'PostgreSQL' if args.pg else 'SQLite'}")
    print("| open instances | notices written | whole pass (s, median) | min | durable-rules alone (s) "
          "| pass ÷ durable (median of runs) | range | checkpoint after (s) | (pass + checkpoint) ÷ durable "
          "| plain-Python evaluator (s) | peak RSS (MiB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    pg = None
    if args.pg:
        from tests.pgserver import PgServer
        pg = PgServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in args.sizes:
                r = run(n, args.runs, Path(tmp), pg)
                print(f"| {r['n']:,} | {r['created']:,} | {r['pass']:.2f} | {r['pass_min']:.2f} | "
                      f"{r['durable']:.2f} | **{r['ratio']:.2f}×** | {r['ratio_min']:.2f}–{r['ratio_max']:.2f} | "
                      f"{r['checkpoint']:.3f} | {r['with_checkpoint']:.2f}× | "
                      f"{r['python']:.2f} | {r['rss']:.0f} |", flush=True)
    finally:
        if pg is not None:
            pg.stop()
    print(f"load average after: {__import__('os').getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
