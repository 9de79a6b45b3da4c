"""Rule reloads keep the daemon's memory bounded.

Every rules version compiles to a new durable-rules ruleset. What the alternatives cost, measured on
this machine for 200 reloads (two policies, 300 items evaluated per version, RSS growth from reload 20
to reload 200):

* naive, durable's documented API — a new ``Host`` (or a new ruleset name in the same Host) per
  version; a Host cannot remove a ruleset:                                  +103 MB (~0.57 MB/reload)
* ``durable_rules_engine.delete_ruleset`` alone — the session state ("sid 0") that the first
  posted event created is not freed by it:                                   +50 MB (~0.28 MB/reload)
* ``DurableEvaluator.close()`` — ``delete_state`` then ``delete_ruleset``:     +0.1 MB

The growth is unbounded in the first two cases (linear in the number of reloads).
"""

from __future__ import annotations

import gc
from datetime import date
from pathlib import Path
from typing import Callable

import pytest

from engine.evaluation import DurableEvaluator, OpenItem, PythonEvaluator
from engine.rules_model import ReminderPolicy
from engine.workcalendar import WorkingCalendar, load_overrides

CAL = WorkingCalendar(load_overrides(Path(__file__).resolve().parent.parent / "calendar"))
ITEMS = [OpenItem("bc", f"u{j}", "2026-02", date(2026, 2, 23), "mac-dinh" if j % 2 else "hang-quy",
                  supervisor="vp-tinh-uy") for j in range(300)]
AS_OF = date(2026, 2, 13)
RELOADS = 200
LIMIT_MB = 20.0


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def version(k: int) -> dict[str, ReminderPolicy]:
    """A different rules version each time (a secretary editing the reminder days)."""
    return {"mac-dinh": ReminderPolicy(id="mac-dinh", before_due_working_days=[1 + k % 60, 1],
                                       repeat_every_working_days=1 + k // 60),
            "hang-quy": ReminderPolicy(id="hang-quy", before_due_working_days=[5, 2])}


def reload_loop(run_one: Callable[[int], None]) -> tuple[float, float]:
    gc.collect()
    base = rss_mb()
    after_20 = base
    for k in range(RELOADS):
        run_one(k)
        if k == 19:
            gc.collect()
            after_20 = rss_mb()
    gc.collect()
    return after_20 - base, rss_mb() - after_20


def test_reload_with_close_keeps_rss_bounded() -> None:
    def one(k: int) -> None:
        policies = version(k)
        with DurableEvaluator(policies) as ev:
            got = ev.evaluate(ITEMS, AS_OF, CAL)
        if k % 50 == 0:   # still evaluating correctly after many reloads
            assert got == PythonEvaluator(policies).evaluate(ITEMS, AS_OF, CAL)

    warmup, growth = reload_loop(one)
    print(f"direct driver: +{warmup:.1f} MB after 20 reloads, +{growth:.1f} MB from 20 to {RELOADS}")
    assert growth < LIMIT_MB


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.slow          # memory: builds and drops many evaluators
def test_forgotten_host_evaluators_are_freed_by_gc(batch: bool) -> None:
    """The Host driver, and an evaluator dropped without close() (freed when it is collected)."""
    def one(k: int) -> None:
        ev = DurableEvaluator(version(k), driver="host", batch=batch)
        ev.evaluate(ITEMS, AS_OF, CAL)
        del ev

    warmup, growth = reload_loop(one)
    print(f"host driver: +{warmup:.1f} MB after 20 reloads, +{growth:.1f} MB from 20 to {RELOADS}")
    assert growth < LIMIT_MB
