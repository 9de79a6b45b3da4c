"""One reading of the mailbox: every message not yet done → parsed → matched → committed → done.

The order is the guarantee. A message is marked done on the server (keyword or move) only after
its row is committed; its Message-ID (or the hash of its bytes) is unique in ``inbound_mails``, so a
message whose row exists is only marked done again. Killed anywhere, the next run redoes at most
the marking: no report lost, none recorded twice. One message that cannot be handled is kept in the
queue with the reason (never skipped silently, never stopping the messages behind it); a database
that cannot be written stops the run before anything is marked.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from engine.app.config import Settings
from engine.app.inbox import store
from engine.app.inbox.mailbox import Fetched, Mailbox
from engine.app.inbox.match import match
from engine.app.inbox.parse import parse
from engine.app.services import InvalidInput, ServiceError, is_unavailable, open_session
from engine.dblock import database_lock
from engine.rules_loader import RulePack
from engine.vi import fmt_num

log = logging.getLogger("dondoc.inbox")
LOCK_KEY = 0x646F6E696E62     # "doninb": one reader at a time per database (the daemon or `inbox fetch`)


class ReaderBusy(ServiceError):
    """Another reader (the daemon, another `dondoc inbox fetch`) is reading this mailbox now."""


@dataclass
class Seen:
    """One message as this run saw it (for --dry-run and --json)."""
    uid: int
    sender: str
    subject: str
    outcome: str              # recorded | queued | ignored | already
    reason: str
    items: list[str] = field(default_factory=list)


@dataclass
class FetchReport:
    folder: str
    dry_run: bool
    pending: int = 0          # messages not yet done on the server when the run began
    read: int = 0
    recorded: int = 0
    queued: int = 0
    ignored: int = 0
    already: int = 0          # recorded by an earlier run that stopped before marking them done
    left: int = 0             # beyond this run's batch: the next run takes them
    seconds: float = 0.0
    messages: list[Seen] = field(default_factory=list)

    def summary(self) -> str:
        what = "Thử (không ghi gì, không đánh dấu thư)" if self.dry_run else "Đã đọc hộp thư"
        parts = [f"{what}: {fmt_num(self.read, 0)} thư mới trong “{self.folder}”",
                 f"{fmt_num(self.recorded, 0)} ghi nhận là đã gửi (chờ xác nhận)",
                 f"{fmt_num(self.queued, 0)} cần phân loại",
                 f"{fmt_num(self.ignored, 0)} bỏ qua (trả lời tự động, thư báo lỗi)"]
        if self.already:
            parts.append(f"{fmt_num(self.already, 0)} đã ghi từ lần trước")
        if self.left:
            parts.append(f"còn {fmt_num(self.left, 0)} thư cho lần đọc sau")
        return "; ".join(parts) + "."


def _items_text(pack: RulePack, m) -> list[str]:
    return [c.text(pack) for c in m.candidates]


def fetch(settings: Settings, pack: RulePack, now: datetime, *, dry_run: bool = False,
          limit: int | None = None, on_message=None) -> FetchReport:
    """Read the mailbox once (see the module docstring). ``on_message(uid)`` is called after each
    message is done (the crash test and progress use it)."""
    cfg = settings.inbox
    started = time.perf_counter()
    report = FetchReport(cfg.folder, dry_run)
    lim = store.limits(settings)
    with database_lock(settings.database.url, suffix=".inbox-lock", key=LOCK_KEY, wait=False) as mine:
        if not mine:
            raise ReaderBusy("một tiến trình khác (dịch vụ dondoc hoặc một lệnh “inbox fetch”) đang đọc hộp thư; "
                             "thử lại sau ít phút")
        _read(settings, pack, now, cfg, lim, dry_run, limit, on_message, report)
    report.seconds = time.perf_counter() - started
    log.info("%s", report.summary())
    return report


def _read(settings, pack, now, cfg, lim, dry_run, limit, on_message, report: FetchReport) -> None:
    with Mailbox(cfg) as box:
        uids = box.pending()
        report.pending = len(uids)
        batch = uids[: (limit or cfg.batch)]
        report.left = len(uids) - len(batch)
        sizes = box.sizes(batch)
        for uid in batch:
            got = box.fetch(uid, sizes.get(uid))
            if got is None:
                continue
            report.read += 1
            seen = _one(settings, pack, now, got, lim, dry_run, report)
            report.messages.append(seen)
            if not dry_run:
                box.done(uid)                       # after the commit in _one, never before
            if on_message is not None:
                on_message(uid)


def _one(settings: Settings, pack: RulePack, now: datetime, got: Fetched, lim, dry_run: bool,
         report: FetchReport) -> Seen:
    mail = parse(got.raw, lim)
    if got.headers_only:
        mail = dataclasses.replace(mail, problems=mail.problems + (
            f"thư quá lớn ({fmt_num(got.size / 1048576, 1)} MB, giới hạn {settings.inbox.max_message_mb} MB): "
            "chỉ đọc phần đầu thư, tệp đính kèm xem trong hộp thư",))
    received_at = got.received_at or mail.date or now
    folder = settings.inbox.folder
    with open_session(settings) as ses:
        if store.seen(ses, mail.message_id) is not None:
            report.already += 1
            return Seen(got.uid, mail.from_addr, mail.subject, "already", "đã ghi nhận từ lần đọc trước")
        items: list[str] = []
        try:
            m = match(mail, pack, store.context_for(ses, pack, mail, store.received_on(received_at, now)))
            if dry_run:
                outcome = {"confident": "recorded", "ignored": "ignored"}.get(m.status, "queued")
                setattr(report, outcome, getattr(report, outcome) + 1)
                return Seen(got.uid, mail.from_addr, mail.subject, outcome, m.reason, _items_text(pack, m))
            row = store.record(ses, settings, pack, mail, m, got.raw, received_at=received_at, now=now,
                               folder=folder, uid=got.uid)
            ses.commit()
            items = _items_text(pack, m) if row.state == store.RECORDED else []
        except IntegrityError:
            # another reader (the daemon, a second `inbox fetch`) committed this message meanwhile
            ses.rollback()
            report.already += 1
            return Seen(got.uid, mail.from_addr, mail.subject, "already", "đã ghi nhận từ lần đọc khác")
        except Exception as exc:  # noqa: BLE001 — one message must not stop the ones behind it
            if is_unavailable(exc) or isinstance(exc, ServiceError) and not isinstance(exc, InvalidInput):
                raise
            ses.rollback()
            log.exception("thư UID %s: không xử lý tự động được", got.uid)
            if dry_run:
                report.queued += 1
                return Seen(got.uid, mail.from_addr, mail.subject, "queued", str(exc))
            row = store.record_failure(ses, settings, mail, got.raw, getattr(exc, "message", type(exc).__name__),
                                       received_at=received_at, now=now, folder=folder, uid=got.uid)
            ses.commit()
    outcome = row.state if row.state in ("recorded", "queued", "ignored") else "queued"
    setattr(report, outcome, getattr(report, outcome) + 1)
    return Seen(got.uid, mail.from_addr, mail.subject, outcome, row.reason, items)
