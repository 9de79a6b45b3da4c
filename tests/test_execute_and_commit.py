"""engine.db.execute_and_commit: the delivery pass's writes (an outcome's two UPDATEs, the marks of a
turn) are all or nothing, on PostgreSQL where they go as one pipeline in the server's implicit
transaction as on SQLite, and the connection is an ordinary transactional one again afterwards."""

from __future__ import annotations

import pytest
from sqlalchemy import CheckConstraint, Column, Integer, MetaData, Table, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from engine.db import execute_and_commit, make_engine

META = MetaData()
T = Table("counters", META, Column("id", Integer, primary_key=True), Column("n", Integer, nullable=False),
          CheckConstraint("n >= 0", name="n_not_negative"))


@pytest.fixture
def eng(db_url: str):
    eng = make_engine(db_url)
    META.create_all(eng)
    with eng.begin() as conn:
        conn.execute(T.insert(), [{"id": 1, "n": 10}, {"id": 2, "n": 20}])
    yield eng
    eng.dispose()


def _values(eng) -> dict[int, int]:
    with eng.connect() as conn:                 # another connection: only what was committed
        return dict(conn.execute(select(T.c.id, T.c.n).order_by(T.c.id)).all())


def _set(i: int, n: int):
    return update(T).where(T.c.id == i).values(n=n), {}


@pytest.mark.parametrize("read_first", [False, True], ids=["idle", "transaction-open"])
def test_both_statements_are_committed_together(eng, read_first: bool) -> None:
    with Session(bind=eng) as ses:
        if read_first:
            ses.connection().execute(select(T.c.n)).all()
        execute_and_commit(ses, [_set(1, 11), _set(2, 21)])
        assert _values(eng) == {1: 11, 2: 21}
        # the next unit of work is an ordinary transaction again: a rollback undoes it
        ses.connection().execute(*_set(1, 99))
        ses.rollback()
    assert _values(eng) == {1: 11, 2: 21}


@pytest.mark.parametrize("read_first", [False, True], ids=["idle", "transaction-open"])
def test_a_failing_statement_leaves_nothing_written(eng, read_first: bool) -> None:
    with Session(bind=eng) as ses:
        if read_first:
            ses.connection().execute(select(T.c.n)).all()
        with pytest.raises(IntegrityError):
            execute_and_commit(ses, [_set(1, 12), _set(2, -1)])      # the second breaks the CHECK
        ses.rollback()
        assert _values(eng) == {1: 10, 2: 20}                         # the first was not kept either
        execute_and_commit(ses, [_set(1, 13)])                        # and the session goes on
        assert _values(eng) == {1: 13, 2: 20}
        ses.connection().execute(*_set(2, 77))
        ses.rollback()
    assert _values(eng) == {1: 13, 2: 20}


def test_a_statement_failing_before_it_is_sent_leaves_nothing_written(eng) -> None:
    """A value that cannot be bound fails on our side, after the first UPDATE was queued: that one
    must not be committed either (the pipeline's Sync would otherwise end it)."""
    with Session(bind=eng) as ses:
        with pytest.raises(Exception) as caught:
            execute_and_commit(ses, [_set(1, 14), (update(T).where(T.c.id == 2).values(n=object()), {})])
        assert "n_not_negative" not in str(caught.value)
        ses.rollback()
        assert _values(eng) == {1: 10, 2: 20}
        execute_and_commit(ses, [_set(2, 23)])
    assert _values(eng) == {1: 10, 2: 23}


def test_nothing_to_execute_still_commits_the_transaction(eng) -> None:
    with Session(bind=eng) as ses:
        ses.connection().execute(*_set(2, 22))
        execute_and_commit(ses, [])
    assert _values(eng) == {1: 10, 2: 22}
