"""The malformed-mail corpus (issue 14, item 3): every case parsed without an exception and with the
outcome a secretary needs (text decoded, attachment kept or skipped with its reason, problem noted)."""

from __future__ import annotations

import base64
import hashlib
import random
import unicodedata
from collections.abc import Callable
from datetime import timezone
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from engine.app.inbox import parse as parse_mod
from engine.app.inbox.model import InboundMail, normalise_id
from engine.app.inbox.parse import Limits, parse

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "inbox"
PDF = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n%%EOF\n"
B64_PDF = base64.b64encode(PDF)


TONES = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}


def cp1258(text: str) -> bytes:
    """Vietnamese as Windows-1258 writes it: precomposed letters where the code page has them,
    otherwise the base letter followed by a combining tone mark."""
    out = b""
    for ch in unicodedata.normalize("NFC", text):
        try:
            out += ch.encode("cp1258")
        except UnicodeEncodeError:
            d = unicodedata.normalize("NFD", ch)
            out += (unicodedata.normalize("NFC", "".join(c for c in d if c not in TONES)).encode("cp1258")
                    + "".join(c for c in d if c in TONES).encode("cp1258"))
    return out


def raw(headers: str | bytes, body: bytes = b"Kinh gui Van phong.\r\n", *, mid: bool = True) -> bytes:
    """A message from header lines (LF in the source, CRLF on the wire) and a body."""
    h = headers.encode("utf-8") if isinstance(headers, str) else headers
    if mid and b"message-id:" not in h.lower():
        h = b"Message-ID: <case@example.org>\n" + h
    return h.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b"\r\n" + body


def mixed(parts: list[bytes], head: str = "From: vanthu.so-tai-chinh@example.org\nSubject: x\n",
          boundary: str = "BND") -> bytes:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + p.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                    + b"\r\n" for p in parts) + b"--" + boundary.encode() + b"--\r\n"
    return raw(head + f'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="{boundary}"\n', body)


def part(headers: str | bytes, body: bytes) -> bytes:
    h = headers.encode("utf-8") if isinstance(headers, str) else headers
    return h + b"\n\n" + body


TEXT = part("Content-Type: text/plain; charset=utf-8", "Kính gửi Văn phòng Tỉnh ủy".encode())


def pdf(disposition: str | bytes, ctype: str = "application/pdf") -> bytes:
    d = disposition.encode("utf-8") if isinstance(disposition, str) else disposition
    return (f"Content-Type: {ctype}\nContent-Transfer-Encoding: base64\n".encode() + b"Content-Disposition: " + d
            + b"\n\n" + B64_PDF)


def has(mail: InboundMail, *words: str) -> bool:
    """A problem note containing every one of ``words``."""
    return any(all(w in p for w in words) for p in mail.problems)


def nested(depth: int) -> bytes:
    body = "Content-Type: text/plain\n\nđáy"
    for i in range(depth):
        body = f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n{body}\n--b{i}--\n'
    return raw("From: a@example.org\nMIME-Version: 1.0\n" + body.split("\n\n", 1)[0] + "\n",
               body.split("\n\n", 1)[1].replace("\n", "\r\n").encode("utf-8"))


def forwarded() -> bytes:
    inner = EmailMessage()
    inner["From"], inner["Subject"], inner["Message-ID"] = "a@example.org", "Báo cáo gốc", "<inner@example.org>"
    inner.set_content("nội dung gốc")
    inner.add_attachment(PDF, maintype="application", subtype="pdf", filename="goc.pdf")
    outer = EmailMessage()
    outer["From"], outer["Subject"], outer["Message-ID"] = "b@example.org", "Fwd: Báo cáo gốc", "<outer@example.org>"
    outer.set_content("Chuyển tiếp báo cáo.")
    outer.add_attachment(inner)
    return outer.as_bytes()


def many(n: int) -> bytes:
    return mixed([TEXT] + [pdf(f"attachment; filename=bc-{i:02d}.pdf") for i in range(n)])


def check_ok(m: InboundMail) -> bool:
    return not m.problems


# (id, raw bytes, limits or None, expectation on the result)
CASES: list[tuple[str, bytes, Limits | None, Callable[[InboundMail], object]]] = [
    ("plain-utf8-report", mixed([TEXT, pdf('attachment; filename="bao-cao.pdf"')],
                                "From: =?utf-8?b?VsSDbiB0aMawIFPhu58gVMOgaSBjaMOtbmg=?= <vanthu.so-tai-chinh@example.org>\n"
                                "Subject: =?utf-8?b?QsOhbyBjw6FvIHRow6FuZyAxMS8yMDI2?=\n"),
     None, lambda m: (m.subject == "Báo cáo tháng 11/2026" and m.from_name == "Văn thư Sở Tài chính"
                      and m.from_addr == "vanthu.so-tai-chinh@example.org" and m.text == "Kính gửi Văn phòng Tỉnh ủy"
                      and m.attachments[0].data == PDF and m.attachments[0].sha256 == hashlib.sha256(PDF).hexdigest()
                      and check_ok(m))),
    ("empty-bytes", b"", None, lambda m: m.message_id == "sha256:" + hashlib.sha256(b"").hexdigest()
     and has(m, "không ghi người gửi")),
    ("binary-garbage", bytes(range(256)) * 40, None, lambda m: m.message_id.startswith("sha256:") and m.from_addr == ""),
    ("headers-only-no-separator", b"From: a@example.org\r\nSubject: chi co tieu de", None,
     lambda m: m.from_addr == "a@example.org" and m.text == ""),
    ("no-message-id-hash-key", raw("From: a@example.org\nSubject: x\n", mid=False), None,
     lambda m: (not m.has_message_id and m.message_id == "sha256:" + m.raw_sha256 and has(m, "Message-ID"))),
    ("message-id-without-brackets", raw("Message-ID: abc.123@MAIL.Example.ORG\nFrom: a@example.org\n"), None,
     lambda m: m.message_id == "<abc.123@mail.example.org>" and m.has_message_id),
    ("message-id-garbage", raw("Message-ID: <<>> ???\nFrom: a@example.org\n"), None,
     lambda m: m.message_id.startswith("sha256:") and has(m, "Message-ID")),
    ("subject-q-split-multibyte", raw("From: a@example.org\nSubject: =?utf-8?q?B=C3=A1o_c=C3?= =?utf-8?q?=A1o_qu=C3=BD_IV?=\n"),
     None, lambda m: m.subject == "Báo cáo quý IV" and check_ok(m)),
    ("subject-unknown-charset", raw("From: a@example.org\nSubject: =?x-unknown?q?B=E1o_c=E1o_n=E3m?=\n"), None,
     lambda m: m.subject.startswith("Báo cáo") and has(m, "x-unknown", "tiêu đề")),
    ("subject-raw-8bit-utf8", raw("From: a@example.org\nSubject: Báo cáo tháng 11/2026\n".encode("utf-8")), None,
     lambda m: m.subject == "Báo cáo tháng 11/2026"),
    ("subject-raw-8bit-cp1258", raw(b"From: a@example.org\nSubject: " + cp1258("Báo cáo quý IV") + b"\n"), None,
     lambda m: m.subject == "Báo cáo quý IV"),
    ("subject-folded-tabs", raw("From: a@example.org\nSubject: Báo\n\t cáo   tháng\n  11/2026 \n"), None,
     lambda m: m.subject == "Báo cáo tháng 11/2026"),
    ("subject-bad-base64-word", raw("From: a@example.org\nSubject: =?utf-8?b?QsOhbyBjw6Fv====?= =?utf-8?b?%%%?=\n"), None,
     lambda m: m.subject.startswith("Báo cáo")),
    ("subject-10k-chars", raw("From: a@example.org\nSubject: " + "Báo cáo " * 1300 + "\n"), None,
     lambda m: 0 < len(m.subject) <= 500),
    ("body-cp1258", raw("From: a@example.org\nContent-Type: text/plain; charset=windows-1258\n",
                        cp1258("Báo cáo quý IV/2026")), None,
     lambda m: m.text == "Báo cáo quý IV/2026" and check_ok(m)),
    ("body-windows-1252", raw("From: a@example.org\nContent-Type: text/plain; charset=windows-1252\n",
                              "Résumé – “quoted”".encode("cp1252")), None, lambda m: m.text == "Résumé – “quoted”"),
    ("body-x-unknown-charset", raw("From: a@example.org\nContent-Type: text/plain; charset=x-unknown\n",
                                   "Báo cáo năm 2026".encode("utf-8")), None,
     lambda m: m.text == "Báo cáo năm 2026" and has(m, "x-unknown", "nội dung")),
    ("body-utf8-with-errors", raw("From: a@example.org\nContent-Type: text/plain; charset=utf-8\n",
                                  "Báo cáo ".encode() + b"\xff\xfe\xc3" + " năm".encode()), None,
     lambda m: m.text.startswith("Báo cáo") and has(m, "không đọc được", "utf-8")),
    ("body-ascii-declared-but-utf8", raw("From: a@example.org\nContent-Type: text/plain; charset=us-ascii\n",
                                         "Đơn vị báo cáo".encode()), None, lambda m: m.text == "Đơn vị báo cáo"),
    ("body-nfd-normalised", raw("From: a@example.org\nContent-Type: text/plain; charset=utf-8\n",
                                "Ba\u0301o ca\u0301o".encode()), None, lambda m: m.text == "Báo cáo"),
    ("body-html-only", raw("From: a@example.org\nContent-Type: text/html; charset=utf-8\n",
                           "<html><head><style>p{}</style><script>alert(1)</script></head><body><p>Kính gửi&nbsp;VP"
                           "</p><div>Báo cáo <b>tháng 11</b></div></body></html>".encode()), None,
     lambda m: m.text == "Kính gửi VP\n\nBáo cáo tháng 11" and "alert" not in m.text),
    ("body-quoted-printable", raw("From: a@example.org\nContent-Type: text/plain; charset=utf-8\n"
                                  "Content-Transfer-Encoding: quoted-printable\n", b"B=C3=A1o c=C3=A1o =\r\nn=C4=83m"),
     None, lambda m: m.text == "Báo cáo năm"),
    ("filename-rfc2231", mixed([TEXT, pdf("attachment; filename*=utf-8''B%C3%A1o%20c%C3%A1o%20th%C3%A1ng%2011.pdf")]),
     None, lambda m: m.attachments[0].filename == "Báo cáo tháng 11.pdf"),
    ("filename-rfc2231-continuation", mixed([TEXT, pdf("attachment;\n filename*0*=utf-8''B%C3%A1o%20c%C3%A1o;\n"
                                                       " filename*1*=%20qu%C3%BD%20IV.pdf")]),
     None, lambda m: m.attachments[0].filename == "Báo cáo quý IV.pdf"),
    ("filename-encoded-word", mixed([TEXT, pdf('attachment; filename="=?utf-8?B?QsOhbyBjw6FvIDEyMy1CQy1TVEMucGRm?="')]),
     None, lambda m: m.attachments[0].filename == "Báo cáo 123-BC-STC.pdf"),
    ("filename-raw-8bit", mixed([TEXT, pdf('attachment; filename="Báo cáo năm.pdf"'.encode())]), None,
     lambda m: m.attachments[0].filename == "Báo cáo năm.pdf"),
    ("filename-rfc2231-unknown-charset", mixed([TEXT, pdf("attachment; filename*=x-bogus''B%E1o.pdf")]), None,
     lambda m: m.attachments[0].filename.endswith(".pdf") and m.attachments[0].data == PDF),
    ("filename-path-traversal", mixed([TEXT, pdf('attachment; filename="../../etc/passwd"')]), None,
     lambda m: m.attachments[0].filename == "passwd"),
    ("filename-only-in-content-type", mixed([TEXT, b"Content-Type: application/pdf; name=\"bc.pdf\"\n"
                                            b"Content-Transfer-Encoding: base64\n\n" + B64_PDF]), None,
     lambda m: m.attachments[0].filename == "bc.pdf" and m.attachments[0].content_type == "application/pdf"),
    ("zip-kept-not-unpacked", mixed([TEXT, b"Content-Type: application/zip\nContent-Transfer-Encoding: base64\n"
                                    b"Content-Disposition: attachment; filename=baocao.zip\n\n"
                                    + base64.b64encode(b"PK\x03\x04" + b"\x00" * 40)]), None,
     lambda m: (m.attachments[0].archive and m.attachments[0].data.startswith(b"PK\x03\x04")
                and len(m.attachments) == 1 and has(m, "baocao.zip", "không giải nén"))),
    ("too-many-attachments", many(25), None,
     lambda m: (len(m.attachments) == 20 and len(m.skipped) == 5 and m.skipped[0].filename == "bc-20.pdf"
                and "quá 20 tệp" in m.skipped[0].reason and has(m, "Bỏ qua tệp đính kèm", "bc-24.pdf"))),
    ("too-big-total", many(3), Limits(max_total_bytes=2 * len(PDF) + 1),
     lambda m: (len(m.attachments) == 2 and m.skipped[0].filename == "bc-02.pdf"
                and "vượt tổng dung lượng" in m.skipped[0].reason)),
    ("bad-base64-attachment", mixed([TEXT, b"Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n"
                                    b"Content-Disposition: attachment; filename=a.pdf\n\nJVB!!ERi0x*"]), None,
     lambda m: m.attachments[0].data == b"%PDF-1" and has(m, "a.pdf", "bị lỗi")),
    ("truncated-mid-attachment", mixed([TEXT, pdf("attachment; filename=a.pdf")])[:-40], None,
     lambda m: m.text == "Kính gửi Văn phòng Tỉnh ủy" and m.attachments and has(m, "cắt cụt")),
    ("multipart-without-boundary", raw("From: a@example.org\nMIME-Version: 1.0\nContent-Type: multipart/mixed\n",
                                       b"Noi dung khong co ranh gioi\r\n"), None,
     lambda m: "Noi dung" in m.text and not m.attachments and has(m, "cắt cụt")),
    ("nested-alternative-related", mixed([b'Content-Type: multipart/alternative; boundary="ALT"\n\n--ALT\n'
                                         + TEXT + b'\n--ALT\nContent-Type: multipart/related; boundary="REL"\n\n--REL\n'
                                         b"Content-Type: text/html; charset=utf-8\n\n<p>html</p>\n--REL\n"
                                         b"Content-Type: image/png\nContent-Disposition: inline; filename=logo.png\n"
                                         b"Content-ID: <logo>\n\nPNG\n--REL--\n--ALT--",
                                         pdf("attachment; filename=bc.pdf")]), None,
     lambda m: (m.text == "Kính gửi Văn phòng Tỉnh ủy" and [a.filename for a in m.attachments] == ["logo.png", "bc.pdf"]
                and m.attachments[0].inline and not m.attachments[1].inline)),
    ("nested-200-levels", nested(200), None, lambda m: has(m, "lồng quá nhiều lớp") or has(m, "dự phòng")),
    ("nested-3-levels", nested(3), None, lambda m: m.text == "đáy" and check_ok(m)),
    ("forwarded-message-rfc822", forwarded(), None,
     lambda m: (m.text == "Chuyển tiếp báo cáo." and [a.filename for a in m.attachments] == ["Báo cáo gốc.eml"]
                and b"goc.pdf" in m.attachments[0].data and has(m, "thư chuyển tiếp"))),
    ("from-without-address", raw("From: Van thu So Tai chinh\nSubject: x\n"), None,
     lambda m: m.from_addr == "" and has(m, "Không đọc được địa chỉ người gửi")),
    ("from-missing", raw("Subject: x\n"), None, lambda m: m.from_addr == "" and has(m, "không ghi người gửi")),
    ("from-group-syntax", raw("From: undisclosed-recipients:;\nTo: undisclosed-recipients:;\n"), None,
     lambda m: m.from_addr == "" and m.to == ()),
    ("from-name-with-encoded-comma", raw("From: =?utf-8?b?Tmd1eeG7hW4sIFbEg24gQQ==?= <a@example.org>\n"
                                         "To: x@example.org, =?utf-8?q?Ph=C3=B2ng?= <y@example.org>\n"), None,
     lambda m: m.from_name == "Nguyễn, Văn A" and m.from_addr == "a@example.org"
     and m.to == ("x@example.org", "y@example.org")),
    ("from-raw-8bit-name", raw("From: Văn thư <vanthu@example.org>\n".encode()), None,
     lambda m: m.from_name == "Văn thư" and m.from_addr == "vanthu@example.org"),
    ("date-minus-0000", raw("From: a@example.org\nDate: Mon, 30 Nov 2026 10:00:00 -0000\n"), None,
     lambda m: m.date is not None and m.date.tzinfo is not None and m.date.astimezone(timezone.utc).hour == 10),
    ("date-garbage", raw("From: a@example.org\nDate: 99 Foo 20266 99:99\n"), None,
     lambda m: m.date is None and has(m, "Ngày gửi")),
    ("date-missing", raw("From: a@example.org\n"), None, lambda m: m.date is None and check_ok(m)),
    ("references-folded-and-cased", raw("From: a@example.org\nIn-Reply-To: <abc.dondoc@EXAMPLE.org>\n"
                                        "References: <x1@a.vn>\n\t<abc.dondoc@example.ORG>  junk <x2@a.vn>\n"), None,
     lambda m: (m.in_reply_to == ("<abc.dondoc@example.org>",)
                and m.references == ("<x1@a.vn>", "<abc.dondoc@example.org>", "<x2@a.vn>")
                and m.thread_ids[0] == "<abc.dondoc@example.org>")),
    ("continuation-as-first-line", b" continuation first\r\nFrom: a@example.org\r\nSubject: x\r\n\r\nbody", None,
     lambda m: has(m, "header") and isinstance(m.subject, str)),
    ("nul-and-controls-in-header", raw(b"From: a@example.org\nSubject: a\x00b\x07c\n"), None,
     lambda m: m.subject == "a b c"),
    ("content-type-malformed", raw("From: a@example.org\nContent-Type: text/\n", b"noi dung"), None,
     lambda m: m.text == "noi dung" and not m.attachments),
    ("unknown-transfer-encoding", raw("From: a@example.org\nContent-Type: application/pdf; name=a.pdf\n"
                                      "Content-Transfer-Encoding: x-uuencode\n", b"\x00\xff\x10"), None,
     lambda m: m.attachments[0].data == b"\x00\xff\x10" and m.attachments[0].filename == "a.pdf"),
    ("bare-lf-line-ends", b"Message-ID: <lf@example.org>\nFrom: a@example.org\nSubject: =?utf-8?q?B=C3=A1o?=\n\nbody\n",
     None, lambda m: m.subject == "Báo" and m.text == "body"),
    ("over-raw-size-limit", mixed([TEXT, pdf("attachment; filename=a.pdf")]), Limits(max_raw_bytes=300),
     lambda m: m.from_addr == "vanthu.so-tai-chinh@example.org" and not m.attachments and has(m, "Thư quá lớn")),
    ("dsn-structure", (FIXTURES / "dsn-postfix.eml").read_bytes(), None,
     lambda m: (m.content_type == "multipart/report" and m.report_type == "delivery-status"
                and "message/delivery-status" in m.part_types and m.from_addr == "MAILER-DAEMON@mx.example.org")),
    ("report-cp1258-fixture", (FIXTURES / "report-cp1258.eml").read_bytes(), None,
     lambda m: (m.subject == "Báo cáo tháng 11/2026 kết quả thực hiện KHHĐ" and "Sở Tài chính" in m.text
                and m.attachments[0].filename == "Báo cáo 123-BC-STC.pdf")),
]


@pytest.mark.parametrize("name,data,limits,expect", CASES, ids=[c[0] for c in CASES])
def test_corpus_case(name: str, data: bytes, limits: Limits | None,
                     expect: Callable[[InboundMail], object]) -> None:
    mail = parse(data, limits) if limits else parse(data)
    assert isinstance(mail, InboundMail)
    assert mail.message_id and mail.raw_sha256 == hashlib.sha256(data).hexdigest()
    assert expect(mail), (name, mail.subject, mail.text[:200], mail.problems,
                          [(a.filename, a.size) for a in mail.attachments])


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 30


def test_the_same_bytes_give_the_same_key() -> None:
    """The dedup key of a message without Message-ID is stable across runs and changes with content."""
    a = raw("From: a@example.org\nSubject: x\n", mid=False)
    assert parse(a).message_id == parse(a).message_id
    assert parse(a).message_id != parse(a + b"!").message_id


def test_fallback_to_compat32_when_policy_default_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """A header that policy.default cannot model must not cost the message: compat32 reads it."""
    real = BytesParser.parsebytes

    def boom(self: BytesParser, data: bytes, headersonly: bool = False):  # type: ignore[no-untyped-def]
        if self.parser.policy is parse_mod.email_policy.default:
            raise IndexError("simulated policy.default failure")
        return real(self, data, headersonly)

    monkeypatch.setattr(BytesParser, "parsebytes", boom)
    m = parse(mixed([TEXT, pdf("attachment; filename*=utf-8''B%C3%A1o.pdf")],
                    "From: a@example.org\nSubject: =?utf-8?q?B=C3=A1o_c=C3=A1o?=\n"))
    assert m.subject == "Báo cáo" and m.attachments[0].filename == "Báo.pdf" and m.text
    assert has(m, "dự phòng")


def test_never_raises_even_when_both_parsers_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: BytesParser, data: bytes, headersonly: bool = False):  # type: ignore[no-untyped-def]
        raise RecursionError("simulated")

    monkeypatch.setattr(BytesParser, "parsebytes", boom)
    m = parse(b"From: a@example.org\r\n\r\nx")
    assert m.message_id.startswith("sha256:") and has(m, "Không đọc được nội dung thư")


def test_mutated_messages_never_raise() -> None:
    """A seeded fuzz over a realistic message: truncations, flipped bytes, duplicated and deleted
    slices. Every result is an InboundMail with a key; nothing raises."""
    base = (FIXTURES / "report-cp1258.eml").read_bytes()
    rnd = random.Random(14)
    for _ in range(400):
        data = bytearray(base)
        for _ in range(rnd.randint(1, 6)):
            op = rnd.random()
            i = rnd.randrange(len(data) or 1)
            if op < 0.3:
                data = data[:i]
            elif op < 0.6 and data:
                data[i % len(data)] = rnd.randrange(256)
            elif op < 0.8:
                j = rnd.randrange(i, len(data) + 1)
                data[i:i] = data[i:j]
            else:
                del data[i:i + rnd.randint(1, 80)]
        m = parse(bytes(data))
        assert isinstance(m, InboundMail) and m.message_id


def test_normalise_id_lowercases_only_the_domain() -> None:
    assert normalise_id(" <AbC.dondoc@Example.ORG> ") == "<AbC.dondoc@example.org>"
    assert normalise_id("no id here") is None and normalise_id(None) is None
