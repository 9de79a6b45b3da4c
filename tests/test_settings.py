"""The one configuration: precedence, unknown keys, malformed values, secrets only from the environment."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.app.config import ENV, ConfigError, load_settings


def toml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "dondoc.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_file_then_environment(tmp_path) -> None:
    cfg = toml(tmp_path, 'database_url = "sqlite:///from-file.db"\n[smtp]\nhost = "mail.example.org"\nport = 587\n')
    s = load_settings({"DONDOC_SMTP_PORT": "2525", "DONDOC_SMTP_PASSWORD": "bí-mật"}, file=cfg)
    assert s.database.url == "sqlite:///from-file.db"
    assert (s.smtp.host, s.smtp.port) == ("mail.example.org", 2525)   # environment wins
    assert s.smtp.password_value == "bí-mật"
    assert "bí-mật" not in repr(s) and "bí-mật" not in str(s.model_dump())


def test_flat_and_sectioned_keys_mean_the_same(tmp_path) -> None:
    a = load_settings({}, file=toml(tmp_path, 'smtp_host = "m.example.org"\nsend_start = "08:00"\nevaluate_hour = 6\n'))
    (tmp_path / "b").mkdir()
    b = load_settings({}, file=toml(tmp_path / "b", '[smtp]\nhost = "m.example.org"\n[delivery]\nsend_start = "08:00"\n'
                                                    '[daemon]\nevaluate_hour = 6\n'))
    assert a == b and a.delivery.send_start == time(8, 0) and a.daemon.evaluate_hour == 6


def test_secret_in_config_file_is_rejected(tmp_path) -> None:
    for text in ('smtp_password = "lộ"\n', '[smtp]\npassword = "lộ"\n'):
        with pytest.raises(ConfigError, match="DONDOC_SMTP_PASSWORD"):
            load_settings({}, file=toml(tmp_path, text))


@pytest.mark.parametrize("text, key", [
    ('smtp_hots = "x"\n', "smtp_hots"),
    ('[smtp]\nhots = "x"\n', "[smtp] hots"),
    ('[smpt]\nhost = "x"\n', "smpt"),
])
def test_unknown_key_is_an_error_that_names_it(tmp_path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings({}, file=toml(tmp_path, text))
    assert f"“{key}”" in str(exc.value) and "không được hỗ trợ" in str(exc.value)


@pytest.mark.parametrize("env, fragment", [
    ({"DONDOC_SEND_START": "7h30"}, "DONDOC_SEND_START='7h30': giờ “7h30” không hợp lệ"),
    ({"DONDOC_NOTIFY_HOURS": "7-17"}, "DONDOC_NOTIFY_HOURS"),
    ({"DONDOC_SMTP_PORT": "abc"}, "DONDOC_SMTP_PORT='abc': phải là số nguyên"),
    ({"DONDOC_SMTP_SECURITY": "ssl"}, "chỉ nhận"),
    ({"DONDOC_SEND_START": "18:00"}, "phải sau giờ bắt đầu"),
    ({"DONDOC_TRACKING_START": "2026-13-01"}, "DONDOC_TRACKING_START"),
])
def test_malformed_value_is_one_vietnamese_message_naming_the_variable(env: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(env, file=None)
    assert fragment in str(exc.value)
    assert "Input should" not in str(exc.value) and "validation error" not in str(exc.value)


def test_malformed_file_value_names_the_file_and_key(tmp_path) -> None:
    cfg = toml(tmp_path, '[delivery]\nsend_start = "7h30"\n')
    with pytest.raises(ConfigError) as exc:
        load_settings({}, file=cfg)
    assert str(cfg) in str(exc.value) and "[delivery] send_start" in str(exc.value)


def test_every_listed_variable_reaches_a_field() -> None:
    """The table of names is the contract: each name must land somewhere in the model."""
    samples = {"url": "sqlite:///x.db", "dir": "/tmp", "tracking_start": "2026-11-01", "host": "h", "port": "2525",
               "security": "tls", "validate_certs": "false", "username": "u", "password": "p",
               "allow_plaintext_auth": "true", "from_addr": "a@b.vn", "from_name": "N", "reply_to": "r@b.vn",
               "concurrency": "2", "timeout": "5", "helo": "h.local", "pickup_dir": "/tmp/m", "send_start": "08:00",
               "send_end": "16:00", "hours": "08:00-16:00", "max_attempts": "3", "backoff_first_s": "60",
               "backoff_max_s": "600", "webhook_concurrency": "2", "webhook_timeout": "3", "templates_dir": "/tmp/t",
               "evaluate_hour": "6", "deliver_every_minutes": "5", "lease_ttl_seconds": "9", "watch_interval": "2",
               "standby_poll": "3", "format": "json", "level": "DEBUG", "digest_max_items": "10",
               "serve": "false", "public_url": "https://dondoc.example.vn", "secret": "s" * 32,
               "stop_reminders_at": "acceptance", "link_days": "7", "upload_dir": "/tmp/u", "max_upload_mb": "5",
               "session_hours": "2", "cookie_secure": "true", "login_attempts": "3", "cafile": "/tmp/ca.pem",
               "folder": "Bao-cao", "done_keyword": "xong", "move_to": "Da-xu-ly", "every_minutes": "10",
               "batch": "50", "max_message_mb": "20"}
    by_name = {"DONDOC_INBOX_SECURITY": "starttls"}      # "tls" is the mailbox's default
    defaults = load_settings({}, file=None)
    for name, (section, key) in ENV.items():
        s = load_settings({name: by_name.get(name, samples[key])}, file=None)
        assert getattr(s, section) != getattr(defaults, section), name


@pytest.mark.parametrize("argv", [["rules", "check"], ["doctor"], ["run", "--once"], ["status"], ["notify"]])
def test_bad_setting_is_a_message_and_exit_2_from_every_command(monkeypatch, tmp_path, argv) -> None:
    from engine.app.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DONDOC_SEND_START", "7h30")
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 2, res.output
    assert "DONDOC_SEND_START" in res.output and "Traceback" not in res.output
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit)


def test_the_documented_file_loads(tmp_path) -> None:
    """docs/operations.md shows a dondoc.toml: it must be one the program accepts."""
    import re

    doc = (Path(__file__).resolve().parent.parent / "docs" / "operations.md").read_text(encoding="utf-8")
    s = load_settings({}, file=toml(tmp_path, re.search(r"```toml\n(.*?)```", doc, re.S).group(1)))
    assert s.smtp.security == "starttls" and s.smtp.effective_port == 587 and s.log.format == "json"
