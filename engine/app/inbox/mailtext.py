"""Bytes of headers and text parts → Vietnamese text, whatever the sender's mail client did.

Why our own decoding rather than the email package's: its decoders replace what they cannot read
without saying so, and a secretary must be told when a subject or a body may be garbled (unknown
charset, broken UTF-8, raw 8-bit headers). Everything comes out NFC-normalised: cp1258 and macOS
clients send Vietnamese as base letters + combining marks, which would defeat every comparison.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from html.parser import HTMLParser

# Labels seen in the wild that name no codec, or name one under another spelling.
_ALIASES = {"x-unknown": None, "unknown": None, "unknown-8bit": None, "x-user-defined": None, "default": None,
            "windows-1258": "cp1258", "x-cp1258": "cp1258", "vn": None, "vni": None, "tcvn": None,
            "tcvn3": None, "tcvn-5712": None, "utf8": "utf-8", "ansi_x3.4-1968": "ascii"}
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u2028\u2029]")


class Notes:
    """Problems in the order met, each once (a batch of bad parts gives one line, not fifty)."""

    def __init__(self) -> None:
        self._items: dict[str, None] = {}

    def add(self, text: str) -> None:
        self._items.setdefault(text)

    def extend(self, other: "Notes") -> None:
        for t in other.items():
            self.add(t)

    def items(self) -> tuple[str, ...]:
        return tuple(self._items)


def codec_for(charset: str | None) -> str | None:
    """The Python codec for a declared charset, or None when it names none we know."""
    cs = (charset or "").strip().strip("\"'").lower().split("*")[0]
    if not cs:
        return None
    if cs in _ALIASES:
        return _ALIASES[cs]
    try:
        return codecs.lookup(cs).name
    except (LookupError, ValueError):
        return None


def _guess(data: bytes) -> tuple[str, bool]:
    """Undeclared or unknown: UTF-8 if it is valid, else cp1258 (Vietnamese Windows), else latin-1."""
    for codec in ("utf-8", "cp1258"):
        try:
            return data.decode(codec), True
        except UnicodeDecodeError:
            pass
    return data.decode("latin-1"), False


def decode_bytes(data: bytes, charset: str | None, notes: Notes, what: str) -> str:
    """``data`` as text; ``what`` names the place for the note (“tiêu đề”, “nội dung thư” …)."""
    declared = (charset or "").strip().strip("\"'")
    codec = codec_for(declared)
    if codec is None:
        text, ok = _guess(data)
        if declared and declared.lower() not in ("us-ascii", "ascii") and not data.isascii():
            notes.add(f"Bảng mã “{declared[:40]}” của {what} không được hỗ trợ: đã đọc thử theo UTF-8/"
                      "Windows-1258, một số ký tự có thể sai.")
        elif not ok:
            notes.add(f"{what.capitalize()} có ký tự không đọc được: một số chữ có thể bị sai.")
        return unicodedata.normalize("NFC", text)
    try:
        text = data.decode(codec)
    except UnicodeDecodeError:
        try:
            if codec == "utf-8":
                raise
            text = data.decode("utf-8")                 # a part mislabelled by its client
        except UnicodeDecodeError:
            text = data.decode(codec, errors="replace")
            notes.add(f"{what.capitalize()} có ký tự không đọc được theo bảng mã “{declared[:40]}”: "
                      "một số chữ hiện thành dấu �.")
    except (LookupError, ValueError):                   # pragma: no cover - codec_for looked it up
        text = _guess(data)[0]
    return unicodedata.normalize("NFC", text)


def unescape_raw(value: str, notes: Notes, what: str) -> str:
    """A header as the parser stored it: raw 8-bit bytes (surrogate-escaped) are read as text."""
    if any("\udc80" <= c <= "\udcff" for c in value):
        try:
            return decode_bytes(value.encode("utf-8", "surrogateescape"), None, notes, what)
        except UnicodeError:
            return value.encode("utf-8", "replace").decode("utf-8", "replace")
    return value


_EW = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")


def _ew_bytes(enc: str, payload: str) -> bytes | None:
    try:
        if enc in "bB":
            clean = re.sub(r"[^A-Za-z0-9+/]", "", payload)
            return base64.b64decode(clean + "=" * (-len(clean) % 4))
        text = payload.replace("_", " ")
        return re.sub(rb"=([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), text.encode("latin-1"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


def decode_words(value: str, notes: Notes, what: str) -> str:
    """RFC 2047 encoded-words, also the broken forms real clients send: words inside other words,
    a multi-byte character split across two words (adjacent words of one charset are joined as
    bytes before decoding), bad base64 padding, unknown charsets."""
    out: list[str] = []
    pending: tuple[str, bytearray] | None = None       # charset, bytes of adjacent encoded-words
    pos = 0
    prev_word = False                                   # the last thing read was an encoded-word

    def flush() -> None:
        nonlocal pending
        if pending is not None:
            out.append(decode_bytes(bytes(pending[1]), pending[0], notes, what))
            pending = None

    for m in _EW.finditer(value):
        between = value[pos:m.start()]
        pos = m.end()
        data = _ew_bytes(m.group(2), m.group(3))
        if data is None:
            flush()
            notes.add(f"{what.capitalize()} có đoạn mã hóa lỗi: giữ nguyên đoạn đó.")
            out.append(between + m.group(0))
            prev_word = False
            continue
        charset = m.group(1).split("*")[0]
        gap = bool(between.strip())                     # whitespace between two words is dropped
        if pending is not None and not gap and pending[0].lower() == charset.lower():
            pending[1].extend(data)
        else:
            flush()
            if gap or not prev_word:
                out.append(between)
            pending = (charset, bytearray(data))
        prev_word = True
    flush()
    out.append(value[pos:])
    return "".join(out)


def header_text(value: str | None, notes: Notes, what: str, limit: int = 1000) -> str:
    """A header value as one line of text: raw 8-bit read, encoded-words decoded, folds and control
    characters turned to single spaces."""
    if not value:
        return ""
    text = decode_words(unescape_raw(str(value), notes, what), notes, what)
    text = _CTRL.sub(" ", unicodedata.normalize("NFC", text))
    return " ".join(text.split())[:limit]


class _Text(HTMLParser):
    """Visible text of an HTML body: blocks become lines, script/style/head are dropped."""
    _BLOCKS = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote", "hr", "pre"}
    _HIDDEN = {"script", "style", "head", "title", "template"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self.hidden += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Standard library only (html.parser); never raises: a parser failure keeps what was read."""
    p = _Text()
    try:
        p.feed(html)
        p.close()
    except Exception:  # noqa: BLE001 - hostile markup must not stop the reader
        pass
    return tidy("".join(p.parts))


def tidy(text: str) -> str:
    """Lines stripped of trailing blanks, runs of blank lines collapsed, no control characters."""
    text = _CTRL.sub(" ", unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n")))
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
