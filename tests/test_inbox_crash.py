"""The reader killed (SIGKILL) at random points of a batch of 100 messages, then restarted, until
a run finishes: every message recorded once, none left unprocessed, and — checked after every
kill — no message marked done on the server without its committed row.

Real parts: dovecot on loopback (tests/imapserver.py), `dondoc inbox fetch` in its own process on
a SQLite file. The messages mix replies to real digests (recorded "chờ xác nhận"), reports by
sender and subject, mail from unknown senders (queued) and auto-replies (ignored).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import sqlalchemy as sa
from sqlmodel import select

from engine.app import services
from engine.app.services import open_session
from engine.state import ConfirmationRow, DeliveryRow, InboundMailRow
from tests.conftest import ROOT
from tests.test_inbox_imap import KEYWORD, at, inbox_env, message
from tests.web_support import Console

pytestmark = pytest.mark.slow
N = 100


def batch(con: Console) -> list[bytes]:
    with open_session(con.settings) as ses:
        digests = ses.execute(sa.select(DeliveryRow.recipient, DeliveryRow.message_id)
                              .where(DeliveryRow.status == "sent").order_by(DeliveryRow.id)).all()
    out: list[bytes] = []
    for n, (unit, mid) in enumerate(digests[:40]):
        out.append(message(con.pack.units[unit].contacts[0], "RE: nhắc báo cáo", msgid=f"<reply-{n}@donvi.vn>",
                           reply_to=mid, body=f"Gửi kèm báo cáo số {n + 1}/BC."))
    for n in range(N - len(out)):
        if n % 3 == 0:
            out.append(message(f"ai-do-{n}@gmail.com", f"Thư số {n}", msgid=f"<stranger-{n}@gmail.com>"))
        elif n % 3 == 1:
            unit = digests[n % len(digests)][0]
            out.append(message(con.pack.units[unit].contacts[0], "Tự động trả lời: vắng mặt",
                               msgid=f"<ooo-{n}@donvi.vn>", headers={"Auto-Submitted": "auto-replied"}))
        else:
            out.append(message(f"khac-{n}@donvi.vn", f"Báo cáo tháng 11/2026 số {n}", msgid=f"<other-{n}@donvi.vn>"))
    return out


def rows(con: Console) -> set[str]:
    with open_session(con.settings) as ses:
        return set(ses.execute(sa.select(InboundMailRow.message_id)).scalars().all())


def test_sigkill_at_random_points_then_restart_records_each_message_once(tmp_path, imap_server, imap_account) -> None:
    con = Console(tmp_path)
    services.evaluate(con.settings.database.url, con.pack, con.now, con.settings)
    assert services.deliver(con.settings.database.url, con.pack, con.now, con.settings).sent >= 40
    raws = batch(con)
    for raw in raws:
        imap_account.append(raw, internal_date=at("2026-12-03T09:00"))
    env = {**os.environ, "DONDOC_DATABASE_URL": con.settings.database.url, "DONDOC_RULES_DIR": str(con.settings.rules.dir),
           "DONDOC_CALENDAR_DIR": str(con.settings.calendar.dir), "DONDOC_TRACKING_START": "2026-01-01",
           "DONDOC_WEB_UPLOAD_DIR": str(con.settings.web.upload_dir), "DONDOC_NOW": "2026-12-03T14:00",
           **inbox_env(imap_server, imap_account)}
    cmd = [sys.executable, "-m", "engine.cli", "inbox", "fetch"]
    rng = random.Random(20261203)
    kills, mid_batch, finished = 0, 0, False
    for attempt in range(40):
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if attempt < 30:
            # wait until the reader has begun (rows growing, or a first start), then kill at a random moment
            start, base = time.monotonic(), len(rows(con))
            delay = rng.uniform(0.0, 0.3)
            while proc.poll() is None and time.monotonic() - start < 30:
                if len(rows(con)) > base:
                    break
                time.sleep(0.02)
            time.sleep(delay)
        if attempt < 30 and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            done = rows(con)
            if 0 < len(done) < N:
                mid_batch += 1
            flagged = {m.message_id for m in imap_account.messages() if KEYWORD in m.flags}
            assert flagged <= done, f"marked done before its commit: {flagged - done}"
            continue
        out, errs = proc.communicate(timeout=120)
        assert proc.returncode == 0, errs.decode()
        assert b"Traceback" not in errs
        if not [m for m in imap_account.messages() if KEYWORD not in m.flags]:
            finished = True
            break
    assert finished and kills >= 5 and mid_batch >= 3, (kills, mid_batch)
    msgs = imap_account.messages()
    assert len(msgs) == N and all(KEYWORD in m.flags and "\\Seen" not in m.flags for m in msgs)
    with open_session(con.settings) as ses:
        got = ses.execute(sa.select(InboundMailRow.message_id, InboundMailRow.state)).all()
        confs = ses.exec(select(ConfirmationRow).where(ConfirmationRow.inbound_id != None)).all()  # noqa: E711
    assert len(got) == N and {m for m, _ in got} == {m.message_id for m in msgs}
    states = Counter(s for _, s in got)
    assert states["ignored"] == sum(1 for n in range(N - 40) if n % 3 == 1)
    assert states["recorded"] >= 30                      # the replies to digests with open items
    per_instance = Counter(c.instance_id for c in confs)
    assert all(v == 1 for v in per_instance.values())    # never a second "đã gửi" for the same report
    assert all(c.state == "pending" for c in confs)
