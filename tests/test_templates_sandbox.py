"""Editable mail templates cannot run code (issue 10.8).

The secretariat may edit the templates, so a template is untrusted: rendered in Jinja2's immutable
sandbox, ``{{ cycler.__init__.__globals__.os.popen(…) }}`` is refused by ``dondoc rules check``
(file and line) and never runs when a digest is sent.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import jinja2
import pytest
from typer.testing import CliRunner

from engine.clock import TZ
from engine.db import session
from engine.sync import sync_instances
from notifications.config import DeliveryConfig, SmtpConfig
from notifications.delivery import deliver
from notifications.render import Renderer, check_templates
from tests.support import add_notice, instance

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=TZ)


def payload(marker: Path) -> str:
    return "{{ cycler.__init__.__globals__.os.popen('touch " + str(marker) + "').read() }}"


def evil_dir(tmp_path: Path, marker: Path) -> Path:
    d = tmp_path / "mau-thu"
    d.mkdir()
    (d / "digest.txt.j2").write_text("Kính gửi {{ recipient.name }},\n\n" + payload(marker) + "\n", encoding="utf-8")
    return d


def test_the_payload_is_live_outside_the_sandbox(tmp_path) -> None:
    """Guard for the tests below: the same text in a plain Jinja2 environment does run a command."""
    marker = tmp_path / "ran"
    jinja2.Environment().from_string(payload(marker)).render()
    assert marker.exists()


def test_check_templates_rejects_code_execution_with_file_and_line(tmp_path) -> None:
    marker = tmp_path / "ran"
    errors = check_templates(evil_dir(tmp_path, marker))
    assert not marker.exists()
    [err] = [e for e in errors if "không được phép" in str(e)]
    assert err.file.endswith("digest.txt.j2") and err.line == 3, err


def test_rules_check_command_refuses_the_template(tmp_path, monkeypatch) -> None:
    from engine.app.cli import app

    marker = tmp_path / "ran"
    monkeypatch.setenv("DONDOC_TEMPLATES_DIR", str(evil_dir(tmp_path, marker)))
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    res = CliRunner().invoke(app, ["rules", "check"])
    assert res.exit_code != 0, res.output
    assert "digest.txt.j2" in res.output and "không được phép" in res.output, res.output
    assert not marker.exists()


def test_delivery_never_runs_it_and_keeps_the_digest(tmp_path, sqlite_url, minipack) -> None:
    marker = tmp_path / "ran"
    with session(sqlite_url) as s:
        sync_instances(s, minipack, NOW.replace(hour=7))
        add_notice(s, instance(s, "nam-skhcn", "skhcn", "2026"), "remind-3")
        s.commit()
    out = tmp_path / "out"
    rep = deliver(sqlite_url, minipack, NOW, smtp=SmtpConfig(host=None, pickup_dir=out), delivery=DeliveryConfig(),
                  renderer=Renderer(evil_dir(tmp_path, marker)))
    assert not marker.exists()
    assert rep.sent == 0 and rep.retry == 1 and not out.exists()


def test_shipped_templates_render_in_the_sandbox() -> None:
    assert check_templates(None) == []


@pytest.mark.parametrize("text", ["{{ ''.__class__.__mro__ }}", "{% set x = [] %}{{ x.append(1) }}",
                                  "{{ recipient.__dict__ }}"])
def test_other_escapes_are_refused(tmp_path, text) -> None:
    d = tmp_path / "t"
    d.mkdir()
    (d / "digest.subject.j2").write_text(text, encoding="utf-8")
    assert any(e.line == 1 and e.file.endswith("digest.subject.j2") for e in check_templates(d))
