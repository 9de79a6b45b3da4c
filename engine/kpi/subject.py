"""What a KPI notice is about, as one typed value with one codec.

A slipping KPI item travels through the evaluator and the outbox as a notice whose obligation is
``kpi:<target>`` and whose period is ``<status>:<period or milestone>`` (``behind:2030-12-31``,
``no_data:2026``). Those two strings are written and read only here, so evaluation, the pipeline
and the sender can never disagree on the format.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

KPI_PREFIX = "kpi:"


@dataclass(frozen=True, slots=True)
class KpiSubject:
    """One KPI fact: target ``target`` has status ``status`` for ``ref`` (a period key or an ISO milestone)."""

    target: str
    status: str          # behind | missed | no_data
    ref: str             # "2026" (the missing period / judged year) or "2030-12-31" (a milestone)

    @property
    def obligation(self) -> str:
        return f"{KPI_PREFIX}{self.target}"

    @property
    def period(self) -> str:
        return f"{self.status}:{self.ref}"

    @property
    def milestone(self) -> date | None:
        """The milestone when ``ref`` is a date, else None (``ref`` is a period such as "2026")."""
        try:
            return date.fromisoformat(self.ref)
        except ValueError:
            return None

    @classmethod
    def of(cls, target: str, status: str, period: str | None, milestone: date) -> "KpiSubject":
        """The subject of a KPI item: its period when it has one, else its milestone."""
        return cls(target, status, period or milestone.isoformat())


def is_kpi_obligation(obligation: str) -> bool:
    return obligation.startswith(KPI_PREFIX)


def target_of(obligation: str) -> str | None:
    """``kpi:<target>`` → target (None for a report's obligation)."""
    return obligation[len(KPI_PREFIX):] if is_kpi_obligation(obligation) else None


def encode(subject: KpiSubject) -> tuple[str, str]:
    """(obligation, period) of the notices about ``subject``."""
    return subject.obligation, subject.period


def decode(obligation: str, period: str) -> KpiSubject | None:
    """The subject of a notice, or None when it is not about a KPI item (or its period is malformed)."""
    target = target_of(obligation)
    if target is None or ":" not in period:
        return None
    status, ref = period.split(":", 1)
    return KpiSubject(target, status, ref)
