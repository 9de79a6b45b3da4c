"""Report files attached to a submission or a unit's confirmation: checked, stored, read back.

Why this shape: a file from a browser is hostile input. Its type is decided from its first bytes
(PDF, the OLE2 container of DOC/XLS, the ZIP container of DOCX/XLSX/ODT with the matching inner
entry), never from the client's name or Content-Type; its size is capped; it is stored under a
generated name in ``web.upload_dir`` (the client's file name is kept only as text to show) with
its SHA-256; it is never unpacked or executed. Only the secretariat and the unit it belongs to may
read it back (the routes check that; this module only stores and finds).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import unicodedata
import zipfile
from dataclasses import dataclass
from datetime import datetime
from io import BytesIO
from pathlib import Path

from sqlmodel import Session

from engine.app.config import Settings
from engine.app.services import InvalidInput
from engine.state import AttachmentRow

# kind → (extensions accepted, MIME type served back)
KINDS = {
    "pdf": ((".pdf",), "application/pdf"),
    "doc": ((".doc",), "application/msword"),
    "xls": ((".xls",), "application/vnd.ms-excel"),
    "docx": ((".docx",), "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    "xlsx": ((".xlsx",), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    "odt": ((".odt",), "application/vnd.oasis.opendocument.text"),
}
ACCEPTED_VI = "PDF, DOC/DOCX, XLS/XLSX hoặc ODT"
ACCEPT_ATTR = ".pdf,.doc,.docx,.xls,.xlsx,.odt"
OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


@dataclass(frozen=True)
class Checked:
    kind: str
    content_type: str
    filename: str
    sha256: str
    size: int


def clean_name(name: str | None) -> str:
    """The client's file name as text to show: no directories, no control characters, ≤ 120 chars."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in unicodedata.normalize("NFC", base) if unicodedata.category(ch)[0] != "C").strip()
    return (base or "tep-dinh-kem")[:120]


def sniff(data: bytes, name: str) -> str | None:
    """The kind of a file from its bytes (the extension only picks between DOC and XLS in OLE2)."""
    ext = os.path.splitext(name.lower())[1]
    if data.startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(OLE2):
        return {".doc": "doc", ".xls": "xls"}.get(ext)
    if data.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(BytesIO(data)) as z:   # only the directory is read: nothing is unpacked
                names = set(z.namelist())
                if "mimetype" in names and ext == ".odt":
                    mt = z.open("mimetype").read(100)
                    return "odt" if mt.strip() == b"application/vnd.oasis.opendocument.text" else None
        except (zipfile.BadZipFile, OSError, KeyError, RuntimeError, ValueError):
            return None
        if ext == ".docx" and "word/document.xml" in names:
            return "docx"
        if ext == ".xlsx" and "xl/workbook.xml" in names:
            return "xlsx"
    return None


def check(settings: Settings, data: bytes, name: str | None) -> Checked:
    """Accept the file or raise InvalidInput saying why, in words a unit can act on."""
    shown = clean_name(name)
    limit = settings.web.max_upload_mb * 1024 * 1024
    if not data:
        raise InvalidInput(f"tệp “{shown}” rỗng")
    if len(data) > limit:
        raise InvalidInput(f"tệp “{shown}” quá lớn ({len(data) / 1048576:.1f} MB); tối đa {settings.web.max_upload_mb} MB"
                           .replace(".", ","))
    kind = sniff(data, shown)
    if kind is None:
        raise InvalidInput(f"tệp “{shown}” không phải {ACCEPTED_VI} (hoặc đuôi tên tệp không khớp nội dung)")
    return Checked(kind, KINDS[kind][1], shown, hashlib.sha256(data).hexdigest(), len(data))


def directory(settings: Settings) -> Path:
    d = settings.web.upload_dir
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


def write_private(path: Path, data: bytes) -> None:
    """Write a file only this account can read (0600), durably (fsync) and whole or not at all
    (written beside, then renamed): a crash never leaves half a report under the final name."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def store(ses: Session, settings: Settings, data: bytes, name: str | None, *, instance_id: int, unit: str,
          now: datetime, actor: str, confirmation_id: int | None = None, submission_id: int | None = None) -> AttachmentRow:
    """Check, write (0600, fsync, under a generated name) and add the row to ``ses`` (the caller commits:
    the file without its row is harmless, the row without its file never happens)."""
    c = check(settings, data, name)
    stored = f"{now:%Y%m%d}-{secrets.token_hex(12)}.{c.kind}"
    write_private(directory(settings) / stored, data)
    row = AttachmentRow(instance_id=instance_id, unit=unit, confirmation_id=confirmation_id,
                        submission_id=submission_id, filename=c.filename, stored_name=stored,
                        content_type=c.content_type, size=c.size, sha256=c.sha256, created_at=now, created_by=actor)
    ses.add(row)
    return row


def path_of(settings: Settings, row: AttachmentRow) -> Path:
    """Where the file is; the stored name is ours (generated), never the client's."""
    name = Path(row.stored_name).name
    return settings.web.upload_dir / name
