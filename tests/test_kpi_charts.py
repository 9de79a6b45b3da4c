"""The KPI charts read right: each panel in the indicator's own unit with Vietnamese number forms,
every milestone's target marked with its value, "tích lũy" only for stocks that are counts, the
value that decided a status ringed, and no text drawn over other text.

The assertions are on the matplotlib objects `render_group` builds (artists carry gids), never on
pixels. The seed pack (rules/) is drawn with a few reported values, as of 20/12/2026.
"""

from __future__ import annotations

from datetime import date

import pytest

from engine.kpi.charts import axis_label, render_group
from engine.kpi.classify import Obs, evaluate
from engine.kpi.loader import load_kpi_for_pack
from engine.rules_loader import load_pack
from tests.conftest import CALENDAR, RULES

AS_OF = date(2026, 12, 20)
VALUES = {"phu-song-5g": [(55, "2025-12-14"), (62, "2026-11-14")],                 # percent, stock
          "nhiem-vu-nghiem-thu": [(18, "2025-12-14"), (22, "2026-11-14")],         # count, yearly flow
          "chi-so-cds": [(0.71, "2025-12-31"), (0.73, "2026-11-14")],              # index 0–1
          "can-bo-nghien-cuu": [(350, "2025-12-31"), (420, "2026-11-14")],         # count, stock, thousands
          "xh-nang-luc-canh-tranh-so": [(25, "2025-12-31"), (22, "2026-11-14")],   # rank, top 20
          "nhan-luc-nc-van-dan": [(6.5, "2025-12-31")],                            # per 10,000 people
          "kinh-te-so-grdp": [(12.5, "2025-12-31")]}                               # % of GRDP


def _x(d: str) -> float:
    return float(date.fromisoformat(d).toordinal())


@pytest.fixture(scope="module")
def charts():
    """Every group of the seed pack drawn once: {group: (figure, infos)}; plus the KPI pack."""
    pack = load_pack(RULES, CALENDAR)
    kpi = load_kpi_for_pack(pack)
    values = {i: [Obs(float(v), date.fromisoformat(d)) for v, d in vs] for i, vs in VALUES.items()}
    results = evaluate(kpi, pack, values, AS_OF)
    out = {}
    for gid in kpi.group_order():
        fig, infos = render_group(kpi, results, values, AS_OF, gid, "Tỉnh Gia Lai")
        fig.canvas.draw()
        out[gid] = (fig, infos)
    return kpi, results, out


def _panel(charts, iid: str):
    kpi, _, figs = charts
    fig, _ = figs[kpi.indicators[iid].group]
    return next(ax for ax in fig.axes if ax.get_gid() == f"chi-tieu:{iid}")


def _by_gid(ax, prefix: str):
    return [a for a in ax.get_children() if (a.get_gid() or "").startswith(prefix)]


def _visible_ticklabels(ax, axis):
    lo, hi = sorted(axis.get_view_interval())
    return [t for t, loc in zip(axis.get_ticklabels(), axis.get_ticklocs()) if lo <= loc <= hi and t.get_text()]


@pytest.mark.parametrize("iid,unit_words", [
    ("phu-song-5g", "(%)"), ("kinh-te-so-grdp", "% GRDP"), ("nhan-luc-nc-van-dan", "1 vạn dân"),
    ("dn-cns-tren-1000-dan", "1.000 dân"), ("chi-so-cds", "0–1"), ("can-bo-nghien-cuu", "Số lượng"),
    ("xh-nang-luc-canh-tranh-so", "Thứ hạng"), ("trung-tam-an-ninh-mang", "Có / Chưa")])
def test_y_axis_is_in_the_indicators_own_unit(charts, iid: str, unit_words: str) -> None:
    """A reader reads the plan's figure in the plan's unit, not "% of the final target"."""
    ax = _panel(charts, iid)
    assert unit_words in ax.get_ylabel()
    assert "mục tiêu" not in ax.get_ylabel()


def test_cumulative_only_for_counts_that_are_stocks(charts) -> None:
    """"tích lũy" on a rate, a percentage or a yearly amount tells the reader to add it up: wrong."""
    kpi, _, figs = charts
    for ind in kpi.indicators.values():
        ax = _panel(charts, ind.id)
        texts = [ax.get_ylabel(), ax.get_title(loc="left")] + [t.get_text() for t in ax.texts]
        cumulative = any("tích lũy" in t.lower() for t in texts)
        assert cumulative == (ind.kind == "stock" and ind.unit == "count"), (ind.id, ind.unit, ind.kind, texts)
        if ind.kind == "flow":
            assert "trong năm" in ax.get_ylabel(), ind.id
    assert axis_label(kpi.indicators["phu-song-5g"]) == "Tỷ lệ (%)"


def test_every_milestone_is_marked_at_its_date_with_its_value(charts) -> None:
    kpi, _, figs = charts
    ax = _panel(charts, "phu-song-5g")
    (m25,) = _by_gid(ax, "muc-tieu:phu-song-5g-2025")
    (m30,) = _by_gid(ax, "muc-tieu:phu-song-5g-2030")
    assert (list(m25.get_xdata()), list(m25.get_ydata())) == ([_x("2025-12-31")], [60.0])
    assert (list(m30.get_xdata()), list(m30.get_ydata())) == ([_x("2030-12-31")], [100.0])
    labels = {a.get_gid(): a.get_text() for a in ax.texts}
    assert labels["nhan-muc-tieu:phu-song-5g-2025"] == "≥ 60 %"
    assert labels["nhan-muc-tieu:phu-song-5g-2030"] == "≥ 100 %"
    # no target of the seed pack lost its marker or its label
    for gid, (fig, infos) in figs.items():
        marked = {g.split(":", 1)[1] for ax in fig.axes for a in _by_gid(ax, "muc-tieu:") for g in [a.get_gid()]}
        labelled = {tid for info in infos for g in info.labels for tid in g.split(":", 1)[1].split(",")
                    if g.startswith("nhan-muc-tieu:")}
        expected = {t.id for t in kpi.targets.values() if t.group == gid}
        assert marked == expected, gid
        assert expected <= labelled, (gid, expected - labelled)
        assert [i.dropped for i in infos if i.dropped] == [], gid


def test_range_is_a_band_and_top_n_an_inverted_rank_axis(charts) -> None:
    ax = _panel(charts, "trung-tam-nc-trong-diem")               # range [15, 20] in 2040
    (band,) = _by_gid(ax, "khoang:trung-tam-nc-trong-diem-2040")
    ys = band.get_paths()[0].vertices[:, 1]
    assert (ys.min(), ys.max()) == (15, 20)
    assert "15–20" in [t.get_text() for t in ax.texts]
    ax = _panel(charts, "xh-nang-luc-canh-tranh-so")             # "nhóm 20 dẫn đầu" in 2030
    assert ax.yaxis_inverted()
    assert _by_gid(ax, "khoang:xh-nang-luc-canh-tranh-so-2030")
    assert "nhóm 20 dẫn đầu" in [t.get_text() for t in ax.texts]
    assert {1.0, 20.0} <= set(ax.get_yticks())


def test_ticks_use_vietnamese_number_forms_and_years(charts) -> None:
    ax = _panel(charts, "chi-so-cds")
    ticks = [t.get_text() for t in _visible_ticklabels(ax, ax.yaxis)]
    assert any("," in t for t in ticks) and not any("." in t for t in ticks), ticks
    assert "1" in ticks and "1,2" not in ticks                  # an index stops at 1
    assert {"0,71", "0,73"} <= {t.get_text() for t in ax.texts}  # the values, with a decimal comma
    ax = _panel(charts, "can-bo-nghien-cuu")
    ticks = [t.get_text() for t in _visible_ticklabels(ax, ax.yaxis)]
    assert "1.000" in ticks and "3.000" in ticks, ticks
    ax = _panel(charts, "phu-song-5g")
    assert max(float(t.get_text()) for t in _visible_ticklabels(ax, ax.yaxis)) == 100   # no "120 %"
    years = [(t.get_text(), loc) for t, loc in zip(ax.get_xticklabels(), ax.get_xticks())]
    assert ("2030", _x("2030-12-31")) in years                    # a year's tick is its 31/12


def test_path_from_the_anchor_and_the_deciding_values(charts) -> None:
    ax = _panel(charts, "dn-khcn")                              # baseline 9 on 31/12/2020 → ≥ 25 in 2025
    (seg,) = _by_gid(ax, "lo-trinh:dn-khcn-2025")
    assert (list(seg.get_xdata()), list(seg.get_ydata())) == ([_x("2020-12-31"), _x("2025-12-31")], [9.0, 25.0])
    ax = _panel(charts, "phu-song-5g")
    (nxt,) = _by_gid(ax, "lo-trinh:phu-song-5g-2030")          # the segment now being chased, drawn darker
    assert list(nxt.get_ydata()) == [60.0, 100.0] and nxt.get_linewidth() > 1.2
    (pts,) = _by_gid(ax, "so-lieu")
    assert list(pts.get_ydata()) == [55.0, 62.0]
    rings = {a.get_gid(): (a.get_xdata()[0], a.get_ydata()[0]) for a in _by_gid(ax, "quyet-dinh:")}
    assert rings["quyet-dinh:phu-song-5g-2025"] == (_x("2025-12-14"), 55.0)   # 2025 judged on the 2025 value
    assert rings["quyet-dinh:phu-song-5g-2030"] == (_x("2026-11-14"), 62.0)   # 2030 on the latest
    labels = {a.get_gid(): a.get_text() for a in ax.texts}
    assert labels["nhan-quyet-dinh:phu-song-5g-2025"] == "55 %"
    ax = _panel(charts, "san-pham-dmst-thuong-mai")             # yearly flow: ≥ 10 in 2025 → ≥ 30 in 2030
    (steps,) = _by_gid(ax, "lo-trinh:san-pham-dmst-thuong-mai-2030")
    assert sorted(set(steps.get_ydata())) == [14.0, 18.0, 22.0, 26.0, 30.0]


def test_no_text_overlaps_other_text(charts) -> None:
    """Titles, axis labels, ticks, milestone and value labels, header and legend of every group:
    no two bounding boxes intersect, and every value label stays inside its panel."""
    _, _, figs = charts
    for gid, (fig, _) in figs.items():
        r = fig.canvas.get_renderer()
        boxes = []
        for t in fig.texts + fig.legends[0].get_texts():
            boxes.append((t.get_text(), t.get_window_extent(r)))
        for ax in fig.axes:
            inside = ax.get_window_extent(r)
            for t in _by_gid(ax, "ten:") + [ax.yaxis.label] + _visible_ticklabels(ax, ax.xaxis) + _visible_ticklabels(ax, ax.yaxis):
                if t.get_text():
                    boxes.append((t.get_text(), t.get_window_extent(r)))
            for t in ax.texts:
                e = t.get_window_extent(r)
                assert inside.x0 <= e.x0 and e.x1 <= inside.x1 and inside.y0 <= e.y0 and e.y1 <= inside.y1, \
                    (gid, t.get_text())
                boxes.append((t.get_text(), e))
        for i, (ta, a) in enumerate(boxes):
            for tb, b in boxes[i + 1:]:
                w = min(a.x1, b.x1) - max(a.x0, b.x0)
                h = min(a.y1, b.y1) - max(a.y0, b.y0)
                assert w <= 0.5 or h <= 0.5, (gid, ta, tb)
