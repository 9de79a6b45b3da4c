"""The one configuration: embedded defaults < ``dondoc.toml`` < environment ``DONDOC_*``.

Built once at the entry point (CLI, daemon, web) and passed down as typed sections; nothing below
the application layer reads the environment or the file. Why one table of names: every variable a
user may set, old spellings included, is listed in ``ENV``; the same names (lower case, without
``DONDOC_``) are accepted as flat keys in the file, beside the sectioned form (``[smtp] host = …``).
An unknown key is an error that names it; a malformed value is one Vietnamese message naming the
variable or key. Secrets (the SMTP password) are taken only from the environment: config files get
copied, committed and mailed around.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from notifications.config import DeliveryConfig, SmtpConfig, parse_hours

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


class ConfigError(ValueError):
    """A configuration the program cannot run with; ``messages`` are for the operator, in Vietnamese."""

    def __init__(self, messages: list[str]):
        self.messages = messages
        super().__init__("\n".join(messages))


# ─── sections ────────────────────────────────────────────────────────────────────────────────────
class DatabaseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = "sqlite:///state.db"         # any SQLAlchemy URL; a password in it belongs in the environment


def _default_dir(name: str) -> Path:
    """./rules when run from a checkout or a copied pack; else the pack shipped beside the code."""
    here = Path.cwd() / name
    return here if here.is_dir() else REPO_ROOT / name


class RulesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dir: Path | None = None
    tracking_start: date | None = None      # unset: the pack's tracking_start

    @property
    def path(self) -> Path:
        return self.dir or _default_dir("rules")


class CalendarConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dir: Path | None = None

    @property
    def path(self) -> Path:
        return self.dir or _default_dir("calendar")


class DaemonSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    evaluate_hour: int = Field(default=7, ge=0, le=23)
    deliver_every_minutes: int = Field(default=1, ge=1, le=1440)
    lease_ttl_seconds: float = Field(default=20.0, ge=1.0, le=3600.0)
    watch_interval: float = Field(default=1.0, gt=0, le=3600.0)
    standby_poll: float = Field(default=2.0, gt=0, le=3600.0)


class LogConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["text", "json"] = "text"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class WebConfig(BaseModel):
    """The web console (engine/app/web) and the links in the reminders."""
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(default=8057, ge=1, le=65535)
    serve: bool = True                      # `dondoc run` serves the console in the same process
    public_url: str | None = None           # how units reach it (https://…); unset: http://host:port
    # Signs the links in the reminders (HMAC). Only from the environment (DONDOC_WEB_SECRET); unset:
    # the reminders carry no link and the console says so.
    secret: SecretStr | None = Field(default=None, repr=False)
    stop_reminders_at: Literal["confirmation", "acceptance"] = "confirmation"
    link_days: int = Field(default=60, ge=1, le=366)        # how long a link in a reminder works
    upload_dir: Path = Path("attachments")
    max_upload_mb: int = Field(default=20, ge=1, le=200)
    session_hours: int = Field(default=12, ge=1, le=720)
    cookie_secure: bool | None = None       # unset: Secure when public_url is https
    login_attempts: int = Field(default=5, ge=1, le=100)    # per account and per address, per 15 minutes

    @field_validator("public_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        v = v.strip().rstrip("/")
        if not v.startswith(("http://", "https://")):
            raise ValueError("phải bắt đầu bằng http:// hoặc https://")
        return v

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return self.public_url or f"http://{host}:{self.port}"

    @property
    def secure_cookies(self) -> bool:
        return self.cookie_secure if self.cookie_secure is not None else self.base_url.startswith("https://")

    def secret_value(self) -> str | None:
        return self.secret.get_secret_value() if self.secret is not None else None


class InboxConfig(BaseModel):
    """The secretariat's reporting mailbox (engine/app/inbox): reports that arrive by e-mail. No
    ``host``: nothing is read. Always over TLS (implicit or STARTTLS): the password never travels
    in clear; it comes only from the environment (DONDOC_INBOX_PASSWORD)."""
    model_config = ConfigDict(extra="forbid")
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)      # unset: 993 tls, 143 starttls
    security: Literal["tls", "starttls"] = "tls"
    validate_certs: bool = True
    cafile: Path | None = None              # an internal CA's certificate (PEM), beside the system's
    username: str | None = None
    password: SecretStr | None = Field(default=None, repr=False)
    folder: str = "INBOX"
    # A message is marked with this IMAP keyword only after what it produced is committed; with
    # ``move_to`` it is moved to that folder instead (created if missing).
    done_keyword: str = Field(default="dondoc-xong", pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    move_to: str | None = None
    every_minutes: int = Field(default=5, ge=1, le=1440)     # the daemon reads the mailbox this often
    batch: int = Field(default=200, ge=1, le=5000)           # messages per connection
    timeout: float = Field(default=30.0, gt=0, le=600)
    max_message_mb: int = Field(default=60, ge=1, le=500)    # bigger: only the headers are read

    @field_validator("host", "username", "move_to")
    @classmethod
    def _blank_is_none(cls, v: str | None) -> str | None:
        return (v.strip() or None) if v is not None else None

    @property
    def enabled(self) -> bool:
        return self.host is not None

    @property
    def port_or_default(self) -> int:
        return self.port or (993 if self.security == "tls" else 143)

    def password_value(self) -> str | None:
        return self.password.get_secret_value() if self.password is not None else None


# ─── where each value may come from ───────────────────────────────────────────────────────────────
# Environment variable → (section, field). Several names for one field are older spellings.
ENV: dict[str, tuple[str, str]] = {
    "DONDOC_DATABASE_URL": ("database", "url"),
    "DONDOC_RULES_DIR": ("rules", "dir"),
    "DONDOC_TRACKING_START": ("rules", "tracking_start"),
    "DONDOC_CALENDAR_DIR": ("calendar", "dir"),
    "DONDOC_SMTP_HOST": ("smtp", "host"),
    "DONDOC_SMTP_PORT": ("smtp", "port"),
    "DONDOC_SMTP_SECURITY": ("smtp", "security"),
    "DONDOC_SMTP_VALIDATE_CERTS": ("smtp", "validate_certs"),
    "DONDOC_SMTP_USERNAME": ("smtp", "username"),
    "DONDOC_SMTP_PASSWORD": ("smtp", "password"),
    "DONDOC_SMTP_ALLOW_PLAINTEXT_AUTH": ("smtp", "allow_plaintext_auth"),
    "DONDOC_SMTP_FROM": ("smtp", "from_addr"),
    "DONDOC_MAIL_FROM": ("smtp", "from_addr"),
    "DONDOC_SMTP_FROM_NAME": ("smtp", "from_name"),
    "DONDOC_MAIL_FROM_NAME": ("smtp", "from_name"),
    "DONDOC_SMTP_REPLY_TO": ("smtp", "reply_to"),
    "DONDOC_REPLY_TO": ("smtp", "reply_to"),
    "DONDOC_SMTP_CONCURRENCY": ("smtp", "concurrency"),
    "DONDOC_SMTP_TIMEOUT": ("smtp", "timeout"),
    "DONDOC_SMTP_HELO": ("smtp", "helo"),
    "DONDOC_MAIL_DIR": ("smtp", "pickup_dir"),
    "DONDOC_SEND_START": ("delivery", "send_start"),
    "DONDOC_SEND_END": ("delivery", "send_end"),
    "DONDOC_NOTIFY_HOURS": ("delivery", "hours"),
    "DONDOC_NOTIFY_MAX_ATTEMPTS": ("delivery", "max_attempts"),
    "DONDOC_MAX_ATTEMPTS": ("delivery", "max_attempts"),
    "DONDOC_NOTIFY_BACKOFF_FIRST_S": ("delivery", "backoff_first_s"),
    "DONDOC_RETRY_BASE_SECONDS": ("delivery", "backoff_first_s"),
    "DONDOC_NOTIFY_BACKOFF_MAX_S": ("delivery", "backoff_max_s"),
    "DONDOC_NOTIFY_WEBHOOK_CONCURRENCY": ("delivery", "webhook_concurrency"),
    "DONDOC_NOTIFY_WEBHOOK_TIMEOUT": ("delivery", "webhook_timeout"),
    "DONDOC_NOTIFY_DIGEST_MAX_ITEMS": ("delivery", "digest_max_items"),
    "DONDOC_TEMPLATES_DIR": ("delivery", "templates_dir"),
    "DONDOC_EVALUATE_HOUR": ("daemon", "evaluate_hour"),
    "DONDOC_DELIVER_EVERY_MINUTES": ("daemon", "deliver_every_minutes"),
    "DONDOC_LEASE_TTL_SECONDS": ("daemon", "lease_ttl_seconds"),
    "DONDOC_WATCH_INTERVAL": ("daemon", "watch_interval"),
    "DONDOC_STANDBY_POLL": ("daemon", "standby_poll"),
    "DONDOC_LOG_FORMAT": ("log", "format"),
    "DONDOC_LOG_LEVEL": ("log", "level"),
    "DONDOC_WEB_HOST": ("web", "host"),
    "DONDOC_WEB_PORT": ("web", "port"),
    "DONDOC_WEB_SERVE": ("web", "serve"),
    "DONDOC_WEB_PUBLIC_URL": ("web", "public_url"),
    "DONDOC_WEB_SECRET": ("web", "secret"),
    "DONDOC_WEB_STOP_REMINDERS_AT": ("web", "stop_reminders_at"),
    "DONDOC_WEB_LINK_DAYS": ("web", "link_days"),
    "DONDOC_WEB_UPLOAD_DIR": ("web", "upload_dir"),
    "DONDOC_WEB_MAX_UPLOAD_MB": ("web", "max_upload_mb"),
    "DONDOC_WEB_SESSION_HOURS": ("web", "session_hours"),
    "DONDOC_WEB_COOKIE_SECURE": ("web", "cookie_secure"),
    "DONDOC_WEB_LOGIN_ATTEMPTS": ("web", "login_attempts"),
    "DONDOC_INBOX_HOST": ("inbox", "host"),
    "DONDOC_INBOX_PORT": ("inbox", "port"),
    "DONDOC_INBOX_SECURITY": ("inbox", "security"),
    "DONDOC_INBOX_VALIDATE_CERTS": ("inbox", "validate_certs"),
    "DONDOC_INBOX_CAFILE": ("inbox", "cafile"),
    "DONDOC_INBOX_USERNAME": ("inbox", "username"),
    "DONDOC_INBOX_PASSWORD": ("inbox", "password"),
    "DONDOC_INBOX_FOLDER": ("inbox", "folder"),
    "DONDOC_INBOX_DONE_KEYWORD": ("inbox", "done_keyword"),
    "DONDOC_INBOX_MOVE_TO": ("inbox", "move_to"),
    "DONDOC_INBOX_EVERY_MINUTES": ("inbox", "every_minutes"),
    "DONDOC_INBOX_BATCH": ("inbox", "batch"),
    "DONDOC_INBOX_TIMEOUT": ("inbox", "timeout"),
    "DONDOC_INBOX_MAX_MESSAGE_MB": ("inbox", "max_message_mb"),
}
SECRETS = {("smtp", "password"), ("web", "secret"), ("inbox", "password")}
SECRET_ENV = {("smtp", "password"): "DONDOC_SMTP_PASSWORD", ("web", "secret"): "DONDOC_WEB_SECRET",
              ("inbox", "password"): "DONDOC_INBOX_PASSWORD"}
SECTIONS = ("database", "rules", "calendar", "smtp", "delivery", "daemon", "log", "web", "inbox")
# Flat keys in the file: the variable's name without DONDOC_, lower case (smtp_host, send_start …).
FLAT = {name.removeprefix("DONDOC_").lower(): target for name, target in ENV.items()}
# Fields that only exist as an input form: "hours" = "HH:MM-HH:MM" sets send_start and send_end.
PSEUDO = {("delivery", "hours")}


def config_file(environ: Mapping[str, str] | None = None) -> Path | None:
    environ = os.environ if environ is None else environ
    explicit = environ.get("DONDOC_CONFIG")
    if explicit:
        return Path(explicit)
    local = Path.cwd() / "dondoc.toml"
    return local if local.is_file() else None


def _expand_pseudo(section: str, key: str, value: Any, origin: str) -> dict[str, Any]:
    if (section, key) == ("delivery", "hours"):
        try:
            start, end = parse_hours(str(value))
        except ValueError as exc:
            raise ConfigError([f"{origin}: {exc}"]) from None
        return {"send_start": start, "send_end": end}
    return {key: value}


class _Layer(PydanticBaseSettingsSource):
    """A nested dict of values and, for each (section, field), where it came from (for messages)."""

    def __init__(self, settings_cls: type[BaseSettings]):
        super().__init__(settings_cls)
        self.values: dict[str, dict[str, Any]] = {}
        self.origins: dict[tuple[str, str], str] = {}

    def put(self, section: str, key: str, value: Any, origin: str) -> None:
        for k, v in _expand_pseudo(section, key, value, origin).items():
            self.values.setdefault(section, {})[k] = v
            self.origins[(section, k)] = origin

    def get_field_value(self, field, field_name):  # pragma: no cover - __call__ does the work
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return self.values


class EnvLayer(_Layer):
    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        super().__init__(settings_cls)
        # Older spellings first, so the current name wins when both are set.
        for name in sorted(ENV, key=lambda n: n.startswith(("DONDOC_SMTP_", "DONDOC_NOTIFY_"))):
            if name in environ:
                section, key = ENV[name]
                self.put(section, key, environ[name], f"biến môi trường {name}={environ[name]!r}"
                         if (section, key) not in SECRETS else f"biến môi trường {name}")
        unknown = sorted(n for n in environ if n.startswith("DONDOC_") and n not in ENV
                         and n not in ("DONDOC_CONFIG", "DONDOC_NOW"))
        self.unknown = unknown   # warned about by doctor, not an error: other tools share the prefix


class FileLayer(_Layer):
    def __init__(self, settings_cls: type[BaseSettings], path: Path):
        super().__init__(settings_cls)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError([f"{path}: không tìm thấy tệp cấu hình (DONDOC_CONFIG)"]) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError([f"{path}: tệp cấu hình sai cú pháp TOML ({exc})"]) from None
        except OSError as exc:
            raise ConfigError([f"{path}: không đọc được tệp cấu hình ({exc.strerror})"]) from None
        errors: list[str] = []
        for key, value in data.items():
            if key in SECTIONS and isinstance(value, dict):
                for sub, v in value.items():
                    self._one(path, f"[{key}] {sub}", key, sub, v, errors)
            elif key in FLAT:
                self._one(path, key, *FLAT[key], value, errors)
            else:
                errors.append(f"{path}: khóa “{key}” không được hỗ trợ" + _hint(key))
        if errors:
            raise ConfigError(errors)

    def _one(self, path: Path, shown: str, section: str, key: str, value: Any, errors: list[str]) -> None:
        fields = set(_SECTION_MODELS[section].model_fields) | {k for s, k in PSEUDO if s == section}
        if key not in fields:
            errors.append(f"{path}: khóa “{shown}” không được hỗ trợ" + _hint(key, fields))
        elif (section, key) in SECRETS:
            errors.append(f"{path}: “{shown}” (bí mật) chỉ được đặt bằng biến môi trường "
                          f"{SECRET_ENV[(section, key)]}, không ghi trong tệp cấu hình")
        else:
            try:
                self.put(section, key, value, f"{path}: {shown} = {value!r}")
            except ConfigError as exc:
                errors.extend(exc.messages)


def _hint(key: str, fields: set[str] | None = None) -> str:
    import difflib

    pool = sorted(fields) if fields is not None else sorted(FLAT) + list(SECTIONS)
    close = difflib.get_close_matches(key, pool, n=1)
    return f" (có phải “{close[0]}”?)" if close else ""


class Settings(BaseSettings):
    """Everything dondoc can be told, by section. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(extra="forbid", validate_default=True)

    database: DatabaseConfig = DatabaseConfig()
    rules: RulesConfig = RulesConfig()
    calendar: CalendarConfig = CalendarConfig()
    smtp: SmtpConfig = SmtpConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    daemon: DaemonSettings = DaemonSettings()
    log: LogConfig = LogConfig()
    web: WebConfig = WebConfig()
    inbox: InboxConfig = InboxConfig()

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        # load_settings() resolves the sources itself (to name the origin of a bad value);
        # a bare Settings(**init) is only what the caller gave plus the defaults.
        return (init_settings,)

    @property
    def database_display(self) -> str:
        return mask_url(self.database.url)


_SECTION_MODELS: dict[str, type[BaseModel]] = {
    "database": DatabaseConfig, "rules": RulesConfig, "calendar": CalendarConfig, "smtp": SmtpConfig,
    "delivery": DeliveryConfig, "daemon": DaemonSettings, "log": LogConfig, "web": WebConfig,
    "inbox": InboxConfig}


def mask_url(url: str) -> str:
    """The database URL without its password, for anything printed or logged."""
    try:
        from sqlalchemy.engine import make_url

        u = make_url(url)
        return u.render_as_string(hide_password=True) if u.password else url
    except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot parse: hide everything between : and @
        import re

        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)


_MESSAGES = {
    "int_parsing": "phải là số nguyên", "float_parsing": "phải là số", "bool_parsing": "phải là true hoặc false",
    "literal_error": "chỉ nhận {expected}", "greater_than_equal": "phải ≥ {ge}", "less_than_equal": "phải ≤ {le}",
    "greater_than": "phải > {gt}", "less_than": "phải < {lt}", "date_from_datetime_parsing": "ngày dạng yyyy-mm-dd",
    "date_parsing": "ngày dạng yyyy-mm-dd", "date_from_datetime_inexact": "ngày dạng yyyy-mm-dd (không kèm giờ)",
    "string_type": "phải là chuỗi ký tự", "extra_forbidden": "khóa không được hỗ trợ",
}


def _explain(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    ctx = {k: str(v).replace("'", "") for k, v in (err.get("ctx") or {}).items()}
    if kind in _MESSAGES:
        try:
            return _MESSAGES[kind].format(**ctx).replace(" or ", " hoặc ")
        except KeyError:
            return _MESSAGES[kind]
    msg = str(err.get("msg", "giá trị không hợp lệ"))
    return msg.removeprefix("Value error, ")


def load_settings(environ: Mapping[str, str] | None = None, file: Path | None = None, **overrides: Any) -> Settings:
    """Read the file and the environment once; raise :class:`ConfigError` with every bad value named."""
    environ = os.environ if environ is None else environ
    path = file if file is not None else config_file(environ)
    layers: list[_Layer] = []
    errors: list[str] = []
    for make in ((lambda: FileLayer(Settings, path)) if path is not None else None, lambda: EnvLayer(Settings, environ)):
        if make is None:
            continue
        try:
            layers.append(make())
        except ConfigError as exc:
            errors.extend(exc.messages)
    if errors:
        raise ConfigError(errors)
    merged: dict[str, dict[str, Any]] = {}
    origins: dict[tuple[str, str], str] = {}
    for layer in layers:   # file, then environment over it
        for section, values in layer.values.items():
            merged.setdefault(section, {}).update(values)
        origins.update(layer.origins)
    for section, values in overrides.items():
        merged.setdefault(section, {}).update(values if isinstance(values, dict) else {})
    try:
        return Settings(**merged)
    except ValidationError as exc:
        msgs = []
        for err in exc.errors():
            loc = tuple(str(p) for p in err["loc"])
            where = origins.get(loc[:2]) if len(loc) >= 2 else None
            if where is None and loc and loc[0] in merged:   # a check across fields (send_start < send_end)
                where = "; ".join(v for k, v in origins.items() if k[0] == loc[0]) or f"mục [{loc[0]}]"
            msgs.append(f"{where or '.'.join(loc)}: {_explain(err)}")
        raise ConfigError(msgs) from None
