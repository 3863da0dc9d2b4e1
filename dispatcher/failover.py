"""Failover: when a message cannot go out one way, it goes out another.

A notification that failed for good (a permanent error, retries exhausted,
its time-to-live spent, or the provider reporting it undelivered) is not the
end of the warning:

| failed channel (its declaration)         | next                                   |
| ---------------------------------------- | -------------------------------------- |
| a phone, as SMS                          | a voice call to the same person        |
| a phone, as a voice call                 | an SMS to the same person              |
| a village's loudspeakers                 | an SMS to the zone's 防灾责任人         |
| an IM robot or a webhook target          | an SMS to the duty officers            |

What a channel is comes from its declaration (`channels.registry`), so a new
channel fails over by what it addresses, with no list here to extend. The SMS or
voice channel used is one this instance has configured that reaches people
(never a stand-in such as the console, which would only look delivered).

A broadcast or group row has no person (`person_id` None): it fails over to
the people the table names. Each (alert, transition, person, channel) is tried
once, so SMS → voice → SMS stops there, and a person already told by SMS of
the same transition is not told again. Every failover, and every message
with nowhere left to go, is in the audit log; a message with nowhere left to
go is given up (`dispatcher.outbox.giveup`): the undelivered system alert
tells the duty officer, and it is sent again when its channel recovers.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.base import Addressing, ChannelDeclaration, Medium
from channels.registry import DECLARATIONS, medium_of
from dispatcher import audit
from dispatcher.county import County
from dispatcher.messages import cut_to_sms
from dispatcher.outbox.giveup import give_up
from dispatcher.outbox.rows import enqueue, idempotency_key
from dispatcher.storage.models import Alert, Notification

log = logging.getLogger("yujing.failover")


@dataclass(frozen=True)
class Target:
    """Where a failed message goes next: a person, at an address, on a channel."""

    person_id: str
    name: str
    address: str
    channel: str


@dataclass(frozen=True)
class FailoverPlan:
    """Failover routes, given which channels this instance has configured."""

    county: County
    channels: Collection[str]
    # every channel's facts by name (a stored row may name one not configured here)
    declarations: Mapping[str, ChannelDeclaration] = field(default_factory=lambda: DECLARATIONS)

    def _phone_channel(self, medium: Medium) -> str | None:
        """A configured channel that reaches a person's phone in `medium` (first by name)."""
        return next(
            (
                name
                for name in sorted(self.channels)
                if (d := self.declarations.get(name)) is not None
                and d.addressing is Addressing.PHONE
                and d.medium is medium
                and not d.stand_in
            ),
            None,
        )

    @property
    def sms(self) -> str | None:
        return self._phone_channel(Medium.SMS)

    @property
    def voice(self) -> str | None:
        return self._phone_channel(Medium.VOICE)

    def targets(self, row: Notification, alert: Alert | None) -> list[Target]:
        """Where the failed `row` should go next (before removing ones already tried)."""
        failed = self.declarations.get(row.channel)
        if failed is None or failed.stand_in:
            return []  # nothing known about it; a stand-in's failure says nothing of a phone
        person = self.county.people.get(row.person_id or "")
        if failed.addressing is Addressing.PHONE:
            # SMS ↔ voice: the same person, the other way (a phone medium has no third)
            other = {Medium.SMS: self.voice, Medium.VOICE: self.sms}.get(failed.medium)
            if person is None or other is None:
                return []
            return [Target(person.id, person.name, person.phone, other)]
        if self.sms is None:
            return []
        if failed.addressing is Addressing.VILLAGE and alert is not None and alert.zone_id:
            return [
                Target(p.id, p.name, p.phone, self.sms)
                for role, p in self.county.people_of(alert.zone_id)
                if role == "disaster_prevention"
            ]
        if failed.addressing in (Addressing.ROBOT, Addressing.TARGET):
            return [Target(p.id, p.name, p.phone, self.sms) for p in self.county.duty_officers()]
        return []

    def __call__(self, session: Session, row: Notification, reason: str, now: datetime) -> int:
        """Enqueue the failover rows for `row` in the caller's transaction; returns how many."""
        alert = session.get(Alert, row.alert_id) if row.alert_id is not None else None
        body = row.body
        if medium_of(row.channel) in (Medium.BROADCAST, Medium.IM):
            # a loudspeaker's or a group's words, now read on a phone: within SMS
            # length, and with the code to reply with
            code = alert.code if alert is not None else ""
            body = cut_to_sms(body if code in body else f"{body}（编码{code}）", code)
        added: list[Notification] = []
        for target in self.targets(row, alert):
            key = idempotency_key(row.alert_id, row.transition, target.person_id, target.channel)
            if session.scalar(select(Notification.id).where(Notification.idempotency_key == key)):
                continue  # already tried this way
            added.append(
                enqueue(
                    session,
                    alert,
                    row.transition,
                    target,
                    target.channel,
                    body,
                    now,
                    failover_of=row,
                )
            )
        session.flush()
        action = "notification.failover" if added else "notification.undeliverable"
        # no way left: given up, for the undelivered alert to count and a recovery to re-send
        given_up = not added and give_up(session, row, now)
        audit.record(
            session,
            at=now,
            actor="outbox",
            action=action,
            subject=f"notification:{row.id}",
            data={
                "channel": row.channel,
                "reason": reason,
                "to": [
                    {"notification": n.id, "person": n.person_id, "channel": n.channel}
                    for n in added
                ],
                **({} if added else {"given_up": given_up}),
            },
        )
        if added:
            log.warning(
                "notification %s via %s failed for good (%s); failing over to %s",
                row.id,
                row.channel,
                reason,
                ", ".join(f"{n.channel} {n.recipient_name}" for n in added),
            )
        else:
            log.error(
                "notification %s via %s to %s failed for good (%s) and has no other way to go",
                row.id,
                row.channel,
                row.recipient_name or row.address,
                reason,
            )
        return len(added)
