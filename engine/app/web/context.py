"""What every request handler shares: settings, the live rules, the clock, the login limiter."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from engine.app.accounts import LoginLimiter
from engine.app.config import Settings
from engine.app.rulesholder import RulesHolder
from engine.rules_loader import RulePack
from engine.simclock import Clock


class RulesUnavailable(Exception):
    """No valid rule pack has been loaded yet (the first version on disk is broken)."""


@dataclass
class WebContext:
    settings: Settings
    rules: RulesHolder
    clock: Clock = field(default_factory=Clock)
    limiter: LoginLimiter | None = None

    def __post_init__(self) -> None:
        if self.limiter is None:
            self.limiter = LoginLimiter(self.settings.web.login_attempts)

    def now(self) -> datetime:
        """The (possibly simulated: ``dondoc web --now``) current moment."""
        return self.clock.now()

    def pack(self) -> RulePack:
        pack = self.rules.pack
        if pack is None:
            raise RulesUnavailable()
        return pack

    def today(self) -> date:
        pack = self.rules.pack
        tz = ZoneInfo(pack.info.timezone) if pack is not None else ZoneInfo("Asia/Ho_Chi_Minh")
        return self.now().astimezone(tz).date()
