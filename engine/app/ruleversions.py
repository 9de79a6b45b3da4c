"""Versions of the live rules folder: edit a staged copy, check it, see its diff and preview, apply
it with an author and a reason, list what changed, restore an earlier version.

Why: a running daemon reloads rules/ the moment a file changes, so an edit made in place is live
before anybody checked it, and nobody can say later who moved a deadline or what it was. Here:

- **stage** copies the live folder to ``<parent of rules>/.dondoc-staging/<name>/`` (outside the
  folder the daemon watches) and records which version it was copied from (``<name>.json``);
- the copy is edited (engine/app/ruleedit.py from a form, or any text editor), then **diff**,
  **check** (``rules check`` on the copy, errors with file:line) and **preview** (deadlines and
  notices that would change, on a throw-away copy of the state);
- **apply** refuses an invalid copy, a missing reason, and a copy whose base is no longer the live
  version (someone applied or hand-edited meanwhile: "rebase" first, so nobody overwrites another's
  change unseen); then the copy replaces the live folder in one step (a new folder is written beside
  it and exchanged with it: Linux ``renameat2(RENAME_EXCHANGE)``; elsewhere two renames) and the
  version is recorded (table ``rule_versions``: author, reason, time, diff, the whole folder);
- **restore** stages an earlier version's files and applies them through the same check;
- **record_hand_edits** notices that the live folder's content (a SHA-256 of paths and bytes, not
  mtimes) differs from the last recorded version and records it, author unknown, so the history has
  no holes. stage/apply/history call it; the daemon should call it after each reload.

Applying and recording hold one lock per database (engine/dblock.py), so two applies, or an apply
and the daemon's hand-edit check, never interleave. Services raise ServiceError (Vietnamese) and
never print.
"""

from __future__ import annotations

import ctypes
import difflib
import errno
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from engine.app import services
from engine.app.config import Settings
from engine.app.ruleedit import merge3
from engine.app.services import InvalidInput, ServiceError
from engine.clock import local
from engine.errors import RuleError
from engine.state import RuleVersionRow
from engine.vi import fmt_moment

STAGING = ".dondoc-staging"
DEFAULT_DRAFT = "ban-nhap"
UNKNOWN_AUTHOR = "không rõ (sửa trực tiếp tệp)"
HAND_EDIT_REASON = "Các tệp trong thư mục quy tắc được sửa trực tiếp, ngoài dondoc"
INITIAL_REASON = "Bộ quy tắc lúc dondoc bắt đầu ghi phiên bản"
RULES_LOCK_KEY = 0x646F6E72756C   # "donrul"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,59}$")



local_time = local     # Vietnam's time; a naive moment from SQLite is UTC (engine.clock.local)


KIND_VI = {"initial": "Ghi nhận ban đầu", "apply": "Áp dụng bản nháp", "restore": "Khôi phục",
           "hand_edit": "Sửa trực tiếp tệp"}


class StaleDraft(ServiceError):
    """The live rules changed after the draft was copied: apply would silently undo that change."""


class DraftInvalid(ServiceError):
    """The draft does not pass `rules check`; ``errors`` carry file (inside the draft), line, field."""

    def __init__(self, message: str, errors: list[RuleError]):
        self.errors = errors
        super().__init__(message)


class RebaseConflict(ServiceError):
    """Both the draft and the newer live version changed the same lines."""

    def __init__(self, message: str, conflicts: list[tuple[str, int]]):
        self.conflicts = conflicts
        super().__init__(message)


# ─── folder content ─────────────────────────────────────────────────────────────────────────────
Files = dict[str, str]      # relative POSIX path -> text (bytes that are not UTF-8 kept as surrogates)


def _visible(rel: Path) -> bool:
    return not any(part.startswith(".") for part in rel.parts)


def snapshot(folder: Path) -> Files:
    """Every regular file under ``folder`` except hidden ones (editor swap files, .git)."""
    folder = Path(folder)
    out: Files = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if _visible(rel) and p.is_file():
            out[rel.as_posix()] = p.read_bytes().decode("utf-8", "surrogateescape")
    return out


def content_hash(files: Files) -> str:
    """SHA-256 of the paths and bytes (not mtimes: touching a file is not a new version)."""
    h = hashlib.sha256()
    for name in sorted(files):
        data = files[name].encode("utf-8", "surrogateescape")
        raw = name.encode("utf-8", "surrogateescape")
        h.update(len(raw).to_bytes(4, "big") + raw + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def folder_hash(folder: Path) -> str:
    return content_hash(snapshot(folder))


def unified_diff(old: Files, new: Files, old_label: str = "a", new_label: str = "b") -> str:
    """One unified diff over every file that differs (added and removed files included)."""
    chunks: list[str] = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        lines = difflib.unified_diff((a or "").splitlines(True), (b or "").splitlines(True),
                                     fromfile=f"{old_label}/{name}" if a is not None else "/dev/null",
                                     tofile=f"{new_label}/{name}" if b is not None else "/dev/null")
        for line in lines:
            chunks.append(line if line.endswith("\n") else line + "\n\\ Không có xuống dòng ở cuối tệp\n")
    return "".join(chunks)


def changed_files(diff_text: str) -> list[str]:
    """The files a diff touches (from its headers)."""
    names: list[str] = []
    for line in diff_text.splitlines():
        if line.startswith(("--- ", "+++ ")):
            path = line[4:].split("\t")[0]
            if path != "/dev/null":
                name = path.split("/", 1)[1] if "/" in path else path
                if name not in names:
                    names.append(name)
    return names


def diff_stats(diff_text: str) -> tuple[int, int]:
    """(lines added, lines removed)."""
    plus = minus = 0
    for line in diff_text.splitlines():
        if line.startswith("+") and not line.startswith("+++ "):
            plus += 1
        elif line.startswith("-") and not line.startswith("--- "):
            minus += 1
    return plus, minus


# ─── where things are ───────────────────────────────────────────────────────────────────────────
def live_dir(settings: Settings) -> Path:
    """The live rules folder, symlinks resolved (the exchange must swap the real folder)."""
    return Path(settings.rules.path).resolve()


def staging_root(settings: Settings) -> Path:
    return live_dir(settings).parent / STAGING


def check_name(name: str | None) -> str:
    name = (name or DEFAULT_DRAFT).strip()
    if not _NAME.match(name):
        raise InvalidInput(f"tên bản nháp “{name}” không hợp lệ: chỉ chữ thường không dấu, số, “-”, “_”, “.” "
                           "(ví dụ: ke-hoach-12)", exit_code=2)
    return name


@dataclass(frozen=True)
class Staged:
    """A draft: a copy of the live folder being edited, and the version it was copied from."""
    name: str
    path: Path                      # the staged rules folder
    live_dir: Path
    base_hash: str
    base_number: int | None
    created_at: datetime
    created_by: str
    restored_from: int | None = None

    @property
    def record(self) -> Path:
        return self.path.parent / f"{self.name}.json"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "base_number": self.base_number,
                "created_at": self.created_at.isoformat(), "created_by": self.created_by,
                "restored_from": self.restored_from}


def _write_record(st: Staged) -> None:
    data = {"name": st.name, "live_dir": str(st.live_dir), "base_hash": st.base_hash, "base_number": st.base_number,
            "created_at": st.created_at.isoformat(), "created_by": st.created_by, "restored_from": st.restored_from}
    tmp = st.record.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, st.record)


def open_staged(settings: Settings, name: str | None = None) -> Staged:
    """The draft ``name`` (default ``ban-nhap``); ServiceError if there is none."""
    name = check_name(name)
    root = staging_root(settings)
    record, path = root / f"{name}.json", root / name
    if not record.is_file() or not path.is_dir():
        raise ServiceError(f"chưa có bản nháp “{name}”: tạo bằng “dondoc rules stage {name}”")
    try:
        d = json.loads(record.read_text(encoding="utf-8"))
        return Staged(name, path, Path(d["live_dir"]), d["base_hash"], d.get("base_number"),
                      datetime.fromisoformat(d["created_at"]), d.get("created_by") or "", d.get("restored_from"))
    except (ValueError, KeyError, TypeError):
        raise ServiceError(f"tệp ghi chú của bản nháp “{name}” ({record}) bị hỏng: bỏ bản nháp rồi tạo lại") from None


def drafts(settings: Settings) -> list[Staged]:
    """Every draft of this rules folder, oldest first."""
    root = staging_root(settings)
    if not root.is_dir():
        return []
    out = []
    for rec in sorted(root.glob("*.json")):
        try:
            out.append(open_staged(settings, rec.stem))
        except ServiceError:
            continue
    return sorted(out, key=lambda s: s.created_at)


def discard(settings: Settings, name: str | None = None) -> None:
    """Remove a draft (its folder and record)."""
    st = open_staged(settings, name)
    shutil.rmtree(st.path, ignore_errors=True)
    st.record.unlink(missing_ok=True)


# ─── locking and the version table ──────────────────────────────────────────────────────────────
@contextmanager
def _rules_lock(settings: Settings) -> Iterator[None]:
    from engine.dblock import database_lock

    services.database_engine(settings)          # migrated first (creates the SQLite file if needed)
    with database_lock(settings.database.url, suffix=".rules-lock", key=RULES_LOCK_KEY, wait=True):
        yield


def _last(ses: Any) -> RuleVersionRow | None:
    return ses.exec(select(RuleVersionRow).order_by(col(RuleVersionRow.number).desc()).limit(1)).first()


def _row_files(row: RuleVersionRow) -> Files:
    return json.loads(row.files)


def _insert(settings: Settings, *, files: Files, kind: str, author: str, reason: str, now: datetime,
            restored_from: int | None = None) -> RuleVersionRow:
    """The next version (number = last + 1, diff from the last one's files)."""
    with services.open_session(settings) as ses:
        last = _last(ses)
        diff = unified_diff(_row_files(last), files) if last is not None else ""
        row = RuleVersionRow(number=(last.number + 1) if last else 1, content_hash=content_hash(files), kind=kind,
                             author=author[:200], reason=reason, base_number=last.number if last else None,
                             restored_from=restored_from, created_at=now, diff=diff,
                             files=json.dumps(files, ensure_ascii=False))
        ses.add(row)
        ses.commit()
        ses.refresh(row)
        return row


def _record_hand_edits(settings: Settings, now: datetime) -> RuleVersionRow | None:
    folder = live_dir(settings)
    if not folder.is_dir():
        return None
    files = snapshot(folder)
    digest = content_hash(files)
    with services.open_session(settings) as ses:
        last = _last(ses)
        if last is not None and last.content_hash == digest:
            return None
    kind, reason = ("hand_edit", HAND_EDIT_REASON) if last is not None else ("initial", INITIAL_REASON)
    try:
        return _insert(settings, files=files, kind=kind, author=UNKNOWN_AUTHOR, reason=reason, now=now)
    except IntegrityError:        # another process without the lock (an older dondoc) recorded it first
        return None


def record_hand_edits(settings: Settings, now: datetime) -> RuleVersionRow | None:
    """Record the live folder as a new version (author unknown) if its content is not the last
    recorded version's; the first call records the folder as version 1. Returns the new row, or
    None when nothing changed. For the daemon: call after each reload of the rules."""
    with _rules_lock(settings):
        return _record_hand_edits(settings, now)


# ─── versions, as a front end shows them ────────────────────────────────────────────────────────
@dataclass(frozen=True)
class RuleVersion:
    number: int
    kind: str
    author: str
    reason: str
    created_at: datetime
    content_hash: str
    base_number: int | None
    restored_from: int | None
    files_changed: list[str] = field(default_factory=list)
    lines_added: int = 0
    lines_removed: int = 0
    diff: str | None = None          # only for one version (version(), apply(), restore())

    @property
    def kind_vi(self) -> str:
        text = KIND_VI.get(self.kind, self.kind)
        return f"{text} phiên bản số {self.restored_from}" if self.kind == "restore" and self.restored_from else text

    @property
    def hand_edit(self) -> bool:
        return self.kind in ("hand_edit", "initial")

    def as_dict(self) -> dict[str, Any]:
        d = {"number": self.number, "kind": self.kind, "kind_vi": self.kind_vi, "author": self.author,
             "reason": self.reason, "created_at": self.created_at.isoformat(), "content_hash": self.content_hash,
             "base_number": self.base_number, "restored_from": self.restored_from,
             "files_changed": self.files_changed, "lines_added": self.lines_added, "lines_removed": self.lines_removed}
        if self.diff is not None:
            d["diff"] = self.diff
        return d


def _version(row: Any, with_diff: bool = False) -> RuleVersion:
    plus, minus = diff_stats(row.diff)
    return RuleVersion(row.number, row.kind, row.author, row.reason, row.created_at, row.content_hash,
                       row.base_number, row.restored_from, changed_files(row.diff), plus, minus,
                       row.diff if with_diff else None)


def history(settings: Settings, now: datetime) -> list[RuleVersion]:
    """Every version, newest first (a hand edit since the last one is recorded first)."""
    record_hand_edits(settings, now)
    R = RuleVersionRow
    with services.open_session(settings) as ses:
        rows = ses.exec(select(R.number, R.kind, R.author, R.reason, R.created_at, R.content_hash, R.base_number,
                               R.restored_from, R.diff).order_by(col(R.number).desc())).all()
    return [_version(r) for r in rows]


def version(settings: Settings, number: int) -> RuleVersion:
    """One version with its diff (from the version before it)."""
    with services.open_session(settings) as ses:
        row = ses.exec(select(RuleVersionRow).where(RuleVersionRow.number == number)).first()
    if row is None:
        raise InvalidInput(f"không có phiên bản số {number}: xem danh sách bằng “dondoc rules history”")
    return _version(row, with_diff=True)


def version_files(settings: Settings, number: int) -> Files:
    with services.open_session(settings) as ses:
        row = ses.exec(select(RuleVersionRow).where(RuleVersionRow.number == number)).first()
    if row is None:
        raise InvalidInput(f"không có phiên bản số {number}: xem danh sách bằng “dondoc rules history”")
    return _row_files(row)


def current_number(settings: Settings) -> int | None:
    with services.open_session(settings) as ses:
        last = _last(ses)
        return last.number if last else None


# ─── stage, diff, check, preview ────────────────────────────────────────────────────────────────
def _write_folder(target: Path, files: Files) -> None:
    target.mkdir(parents=True)
    for name, text in files.items():
        p = target / name
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "wb") as fh:
            fh.write(text.encode("utf-8", "surrogateescape"))
            fh.flush()
            os.fsync(fh.fileno())


def _new_draft(settings: Settings, name: str | None, actor: str, now: datetime, files: Files | None,
               restored_from: int | None = None, replace: bool = False) -> Staged:
    name = check_name(name)
    live = live_dir(settings)
    if not live.is_dir():
        raise ServiceError(f"không có thư mục quy tắc {live}")
    with _rules_lock(settings):
        _record_hand_edits(settings, now)          # the base is always a recorded version
        live_files = snapshot(live)
        base = current_number(settings)
    root = staging_root(settings)
    path = root / name
    if (path.exists() or (root / f"{name}.json").exists()):
        if not replace:
            raise ServiceError(f"đã có bản nháp “{name}”: sửa tiếp trong {path}, áp dụng, hoặc tạo lại bằng --replace "
                               "(mất các sửa đổi trong bản nháp cũ)")
        shutil.rmtree(path, ignore_errors=True)
        (root / f"{name}.json").unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    _write_folder(path, live_files if files is None else files)
    st = Staged(name, path, live, content_hash(live_files), base, now, actor, restored_from)
    _write_record(st)
    return st


def stage(settings: Settings, name: str | None, actor: str, now: datetime, replace: bool = False) -> Staged:
    """Copy the live rules folder to a draft ``name`` to edit (engine.app.ruleedit.RuleFolder(st.path))."""
    return _new_draft(settings, name, actor, now, None, replace=replace)


def stage_version(settings: Settings, number: int, actor: str, now: datetime, name: str | None = None,
                  replace: bool = True) -> Staged:
    """A draft holding an earlier version's files (default name ``khoi-phuc-<number>``): check,
    diff and preview it like any draft, then apply() it — that is a restore."""
    files = version_files(settings, number)
    return _new_draft(settings, name or f"khoi-phuc-{number}", actor, now, files, restored_from=number, replace=replace)


def diff(staged: Staged) -> str:
    """What applying the draft would change: unified diff, live folder → draft."""
    return unified_diff(snapshot(staged.live_dir), snapshot(staged.path), "dang-dung", f"ban-nhap-{staged.name}")


@dataclass
class DraftCheck:
    valid: bool
    errors: list[RuleError]           # file: path inside the draft (obligations-001-khhd-57.yaml), line, field
    warnings: list[Any]
    summary: dict[str, Any]


def _relative(e: RuleError, folder: Path) -> RuleError:
    try:
        rel = Path(e.file).resolve().relative_to(folder.resolve()).as_posix()
    except (ValueError, OSError):
        rel = e.file
    return RuleError(rel, e.line, e.field, e.message, e.rank)


def check(settings: Settings, staged: Staged) -> DraftCheck:
    """`rules check` on the draft (rules, KPI files, mail templates); errors name the file inside
    the draft, the line and the field, so a form can put each next to its field."""
    result = services.check_rules(services.with_paths(settings, rules=staged.path))
    errors = [_relative(e, staged.path) for e in result.errors]
    warnings = result.pack.warnings if result.valid and result.pack is not None else []
    summary = result.summary()
    if not result.valid:
        summary = {"valid": False, "errors": [e.as_dict() for e in errors]}
    return DraftCheck(result.valid, errors, warnings, summary)


def preview(settings: Settings, staged: Staged, start: date, end: date, **kwargs: Any):
    """services.preview on the draft: deadlines and notices that applying it would add, move, remove."""
    return services.preview(settings, staged.path, start, end, **kwargs)


# ─── rebase ─────────────────────────────────────────────────────────────────────────────────────
def _merge_text(base: str | None, live: str | None, draft: str | None, name: str,
                conflicts: list[tuple[str, int]]) -> str | None:
    if draft == base:
        return live
    if live == base or live == draft:
        return draft
    if base is None or live is None or draft is None:
        conflicts.append((name, 0))
        return draft
    b, m, t = base.splitlines(True), live.splitlines(True), draft.splitlines(True)
    found: list[int] = []
    merged = merge3(b, m, t, conflicts=found)
    conflicts.extend((name, line) for line in found)
    return "".join(merged)


def rebase(settings: Settings, staged: Staged, now: datetime) -> Staged:
    """Carry the draft's changes onto the newest live version: files only the draft changed keep
    the draft's text, files only the live version changed take the live text, a file both changed
    is merged line by line. Where both changed the same lines nothing is written and
    RebaseConflict names the file and line."""
    with _rules_lock(settings):
        _record_hand_edits(settings, now)
        live_files = snapshot(staged.live_dir)
        number = current_number(settings)
        with services.open_session(settings) as ses:
            row = ses.exec(select(RuleVersionRow).where(RuleVersionRow.content_hash == staged.base_hash)
                           .order_by(col(RuleVersionRow.number).desc())).first()
            base_files = _row_files(row) if row is not None else None
    if content_hash(live_files) == staged.base_hash:
        return staged
    if base_files is None:
        raise ServiceError(f"không tìm thấy phiên bản gốc của bản nháp “{staged.name}”: tạo bản nháp mới "
                           f"(dondoc rules stage {staged.name} --replace) rồi sửa lại")
    draft_files = snapshot(staged.path)
    conflicts: list[tuple[str, int]] = []
    merged: Files = {}
    for name in sorted(set(base_files) | set(live_files) | set(draft_files)):
        text = _merge_text(base_files.get(name), live_files.get(name), draft_files.get(name), name, conflicts)
        if text is not None:
            merged[name] = text
    if conflicts:
        where = "; ".join(f"{n}" + (f" (quanh dòng {line} của bản đang dùng)" if line else "") for n, line in conflicts)
        raise RebaseConflict(f"bản nháp “{staged.name}” và phiên bản đang dùng (số {number}) cùng sửa một chỗ: {where}. "
                             f"Tạo bản nháp mới từ phiên bản đang dùng (dondoc rules stage {staged.name} --replace) "
                             "rồi sửa lại; xem bản nháp cũ bằng “dondoc rules diff”.", conflicts)
    tmp = staged.path.parent / f".{staged.name}.rebase-{uuid.uuid4().hex[:8]}"
    _write_folder(tmp, merged)
    old = staged.path.parent / f".{staged.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(staged.path, old)
    os.rename(tmp, staged.path)
    shutil.rmtree(old, ignore_errors=True)
    new = Staged(staged.name, staged.path, staged.live_dir, content_hash(live_files), number, staged.created_at,
                 staged.created_by, staged.restored_from)
    _write_record(new)
    return new


# ─── apply ──────────────────────────────────────────────────────────────────────────────────────
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one step (Linux renameat2 RENAME_EXCHANGE): a reader of either path sees
    the old or the new content, never neither. False where the system cannot (then: two renames)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_in(live: Path, files: Files) -> None:
    """Replace the live folder's visible content by ``files`` in one step. Hidden entries of the
    live folder (.git …) are carried over; the new files get fresh times (the daemon's watcher
    compares sizes and mtimes)."""
    token = uuid.uuid4().hex[:8]
    new = live.parent / f".{live.name}.new-{token}"
    _write_folder(new, files)
    os.chmod(new, live.stat().st_mode & 0o7777)
    hidden = [p.name for p in live.iterdir() if p.name.startswith(".")]
    for h in hidden:
        os.rename(live / h, new / h)
    try:
        if exchange(new, live):
            old = new
        else:
            old = live.parent / f".{live.name}.old-{token}"
            os.rename(live, old)
            os.rename(new, live)
    except BaseException:
        for h in hidden:
            if (new / h).exists():
                os.rename(new / h, live / h)
        shutil.rmtree(new, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _stale_message(settings: Settings, staged: Staged) -> str:
    last = None
    with services.open_session(settings) as ses:
        last = _last(ses)
    newer = (f"số {last.number} ({KIND_VI.get(last.kind, last.kind).lower()}, {last.author}, "
             f"{fmt_moment(local_time(last.created_at))})") if last else ""
    base = f"số {staged.base_number}" if staged.base_number else "cũ"
    return (f"bộ quy tắc đang dùng đã có phiên bản mới hơn {newer} kể từ khi tạo bản nháp “{staged.name}” "
            f"(từ phiên bản {base}); áp dụng bây giờ sẽ xóa mất thay đổi đó. Hãy cập nhật (rebase) bản nháp: "
            f"dondoc rules rebase {staged.name}, xem lại (dondoc rules diff {staged.name}) rồi áp dụng.")


def apply(settings: Settings, staged: Staged, actor: str, reason: str, now: datetime) -> RuleVersion:
    """Make the draft the live rules: refused without a reason, when the draft does not pass the
    check (DraftInvalid), when it changes nothing, or when the live rules moved on since the draft
    was copied (StaleDraft: rebase first). Returns the recorded version (with its diff)."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("cần ghi lý do thay đổi (ví dụ: “Theo Kế hoạch số 12/KH-UBND ngày 05/01/2026”)", exit_code=2)
    actor = (actor or "").strip() or "không rõ"
    checked = check(settings, staged)
    if not checked.valid:
        raise DraftInvalid(f"bản nháp “{staged.name}” chưa hợp lệ ({len(checked.errors)} lỗi): sửa rồi áp dụng lại",
                           checked.errors)
    live = staged.live_dir
    with _rules_lock(settings):
        _record_hand_edits(settings, now)
        live_files = snapshot(live)
        if content_hash(live_files) != staged.base_hash:
            raise StaleDraft(_stale_message(settings, staged))
        files = snapshot(staged.path)
        if content_hash(files) == staged.base_hash:
            raise ServiceError(f"bản nháp “{staged.name}” giống hệt bộ quy tắc đang dùng: không có gì để áp dụng")
        swap_in(live, files)
        try:
            row = _insert(settings, files=files, kind="restore" if staged.restored_from else "apply", author=actor,
                          reason=reason, now=now, restored_from=staged.restored_from)
        except BaseException:
            swap_in(live, live_files)              # the version could not be recorded: put the old rules back
            raise
    shutil.rmtree(staged.path, ignore_errors=True)
    staged.record.unlink(missing_ok=True)
    return _version(row, with_diff=True)


def restore(settings: Settings, number: int, actor: str, reason: str, now: datetime) -> RuleVersion:
    """Bring back version ``number``: staged (draft ``khoi-phuc-<number>``), checked and applied
    like any draft. An invalid old version (the calendar or templates changed since) stays as that
    draft for fixing."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("cần ghi lý do khôi phục (ví dụ: “Khôi phục do nhập nhầm hạn nộp”)", exit_code=2)
    files = version_files(settings, number)
    with _rules_lock(settings):
        _record_hand_edits(settings, now)
    if content_hash(files) == folder_hash(live_dir(settings)):
        raise ServiceError(f"bộ quy tắc đang dùng đã đúng nội dung phiên bản số {number}: không có gì để khôi phục")
    st = stage_version(settings, number, actor, now)
    return apply(settings, st, actor, reason, now)
