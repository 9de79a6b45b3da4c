"""The send loop's ordering guarantees (notifications/transport.run_channel, delivery.Feed).

What must hold (notifications/README.md, "Exactly-once"): a message leaves only after its in-flight
mark is committed (marks of connections that prepared a digest in the same turn of the event loop
share one commit, and a digest taken while the previous one was on its way has its mark committed
with that outcome); the outcome is recorded and committed as soon as the reply is in, before that
connection does anything else (nothing is rendered between a reply and its commit); a link row survives the
rollback of another digest's failed link. The first tests drive run_channel with a scripted
channel (no time passes: the event loop is the clock); the others watch a real pass from the SMTP
server's side, reading the database through a connection of their own.
"""

from __future__ import annotations

import asyncio
import base64
import re
import threading
from datetime import datetime

import pytest
from sqlalchemy import create_engine, text

from engine.clock import TZ
from engine.db import session
from engine.rules_loader import load_pack
from engine.state import UnitLinkRow
from engine.sync import sync_instances
from notifications.config import DeliveryConfig, SmtpConfig
from notifications.delivery import deliver
from notifications.transport import Outcome, run_channel
from tests.conftest import CALENDAR
from tests.support import EphemeralController, RecordingHandler, add_notice, instance, write_units_pack

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=TZ)


# ---------------------------------------------------------------------------------------------
# run_channel with a scripted channel and source


class Job:
    def __init__(self, n: int):
        self.n, self.extra = n, {}


class Source:
    """Records every call in one list; ``begin`` stages a mark that ``flush`` commits; ``done``
    commits its outcome itself (as delivery.Feed does)."""

    def __init__(self, n: int):
        self.jobs = [Job(i) for i in range(n)]
        self.events: list[tuple] = []
        self.pending: set[tuple] = set()      # ("begin", job number) not yet committed
        self.committed: set[tuple] = set()
        self.flushes = 0
        self.deferred: str | None = None

    def next_job(self):
        job = self.jobs.pop(0) if self.jobs else None
        self.events.append(("next", job.n if job else None))
        return job

    def begin(self, job) -> None:
        self.events.append(("begin", job.n))
        self.pending.add(("begin", job.n))

    def done(self, job, outcome) -> None:
        self.events.append(("done", job.n, outcome.kind))
        self.committed.add(("done", job.n))

    def flush(self) -> None:
        self.events.append(("flush",))
        if self.pending:
            self.flushes += 1
        self.committed |= self.pending
        self.pending.clear()

    def defer_rest(self, reason: str) -> None:
        self.events.append(("defer_rest", reason))
        self.deferred = reason


class Channel:
    """``concurrency`` connections; each send checks what the source has committed at that moment,
    then waits a scripted number of event-loop turns for its reply."""

    kind = "email"

    def __init__(self, source: Source, concurrency: int, turns, down_at: int | None = None):
        self.source, self.concurrency, self.turns, self.down_at = source, concurrency, turns, down_at
        self.sent: list[int] = []
        self.per_conn: list[list[int]] = []
        self.violations: list[str] = []

    def open(self):
        mine: list[int] = []
        self.per_conn.append(mine)
        channel = self

        class Conn:
            async def send(self, job) -> Outcome:
                src = channel.source
                if ("begin", job.n) not in src.committed:
                    channel.violations.append(f"{job.n} sent before its in-flight mark was committed")
                if mine and ("done", mine[-1]) not in src.committed:
                    channel.violations.append(f"{job.n} sent before the outcome of {mine[-1]} was committed")
                mine.append(job.n)
                channel.sent.append(job.n)
                for _ in range(channel.turns(job.n)):
                    await asyncio.sleep(0)
                src.events.append(("reply", job.n))
                if channel.down_at is not None and job.n == channel.down_at:
                    return Outcome.retry("421 down", server_down=True)
                return Outcome.sent()

            async def close(self) -> None:
                return None

        return Conn()


@pytest.mark.parametrize("concurrency", [1, 3])
def test_every_send_waits_for_the_commit_of_its_mark_and_of_the_connections_last_outcome(concurrency) -> None:
    src = Source(40)
    ch = Channel(src, concurrency, turns=lambda n: 1 + (n * 7) % 5)
    asyncio.run(run_channel(ch, src))
    assert ch.violations == []
    assert sorted(ch.sent) == list(range(40))                       # each job sent once
    assert not src.pending and {("done", n) for n in range(40)} <= src.committed
    assert src.flushes <= 40                      # one commit of marks per message at most
    if concurrency > 1:
        assert src.flushes < 40                   # connections that began together shared one
    # nothing is prepared ahead: a connection's next digest is taken (rendered) only after the
    # outcome of its current one is committed, so no rendering stands between a reply and its commit
    for conn in ch.per_conn:
        for cur, nxt in zip(conn, conn[1:]):
            assert src.events.index(("done", cur, "sent")) < src.events.index(("next", nxt))


def test_a_failed_mark_commit_sends_nothing() -> None:
    """If the commit of the marks fails (the database is gone), no connection sends its message."""
    src = Source(10)

    def broken() -> None:
        raise RuntimeError("database is locked")

    src.flush = broken                             # type: ignore[method-assign]
    ch = Channel(src, 3, turns=lambda n: 1)
    with pytest.raises(RuntimeError):
        asyncio.run(run_channel(ch, src))
    assert ch.sent == []


def test_after_the_server_goes_down_nothing_more_is_begun_and_the_rest_is_deferred() -> None:
    src = Source(30)
    ch = Channel(src, 3, turns=lambda n: 1 + n % 3, down_at=4)
    asyncio.run(run_channel(ch, src))
    assert src.deferred == "421 down"
    begun = [e[1] for e in src.events if e[0] == "begin"]
    assert src.events[-1][0] == "defer_rest"
    assert sorted(begun) == sorted(ch.sent) and not src.pending    # everything begun was sent and recorded
    assert all(("done", n) in src.committed for n in begun)
    assert len(begun) < 30 and ch.violations == []


class AheadSource(Source):
    """As delivery.Feed: takes a job back (``unget``), so run_channel asks for the next job while the
    server answers; ``done`` commits the staged marks with the outcome (as Pass.record does)."""

    def done(self, job, outcome) -> None:
        super().done(job, outcome)
        self.committed |= self.pending
        self.pending.clear()

    def unget(self, job) -> None:
        self.events.append(("unget", job.n))
        self.jobs.insert(0, job)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_the_next_digest_is_rendered_while_the_server_answers_and_its_mark_goes_with_the_outcome(concurrency) -> None:
    src = AheadSource(40)
    ch = Channel(src, concurrency, turns=lambda n: 1 + (n * 7) % 5)
    asyncio.run(run_channel(ch, src))
    assert ch.violations == []                    # each mark, and the connection's last outcome, first
    assert sorted(ch.sent) == list(range(40))
    assert not src.pending and {("done", n) for n in range(40)} <= src.committed
    assert src.flushes <= concurrency             # a mark of its own only for each connection's first job
    ev = src.events
    for conn in ch.per_conn:
        for cur, nxt in zip(conn, conn[1:]):
            # taken (rendered) while cur was on its way, before its reply, and begun after it
            assert ev.index(("next", nxt)) < ev.index(("reply", cur)) < ev.index(("begin", nxt))
            if concurrency == 1:                  # (other connections' work interleaves otherwise)
                # nothing is rendered between a reply and its commit
                between = ev[ev.index(("reply", cur)):ev.index(("done", cur, "sent"))]
                assert not [e for e in between if e[0] == "next"], between


def test_with_jobs_taken_ahead_a_server_going_down_leaves_them_unbegun_and_deferred() -> None:
    src = AheadSource(30)
    ch = Channel(src, 3, turns=lambda n: 1 + n % 3, down_at=4)
    asyncio.run(run_channel(ch, src))
    assert src.deferred == "421 down" and src.events[-1][0] == "defer_rest"
    begun = [e[1] for e in src.events if e[0] == "begin"]
    assert sorted(begun) == sorted(ch.sent) and not src.pending    # nothing begun that was not sent
    assert all(("done", n) in src.committed for n in begun)
    handed_back = [e[1] for e in src.events if e[0] == "unget"]
    assert handed_back and all(n not in ch.sent for n in handed_back)
    assert {j.n for j in src.jobs} == set(range(30)) - set(ch.sent)    # what was not sent is still there


# ---------------------------------------------------------------------------------------------
# a real pass, watched from the server


def _pack_with_notices(tmp_path, db_url, n: int):
    write_units_pack(tmp_path / "rules", n)
    pack = load_pack(tmp_path / "rules", CALENDAR)
    with session(db_url) as s:
        sync_instances(s, pack, NOW)
        for i in range(1, n + 1):
            add_notice(s, instance(s, "nam", f"u{i:04d}", "2026"), "remind-3")
        s.commit()
    return pack


class WatchingHandler(RecordingHandler):
    """At each MAIL (a connection starts its next message), through a database connection of its
    own: every message this connection had accepted is recorded as sent, and no more digests are
    marked in flight than there are connections. ``check_data`` runs at each accepted message."""

    def __init__(self, db_url: str, concurrency: int, check_data=None):
        super().__init__()
        self.engine = create_engine(db_url)
        self.concurrency, self.check_data = concurrency, check_data
        self.accepted: dict[int, list[str]] = {}
        self.problems: list[str] = []
        self.checks = 0
        self.guard = threading.Lock()

    async def handle_MAIL(self, server, session_, envelope, address, mail_options):
        mine = self.accepted.setdefault(id(session_), [])
        with self.guard, self.engine.connect() as c:
            rows = dict(c.execute(text("SELECT message_id, status FROM deliveries")).all())
            flying = c.execute(text("SELECT count(*) FROM deliveries WHERE status = 'pending' "
                                    "AND maybe_sent = :t"), {"t": True}).scalar()
            self.checks += 1
        late = [m for m in mine if rows.get(m) != "sent"]
        if late:
            self.problems.append(f"next MAIL before {late} was recorded as sent")
        if not 1 <= flying <= self.concurrency:
            self.problems.append(f"{flying} digests marked in flight with {self.concurrency} connections")
        return await super().handle_MAIL(server, session_, envelope, address, mail_options)

    async def handle_DATA(self, server, session_, envelope):
        reply = await super().handle_DATA(server, session_, envelope)
        self.accepted.setdefault(id(session_), []).append(self.messages[-1].message_id)
        if self.check_data is not None:
            with self.guard:
                problem = self.check_data(self.engine, self.messages[-1])
            if problem:
                self.problems.append(problem)
        return reply


def _smtp(port: int, concurrency: int) -> SmtpConfig:
    return SmtpConfig(host="127.0.0.1", port=port, security="none", concurrency=concurrency, timeout=10,
                      from_addr="dondoc@vptu.example.org", helo="test.local")


@pytest.mark.parametrize("concurrency", [1, 4])
def test_the_server_never_sees_a_next_message_before_the_last_outcome_is_committed(
        tmp_path, db_url, concurrency) -> None:
    n = 60
    pack = _pack_with_notices(tmp_path, db_url, n)
    handler = WatchingHandler(db_url, concurrency)
    ctl = EphemeralController(handler)
    ctl.start()
    try:
        rep = deliver(db_url, pack, NOW, smtp=_smtp(ctl.port, concurrency), delivery=DeliveryConfig())
    finally:
        ctl.stop()
        handler.engine.dispose()
    assert rep.sent == n and handler.count == n
    assert handler.checks == n and handler.problems == []
    with session(db_url) as s:
        states = s.exec(text("SELECT status, maybe_sent FROM deliveries")).all()
    assert {tuple(r) for r in states} == {("sent", False)}       # a definite answer clears the mark


_URL = re.compile(r"https://dondoc\.test/xn/(\d+)")


def _plain_text(received) -> str:
    msg = received.message
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            return part.get_content()
    return base64.b64decode(msg.get_payload()).decode()


def test_a_failed_link_rolls_back_only_its_own_row_even_with_other_digests_prepared(tmp_path, db_url) -> None:
    """Links made while other connections' digests are prepared (their rows not yet committed):
    a link that fails (its row added, then an error: the pass rolls the session back) must not take
    another digest's row with it; every URL that reaches the server has its row in the database."""
    n = 48
    pack = _pack_with_notices(tmp_path, db_url, n)
    made: list[int] = []

    def links(ses, d, unit, ids, now):
        ses.add(UnitLinkRow(unit=unit, delivery_id=d.id, instance_ids=str(ids), nonce=f"n{d.id}",
                            created_at=now, expires_at=now))
        ses.flush()
        if d.id % 4 == 0:
            raise RuntimeError("no link today")
        made.append(d.id)
        return f"https://dondoc.test/xn/{d.id}"

    def row_is_there(engine, received) -> str | None:
        m = _URL.search(_plain_text(received))
        if m is None:
            return None
        with engine.connect() as c:
            found = c.execute(text("SELECT count(*) FROM unit_links WHERE delivery_id = :d"),
                              {"d": int(m.group(1))}).scalar()
        return None if found == 1 else f"digest {m.group(1)} carries a link whose row is not committed"

    handler = WatchingHandler(db_url, 4, check_data=row_is_there)
    ctl = EphemeralController(handler)
    ctl.start()
    try:
        rep = deliver(db_url, pack, NOW, smtp=_smtp(ctl.port, 4), delivery=DeliveryConfig(), links=links)
    finally:
        ctl.stop()
        handler.engine.dispose()
    assert rep.sent == n and handler.problems == []
    with_link = [int(m.group(1)) for r in handler.messages if (m := _URL.search(_plain_text(r)))]
    assert sorted(with_link) == sorted(made) and len(made) == n - n // 4
    with session(db_url) as s:
        rows = {r[0] for r in s.exec(text("SELECT delivery_id FROM unit_links")).all()}
    assert rows == set(made)                       # the failed ones' rows were rolled back, no others


@pytest.mark.parametrize("concurrency", [1, 4])
def test_every_link_that_reaches_the_server_opens_its_units_page(tmp_path, db_url, concurrency) -> None:
    """The real link maker (a chunk's links made together, before any of them is sent): each URL in
    a message the server accepts resolves, through a database connection of the server's own, to a
    committed link of that unit covering its report, whatever connection sends it and whenever."""
    from sqlmodel import Session

    from engine.app.config import Settings, WebConfig
    from engine.app.confirmations import LinkFailure, link_maker, resolve_in

    n = 70                                        # more than two chunks
    pack = _pack_with_notices(tmp_path, db_url, n)
    settings = Settings(web=WebConfig(secret="test-secret", public_url="https://dondoc.test"))
    url = re.compile(r"https://dondoc\.test/xn/([A-Za-z0-9_.\-]+)")

    def link_resolves(engine, received) -> str | None:
        m = url.search(_plain_text(received))
        if m is None:
            return f"{received.message_id}: no link"
        with Session(engine) as ses:
            try:
                link = resolve_in(ses, settings, m.group(1), NOW)
            except LinkFailure as exc:
                return f"{received.message_id}: link {exc.args[0]}: its row is not committed"
        unit = received.rcpt_tos[0].split("@")[0]
        return None if link.unit == unit and link.instance_ids else f"{received.message_id}: {link} is not {unit}'s"

    handler = WatchingHandler(db_url, concurrency, check_data=link_resolves)
    ctl = EphemeralController(handler)
    ctl.start()
    try:
        rep = deliver(db_url, pack, NOW, smtp=_smtp(ctl.port, concurrency), delivery=DeliveryConfig(),
                      links=link_maker(settings))
    finally:
        ctl.stop()
        handler.engine.dispose()
    assert rep.sent == n and handler.count == n
    assert handler.problems == []


def test_postgresql_losing_the_commit_connection_stops_the_pass_and_the_next_pass_sends_the_rest(
        tmp_path, pg_server) -> None:
    """The outcomes' connection (engine/async_commits.py) is cut by the server mid-pass: the pass
    ends with the database's error and sends nothing after it; the next pass sends every digest
    not recorded as sent, so each arrives at least once and at most ``concurrency`` twice."""
    from sqlalchemy.exc import OperationalError

    from engine.async_commits import APPLICATION_NAME

    db_url = pg_server.create_db("cut_commits")
    n, concurrency = 40, 4
    pack = _pack_with_notices(tmp_path, db_url, n)
    admin = create_engine(db_url)

    class Cutting(RecordingHandler):
        cut_at: int | None = None

        async def handle_DATA(self, server, session_, envelope):
            reply = await super().handle_DATA(server, session_, envelope)
            if self.cut_at is None and self.count >= 10:
                self.cut_at = self.count
                with admin.connect() as c:
                    c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                   "WHERE application_name = :a"), {"a": APPLICATION_NAME})
            return reply

    handler = Cutting()
    ctl = EphemeralController(handler)
    ctl.start()
    try:
        with pytest.raises(OperationalError):
            deliver(db_url, pack, NOW, smtp=_smtp(ctl.port, concurrency), delivery=DeliveryConfig())
        first = handler.count
        assert handler.cut_at is not None and first <= handler.cut_at + concurrency   # stopped at once
        rep = deliver(db_url, pack, NOW, smtp=_smtp(ctl.port, concurrency), delivery=DeliveryConfig())
    finally:
        ctl.stop()
        admin.dispose()
    with session(db_url) as s:
        rows = s.exec(text("SELECT message_id, status FROM deliveries")).all()
    assert len(rows) == n and {status for _, status in rows} == {"sent"}
    received = [m.message_id for m in handler.messages]
    assert {mid for mid, _ in rows} == set(received)                 # every digest arrived
    assert len(received) - n <= concurrency                          # re-sent: only those in flight
    assert rep.sent == len(received) - first


def test_a_report_submitted_during_the_pass_stops_its_digest_in_a_later_chunk(tmp_path, db_url) -> None:
    """Each chunk of digests reads its notices' instances afresh just before sending (load_chunk
    joins them to the chunk's query): a report submitted while the first messages go out is not
    chased by a digest of a later chunk, which is dropped with the reason instead."""
    from engine.submissions import SubmissionIn, record_submission
    from notifications.delivery import CHUNK

    n = 3 * CHUNK
    pack = _pack_with_notices(tmp_path, db_url, n)
    late = f"u{n:04d}"                   # its digest is in the last chunk (digests go in id order)

    class SubmittingAtFirst(RecordingHandler):
        async def handle_DATA(self, server, session_, envelope):
            reply = await super().handle_DATA(server, session_, envelope)
            if self.count == 1:
                with session(db_url) as s:
                    record_submission(s, pack, SubmissionIn(obligation="nam", unit=late, period="2026",
                                                            submitted_on=NOW.date()), NOW)
            return reply

    handler = SubmittingAtFirst()
    ctl = EphemeralController(handler)
    ctl.start()
    try:
        rep = deliver(db_url, pack, NOW, smtp=_smtp(ctl.port, 1), delivery=DeliveryConfig())
    finally:
        ctl.stop()
    assert rep.sent == n - 1 and f"{late}@example.org" not in {r for m in handler.messages for r in m.rcpt_tos}
    with session(db_url) as s:
        status, error = s.exec(text("SELECT status, last_error FROM notices WHERE unit = :u"), params={"u": late}).one()
    assert status == "dropped" and error.startswith("Đơn vị đã nộp báo cáo")


def _reltuples(engine, table: str) -> float:
    with engine.connect() as c:
        return c.execute(text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"), {"t": table}).scalar()


def test_postgresql_plans_the_pass_for_the_digests_it_just_made(tmp_path, pg_server, monkeypatch) -> None:
    """A pass that makes many digests refreshes PostgreSQL's statistics of the outbox before reading
    them back in chunks (otherwise planned for an outbox believed empty: every chunk scanned it
    whole); a pass that adds only a few leaves that to autovacuum; and a table lock held elsewhere
    (an autovacuum, another ANALYZE) delays the pass by a bounded wait, never stops it."""
    import time

    import engine.db

    db_url = pg_server.create_db("outbox_statistics")
    n = 80                                         # > 50 + 10 % of an empty table
    pack = _pack_with_notices(tmp_path, db_url, n)
    admin = create_engine(db_url)
    handler = RecordingHandler()
    ctl = EphemeralController(handler)
    ctl.start()
    try:
        assert _reltuples(admin, "deliveries") <= 0           # never analyzed: the planner's guess
        rep = deliver(db_url, pack, NOW, smtp=_smtp(ctl.port, 2), delivery=DeliveryConfig())
        assert rep.sent == n and _reltuples(admin, "deliveries") == n
        assert _reltuples(admin, "delivery_items") == n and _reltuples(admin, "notices") == n

        with session(db_url) as s:                 # a few more digests: not worth an ANALYZE
            for i in range(1, 6):
                add_notice(s, instance(s, "nam", f"u{i:04d}", "2026"), "remind-2")
            s.commit()
        rep = deliver(db_url, pack, NOW, smtp=_smtp(ctl.port, 2), delivery=DeliveryConfig())
        assert rep.sent == 5 and _reltuples(admin, "deliveries") == n

        with session(db_url) as s:                 # many more, while the table's lock is taken
            for i in range(1, n + 1):
                add_notice(s, instance(s, "nam", f"u{i:04d}", "2026"), "remind-1")
            s.commit()
        monkeypatch.setattr(engine.db, "STATISTICS_LOCK_TIMEOUT_MS", 300)
        with admin.connect() as holder:
            holder.execute(text("LOCK TABLE deliveries IN SHARE UPDATE EXCLUSIVE MODE"))
            t0 = time.monotonic()
            rep = deliver(db_url, pack, NOW, smtp=_smtp(ctl.port, 2), delivery=DeliveryConfig())
            waited = time.monotonic() - t0
            holder.rollback()
        assert rep.sent == n and waited < 30
        assert _reltuples(admin, "deliveries") == n            # left to autovacuum
    finally:
        ctl.stop()
        admin.dispose()
    assert len(handler.messages) == 2 * n + 5
