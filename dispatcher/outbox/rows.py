"""The row side of the outbox: how a notification row is added, keyed and clipped.

Every outbox row is added by `enqueue`, in the caller's transaction (the one
that records the alert transition, escalation step or failover it announces),
and carries the idempotency key `idempotency_key` spells:
``alert:transition:recipient:channel``, where the recipient is a person's id
or, for an audience that is not a person, ``village:<township>/<village>`` or
``group:<name>``. The key makes a row unique: the same message to the same
recipient on the same channel is never queued twice, and failover uses it to
see whether a way was already tried.

Inside a held-rows batch (`dispatcher.storage.held`: a poll's commit),
`enqueue` holds the row's values to be inserted with the others at the end
and returns them as a `HeldRow`; both it and a `Notification` read as a
`QueuedRow`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from sqlalchemy.orm import Session

from dispatcher.states import NotificationStatus, priority_of
from dispatcher.storage import held
from dispatcher.storage.models import Alert, Notification

OnFailed = Callable[[Session, Notification, str, datetime], object]
"""Called in the recording transaction when a row failed for good (see dispatcher.failover)."""

# Column widths in `Notification`; a provider's over-long value must not make
# the outcome's transaction fail (the row would then be re-sent on lease expiry).
ERROR_CODE_WIDTH: Final = 32
PROVIDER_ID_WIDTH: Final = 64


class Addressee(Protocol):
    """Whom a row goes to: a routed `Recipient` or `Audience`, or a failover target.

    `person_id` is None for an audience that is not a person (a village, a group).
    """

    @property
    def person_id(self) -> str | None: ...
    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str: ...


class AboutAlert(Protocol):
    """What a row reads of the alert it tells of: an `Alert`, an alert a poll opened
    (`AlertFacts`) or one it closes by its columns alone."""

    @property
    def id(self) -> int: ...
    @property
    def level(self) -> str: ...


class QueuedRow(Protocol):
    """What a caller reads of a row `enqueue` added: a `Notification` or a `HeldRow`."""

    @property
    def idempotency_key(self) -> str: ...
    @property
    def alert_id(self) -> int | None: ...
    @property
    def transition(self) -> str: ...
    @property
    def person_id(self) -> str | None: ...
    @property
    def recipient_name(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def mentions(self) -> list[str] | None: ...


# Not frozen: a province's cold front builds one or more per alert, tens of thousands,
# and a frozen dataclass sets each field through object.__setattr__ (twice the cost).
# Nothing changes one once built; none is hashed (`mentions` is a list).
@dataclass(slots=True)
class HeldRow:
    """An outbox row held for a batch insert (no id until it is written)."""

    idempotency_key: str
    alert_id: int | None
    transition: str
    person_id: str | None
    recipient_name: str
    address: str
    channel: str
    body: str
    mentions: list[str] | None


def idempotency_key(alert_id: int | None, transition: str, person_id: str, channel: str) -> str:
    """The key of the row telling `person_id` about `transition` of an alert on `channel`."""
    return f"{alert_id}:{transition}:{person_id}:{channel}"


def enqueue(
    session: Session,
    alert: Alert | None,
    transition: str,
    recipient: Addressee,
    channel: str,
    body: str,
    now: datetime,
    *,
    failover_of: Notification | None = None,
    audience: str | None = None,
    mentions: Sequence[str] = (),
) -> Notification:
    """Add one pending outbox row, due now, to the caller's transaction; does not commit.

    Its idempotency key is alert:transition:recipient:channel, the recipient
    being the person's id or, for an addressee that is no person, `audience`
    (`village:…`, `group:…`). `alert` is None only when failing over a row
    that announces no alert; `failover_of` is the row this one replaces after
    it failed for good; `mentions` are whom a group post @-mentions.
    """
    values = _values(alert, transition, recipient, channel, body, now, audience, mentions)
    row = Notification(**values, failover_of_id=failover_of.id if failover_of is not None else None)
    session.add(row)
    return row


def queue(
    session: Session,
    alert: AboutAlert,
    transition: str,
    recipient: Addressee,
    channel: str,
    body: str,
    now: datetime,
    *,
    audience: str | None = None,
    mentions: Sequence[str] = (),
) -> QueuedRow:
    """`enqueue` a row about `alert`; inside a held-rows batch, held for the batch's
    insert (no ORM object, no flush), else added as a `Notification`."""
    values = _values(alert, transition, recipient, channel, body, now, audience, mentions)
    values["failover_of_id"] = None  # a fresh dict: no copy of it for this one column
    if held.hold(session, Notification, values):
        return HeldRow(
            values["idempotency_key"],
            values["alert_id"],
            transition,
            values["person_id"],
            values["recipient_name"],
            values["address"],
            channel,
            body,
            values["mentions"],
        )
    row = Notification(**values)
    session.add(row)
    return row


def _values(
    alert: AboutAlert | None,
    transition: str,
    recipient: Addressee,
    channel: str,
    body: str,
    now: datetime,
    audience: str | None,
    mentions: Sequence[str],
) -> dict[str, Any]:
    alert_id = alert.id if alert is not None else None
    who = recipient.person_id if recipient.person_id is not None else audience
    if who is None:
        raise ValueError(f"a row to {recipient.name!r}, who is no person, needs its audience key")
    return {
        "idempotency_key": idempotency_key(alert_id, transition, who, channel),
        "alert_id": alert_id,
        "transition": transition,
        "person_id": recipient.person_id,
        "recipient_name": recipient.name,
        "address": recipient.address,
        "channel": channel,
        "body": body,
        "status": NotificationStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "mentions": list(mentions) if mentions else None,
        # the claim order when a rate limit binds (outbox.claim)
        "priority": priority_of(alert.level if alert is not None else None),
    }


def clip(value: str | None, width: int) -> str | None:
    """`value` cut to fit a column `width` characters wide."""
    return value[:width] if value is not None else None
