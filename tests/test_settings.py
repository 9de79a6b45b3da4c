"""Configuration precedence and the secrets-only-from-environment rule."""

import pytest

from engine.settings import ConfigFileError, Settings


def test_file_then_environment(tmp_path, monkeypatch) -> None:
    cfg = tmp_path / "dondoc.toml"
    cfg.write_text('database_url = "sqlite:///from-file.db"\nsmtp_host = "mail.example.org"\nsmtp_port = 587\n', encoding="utf-8")
    monkeypatch.setenv("DONDOC_CONFIG", str(cfg))
    monkeypatch.setenv("DONDOC_SMTP_PORT", "2525")
    monkeypatch.setenv("DONDOC_SMTP_PASSWORD", "bí-mật")
    s = Settings()
    assert s.database_url == "sqlite:///from-file.db"
    assert (s.smtp_host, s.smtp_port) == ("mail.example.org", 2525)   # environment wins
    assert s.smtp_password == "bí-mật" and "bí-mật" not in repr(s)


def test_secret_in_config_file_is_rejected(tmp_path, monkeypatch) -> None:
    cfg = tmp_path / "dondoc.toml"
    cfg.write_text('smtp_password = "lộ"\n', encoding="utf-8")
    monkeypatch.setenv("DONDOC_CONFIG", str(cfg))
    with pytest.raises(ConfigFileError, match="DONDOC_SMTP_PASSWORD"):
        Settings()
