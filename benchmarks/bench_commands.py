"""How long everyday commands take, start to exit, as a person at a terminal waits for them (issue 15).

    .venv/bin/python benchmarks/bench_commands.py [--runs 5]

Each command runs as its own process (`.venv/bin/dondoc …`) on the seed pack, with a state database
prepared once (synced for 2026) in a temporary folder; the first run of each is a warm-up (the
operating system's file cache), then the median of ``--runs``. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DONDOC = Path(sys.executable).with_name("dondoc")
TARGETS = {"--help": 0.3, "status": 0.8}

COMMANDS = [
    ("--help", ["--help"]),
    ("rules check", ["rules", "check", "rules/"]),
    ("status", ["status", "--as-of", "2026-12-02"]),
    ("deadlines (one unit, two months)", ["deadlines", "--from", "2026-11-01", "--to", "2026-12-31", "--unit",
                                          "so-tai-chinh"]),
    ("backlog", ["backlog"]),
    ("inbox list", ["inbox", "list"]),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-commands-"))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DONDOC_")},
           "DONDOC_DATABASE_URL": f"sqlite:///{tmp / 'state.db'}", "DONDOC_NOW": "2026-12-02T09:00",
           "DONDOC_TRACKING_START": "2026-01-01", "DONDOC_MAIL_DIR": str(tmp / "mail")}
    subprocess.run([str(DONDOC), "sync"], cwd=ROOT, env=env, check=True, capture_output=True)
    rows = []
    for name, argv in COMMANDS:
        times = []
        for i in range(args.runs + 1):
            t = time.perf_counter()
            r = subprocess.run([str(DONDOC), *argv], cwd=ROOT, env=env, capture_output=True)
            took = time.perf_counter() - t
            assert r.returncode == 0, (name, r.stdout[-500:], r.stderr[-500:])
            if i:
                times.append(took)
        rows.append((name, statistics.median(times), min(times), max(times)))
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.1f}; median of {args.runs} runs after one warm-up\n")
    print("| command | median | min | max | target |")
    print("|---|---:|---:|---:|---:|")
    for name, med, lo, hi in rows:
        target = TARGETS.get(name)
        print(f"| `dondoc {' '.join(dict(COMMANDS)[name])}` | {med:.2f} s | {lo:.2f} | {hi:.2f} | "
              f"{f'{target} s' if target else '–'} |")


if __name__ == "__main__":
    main()
