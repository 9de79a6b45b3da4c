"""KPI values in the state database (migration 0003_kpi).

A correction never overwrites: recording a value for an (indicator, as_of) that already has one
marks the old row inactive and points the new row at it (`replaces_id`), and an audit_log row
says who changed what. Only active rows count.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Optional

from sqlalchemy import Index
from sqlmodel import Field, SQLModel


class KpiValueRow(SQLModel, table=True):
    __tablename__ = "kpi_values"
    __table_args__ = (Index("ix_kpi_values_indicator_as_of", "indicator", "as_of", "active"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    indicator: str = Field(max_length=80)
    value: float
    as_of: date                       # the date the figure describes ("số liệu tính đến ngày")
    source: Optional[str] = None      # e.g. "Báo cáo 215/BC-SKHCN ngày 16/12/2026"
    note: Optional[str] = None
    active: bool = True
    replaces_id: Optional[int] = Field(default=None, foreign_key="kpi_values.id")
    recorded_at: datetime
    recorded_by: str = Field(default="cli", max_length=80)


class KpiValuesVersionRow(SQLModel, table=True):
    """One row whose token changes, by trigger, in the same transaction as any write to kpi_values
    (migration 0015): an evaluation pass reads it to know whether the values changed since it last
    classified the targets, instead of reading every value (engine/kpi/report.py)."""
    __tablename__ = "kpi_values_version"
    id: Optional[int] = Field(default=None, primary_key=True)
    token: str = Field(max_length=32)
