"""One message to the secretariat's admin contact when an edited rule set is invalid.

The daemon calls this once per distinct broken version of the files (not at every check). It is
sent straight away, with a few quick retries; when the mail server stays down the failure is
logged and the daemon carries on with the last good rules (the alert is advisory: nothing a unit
owes depends on it).
"""

from __future__ import annotations

import asyncio
import html
import logging
from datetime import datetime

from engine.errors import RulePackInvalid
from engine.rules_loader import RulePack
from notifications.mime import address, build_email, envelope_address, message_id_for, to_bytes
from notifications.render import Rendered
from notifications.config import SmtpConfig
from notifications.retry import backoff
from notifications.transport import EmailJob, InsecureLogin, smtp_client, write_eml

log = logging.getLogger("dondoc.admin")


def render_alert(exc: RulePackInvalid, fingerprint: str, now: datetime, last_good: str | None) -> Rendered:
    lines = [f"• {e}" for e in exc.errors[:50]]
    more = f"\n… và {len(exc.errors) - 50} lỗi khác." if len(exc.errors) > 50 else ""
    keep = f"phiên bản {last_good}" if last_good else "bộ quy tắc hợp lệ gần nhất"
    text = (f"Kính gửi bộ phận quản trị,\n\nLúc {now:%H:%M ngày %d/%m/%Y}, bộ quy tắc vừa sửa không hợp lệ "
            f"({len(exc.errors)} lỗi). Hệ thống vẫn chạy theo {keep} cho đến khi các lỗi được sửa.\n\n"
            + "\n".join(lines) + more +
            "\n\nSau khi sửa, chạy `dondoc rules check` để kiểm tra; hệ thống tự nạp lại khi tệp hợp lệ.\n"
            f"(Mã phiên bản lỗi: {fingerprint})\n")
    body = "".join(f"<li>{html.escape(str(e))}</li>" for e in exc.errors[:50])
    html_text = (f"<p>Kính gửi bộ phận quản trị,</p><p>Lúc {now:%H:%M ngày %d/%m/%Y}, bộ quy tắc vừa sửa "
                 f"<strong>không hợp lệ</strong> ({len(exc.errors)} lỗi). Hệ thống vẫn chạy theo {html.escape(keep)} "
                 f"cho đến khi các lỗi được sửa.</p><ul>{body}</ul>{html.escape(more)}"
                 "<p>Sau khi sửa, chạy <code>dondoc rules check</code> để kiểm tra; hệ thống tự nạp lại khi tệp hợp lệ.</p>"
                 f"<p><small>Mã phiên bản lỗi: {fingerprint}</small></p>")
    return Rendered(subject=f"[dondoc] Bộ quy tắc không hợp lệ: {len(exc.errors)} lỗi – đang dùng bản hợp lệ gần nhất",
                    text=text, html=html_text, chat=text)


def send_rules_alert(pack: RulePack, exc: RulePackInvalid, fingerprint: str, now: datetime,
                     smtp: SmtpConfig) -> bool:
    """True when the alert was accepted by the server (or written to the pickup folder)."""
    admin = pack.units.get(pack.info.admin_contact or "")
    if admin is None or not admin.contacts:
        log.error("no admin contact with an e-mail address in the pack: rules alert not sent")
        return False
    domain = (smtp.from_addr or "dondoc@localhost").split("@")[-1]
    key = f"rules-invalid|{fingerprint}"
    sender_addr = smtp.from_addr or f"dondoc@{domain}"
    msg = build_email(render_alert(exc, fingerprint, now, pack.version), delivery_key=key,
                      message_id=message_id_for(key, domain), sender=address(smtp.from_name, sender_addr),
                      to=[address(admin.name, a) for a in admin.contacts], reply_to=None, date=now)
    job = EmailJob(delivery_id=0, message_id=msg["Message-ID"], sender=envelope_address(sender_addr),
                   recipients=[envelope_address(a) for a in admin.contacts], data=to_bytes(msg))
    if not smtp.host:
        return write_eml(smtp.pickup_dir, job).kind == "sent"
    try:
        asyncio.run(_send_with_retries(smtp, job))
        return True
    except Exception as e:           # incl. InsecureLogin: never the password in clear, not retried
        log.error("rules alert to %s not sent: %s", admin.id, e)
        return False


async def _send_with_retries(smtp: SmtpConfig, job: EmailJob, attempts: int = 3) -> None:
    """A few quick tries on the same backoff schedule as digests (0.5 s, 1 s …, capped at 4 s)."""
    for attempt in range(1, attempts + 1):
        client = smtp_client(smtp)           # InsecureLogin: raised before any connection
        try:
            async with client:
                await client.sendmail(job.sender, job.recipients, job.data)
            return
        except Exception:
            if attempt == attempts:
                raise
            await asyncio.sleep(backoff(attempt, 0.5, 4).total_seconds())
