"""The `dondoc` command line: Rich tables for people, --json for scripts.

Commands only parse arguments, call one service (engine/app/services.py) and print. Each area lives
in its own module and registers on the root ``app`` when imported here (explicit imports, no plugin
lookup): rules, deadlines and calendar, state (sync, submit, waive, import, status), backlog, export
(the xlsx tracking sheet), evaluate and
simulate, notify and outbox, KPI, run and doctor. Shared options, consoles and the one error
handler are in :mod:`engine.app.cli.common`.
"""

from __future__ import annotations

import os

from engine.app.cli.common import (  # noqa: F401  (re-exported for modules and tests)
    STATE, CalOpt, DbOpt, RulesOpt, _date_opt, _db_url, _load, _moment_opt, _now, _print_rule_errors, _reject_import,
    _session, app, err, fmt_day, out, settings)

# Registration order is the order of `dondoc --help`.
from engine.app.cli import rules as _rules  # noqa: E402,F401
from engine.app.cli import versions as _versions  # noqa: E402,F401
from engine.app.cli import deadlines as _deadlines  # noqa: E402,F401
from engine.app.cli import state as _state  # noqa: E402,F401
from engine.app.cli import backlog as _backlog  # noqa: E402,F401
from engine.app.cli import export as _export  # noqa: E402,F401
from engine.app.cli import evaluate as _evaluate  # noqa: E402,F401
from engine.app.cli import notify as _notify  # noqa: E402,F401
from engine.app.cli import kpi as _kpi  # noqa: E402,F401
from engine.app.cli import daemon as _daemon  # noqa: E402,F401
from engine.app.cli import web as _web  # noqa: E402,F401
from engine.app.cli import inbox as _inbox  # noqa: E402,F401


def main() -> None:
    """The `dondoc` console script. Files it creates (state.db, exports) are not world-readable."""
    os.umask(0o027)
    app()
