"""In-process test servers: an aiosmtpd SMTP recorder and a loopback HTTP receiver for webhooks.

Used by tests/test_notify_*.py and benchmarks/bench_smtp.py (aiosmtpd is a test dependency).
"""

from __future__ import annotations

import asyncio
import email
import json
import os
import signal
import socket
import threading
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    helo: str = ""                  # the client's HELO/EHLO name
    tls: bool = False               # the transaction ran over TLS (STARTTLS)

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


@dataclass
class RecordingHandler:
    """Records every accepted message; answers scripted codes per recipient.

    ``script[address]`` is a list of replies for that recipient's next RCPT commands ("451 …",
    "421 …", "550 …"; ``None`` = accept); ``always[address]`` answers every RCPT. ``delay`` slows
    every DATA (seconds) before the message is accepted. ``kill_pid``/``kill_after``: SIGKILL that
    process at the start of a transaction once ``kill_after`` messages were accepted and no other
    connection is between an accepted message and its next command (see the crash test).
    """

    script: dict[str, list[str | None]] = field(default_factory=dict)
    always: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    keep: bool = True
    kill_pid: int | None = None
    kill_after: int | None = None
    messages: list[Received] = field(default_factory=list)
    count: int = 0
    killed_at: int | None = None
    _window: dict[int, bool] = field(default_factory=dict)   # connection → accepted, next command not seen
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self._window[id(session)] = False
        if (self.kill_pid and self.kill_after is not None and self.killed_at is None and self.count >= self.kill_after
                and not any(v for k, v in self._window.items() if k != id(session))):
            self.killed_at = self.count
            os.kill(self.kill_pid, signal.SIGKILL)
            return "421 shutting down"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self._lock:
            queue = self.script.get(address)
            reply = queue.pop(0) if queue else None
        reply = reply or self.always.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        with self._lock:
            self.count += 1
            if self.keep:
                self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content),
                                              session.host_name or "", session.ssl is not None))
        self._window[id(session)] = True
        return "250 2.0.0 Message accepted for delivery"

    async def handle_RSET(self, server, session, envelope):
        self._window[id(session)] = False
        return "250 OK"

    async def handle_QUIT(self, server, session, envelope):
        self._window.pop(id(session), None)
        return "221 Bye"

    def message_ids(self) -> list[str]:
        return [m.message_id for m in self.messages]


def self_signed_cert(directory) -> tuple[str, str]:
    """(certfile, keyfile) for CN=localhost / 127.0.0.1, made with the openssl command."""
    import subprocess
    from pathlib import Path

    d = Path(directory)
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return str(cert), str(key)


def starttls_controller(handler, certfile: str, keyfile: str, **kwargs) -> "EphemeralController":
    """An aiosmtpd server that offers STARTTLS with the given certificate (and requires it)."""
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certfile, keyfile)
    return EphemeralController(handler, tls_context=ctx, require_starttls=True, **kwargs)


class EphemeralController(Controller):
    """aiosmtpd Controller on 127.0.0.1; port 0 picks a free port (read back after binding)."""

    def __init__(self, handler, port: int = 0, **kwargs):
        super().__init__(handler, hostname="127.0.0.1", port=port, **kwargs)

    def _trigger_server(self):
        if not self.port:
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def written_emls(directory) -> list:
    """The .eml files a running sender has finished in its pickup folder, in name order (the one
    being written is a hidden ".tmp-….eml", renamed when complete: notifications/transport.write_eml)."""
    from pathlib import Path

    return sorted(p for p in Path(directory).glob("*.eml") if not p.name.startswith("."))


def free_port() -> int:
    """A port nothing listens on (for "server down" scenarios)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebhookReceiver:
    """ThreadingHTTPServer on loopback recording JSON POST bodies; ``fail`` = HTTP codes to answer first;
    ``delay`` seconds before answering; ``max_active`` = most requests seen in progress at once."""

    def __init__(self, delay: float = 0.0) -> None:
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        self.fail: list[int] = []
        self.delay = delay
        self.active = self.max_active = 0
        lock = threading.Lock()
        receiver = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                with lock:
                    receiver.active += 1
                    receiver.max_active = max(receiver.max_active, receiver.active)
                try:
                    if receiver.delay:
                        import time

                        time.sleep(receiver.delay)
                    self._answer()
                finally:
                    with lock:
                        receiver.active -= 1

            def _answer(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                code = receiver.fail.pop(0) if receiver.fail else 200
                if code == 200:
                    receiver.bodies.append(json.loads(raw.decode("utf-8")))
                    receiver.paths.append(self.path)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        # A short poll: shutdown() waits up to one poll interval (0.5 s by default) at every exit.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "WebhookReceiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()



# ---------------------------------------------------------------------------------------------
# Scenario helpers: notices written directly (no dependency on the evaluator)

_KIND = {"escalation": "escalation", "due-today": "due_today"}


def add_notice(ses, inst, stage: str, recipient: str | None = None, as_of=None, now=None):
    """A NoticeRow as evaluation would write it (key obligation|unit|period|stage|recipient)."""
    from datetime import datetime as _dt

    from engine.clock import TZ
    from engine.state import NoticeRow

    recipient = recipient or inst.unit
    kind = _KIND.get(stage) or ("overdue" if stage.startswith("overdue") else "reminder")
    now = now or _dt(2026, 11, 25, 7, 0, tzinfo=TZ)
    row = NoticeRow(key=f"{inst.obligation}|{inst.unit}|{inst.period}|{stage}|{recipient}", instance_id=inst.id,
                    obligation=inst.obligation, unit=inst.unit, period=inst.period, stage=stage, kind=kind,
                    recipient=recipient, as_of=as_of or now.date(), created_at=now)
    ses.add(row)
    ses.flush()
    return row


def instance(ses, obligation: str, unit: str, period: str):
    from sqlmodel import select

    from engine.state import InstanceRow

    row = ses.exec(select(InstanceRow).where(InstanceRow.obligation == obligation, InstanceRow.unit == unit,
                                             InstanceRow.period == period)).one()
    return row


def write_units_pack(target, n_units: int, *, yearly_title: str = "Báo cáo năm về Sở KH&CN") -> None:
    """A pack directory with ``n_units`` reporting units (u0001…) owing one yearly report due 30/11."""
    from pathlib import Path

    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    (target / "pack.yaml").write_text(
        "pack:\n  id: bench\n  name: \"Gói đo hiệu năng\"\n  tracking_start: 2026-01-01\n  admin_contact: vp\n"
        "  check_from: 2026-01-01\n  check_until: 2026-12-31\nreminder_policies:\n  - id: mac-dinh\n", encoding="utf-8")
    lines = ["units:", "  - id: vp", "    name: \"Văn phòng Tỉnh ủy\"", "    kind: van_phong", "    contacts: [vp@example.org]"]
    for i in range(1, n_units + 1):
        lines += [f"  - id: u{i:04d}", f"    name: \"Ủy ban nhân dân xã số {i}\"", "    kind: ubnd",
                  f"    contacts: [u{i:04d}@example.org]"]
    lines += ["groups:", "  - id: tat-ca", "    name: \"Tất cả\"",
              "    members: [" + ", ".join(f"u{i:04d}" for i in range(1, n_units + 1)) + "]"]
    (target / "units.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (target / "obligations.yaml").write_text(
        "obligations:\n  - id: nam\n    title: \"" + yearly_title + "\"\n"
        "    basis: {document: \"Hướng dẫn Sở KH&CN\", section: \"III.1\"}\n    kind: dinh_ky\n    reporters: [tat-ca]\n"
        "    recipient: vp\n    recurrence: {freq: yearly}\n    cutoff: {day: 14, month: 11}\n"
        "    due: {rule: before_date, day: 1, month: 12, roll: forward}\n", encoding="utf-8")


def one_page_pdf(text: str = "Bao cao nam 2026 - So Tai chinh") -> bytes:
    """A real one-page PDF (correct cross-reference offsets): the file a unit attaches."""
    stream = f"BT /F1 14 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def check_migration(db_url: str, tables: tuple[str, ...], models: dict[str, type], down_to: str):
    """A migration creates exactly what the models declare for ``tables`` (Alembic's autogenerate
    comparison finds nothing about them; each model's table has exactly its fields), downgrades to
    ``down_to`` and upgrades again. A generator: it yields one inspector after the downgrade, for
    the caller's own checks (``for down in check_migration(...): assert ...``)."""
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import inspect
    from sqlmodel import SQLModel

    import engine.state  # noqa: F401  (the tables)
    from engine.db import alembic_config, make_engine, migrate

    def ours(diff) -> bool:
        return any(getattr(x, "name", x) in tables or getattr(getattr(x, "table", None), "name", None) in tables
                   for t in (diff if isinstance(diff, list) else [diff]) for x in t[1:])

    migrate(db_url)
    eng = make_engine(db_url)
    try:
        with eng.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
        assert [d for d in diffs if ours(d)] == []
        for table, model in models.items():
            assert {c["name"] for c in inspect(eng).get_columns(table)} == set(model.model_fields)
        command.downgrade(alembic_config(db_url), down_to)
        yield inspect(eng)
        command.upgrade(alembic_config(db_url), "head")
        for table in models:
            assert inspect(eng).has_table(table)
    finally:
        eng.dispose()


class Plans:
    """Every SELECT a block issues, with SQLite's plan for it (EXPLAIN QUERY PLAN, same parameters)."""

    def __init__(self, db: Path | None) -> None:
        self.db, self.seen = db, []

    def _record(self, conn, cursor, statement, params, context, executemany) -> None:
        if not executemany and statement.lstrip().upper().startswith(("SELECT", "WITH")):
            self.seen.append((statement, params))

    def __enter__(self) -> "Plans":
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.listen(Engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.remove(Engine, "before_cursor_execute", self._record)

    def plans(self) -> list[tuple[str, str]]:
        import sqlite3

        assert self.db is not None
        with sqlite3.connect(self.db) as raw:
            return [(" ".join(sql.split()), "; ".join(r[3] for r in raw.execute("EXPLAIN QUERY PLAN " + sql, params)))
                    for sql, params in self.seen]
