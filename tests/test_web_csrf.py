"""Every form of the console without a valid CSRF token is refused and changes nothing (issue 12,
"Must show"): each POST route registered in the app, found by walking ``app.routes`` — not a list
kept by hand — is called with a missing, empty, forged and another session's (or another link's)
token, and must answer 403 with a Vietnamese page while the whole state (every table of the
database, every file of the installation) stays byte for byte the same.

A route this module does not know how to call fails ``test_every_post_route_is_covered``: a new
form cannot be added without being tested here. Each refusal is checked against the same request
with the right token, which must get past the check (otherwise a 403 would prove nothing).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from engine.app import confirmations, services
from engine.app import ruleversions as rv
from engine.db import session
from engine.state import FAILED, ConfirmationRow, DeliveryRow, InstanceRow, UnitLinkRow
from tests.conftest import RULES
from tests.web_support import PASSWORD, Client, Console, csrf_of, text_of

X, Y = "so-tai-chinh", "so-cong-thuong"
YEARLY = ("khhd57-skhcn-nam", "2026")
TODAY = "02/12/2026"                         # the Console's simulated today
MONTH = ("khhd57-thang", "2026-10")
DRAFT = "thu-csrf"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
CSRF_HEADING = "Biểu mẫu không hợp lệ"


# ─── the routes ──────────────────────────────────────────────────────────────────────────────────
def unsafe_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path template) of every route that changes data, however deeply routers are included."""
    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any]) -> None:
        for r in routes:
            inner = getattr(r, "original_router", None)            # FastAPI's included router
            if inner is not None:
                walk(inner.routes)
                continue
            sub = getattr(r, "routes", None)                        # a Mount with its own routes
            if sub and not getattr(r, "methods", None):
                walk(sub)
                continue
            for m in (getattr(r, "methods", None) or set()) & UNSAFE:
                found.add((m, r.path))

    walk(app.routes)
    return found


@dataclass
class World:
    """One installation with something real behind every form: a unit's link with reports to
    confirm and two pending confirmations, open and waived reports, a failed mail, a rules draft,
    a rules version. Each form works on a report of its own, so every call can succeed."""
    con: Console
    sec: Client                 # thu.ky, the session whose forms are posted
    other: Client               # another thu.ky session: its token is valid, but not for ``sec``
    link_x: str                 # /xn/… of Sở Tài chính's digest
    link_y_csrf: str            # the form token of Sở Công Thương's link
    to_confirm: int             # a report of the link, not yet confirmed
    to_record: int              # another report of the link, to record
    to_waive: int               # another one, to waive
    waived: int                 # a waived report of Sở Tài chính
    to_accept: int              # a pending "đã gửi"
    to_return: int              # another pending "đã gửi"
    delivery: int               # a failed mail
    version: int                # a rules version


def build(tmp: Path) -> World:
    rules = tmp / "rules"
    shutil.copytree(RULES, rules)                                # applying a draft swaps this folder
    con = Console(tmp, env={"DONDOC_RULES_DIR": str(rules)})
    url = con.settings.database.url
    services.evaluate(url, con.pack, con.now, con.settings)
    services.deliver(url, con.pack, con.now, con.settings, links=confirmations.link_maker(con.settings))
    links: dict[str, str] = {}
    with session(url) as s:
        for unit in (X, Y):
            d = s.exec(select(DeliveryRow).where(DeliveryRow.recipient == unit)).one()
            row = s.exec(select(UnitLinkRow).where(UnitLinkRow.delivery_id == d.id)).one()
            links[unit] = confirmations.url_for(con.settings, row.id, row.nonce).removeprefix("http://testserver")
            if unit == X:
                in_link = sorted(json.loads(row.instance_ids))
        waived = s.exec(select(InstanceRow).where(InstanceRow.obligation == MONTH[0], InstanceRow.unit == X,
                                                  InstanceRow.period == MONTH[1])).one().id
        failed = s.exec(select(DeliveryRow).where(DeliveryRow.recipient == Y)).one()
        failed.status, failed.last_error, failed.attempts = FAILED, "550 hộp thư không tồn tại", 3
        s.add(failed)
        s.commit()
        delivery = failed.id
    own = [i for i in in_link if i != waived]              # the reports of the link, one per form
    assert len(own) >= 5, in_link
    unit = Client(con.app)
    for iid in own[:2]:
        page = unit.get(links[X])
        r = unit.post(links[X], data={"csrf": csrf_of(page.text), "instance": str(iid), "ngay_gui": TODAY,
                                      "so_ky_hieu": "45/BC-STC"})
        assert r.status_code == 303, text_of(r.text)
    services.waive(con.settings, con.pack, MONTH[0], X, MONTH[1], "Sáp nhập đơn vị", con.now)
    sec, other = con.client("thu.ky"), con.client("thu.ky")
    assert sec.form("/quy-tac/ban-nhap", {"ten": DRAFT}).status_code == 303
    version = rv.current_number(con.settings) or 1
    with session(url) as s:
        pending = {c.instance_id: c.id for c in s.exec(select(ConfirmationRow)).all()}
    link_y_csrf = csrf_of(Client(con.app).get(links[Y]).text)
    assert link_y_csrf and sec.csrf and other.csrf and sec.csrf != other.csrf
    return World(con, sec, other, links[X], link_y_csrf, to_confirm=own[2], to_record=own[3],
                 to_waive=own[4], waived=waived, to_accept=pending[own[0]], to_return=pending[own[1]],
                 delivery=delivery, version=version)


# What each form posts (its address, filled with the world's ids, and a body the route accepts):
# every route must be here, or test_every_post_route_is_covered fails.
Call = Callable[[World], tuple[str, dict[str, str]]]
D = f"/quy-tac/ban-nhap/{DRAFT}"
CALLS: dict[tuple[str, str], Call] = {
    ("POST", "/dang-nhap"): lambda w: ("/dang-nhap", {"username": "thu.ky", "password": PASSWORD, "next": "/"}),
    ("POST", "/dang-xuat"): lambda w: ("/dang-xuat", {}),
    ("POST", "/ky/{instance_id}/ghi-nhan"): lambda w: (f"/ky/{w.to_record}/ghi-nhan",
                                                       {"date": TODAY, "ref": "9/BC-GIA", "note": "giả mạo"}),
    ("POST", "/ky/{instance_id}/mien"): lambda w: (f"/ky/{w.to_waive}/mien", {"reason": "Giả mạo"}),
    ("POST", "/ky/{instance_id}/huy-mien"): lambda w: (f"/ky/{w.waived}/huy-mien", {"reason": "Giả mạo"}),
    ("POST", "/xac-nhan/{confirmation_id}/chap-nhan"): lambda w: (f"/xac-nhan/{w.to_accept}/chap-nhan", {}),
    ("POST", "/xac-nhan/{confirmation_id}/tra-lai"): lambda w: (f"/xac-nhan/{w.to_return}/tra-lai",
                                                                {"ly_do": "Thiếu chữ ký"}),
    ("POST", "/xn/{token}"): lambda w: (w.link_x, {"instance": str(w.to_confirm), "ngay_gui": TODAY,
                                                   "so_ky_hieu": "99/GIA-MAO"}),
    ("POST", "/hop-thu-di/{delivery_id}/gui-lai"): lambda w: (f"/hop-thu-di/{w.delivery}/gui-lai", {}),
    ("POST", "/quy-tac/ban-nhap"): lambda w: ("/quy-tac/ban-nhap", {"ten": "ban-nhap-gia"}),
    ("POST", "/quy-tac/ban-nhap/{name}/ap-dung"): lambda w: (f"{D}/ap-dung", {"ly_do": "Giả mạo"}),
    ("POST", "/quy-tac/ban-nhap/{name}/cap-nhat"): lambda w: (f"{D}/cap-nhat", {}),
    ("POST", "/quy-tac/ban-nhap/{name}/bo"): lambda w: (f"{D}/bo", {}),
    ("POST", "/quy-tac/ban-nhap/{name}/bao-cao/moi"): lambda w: (f"{D}/bao-cao/moi", {"title": "Báo cáo giả"}),
    ("POST", "/quy-tac/ban-nhap/{name}/bao-cao/{oid}"): lambda w: (f"{D}/bao-cao/{YEARLY[0]}", {"title": "Đổi tên giả"}),
    ("POST", "/quy-tac/ban-nhap/{name}/bao-cao/{oid}/ket-thuc"): lambda w: (f"{D}/bao-cao/{YEARLY[0]}/ket-thuc",
                                                                            {"effective_until": "31/12/2026"}),
    ("POST", "/quy-tac/ban-nhap/{name}/don-vi/moi"): lambda w: (f"{D}/don-vi/moi", {"name": "Đơn vị giả"}),
    ("POST", "/quy-tac/ban-nhap/{name}/don-vi/{uid}/cham-dut"): lambda w: (f"{D}/don-vi/{X}/cham-dut",
                                                                           {"valid_until": "31/12/2026"}),
    ("POST", "/quy-tac/ban-nhap/{name}/nhac/{pid}"): lambda w: (f"{D}/nhac/{next(iter(w.con.pack.policies))}",
                                                                {"on_due_day": ""}),
    ("POST", "/quy-tac/lich-su/{number}/khoi-phuc"): lambda w: (f"/quy-tac/lich-su/{w.version}/khoi-phuc", {}),
    # no mail in this world: with the right token the route answers 400 ("không có thư số 1"), past the check
    ("POST", "/hop-thu-den/{mail_id}/phan-loai"): lambda w: ("/hop-thu-den/1/phan-loai",
                                                             {"chon": "khac", "don_vi": X, "bao_cao": YEARLY[0],
                                                              "ky": "năm 2026"}),
    ("POST", "/hop-thu-den/{mail_id}/bo-qua"): lambda w: ("/hop-thu-den/1/bo-qua", {"ly_do": "Giả mạo"}),
}
SESSIONLESS = {("POST", "/dang-nhap"), ("POST", "/xn/{token}")}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build(tmp_path_factory.mktemp("csrf"))


# ─── "changes nothing": the whole database and every file ───────────────────────────────────────
def state_of(con: Console) -> tuple[Any, ...]:
    """Every row of every table (read without the application's code) and every file's digest."""
    db = Path(con.settings.database.url.removeprefix("sqlite:///"))
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        rows = tuple((t, tuple(sorted(map(repr, conn.execute(f'SELECT * FROM "{t}"'))))) for t in tables)
    finally:
        conn.close()
    files = tuple((str(p.relative_to(con.tmp)), hashlib.sha256(p.read_bytes()).hexdigest())
                  for p in sorted(con.tmp.rglob("*"))
                  if p.is_file() and not p.name.startswith(db.name) and "__pycache__" not in p.parts)
    return rows, files


def diff_of(before: tuple[Any, ...], after: tuple[Any, ...]) -> list[str]:
    changed = [t for (t, r), (_, r2) in zip(before[0], after[0]) if r != r2]
    if len(before[0]) != len(after[0]):
        changed.append("(tables added or dropped)")
    return changed + sorted(set(before[1]) ^ set(after[1]))


def assert_refused(r: Any, heading: str = CSRF_HEADING) -> None:
    """403, a Vietnamese page saying nothing was written, no traceback, no new session cookie."""
    words = text_of(r.text)
    assert r.status_code == 403, (r.status_code, words[:300])
    assert heading in words, words[:300]
    assert "Traceback" not in r.text and "dondoc_session=" not in r.headers.get("set-cookie", "")


# ─── the tests ───────────────────────────────────────────────────────────────────────────────────
def test_every_post_route_is_covered(world: World) -> None:
    """A new form without an entry in CALLS fails here, naming the route (so none is silently missed)."""
    registered = unsafe_routes(world.con.app)
    other = sorted(r for r in registered if r[0] != "POST")
    assert not other, f"routes taking other changing methods (extend this module to call them): {other}"
    assert len(registered) >= 20                                         # the walk does reach the routers
    unknown = registered - CALLS.keys()
    assert not unknown, f"POST routes this test does not know how to call (add them to CALLS): {sorted(unknown)}"
    gone = CALLS.keys() - registered
    assert not gone, f"CALLS names routes the app no longer has: {sorted(gone)}"


@pytest.mark.parametrize("route", sorted(CALLS.keys() - SESSIONLESS), ids=lambda r: r[1])
def test_a_form_without_the_sessions_token_is_refused(world: World, route: tuple[str, str]) -> None:
    url, data = CALLS[route](world)
    tokens = {"missing": None, "empty": "", "forged": "gia-mao-" + "x" * 30,
              "another session's": world.other.csrf, "almost": world.sec.csrf[:-1] + ("A" if world.sec.csrf[-1] != "A" else "B"),
              "the link's": world.link_y_csrf}
    for why, token in tokens.items():
        before = state_of(world.con)
        body = dict(data) if token is None else {"csrf": token, **data}
        r = world.sec.post(url, data=body)
        assert_refused(r)
        assert "không có gì được ghi" in text_of(r.text), why
        after = state_of(world.con)
        assert after == before, (why, diff_of(before, after))
    # the refusals did not end the session; a read-only account without the token is refused too
    # (by its role, checked first, except for the logout it may use)
    assert world.sec.get("/").status_code == 200
    boss = world.con.client("lanh.dao")
    before = state_of(world.con)
    assert_refused(boss.post(url, data={"csrf": "", **data}),
                   heading=CSRF_HEADING if route[1] == "/dang-xuat" else "Không được phép")
    assert state_of(world.con) == before


def test_a_units_form_without_its_links_token_is_refused(world: World) -> None:
    url, data = CALLS[("POST", "/xn/{token}")](world)
    unit = Client(world.con.app)
    assert unit.get(url).status_code == 200                                # the link itself is valid
    for why, token in {"missing": None, "empty": "", "forged": "gia-mao", "another link's": world.link_y_csrf,
                       "a secretary's session": world.sec.csrf}.items():
        before = state_of(world.con)
        r = unit.post(url, data=dict(data) if token is None else {"csrf": token, **data})
        assert_refused(r)
        after = state_of(world.con)
        assert after == before, (why, diff_of(before, after))
    # also when the unit's browser carries a secretary's logged-in session
    before = state_of(world.con)
    assert_refused(world.sec.post(url, data={"csrf": world.sec.csrf, **data}))
    assert state_of(world.con) == before


def test_a_login_without_its_double_submit_cookie_is_refused(world: World) -> None:
    url, data = CALLS[("POST", "/dang-nhap")](world)
    login_heading = "Đăng nhập"
    fresh = Client(world.con.app)
    token = csrf_of(fresh.get("/dang-nhap").text)
    assert token
    cases: dict[str, tuple[Client, str | None]] = {"missing": (fresh, None), "empty": (fresh, ""),
                                                   "forged": (fresh, "gia-mao-" + "x" * 30)}
    no_cookie = Client(world.con.app)                                       # the form's token, but no cookie
    cases["without the cookie"] = (no_cookie, token)
    other = Client(world.con.app)
    other.get("/dang-nhap")                                                  # its own cookie, another's token
    cases["another browser's cookie"] = (other, token)
    for why, (client, tok) in cases.items():
        before = state_of(world.con)
        r = client.post(url, data=dict(data) if tok is None else {"csrf": tok, **data})
        assert_refused(r, heading=login_heading)
        assert "Biểu mẫu đăng nhập đã hết hạn" in text_of(r.text), why
        assert client.get("/").status_code == 303, why                      # still not logged in
        after = state_of(world.con)
        assert after == before, (why, diff_of(before, after))


def test_with_the_right_token_every_call_gets_past_the_check(tmp_path: Path) -> None:
    """The control: the same calls with the right token are not refused as forms (so the 403s above
    are the token's doing), on an installation of its own since they do change things."""
    w = build(tmp_path)
    last = ["/quy-tac/ban-nhap/{name}/ap-dung", "/quy-tac/ban-nhap/{name}/bo", "/dang-xuat"]
    order = sorted(CALLS, key=lambda r: (last.index(r[1]) if r[1] in last else -1, r[1]))
    for route in order:
        url, data = CALLS[route](w)
        if route == ("POST", "/dang-nhap"):
            client = Client(w.con.app)
            r = client.post(url, data={"csrf": csrf_of(client.get("/dang-nhap").text), **data})
            assert r.status_code == 303, text_of(r.text)[:300]
            continue
        if route == ("POST", "/xn/{token}"):
            unit = Client(w.con.app)
            r = unit.post(url, data={"csrf": csrf_of(unit.get(url).text), **data})
        else:
            r = w.sec.form(url, data)
        words = text_of(r.text)
        assert r.status_code in (200, 303, 400, 409), (route, r.status_code, words[:300])
        assert CSRF_HEADING not in words and "Biểu mẫu đăng nhập đã hết hạn" not in words, route
        if route == ("POST", "/dang-xuat"):
            assert r.status_code == 303 and w.sec.get("/").status_code == 303      # the session did end
        elif r.status_code == 303:
            assert not r.headers["location"].startswith("/dang-nhap"), route     # not sent to log in
