"""Load a rule pack directory into validated models and cross-check it as a whole.

Every problem is collected (not just the first) so a secretary can fix a file in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable, TypeVar

from engine.duedates import Due, DueCalculator
from engine.errors import CROSS_CHECK, RuleError, RulePackInvalid, display_path
from engine.packload import Section, Source, content_hash, dedup, load_sections, single_block, yaml_files
from engine.periods import Period, periods_between
from engine.rules_model import (Group, Obligation, PackInfo, ReminderPolicy, Unit,
                                WorkingDaysAfterObligation)
from engine.workcalendar import WorkingCalendar, load_overrides

__all__ = ["RulePack", "Source", "input_files", "load_pack"]

_SECTIONS: dict[str, Section] = {
    "pack": Section(PackInfo, many=False),
    "units": Section(Unit, namespace="party"),      # reporters name a unit or a group: one namespace
    "groups": Section(Group, namespace="party"),
    "obligations": Section(Obligation),
    "reminder_policies": Section(ReminderPolicy),
}
_LISTS = [k for k, s in _SECTIONS.items() if s.many]


T = TypeVar("T")


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
    warnings: list[RuleError] = field(default_factory=list)   # valid but probably unintended (`rules check` prints them)
    _derived: dict[object, object] = field(default_factory=dict, repr=False, compare=False)

    def derived(self, key: object, compute: Callable[[], T]) -> T:
        """``compute()`` once per loaded pack and key (indexes, schedules, reporter sets): a pack is
        read-only once loaded, and a reload makes a new RulePack, so what is kept follows the rules."""
        if key not in self._derived:
            self._derived[key] = compute()
        return self._derived[key]  # type: ignore[return-value]

    def expand(self, ref: str, _seen: frozenset[str] = frozenset()) -> list[str]:
        """Unit ids named by a unit or group id (groups may nest), in the order of first mention.

        Set-based (an insertion-ordered dict): a list membership test per unit made a 1,000-unit
        group quadratic, and every page that names a report's reporters expands its groups."""
        out: dict[str, None] = {}
        self._expand_into(ref, _seen, out)
        return list(out)

    def _expand_into(self, ref: str, path: frozenset[str], out: dict[str, None]) -> None:
        if ref in self.units:
            out.setdefault(ref)
            return
        for m in self.groups[ref].members:
            if m not in path:                      # a group nested in itself (rules check reports it)
                self._expand_into(m, path | {ref}, out)

    def reporters(self, obligation: Obligation) -> list[str]:
        """The units that report under ``obligation``, each once, in the order of first mention."""
        out: dict[str, None] = {}
        for ref in obligation.reporters:
            self._expand_into(ref, frozenset(), out)
        return list(out)

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
    files = _pack_files(directory)
    errors: list[RuleError] = []
    try:
        calendar = WorkingCalendar(load_overrides(calendar_dir))
    except RulePackInvalid as exc:
        errors.extend(exc.errors)
        calendar = WorkingCalendar()

    loaded = load_sections(files, _SECTIONS,
                           "tệp phải là một mapping với các khóa pack, units, groups, obligations, reminder_policies",
                           "mục “{key}” không được hỗ trợ; chỉ dùng: " + ", ".join(_SECTIONS))
    errors.extend(loaded.errors)
    infos = loaded.blocks["pack"]
    pack_src: Source | None = infos[0][1] if infos else None
    if not loaded.block_seen["pack"]:
        errors.append(RuleError(display_path(directory), None, "pack",
                                "thiếu khối “pack:” (mã gói, tên, múi giờ, ngày bắt đầu theo dõi) trong một tệp"))
    errors.extend(single_block(loaded, "pack", "pack"))
    info = infos[0][0] if infos else PackInfo(id="unknown", name="?")

    t = loaded.tables
    pack = RulePack(directory, info, t["units"], t["groups"], t["obligations"], t["reminder_policies"],
                    calendar, loaded.sources, [display_path(p) for p in files], _version(files, calendar_dir))
    errors.extend(_cross_check(pack, pack_src, loaded.broken, pack_ok=bool(infos) and len(loaded.block_seen["pack"]) == 1))
    if errors:
        raise RulePackInvalid(dedup(errors))
    pack.warnings = _warnings(pack)
    return pack


# ───────────── cross-checks: each a small function over one `_Checks` context ─────────────

@dataclass
class _Checks:
    pack: RulePack
    pack_src: Source | None          # None when the pack block is missing or invalid
    broken: set[str]                 # ids declared but not loaded: references to them are not blamed
    errors: list[RuleError] = field(default_factory=list)
    refs_ok: bool = True             # every reference resolves: the date checks can run
    dues: dict[str, dict[str, tuple[Period, Due]]] = field(default_factory=dict)

    def err(self, kind: str, oid: str, msg: str, *sub: Any) -> None:
        self.errors.append(self.pack.sources[(kind, oid)].error(msg, *sub))

    def missing(self, ref: str, known: Any) -> bool:
        """True when `ref` is not in `known` and should be reported (it is not one of the broken ids)."""
        if ref in known:
            return False
        self.refs_ok = False
        return ref not in self.broken

    @property
    def parties(self) -> set[str]:
        return set(self.pack.units) | set(self.pack.groups)


def _check_pack_block(c: _Checks) -> None:
    info, src = c.pack.info, c.pack_src
    if src is None:
        return
    if info.admin_contact and c.missing(info.admin_contact, c.pack.units):
        c.errors.append(src.error(f"không có đơn vị “{info.admin_contact}”", "admin_contact"))
    if info.check_from and info.check_until and info.check_until < info.check_from:
        c.errors.append(src.error("check_until trước check_from", "check_until"))
    if info.check_from and info.check_until and info.check_until.year - info.check_from.year > _MAX_CHECK_YEARS:
        c.errors.append(src.error(f"khoảng kiểm tra từ check_from đến check_until dài quá {_MAX_CHECK_YEARS} năm", "check_until"))
    try:
        from zoneinfo import ZoneInfo
        ZoneInfo(info.timezone)
    except Exception:
        c.errors.append(src.error(f"múi giờ “{info.timezone}” không tồn tại", "timezone"))
    if info.default_reminder_policy not in c.pack.policies and info.default_reminder_policy not in c.broken:
        c.errors.append(src.error(f"chính sách nhắc mặc định “{info.default_reminder_policy}” chưa được khai báo "
                                  "trong reminder_policies", "default_reminder_policy"))


def _check_units(c: _Checks) -> None:
    units = c.pack.units
    for uid, u in units.items():
        if u.supervisor and c.missing(u.supervisor, units):
            c.err("units", uid, f"cơ quan cấp trên “{u.supervisor}” không có trong danh sách đơn vị", "supervisor")
        if u.successor and c.missing(u.successor, units):
            c.err("units", uid, f"đơn vị kế thừa “{u.successor}” không có trong danh sách đơn vị", "successor")
        if u.successor and not u.valid_until:
            c.err("units", uid, "có đơn vị kế thừa nhưng không có valid_until (ngày đơn vị kết thúc)", "successor")


def _check_webhooks(c: _Checks) -> None:
    hooks = [(uid, i, url) for uid, u in c.pack.units.items() for i, url in enumerate(u.webhooks)]
    if not hooks:
        return
    import apprise  # only when a pack uses webhooks: it is a heavy import

    for uid, i, url in hooks:
        try:
            ok = not any(ch in url for ch in "\r\n ") and apprise.Apprise().add(url)
        except Exception:
            ok = False
        if not ok:
            c.err("units", uid, "địa chỉ webhook không hợp lệ (dạng Apprise, ví dụ json://máy-chủ/đường-dẫn, "
                  "tgram://token/chat, mmost://máy-chủ/token)", "webhooks", i)


def _check_successor_cycles(c: _Checks) -> None:
    units = c.pack.units
    for uid in units:
        seen, cur = [], uid
        while cur in units and units[cur].successor and cur not in seen:
            seen.append(cur)
            cur = units[cur].successor
        if cur in seen and cur == uid:
            c.err("units", uid, "chuỗi đơn vị kế thừa bị vòng lặp: " + " → ".join(seen + [cur]), "successor")


def _check_groups(c: _Checks) -> None:
    groups, parties = c.pack.groups, c.parties
    for gid, g in groups.items():
        for i, m in enumerate(g.members):
            if c.missing(m, parties):
                c.err("groups", gid, f"thành viên “{m}” không phải đơn vị hay nhóm đã khai báo", "members", i)
    cyclic, depth = _group_shape(groups)
    for gid in groups:
        if gid in cyclic:
            c.refs_ok = False
            c.err("groups", gid, "nhóm chứa chính nó (trực tiếp hoặc qua nhóm khác)", "members")
        elif depth[gid] > _MAX_GROUP_DEPTH:
            c.refs_ok = False
            c.err("groups", gid, f"nhóm lồng nhau quá {_MAX_GROUP_DEPTH} cấp", "members")


def _check_policies(c: _Checks) -> None:
    for pid, p in c.pack.policies.items():
        for i, target in enumerate(p.escalate_to):
            if target != "supervisor" and c.missing(target, c.pack.units):
                c.err("reminder_policies", pid, f"nơi nhận báo cáo vượt cấp “{target}” không phải đơn vị đã khai báo "
                      "(hoặc từ khóa supervisor)", "escalate_to", i)


def _check_obligation_refs(c: _Checks) -> None:
    obls, pols, parties = c.pack.obligations, c.pack.policies, c.parties
    for oid, o in obls.items():
        for i, r in enumerate(o.reporters):
            if c.missing(r, parties):
                c.err("obligations", oid, f"đơn vị/nhóm báo cáo “{r}” chưa được khai báo", "reporters", i)
        if c.missing(o.recipient, c.pack.units):
            c.err("obligations", oid, f"nơi nhận “{o.recipient}” không phải đơn vị đã khai báo", "recipient")
        for i, ref in enumerate(o.compiles):
            if c.missing(ref, obls):
                c.err("obligations", oid, f"báo cáo được tổng hợp “{ref}” không có", "compiles", i)
        for i, ref in enumerate(o.supersedes):
            if ref not in obls and ref not in c.broken:
                c.err("obligations", oid, f"báo cáo bị thay thế “{ref}” không có", "supersedes", i)
        if o.reminder_policy and o.reminder_policy not in pols and o.reminder_policy not in c.broken:
            c.err("obligations", oid, f"chính sách nhắc “{o.reminder_policy}” chưa được khai báo trong reminder_policies",
                  "reminder_policy")
        # (an unknown default policy is reported once, on the pack block)


def _check_compiled_sources(c: _Checks) -> None:
    obls = c.pack.obligations
    for oid, o in obls.items():
        if not isinstance(o.due, WorkingDaysAfterObligation):
            continue
        src = obls.get(o.due.obligation)
        if src is None:
            if c.missing(o.due.obligation, obls):
                c.err("obligations", oid, f"hạn nộp tính theo báo cáo “{o.due.obligation}” không có", "due", "obligation")
        elif src.recurrence.freq != o.recurrence.freq or not set(o.recurrence.months or range(1, 13)) <= set(src.recurrence.months or range(1, 13)):
            c.refs_ok = False
            c.err("obligations", oid, f"báo cáo tổng hợp phải cùng kỳ với “{src.id}” (freq {src.recurrence.freq}, "
                  f"months {src.recurrence.months or 'tất cả'}), đang là freq {o.recurrence.freq}, "
                  f"months {o.recurrence.months or 'tất cả'}", "due", "obligation")


def _check_due_cycles(c: _Checks) -> None:
    obls = c.pack.obligations
    for oid in obls:
        chain, cur = [], oid
        while cur in obls and isinstance(obls[cur].due, WorkingDaysAfterObligation) and cur not in chain:
            chain.append(cur)
            cur = obls[cur].due.obligation
        if cur == oid and chain:
            c.refs_ok = False
            c.err("obligations", oid, "hạn nộp phụ thuộc vòng tròn: " + " → ".join(chain + [cur]), "due", "obligation")


# ── date checks over the horizon (they need every reference resolved) ──

def _horizon(c: _Checks) -> tuple[date, date]:
    info = c.pack.info
    return info.check_from or date(2025, 1, 1), info.check_until or date(2027, 12, 31)


def _compute_dues(c: _Checks) -> None:
    lo, hi = _horizon(c)
    calc = c.pack.due_calculator()
    for oid, o in c.pack.obligations.items():
        c.dues[oid] = {}
        for p in periods_between(o, date(lo.year - 1, 1, 1), date(hi.year + 1, 12, 31)):
            d = calc.due(o, p)
            if d is not None:
                c.dues[oid][p.key] = (p, d)


def _check_deadlines(c: _Checks) -> None:
    """The recipient still exists on each due day; ND 09/2019: a working day after the cut-off."""
    lo, hi = _horizon(c)
    pack, cal = c.pack, c.pack.calendar
    for oid, o in pack.obligations.items():
        for p, d in c.dues[oid].values():
            if not (lo <= d.day <= hi) or not pack.in_force(o, d.day):
                continue
            if not pack.units[o.recipient].valid_on(d.day):
                c.err("obligations", oid, f"kỳ {p.label}: nơi nhận “{o.recipient}” không còn tồn tại vào ngày hạn "
                      f"{d.day:%d/%m/%Y}; đổi nơi nhận sang đơn vị kế thừa hoặc đặt effective_until", "recipient")
                break
            if p.cutoff_end and cal.working_days_between(p.cutoff_end, d.day) < 1:
                c.err("obligations", oid,
                      f"kỳ {p.label}: hạn nộp {d.day:%d/%m/%Y} không cách ngày chốt số liệu {p.cutoff_end:%d/%m/%Y} "
                      "ít nhất một ngày làm việc (Nghị định 09/2019, Điều 8 khoản 5)", "due")
                break


def _check_compiled_order(c: _Checks) -> None:
    """A compiled report falls due after every report it compiles."""
    lo, hi = _horizon(c)
    for oid, o in c.pack.obligations.items():
        sources_ = list(o.compiles)
        if isinstance(o.due, WorkingDaysAfterObligation) and o.due.obligation not in sources_:
            sources_.append(o.due.obligation)
        for sid in sources_:
            for key, (p, d) in c.dues[oid].items():
                if not (lo <= d.day <= hi) or key not in c.dues[sid]:
                    continue
                sd = c.dues[sid][key][1]
                if d.day <= sd.day:
                    field_ = ("compiles", o.compiles.index(sid)) if sid in o.compiles else ("due",)
                    c.err("obligations", oid,
                          f"báo cáo tổng hợp kỳ {p.label} đến hạn {d.day:%d/%m/%Y}, không sau hạn {sd.day:%d/%m/%Y} "
                          f"của báo cáo “{sid}” mà nó tổng hợp; hãy lùi hạn báo cáo tổng hợp", *field_)
                    break


def _check_orphans(c: _Checks) -> None:
    """A reporter ends without a successor while the duty is still in force."""
    units = c.pack.units
    for oid, o in c.pack.obligations.items():
        for uid in c.pack.reporters(o):
            chain, cur = set(), uid
            while cur and cur not in chain:
                chain.add(cur)
                u = units[cur]
                if u.valid_until and not u.successor and (o.effective_until is None or o.effective_until > u.valid_until):
                    c.err("units", cur,
                          f"đơn vị kết thúc ngày {u.valid_until:%d/%m/%Y} nhưng không có đơn vị kế thừa, "
                          f"trong khi nghĩa vụ “{oid}” vẫn còn hiệu lực sau ngày đó: khai báo successor cho đơn vị "
                          "hoặc effective_until cho nghĩa vụ", "valid_until")
                    break
                cur = u.successor


_MAX_CHECK_YEARS = 20
_MAX_GROUP_DEPTH = 20
_REFERENCE_CHECKS: list[Callable[[_Checks], None]] = [
    _check_pack_block, _check_units, _check_webhooks, _check_successor_cycles, _check_groups,
    _check_policies, _check_obligation_refs, _check_compiled_sources, _check_due_cycles,
]
_DATE_CHECKS: list[Callable[[_Checks], None]] = [
    _compute_dues, _check_deadlines, _check_compiled_order, _check_orphans,
]


# ── warnings: a valid pack that probably does not do what its author meant ──

def _warn_self_report(c: _Checks) -> None:
    """The recipient is among the reporters (through a group or a successor): it would chase itself."""
    units = c.pack.units
    for oid, o in c.pack.obligations.items():
        rec = o.recipient
        for i, ref in enumerate(o.reporters):
            members = c.pack.expand(ref)
            via = "" if ref == rec else f" (qua nhóm “{ref}”)" if ref in c.pack.groups else ""
            if rec in members:
                c.err("obligations", oid, f"nơi nhận “{units[rec].name}” cũng là đơn vị báo cáo{via}: đơn vị sẽ phải "
                      "báo cáo và bị nhắc cho chính mình; bỏ đơn vị này khỏi reporters (hoặc dùng nhóm không chứa nó)",
                      "reporters", i)
                break
            heirs = [u for u in members if u != rec and _succeeded_by(units, u, rec)]
            if heirs:
                c.err("obligations", oid, f"đơn vị báo cáo “{units[heirs[0]].name}”{via} được kế thừa bởi nơi nhận "
                      f"“{units[rec].name}”: sau khi sáp nhập, nơi nhận sẽ phải báo cáo cho chính mình",
                      "reporters", i)
                break


def _succeeded_by(units: dict[str, Unit], uid: str, target: str) -> bool:
    seen: set[str] = set()
    cur = units[uid].successor
    while cur and cur in units and cur not in seen:
        if cur == target:
            return True
        seen.add(cur)
        cur = units[cur].successor
    return False


def _warn_silent_policy(c: _Checks) -> None:
    """The obligation's reminder policy never reminds: no reminder before the due day and no notice
    on it, so the unit first hears of the report when it is already late (the language always keeps
    the overdue notice, so "never fires at all" cannot be written)."""
    for oid, o in c.pack.obligations.items():
        p = c.pack.policy_for(o)
        if p.before_due_working_days or p.on_due_day:
            continue
        sub = ("reminder_policy",) if o.reminder_policy else ()
        c.err("obligations", oid, f"chính sách nhắc “{p.id}” không nhắc trước hạn và không báo ngày đến hạn "
              "(before_due_working_days rỗng, on_due_day: false): đơn vị chỉ được báo khi đã quá hạn", *sub)


_WARNING_CHECKS: list[Callable[[_Checks], None]] = [_warn_self_report, _warn_silent_policy]


def _warnings(pack: RulePack) -> list[RuleError]:
    """Run on a valid pack only: every reference resolves."""
    c = _Checks(pack, None, set())
    for check in _WARNING_CHECKS:
        check(c)
    return dedup(c.errors)


def _cross_check(pack: RulePack, pack_src: Source | None, broken: set[str] = frozenset(),
                 pack_ok: bool = True) -> list[RuleError]:
    c = _Checks(pack, pack_src if pack_ok else None, set(broken))
    for check in _REFERENCE_CHECKS:
        check(c)
    if c.errors or not c.refs_ok or not pack_ok:
        return dedup(c.errors)
    for check in _DATE_CHECKS:
        check(c)
    return dedup(c.errors)


def _pack_files(directory: Path) -> list[Path]:
    return yaml_files(directory, "không tìm thấy thư mục quy tắc", "thư mục không có tệp .yaml nào")


def _calendar_files(calendar_dir: Path | None) -> list[Path]:
    return sorted(calendar_dir.glob("*.yaml")) if calendar_dir and calendar_dir.is_dir() else []


def _version(files: list[Path], calendar_dir: Path | None) -> str:
    return content_hash(list(files) + _calendar_files(calendar_dir))


def input_files(directory: Path, calendar_dir: Path | None = None) -> list[Path]:
    """Every file :func:`load_pack` reads for this pack (its YAML files, then the calendar's): the pack
    is a function of their contents (what a cache of parsed packs is keyed by). RulePackInvalid as
    load_pack when the folder is missing or has no YAML file."""
    return _pack_files(Path(directory)) + _calendar_files(calendar_dir)


def _group_shape(groups: dict[str, Group]) -> tuple[set[str], dict[str, int]]:
    """Groups from which a cycle is reachable, and each group's nesting depth (iterative: no recursion limit)."""
    state: dict[str, int] = {}          # 1: on the stack, 2: done
    cyclic: set[str] = set()
    depth: dict[str, int] = {}
    for root in groups:
        if root in state:
            continue
        stack = [(root, iter([m for m in groups[root].members if m in groups]))]
        state[root] = 1
        while stack:
            gid, children = stack[-1]
            for m in children:
                if state.get(m) == 1:
                    cyclic.add(gid)
                elif m not in state:
                    state[m] = 1
                    stack.append((m, iter([x for x in groups[m].members if x in groups])))
                    break
            else:
                stack.pop()
                state[gid] = 2
                kids = [m for m in groups[gid].members if m in groups]
                if any(m in cyclic for m in kids):
                    cyclic.add(gid)
                depth[gid] = 1 + max((depth.get(m, 0) for m in kids), default=0)
    return cyclic, depth
