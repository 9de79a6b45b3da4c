"""Notifications: one digest per recipient per run, by e-mail (aiosmtplib), .eml pickup folder, webhooks (Apprise).

Entry points: ``notifications.delivery.deliver(db, pack, now, smtp=…, delivery=…)`` (the pass, as
stages), ``notifications.admin.send_rules_alert``, and ``notifications.templates.check_templates``
for ``dondoc rules check``. The commands live in engine/app/cli/notify.py. Design and the
exactly-once analysis: notifications/README.md.
"""
