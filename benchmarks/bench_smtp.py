"""SMTP delivery throughput: 5,000 digests to a local aiosmtpd sink (a separate process).

Full pass (``deliver``: moot check, assignment, rendering, MIME, SMTP, the in-flight mark and the
outcome of every message committed) and the bare transport (pre-built messages, no database), each
with one reused connection, with a connection per message, and with 3 and 4 reused connections.
Median of RUNS runs; each full-pass run starts from a copy of the same freshly seeded database.

    .venv/bin/python benchmarks/bench_smtp.py [--n 5000] [--runs 3] [--db sqlite|postgresql|both]
                                              [--rows 1,per-message,3,4]
    .venv/bin/python benchmarks/bench_smtp.py --profile 4 [--db postgresql] [--top 25]

``--db-delay-ms D`` (PostgreSQL) reaches the server through a proxy process that holds every packet D ms
each way, as a database on another host would (asyncio's timers: D below 1 ms rounds up to 1 ms).
``--commit-variants`` (PostgreSQL) runs every full pass twice, alternating: the pass as it is (marks
and outcomes committed on a connection of their own, awaited on the event loop, grouped:
engine/async_commits.py) and with ``notifications.delivery.AWAIT_COMMITS`` off (each commit on the
pass's session, one blocking round trip: the code of stop 27), so their ratio is measured in the
same runs.

``--db postgresql`` starts a throw-away PostgreSQL server on loopback (tests/pgserver.py) with the
production defaults for durability (``fsync``, ``synchronous_commit`` and ``full_page_writes`` on:
every commit waits for its WAL flush); each run gets its own copy of the seeded database
(``CREATE DATABASE … TEMPLATE``). ``--profile C`` runs one full pass with C connections under
cProfile instead of the table and prints where the time goes (own time and cumulative), the raw
statistics saved to ``--profile-out``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import multiprocessing as mp
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.clock import TZ  # noqa: E402

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=TZ)
FROM = "dondoc@vptu.example.org"

# label, connections, reuse
ROWS = {"1": ("1 connection, reused", 1, True), "per-message": ("connection per message", 1, False),
        "3": ("3 connections, reused", 3, True), "4": ("4 connections, reused", 4, True)}


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


# ---------------------------------------------------------------------------------------------
# databases: a seeded one, and a fresh copy of it per run


class SqliteDbs:
    name = "SQLite"

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.seed_url = f"sqlite:///{workdir / 'seed.db'}"

    def finish_seed(self) -> None:
        from sqlalchemy import text

        from engine.db import get_engine

        eng = get_engine(self.seed_url)
        with eng.connect() as c:
            c.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        eng.dispose()

    def copy(self, tag: str) -> str:
        db = self.workdir / f"run-{tag}.db"
        shutil.copy(self.workdir / "seed.db", db)
        return f"sqlite:///{db}"

    def close(self) -> None:
        pass


class PgDbs:
    name = "PostgreSQL"

    def __init__(self, durable: bool = True):
        from tests.pgserver import PgServer

        self.server = PgServer()
        if durable:      # the tests' server runs with fsync off; a real one commits durably
            _start_durable(self.server)
        else:
            self.server.start()
        self.seed_url = self.server.create_db("seed")
        self.n = 0

    def _admin(self, *sql: str) -> list:
        import psycopg

        out = []
        with psycopg.connect(f"host=127.0.0.1 port={self.server.port} user=postgres dbname=postgres",
                             autocommit=True) as c:
            for q in sql:
                cur = c.execute(q)
                out.append(cur.fetchall() if cur.description else None)
        return out

    def finish_seed(self) -> None:
        from engine.db import get_engine

        get_engine(self.seed_url).dispose()        # a template database must have no connection

    def settings(self) -> str:
        rows = self._admin("SHOW fsync", "SHOW synchronous_commit", "SHOW full_page_writes", "SHOW server_version")
        return ", ".join(f"{k}={r[0][0]}" for k, r in zip(("fsync", "synchronous_commit", "full_page_writes",
                                                             "version"), rows))

    def copy(self, tag: str) -> str:
        self.n += 1
        name = f"run{self.n}"
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE seed')
        return self.server.url(name)

    def close(self) -> None:
        self.server.stop()


def _start_durable(server) -> None:
    """tests/pgserver.PgServer.start with PostgreSQL's own defaults for durability (fsync,
    synchronous_commit, full_page_writes on): every commit waits for its WAL flush, as in production."""
    data = server.dir / "data"
    if server.as_root:
        shutil.chown(server.dir, "postgres", "postgres")
        os.chmod(server.dir, 0o755)
    server._run(server.initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C")
    server._run(server.pg_ctl, "-D", str(data), "-l", str(server.dir / "log"), "-w", "-t", "60", "-o",
                f"-p {server.port} -k {server.dir} -c listen_addresses=127.0.0.1 -c max_connections=200", "start")


def _delay_proxy(listen: int, target: int, delay_s: float) -> None:
    """A TCP proxy holding every packet ``delay_s`` each way, in order (run in its own process)."""

    async def pump(reader, writer) -> None:
        queue: asyncio.Queue = asyncio.Queue()

        async def read() -> None:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((time.monotonic() + delay_s, data))
                if not data:
                    return

        async def write() -> None:
            while True:
                due, data = await queue.get()
                if (wait := due - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                if not data:
                    writer.close()
                    return
                writer.write(data)
                await writer.drain()

        await asyncio.gather(read(), write(), return_exceptions=True)

    async def handle(client_r, client_w) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pump(client_r, server_w), pump(server_r, client_w), return_exceptions=True)

    async def serve() -> None:
        srv = await asyncio.start_server(handle, "127.0.0.1", listen)
        await srv.serve_forever()

    asyncio.run(serve())


class DelayedPg:
    """``--db-delay-ms``: each run's database URL through a proxy adding a delay each way."""

    def __init__(self, dbs: "PgDbs", delay_ms: float):
        import socket

        with socket.socket() as so:
            so.bind(("127.0.0.1", 0))
            self.port = so.getsockname()[1]
        self.dbs = dbs
        self.proc = mp.get_context("spawn").Process(target=_delay_proxy, args=(self.port, dbs.server.port, delay_ms / 1000),
                                                     daemon=True)
        self.proc.start()
        time.sleep(1.0)                          # the proxy's listening socket

    def url(self, url: str) -> str:
        return url.replace(f":{self.dbs.server.port}/", f":{self.port}/")

    def close(self) -> None:
        self.proc.kill()


def seed(dbs, workdir: Path, n: int):
    from sqlmodel import select

    from engine.db import session
    from engine.rules_loader import load_pack
    from engine.state import InstanceRow
    from engine.sync import sync_instances
    from tests.support import add_notice, write_units_pack

    pack_dir = workdir / "rules"
    if not pack_dir.exists():
        write_units_pack(pack_dir, n)
    pack = load_pack(pack_dir, ROOT / "calendar")
    with session(dbs.seed_url) as s:
        sync_instances(s, pack, NOW)
        for inst in s.exec(select(InstanceRow)).all():
            add_notice(s, inst, "remind-3")
        s.commit()
    dbs.finish_seed()
    return pack


def smtp_cfg(port: int, concurrency: int):
    from notifications.config import SmtpConfig

    return SmtpConfig(host="127.0.0.1", port=port, security="none", concurrency=concurrency, from_addr=FROM,
                      helo="bench.local")


LINKS = False      # --links: every digest carries its "Báo đã gửi" link (a unit_links row per digest)


def links():
    """The application layer's link maker (as `dondoc notify` wires it) with a bench secret, or None."""
    if not LINKS:
        return None
    from engine.app.config import Settings, WebConfig
    from engine.app.confirmations import link_maker

    return link_maker(Settings(web=WebConfig(secret="bench-secret", public_url="https://dondoc.example")))


def full_pass(pack, url: str, port: int, concurrency: int, reuse: bool) -> tuple[float, int]:
    from engine.db import get_engine
    from notifications.config import DeliveryConfig
    from notifications.delivery import deliver

    eng = get_engine(url)                        # migrations checked outside the timed part
    t0, before = time.perf_counter(), cpu_now(PG_SERVER, _sink_pids())
    rep = deliver(eng, pack, NOW, smtp=smtp_cfg(port, concurrency), delivery=DeliveryConfig(),
                  reuse_connections=reuse, links=links())
    secs = time.perf_counter() - t0
    cpu = cpu_per_message(before, cpu_now(PG_SERVER, _sink_pids()), rep.sent, secs)
    eng.dispose()
    print(f"{'':10} (CPU per message: {cpu})", file=sys.stderr)
    return secs, rep.sent


SINK_PID: int | None = None          # the sink's process (set by main)
PG_SERVER = None                     # the PostgreSQL server being measured (set by main)


def cpu_now(server, sink_pids: list[int]) -> tuple[float, float, float, float]:
    """CPU seconds used so far by this process (the sender), the PostgreSQL server (None: none),
    the sink and every process of the machine."""
    return (time.process_time(), _cpu_of(_server_pids(server)) if server is not None else 0.0, _cpu_of(sink_pids),
            _machine_busy())


def cpu_per_message(before: tuple[float, ...], after: tuple[float, ...], sent: int, secs: float) -> str:
    """The sender's own CPU per message (the sink is another process): steadier than messages/s
    when other work shares the cores; the database server's and the sink's (what the machine gives
    them whatever the sender does); and every process's: what the cores had to give per message."""
    sender, db, sink, machine = (1000 * (b - a) / max(sent, 1) for a, b in zip(before, after))
    busy = 100 * (after[3] - before[3]) / secs / (os.cpu_count() or 1)
    return (f"sender {sender:.2f} ms, database server {db:.2f}, sink {sink:.2f}, the whole machine {machine:.2f}; "
            f"{busy:.0f} % of its cores")


def _sink_pids() -> list[int]:
    return [SINK_PID] if SINK_PID else []


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, …), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _cpu_of(pids: list[int]) -> float:
    """CPU seconds (user + system) these processes have used so far (Linux /proc; 0 elsewhere)."""
    return sum((int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK") for pid in pids if (f := _stat(pid)))


def _server_pids(server) -> list[int]:
    """The PostgreSQL server's processes: its postmaster and every process it started."""
    try:
        root = int((server.dir / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    return [root] + [int(name) for name in os.listdir("/proc")
                     if name.isdigit() and (f := _stat(name)) and f[1] == str(root)]


def _machine_busy() -> float:
    """CPU seconds every process of the machine has used so far (Linux /proc/stat; 0 elsewhere)."""
    try:
        with open("/proc/stat") as fh:
            user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fh.readline().split()[1:8])
    except (OSError, ValueError):
        return 0.0
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def transport_only(jobs, port: int, concurrency: int, reuse: bool) -> tuple[float, int]:
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
    t0 = time.perf_counter()
    asyncio.run(SmtpPool(smtp_cfg(port, concurrency), reuse=reuse).run(src))
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
                          sender=address("Hệ thống đôn đốc báo cáo", FROM),
                          to=[address(u.name, u.contacts[0])], reply_to=address(vp.name, vp.email), date=NOW)
        jobs.append(EmailJob(i, msg["Message-ID"], FROM, list(u.contacts), to_bytes(msg)))
    return jobs


@dataclass
class Row:
    db: str
    kind: str
    label: str
    rates: list[float]


def profile(pack, dbs, port: int, concurrency: int, top: int, out: Path) -> None:
    """One full pass under cProfile: the places with the most own time, then the most cumulative."""
    from engine.db import get_engine
    from notifications.config import DeliveryConfig
    from notifications.delivery import deliver

    url = dbs.copy("profile")
    eng = get_engine(url)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    rep = deliver(eng, pack, NOW, smtp=smtp_cfg(port, concurrency), delivery=DeliveryConfig(), links=links())
    prof.disable()
    secs = time.perf_counter() - t0
    eng.dispose()
    prof.dump_stats(out)
    print(f"{dbs.name}, {concurrency} connection(s): {rep.sent} sent in {secs:.2f} s under cProfile "
          f"({rep.sent / secs:.0f} msg/s with the profiler's overhead); statistics in {out}\n")
    for order in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(str(out), stream=buf).strip_dirs().sort_stats(order).print_stats(top)
        text = buf.getvalue()
        print(text[text.index("   ncalls"):] if "   ncalls" in text else text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="sqlite")
    ap.add_argument("--pg-fsync", choices=("on", "off"), default="on",
                    help="PostgreSQL durability: on = its defaults (each commit flushed); off = as in the tests")
    ap.add_argument("--rows", default="1,per-message,3,4", help="which rows: 1, per-message, 3, 4 (comma-separated)")
    ap.add_argument("--no-transport", action="store_true", help="full-pass rows only")
    ap.add_argument("--profile", type=int, metavar="CONNECTIONS", help="profile one full pass instead of the table")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--profile-out", type=Path, default=Path(tempfile.gettempdir()) / "bench_smtp.prof")
    ap.add_argument("--links", action="store_true", help='every digest with its "Báo đã gửi" link (web secret set)')
    ap.add_argument("--db-delay-ms", type=float, default=0.0,
                    help="PostgreSQL through a proxy adding this delay each way (a database on another host)")
    ap.add_argument("--commit-variants", action="store_true",
                    help="alternate each full pass with its commits blocking on the session (stop 27)")
    args = ap.parse_args()
    global LINKS
    LINKS = args.links
    rows_wanted = [ROWS[k.strip()] for k in args.rows.split(",") if k.strip()]

    parent, child = mp.Pipe()
    sink = mp.get_context("spawn").Process(target=_sink, args=(child,), daemon=True)
    sink.start()
    global SINK_PID, PG_SERVER
    SINK_PID = sink.pid
    port = parent.recv()
    rows: list[Row] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
        jobs = None
        for kind in kinds:
            dbs = SqliteDbs(work) if kind == "sqlite" else PgDbs(durable=args.pg_fsync == "on")
            try:
                from notifications import delivery

                t0 = time.perf_counter()
                pack = seed(dbs, work, args.n)
                print(f"{dbs.name}: seeded {args.n} units/notices in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
                if isinstance(dbs, PgDbs):
                    notes.append(f"PostgreSQL on loopback: {dbs.settings()}")
                    PG_SERVER = dbs.server
                if args.profile:
                    profile(pack, dbs, port, args.profile, args.top, args.profile_out)
                    continue
                delayed = DelayedPg(dbs, args.db_delay_ms) if isinstance(dbs, PgDbs) and args.db_delay_ms else None
                name = dbs.name + (f", {args.db_delay_ms:g} ms away" if delayed else "")
                old_way = "blocking commits"
                variants = (["awaited commits", old_way] if args.commit_variants else [None])
                for label, conc, reuse in rows_wanted:
                    rates: dict = {v: [] for v in variants}
                    for run in range(args.runs):
                        for variant in (variants if run % 2 == 0 else variants[::-1]):
                            url = dbs.copy(f"{conc}-{reuse}-{run}-{variants.index(variant)}")
                            delivery.AWAIT_COMMITS = variant != old_way
                            secs, sent = full_pass(pack, delayed.url(url) if delayed else url, port, conc, reuse)
                            assert sent == args.n, (label, sent)
                            rates[variant].append(sent / secs)
                            print(f"{name:10} full pass      {label:24} run {run + 1}{f' ({variant})' if variant else ''}: "
                                  f"{sent / secs:7.0f} msg/s ({secs:.2f} s)", file=sys.stderr)
                    for variant in variants:
                        rows.append(Row(name, "full pass" + (f" ({variant})" if variant else ""), label, rates[variant]))
                    if args.commit_variants:
                        ratios = [a / b for a, b in zip(*rates.values())]
                        notes.append(f"{name}, {label}: awaited ÷ blocking commits, per run: "
                                     + ", ".join(f"{r:.2f}" for r in ratios) + f" (median {statistics.median(ratios):.2f})")
                delivery.AWAIT_COMMITS = True
                if delayed:
                    delayed.close()
            finally:
                dbs.close()
        if not args.profile and not args.no_transport:
            jobs = build_jobs(pack, args.n)
            for label, conc, reuse in rows_wanted:
                rates = []
                for run in range(args.runs):
                    secs, sent = transport_only(jobs, port, conc, reuse)
                    assert sent == args.n, (label, sent)
                    rates.append(sent / secs)
                    print(f"{'-':10} transport only {label:24} run {run + 1}: {sent / secs:7.0f} msg/s ({secs:.2f} s)",
                          file=sys.stderr)
                rows.append(Row("–", "transport only", label, rates))
        parent.send("count")
        total = parent.recv()
        parent.send("stop")
        parent.recv()
    if args.profile:
        return
    size = statistics.mean(len(j.data) for j in jobs) if jobs else None
    load = os.getloadavg()
    print(f"\n{args.n:,} digests{f' (mean {size / 1024:.1f} KiB each)' if size else ''} to a local aiosmtpd sink in "
          f"another process; median of {args.runs} runs; {platform.machine()}, {mp.cpu_count()} cores, "
          f"Python {platform.python_version()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end. "
          f"Sink received {total:,} messages.")
    for n in notes:
        print(n)
    print("\n| database | what is timed | SMTP connections | messages/s (median) | min – max |")
    print("|---|---|---|---:|---:|")
    for r in rows:
        print(f"| {r.db} | {r.kind} | {r.label} | {statistics.median(r.rates):,.0f} | "
              f"{min(r.rates):,.0f} – {max(r.rates):,.0f} |")


if __name__ == "__main__":
    main()
