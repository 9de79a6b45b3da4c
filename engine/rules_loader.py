"""Load a rule pack directory into validated models and cross-check it as a whole.

Every problem is collected (not just the first) so a secretary can fix a file in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from engine.duedates import DueCalculator
from engine.errors import RuleError, RulePackInvalid, display_path
from engine.periods import periods_between
from engine.rules_model import (Group, Obligation, PackInfo, ReminderPolicy, Unit,
                                WorkingDaysAfterObligation)
from engine.workcalendar import WorkingCalendar, load_overrides
from engine.yamlsource import LineMap, load_yaml, validation_errors

_SECTIONS: dict[str, type[BaseModel]] = {
    "units": Unit, "groups": Group, "obligations": Obligation, "reminder_policies": ReminderPolicy,
}
_SECTION_VI = {"units": "đơn vị", "groups": "nhóm", "obligations": "nghĩa vụ báo cáo",
               "reminder_policies": "chính sách nhắc"}


@dataclass(frozen=True)
class Source:
    file: str
    line: int | None
    path: tuple[Any, ...]
    lines: LineMap

    def at(self, *sub: Any) -> int | None:
        p = self.path + sub
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.line


@dataclass
class RulePack:
    """A validated pack: the only form of the rules the rest of the engine sees."""
    directory: Path
    info: PackInfo
    units: dict[str, Unit]
    groups: dict[str, Group]
    obligations: dict[str, Obligation]
    policies: dict[str, ReminderPolicy]
    calendar: WorkingCalendar
    sources: dict[tuple[str, str], Source] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    version: str = ""   # content hash of the pack and calendar files: changes iff the rules do

    def expand(self, ref: str, _seen: frozenset[str] = frozenset()) -> list[str]:
        """Unit ids named by a unit or group id (groups may nest)."""
        if ref in self.units:
            return [ref]
        out: list[str] = []
        for m in self.groups[ref].members:
            if m in _seen:
                continue
            for u in self.expand(m, _seen | {ref}):
                if u not in out:
                    out.append(u)
        return out

    def reporters(self, obligation: Obligation) -> list[str]:
        out: list[str] = []
        for ref in obligation.reporters:
            for u in self.expand(ref):
                if u not in out:
                    out.append(u)
        return out

    def in_force(self, obligation: Obligation, day: date) -> bool:
        """In force on `day`: its own dates, and not yet replaced by an obligation that supersedes it."""
        if not obligation.in_force_on(day):
            return False
        for other in self._superseded_by.get(obligation.id, ()):
            if other.effective_from is None or other.effective_from <= day:
                return False
        return True

    @property
    def _superseded_by(self) -> dict[str, list[Obligation]]:
        cache = self.__dict__.get("_sup_cache")
        if cache is None:
            cache = {}
            for o in self.obligations.values():
                for s in o.supersedes:
                    cache.setdefault(s, []).append(o)
            self.__dict__["_sup_cache"] = cache
        return cache

    def policy_for(self, obligation: Obligation) -> ReminderPolicy:
        return self.policies[obligation.reminder_policy or self.info.default_reminder_policy]

    def owner_on(self, unit_id: str, day: date) -> str | None:
        """The unit that answers for unit_id's duty due on `day`, following successors."""
        seen: set[str] = set()
        uid: str | None = unit_id
        while uid is not None and uid not in seen:
            seen.add(uid)
            unit = self.units[uid]
            if unit.valid_on(day):
                return uid
            if unit.valid_from and day < unit.valid_from:
                return None
            uid = unit.successor
        return None

    def due_calculator(self) -> DueCalculator:
        return DueCalculator(self.obligations, self.calendar)


def load_pack(directory: Path, calendar_dir: Path | None = None) -> RulePack:
    """Parse, validate and cross-check; raise RulePackInvalid listing every problem."""
    directory = Path(directory)
    errors: list[RuleError] = []
    if not directory.is_dir():
        raise RulePackInvalid([RuleError(display_path(directory), None, "", "không tìm thấy thư mục quy tắc")])
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if not files:
        raise RulePackInvalid([RuleError(display_path(directory), None, "", "thư mục không có tệp .yaml nào")])

    try:
        calendar = WorkingCalendar(load_overrides(calendar_dir))
    except RulePackInvalid as exc:
        errors.extend(exc.errors)
        calendar = WorkingCalendar()

    infos: list[tuple[PackInfo, Source]] = []
    items: dict[str, list[tuple[Any, Source]]] = {k: [] for k in _SECTIONS}
    for path in files:
        fname = display_path(path)
        data, lines, errs = load_yaml(path)
        errors.extend(errs)
        if errs or data is None:
            continue
        if not isinstance(data, dict):
            errors.append(RuleError(fname, 1, "", "tệp phải là một mapping với các khóa pack, units, groups, obligations, reminder_policies"))
            continue
        for key, value in data.items():
            if key == "pack":
                try:
                    infos.append((PackInfo.model_validate(value), Source(fname, lines.get(("pack",)), ("pack",), lines)))
                except ValidationError as exc:
                    errors.extend(validation_errors(exc, fname, lines, ("pack",)))
                continue
            if key not in _SECTIONS:
                errors.append(RuleError(fname, lines.get((key,)), str(key),
                                        f"mục “{key}” không được hỗ trợ; chỉ dùng: pack, " + ", ".join(_SECTIONS)))
                continue
            if not isinstance(value, list):
                errors.append(RuleError(fname, lines.get((key,)), str(key), "cần một danh sách (mỗi phần tử bắt đầu bằng “- ”)"))
                continue
            model = _SECTIONS[key]
            for i, raw in enumerate(value):
                src = Source(fname, lines.get((key, i)), (key, i), lines)
                try:
                    items[key].append((model.model_validate(raw), src))
                except ValidationError as exc:
                    errors.extend(validation_errors(exc, fname, lines, (key, i)))

    # Ids: one namespace for units+groups (reporters name either), one each for the rest.
    sources: dict[tuple[str, str], Source] = {}
    first_seen: dict[tuple[str, str], Source] = {}
    tables: dict[str, dict[str, Any]] = {k: {} for k in _SECTIONS}
    for key in _SECTIONS:
        ns = "party" if key in ("units", "groups") else key
        for obj, src in items[key]:
            prev = first_seen.get((ns, obj.id))
            if prev is not None:
                errors.append(RuleError(src.file, src.at("id"), f"{key}[{src.path[1]}].id",
                                        f"mã “{obj.id}” bị trùng: đã dùng ở {prev.file}:{prev.line}; mỗi mã chỉ được khai báo một lần"))
                continue
            first_seen[(ns, obj.id)] = src
            tables[key][obj.id] = obj
            sources[(key, obj.id)] = src

    if not infos:
        errors.append(RuleError(display_path(directory), None, "pack",
                                "thiếu khối “pack:” (mã gói, tên, múi giờ, ngày bắt đầu theo dõi) trong một tệp"))
        info = PackInfo(id="unknown", name="?")
    else:
        info = infos[0][0]
        for _, src in infos[1:]:
            errors.append(RuleError(src.file, src.line, "pack", f"khối “pack:” đã có ở {infos[0][1].file}:{infos[0][1].line}; chỉ được có một"))

    pack = RulePack(directory, info, tables["units"], tables["groups"], tables["obligations"],
                    tables["reminder_policies"], calendar, sources, [display_path(p) for p in files],
                    _version(files, calendar_dir))
    errors.extend(_cross_check(pack, infos[0][1] if infos else None))
    if errors:
        raise RulePackInvalid(errors)
    return pack


def _cross_check(pack: RulePack, pack_src: Source | None) -> list[RuleError]:
    errs: list[RuleError] = []
    units, groups, obls, pols = pack.units, pack.groups, pack.obligations, pack.policies
    parties = set(units) | set(groups)

    def err(kind: str, oid: str, msg: str, *sub: Any) -> None:
        src = pack.sources[(kind, oid)]
        fld = f"{kind}[{src.path[1]}]" + "".join(f".{s}" if isinstance(s, str) else f"[{s}]" for s in sub)
        errs.append(RuleError(src.file, src.at(*sub), fld, msg))

    if pack_src is not None:
        if pack.info.admin_contact and pack.info.admin_contact not in units:
            errs.append(RuleError(pack_src.file, pack_src.at("admin_contact"), "pack.admin_contact",
                                  f"không có đơn vị “{pack.info.admin_contact}”"))
        if pack.info.check_from and pack.info.check_until and pack.info.check_until < pack.info.check_from:
            errs.append(RuleError(pack_src.file, pack_src.at("check_until"), "pack.check_until", "check_until trước check_from"))
        try:
            from zoneinfo import ZoneInfo
            ZoneInfo(pack.info.timezone)
        except Exception:
            errs.append(RuleError(pack_src.file, pack_src.at("timezone"), "pack.timezone", f"múi giờ “{pack.info.timezone}” không tồn tại"))

    for uid, u in units.items():
        if u.supervisor and u.supervisor not in units:
            err("units", uid, f"cơ quan cấp trên “{u.supervisor}” không có trong danh sách đơn vị", "supervisor")
        if u.successor and u.successor not in units:
            err("units", uid, f"đơn vị kế thừa “{u.successor}” không có trong danh sách đơn vị", "successor")
        if u.successor and not u.valid_until:
            err("units", uid, "có đơn vị kế thừa nhưng không có valid_until (ngày đơn vị kết thúc)", "successor")
    hooks = [(uid, i, url) for uid, u in units.items() for i, url in enumerate(u.webhooks)]
    if hooks:
        import apprise  # only when a pack uses webhooks: it is a heavy import

        for uid, i, url in hooks:
            if any(c in url for c in "\r\n ") or not apprise.Apprise().add(url):
                err("units", uid, "địa chỉ webhook không hợp lệ (dạng Apprise, ví dụ json://máy-chủ/đường-dẫn, "
                    "tgram://token/chat, mmost://máy-chủ/token)", "webhooks", i)
    for uid in units:  # successor cycles
        seen, cur = [], uid
        while cur in units and units[cur].successor and cur not in seen:
            seen.append(cur)
            cur = units[cur].successor
        if cur in seen and cur == uid:
            err("units", uid, "chuỗi đơn vị kế thừa bị vòng lặp: " + " → ".join(seen + [cur]), "successor")

    for gid, g in groups.items():
        for i, m in enumerate(g.members):
            if m not in parties:
                err("groups", gid, f"thành viên “{m}” không phải đơn vị hay nhóm đã khai báo", "members", i)
    for gid in groups:
        if _group_cycle(groups, gid, []):
            err("groups", gid, "nhóm chứa chính nó (trực tiếp hoặc qua nhóm khác)", "members")

    default_pol = pack.info.default_reminder_policy
    for pid, p in pols.items():
        for i, target in enumerate(p.escalate_to):
            if target != "supervisor" and target not in units:
                err("reminder_policies", pid, f"nơi nhận báo cáo vượt cấp “{target}” không phải đơn vị đã khai báo (hoặc từ khóa supervisor)", "escalate_to", i)

    ok_refs = True
    for oid, o in obls.items():
        for i, r in enumerate(o.reporters):
            if r not in parties:
                ok_refs = False
                err("obligations", oid, f"đơn vị/nhóm báo cáo “{r}” chưa được khai báo", "reporters", i)
        if o.recipient not in units:
            ok_refs = False
            err("obligations", oid, f"nơi nhận “{o.recipient}” không phải đơn vị đã khai báo", "recipient")
        for i, c in enumerate(o.compiles):
            if c not in obls:
                ok_refs = False
                err("obligations", oid, f"báo cáo được tổng hợp “{c}” không có", "compiles", i)
        for i, s in enumerate(o.supersedes):
            if s not in obls:
                err("obligations", oid, f"báo cáo bị thay thế “{s}” không có", "supersedes", i)
        if isinstance(o.due, WorkingDaysAfterObligation):
            src = obls.get(o.due.obligation)
            if src is None:
                ok_refs = False
                err("obligations", oid, f"hạn nộp tính theo báo cáo “{o.due.obligation}” không có", "due", "obligation")
            elif src.recurrence.freq != o.recurrence.freq or not set(o.recurrence.months or range(1, 13)) <= set(src.recurrence.months or range(1, 13)):
                ok_refs = False
                err("obligations", oid, f"báo cáo tổng hợp phải cùng kỳ với “{src.id}” (freq {src.recurrence.freq}, months {src.recurrence.months or 'tất cả'}), "
                    f"đang là freq {o.recurrence.freq}, months {o.recurrence.months or 'tất cả'}", "due", "obligation")
        pol = o.reminder_policy or default_pol
        if pol not in pols:
            err("obligations", oid, f"chính sách nhắc “{pol}” chưa được khai báo trong reminder_policies", "reminder_policy" if o.reminder_policy else "id")
    # dependency cycles among compiled due rules
    for oid in obls:
        chain, cur = [], oid
        while cur in obls and isinstance(obls[cur].due, WorkingDaysAfterObligation) and cur not in chain:
            chain.append(cur)
            cur = obls[cur].due.obligation
        if cur == oid and chain:
            ok_refs = False
            err("obligations", oid, "hạn nộp phụ thuộc vòng tròn: " + " → ".join(chain + [cur]), "due", "obligation")

    if errs or not ok_refs:
        return errs

    # Date checks over the horizon: compiled order, ND 09 cut-off gap, orphaned duties.
    lo = pack.info.check_from or date(2025, 1, 1)
    hi = pack.info.check_until or date(2027, 12, 31)
    calc = pack.due_calculator()
    cal = pack.calendar
    dues: dict[str, dict[str, Any]] = {}
    for oid, o in obls.items():
        dues[oid] = {}
        for p in periods_between(o, date(lo.year - 1, 1, 1), date(hi.year + 1, 12, 31)):
            d = calc.due(o, p)
            if d is not None:
                dues[oid][p.key] = (p, d)
    for oid, o in obls.items():
        for p, d in dues[oid].values():
            if not (lo <= d.day <= hi) or not pack.in_force(o, d.day):
                continue
            if not units[o.recipient].valid_on(d.day):
                err("obligations", oid, f"kỳ {p.label}: nơi nhận “{o.recipient}” không còn tồn tại vào ngày hạn {d.day:%d/%m/%Y}; "
                    "đổi nơi nhận sang đơn vị kế thừa hoặc đặt effective_until", "recipient")
                break
            if p.cutoff_end and cal.working_days_between(p.cutoff_end, d.day) < 1:
                err("obligations", oid,
                    f"kỳ {p.label}: hạn nộp {d.day:%d/%m/%Y} không cách ngày chốt số liệu {p.cutoff_end:%d/%m/%Y} "
                    "ít nhất một ngày làm việc (Nghị định 09/2019, Điều 8 khoản 5)", "due")
                break
        sources_ = list(o.compiles)
        if isinstance(o.due, WorkingDaysAfterObligation) and o.due.obligation not in sources_:
            sources_.append(o.due.obligation)
        for sid in sources_:
            for key, (p, d) in dues[oid].items():
                if not (lo <= d.day <= hi) or key not in dues[sid]:
                    continue
                sd = dues[sid][key][1]
                if d.day <= sd.day:
                    field_ = ("compiles", o.compiles.index(sid)) if sid in o.compiles else ("due",)
                    err("obligations", oid,
                        f"báo cáo tổng hợp kỳ {p.label} đến hạn {d.day:%d/%m/%Y}, không sau hạn {sd.day:%d/%m/%Y} "
                        f"của báo cáo “{sid}” mà nó tổng hợp; hãy lùi hạn báo cáo tổng hợp", *field_)
                    break
        # orphans: a reporter ends, no successor, while the duty is still in force
        for uid in pack.reporters(o):
            chain, cur = set(), uid
            while cur and cur not in chain:
                chain.add(cur)
                u = units[cur]
                if u.valid_until and not u.successor and (o.effective_until is None or o.effective_until > u.valid_until):
                    err("units", cur,
                        f"đơn vị kết thúc ngày {u.valid_until:%d/%m/%Y} nhưng không có đơn vị kế thừa, "
                        f"trong khi nghĩa vụ “{oid}” vẫn còn hiệu lực sau ngày đó: khai báo successor cho đơn vị "
                        "hoặc effective_until cho nghĩa vụ", "valid_until")
                    break
                cur = u.successor
    return _dedup(errs)


def _version(files: list[Path], calendar_dir: Path | None) -> str:
    import hashlib

    h = hashlib.sha256()
    extra = sorted(calendar_dir.glob("*.yaml")) if calendar_dir and calendar_dir.is_dir() else []
    for p in list(files) + extra:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _group_cycle(groups: dict[str, Group], gid: str, stack: list[str]) -> bool:
    if gid in stack:
        return True
    g = groups.get(gid)
    if g is None:
        return False
    return any(_group_cycle(groups, m, stack + [gid]) for m in g.members if m in groups)


def _dedup(errs: list[RuleError]) -> list[RuleError]:
    seen, out = set(), []
    for e in errs:
        if e not in seen:
            seen.add(e)
            out.append(e)
    return out
