"""Benchmark: 100,000-row CSV imports (submissions and KPI values) on SQLite, and how long they
keep other writers (the daemon) out of the database.

    .venv/bin/python benchmarks/bench_imports.py [--rows 100000] [--units 5000] [--old DIR] [--cli]

A probe process beside the import opens its own connection and, every 5 ms, takes the write
lock (BEGIN IMMEDIATE) and releases it at once: the longest it had to wait is the longest write-
lock hold the import inflicted on everyone else (what made the daemon lose its lease, issue 10
item 3). The submissions file fills instances of the seed pack's Kế hoạch hành động reports owed by
--units synthetic units (the soak benchmark's units); the KPI file has one value per (indicator,
day) over the seed KPI indicators, each admissible for its unit.

--old DIR: also time the import code in DIR/old_submissions.py and DIR/old_values.py (for example
`git show <rev>:engine/submissions.py`), to compare before/after on the same data.
--cli: also time the whole `dondoc import submissions` command twice (its own process: the pack of
--units units parsed the first time, read from the pack cache the second).
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing as mp
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from engine.clock import TZ  # noqa: E402

NOW = datetime(2027, 12, 31, 12, 0, tzinfo=TZ)


def probe(db_path: str, stop, result) -> None:
    """Take and release the write lock every 5 ms; report the longest wait (ms)."""
    con = sqlite3.connect(db_path, timeout=600, isolation_level=None)
    longest = 0.0
    while not stop.is_set():
        t0 = time.perf_counter()
        con.execute("BEGIN IMMEDIATE")
        waited = time.perf_counter() - t0
        con.execute("COMMIT")
        longest = max(longest, waited)
        time.sleep(0.005)
    result.value = longest * 1000
    con.close()


def build_state(work: Path, n_units: int, rows: int) -> tuple[Path, Path, Path, Path]:
    """A pack with n synthetic units, a synced state.db, and the two CSV files."""
    from sqlmodel import select

    from bench_daemon_soak import soak_pack
    from engine.db import session
    from engine.kpi.loader import load_kpi_for_pack
    from engine.kpi.model import in_unit
    from engine.rules_loader import load_pack
    from engine.state import InstanceRow
    from engine.sync import sync_instances

    pack_dir = soak_pack(work / "rules", n_units)
    pack = load_pack(pack_dir, ROOT / "calendar")
    db = work / "template.db"
    t0 = time.perf_counter()
    with session(f"sqlite:///{db}") as s:
        sync_instances(s, pack, NOW, tracking_start=date(2026, 1, 1), horizon_days=0)
        inst = s.exec(select(InstanceRow.obligation, InstanceRow.unit, InstanceRow.period, InstanceRow.period_start,
                             InstanceRow.period_end).order_by(InstanceRow.id)).all()
    print(f"(prepared {len(inst):,} instances in {time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    if len(inst) < rows:
        raise SystemExit(f"only {len(inst)} instances; raise --units")
    subs = work / "nop.csv"
    with subs.open("w", encoding="utf-8") as f:
        f.write("obligation,unit,period,date,ref,note\n")
        for i, (ob, unit, period, start, end) in enumerate(inst[:rows]):
            day = min(end + timedelta(days=5), NOW.date())
            f.write(f"{ob},{unit},{period},{day:%d/%m/%Y},{i}/BC-{unit},\n")
    kpi = load_kpi_for_pack(pack)
    values = {"percent": "55,5", "percent_grdp": "12,5", "count": "1200", "index": "0,65", "rank": "12",
              "boolean": "có", "money_billion": "1250,5", "number": "42"}
    inds = []
    for ind in kpi.indicators.values():
        v = values.get(ind.unit, "10")
        from engine.kpi.values import parse_value

        try:
            if in_unit(ind.unit, parse_value(v, ind.unit)) is None:
                inds.append((ind.id, v))
        except Exception:
            pass
    kcsv = work / "chi-tieu.csv"
    with kcsv.open("w", encoding="utf-8") as f:
        f.write("indicator;value;as_of;source\n")
        n, day = 0, date(2000, 1, 1)
        while n < rows:
            for ind, v in inds:
                f.write(f"{ind};{v};{day:%d/%m/%Y};Báo cáo {n}\n")
                n += 1
                if n == rows:
                    break
            day += timedelta(days=1)
    return pack_dir, db, subs, kcsv


def run_one(label: str, fn, db: Path) -> tuple[str, float, float]:
    stop, result = mp.Event(), mp.Value("d", 0.0)
    p = mp.Process(target=probe, args=(str(db), stop, result), daemon=True)
    p.start()
    time.sleep(0.3)
    t0 = time.perf_counter()
    try:
        n = fn()
    finally:
        total = time.perf_counter() - t0
        stop.set()
        p.join()
    print(f"{label}: {n:,} rows in {total:.1f} s, longest wait of another writer {result.value:.0f} ms", file=sys.stderr)
    return label, total, result.value


def cli_import(work: Path, pack_dir: Path, subs: Path, db: Path) -> int:
    """The command a secretary runs, in its own process; its pack cache lives in `work`."""
    import json
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("DONDOC_")}
    env.update(DONDOC_DATABASE_URL=f"sqlite:///{db}", DONDOC_NOW=NOW.strftime("%Y-%m-%dT%H:%M"),
               DONDOC_TRACKING_START="2026-01-01", XDG_CACHE_HOME=str(work / "cache"))
    r = subprocess.run([sys.executable, "-c", "import sys; from engine.app.cli import main; sys.argv[0] = 'dondoc'; main()",
                        "import", "submissions", str(subs), "--rules", str(pack_dir), "--calendar",
                        str(ROOT / "calendar"), "--json"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-1000:]
    return int(json.loads(r.stdout)["submitted"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--units", type=int, default=5000)
    ap.add_argument("--old", type=Path, default=None)
    ap.add_argument("--cli", action="store_true",
                    help="also time the whole `dondoc import submissions` command (its own process: start-up, "
                         "the pack of --units units parsed, then read from the pack cache)")
    args = ap.parse_args()
    from engine.db import session
    from engine.kpi.loader import load_kpi_for_pack
    from engine.rules_loader import load_pack

    work = Path(tempfile.mkdtemp(prefix="bench-imports-"))
    pack_dir, template, subs, kcsv = build_state(work, args.units, args.rows)
    pack = load_pack(pack_dir, ROOT / "calendar")
    kpi = load_kpi_for_pack(pack)
    variants = [("now", importlib.import_module("engine.submissions"), importlib.import_module("engine.kpi.values"))]
    if args.old:
        sys.path.insert(0, str(args.old))
        variants.insert(0, ("before", importlib.import_module("old_submissions"), importlib.import_module("old_values")))
    table = []
    for name, sub_mod, val_mod in variants:
        db = work / f"{name}.db"
        src, dst = sqlite3.connect(template), sqlite3.connect(db)
        src.backup(dst)       # WAL-safe copy (a plain file copy would miss the -wal file)
        src.close()
        dst.close()
        url = f"sqlite:///{db}"

        def do_subs(sub_mod=sub_mod, url=url):
            with session(url) as s:
                return sub_mod.import_submissions(s, pack, subs, NOW)

        def do_kpi(val_mod=val_mod, url=url):
            with session(url) as s:
                return val_mod.import_values(s, kpi, kcsv, NOW)

        table.append((name, "import submissions") + run_one(f"{name} submissions", do_subs, db)[1:])
        table.append((name, "kpi import") + run_one(f"{name} kpi", do_kpi, db)[1:])
    if args.cli:
        for what in ("`dondoc import submissions` (pack parsed)", "`dondoc import submissions` (pack cached)"):
            db = work / "cli.db"
            src, dst = sqlite3.connect(template), sqlite3.connect(db)
            src.backup(dst)
            src.close()
            dst.close()
            table.append(("now", what) + run_one(what, lambda db=db: cli_import(work, pack_dir, subs, db), db)[1:])
    print(f"\n{args.rows:,} rows, SQLite (WAL), {args.units:,} synthetic units\n")
    print("| code | import | total (s) | longest write-lock wait of another writer (ms) |")
    print("|---|---|---:|---:|")
    for name, what, total, wait in table:
        print(f"| {name} | {what} | {total:.1f} | {wait:,.0f} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
