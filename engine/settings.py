"""Configuration: embedded defaults, overridable by environment variables (DONDOC_*)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_dir(name: str) -> Path:
    """./rules when run from a checkout or a copied pack; else the pack shipped beside the code."""
    here = Path.cwd() / name
    return here if here.is_dir() else REPO_ROOT / name


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DONDOC_", extra="ignore")

    rules_dir: Path | None = None
    calendar_dir: Path | None = None
    database_url: str = "sqlite:///state.db"
    tracking_start: date | None = None
    timezone: str = "Asia/Ho_Chi_Minh"

    def rules_path(self) -> Path:
        return self.rules_dir or _default_dir("rules")

    def calendar_path(self) -> Path:
        return self.calendar_dir or _default_dir("calendar")


def get_settings() -> Settings:
    return Settings()
