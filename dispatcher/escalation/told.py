"""Who was told about an alert: the people and the audiences its messages were meant for.

An alert that ends, or is replaced by one of another level, tells everyone
who heard of it: `notified_people` (each person once) and `told_audiences`
(each village and group once, on the channel it was told on).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher.county import County
from dispatcher.routing import Recipient
from dispatcher.states import NotificationStatus
from dispatcher.storage.models import Alert, Notification

__all__ = ["Told", "notified_people", "told_audiences"]


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
    rows = session.execute(
        select(
            Notification.idempotency_key,
            Notification.recipient_name,
            Notification.address,
            Notification.channel,
        )
        .where(
            Notification.alert_id == alert.id,
            Notification.status != NotificationStatus.CANCELLED,
            Notification.person_id.is_(None),
            Notification.failover_of_id.is_(None),
        )
        .order_by(Notification.id)
    ).all()
    out: dict[tuple[str, str], tuple[str, str, str, str]] = {}
    for key, name, address, channel in rows:
        # the key is alert:transition:<audience>:channel; neither transition nor
        # channel holds a ':', the audience (village:…, group:…) does
        audience = key.split(":", 2)[2].rsplit(":", 1)[0]
        out.setdefault((audience, channel), (audience, name, address, channel))
    return list(out.values())


def notified_people(session: Session, alert: Alert, county: County) -> list[Recipient]:
    """Everyone a message about `alert` was meant for (not cancelled), each once."""
    rows = session.execute(
        select(Notification.person_id, Notification.recipient_name, Notification.address)
        .where(
            Notification.alert_id == alert.id,
            Notification.status != NotificationStatus.CANCELLED,
            Notification.person_id.is_not(None),
        )
        .order_by(Notification.id)
    ).all()
    out: list[Recipient] = []
    seen: set[str] = set()
    for person_id, name, address in rows:
        if person_id is None or person_id in seen:
            continue
        seen.add(person_id)
        person = county.people.get(person_id)
        if person is not None:
            out.append(Recipient(person.id, person.name, person.phone, "notified"))
        else:
            out.append(Recipient(person_id, name, address, "notified"))
    return out
