"""Reminder evaluation: which notices an open reporting instance is owed today.

Two evaluators answer the same question:

* ``DurableEvaluator`` — the production path. The reminder policies are compiled once per rules
  version into ONE durable-rules ruleset (JSON form, one rule per (policy, stage)); each open
  instance is posted as an event and the rule actions collect ``NoticeIntent``s.
* ``PythonEvaluator`` — the oracle: plain Python written straight from the policy semantics, kept
  deliberately independent of the rule compiler so the differential test can catch compiler bugs.

Engine facts this module is built around (durable-rules 2.0.28, see DOMAIN.md "Known traps";
each one was reproduced on this machine):

* An event is consumed by exactly ONE rule (the highest-priority match, lowest ``pri`` wins).
  An instance can owe two stages at once (an overdue stage and the escalation), so a late instance
  is posted as two events on two disjoint "tracks": the main event (``wd_late``) and the
  escalation event (``esc_late``); no rule can match both.
* An event no rule matches raises ``MessageNotHandledException``; inside ``post_batch`` that
  aborts the call with NO action run, while the matched events of the batch stay queued and fire
  during a later, unrelated post (lost or late notices). Hence a lowest-priority fall-through rule:
  every event is consumed by exactly one rule, so "actions run == events posted" is an invariant
  that is checked after every post and every batch.
* Events without an ``id`` get a content-hash id; in one batch of 14,555 tiny events two hashes
  collided, the batch failed with ``MessageObservedException`` and the ruleset's state was left
  poisoned (later single posts failed too). Every event therefore carries an explicit id unique
  within the call, and batches are posted in chunks (``batch_size``): the engine's cost per event
  also grows with the number of events pending at once (100,000 in one batch: 2.5× slower).
* The Python ``Host`` cannot remove a ruleset, and ``delete_ruleset`` alone leaks the per-session
  state (~0.25 MB per ruleset once an event was posted). ``close()`` calls ``delete_state`` and then
  ``delete_ruleset`` on the C engine, which frees it completely
  (tests/test_evaluation_reload.py measures it). After a FAILED post, ``delete_state`` reads
  uninitialised memory of the half-processed session (valgrind) and crashed the process in most
  runs: that session's state is then left allocated and only the ruleset is deleted.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder as _json_encoder
import threading
import warnings
from collections import OrderedDict
from datetime import date
from functools import lru_cache
from typing import Any, Callable, Iterable, Literal, NamedTuple, Sequence

import durable_rules_engine as _dre
from durable.engine import Host, MessageNotHandledException

from engine.kpi.subject import KPI_PREFIX, is_kpi_obligation  # noqa: F401  (KPI_PREFIX: re-exported)
from engine.gcpause import gc_paused
from engine.rules_model import ReminderPolicy
from engine.workcalendar import WorkingCalendar

Phase = Literal["before", "due", "after"]
Kind = Literal["reminder", "due_today", "overdue", "escalation", "kpi", "kpi_summary"]
ItemState = Literal["open", "submitted", "waived"]

# KPI items (engine/kpi, "chỉ tiêu chậm tiến độ") are posted as OpenItems whose obligation is
# "kpi:<target id>". Every notice about one has kind "kpi", whatever the stage (the escalation
# stage, if a pack's KPI policy has one, then goes to the supervisor as a KPI item of another unit).
# The weekly secretariat summary has kind "kpi_summary"; it is not evaluated here (engine/pipeline.py).
# The "kpi:<target>" / "<status>:<period>" strings are made and read only by engine/kpi/subject.py.

STAGE_DUE = "due-today"
STAGE_OVERDUE = "overdue"
STAGE_ESCALATION = "escalation"
_SUPERVISOR = "supervisor"
# durable-rules rejects events with more than ~253 properties (error 302); fail loudly before it.
_MAX_EVENT_PROPERTIES = 240
_FALL_THROUGH = "_none"
_LOWEST_PRIORITY = 1_000_000
_SID = "0"


class OpenItem(NamedTuple):
    """One reporting instance as the evaluator sees it (field order is part of the API).

    A named tuple, not a dataclass: a pass builds one per open instance and a frozen dataclass
    costs three times as much to build (benchmarks/bench_evaluation_pass.py).
    """
    obligation: str
    unit: str
    period: str
    due: date
    policy: str                                   # ReminderPolicy id
    state: ItemState = "open"
    sent_stages: frozenset[str] = frozenset()
    supervisor: str | None = None


class NoticeIntent(NamedTuple):
    """A notice the engine decided to send; ``key`` makes writing it idempotent.

    A named tuple so a chunk of them goes to the outbox writer as JSON arrays or COPY rows as it
    is (engine/notice_writer.py); the database builds the key the same way as ``key``.
    """
    obligation: str
    unit: str
    period: str
    stage: str
    recipient: str
    kind: Kind
    wd_before: int
    wd_late: int

    @property
    def key(self) -> str:
        return f"{self.obligation}|{self.unit}|{self.period}|{self.stage}|{self.recipient}"


class UnknownPolicyError(KeyError):
    """An instance names a reminder policy the rules do not define: a loader bug, never silence."""


def remind_stage(n: int) -> str:
    return f"remind-{n}"


def repeat_stage(k: int) -> str:
    return f"overdue-repeat-{k}"


@lru_cache(maxsize=4096)
def sent_flag(stage: str) -> str:
    """Event property marking a stage as already sent (``remind-3`` → ``sent_remind_3``)."""
    return "sent_" + stage.replace("-", "_")


def _position(due: date, as_of: date, cal: WorkingCalendar) -> tuple[Phase, int, int]:
    if as_of < due:
        return "before", cal.working_days_between(as_of, due), 0
    if as_of > due:
        return "after", 0, cal.working_days_between(due, as_of)
    return "due", 0, 0


def derive_facts(item: OpenItem, as_of: date, cal: WorkingCalendar) -> dict[str, Any]:
    """The flat event posted to durable-rules for ``item`` on day ``as_of`` (ints/strs/bools only).

    Working-day counts are computed here, in Python, because the engine has no calendar; every
    policy decision is left to the rules. Sent stages become ``sent_<stage>: True`` flags (the rules
    test their absence), so an event stays small and does not depend on the policy.
    """
    phase, wd_before, wd_late = _position(item.due, as_of, cal)
    return _facts(item, phase, wd_before, wd_late)


def _facts(item: OpenItem, phase: Phase, wd_before: int, wd_late: int) -> dict[str, Any]:
    facts: dict[str, Any] = {"policy": item.policy, "state": item.state, "phase": phase,
                             "wd_before": wd_before, "wd_late": wd_late}
    for stage in item.sent_stages:
        facts[sent_flag(stage)] = True
    return facts


def escalation_event(facts: dict[str, Any]) -> dict[str, Any]:
    """The second track of a late instance: only what the escalation rules look at.

    It has ``esc_late`` instead of ``phase``/``wd_late``, so no main-track rule can consume it
    and no escalation rule can consume a main event.
    """
    event = {"policy": facts["policy"], "state": facts["state"], "esc_late": facts["wd_late"]}
    flag = sent_flag(STAGE_ESCALATION)
    if flag in facts:
        event[flag] = True
    return event


# --------------------------------------------------------------------------------------------
# The oracle
# --------------------------------------------------------------------------------------------

class PythonEvaluator:
    """Independent reference implementation, written from the semantics, not from the ruleset."""

    def __init__(self, policies: dict[str, ReminderPolicy]):
        self.policies = dict(policies)

    def evaluate(self, items: Iterable[OpenItem], as_of: date, cal: WorkingCalendar,
                 exhausted: list[OpenItem] | None = None) -> list[NoticeIntent]:
        """``exhausted`` is accepted for the same signature and left alone: the oracle decides
        every item afresh at every call."""
        out: list[NoticeIntent] = []
        counts: dict[date, tuple[int, int]] = {}
        for item in items:
            if item.state != "open":
                continue
            p = self.policies.get(item.policy)
            if p is None:
                raise UnknownPolicyError(item.policy)
            A, D = as_of, item.due
            if D not in counts:
                counts[D] = (cal.working_days_between(A, D) if A < D else 0,
                             cal.working_days_between(D, A) if A > D else 0)
            wd_before, wd_late = counts[D]
            phase = "before" if A < D else "due" if A == D else "after"
            fired: list[tuple[str, str, Kind]] = []   # (stage, recipient, kind)

            if phase == "before" and wd_before > 0:
                lower = 0
                for n in sorted(set(p.before_due_working_days)):
                    if lower < wd_before <= n:
                        fired.append((f"remind-{n}", item.unit, "reminder"))
                        break
                    lower = n
            if phase == "due" and p.on_due_day:
                fired.append(("due-today", item.unit, "due_today"))
            if phase == "after":
                o, r, m = p.overdue_after_working_days, p.repeat_every_working_days, p.max_repeats
                if wd_late >= o and not (r > 0 and m > 0 and wd_late >= o + r):
                    fired.append(("overdue", item.unit, "overdue"))
                if r > 0:
                    for k in range(1, m + 1):
                        if o + k * r <= wd_late and (k == m or wd_late < o + (k + 1) * r):
                            fired.append((f"overdue-repeat-{k}", item.unit, "overdue"))
                e = p.escalate_after_working_days
                if e is not None and wd_late >= e:
                    seen: set[str] = set()
                    for target in p.escalate_to:
                        who = item.supervisor if target == "supervisor" else target
                        if who is None or who == item.unit or who in seen:
                            continue
                        seen.add(who)
                        fired.append(("escalation", who, "escalation"))

            is_kpi = is_kpi_obligation(item.obligation)
            for stage, recipient, kind in fired:
                if stage in item.sent_stages:
                    continue
                out.append(NoticeIntent(item.obligation, item.unit, item.period, stage, recipient,
                                        "kpi" if is_kpi else kind, wd_before, wd_late))
        return out


# --------------------------------------------------------------------------------------------
# Policies → durable-rules ruleset (JSON form)
# --------------------------------------------------------------------------------------------

def policies_digest(policies: dict[str, ReminderPolicy]) -> str:
    """Identity of a rules version: the same policies always compile to the same ruleset."""
    h = hashlib.sha256()
    for pid in sorted(policies):
        h.update(policies[pid].model_dump_json().encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _rule(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"all": [{"m": {"$and": conditions} if len(conditions) > 1 else conditions[0]}]}


def _not_sent(stage: str) -> dict[str, Any]:
    # $nex on ONE named property, after the policy equality test: as cheap as `== False`
    # (measured), unlike a catch-all $nex rule.
    return {"$nex": {sent_flag(stage): 1}}


def compile_policy(p: ReminderPolicy) -> dict[str, dict[str, Any]]:
    """One rule per stage of one policy; rule name ``<policy>|<stage>``.

    Conditions implied by others are left out to keep the alpha network short: ``wd_before > 0``
    implies phase "before" and ``wd_late >= 1`` implies phase "after".
    """
    rules: dict[str, dict[str, Any]] = {}
    base = [{"policy": p.id}, {"state": "open"}]
    lower = 0
    for n in sorted(set(p.before_due_working_days)):
        stage = remind_stage(n)
        rules[f"{p.id}|{stage}"] = _rule(base + [{"$gt": {"wd_before": lower}}, {"$lte": {"wd_before": n}},
                                                 _not_sent(stage)])
        lower = n
    if p.on_due_day:
        rules[f"{p.id}|{STAGE_DUE}"] = _rule(base + [{"phase": "due"}, _not_sent(STAGE_DUE)])
    o, r, m = p.overdue_after_working_days, p.repeat_every_working_days, p.max_repeats
    late = [{"phase": "after"}] if o == 0 else [{"$gte": {"wd_late": o}}]
    if r > 0 and m > 0:
        late.append({"$lt": {"wd_late": o + r}})
    rules[f"{p.id}|{STAGE_OVERDUE}"] = _rule(base + late + [_not_sent(STAGE_OVERDUE)])
    if r > 0:
        for k in range(1, m + 1):
            stage = repeat_stage(k)
            cond = [{"$gte": {"wd_late": o + k * r}}]
            if k < m:
                cond.append({"$lt": {"wd_late": o + (k + 1) * r}})
            rules[f"{p.id}|{stage}"] = _rule(base + cond + [_not_sent(stage)])
    if p.escalate_after_working_days is not None:
        rules[f"{p.id}|{STAGE_ESCALATION}"] = _rule(
            base + [{"$gte": {"esc_late": p.escalate_after_working_days}}, _not_sent(STAGE_ESCALATION)])
    return rules


_RULESET_CACHE: OrderedDict[str, str] = OrderedDict()
_RULESET_CACHE_SIZE = 4
_cache_lock = threading.Lock()


def ruleset_for(policies: dict[str, ReminderPolicy]) -> dict[str, dict[str, Any]]:
    """``{ruleset_name: {rule_name: rule}}`` for ``policies``, compiled once per rules version.

    Cached by ``policies_digest`` (a few recent versions). A fresh copy is returned each call
    because durable's ``Ruleset`` mutates the definition it is given.
    """
    digest = policies_digest(policies)
    with _cache_lock:
        text = _RULESET_CACHE.get(digest)
        if text is None:
            rules: dict[str, dict[str, Any]] = {}
            for pid in sorted(policies):
                rules.update(compile_policy(policies[pid]))
            # Every posted event carries i >= 0: lowest priority, so it only takes what no stage took.
            rules[_FALL_THROUGH] = {"pri": _LOWEST_PRIORITY, "all": [{"m": {"$gte": {"i": 0}}}]}
            text = json.dumps({f"dondoc-reminders-{digest}": rules}, sort_keys=True)
            _RULESET_CACHE[digest] = text
            while len(_RULESET_CACHE) > _RULESET_CACHE_SIZE:
                _RULESET_CACHE.popitem(last=False)
        else:
            _RULESET_CACHE.move_to_end(digest)
    return json.loads(text)


# --------------------------------------------------------------------------------------------
# Drivers: how events reach the compiled ruleset
# --------------------------------------------------------------------------------------------

class EngineInvariantError(RuntimeError):
    """durable-rules ran a different number of actions than events were posted."""


OnAction = Callable[[str, dict[str, Any]], None]   # (rule name, event)


class _QuietHost(Host):
    """durable's Host without its two background timer threads.

    Those threads poll every ruleset forever (``dispatch``): they could run a queued action
    outside ``evaluate()`` and would touch a ruleset after ``delete_ruleset`` (use-after-free).
    We post synchronously and use no timers, so they are not needed.
    """

    def _run(self) -> None:
        pass


class _HostDriver:
    """By-the-book path: ``durable.engine.Host.post`` / ``post_batch`` with Python callables."""

    def __init__(self, definition: dict[str, dict[str, Any]], on_action: OnAction):
        (self.name, rules), = definition.items()
        self._error: BaseException | None = None

        def make(rule_name: str) -> Callable[[Any], None]:
            def action(c: Any) -> None:
                try:
                    on_action(rule_name, c.m._d)
                except BaseException as exc:  # Host's Promise would swallow it into c.s.exception
                    self._error = self._error or exc
            return action

        for rule_name, rule in rules.items():
            rule["run"] = make(rule_name)
        self.host: Host | None = _QuietHost({self.name: rules})
        self.handle: int = self.host.get_ruleset(self.name)._handle

    def _check(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc

    def post(self, event: dict[str, Any]) -> None:
        assert self.host is not None
        with warnings.catch_warnings():   # durable.engine calls utcfromtimestamp (deprecated in 3.12)
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"durable\.engine")
            try:
                self.host.post(self.name, event)
            except MessageNotHandledException:
                pass   # cannot happen with the fall-through rule; the action count check reports it
        self._check()

    def post_batch(self, events: list[dict[str, Any]]) -> None:
        assert self.host is not None
        with warnings.catch_warnings():   # as in post(): once per action, so pytest would keep 100 000s
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"durable\.engine")
            try:
                self.host.post_batch(self.name, events)
            except MessageNotHandledException:
                pass   # the whole batch ran no action; the action count check reports it
        self._check()


def _make_encoder() -> Callable[[Any], str]:
    """Compact UTF-8 JSON (Host uses ensure_ascii=False too) for the C engine.

    ``JSONEncoder.encode`` builds a new C encoder on every call; reusing one is ~35 % faster for
    our small flat events. Falls back to the public API where the C accelerator is missing.
    """
    make = _json_encoder.c_make_encoder
    if make is None:
        return json.JSONEncoder(separators=(",", ":"), check_circular=False, ensure_ascii=False).encode
    encoder = make(None, None, _json_encoder.encode_basestring, None, ":", ",", False, False, False)
    return lambda obj: "".join(encoder(obj, 0))


_encode = _make_encoder()


def decode_fired(message: str, rules: frozenset[str] | set[str],
                 by_id: dict[int, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Rule name and event of one fired action, from the engine's ``{"<rule>":{"m":<event>}}``.

    The engine echoes the event text it was given, and ``events()`` puts ``id`` last, so the rule
    name and the trailing id are read off the text and the event is looked up in ``by_id`` instead
    of decoding every message (about a fifth of the engine loop's time). Anything unexpected falls
    back to a full ``json.loads``.
    """
    end = message.find('"', 2)
    name = message[2:end]
    if name in rules and message.startswith('":{"m":{', end) and message.endswith("}}}"):
        k = message.rfind('"id":')
        if k > 0:
            try:
                return name, by_id[int(message[k + 5:-3])]
            except (ValueError, KeyError):
                pass
    ((name, body),) = json.loads(message).items()
    return name, body["m"]


class _DirectDriver:
    """Same ruleset, same engine, without Host's per-action Python machinery.

    ``Host`` spends 20–40 µs per action building a Closure, re-serialising the session state and
    running a Promise chain we do not use. Calling the C module's assert / start_action_for_state /
    complete_and_start_action loop (what ``Host._handle_function`` does) makes the durable path
    2–3× faster (benchmarks/bench_evaluation_core.py).
    """

    def __init__(self, definition: dict[str, dict[str, Any]], on_action: OnAction):
        (self.name, rules), = definition.items()
        self.handle: int = _dre.create_ruleset(self.name, json.dumps(rules))
        self._rules = frozenset(rules)
        self._on_action = on_action

    def _run(self, code: tuple[int, int], by_id: dict[int, dict[str, Any]]) -> None:
        if code[0] == 1:
            return   # not handled: the action count check reports it
        if code[0] != 0:
            raise EngineInvariantError(f"durable-rules refused the event(s) (code {code[0]})")
        handle, state = self.handle, code[1]
        result = _dre.start_action_for_state(handle, state)
        while result:
            self._on_action(*decode_fired(result[1] if isinstance(result, tuple) else result, self._rules, by_id))
            result = _dre.complete_and_start_action(handle, state)

    def post(self, event: dict[str, Any]) -> None:
        self._run(_dre.assert_event(self.handle, _encode(event)), {event["id"]: event})

    def post_batch(self, events: list[dict[str, Any]]) -> None:
        self._run(_dre.assert_events(self.handle, _encode(events)), {e["id"]: e for e in events})


def _free(handle: int | None, *, state: bool = True) -> None:
    """Free a ruleset completely: its session state first (``delete_ruleset`` alone leaks it).

    ``state=False`` after a failed post: the C engine's ``deleteStateNode`` then reads
    uninitialised memory of the half-processed session (valgrind; a segfault or abort in most
    runs), so that session's state is left allocated, a bounded leak per engine failure."""
    if handle is None:
        return
    calls = (lambda: _dre.delete_state(handle, _SID), lambda: _dre.delete_ruleset(handle))
    for call in calls if state else calls[1:]:
        try:
            call()
        except Exception:   # no session yet / already gone: nothing to free
            pass


# --------------------------------------------------------------------------------------------
# The production evaluator
# --------------------------------------------------------------------------------------------

class _Collector:
    """The rule actions' side: turns a fired (rule, event) into NoticeIntents.

    Kept apart from the evaluator so the engine's callbacks hold no reference back to it: a dropped
    evaluator is then freed (and its ruleset deleted) at once by refcounting, not at some later GC.
    """

    def __init__(self, rule_meta: dict[str, tuple[str, Kind, tuple[str, ...]]]):
        self.rule_meta = rule_meta
        self.items: Sequence[OpenItem] = ()
        self.found: list[tuple[int, int, NoticeIntent]] = []
        self.actions = 0

    def on_action(self, rule_name: str, event: dict[str, Any]) -> None:
        self.actions += 1
        if rule_name == _FALL_THROUGH:
            return
        stage, kind, escalate_to = self.rule_meta[rule_name]
        i = event["i"]
        item = self.items[i]
        notice_kind: Kind = "kpi" if is_kpi_obligation(item.obligation) else kind
        if kind == "escalation":
            late = event["esc_late"]
            seen: set[str] = set()
            for n, target in enumerate(escalate_to):
                who = item.supervisor if target == _SUPERVISOR else target
                if who is None or who == item.unit or who in seen:
                    continue
                seen.add(who)
                self.found.append((i, 1 + n, NoticeIntent(item.obligation, item.unit, item.period, stage, who,
                                                          notice_kind, 0, late)))
        else:
            self.found.append((i, 0, NoticeIntent(item.obligation, item.unit, item.period, stage, item.unit,
                                                  notice_kind, event["wd_before"], event["wd_late"])))


Driver = Literal["direct", "host"]


class DurableEvaluator:
    """Evaluates open instances with durable-rules; one compiled ruleset per instance of this class.

    ``batch``: post events with ``post_batch`` in chunks instead of one ``post`` per event.
    ``driver``: ``"direct"`` (C engine loop, fastest) or ``"host"`` (``durable.engine.Host``).
    ``prefilter``: skip events that cannot match any stage of their policy (outside the reminder
    window, not yet late); the rules decide everything else. Off = every open instance is posted.

    Not re-entrant: ``evaluate`` holds a lock. Call ``close()`` (or use ``with``) when the rules
    change; it frees the engine memory of this version.
    """

    batch_size = 500   # measured: 500 is as fast as any; 5,000 is ~20 % and 100,000 ~150 % slower

    def __init__(self, policies: dict[str, ReminderPolicy], *, batch: bool = False,
                 driver: Driver = "direct", prefilter: bool = True):
        self.policies = dict(policies)
        self.batch = batch
        self.driver_kind = driver
        self.prefilter = prefilter
        self.digest = policies_digest(self.policies)
        self._lock = threading.Lock()
        rule_meta: dict[str, tuple[str, Kind, tuple[str, ...]]] = {}
        self._gates = {pid: self._gate(p) for pid, p in self.policies.items()}
        self._definition = self._compile(self.policies)
        (_, rules), = self._definition.items()
        for rule_name in rules:
            if rule_name != _FALL_THROUGH:
                pid, stage = rule_name.split("|", 1)
                rule_meta[rule_name] = (stage, _kind(stage), tuple(self.policies[pid].escalate_to))
        self._collector = _Collector(rule_meta)
        self._driver: _HostDriver | _DirectDriver | None = None
        self._open_driver()

    # -- hooks ---------------------------------------------------------------------------------
    def _compile(self, policies: dict[str, ReminderPolicy]) -> dict[str, dict[str, Any]]:
        """The ruleset to load (a hook so tests can inject a deliberately wrong translation)."""
        return ruleset_for(policies)

    @staticmethod
    def _gate(p: ReminderPolicy) -> tuple[int, bool, int, int | None, int, str]:
        """Coarse per-policy window: (last reminder day, on_due_day, first late day, escalation day,
        the day the late track's last stage opens, that stage). From that day on only the last
        stage can match (every earlier late stage has an upper bound), so an item that has it is done
        with the late track: a report never submitted is not posted again at every pass for ever."""
        o, r, m = p.overdue_after_working_days, p.repeat_every_working_days, p.max_repeats
        last_from, last_stage = (o + m * r, repeat_stage(m)) if r > 0 and m > 0 else (o, STAGE_OVERDUE)
        return (max(p.before_due_working_days, default=0), p.on_due_day, o, p.escalate_after_working_days,
                last_from, last_stage)

    # -- lifecycle -----------------------------------------------------------------------------
    def _open_driver(self) -> None:
        definition = json.loads(json.dumps(self._definition))
        cls = _HostDriver if self.driver_kind == "host" else _DirectDriver
        self._driver = cls(definition, self._collector.on_action)

    def _reset(self) -> None:
        """After a failed call the session may hold queued actions: start from a clean ruleset,
        without freeing the failed session's state (unsafe in the C engine, see ``_free``)."""
        self._close_driver(state=False)
        self._open_driver()

    def _close_driver(self, *, state: bool = True) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            _free(driver.handle, state=state)
            if isinstance(driver, _HostDriver):
                driver.host = None

    def close(self) -> None:
        """Free this rules version's ruleset in the C engine (idempotent)."""
        with self._lock:
            self._close_driver()

    def __enter__(self) -> "DurableEvaluator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._close_driver()
        except Exception:
            pass

    # -- evaluation ----------------------------------------------------------------------------
    def events(self, items: Sequence[OpenItem], as_of: date, cal: WorkingCalendar,
               exhausted: list[OpenItem] | None = None) -> list[dict[str, Any]]:
        """The events one evaluation posts (each with item index ``i`` and a call-unique ``id``).
        Items that can never produce a notice again are appended to ``exhausted`` (when given): the
        late track's last stage and the escalation (if the policy has one) are in the outbox and the
        item is past the day the last stage opens. Only the rules, the calendar or a day earlier than
        today can change that (engine/open_items.py keeps them out of later passes accordingly)."""
        out: list[dict[str, Any]] = []
        positions: dict[date, tuple[Phase, int, int]] = {}
        gates = self._gates
        for i, item in enumerate(items):
            if item.state != "open" and self.prefilter:
                continue
            gate = gates.get(item.policy)
            if gate is None:
                if item.state != "open":
                    continue
                raise UnknownPolicyError(item.policy)
            pos = positions.get(item.due)
            if pos is None:
                pos = positions[item.due] = _position(item.due, as_of, cal)
            phase, wd_before, wd_late = pos
            last_reminder, on_due, first_late, escalate, last_from, last_stage = gate
            if self.prefilter:
                sent = item.sent_stages
                main = ((phase == "before" and 0 < wd_before <= last_reminder) or (phase == "due" and on_due)
                        or (phase == "after" and wd_late >= first_late
                            and not (wd_late >= last_from and last_stage in sent)))
                esc = (phase == "after" and escalate is not None and wd_late >= escalate
                       and STAGE_ESCALATION not in sent)
                if not (main or esc):
                    if (exhausted is not None and phase == "after" and wd_late >= last_from
                            and last_stage in sent and (escalate is None or STAGE_ESCALATION in sent)):
                        exhausted.append(item)
                    continue
            else:
                main, esc = True, phase == "after"
            facts = _facts(item, phase, wd_before, wd_late)
            if len(facts) > _MAX_EVENT_PROPERTIES:
                raise ValueError(f"{item.obligation}/{item.unit}/{item.period}: {len(item.sent_stages)} sent "
                                 "stages exceed what a durable-rules event can carry")
            if main:
                facts["i"] = i
                facts["id"] = 2 * i
                out.append(facts)
            if esc:
                event = escalation_event(facts)
                event["i"] = i
                event["id"] = 2 * i + 1
                out.append(event)
        return out

    def evaluate(self, items: Iterable[OpenItem], as_of: date, cal: WorkingCalendar,
                 exhausted: list[OpenItem] | None = None) -> list[NoticeIntent]:
        """Notices owed on ``as_of``, in input order; independent of every previous call.
        ``exhausted``: see ``events``. The cyclic garbage collector is paused meanwhile: events,
        actions and intents form no cycles, and its walks cost a fifth of the time
        (engine/gcpause.py)."""
        seq = items if isinstance(items, Sequence) else list(items)
        with self._lock, gc_paused():
            if self._driver is None:
                raise RuntimeError("DurableEvaluator is closed")
            events = self.events(seq, as_of, cal, exhausted)
            col = self._collector
            col.items, col.found, col.actions = seq, [], 0
            driver = self._driver
            try:
                if self.batch:
                    for start in range(0, len(events), self.batch_size):
                        chunk = events[start:start + self.batch_size]
                        before = col.actions
                        driver.post_batch(chunk)
                        _expect(col.actions - before, len(chunk))
                else:
                    for event in events:
                        before = col.actions
                        driver.post(event)
                        _expect(col.actions - before, 1)
                found = col.found
            except BaseException:
                self._reset()
                raise
            finally:
                col.items, col.found = (), []
        found.sort(key=lambda t: (t[0], t[1]))
        return [intent for _, _, intent in found]


def _expect(ran: int, posted: int) -> None:
    """With the fall-through rule every event is consumed by exactly one rule: one action each."""
    if ran != posted:
        raise EngineInvariantError(f"durable-rules ran {ran} actions for {posted} events")


def _kind(stage: str) -> Kind:
    if stage.startswith("remind-"):
        return "reminder"
    if stage == STAGE_DUE:
        return "due_today"
    if stage == STAGE_ESCALATION:
        return "escalation"
    return "overdue"
