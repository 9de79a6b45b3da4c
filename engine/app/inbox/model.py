"""What one parsed message is: plain, immutable data for classification, matching and storage."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

_ID = re.compile(r"<([^<>\s]+)>")


def normalise_id(value: str | None) -> str | None:
    """A Message-ID as ``<local@domain>`` with the domain in lower case (domains ignore case; the
    local part does not), so a digest's id and the id a mail client quotes back compare equal."""
    if not value:
        return None
    text = " ".join(str(value).split())
    m = _ID.search(text)
    core = m.group(1) if m else (text if text and " " not in text and "@" in text else None)
    if core is None or len(core) > 250:
        return None
    local, at, domain = core.rpartition("@")
    return f"<{local}@{domain.lower()}>" if at else f"<{core}>"


def id_list(value: str | None, limit: int = 200) -> tuple[str, ...]:
    """The ids of an In-Reply-To/References header, in order, each once (the newest kept when long)."""
    if not value:
        return ()
    found = [normalise_id(f"<{m}>") for m in _ID.findall(value)]
    if not found:
        found = [normalise_id(tok) for tok in re.split(r"[\s,]+", value) if "@" in tok]
    out: dict[str, None] = {}
    for i in found:
        if i:
            out.setdefault(i)
    return tuple(out)[-limit:]


@dataclass(frozen=True)
class Attachment:
    """A file as the sender sent it: bytes kept, never opened, unpacked or executed here."""
    filename: str            # decoded (RFC 2231, encoded-words, raw 8-bit), no directories
    content_type: str        # as declared by the sender (the reader sniffs the real type)
    size: int
    sha256: str
    data: bytes = field(repr=False)
    inline: bool = False     # an inline part (a signature logo …), not a file the sender attached
    archive: bool = False    # zip/rar/7z: stored as it is, never unpacked


@dataclass(frozen=True)
class Skipped:
    """An attachment left out (too many, too big): named in the queue so nothing vanishes silently."""
    filename: str
    size: int
    reason: str              # Vietnamese


@dataclass(frozen=True)
class InboundMail:
    """One received message. ``message_id`` is the dedup key: the normalised Message-ID, or
    ``sha256:<hex of the raw bytes>`` when the message has none (``has_message_id`` False)."""
    message_id: str
    has_message_id: bool
    raw_sha256: str
    raw_size: int
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    from_addr: str = ""
    from_name: str = ""
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    subject: str = ""
    date: datetime | None = None
    text: str = ""
    attachments: tuple[Attachment, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    content_type: str = "text/plain"          # of the whole message (multipart/report for a DSN)
    report_type: str = ""                      # its report-type parameter (delivery-status …)
    part_types: tuple[str, ...] = ()           # every part's type, nested ones included
    headers: dict[str, str] = field(default_factory=dict)   # the few classify needs, lower-case names
    problems: tuple[str, ...] = ()             # Vietnamese notes for the secretariat

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """Ids this mail answers, the direct parent first, then References from the newest back."""
        out: dict[str, None] = {}
        for i in (*self.in_reply_to, *reversed(self.references)):
            out.setdefault(i)
        return tuple(out)
