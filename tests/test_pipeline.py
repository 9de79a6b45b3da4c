"""An evaluation pass end to end: state database → durable-rules → outbox, idempotent."""

from __future__ import annotations

import json
from datetime import date, datetime

from sqlmodel import select
from typer.testing import CliRunner

from engine.app.cli import app
from engine.clock import TZ
from engine.db import session
from engine.pipeline import evaluate
from engine.state import NoticeRow
from engine.submissions import SubmissionIn, record_submission
from engine.sync import sync_instances
from tests.conftest import CALENDAR, MINIPACK

runner = CliRunner()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def notices(url: str) -> list[NoticeRow]:
    with session(url) as s:
        return s.exec(select(NoticeRow).order_by(NoticeRow.key)).all()


def test_evaluate_twice_creates_nothing_the_second_time(db_url: str, minipack) -> None:
    now = at("2026-03-13T07:00")      # Friday; monthly report due Wed 18/03 = 3 working days ahead
    with session(db_url) as s:
        sync_instances(s, minipack, now)
        first = evaluate(s, minipack, now)
    with session(db_url) as s:
        second = evaluate(s, minipack, now)
    assert first.created > 0 and first.created == len(notices(db_url))
    assert second.created == 0 and second.intents == 0
    keys = {n.key for n in notices(db_url)}
    assert "thang|skhcn|2026-03|remind-3|skhcn" in keys


def test_reminders_overdue_and_escalation_over_time(db_url: str, minipack) -> None:
    with session(db_url) as s:
        sync_instances(s, minipack, at("2026-03-01T07:00"))
    stages = []
    for day in ["2026-03-13", "2026-03-17", "2026-03-18", "2026-03-19", "2026-03-26", "2026-04-01"]:
        with session(db_url) as s:
            rep = evaluate(s, minipack, at(f"{day}T07:00"))
        stages.append((day, sorted(n.stage for n in rep.notices if n.obligation == "thang" and n.period == "2026-03")))
    assert stages[0] == ("2026-03-13", ["remind-3"])
    assert stages[1] == ("2026-03-17", ["remind-1"])
    assert stages[2] == ("2026-03-18", ["due-today"])
    assert stages[3] == ("2026-03-19", ["overdue"])          # one working day late
    assert stages[4] == ("2026-03-26", ["overdue-repeat-1"])  # 6 working days late (repeat every 5)
    # 01/04: 10 working days late -> escalation to Sở KH&CN's supervisor (UBND tỉnh)
    assert stages[5][1] == ["escalation"]
    esc = [n for n in notices(db_url) if n.stage == "escalation" and n.period == "2026-03" and n.obligation == "thang"]
    assert [n.recipient for n in esc] == ["ubnd"]


def test_submitted_instance_is_silent(db_url: str, minipack) -> None:
    now = at("2026-03-13T07:00")
    with session(db_url) as s:
        sync_instances(s, minipack, now)
        record_submission(s, minipack, SubmissionIn(obligation="thang", unit="skhcn", period="2026-03",
                                                    submitted_on=date(2026, 3, 12)), now)
        rep = evaluate(s, minipack, now)
    assert not [n for n in rep.notices if n.obligation == "thang" and n.period == "2026-03"]


def test_cli_evaluate_dry_run_and_simulate_do_not_write(sqlite_url: str) -> None:
    common = ["--rules", str(MINIPACK), "--calendar", str(CALENDAR), "--db", sqlite_url]
    dry = runner.invoke(app, ["--now", "2026-03-13T07:00", "evaluate", "--dry-run", "--json", *common])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["intents"] > 0
    assert notices(sqlite_url) == []
    sim = runner.invoke(app, ["simulate", "--from", "2026-03-13", "--to", "2026-04-01", "--json", *common])
    assert sim.exit_code == 0, sim.output
    preview = json.loads(sim.stdout)
    assert {"day": "2026-03-18", "key": "thang|skhcn|2026-03|due-today|skhcn"}.items() <= \
        next(p for p in preview if p["key"] == "thang|skhcn|2026-03|due-today|skhcn").items()
    assert notices(sqlite_url) == []
    real = runner.invoke(app, ["--now", "2026-03-13T07:00", "evaluate", "--json", *common])
    assert json.loads(real.stdout)["created"] == json.loads(dry.stdout)["intents"]
