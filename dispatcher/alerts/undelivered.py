"""The undelivered system alert: warnings that could not reach their recipients.

A message that exhausted its attempts and its failover is given up
(`dispatcher.outbox.giveup`); here, at each look (`watch_undelivered`, a job of
the daemon's scheduler every few seconds), the given-up rows are settled — re-sent
when their channel recovers, not re-sent when their warning was acknowledged or
resolved meanwhile — and what is left decides the alert:

- something is left undelivered and no undelivered alert is open: one opens
  (one for all channels: an outage of 300 messages is one alert, not 300),
  raised like the feed-down alert to the duty officer and the leader on duty
  by the `system` policy of escalation.yaml, and acknowledgeable like it. Its
  text says how many recipients and warnings could not be reached, over which
  channels, since when, and what to do. So that its own delivery does not
  depend on the broken channel, its messages go out on a person channel that
  still works when there is one (failover still applies), and the text is
  always in the log, the console and `yujing alerts list`;
- it is open: its evidence (what the console, /healthz and the CLI show) is
  brought up to date; when the count has doubled since its recipients were
  last told (an outage is often still growing when the alert is raised), they
  are told the new numbers (`alert.updated`);
- nothing is left and it is open: it resolves, saying how many were re-sent and
  how many were not needed any more.

The outage is audited: each give-up (`notification.undeliverable`, given_up),
re-send, skip and settlement (`dispatcher.outbox.giveup`), and the alert's own
opening and resolution (`alert.new`, `alert.resolved`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.base import Medium
from channels.registry import declaration
from dispatcher import audit
from dispatcher.alerts.lifecycle import NewAlert, close_alert, open_alert
from dispatcher.county import County
from dispatcher.escalation import AlertText, Escalation, on_channel
from dispatcher.labels import channel_label
from dispatcher.messages import render_undelivered, render_undelivered_resolved
from dispatcher.outbox.giveup import Reach, Settlement, settle
from dispatcher.outbox.rows import QueuedRow
from dispatcher.routing import reaches_people
from dispatcher.states import OPEN_ALERT_STATES, AlertKind
from dispatcher.storage.models import Alert

log = logging.getLogger("yujing.undelivered")

__all__ = ["UNDELIVERED", "Undelivered", "open_undelivered_alert", "watch_undelivered"]

UNDELIVERED: Final = "undelivered"  # the alert's hazard
ALERT_RULE: Final = "outbox"  # its rule id
SHOWN_RECIPIENTS: Final = 50  # recipients listed in the alert's evidence (all are counted)
#: The alert is raised at the first look that finds something given up, often
#: while the outage is still growing: whoever was told hears the numbers again
#: each time they reach this many times what they were last told.
GROWTH: Final = 2


def open_undelivered_alert(session: Session) -> Alert | None:
    """The undelivered alert in force (firing or acknowledged), if any."""
    return session.scalar(
        select(Alert).where(
            Alert.kind == AlertKind.SYSTEM,
            Alert.hazard == UNDELIVERED,
            Alert.state.in_(OPEN_ALERT_STATES),
        )
    )


@dataclass
class Undelivered:
    """What one look did: the messages it enqueued (the alert's), the rows it re-sent."""

    settlement: Settlement
    notifications: list[QueuedRow] = field(default_factory=list)
    alert: Alert | None = None

    @property
    def changed(self) -> bool:
        """Whether the outbox has something new to send."""
        return bool(self.notifications) or self.settlement.resent > 0


def watch_undelivered(
    session: Session,
    *,
    now: datetime,
    county: County,
    channel: str,
    channels: Collection[str],
    probe_seconds: float,
    escalation: Escalation | None = None,
) -> Undelivered:
    """Settle the given-up rows, then raise, update or resolve the undelivered alert.

    `channel` is the default channel, `channels` those this instance has
    configured. Does not commit.
    """
    settled = settle(session, now, channels=channels, probe_seconds=probe_seconds)
    alert = open_undelivered_alert(session)
    unreached = settled.unreached
    if alert is not None:
        alert.evidence = _tally(alert.evidence, settled)
    if unreached and alert is None:
        working = _working_channel(channel, channels, settled.down)
        esc = on_channel(escalation, county, working)
        evidence = _evidence(unreached, now) | _tally({}, settled)
        evidence["told_messages"] = len(unreached)
        alert, notes = open_alert(
            session,
            NewAlert(
                kind=AlertKind.SYSTEM,
                hazard=UNDELIVERED,
                rule_id=ALERT_RULE,
                title="预警消息未能送达",
                level="orange",
                onset=_since(unreached),
                evidence=evidence,
            ),
            escalation=esc,
            text=lambda opened: _text(county, unreached, now, opened.code),
            data={
                "hazard": UNDELIVERED,
                "recipients": evidence["recipients"],
                "messages": evidence["messages"],
                "warnings": evidence["warnings"],
                "channels": evidence["channels"],
                "since": evidence["since"],
                "channel": working,
            },
            now=now,
        )
        # the log always has it, whatever becomes of the messages
        log.error(
            "undelivered alert %s raised: %s",
            alert.code,
            _text(county, unreached, now, alert.code).body,
        )
        return Undelivered(settled, notes, alert)
    if unreached and alert is not None:
        told = int(alert.evidence.get("told_messages", 0))
        updates = int(alert.evidence.get("updates", 0))
        alert.evidence = _evidence(unreached, now) | {
            **_tally(alert.evidence, Settlement()),
            "told_messages": told,
            "updates": updates,
        }
        alert.updated_at = now
        if len(unreached) < GROWTH * max(told, 1):
            return Undelivered(settled, [], alert)
        # the outage grew: whoever was told hears the new numbers (once per doubling)
        working = _working_channel(channel, channels, settled.down)
        notes = on_channel(escalation, county, working).tell(
            session,
            alert,
            transition=f"update{updates + 1}",
            text=_text(county, unreached, now, alert.code),
            now=now,
        )
        alert.evidence = {
            **alert.evidence,
            "told_messages": len(unreached),
            "updates": updates + 1,
        }
        audit.record(
            session,
            at=now,
            actor="system",
            action="alert.updated",
            subject=f"alert:{alert.id}",
            data={
                "code": alert.code,
                "hazard": UNDELIVERED,
                "messages": len(unreached),
                "recipients": alert.evidence["recipients"],
                "told_before": told,
                "notifications": len(notes),
            },
        )
        return Undelivered(settled, notes, alert)
    if alert is not None:
        reached = int(alert.evidence.get("reached", 0))
        skipped = int(alert.evidence.get("skipped", 0))
        notes = close_alert(
            session,
            alert,
            escalation=on_channel(escalation, county, channel),
            body=render_undelivered_resolved(
                sender=county.sender,
                at=now,
                reached=reached,
                skipped=skipped,
                timezone=county.timezone,
            ),
            bodies={
                medium: render_undelivered_resolved(
                    sender=county.sender,
                    at=now,
                    reached=reached,
                    skipped=skipped,
                    timezone=county.timezone,
                    channel_kind=medium,
                )
                for medium in (Medium.VOICE, Medium.IM)
            },
            data={"hazard": UNDELIVERED, "reached": reached, "skipped": skipped},
            now=now,
        )
        log.warning(
            "undelivered alert %s resolved: nothing left undelivered (%d re-sent and "
            "delivered, %d not needed any more)",
            alert.code,
            reached,
            skipped,
        )
        return Undelivered(settled, notes, alert)
    return Undelivered(settled)


def _working_channel(default: str, channels: Collection[str], down: Collection[str]) -> str:
    """The default channel, unless it is down and another person channel is not."""
    if default not in down:
        return default
    others = sorted(
        c
        for c in channels
        if c not in down
        and reaches_people(c)
        and (d := declaration(c)) is not None
        and not d.stand_in
    )
    return others[0] if others else default


def _since(unreached: list[Reach]) -> datetime:
    return min(r.first_gave_up_at for r in unreached)


def _channels(unreached: list[Reach]) -> list[str]:
    return list(dict.fromkeys(c for r in unreached for c in r.channels))


def _evidence(unreached: list[Reach], now: datetime) -> dict[str, Any]:
    """What the console, /healthz and the CLI show of it: counts, channels, whom to call."""
    people = {(r.key[2] if r.key[1] != "row" else r.key) for r in unreached}
    return {
        "recipients": len(people),
        "messages": len(unreached),
        "warnings": len({r.key[0] if r.key[0] is not None else r.key for r in unreached}),
        "channels": _channels(unreached),
        "since": _since(unreached).isoformat(),
        "as_of": now.isoformat(),
        "unreached": [
            {
                "name": r.marked[0].recipient_name,
                "address": r.marked[0].address,
                "alert": r.alert.code if r.alert is not None else None,
                "channels": r.channels,
            }
            for r in unreached[:SHOWN_RECIPIENTS]
        ],
    }


def _tally(evidence: dict[str, Any], settled: Settlement) -> dict[str, Any]:
    """The evidence with this look's settled reaches added to the running counts."""
    return {
        **evidence,
        "reached": int(evidence.get("reached", 0)) + settled.reached,
        "skipped": int(evidence.get("skipped", 0)) + settled.skipped,
    }


def _text(county: County, unreached: list[Reach], now: datetime, code: str) -> AlertText:
    evidence = _evidence(unreached, now)
    values: dict[str, Any] = {
        "sender": county.sender,
        "since": _since(unreached),
        "now": now,
        "recipients": evidence["recipients"],
        "messages": evidence["messages"],
        "warnings": evidence["warnings"],
        "channels": "、".join(channel_label(c) for c in evidence["channels"]),
        "code": code,
        "timezone": county.timezone,
    }
    return AlertText(
        render_undelivered(**values),
        "预警消息未能送达",
        {
            medium: render_undelivered(**values, channel_kind=medium)
            for medium in (Medium.VOICE, Medium.BROADCAST, Medium.IM)
        },
    )
