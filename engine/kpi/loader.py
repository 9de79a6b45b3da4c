"""Load the KPI files of a pack (DIR/kpi/*.yaml) and cross-check them against the pack.

Like engine/rules_loader.py, every problem is collected with its file, line and field, so the
secretariat fixes a file in one pass. The KPI folder is a sub-folder of the rule pack: `load_pack`
reads only the pack's top-level files, so the KPI files never disturb `dondoc rules check`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from engine.errors import RuleError, RulePackInvalid, display_path
from engine.kpi.model import (UNITS, Document, Indicator, KpiGroup, KpiSettings, NotTracked, fmt_num,
                              unit_problems)
from engine.limits import MAX_YEAR, MIN_YEAR, YEARS_VI
from engine.packload import Section, Source, content_hash, dedup, load_sections, single_block, yaml_files
from engine.rules_loader import RulePack

_SECTIONS: dict[str, Section] = {
    "kpi_settings": Section(KpiSettings, many=False),
    "documents": Section(Document), "kpi_groups": Section(KpiGroup), "indicators": Section(Indicator),
    "not_tracked": Section(NotTracked, has_id=False),
}
_ALLOWED = tuple(_SECTIONS)
UP, DOWN = 1, -1


@dataclass(frozen=True)
class KTarget:
    """A target with everything inherited from its indicator resolved (id, group, document)."""
    id: str
    indicator: str
    group: str
    document: str
    section: str
    text: str
    milestone: date
    op: str                      # ge | gt | le | lt | eq | range | top
    value: float | None          # every op but range
    lo: float | None = None      # range
    hi: float | None = None
    since: date | None = None
    assumptions: tuple[str, ...] = ()

    def satisfied(self, v: float, eps: float = 1e-9) -> bool:
        """Whether a value meets the target itself (not the path towards it)."""
        op, t = self.op, self.value
        if op == "ge":
            return v >= t - eps
        if op == "gt":
            return v > t + eps
        if op == "le":
            return v <= t + eps
        if op == "lt":
            return v < t - eps
        if op == "eq":
            return abs(v - t) <= eps * max(1.0, abs(t))
        if op == "range":
            return self.lo - eps <= v <= self.hi + eps
        if op == "top":   # a rank: 1 is best, "nhóm 20 dẫn đầu" = rank ≤ 20
            return v <= t + eps
        raise ValueError(op)

    @property
    def fixed_direction(self) -> int | None:
        """UP for "more is better", DOWN for "less is better"; None when it depends on the start."""
        if self.op in ("ge", "gt"):
            return UP
        if self.op in ("le", "lt", "top"):
            return DOWN
        return None

    def ref_from(self, start: float | None) -> float:
        """The end point of the path towards this target when the path starts at `start`."""
        if self.op == "range":
            if start is None or start <= self.lo:
                return self.lo
            if start >= self.hi:
                return self.hi
            return start
        return float(self.value)

    def requirement(self, unit: str) -> str:
        """The target as the plan states it: “≥ 60 %”, “nhóm 20 dẫn đầu”, “Có”."""
        u = UNITS[unit].label
        suffix = f" {u}" if u else ""
        if unit == "boolean":
            return "Có / hoàn thành"
        if self.op == "range":
            return f"{fmt_num(self.lo)}–{fmt_num(self.hi)}{suffix}"
        if self.op == "top":
            return f"nhóm {fmt_num(self.value)} dẫn đầu (hạng ≤ {fmt_num(self.value)})"
        sign = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "eq": "="}[self.op]
        return f"{sign} {fmt_num(self.value)}{suffix}"


@dataclass
class KpiPack:
    """Validated KPI definitions of one pack: the only form the rest of the engine sees."""
    directory: Path
    settings: KpiSettings
    documents: dict[str, Document]
    groups: dict[str, KpiGroup]
    indicators: dict[str, Indicator]
    targets: dict[str, KTarget]
    by_indicator: dict[str, list[KTarget]]
    not_tracked: list[NotTracked] = field(default_factory=list)
    sources: dict[tuple[str, str], Source] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    version: str = ""

    def tolerance(self, indicator: str, override: float | None = None) -> float:
        if override is not None:
            return override
        ind = self.indicators[indicator]
        return ind.tolerance if ind.tolerance is not None else self.settings.tolerance

    def group_order(self) -> list[str]:
        return sorted(self.groups, key=lambda g: (self.groups[g].order, list(self.groups).index(g)))


def kpi_dir_of(pack: RulePack, kpi_dir: Path | None = None) -> Path:
    return Path(kpi_dir) if kpi_dir is not None else Path(pack.directory) / "kpi"


def empty_kpi(directory: Path) -> KpiPack:
    return KpiPack(directory, KpiSettings(), {}, {}, {}, {}, {})


_CACHE: dict[tuple, KpiPack] = {}


def load_kpi_for_pack(pack: RulePack, kpi_dir: Path | None = None) -> KpiPack:
    """The pack's KPI definitions; an empty set when the pack has no kpi/ folder.

    Cached per (folder, rule pack version, files' size and mtime): the daemon asks on every pass."""
    d = kpi_dir_of(pack, kpi_dir)
    if kpi_dir is None and not d.is_dir():
        return empty_kpi(d)
    try:
        stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(d.iterdir())
                      if p.suffix in (".yaml", ".yml"))
    except OSError:
        stamp = ()
    key = (str(d.resolve()), pack.version, stamp)
    hit = _CACHE.get(key)
    if hit is None:
        hit = load_kpi(d, pack)
        _CACHE.clear()
        _CACHE[key] = hit
    return hit


def kpi_check_errors(pack: RulePack, kpi_dir: Path | None = None) -> list[RuleError]:
    """For `dondoc rules check`: every KPI problem, or [] (also when the pack has no kpi/ folder)."""
    d = kpi_dir_of(pack, kpi_dir)
    if kpi_dir is None and not d.is_dir():
        return []
    try:
        load_kpi(d, pack)
    except RulePackInvalid as exc:
        return exc.errors
    return []


def load_kpi(directory: Path, pack: RulePack) -> KpiPack:
    """Parse, validate and cross-check; raise RulePackInvalid listing every problem."""
    directory = Path(directory)
    files = yaml_files(directory, "không tìm thấy thư mục chỉ tiêu (kpi/)", "thư mục chỉ tiêu không có tệp .yaml nào")
    loaded = load_sections(files, _SECTIONS, "tệp phải là một mapping với các khóa " + ", ".join(_ALLOWED),
                           "mục “{key}” không được hỗ trợ trong tệp chỉ tiêu; chỉ dùng: " + ", ".join(_ALLOWED))
    errors: list[RuleError] = loaded.errors
    errors.extend(single_block(loaded, "kpi_settings", "kpi_settings"))
    settings = loaded.blocks["kpi_settings"]
    items, tables, sources = loaded.items, loaded.tables, loaded.sources

    def err(src: Source, msg: str, *sub: Any) -> None:
        errors.append(src.error(msg, *sub))

    documents, groups, indicators = tables["documents"], tables["kpi_groups"], tables["indicators"]
    # ids declared in a file or item that failed to load: references to them are not blamed again
    documents_k, groups_k = set(documents) | loaded.broken, set(groups) | loaded.broken

    for nt, src in items["not_tracked"]:
        if nt.document not in documents_k:
            err(src, f"văn bản “{nt.document}” chưa được khai báo trong documents", "document")

    targets: dict[str, KTarget] = {}
    target_src: dict[str, tuple[Source, int]] = {}
    by_indicator: dict[str, list[KTarget]] = {}
    for iid, ind in indicators.items():
        src = sources[("indicators", iid)]
        if ind.group not in groups_k:
            err(src, f"nhóm “{ind.group}” chưa được khai báo trong kpi_groups", "group")
        if ind.responsible not in pack.units:
            hint = " (là một nhóm; cần một đơn vị cụ thể)" if ind.responsible in pack.groups else ""
            err(src, f"đơn vị chịu trách nhiệm “{ind.responsible}” không có trong danh bạ đơn vị của gói{hint}", "responsible")
        ob = pack.obligations.get(ind.source)
        if ob is None:
            err(src, f"nghĩa vụ báo cáo “{ind.source}” (báo cáo cung cấp số liệu) không có trong gói quy tắc", "source")
        elif ind.responsible in pack.units and ind.responsible not in _reporters(pack, ob.id):
            err(src, f"đơn vị “{ind.responsible}” không phải đơn vị báo cáo của “{ob.id}”: số liệu sẽ không có trong báo cáo "
                     "nào của đơn vị; chọn báo cáo mà đơn vị phải nộp", "source")
        if ind.document is not None and ind.document not in documents_k:
            err(src, f"văn bản “{ind.document}” chưa được khai báo trong documents", "document")
        for path, msg in unit_problems(ind):
            err(src, msg, *path)
        first_ms = min(t.milestone for t in ind.targets)
        if ind.baseline is not None and ind.baseline.date >= first_ms:
            err(src, f"ngày của giá trị cơ sở {ind.baseline.date:%d/%m/%Y} không trước mốc đầu tiên {first_ms:%d/%m/%Y}", "baseline", "date")
        dirs = {d for t in ind.targets for d in [_fixed_dir(t.comparator)] if d is not None}
        if len(dirs) > 1:
            err(src, "chỉ tiêu vừa có mục tiêu “càng cao càng tốt” (ge/gt) vừa có mục tiêu “càng thấp càng tốt” (le/lt/top): "
                     "tách thành hai chỉ tiêu", "targets")
        seen_keys: dict[tuple, int] = {}
        lst: list[KTarget] = []
        for j, t in enumerate(ind.targets):
            tid = t.id or f"{iid}-{t.milestone.year}"
            doc = t.document or ind.document
            if doc is None:
                err(src, "thiếu văn bản căn cứ: khai báo document ở chỉ tiêu hoặc ở mục tiêu", "targets", j)
                doc = "?"
            elif t.document is not None and t.document not in documents_k:
                err(src, f"văn bản “{t.document}” chưa được khai báo trong documents", "targets", j, "document")
            grp = t.group or ind.group
            if t.group is not None and t.group not in groups_k:
                err(src, f"nhóm “{t.group}” chưa được khai báo trong kpi_groups", "targets", j, "group")
            if not (MIN_YEAR <= t.milestone.year <= MAX_YEAR):
                err(src, f"mốc {t.milestone:%d/%m/%Y} không hợp lý (ngoài {YEARS_VI})", "targets", j, "milestone")
            if t.since is not None and ind.kind != "flow":
                err(src, "since chỉ dùng cho chỉ tiêu mỗi năm (kind: flow)", "targets", j, "since")
            if ind.baseline is not None and t.since is not None and t.since <= ind.baseline.date:
                err(src, f"since {t.since:%d/%m/%Y} không sau ngày của giá trị cơ sở", "targets", j, "since")
            key = (t.milestone, t.comparator, str(getattr(t, t.comparator)), t.section.strip())
            if key in seen_keys:
                err(src, f"trùng mục tiêu số {seen_keys[key] + 1} (cùng mốc, cùng yêu cầu, cùng mục)", "targets", j)
            seen_keys[key] = j
            if tid in target_src:
                psrc, pj = target_src[tid]
                hint = "; khi một chỉ tiêu có hai mục tiêu cùng năm, đặt id riêng cho mục tiêu thứ hai" if t.id is None else ""
                err(src, f"mã mục tiêu “{tid}” bị trùng (đã có ở {psrc.file}:{psrc.at('targets', pj)}){hint}", "targets", j,
                    *(("id",) if t.id else ()))
                continue
            if ob is not None:
                if ob.effective_until is not None and ob.effective_until < date(t.milestone.year, 1, 1):
                    err(src, f"nghĩa vụ “{ob.id}” hết hiệu lực ngày {ob.effective_until:%d/%m/%Y}, trước năm của mốc "
                             f"{t.milestone:%d/%m/%Y}: không còn báo cáo nào cung cấp số liệu cho mục tiêu này", "targets", j, "milestone")
                if ob.effective_from is not None and ob.effective_from > t.milestone:
                    err(src, f"nghĩa vụ “{ob.id}” chỉ có hiệu lực từ {ob.effective_from:%d/%m/%Y}, sau mốc {t.milestone:%d/%m/%Y}",
                        "targets", j, "milestone")
            if ind.responsible in pack.units and not _owner_exists(pack, ind.responsible, t.milestone):
                err(src, f"đơn vị “{ind.responsible}” không còn tồn tại vào mốc {t.milestone:%d/%m/%Y} và không có đơn vị kế thừa",
                    "responsible")
            c = t.comparator
            kt = KTarget(tid, iid, grp, doc, t.section.strip(), t.text.strip(), t.milestone, c,
                         None if c == "range" else float(getattr(t, c)),
                         t.range[0] if c == "range" else None, t.range[1] if c == "range" else None,
                         t.since, tuple(t.assumptions))
            targets[tid] = kt
            target_src[tid] = (src, j)
            lst.append(kt)
        by_indicator[iid] = sorted(lst, key=lambda k: k.milestone)

    if errors:
        raise RulePackInvalid(dedup(errors))
    order = {g: (groups[g].order, n) for n, g in enumerate(groups)}
    ind_order = {i: n for n, i in enumerate(indicators)}
    ordered = dict(sorted(targets.items(), key=lambda kv: (order[kv[1].group], ind_order[kv[1].indicator], kv[1].milestone)))
    return KpiPack(directory, settings[0][0] if settings else KpiSettings(), documents, groups, indicators, ordered,
                   by_indicator, [nt for nt, _ in items["not_tracked"]], sources, [display_path(p) for p in files],
                   content_hash(files))


def _fixed_dir(op: str) -> int | None:
    return UP if op in ("ge", "gt") else DOWN if op in ("le", "lt", "top") else None


def _owner_exists(pack: RulePack, unit_id: str, day: date) -> bool:
    """A unit answers on `day` itself or through its successors (a unit not yet created also counts)."""
    u = pack.units[unit_id]
    if u.valid_from and day < u.valid_from:
        return True
    return pack.owner_on(unit_id, day) is not None


def _reporters(pack: RulePack, obligation_id: str) -> set[str]:
    """The obligation's reporters, expanded, with every unit that inherits from one of them."""
    direct = set(pack.reporters(pack.obligations[obligation_id]))
    out = set(direct)
    for uid in direct:
        seen: set[str] = set()
        cur = pack.units[uid].successor if uid in pack.units else None
        while cur and cur not in seen and cur in pack.units:
            seen.add(cur)
            out.add(cur)
            cur = pack.units[cur].successor
    return out
