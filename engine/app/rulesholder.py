"""The live rule pack of a long-running front end (web console), reloaded when the files change.

Why: a page must not parse the pack per request (it takes about a second), yet an edit of rules/
must reach the console as it reaches the daemon. The holder keeps the last good pack; a broken
edit is kept as ``error`` (shown on the Rules page) and the last good pack stays in use. Inside
the daemon the console takes the daemon's own pack instead (``RulesHolder.following``).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from engine.app.config import Settings
from engine.errors import RuleError, RulePackInvalid
from engine.rules_loader import RulePack


def fingerprint(paths: list[Path]) -> str:
    """Size and mtime of every file under the given roots: a cheap "did anything change?"."""
    h = hashlib.sha256()
    for root in paths:
        if root is None or not root.exists():
            continue
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
        for p in files:
            try:
                st = p.stat()
            except FileNotFoundError:      # replaced by an editor between listing and stat
                h.update(f"{p}:gone".encode())
                continue
            h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class RulesState:
    pack: RulePack | None            # the pack in use (the last good one)
    errors: list[RuleError]          # the newest version's errors ([] when it is the one in use)
    loaded_at: datetime | None
    fingerprint: str


class RulesHolder:
    def __init__(self, settings: Settings, min_interval: float = 2.0,
                 provider: Callable[[], RulePack | None] | None = None):
        self.settings = settings
        self.min_interval = min_interval
        self._provider = provider
        self._lock = threading.Lock()
        self._state = RulesState(None, [], None, "")
        self._checked = 0.0

    @classmethod
    def following(cls, settings: Settings, provider: Callable[[], RulePack | None]) -> "RulesHolder":
        """A holder that shows what another component (the daemon) has loaded."""
        return cls(settings, provider=provider)

    def _paths(self) -> list[Path]:
        paths = [self.settings.rules.path, self.settings.calendar.path]
        if self.settings.delivery.templates_dir is not None:
            paths.append(self.settings.delivery.templates_dir)
        return paths

    def state(self) -> RulesState:
        """The current state, reloading first if the files changed (checked at most every min_interval)."""
        if self._provider is not None:
            pack = self._provider()
            return RulesState(pack, [], self._state.loaded_at, "")
        mono = time.monotonic()
        if self._state.pack is not None and mono - self._checked < self.min_interval:
            return self._state
        with self._lock:
            if self._state.pack is not None and time.monotonic() - self._checked < self.min_interval:
                return self._state
            self._checked = time.monotonic()
            fp = fingerprint(self._paths())
            if fp == self._state.fingerprint:
                return self._state
            from engine.app import services

            try:
                pack = services.load_rules(self.settings)
                self._state = RulesState(pack, [], datetime.now().astimezone(), fp)
            except RulePackInvalid as exc:
                self._state = RulesState(self._state.pack, exc.errors, self._state.loaded_at, fp)
            return self._state

    @property
    def pack(self) -> RulePack | None:
        return self.state().pack
