"""Who was told about an alert: the people and the audiences its messages were meant for.

An alert that ends, or is replaced by one of another level, tells everyone
who heard of it: `notified_people` (each person once) and `told_audiences`
(each village and group once, on the channel it was told on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher.county import County
from dispatcher.routing import Recipient
from dispatcher.states import NotificationStatus
from dispatcher.storage import held
from dispatcher.storage.models import Alert, Notification

__all__ = ["AlertRef", "Told", "notified_people", "told_audiences", "told_of"]

# alert ids per IN (…): well within SQLite's and PostgreSQL's parameter limits
_CHUNK = 1000


class AlertRef(Protocol):
    """What closing an alert reads of it: an `Alert`, or only its columns (a province's
    all-clear closes tens of thousands without an ORM object each)."""

    @property
    def id(self) -> int: ...
    @property
    def code(self) -> str: ...
    @property
    def level(self) -> str: ...


@dataclass(frozen=True)
class Told:
    """An audience told before (a village, a group), as its rows name it."""

    name: str
    address: str

    @property
    def person_id(self) -> None:
        return None


def told_audiences(session: Session, alert: Alert) -> list[tuple[str, str, str, str]]:
    """(audience key, name, address, channel) of each village and group told, each once."""
    return told_of(session, [alert.id], None)[alert.id][1]


def notified_people(session: Session, alert: Alert, county: County) -> list[Recipient]:
    """Everyone a message about `alert` was meant for (not cancelled), each once."""
    return told_of(session, [alert.id], county)[alert.id][0]


def told_of(
    session: Session, alert_ids: Sequence[int], county: County | None
) -> dict[int, tuple[list[Recipient], list[tuple[str, str, str, str]]]]:
    """Per alert: `notified_people` (with `county`; without, none) and `told_audiences`,
    for many alerts in one query per thousand.

    Read as plain rows of the table (no ORM row per message: an all-clear reads
    every message of the cold front), each person's `Recipient` built once.
    """
    out: dict[int, tuple[list[Recipient], list[tuple[str, str, str, str]]]] = {
        alert_id: ([], []) for alert_id in alert_ids
    }
    seen: dict[int, set[str]] = {alert_id: set() for alert_id in alert_ids}
    audiences: dict[int, dict[tuple[str, str], tuple[str, str, str, str]]] = {}
    # a person's Recipient, the same for every alert that told them
    known: dict[str, Recipient] = {}
    held.write(session)
    session.flush()  # statements on the tables do not flush the session themselves
    ids = list(dict.fromkeys(alert_ids))
    table = _NOTIFICATIONS
    columns = select(
        table.c.alert_id,
        table.c.person_id,
        table.c.idempotency_key,
        table.c.recipient_name,
        table.c.address,
        table.c.channel,
        table.c.failover_of_id,
    )
    for start in range(0, len(ids), _CHUNK):
        rows = session.execute(
            columns.where(
                table.c.alert_id.in_(ids[start : start + _CHUNK]),
                table.c.status != NotificationStatus.CANCELLED,
            ).order_by(table.c.id)
        )
        for alert_id, person_id, key, name, address, channel, failover_of in rows:
            if person_id is not None:
                if county is None or person_id in seen[alert_id]:
                    continue
                seen[alert_id].add(person_id)
                recipient = known.get(person_id)
                if recipient is None:
                    person = county.people.get(person_id)
                    recipient = (
                        Recipient(person.id, person.name, person.phone, "notified")
                        if person is not None
                        else Recipient(person_id, name, address, "notified")
                    )
                    if person is not None:
                        # a person no longer configured keeps each row's own name
                        known[person_id] = recipient
                out[alert_id][0].append(recipient)
            elif failover_of is None:
                # the key is alert:transition:<audience>:channel; neither transition nor
                # channel holds a ':', the audience (village:…, group:…) does
                audience = key.split(":", 2)[2].rsplit(":", 1)[0]
                audiences.setdefault(alert_id, {}).setdefault(
                    (audience, channel), (audience, name, address, channel)
                )
    for alert_id, told in audiences.items():
        out[alert_id][1].extend(told.values())
    return out


_NOTIFICATIONS = Notification.metadata.tables[Notification.__tablename__]
