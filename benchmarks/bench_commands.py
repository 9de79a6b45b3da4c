"""How long everyday commands take, start to exit, as a person at a terminal waits for them (issue 15).

    .venv/bin/python benchmarks/bench_commands.py [--runs 5] [--before DIR] [--only NAME ...]

Each command runs as its own process (this interpreter, ``from engine.app.cli import main``, in the
checkout's folder) on the seed pack, with a state database prepared once (synced for 2026, tracking
from 01/01/2026, "now" 02/12/2026 09:00) in a temporary folder; the first run of each is a warm-up
(the operating system's file cache, the pack cache, the bytecode), then the median of ``--runs``.
Output goes to a pipe, as when a listing is saved or paged. Prints a Markdown table.

As an installed package has it, compiled bytecode is kept (PYTHONPYCACHEPREFIX in the temporary
folder, PYTHONDONTWRITEBYTECODE dropped): otherwise every run compiles dondoc's own modules again
(+60 ms); ``--no-bytecode`` measures that way. The parsed pack is cached in the temporary folder
(XDG_CACHE_HOME); the row "rules just edited" starts each run with an empty cache.

``--before DIR``: also time another checkout (for example ``git archive <rev> | tar -x -C DIR``) with
the same interpreter, state and data, runs interleaved with this one so both see the same load;
prints a second table with both medians, the ratio, and the CPU time (user + system) of each.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = "import sys; from engine.app.cli import main; sys.argv[0] = 'dondoc'; main()"
FIVE_WEEKS = ["--from", "2026-12-02", "--to", "2027-01-05"]
TARGETS = {"--help": 0.3, "status": 0.8, "simulate": 5.0, "preview": 5.0}

# (name, arguments, cold pack cache). "{staged}" is the edited copy of the rules made by stage().
COMMANDS: list[tuple[str, list[str], bool]] = [
    ("--help", ["--help"], False),
    ("rules check", ["rules", "check", "rules/"], False),
    ("status", ["status", "--as-of", "2026-12-02"], False),
    ("status, rules just edited", ["status", "--as-of", "2026-12-02"], True),
    ("deadlines", ["deadlines", "--from", "2026-11-01", "--to", "2026-12-31", "--unit", "so-tai-chinh"], False),
    ("backlog", ["backlog"], False),
    ("inbox list", ["inbox", "list"], False),
    ("simulate", ["simulate", *FIVE_WEEKS], False),
    ("preview", ["preview", "--rules", "{staged}", *FIVE_WEEKS], False),
]


def stage(tmp: Path) -> Path:
    """A copy of rules/ with one edit a secretary might make: the yearly report of the action plan
    (khhd57-nam) due on the 21st of December instead of the 18th (40 deadlines move in the window)."""
    staged = tmp / "staged"
    shutil.copytree(ROOT / "rules", staged)
    f = staged / "obligations-001-khhd-57.yaml"
    text = f.read_text(encoding="utf-8")
    at = text.index("- id: khhd57-nam\n")
    new, n = re.subn(r"day: 18,", "day: 21,", text[at:], count=1)
    assert n == 1, "khhd57-nam no longer has day: 18"
    f.write_text(text[:at] + new, encoding="utf-8")
    return staged


def run(code: Path, argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one command in its own process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", LAUNCH, *argv], cwd=code, env=env, capture_output=True)
    took = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert r.returncode == 0, (argv, r.stdout[-500:], r.stderr[-500:])
    return took, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--before", type=Path, default=None, help="another checkout, timed side by side")
    ap.add_argument("--only", nargs="*", default=None, help="command names to time: help, rules, status, deadlines, "
                                                            "backlog, inbox, simulate, preview")
    ap.add_argument("--no-bytecode", action="store_true", help="keep PYTHONDONTWRITEBYTECODE as it is")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-commands-"))
    staged = stage(tmp)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DONDOC_")}, "DONDOC_NOW": "2026-12-02T09:00",
           "DONDOC_TRACKING_START": "2026-01-01", "DONDOC_MAIL_DIR": str(tmp / "mail"),
           "XDG_CACHE_HOME": str(tmp / "cache")}
    if not args.no_bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    variants = [("after", ROOT)] + ([("before", args.before.resolve())] if args.before else [])
    envs = {label: {**env, "DONDOC_DATABASE_URL": f"sqlite:///{tmp / f'state-{label}.db'}"} for label, _ in variants}
    for label, code in variants:      # each checkout on its own state (its schema may be older)
        run(code, ["sync"], envs[label])
    commands = [c for c in COMMANDS if args.only is None or c[0].lstrip("-").split()[0].rstrip(",") in args.only]
    load_start = os.getloadavg()
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for name, argv, cold in commands:
        argv = [a.replace("{staged}", str(staged)) for a in argv]
        for i in range(args.runs + 1):
            for label, code in variants:
                e = envs[label]
                if cold:
                    e = {**e, "XDG_CACHE_HOME": str(tmp / f"cold-{label}-{name}-{i}")}
                took = run(code, argv, e)
                if i:
                    times.setdefault((name, label), []).append(took)
    load_end = os.getloadavg()
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load "
          f"{load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end; median of {args.runs} runs after "
          f"one warm-up{'; no bytecode kept' if args.no_bytecode else ''}\n")
    print("| command | median | min | max | target |")
    print("|---|---:|---:|---:|---:|")
    for name, argv, _ in commands:
        walls = [w for w, _ in times[(name, "after")]]
        target = TARGETS.get(argv[0])
        shown = " ".join(a if "{staged}" not in a else "STAGED" for a in argv)
        label = f"`dondoc {shown}`" + (" (rules just edited)" if name.endswith("just edited") else "")
        print(f"| {label} | {statistics.median(walls):.2f} s | {min(walls):.2f} | {max(walls):.2f} | "
              f"{f'{target:g} s' if target else '–'} |")
    if args.before:
        print("\n| command | before | after | after / before | CPU before | CPU after |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, _, _ in commands:
            b, a = times[(name, "before")], times[(name, "after")]
            mb, ma = statistics.median(w for w, _ in b), statistics.median(w for w, _ in a)
            cb, ca = statistics.median(c for _, c in b), statistics.median(c for _, c in a)
            print(f"| {name} | {mb:.2f} s | {ma:.2f} s | {ma / mb:.2f} | {cb:.2f} s | {ca:.2f} s |")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
