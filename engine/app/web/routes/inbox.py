"""/hop-thu-den ("Thư đến"): the reports that arrived by e-mail (issue 14), by state.

A mail the reader matched confidently is already a pending "đã gửi" on /xac-nhan; what it could not
place waits here ("Cần phân loại") until a secretary says which report it is (one of the reader's
candidates, or any unit/report/period) or that it is not a report. The rules of each step are in
engine.app.inbox.store (shared with the CLI); this module only reads forms and renders.

The original message is offered as a download only (``message/rfc822``, attachment, nosniff):
a mail's HTML is never rendered inside the console.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from engine.app import accounts
from engine.app.accounts import LoginSession
from engine.app.browse import actor_vi
from engine.app.inbox import store
from engine.app.services import InvalidInput
from engine.app.web.security import ctx, read_form, require_editor, require_login
from engine.rules_loader import RulePack

router = APIRouter()

BASE = "/hop-thu-den"
LIMIT = 200                    # newest mails reachable per tab (the store reads no further)
PAGE = 25                      # mails per page: each queued one carries its own form
OTHER = "khac"                 # the radio value for "another report" (unit + report + period)
TABS = store.VIEWS             # (query value, tab label, states shown); the first is the default
STATE_CLASS = {store.QUEUED: "m-queued", store.RECORDED: "m-recorded", store.IGNORED: "m-ignored",
               store.ASSIGNED: "m-assigned", store.DISMISSED: "m-dismissed"}
_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)+")


def _tab(key: str | None) -> tuple[str, str, tuple[str, ...]]:
    return next((t for t in TABS if t[0] == key), TABS[0])


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "?", "!")) else ".")


def _plain(text: str, pack: RulePack) -> str:
    """A core message with unit and report ids replaced by their names (a secretary reads names)."""
    def name(m: re.Match[str]) -> str:
        t = m.group(0)
        if t in pack.units:
            return pack.units[t].name
        ob = pack.obligations.get(t)
        return ob.title if ob is not None else t
    return _ID.sub(name, text)


def _flash(request: Request, ok: str | None, mail_id: int | None) -> str | None:
    """What was just done, read back from the database (never text taken from the address)."""
    if ok not in ("phan-loai", "bo-qua") or mail_id is None:
        return None
    c = ctx(request)
    try:
        m = store.one(c.settings, c.pack(), mail_id)
    except InvalidInput:
        return None
    if ok == "phan-loai" and m.state == store.ASSIGNED:
        what = "; ".join(m.items) or "báo cáo đã chọn"
        return (f"Đã ghi nhận thư số {m.number} là báo cáo đã nộp ngày {m.received_at:%d/%m/%Y}: {what}.")
    if ok == "bo-qua" and m.state == store.DISMISSED:
        return f"Đã đánh dấu thư số {m.number} là không phải báo cáo (thư vẫn được lưu)."
    return None


def _pages(key: str, total: int) -> list[tuple[int, str]]:
    n = max(1, -(-min(total, LIMIT) // PAGE))
    if n == 1:
        return []
    base = {} if key == TABS[0][0] else {"xem": key}

    def href(i: int) -> str:
        q = {**base, **({"trang": i} if i > 1 else {})}
        return BASE + (f"?{urlencode(q)}" if q else "")
    return [(i, href(i)) for i in range(1, n + 1)]


def _page(request: Request, tab_key: str | None = None, *, page: int = 1, status: int = 200,
          flash: str | None = None, error: str | None = None, error_id: int | None = None,
          values: dict[str, Any] | None = None) -> Response:
    c = ctx(request)
    pack = c.pack()
    key, label, states = _tab(tab_key)
    counts = store.counts(c.settings)
    tabs = [(k, lab, sum(counts.get(s, 0) for s in st), k == key) for k, lab, st in TABS]
    total = next(n for k, _, n, _ in tabs if k == key)
    links = _pages(key, total)
    page = min(max(page, 1), max(len(links), 1))
    mails = store.listing(c.settings, pack, states, limit=page * PAGE)[(page - 1) * PAGE:]
    users = {u.username: u.display for u in accounts.list_users(c.settings)}
    deciders = {m.id: actor_vi(m.decided_by, users) for m in mails if m.decided_by}
    units = sorted(((u.name, uid) for uid, u in pack.units.items()), key=lambda x: x[0].casefold())
    obligations = sorted(((o.title, oid) for oid, o in pack.obligations.items()), key=lambda x: x[0].casefold())
    shown = {m.id for m in mails}
    return request.app.state.pages.render(
        request, "inbox.html", status_code=status, title="Thư đến", nav="inbox", today=c.today(), flash=flash,
        tabs=tabs, tab=key, tab_label=label, mails=mails, total=total, limited=total > LIMIT, limit=LIMIT,
        page=page, page_links=links, deciders=deciders,
        units=units, obligations=obligations, state_class=STATE_CLASS, other=OTHER,
        error=error, error_id=error_id if error_id in shown else None, values=values or {})


@router.get(BASE)
def inbox_page(request: Request, xem: str | None = None, trang: int = 1, ok: str | None = None,
               thu: int | None = None, login: LoginSession = Depends(require_login)) -> Response:
    return _page(request, xem, page=trang, flash=_flash(request, ok, thu))


def _values(form: FormData) -> dict[str, Any]:
    return {"chon": [str(v) for v in form.getlist("chon")], "don_vi": str(form.get("don_vi") or ""),
            "bao_cao": str(form.get("bao_cao") or ""), "ky": str(form.get("ky") or "").strip()[:60],
            "ly_do": str(form.get("ly_do") or "")[:store.MAX_REASON]}


def _chosen(request: Request, mail_id: int, v: dict[str, Any]) -> list[int]:
    """The reports the form names: the mail's own candidates and/or one named by unit, report, period."""
    c = ctx(request)
    pack = c.pack()
    view = store.one(c.settings, pack, mail_id)
    if view.state != store.QUEUED:
        raise InvalidInput(f"thư số {view.number} đã được xử lý ({view.state_vi.lower()})")
    picks = v["chon"]
    other = OTHER in picks or (not picks and any((v["don_vi"], v["bao_cao"], v["ky"])))
    wanted = [p for p in picks if p != OTHER]
    if not wanted and not other:
        raise InvalidInput("cần chọn một báo cáo trong danh sách, hoặc chọn “Báo cáo khác” và điền đơn vị, báo cáo, kỳ")
    ids: list[int] = []
    if wanted:
        offered = {cand.instance_id for cand in view.candidates if cand.open}
        for p in wanted:
            if not p.isdigit() or int(p) not in offered:
                raise InvalidInput("báo cáo đã chọn không còn nằm trong các gợi ý của thư này; tải lại trang rồi chọn lại")
            ids.append(int(p))
    if other:
        if v["don_vi"] not in pack.units:
            raise InvalidInput("chọn đơn vị đã gửi báo cáo")
        if v["bao_cao"] not in pack.obligations:
            raise InvalidInput("chọn báo cáo")
        if not v["ky"]:
            raise InvalidInput("nhập kỳ báo cáo, ví dụ “tháng 11/2026”, “quý IV/2026”, “năm 2026”")
        ids.append(store.instance_for(c.settings, pack, v["bao_cao"], v["don_vi"], v["ky"], c.now()))
    return ids


@router.post(BASE + "/{mail_id}/phan-loai")
async def assign(request: Request, mail_id: int, login: LoginSession = Depends(require_editor)) -> Response:
    form = await read_form(request)
    v = _values(form)
    c = ctx(request)
    pack = c.pack()
    try:
        ids = _chosen(request, mail_id, v)
        store.assign(c.settings, pack, mail_id, ids, c.now(), login.user.actor)
    except InvalidInput as exc:
        return _page(request, status=400, error=_sentence(_plain(exc.message, pack)), error_id=mail_id, values=v)
    return RedirectResponse(f"{BASE}?{urlencode({'ok': 'phan-loai', 'thu': mail_id})}", status_code=303)


@router.post(BASE + "/{mail_id}/bo-qua")
async def dismiss(request: Request, mail_id: int, login: LoginSession = Depends(require_editor)) -> Response:
    form = await read_form(request)
    v = _values(form)
    c = ctx(request)
    try:
        store.dismiss(c.settings, mail_id, str(form.get("ly_do") or ""), c.now(), login.user.actor)
    except InvalidInput as exc:
        return _page(request, status=400, error=_sentence(exc.message), error_id=mail_id, values=v)
    return RedirectResponse(f"{BASE}?{urlencode({'ok': 'bo-qua', 'thu': mail_id})}", status_code=303)


@router.get(BASE + "/{mail_id}/thu-goc")
def original(request: Request, mail_id: int, login: LoginSession = Depends(require_login)) -> Response:
    """The message as received, to open in a mail program: always a download, never shown inline."""
    c = ctx(request)
    try:
        name, raw = store.raw_of(c.settings, mail_id)
    except InvalidInput as exc:
        raise HTTPException(404, _sentence(exc.message)) from None
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "thu.eml"
    return Response(raw, media_type="message/rfc822",
                    headers={"Content-Disposition": f'attachment; filename="{safe}"',
                             "X-Content-Type-Options": "nosniff"})
