"""What the sender needs to know: the SMTP server and the delivery policy.

These are plain pydantic models, sections of the one configuration (engine/app/config.py), which
reads them from ``dondoc.toml`` and ``DONDOC_*`` and passes them down. Nothing here reads the
environment: a value reaches the sender only through that one model, so the file, the environment
and every command agree.
"""

from __future__ import annotations

from datetime import time
from email.utils import parseaddr
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

Security = Literal["starttls", "tls", "none"]
DEFAULT_PORTS: dict[str, int] = {"starttls": 587, "tls": 465, "none": 25}
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


class SmtpConfig(BaseModel):
    """Where e-mail goes. No ``host`` means: write .eml files to ``pickup_dir`` instead."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)   # unset: 587 starttls, 465 tls, 25 none
    security: Security = "starttls"
    validate_certs: bool = True
    username: str | None = None
    password: SecretStr | None = Field(default=None, repr=False)   # DONDOC_SMTP_PASSWORD only
    # Credentials over a connection without TLS are refused unless this says so (a loopback relay).
    allow_plaintext_auth: bool = False
    from_addr: str | None = None            # unset: the pack's admin_contact's first address
    from_name: str = "Hệ thống đôn đốc báo cáo"
    reply_to: str | None = None             # unset: the admin_contact's first address
    concurrency: int = Field(default=3, ge=1, le=32)
    timeout: float = Field(default=30.0, gt=0)
    helo: str | None = None                 # unset: this machine's host name
    pickup_dir: Path = Path("mail-out")

    @field_validator("host", "username", "helo", "from_addr", "reply_to")
    @classmethod
    def _blank_is_none(cls, v: str | None) -> str | None:
        return (v.strip() or None) if v is not None else None

    @model_validator(mode="before")
    @classmethod
    def _display_name_form(cls, data: object) -> object:
        """``Dondoc <dondoc@…>`` in from_addr / reply_to: the address, and (From) its name unless
        from_name is given too. The header builder writes the name; the envelope needs the address."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key in ("from_addr", "reply_to"):
            v = data.get(key)
            if isinstance(v, str) and ("<" in v or ">" in v):
                name, addr = parseaddr(v.strip())
                if not addr or "@" not in addr or any(c in addr for c in "<> ,;"):
                    raise ValueError(f"địa chỉ “{v}” không hợp lệ; viết dạng dondoc@so.gov.vn hoặc "
                                     "Tên hiển thị <dondoc@so.gov.vn>")
                data[key] = addr
                if key == "from_addr" and name.strip() and not data.get("from_name"):
                    data["from_name"] = name.strip()
        return data

    @property
    def effective_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.security]

    @property
    def password_value(self) -> str | None:
        return self.password.get_secret_value() if self.password is not None else None

    @property
    def sends_credentials_in_clear(self) -> bool:
        return self.security == "none" and bool(self.username)

    def plaintext_auth_refusal(self) -> str | None:
        """Why credentials must not be sent on this connection, or None when it is safe or allowed."""
        if not self.sends_credentials_in_clear or self.allow_plaintext_auth:
            return None
        return ("không gửi mật khẩu SMTP qua kết nối không mã hóa: đặt DONDOC_SMTP_SECURITY=starttls hoặc tls, "
                "hoặc (chỉ với máy chủ chuyển tiếp nội bộ) DONDOC_SMTP_ALLOW_PLAINTEXT_AUTH=true")


def parse_clock(text: str | time) -> time:
    """"07:30" → 07:30; the message says how to write it."""
    if isinstance(text, time):
        return text
    try:
        hh, mm = str(text).strip().split(":")
        return time(int(hh), int(mm))
    except ValueError:
        raise ValueError(f"giờ “{text}” không hợp lệ; viết dạng HH:MM, ví dụ 07:30") from None


def parse_hours(text: str) -> tuple[time, time]:
    """"07:30-17:00" → (07:30, 17:00); the end is exclusive."""
    parts = str(text).split("-")
    if len(parts) != 2:
        raise ValueError(f"khung giờ gửi “{text}” không hợp lệ; viết dạng HH:MM-HH:MM, ví dụ 07:30-17:00")
    start, end = parse_clock(parts[0]), parse_clock(parts[1])
    if end <= start:
        raise ValueError(f"khung giờ gửi “{text}”: giờ kết thúc phải sau giờ bắt đầu")
    return start, end


class DeliveryConfig(BaseModel):
    """When and how persistently to deliver."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    send_start: time = time(7, 30)          # sending window, the pack's time zone, working days only
    send_end: time = time(17, 0)            # exclusive
    max_attempts: int = Field(default=8, ge=1, le=100)
    backoff_first_s: float = Field(default=120.0, gt=0)     # 2 min, 4, 8 …
    backoff_max_s: float = Field(default=7200.0, gt=0)      # … capped at 2 h
    webhook_concurrency: int = Field(default=4, ge=1, le=32)
    webhook_timeout: float = Field(default=15.0, gt=0)
    templates_dir: Path | None = None       # override directory for the mail templates
    # Catch-up without a flood: a digest lists at most this many entries in full (the most urgent
    # reports, escalation rows, KPI targets); the rest are counted per obligation.
    digest_max_items: int = Field(default=25, ge=1, le=1000)

    @field_validator("send_start", "send_end", mode="before")
    @classmethod
    def _clock(cls, v: object) -> time:
        return parse_clock(v)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _window(self) -> "DeliveryConfig":
        if self.send_end <= self.send_start:
            raise ValueError(f"giờ kết thúc gửi ({self.send_end:%H:%M}) phải sau giờ bắt đầu ({self.send_start:%H:%M})")
        return self

    def window(self) -> tuple[time, time]:
        return self.send_start, self.send_end

    @property
    def hours(self) -> str:
        return f"{self.send_start:%H:%M}-{self.send_end:%H:%M}"
