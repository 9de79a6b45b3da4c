"""Mutation campaign (issue 10, items 11–12): mutated copies of the seed pack never end in a traceback.

160 packs derived from rules/ with a FIXED seed: keys deleted, types changed, values swapped, files
truncated, ids duplicated, hostile inputs injected (anchor bombs, recursive aliases, deep nesting,
mappings as keys, control characters, non-UTF-8 bytes and file names, years 1 and 9999, …).
For every pack the loader either succeeds or raises RulePackInvalid whose errors are RuleErrors
with a file and a line, in Vietnamese; each check takes < 5 s, and the whole campaign runs in a
subprocess whose peak memory stays < 300 MB.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow   # 160 packs, ~10 s

ROOT = Path(__file__).resolve().parent.parent
RULES, CALENDAR = ROOT / "rules", ROOT / "calendar"
SEED, COUNT = 20251202, 160
MAX_SECONDS, MAX_RSS_MB = 5.0, 300

_BOMB = ('x: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
         + "".join(f"x{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 9)))
HOSTILE = [
    _BOMB, "units: &a\n  - *a\n", "units: " + "[" * 5000 + "]" * 5000 + "\n", "? {a: 1}\n: x\n",
    "units:\n  - id: zz\n    name: a\x00b\n", "units:\n  - id: zz\n    name: a\x07b\x1b\n",
    "check_until: 9999-12-31\n", "check_from: 0001-01-01\n", "d: &ngay 2025-04-31\ne: *ngay\n",
    "units:\n  - id: zz\n    name: \"A <x@y.z>; B\"\n    kind: so\n", "units:\n  - id: zz\n    name: \"A\\u2028B\\vC\"\n    kind: so\n",
    "\tunits: []\n", "a: 1\na: 2\n", "---\na: 1\n---\nb: 2\n", "x: !!python/object:os.system ls\n",
    "x: !!set {a, b}\n", "<<: 5\n", "x: *nowhere\n", "units: {id: zz}\n", "pack: []\n", "obligations: 5\n",
    "x: 99999999999999999999999999999999999999999999999999\n", "x: 1e999\n", "x: \"\\uD800\"\n",
    "units:\n  - id: zz\n    name: x\n    kind: so\n    valid_from: 2026-01-01T25:00:00\n",
]
VALUES = ["[]", "{}", "null", "~", "0", "-1", "123456789012", "true", "\"\"", "\"x\"", "2026-02-30", "0001-01-01",
          "9999-12-31", "[1, [2, [3]]]", "{a: {b: c}}", "last", "once", "supervisor", "so-khong-co", "3.5", "!!binary AAAA",
          "&z 2025-04-31", "\"\\u2028\"", "'<>;'"]
ID_RE = re.compile(r"^(\s*-?\s*id:\s*)(\S+)", re.M)
KEY_RE = re.compile(r"^(\s*-?\s*)([a-z_]+):(.*)$")


def _mutate_text(rng: random.Random, text: str) -> tuple[str, str]:
    lines = text.split("\n")
    kind = rng.choice(["delete_line", "truncate", "dup_id", "change_type", "swap_values", "hostile", "delete_key",
                       "indent", "unknown_ref", "hostile_inline"])
    n = rng.randrange(len(lines)) if lines else 0
    keyed = [i for i, line in enumerate(lines) if KEY_RE.match(line)]
    if kind == "delete_line" and lines:
        del lines[n]
    elif kind == "truncate":
        return text[:rng.randrange(max(1, len(text)))], kind
    elif kind == "dup_id":
        ids = ID_RE.findall(text)
        if len(ids) >= 2:
            (_, a), (_, b) = rng.sample(ids, 2)
            return text.replace(f"id: {a}\n", f"id: {b}\n", 1), kind
    elif kind == "change_type" and keyed:
        i = rng.choice(keyed)
        m = KEY_RE.match(lines[i])
        lines[i] = f"{m.group(1)}{m.group(2)}: {rng.choice(VALUES)}"
    elif kind == "swap_values" and len(keyed) >= 2:
        i, j = rng.sample(keyed, 2)
        mi, mj = KEY_RE.match(lines[i]), KEY_RE.match(lines[j])
        lines[i] = f"{mi.group(1)}{mi.group(2)}:{mj.group(3)}"
        lines[j] = f"{mj.group(1)}{mj.group(2)}:{mi.group(3)}"
    elif kind == "hostile":
        lines.insert(n, rng.choice(HOSTILE))
    elif kind == "hostile_inline" and keyed:
        i = rng.choice(keyed)
        lines[i] += rng.choice([" \x00", " \x1b", " &a", " *a", " !!str", " [", " \"", " #", "\u2028", " {"])
    elif kind == "delete_key" and keyed:
        i = rng.choice(keyed)
        indent = len(lines[i]) - len(lines[i].lstrip())
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
            j += 1
        del lines[i:j]
    elif kind == "indent" and lines:
        lines[n] = rng.choice(["  ", " ", "\t", ""]) + lines[n].lstrip(" " if rng.random() < 0.5 else "")
    elif kind == "unknown_ref":
        ids = ID_RE.findall(text)
        if ids:
            _, a = rng.choice(ids)
            return re.sub(rf"(?<=[\[ ,]){re.escape(a)}(?=[\],\n])", "khong-co-" + a, text, count=2), kind
    return "\n".join(lines), kind


def make_packs(base: Path, count: int = COUNT, seed: int = SEED) -> list[tuple[str, Path]]:
    rng = random.Random(seed)
    out = []
    files = sorted(p.name for p in RULES.glob("*.yaml"))
    for k in range(count):
        d = base / f"m{k:03d}"
        shutil.copytree(RULES, d, ignore=shutil.ignore_patterns("kpi", "*.md"))
        kinds = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            name = rng.choice(files)
            p = d / name
            if not p.exists():
                continue
            roll = rng.random()
            if roll < 0.03:   # a non-UTF-8 file name
                p.rename(d / os.fsdecode(b"zz-\xff" + name.encode()))
                kinds.append("bad_name")
                continue
            if roll < 0.06:   # a non-UTF-8 byte inside
                raw = p.read_bytes()
                i = rng.randrange(len(raw))
                p.write_bytes(raw[:i] + b"\xff\xfe" + raw[i:])
                kinds.append("bad_byte")
                continue
            text, kind = _mutate_text(rng, p.read_text(encoding="utf-8"))
            p.write_bytes(text.encode("utf-8", "surrogatepass"))
            kinds.append(f"{kind}@{name}")
        out.append(("+".join(kinds), d))
    return out


_ENGLISH = re.compile(r"Input should|should be|should have|Field required|Extra inputs|String should|not permitted|"
                      r"Traceback|object has no attribute")


def run_campaign(base: Path) -> dict:
    """In this process: load every mutated pack; returns figures and every failure found."""
    from engine.errors import RuleError, RulePackInvalid
    from engine.rules_loader import load_pack

    packs = make_packs(base)
    failures, slowest, invalid = [], 0.0, 0

    def too_slow(*_: object) -> None:
        raise TimeoutError(f"more than {4 * MAX_SECONDS:.0f} s")

    signal.signal(signal.SIGALRM, too_slow)
    t_all = time.perf_counter()
    for name, d in packs:
        t0 = time.perf_counter()
        signal.alarm(int(4 * MAX_SECONDS))
        try:
            load_pack(d, CALENDAR)
            errors = []
        except RulePackInvalid as exc:
            errors = exc.errors
            invalid += 1
        except BaseException:  # noqa: BLE001 - the point of the campaign
            failures.append(f"{d.name} {name}: traceback\n{traceback.format_exc(limit=-2)}")
            continue
        finally:
            signal.alarm(0)
        took = time.perf_counter() - t0
        slowest = max(slowest, took)
        if took > MAX_SECONDS:
            failures.append(f"{d.name} {name}: {took:.1f} s")
        for e in errors:
            if not isinstance(e, RuleError):
                failures.append(f"{d.name} {name}: not a RuleError: {e!r}")
            elif e.line is None and Path(e.file).name != d.name:   # only pack-level errors name the folder
                failures.append(f"{d.name} {name}: no line: {e}")
            elif _ENGLISH.search(e.message):
                failures.append(f"{d.name} {name}: English: {e}")
            else:
                json.dumps(e.as_dict(), ensure_ascii=False).encode("utf-8")
    return {"packs": len(packs), "invalid": invalid, "failures": failures, "slowest_s": round(slowest, 2),
            "total_s": round(time.perf_counter() - t_all, 1),
            "max_rss_mb": round(_peak_rss_kib() / 1024)}


def _peak_rss_kib() -> int:
    """This process's own peak RSS. Not ru_maxrss: Linux carries that over exec() from the forking
    parent, so a campaign started from a 400 MB test session would report the session's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def test_mutation_campaign(tmp_path: Path) -> None:
    """Run in a subprocess, so its peak memory is the loader's, not the test session's."""
    proc = subprocess.run([sys.executable, "-m", "tests.test_rules_mutation", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["packs"] >= 150
    assert result["failures"] == [], "\n".join(result["failures"][:20])
    assert result["invalid"] >= 120              # the mutations do break the packs
    assert result["slowest_s"] < MAX_SECONDS and result["max_rss_mb"] < MAX_RSS_MB, result


if __name__ == "__main__":
    base = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    os.chdir(ROOT)
    print(json.dumps(run_campaign(base)))
