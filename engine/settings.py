"""Configuration: embedded defaults < config file (dondoc.toml) < environment (DONDOC_*).

Secrets (the SMTP password) are read only from the environment: a config file that holds one is
rejected, because config files get copied, committed and mailed around.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

REPO_ROOT = Path(__file__).resolve().parent.parent
SECRET_FIELDS = {"smtp_password"}


def _default_dir(name: str) -> Path:
    """./rules when run from a checkout or a copied pack; else the pack shipped beside the code."""
    here = Path.cwd() / name
    return here if here.is_dir() else REPO_ROOT / name


def config_file() -> Path | None:
    explicit = os.environ.get("DONDOC_CONFIG")
    if explicit:
        return Path(explicit)
    local = Path.cwd() / "dondoc.toml"
    return local if local.is_file() else None


class ConfigFileError(ValueError):
    pass


class _FileSource(TomlConfigSettingsSource):
    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        leaked = SECRET_FIELDS & set(data)
        if leaked:
            raise ConfigFileError(f"{self.toml_file_path}: {', '.join(sorted(leaked))} chỉ được đặt bằng biến môi trường "
                                  "(DONDOC_SMTP_PASSWORD), không ghi trong tệp cấu hình")
        return data


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DONDOC_", extra="ignore")

    rules_dir: Path | None = None
    calendar_dir: Path | None = None
    templates_dir: Path | None = None
    database_url: str = "sqlite:///state.db"
    tracking_start: date | None = None
    timezone: str = "Asia/Ho_Chi_Minh"
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    # mail
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: str | None = Field(default=None, repr=False)
    smtp_timeout: float = 30.0
    smtp_concurrency: int = 2
    mail_from: str = "dondoc@example.org"
    mail_from_name: str = "Văn phòng Tỉnh ủy – Hệ thống đôn đốc báo cáo"
    reply_to: str | None = None
    mail_dir: Path = Path("mail-out")
    # delivery
    send_start: str = "07:30"
    send_end: str = "17:00"
    max_attempts: int = 8
    retry_base_seconds: int = 120
    # daemon
    evaluate_hour: int = 7
    lease_ttl_seconds: float = 20.0

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource):
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = config_file()
        if path is not None:
            sources.append(_FileSource(settings_cls, toml_file=path))
        return tuple(sources)

    def rules_path(self) -> Path:
        return self.rules_dir or _default_dir("rules")

    def calendar_path(self) -> Path:
        return self.calendar_dir or _default_dir("calendar")


def get_settings() -> Settings:
    return Settings()
