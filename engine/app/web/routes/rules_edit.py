"""Changing the rules from the console (issue 13): drafts (/quy-tac/ban-nhap), forms that edit a
draft's YAML (a new obligation, a changed one, an ended one, a new or ended unit, a reminder
policy), the draft's check / diff / preview, apply with a reason, and the history of versions with
restore (/quy-tac/lich-su).

Why drafts: the daemon reloads rules/ the moment a file changes, so the forms never write there.
They write a staged copy (engine/app/ruleversions.py) through engine/app/rulesforms.py; applying
swaps the copy in atomically and records who, when and why. A draft copied from an older version
than the one in use is refused (someone applied meanwhile) until it is rebased, so two secretaries
cannot overwrite each other's change unseen. The leadership sees every page, read-only.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from engine import vi
from engine.app import ruleversions as rv
from engine.app import rulesforms as rf
from engine.app import services
from engine.app.accounts import LoginSession
from engine.app.preview import DEFAULT_DAYS, MAX_DAYS, StagedRulesInvalid, default_window
from engine.app.ruleedit import EditError, RuleFolder
from engine.app.web.routes.rules_page import CHANGE_VI, error_line
from engine.app.web.security import ctx, read_form, require_editor, require_login
from engine.errors import RulePackInvalid

router = APIRouter()

DRAFTS = "/quy-tac/ban-nhap"
HISTORY = "/quy-tac/lich-su"
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,79}$")
LIST_KEYS = {"reporters", "months", "groups", "escalate_to"}
DONE = {
    "tao": "Đã tạo bản nháp. Các thay đổi chỉ ghi vào bản nháp cho đến khi bấm “Áp dụng”.",
    "them": "Đã thêm báo cáo vào bản nháp.", "sua": "Đã lưu thay đổi vào bản nháp.",
    "khong-doi": "Không có gì thay đổi.", "ket-thuc": "Đã ghi ngày kết thúc vào bản nháp.",
    "don-vi": "Đã thêm đơn vị vào bản nháp.", "cham-dut": "Đã ghi ngày chấm dứt của đơn vị vào bản nháp.",
    "nhac": "Đã lưu chính sách nhắc vào bản nháp.", "cap-nhat": "Đã cập nhật bản nháp lên phiên bản đang dùng; xem lại thay đổi rồi áp dụng.",
    "bo": "Đã bỏ bản nháp; bộ quy tắc đang dùng không đổi.",
    "khoi-phuc": "Đã tạo bản nháp khôi phục: xem kết quả kiểm tra và xem trước, rồi ghi lý do và áp dụng.",
}


# ─── helpers ────────────────────────────────────────────────────────────────────────────────────
def _draft(request: Request, name: str) -> rv.Staged:
    try:
        return rv.open_staged(ctx(request).settings, name)
    except services.ServiceError:
        raise HTTPException(404, "Không có bản nháp này (có thể đã được áp dụng hoặc đã bỏ). "
                                 "Xem danh sách ở trang Bản nháp quy tắc.") from None


def _check_id(item_id: str) -> str:
    if not _ID.match(item_id):
        raise HTTPException(404, "Không có mục này trong bản nháp.")
    return item_id


def _values(form: FormData) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in form.keys():
        if key == "csrf":
            continue
        if key in LIST_KEYS:
            out[key] = [v for v in form.getlist(key) if isinstance(v, str)]
        else:
            v = form.get(key)
            out[key] = v if isinstance(v, str) else ""
    for key in LIST_KEYS:
        out.setdefault(key, [])
    return out


def _render(request: Request, name: str, status: int = 200, **data: Any) -> Response:
    c = ctx(request)
    return request.app.state.pages.render(request, name, status_code=status, nav="rules", today=c.today(), **data)


def _not_in_draft(exc: EditError) -> HTTPException:
    return HTTPException(404, f"Không tìm thấy trong bản nháp: {exc.message}.")


# ─── drafts ─────────────────────────────────────────────────────────────────────────────────────
def _suggest_name(settings: Any) -> str:
    have = {d.name for d in rv.drafts(settings)}
    name, n = rv.DEFAULT_DRAFT, 2
    while name in have:
        name = f"{rv.DEFAULT_DRAFT}-{n}"
        n += 1
    return name


def _drafts_page(request: Request, status: int = 200, error: str | None = None, value: str = "",
                 flash: str | None = None) -> Response:
    c = ctx(request)
    settings = c.settings
    users = rf.user_names(settings)
    try:
        live_hash = rv.folder_hash(rv.live_dir(settings))
    except OSError:
        live_hash = ""
    items = [{"name": d.name, "created_at": d.created_at, "author": rf.author_vi(d.created_by, "apply", users),
              "base_number": d.base_number, "restored_from": d.restored_from, "stale": d.base_hash != live_hash}
             for d in rv.drafts(settings)]
    return _render(request, "rules_drafts.html", status, title="Bản nháp quy tắc", drafts=items, error=error,
                   value=value or _suggest_name(settings), flash=flash, number=rv.current_number(settings))


@router.get(DRAFTS)
def drafts_page(request: Request, ok: str | None = None, login: LoginSession = Depends(require_login)) -> Response:
    return _drafts_page(request, flash=DONE.get(ok or ""))


@router.post(DRAFTS)
async def create_draft(request: Request, login: LoginSession = Depends(require_editor)) -> Response:
    form = await read_form(request)
    c = ctx(request)
    name = str(form.get("ten") or "").strip() or _suggest_name(c.settings)
    try:
        st = rv.stage(c.settings, name, login.user.actor, c.now())
    except services.ServiceError as exc:
        msg = exc.message
        if "đã có bản nháp" in msg:
            msg = f"Đã có bản nháp “{name}”: mở nó trong danh sách dưới đây để sửa tiếp, hoặc chọn tên khác."
        elif "không hợp lệ" in msg:
            msg = (f"Tên “{name[:60]}” không dùng được: chỉ chữ thường không dấu, số và dấu “-” "
                   "(ví dụ: ke-hoach-12).")
        return _drafts_page(request, 400, error=msg, value=name[:60])
    return RedirectResponse(f"{DRAFTS}/{st.name}?ok=tao", status_code=303)


# ─── the draft's page: check, diff, preview, apply ──────────────────────────────────────────────
def diff_lines(text: str) -> list[tuple[str, str]]:
    """(css class, line) for the diff: file headers, hunks, added and removed lines."""
    out = []
    for line in text.splitlines():
        if line.startswith(("+++ ", "--- ")):
            cls = "diff-file"
        elif line.startswith("@@"):
            cls = "diff-hunk"
        elif line.startswith("+"):
            cls = "diff-add"
        elif line.startswith("-"):
            cls = "diff-del"
        elif line.startswith("\\"):
            cls = "diff-note"
        else:
            cls = "diff-same"
        out.append((cls, line))
    return out


def _draft_page(request: Request, st: rv.Staged, status: int = 200, *, flash: str | None = None,
                apply_error: str | None = None, stale_error: str | None = None, reason: str = "",
                reason_error: str | None = None) -> Response:
    c = ctx(request)
    settings = c.settings
    today = c.today()
    live_files = rv.snapshot(st.live_dir)
    draft_files = rv.snapshot(st.path)
    stale = rv.content_hash(live_files) != st.base_hash
    diff = rv.unified_diff(live_files, draft_files, "dang-dung", f"ban-nhap-{st.name}")
    checked = rv.check(settings, st)
    folder = RuleFolder(st.path)
    ch = rf.choices(folder, today)
    placed = rf.place_errors(st.path, checked.errors, ch)
    q = request.query_params
    window = {"tu": (q.get("tu") or "").strip()[:20], "den": (q.get("den") or "").strip()[:20]}
    preview, preview_error = None, None
    if checked.valid and diff:
        try:
            start, end = default_window(today, rf.parse_day(window["tu"], "Từ ngày"), rf.parse_day(window["den"], "Đến ngày"))
            if end < start:
                raise ValueError("“Đến ngày” phải sau “Từ ngày”.")
            if (end - start).days > MAX_DAYS:
                raise ValueError(f"Chỉ xem trước được tối đa {MAX_DAYS} ngày một lần.")
            preview = rv.preview(settings, st, start, end)
        except ValueError as exc:
            preview_error = str(exc)
        except StagedRulesInvalid:
            preview_error = "Bản nháp chưa hợp lệ nên chưa xem trước được."
        except RulePackInvalid:
            preview_error = "Bộ quy tắc đang dùng có lỗi nên chưa so sánh được; xem trang Quy tắc."
        except services.ServiceError as exc:
            preview_error = exc.message
    if not window["tu"]:
        window["tu"] = vi.fmt_date(preview.start if preview else today)
    if not window["den"]:
        window["den"] = vi.fmt_date(preview.end if preview else today + timedelta(days=DEFAULT_DAYS))
    users = rf.user_names(settings)
    draft = {"name": st.name, "author": rf.author_vi(st.created_by, "apply", users), "created_at": st.created_at,
             "base_number": st.base_number, "restored_from": st.restored_from}
    return _render(
        request, "rules_draft.html", status, title=f"Bản nháp “{st.name}”", flash=flash, draft=draft, stale=stale,
        diff=diff_lines(diff), changes=rf.changes_vi(live_files, draft_files), check=checked,
        warnings=[error_line(w) for w in checked.warnings], placed=placed, preview=preview,
        preview_error=preview_error, window=window, change_vi=CHANGE_VI, choices=ch, apply_error=apply_error,
        stale_error=stale_error, reason=reason, reason_error=reason_error, current=rv.current_number(settings))


@router.get(DRAFTS + "/{name}")
def draft_page(request: Request, name: str, ok: str | None = None,
               login: LoginSession = Depends(require_login)) -> Response:
    return _draft_page(request, _draft(request, name), flash=DONE.get(ok or ""))


@router.post(DRAFTS + "/{name}/ap-dung")
async def apply_draft(request: Request, name: str, login: LoginSession = Depends(require_editor)) -> Response:
    form = await read_form(request)
    c = ctx(request)
    st = _draft(request, name)
    reason = rf.one_line(str(form.get("ly_do") or ""))[:2000]
    if not reason:
        return _draft_page(request, st, 400, reason_error="Ghi lý do thay đổi (ví dụ: “Theo Kế hoạch số 12/KH-UBND "
                                                          "ngày 05/01/2026”). Chưa có gì được áp dụng.")
    try:
        v = rv.apply(c.settings, st, login.user.actor, reason, c.now())
    except rv.DraftInvalid as exc:
        return _draft_page(request, st, 400, reason=reason,
                           apply_error=f"Bản nháp chưa hợp lệ ({len(exc.errors)} lỗi) nên chưa áp dụng được. "
                                       "Sửa các lỗi ghi bên dưới rồi áp dụng lại.")
    except rv.StaleDraft:
        number = rv.current_number(c.settings)
        return _draft_page(request, st, 409, reason=reason, stale_error=(
            f"Chưa áp dụng: trong lúc bạn sửa bản nháp này, bộ quy tắc đang dùng đã có phiên bản mới hơn "
            f"(số {number}). Áp dụng bây giờ sẽ xóa mất thay đổi đó. Bấm “Cập nhật bản nháp” để đưa các sửa đổi "
            f"của bạn lên phiên bản mới nhất, xem lại, rồi áp dụng."))
    except services.ServiceError as exc:
        return _draft_page(request, st, 400, reason=reason, apply_error=f"Chưa áp dụng: {exc.message}.")
    return RedirectResponse(f"{HISTORY}?ok={v.number}", status_code=303)


@router.post(DRAFTS + "/{name}/cap-nhat")
async def rebase_draft(request: Request, name: str, login: LoginSession = Depends(require_editor)) -> Response:
    await read_form(request)
    c = ctx(request)
    st = _draft(request, name)
    try:
        rv.rebase(c.settings, st, c.now())
    except rv.RebaseConflict as exc:
        where = "; ".join(f"tệp {n}" + (f" quanh dòng {line}" if line else "") for n, line in exc.conflicts)
        return _draft_page(request, st, 409, stale_error=(
            f"Không cập nhật được: bản nháp và phiên bản đang dùng cùng sửa một chỗ ({where}). "
            "Bỏ bản nháp này, tạo bản nháp mới từ phiên bản đang dùng rồi sửa lại."))
    return RedirectResponse(f"{DRAFTS}/{st.name}?ok=cap-nhat", status_code=303)


@router.post(DRAFTS + "/{name}/bo")
async def discard_draft(request: Request, name: str, login: LoginSession = Depends(require_editor)) -> Response:
    await read_form(request)
    st = _draft(request, name)
    rv.discard(ctx(request).settings, st.name)
    return RedirectResponse(f"{DRAFTS}?ok=bo", status_code=303)


# ─── obligations ────────────────────────────────────────────────────────────────────────────────
NEW_OBLIGATION = {"kind": "dinh_ky", "freq": "quarterly", "cutoff": "default", "due_rule": "day_of_last_month",
                  "roll": "forward", "due_from": "period_end", "reporters": [], "months": []}


def _obligation_form(request: Request, st: rv.Staged, *, oid: str | None, values: dict[str, Any],
                     errors: rf.FormErrors, status: int = 200, end_errors: rf.FormErrors | None = None,
                     end_value: str = "") -> Response:
    c = ctx(request)
    folder = RuleFolder(st.path)
    ch = rf.choices(folder, c.today())
    title = "Thêm báo cáo vào bản nháp"
    if oid is not None:
        title = f"Sửa báo cáo: {values.get('title') or ''}"
    return _render(request, "rules_obligation.html", status, title=title, draft=st.name, oid=oid, v=values,
                   errors=errors, end_errors=end_errors or rf.FormErrors(), end_value=end_value, choices=ch,
                   kind_vi=rf.KIND_VI, freq_vi=rf.FREQ_VI, due_vi=rf.DUE_RULE_VI, roll_vi=rf.ROLL_VI,
                   cutoff_vi=rf.CUTOFF_VI, from_vi=rf.FROM_VI)


@router.get(DRAFTS + "/{name}/bao-cao/moi")
def new_obligation(request: Request, name: str, login: LoginSession = Depends(require_editor)) -> Response:
    st = _draft(request, name)
    c = ctx(request)
    ch = rf.choices(RuleFolder(st.path), c.today())
    values = {**NEW_OBLIGATION, "effective_from": vi.fmt_date(c.today()),
              "file": ch.files[-1].id if ch.files else "__moi__"}
    return _obligation_form(request, st, oid=None, values=values, errors=rf.FormErrors())


@router.post(DRAFTS + "/{name}/bao-cao/moi")
async def add_obligation(request: Request, name: str, login: LoginSession = Depends(require_editor)) -> Response:
    form = await read_form(request)
    st = _draft(request, name)
    values = _values(form)
    try:
        oid = rf.add_obligation(RuleFolder(st.path), values, ctx(request).today())
    except rf.FormRejected as exc:
        return _obligation_form(request, st, oid=None, values=values, errors=exc.errors, status=400)
    return RedirectResponse(f"{DRAFTS}/{st.name}?ok=them#bc-{oid}", status_code=303)


def _checked_errors(request: Request, st: rv.Staged, section: str, item_id: str) -> rf.FormErrors:
    """`rules check` errors of the draft that belong to this item, by field."""
    c = ctx(request)
    checked = rv.check(c.settings, st)
    if checked.valid:
        return rf.FormErrors()
    ch = rf.choices(RuleFolder(st.path), c.today())
    return rf.errors_for(rf.place_errors(st.path, checked.errors, ch), section, item_id)


@router.get(DRAFTS + "/{name}/bao-cao/{oid}")
def edit_obligation(request: Request, name: str, oid: str, login: LoginSession = Depends(require_editor)) -> Response:
    st = _draft(request, name)
    _check_id(oid)
    try:
        item = RuleFolder(st.path).item("obligations", oid)
    except EditError as exc:
        raise _not_in_draft(exc) from None
    return _obligation_form(request, st, oid=oid, values=rf.obligation_values(item),
                            errors=_checked_errors(request, st, "obligations", oid))


@router.post(DRAFTS + "/{name}/bao-cao/{oid}")
async def change_obligation(request: Request, name: str, oid: str,
                            login: LoginSession = Depends(require_editor)) -> Response:
    form = await read_form(request)
    st = _draft(request, name)
    _check_id(oid)
    values = _values(form)
    try:
        n = rf.change_obligation(RuleFolder(st.path), oid, values, ctx(request).today())
    except rf.FormRejected as exc:
        return _obligation_form(request, st, oid=oid, values=values, errors=exc.errors, status=400)
    except EditError as exc:
        raise _not_in_draft(exc) from None
    return RedirectResponse(f"{DRAFTS}/{st.name}?ok={'sua' if n else 'khong-doi'}#bc-{oid}", status_code=303)


@router.post(DRAFTS + "/{name}/bao-cao/{oid}/ket-thuc")
async def end_obligation(request: Request, name: str, oid: str,
                         login: LoginSession = Depends(require_editor)) -> Response:
    form = await read_form(request)
    st = _draft(request, name)
    _check_id(oid)
    until = str(form.get("effective_until") or "")
    folder = RuleFolder(st.path)
    try:
        rf.end_obligation(folder, oid, until)
    except rf.FormRejected as exc:
        item = folder.item("obligations", oid)
        return _obligation_form(request, st, oid=oid, values=rf.obligation_values(item), errors=rf.FormErrors(),
                                end_errors=exc.errors, end_value=until, status=400)
    except EditError as exc:
        raise _not_in_draft(exc) from None
    return RedirectResponse(f"{DRAFTS}/{st.name}?ok=ket-thuc#bc-{oid}", status_code=303)


# ─── units ──────────────────────────────────────────────────────────────────────────────────────
def _unit_form(request: Request, st: rv.Staged, values: dict[str, Any], errors: rf.FormErrors,
               status: int = 200) -> Response:
    ch = rf.choices(RuleFolder(st.path), ctx(request).today())
    return _render(request, "rules_unit.html", status, title="Thêm đơn vị vào bản nháp", draft=st.name, v=values,
                   errors=errors, choices=ch, unit_kind_vi=rf.UNIT_KIND_VI, uid=None, unit_name="")


@router.get(DRAFTS + "/{name}/don-vi/moi")
def new_unit(request: Request, name: str, login: LoginSession = Depends(require_editor)) -> Response:
    st = _draft(request, name)
    return _unit_form(request, st, {"kind": "so", "groups": [], "valid_from": vi.fmt_date(ctx(request).today())},
                      rf.FormErrors())


@router.post(DRAFTS + "/{name}/don-vi/moi")
async def add_unit(request: Request, name: str, login: LoginSession = Depends(require_editor)) -> Response:
    form = await read_form(request)
    st = _draft(request, name)
    values = _values(form)
    try:
        uid = rf.add_unit(RuleFolder(st.path), values, ctx(request).today())
    except rf.FormRejected as exc:
        return _unit_form(request, st, values, exc.errors, 400)
    return RedirectResponse(f"{DRAFTS}/{st.name}?ok=don-vi#dv-{uid}", status_code=303)


def _end_unit_form(request: Request, st: rv.Staged, uid: str, values: dict[str, Any], errors: rf.FormErrors,
                   status: int = 200) -> Response:
    ch = rf.choices(RuleFolder(st.path), ctx(request).today())
    if uid not in ch.ids("units"):
        raise HTTPException(404, "Không có đơn vị này trong bản nháp.")
    if not errors:
        errors = _checked_errors(request, st, "units", uid)
    return _render(request, "rules_unit.html", status, title=f"Chấm dứt đơn vị: {ch.unit_name(uid)}", draft=st.name,
                   v=values, errors=errors, choices=ch, unit_kind_vi=rf.UNIT_KIND_VI, uid=uid,
                   unit_name=ch.unit_name(uid))


@router.get(DRAFTS + "/{name}/don-vi/{uid}/cham-dut")
def end_unit_page(request: Request, name: str, uid: str, login: LoginSession = Depends(require_editor)) -> Response:
    st = _draft(request, name)
    _check_id(uid)
    return _end_unit_form(request, st, uid, {"valid_until": "", "successor": ""}, rf.FormErrors())


@router.post(DRAFTS + "/{name}/don-vi/{uid}/cham-dut")
async def end_unit(request: Request, name: str, uid: str, login: LoginSession = Depends(require_editor)) -> Response:
    form = await read_form(request)
    st = _draft(request, name)
    _check_id(uid)
    values = _values(form)
    try:
        rf.end_unit(RuleFolder(st.path), uid, values, ctx(request).today())
    except rf.FormRejected as exc:
        return _end_unit_form(request, st, uid, values, exc.errors, 400)
    except EditError as exc:
        raise _not_in_draft(exc) from None
    return RedirectResponse(f"{DRAFTS}/{st.name}?ok=cham-dut", status_code=303)


# ─── reminder policies ──────────────────────────────────────────────────────────────────────────
def _policy_form(request: Request, st: rv.Staged, pid: str, values: dict[str, Any], errors: rf.FormErrors,
                 status: int = 200) -> Response:
    ch = rf.choices(RuleFolder(st.path), ctx(request).today())
    label = next((p.label for p in ch.policies if p.id == pid), None)
    if label is None:
        raise HTTPException(404, "Không có chính sách nhắc này trong bản nháp.")
    return _render(request, "rules_policy.html", status, title=f"Chính sách nhắc: {label}", draft=st.name, pid=pid,
                   label=label, v=values, errors=errors, choices=ch, supervisor=rf.SUPERVISOR)


@router.get(DRAFTS + "/{name}/nhac/{pid}")
def edit_policy(request: Request, name: str, pid: str, login: LoginSession = Depends(require_editor)) -> Response:
    st = _draft(request, name)
    _check_id(pid)
    try:
        item = RuleFolder(st.path).item("reminder_policies", pid)
    except EditError as exc:
        raise _not_in_draft(exc) from None
    return _policy_form(request, st, pid, rf.policy_values(item), _checked_errors(request, st, "reminder_policies", pid))


@router.post(DRAFTS + "/{name}/nhac/{pid}")
async def change_policy(request: Request, name: str, pid: str, login: LoginSession = Depends(require_editor)) -> Response:
    form = await read_form(request)
    st = _draft(request, name)
    _check_id(pid)
    values = _values(form)
    values.setdefault("on_due_day", "")
    try:
        n = rf.change_policy(RuleFolder(st.path), pid, values, ctx(request).today())
    except rf.FormRejected as exc:
        return _policy_form(request, st, pid, values, exc.errors, 400)
    except EditError as exc:
        raise _not_in_draft(exc) from None
    return RedirectResponse(f"{DRAFTS}/{st.name}?ok={'nhac' if n else 'khong-doi'}", status_code=303)


# ─── history and restore ────────────────────────────────────────────────────────────────────────
HISTORY_LIMIT = 100


def _history_page(request: Request, status: int = 200, flash: str | None = None, error: str | None = None) -> Response:
    c = ctx(request)
    settings = c.settings
    versions = rv.history(settings, c.now())[:HISTORY_LIMIT]
    users = rf.user_names(settings)
    changes = rf.version_changes(settings, [v.number for v in versions])
    rows = [{"number": v.number, "created_at": v.created_at, "author": rf.author_vi(v.author, v.kind, users),
             "hand": v.hand_edit, "kind": v.kind_vi, "reason": v.reason, "files": v.files_changed,
             "added": v.lines_added, "removed": v.lines_removed, "changes": changes.get(v.number, []),
             "current": i == 0} for i, v in enumerate(versions)]
    return _render(request, "rules_history.html", status, title="Lịch sử quy tắc", versions=rows, flash=flash,
                   error=error)


@router.get(HISTORY)
def history_page(request: Request, ok: str | None = None, login: LoginSession = Depends(require_login)) -> Response:
    flash = None
    if ok and ok.isdigit():
        flash = (f"Đã áp dụng: phiên bản số {int(ok)} đang được dùng. Hệ thống đang chạy tự nạp lại quy tắc mới; "
                 "các lần nhắc tiếp theo theo quy tắc này.")
    return _history_page(request, flash=flash)


@router.get(HISTORY + "/{number}")
def version_page(request: Request, number: int, login: LoginSession = Depends(require_login)) -> Response:
    c = ctx(request)
    try:
        v = rv.version(c.settings, number)
    except services.ServiceError:
        raise HTTPException(404, "Không có phiên bản này; xem danh sách ở trang Lịch sử quy tắc.") from None
    users = rf.user_names(c.settings)
    changes = rf.version_changes(c.settings, [number]).get(number, [])
    return _render(request, "rules_version.html", title=f"Phiên bản số {number}", v=v,
                   author=rf.author_vi(v.author, v.kind, users), diff=diff_lines(v.diff or ""), changes=changes,
                   current=rv.current_number(c.settings))


@router.post(HISTORY + "/{number}/khoi-phuc")
async def restore_version(request: Request, number: int, login: LoginSession = Depends(require_editor)) -> Response:
    await read_form(request)
    c = ctx(request)
    try:
        files = rv.version_files(c.settings, number)
    except services.ServiceError:
        raise HTTPException(404, "Không có phiên bản này; xem danh sách ở trang Lịch sử quy tắc.") from None
    if rv.content_hash(files) == rv.folder_hash(rv.live_dir(c.settings)):
        return _history_page(request, 400, error=f"Bộ quy tắc đang dùng đã đúng nội dung phiên bản số {number}: "
                                                 "không có gì để khôi phục.")
    st = rv.stage_version(c.settings, number, login.user.actor, c.now())
    return RedirectResponse(f"{DRAFTS}/{st.name}?ok=khoi-phuc", status_code=303)
