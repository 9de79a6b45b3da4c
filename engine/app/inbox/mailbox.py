"""The reporting mailbox over IMAP: the only module that speaks IMAP (imap-tools over imaplib).

Why this shape: the reader needs four things — the messages not yet done, one message's bytes and
the day the server received it, and "done" (a keyword, or a move to another folder) — and every
failure of the server or the network as one Vietnamese sentence. Always TLS (implicit or
STARTTLS), certificates validated unless the configuration says otherwise. Messages are read with
BODY.PEEK: reading never marks them \\Seen for the people who also use the mailbox.
"""

from __future__ import annotations

import imaplib
import re
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from imap_tools import AND, MailBox, MailBoxStartTls
from imap_tools.errors import ImapToolsError, MailboxLoginError

from engine.app.config import InboxConfig
from engine.app.services import ServiceError


class InboxUnavailable(ServiceError):
    """The mailbox cannot be reached or refuses us: nothing was read or changed."""
    exit_code = 2


_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"')
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_UID = re.compile(rb"UID (\d+)")


@dataclass(frozen=True)
class Fetched:
    uid: int
    raw: bytes
    received_at: datetime | None
    size: int
    headers_only: bool        # bigger than the limit: only its headers were read


def _internaldate(meta: bytes) -> datetime | None:
    m = _INTERNALDATE.search(meta)
    if not m:
        return None
    try:
        return datetime.strptime(m.group(1).decode("ascii").strip(), "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return None


def _where(cfg: InboxConfig) -> str:
    return f"{cfg.host}:{cfg.port_or_default}"


class Mailbox:
    """``with Mailbox(cfg) as box:`` logged in, the folder selected; closed (logout) on exit."""

    def __init__(self, cfg: InboxConfig):
        if not cfg.enabled:
            raise InboxUnavailable("chưa cấu hình hộp thư nhận báo cáo (DONDOC_INBOX_HOST, DONDOC_INBOX_USERNAME, "
                                   "DONDOC_INBOX_PASSWORD)", exit_code=1)
        if not cfg.username or cfg.password is None:
            raise InboxUnavailable("thiếu tên đăng nhập (DONDOC_INBOX_USERNAME) hoặc mật khẩu (biến môi trường "
                                   "DONDOC_INBOX_PASSWORD) của hộp thư nhận báo cáo", exit_code=1)
        self.cfg = cfg
        self._box: MailBox | MailBoxStartTls | None = None

    def _context(self) -> ssl.SSLContext:
        try:
            ctx = ssl.create_default_context(cafile=str(self.cfg.cafile) if self.cfg.cafile else None)
        except (OSError, ssl.SSLError) as exc:
            raise InboxUnavailable(f"không đọc được chứng chỉ CA {self.cfg.cafile}: {exc}", exit_code=1) from None
        if not self.cfg.validate_certs:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def __enter__(self) -> "Mailbox":
        cfg, where = self.cfg, _where(self.cfg)
        try:
            cls = MailBox if cfg.security == "tls" else MailBoxStartTls
            box = cls(cfg.host or "", cfg.port_or_default, timeout=cfg.timeout, ssl_context=self._context())
        except ssl.SSLCertVerificationError as exc:
            raise InboxUnavailable(f"chứng chỉ TLS của hộp thư {where} không hợp lệ ({exc.verify_message}); kiểm "
                                   "tra tên máy chủ, hoặc khai báo CA nội bộ (DONDOC_INBOX_CAFILE)") from None
        except (OSError, ssl.SSLError, imaplib.IMAP4.error, ImapToolsError) as exc:
            raise InboxUnavailable(f"không kết nối được hộp thư {where}: {_why(exc)}") from None
        try:
            box.login(cfg.username or "", cfg.password_value() or "", initial_folder=None)
        except MailboxLoginError:
            _quietly_close(box)
            raise InboxUnavailable(f"hộp thư {where} từ chối đăng nhập của {cfg.username}: sai tên hoặc mật khẩu "
                                   "(DONDOC_INBOX_PASSWORD)", exit_code=1) from None
        except (OSError, imaplib.IMAP4.error, ImapToolsError) as exc:
            _quietly_close(box)
            raise InboxUnavailable(f"không đăng nhập được hộp thư {where}: {_why(exc)}") from None
        self._box = box
        try:
            if not box.folder.exists(cfg.folder):
                raise InboxUnavailable(f"hộp thư {where} không có thư mục “{cfg.folder}” (DONDOC_INBOX_FOLDER)",
                                       exit_code=1)
            box.folder.set(cfg.folder)
            if cfg.move_to and not box.folder.exists(cfg.move_to):
                box.folder.create(cfg.move_to)
        except InboxUnavailable:
            self.close()
            raise
        except (OSError, imaplib.IMAP4.error, ImapToolsError) as exc:
            self.close()
            raise InboxUnavailable(f"không mở được thư mục “{cfg.folder}” của hộp thư {where}: {_why(exc)}") from None
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._box is not None:
            _quietly_close(self._box)
            self._box = None

    @property
    def box(self) -> MailBox | MailBoxStartTls:
        assert self._box is not None, "use Mailbox in a with block"
        return self._box

    def _guard(self, what: str, fn):
        try:
            return fn()
        except (OSError, imaplib.IMAP4.error, ImapToolsError) as exc:
            raise InboxUnavailable(f"hộp thư {_where(self.cfg)}: lỗi khi {what}: {_why(exc)}") from None

    def pending(self) -> list[int]:
        """UIDs of the messages not yet done, oldest first."""
        criteria = "ALL" if self.cfg.move_to else AND(no_keyword=self.cfg.done_keyword)
        uids = self._guard("tìm thư mới", lambda: self.box.uids(criteria))
        return sorted(int(u) for u in uids)

    def sizes(self, uids: list[int]) -> dict[int, int]:
        """Each message's size, in one round trip (a too big one is read by its headers only)."""
        if not uids:
            return {}
        typ, data = self._guard("đọc kích thước thư", lambda: self.box.client.uid(
            "FETCH", ",".join(map(str, uids)), "(RFC822.SIZE)"))
        out: dict[int, int] = {}
        for item in data or []:
            meta = item[0] if isinstance(item, tuple) else item
            if isinstance(meta, bytes):
                u, s = _UID.search(meta), _SIZE.search(meta)
                if u and s:
                    out[int(u.group(1))] = int(s.group(1))
        return out

    def fetch(self, uid: int, size: int | None = None) -> Fetched | None:
        """One message's bytes (BODY.PEEK: not marked \\Seen) and the day the server received it;
        None if it is gone (deleted or moved by someone meanwhile)."""
        limit = self.cfg.max_message_mb * 1024 * 1024
        headers_only = size is not None and size > limit
        part = "BODY.PEEK[HEADER]" if headers_only else "BODY.PEEK[]"
        typ, data = self._guard("đọc thư", lambda: self.box.client.uid("FETCH", str(uid), f"(INTERNALDATE {part})"))
        for item in data or []:
            if isinstance(item, tuple) and len(item) >= 2 and isinstance(item[1], bytes):
                return Fetched(uid, item[1], _internaldate(item[0]), size if size is not None else len(item[1]),
                               headers_only)
        return None

    def done(self, uid: int) -> None:
        """Mark a message done — only ever called after what it produced is committed."""
        if self.cfg.move_to:
            self._guard("chuyển thư đã xử lý", lambda: self.box.move(str(uid), self.cfg.move_to))
        else:
            self._guard("đánh dấu thư đã xử lý", lambda: self.box.flag(str(uid), self.cfg.done_keyword, True))


def _why(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "hết thời gian chờ máy chủ"
    if isinstance(exc, ConnectionRefusedError):
        return "máy chủ từ chối kết nối (sai cổng, hoặc dịch vụ IMAP chưa chạy)"
    if isinstance(exc, socket.gaierror):
        return "không tìm thấy tên máy chủ"
    if isinstance(exc, ssl.SSLError):
        return f"lỗi TLS ({exc.reason or exc})"
    text = " ".join(str(exc).split())[:200]
    return text or type(exc).__name__


def _quietly_close(box) -> None:
    try:
        box.logout()
    except Exception:  # noqa: BLE001 — closing a broken connection: nothing left to save
        try:
            box.client.shutdown()
        except Exception:  # noqa: BLE001
            pass
