"""How long the mailbox reader takes for a batch of 1,000 messages (issue 14).

    .venv/bin/python benchmarks/bench_inbox.py [--messages 1000] [--runs 3]

Real parts: a throw-away dovecot on loopback (tests/imapserver.py, over TLS with certificate
validation), the seed rules with 2026 synced on a SQLite file, one evaluation and one delivery pass
(real digests with their Message-IDs). The batch mixes what a reporting mailbox receives: replies
to digests with a signed PDF (recorded "chờ xác nhận"), reports by sender and subject, mail from
unknown senders (queued), auto-replies (ignored). Each run reads all of them with one
``reader.fetch`` (``--batch`` = the count), on a fresh database and mailbox. Prints the medians.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.app import services  # noqa: E402
from engine.app.inbox import reader  # noqa: E402
from tests.imapserver import ImapServer  # noqa: E402
from tests.test_inbox_imap import PDF, at, message, with_inbox  # noqa: E402
from tests.web_support import Console  # noqa: E402


def batch(con: Console, n: int) -> list[bytes]:
    import sqlalchemy as sa

    from engine.app.services import open_session
    from engine.state import DeliveryRow

    with open_session(con.settings) as ses:
        digests = ses.execute(sa.select(DeliveryRow.recipient, DeliveryRow.message_id)
                              .where(DeliveryRow.status == "sent")).all()
    out = []
    for i in range(n):
        unit, mid = digests[i % len(digests)]
        contact = con.pack.units[unit].contacts[0]
        kind = i % 4
        if kind == 0:
            out.append(message(contact, "RE: nhắc báo cáo", msgid=f"<r{i}@donvi.vn>", reply_to=mid,
                               body=f"Gửi kèm báo cáo số {i}/BC.", files=[(f"BC {i}.pdf", PDF * 200, "application/pdf")]))
        elif kind == 1:
            out.append(message(contact, "Báo cáo tháng 11/2026 kết quả thực hiện Kế hoạch hành động thực hiện "
                               "Nghị quyết 57-NQ/TW", msgid=f"<s{i}@donvi.vn>"))
        elif kind == 2:
            out.append(message(f"nguoi-{i}@gmail.com", f"Thư số {i}", msgid=f"<u{i}@gmail.com>"))
        else:
            out.append(message(contact, "Trả lời tự động: vắng mặt", msgid=f"<a{i}@donvi.vn>",
                               headers={"Auto-Submitted": "auto-replied"}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    server = ImapServer().start()
    rows = []
    try:
        for run in range(args.runs):
            tmp = Path(tempfile.mkdtemp(prefix="bench-inbox-"))
            con = Console(tmp)
            services.evaluate(con.settings.database.url, con.pack, con.now, con.settings)
            services.deliver(con.settings.database.url, con.pack, con.now, con.settings)
            account = server.new_account()
            raws = batch(con, args.messages)
            t = time.perf_counter()
            for raw in raws:
                account.append(raw, internal_date=at("2026-12-03T09:00"))
            appended = time.perf_counter() - t
            s = with_inbox(con, server, account, DONDOC_INBOX_BATCH=str(args.messages))
            t = time.perf_counter()
            rep = reader.fetch(s, con.pack, at("2026-12-03T14:00"))
            took = time.perf_counter() - t
            assert rep.read == args.messages, rep.summary()
            rows.append((took, rep.recorded, rep.queued, rep.ignored, appended))
            print(f"run {run + 1}: {took:.2f} s for {rep.read} messages ({rep.read / took:.0f}/s); recorded "
                  f"{rep.recorded}, queued {rep.queued}, ignored {rep.ignored}; appending them took {appended:.1f} s",
                  flush=True)
    finally:
        server.stop()
    med = statistics.median(r[0] for r in rows)
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"median of {len(rows)} runs: {med:.2f} s for {args.messages} messages "
          f"({args.messages / med:.0f} messages/s, {med / args.messages * 1000:.1f} ms each)")


if __name__ == "__main__":
    main()
