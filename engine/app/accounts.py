"""Secretariat accounts of the web console: Argon2 passwords, server-side sessions, login limits.

Why server-side sessions (a random token in the cookie, its SHA-256 in ``web_sessions``): logout and
disabling an account end every session at once, and a copy of the database logs nobody in. The
CSRF token of a session is stored beside it and compared in constant time on every form.

Used by ``dondoc users …`` and by the web console; every change is written to the audit trail
with its author.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlmodel import Session, select

from engine.app.config import Settings
from engine.app.services import InvalidInput, ServiceError, open_session
from engine.state import AuditRow, UserRow, WebSessionRow
from engine.vi import ROLES

HASHER = PasswordHasher()          # Argon2id with argon2-cffi's current defaults
MIN_PASSWORD = 10
USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,39}")


@functools.lru_cache(maxsize=4)
def _dummy_hash(hasher: PasswordHasher) -> str:
    """A hash to verify against when the user does not exist, so both cases take the same time.
    Made on first use, not at import: hashing costs ~0.1 s that every command would pay."""
    return hasher.hash("dondoc-khong-co-tai-khoan-nay")


@dataclass(frozen=True)
class User:
    """What a page needs to know of the person logged in."""
    id: int
    username: str
    full_name: str
    role: str
    active: bool = True
    last_login_at: datetime | None = None

    @property
    def can_edit(self) -> bool:
        return self.role == "thu-ky"

    @property
    def role_vi(self) -> str:
        return ROLES.get(self.role, self.role)

    @property
    def display(self) -> str:
        return self.full_name or self.username

    @property
    def actor(self) -> str:
        """How the audit trail names this person."""
        return f"web:{self.username}"


def _user(row: UserRow) -> User:
    return User(row.id or 0, row.username, row.full_name, row.role, row.active, row.last_login_at)


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


def check_username(username: str) -> str:
    name = username.strip().lower()
    if not USERNAME.fullmatch(name):
        raise InvalidInput(f"tên đăng nhập “{username}” không hợp lệ: 2–40 ký tự, chữ thường không dấu, số, "
                           "dấu chấm, gạch ngang hoặc gạch dưới (ví dụ: nguyen.van.a)", exit_code=2)
    return name


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"mật khẩu phải có ít nhất {MIN_PASSWORD} ký tự", exit_code=2)
    if password.strip() != password or not password.strip():
        raise InvalidInput("mật khẩu không được bắt đầu hay kết thúc bằng khoảng trắng", exit_code=2)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"vai trò “{role}” không có; chọn một trong: {', '.join(ROLES)}", exit_code=2)
    return role


def _audit(ses: Session, now: datetime, actor: str, action: str, username: str, detail: str = "") -> None:
    ses.add(AuditRow(at=now, actor=actor, action=action, entity="user", entity_id=username, detail=detail))


def _get(ses: Session, username: str) -> UserRow:
    row = ses.exec(select(UserRow).where(UserRow.username == username)).first()
    if row is None:
        raise InvalidInput(f"không có tài khoản “{username}” (xem: dondoc users list)", exit_code=2)
    return row


def add_user(settings: Settings, username: str, password: str, role: str, now: datetime, full_name: str = "",
             actor: str = "cli") -> User:
    name = check_username(username)
    check_role(role)
    check_password(password)
    with open_session(settings) as ses:
        if ses.exec(select(UserRow).where(UserRow.username == name)).first() is not None:
            raise InvalidInput(f"tài khoản “{name}” đã có; đổi mật khẩu bằng: dondoc users passwd {name}", exit_code=2)
        row = UserRow(username=name, full_name=full_name.strip(), role=role, password_hash=HASHER.hash(password),
                      created_at=now, updated_at=now)
        ses.add(row)
        _audit(ses, now, actor, "user_add", name, f"vai trò {role}")
        ses.commit()
        ses.refresh(row)
        return _user(row)


def set_password(settings: Settings, username: str, password: str, now: datetime, actor: str = "cli") -> User:
    """New password; every open session of the account ends."""
    check_password(password)
    with open_session(settings) as ses:
        row = _get(ses, check_username(username))
        row.password_hash, row.updated_at = HASHER.hash(password), now
        _revoke_all(ses, row.id or 0)
        _audit(ses, now, actor, "user_passwd", row.username)
        ses.add(row)
        ses.commit()
        return _user(row)


def set_active(settings: Settings, username: str, active: bool, now: datetime, actor: str = "cli") -> User:
    """Disable (every session ends at once) or enable an account; accounts are never deleted (audit)."""
    with open_session(settings) as ses:
        row = _get(ses, check_username(username))
        row.active, row.updated_at = active, now
        if not active:
            _revoke_all(ses, row.id or 0)
        _audit(ses, now, actor, "user_enable" if active else "user_disable", row.username)
        ses.add(row)
        ses.commit()
        return _user(row)


def set_role(settings: Settings, username: str, role: str, now: datetime, actor: str = "cli") -> User:
    check_role(role)
    with open_session(settings) as ses:
        row = _get(ses, check_username(username))
        row.role, row.updated_at = role, now
        _audit(ses, now, actor, "user_role", row.username, f"vai trò {role}")
        ses.add(row)
        ses.commit()
        return _user(row)


def list_users(settings: Settings) -> list[User]:
    with open_session(settings) as ses:
        return [_user(r) for r in ses.exec(select(UserRow).order_by(UserRow.username)).all()]


def has_users(settings: Settings) -> bool:
    with open_session(settings) as ses:
        return ses.exec(select(UserRow.id).limit(1)).first() is not None


def _revoke_all(ses: Session, user_id: int) -> None:
    for s in ses.exec(select(WebSessionRow).where(WebSessionRow.user_id == user_id,
                                                  WebSessionRow.revoked == False)).all():  # noqa: E712
        s.revoked = True
        ses.add(s)


# ─── login and sessions ─────────────────────────────────────────────────────────────────────────
def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class LoginSession:
    token: str          # goes into the cookie, never stored
    csrf: str
    user: User
    expires_at: datetime


def authenticate(settings: Settings, username: str, password: str, now: datetime) -> User | None:
    """The user if the password is right and the account active; None otherwise (same time either way)."""
    name = username.strip().lower()
    with open_session(settings) as ses:
        row = ses.exec(select(UserRow).where(UserRow.username == name)).first()
        try:
            HASHER.verify(row.password_hash if row is not None else _dummy_hash(HASHER), password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if row is None or not row.active:
            return None
        if HASHER.check_needs_rehash(row.password_hash):
            row.password_hash = HASHER.hash(password)
        row.last_login_at = now
        ses.add(row)
        _audit(ses, now, f"web:{row.username}", "login", row.username)
        ses.commit()
        return _user(row)


def start_session(settings: Settings, user: User, now: datetime) -> LoginSession:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires = now + timedelta(hours=settings.web.session_hours)
    with open_session(settings) as ses:
        ses.add(WebSessionRow(token_hash=token_hash(token), user_id=user.id, csrf=csrf, created_at=now,
                              expires_at=expires))
        ses.commit()
    return LoginSession(token, csrf, user, expires)


def session_for(settings: Settings, token: str | None, now: datetime) -> LoginSession | None:
    """The live session of this cookie (not expired, not revoked, account active), or None."""
    if not token or len(token) > 200:
        return None
    with open_session(settings) as ses:
        row = ses.get(WebSessionRow, token_hash(token))
        if row is None or row.revoked or _utc(row.expires_at) <= _utc(now):
            return None
        user = ses.get(UserRow, row.user_id)
        if user is None or not user.active:
            return None
        return LoginSession(token, row.csrf, _user(user), row.expires_at)


def end_session(settings: Settings, token: str | None, now: datetime) -> None:
    if not token:
        return
    with open_session(settings) as ses:
        row = ses.get(WebSessionRow, token_hash(token))
        if row is not None and not row.revoked:
            row.revoked = True
            ses.add(row)
            user = ses.get(UserRow, row.user_id)
            _audit(ses, now, f"web:{user.username if user else '?'}", "logout", user.username if user else "?")
            ses.commit()


def same_token(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two CSRF tokens (missing is never equal)."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


class LoginLimiter:
    """At most ``limit`` failed logins per account and per client address in a sliding window.

    Kept in the web process's memory: one console process serves an office; a restart forgives.
    """

    def __init__(self, limit: int, window_s: float = 900.0, clock=time.monotonic):
        self.limit, self.window, self.clock = limit, window_s, clock
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str) -> deque[float]:
        q = self._fails.setdefault(key, deque())
        edge = self.clock() - self.window
        while q and q[0] < edge:
            q.popleft()
        return q

    def blocked(self, *keys: str) -> float:
        """Seconds to wait before the next attempt (0: allowed)."""
        with self._lock:
            waits = [q[0] + self.window - self.clock() for k in keys if len(q := self._recent(k)) >= self.limit]
        return max(waits, default=0.0)

    def failed(self, *keys: str) -> None:
        with self._lock:
            for k in keys:
                self._recent(k).append(self.clock())

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for k in keys:
                self._fails.pop(k, None)


__all__ = ["User", "LoginSession", "LoginLimiter", "add_user", "set_password", "set_active", "set_role", "list_users",
           "has_users", "authenticate", "start_session", "session_for", "end_session", "same_token", "ServiceError"]
