"""Soak: the real daemon (`dondoc run`) through one simulated year on a fast clock.

The seed packs (rules/) are copied to a temporary directory with an extra file of N synthetic
units (default 1,000, `soak0001` …, each with an e-mail address and the supervisor
`ubnd-tinh`) placed in the group `bao-cao-khhd57`, so they owe every report of the Kế hoạch hành
động (monthly, quarterly, 6-monthly, yearly to Văn phòng Tỉnh ủy). Nobody submits anything: every
instance runs through all its stages (reminders, due day, overdue, repeats, escalations).
Mail goes to a local aiosmtpd sink (a separate process) that counts messages, Message-IDs and
recipients. The daemon's resident memory (VmRSS, VmHWM from /proc/PID/status) and CPU time
(utime + stime from /proc/PID/stat) are sampled at start, every simulated month and at the end.

    .venv/bin/python benchmarks/bench_daemon_soak.py [--units 1000] [--rate 72000]
        [--from 2026-01-01] [--to 2027-01-01] [--deliver-every 30] [--db URL]

At ×72,000 a simulated day lasts 1.2 s, less than the CPU the daemon needs for 24 hourly
evaluations and ~20 delivery passes (with 1,073 units ~0.05 s per evaluation), so the daemon runs
saturated: runs coalesce (APScheduler), evaluation happens a few times a day instead of 25, and a
busy day's digests may go out on a later working day, together with later notices. The message
count is therefore lower than the same year in real time would give; the table reports how many
days saw an evaluation and a sending pass. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.clock import TZ  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_MIB = 1 / 1024


# ---------------------------------------------------------------------------------------------
# SMTP sink (own process: its CPU is not the daemon's, and it never slows the benchmark loop)

def _sink(conn) -> None:
    from aiosmtpd.controller import Controller

    mid_re = re.compile(rb"^Message-ID:\s*(\S+)", re.I | re.M)

    class Handler:
        def __init__(self) -> None:
            self.count = 0
            self.ids: dict[bytes, int] = {}
            self.rcpts: dict[str, int] = {}
            self.admin = 0

        async def handle_DATA(self, server, session, envelope):
            self.count += 1
            if isinstance(envelope.content, str):
                envelope.content = envelope.content.encode("utf-8", "surrogateescape")
            m = mid_re.search(envelope.content)
            mid = m.group(1) if m else b"?"
            self.ids[mid] = self.ids.get(mid, 0) + 1
            for r in envelope.rcpt_tos:
                self.rcpts[r] = self.rcpts.get(r, 0) + 1
            return "250 2.0.0 OK"

    class Ctl(Controller):
        def _trigger_server(self):
            if not self.port:
                self.port = self.server.sockets[0].getsockname()[1]
            super()._trigger_server()

    h = Handler()
    ctl = Ctl(h, hostname="127.0.0.1", port=0, data_size_limit=0)
    ctl.start()
    conn.send(ctl.port)
    while True:
        cmd = conn.recv()
        if cmd == "count":
            conn.send(h.count)
        elif cmd == "stats":
            dup = sum(1 for v in h.ids.values() if v > 1)
            soak = sum(v for k, v in h.rcpts.items() if k.startswith("soak"))
            conn.send({"messages": h.count, "message_ids": len(h.ids), "duplicate_ids": dup,
                       "recipients": len(h.rcpts), "to_synthetic": soak, "to_seed_units": h.count - soak})
        elif cmd == "stop":
            ctl.stop()
            conn.send("ok")
            return


# ---------------------------------------------------------------------------------------------
# the pack

def soak_pack(target: Path, n_units: int) -> Path:
    shutil.copytree(ROOT / "rules", target)
    lines = ["# Đơn vị giả lập cho bài đo soak (benchmarks/bench_daemon_soak.py).", "units:"]
    for i in range(1, n_units + 1):
        lines += [f"  - id: soak{i:04d}", f"    name: \"Đơn vị giả lập số {i}\"", "    kind: so",
                  f"    contacts: [soak{i:04d}@soak.example.org]", "    supervisor: ubnd-tinh"]
    lines += ["groups:", "  - id: soak-don-vi", "    name: \"Các đơn vị giả lập\"",
              "    members: [" + ", ".join(f"soak{i:04d}" for i in range(1, n_units + 1)) + "]"]
    (target / "units-soak.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    units = target / "units.yaml"
    text = units.read_text(encoding="utf-8")
    old = "members: [cap-uy-truc-thuoc, ban-dang, so-ban-nganh, mat-tran-doan-the]"
    if old not in text:
        raise SystemExit("rules/units.yaml: group bao-cao-khhd57 changed; update soak_pack()")
    units.write_text(text.replace(old, old[:-1] + ", soak-don-vi]"), encoding="utf-8")
    return target


# ---------------------------------------------------------------------------------------------
# /proc

def proc_mem(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    rss = hwm = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm


def proc_cpu(pid: int) -> float:
    """utime + stime of the process, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# ---------------------------------------------------------------------------------------------

class LogReader(threading.Thread):
    def __init__(self, stream, keep: Path) -> None:
        super().__init__(daemon=True)
        self.stream, self.keep = stream, keep
        self.sim_now: datetime | None = None
        self.events: dict[str, int] = {}
        self.errors: list[str] = []
        self.warnings: dict[str, int] = {}
        self.delivered = 0
        self.eval_days: set = set()
        self.send_days: set = set()

    def run(self) -> None:
        with open(self.keep, "w", encoding="utf-8") as out:
            for line in self.stream:
                out.write(line)
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                ev = rec.get("event")
                if ev:
                    self.events[ev] = self.events.get(ev, 0) + 1
                if rec.get("sim_now"):
                    self.sim_now = datetime.fromisoformat(rec["sim_now"])
                if ev == "delivered":
                    self.delivered += int(rec.get("sent") or 0)
                    self.send_days.add(self.sim_now.date())
                elif ev == "evaluated":
                    self.eval_days.add(self.sim_now.date())
                if rec.get("level") in ("ERROR", "CRITICAL"):
                    self.errors.append(line.strip()[:300])
                elif rec.get("level") == "WARNING":        # e.g. "delivery N to X: <reason>"
                    reason = re.sub(r"delivery \d+ to \S+ ", "delivery … ", str(rec.get("msg")))[:200]
                    self.warnings[reason] = self.warnings.get(reason, 0) + 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=72000.0, help="simulated seconds per real second")
    ap.add_argument("--from", dest="start", default="2026-01-01")
    ap.add_argument("--to", dest="end", default="2027-01-01")
    ap.add_argument("--deliver-every", type=int, default=30, help="simulated minutes between delivery passes")
    ap.add_argument("--db", default=None, help="SQLAlchemy URL (default: a SQLite file in the temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    start = datetime.fromisoformat(args.start).replace(tzinfo=TZ)
    end = datetime.fromisoformat(args.end).replace(tzinfo=TZ)
    tmp = Path(tempfile.mkdtemp(prefix="dondoc-soak-"))
    rules = soak_pack(tmp / "rules", args.units)
    check = subprocess.run([str(ROOT / ".venv/bin/dondoc"), "rules", "check", str(rules), "--json"],
                           capture_output=True, text=True, cwd=tmp)
    if check.returncode != 0:
        raise SystemExit("soak pack invalid:\n" + check.stdout + check.stderr)
    summary = json.loads(check.stdout)
    db = args.db or f"sqlite:///{tmp / 'state.db'}"

    parent, child = mp.Pipe()
    sink = mp.get_context("spawn").Process(target=_sink, args=(child,), daemon=True)
    sink.start()
    port = parent.recv()

    env = {k: v for k, v in os.environ.items() if not k.startswith("DONDOC_")}
    env.update({"DONDOC_SMTP_HOST": "127.0.0.1", "DONDOC_SMTP_PORT": str(port), "DONDOC_SMTP_SECURITY": "none",
                "DONDOC_SMTP_FROM": "dondoc@vptu.example.org", "DONDOC_SMTP_HELO": "soak.local",
                "DONDOC_SMTP_CONCURRENCY": "3", "DONDOC_DELIVER_EVERY_MINUTES": str(args.deliver_every),
                "PYTHONPATH": str(ROOT)})
    exe = ROOT / ".venv/bin/dondoc"
    cmd = [str(exe), "run", "--sim-start", start.strftime("%Y-%m-%dT%H:%M"), "--sim-rate", str(args.rate),
           "--rules", str(rules), "--calendar", str(ROOT / "calendar"), "--db", db, "--log-format", "json"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            encoding="utf-8", errors="replace")
    reader = LogReader(proc.stderr, tmp / "daemon.log")
    reader.start()
    while reader.events.get("active", 0) == 0:
        if proc.poll() is not None:
            raise SystemExit(f"daemon exited early ({proc.returncode}); see {tmp / 'daemon.log'}")
        time.sleep(0.05)
    t_active = time.monotonic() - t0

    samples: list[tuple[str, float, float, float, int]] = []

    def sample(label: str) -> None:
        rss, _ = proc_mem(proc.pid)
        parent.send("count")
        samples.append((label, time.monotonic() - t0, rss, proc_cpu(proc.pid), parent.recv()))

    sample(f"start ({start:%d/%m/%Y})")
    next_month = 2 if start.month == 12 else start.month + 1
    mark = min(end, start.replace(year=start.year + (start.month == 12), month=next_month, day=1, hour=0, minute=0))
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"daemon exited ({proc.returncode}) at {reader.sim_now}; see {tmp / 'daemon.log'}")
        now = reader.sim_now
        if now is not None and now >= mark:
            if mark >= end:
                break
            sample(f"{mark:%d/%m/%Y}")
            mark = min(end, mark.replace(year=mark.year + (mark.month == 12), month=1 if mark.month == 12 else mark.month + 1))
        time.sleep(0.05)
    sample(f"end ({reader.sim_now:%d/%m/%Y %H:%M})")
    _, hwm = proc_mem(proc.pid)
    wall = time.monotonic() - t0
    cpu_end = proc_cpu(proc.pid)
    t_stop = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=60)
    stop_s = time.monotonic() - t_stop
    reader.join(timeout=10)
    time.sleep(0.5)
    parent.send("stats")
    stats = parent.recv()
    parent.send("stop")
    parent.recv()

    from sqlalchemy import text as sql

    from engine.db import make_engine

    eng = make_engine(db)
    with eng.connect() as c:
        n_inst = c.execute(sql("SELECT count(*) FROM instances")).scalar()
        n_notices = c.execute(sql("SELECT count(*) FROM notices")).scalar()
        by_status = dict(c.execute(sql("SELECT status, count(*) FROM deliveries GROUP BY status")).all())
    eng.dispose()
    from engine.rules_loader import load_pack

    cal = load_pack(rules, ROOT / "calendar").calendar
    n_working = sum(1 for i in range((end - start).days)
                    if cal.is_working_day((start + timedelta(days=i)).date()))
    db_size = sum(p.stat().st_size for p in tmp.glob("state.db*")) / 2**20 if args.db is None else None

    rss0, rss1 = samples[0][2], samples[-1][2]
    print()
    print(f"## dondoc daemon soak: {start:%d/%m/%Y} → {end:%d/%m/%Y} (simulated), "
          f"{summary['units']} units ({args.units} synthetic), {summary['obligations']} obligations")
    print()
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"clock ×{args.rate:g} (1 simulated day = {86400 / args.rate:.2f} s), delivery pass every "
          f"{args.deliver_every} simulated min, SMTP concurrency 3, database {db.split(':')[0]}.")
    print()
    print("| metric | value |")
    print("|---|---|")
    rows = [
        ("wall time (start → simulated end)", f"{wall:.0f} s (daemon active after {t_active:.1f} s)"),
        ("daemon CPU time (utime + stime)", f"{cpu_end:.0f} s ({100 * cpu_end / wall:.0f} % of one core)"),
        ("VmRSS at start / at end", f"{rss0:.0f} MiB / {rss1:.0f} MiB ({rss1 - rss0:+.0f} MiB)"),
        ("VmHWM (peak RSS)", f"{hwm:.0f} MiB"),
        ("messages received by the sink", f"{stats['messages']:,} ({stats['to_synthetic']:,} to synthetic units, "
                                           f"{stats['to_seed_units']:,} to seed units)"),
        ("distinct Message-IDs / duplicates", f"{stats['message_ids']:,} / {stats['duplicate_ids']}"),
        ("distinct recipients", f"{stats['recipients']:,}"),
        ("messages reported sent by the daemon", f"{reader.delivered:,}"),
        ("instances / notices in the database", f"{n_inst:,} / {n_notices:,}"),
        ("digests by status", ", ".join(f"{k} {v:,}" for k, v in sorted(by_status.items()))),
        ("evaluation passes (scheduled: 07:00 Mon–Sat + hourly)", f"{reader.events.get('evaluated', 0):,}, on "
         f"{len({d for d in reader.eval_days if start.date() <= d < end.date()})} of {(end - start).days} days"),
        ("working days on which mail went out", f"{len(reader.send_days)} of {n_working}"),
        ("SIGTERM → exit", f"exit {rc} after {stop_s:.1f} s"),
        ("errors / warnings logged", f"{len(reader.errors)} / {sum(reader.warnings.values())}"),
    ]
    if db_size is not None:
        rows.append(("state.db size (with WAL)", f"{db_size:.0f} MiB"))
    for k, v in rows:
        print(f"| {k} | {v} |")
    print()
    print("| simulated date | wall s | VmRSS MiB | CPU s | messages |")
    print("|---|---:|---:|---:|---:|")
    for label, t, rss, cpu, n in samples:
        print(f"| {label} | {t:.0f} | {rss:.0f} | {cpu:.0f} | {n:,} |")
    if reader.errors:
        print("\nErrors:\n" + "\n".join(reader.errors[:10]))
    if reader.warnings:
        print("\nWarnings (distinct):\n" + "\n".join(f"{n} × {w}" for w, n in
                                                    sorted(reader.warnings.items(), key=lambda x: -x[1])[:10]))
    if args.keep:
        print(f"\nKept: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
