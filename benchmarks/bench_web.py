"""Benchmark: the web console with 1,000 units and a year of instances, served by the real
`dondoc web` (uvicorn) on loopback to 1 and to 20 concurrent clients.

Run: .venv/bin/python benchmarks/bench_web.py [--units 1000] [--clients 20] [--requests 10] [--runs 3]
                                              [--bursts 5] [--profile PAGE] [--keep DIR] [--baseline SRC]
                                              [--build NAME=SRC ...]

Data: the seed rules plus --units synthetic units (the soak benchmark's pack: every synthetic unit
reports under the Kế hoạch hành động group), tracked from 01/01/2026, "now" 02/12/2026 09:00; a year
of instances synced into a SQLite state.db; submissions imported from a generated CSV (about 75 % of
what is due on time, 15 % late, 10 % missing; a third of what is not yet due sent early); one
account (thu-ky). The server runs in its own process (`dondoc web --port P --now 2026-12-02T09:00`);
each client logs in with its own session (as 20 secretaries would), through httpx.

Load, for each page (latency from sending the request to the last byte of the body):
- "1 client": --single sequential requests;
- "N clients": N clients (one keep-alive connection each, asyncio + httpx) request the page back
  to back with no think time, --requests times each after one warm-up request;
- "N clients after a write": --bursts times, this process commits a write to the database (an
  instance's updated_at, which no page shows: a new data version all the same, as a recorded
  submission gives) and then the N clients ask for the page once each, all at once — the first load after a change,
  when the console's page cache (engine/app/pagecache.py) is empty and one request computes.
Figures are medians over --runs runs. The client process shares the 2 cores with the server, so the
N-client figures include the cost of generating the load.

--baseline SRC: also start a console from another source tree (e.g. a copy of the code before a
change: `dondoc web` with PYTHONPATH=SRC) on the same data, and measure both in the same runs,
alternating, so the before/after figures share the machine's load ("before" and "after" in the
table). --build NAME=SRC (repeatable) adds more such consoles under their own names.
--url URL: measure a console already serving the --keep data instead of starting one.
--profile PAGE: also profile PAGE (a path, e.g. /) in-process (cProfile, starlette TestClient on
the same data, a write before each request so the page is computed rather than taken from the
page cache) and print the top places by own time and by cumulative time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import platform
import pstats
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import httpx  # noqa: E402

NOW_TEXT = "2026-12-02T09:00"
PASSWORD = "mat-khau-bench-web-1"
USER = "thu.ky"
CSRF_RE = re.compile(r'name="csrf" value="([^"]*)"')
QUARTERLY = "khhd57-quy"      # a report every synthetic unit owes (the matrix for one report)
ADDR_RE = re.compile(r"(http://127\.0\.0\.1:\d+)")


# ─── data ────────────────────────────────────────────────────────────────────────────────────────
def environ_for(work: Path, pack_dir: Path) -> dict[str, str]:
    return {"DONDOC_DATABASE_URL": f"sqlite:///{work / 'state.db'}", "DONDOC_RULES_DIR": str(pack_dir),
            "DONDOC_CALENDAR_DIR": str(ROOT / "calendar"), "DONDOC_TRACKING_START": "2026-01-01",
            "DONDOC_MAIL_DIR": str(work / "mail-out"), "DONDOC_WEB_UPLOAD_DIR": str(work / "attachments"),
            "DONDOC_WEB_SECRET": "bi-mat-bench-web-" + "x" * 24, "DONDOC_LOG_LEVEL": "WARNING"}


def prepare(work: Path, n_units: int, seed: int = 57) -> tuple[dict[str, str], dict[str, float | int]]:
    """The pack, the synced database, the imported submissions and the account; returns the
    environment for the server and a few counts."""
    from sqlmodel import select

    from bench_daemon_soak import soak_pack
    from engine import clock
    from engine.app import accounts, services
    from engine.app.config import load_settings
    from engine.state import InstanceRow

    pack_dir = soak_pack(work / "rules", n_units)
    env = environ_for(work, pack_dir)
    settings = load_settings(env, file=None)
    now = clock.parse_moment(NOW_TEXT)
    today = now.date()
    facts: dict[str, float | int] = {}
    t0 = time.perf_counter()
    pack = services.load_rules(settings)
    services.sync(settings, pack, now)
    facts["sync_s"] = time.perf_counter() - t0
    with services.open_session(settings) as ses:
        inst = ses.exec(select(InstanceRow.obligation, InstanceRow.unit, InstanceRow.period, InstanceRow.period_start,
                               InstanceRow.due).where(InstanceRow.active == True)  # noqa: E712
                        .order_by(InstanceRow.id)).all()
    facts["instances"] = len(inst)
    rnd = random.Random(seed)
    csv = work / "nop.csv"
    n_sub = n_late = 0
    with csv.open("w", encoding="utf-8") as f:
        f.write("obligation,unit,period,date,ref,note\n")
        for i, (ob, unit, period, start, due) in enumerate(inst):
            x = rnd.random()
            if due <= today:
                if x < 0.75:
                    day = max(start, due - timedelta(days=rnd.randint(0, 6)))
                elif x < 0.90 and due + timedelta(days=1) <= today:
                    day = min(today, due + timedelta(days=rnd.randint(1, 25)))
                    n_late += 1
                else:
                    continue
            elif start <= today and x < 0.33:
                day = max(start, today - timedelta(days=rnd.randint(0, 3)))
            else:
                continue
            f.write(f"{ob},{unit},{period},{day:%d/%m/%Y},{i}/BC-BENCH,\n")
            n_sub += 1
    facts["submissions"], facts["late"] = n_sub, n_late
    t0 = time.perf_counter()
    services.import_submissions(settings, pack, csv, now, actor="bench")
    facts["import_s"] = time.perf_counter() - t0
    accounts.add_user(settings, USER, PASSWORD, "thu-ky", now, full_name="Thư ký Bench")
    facts["units"] = len(pack.units)
    return env, facts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(work: Path, env: dict[str, str], src: Path | None = None) -> tuple[subprocess.Popen, str]:
    """`dondoc web` in its own process (from the source tree ``src`` if given); waits for the
    address it prints."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("DONDOC_")} | env
    if src is not None:
        full["PYTHONPATH"] = str(src.resolve())      # before the editable install's path
    exe = ROOT / ".venv" / "bin" / "dondoc"
    proc = subprocess.Popen([str(exe), "web", "--port", str(free_port()), "--now", NOW_TEXT], cwd=work, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"dondoc web exited ({proc.wait()}) before printing its address")
        m = ADDR_RE.search(line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise SystemExit("dondoc web printed no address within 120 s")


def login(base: str) -> dict[str, str]:
    """Log in like a browser: the login form's CSRF token, then the session cookie."""
    with httpx.Client(base_url=base, follow_redirects=False, timeout=30) as cl:
        page = cl.get("/dang-nhap")
        token = CSRF_RE.search(page.text).group(1)
        r = cl.post("/dang-nhap", data={"csrf": token, "username": USER, "password": PASSWORD, "next": "/"})
        if r.status_code != 303:
            raise SystemExit(f"login failed: {r.status_code}")
        return dict(cl.cookies)


# ─── load ────────────────────────────────────────────────────────────────────────────────────────
async def _timed_get(cl: httpx.AsyncClient, path: str, out: list[float], errors: list[int]) -> None:
    t0 = time.perf_counter()
    r = await cl.get(path)
    out.append(time.perf_counter() - t0)
    if r.status_code != 200:                                     # counted and shown, not hidden
        errors.append(r.status_code)


async def _clients(base: str, sessions: list[dict[str, str]], path: str, clients: int) -> list[httpx.AsyncClient]:
    """One keep-alive connection per client, each opened by a warm-up request (not measured)."""
    cls = [httpx.AsyncClient(base_url=base, cookies=sessions[i % len(sessions)], timeout=120, follow_redirects=False)
           for i in range(clients)]
    await asyncio.gather(*(cl.get(path) for cl in cls))
    return cls


async def _load(base: str, sessions: list[dict[str, str]], path: str, clients: int, n: int
                ) -> tuple[list[float], float, list[int]]:
    """Every client requests ``path`` n times back to back, all clients at once."""
    out: list[float] = []
    errors: list[int] = []
    cls = await _clients(base, sessions, path, clients)
    try:
        async def one(cl: httpx.AsyncClient) -> None:
            for _ in range(n):
                await _timed_get(cl, path, out, errors)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(cl) for cl in cls))
        wall = time.perf_counter() - t0
    finally:
        await asyncio.gather(*(cl.aclose() for cl in cls))
    return out, clients * n / wall, errors


async def _bursts(base: str, sessions: list[dict[str, str]], path: str, clients: int, bursts: int, work: Path
                  ) -> tuple[list[float], float, list[int]]:
    """``bursts`` times: a committed write, then every client asks for ``path`` once, all at once."""
    out: list[float] = []
    errors: list[int] = []
    cls = await _clients(base, sessions, path, clients)
    wall = 0.0
    try:
        for _ in range(bursts):
            touch_database(work)
            t0 = time.perf_counter()
            await asyncio.gather(*(_timed_get(cl, path, out, errors) for cl in cls))
            wall += time.perf_counter() - t0
    finally:
        await asyncio.gather(*(cl.aclose() for cl in cls))
    return out, len(out) / wall, errors


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def _summary(lat: list[float], rps: float, errors: list[int], what: str) -> dict[str, float]:
    if errors:
        print(f"({what}: {len(errors)} responses not 200: {sorted(set(errors))})", file=sys.stderr)
    return {"p50": pct(lat, 50) * 1000, "p95": pct(lat, 95) * 1000, "max": max(lat) * 1000, "rps": rps,
            "errors": len(errors), "n": len(lat)}


def measure(base: str, sessions: list[dict[str, str]], path: str, clients: int, n: int) -> dict[str, float]:
    lat, rps, errors = asyncio.run(_load(base, sessions, path, clients, n))
    return _summary(lat, rps, errors, f"{path}, {clients} clients")


def touch_database(work: Path) -> None:
    """A committed write no page shows (an instance's updated_at): the database's version moves on
    as when a submission is recorded, so a console's page cache must compute the page again. (An
    UPDATE that changes no value would not do: SQLite then commits no change.)"""
    import sqlite3

    with sqlite3.connect(work / "state.db", timeout=30) as raw:
        raw.execute("UPDATE instances SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now') "
                    "WHERE id = (SELECT min(id) FROM instances)")
    raw.close()


def measure_after_writes(base: str, sessions: list[dict[str, str]], path: str, clients: int, bursts: int,
                         work: Path) -> dict[str, float]:
    lat, rps, errors = asyncio.run(_bursts(base, sessions, path, clients, bursts, work))
    return _summary(lat, rps, errors, f"{path}, {clients} clients after a write")


def page_size(base: str, cookies: dict[str, str], path: str) -> tuple[int, int]:
    r = httpx.get(base + path, cookies=cookies, timeout=120)
    return r.status_code, len(r.content)


# ─── profile ─────────────────────────────────────────────────────────────────────────────────────
def profile(env: dict[str, str], work: Path, path: str, n: int = 20, top: int = 25) -> str:
    """cProfile of n requests of one page, in-process through Starlette's TestClient, each after a
    write (so the page is computed, not served from the page cache: the cost a cache miss pays)."""
    from starlette.testclient import TestClient

    from engine import clock
    from engine.app.config import load_settings
    from engine.app.web import server
    from engine.simclock import Clock

    settings = load_settings(env, file=None)
    app = server.make_app(settings, Clock(clock.parse_moment(NOW_TEXT)))
    app.state.ctx.pack()
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as cl:
        page = cl.get("/dang-nhap")
        token = CSRF_RE.search(page.text).group(1)
        cl.post("/dang-nhap", data={"csrf": token, "username": USER, "password": PASSWORD, "next": "/"})
        for _ in range(3):
            assert cl.get(path).status_code == 200
        prof = cProfile.Profile()
        spent = 0.0
        for _ in range(n):
            touch_database(work)
            t0 = time.perf_counter()
            prof.enable()
            cl.get(path)
            prof.disable()
            spent += time.perf_counter() - t0
        per = spent / n * 1000
    buf = io.StringIO()
    st = pstats.Stats(prof, stream=buf)
    st.strip_dirs()
    buf.write(f"\n{path}: {per:.1f} ms per request in-process under cProfile ({n} requests)\n")
    buf.write("\n== by own time ==\n")
    st.sort_stats("tottime").print_stats(top)
    buf.write("\n== by cumulative time ==\n")
    st.sort_stats("cumulative").print_stats(top)
    return buf.getvalue()


# ─── main ────────────────────────────────────────────────────────────────────────────────────────
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--units", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=10, help="requests per client per page (after one warm-up)")
    ap.add_argument("--single", type=int, default=20, help="sequential requests for the 1-client figures")
    ap.add_argument("--bursts", type=int, default=5, help="write-then-load bursts per page per run (0: none)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pages", nargs="*", default=None, help="paths to measure (default: overview, matrix, unit)")
    ap.add_argument("--profile", default=None, metavar="PATH", help="also profile this page in-process")
    ap.add_argument("--url", default=None,
                    help="measure a console already running on this data (e.g. a patched build) instead of starting one")
    ap.add_argument("--baseline", type=Path, default=None, metavar="SRC",
                    help="also measure a console started from this source tree (the code before a change)")
    ap.add_argument("--build", action="append", default=[], metavar="NAME=SRC",
                    help="also measure a console started from source tree SRC, named NAME in the table")
    ap.add_argument("--keep", type=Path, default=None,
                    help="build the data in this folder and keep it (reused when run again with the same --units)")
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-web-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    saved = work / "facts.json"
    if args.keep and saved.is_file() and json.loads(saved.read_text())["requested_units"] == args.units:
        facts = json.loads(saved.read_text())            # --keep DIR again: reuse the data built last time
        env = environ_for(work, work / "rules")
    else:
        env, facts = prepare(work, args.units)
        saved.write_text(json.dumps(facts | {"requested_units": args.units}))
    print(f"(prepared in {time.perf_counter() - t0:.0f} s: {facts['units']:,} units, {facts['instances']:,} instances "
          f"[sync {facts['sync_s']:.0f} s], {facts['submissions']:,} submissions of which {facts['late']:,} late "
          f"[import {facts['import_s']:.0f} s]; data in {work})", file=sys.stderr)

    from engine.app.config import load_settings
    from engine.app.services import load_rules

    pack = load_rules(load_settings(env, file=None))
    synthetic = sorted(u for u in pack.units if u.startswith("soak"))
    unit = synthetic[len(synthetic) // 2]
    pages = args.pages or ["/", "/ma-tran", f"/ma-tran?bao-cao={QUARTERLY}", f"/don-vi/{unit}", "/don-vi"]

    load_before = os.getloadavg()[0]
    procs: list[subprocess.Popen] = []
    builds: list[tuple[str, str]] = []                   # (name, address)
    try:
        if args.baseline is not None:
            proc, base = start_server(work, env, args.baseline)
            procs.append(proc)
            builds.append(("before", base))
        if args.url:
            builds.append(("after", args.url.rstrip("/")))
        else:
            proc, base = start_server(work, env)
            procs.append(proc)
            builds.append(("after", base))
        for spec in args.build:
            name, src = spec.split("=", 1)
            proc, base = start_server(work, env, Path(src))
            procs.append(proc)
            builds.append((name, base))
        sessions = {name: [login(base) for _ in range(args.clients)] for name, base in builds}
        sizes: dict[tuple[str, str], int] = {}
        for name, base in builds:
            for p in pages:
                code, size = page_size(base, sessions[name][0], p)
                print(f"({name} {p}: HTTP {code}, {size / 1024:.0f} KiB)", file=sys.stderr)
                if code == 200:
                    sizes[(name, p)] = size
        modes = [("1", 1), ("N", args.clients)] + ([("N after a write", args.clients)] if args.bursts else [])
        results: dict[tuple[str, str, str], list[dict[str, float]]] = {}
        for r in range(args.runs):
            for p in pages:
                for name, base in builds:                # alternating: the builds share the machine's load
                    if (name, p) not in sizes:
                        continue
                    ss = sessions[name]
                    results.setdefault((name, p, "1"), []).append(measure(base, ss[:1], p, 1, args.single))
                    results.setdefault((name, p, "N"), []).append(measure(base, ss, p, args.clients, args.requests))
                    if args.bursts:
                        results.setdefault((name, p, "N after a write"), []).append(
                            measure_after_writes(base, ss, p, args.clients, args.bursts, work))
            print(f"(run {r + 1}/{args.runs} done)", file=sys.stderr)
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    print(f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{facts['units']:,} units, {facts['instances']:,} instances, {facts['submissions']:,} submissions; "
          f"median of {args.runs} runs; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
          "(other work on the machine inflates every figure)")
    print("| build | page | KiB | clients | requests | p50 (ms) | p95 (ms) | max (ms) | requests/s | not 200 |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for p in pages:
        for name, _ in builds:
            if (name, p) not in sizes:
                continue
            for mode, c in modes:
                rs = results[(name, p, mode)]
                med = {k: statistics.median(x[k] for x in rs) for k in ("p50", "p95", "max", "rps")}
                label = "1" if mode == "1" else f"{c}" + (" after a write" if "write" in mode else "")
                print(f"| {name} | `{p}` | {sizes[(name, p)] / 1024:.0f} | {label} | {int(rs[0]['n'])} | "
                      f"{med['p50']:.0f} | {med['p95']:.0f} | {med['max']:.0f} | {med['rps']:.1f} | "
                      f"{sum(x['errors'] for x in rs)} |")
    if args.profile:
        print(profile(env, work, args.profile))


if __name__ == "__main__":
    main()
