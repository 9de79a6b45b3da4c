"""Commits awaited on the event loop (PostgreSQL), grouped: the delivery pass's writes.

Why: the delivery pass commits about once per message (an outcome as soon as its reply is in, with
the in-flight mark of that connection's next message), and a blocking commit stops the one thread that drives every SMTP
connection (≈25 % of a 4-connection pass on loopback was spent waiting in psycopg; a database on
another host makes it most of the pass). Here the writes go out on a connection of their own, a
``psycopg.AsyncConnection`` on the same event loop: the connection that asked waits for its commit
while the others render and send. Writes submitted while a commit is in flight go together in the
next one (group commit): their statements as one query string, one implicit transaction, one
round trip.

Promises the callers build on:
- ``submit`` returns a future that is done when those writes are committed; commits happen in the
  order of submission, so awaiting ``last`` (or ``drain``) means everything submitted so far is
  committed;
- all or nothing per group; once a group fails, every later submission fails with the same error
  (a caller that awaits a later future must never conclude that an earlier write is durable), and
  ``drain`` raises it, so an error is never lost with nobody awaiting it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

from sqlalchemy.engine import Engine

from engine.db import as_sqlalchemy_error

Statement = tuple[str, Sequence[Any]]      # SQL with %s placeholders (psycopg), its parameters
APPLICATION_NAME = "dondoc-delivery-commits"   # how the connection shows in pg_stat_activity


class AsyncCommits:
    """Group commits on a ``psycopg.AsyncConnection`` of their own (autocommit: each group's query
    string is its own implicit transaction)."""

    def __init__(self, conn: Any, dialect: Any, cursor: Any):
        self.conn, self.dialect, self.cursor = conn, dialect, cursor   # cursor: AsyncClientCursor
        self.pending: list[tuple[Sequence[Statement], asyncio.Future[None]]] = []
        self.last: asyncio.Future[None] | None = None   # the latest submission's future
        self.error: BaseException | None = None
        self.groups = 0                                  # commits sent
        self._writer: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, engine: Engine) -> "AsyncCommits":
        """A connection to the engine's database (same URL, credentials and options)."""
        import psycopg

        url = engine.url.set(drivername="postgresql")
        try:
            conn = await psycopg.AsyncConnection.connect(url.render_as_string(hide_password=False), autocommit=True,
                                                         application_name=APPLICATION_NAME)
        except psycopg.Error as exc:   # as the session's own connection would fail (OperationalError …)
            raise as_sqlalchemy_error(engine.dialect, exc, None) from exc
        return cls(conn, engine.dialect, psycopg.AsyncClientCursor)

    def submit(self, statements: Sequence[Statement]) -> asyncio.Future[None]:
        """Queue ``statements`` for the next group commit; the future is done once they are committed
        (nothing to write: the future of what was submitted before, so the order still holds)."""
        if not statements and self.last is not None:
            return self.last
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_retrieved)
        self.last = fut
        if self.error is not None:
            fut.set_exception(self.error)
            return fut
        self.pending.append((statements, fut))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write())
        return fut

    async def drain(self) -> None:
        """Wait until everything submitted so far is committed (raises the first failure)."""
        if self.last is not None:
            await asyncio.shield(self.last)
        if self.error is not None:
            raise self.error

    async def aclose(self) -> None:
        """Let the writes in flight finish, then close the connection (a failure is raised by the
        futures and by ``drain``, which the pass awaits before it ends)."""
        try:
            if self._writer is not None:
                with suppress(Exception):
                    await asyncio.shield(self._writer)
        finally:
            await self.conn.close()

    async def _write(self) -> None:
        while self.pending and self.error is None:
            group, self.pending = self.pending, []
            try:
                await self._commit([s for statements, _ in group for s in statements])
            except BaseException as exc:     # noqa: BLE001 - handed to every waiting caller
                self.error = self._wrap(exc) if isinstance(exc, Exception) else RuntimeError(
                    "Ghi kết quả gửi thư vào cơ sở dữ liệu bị dừng giữa chừng")
                for _, fut in group + self.pending:
                    if not fut.done():
                        fut.set_exception(self.error)
                self.pending = []
                if not isinstance(exc, Exception):
                    raise                    # cancelled (the loop is closing): not swallowed
                return
            self.groups += 1
            for _, fut in group:
                if not fut.done():
                    fut.set_result(None)

    async def _commit(self, statements: list[Statement]) -> None:
        """The group as one query string of ``;``-separated statements, the parameters bound here by
        psycopg's client-side cursor (libpq's quoting): the server runs such a string as one
        implicit transaction, committed at its end and rolled back whole if any statement fails.
        One message and one reply, where a pipeline of ``BEGIN``, the statements and ``COMMIT``
        cost a psycopg call (and its Python-level waiting) per statement."""
        if not statements:
            return
        cur = self.cursor(self.conn)
        try:
            await cur.execute(";\n".join(sql for sql, _ in statements),
                              [p for _, params in statements for p in params])
        finally:
            await cur.close()

    def _wrap(self, exc: BaseException) -> BaseException:
        """psycopg's errors as SQLAlchemy's, as the session's own writes would raise them."""
        if not isinstance(exc, self.dialect.loaded_dbapi.Error):
            return exc
        return as_sqlalchemy_error(self.dialect, exc, self.conn)


def _retrieved(fut: asyncio.Future[None]) -> None:
    """Marks a failure as retrieved: a future nobody awaits (a mark that went in another connection's
    group) would make asyncio warn; ``drain`` still raises the failure."""
    if not fut.cancelled():
        fut.exception()
