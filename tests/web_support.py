"""The web console under test: a real app on a real SQLite file with the seed rules, two accounts,
and a fixed simulated "now"; requests through Starlette's TestClient (httpx) or a real server.

Why one harness: every page's tests (and the security tests that try every route) need the same
seeded installation, logged-in clients for both roles, and the CSRF token of a session.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path

from starlette.testclient import TestClient

from tests.conftest import CALENDAR, RULES

PASSWORD = "mat-khau-thu-nghiem-1"
SECRET = "bi-mat-thu-nghiem-" + "x" * 24
USERS = {"thu.ky": "thu-ky", "lanh.dao": "lanh-dao"}
CSRF_RE = re.compile(r'name="csrf" value="([^"]*)"')


@lru_cache(maxsize=None)
def seed_pack(rules: Path = RULES, calendar: Path = CALENDAR):
    """The seed pack, parsed once per test process (treated as read-only by every test)."""
    from engine.rules_loader import load_pack

    return load_pack(rules, calendar)


class Console:
    """A seeded installation and its console app."""

    def __init__(self, tmp_path: Path, now: str = "2026-12-02T09:00", tracking_start: str | None = "2026-01-01",
                 secret: str | None = SECRET, env: dict[str, str] | None = None, sync: bool = True):
        from engine import clock
        from engine.app import accounts, services
        from engine.app.config import load_settings
        from engine.app.rulesholder import RulesHolder
        from engine.app.web.app import create_app
        from engine.app.web.context import WebContext
        from engine.simclock import Clock

        self.tmp = tmp_path
        environ = {"DONDOC_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}", "DONDOC_RULES_DIR": str(RULES),
                   "DONDOC_CALENDAR_DIR": str(CALENDAR), "DONDOC_MAIL_DIR": str(tmp_path / "mail-out"),
                   "DONDOC_WEB_UPLOAD_DIR": str(tmp_path / "attachments"), "DONDOC_WEB_PUBLIC_URL": "http://testserver"}
        if tracking_start:
            environ["DONDOC_TRACKING_START"] = tracking_start
        if secret:
            environ["DONDOC_WEB_SECRET"] = secret
        environ.update(env or {})
        self.settings = load_settings(environ, file=None)
        self.pack = seed_pack()
        self.now: datetime = clock.parse_moment(now)
        if sync:
            services.sync(self.settings, self.pack, self.now)
        for name, role in USERS.items():
            accounts.add_user(self.settings, name, PASSWORD, role, self.now, full_name=name.replace(".", " ").title())
        self.ctx = WebContext(self.settings, RulesHolder.following(self.settings, lambda: self.pack), Clock(self.now))
        self.app = create_app(self.ctx)

    def client(self, user: str | None = None) -> "Client":
        c = Client(self.app)
        if user:
            c.login(user)
        return c


class Client(TestClient):
    """A browser-like client: follows no redirects by itself, keeps cookies, knows its CSRF token."""

    def __init__(self, app) -> None:
        super().__init__(app, base_url="http://testserver", follow_redirects=False)
        self.csrf: str = ""

    def login(self, user: str, password: str = PASSWORD) -> None:
        page = self.get("/dang-nhap")
        token = CSRF_RE.search(page.text).group(1)
        r = self.post("/dang-nhap", data={"csrf": token, "username": user, "password": password, "next": "/"})
        assert r.status_code == 303, r.text
        self.csrf = csrf_of(self.get("/").text)

    def form(self, url: str, data: dict[str, str] | None = None, files=None, csrf: str | None = None):
        """POST a form with this session's CSRF token (or the one given)."""
        body = {"csrf": self.csrf if csrf is None else csrf, **(data or {})}
        return self.post(url, data=body, files=files)


def csrf_of(html: str) -> str:
    m = CSRF_RE.search(html)
    return m.group(1) if m else ""


def text_of(html: str) -> str:
    """The visible text of a page, whitespace collapsed (for asserting what a user reads)."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def status_facts(k: int, iid: int, due: date, today: date) -> dict[str, object]:
    """Facts giving an instance one of the statuses a page counts as of ``today``, by ``k``
    (0–6: on time, late, waived, awaiting a confirmation, submitted after today, awaiting from after
    today, retired for every third ``iid``); {} for any other ``k`` (the caller's own cases)."""
    if k == 0:
        return {"submitted_on": due - timedelta(days=2), "closed": True}            # on time
    if k == 1 and due < today:
        return {"submitted_on": min(due + timedelta(days=9), today), "closed": True}  # late
    if k == 2:
        return {"waived": True, "closed": True}
    if k == 3:
        return {"awaiting_since": min(due + timedelta(days=1), today)}
    if k == 4:
        return {"submitted_on": today + timedelta(days=3), "closed": True}          # recorded later
    if k == 5:
        return {"awaiting_since": today + timedelta(days=1)}
    if k == 6 and iid % 3 == 0:
        return {"active": False}
    return {}
