"""Channels: e-mail over SMTP (aiosmtplib, a few reused connections), a pickup folder of .eml files, webhooks.

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
import inspect
import logging
import os
import re
import socket
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
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
    file_name: str | None = None    # pickup folder: the .eml to write (pickup_name), kept on retries


class JobSource(Protocol):
    """Hands out prepared jobs (rendered digests) one at a time and records each outcome.

    ``run_channel`` calls, per connection and job: ``next_job()`` (rendered; None: nothing left) →
    ``begin(job)`` (mark it "may reach the receiver from now on", staged) → ``flush()`` (commit what
    is staged; shared by the connections that began a job in the same turn of the event loop) →
    the first command → ``done(job, outcome)`` (the outcome, recorded and committed at once, before
    that connection does anything else). ``begin`` and ``flush`` are optional (sources without a
    database: the benchmark's transport rows). ``next_job``, ``flush`` and ``done`` may return an
    awaitable (a commit awaited on the loop): the connection waits for it at that point.
    """

    def next_job(self): ...
    def done(self, job, outcome: Outcome) -> Awaitable[None] | None: ...
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


class InsecureLogin(Exception):
    """The configuration would send the SMTP password over a connection without TLS (see SmtpConfig)."""


def local_hostname(cfg: SmtpConfig) -> str:
    """The HELO/EHLO name: ``[smtp] helo`` / DONDOC_SMTP_HELO, else this machine's name."""
    return cfg.helo or socket.gethostname() or "localhost"


def smtp_client(cfg: SmtpConfig, *, timeout: float | None = None, login: bool = True) -> aiosmtplib.SMTP:
    """THE SMTP client of dondoc (digests, the admin alert, ``dondoc doctor``): one place that maps
    the configuration to aiosmtplib, so TLS, certificate checks, HELO and credentials are the same
    everywhere. Raises InsecureLogin instead of building a client that would send the password in
    clear. The password is read from its SecretStr only here, for aiosmtplib's login."""
    refusal = cfg.plaintext_auth_refusal()
    if refusal is not None:
        raise InsecureLogin(refusal)
    creds = login and bool(cfg.username)
    return aiosmtplib.SMTP(
        hostname=cfg.host, port=cfg.effective_port, use_tls=cfg.security == "tls",
        start_tls=cfg.security == "starttls", validate_certs=cfg.validate_certs,
        timeout=timeout if timeout is not None else cfg.timeout,
        username=cfg.username if creds else None, password=cfg.password_value if creds else None,
        local_hostname=local_hostname(cfg),
    )


# ---------------------------------------------------------------------------------------------
# Channels: one interface, three implementations (e-mail over SMTP, pickup folder, webhook)


class Connection(Protocol):
    """One sending slot of a channel (an SMTP connection; a webhook or pickup worker)."""

    async def send(self, job) -> Outcome: ...
    async def close(self) -> None: ...


class Channel(Protocol):
    """Where digests of one kind go. ``concurrency`` connections each send one job at a time; the
    caller records every outcome before that connection sends its next job."""

    kind: str            # the DeliveryRow.channel it serves: "email" | "webhook"
    concurrency: int

    def open(self) -> Connection: ...


class SmtpChannel:
    """E-mail through the configured server; each connection is reused for its share of the batch
    (``reuse=False``: one connection per message, for the benchmark's comparison only)."""

    kind = "email"

    def __init__(self, cfg: SmtpConfig, *, reuse: bool = True):
        self.cfg, self.reuse, self.concurrency = cfg, reuse, cfg.concurrency

    def open(self) -> "SmtpConnection":
        return SmtpConnection(self.cfg, self.reuse)


class SmtpConnection:
    def __init__(self, cfg: SmtpConfig, reuse: bool):
        self.cfg, self.reuse = cfg, reuse
        self.smtp: aiosmtplib.SMTP | None = None

    async def send(self, job: "EmailJob") -> Outcome:
        if self.smtp is None or not self.smtp.is_connected:
            try:
                smtp = smtp_client(self.cfg)
            except InsecureLogin as exc:   # a configuration problem: the digest waits for the fix
                return Outcome.retry(str(exc), server_down=True)
            try:
                await smtp.connect()
            except Exception as exc:       # refused, DNS, TLS, auth, timeout: the server, not the message
                return Outcome.retry(f"Không kết nối được máy chủ SMTP {self.cfg.host}:{self.cfg.effective_port}: "
                                     f"{type(exc).__name__}: {exc}", server_down=True)
            self.smtp = smtp
        try:
            errors, _resp = await self.smtp.sendmail(job.sender, job.recipients, job.data)
            note = None
            if errors:
                note = "Một số địa chỉ bị từ chối: " + "; ".join(
                    f"{a}: {_smtp_reason(r.code, r.message)}" for a, r in errors.items())
            outcome = Outcome.sent(note)
        except Exception as exc:
            outcome = classify_smtp_error(exc)
        if outcome.disconnected or not self.reuse:
            await self.close()
        return outcome

    async def close(self) -> None:
        if self.smtp is not None:
            await _close(self.smtp)
            self.smtp = None


class PickupChannel:
    """No SMTP host: each e-mail becomes an .eml file in the pickup folder."""

    kind, concurrency = "email", 1

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def open(self) -> "PickupChannel":
        return self

    async def send(self, job: "EmailJob") -> Outcome:
        return write_eml(self.directory, job)

    async def close(self) -> None:
        return None


@dataclass
class WebhookJob:
    delivery_id: int
    target: str                     # Apprise URL
    title: str
    body: str
    extra: dict = field(default_factory=dict)


class WebhookChannel:
    """Apprise notifications, ``concurrency`` at a time, each bounded by ``timeout`` seconds."""

    kind = "webhook"

    def __init__(self, concurrency: int, timeout: float):
        self.concurrency, self.timeout = concurrency, timeout

    def open(self) -> "WebhookChannel":
        return self

    async def send(self, job: WebhookJob) -> Outcome:
        try:   # Apprise bounds each socket operation; this bounds the whole call (several requests)
            return await asyncio.wait_for(asyncio.to_thread(post_webhook, job.target, job.title, job.body,
                                                            self.timeout), timeout=self.timeout * 2 + 1)
        except Exception as exc:
            return Outcome.retry(f"Gửi webhook không thành công: {type(exc).__name__}: {exc}", maybe_sent=True)

    async def close(self) -> None:
        return None


class GroupCommit:
    """``await commit()`` from several connections: one call of ``flush`` for all those that ask in
    the same turn of the event loop (each after staging its in-flight mark), then each goes on. A
    connection sends nothing before the flush that follows its ``begin`` has returned (or the
    awaitable it returned is done: a commit awaited on the loop); if it fails, every waiting
    connection stops without sending."""

    def __init__(self, flush: Callable[[], Awaitable[None] | None]):
        self.flush = flush
        self.waiting: asyncio.Future[None] | None = None
        self.flushes = 0

    async def __call__(self) -> None:
        if self.waiting is None:
            loop = asyncio.get_running_loop()
            self.waiting = loop.create_future()
            loop.call_soon(self._run)
        await self.waiting

    def _run(self) -> None:
        fut, self.waiting = self.waiting, None
        assert fut is not None
        self.flushes += 1
        try:
            pending = self.flush()
        except BaseException as exc:       # noqa: BLE001 - handed to every waiting connection
            fut.set_exception(exc)
            return
        if pending is None:
            fut.set_result(None)
            return
        asyncio.ensure_future(pending).add_done_callback(lambda done: _pass_on(done, fut))


def _pass_on(done: asyncio.Future[None], fut: asyncio.Future[None]) -> None:
    if fut.done():                         # its waiters were cancelled (the pass is stopping)
        return
    if done.cancelled():
        fut.cancel()
    elif done.exception() is not None:
        fut.set_exception(done.exception())
    else:
        fut.set_result(None)


async def _next_job(source: JobSource):
    job = source.next_job()
    return await job if inspect.isawaitable(job) else job


async def run_channel(channel: Channel, source: JobSource, should_stop: Callable[[], bool] | None = None) -> None:
    """Send everything ``source`` hands out on ``channel``: ``concurrency`` workers, each with one
    connection, taking a job, having its in-flight mark committed (``begin`` + a group ``flush``)
    before the first command, sending it, and handing the outcome back (``done``: recorded and
    committed at once) before its next job. A failure of the whole server stops every worker; the
    rest is deferred.

    A source that can take a job back (``unget``) gets its next job asked for while the server
    answers: rendering overlaps the SMTP round trips, and that job's mark (``begin``, staged after
    the reply) is committed with this outcome, one commit per message. A job taken but not to be
    sent (the server down, a stop asked for) is handed back."""
    should_stop = should_stop or (lambda: False)
    begin: Callable | None = getattr(source, "begin", None)
    unget: Callable | None = getattr(source, "unget", None)
    committed = GroupCommit(getattr(source, "flush", lambda: None))
    down: list[str] = []

    async def worker() -> None:
        conn = channel.open()
        try:
            job = None if down or should_stop() else await _next_job(source)
            begun = False
            while job is not None:
                if begin is not None and not begun:
                    begin(job)                     # in flight …
                    await committed()              # … and durable before the first command
                sending = asyncio.ensure_future(conn.send(job))
                nxt = None
                try:
                    if unget is not None and not down and not should_stop():
                        await asyncio.sleep(0)     # the first command on its way, then render the next
                        nxt = await _next_job(source)
                finally:
                    outcome = await sending        # never abandoned mid-transaction
                if outcome.server_down:
                    down.append(outcome.reason or "máy chủ không nhận thư")
                if nxt is not None and (down or should_stop()):
                    unget(nxt)                     # type: ignore[misc]
                    nxt = None
                begun = nxt is not None and begin is not None
                if begun:
                    begin(nxt)                     # staged: goes with this outcome's commit
                recorded = source.done(job, outcome)   # committed here (or awaited next): the
                if recorded is not None:               # exactly-once window ends (README)
                    await recorded
                if unget is None:                      # taken only now: after the outcome's commit
                    nxt = None if down or should_stop() else await _next_job(source)
                job = nxt
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(channel.concurrency)))
    if down:
        source.defer_rest(down[0])


class SmtpPool:
    """``run_channel`` over an SmtpChannel (kept for benchmarks/bench_smtp.py's transport-only rows)."""

    def __init__(self, cfg: SmtpConfig, *, reuse: bool = True, should_stop: Callable[[], bool] | None = None):
        self.channel, self.should_stop = SmtpChannel(cfg, reuse=reuse), should_stop

    async def run(self, source: JobSource) -> None:
        await run_channel(self.channel, source, self.should_stop)


async def _close(smtp: aiosmtplib.SMTP) -> None:
    try:
        if smtp.is_connected:
            await asyncio.wait_for(smtp.quit(), timeout=5)
    except Exception:
        smtp.close()


def pickup_name(when: datetime, recipient: str, message_id: str) -> str:
    """``2026-12-02_0930_so-tai-chinh_3f96e41c03.eml``: the first try's local time, the recipient and
    the start of the Message-ID's hash, so a secretary finds a unit's mail by date and name, and two
    digests never share a file. Chosen once per digest (stored on it) so a retry rewrites the same file."""
    slug = re.sub(r"[^a-z0-9]+", "-", recipient.lower()).strip("-")[:40] or "don-vi"
    short = re.sub(r"[^0-9a-zA-Z]", "", message_id.strip("<>").split("@")[0])[:10] or "thu"
    return f"{when:%Y-%m-%d_%H%M}_{slug}_{short}.eml"


def write_eml(directory: Path, job: EmailJob) -> Outcome:
    """Pickup folder: one file per digest (``job.file_name``; without one: the Message-ID hash),
    written atomically; a retry or a re-send after a crash overwrites the same file."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        name = job.file_name or job.message_id.strip("<>").split("@")[0] + ".eml"
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


def post_webhook(url: str, title: str, body: str, timeout: float | None = None) -> Outcome:
    """One Apprise notification (blocking; run it in a thread). Apprise reports only success or
    failure, so every failure is retried with backoff until max_attempts; a URL Apprise cannot
    parse is a permanent failure."""
    import apprise

    ap = apprise.Apprise()
    if not ap.add(url):
        return Outcome.failed(f"Địa chỉ webhook {mask_url(url)} không hợp lệ hoặc Apprise không hỗ trợ")
    if timeout is not None and not any(k in url for k in ("cto=", "rto=")):   # the URL's own value wins
        for service in ap:
            service.socket_connect_timeout = service.socket_read_timeout = timeout
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
