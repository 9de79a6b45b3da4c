"""Changing the rules from the console (issue 13): a draft edited through forms, its check (errors
next to the field), diff and preview, apply with a reason, stale drafts refused until rebased,
history and restore; every POST needs the CSRF token and the secretary's role.

Each test works on its own copy of rules/ (applying swaps the folder), never on the repository's.
"""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path

import pytest

from engine.app import ruleversions as rv
from tests.conftest import RULES
from tests.web_support import Console, seed_pack, text_of

TITLE = "Báo cáo quý kết quả thực hiện Kế hoạch số 12/KH-UBND gửi Sở Khoa học và Công nghệ"
REASON = "Theo Kế hoạch số 12/KH-UBND ngày 05/01/2026"
NEW_OBLIGATION = {
    "title": TITLE, "document": "Kế hoạch số 12/KH-UBND ngày 05/01/2026 của UBND tỉnh", "section": "Mục IV.2",
    "kind": "dinh_ky", "reporters": ["so-ban-nganh-tru-khcn"], "recipient": "so-khcn", "freq": "quarterly",
    "cutoff": "default", "due_rule": "day_of_last_month", "due_day": "20", "roll": "forward",
    "reminder_policy": "hang-quy", "effective_from": "01/12/2026",
    "assumptions": "“Hạn ngày 20 tháng cuối quý”: ngày nghỉ thì chuyển sang ngày làm việc tiếp theo.",
    "file": "obligations-001-khhd-57.yaml",
}


def console(tmp_path: Path) -> Console:
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    return Console(tmp_path, env={"DONDOC_RULES_DIR": str(rules)})


def live_hash(con: Console) -> str:
    return rv.folder_hash(rv.live_dir(con.settings))


def new_draft(client, name: str) -> str:
    r = client.form("/quy-tac/ban-nhap", {"ten": name})
    assert r.status_code == 303, text_of(r.text)
    assert r.headers["location"] == f"/quy-tac/ban-nhap/{name}?ok=tao"
    return f"/quy-tac/ban-nhap/{name}"


def detail_rows(html: str, change: str) -> list[str]:
    """The preview's rows, one per unit and period (the table under "Từng hạn nộp thay đổi")."""
    if "Từng hạn nộp thay đổi" not in html:
        return []
    table = html[html.index("Từng hạn nộp thay đổi"):]
    table = table[:table.index("</details>")]
    return [text_of(m) for m in re.findall(rf'<tr class="change-{change}">(.*?)</tr>', table, flags=re.S)]


def expected_reporters() -> list[str]:
    """The units of the group that exist on the new deadline (20/12/2026 is a Sunday → 21/12/2026)."""
    from engine.app.browse import expand

    pack = seed_pack()
    due = date(2026, 12, 21)
    return [u for u in expand(pack, ["so-ban-nganh-tru-khcn"])
            if (pack.units[u].valid_until is None or pack.units[u].valid_until >= due)
            and (pack.units[u].valid_from is None or pack.units[u].valid_from <= due)]


@pytest.mark.slow          # a whole flow through the console: two previews, apply, restore
def test_add_an_obligation_check_preview_apply_history_restore(tmp_path: Path) -> None:
    con = console(tmp_path)
    c = con.client("thu.ky")
    before = live_hash(con)
    url = new_draft(c, "ke-hoach-12")
    form = c.get(url + "/bao-cao/moi")
    assert form.status_code == 200 and "Sở Khoa học và Công nghệ" in form.text and 'name="reporters"' in form.text
    r = c.form(url + "/bao-cao/moi", NEW_OBLIGATION)
    assert r.status_code == 303, text_of(r.text)
    assert live_hash(con) == before                       # only the draft changed

    page = c.get(url)
    html, text = page.text, text_of(page.text)
    assert page.status_code == 200
    assert "Hợp lệ" in text and "Chưa hợp lệ" not in text
    assert f"Thêm báo cáo “{TITLE}”" in text
    assert f'<span class="diff-add">+    title: &#34;{TITLE}&#34;</span>' in html or f'diff-add">+    title: "{TITLE}"' in html
    # the preview lists exactly the new deadlines: one per reporting unit, all for the new report, due 21/12/2026
    units = expected_reporters()
    rows = detail_rows(html, "added")
    assert len(rows) == len(units) and len(units) >= 10
    assert all(TITLE in row and "21/12/2026" in row and "Quý IV/2026" in row.replace("quý", "Quý") for row in rows), rows[:2]
    assert 'class="change-moved"' not in html and 'class="change-removed"' not in html
    names = {seed_pack().units[u].name for u in units}
    assert all(any(n in row for row in rows) for n in names)

    r = c.form(url + "/ap-dung", {"ly_do": REASON})
    assert r.status_code == 303 and r.headers["location"].startswith("/quy-tac/lich-su?ok=")
    number = int(r.headers["location"].rsplit("=", 1)[1])
    assert live_hash(con) != before
    assert TITLE in (tmp_path / "rules" / "obligations-001-khhd-57.yaml").read_text(encoding="utf-8")
    history = c.get("/quy-tac/lich-su")
    row = re.search(rf'<tr class="current"><td><a href="/quy-tac/lich-su/{number}">.*?</tr>', history.text, flags=re.S)
    assert row is not None
    t = text_of(row.group(0))
    assert "Thu Ky" in t and REASON in t and "Áp dụng bản nháp" in t and f"Thêm báo cáo “{TITLE}”" in t
    assert re.search(r"\d\d/\d\d/2026 \d\d:\d\d", t)
    assert "không rõ người sửa" in text_of(history.text)          # version 1: the folder as found
    assert c.get(url).status_code == 404                           # the draft is gone once applied

    # restore the version before: a draft that goes through the same check and preview
    from engine.app import services

    pack_after = services.load_rules(con.settings)
    services.sync(con.settings, pack_after, con.now)
    r = c.form(f"/quy-tac/lich-su/{number - 1}/khoi-phuc")
    assert r.status_code == 303 and r.headers["location"] == f"/quy-tac/ban-nhap/khoi-phuc-{number - 1}?ok=khoi-phuc"
    page = c.get(r.headers["location"])
    text = text_of(page.text)
    assert "Hợp lệ" in text and f"Bỏ báo cáo “{TITLE}”" in text and f"phiên bản số {number - 1}" in text
    removed = detail_rows(page.text, "removed")
    assert len(removed) == len(units) and 'class="change-added"' not in page.text
    r = c.form(f"/quy-tac/ban-nhap/khoi-phuc-{number - 1}/ap-dung", {"ly_do": "Khôi phục: kế hoạch bị hủy"})
    assert r.status_code == 303
    assert live_hash(con) == before
    t = text_of(c.get("/quy-tac/lich-su").text)
    assert f"Khôi phục phiên bản số {number - 1}" in t and "Khôi phục: kế hoạch bị hủy" in t


def test_an_error_is_shown_next_to_its_field_and_apply_is_refused(tmp_path: Path) -> None:
    con = console(tmp_path)
    c = con.client("thu.ky")
    before = live_hash(con)
    url = new_draft(c, "sua-han")
    # a form that cannot be used: nothing is written, the message sits under the field
    bad = {**NEW_OBLIGATION, "reporters": [], "effective_from": "31/02/2026"}
    r = c.form(url + "/bao-cao/moi", bad)
    assert r.status_code == 400
    reporters = r.text[r.text.index('id="f-reporters"'):]
    assert "Chọn ít nhất một đơn vị" in reporters[:reporters.index("</fieldset>")]
    assert "không phải ngày hợp lệ" in text_of(r.text)
    assert rv.diff(rv.open_staged(con.settings, "sua-han")) == ""
    # a change the check refuses (31/11 does not exist): saved in the draft, shown next to "Hạn nộp"
    form = c.get(url + "/bao-cao/khhd57-skhcn-nam")
    assert form.status_code == 200 and "Kết thúc báo cáo này" in form.text
    values = {**_form_values(form.text), "due_day": "31", "due_month": "11"}
    r = c.form(url + "/bao-cao/khhd57-skhcn-nam", values)
    assert r.status_code == 303
    page = c.get(url)
    text = text_of(page.text)
    assert "Chưa hợp lệ: 1 lỗi" in text
    assert "Hạn nộp: ngày 31/11 không tồn tại" in text
    assert f"{url}/bao-cao/khhd57-skhcn-nam#f-due" in page.text
    assert "Áp dụng bản nháp" not in page.text                         # no apply button for an invalid draft
    form = c.get(url + "/bao-cao/khhd57-skhcn-nam")
    due = form.text[form.text.index('id="f-due"'):]
    assert "ngày 31/11 không tồn tại" in due[:due.index("</fieldset>")]
    r = c.form(url + "/ap-dung", {"ly_do": REASON})
    assert r.status_code == 400 and "chưa áp dụng được" in text_of(r.text)
    assert live_hash(con) == before
    r = c.form(url + "/ap-dung", {"ly_do": "  "})
    assert r.status_code == 400 and "Ghi lý do thay đổi" in text_of(r.text)
    assert live_hash(con) == before


def _form_values(html: str) -> dict[str, object]:
    """The values a browser would send for the first rule form on the page."""
    form = html[html.index('class="form rule-form"'):]
    form = form[:form.index("</form>")]
    out: dict[str, object] = {}
    for m in re.finditer(r"<input ([^>]*)>", form):
        attrs = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        name = attrs.get("name")
        if not name or name == "csrf":
            continue
        if attrs.get("type") == "checkbox":
            if " checked" in m.group(1):
                if name in ("reporters", "months"):
                    out.setdefault(name, []).append(attrs["value"])  # type: ignore[union-attr]
                else:
                    out[name] = attrs["value"]
            continue
        out[name] = _unescape(attrs.get("value", ""))
    for m in re.finditer(r'<select [^>]*name="(\w+)"[^>]*>(.*?)</select>', form, flags=re.S):
        sel = re.search(r'<option value="([^"]*)" selected', m.group(2))
        out[m.group(1)] = sel.group(1) if sel else ""
    for m in re.finditer(r'<textarea [^>]*name="(\w+)"[^>]*>(.*?)</textarea>', form, flags=re.S):
        out[m.group(1)] = _unescape(m.group(2))
    out.setdefault("reporters", [])
    return out


def _unescape(s: str) -> str:
    import html

    return html.unescape(s)


@pytest.mark.slow          # a whole flow through the console: two previews, apply, restore
def test_one_due_day_changed_through_the_form_is_one_line_and_a_stale_draft_is_refused(tmp_path: Path) -> None:
    con = console(tmp_path)
    c = con.client("thu.ky")
    a = new_draft(c, "ban-a")
    b = new_draft(c, "ban-b")
    form = c.get(a + "/bao-cao/khhd57-skhcn-nam")
    values = {**_form_values(form.text), "due_day": "2"}     # "trước ngày 02/12": hạn 01/12
    assert c.form(a + "/bao-cao/khhd57-skhcn-nam", values).status_code == 303
    diff = rv.diff(rv.open_staged(con.settings, "ban-a"))
    plus = [ln for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    minus = [ln for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    assert plus == ["+    due: {rule: before_date, day: 2, month: 12, roll: forward}"] and len(minus) == 1
    # the second draft changes a reminder policy (one line too)
    pol = c.get(b + "/nhac/hang-quy")
    assert pol.status_code == 200
    r = c.form(b + "/nhac/hang-quy", {"before_due_working_days": "7, 2", "on_due_day": "1",
                                      "overdue_after_working_days": "1", "repeat_every_working_days": "3",
                                      "max_repeats": "3", "escalate_after_working_days": "7",
                                      "escalate_to": ["supervisor", "vp-tinh-uy"]})
    assert r.status_code == 303 and r.headers["location"].endswith("ok=nhac")
    diff_b = rv.diff(rv.open_staged(con.settings, "ban-b"))
    assert [ln for ln in diff_b.splitlines() if ln.startswith("+") and not ln.startswith("+++")] == \
        ["+    before_due_working_days: [7, 2]"]

    assert c.form(a + "/ap-dung", {"ly_do": REASON}).status_code == 303
    applied = live_hash(con)
    r = c.form(b + "/ap-dung", {"ly_do": "Theo Công văn số 3/VP"})
    assert r.status_code == 409
    text = text_of(r.text)
    assert "phiên bản mới hơn" in text and "Cập nhật bản nháp" in text
    assert 'action="/quy-tac/ban-nhap/ban-b/cap-nhat"' in r.text
    assert live_hash(con) == applied
    assert "Cần cập nhật" in text_of(c.get("/quy-tac/ban-nhap").text)
    r = c.form(b + "/cap-nhat")
    assert r.status_code == 303 and r.headers["location"].endswith("ok=cap-nhat")
    r = c.form(b + "/ap-dung", {"ly_do": "Theo Công văn số 3/VP"})
    assert r.status_code == 303
    live = (tmp_path / "rules")
    assert "day: 2, month: 12" in (live / "obligations-000-hd-skhcn.yaml").read_text(encoding="utf-8")
    assert "before_due_working_days: [7, 2]" in (live / "pack.yaml").read_text(encoding="utf-8")


@pytest.mark.slow          # a whole flow through the console: two previews, apply, restore
def test_units_end_and_add_obligation_end_through_forms(tmp_path: Path) -> None:
    con = console(tmp_path)
    c = con.client("thu.ky")
    url = new_draft(c, "don-vi")
    r = c.form(url + "/don-vi/moi", {"name": "Sở Thử nghiệm", "kind": "so", "contacts": "vanthu.sotn@example.org",
                                     "supervisor": "ubnd-tinh", "valid_from": "01/12/2026",
                                     "groups": ["so-ban-nganh"]})
    assert r.status_code == 303, text_of(r.text)
    r = c.form(url + "/don-vi/moi", {"name": "", "kind": "so", "contacts": "khong-phai-thu"})
    assert r.status_code == 400 and "Nhập tên đơn vị" in text_of(r.text) and "Địa chỉ thư không hợp lệ" in text_of(r.text)
    assert c.get(url + "/don-vi/so-tu-phap/cham-dut").status_code == 200
    r = c.form(url + "/don-vi/so-tu-phap/cham-dut", {"valid_until": "31/12/2026", "successor": "so-noi-vu"})
    assert r.status_code == 303
    r = c.form(url + "/bao-cao/khhd57-skhcn-nam/ket-thuc", {"effective_until": "sai"})
    assert r.status_code == 400 and "không phải ngày hợp lệ" in text_of(r.text)
    r = c.form(url + "/bao-cao/khhd57-skhcn-nam/ket-thuc", {"effective_until": "31/12/2027"})
    assert r.status_code == 303
    diff = rv.diff(rv.open_staged(con.settings, "don-vi"))
    added = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    assert "- id: so-thu-nghiem" in added and 'name: "Sở Thử nghiệm"' in added
    assert "valid_until: 2027-12-31" not in added and "valid_until: 2026-12-31" in added and "successor: so-noi-vu" in added
    assert "effective_until: 2027-12-31" in added
    assert any(ln.startswith("members:") and "so-thu-nghiem" in ln for ln in added)
    page = text_of(c.get(url).text)
    assert "Hợp lệ" in page and "Thêm đơn vị “Sở Thử nghiệm”" in page and "Sửa đơn vị “Sở Tư pháp”" in page


def test_leadership_reads_and_every_post_needs_csrf_and_the_secretary(tmp_path: Path) -> None:
    con = console(tmp_path)
    sec = con.client("thu.ky")
    url = new_draft(sec, "kiem-tra")
    rv.history(con.settings, con.now)
    staged = rv.open_staged(con.settings, "kiem-tra")
    before = (live_hash(con), rv.folder_hash(staged.path), [d.name for d in rv.drafts(con.settings)])
    posts = ["/quy-tac/ban-nhap", url + "/ap-dung", url + "/cap-nhat", url + "/bo", url + "/bao-cao/moi",
             url + "/bao-cao/khhd57-skhcn-nam", url + "/bao-cao/khhd57-skhcn-nam/ket-thuc", url + "/don-vi/moi",
             url + "/don-vi/so-tu-phap/cham-dut", url + "/nhac/hang-quy", "/quy-tac/lich-su/1/khoi-phuc"]
    data = {**NEW_OBLIGATION, "ten": "moi", "ly_do": REASON, "effective_until": "31/12/2027",
            "valid_until": "31/12/2026", "name": "Sở X"}
    lead = con.client("lanh.dao")
    for path in posts:
        r = sec.form(path, data, csrf="gia-mao")
        assert r.status_code == 403 and "Biểu mẫu không hợp lệ" in text_of(r.text), path
        r = lead.form(path, data)
        assert r.status_code == 403 and "chỉ được xem" in text_of(r.text), path
    assert (live_hash(con), rv.folder_hash(staged.path), [d.name for d in rv.drafts(con.settings)]) == before
    # the leadership sees the drafts, a draft and the history, without any form
    for path in ("/quy-tac/ban-nhap", url, "/quy-tac/lich-su", "/quy-tac/lich-su/1"):
        r = lead.get(path)
        assert r.status_code == 200, path
        assert 'method="post" action="/quy-tac' not in r.text, path
    for path in (url + "/bao-cao/moi", url + "/bao-cao/khhd57-skhcn-nam", url + "/nhac/hang-quy", url + "/don-vi/moi"):
        assert lead.get(path).status_code == 403
    # unknown drafts, items and versions: Vietnamese 404s, no ids of the installation's paths
    for path in ("/quy-tac/ban-nhap/khong-co", url + "/bao-cao/khong-co", url + "/nhac/khong-co",
                 "/quy-tac/lich-su/999", url + "/don-vi/khong-co/cham-dut"):
        r = sec.get(path)
        assert r.status_code == 404 and "Traceback" not in r.text, path
    r = sec.form("/quy-tac/ban-nhap", {"ten": "Kế hoạch 12"})
    assert r.status_code == 400 and "không dùng được" in text_of(r.text)
