"""Failover: when a message cannot go out one way, it goes out another.

A notification that failed for good (a permanent error, retries exhausted,
its time-to-live spent, or the provider reporting it undelivered) is not the
end of the warning:

| failed channel                  | next                                            |
| ------------------------------- | ----------------------------------------------- |
| SMS                             | a voice call to the same person                 |
| voice call                      | an SMS to the same person                       |
| village broadcast gateway       | an SMS to the zone's 防灾责任人                  |
| IM robot (WeCom, DingTalk, Feishu), webhook | an SMS to the duty officers         |

A broadcast or group row has no person (`person_id` None): it fails over to
the people the table names. Each (alert, transition, person, channel) is tried
once, so SMS → voice → SMS stops there, and a person already told by SMS of
the same transition is not told again. Every failover, and every message
with nowhere left to go, is in the audit log.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.county import County
from dispatcher.messages import channel_kind, cut_to_sms
from dispatcher.outbox.rows import enqueue, idempotency_key
from dispatcher.storage.models import Alert, Notification

log = logging.getLogger("yujing.failover")

SMS_CHANNELS = ("twilio_sms",)
VOICE_CHANNELS = ("twilio_voice",)
GROUP_CHANNELS = ("wecom", "dingtalk", "feishu", "webhook")
BROADCAST_CHANNELS = ("broadcast",)


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

    @property
    def sms(self) -> str | None:
        return next((c for c in SMS_CHANNELS if c in self.channels), None)

    @property
    def voice(self) -> str | None:
        return next((c for c in VOICE_CHANNELS if c in self.channels), None)

    def targets(self, row: Notification, alert: Alert | None) -> list[Target]:
        """Where the failed `row` should go next (before removing ones already tried)."""
        person = self.county.people.get(row.person_id or "")
        if row.channel in SMS_CHANNELS and person is not None and self.voice:
            return [Target(person.id, person.name, person.phone, self.voice)]
        if row.channel in VOICE_CHANNELS and person is not None and self.sms:
            return [Target(person.id, person.name, person.phone, self.sms)]
        if self.sms is None:
            return []
        if row.channel in BROADCAST_CHANNELS and alert is not None and alert.zone_id:
            return [
                Target(p.id, p.name, p.phone, self.sms)
                for role, p in self.county.people_of(alert.zone_id)
                if role == "disaster_prevention"
            ]
        if row.channel in GROUP_CHANNELS:
            return [Target(p.id, p.name, p.phone, self.sms) for p in self.county.duty_officers()]
        return []

    def __call__(self, session: Session, row: Notification, reason: str, now: datetime) -> int:
        """Enqueue the failover rows for `row` in the caller's transaction; returns how many."""
        alert = session.get(Alert, row.alert_id) if row.alert_id is not None else None
        body = row.body
        if channel_kind(row.channel) in ("broadcast", "im"):
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
