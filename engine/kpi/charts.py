"""One PNG per target group: for each indicator of the group a panel in the indicator's OWN unit
(%, số lượng, số trên 1 vạn dân, chỉ số 0–1, % GRDP, thứ hạng, có/chưa), so a reader sees the figure
the plan wrote and the figure the unit reported, not a derived percentage.

A panel shows the plan's path (anchor → each milestone; the segment to the next milestone drawn
darker; for yearly flows the requirement of every year as steps), each milestone's target as a
diamond coloured by its status with its value as a label ("≥ 60 %", ranges as a band, "nhóm 20 dẫn
đầu" as a band on an inverted rank axis), the baseline (square), the reported values (points) and,
ringed and labelled, the value that decided each status. The x axis is dates, ticks at 31/12 of
a year (the plans' milestones are year ends).

Labels never overlap: the layout is fixed (no constrained layout — it also halves the time), titles
are wrapped to the measured panel width, and every value label is placed at the first free spot
around its marker (measured with the renderer) or, if there is none, left out rather than drawn
over another one. The PNG carries the ids of the group's targets in a text chunk ("dondoc-targets",
JSON) so a test — or a script — can check that none was left out.

Artists carry gids ("muc-tieu:<target>", "nhan-muc-tieu:<target>", "quyet-dinh:<target>",
"lo-trinh:<target>", "khoang:<target>", "so-lieu", "co-so") so tests assert on what is drawn.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from engine.kpi.classify import STATUS_ORDER, STATUS_VI, IndicatorPath, Obs, TargetResult
from engine.kpi.loader import KpiPack, KTarget
from engine.kpi.model import Indicator, is_cumulative
from engine.vi import fmt_num

if TYPE_CHECKING:  # matplotlib is imported only when a chart is drawn (the CLI starts faster)
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

STATUS_COLOURS = {"met": "#2e7d32", "on_track": "#1565c0", "behind": "#ef8f00", "missed": "#c62828",
                  "no_data": "#7f7f7f", "not_due": "#a0a0a0"}
# label text for the grey statuses a shade darker than their markers, so it stays legible
_TEXT_COLOURS = {"no_data": "#5f5f5f", "not_due": "#6f6f6f"}
DPI = 100

# y-axis label: the unit, and for yearly flows "trong năm". "tích lũy" only where
# engine.kpi.model.is_cumulative says so (counts that are stocks); a rate is never cumulative.
_UNIT_AXIS = {"percent": ("Tỷ lệ", "%"), "percent_grdp": ("Tỷ lệ so với GRDP", "% GRDP"),
              "count": ("Số lượng", ""), "per_10000_people": ("Số trên 1 vạn dân", ""),
              "per_1000_people": ("Số trên 1.000 dân", ""), "index": ("Chỉ số", "0–1"),
              "rank": ("Thứ hạng", "1 = cao nhất"), "boolean": ("Có / Chưa", "")}
_PCT_UNITS = ("percent", "percent_grdp")

# Layout, inches. Fixed, so positions are known before drawing and labels can be measured.
_COL_W, _AX_LEFT, _AX_RIGHT = 4.7, 0.78, 0.22
_TITLE_H, _AX_H, _XTICK_H = 0.62, 2.05, 0.34
_ROW_H = _TITLE_H + _AX_H + _XTICK_H
_MARGIN = 0.15
_TITLE_PT, _LABEL_PT, _TICK_PT = 8.5, 7.5, 7.5


def axis_label(ind: Indicator) -> str:
    """The y-axis label of an indicator: its unit in Vietnamese, and what the number counts."""
    name, unit = _UNIT_AXIS[ind.unit]
    if ind.kind == "flow":
        name += " trong năm"
    elif is_cumulative(ind):                          # the same rule as the report's "Loại" column
        name += " (tích lũy)"
    return f"{name} ({unit})" if unit else name


def value_label(v: float, unit: str) -> str:
    """A value as a chart label: Vietnamese number form, % for percentages ("62 %", "0,73", "hạng 25")."""
    if unit == "boolean":
        return "Có" if v >= 0.5 else "Chưa"
    if unit == "rank":
        return f"hạng {fmt_num(round(v, 1))}"
    return fmt_num(round(v, 2)) + (" %" if unit in _PCT_UNITS else "")


def target_label(t: KTarget, unit: str) -> str:
    """A target as a chart label ("≥ 60 %", "15–20", "nhóm 20 dẫn đầu", "Có"); the axis names the unit."""
    pct = " %" if unit in _PCT_UNITS else ""
    if unit == "boolean":
        return "Có"
    if t.op == "range":
        return f"{fmt_num(t.lo)}–{fmt_num(t.hi)}{pct}"
    if t.op == "top":
        return f"nhóm {fmt_num(t.value)} dẫn đầu"
    sign = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "eq": "="}[t.op]
    return f"{sign} {fmt_num(t.value)}{pct}"


def _x(d: date) -> float:
    """x position of a date (proleptic ordinal: one unit per day)."""
    return float(d.toordinal())


def _year_end(y: int) -> float:
    return _x(date(y, 12, 31))


@dataclass
class PanelInfo:
    """What a panel shows, for tests and scripts: the labels drawn and the ones left out."""
    indicator: str
    labels: dict[str, str] = field(default_factory=dict)       # gid → text
    dropped: list[str] = field(default_factory=list)            # gids of labels with no free spot


def write_charts(kpi: KpiPack, results: list[TargetResult], values: dict[str, list[Obs]], out_dir: Path,
                 as_of: date, title: str = "", groups: list[str] | None = None) -> list[Path]:
    """Write <out_dir>/<group id>.png for every group with targets (or only `groups`); return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for gid in kpi.group_order():
        if groups is not None and gid not in groups:
            continue
        if not any(t.group == gid for t in kpi.targets.values()):
            continue
        fig, _ = render_group(kpi, results, values, as_of, gid, title)
        g = kpi.groups[gid]
        gname = (f"{g.code}) " if g.code else "") + g.name
        path = out_dir / f"{gid}.png"
        meta = {"Title": gname, "Software": "dondoc", "dondoc-group": gid, "dondoc-as-of": as_of.isoformat(),
                "dondoc-targets": json.dumps([t.id for t in kpi.targets.values() if t.group == gid])}
        fig.savefig(path, dpi=DPI, metadata=meta)
        written.append(path)
    return written


def render_group(kpi: KpiPack, results: list[TargetResult], values: dict[str, list[Obs]], as_of: date,
                 gid: str, title: str = "") -> tuple["Figure", list[PanelInfo]]:
    """The figure of one group (not saved) and what each panel shows."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    status_of = {r.target.id: r for r in results}
    group_targets = [t for t in kpi.targets.values() if t.group == gid]
    inds: list[str] = []
    for t in group_targets:
        if t.indicator not in inds:
            inds.append(t.indicator)
    n = len(inds)
    ncols = 4 if n > 6 else max(min(n, 3), 1)
    nrows = max(math.ceil(n / ncols), 1)
    g = kpi.groups[gid]
    gname = (f"{g.code}) " if g.code else "") + g.name
    width = ncols * _COL_W + 2 * _MARGIN
    statuses = {status_of[t.id].status if t.id in status_of else "not_due" for iid in inds for t in kpi.by_indicator[iid]}
    elsewhere = any(t.group != gid for iid in inds for t in kpi.by_indicator[iid])
    shown = [kpi.indicators[i] for i in inds]
    has_base = any(ind.baseline is not None for ind in shown)
    has_band = any(t.op in ("range", "top") for i in inds for t in kpi.by_indicator[i])
    legend_items = 4 + has_base + has_band + len(statuses) + elsewhere
    legend_cols = max(1, min(legend_items, int((width - 0.4) // 2.45)))
    legend_h = 0.22 * math.ceil(legend_items / legend_cols) + 0.25

    with matplotlib.rc_context({"font.family": "DejaVu Sans", "font.size": _TICK_PT, "axes.titlesize": _TITLE_PT,
                                "axes.titleweight": "bold", "axes.labelsize": _LABEL_PT,
                                "axes.titley": 1.0,   # fixed title position: no tight-bbox pass per panel
                                "xtick.labelsize": _TICK_PT, "ytick.labelsize": _TICK_PT}):
        fig = Figure(figsize=(width, 1.0), dpi=DPI)
        canvas = FigureCanvasAgg(fig)
        renderer = canvas.get_renderer()
        head0 = f"{title} – {gname}" if title else gname
        head1 = (f"Lộ trình và số liệu đến ngày {as_of:%d/%m/%Y} · trục tung: đơn vị của từng chỉ tiêu · "
                 "trục hoành: năm (vạch chia tại 31/12)")
        bold_lines = _wrap(head0, width - 2 * _MARGIN, 12, renderer, bold=True)
        sub_lines = _wrap(head1, width - 2 * _MARGIN, 9.5, renderer)
        head_h = 0.3 + 0.24 * len(bold_lines) + 0.19 * len(sub_lines)
        height = head_h + nrows * _ROW_H + legend_h
        fig.set_size_inches(width, height)

        def frac(x_in: float, y_in_from_top: float, w: float, h: float) -> list[float]:
            return [x_in / width, 1 - (y_in_from_top + h) / height, w / width, h / height]

        y_in = 0.12
        for ln in bold_lines:
            fig.text(_MARGIN / width, 1 - y_in / height, ln, fontsize=12, fontweight="bold", va="top",
                     ha="left").set_gid("tieu-de")
            y_in += 0.24
        for ln in sub_lines:
            fig.text(_MARGIN / width, 1 - y_in / height, ln, fontsize=9.5, va="top", ha="left").set_gid("tieu-de")
            y_in += 0.19
        infos: list[PanelInfo] = []
        for k, iid in enumerate(inds):
            r, c = divmod(k, ncols)
            top = head_h + r * _ROW_H + _TITLE_H
            ax = fig.add_axes(frac(_MARGIN + c * _COL_W + _AX_LEFT, top, _COL_W - _AX_LEFT - _AX_RIGHT, _AX_H))
            infos.append(_panel(ax, kpi, iid, [t for t in group_targets if t.indicator == iid], values.get(iid, []),
                                status_of, as_of, renderer))
        handles = [Line2D([], [], color="#37474f", linestyle="--", linewidth=1.6,
                          label="Lộ trình kế hoạch (đậm: tới mốc kế tiếp)"),
                   Line2D([], [], color="black", marker="o", markersize=4, linewidth=1, label="Số liệu báo cáo"),
                   Line2D([], [], color="black", marker="o", markersize=10, markerfacecolor="none", linestyle="",
                          markeredgewidth=1.8, label="Số liệu quyết định tình trạng"),
                   Line2D([], [], color="#777777", linestyle=":", label=f"Ngày đánh giá {as_of:%d/%m/%Y}")]
        if has_base:
            handles.append(Line2D([], [], color="#555555", marker="s", linestyle="", markersize=6,
                                  markerfacecolor="white", label="Giá trị cơ sở"))
        if has_band:
            handles.append(Patch(facecolor="#2e7d32", alpha=0.15, label="Khoảng mục tiêu / nhóm dẫn đầu"))
        handles += [Line2D([], [], color=STATUS_COLOURS[s], marker="D", linestyle="", markersize=7,
                           label=f"Mục tiêu – {STATUS_VI[s]}") for s in STATUS_COLOURS if s in statuses]
        if elsewhere:
            handles.append(Line2D([], [], color="#7f7f7f", marker="D", linestyle="", markersize=7, markerfacecolor="white",
                                  markeredgewidth=1.5, label="Mục tiêu ghi ở nhóm khác"))
        fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.08 / height), ncol=legend_cols,
                   frameon=False, fontsize=8.5, handlelength=2.2, columnspacing=1.2)
    return fig, infos


_WORD_W: dict[tuple[str, float, bool], float] = {}


def _wrap(text: str, width_in: float, size: float, renderer, bold: bool = False, max_lines: int = 0) -> list[str]:
    """Greedy word wrap to a width measured with the renderer (DejaVu is wider than a char count
    guesses). Words are measured once and cached: measuring every candidate line was a third of
    the chart time."""
    from matplotlib.font_manager import FontProperties

    prop = FontProperties(family="DejaVu Sans", size=size, weight="bold" if bold else "normal")
    limit = width_in * renderer.dpi * 0.97             # a little slack for kerning between words

    def w(word: str) -> float:
        key = (word, size, bold)
        if key not in _WORD_W:
            _WORD_W[key] = renderer.get_text_width_height_descent(word, prop, ismath=False)[0] * 72 / renderer.dpi
        return _WORD_W[key] * renderer.dpi / 72

    space = w("a a") - 2 * w("a")
    lines: list[list[str]] = []
    cur: list[str] = []
    cur_w = 0.0
    for word in text.split():
        ww = w(word)
        if cur and cur_w + space + ww > limit:
            lines.append(cur)
            cur, cur_w = [word], ww
        else:
            cur_w = cur_w + space + ww if cur else ww
            cur.append(word)
    if cur:
        lines.append(cur)
    out = [" ".join(ln) for ln in lines] or [""]
    if max_lines and len(out) > max_lines:
        last = lines[max_lines - 1] + ["…"]
        while len(last) > 1 and sum(w(x) for x in last) + space * (len(last) - 1) > limit:
            last = last[:-2] + ["…"]
        out = out[:max_lines - 1] + [" ".join(last)]
    return out


def _panel(ax: "Axes", kpi: KpiPack, iid: str, targets: list[KTarget], obs: list[Obs],
           status_of: dict[str, TargetResult], as_of: date, renderer) -> PanelInfo:
    from matplotlib.ticker import FixedLocator, FuncFormatter

    info = PanelInfo(iid)
    ind = kpi.indicators[iid]
    unit = ind.unit
    all_targets = kpi.by_indicator[iid]
    seen = sorted((o for o in obs if o.as_of <= as_of), key=lambda o: o.as_of)
    path = IndicatorPath(ind, all_targets, seen[0] if seen else None)
    own = {t.id for t in targets}
    # the indicator's targets listed under another group: drawn hollow, so the path stays whole
    targets = sorted(targets + [t for t in all_targets if t.id not in own], key=lambda t: t.milestone)
    upcoming = [t.milestone for t in targets if t.milestone >= as_of and t.id in own]
    next_ms = min(upcoming) if upcoming else None
    xs: list[float] = [_x(as_of)]
    ys: list[float] = []
    points: list[tuple[float, float]] = []          # markers that labels must not cover

    def status(t: KTarget) -> str:
        return status_of[t.id].status if t.id in status_of else "not_due"

    def target_y(t: KTarget) -> float:
        if unit == "boolean":
            return 1.0
        if t.op == "top":
            return float(t.value)
        if ind.kind == "flow":
            lo, hi = path.requirement(t, t.milestone.year)
            return lo if lo != float("-inf") else hi
        return path.ref(t)

    # --- the plan's path ---------------------------------------------------------------------
    for t in targets:
        strong = t.milestone == next_ms and t.id in own
        style = {"linestyle": "--", "color": "#37474f" if strong else "#9a9a9a", "linewidth": 1.6 if strong else 1.0,
                 "zorder": 2}
        band = {"color": STATUS_COLOURS["met"], "alpha": 0.13, "linewidth": 0, "zorder": 1}
        if ind.kind == "flow":
            y0, y1 = path.window(t)
            if t.op == "range":
                ax.fill_between([_year_end(y0 - 1), _year_end(y1)], [t.lo] * 2, [t.hi] * 2, gid=f"khoang:{t.id}", **band)
                ys += [t.lo, t.hi]
            else:
                px: list[float] = []
                py: list[float] = []
                for yr in range(y0, y1 + 1):
                    lo, hi = path.requirement(t, yr)
                    v = lo if lo != float("-inf") else hi
                    px += [_year_end(yr - 1), _year_end(yr)]
                    py += [v, v]
                ax.plot(px, py, gid=f"lo-trinh:{t.id}", **style)
                ys += py
            xs.append(_year_end(y0 - 1))
            continue
        a = path.anchor(t)
        if a is not None:
            ax.plot([_x(a.day), _x(t.milestone)], [a.value, path.ref(t)], gid=f"lo-trinh:{t.id}", **style)
            xs.append(_x(a.day))
            ys += [a.value]
        if t.op == "range":
            start = _x(a.day) if a is not None else _x(t.milestone) - 365
            ax.fill_between([start, _x(t.milestone)], [t.lo] * 2, [t.hi] * 2, gid=f"khoang:{t.id}", **band)
            ys += [t.lo, t.hi]
        elif t.op == "top":
            ax.axhspan(0.5, t.value + 0.5, gid=f"khoang:{t.id}", **band)

    # --- baseline and reported values -------------------------------------------------------
    b = ind.baseline
    if b is not None:
        ax.plot([_x(b.date)], [b.value], marker="s", markersize=6, color="#555555", markerfacecolor="white",
                linestyle="", zorder=4, gid="co-so")
        xs.append(_x(b.date))
        ys.append(b.value)
        points.append((_x(b.date), b.value))
    shown = seen
    if ind.kind == "flow":
        by_year: dict[int, Obs] = {}
        for o in seen:
            by_year[o.as_of.year] = o
        shown = [by_year[y] for y in sorted(by_year)]
    if shown:
        ax.plot([_x(o.as_of) for o in shown], [o.value for o in shown], color="black", marker="o", markersize=4,
                linewidth=1, zorder=4, gid="so-lieu")
        xs += [_x(o.as_of) for o in shown]
        ys += [o.value for o in shown]
        points += [(_x(o.as_of), o.value) for o in shown]

    # --- milestones --------------------------------------------------------------------------
    by_ms: dict[tuple[date, float], list[KTarget]] = {}   # one label per diamond
    for t in targets:
        y = target_y(t)
        colour = STATUS_COLOURS[status(t)]
        ax.plot([_x(t.milestone)], [y], marker="D", markersize=7, color=colour, linestyle="",
                zorder=5 if t.id in own else 4.5,   # a target listed in both groups shows filled
                markerfacecolor=colour if t.id in own else "white", markeredgewidth=1.5,
                gid=f"muc-tieu:{t.id}" if t.id in own else f"muc-tieu-nhom-khac:{t.id}")
        xs.append(_x(t.milestone))
        ys.append(y)
        points.append((_x(t.milestone), y))
        by_ms.setdefault((t.milestone, round(y, 9)), []).append(t)
    ax.axvline(_x(as_of), color="#777777", linestyle=":", linewidth=1, zorder=1)

    # --- the values that decided a status -----------------------------------------------------
    decided: dict[tuple[date, float], list[KTarget]] = {}
    for t in targets:
        r = status_of.get(t.id)
        if r is not None and r.judged is not None:
            decided.setdefault((r.judged.as_of, r.judged.value), []).append(t)
    for (d, v), ts in decided.items():
        ax.plot([_x(d)], [v], marker="o", markersize=10, markerfacecolor="none", markeredgecolor="black",
                markeredgewidth=1.8, linestyle="", zorder=6, gid="quyet-dinh:" + ",".join(t.id for t in ts))
        xs.append(_x(d))
        ys.append(v)

    # --- axes: limits first (labels are placed in display space) ----------------------------
    lo_x, hi_x = min(xs), max(xs)
    span = max(hi_x - lo_x, 365.0)
    ax.set_xlim(lo_x - 0.06 * span - 30, hi_x + 0.06 * span + 30)
    y_lo, y_hi, ticks = _y_scale(unit, ys, targets)
    if unit == "rank":
        ax.set_ylim(y_hi, y_lo)                       # rank 1 (the best) at the top
    else:
        ax.set_ylim(y_lo, y_hi)
    if unit == "boolean":
        ax.yaxis.set_major_locator(FixedLocator([0, 1]))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: "Có" if v >= 0.5 else "Chưa"))
    else:
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_num(round(v, 4))))
    y0, y1 = _year_of(lo_x), _year_of(hi_x)
    step = 1 if y1 - y0 <= 6 else 2 if y1 - y0 <= 12 else 5
    years = [y for y in range(y0 - 1, y1 + 1) if y % step == 0]
    ax.xaxis.set_major_locator(FixedLocator([_year_end(y) for y in years]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: str(date.fromordinal(int(round(v))).year)))
    ax.grid(alpha=0.25)
    ax.set_ylabel(axis_label(ind), fontsize=_LABEL_PT, labelpad=3)
    width_in = ax.get_position().width * ax.figure.get_figwidth() + 0.1
    name = "\n".join(_wrap(ind.name, width_in, _TITLE_PT, renderer, bold=True, max_lines=3))
    ax.set_title(name, loc="left", pad=4).set_gid(f"ten:{iid}")
    ax.set_gid(f"chi-tieu:{iid}")
    ax.set_autoscale_on(False)

    # --- labels, placed where they fit --------------------------------------------------------
    requests: list[tuple[int, float, float, str, str, str, bool]] = []   # prio, x, y, text, colour, gid, bold
    for (d, v), ts in decided.items():
        requests.append((0, _x(d), v, value_label(v, unit), "black", "nhan-quyet-dinh:" + ",".join(t.id for t in ts),
                         True))
    for (ms, y), ts in sorted(by_ms.items()):
        worst = min((status(t) for t in ts), key=lambda s: STATUS_ORDER[s])
        text = " / ".join(dict.fromkeys(target_label(t, unit) for t in ts))
        prio = 1 if ms == next_ms else 2 if any(t.id in own for t in ts) else 3
        requests.append((prio, _x(ms), y, text, _TEXT_COLOURS.get(worst, STATUS_COLOURS[worst]),
                         "nhan-muc-tieu:" + ",".join(t.id for t in ts), False))
    _place_labels(ax, sorted(requests, key=lambda q: (q[0], q[1])), points, renderer, info)
    return info


def _year_of(x: float) -> int:
    return date.fromordinal(int(round(x))).year


def _y_scale(unit: str, ys: list[float], targets: list[KTarget]) -> tuple[float, float, list[float]]:
    """(low, high, ticks) in the unit: room above the highest value for labels, ticks only where the
    unit has values (no "120 %", no index above 1, no rank 0)."""
    from matplotlib.ticker import MaxNLocator

    if unit == "boolean":
        return -0.3, 1.45, [0, 1]
    if unit == "rank":
        worst = max(ys + [2.0 * max((t.value for t in targets if t.op == "top"), default=10)])
        hi = math.ceil(worst / 5) * 5 + 2
        n = max((t.value for t in targets if t.op == "top"), default=10.0)
        step = max(1.0, math.ceil(n / 2))
        ticks = [1.0] + [step * k for k in range(1, int((hi - 2) // step) + 1) if step * k > 1]
        return -1.5 - 0.12 * hi, hi, ticks
    top = max(ys + [0.0])
    cap = 100.0 if unit in _PCT_UNITS else 1.0 if unit == "index" else None
    if top <= 0:
        top = 1.0
    if cap is not None:
        top = min(top, cap)
    loc = MaxNLocator(5, integer=unit == "count", steps=[1, 2, 2.5, 5, 10])
    ticks = [v for v in loc.tick_values(0, top) if -1e-9 <= v <= (cap if cap is not None else top * 1.05) + 1e-9]
    hi = max(top, ticks[-1] if ticks else top) * 1.3
    return -0.05 * hi, hi, ticks


# Offsets (points) tried around a marker, nearest first: right/left of it, above/below, then further.
_CANDIDATES = [(6, 5, "left", "bottom"), (-6, 5, "right", "bottom"), (6, -5, "left", "top"), (-6, -5, "right", "top"),
               (0, 9, "center", "bottom"), (0, -9, "center", "top"), (8, 15, "left", "bottom"),
               (-8, 15, "right", "bottom"), (8, -15, "left", "top"), (-8, -15, "right", "top"),
               (0, 22, "center", "bottom"), (0, -22, "center", "top"), (10, 0, "left", "center"),
               (-10, 0, "right", "center"), (12, 28, "left", "bottom"), (-12, 28, "right", "bottom"),
               (12, -28, "left", "top"), (-12, -28, "right", "top")]


def _place_labels(ax: "Axes", requests, points: list[tuple[float, float]], renderer, info: PanelInfo) -> None:
    """Each label at the first candidate spot inside the axes that overlaps no placed label and no
    marker; a label with no free spot is left out (and recorded) rather than drawn over another."""
    from matplotlib.transforms import Bbox

    box = ax.get_window_extent(renderer)
    inner = Bbox.from_extents(box.x0 + 2, box.y0 + 2, box.x1 - 2, box.y1 - 2)
    r = 4.5 * renderer.dpi / 72            # half a marker, pixels
    centres = [(float(px), float(py)) for px, py in ax.transData.transform(points)] if points else []
    placed: list = []
    for _, x, y, text, colour, gid, bold in requests:
        ox, oy = (float(v) for v in ax.transData.transform((x, y)))
        marks = [Bbox.from_extents(px - r, py - r, px + r, py + r) for px, py in centres
                 if abs(px - ox) > 0.5 or abs(py - oy) > 0.5]     # not the label's own marker
        ann = ax.annotate(text, (x, y), xytext=(6, 5), textcoords="offset points", fontsize=_LABEL_PT, color=colour,
                          fontweight="bold" if bold else "normal", zorder=7, annotation_clip=False,
                          bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})
        ann.set_gid(gid)
        for dx, dy, ha, va in _CANDIDATES:
            ann.xyann = (dx, dy)
            ann.set_ha(ha)
            ann.set_va(va)
            ext = ann.get_window_extent(renderer).expanded(1.0, 1.0).padded(1.5)
            if not (inner.x0 <= ext.x0 and ext.x1 <= inner.x1 and inner.y0 <= ext.y0 and ext.y1 <= inner.y1):
                continue
            if any(ext.overlaps(o) for o in placed) or any(ext.overlaps(m) for m in marks):
                continue
            placed.append(ext)
            info.labels[gid] = text
            break
        else:
            ann.remove()
            info.dropped.append(gid)
