"""/hop-thu-di: the digests sent, waiting and failed — to whom, when, why — with filters and pages,
and a failed one put back in the queue by a secretary (services.outbox_retry, audited).

The module's installation runs the real evaluation and one delivery pass to the pickup folder (50
digests sent on 02/12/2026 09:00); failures are then written into chosen digests (a refused
address), as an SMTP server's permanent refusal would leave them.
"""

from __future__ import annotations

from datetime import timedelta
from html import escape

import pytest
import sqlalchemy as sa

from engine.app import services
from engine.app.services import open_session
from engine.state import AuditRow, DeliveryRow
from tests.web_support import Console, text_of

REFUSED = "Máy chủ từ chối địa chỉ nhận: 550 5.1.1 <vanthu@so-khong-co.gov.vn>: Recipient address rejected"


@pytest.fixture(scope="module")
def console(tmp_path_factory) -> Console:
    con = Console(tmp_path_factory.mktemp("outbox"))
    services.evaluate(con.settings.database.url, con.pack, con.now, con.settings)
    rep = services.deliver(con.settings.database.url, con.pack, con.now, con.settings)
    assert rep.sent >= 40 and rep.failed == 0
    return con


class Failing:
    """Sent digests turned into failed ones, one per call (newest first, never twice)."""

    def __init__(self, con: Console):
        self.con = con
        with open_session(con.settings) as ses:
            # only the digests of the real delivery pass: the extra old rows another test adds have no
            # notice behind them, so a retry of one would (rightly) be dropped, not sent
            self._ids = iter(ses.execute(sa.select(DeliveryRow.id).where(DeliveryRow.status == "sent",
                                                                         ~DeliveryRow.key.like("email|extra|%"))
                                         .order_by(DeliveryRow.id.desc())).scalars().all())

    def __call__(self) -> int:
        did = next(self._ids)
        with open_session(self.con.settings) as ses:
            d = ses.get(DeliveryRow, did)
            d.status, d.sent_at, d.attempts, d.next_attempt_at = "failed", None, 3, None
            d.last_error, d.updated_at = REFUSED, self.con.now
            ses.add(d)
            ses.commit()
        return did


@pytest.fixture(scope="module")
def failing(console: Console) -> Failing:
    return Failing(console)


def row(con: Console, did: int) -> tuple:
    with open_session(con.settings) as ses:
        return ses.execute(sa.select(DeliveryRow.status, DeliveryRow.attempts, DeliveryRow.last_error, DeliveryRow.sent_at,
                                     DeliveryRow.message_id).where(DeliveryRow.id == did)).one()


def recipient_name(con: Console, did: int) -> str:
    with open_session(con.settings) as ses:
        return con.pack.units[ses.get(DeliveryRow, did).recipient].name


def audit(con: Console) -> list[tuple[str, str, str]]:
    with open_session(con.settings) as ses:
        return [tuple(r) for r in ses.execute(sa.select(AuditRow.actor, AuditRow.action, AuditRow.entity_id)
                                              .where(AuditRow.entity == "delivery")).all()]


def test_outbox_lists_what_was_sent_to_whom_and_when(console: Console) -> None:
    r = console.client("lanh.dao").get("/hop-thu-di")
    assert r.status_code == 200
    body = text_of(r.text)
    assert "Thư đã gửi" in body and "Đã gửi" in body and "Gửi lúc 02/12/2026 09:00" in body
    assert "[Đôn đốc báo cáo]" in body and "E-mail" in body
    assert "Văn phòng Tỉnh ủy" in body                       # recipients by name …
    assert 'href="/don-vi/vp-tinh-uy"' in r.text and ">vp-tinh-uy<" not in r.text   # … never by id as text
    assert "Gửi lại" not in body.replace("“Gửi lại”", "")    # a leader has no retry button


def test_a_failed_digest_shows_its_reason_and_the_filters_find_it(console: Console, failing: Failing) -> None:
    did = failing()
    name = recipient_name(console, did)
    c = console.client("thu.ky")
    page = c.get("/hop-thu-di?trang-thai=failed").text
    body = text_of(page)
    assert "Gửi không thành công" in body and escape(REFUSED, quote=False) in page and name in body
    assert "<vanthu@" not in page                             # the server's words are escaped
    assert "Đã gửi 1" not in body                            # only failed digests in this view
    with open_session(console.settings) as ses:
        rcpt = ses.get(DeliveryRow, did).recipient
    page = c.get(f"/hop-thu-di?trang-thai=failed&don-vi={rcpt}").text
    assert f'action="/hop-thu-di/{did}/gui-lai"' in page and page.count(escape(REFUSED, quote=False)) == 1
    assert f"1 thư gửi {name}" in text_of(page)
    assert "Không có thư nào" in text_of(c.get("/hop-thu-di?trang-thai=dropped").text)


def test_pages_of_fifty_newest_first(console: Console) -> None:
    with open_session(console.settings) as ses:
        base = ses.execute(sa.select(sa.func.count()).select_from(DeliveryRow)).scalar_one()
        for n in range(max(0, 55 - base)):                            # a few more digests to make two pages
            ses.add(DeliveryRow(key=f"email|extra|{n}", recipient="so-tai-chinh", channel="email", route="email",
                                message_id=f"<extra-{n}@test>", status="sent", attempts=1,
                                created_at=console.now - timedelta(days=40), updated_at=console.now - timedelta(days=40),
                                sent_at=console.now - timedelta(days=40), subject=f"Thư cũ số {n}"))
        ses.commit()
        ids = ses.execute(sa.select(DeliveryRow.id).order_by(DeliveryRow.id.desc())).scalars().all()
        newest, oldest = (ses.get(DeliveryRow, i).subject for i in (ids[0], ids[-1]))
    c = console.client("thu.ky")
    first = c.get("/hop-thu-di?trang-thai=all").text
    assert first.count("<tr>") == 1 + 50 and "trang 1/2" in text_of(first)
    assert 'href="/hop-thu-di?trang-thai=all&amp;trang=2"' in first
    second = c.get("/hop-thu-di?trang-thai=all&trang=2").text
    assert second.count("<tr>") == 1 + len(ids) - 50 and "trang 2/2" in text_of(second)
    assert newest in text_of(first) and newest not in text_of(second)
    assert oldest in text_of(second) and oldest not in text_of(first)
    assert c.get("/hop-thu-di?trang=999").status_code == 200  # past the end: the last page
    assert c.get("/hop-thu-di?trang=-1&trang-thai=<b>").status_code == 200


def test_retry_puts_a_failed_digest_back_in_the_queue_and_it_goes_out(console: Console, failing: Failing) -> None:
    did = failing()
    message_id = row(console, did)[4]
    c = console.client("thu.ky")
    r = c.form(f"/hop-thu-di/{did}/gui-lai", {"trang-thai": "failed"})
    assert r.status_code == 303 and r.headers["location"] == "/hop-thu-di?trang-thai=failed&ok=gui-lai"
    status, attempts, error, sent_at, mid = row(console, did)
    assert (status, attempts, sent_at, mid) == ("pending", 0, None, message_id) and "Gửi lại theo yêu cầu" in error
    assert ("web:thu.ky", "outbox_retry", str(did)) in audit(console)
    assert "Đã đưa thư trở lại hàng chờ gửi" in text_of(c.get(r.headers["location"]).text)
    later = console.now + timedelta(minutes=10)
    rep = services.deliver(console.settings.database.url, console.pack, later, console.settings)
    assert did in rep.sent_ids and row(console, did)[0] == "sent"


def test_retrying_a_digest_that_did_not_fail_is_refused_in_words(console: Console) -> None:
    with open_session(console.settings) as ses:
        did = ses.execute(sa.select(DeliveryRow.id).where(DeliveryRow.status == "sent").limit(1)).scalar_one()
    before = row(console, did)
    r = console.client("thu.ky").form(f"/hop-thu-di/{did}/gui-lai")
    assert r.status_code == 400 and "chỉ gửi lại được thư không thành công" in text_of(r.text)
    assert f"thư số {did}" not in text_of(r.text)
    assert row(console, did) == before
    r = console.client("thu.ky").form("/hop-thu-di/987654/gui-lai")
    assert r.status_code == 400 and "Không có thư này" in text_of(r.text)


def test_a_leader_cannot_retry(console: Console, failing: Failing) -> None:
    did = failing()
    before, trail = row(console, did), audit(console)
    r = console.client("lanh.dao").form(f"/hop-thu-di/{did}/gui-lai")
    assert r.status_code == 403 and "Không được phép" in text_of(r.text)
    assert row(console, did) == before and audit(console) == trail


@pytest.mark.parametrize("token", ["", "gia-mao"])
def test_retry_without_the_csrf_token_is_refused(console: Console, failing: Failing, token: str) -> None:
    did = failing()
    before, trail = row(console, did), audit(console)
    r = console.client("thu.ky").form(f"/hop-thu-di/{did}/gui-lai", csrf=token)
    assert r.status_code == 403 and "Biểu mẫu không hợp lệ" in text_of(r.text)
    assert row(console, did) == before and audit(console) == trail


def test_outbox_needs_a_login(console: Console) -> None:
    c = console.client()
    assert c.get("/hop-thu-di").status_code == 303
    assert c.post("/hop-thu-di/1/gui-lai", data={"csrf": ""}).status_code == 303
