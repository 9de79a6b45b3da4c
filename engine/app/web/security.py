"""Login, roles, CSRF and security headers for every page of the console.

* Session: cookie ``dondoc_session`` (HttpOnly, SameSite=Lax, Secure behind HTTPS) holding a random
  token; the database keeps its hash (engine.app.accounts).
* CSRF: every form carries the session's token in a hidden ``csrf`` field, compared in constant
  time; the login form (no session yet) uses a double-submit cookie; a unit's confirmation form
  uses a token derived from its link (engine.app.confirmations). A form without a valid token is
  refused and changes nothing.
* Headers: a Content-Security-Policy without inline script, frame-ancestors 'none', no referrer
  (a unit's link must never leak to another site), nosniff, no caching of pages with data.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.app import accounts
from engine.app.accounts import LoginSession
from engine.app.web.context import WebContext

SESSION_COOKIE = "dondoc_session"
PRE_COOKIE = "dondoc_login_csrf"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-frame-options", b"DENY"),
           (b"referrer-policy", b"no-referrer"), (b"x-content-type-options", b"nosniff"),
           (b"cross-origin-opener-policy", b"same-origin"), (b"permissions-policy", b"camera=(), microphone=(), geolocation=()")]


class LoginRequired(Exception):
    """Not logged in: the handler sends the browser to the login page and back afterwards."""


class Forbidden(Exception):
    def __init__(self, message: str = "Tài khoản của bạn chỉ được xem, không được thay đổi dữ liệu."):
        self.message = message


class CsrfFailed(Exception):
    """A form without the right token: refused, nothing changed."""


class SecurityHeaders:
    """Pure ASGI middleware: adds the headers to every response, static files included."""

    def __init__(self, app: ASGIApp, hsts: bool = False):
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() not in {k for k, _ in HEADERS}]
                headers += HEADERS
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                if self.hsts:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, wrapped)


def ctx(request: Request) -> WebContext:
    return request.app.state.ctx


def login_of(request: Request) -> LoginSession | None:
    """The session of this request's cookie (looked up once per request)."""
    if not hasattr(request.state, "login"):
        c = ctx(request)
        request.state.login = accounts.session_for(c.settings, request.cookies.get(SESSION_COOKIE), c.now())
    return request.state.login


def require_login(request: Request) -> LoginSession:
    login = login_of(request)
    if login is None:
        raise LoginRequired()
    return login


def require_editor(request: Request) -> LoginSession:
    login = require_login(request)
    if not login.user.can_edit:
        raise Forbidden()
    return login


async def read_form(request: Request, expected_csrf: str | None = None, *, max_files: int = 0,
                    max_part_mb: int = 1) -> FormData:
    """The submitted form, after the CSRF check (the session's token unless ``expected_csrf``)."""
    form = await request.form(max_files=max_files, max_fields=200, max_part_size=max_part_mb * 1024 * 1024)
    expected = expected_csrf if expected_csrf is not None else (login_of(request).csrf if login_of(request) else None)
    if not accounts.same_token(str(form.get("csrf") or ""), expected):
        await form.close()
        raise CsrfFailed()
    return form


def set_session_cookie(response: Any, request: Request, token: str, max_age: int) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="lax",
                        secure=ctx(request).settings.web.secure_cookies, path="/")


def clear_session_cookie(response: Any, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                           secure=ctx(request).settings.web.secure_cookies)


def login_csrf(request: Request) -> tuple[str, bool]:
    """The login form's token (double-submit cookie); True when the cookie must be (re)set."""
    have = request.cookies.get(PRE_COOKIE)
    if have and 20 <= len(have) <= 100:
        return have, False
    return secrets.token_urlsafe(24), True


def set_login_csrf(response: Any, request: Request, token: str) -> None:
    response.set_cookie(PRE_COOKIE, token, max_age=3600, httponly=True, samesite="strict",
                        secure=ctx(request).settings.web.secure_cookies, path="/dang-nhap")


def client_address(request: Request) -> str:
    return request.client.host if request.client else "?"
