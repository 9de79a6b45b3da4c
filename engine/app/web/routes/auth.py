"""Đăng nhập / đăng xuất."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from engine.app import accounts
from engine.app.accounts import LoginSession
from engine.app.web import security
from engine.app.web.security import ctx, require_login

router = APIRouter()


def _safe_next(target: str | None) -> str:
    """Only a path of this site (no scheme, no host, no //): never an open redirect."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _login_page(request: Request, next_: str, error: str | None = None, status: int = 200,
                username: str = "") -> Response:
    token, fresh = security.login_csrf(request)
    c = ctx(request)
    no_users = not accounts.has_users(c.settings)
    resp = request.app.state.pages.render(request, "login.html", status_code=status, title="Đăng nhập",
                                          login_csrf=token, next=next_, error=error, username=username,
                                          no_users=no_users)
    if fresh:
        security.set_login_csrf(resp, request, token)
    return resp


@router.get("/dang-nhap")
def login_form(request: Request, next: str | None = None) -> Response:
    if security.login_of(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_page(request, _safe_next(next))


@router.post("/dang-nhap")
async def login(request: Request) -> Response:
    c = ctx(request)
    form = await request.form(max_files=0, max_fields=10, max_part_size=8192)
    username = str(form.get("username") or "").strip().lower()[:80]
    password = str(form.get("password") or "")
    next_ = _safe_next(str(form.get("next") or "/"))
    if not accounts.same_token(str(form.get("csrf") or ""), request.cookies.get(security.PRE_COOKIE)):
        return _login_page(request, next_, "Biểu mẫu đăng nhập đã hết hạn. Nhập lại rồi bấm Đăng nhập.", 403, username)
    keys = (f"u:{username}", f"a:{security.client_address(request)}")
    wait = c.limiter.blocked(*keys)
    if wait > 0:
        minutes = max(1, int(wait // 60) + 1)
        return _login_page(request, next_, f"Đăng nhập sai quá nhiều lần. Thử lại sau khoảng {minutes} phút.",
                           429, username)
    user = accounts.authenticate(c.settings, username, password, c.now())
    if user is None:
        c.limiter.failed(*keys)
        return _login_page(request, next_, "Tên đăng nhập hoặc mật khẩu không đúng (hoặc tài khoản đã bị khóa).",
                           401, username)
    c.limiter.succeeded(*keys)
    session = accounts.start_session(c.settings, user, c.now())
    resp = RedirectResponse(next_, status_code=303)
    security.set_session_cookie(resp, request, session.token, c.settings.web.session_hours * 3600)
    resp.delete_cookie(security.PRE_COOKIE, path="/dang-nhap")
    return resp


@router.post("/dang-xuat")
async def logout(request: Request, login: LoginSession = Depends(require_login)) -> Response:
    await security.read_form(request)
    c = ctx(request)
    accounts.end_session(c.settings, login.token, c.now())
    resp = RedirectResponse("/dang-nhap", status_code=303)
    security.clear_session_cookie(resp, request)
    return resp
