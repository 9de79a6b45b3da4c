"""Evaluation core: hand-computed cases on the real calendar, and a differential test of the
durable-rules evaluator (every driver/posting mode) against the plain-Python oracle."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from engine.evaluation import (DurableEvaluator, EngineInvariantError, NoticeIntent, OpenItem, PythonEvaluator,
                               UnknownPolicyError, decode_fired, derive_facts, escalation_event, ruleset_for)
from engine.rules_model import ReminderPolicy
from engine.workcalendar import WorkingCalendar, load_overrides

ROOT = Path(__file__).resolve().parent.parent
CAL = WorkingCalendar(load_overrides(ROOT / "calendar"))

DEFAULT = ReminderPolicy(id="mac-dinh", escalate_to=["supervisor", "vp-tinh-uy"])   # [3,1], o=1, r=5×3, E=10
POLICIES = {"mac-dinh": DEFAULT}

# Every way the production evaluator can run; the oracle is the reference for all of them.
MODES: dict[str, dict[str, Any]] = {
    "direct-single": {},
    "direct-batch": {"batch": True},
    "host-single": {"driver": "host"},
    "host-batch": {"driver": "host", "batch": True},
    "direct-single-unfiltered": {"prefilter": False},
    "host-batch-unfiltered": {"driver": "host", "batch": True, "prefilter": False},
}


def d(text: str) -> date:
    return date.fromisoformat(text)


def item(due: str, **kw: Any) -> OpenItem:
    base = dict(obligation="bc-thang", unit="so-khcn", period="2026-02", due=d(due), policy="mac-dinh",
                supervisor="ubnd-tinh")
    base.update(kw)
    return OpenItem(**base)


def stages(intents: list[NoticeIntent]) -> list[tuple[str, str, int, int]]:
    return [(n.stage, n.recipient, n.wd_before, n.wd_late) for n in intents]


@pytest.fixture(params=["python", *MODES], scope="module")
def evaluate(request: pytest.FixtureRequest) -> Iterator[Callable[..., list[NoticeIntent]]]:
    """The same hand-computed expectations hold for the oracle and for every durable mode."""
    evaluators: dict[str, Any] = {}

    def run(items: list[OpenItem], as_of: str, policies: dict[str, ReminderPolicy] = POLICIES) -> list[NoticeIntent]:
        key = json.dumps(sorted(policies))
        if key not in evaluators:
            evaluators[key] = (PythonEvaluator(policies) if request.param == "python"
                               else DurableEvaluator(policies, **MODES[request.param]))
        return evaluators[key].evaluate(items, d(as_of), CAL)

    yield run
    for ev in evaluators.values():
        if isinstance(ev, DurableEvaluator):
            ev.close()


# --------------------------------------------------------------------------------------------
# Hand-computed cases (real calendar: calendar/VN.yaml + holidays 0.109)
# --------------------------------------------------------------------------------------------

def test_calendar_preconditions() -> None:
    """The hand computations below assume exactly these days off / working days."""
    off = ["2026-01-01", "2026-01-02", "2026-02-16", "2026-02-17", "2026-02-18", "2026-02-19", "2026-02-20",
           "2026-04-27", "2026-04-30", "2026-05-01"]
    assert not any(CAL.is_working_day(d(x)) for x in off)
    assert CAL.is_working_day(d("2026-01-10"))           # make-up Saturday for 02/01
    assert CAL.is_working_day(d("2026-02-13")) and CAL.is_working_day(d("2026-02-23"))


# Due Monday 23/02/2026, the first working day after Tết (16–20/02). Policy [3, 1]:
# working days in (as_of, 23/02]:  10/02 → 11,12,13,23 = 4;  11/02 → 12,13,23 = 3;  12/02 → 13,23 = 2;
# 13/02 → 23 = 1;  every day from 14/02 to 22/02 → 1 (only Monday 23/02 counts).
@pytest.mark.parametrize("as_of, expected", [
    ("2026-02-10", []),
    ("2026-02-11", [("remind-3", "so-khcn", 3, 0)]),
    ("2026-02-12", [("remind-3", "so-khcn", 2, 0)]),   # catch-up: still inside remind-3's window
    ("2026-02-13", [("remind-1", "so-khcn", 1, 0)]),
    ("2026-02-18", [("remind-1", "so-khcn", 1, 0)]),   # in the middle of Tết: one working day left
    ("2026-02-22", [("remind-1", "so-khcn", 1, 0)]),
    ("2026-02-23", [("due-today", "so-khcn", 0, 0)]),
    ("2026-02-24", [("overdue", "so-khcn", 0, 1)]),
])
def test_reminders_across_tet(evaluate: Callable[..., list[NoticeIntent]], as_of: str,
                              expected: list[tuple[str, str, int, int]]) -> None:
    assert stages(evaluate([item("2026-02-23")], as_of)) == expected


def test_one_working_day_late_is_after_tet(evaluate: Callable[..., list[NoticeIntent]]) -> None:
    """Due Friday 13/02: Saturday to the end of Tết is late by 0 working days; Monday 23/02 by 1."""
    due = item("2026-02-13")
    assert stages(evaluate([due], "2026-02-14")) == []          # phase after, but 0 < o = 1
    assert stages(evaluate([due], "2026-02-20")) == []
    assert stages(evaluate([due], "2026-02-23")) == [("overdue", "so-khcn", 0, 1)]


def test_make_up_saturday_and_swapped_day_off(evaluate: Callable[..., list[NoticeIntent]]) -> None:
    # Due Mon 12/01/2026: from Fri 09/01 the make-up Saturday 10/01 counts → 2 working days → remind-3.
    assert stages(evaluate([item("2026-01-12")], "2026-01-09")) == [("remind-3", "so-khcn", 2, 0)]
    # Due Wed 31/12/2025: 01/01 holiday, 02/01 swapped day off, weekend → Mon 05/01 is 1 working day late.
    assert stages(evaluate([item("2025-12-31")], "2026-01-02")) == []
    assert stages(evaluate([item("2025-12-31")], "2026-01-05")) == [("overdue", "so-khcn", 0, 1)]


# Due Wed 22/04/2026. Late working days: 23/04=1, 24=2, (25–27 off: weekend + Giỗ Tổ observed) 28=3, 29=4,
# (30/04–03/05 off) 04/05=5, 05=6, 06=7, 07=8, 08=9, 11/05=10.  o=1, r=5, max 3, E=10.
@pytest.mark.parametrize("as_of, expected", [
    ("2026-04-29", [("overdue", "so-khcn", 0, 4)]),
    ("2026-05-05", [("overdue-repeat-1", "so-khcn", 0, 6)]),
    ("2026-05-08", [("overdue-repeat-1", "so-khcn", 0, 9)]),
    ("2026-05-11", [("overdue-repeat-1", "so-khcn", 0, 10), ("escalation", "ubnd-tinh", 0, 10),
                    ("escalation", "vp-tinh-uy", 0, 10)]),
])
def test_overdue_repeats_and_escalation_across_30_4(evaluate: Callable[..., list[NoticeIntent]], as_of: str,
                                                    expected: list[tuple[str, str, int, int]]) -> None:
    assert stages(evaluate([item("2026-04-22")], as_of)) == expected


def test_escalation_targets(evaluate: Callable[..., list[NoticeIntent]]) -> None:
    sent = frozenset({"overdue-repeat-1"})
    late = "2026-05-11"   # 10 working days after 22/04
    # supervisor is also listed by id: one notice; no supervisor: only the listed unit.
    same = item("2026-04-22", supervisor="vp-tinh-uy", sent_stages=sent)
    none = item("2026-04-22", supervisor=None, sent_stages=sent, unit="so-tc")
    # the late unit is itself an escalation target: never escalate to yourself.
    self_ = item("2026-04-22", unit="vp-tinh-uy", supervisor="ban-cd", sent_stages=sent)
    got = evaluate([same, none, self_], late)
    assert [(n.unit, n.stage, n.recipient) for n in got] == [
        ("so-khcn", "escalation", "vp-tinh-uy"), ("so-tc", "escalation", "vp-tinh-uy"),
        ("vp-tinh-uy", "escalation", "ban-cd")]
    assert all(n.kind == "escalation" for n in got)


def test_already_sent_stages_are_not_repeated(evaluate: Callable[..., list[NoticeIntent]]) -> None:
    assert evaluate([item("2026-02-23", sent_stages=frozenset({"remind-3"}))], "2026-02-12") == []
    # the next stage is still owed; an earlier, unsent one is never sent late (catch-up).
    assert stages(evaluate([item("2026-02-23", sent_stages=frozenset({"remind-3"}))], "2026-02-13")) == [
        ("remind-1", "so-khcn", 1, 0)]
    full = frozenset({"overdue-repeat-1", "escalation"})
    assert evaluate([item("2026-04-22", sent_stages=full)], "2026-05-11") == []
    # escalation already sent, repeat not yet: only the repeat
    assert stages(evaluate([item("2026-04-22", sent_stages=frozenset({"escalation"}))], "2026-05-11")) == [
        ("overdue-repeat-1", "so-khcn", 0, 10)]


def test_submitted_and_waived_are_silent(evaluate: Callable[..., list[NoticeIntent]]) -> None:
    for state in ("submitted", "waived"):
        assert evaluate([item("2026-02-23", state=state)], "2026-02-23") == []
        assert evaluate([item("2026-04-22", state=state)], "2026-05-11") == []


def test_last_repeat_keeps_its_window_and_kinds(evaluate: Callable[..., list[NoticeIntent]]) -> None:
    # 22/04 + 16 working days = 19/05 (16 = o + 3r): repeat-3 is the last one and never ends.
    got = evaluate([item("2026-04-22", sent_stages=frozenset({"escalation"}))], "2026-06-30")
    assert [(n.stage, n.kind) for n in got] == [("overdue-repeat-3", "overdue")]
    got = evaluate([item("2026-02-23")], "2026-02-23") + evaluate([item("2026-02-23")], "2026-02-13")
    assert [n.kind for n in got] == ["due_today", "reminder"]


def test_notice_key() -> None:
    n = NoticeIntent("bc-thang", "so-khcn", "2026-02", "escalation", "vp-tinh-uy", "escalation", 0, 10)
    assert n.key == "bc-thang|so-khcn|2026-02|escalation|vp-tinh-uy"


def test_derive_facts_is_flat() -> None:
    facts = derive_facts(item("2026-04-22", sent_stages=frozenset({"overdue", "escalation"})), d("2026-05-11"), CAL)
    assert facts == {"policy": "mac-dinh", "state": "open", "phase": "after", "wd_before": 0, "wd_late": 10,
                     "sent_overdue": True, "sent_escalation": True}
    assert all(isinstance(v, (int, str, bool)) for v in facts.values())
    assert escalation_event(facts) == {"policy": "mac-dinh", "state": "open", "esc_late": 10,
                                       "sent_escalation": True}


def test_unknown_policy_is_an_error() -> None:
    bad = [item("2026-02-23", policy="khong-co")]
    with pytest.raises(UnknownPolicyError):
        PythonEvaluator(POLICIES).evaluate(bad, d("2026-02-23"), CAL)
    with DurableEvaluator(POLICIES) as ev, pytest.raises(UnknownPolicyError):
        ev.evaluate(bad, d("2026-02-23"), CAL)


# --------------------------------------------------------------------------------------------
# Differential test
# --------------------------------------------------------------------------------------------

DIFF_POLICIES: dict[str, ReminderPolicy] = {p.id: p for p in [
    DEFAULT,
    ReminderPolicy(id="hang-thang", before_due_working_days=[2], repeat_every_working_days=2, max_repeats=3,
                   escalate_after_working_days=5, escalate_to=["supervisor", "vp-tinh-uy"]),
    ReminderPolicy(id="hang-nam", before_due_working_days=[10, 5, 1], escalate_to=["supervisor"]),
    # empty before list, no due-day notice, overdue from the first late calendar day, no repeats
    ReminderPolicy(id="im-lang", before_due_working_days=[], on_due_day=False, overdue_after_working_days=0,
                   repeat_every_working_days=0, max_repeats=0, escalate_after_working_days=None, escalate_to=[]),
    # repeats configured but max_repeats 0; duplicate and unsorted reminder days; duplicate targets
    ReminderPolicy(id="lap-0", before_due_working_days=[1, 4, 4, 2], overdue_after_working_days=2,
                   repeat_every_working_days=3, max_repeats=0, escalate_after_working_days=4,
                   escalate_to=["vp-tinh-uy", "supervisor", "vp-tinh-uy", "so-khcn"]),
    # repeat interval 0 with max_repeats > 0 (repeats off), escalation before the first overdue day
    ReminderPolicy(id="khong-lap", before_due_working_days=[7], overdue_after_working_days=3,
                   repeat_every_working_days=0, max_repeats=4, escalate_after_working_days=1,
                   escalate_to=["supervisor"]),
    ReminderPolicy(id="day-dac", before_due_working_days=[1, 2, 3, 6, 9], overdue_after_working_days=0,
                   repeat_every_working_days=1, max_repeats=6, escalate_after_working_days=3,
                   escalate_to=["supervisor", "ban-cd"]),
]}

UNITS = ["so-khcn", "so-tc", "vp-tinh-uy", "ubnd-xa-1", "bao-gl", "ban-cd"]
SUPERVISORS = [None, "ubnd-tinh", "vp-tinh-uy", "ban-cd", "so-khcn"]
# Due days next to Tết 2026, New Year 2026 (02/01 off, 10/01 worked), Giỗ Tổ, 30/4–1/5, 2/9, weekends.
ANCHORS = [d(x) for x in ("2025-12-31", "2026-01-02", "2026-01-09", "2026-01-12", "2026-02-13", "2026-02-16",
                          "2026-02-20", "2026-02-23", "2026-04-24", "2026-04-27", "2026-04-29", "2026-05-04",
                          "2026-08-21", "2026-08-24", "2026-08-31", "2026-09-03", "2026-03-07", "2026-06-14")]


def all_stages(p: ReminderPolicy) -> list[str]:
    return ([f"remind-{n}" for n in p.before_due_working_days] + ["due-today", "overdue"]
            + [f"overdue-repeat-{k}" for k in range(1, p.max_repeats + 1)] + ["escalation"])


@dataclass
class Case:
    as_of: date
    items: list[OpenItem]


def generate_cases(n_items: int, seed: int, per_day: int = 250) -> list[Case]:
    """Seeded population: each evaluation day has items due within ±15 days of it (incl. due today,
    one working day before/after), on and around holidays and weekends, in every state, with random
    subsets of already-sent stages (plus stages no policy knows)."""
    rng = random.Random(seed)
    cases: list[Case] = []
    made = 0
    while made < n_items:
        anchor = rng.choice(ANCHORS) + timedelta(days=rng.randint(-3, 3))
        as_of = anchor + timedelta(days=rng.randint(-15, 15))
        items: list[OpenItem] = []
        for k in range(min(per_day, n_items - made)):
            r = rng.random()
            if r < 0.1:
                due = as_of
            elif r < 0.2:
                due = CAL.add_working_days(as_of, rng.choice([-1, 1]))
            elif r < 0.3:
                due = rng.choice(ANCHORS)
            else:
                due = as_of + timedelta(days=rng.randint(-15, 15))
            pid = rng.choice(list(DIFF_POLICIES))
            names = all_stages(DIFF_POLICIES[pid])
            sent = {s for s in names if rng.random() < 0.25}
            if rng.random() < 0.05:
                sent.add("remind-99")
            state = rng.choices(["open", "submitted", "waived"], [8, 1, 1])[0]
            items.append(OpenItem(f"bc-{k % 7}", rng.choice(UNITS), f"{as_of:%Y-%m}-{k}", due, pid, state,
                                  frozenset(sent), rng.choice(SUPERVISORS)))
        cases.append(Case(as_of, items))
        made += len(items)
    return cases


CASES = generate_cases(12_000, seed=57)


def differences(reference: Any, candidate: Any, cases: list[Case]) -> list[str]:
    """Multiset comparison of the notices of two evaluators over every case (shared by the real
    differential test and by the fault-injection test, so both exercise the same code)."""
    problems: list[str] = []
    for case in cases:
        want = Counter(reference.evaluate(case.items, case.as_of, CAL))
        got = Counter(candidate.evaluate(case.items, case.as_of, CAL))
        for intent in (want - got):
            problems.append(f"{case.as_of}: missing {intent}")
        for intent in (got - want):
            problems.append(f"{case.as_of}: extra {intent}")
    return problems


def test_population_covers_the_interesting_cases() -> None:
    oracle = PythonEvaluator(DIFF_POLICIES)
    total = sum(len(c.items) for c in CASES)
    intents = Counter(n.stage.rsplit("-", 1)[0] if n.stage.startswith("overdue-repeat") else n.stage.split("-")[0]
                      for c in CASES for n in oracle.evaluate(c.items, c.as_of, CAL))
    assert total >= 10_000
    assert {"remind", "due", "overdue", "overdue-repeat", "escalation"} <= set(intents)
    assert min(intents.values()) >= 100
    phases = Counter(("before" if c.as_of < i.due else "due" if c.as_of == i.due else "after")
                     for c in CASES for i in c.items)
    assert min(phases.values()) >= 1000


@pytest.mark.parametrize("mode", list(MODES))
def test_durable_equals_oracle(mode: str) -> None:
    oracle = PythonEvaluator(DIFF_POLICIES)
    with DurableEvaluator(DIFF_POLICIES, **MODES[mode]) as ev:   # one evaluator for all days: no leaks
        assert differences(oracle, ev, CASES) == []


class OffByOne(DurableEvaluator):
    """A wrong translation: the first overdue repeat of one policy starts a working day late."""

    def _compile(self, policies: dict[str, ReminderPolicy]) -> dict[str, dict[str, Any]]:
        definition = ruleset_for(policies)
        (rules,) = definition.values()
        conds = rules["mac-dinh|overdue-repeat-1"]["all"][0]["m"]["$and"]
        for cond in conds:
            if "$gte" in cond:
                cond["$gte"]["wd_late"] += 1
        return definition


class DropsEvents(DurableEvaluator):
    """A wrong pipeline: every 500th event never reaches the engine."""

    def events(self, items: Any, as_of: date, cal: WorkingCalendar, exhausted: Any = None) -> list[dict[str, Any]]:
        return [e for e in super().events(items, as_of, cal, exhausted) if e["i"] % 500 != 7]


@pytest.mark.parametrize("faulty", [OffByOne, DropsEvents])
def test_oracle_catches_a_wrong_translation(faulty: type[DurableEvaluator]) -> None:
    with faulty(DIFF_POLICIES, batch=True) as ev:
        found = differences(PythonEvaluator(DIFF_POLICIES), ev, CASES)
    assert found, "the differential comparison must detect the injected fault"


# --------------------------------------------------------------------------------------------
# Engine traps: what the fall-through rule and the action-count check protect against
# --------------------------------------------------------------------------------------------

class NoFallThrough(DurableEvaluator):
    def _compile(self, policies: dict[str, ReminderPolicy]) -> dict[str, dict[str, Any]]:
        definition = ruleset_for(policies)
        (rules,) = definition.values()
        del rules["_none"]
        return definition


@pytest.mark.parametrize("mode", ["direct-batch", "host-batch", "direct-single", "host-single"])
def test_unconsumed_event_is_detected_and_does_not_leak(mode: str) -> None:
    """Without the fall-through, an already-sent stage leaves its event unmatched: post_batch then
    runs no action at all and keeps the matched ones queued for a later call. The evaluator must
    raise instead of returning too few notices, and the next call must not see the leftovers."""
    owed = item("2026-02-23")
    sent = item("2026-02-23", unit="so-tc", sent_stages=frozenset({"due-today"}))
    with NoFallThrough(POLICIES, **MODES[mode]) as ev:
        with pytest.raises(EngineInvariantError):
            ev.evaluate([owed, sent], d("2026-02-23"), CAL)
        assert stages(ev.evaluate([owed], d("2026-02-23"), CAL)) == [("due-today", "so-khcn", 0, 0)]


_AFTER_FAILURE = """
import sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from datetime import date
from test_evaluation import CAL, POLICIES, MODES, NoFallThrough, item
from engine.evaluation import DurableEvaluator, EngineInvariantError

class Raises(DurableEvaluator):   # the collector fails half-way through a batch's actions
    def _open_driver(self):
        super()._open_driver()
        on_action = self._driver._on_action if hasattr(self._driver, "_on_action") else None
        calls = [0]
        def failing(rule, event):
            calls[0] += 1
            if calls[0] == 2:
                raise KeyError("boom")
            return self._collector.on_action(rule, event)
        if on_action is not None:
            self._driver._on_action = failing

day = date(2026, 2, 23)
owed, sent = item("2026-02-23"), item("2026-02-23", unit="so-tc", sent_stages=frozenset({"due-today"}))
for cls in (NoFallThrough, Raises):
    for mode in ("direct-batch", "host-batch", "direct-single", "host-single"):
        for _ in range(3):
            with cls(POLICIES, **MODES[mode]) as ev:
                try:
                    ev.evaluate([owed, sent, item("2026-02-23", unit="so-yt")], day, CAL)
                except (EngineInvariantError, KeyError):
                    pass
                assert len(ev.evaluate([owed], day, CAL)) == 1
print("ok")
"""


def test_a_failed_post_does_not_crash_the_process(tmp_path: Path) -> None:
    """After a failed post the evaluator starts a fresh ruleset; freeing the failed session's state
    made the C engine read uninitialised memory (valgrind) and crash the daemon. glibc's
    MALLOC_PERTURB_ fills fresh memory with a pattern, which turns that read into a crash every time."""
    import os
    import subprocess
    import sys
    script = tmp_path / "after_failure.py"
    script.write_text(_AFTER_FAILURE, encoding="utf-8")
    env = {**os.environ, "MALLOC_PERTURB_": "165", "PYTHONMALLOC": "malloc"}
    done = subprocess.run([sys.executable, str(script), str(ROOT), str(ROOT / "tests")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_calls_are_independent() -> None:
    items = [item("2026-02-23"), item("2026-04-22", unit="so-tc")]
    with DurableEvaluator(POLICIES, batch=True) as ev:
        first = ev.evaluate(items, d("2026-05-11"), CAL)
        assert ev.evaluate([], d("2026-05-11"), CAL) == []
        assert ev.evaluate(iter(items), d("2026-05-11"), CAL) == first
        assert ev.evaluate(items, d("2026-05-11"), CAL) == PythonEvaluator(POLICIES).evaluate(items, d("2026-05-11"), CAL)


def test_large_batch_with_explicit_ids() -> None:
    """20,000 events in batches: without explicit ids ~15,000 small events collide (MessageObserved)."""
    items = [item("2026-02-23")._replace(period=f"p{k}") for k in range(20_000)]
    with DurableEvaluator(POLICIES, batch=True) as ev:
        ev.batch_size = 20_000
        assert len(ev.evaluate(items, d("2026-02-23"), CAL)) == 20_000


def test_decode_fired_fast_path_and_fallback() -> None:
    event = {"policy": "mac-dinh", "state": "open", "esc_late": 10, "i": 3, "id": 7}
    rules = {"mac-dinh|escalation"}
    echoed = '{"mac-dinh|escalation":{"m":' + json.dumps(event) + "}}"
    assert decode_fired(echoed, rules, {7: event}) == ("mac-dinh|escalation", event)
    # id not last / unknown id / unknown rule: the full JSON decode gives the engine's own copy
    reordered = '{"mac-dinh|escalation":{"m":{"id": 7, "i": 3, "esc_late": 10}}}'
    assert decode_fired(reordered, rules, {7: event}) == ("mac-dinh|escalation", {"id": 7, "i": 3, "esc_late": 10})
    assert decode_fired(echoed, rules, {}) == ("mac-dinh|escalation", event)
    assert decode_fired(echoed, set(), {7: {}}) == ("mac-dinh|escalation", event)


def test_closed_evaluator_refuses() -> None:
    ev = DurableEvaluator(POLICIES)
    ev.close()
    ev.close()
    with pytest.raises(RuntimeError):
        ev.evaluate([item("2026-02-23")], d("2026-02-23"), CAL)
