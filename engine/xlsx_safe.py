"""Formula-safe spreadsheets, shared by every xlsx export (KPI report, backlog, tracking sheet).

A leaf module (imports nothing of the engine) so any export can use it without an import cycle."""

from __future__ import annotations

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formulas(wb) -> None:
    """Every text cell that a spreadsheet could take for a formula (it starts with = + - @, tab or
    CR: CSV/formula injection through an indicator name, a source or a note) is stored as text with
    Excel's quote prefix, so it is shown as written and stays text when someone edits the cell."""
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                v = cell.value
                if isinstance(v, str) and v.startswith(FORMULA_START):
                    cell.data_type = "s"
                    cell.quotePrefix = True
