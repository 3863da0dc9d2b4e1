"""Who was told about an alert: the people and the audiences its messages were meant for.

An alert that ends, or is replaced by one of another level, tells everyone
who heard of it: `notified_people` (each person once) and `told_audiences`
(each village and group once, on the channel it was told on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher.county import County
from dispatcher.routing import Recipient
from dispatcher.states import NotificationStatus
from dispatcher.storage import held
from dispatcher.storage.models import Alert, Notification

__all__ = ["Told", "notified_people", "told_audiences", "told_of"]

# alert ids per IN (…): well within SQLite's and PostgreSQL's parameter limits
_CHUNK = 1000


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
    for many alerts in one query per thousand."""
    out: dict[int, tuple[list[Recipient], list[tuple[str, str, str, str]]]] = {
        alert_id: ([], []) for alert_id in alert_ids
    }
    seen: dict[int, set[str]] = {alert_id: set() for alert_id in alert_ids}
    audiences: dict[int, dict[tuple[str, str], tuple[str, str, str, str]]] = {
        alert_id: {} for alert_id in alert_ids
    }
    held.write(session)
    ids = list(dict.fromkeys(alert_ids))
    for start in range(0, len(ids), _CHUNK):
        rows = session.execute(
            select(
                Notification.alert_id,
                Notification.person_id,
                Notification.idempotency_key,
                Notification.recipient_name,
                Notification.address,
                Notification.channel,
                Notification.failover_of_id,
            )
            .where(
                Notification.alert_id.in_(ids[start : start + _CHUNK]),
                Notification.status != NotificationStatus.CANCELLED,
            )
            .order_by(Notification.id)
        ).all()
        for alert_id, person_id, key, name, address, channel, failover_of in rows:
            assert alert_id is not None
            if person_id is not None:
                if county is None or person_id in seen[alert_id]:
                    continue
                seen[alert_id].add(person_id)
                person = county.people.get(person_id)
                out[alert_id][0].append(
                    Recipient(person.id, person.name, person.phone, "notified")
                    if person is not None
                    else Recipient(person_id, name, address, "notified")
                )
            elif failover_of is None:
                # the key is alert:transition:<audience>:channel; neither transition nor
                # channel holds a ':', the audience (village:…, group:…) does
                audience = key.split(":", 2)[2].rsplit(":", 1)[0]
                audiences[alert_id].setdefault(
                    (audience, channel), (audience, name, address, channel)
                )
    for alert_id, told in audiences.items():
        out[alert_id][1].extend(told.values())
    return out
