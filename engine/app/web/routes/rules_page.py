"""Quy tắc (/quy-tac): the rules in use, the result of the last check, and the preview of a staged
rules folder (what moving it into rules/ would change), as a readable page.

Why here and not only in the CLI: the secretariat edits a copy of rules/ and wants to see, before
it goes live, which deadlines move and which notices appear or disappear; the leadership wants to
see that the rules in use are valid. Nothing on this page changes state: the check reads files, the
preview runs on throw-away copies of the database (engine/app/preview.py).

A web user must not make the server read any folder it can reach: a staged folder is accepted only
under the installation's directory (the working directory) or beside the live rules folder (its
parent, where ``dondoc rules stage`` puts drafts under ``.dondoc-staging``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from engine import vi
from engine.app import ruleversions, services
from engine.app.accounts import LoginSession
from engine.app.config import Settings
from engine.app.preview import DEFAULT_DAYS, MAX_DAYS, StagedRulesInvalid, default_window
from engine.app.rulesholder import fingerprint
from engine.app.web.security import ctx, require_login
from engine.errors import RuleError, RulePackInvalid, display_path

router = APIRouter()

MAX_PATH_CHARS = 500
STAGE_VI = {"rules": "tệp quy tắc", "kpi": "tệp chỉ tiêu (kpi/)", "templates": "mẫu thư"}
CHANGE_VI = {"added": "Thêm", "moved": "Dời", "removed": "Bỏ"}


# ─── the last check (cached per content of the files: a check reads every rule file) ────────────
@dataclass(frozen=True)
class CheckView:
    valid: bool
    stage: str                        # rules | kpi | templates
    errors: list[str]                 # "tệp:dòng — message"
    warnings: list[str]
    checked_at: datetime


_check_lock = threading.Lock()
_check_cache: dict[str, tuple[str, CheckView]] = {}     # rules dir → (fingerprint, result)


def error_line(e: RuleError) -> str:
    """A rule error as a secretary reads it: where (file:line) — what is wrong (the model's field
    path, e.g. obligations[3].due.day, is left to `rules check --json`: the line says where)."""
    where = e.file if e.line is None else f"{e.file}:{e.line}"
    return f"{where} — {e.message}"


def _watched(settings: Settings) -> list[Path]:
    paths = [settings.rules.path, settings.calendar.path]
    if settings.delivery.templates_dir is not None:
        paths.append(settings.delivery.templates_dir)
    return paths


def last_check(settings: Settings, now: datetime) -> CheckView:
    """`rules check` on the live folder (rules, KPI files, templates), re-run only when a file changed."""
    key = str(settings.rules.path)
    fp = fingerprint(_watched(settings))
    with _check_lock:
        hit = _check_cache.get(key)
        if hit is not None and hit[0] == fp:
            return hit[1]
        result = services.check_rules(settings)
        warnings = [error_line(w) for w in result.pack.warnings] if result.pack is not None else []
        view = CheckView(result.valid, result.stage, [error_line(e) for e in result.errors], warnings, now)
        _check_cache[key] = (fp, view)
        return view


# ─── the staged folder a user names ─────────────────────────────────────────────────────────────
def allowed_roots(settings: Settings) -> list[Path]:
    """Where a staged rules folder may be: the installation's directory and the live rules' parent."""
    roots: list[Path] = []
    for root in (Path.cwd(), Path(settings.rules.path).parent):
        try:
            r = root.resolve()
        except OSError:
            continue
        if r == Path(r.anchor):     # started from "/" (no working directory set): that would allow everything
            continue
        if r not in roots:
            roots.append(r)
    return roots


def staged_folder(settings: Settings, text: str) -> Path:
    """The folder the user typed, resolved (symlinks and ".." followed) and checked to lie strictly
    under an allowed root; raises InvalidInput with a Vietnamese reason otherwise."""
    text = text.strip()
    if not text or len(text) > MAX_PATH_CHARS or "\x00" in text:
        raise services.InvalidInput("Nhập đường dẫn thư mục quy tắc thử (ví dụ: .dondoc-staging/ban-nhap).")
    roots = allowed_roots(settings)
    if not roots:
        raise services.InvalidInput("Chưa xác định được thư mục cài đặt nên không xem trước được quy tắc thử trên web; "
                                    "dùng lệnh “dondoc preview”.")
    raw = Path(text)
    base = Path(settings.rules.path).parent
    try:
        path = (raw if raw.is_absolute() else base / raw).resolve()
    except (OSError, RuntimeError):
        raise services.InvalidInput(f"Không đọc được đường dẫn “{text}”.") from None
    if not any(path != r and path.is_relative_to(r) for r in roots):
        shown = " hoặc ".join(f"“{r}”" for r in roots)
        raise services.InvalidInput(
            f"Không được xem trước thư mục “{text}”: chỉ nhận thư mục con của thư mục cài đặt {shown} "
            "(ví dụ bản nháp tạo bằng “dondoc rules stage”, trong .dondoc-staging).")
    if not path.is_dir():
        raise services.InvalidInput(f"Không có thư mục “{text}” (đường dẫn tương đối tính từ “{base.resolve()}”).")
    if path == Path(settings.rules.path).resolve():
        raise services.InvalidInput("Đây là thư mục quy tắc đang dùng; hãy chọn một bản sao đã sửa của nó.")
    return path


def _day(text: str | None, what: str) -> date | None:
    text = (text or "").strip()
    return services.parse_date(text, what) if text else None


def _drafts(settings: Settings) -> list[str]:
    """The drafts made by `dondoc rules stage`, as paths to offer in the form (relative to the rules' parent)."""
    try:
        base = Path(settings.rules.path).parent.resolve()
        return [str(d.path.resolve().relative_to(base)) for d in ruleversions.drafts(settings)]
    except Exception:  # noqa: BLE001 - a suggestion list only; a broken draft record must not break the page
        return []


def _version_number(settings: Settings) -> int | None:
    try:
        return ruleversions.current_number(settings)
    except Exception:  # noqa: BLE001 - the version table is optional information on this page
        return None


@router.get("/quy-tac")
def rules_page(request: Request, login: LoginSession = Depends(require_login)) -> Response:
    c = ctx(request)
    settings = c.settings
    state = c.rules.state()
    pack = state.pack
    today = c.today()
    check = last_check(settings, c.now())
    q = request.query_params
    form = {"thu_muc": (q.get("thu-muc") or "").strip()[:MAX_PATH_CHARS], "tu": (q.get("tu") or "").strip()[:20],
            "den": (q.get("den") or "").strip()[:20]}
    preview, preview_error, staged_errors = None, None, None
    if form["thu_muc"]:
        try:
            folder = staged_folder(settings, form["thu_muc"])
            start, end = default_window(today, _day(form["tu"], "Từ ngày"), _day(form["den"], "Đến ngày"))
            if end < start:
                raise services.InvalidInput("“Đến ngày” phải sau “Từ ngày”.")
            if (end - start).days > MAX_DAYS:
                raise services.InvalidInput(f"Chỉ xem trước được tối đa {MAX_DAYS} ngày một lần.")
            try:
                preview = services.preview(settings, folder, start, end, live=pack)
            except StagedRulesInvalid as exc:
                staged_errors = [error_line(e) for e in exc.errors]
            except RulePackInvalid:
                preview_error = "Quy tắc đang dùng có lỗi nên chưa so sánh được; sửa lỗi trong phần “Kết quả kiểm tra” trước."
        except services.ServiceError as exc:
            preview_error = exc.message
    if not form["tu"]:
        form["tu"] = vi.fmt_date(preview.start if preview else today)
    if not form["den"]:
        form["den"] = vi.fmt_date(preview.end if preview else today + timedelta(days=DEFAULT_DAYS))
    live = None
    if pack is not None:
        live = {"name": pack.info.name, "directory": display_path(pack.directory), "obligations": len(pack.obligations),
                "units": len(pack.units), "groups": len(pack.groups), "policies": len(pack.policies),
                "files": len(pack.files), "version": pack.version[:12], "number": _version_number(settings)}
    return request.app.state.pages.render(
        request, "rules.html", title="Quy tắc", nav="rules", today=today, live=live, state=state,
        newest_errors=[error_line(e) for e in state.errors], check=check, form=form, preview=preview,
        preview_error=preview_error, staged_errors=staged_errors, drafts=_drafts(settings),
        roots_text=" hoặc ".join(f"“{r}”" for r in allowed_roots(settings)), stage_vi=STAGE_VI, change_vi=CHANGE_VI)