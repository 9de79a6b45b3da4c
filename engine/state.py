"""State database tables (SQLModel). Schema changes go through Alembic (engine/migrations)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Optional

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class UnitRow(SQLModel, table=True):
    """A copy of the rules' unit directory, so reports and audit survive rule edits."""
    __tablename__ = "units"
    id: str = Field(primary_key=True, max_length=80)
    name: str
    kind: str = Field(max_length=20)
    contacts: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    supervisor: Optional[str] = Field(default=None, max_length=80)
    valid_from: Optional[date] = None
    valid_until: Optional[date] = None
    successor: Optional[str] = Field(default=None, max_length=80)
    updated_at: datetime


class InstanceRow(SQLModel, table=True):
    """One (obligation, unit, period): what is owed, by when, and what happened."""
    __tablename__ = "instances"
    __table_args__ = (
        UniqueConstraint("obligation", "unit", "period", name="uq_instance"),
        Index("ix_instances_open_due", "closed", "active", "due"),
        # The open, active instances in the order of the notices' keys: an evaluation pass reads
        # them in this order (engine/open_items.py) so its notices are inserted in key order, and
        # everything else it reads of them is in the index too (no lookup in the table: 0013). The
        # index is partial (WHERE closed = 0 AND active = 1); that clause is in migrations 0010 and
        # 0013 only: declared here per dialect it would import SQLAlchemy's PostgreSQL dialect in
        # every command (≈40 ms), and Alembic's comparison does not look at it.
        Index("ix_instances_open_key", "obligation", "unit", "period", "due", "chase_paused", "exhausted_rules",
              "exhausted_on", "id", "closed", "active"),
        # The console reads instances by due day: a year, this week, from today (0016). Without an
        # index leading on ``due`` every page read every year's rows (at 20 years of a province
        # 250,000 instances: the overview 224 ms, the matrix 232). A unit's and a report's pages
        # read one year of one unit / report.
        Index("ix_instances_due", "due"),
        Index("ix_instances_unit_due", "unit", "due"),
        Index("ix_instances_obligation_due", "obligation", "due"),
        # The daily sync reads a report's few periods from today on (engine/sync.py, by_period):
        # the unique key has the unit between them, so it read the report's every year (0016).
        Index("ix_instances_obligation_period", "obligation", "period"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    obligation: str = Field(max_length=80)
    unit: str = Field(max_length=80)
    period: str = Field(max_length=40)
    period_label: str
    period_start: date
    period_end: date
    cutoff_start: Optional[date] = None
    cutoff_end: Optional[date] = None
    due: date
    due_at: datetime
    recipient: str = Field(max_length=80)
    inherited_from: str = Field(default="")
    active: bool = True             # False: the rules no longer ask for it (kept for history)
    closed: bool = False            # submitted or waived: nothing more to chase
    submitted_on: Optional[date] = None
    submission_ref: Optional[str] = None
    waived: bool = False
    # A unit said "đã gửi" from its reminder's link (0007): the day it gave, until the secretariat
    # accepts (closed) or returns it (cleared). ``chase_paused``: its reminders stop meanwhile
    # (web.stop_reminders_at = "confirmation", decided when the unit confirmed).
    awaiting_since: Optional[date] = None
    chase_paused: bool = False
    # Nothing left to send under the rules whose exhaustion marker this is, from this day on: the
    # evaluation pass no longer reads it (engine/open_items.py; 0011). Written only by the pass.
    exhausted_rules: Optional[str] = Field(default=None, max_length=32)
    exhausted_on: Optional[date] = None
    rules_version: str = Field(default="", max_length=64)
    created_at: datetime
    updated_at: datetime


class SubmissionRow(SQLModel, table=True):
    """Every recorded submission, corrections included (the newest active one counts)."""
    __tablename__ = "submissions"
    id: Optional[int] = Field(default=None, primary_key=True)
    instance_id: int = Field(foreign_key="instances.id", index=True)
    submitted_on: date
    ref: Optional[str] = None       # số ký hiệu văn bản
    note: Optional[str] = None
    active: bool = True
    recorded_at: datetime
    recorded_by: str = "cli"


class WaiverRow(SQLModel, table=True):
    __tablename__ = "waivers"
    id: Optional[int] = Field(default=None, primary_key=True)
    instance_id: int = Field(foreign_key="instances.id", index=True)
    reason: str
    active: bool = True
    recorded_at: datetime
    recorded_by: str = "cli"


class NoticeRow(SQLModel, table=True):
    """The outbox. `key` makes every notice idempotent: (obligation, unit, period, stage, recipient)."""
    __tablename__ = "notices"
    __table_args__ = (
        Index("ix_notices_status_next", "status", "next_attempt_at"),
        # The KPI notices (no instance) by subject and stage: a pass reads the stages of today's
        # slipping items only, not every KPI notice ever written (engine/pipeline.py). Partial
        # (WHERE instance_id IS NULL): that clause is in migration 0014 only, as for
        # ix_instances_open_key above.
        Index("ix_notices_kpi_subject", "obligation", "unit", "period", "stage"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    key: str = Field(max_length=400, unique=True)
    instance_id: Optional[int] = Field(default=None, foreign_key="instances.id", index=True)
    obligation: str = Field(max_length=80)
    unit: str = Field(max_length=80)
    period: str = Field(max_length=40)
    stage: str = Field(max_length=40)
    kind: str = Field(max_length=20)
    recipient: str = Field(max_length=80)     # not indexed: nothing looks notices up by it (0011)
    wd_before: int = 0
    wd_late: int = 0
    as_of: date
    created_at: datetime
    status: str = Field(default="pending", max_length=12)   # pending | sent | retry | failed | dropped
    attempts: int = 0
    next_attempt_at: Optional[datetime] = None
    last_error: Optional[str] = None
    sent_at: Optional[datetime] = None
    message_id: Optional[str] = None


class AuditRow(SQLModel, table=True):
    """Who changed what: submissions, corrections, waivers, sync moves."""
    __tablename__ = "audit_log"
    id: Optional[int] = Field(default=None, primary_key=True)
    at: datetime
    actor: str
    action: str = Field(max_length=40)
    entity: str = Field(max_length=40)
    entity_id: str = Field(max_length=200)
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class LeaseRow(SQLModel, table=True):
    """Who runs the scheduler on this database (SQLite; PostgreSQL uses an advisory lock)."""
    __tablename__ = "leases"
    name: str = Field(primary_key=True, max_length=40)
    holder: str = Field(max_length=200)
    expires_at: float


# Delivery state (written by notifications/, migrated with the rest of state.db).
# Status: pending → sent | retry → … → sent | failed; or dropped (every item became moot).
PENDING, RETRY, SENT, FAILED, DROPPED = "pending", "retry", "sent", "failed", "dropped"


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
    file_name: Optional[str] = Field(default=None, max_length=200)   # pickup folder: the .eml written (0006)


class DeliveryItemRow(SQLModel, table=True):
    """A notice inside a digest; ``dropped`` when it became moot before the digest went out."""

    __tablename__ = "delivery_items"
    __table_args__ = (UniqueConstraint("notice_id", "route", name="uq_delivery_item_route"),)

    delivery_id: int = Field(foreign_key="deliveries.id", primary_key=True)
    notice_id: int = Field(foreign_key="notices.id", primary_key=True, index=True)
    route: str = Field(max_length=40)
    dropped: bool = False


class InstallationRow(SQLModel, table=True):
    """Go-live: the day dondoc first worked on this database, written once and never overwritten
    (engine.sync.record_installation), and the tracking start the last sync used, so the evaluation
    (KPI items included) chases exactly what the instance table tracks. One row, id 1."""
    __tablename__ = "installation"
    id: int = Field(default=1, primary_key=True)
    installed_on: date                                   # local day of the first start
    installed_at: datetime
    tracking_start: Optional[date] = None                # in force at the last sync (None: no sync yet)
    tracking_source: Optional[str] = Field(default=None, max_length=20)   # config | installation | pack
    updated_at: Optional[datetime] = None
    # What the last sync worked from (0012), so the next one with the same rules reads and generates
    # only what can have changed since (engine/sync.py): its day, the end of its horizon, a digest
    # of what instance generation depends on, and how many instances the rules asked for then.
    synced_on: Optional[date] = None
    synced_until: Optional[date] = None
    synced_rules: Optional[str] = Field(default=None, max_length=64)
    synced_instances: Optional[int] = None


# ─── the web console (0007) ─────────────────────────────────────────────────────────────────────
class UserRow(SQLModel, table=True):
    """A secretariat account: ``thu-ky`` records, waives, retries and edits; ``lanh-dao`` reads."""
    __tablename__ = "users"
    id: Optional[int] = Field(default=None, primary_key=True)
    username: str = Field(max_length=80, unique=True)
    full_name: str = Field(default="", max_length=200)
    role: str = Field(max_length=20)
    password_hash: str = Field(sa_column=Column(Text, nullable=False))   # Argon2id (argon2-cffi)
    active: bool = True
    created_at: datetime
    updated_at: datetime
    last_login_at: Optional[datetime] = None


class WebSessionRow(SQLModel, table=True):
    """A login: the cookie holds a random token, the database only its SHA-256 (a leaked backup
    does not log anyone in); logout or disabling the account ends it at once."""
    __tablename__ = "web_sessions"
    token_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="users.id", index=True)
    csrf: str = Field(max_length=64)
    created_at: datetime
    expires_at: datetime
    revoked: bool = False


class UnitLinkRow(SQLModel, table=True):
    """The signed link in one digest: one unit and the items of that digest, until it expires or is
    revoked. One per (digest, unit), so a retried digest carries the same link."""
    __tablename__ = "unit_links"
    __table_args__ = (UniqueConstraint("delivery_id", "unit", name="uq_unit_link_delivery"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    unit: str = Field(max_length=80, index=True)
    delivery_id: Optional[int] = Field(default=None, foreign_key="deliveries.id")
    instance_ids: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    nonce: str = Field(max_length=32)
    purpose: str = Field(default="digest", max_length=20)    # digest | returned
    created_at: datetime
    expires_at: datetime
    revoked_at: Optional[datetime] = None


class ConfirmationRow(SQLModel, table=True):
    """A unit's "đã gửi" for one instance, waiting for the secretariat: accepted (a submission is
    recorded with the date given) or returned with a reason (the unit is told, with a fresh link)."""
    __tablename__ = "confirmations"
    id: Optional[int] = Field(default=None, primary_key=True)
    instance_id: int = Field(foreign_key="instances.id", index=True)
    unit: str = Field(max_length=80, index=True)
    link_id: Optional[int] = Field(default=None, foreign_key="unit_links.id")
    submitted_on: date
    ref: Optional[str] = None
    note: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))
    state: str = Field(default="pending", max_length=12, index=True)     # pending | accepted | returned (0016)
    created_at: datetime
    decided_at: Optional[datetime] = None
    decided_by: Optional[str] = Field(default=None, max_length=80)
    reason: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))
    submission_id: Optional[int] = Field(default=None, foreign_key="submissions.id")
    inbound_id: Optional[int] = Field(default=None, index=True)   # the mail it came from (0009)


class AttachmentRow(SQLModel, table=True):
    """A report file: stored under a generated name (never the client's path), with its SHA-256."""
    __tablename__ = "attachments"
    id: Optional[int] = Field(default=None, primary_key=True)
    instance_id: int = Field(foreign_key="instances.id", index=True)
    unit: str = Field(max_length=80)
    confirmation_id: Optional[int] = Field(default=None, foreign_key="confirmations.id", index=True)   # 0016
    submission_id: Optional[int] = Field(default=None, foreign_key="submissions.id")
    filename: str = Field(max_length=255)            # as the sender named it: shown, never used as a path
    stored_name: str = Field(max_length=80, unique=True)
    content_type: str = Field(max_length=120)
    size: int
    sha256: str = Field(max_length=64, index=True)
    created_at: datetime
    created_by: str = Field(max_length=80)


# ─── reports that arrive by e-mail (0009) ───────────────────────────────────────────────────────
class InboundMailRow(SQLModel, table=True):
    """One message read from the reporting mailbox, once (``message_id`` is the dedup key: the
    Message-ID, or ``sha256:…`` of the raw bytes when it has none). ``state``: recorded (matched,
    its items "chờ xác nhận"), queued (cần phân loại), ignored (auto-reply, bounce), assigned or
    dismissed by a secretary. The raw message is kept on disk under ``stored_name`` (evidence)."""
    __tablename__ = "inbound_mails"
    # A tab of the inbox lists its mails newest first: in this order within each state, a page is
    # read off the index instead of sorting every mail the tab ever had (0016).
    __table_args__ = (Index("ix_inbound_mails_state_received", "state", "received_at", "id"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=300, unique=True)
    raw_sha256: str = Field(max_length=64, index=True)
    raw_size: int
    stored_name: Optional[str] = Field(default=None, max_length=80)
    folder: str = Field(default="INBOX", max_length=200)
    uid: Optional[int] = None
    received_at: datetime
    sender: str = Field(default="", max_length=320)
    sender_name: str = Field(default="", max_length=200)
    subject: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    state: str = Field(default="queued", max_length=12)
    via: str = Field(default="none", max_length=10)          # reply | sender | none
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    ref: Optional[str] = Field(default=None, max_length=80)  # số ký hiệu found in the mail
    units: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    candidates: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))  # [[instance id, score]]
    files: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))       # what was attached
    problems: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    created_at: datetime
    decided_at: Optional[datetime] = None
    decided_by: Optional[str] = Field(default=None, max_length=80)


# ─── versions of the rule folder (0008) ─────────────────────────────────────────────────────────
class RuleVersionRow(SQLModel, table=True):
    """One content of the live rules folder, as applied from the console or the command line, or
    found there after a hand edit (author unknown): who, when, why, the diff from the previous
    version and the whole folder ({relative path: text}), so any version can be restored."""
    __tablename__ = "rule_versions"
    id: Optional[int] = Field(default=None, primary_key=True)
    number: int = Field(unique=True)                         # 1, 2, 3 … what people call it
    content_hash: str = Field(max_length=64, index=True)     # SHA-256 of the folder's files (paths and bytes)
    kind: str = Field(max_length=20)                         # initial | apply | restore | hand_edit
    author: str = Field(max_length=200)
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    base_number: Optional[int] = None                        # the version the change was made on
    restored_from: Optional[int] = None                      # kind restore: the version brought back
    created_at: datetime
    diff: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    files: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
