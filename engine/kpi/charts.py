"""One PNG per target group: for each indicator of the group a small panel with the plan's path
(anchor → milestone for every target), the targets (coloured by status) and the reported values.

Every panel uses the same scale, "% of the indicator's final target", so indicators with
different units sit side by side and "100 %" always means "the last milestone's target" (for ranks
and other "lower is better" targets: target ÷ value, so 100 % is still "just reached").
The PNG carries the ids of the group's targets in a text chunk ("dondoc-targets", JSON) so a
test — or a script — can check that none was left out.
"""

from __future__ import annotations

import json
import math
import textwrap
from datetime import date
from pathlib import Path

from engine.kpi.classify import STATUS_VI, IndicatorPath, Obs, TargetResult
from engine.kpi.loader import DOWN, KpiPack, KTarget
from engine.kpi.model import fmt_num

STATUS_COLOURS = {"met": "#2e7d32", "on_track": "#1565c0", "behind": "#ef8f00", "missed": "#c62828",
                  "no_data": "#7f7f7f", "not_due": "#b0b0b0"}


def _year_frac(d: date) -> float:
    """x position in years where the integer Y stands for the end of year Y (31/12/Y), the plans' milestones."""
    start = date(d.year, 1, 1)
    return d.year - 1 + ((d - start).days + 1) / ((date(d.year + 1, 1, 1) - start).days)


def write_charts(kpi: KpiPack, results: list[TargetResult], values: dict[str, list[Obs]], out_dir: Path,
                 as_of: date, title: str = "", groups: list[str] | None = None) -> list[Path]:
    """Write <out_dir>/<group id>.png for every group with targets (or only `groups`); return the paths."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    plt.rcParams.update({"font.family": "DejaVu Sans", "font.size": 8.5, "axes.titlesize": 9,
                         "axes.titleweight": "bold", "svg.fonttype": "none"})
    out_dir.mkdir(parents=True, exist_ok=True)
    status_of = {r.target.id: r for r in results}
    written: list[Path] = []
    for gid in kpi.group_order():
        if groups is not None and gid not in groups:
            continue
        group_targets = [t for t in kpi.targets.values() if t.group == gid]
        if not group_targets:
            continue
        inds: list[str] = []
        for t in group_targets:
            if t.indicator not in inds:
                inds.append(t.indicator)
        n = len(inds)
        ncols = 4 if n > 6 else min(n, 3)
        nrows = math.ceil(n / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows + 1.4), squeeze=False,
                                 layout="constrained")
        g = kpi.groups[gid]
        gname = (f"{g.code}) " if g.code else "") + g.name
        fig.suptitle(f"{title + ' – ' if title else ''}{gname}\nLộ trình và số liệu đến ngày {as_of:%d/%m/%Y} "
                     f"(trục tung: % so với mục tiêu của mốc cuối cùng; trục hoành: cuối năm)",
                     fontsize=12, fontweight="bold")
        for k, iid in enumerate(inds):
            ax = axes[k // ncols][k % ncols]
            _panel(ax, kpi, iid, [t for t in group_targets if t.indicator == iid], values.get(iid, []), status_of, as_of)
        for k in range(n, nrows * ncols):
            axes[k // ncols][k % ncols].axis("off")
        handles = [Line2D([], [], color="#555555", linestyle="--", label="Lộ trình kế hoạch"),
                   Line2D([], [], color="black", marker="o", markersize=5, label="Số liệu báo cáo"),
                   Line2D([], [], color="#555555", marker="s", linestyle="", markersize=6, markerfacecolor="white",
                          label="Giá trị cơ sở"),
                   Line2D([], [], color="#999999", linestyle=":", label="Ngày đánh giá")]
        handles += [Line2D([], [], color=c, marker="D", linestyle="", markersize=7, label=f"Mục tiêu – {STATUS_VI[s]}")
                    for s, c in STATUS_COLOURS.items()]
        fig.legend(handles=handles, loc="outside lower center", ncol=5, frameon=False, fontsize=9)
        path = out_dir / f"{gid}.png"
        meta = {"Title": gname, "Software": "dondoc",
                "dondoc-group": gid, "dondoc-as-of": as_of.isoformat(),
                "dondoc-targets": json.dumps([t.id for t in group_targets])}
        fig.savefig(path, dpi=100, metadata=meta)
        plt.close(fig)
        written.append(path)
    return written


def _panel(ax, kpi: KpiPack, iid: str, targets: list[KTarget], obs: list[Obs],
           status_of: dict[str, TargetResult], as_of: date) -> None:
    ind = kpi.indicators[iid]
    all_targets = kpi.by_indicator[iid]
    seen = sorted((o for o in obs if o.as_of <= as_of), key=lambda o: o.as_of)
    path = IndicatorPath(ind, all_targets, seen[0] if seen else None)
    final = all_targets[-1]
    down = final.fixed_direction == DOWN
    ref_final = 1.0 if ind.unit == "boolean" else path.ref(final)

    def norm(v: float) -> float:
        if ind.unit == "boolean":
            return 100.0 * v
        if down:
            return 100.0 * ref_final / v if v else 0.0
        return 100.0 * v / ref_final if ref_final else v

    xs_all: list[float] = [_year_frac(as_of)]
    ys_all: list[float] = [0.0, 100.0]
    if ind.kind == "flow":
        for t in targets:
            y0, y1 = path.window(t)
            yrs = list(range(y0, y1 + 1))
            req = [path.requirement(t, y) for y in yrs]
            pts = [(lo if lo != float("-inf") else hi) for lo, hi in req]
            ax.plot([y0 - 1] + yrs, [norm(pts[0])] + [norm(p) for p in pts], linestyle="--", color="#555555",
                    linewidth=1.2, drawstyle="steps-pre")
            if t.op == "range":
                ax.fill_between([y0 - 1, y1], [norm(t.lo)] * 2, [norm(t.hi)] * 2, color="#cccccc", alpha=0.35)
            xs_all += [y0 - 1, y1]
            ys_all += [norm(p) for p in pts]
        by_year: dict[int, Obs] = {}
        for o in seen:
            by_year[o.as_of.year] = o
        if by_year:
            yx = sorted(by_year)
            ax.plot(yx, [norm(by_year[y].value) for y in yx], color="black", marker="o", markersize=4, linewidth=1)
            xs_all += yx
            ys_all += [norm(by_year[y].value) for y in yx]
    else:
        for t in targets:
            a = path.anchor(t)
            if a is not None:
                ax.plot([_year_frac(a.day), _year_frac(t.milestone)], [norm(a.value), norm(path.ref(t))],
                        linestyle="--", color="#555555", linewidth=1.2)
                xs_all.append(_year_frac(a.day))
            if t.op == "range":
                ax.plot([_year_frac(t.milestone)] * 2, [norm(t.lo), norm(t.hi)], color="#999999", linewidth=4, alpha=0.5)
        if ind.baseline is not None:
            ax.plot([_year_frac(ind.baseline.date)], [norm(ind.baseline.value)], marker="s", color="#555555",
                    markerfacecolor="white", linestyle="")
            xs_all.append(_year_frac(ind.baseline.date))
            ys_all.append(norm(ind.baseline.value))
        if seen:
            ax.plot([_year_frac(o.as_of) for o in seen], [norm(o.value) for o in seen], color="black", marker="o",
                    markersize=4, linewidth=1)
            xs_all += [_year_frac(o.as_of) for o in seen]
            ys_all += [norm(o.value) for o in seen]
    for k, t in enumerate(targets):
        x = t.milestone.year if ind.kind == "flow" else _year_frac(t.milestone)
        y = norm(path.ref(t)) if ind.unit != "boolean" else 100.0
        st = status_of[t.id].status if t.id in status_of else "not_due"
        ax.plot([x], [y], marker="D", markersize=7, color=STATUS_COLOURS[st], linestyle="", zorder=5)
        first = k == 0 and len(targets) > 1 or x <= min(xs_all) + 0.5
        ax.annotate(f"{t.milestone.year}: {_short(t, ind.unit)}", (x, y), textcoords="offset points",
                    xytext=(6 if first else -6, 6 + 10 * (k % 2)), ha="left" if first else "right", va="bottom",
                    fontsize=8, color=STATUS_COLOURS[st],
                    bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
        xs_all.append(x)
        ys_all.append(y)
    ax.axvline(_year_frac(as_of), color="#999999", linestyle=":", linewidth=1)
    ax.axhline(100, color="#dddddd", linewidth=0.8, zorder=0)
    lo_x, hi_x = min(xs_all), max(xs_all)
    ax.set_xlim(math.floor(lo_x) - 0.3, math.ceil(hi_x) + 0.6)
    top = max(ys_all)
    ax.set_ylim(min(0.0, min(ys_all)) - 5, max(130.0, top * 1.3))
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0f}%")
    ax.xaxis.set_major_locator(_year_locator(lo_x, hi_x))
    ax.xaxis.set_major_formatter(lambda v, _: f"{int(v)}")
    ax.grid(alpha=0.25)
    unit = {"percent": "%", "percent_grdp": "% GRDP", "count": "số lượng", "per_10000_people": "trên 1 vạn dân",
            "per_1000_people": "trên 1.000 dân", "index": "chỉ số 0–1", "rank": "thứ hạng",
            "boolean": "có/không"}[ind.unit]
    kind = "mỗi năm" if ind.kind == "flow" else "tích lũy"
    name = textwrap.fill(ind.name, 46)
    if name.count("\n") > 2:
        name = "\n".join(name.split("\n")[:3]) + "…"
    ax.set_title(f"{name}\n({unit}, {kind})", fontsize=8.5, loc="left")


def _short(t: KTarget, unit: str) -> str:
    """A target as a chart label: the panel title already names the unit."""
    pct = "%" if unit in ("percent", "percent_grdp") else ""
    if unit == "boolean":
        return "Có"
    if t.op == "range":
        return f"{fmt_num(t.lo)}–{fmt_num(t.hi)}{pct}"
    if t.op == "top":
        return f"top {fmt_num(t.value)}"
    sign = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "eq": "="}[t.op]
    return f"{sign} {fmt_num(t.value)}{pct}"


def _year_locator(lo: float, hi: float):
    from matplotlib.ticker import MultipleLocator

    span = hi - lo
    return MultipleLocator(1 if span <= 6 else 2 if span <= 12 else 5)
