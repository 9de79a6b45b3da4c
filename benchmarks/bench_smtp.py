"""SMTP delivery throughput: 5,000 digests to a local aiosmtpd sink (a separate process).

Full pass (``deliver``: moot check, assignment, rendering, MIME, SMTP, one commit per message
plus the in-flight mark) and the bare transport (pre-built messages, no database), each with one
reused connection, with a connection per message, and with 3 reused connections.
Median of RUNS runs; each full-pass run starts from a copy of the same freshly seeded database.

    .venv/bin/python benchmarks/bench_smtp.py [--n 5000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.clock import TZ  # noqa: E402

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=TZ)


def _sink(conn) -> None:
    from tests.support import EphemeralController, RecordingHandler

    handler = RecordingHandler(keep=False)
    ctl = EphemeralController(handler, data_size_limit=0)
    ctl.start()
    conn.send(ctl.port)
    while True:
        cmd = conn.recv()
        if cmd == "count":
            conn.send(handler.count)
        elif cmd == "stop":
            ctl.stop()
            conn.send("ok")
            return


def seed(workdir: Path, n: int):
    from engine.db import session
    from engine.rules_loader import load_pack
    from engine.sync import sync_instances
    from tests.support import add_notice, write_units_pack

    pack_dir = workdir / "rules"
    write_units_pack(pack_dir, n)
    pack = load_pack(pack_dir, ROOT / "calendar")
    url = f"sqlite:///{workdir / 'seed.db'}"
    with session(url) as s:
        sync_instances(s, pack, NOW)
        from sqlmodel import select

        from engine.state import InstanceRow

        for inst in s.exec(select(InstanceRow)).all():
            add_notice(s, inst, "remind-3")
        s.commit()
        from sqlalchemy import text

        s.exec(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    from engine.db import get_engine

    get_engine(url).dispose()
    return pack, workdir / "seed.db"


def full_pass(pack, seed_db: Path, workdir: Path, port: int, concurrency: int, reuse: bool, run: int) -> tuple[float, int]:
    from notifications.delivery import deliver
    from notifications.config import DeliveryConfig, SmtpConfig

    db = workdir / f"run-{concurrency}-{reuse}-{run}.db"
    shutil.copy(seed_db, db)
    cfg = SmtpConfig(host="127.0.0.1", port=port, security="none", concurrency=concurrency,
                       from_addr="dondoc@vptu.example.org", helo="bench.local")
    t0 = time.perf_counter()
    rep = deliver(f"sqlite:///{db}", pack, NOW, smtp=cfg, delivery=DeliveryConfig(), reuse_connections=reuse)
    return time.perf_counter() - t0, rep.sent


def transport_only(jobs, port: int, concurrency: int, reuse: bool) -> tuple[float, int]:
    from notifications.config import SmtpConfig
    from notifications.transport import SmtpPool

    class Source:
        def __init__(self):
            self.it = iter(jobs)
            self.ok = 0

        def next_job(self):
            return next(self.it, None)

        def done(self, job, outcome):
            self.ok += outcome.kind == "sent"

        def defer_rest(self, reason):
            raise RuntimeError(reason)

    src = Source()
    cfg = SmtpConfig(host="127.0.0.1", port=port, security="none", concurrency=concurrency,
                       from_addr="dondoc@vptu.example.org", helo="bench.local")
    t0 = time.perf_counter()
    asyncio.run(SmtpPool(cfg, reuse=reuse).run(src))
    return time.perf_counter() - t0, src.ok


def build_jobs(pack, n: int):
    """Realistic digests rendered and encoded once, for the transport-only rows."""
    from datetime import date

    from notifications.mime import address, build_email, message_id_for, to_bytes
    from notifications.render import Digest, DigestItem, Party, Renderer
    from notifications.transport import EmailJob

    r = Renderer()
    vp = Party("vp", "Văn phòng Tỉnh ủy", "vp@example.org")
    jobs = []
    for i in range(1, n + 1):
        u = pack.units[f"u{i:04d}"]
        d = Digest(Party(u.id, u.name), date(2026, 11, 25), vp, items=[DigestItem(
            "nam", "Báo cáo năm về Sở KH&CN", "Hướng dẫn Sở KH&CN, mục III.1", Party(u.id, u.name), "2026", "Năm 2026",
            date(2026, 11, 30), "due_soon", wd_left=3, days_left=5)])
        rendered = r.render(d)
        key = f"email|{u.id}|bench"
        msg = build_email(rendered, delivery_key=key, message_id=message_id_for(key, "vptu.example.org"),
                          sender=address("Hệ thống đôn đốc báo cáo", "dondoc@vptu.example.org"),
                          to=[address(u.name, u.contacts[0])], reply_to=address(vp.name, vp.email), date=NOW)
        jobs.append(EmailJob(i, msg["Message-ID"], "dondoc@vptu.example.org", list(u.contacts), to_bytes(msg)))
    return jobs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    parent, child = mp.Pipe()
    sink = mp.get_context("spawn").Process(target=_sink, args=(child,), daemon=True)
    sink.start()
    port = parent.recv()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        pack, seed_db = seed(work, args.n)
        print(f"seeded {args.n} units/notices in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        jobs = build_jobs(pack, args.n)
        size = statistics.mean(len(j.data) for j in jobs)
        modes = [("1 connection, reused", 1, True), ("connection per message", 1, False),
                 ("3 connections, reused", 3, True)]
        rows = []
        for label, conc, reuse in modes:
            for kind in ("full pass", "transport only"):
                rates = []
                for run in range(args.runs):
                    if kind == "full pass":
                        secs, sent = full_pass(pack, seed_db, work, port, conc, reuse, run)
                    else:
                        secs, sent = transport_only(jobs, port, conc, reuse)
                    assert sent == args.n, (label, kind, sent)
                    rates.append(sent / secs)
                    print(f"{kind:15} {label:32} run {run + 1}: {sent / secs:7.0f} msg/s ({secs:.2f} s)", file=sys.stderr)
                rows.append((kind, label, statistics.median(rates), min(rates), max(rates)))
        parent.send("count")
        total = parent.recv()
        parent.send("stop")
        parent.recv()
    print(f"\n{args.n:,} digests (mean {size / 1024:.1f} KiB each) to a local aiosmtpd sink in another process; "
          f"median of {args.runs} runs; {platform.machine()}, {mp.cpu_count()} cores, Python {platform.python_version()}. "
          f"Sink received {total:,} messages.\n")
    print("| what is timed | SMTP connections | messages/s (median) | min – max |")
    print("|---|---|---:|---:|")
    for kind, label, med, lo, hi in rows:
        print(f"| {kind} | {label} | {med:,.0f} | {lo:,.0f} – {hi:,.0f} |")


if __name__ == "__main__":
    main()
