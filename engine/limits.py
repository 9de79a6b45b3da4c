"""Bounds every input to dondoc respects, stated once.

Years: dates in rule packs, KPI files and on the command line must fall in
MIN_YEAR..MAX_YEAR (inclusive). A date outside this range is almost always a typo
(0001-01-01, 9999-12-31) and would make the engine enumerate thousands of years of periods,
so it is refused with a message that states the range (`YEARS_VI`).

Rule files: a YAML file larger than MAX_FILE_BYTES, with more than MAX_NODES nodes, more than
MAX_ALIASES alias uses, or nested deeper than MAX_DEPTH is refused before it is expanded
(anchor bombs, 5,000-deep nesting). The seed pack's largest file is ~60 KB with ~6,000 nodes.
"""

from __future__ import annotations

MIN_YEAR = 2000
MAX_YEAR = 2100
YEARS_VI = f"{MIN_YEAR}–{MAX_YEAR}"

MAX_FILE_BYTES = 1_000_000
MAX_NODES = 100_000          # scalars + collections after alias expansion
MAX_ALIASES = 1_000          # uses of *anchor in one file
MAX_DEPTH = 50               # nested mappings/lists


def year_ok(year: int) -> bool:
    return MIN_YEAR <= year <= MAX_YEAR
