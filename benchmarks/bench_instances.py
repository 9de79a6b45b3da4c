"""Benchmark: one year of instances for 1,000 units and every seed obligation.

Run: .venv/bin/python benchmarks/bench_instances.py [--units 1000] [--runs 5]
Each of the 1,000 synthetic units reports under every seed obligation (a worst case: real units
report under a subset), so the count is units × obligations × periods.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import tracemalloc
from dataclasses import replace as dc_replace
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.instances import generate_instances  # noqa: E402
from engine.rules_loader import load_pack  # noqa: E402
from engine.rules_model import Group, Unit  # noqa: E402


def build_pack(n_units: int):
    pack = load_pack(ROOT / "rules", ROOT / "calendar")
    units = dict(pack.units)
    ids = []
    for k in range(n_units):
        uid = f"bench-{k:04d}"
        units[uid] = Unit(id=uid, name=f"Đơn vị thử {k}", kind="so", contacts=[f"u{k}@example.org"], supervisor="ubnd-tinh")
        ids.append(uid)
    groups = dict(pack.groups)
    groups["bench-all"] = Group(id="bench-all", name="Tất cả đơn vị thử", members=ids)
    obligations = {oid: o.model_copy(update={"reporters": ["bench-all"]}) for oid, o in pack.obligations.items()}
    return dc_replace(pack, units=units, groups=groups, obligations=obligations)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--units", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--year", type=int, default=2026)
    args = ap.parse_args()

    t0 = time.perf_counter()
    load_pack(ROOT / "rules", ROOT / "calendar")
    load_s = time.perf_counter() - t0
    pack = build_pack(args.units)
    start, end = date(args.year, 1, 1), date(args.year, 12, 31)
    times, count = [], 0
    for _ in range(args.runs):
        t0 = time.perf_counter()
        count = len(generate_instances(pack, start, end))
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    generate_instances(pack, start, end)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}, "
          f"{__import__('os').cpu_count()} cores")
    print(f"| units | obligations | instances ({args.year}) | median time (s) | min–max (s) | peak memory (MiB) | rule load (s) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.units} | {len(pack.obligations)} | {count} | {statistics.median(times):.2f} | "
          f"{min(times):.2f}–{max(times):.2f} | {peak / 2**20:.0f} | {load_s:.2f} |")


if __name__ == "__main__":
    main()
