"""The console's pages and the inbox's matching at 5 and 20 years of a province (issue 15, item 2).

    .venv/bin/python benchmarks/bench_console_age.py [--years 5 20] [--units 1000] [--runs 5] [--keep DIR]

The daemon's passes were shown not to grow with the rows an installation accumulates
(bench_soak_years.py); this is the same question for what a secretary opens. It builds, per age,
a SQLite database of the seed rules plus N synthetic units (bench_soak_years.soak_pack) tracked
since 02/06/2025 and looked at on 16/06 of year 2025 + age: the instances synced in full by the
tree's own engine.sync, then — by SQL, as a secretariat's years would leave them — 92 % of the
past reports sent (85 % of those on time), the backlog older than three months exhausted, a
reminder before the due day for every past report and overdue / repeat / escalation notices for
the late ones, one digest per recipient and day with its items and unit link, 15 % of
submissions confirmed through a link (with a file), a tenth of them arrived by mail, a KPI value
every month for every indicator. Then, in this process, each page's function (what the route
calls, without HTTP and templates), one warm-up and ``--runs`` timed calls: the median wall ms.

Run it from two trees (a ``git worktree`` of the older commit with this file copied in) to
compare: each builds its database with its own migrations.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

TZ = timezone(timedelta(hours=7))
INSTALLED = datetime(2025, 6, 2, 7, 0, tzinfo=TZ)


def build(db: Path, rules: Path, years: int) -> dict[str, int]:
    """The aged database (see the module's docstring); returns its row counts."""
    from sqlmodel import Session

    from engine.db import get_engine, migrate
    from engine.kpi.loader import load_kpi_for_pack
    from engine.pipeline import exhaustion_marker
    from engine.rules_loader import load_pack
    from engine.sync import record_installation, sync_instances

    pack = load_pack(rules, ROOT / "calendar")
    url = f"sqlite:///{db}"
    migrate(url)
    now = datetime(2025 + years, 6, 16, 7, 0, tzinfo=TZ)
    with Session(get_engine(url)) as ses:
        record_installation(ses, INSTALLED)
        sync_instances(ses, pack, now, incremental=False)
    today = now.date().isoformat()
    c = sqlite3.connect(db)
    c.execute(f"""UPDATE instances SET closed = 1, submission_ref = 'so-' || id,
        submitted_on = CASE WHEN id % 7 = 0 THEN date(due, '+5 days') ELSE date(due, '-2 days') END
        WHERE due < '{today}' AND id % 100 >= 8""")
    c.execute(f"UPDATE instances SET exhausted_rules = ?, exhausted_on = date(due, '+70 days') "
              f"WHERE closed = 0 AND due < date('{today}', '-80 days')", (exhaustion_marker(pack),))
    c.execute("""INSERT INTO submissions (instance_id, submitted_on, ref, note, active, recorded_at, recorded_by)
        SELECT id, submitted_on, submission_ref, NULL, 1, submitted_on || ' 09:00:00.000000', 'web:thuky'
        FROM instances WHERE closed = 1""")
    c.execute("""INSERT INTO audit_log (at, actor, action, entity, entity_id, detail)
        SELECT submitted_on || ' 09:00:00.000000', 'web:thuky', 'submit', 'instance',
               obligation || '|' || unit || '|' || period, '{}' FROM instances WHERE closed = 1""")
    for stage, kind, shift, cond in (("nhac-truoc-3", "reminder", "-4 days", "1"), ("den-han", "due", "+0 days", "1"),
                                     ("qua-han", "overdue", "+2 days", "(closed = 0 OR id % 7 = 0)"),
                                     ("nhac-lai-1", "overdue", "+30 days", "closed = 0"),
                                     ("bao-cap-tren", "escalation", "+45 days", "closed = 0")):
        rcpt = "'ubnd-tinh'" if kind == "escalation" else "unit"
        c.execute(f"""INSERT INTO notices (key, instance_id, obligation, unit, period, stage, kind, recipient,
              wd_before, wd_late, as_of, created_at, status, attempts, sent_at)
            SELECT obligation || '|' || unit || '|' || period || '|{stage}|' || {rcpt}, id, obligation, unit, period,
              '{stage}', '{kind}', {rcpt}, 0, 0, date(due, '{shift}'), date(due, '{shift}') || ' 07:00:00.000000',
              'sent', 1, date(due, '{shift}') || ' 08:00:00.000000'
            FROM instances WHERE due < date('{today}', '-50 days') AND {cond} ORDER BY id""")
    c.execute("""INSERT INTO deliveries (key, recipient, channel, route, message_id, status, attempts, created_at,
            updated_at, sent_at, subject, maybe_sent)
        SELECT 'email|' || recipient || '|' || as_of, recipient, 'email', 'email', '<' || recipient || '.' || as_of || '@x>',
            'sent', 1, as_of || ' 07:00:00.000000', as_of || ' 08:00:00.000000', as_of || ' 08:00:00.000000', 'Nhắc', 0
        FROM notices GROUP BY recipient, as_of ORDER BY min(id)""")
    c.execute("""INSERT INTO delivery_items (delivery_id, notice_id, route, dropped)
        SELECT d.id, n.id, 'email', 0 FROM notices n JOIN deliveries d ON d.key = 'email|' || n.recipient || '|' || n.as_of""")
    c.execute("""INSERT INTO unit_links (unit, delivery_id, instance_ids, nonce, purpose, created_at, expires_at)
        SELECT recipient, id, '[]', 'nonce', 'digest', created_at, created_at FROM deliveries""")
    c.execute("""INSERT INTO confirmations (instance_id, unit, submitted_on, state, created_at, decided_at, decided_by)
        SELECT id, unit, submitted_on, 'accepted', submitted_on || ' 10:00:00.000000', submitted_on || ' 15:00:00.000000',
            'thuky' FROM instances WHERE closed = 1 AND id % 20 < 3""")
    c.execute(f"""INSERT INTO confirmations (instance_id, unit, submitted_on, state, created_at)
        SELECT id, unit, date('{today}', '-1 days'), 'pending', date('{today}', '-1 days') || ' 10:00:00.000000'
        FROM instances WHERE closed = 0 AND due BETWEEN date('{today}', '-20 days') AND '{today}' AND id % 5 = 0""")
    c.execute("""INSERT INTO attachments (instance_id, unit, confirmation_id, filename, stored_name, content_type, size,
            sha256, created_at, created_by)
        SELECT instance_id, unit, id, 'bc.pdf', 'f' || id, 'application/pdf', 100000, hex(randomblob(32)), created_at, 'unit'
        FROM confirmations""")
    c.execute("""INSERT INTO inbound_mails (folder, message_id, raw_sha256, raw_size, received_at, sender, sender_name,
            subject, state, via, reason, units, candidates, files, problems, created_at)
        SELECT 'INBOX', '<m' || id || '@u>', hex(randomblob(32)), 50000, submitted_on || ' 09:00:00.000000', unit || '@x',
            unit, 'Báo cáo', CASE WHEN id % 50 = 0 THEN 'queued' ELSE 'recorded' END, 'sender', '', '[]', '[]', '[]', '[]',
            submitted_on || ' 09:00:00.000000'
        FROM instances WHERE closed = 1 AND id % 10 = 0""")
    kpi = load_kpi_for_pack(pack)
    days = [date(y, m, 28) for y in range(2025, 2026 + years) for m in range(1, 13) if date(y, m, 28).isoformat() < today]
    c.executemany("INSERT INTO kpi_values (indicator, value, as_of, active, recorded_at, recorded_by) "
                  "VALUES (?, 50.0, ?, 1, ?, 'cli')",
                  [(ind, d.isoformat(), f"{d.isoformat()} 10:00:00.000000") for d in days for ind in kpi.indicators])
    c.commit()
    counts = {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
              for t in ("instances", "notices", "deliveries", "submissions", "inbound_mails", "kpi_values")}
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    return counts


def measure(db: Path, rules: Path, years: int, runs: int) -> dict[str, float]:
    """Median wall ms of each page's function on ``db`` (see the module's docstring)."""
    from sqlmodel import Session

    from engine.app import browse, confirmations, dashboard, records, services
    from engine.app.config import load_settings
    from engine.app.inbox import store
    from engine.db import get_engine
    from engine.rules_loader import load_pack

    url = f"sqlite:///{db}"
    settings = load_settings(environ={}, database={"url": url})
    pack = load_pack(rules, ROOT / "calendar")
    today = date(2025 + years, 6, 16)
    year = today.year
    ob = browse.default_obligation(pack, year)
    raw = sqlite3.connect(db)

    def inbox_match() -> None:
        with Session(get_engine(url)) as ses:
            store.open_items(ses, ["soak0042"])

    def kpi_page() -> None:
        services.kpi_report(settings, pack, services.load_kpi_pack(pack), today)

    def kpi_page_after_a_write() -> None:
        raw.execute("UPDATE kpi_values SET value = value + 1 WHERE id = 1")     # a new values token
        raw.commit()
        kpi_page()

    pages = {
        "overview /": lambda: dashboard.overview(settings, pack, today, late_shown=15, ranked_shown=10),
        "units list /don-vi": lambda: browse.units_overview(settings, pack, today),
        "reports list /bao-cao": lambda: browse.obligations_overview(settings, pack, today),
        "a report's page": lambda: browse.obligation_detail(settings, pack, ob, year, today),
        "a unit's page": lambda: browse.unit_detail(settings, pack, "soak0042", year, today),
        "matrix, one report": lambda: browse.matrix(settings, pack, today, browse.MatrixQuery(year, ob)),
        "matrix, every report": lambda: browse.matrix(settings, pack, today, browse.MatrixQuery(year)),
        "list: overdue": lambda: browse.status_list(settings, pack, today, browse.MatrixQuery(year, status="overdue")),
        "list: sent on time": lambda: browse.status_list(settings, pack, today,
                                                         browse.MatrixQuery(year, status="done_on_time")),
        "outbox /hop-thu-di": lambda: records.outbox_page(settings, pack, "", None, 1),
        "outbox, one unit": lambda: records.outbox_page(settings, pack, "", "soak0042", 1),
        "confirmations queue": lambda: confirmations.queue(settings, pack),
        "inbox tab: recorded": lambda: store.listing(settings, pack, (store.RECORDED,), limit=50),
        "inbox: a mail's open items": inbox_match,
        "KPI page /chi-tieu, again": kpi_page,
        "KPI page, after a write": kpi_page_after_a_write,
    }
    out: dict[str, float] = {}
    for name, fn in pages.items():
        fn()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = statistics.median(times)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--years", type=int, nargs="+", default=[5, 20])
    ap.add_argument("--units", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="build the databases here and keep them (reused when present)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from bench_soak_years import soak_pack

    work = args.keep or Path(tempfile.mkdtemp(prefix="dondoc-console-age-"))
    work.mkdir(parents=True, exist_ok=True)
    rules = work / "rules"
    if not rules.exists():
        soak_pack(rules, args.units)
    results: dict[int, dict] = {}
    for years in args.years:
        db = work / f"age-{years}.db"
        counts = None
        if not db.exists():
            t0 = time.perf_counter()
            counts = build(db, rules, years)
            print(f"{years} years built in {time.perf_counter() - t0:.0f} s: {counts}", flush=True)
        copy = work / f"age-{years}-run.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{copy}{suffix}").unlink(missing_ok=True)
        shutil.copy(db, copy)
        results[years] = measure(copy, rules, years, args.runs)
    names = list(next(iter(results.values())))
    print("\n| page (median ms) | " + " | ".join(f"{y} years" for y in results) + " |")
    print("|---|" + "---:|" * len(results))
    for n in names:
        print(f"| {n} | " + " | ".join(f"{results[y][n]:.1f}" for y in results) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
