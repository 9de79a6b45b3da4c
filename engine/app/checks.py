"""Templates are part of the rule set: a broken one is caught with the rules, not at 07:00."""

from __future__ import annotations

from pathlib import Path

from engine.errors import RuleError


def check_templates_for(directory: Path | None) -> list[RuleError]:
    try:
        from notifications.templates import check_templates
    except ImportError:  # pragma: no cover
        return []
    return check_templates(directory)
