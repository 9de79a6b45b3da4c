"""Notification configuration: the project's one configuration (engine/settings.py), typed for sending.

``SmtpSettings()`` and ``NotifySettings()`` read the same values as the rest of dondoc —
environment ``DONDOC_*`` over ``dondoc.toml`` over defaults — so `dondoc doctor`, `dondoc notify`
and the daemon never disagree about the mail server. The SMTP password comes only from the
environment (``DONDOC_SMTP_PASSWORD``; engine/settings.py rejects it in a config file). Keyword
arguments override everything (tests, the benchmark). A few knobs only the sender needs are read
here from the environment: ``DONDOC_SMTP_VALIDATE_CERTS``, ``DONDOC_SMTP_HELO``,
``DONDOC_NOTIFY_BACKOFF_MAX_S``, ``DONDOC_NOTIFY_WEBHOOK_CONCURRENCY``, ``DONDOC_NOTIFY_WEBHOOK_TIMEOUT``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

Security = Literal["starttls", "tls", "none"]


class _ProjectSettings(PydanticBaseSettingsSource):
    """Values taken from engine.settings.Settings (environment and dondoc.toml)."""

    def __init__(self, settings_cls: type[BaseSettings], mapping: Callable[[Any], dict[str, Any]]):
        super().__init__(settings_cls)
        self.mapping = mapping

    def get_field_value(self, field, field_name):  # pragma: no cover - __call__ does the work
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        from engine.settings import get_settings

        return {k: v for k, v in self.mapping(get_settings()).items() if v is not None}


def _get(s: Any, name: str) -> Any:
    return getattr(s, name, None)


def _smtp_from_project(s: Any) -> dict[str, Any]:
    return {"host": _get(s, "smtp_host"), "port": _get(s, "smtp_port"), "security": _get(s, "smtp_security"),
            "username": _get(s, "smtp_username"), "password": _get(s, "smtp_password"),
            "timeout": _get(s, "smtp_timeout"), "concurrency": _get(s, "smtp_concurrency"),
            "from_addr": _get(s, "mail_from"), "from_name": _get(s, "mail_from_name"),
            "reply_to": _get(s, "reply_to"), "pickup_dir": _get(s, "mail_dir")}


def _notify_from_project(s: Any) -> dict[str, Any]:
    start, end = _get(s, "send_start"), _get(s, "send_end")
    return {"hours": f"{start}-{end}" if start and end else None, "max_attempts": _get(s, "max_attempts"),
            "backoff_first_s": _get(s, "retry_base_seconds"), "templates_dir": _get(s, "templates_dir")}


class SmtpSettings(BaseSettings):
    """Where e-mail goes. No ``host`` means: write .eml files to ``pickup_dir`` instead."""

    model_config = SettingsConfigDict(env_prefix="DONDOC_SMTP_", extra="ignore")

    host: str | None = None                 # DONDOC_SMTP_HOST
    port: int | None = None                 # DONDOC_SMTP_PORT; unset: 587 starttls, 465 tls, 25 none
    security: Security = "starttls"         # DONDOC_SMTP_SECURITY
    validate_certs: bool = True             # DONDOC_SMTP_VALIDATE_CERTS
    username: str | None = None             # DONDOC_SMTP_USERNAME
    password: str | None = Field(default=None, repr=False, exclude=True)   # DONDOC_SMTP_PASSWORD only
    from_addr: str | None = None            # DONDOC_MAIL_FROM; unset: the admin_contact's first address
    from_name: str = "Hệ thống đôn đốc báo cáo"     # DONDOC_MAIL_FROM_NAME
    reply_to: str | None = None             # DONDOC_REPLY_TO; unset: the admin_contact's first address
    concurrency: int = Field(default=3, ge=1, le=32)   # DONDOC_SMTP_CONCURRENCY: connections, each reused
    timeout: float = Field(default=30.0, gt=0)         # DONDOC_SMTP_TIMEOUT
    helo: str | None = None                 # DONDOC_SMTP_HELO; unset: this machine's host name
    pickup_dir: Path = Path("mail-out")     # DONDOC_MAIL_DIR

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return (init_settings, _ProjectSettings(settings_cls, _smtp_from_project), env_settings)

    @field_validator("host")
    @classmethod
    def _blank_is_none(cls, v: str | None) -> str | None:
        return (v.strip() or None) if v is not None else None

    @property
    def effective_port(self) -> int:
        if self.port:
            return self.port
        return {"starttls": 587, "tls": 465, "none": 25}[self.security]


class NotifySettings(BaseSettings):
    """When and how persistently to deliver."""

    model_config = SettingsConfigDict(env_prefix="DONDOC_NOTIFY_", extra="ignore")

    hours: str = "07:30-17:00"              # DONDOC_SEND_START / DONDOC_SEND_END, pack time zone
    max_attempts: int = Field(default=8, ge=1, le=100)      # DONDOC_MAX_ATTEMPTS
    backoff_first_s: float = Field(default=120.0, gt=0)     # DONDOC_RETRY_BASE_SECONDS: 2 min, 4, 8 …
    backoff_max_s: float = Field(default=7200.0, gt=0)      # … capped at 2 h
    webhook_concurrency: int = Field(default=4, ge=1, le=32)
    webhook_timeout: float = Field(default=15.0, gt=0)
    templates_dir: Path | None = None       # DONDOC_TEMPLATES_DIR: override directory for the templates

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return (init_settings, _ProjectSettings(settings_cls, _notify_from_project), env_settings)

    @field_validator("hours")
    @classmethod
    def _hours(cls, v: str) -> str:
        parse_hours(v)
        return v

    def window(self) -> tuple[time, time]:
        return parse_hours(self.hours)


def parse_hours(text: str) -> tuple[time, time]:
    """"07:30-17:00" → (07:30, 17:00); the end is exclusive."""
    try:
        a, b = (part.strip() for part in text.split("-"))
        start, end = time.fromisoformat(a), time.fromisoformat(b)
    except ValueError:
        raise ValueError(f"giờ gửi “{text}” không hợp lệ; viết dạng HH:MM-HH:MM, ví dụ 07:30-17:00") from None
    if end <= start:
        raise ValueError(f"giờ gửi “{text}”: giờ kết thúc phải sau giờ bắt đầu")
    return start, end
