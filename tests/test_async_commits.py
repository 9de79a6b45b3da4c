"""engine.async_commits: the delivery pass's commits awaited on the event loop (PostgreSQL). Writes
submitted while a commit is in flight go together in the next one; commits happen in the order of
submission; a group is all or nothing, and after a failure every later submission fails too, so a
caller awaiting a later commit can never take an earlier failed write for a durable one."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import CheckConstraint, Column, Integer, MetaData, Table, Text, select
from sqlalchemy.exc import IntegrityError

from engine.async_commits import AsyncCommits
from engine.db import make_engine

META = MetaData()
T = Table("counters", META, Column("id", Integer, primary_key=True), Column("n", Integer, nullable=False),
          Column("note", Text), CheckConstraint("n >= 0", name="n_not_negative"))
SET = "UPDATE counters SET n = %s WHERE id = %s"    # (n, id)


@pytest.fixture
def eng(pg_server, request):
    eng = make_engine(pg_server.create_db(f"async_commits_{abs(hash(request.node.nodeid)) % 10**8}"))
    META.create_all(eng)
    with eng.begin() as conn:
        conn.execute(T.insert(), [{"id": i, "n": 0} for i in range(1, 5)])
    yield eng
    eng.dispose()


def _values(eng) -> dict[int, int]:
    with eng.connect() as conn:                 # another connection: only what was committed
        return dict(conn.execute(select(T.c.id, T.c.n).order_by(T.c.id)).all())


def test_writes_submitted_while_a_commit_is_in_flight_go_together_in_order(eng) -> None:
    async def run() -> tuple[int, list[int]]:
        commits = await AsyncCommits.connect(eng)
        order: list[int] = []
        try:
            first = commits.submit([(SET, (10, 1))])
            first.add_done_callback(lambda _: order.append(1))
            await asyncio.sleep(0)              # the first group is on its way
            later = [commits.submit([(SET, (10 * n, n))]) for n in (2, 3, 4)]
            for n, fut in zip((2, 3, 4), later):
                fut.add_done_callback(lambda _, n=n: order.append(n))
            await later[-1]
            await commits.drain()
            return commits.groups, order
        finally:
            await commits.aclose()

    groups, order = asyncio.run(run())
    assert _values(eng) == {1: 10, 2: 20, 3: 30, 4: 40}
    assert groups == 2                          # three submissions, one commit
    assert order == [1, 2, 3, 4]


def test_a_failing_group_keeps_nothing_and_every_later_submission_fails_too(eng) -> None:
    async def run() -> list[str]:
        commits = await AsyncCommits.connect(eng)
        seen: list[str] = []
        try:
            good = commits.submit([(SET, (7, 1))])
            bad = commits.submit([(SET, (-1, 2))])           # breaks the CHECK: the group fails
            for fut in (good, bad):
                with pytest.raises(IntegrityError):
                    await fut
                seen.append("failed")
            after = commits.submit([(SET, (9, 3))])          # never sent: an earlier write was lost
            with pytest.raises(IntegrityError):
                await after
            with pytest.raises(IntegrityError):
                await commits.drain()
            return seen
        finally:
            await commits.aclose()

    assert asyncio.run(run()) == ["failed", "failed"]
    assert _values(eng) == {1: 0, 2: 0, 3: 0, 4: 0}


def test_values_are_bound_as_values_whatever_they_contain(eng) -> None:
    """The group goes as one query string with its parameters bound on our side: a server's reply
    quoted in a digest's last error (quotes, semicolons, %s) must arrive as written."""
    odd = "550 5.1.1 <a'b@x>; DROP TABLE counters;-- 100% %s %(n)s \\ “Sở”"

    async def run() -> None:
        commits = await AsyncCommits.connect(eng)
        try:
            commits.submit([("UPDATE counters SET note = %s WHERE id = ANY(%s)", (odd, [1, 2]))])
            commits.submit([(SET, (5, 3))])
            await commits.drain()
        finally:
            await commits.aclose()

    asyncio.run(run())
    with eng.connect() as conn:
        assert dict(conn.execute(select(T.c.id, T.c.note).order_by(T.c.id)).all()) == {1: odd, 2: odd, 3: None, 4: None}
    assert _values(eng)[3] == 5
