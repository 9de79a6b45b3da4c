"""Transports: SMTP (aiosmtplib, a few reused connections), a pickup folder of .eml files, webhooks.

Each returns an ``Outcome`` per digest; the caller records it in the database before the next
message on the same connection starts (see notifications/README.md, "exactly-once window").
SMTP failures are classified by who they concern:
- the whole server (connection refused, TLS/auth failure, sender refused, timeouts while
  connecting): the rest of this run's e-mail is deferred with backoff, the server is not hammered;
- this message only (a 4xx/5xx to RCPT or DATA): 4xx → retry later, 5xx → failed with the reason;
- the connection (421, disconnect, read timeout): this message is retried later, the next one
  opens a new connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiosmtplib

from notifications.config import SmtpConfig

log = logging.getLogger("dondoc.notify")


@dataclass(frozen=True)
class Outcome:
    """What happened to one digest: sent | retry | failed | dropped, and why."""
    kind: str
    reason: str | None = None
    disconnected: bool = False      # SMTP: reopen the connection before the next message
    server_down: bool = False       # SMTP: defer the rest of this run's e-mail
    maybe_sent: bool = False        # the server may have kept it (lost connection mid-transaction)

    @classmethod
    def sent(cls, note: str | None = None) -> "Outcome":
        return cls("sent", note)

    @classmethod
    def retry(cls, reason: str, **kw: bool) -> "Outcome":
        return cls("retry", reason, **kw)

    @classmethod
    def failed(cls, reason: str, **kw: bool) -> "Outcome":
        return cls("failed", reason, **kw)


@dataclass
class EmailJob:
    delivery_id: int
    message_id: str
    sender: str                     # envelope MAIL FROM
    recipients: list[str]           # envelope RCPT TO
    data: bytes                     # the complete message, CRLF, 7-bit
    extra: dict = field(default_factory=dict)


class JobSource(Protocol):
    """Hands out prepared e-mails one at a time and receives each outcome."""

    def next_job(self) -> EmailJob | None: ...
    def done(self, job: EmailJob, outcome: Outcome) -> None: ...
    def defer_rest(self, reason: str) -> None: ...


def _smtp_reason(code: int, message: str) -> str:
    return f"{code} {' '.join(str(message).split())}"


def classify_smtp_error(exc: BaseException) -> Outcome:
    """Map an aiosmtplib exception raised while sending one message to an Outcome."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        reason = "Máy chủ từ chối người nhận: " + "; ".join(
            f"{r.recipient}: {_smtp_reason(r.code, r.message)}" for r in exc.recipients)
        if any(400 <= c < 500 for c in codes):
            return Outcome.retry(reason, disconnected=421 in codes)
        return Outcome.failed(reason)
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        # Our own From is refused: a configuration problem of the server, not the recipient's.
        return Outcome.retry(f"Máy chủ từ chối địa chỉ gửi {exc.sender}: {_smtp_reason(exc.code, exc.message)}",
                             server_down=True, disconnected=exc.code == 421)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        reason = f"Máy chủ trả lời: {_smtp_reason(exc.code, exc.message)}"
        if 400 <= exc.code < 500:
            return Outcome.retry(reason, disconnected=exc.code == 421)
        if 500 <= exc.code < 600 and isinstance(exc, aiosmtplib.SMTPDataError):
            return Outcome.failed(reason)
        return Outcome.retry(reason)
    if isinstance(exc, (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, ConnectionError,
                        OSError, asyncio.TimeoutError)):
        return Outcome.retry(f"Mất kết nối với máy chủ SMTP: {type(exc).__name__}: {exc}", disconnected=True,
                             maybe_sent=True)
    return Outcome.retry(f"Lỗi gửi thư: {type(exc).__name__}: {exc}", disconnected=True, maybe_sent=True)


class SmtpPool:
    """``concurrency`` workers, each with its own connection, reused for its whole share of the batch.

    ``reuse=False`` opens a connection per message (for the benchmark's comparison only).
    """

    def __init__(self, cfg: SmtpConfig, *, reuse: bool = True, should_stop: Callable[[], bool] | None = None):
        self.cfg = cfg
        self.reuse = reuse
        self.should_stop = should_stop or (lambda: False)
        self.down: str | None = None
        self.local_hostname = cfg.helo or socket.gethostname() or "localhost"

    def _client(self) -> aiosmtplib.SMTP:
        cfg = self.cfg
        return aiosmtplib.SMTP(
            hostname=cfg.host, port=cfg.effective_port, use_tls=cfg.security == "tls",
            start_tls=cfg.security == "starttls", validate_certs=cfg.validate_certs, timeout=cfg.timeout,
            username=cfg.username, password=cfg.password_value if cfg.username else None,
            local_hostname=self.local_hostname,
        )

    async def _connect(self) -> aiosmtplib.SMTP:
        smtp = self._client()
        await smtp.connect()
        return smtp

    async def _worker(self, source: JobSource) -> None:
        smtp: aiosmtplib.SMTP | None = None
        try:
            while self.down is None and not self.should_stop():
                job = source.next_job()
                if job is None:
                    return
                if smtp is None or not smtp.is_connected:
                    try:
                        smtp = await self._connect()
                    except Exception as exc:  # refused, DNS, TLS, auth, timeout: the server, not the message
                        smtp = None
                        self.down = (f"Không kết nối được máy chủ SMTP {self.cfg.host}:{self.cfg.effective_port}: "
                                     f"{type(exc).__name__}: {exc}")
                        source.done(job, Outcome.retry(self.down, server_down=True))
                        return
                try:
                    errors, _resp = await smtp.sendmail(job.sender, job.recipients, job.data)
                    note = None
                    if errors:
                        note = "Một số địa chỉ bị từ chối: " + "; ".join(
                            f"{a}: {_smtp_reason(r.code, r.message)}" for a, r in errors.items())
                    outcome = Outcome.sent(note)
                except Exception as exc:
                    outcome = classify_smtp_error(exc)
                # Record before anything else happens on this connection: this is the window.
                source.done(job, outcome)
                if outcome.server_down:
                    self.down = outcome.reason
                if outcome.disconnected or not self.reuse:
                    await _close(smtp)
                    smtp = None
        finally:
            if smtp is not None:
                await _close(smtp)

    async def run(self, source: JobSource) -> None:
        workers = [asyncio.create_task(self._worker(source)) for _ in range(self.cfg.concurrency)]
        await asyncio.gather(*workers)
        if self.down is not None:
            source.defer_rest(self.down)


async def _close(smtp: aiosmtplib.SMTP) -> None:
    try:
        if smtp.is_connected:
            await asyncio.wait_for(smtp.quit(), timeout=5)
    except Exception:
        smtp.close()


def write_eml(directory: Path, job: EmailJob) -> Outcome:
    """Pickup folder: one file per Message-ID, written atomically; a retry overwrites the same file."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        name = job.message_id.strip("<>").split("@")[0] + ".eml"
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".eml")
        with os.fdopen(fd, "wb") as fh:
            fh.write(job.data)
        os.replace(tmp, directory / name)
    except OSError as exc:
        return Outcome.retry(f"Không ghi được tệp thư vào {directory}: {exc}")
    return Outcome.sent()


def mask_url(url: str) -> str:
    """scheme://host/… : webhook URLs often carry tokens; never print them whole."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].split("@")[-1]
    return f"{scheme}://{host}/…" if rest else scheme


def post_webhook(url: str, title: str, body: str) -> Outcome:
    """One Apprise notification (blocking; run it in a thread). Apprise reports only success or
    failure, so every failure is retried with backoff until max_attempts; a URL Apprise cannot
    parse is a permanent failure."""
    import apprise

    ap = apprise.Apprise()
    if not ap.add(url):
        return Outcome.failed(f"Địa chỉ webhook {mask_url(url)} không hợp lệ hoặc Apprise không hỗ trợ")
    result = ap.notify(body=body, title=title, body_format=apprise.NotifyFormat.TEXT, log_level=logging.WARNING)
    if result:
        return Outcome.sent()
    msgs = []
    try:
        msgs = [e.message for e in result.logs() if e.level in ("WARNING", "ERROR", "CRITICAL")]
    except Exception:  # older Apprise: a plain bool
        pass
    return Outcome.retry(f"Gửi webhook {mask_url(url)} không thành công" + (": " + " ".join(msgs)[:300] if msgs else ""),
                         maybe_sent=True)
