"""Hazard alerts: what reconcile decided for each zone, written, and its event told.

`apply_transitions` persists one poll's transitions (new, upgraded,
downgraded, resolved, continued, suppressed) for the zones' hazard alerts:
each opens and closes by the lifecycle (`dispatcher.alerts.lifecycle`) with
its zone's share of its policy, then the hazard's event is updated
(`dispatcher.alerts.events`), which tells the bureau once per event change.
Everything for one evaluation is written in the caller's single transaction,
so either all of it is committed before any message leaves, or none of it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.base import Medium
from channels.registry import medium_of
from dispatcher import audit
from dispatcher.alerts.events import open_events, open_hazard_zones, update_events
from dispatcher.alerts.lifecycle import NewAlert, close_alert, open_alert
from dispatcher.alerts.reconcile import ClosedAlert, OpenAlert, Transition, TransitionKind
from dispatcher.audit import serialise_with_audit
from dispatcher.county import County, ZoneConfig
from dispatcher.escalation import AlertText, Escalation, on_channel
from dispatcher.messages import HazardMessage, TemplateLookup, render_hazard
from dispatcher.states import OPEN_ALERT_STATES, AlertKind, AlertState
from dispatcher.storage.models import Alert, AuditEvent, Notification
from rules.types import Level

__all__ = ["Wording", "apply_transitions", "open_hazard_alerts", "recently_resolved"]


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
    before, events = open_hazard_zones(session), open_events(session)
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
            authority=a.authority if a else "",
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
    notifications.extend(
        update_events(
            session,
            before,
            events,
            transitions,
            now=now,
            county=county,
            hazard_name=wording.hazard_name,
            escalation=esc,
            forecast_run_id=forecast_run_id,
        )
    )
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
        authority=alert.authority,
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
        alert.authority = t.assessment.authority
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
        "authority": alert.authority,
    }
