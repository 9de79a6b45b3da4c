"""Benchmark: the evaluation core alone (no database), durable-rules vs the Python oracle.

Run: .venv/bin/python benchmarks/bench_evaluation_core.py [--sizes 10000 100000] [--runs 5]

Two generated populations of OPEN instances, evaluated on one day (02/03/2026, the second week
after Tết) with the seed pack's reminder policies:

* ``window`` — every instance is due within ±15 days of the evaluation day (worst case: nearly all
  of them are posted to the engine); 25 % of each instance's stages already sent.
* ``year``   — due days spread over 2026 (the shape of a real state database); most instances are
  outside every reminder window, so the prefilter keeps them away from the engine.

Each configuration runs in its own process (peak RSS is per process): median and min of --runs
timed calls to ``evaluate``, then one extra call under tracemalloc for the Python-heap peak.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.evaluation import DurableEvaluator, OpenItem, PythonEvaluator  # noqa: E402
from engine.rules_model import ReminderPolicy  # noqa: E402
from engine.workcalendar import WorkingCalendar, load_overrides  # noqa: E402

AS_OF = date(2026, 3, 2)
CONFIGS: dict[str, dict[str, Any]] = {
    "durable direct, post": {"driver": "direct"},
    "durable direct, post_batch": {"driver": "direct", "batch": True},
    "durable Host, post": {"driver": "host"},
    "durable Host, post_batch": {"driver": "host", "batch": True},
    "durable direct, post, no prefilter": {"driver": "direct", "prefilter": False},
    "python oracle": {},
}


def load_policies() -> dict[str, ReminderPolicy]:
    """The seed pack's policies (rules/pack.yaml); a copy of them if the pack does not load."""
    try:
        from engine.rules_loader import load_pack
        return dict(load_pack(ROOT / "rules", ROOT / "calendar").policies)
    except Exception:
        both = ["supervisor", "vp-tinh-uy"]
        return {p.id: p for p in [
            ReminderPolicy(id="mac-dinh", escalate_to=both),
            ReminderPolicy(id="hang-thang", before_due_working_days=[2], repeat_every_working_days=2,
                           escalate_after_working_days=5, escalate_to=both),
            ReminderPolicy(id="hang-quy", before_due_working_days=[5, 2], repeat_every_working_days=3,
                           escalate_after_working_days=7, escalate_to=both),
            ReminderPolicy(id="hang-nam", before_due_working_days=[10, 5, 1], escalate_to=both),
            ReminderPolicy(id="tong-hop", before_due_working_days=[1], repeat_every_working_days=2,
                           escalate_after_working_days=3, escalate_to=["supervisor"]),
        ]}


def stage_names(p: ReminderPolicy) -> list[str]:
    return ([f"remind-{n}" for n in p.before_due_working_days] + ["due-today", "overdue"]
            + [f"overdue-repeat-{k}" for k in range(1, p.max_repeats + 1)] + ["escalation"])


def generate(n: int, population: str, policies: dict[str, ReminderPolicy], seed: int = 2026) -> list[OpenItem]:
    rng = random.Random(seed)
    pids = sorted(policies)
    supervisors = [None, "ubnd-tinh", "vp-tinh-uy", "ban-cd"]
    items = []
    for k in range(n):
        if population == "window":
            due = AS_OF + timedelta(days=rng.randint(-15, 15))
        else:
            due = date(2026, 1, 1) + timedelta(days=rng.randint(0, 364))
        pid = pids[k % len(pids)]
        sent = frozenset(s for s in stage_names(policies[pid]) if rng.random() < 0.25)
        items.append(OpenItem(f"bc-{k % 40}", f"dv-{k % 1000:04d}", f"2026-{k // 40000:02d}-{k}", due, pid, "open",
                              sent, rng.choice(supervisors)))
    return items


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_one(config: str, size: int, population: str, runs: int) -> dict[str, Any]:
    policies = load_policies()
    cal = WorkingCalendar(load_overrides(ROOT / "calendar"))
    items = generate(size, population, policies)
    kwargs = CONFIGS[config]
    ev: Any = PythonEvaluator(policies) if config == "python oracle" else DurableEvaluator(policies, **kwargs)
    base_rss = rss_mb()
    times = []
    notices = 0
    for _ in range(runs):
        t = time.perf_counter()
        notices = len(ev.evaluate(items, AS_OF, cal))
        times.append(time.perf_counter() - t)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss
    events = len(ev.events(items, AS_OF, cal)) if isinstance(ev, DurableEvaluator) else None
    t = time.perf_counter()
    if isinstance(ev, DurableEvaluator):
        ev.events(items, AS_OF, cal)
    facts_s = time.perf_counter() - t
    tracemalloc.start()
    ev.evaluate(items, AS_OF, cal)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if isinstance(ev, DurableEvaluator):
        ev.close()
    return {"config": config, "size": size, "population": population, "median": statistics.median(times),
            "min": min(times), "notices": notices, "events": events, "facts_s": facts_s,
            "peak_rss_mb": max(peak_rss, 0.0), "traced_mb": traced_peak / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--populations", nargs="+", default=["window", "year"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS))
    ap.add_argument("--one", nargs=3, metavar=("CONFIG", "SIZE", "POPULATION"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args.one[2], args.runs)))
        return
    rows = []
    for population in args.populations:
        for size in args.sizes:
            for config in args.configs:
                out = subprocess.run([sys.executable, __file__, "--runs", str(args.runs), "--one", config, str(size),
                                      population], capture_output=True, text=True, check=True)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"  … {population} {size} {config}: {rows[-1]['median']:.3f} s", file=sys.stderr)
    print(f"\nPython {platform.python_version()}, {platform.machine()}, median/min of {args.runs} runs, "
          f"as_of {AS_OF:%d/%m/%Y}\n")
    print("| population | items | evaluator | events posted | notices | median s | min s | µs/item "
          "| facts (Python) s | peak RSS Δ MB | tracemalloc peak MB |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        events = "—" if r["events"] is None else f"{r['events']:,}"
        facts = "—" if r["events"] is None else f"{r['facts_s']:.3f}"
        print(f"| {r['population']} | {r['size']:,} | {r['config']} | {events} | {r['notices']:,} | "
              f"{r['median']:.3f} | {r['min']:.3f} | {r['median'] / r['size'] * 1e6:.1f} | {facts} | "
              f"{r['peak_rss_mb']:.1f} | {r['traced_mb']:.1f} |")


if __name__ == "__main__":
    main()
