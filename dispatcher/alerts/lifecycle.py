"""Persist transitions: alert rows, their outbox notifications and audit events.

Everything for one evaluation is written in the caller's single transaction,
so either all of it is committed before any message leaves, or none of it is.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.alerts.reconcile import ClosedAlert, OpenAlert, Transition, TransitionKind
from dispatcher.audit import serialise_with_audit
from dispatcher.county import County, ZoneConfig
from dispatcher.escalation import AlertText, Escalation
from dispatcher.messages import HazardMessage, TemplateLookup, channel_kind, render_hazard
from dispatcher.storage.models import Alert, AuditEvent, Notification
from rules.types import Level

OPEN_STATES = ("firing", "acknowledged")
# no 0/O, 1/I/L, 2/Z, 5/S, 8/B: codes are read aloud and typed on phones
CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
CODE_LENGTH = 4


@dataclass(frozen=True)
class Wording:
    """What the texts need that is not in the transition itself."""

    sender: str
    timezone: str
    hazard_name: Callable[[str], str]  # hazard key → display name, e.g. 寒潮
    advice: Callable[[str, Level], str]  # (hazard, level) → the action to take
    template: TemplateLookup = lambda hazard, rule_id, kind: None  # None: the built-in text


def open_hazard_alerts(session: Session) -> list[OpenAlert]:
    """The open hazard alerts, as reconcile sees them."""
    rows = session.scalars(
        select(Alert).where(Alert.kind == "hazard", Alert.state.in_(OPEN_STATES))
    ).all()
    return [
        OpenAlert(a.id, a.zone_id or "", a.hazard, Level.parse(a.level), a.calm_since) for a in rows
    ]


def recently_resolved(session: Session, since: datetime) -> list[ClosedAlert]:
    """Hazard alerts resolved at or after `since`, as reconcile's cooldown sees them."""
    rows = session.scalars(
        select(Alert).where(
            Alert.kind == "hazard", Alert.state == "resolved", Alert.closed_at >= since
        )
    ).all()
    return [
        ClosedAlert(a.id, a.zone_id or "", a.hazard, Level.parse(a.level), a.closed_at)
        for a in rows
        if a.closed_at is not None
    ]


def new_code(session: Session) -> str:
    """A short alert code, unique among all alerts (people reply with it)."""
    while True:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if session.scalar(select(Alert.id).where(Alert.code == code)) is None:
            return code


def apply_transitions(
    session: Session,
    transitions: Sequence[Transition],
    *,
    now: datetime,
    county: County,
    wording: Wording,
    channel: str,
    forecast_run_id: int | None,
    escalation: Escalation | None = None,
) -> list[Notification]:
    """Write the transitions, their notifications and audit events; does not commit.

    Who is told is the escalation policy's business (`dispatcher.escalation`):
    a new, upgraded or downgraded alert starts its level's policy (the first
    step's messages now, later steps as timers, in this transaction); a
    resolved one cancels the rest of its escalation and tells everyone who was
    told. `channel` is the default channel; without `escalation`, the built-in
    policies apply with no roster (every duty officer and leader counts as on duty).
    """
    # the audit chain's lock before any alert row's, like acknowledgements and timers
    serialise_with_audit(session)
    esc = escalation.with_channel(channel) if escalation else Escalation.plain(county, channel)
    notifications: list[Notification] = []
    for t in transitions:
        if t.kind is TransitionKind.CONTINUED:
            _continue(session, t, now)
            continue
        if t.kind is TransitionKind.SUPPRESSED:
            _suppress(session, t, now)
            continue
        previous: Alert | None = None
        if t.kind is TransitionKind.RESOLVED:
            alert = _close(session, t, now, "resolved")
        else:
            previous = _close(session, t, now, "superseded") if t.alert_id is not None else None
            alert = _open(session, t, now, previous, forecast_run_id)
        audit.record(
            session,
            at=now,
            actor="system",
            action=f"alert.{t.kind.value}",
            subject=f"alert:{alert.id}",
            # the texts in force, so a CAP message derived later reads as it did then
            data=_audit_data(alert, t)
            | {
                "hazard_name": wording.hazard_name(t.hazard),
                "advice": wording.advice(t.hazard, t.level),
            },
        )
        zone = _zone(county, t.zone_id)
        message = HazardMessage(
            kind=t.kind.value,
            sender=wording.sender,
            hazard=wording.hazard_name(t.hazard),
            level_zh=t.level.zh,
            zone=zone.name if zone else t.zone_id,
            onset=alert.onset,
            now=now,
            advice=wording.advice(t.hazard, t.level),
            code=alert.code,
            township=zone.township if zone else "",
            village=zone.village if zone else "",
            until=alert.until,
            evidence=dict(alert.evidence),
        )
        kind = channel_kind(channel)
        body = render_hazard(
            message,
            wording.timezone,
            template=wording.template(t.hazard, alert.rule_id, kind),
            channel_kind=kind,
        )
        if t.kind is TransitionKind.RESOLVED:
            notifications.extend(
                esc.close(session, alert, transition=t.kind.value, body=body, now=now)
            )
        else:
            summary = f"{message.zone}{message.hazard}{message.level_zh}预警"
            notifications.extend(
                esc.start(
                    session,
                    alert,
                    transition=t.kind.value,
                    text=AlertText(body, summary),
                    now=now,
                    previous=previous,
                )
            )
    session.flush()
    return notifications


def _zone(county: County, zone_id: str) -> ZoneConfig | None:
    try:
        return county.zone(zone_id)
    except KeyError:  # a zone removed from the configuration while its alert is open
        return None


def _open(
    session: Session,
    t: Transition,
    now: datetime,
    previous: Alert | None,
    forecast_run_id: int | None,
) -> Alert:
    a = t.assessment
    alert = Alert(
        code=new_code(session),
        kind="hazard",
        zone_id=t.zone_id,
        hazard=t.hazard,
        rule_id=a.rule_id if a else "",
        title=a.title if a else t.hazard,
        level=t.level.key,
        state="firing",
        onset=a.onset if a else None,
        until=a.until if a else None,
        evidence=dict(a.evidence) if a else {},
        opened_at=now,
        updated_at=now,
        supersedes_id=previous.id if previous else None,
        forecast_run_id=forecast_run_id,
    )
    session.add(alert)
    session.flush()  # the id goes into idempotency keys and audit subjects
    return alert


def _close(session: Session, t: Transition, now: datetime, state: str) -> Alert:
    alert = session.get_one(Alert, t.alert_id)
    alert.state = state
    alert.closed_at = now
    alert.updated_at = now
    return alert


def _continue(session: Session, t: Transition, now: datetime) -> None:
    alert = session.get_one(Alert, t.alert_id)
    calm_started = alert.calm_since is None and t.calm_since is not None
    alert.calm_since = t.calm_since
    if t.assessment is not None and t.assessment.level is not None and t.calm_since is None:
        alert.onset = t.assessment.onset
        alert.until = t.assessment.until
        alert.evidence = dict(t.assessment.evidence)
    alert.updated_at = now
    if t.data_missing or calm_started:
        audit.record(
            session,
            at=now,
            actor="system",
            action="alert.data_missing" if t.data_missing else "alert.calming",
            subject=f"alert:{alert.id}",
            data={"zone": t.zone_id, "hazard": t.hazard, "level": t.level.key},
        )


def _suppress(session: Session, t: Transition, now: datetime) -> None:
    """Audit, once per resolved alert and level, a warning its cooldown holds back."""
    subject = f"alert:{t.alert_id}"
    earlier = session.scalars(
        select(AuditEvent.data).where(
            AuditEvent.action == "alert.suppressed", AuditEvent.subject == subject
        )
    ).all()
    if any(data.get("level") == t.level.key for data in earlier):
        return
    a = t.assessment
    audit.record(
        session,
        at=now,
        actor="system",
        action="alert.suppressed",
        subject=subject,
        data={
            "zone": t.zone_id,
            "hazard": t.hazard,
            "level": t.level.key,
            "resolved_level": t.previous_level.key if t.previous_level else None,
            "rule": a.rule_id if a else None,
            "onset": a.onset.isoformat() if a and a.onset else None,
            "evidence": dict(a.evidence) if a else {},
            "reason": "cooldown",
        },
    )


def _audit_data(alert: Alert, t: Transition) -> dict[str, Any]:
    return {
        "code": alert.code,
        "zone": t.zone_id,
        "hazard": t.hazard,
        "level": t.level.key,
        "previous_level": t.previous_level.key if t.previous_level else None,
        "rule": alert.rule_id,
        "onset": alert.onset.isoformat() if alert.onset else None,
        "until": alert.until.isoformat() if alert.until else None,
        "evidence": dict(alert.evidence),
        "forecast_run": alert.forecast_run_id,
    }
