"""The exactly-once figure: duplicates over many SIGKILLs of `dondoc notify` mid-batch.

For each SMTP concurrency (1 and 3) and each kill mode, TRIALS times: a fresh copy of a state
database with N queued digests, `dondoc notify` in a subprocess against an in-process aiosmtpd
server (5 ms per message), SIGKILL at a chosen moment, then a restart (an in-process delivery pass)
and a count, by Message-ID, of what the server accepted more than once.

Kill modes:
- ``after-250``: the server kills the sender right after writing its "250" for message k (the
  earliest moment the event loop can): the kill lands inside the window between the server's
  acceptance and our commit, so this measures the bound;
- ``random``: the kill is scheduled 0–30 ms after message k was accepted: it lands anywhere in
  the send loop (rendering, MIME, commits, other connections' transactions), like a real crash.

Usage: .venv/bin/python benchmarks/bench_crash.py [TRIALS] (default 20). Prints a Markdown table.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlmodel import select  # noqa: E402

from engine.clock import TZ  # noqa: E402
from engine.db import session  # noqa: E402
from engine.rules_loader import load_pack  # noqa: E402
from engine.sync import sync_instances  # noqa: E402
from notifications.config import DeliveryConfig, SmtpConfig  # noqa: E402
from notifications.delivery import deliver  # noqa: E402
from notifications.models import DeliveryRow  # noqa: E402
from tests.support import EphemeralController, RecordingHandler, add_notice, instance, write_units_pack  # noqa: E402

N = 120
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=TZ)
CALENDAR = ROOT / "calendar"


class KillingHandler(RecordingHandler):
    """Accepts every message; after the k-th one, SIGKILLs ``pid`` ``delay`` seconds later
    (0: as soon as the reply has been written and the server's loop turns)."""

    def __init__(self, pid: int, k: int, delay: float):
        super().__init__(delay=0.005)
        self.pid, self.k, self.kill_delay = pid, k, delay

    async def handle_DATA(self, server, session_, envelope):
        reply = await super().handle_DATA(server, session_, envelope)
        if self.count == self.k:
            asyncio.get_running_loop().call_later(self.kill_delay, _kill, self.pid)
        return reply


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def seed(workdir: Path) -> tuple[Path, Path]:
    pack_dir = workdir / "rules"
    write_units_pack(pack_dir, N)
    pack = load_pack(pack_dir, CALENDAR)
    db = workdir / "seed.db"
    with session(f"sqlite:///{db}") as s:
        sync_instances(s, pack, NOW)
        for i in range(1, N + 1):
            add_notice(s, instance(s, "nam", f"u{i:04d}", "2026"), "remind-3")
        s.commit()
    import sqlite3

    with sqlite3.connect(db) as c:      # everything into the main file before it is copied (WAL)
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return pack_dir, db


def trial(workdir: Path, pack_dir: Path, seed_db: Path, concurrency: int, mode: str, rng: random.Random,
          n: int) -> dict[str, int]:
    db = workdir / f"t-{concurrency}-{mode}-{n}.db"
    shutil.copy(seed_db, db)
    url = f"sqlite:///{db}"
    k = rng.randint(20, N - 30)
    delay = 0.0 if mode == "after-250" else rng.uniform(0, 0.03)
    handler = KillingHandler(0, k, delay)
    ctl = EphemeralController(handler)
    ctl.start()
    try:
        env = {**os.environ, "DONDOC_SMTP_HOST": "127.0.0.1", "DONDOC_SMTP_PORT": str(ctl.port),
               "DONDOC_SMTP_SECURITY": "none", "DONDOC_SMTP_CONCURRENCY": str(concurrency),
               "DONDOC_SMTP_HELO": "bench.local", "DONDOC_SMTP_FROM": "dondoc@vptu.example.org",
               "PYTHONPATH": str(ROOT)}
        env.pop("DONDOC_NOW", None)
        env.pop("DONDOC_CONFIG", None)
        proc = subprocess.Popen([sys.executable, "-c", "from engine.app.cli import app; app()", "notify",
                                 "--as-of", "2026-11-25T09:00", "--rules", str(pack_dir), "--calendar", str(CALENDAR),
                                 "--db", url], cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        handler.pid = proc.pid
        _, err = proc.communicate(timeout=120)
        killed = proc.returncode == -9
        with session(url) as s:
            maybe = sum(1 for d in s.exec(select(DeliveryRow)).all() if d.status != "sent" and d.maybe_sent)
        rep = deliver(url, load_pack(pack_dir, CALENDAR), NOW.replace(minute=5), delivery=DeliveryConfig(),
                      smtp=SmtpConfig(host="127.0.0.1", port=ctl.port, security="none", concurrency=concurrency,
                                      from_addr="dondoc@vptu.example.org", helo="bench.local"))
        assert rep.failed == 0
    finally:
        ctl.stop()
    counts = Counter(handler.message_ids())
    assert len(counts) == N, f"lost: {N - len(counts)}; notify: {proc.returncode} {err.decode()[-1500:]}; restart: {rep}"
    return {"killed": int(killed), "dups": sum(c - 1 for c in counts.values()), "maybe": maybe,
            "at": handler.count}


def main() -> None:
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    rng = random.Random(20261125)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        pack_dir, seed_db = seed(workdir)
        print("| connections | kill | kills | duplicated digests (total) | trials with a duplicate | max in one trial | "
              "digests marked maybe_sent after the kill (total) |")
        print("|---:|---|---:|---:|---:|---:|---:|")
        for concurrency in (1, 3):
            for mode in ("after-250", "random"):
                rows = []
                t0 = time.monotonic()
                for n in range(trials):
                    rows.append(trial(workdir, pack_dir, seed_db, concurrency, mode, rng, n))
                dups = [r["dups"] for r in rows]
                print(f"| {concurrency} | {mode} | {sum(r['killed'] for r in rows)} | {sum(dups)} | "
                      f"{sum(1 for d in dups if d)} | {max(dups)} | {sum(r['maybe'] for r in rows)} |", flush=True)
                print(f"<!-- {concurrency}/{mode}: {time.monotonic() - t0:.0f} s, per trial {dups} -->", flush=True)


if __name__ == "__main__":
    main()
