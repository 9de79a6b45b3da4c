"""Delivery state: the unit of delivery is the digest (one message per recipient and route).

``deliveries`` holds one row per digest; ``delivery_items`` links each notice to the digests it
went out in. A notice may go out by e-mail and, for units that list webhooks, to each webhook:
``(notice_id, route)`` is unique, so the database itself forbids putting a notice into two
digests of the same route (e.g. by two overlapping runs). The ``notices`` table of engine/state.py
is not altered: its status/attempts/sent_at/message_id columns are kept as a summary.
"""

from __future__ import annotations

from engine.vi import DELIVERY_STATUS
from engine.state import DROPPED, FAILED, PENDING, RETRY, SENT, DeliveryItemRow, DeliveryRow

__all__ = ["DeliveryItemRow", "DeliveryRow", "DROPPED", "FAILED", "PENDING", "RETRY", "SENT", "OPEN_STATUSES", "STATUS_VI"]

OPEN_STATUSES = (PENDING, RETRY)

STATUS_VI = DELIVERY_STATUS
