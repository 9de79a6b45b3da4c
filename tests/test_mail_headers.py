"""Headers every mail client decodes alike (issue 9.7).

Real digests (deliver() to the pickup folder) with long Vietnamese names and subjects are decoded
three ways, and each must give exactly the intended text:
- Python's ``email`` with ``policy.default`` (the modern parser);
- ``email.header.decode_header`` + ``make_header`` (RFC 2047 as written: whitespace between two
  encoded-words is dropped), applied to the display name the way programs do (parseaddr first);
- npm's ``mailparser`` under node (the parser of Nodemailer's family), installed on first use into
  the git-ignored tests/node/node_modules from tests/node/package.json.
Before the fix, Python read the From as "Hệ thống đô n đốc báo cáo": CPython's folder split
"đôn" across two encoded-words.
"""

from __future__ import annotations

import email
import json
import shutil
import subprocess
from datetime import datetime
from email import policy
from email.header import decode_header, make_header
from email.utils import getaddresses
from pathlib import Path

import pytest
from sqlmodel import select

from engine.clock import TZ
from engine.db import session
from engine.sync import sync_instances
from notifications.config import DeliveryConfig, SmtpConfig
from notifications.delivery import deliver
from notifications.mime import address, build_email, to_bytes
from notifications.models import DeliveryRow
from notifications.render import Rendered
from tests.support import add_notice, instance

NODE_DIR = Path(__file__).parent / "node"
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=TZ)

FROM_NAME = "Hệ thống đôn đốc báo cáo"
NAMES = {
    # the unit names of the digests: short, long with ASCII words between runs, one long run of
    # non-ASCII words (the quoted form), ASCII specials that must be quoted/encoded
    "skhcn": "Ban Chỉ đạo Trung ương về phát triển khoa học, công nghệ, đổi mới sáng tạo và chuyển đổi số",
    "baogl": "Ủy ban nhân dân tỉnh Bắc Ninh – Văn phòng Ủy ban nhân dân tỉnh (đầu mối tổng hợp)",
    "vp": "Văn phòng Tỉnh ủy, Ban Thường vụ \"Tổ công tác\" <đặc biệt>; số 1",
}


@pytest.fixture(scope="module")
def mailparser() -> Path:
    """tests/node with mailparser installed (npm install on first use); skipped only without node."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None:
        pytest.skip("node không có trên máy này: bỏ qua bộ giải mã mailparser (npm)")
    if not (NODE_DIR / "node_modules" / "mailparser").is_dir():
        if npm is None:
            pytest.fail("có node nhưng không có npm: không cài được mailparser (tests/node/package.json)")
        res = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR,
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, f"npm install trong tests/node thất bại: {res.stderr[-2000:]}"
    return NODE_DIR


def node_decode(messages: list[bytes]) -> list[dict]:
    res = subprocess.run(["node", str(NODE_DIR / "decode.js")], input=json.dumps([m.decode("ascii") for m in messages]),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def python_default(data: bytes) -> dict:
    m = email.message_from_bytes(data, policy=policy.default)

    def addrs(h: str):
        return [(a.display_name, a.addr_spec) for a in m[h].addresses] if m[h] is not None else None
    return {"from": addrs("From"), "to": addrs("To"), "reply_to": addrs("Reply-To"), "subject": str(m["Subject"])}


def python_decode_header(data: bytes) -> dict:
    m = email.message_from_bytes(data, policy=policy.compat32)

    def text(raw: str) -> str:
        return str(make_header(decode_header(raw)))

    def addrs(h: str):
        raw = m[h]
        if raw is None:
            return None
        unfolded = raw.replace("\r\n", "").replace("\n", "")      # RFC 5322 unfolding, then the addresses
        return [(text(name), spec) for name, spec in getaddresses([unfolded])]
    return {"from": addrs("From"), "to": addrs("To"), "reply_to": addrs("Reply-To"), "subject": text(m["Subject"])}


def from_node(d: dict) -> dict:
    def addrs(v):
        return [(a["name"], a["address"]) for a in v] if v is not None else None
    return {"from": addrs(d["from"]), "to": addrs(d["to"]), "reply_to": addrs(d["replyTo"]), "subject": d["subject"]}


@pytest.fixture
def digests(tmp_path, sqlite_url, minipack) -> list[tuple[bytes, dict]]:
    """Three real digests written by deliver() to the pickup folder, and the text each header means."""
    for uid, name in NAMES.items():
        minipack.units[uid] = minipack.units[uid].model_copy(update={"name": name})
    with session(sqlite_url) as s:
        sync_instances(s, minipack, NOW.replace(hour=7))
        year = instance(s, "nam-skhcn", "skhcn", "2026")
        octo = instance(s, "thang", "skhcn", "2026-10")
        add_notice(s, year, "remind-3")
        add_notice(s, octo, "overdue-repeat-1")
        add_notice(s, octo, "escalation", recipient="vp")
        add_notice(s, instance(s, "nam-skhcn", "baogl", "2026"), "remind-3")
        s.commit()
    out = tmp_path / "out"
    rep = deliver(sqlite_url, minipack, NOW, delivery=DeliveryConfig(),
                  smtp=SmtpConfig(host=None, pickup_dir=out, from_addr="dondoc@vptu.example.org", from_name=FROM_NAME))
    assert rep.sent == 3
    with session(sqlite_url) as s:
        rows = {d.file_name: d for d in s.exec(select(DeliveryRow)).all()}   # files named by date and recipient (11.8)
    vp = minipack.units["vp"]
    got = []
    for f in sorted(out.glob("*.eml")):
        d = rows[f.name]
        unit = minipack.units[d.recipient]
        got.append((f.read_bytes(), {"from": [(FROM_NAME, "dondoc@vptu.example.org")],
                                     "to": [(unit.name, c) for c in unit.contacts],
                                     "reply_to": [(vp.name, vp.contacts[0])], "subject": d.subject}))
    assert len(got) == 3 and all(len(e["subject"]) > 60 for _, e in got)
    return got


def test_python_default_and_decode_header_read_what_was_meant(digests) -> None:
    for data, expected in digests:
        assert data.isascii() and all(len(line) <= 78 for line in data.split(b"\r\n"))
        assert python_default(data) == expected
        assert python_decode_header(data) == expected


def test_mailparser_reads_what_was_meant(digests, mailparser) -> None:
    decoded = node_decode([d for d, _ in digests])
    for (_, expected), got in zip(digests, decoded):
        assert from_node(got) == expected


@pytest.mark.parametrize("name", [
    FROM_NAME,
    "Hệ thống đôn đốc báo cáo tự động của Văn phòng Tỉnh ủy tỉnh Bắc Ninh (không trả lời thư này)",
    "Trường Đại học Sư phạm Kỹ thuật Thành phố Hồ Chí Minh",
    "Sở Thông tin và Truyền thông",
    "Dondoc, Office <ops>",
    "Nguyễn Văn A; Trần Thị B",
    "ASCII only name that is quite long and goes on and on beyond sixty characters",
    "Đường dây nóng",
])
def test_every_decoder_agrees_on_names_and_subjects(name, mailparser) -> None:
    """Built directly (no database): many name shapes, the same three decoders."""
    subject = f"[Đôn đốc báo cáo] {name}: 1 báo cáo quá hạn, 2 đến hạn hôm nay, 3 sắp đến hạn, tổng hợp chỉ tiêu"
    msg = build_email(Rendered(subject, "x", "<p>x</p>", "x"), delivery_key=name, message_id="<k.dondoc@example.org>",
                      sender=address(name, "dondoc@example.org"), to=[address(name, "a@example.org"),
                                                                       address("Sở Tài chính", "b@example.org")],
                      reply_to=address(name, "vp@example.org"), date=NOW)
    data = to_bytes(msg)
    assert all(len(line) <= 78 for line in data.split(b"\r\n"))
    expected = {"from": [(name, "dondoc@example.org")], "to": [(name, "a@example.org"), ("Sở Tài chính", "b@example.org")],
                "reply_to": [(name, "vp@example.org")], "subject": subject}
    assert python_default(data) == expected
    assert python_decode_header(data) == expected
    assert from_node(node_decode([data])[0]) == expected
