"""Delivery state: the unit of delivery is the digest (one message per recipient and route).

``deliveries`` holds one row per digest; ``delivery_items`` links each notice to the digests it
went out in. A notice may go out by e-mail and, for units that list webhooks, to each webhook:
``(notice_id, route)`` is unique, so the database itself forbids putting a notice into two
digests of the same route (e.g. by two overlapping runs). The ``notices`` table of engine/state.py
is not altered: its status/attempts/sent_at/message_id columns are kept as a summary.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

# Delivery status: pending → sent | retry → … → sent | failed; or dropped (every item became moot).
PENDING, RETRY, SENT, FAILED, DROPPED = "pending", "retry", "sent", "failed", "dropped"
OPEN_STATUSES = (PENDING, RETRY)

STATUS_VI = {
    PENDING: "Chờ gửi",
    RETRY: "Chờ gửi lại",
    SENT: "Đã gửi",
    FAILED: "Gửi không thành công",
    DROPPED: "Không gửi (không còn cần nhắc)",
}


class DeliveryRow(SQLModel, table=True):
    """One digest to one recipient over one route (``email``, ``webhook:<hash>``, ``none``)."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_status_next", "status", "next_attempt_at"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    key: str = Field(max_length=120, unique=True)           # route|recipient|content hash
    recipient: str = Field(max_length=80, index=True)
    channel: str = Field(max_length=12)                      # email | webhook | none
    route: str = Field(max_length=40)
    target: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))  # webhook URL
    message_id: str = Field(max_length=200, unique=True)    # deterministic, reused on every retry
    status: str = Field(default=PENDING, max_length=12)
    attempts: int = 0
    next_attempt_at: Optional[datetime] = None
    last_error: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime
    updated_at: datetime
    sent_at: Optional[datetime] = None
    subject: Optional[str] = None
    # A try ended in a way that leaves it unknown whether the server kept the message (timeout or
    # disconnect during the transaction): never merge new notices into it, keep its Message-ID.
    maybe_sent: bool = False


class DeliveryItemRow(SQLModel, table=True):
    """A notice inside a digest; ``dropped`` when it became moot before the digest went out."""

    __tablename__ = "delivery_items"
    __table_args__ = (UniqueConstraint("notice_id", "route", name="uq_delivery_item_route"),)

    delivery_id: int = Field(foreign_key="deliveries.id", primary_key=True)
    notice_id: int = Field(foreign_key="notices.id", primary_key=True, index=True)
    route: str = Field(max_length=40)
    dropped: bool = False
