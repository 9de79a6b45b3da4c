"""Chỉ tiêu (/chi-tieu): the KPI report table (as `dondoc kpi report`) with filters, and the charts
(as `dondoc kpi charts`).

Why a cache for the charts: drawing every group takes seconds (matplotlib), far too slow per page
view, yet the charts only change when the date, the rules/KPI files or the recorded values change.
So each group's PNG is drawn once per (as-of date, rules version, KPI files, values recorded) into a
cache folder beside the attachments and served from there. The page itself never draws: each
<img> asks the chart route, which draws its group on the first request (one drawing at a time)
and reuses the file afterwards. No file name comes from the client: the group must be a known
group id and the file is the one this module wrote for it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException
from starlette.requests import Request
from starlette.responses import Response

from engine import vi
from engine.app import services
from engine.app.accounts import LoginSession
from engine.app.config import Settings
from engine.app.rulesholder import fingerprint
from engine.app.web.routes.rules_page import error_line
from engine.app.web.security import ctx, require_login
from engine.errors import RulePackInvalid
from engine.kpi.classify import val_text
from engine.kpi.loader import KpiPack
from engine.kpi.values import values_version
from engine.rules_loader import RulePack

router = APIRouter()

STATUS_ORDER = ["missed", "behind", "no_data", "on_track", "met", "not_due"]
STATUS_CLASS = {"met": "k-met", "on_track": "k-on-track", "behind": "k-behind", "missed": "k-missed",
                "no_data": "k-no-data", "not_due": "k-not-due"}
KEEP_CHART_SETS = 12                  # cache folders kept (one per as-of date × version); older ones removed
_KEY = re.compile(r"^[0-9a-f]{24}$")
_draw_lock = threading.Lock()


# ─── the chart cache ────────────────────────────────────────────────────────────────────────────
def cache_root(settings: Settings) -> Path:
    """Beside the attachments (the installation's data folder); the system temp folder if that is not writable."""
    root = Path(settings.web.upload_dir).parent / ".chart-cache"
    try:
        root.mkdir(parents=True, exist_ok=True)
        return root
    except OSError:
        fallback = Path(tempfile.gettempdir()) / "dondoc-chart-cache"
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


def values_stamp(settings: Settings) -> str:
    """The recorded KPI values' version token (engine/kpi/values.py): new with every write to them,
    a correction or a deletion included (unknown: a new stamp each time, nothing reused)."""
    with services.open_session(settings) as ses:
        return values_version(ses) or uuid.uuid4().hex


def chart_key(settings: Settings, pack: RulePack, kpi: KpiPack, as_of: date) -> str:
    """Names one set of charts: what they are drawn from (never anything the client typed)."""
    parts = [as_of.isoformat(), pack.version, fingerprint([Path(kpi.directory)]), repr(values_stamp(settings)),
             str(settings.database.url)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def _evict(root: Path, keep: str) -> None:
    sets = sorted((p for p in root.iterdir() if p.is_dir() and _KEY.match(p.name) and p.name != keep),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    for old in sets[KEEP_CHART_SETS - 1:]:
        shutil.rmtree(old, ignore_errors=True)


def chart_file(settings: Settings, pack: RulePack, kpi: KpiPack, as_of: date, group: str) -> Path | None:
    """The PNG of one group as of a day, drawn on first use (one drawing at a time: matplotlib is
    CPU-bound and the machine small) and reused afterwards; None when the group has no targets."""
    if not any(t.group == group for t in kpi.targets.values()):
        return None
    root = cache_root(settings)
    key = chart_key(settings, pack, kpi, as_of)
    folder = root / key
    path = folder / f"{group}.png"
    if path.is_file():
        return path
    with _draw_lock:
        if path.is_file():
            return path
        fresh = not folder.is_dir()
        folder.mkdir(exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".drawing-", dir=root))
        try:
            drawn = services.kpi_charts(settings, pack, kpi, as_of, work, groups=[group])
            if not drawn:
                return None
            os.replace(drawn[0], path)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if fresh:
            _evict(root, key)
    return path


# ─── the report ─────────────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class KpiQuery:
    as_of: date
    group: str | None
    status: str | None
    as_of_text: str


def _query(request: Request, kpi: KpiPack, today: date) -> KpiQuery:
    q = request.query_params
    text = (q.get("ngay") or "").strip()[:20]
    as_of = services.parse_date(text, "Ngày tính") if text else today
    group = (q.get("nhom") or "").strip() or None
    if group is not None and group not in kpi.groups:
        raise HTTPException(400, "Không có nhóm chỉ tiêu này; chọn lại trong danh sách.")
    status = (q.get("tinh-trang") or "").strip() or None
    if status is not None and status not in vi.KPI_STATUS:
        raise HTTPException(400, "Tình trạng không hợp lệ; chọn lại trong danh sách.")
    return KpiQuery(as_of, group, status, vi.fmt_date(as_of))


def _group_label(kpi: KpiPack, gid: str) -> str:
    g = kpi.groups[gid]
    return (f"{g.code}) " if g.code else "") + g.name


@router.get("/chi-tieu")
def kpi_page(request: Request, login: LoginSession = Depends(require_login)) -> Response:
    c = ctx(request)
    pack = c.pack()
    today = c.today()
    try:
        kpi = services.load_kpi_pack(pack)
    except RulePackInvalid as exc:
        return request.app.state.pages.render(request, "kpi.html", title="Chỉ tiêu", nav="kpi", today=today,
                                              kpi_errors=[error_line(e) for e in exc.errors])
    q = _query(request, kpi, today)
    rows = services.kpi_report(c.settings, pack, kpi, q.as_of, group=q.group)
    counts = {k: sum(1 for r in rows if r.status == k) for k in STATUS_ORDER}
    shown = [r for r in rows if q.status is None or r.status == q.status]
    sections: list[tuple[str, list]] = []
    for r in shown:
        if not sections or sections[-1][0] != r.group_name:
            sections.append((r.group_name, []))
        sections[-1][1].append(r)
    with_targets = {t.group for t in kpi.targets.values()}
    charts = [(gid, _group_label(kpi, gid)) for gid in kpi.group_order()
              if gid in with_targets and (q.group is None or gid == q.group)]
    return request.app.state.pages.render(
        request, "kpi.html", title="Chỉ tiêu", nav="kpi", today=today, kpi_errors=None, q=q, total=len(rows),
        counts=counts, order=STATUS_ORDER, kclass=STATUS_CLASS, sections=sections, shown=len(shown), val=val_text,
        groups=[(gid, _group_label(kpi, gid)) for gid in kpi.group_order()], charts=charts,
        statuses=[(k, vi.KPI_STATUS[k]) for k in STATUS_ORDER])


@router.get("/chi-tieu/bieu-do/{group}.png")
def kpi_chart(group: str, request: Request, login: LoginSession = Depends(require_login)) -> Response:
    c = ctx(request)
    pack = c.pack()
    try:
        kpi = services.load_kpi_pack(pack)
    except RulePackInvalid:
        raise HTTPException(404, "Tệp chỉ tiêu đang có lỗi nên chưa vẽ được biểu đồ.") from None
    if group not in kpi.groups:
        raise HTTPException(404, "Không có nhóm chỉ tiêu này.")
    text = (request.query_params.get("ngay") or "").strip()[:20]
    as_of = services.parse_date(text, "Ngày tính") if text else c.today()
    path = chart_file(c.settings, pack, kpi, as_of, group)
    if path is None:
        raise HTTPException(404, "Nhóm này chưa có mục tiêu nào để vẽ biểu đồ.")
    return Response(path.read_bytes(), media_type="image/png")
