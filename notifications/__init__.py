"""Notifications: one digest per recipient per run, by e-mail (aiosmtplib) and webhooks (Apprise).

Entry points: ``notifications.delivery.deliver(db, pack, now)`` (the pass), the ``dondoc notify``
and ``dondoc outbox`` commands (notifications/cli.py), and ``notifications.templates.check_templates``
for ``dondoc rules check``. Design and the exactly-once analysis: notifications/README.md.
"""
