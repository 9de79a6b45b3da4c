"""Benchmark: one evaluation pass end to end on SQLite (load open instances, evaluate with
durable-rules, write notices), beside durable-rules alone and the plain-Python evaluator on the same
items, in one run.

Run: .venv/bin/python benchmarks/bench_evaluation_pass.py [--sizes 10000 30000 100000] [--runs 5]

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

from sqlalchemy import insert  # noqa: E402
from sqlmodel import Session  # noqa: E402

from engine.clock import TZ  # noqa: E402
from engine.db import get_engine, make_engine, migrate  # noqa: E402
from engine.evaluation import DurableEvaluator, PythonEvaluator  # noqa: E402
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


def prepare(path: Path, pack, n: int, seed: int = 57) -> None:
    url = f"sqlite:///{path}"
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
    eng.dispose()


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(n: int, runs: int, tmp: Path) -> dict[str, float]:
    pack = bench_pack(2000)
    base = tmp / f"base-{n}.db"
    prepare(base, pack, n)
    evaluator = DurableEvaluator(pack.policies, batch=True)
    oracle = PythonEvaluator(pack.policies)
    passes, durable, python, created = [], [], [], 0
    for r in range(runs):
        db = tmp / f"run-{n}-{r}.db"
        shutil.copy(base, db)
        url = f"sqlite:///{db}"
        eng = get_engine(url)
        with Session(eng) as s:
            items, _ = load_open_items(s, pack, AS_OF)
        t0 = time.perf_counter()
        evaluator.evaluate(items, AS_OF, pack.calendar)
        durable.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        oracle.evaluate(items, AS_OF, pack.calendar)
        python.append(time.perf_counter() - t0)
        with Session(eng) as s:
            t0 = time.perf_counter()
            rep = evaluate(s, pack, NOW, evaluator=evaluator)
            passes.append(time.perf_counter() - t0)
        created = rep.created
        eng.dispose()
    evaluator.close()
    return {"n": n, "items": len(items), "created": created, "pass": statistics.median(passes),
            "pass_min": min(passes), "durable": statistics.median(durable), "python": statistics.median(python),
            "rss": rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000, 30000, 100000])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}")
    print("| open instances | posted items | notices written | whole pass (s, median) | min | durable-rules alone (s) "
          "| pass ÷ durable | plain-Python evaluator (s) | peak RSS (MiB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            r = run(n, args.runs, Path(tmp))
            print(f"| {r['n']:,} | {r['items']:,} | {r['created']:,} | {r['pass']:.2f} | {r['pass_min']:.2f} | "
                  f"{r['durable']:.2f} | {r['pass'] / r['durable']:.1f}× | {r['python']:.2f} | {r['rss']:.0f} |")


if __name__ == "__main__":
    main()
