"""KPI target tracking: the plans' indicators and targets (rules/kpi/*.yaml), reported values
(state database), and their status as of a date (Đạt, Đúng tiến độ, Chậm tiến độ, Không đạt,
Thiếu số liệu).

Layout: `model` (the YAML language), `loader` (load + cross-check against the rule pack),
`classify` (pure status logic), `values` (recording and CSV import), `report` (rows, pipeline
items, secretariat summary, XLSX), `charts` (PNG per group), `cli` (the `dondoc kpi` commands).
The language is documented in docs/kpi.md.
"""

from engine.kpi.classify import STATUS_VI, SLIPPING
from engine.kpi.loader import KpiPack, kpi_check_errors, load_kpi, load_kpi_for_pack
from engine.kpi.report import KpiItem, KpiSummary, kpi_items, secretariat_summary

__all__ = ["STATUS_VI", "SLIPPING", "KpiPack", "KpiItem", "KpiSummary", "kpi_check_errors", "load_kpi",
           "load_kpi_for_pack", "kpi_items", "secretariat_summary"]
