"""The console's frame: login, roles, CSRF, logout, security headers, Vietnamese error pages, overview."""

from __future__ import annotations

import pytest

from tests.web_support import PASSWORD, Console, csrf_of, text_of


@pytest.fixture(scope="module")
def console(tmp_path_factory) -> Console:
    return Console(tmp_path_factory.mktemp("console"))


def test_pages_need_a_login_and_come_back_after_it(console: Console) -> None:
    c = console.client()
    r = c.get("/?x=1")
    assert r.status_code == 303 and r.headers["location"] == "/dang-nhap?next=%2F%3Fx%3D1"
    page = c.get("/dang-nhap?next=/ma-tran")
    r = c.post("/dang-nhap", data={"csrf": csrf_of(page.text), "username": "thu.ky", "password": PASSWORD,
                                   "next": "/ma-tran"})
    assert r.status_code == 303 and r.headers["location"] == "/ma-tran"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil.example"])
def test_login_never_redirects_off_site(console: Console, target: str) -> None:
    c = console.client()
    page = c.get("/dang-nhap")
    r = c.post("/dang-nhap", data={"csrf": csrf_of(page.text), "username": "thu.ky", "password": PASSWORD,
                                   "next": target})
    assert r.headers["location"] == "/"


def test_wrong_password_and_missing_login_token_are_refused(console: Console) -> None:
    c = console.client()
    page = c.get("/dang-nhap")
    r = c.post("/dang-nhap", data={"csrf": csrf_of(page.text), "username": "thu.ky", "password": "sai-mat-khau-123"})
    assert r.status_code == 401 and "không đúng" in text_of(r.text)
    r = c.post("/dang-nhap", data={"csrf": "", "username": "thu.ky", "password": PASSWORD})
    assert r.status_code == 403 and "dondoc_session" not in r.headers.get("set-cookie", "")


def test_login_attempts_are_limited(tmp_path) -> None:
    con = Console(tmp_path, sync=False, env={"DONDOC_WEB_LOGIN_ATTEMPTS": "3"})
    c = con.client()
    token = csrf_of(c.get("/dang-nhap").text)
    for _ in range(3):
        assert c.post("/dang-nhap", data={"csrf": token, "username": "thu.ky", "password": "sai-mat-khau-123"}).status_code == 401
    r = c.post("/dang-nhap", data={"csrf": token, "username": "thu.ky", "password": PASSWORD})
    assert r.status_code == 429 and "quá nhiều lần" in text_of(r.text)


def test_logout_needs_the_token_and_ends_the_session(console: Console) -> None:
    c = console.client("lanh.dao")
    assert c.post("/dang-xuat", data={"csrf": "gia-mao"}).status_code == 403
    assert c.get("/").status_code == 200
    r = c.form("/dang-xuat")
    assert r.status_code == 303
    assert c.get("/").status_code == 303          # the old cookie no longer works


def test_overview_shows_the_status_words_and_security_headers(console: Console) -> None:
    r = console.client("thu.ky").get("/")
    assert r.status_code == 200
    body = text_of(r.text)
    for word in ("Tổng quan", "Chưa hoàn thành – quá hạn", "Đã gửi – chờ xác nhận", "Đến hạn trong tuần này",
                 "Tỷ lệ nộp đúng hạn năm 2026", "02/12/2026"):
        assert word in body
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "no-referrer"
    assert "<script>" not in r.text and " on" + "click=" not in r.text


def test_unknown_page_is_a_vietnamese_page(console: Console) -> None:
    r = console.client("thu.ky").get("/khong-co-trang-nay")
    assert r.status_code == 404 and "Không tìm thấy trang" in text_of(r.text) and "Traceback" not in r.text


def test_disabled_account_is_logged_out_at_once(tmp_path) -> None:
    from engine.app import accounts

    con = Console(tmp_path, sync=False)
    c = con.client("thu.ky")
    assert c.get("/").status_code == 200
    accounts.set_active(con.settings, "thu.ky", False, con.now)
    assert c.get("/").status_code == 303


def test_doctor_says_what_the_links_need() -> None:
    from engine.app.config import load_settings
    from engine.app.doctor import web_checks

    def link_check(env: dict[str, str]):
        return next(c for c in web_checks(load_settings(env, file=None)) if c[1] == "đường dẫn xác nhận")

    assert link_check({})[0] is None and "DONDOC_WEB_SECRET" in link_check({})[2]
    assert link_check({"DONDOC_WEB_SECRET": "ngan"})[0] is False
    long = {"DONDOC_WEB_SECRET": "k" * 40}
    assert link_check(long)[0] is None and "DONDOC_WEB_PUBLIC_URL" in link_check(long)[2]
    assert link_check({**long, "DONDOC_WEB_PUBLIC_URL": "http://dondoc.tinh.vn"})[0] is None
    ok = link_check({**long, "DONDOC_WEB_PUBLIC_URL": "https://dondoc.tinh.vn"})
    assert ok[0] is True and "kkkk" not in ok[2]          # the secret is never printed


def test_the_product_hashes_passwords_with_argon2id_at_the_librarys_cost(cheap_password_hashing) -> None:
    """What dondoc uses outside the tests (the suite lowers the cost in its own process only)."""
    from argon2 import Type

    real = cheap_password_hashing
    assert real.type is Type.ID and real.time_cost >= 3 and real.memory_cost >= 65536
    assert real.hash("mat-khau-du-dai-1").startswith("$argon2id$")
