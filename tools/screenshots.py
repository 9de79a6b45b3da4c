"""Screenshots of the console's main pages for docs/screenshots/ (issue 12 item 6).

Run: .venv/bin/python tools/screenshots.py [--out docs/screenshots] [--chromium /usr/bin/chromium]

Seeds an installation the way the tests do (tests.web_support.Console: the seed rules, 2026 tracked
from 01/01/2026, "now" 02/12/2026 09:00), then adds what a real office would have by December: most
past reports recorded (on time or late, deterministic), a waiver, the first reminders "sent" to the
pickup folder with their "Báo đã gửi" links, one mail failed, and Sở Tài chính's "đã gửi" with a PDF
waiting in the queue. The console is served on loopback (tests.browser.serve) and Debian's Chromium
(never a downloaded browser) takes each page at 1280 px, and a few at 375 px (a phone).

Pages are captured whole up to MAX_HEIGHT pixels (a year of a unit's reports is longer than that);
each PNG is reduced to a 256-colour palette so it stays well under 300 KB.
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402
from sqlmodel import select  # noqa: E402

MAX_HEIGHT = 2400
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 740}
X = "so-tai-chinh"
YEARLY = ("khhd57-skhcn-nam", "2026")

# (file name, path or a key filled in after seeding, viewport, what the page is)
SHOTS = [
    ("01-tong-quan.png", "/", DESKTOP),
    ("02-ma-tran.png", "/ma-tran", DESKTOP),
    ("03-don-vi.png", f"/don-vi/{X}", DESKTOP),
    ("04-ky-bao-cao.png", "{instance}", DESKTOP),
    ("05-cho-xac-nhan.png", "/xac-nhan", DESKTOP),
    ("06-don-vi-bao-da-gui.png", "{link}", DESKTOP),
    ("07-thu-da-gui.png", "/hop-thu-di", DESKTOP),
    ("07b-thu-khong-gui-duoc.png", "/hop-thu-di?trang-thai=failed", DESKTOP),
    ("08-quy-tac.png", "/quy-tac", DESKTOP),
    ("09-chi-tieu.png", "/chi-tieu", DESKTOP),
    ("10-lich.png", "/lich", DESKTOP),
    ("10b-bao-cao.png", f"/bao-cao/{YEARLY[0]}", DESKTOP),
    ("11-tong-quan-dien-thoai.png", "/", PHONE),
    ("12-don-vi-bao-da-gui-dien-thoai.png", "{link}", PHONE),
]


def pdf_bytes() -> bytes:
    """A small real one-page PDF (the file a unit attaches)."""
    from tests.support import one_page_pdf

    return one_page_pdf()


def seed(home: Path):
    """The installation of the screenshots; returns (console, instance path, unit link path)."""
    from engine.app import confirmations, services
    from engine.db import session
    from engine.state import FAILED, DeliveryRow, InstanceRow, UnitLinkRow
    from tests.web_support import Client, Console, csrf_of

    con = Console(home)
    url, now = con.settings.database.url, con.now
    today = now.date()
    rnd = random.Random(2026)
    with session(url) as s:
        past = s.exec(select(InstanceRow.obligation, InstanceRow.unit, InstanceRow.period, InstanceRow.due,
                             InstanceRow.period_start)
                      .where(InstanceRow.due < today - timedelta(days=14)).order_by(InstanceRow.id)).all()
    for n, (obligation, unit, period, due, start) in enumerate(past):
        if unit == X and (obligation, period) == YEARLY:
            continue
        roll = rnd.random()
        if roll < 0.72:
            day = due - timedelta(days=rnd.randint(0, 6))
        elif roll < 0.88:
            day = due + timedelta(days=rnd.randint(1, 12))
        else:
            continue                                        # still missing: late on the overview
        day = min(max(day, start), today)
        services.submit(con.settings, con.pack, obligation, unit, period, day, now, actor="web:thu.ky",
                        ref=f"{n + 1}/BC", note=None)
    services.waive(con.settings, con.pack, "khhd57-thang", "so-gddt", "2026-10", "Đơn vị đang sáp nhập theo "
                   "Nghị quyết của HĐND tỉnh", now, actor="web:thu.ky")
    services.evaluate(url, con.pack, now, con.settings)
    services.deliver(url, con.pack, now, con.settings, links=confirmations.link_maker(con.settings))
    with session(url) as s:
        d = s.exec(select(DeliveryRow).where(DeliveryRow.recipient == X)).one()
        row = s.exec(select(UnitLinkRow).where(UnitLinkRow.delivery_id == d.id)).one()
        link = confirmations.url_for(con.settings, row.id, row.nonce).removeprefix(con.settings.web.base_url)
        failed = s.exec(select(DeliveryRow).where(DeliveryRow.recipient == "so-cong-thuong")).one()
        failed.status, failed.attempts = FAILED, 5
        failed.last_error = "550 5.1.1 Hộp thư không tồn tại (địa chỉ sai?)"
        s.add(failed)
        x = s.exec(select(InstanceRow).where(InstanceRow.obligation == YEARLY[0], InstanceRow.unit == X,
                                             InstanceRow.period == YEARLY[1])).one()
        s.commit()
    unit = Client(con.app)
    r = unit.post(link, data={"csrf": csrf_of(unit.get(link).text), "instance": str(x.id), "ngay_gui": "30/11/2026",
                              "so_ky_hieu": "45/BC-STC", "ghi_chu": "Đã gửi qua hệ thống quản lý văn bản"},
                  files={"tep": ("bao-cao-nam-2026.pdf", pdf_bytes(), "application/pdf")})
    assert r.status_code == 303, r.text
    return con, f"/ky/{x.id}", link


def small_png(raw: bytes) -> bytes:
    """The screenshot on a 256-colour palette (text and flat colours survive; the file is a quarter)."""
    img = Image.open(io.BytesIO(raw)).convert("RGB")
    out = io.BytesIO()
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, "PNG", optimize=True)
    return out.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM_ARGS, serve
    from tests.web_support import PASSWORD

    args.out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="dondoc-shots-"))
    try:
        con, instance, link = seed(home)       # before Playwright starts: seeding runs asyncio.run()
        fill = {"{instance}": instance, "{link}": link}
        with serve(con) as served, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS, headless=True)
            contexts = {}
            for name, path, viewport in SHOTS:
                key = (viewport["width"], path == "{link}")          # a unit has no session
                if key not in contexts:
                    ctx = browser.new_context(viewport=viewport, locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh")
                    page = ctx.new_page()
                    if path != "{link}":
                        page.goto(served.url("/dang-nhap"), wait_until="load")
                        page.fill('input[name="username"]', "thu.ky")
                        page.fill('input[name="password"]', PASSWORD)
                        with page.expect_navigation(wait_until="load"):
                            page.click('form[action="/dang-nhap"] [type="submit"]')
                    contexts[key] = page
                page = contexts[key]
                response = page.goto(served.url(fill.get(path, path)), wait_until="networkidle")
                assert response is not None and response.status == 200, (name, response and response.status)
                height = min(page.evaluate("document.documentElement.scrollHeight"), MAX_HEIGHT)
                raw = page.screenshot(clip={"x": 0, "y": 0, "width": viewport["width"], "height": height},
                                      full_page=True)
                data = small_png(raw)
                (args.out / name).write_bytes(data)
                shown = "/xn/…" if path == "{link}" else fill.get(path, path)
                print(f"{name:40} {shown[:40]:42} {viewport['width']}×{height} {len(data) // 1024} KB")
            browser.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
