"""The console's read-heavy pages (overview, matrix, units), computed and rendered once per
version of the data and shared by every request that asks for the same page.

Why: with 1,000 units and a year of instances a page costs tens of milliseconds of Python (the
statuses and the HTML of a 200 KB table); 20 secretaries opening it at once on two cores queue
behind the GIL, so the 20th waits for all the others. The data changes rarely (a submission, a
confirmation, a sync), so the rendered content of a page is kept until the data, the rules or the
day change, and when several requests miss at once only one computes while the others wait.

Correctness first — a recorded submission must show on the next load:
- The data version on SQLite is ``PRAGMA data_version`` read on a connection of our own that never
  writes: it changes whenever any other connection commits, in this process (the console's forms,
  the daemon's thread) or another (the CLI, a daemon in its own process), and it is read before
  the page is computed, so what is kept is never older than the version it is kept under. Any new
  version drops every entry. On PostgreSQL the version is ``pg_current_snapshot()`` (which
  transactions a new snapshot sees) on a private autocommit connection: two equal snapshots see the
  same committed data, any commit in the server gives a new one, page views commit nothing. Other
  databases: nothing is cached, every request computes (correct, just slower).
- The key holds the rules (the pack object and its content hash), the day, the template, the
  path and the query: whatever else a page shows must be in its key (``key=``).
- Only the page's ``content`` block is cached, rendered from the page's own data: the frame around
  it (the account's name, the session's CSRF token, a flash message) is rendered per request from
  base.html. A content block that used ``user``, ``csrf`` or ``request`` would fail loudly
  (StrictUndefined) instead of showing one session's values to another.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import date
from pathlib import Path
from typing import Any

from jinja2 import Environment, Template
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse

from engine.db import sqlite_path
from engine.rules_loader import RulePack

MAX_ENTRIES = 256                 # pages kept (unit pages are ~10 KB, a matrix page ~200 KB)
MAX_CHARS = 16 * 1024 * 1024      # and at most this many characters of HTML in all (≤ 32 MB)
MAX_DATABASES = 8                 # caches kept per process (the tests open many databases)


class _SqliteVersion:
    """``PRAGMA data_version`` of one SQLite file on a private read-only-in-practice connection,
    with the file's identity (a restored backup is a new file, whatever its counter says)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def __call__(self) -> Hashable | None:
        with self._lock:
            try:
                st = os.stat(self.path)
                if self._conn is None:
                    self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                                                 timeout=1.0)
                (n,) = self._conn.execute("PRAGMA data_version").fetchone()
            except (OSError, sqlite3.Error):
                self.close()
                return None               # unknown: this request computes without the cache
            return (st.st_dev, st.st_ino, n)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None


class _PgVersion:
    """PostgreSQL's ``pg_current_snapshot()`` on a private autocommit connection: which transactions
    a new snapshot sees. Two equal snapshots see exactly the same committed data, and any commit in
    the server (this database or another) gives a new one; read-only requests commit nothing, so
    page views leave it alone. Read before the page is computed, as on SQLite."""

    def __init__(self, url: str):
        self.url = url
        self._lock = threading.Lock()
        self._conn: Any = None

    def __call__(self) -> Hashable | None:
        with self._lock:
            try:
                if self._conn is None:
                    from sqlalchemy import create_engine
                    from sqlalchemy.pool import NullPool

                    self._conn = create_engine(self.url, poolclass=NullPool, isolation_level="AUTOCOMMIT").connect()
                from sqlalchemy import text

                return self._conn.execute(text("SELECT pg_current_snapshot()::text")).scalar_one()
            except Exception:  # noqa: BLE001 - unknown: this request computes without the cache
                self.close()
                return None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001
                pass
            self._conn = None


class PageCache:
    """Kept values of one database, all dropped when its version changes; at most one computation
    per key at a time (the others wait for it and take its result)."""

    def __init__(self, version: Callable[[], Hashable | None], max_entries: int = MAX_ENTRIES,
                 max_chars: int = MAX_CHARS):
        self.version = version
        self.max_entries, self.max_chars = max_entries, max_chars
        self._lock = threading.Lock()
        self._at: Hashable | None = None
        self._entries: OrderedDict[Hashable, str] = OrderedDict()
        self._chars = 0
        self._computing: dict[Hashable, threading.Lock] = {}
        self.hits = self.misses = 0

    def get(self, key: Hashable, compute: Callable[[], str]) -> str:
        at = self.version()
        if at is None:
            return compute()
        with self._lock:
            hit = self._lookup(at, key)
            if hit is not None:
                return hit
            turn = self._computing.setdefault((at, key), threading.Lock())
        with turn:                                   # one computes; the others wait here, then find it
            with self._lock:
                hit = self._lookup(at, key)
                if hit is not None:
                    return hit
                self.misses += 1
            try:
                value = compute()
            finally:
                with self._lock:
                    self._computing.pop((at, key), None)
            with self._lock:
                if self._at == at:                   # not if the data moved on meanwhile
                    self._store(key, value)
            return value

    def _lookup(self, at: Hashable, key: Hashable) -> str | None:
        if at != self._at:
            self._entries.clear()
            self._chars = 0
            self._at = at
            return None
        hit = self._entries.get(key)
        if hit is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return hit

    def _store(self, key: Hashable, value: str) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._chars -= len(old)
        if len(value) > self.max_chars:
            return
        self._entries[key] = value
        self._chars += len(value)
        while len(self._entries) > self.max_entries or self._chars > self.max_chars:
            _, dropped = self._entries.popitem(last=False)
            self._chars -= len(dropped)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._chars = 0
            self._at = None


_CACHES: OrderedDict[str, PageCache] = OrderedDict()
_CACHES_LOCK = threading.Lock()


def _uncached() -> None:
    return None


def cache_for(database_url: str) -> PageCache:
    """The cache of one database (SQLite file: versioned by data_version; anything else: off)."""
    with _CACHES_LOCK:
        cache = _CACHES.get(database_url)
        if cache is None:
            path = sqlite_path(database_url)
            if path is not None:
                cache = PageCache(_SqliteVersion(path.resolve()))
            elif database_url.startswith("postgresql"):
                cache = PageCache(_PgVersion(database_url))
            else:
                cache = PageCache(_uncached)
            _CACHES[database_url] = cache
            while len(_CACHES) > MAX_DATABASES:
                _, old = _CACHES.popitem(last=False)
                if isinstance(old.version, (_SqliteVersion, _PgVersion)):
                    old.version.close()
        else:
            _CACHES.move_to_end(database_url)
        return cache


_SHELLS: "weakref.WeakKeyDictionary[Environment, Template]" = weakref.WeakKeyDictionary()


def _shell(env: Environment) -> Template:
    """base.html around content rendered earlier (already escaped: it is the output of a template)."""
    t = _SHELLS.get(env)
    if t is None:
        t = env.from_string('{% extends "base.html" %}{% block content %}{{ content }}{% endblock %}')
        _SHELLS[env] = t
    return t


def render_content(env: Environment, name: str, context: dict[str, Any]) -> str:
    """The ``content`` block of template ``name`` alone, with ``context`` (no login, no CSRF token)."""
    tmpl = env.get_template(name)
    return "".join(tmpl.blocks["content"](tmpl.new_context(context)))


def render(request: Request, name: str, *, pack: RulePack, today: date, title: str, nav: str,
           data: Callable[[], dict[str, Any]], key: Hashable = ()) -> HTMLResponse:
    """Page ``name`` for this request: its content from the cache (computed by ``data()`` and
    rendered when missing), inside the frame of this request's login.

    The key is the rules, the day, the template, the path and the query, and ``key``."""
    c = request.app.state.ctx
    pages = request.app.state.pages
    full_key = (id(pack), pack.version, today, name, title, request.url.path,
                tuple(sorted(request.query_params.multi_items())), key)

    def compute() -> str:
        return render_content(pages.env, name, {"title": title, "nav": nav, "today": today, **data()})

    content = cache_for(c.settings.database.url).get(full_key, compute)
    return pages.render(request, _shell(pages.env), title=title, nav=nav, today=today, content=Markup(content))
