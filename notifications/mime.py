"""MIME for digests: RFC 2047 subject, UTF-8 text/plain + text/html alternatives, deterministic ids.

Every header is set through ``email.message.EmailMessage`` and ``email.headerregistry.Address``,
which refuse CR/LF; names coming from the rules (unit names) are additionally folded to one line
first, so a crafted name can neither inject a header nor make a delivery fail. The Message-ID and
the MIME boundary derive from the digest key: a retried digest is byte-for-byte the same message,
so a duplicate caused by SMTP's acceptance window can be recognised (and de-duplicated by mail
clients that honour Message-ID).
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses
from typing import NamedTuple

from email_validator import EmailNotValidError, validate_email

from notifications.render import Rendered

_CTRL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


class BadAddress(ValueError):
    """An address that cannot be used on the wire (permanent for the delivery)."""


def one_line(text: str | None, limit: int = 200) -> str:
    """Collapse control characters (CR, LF, NUL …) and runs of spaces: safe in a header."""
    text = _CTRL.sub(" ", text or "")
    return re.sub(r"\s+", " ", text).strip()[:limit]


def digest_hash(text: str, n: int = 32) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def message_id_for(delivery_key: str, domain: str) -> str:
    """``<hash.dondoc@domain>``: the same digest always gets the same Message-ID."""
    domain = re.sub(r"[^A-Za-z0-9.-]", "", domain.encode("idna").decode("ascii") if domain else "") or "dondoc.invalid"
    return f"<{digest_hash(delivery_key)}.dondoc@{domain}>"


# local@domain, both dot-atoms of plain ASCII (letters, digits and RFC 5322 atext; domain labels
# of letters, digits and hyphens): what the RFC 5322 parser would split into exactly these two parts
# without a defect, so the Address is made from them directly (the parser costs ~50 µs a digest).
_PLAIN_ADDR = re.compile(r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
                         r"@([A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)")


def address(name: str | None, addr: str) -> Address:
    """A header address; the display name is folded to one line, the address must be plain."""
    addr = (addr or "").strip()
    if not addr or _CTRL.search(addr) or any(c in addr for c in "<>,;\"()[]\\ "):
        raise BadAddress(f"địa chỉ e-mail “{one_line(addr)}” không hợp lệ")
    plain = _PLAIN_ADDR.fullmatch(addr)
    if plain is not None:
        return Address(display_name=one_line(name), username=plain.group(1), domain=plain.group(2))
    try:
        return Address(display_name=one_line(name), addr_spec=addr)
    except (ValueError, IndexError) as exc:
        raise BadAddress(f"địa chỉ e-mail “{one_line(addr)}” không hợp lệ: {exc}") from None


def envelope_address(addr: str) -> str:
    """The ASCII form for MAIL FROM / RCPT TO (IDN domains punycoded); SMTPUTF8-only ones fail."""
    try:
        if addr.isascii():
            return addr
        info = validate_email(addr, check_deliverability=False)
    except EmailNotValidError as exc:
        raise BadAddress(f"địa chỉ e-mail “{one_line(addr)}” không hợp lệ: {exc}") from None
    if not info.ascii_email:
        raise BadAddress(f"địa chỉ “{one_line(addr)}” cần máy chủ hỗ trợ SMTPUTF8")
    return info.ascii_email


# Encoded-words (RFC 2047) are made here, not by CPython's folder, which splits them inside a word
# ("đôn" → "đô" + "n") and so makes decoders disagree. Checked by tests/test_mail_headers.py against
# Python (policy.default; decode_header) and npm's mailparser:
# * unstructured text (Subject): encoded-words split only at a space, the space carried at the
#   start of the next word (whitespace *between* encoded-words is ignored by every decoder);
# * display names: plain ASCII words stay as they are and each run of other words is ONE
#   encoded-word, so no two encoded-words are adjacent: Python reads the whitespace between two
#   of them in a phrase as a space, RFC 2047 decoders drop it, and no spelling satisfies both.
#   A run too long for one encoded-word (e.g. "học, công nghệ, đổi mới sáng tạo và chuyển đổi
#   số") is written, instead, as a quoted string of encoded-words split at spaces, the form Outlook
#   writes; inside quotes every one of these decoders joins adjacent encoded-words the RFC way.
#   Every line stays ≤ 78 characters.
_LINE = 76
_EW_MAX = 75
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+")     # atext without "=" and "?" (no "=?…?=" lookalike)


def _ew(data: bytes) -> str:
    return "=?utf-8?b?" + base64.b64encode(data).decode("ascii") + "?="


def _ew_len(nbytes: int) -> int:
    return 12 + 4 * ((nbytes + 2) // 3)


def _split_text(text: str, room: int) -> list[str]:
    """Pieces of ``text``, each fitting one encoded-word of ``room`` characters, cut before a space
    (a word longer than a whole encoded-word is cut between characters: nothing else is possible)."""
    pieces: list[str] = []
    words = re.split(r"(?= )", text)                     # "a b c" → ["a", " b", " c"]
    cur = ""
    for w in words:
        if _ew_len(len((cur + w).encode("utf-8"))) <= room:
            cur += w
            continue
        if cur:
            pieces.append(cur)
        cur = ""
        for ch in w:                                       # only when one word is too long by itself
            if cur and _ew_len(len((cur + ch).encode("utf-8"))) > room:
                pieces.append(cur)
                cur = ""
            cur += ch
    if cur:
        pieces.append(cur)
    return pieces


def _fold(tokens: list[str], first: int) -> str:
    """Tokens joined by single spaces, a line break before a token that would pass column 78."""
    out, col = "", first
    for i, t in enumerate(tokens):
        if i == 0:
            out, col = t, first + len(t)
        elif col + 1 + len(t) > 78:
            out += "\n " + t
            col = 1 + len(t)
        else:
            out += " " + t
            col += 1 + len(t)
    return out


def _encoded(text: str, header_name: str | None = None) -> str:
    """Unstructured text (Subject) as RFC 2047 base64 words of whole words, one per line."""
    first = len(header_name) + 2 if header_name else 1
    if text.isascii() and "=?" not in text and all(len(w) + first < 78 for w in text.split(" ")):
        return _fold(text.split(" "), first)
    pieces = _split_text(text, min(_EW_MAX, 78 - first))
    return "\n ".join(_ew(p.encode("utf-8")) for p in pieces)


def _phrase(name: str, first: int) -> list[str]:
    """A display name as phrase tokens (see the rules above); ``first``: columns already used on
    the header's first line."""
    tokens: list[str] = []
    run: list[str] = []
    for w in name.split(" ") + [""]:
        if (not w or _ATOM.fullmatch(w)) and run:
            tokens.append(_ew(" ".join(run).encode("utf-8")))
            run = []
        if _ATOM.fullmatch(w):
            tokens.append(w)
        elif w:
            run.append(w)
    if tokens and all(len(t) <= _EW_MAX for t in tokens) and first + len(tokens[0]) <= 78:
        return tokens
    room = min(_EW_MAX - 1, 78 - first - 1)               # the quote characters
    pieces = [_ew(p.encode("utf-8")) for p in _split_text(name, room)]
    pieces[0], pieces[-1] = '"' + pieces[0], pieces[-1] + '"'
    return pieces


def encode_unstructured(name: str, value: str) -> str:
    return _encoded(one_line(value, 250), name)


def encode_addresses(name: str, addrs: list[Address]) -> str:
    parts = []
    for i, a in enumerate(addrs):
        first = len(name) + 2 if i == 0 else 1
        tokens = _phrase(one_line(a.display_name), first) if a.display_name else []
        tokens.append(f"<{a.addr_spec}>" if tokens else a.addr_spec)
        if i < len(addrs) - 1:
            tokens[-1] += ","                              # counted in the line's length
        parts.append(_fold(tokens, first))
    return "\n ".join(parts)


def _lines_ok(name: str, raw: str) -> bool:
    """Every line short enough to be kept verbatim, no CR, and every continuation line folded."""
    lines = raw.split("\n")
    return ("\r" not in raw and raw.isascii()
            and all(len(line) + (len(name) + 2 if i == 0 else 0) <= 78 for i, line in enumerate(lines))
            and all(line[:1] in (" ", "\t") for line in lines[1:]))


class _Mailbox(NamedTuple):
    """What encode_addresses reads of an Address (display_name, addr_spec); the caller's Address
    objects were validated when they were made (``address``), so they are not parsed again here."""
    display_name: str
    addr_spec: str


# A unit's To header is the same in every pass: cached for a national roll of units (8,500) and more.
@lru_cache(maxsize=16384)
def _address_header(name: str, addrs: tuple[tuple[str, str], ...]) -> str:
    """Encoded and verified once per (header, addresses): parsed back, the structure must match."""
    raw = encode_addresses(name, [_Mailbox(dn, spec) for dn, spec in addrs])  # type: ignore[misc]
    if not _lines_ok(name, raw):
        raise BadAddress(f"không tạo được trường {name} an toàn")
    # Parsed back, the header must name exactly these mailboxes and no other. (Encoded-words hold
    # no commas, quotes or angle brackets, so the fast legacy parser is exact here; display names
    # are this module's base64 encoded-words of one-line text.)
    if [spec for _, spec in getaddresses([raw.replace("\n", "")])] != [spec for _, spec in addrs]:
        raise BadAddress(f"không tạo được trường {name} an toàn")
    return raw


def _set_addresses(msg: EmailMessage, name: str, addrs: list[Address]) -> None:
    msg.set_raw(name, _address_header(name, tuple((a.display_name, a.addr_spec) for a in addrs)))


def _set_text(msg: EmailMessage, name: str, raw: str) -> None:
    """A header we generate (encoded-words or plain ASCII): only the line structure needs checking."""
    if not _lines_ok(name, raw):
        raise BadAddress(f"không tạo được trường {name} an toàn")
    msg.set_raw(name, raw)


# Headers every digest carries, as written (short ASCII constants: nothing to check per message).
_FIXED_HEADERS = (("Content-Language", "vi"),
                  ("Auto-Submitted", "auto-generated"),            # RFC 3834: no auto-replies, no loops
                  ("X-Auto-Response-Suppress", "All"))


@lru_cache(maxsize=64)
def _date_header(date: datetime) -> str:
    """The Date header of a pass (all its digests share its ``now``)."""
    return format_datetime(date)


def build_email(rendered: Rendered, *, delivery_key: str, message_id: str, sender: Address,
                to: list[Address], reply_to: Address | None, date: datetime) -> EmailMessage:
    msg = EmailMessage(policy=policy.SMTP)
    _set_text(msg, "Subject", encode_unstructured("Subject", rendered.subject))
    _set_addresses(msg, "From", [sender])
    _set_addresses(msg, "To", to)
    if reply_to is not None:
        _set_addresses(msg, "Reply-To", [reply_to])
    _set_text(msg, "Date", _date_header(date))
    _set_text(msg, "Message-ID", message_id)
    for name, value in _FIXED_HEADERS:
        msg.set_raw(name, value)
    _set_text(msg, "X-Dondoc-Digest", digest_hash(delivery_key, 16))
    # The parts' headers are fixed strings: stored raw, they skip the header parser (the costliest
    # step of EmailMessage.set_content), which keeps a 5,000-digest run well above 200 messages/s.
    boundary = f"==dondoc-{digest_hash(delivery_key + '|b', 24)}=="
    msg.set_raw("MIME-Version", "1.0")
    msg.set_raw("Content-Type", f'multipart/alternative;\n boundary="{boundary}"')
    msg.set_payload([_part("plain", rendered.text), _part("html", rendered.html)])
    return msg


def _part(subtype: str, text: str) -> EmailMessage:
    """A UTF-8 text part, base64 (7-bit clean whatever the server supports, lines of 76)."""
    part = EmailMessage(policy=policy.SMTP)
    part.set_raw("Content-Type", f'text/{subtype}; charset="utf-8"')
    part.set_raw("Content-Transfer-Encoding", "base64")
    # RFC 2046 canonical form: CRLF line breaks inside the encoded text.
    text = "\r\n".join(text.splitlines()) + "\r\n"
    part.set_payload(base64.encodebytes(text.encode("utf-8")).decode("ascii"))
    return part


def to_bytes(msg: EmailMessage) -> bytes:
    """The message as sent: CRLF line ends, 7-bit clean (base64 bodies, RFC 2047 headers).

    Byte-for-byte what ``msg.as_bytes(policy=policy.SMTP)`` produces for a message from
    build_email (a test checks it), without the generic generator's repeated Content-Type parsing.
    """
    pol = msg.policy
    out = bytearray()
    ctype = None
    for name, value in msg.raw_items():
        if type(value) is str and value.isascii():      # stored raw by build_email, lines checked ≤ 78
            out += f"{name}: {value}".replace("\n", "\r\n").encode("ascii") + b"\r\n"
            if name.lower() == "content-type":
                ctype = value
        else:
            out += pol.fold_binary(name, value)
    out += b"\r\n"
    if msg.is_multipart():
        # The boundary build_email wrote, read back from its raw header: Message.get_boundary parses
        # the header with the full header registry (~0.1 ms a message, a tenth of a full pass).
        m = _BOUNDARY.search(ctype) if ctype is not None else None
        boundary = (m.group(1) if m else msg.get_boundary()).encode("ascii")
        for i, part in enumerate(msg.get_payload()):
            out += (b"\r\n" if i else b"") + b"--" + boundary + b"\r\n" + to_bytes(part)
        out += b"\r\n--" + boundary + b"--\r\n"
    else:
        out += _leaf_payload(msg).replace("\n", "\r\n").encode("ascii")
    return bytes(out)


_BOUNDARY = re.compile(r'boundary="([^"\\]+)"')


def _leaf_payload(part: EmailMessage) -> str:
    """The stored (already base64) text of a part. ``Message.get_payload()`` would parse the part's
    Content-Transfer-Encoding header on every call (~36 µs, twice a message) to return the same
    string; the equality test with ``as_bytes`` (tests/test_notify_templates.py) guards this."""
    payload = getattr(part, "_payload", None)
    return payload if type(payload) is str else part.get_payload()
