"""The daemon's door to the notifications package (kept thin so engine/ does not grow its own mailer)."""

from __future__ import annotations

from datetime import datetime
from typing import Callable

from sqlalchemy.engine import Engine

from engine.rules_loader import RulePack


def deliver(engine: Engine, pack: RulePack, now: datetime, should_stop: Callable[[], bool]) -> int:
    """Run one delivery pass; the number of messages accepted by the server (or written as .eml)."""
    from notifications.delivery import deliver as _deliver

    report = _deliver(engine, pack, now, should_stop=should_stop)
    return int(getattr(report, "sent", 0) or 0)
