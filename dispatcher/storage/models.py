"""Database tables, as typed SQLAlchemy 2 models.

All times are stored as timezone-aware UTC (`UtcDateTime`), on SQLite too, and
shown in the county's timezone only at the edges. Rows that record what
happened (alerts, notifications, receipts, audit events) are never deleted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from dispatcher.states import UNRANKED, AlertKind, NotificationStatus, TimerStatus

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on every database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; pass UTC-aware times")
        value = value.astimezone(UTC)
        # SQLite stores text without offsets: store naive UTC there
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# BIGINT on PostgreSQL, INTEGER (rowid alias, autoincrement) on SQLite
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime(),
        dict[str, Any]: JSON(),
    }


class Zone(Base):
    """A geohazard point, synchronised from the county configuration."""

    __tablename__ = "zones"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    township: Mapped[str] = mapped_column(String(64), index=True)
    village: Mapped[str] = mapped_column(String(64), default="")
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    risk_level: Mapped[str] = mapped_column(String(16))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    point_id: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime]

    roles: Mapped[list[ZoneRole]] = relationship(back_populates="zone")


class Person(Base):
    """Someone who can be notified: zone people and the bureau's duty staff."""

    __tablename__ = "people"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(32))
    duty_role: Mapped[str | None] = mapped_column(String(32))  # duty_officer, leader_on_duty
    active: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime]


class ZoneRole(Base):
    """Who holds which role (防灾责任人, 监测责任人, 群测群防员 …) at a zone."""

    __tablename__ = "zone_roles"

    zone_id: Mapped[str] = mapped_column(ForeignKey("zones.id"), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), primary_key=True)

    zone: Mapped[Zone] = relationship(back_populates="roles")
    person: Mapped[Person] = relationship()


class ForecastRun(Base):
    """One fetch of one feed: what, when, from where, and whether it was usable."""

    __tablename__ = "forecast_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    ok: Mapped[bool]
    points: Mapped[int] = mapped_column(default=0)
    hours: Mapped[int] = mapped_column(default=0)
    variables: Mapped[list[str]] = mapped_column(JSON, default=list)
    first_time: Mapped[datetime | None]
    last_time: Mapped[datetime | None]
    checksum: Mapped[str | None] = mapped_column(String(64))  # sha256 of the parsed arrays
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_forecast_runs_source_finished", "source", "finished_at"),)


class Alert(Base):
    """One episode of one hazard at one zone (or one system condition), or an event.

    States: firing → acknowledged → resolved; a level change marks the old row
    `superseded` and opens a new one that points back to it.

    An event (`kind` event, no zone) is what the bureau handles: the hazard
    alerts of one hazard that opened in one poll and those that joined while it
    was open (`event_id` on theirs). It keeps one code from start to end: its
    `level` is the highest of its open zone alerts, changed in place, and
    `epoch` counts those changes (each restarts its escalation, so its timers
    and messages carry it).
    """

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)  # short code for SMS replies
    kind: Mapped[str] = mapped_column(String(16), default=AlertKind.HAZARD)
    zone_id: Mapped[str | None] = mapped_column(ForeignKey("zones.id"))
    hazard: Mapped[str] = mapped_column(String(64))
    rule_id: Mapped[str] = mapped_column(String(128))
    title: Mapped[str] = mapped_column(String(128), default="")
    level: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))  # an AlertState
    onset: Mapped[datetime | None]
    until: Mapped[datetime | None]
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    opened_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    calm_since: Mapped[datetime | None]  # below the open level since (hold timer)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))
    closed_at: Mapped[datetime | None]
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"))
    forecast_run_id: Mapped[int | None] = mapped_column(ForeignKey("forecast_runs.id"))
    # a hazard alert's event (an alert of kind event); None on events and system alerts
    # checked at commit: a poll writes its zone alerts naming the event it opens after them
    event_id: Mapped[int | None] = mapped_column(
        ForeignKey("alerts.id", deferrable=True, initially="DEFERRED"), index=True
    )
    epoch: Mapped[int] = mapped_column(default=0, server_default="0")
    # who issued the official warning a relayed alert repeats (CAP senderName); "" otherwise
    authority: Mapped[str] = mapped_column(String(200), default="", server_default="")

    __table_args__ = (Index("ix_alerts_state_zone_hazard", "state", "zone_id", "hazard"),)


class AlertFacts(Protocol):
    """What the opening of an alert reads of it: its columns, read-only.

    An `Alert` is one; so is the lightweight row a poll opens thousands of
    alerts with (`dispatcher.alerts.lifecycle.OpenedAlert`), inserted without
    an ORM object each.
    """

    @property
    def id(self) -> int: ...
    @property
    def code(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def zone_id(self) -> str | None: ...
    @property
    def hazard(self) -> str: ...
    @property
    def rule_id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def level(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def onset(self) -> datetime | None: ...
    @property
    def until(self) -> datetime | None: ...
    @property
    def evidence(self) -> dict[str, Any]: ...
    @property
    def event_id(self) -> int | None: ...
    @property
    def epoch(self) -> int: ...
    @property
    def authority(self) -> str: ...


class Notification(Base):
    """The outbox: one message to one recipient on one channel, sent at least once.

    Written in the same transaction as the alert transition it announces; the
    delivery worker claims due rows, sends, and records the outcome.
    """

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"), index=True)
    transition: Mapped[str] = mapped_column(String(16))
    person_id: Mapped[str | None] = mapped_column(ForeignKey("people.id"))
    recipient_name: Mapped[str] = mapped_column(String(64), default="")
    address: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=NotificationStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    provider_id: Mapped[str | None] = mapped_column(String(64), index=True)
    error_code: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(Text)
    # the notification this one replaces after it failed for good (SMS → voice …)
    failover_of_id: Mapped[int | None] = mapped_column(ForeignKey("notifications.id"))
    # whom a group post @-mentions (platform ids); None on rows to people and villages
    mentions: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # failed for good with no other way left, not yet settled (dispatcher.outbox.giveup):
    # the undelivered system alert counts it; it is sent again when its channel recovers
    gave_up_at: Mapped[datetime | None] = mapped_column(index=True)
    # times it was sent again after being given up (spaces those retries out)
    recovery_retries: Mapped[int] = mapped_column(default=0, server_default="0")
    # the claim order when a rate limit binds, set when the row is created from its
    # alert's level (states.priority_of): red 0, orange 1, yellow 2, blue 3
    priority: Mapped[int] = mapped_column(
        SmallInteger, default=UNRANKED, server_default=str(UNRANKED)
    )

    __table_args__ = (
        Index("ix_notifications_status_due", "status", "next_attempt_at"),
        # the claim of fresh due rows reads this in order (outbox.claim)
        Index("ix_notifications_claim", "status", "priority", "next_attempt_at", "id"),
    )


class Receipt(Base):
    """A provider's report about a sent message (e.g. a Twilio status callback)."""

    __tablename__ = "receipts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    notification_id: Mapped[int | None] = mapped_column(ForeignKey("notifications.id"), index=True)
    provider_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    error_code: Mapped[str | None] = mapped_column(String(32))
    received_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class InboundMessage(Base):
    """A provider's inbound message (an SMS reply) once handled, by its provider id.

    A signed reply replayed later (the same MessageSid) is answered as it was
    the first time and changes nothing.
    """

    __tablename__ = "inbound_messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider_id: Mapped[str] = mapped_column(String(64), unique=True)
    sender: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime]
    answer: Mapped[str] = mapped_column(Text)


class ReceivedWarning(Base):
    """A CAP message received from an official source, with what became of it.

    `state`: in_force (an Alert or Update in force), superseded (by an Update),
    cancelled (by a Cancel), cancel (a Cancel itself), expired (expired when
    received: nothing applied), ignored (not an actual warning: a Test,
    Exercise, Ack …) or refused (unreadable or invalid: `reason` says why).
    `infos` holds its parsed `<info>` blocks (event, level, times, areas).
    Rows are never deleted; the same bytes twice are one row (`digest`).
    """

    __tablename__ = "received_warnings"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the bytes
    source: Mapped[str] = mapped_column(String(500))
    received_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    identifier: Mapped[str | None] = mapped_column(String(255))
    sender: Mapped[str | None] = mapped_column(String(255))
    sent: Mapped[datetime | None]
    msg_type: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str | None] = mapped_column(String(16))
    references: Mapped[list[str]] = mapped_column(JSON, default=list)
    infos: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    ended_at: Mapped[datetime | None]
    ended_by_id: Mapped[int | None] = mapped_column(ForeignKey("received_warnings.id"))
    body: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_received_warnings_sender_identifier", "sender", "identifier"),)


class AuditEvent(Base):
    """Append-only, hash-chained record of everything that happened.

    `hash` = sha256(prev_hash + canonical JSON of this event), so an edited,
    deleted or inserted row breaks the chain from that row on.
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))  # system, scheduler, person id, …
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(128), default="")  # alert:12, notification:7
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


# --- duty console (issue 5): accounts and login sessions -------------------------


class User(Base):
    """A duty-console account: a name, an argon2 password hash and a role.

    Roles: admin, duty (both may acknowledge), viewer (read only). `person_id`
    links the account to a person of people.yaml, so a console acknowledgement
    counts as that person's; it is checked against the configuration when the
    account is made, not by a foreign key, because people rows are only synced
    when the daemon starts and the first account is made before that.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))  # admin | duty | viewer
    person_id: Mapped[str | None] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(default=True)
    failed_logins: Mapped[int] = mapped_column(default=0)  # consecutive; reset on success
    locked_until: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ConsoleSession(Base):
    """One login: the cookie carries a random token; only its sha256 is stored here."""

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the token
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]  # logout


# --- issue 5: escalation and acknowledgement (dispatcher/escalation/,
# dispatcher/alerts/acknowledge.py) ------------------------------------------


class EscalationTimer(Base):
    """One step of an alert's escalation policy, due at a time; a durable timer.

    Every step (and every repeat of a step) and the acknowledgement deadline get
    their own row when the alert opens, with what to do in `plan` (targets,
    channels, the text), so a restart or another instance runs them as they were
    planned. `escalate_due` claims due rows (lease; SKIP LOCKED on PostgreSQL);
    an acknowledgement, a resolution or a supersession cancels the pending ones.
    """

    __tablename__ = "escalation_timers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # a TimerKind
    step: Mapped[int] = mapped_column(default=0)  # index in the policy's steps
    round: Mapped[int] = mapped_column(default=0)  # 0 first time, 1.. repeats
    epoch: Mapped[int] = mapped_column(default=0, server_default="0")  # the alert's, when planned
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default=TimerStatus.PENDING)
    lease_until: Mapped[datetime | None]
    plan: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_escalation_timers_status_due", "status", "due_at"),
        UniqueConstraint("alert_id", "kind", "step", "round", "epoch"),
    )


class Acknowledgement(Base):
    """Someone acknowledged an alert: who, when, how (sms, voice, link, console, cli)."""

    __tablename__ = "acknowledgements"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    person_id: Mapped[str | None] = mapped_column(ForeignKey("people.id"))
    actor: Mapped[str] = mapped_column(String(128))  # person id, console user, phone …
    method: Mapped[str] = mapped_column(String(16))
    role: Mapped[str | None] = mapped_column(String(32))  # the role they hold for this alert
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime]


# --- issue 13: leadership follows progress (dispatcher/leader.py) -----------------


class LeaderLease(Base):
    """Who leads the scheduler on PostgreSQL: a lease its holder keeps renewing.

    One row per led role (`name`, "scheduler"). `epoch` grows by one at every
    takeover and fences every leader-only write: a transaction of the scheduler
    commits only if the epoch it was granted is still the row's. Times are the
    database's clock (`now()`), so instance clocks do not matter.
    """

    __tablename__ = "leader_leases"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))  # host:pid of the instance
    epoch: Mapped[int] = mapped_column(BigInteger)
    acquired_at: Mapped[datetime]
    renewed_at: Mapped[datetime]
    expires_at: Mapped[datetime]


__all__ = [
    "NAMING_CONVENTION",
    "Acknowledgement",
    "Alert",
    "AlertFacts",
    "AuditEvent",
    "Base",
    "ConsoleSession",
    "EscalationTimer",
    "ForecastRun",
    "InboundMessage",
    "LeaderLease",
    "Notification",
    "Person",
    "Receipt",
    "User",
    "UtcDateTime",
    "Zone",
    "ZoneRole",
]
