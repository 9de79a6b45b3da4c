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


# --- the sandbox's remembered verdicts (render._Sandbox) ------------------------------------------


def _probes():
    """Objects of every kind Jinja's check distinguishes, and the names that matter for each."""
    import collections
    import types

    def fn():
        return None

    class Plain:
        def method(self):
            return None

    class Spoof:                           # says it is a list: isinstance() believes __class__
        __class__ = list  # type: ignore[assignment]

    gen = (i for i in ())
    objs = [fn, Plain().method, Plain, Plain(), [], {}, set(), collections.deque(), "x", 1, gen,
            fn.__code__, types.SimpleNamespace(), Spoof(), cycler_like := jinja2.utils.Cycler(1, 2)]
    names = ["append", "pop", "update", "clear", "add", "mro", "func_globals", "__globals__", "gi_frame",
             "gi_code", "f_globals", "co_code", "upper", "items", "keys", "method", "next", "reset",
             "current", "_private", "__init__", "__class__", "real", "popitem", "extend"]
    return [(o, n) for o in objs for n in names], cycler_like


def test_remembered_verdicts_are_jinjas_own_even_after_an_abc_registration() -> None:
    """Every (object, name) asked twice of the memoised sandbox gets Jinja's answer; a type that
    becomes a MutableSequence by registration afterwards loses ``append`` at once."""
    import collections.abc

    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env, ref = Renderer().env, ImmutableSandboxedEnvironment()
    probes, _ = _probes()
    for _ in range(2):
        for obj, name in probes:
            value = getattr(obj, name, None)
            assert env.is_safe_attribute(obj, name, value) == ref.is_safe_attribute(obj, name, value), (obj, name)

    class Bag:
        def append(self, x):
            return None

    bag = Bag()
    assert env.is_safe_attribute(bag, "append", bag.append)           # remembered: safe
    collections.abc.MutableSequence.register(Bag)
    assert not ref.is_safe_attribute(bag, "append", bag.append)
    assert not env.is_safe_attribute(bag, "append", bag.append)       # the memo did not outlive it


def test_a_warm_sandbox_still_refuses_the_payload(tmp_path) -> None:
    """After a full digest rendered through it (the memo filled), the same environment still
    refuses the escape and the mutation."""
    from jinja2.exceptions import SecurityError

    r = Renderer()
    probes, _ = _probes()
    for obj, name in probes:
        r.env.is_safe_attribute(obj, name, getattr(obj, name, None))
    marker = tmp_path / "ran"
    for _ in range(2):
        with pytest.raises(SecurityError):
            r.env.from_string(payload(marker)).render(cycler=jinja2.utils.Cycler(1))
        with pytest.raises(SecurityError):
            r.env.from_string("{{ xs.append(1) }}").render(xs=[])
    assert not marker.exists()
