"""The alert lifecycle: the one way an alert opens and closes, and hazard transitions.

Every alert — a hazard at a zone, a forecast feed that stopped answering
(`dispatcher.alerts.system`), rule files refused (`dispatcher.rulewatch`) —
opens by `open_alert` and closes by `close_alert`: the alert row, its
`alert.*` audit event, and its escalation started or closed
(`dispatcher.escalation`), which is who is told, when, and by what deadline.

`apply_transitions` persists what reconcile decided for hazard alerts.
Everything for one evaluation is written in the caller's single transaction,
so either all of it is committed before any message leaves, or none of it is.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.base import Medium
from channels.registry import medium_of
from dispatcher import audit
from dispatcher.alerts.reconcile import ClosedAlert, OpenAlert, Transition, TransitionKind
from dispatcher.audit import serialise_with_audit
from dispatcher.county import County, ZoneConfig
from dispatcher.escalation import AlertText, Escalation, Policy, on_channel
from dispatcher.messages import HazardMessage, TemplateLookup, render_hazard
from dispatcher.states import OPEN_ALERT_STATES, AlertKind, AlertState
from dispatcher.storage.models import Alert, AuditEvent, Notification
from rules.types import Level

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
        select(Alert).where(Alert.kind == AlertKind.HAZARD, Alert.state.in_(OPEN_ALERT_STATES))
    ).all()
    return [
        OpenAlert(a.id, a.zone_id or "", a.hazard, Level.parse(a.level), a.calm_since) for a in rows
    ]


def recently_resolved(session: Session, since: datetime) -> list[ClosedAlert]:
    """Hazard alerts resolved at or after `since`, as reconcile's cooldown sees them."""
    rows = session.scalars(
        select(Alert).where(
            Alert.kind == AlertKind.HAZARD,
            Alert.state == AlertState.RESOLVED,
            Alert.closed_at >= since,
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


@dataclass(frozen=True)
class NewAlert:
    """What an alert is about as it opens: the fields of its row its opener decides."""

    kind: AlertKind
    hazard: str
    rule_id: str
    title: str
    level: str
    zone_id: str | None = None
    onset: datetime | None = None
    until: datetime | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    forecast_run_id: int | None = None


def open_alert(
    session: Session,
    new: NewAlert,
    *,
    escalation: Escalation,
    text: Callable[[Alert], AlertText],
    data: Mapping[str, Any],
    now: datetime,
    transition: str = TransitionKind.NEW.value,
    previous: Alert | None = None,
    policy: Policy | None = None,
) -> tuple[Alert, list[Notification]]:
    """Open an alert: its row, `alert.{transition}` audited, its escalation started.

    `text` gives the warning's words once the alert has its code (they quote
    it); `data` is the audit event's, after the code. With `previous` (the
    alert of another level this one replaces) that one is marked superseded
    and its escalation handed over. `policy` replaces the one escalation.yaml
    gives the alert. Returns the alert and the notifications enqueued; does not
    commit.
    """
    if previous is not None:
        _end(previous, AlertState.SUPERSEDED, now)
    alert = Alert(
        code=new_code(session),
        kind=new.kind,
        zone_id=new.zone_id,
        hazard=new.hazard,
        rule_id=new.rule_id,
        title=new.title,
        level=new.level,
        state=AlertState.FIRING,
        onset=new.onset,
        until=new.until,
        evidence=dict(new.evidence),
        opened_at=now,
        updated_at=now,
        supersedes_id=previous.id if previous else None,
        forecast_run_id=new.forecast_run_id,
    )
    session.add(alert)
    session.flush()  # the id goes into idempotency keys and audit subjects
    _audit(session, alert, transition, data, now)
    notes = escalation.start(
        session,
        alert,
        transition=transition,
        text=text(alert),
        now=now,
        previous=previous,
        policy=policy,
    )
    return alert, notes


def close_alert(
    session: Session,
    alert: Alert,
    *,
    escalation: Escalation,
    body: str,
    data: Mapping[str, Any],
    now: datetime,
    bodies: Mapping[str, str] | None = None,
) -> list[Notification]:
    """Resolve an alert: `alert.resolved` audited, the rest of its escalation cancelled,
    and `body` sent to everyone who was told (villages and groups in their medium's
    words from `bodies`). Does not commit."""
    transition = TransitionKind.RESOLVED.value
    _end(alert, AlertState.RESOLVED, now)
    _audit(session, alert, transition, data, now)
    return escalation.close(
        session, alert, transition=transition, body=body, now=now, bodies=bodies
    )


def _end(alert: Alert, state: AlertState, now: datetime) -> None:
    alert.state = state
    alert.closed_at = now
    alert.updated_at = now


def _audit(
    session: Session, alert: Alert, transition: str, data: Mapping[str, Any], now: datetime
) -> None:
    audit.record(
        session,
        at=now,
        actor="system",
        action=f"alert.{transition}",
        subject=f"alert:{alert.id}",
        data={"code": alert.code, **data},
    )


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
    esc = on_channel(escalation, county, channel)
    notifications: list[Notification] = []
    for t in transitions:
        if t.kind is TransitionKind.CONTINUED:
            _continue(session, t, now)
            continue
        if t.kind is TransitionKind.SUPPRESSED:
            _suppress(session, t, now)
            continue
        # the texts in force, so a CAP message derived later reads as it did then
        texts = {
            "hazard_name": wording.hazard_name(t.hazard),
            "advice": wording.advice(t.hazard, t.level),
        }
        if t.kind is TransitionKind.RESOLVED:
            alert = session.get_one(Alert, t.alert_id)
            said = _hazard_text(alert, t, now, county, wording, channel)
            notifications.extend(
                close_alert(
                    session,
                    alert,
                    escalation=esc,
                    body=said.body,
                    bodies=said.bodies,
                    data=_audit_data(alert, t) | texts,
                    now=now,
                )
            )
            continue
        a = t.assessment
        new = NewAlert(
            kind=AlertKind.HAZARD,
            zone_id=t.zone_id,
            hazard=t.hazard,
            rule_id=a.rule_id if a else "",
            title=a.title if a else t.hazard,
            level=t.level.key,
            onset=a.onset if a else None,
            until=a.until if a else None,
            evidence=dict(a.evidence) if a else {},
            forecast_run_id=forecast_run_id,
        )
        _, notes = open_alert(
            session,
            new,
            escalation=esc,
            text=partial(
                _hazard_text, t=t, now=now, county=county, wording=wording, channel=channel
            ),
            data=_audit_data(new, t) | texts,
            now=now,
            transition=t.kind.value,
            previous=session.get_one(Alert, t.alert_id) if t.alert_id is not None else None,
        )
        notifications.extend(notes)
    session.flush()
    return notifications


def _hazard_text(
    alert: Alert, t: Transition, now: datetime, county: County, wording: Wording, channel: str
) -> AlertText:
    """The words of a hazard alert's transition, for every medium (its `bodies`), each
    with the rule's template for that medium when it has one; `body` is the default
    channel's."""
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
    bodies: dict[str, str] = {
        kind.value: render_hazard(
            message,
            wording.timezone,
            template=wording.template(t.hazard, alert.rule_id, kind),
            channel_kind=kind,
        )
        for kind in Medium
    }
    return AlertText(
        bodies[medium_of(channel)],
        f"{message.zone}{message.hazard}{message.level_zh}预警",
        bodies,
    )


def _zone(county: County, zone_id: str) -> ZoneConfig | None:
    try:
        return county.zone(zone_id)
    except KeyError:  # a zone removed from the configuration while its alert is open
        return None


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


def _audit_data(alert: Alert | NewAlert, t: Transition) -> dict[str, Any]:
    """A hazard transition's audit data (after the alert's code, which `_audit` puts first)."""
    return {
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
