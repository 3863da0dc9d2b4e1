"""Hazard alerts: what reconcile decided for each zone, written, and its event told.

`apply_transitions` persists one poll's transitions (new, upgraded,
downgraded, resolved, continued, suppressed) for the zones' hazard alerts:
each opens and closes by the lifecycle (`dispatcher.alerts.lifecycle`) with
its zone's share of its policy, then the hazard's event is updated
(`dispatcher.alerts.events`), which tells the bureau once per event change.
Everything for one evaluation is written in the caller's single transaction,
so either all of it is committed before any message leaves, or none of it is.

A province's cold front opens tens of thousands of alerts in one poll, so
the writing is set-based: alerts that stay open are updated with one
statement for all; each run of alerts that open (or resolve) together is
opened (closed) together by the lifecycle — rows inserted at once, no flush
or query per alert; their outbox rows and timers are held and inserted at
the end (`dispatcher.storage.held`), and the audit events chained in one
pass (`audit.batch`). Runs are taken in transition order, so every row, id
and audit event is the one writing one transition at a time would give
(tests/test_commit_equivalence.py holds that to a golden file).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from functools import partial
from itertools import groupby
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.base import Medium
from channels.registry import medium_of
from dispatcher import audit
from dispatcher.alerts.continued import update_continued
from dispatcher.alerts.events import open_events, open_hazard_zones, plan_events, update_events
from dispatcher.alerts.grouping import EventChangeKind
from dispatcher.alerts.lifecycle import Closing, NewAlert, Opening, close_alerts, open_alerts
from dispatcher.alerts.reconcile import ClosedAlert, OpenAlert, Transition, TransitionKind
from dispatcher.audit import serialise_with_audit
from dispatcher.county import County, ZoneConfig
from dispatcher.escalation import AlertText, Escalation, on_channel
from dispatcher.escalation.plan import RenderedOnRead
from dispatcher.messages import HazardMessage, TemplateLookup, render_hazard
from dispatcher.outbox.rows import QueuedRow
from dispatcher.states import OPEN_ALERT_STATES, AlertKind, AlertState
from dispatcher.storage import held
from dispatcher.storage.models import Alert, AuditEvent
from rules.collector import collector_paused
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
    rows = session.execute(
        select(Alert.id, Alert.zone_id, Alert.hazard, Alert.level, Alert.calm_since).where(
            Alert.kind == AlertKind.HAZARD, Alert.state.in_(OPEN_ALERT_STATES)
        )
    )  # columns, not objects: a province has tens of thousands open
    levels = _Levels()
    return [
        OpenAlert(id_, zone_id or "", hazard, levels[level], calm_since)
        for id_, zone_id, hazard, level, calm_since in rows
    ]


def recently_resolved(session: Session, since: datetime) -> list[ClosedAlert]:
    """Hazard alerts resolved at or after `since`, as reconcile's cooldown sees them."""
    rows = session.execute(
        select(Alert.id, Alert.zone_id, Alert.hazard, Alert.level, Alert.closed_at).where(
            Alert.kind == AlertKind.HAZARD,
            Alert.state == AlertState.RESOLVED,
            Alert.closed_at >= since,
        )
    )
    levels = _Levels()
    return [
        ClosedAlert(id_, zone_id or "", hazard, levels[level], closed_at)
        for id_, zone_id, hazard, level, closed_at in rows
        if closed_at is not None
    ]


class _Levels(dict[str, Level]):
    """Stored level names parsed once each (a province reads tens of thousands)."""

    def __missing__(self, name: str) -> Level:
        self[name] = level = Level.parse(name)
        return level


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
) -> list[QueuedRow]:
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
    # the poll's outbox rows and timers inserted together, its audit events chained
    # in one pass, at the end
    # … and the collector paused meanwhile (rules.collector: a province's commit
    # allocates enough to make it walk the whole heap again and again)
    with collector_paused(), audit.batch(session), held.batch(session):
        return _apply(
            session,
            transitions,
            now=now,
            county=county,
            wording=wording,
            channel=channel,
            forecast_run_id=forecast_run_id,
            escalation=escalation,
        )


def _apply(
    session: Session,
    transitions: Sequence[Transition],
    *,
    now: datetime,
    county: County,
    wording: Wording,
    channel: str,
    forecast_run_id: int | None,
    escalation: Escalation | None,
) -> list[QueuedRow]:
    esc = on_channel(escalation, county, channel)
    before, events = open_hazard_zones(session), open_events(session)
    changes = plan_events(before, events, transitions)
    # every alert the poll opens takes its id now, the new events' after the zone
    # alerts' (as when each opened in turn): a zone alert is written with its
    # event's id, not rewritten to join it (60,000 took PostgreSQL 1.3 s); the
    # key is checked at commit (models.Alert.event_id)
    opening = sum(1 for t in transitions if _stage(t) is TransitionKind.NEW)
    new_events = [c.hazard for c in changes if c.kind is EventChangeKind.NEW]
    ids = held.next_ids(session, Alert, opening + len(new_events))
    event_ids = dict(zip(new_events, ids[opening:], strict=True))
    event_of = {hazard: event.id for hazard, event in events.items()} | event_ids
    zone_ids = iter(ids[:opening])
    # the alerts that resolve or are superseded, loaded at once and held here
    alerts = _load(
        session,
        [t.alert_id for t in transitions if t.alert_id is not None and t.kind not in _NOT_LOADED],
    )
    calm_started = update_continued(session, transitions, now)
    notifications: list[QueuedRow] = []
    # runs of one kind of transition are written together, runs in order: the
    # rows and audit events come out as when one transition was written at a time
    for stage, run in groupby(transitions, key=_stage):
        batch = list(run)
        if stage is TransitionKind.CONTINUED:
            for t in batch:
                _continue(session, t, t.alert_id in calm_started, now)
        elif stage is TransitionKind.SUPPRESSED:
            for t in batch:
                _suppress(session, t, now)
        elif stage is TransitionKind.RESOLVED:
            notifications.extend(
                _resolve(
                    session,
                    batch,
                    now=now,
                    county=county,
                    wording=wording,
                    channel=channel,
                    esc=esc,
                )
            )
        else:
            notifications.extend(
                _open(
                    session,
                    batch,
                    alerts,
                    [next(zone_ids) for _ in batch],
                    event_of,
                    now=now,
                    county=county,
                    wording=wording,
                    channel=channel,
                    esc=esc,
                    forecast_run_id=forecast_run_id,
                )
            )
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
            changes=changes,
            ids=event_ids,
        )
    )
    session.flush()
    return notifications


# transitions whose alert is not loaded as an object: continued ones are updated
# with one statement for all, suppressed ones name an alert already resolved,
# resolved ones are read as the columns their words and audit event quote
_NOT_LOADED = (TransitionKind.CONTINUED, TransitionKind.SUPPRESSED, TransitionKind.RESOLVED)


def _stage(t: Transition) -> TransitionKind:
    """Which writer takes `t`: new, upgraded and downgraded alike open an alert."""
    if t.kind in (TransitionKind.UPGRADED, TransitionKind.DOWNGRADED):
        return TransitionKind.NEW
    return t.kind


def _load(session: Session, ids: Sequence[int]) -> dict[int, Alert]:
    """The alerts of `ids`, one query per thousand."""
    out: dict[int, Alert] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        out.update((a.id, a) for a in session.scalars(select(Alert).where(Alert.id.in_(chunk))))
    return out


# ids per IN (…): well within SQLite's and PostgreSQL's parameter limits
_CHUNK = 1000


def _texts(t: Transition, wording: Wording) -> dict[str, str]:
    """The texts in force, so a CAP message derived later reads as it did then."""
    return {
        "hazard_name": wording.hazard_name(t.hazard),
        "advice": wording.advice(t.hazard, t.level),
    }


def _resolve(
    session: Session,
    batch: Sequence[Transition],
    *,
    now: datetime,
    county: County,
    wording: Wording,
    channel: str,
    esc: Escalation,
) -> list[QueuedRow]:
    notes: list[QueuedRow] = []
    # a thousand at a time, in order (the same rows and audit events as all at once):
    # each thousand's words and columns are let go of before the next is read
    for start in range(0, len(batch), _CHUNK):
        part = batch[start : start + _CHUNK]
        alerts = _resolving(session, [t.alert_id for t in part if t.alert_id is not None])
        closings: list[Closing] = []
        for t in part:
            assert t.alert_id is not None
            alert = alerts[t.alert_id]
            # each medium's words rendered when read (plan.RenderedOnRead), not all four
            said = _hazard_text(alert, t, now, county, wording, channel, lazy=True)
            closings.append(
                Closing(
                    alert,
                    AlertText(said.body, "", said.bodies),
                    _audit_data(alert, t) | _texts(t, wording),
                )
            )
        told = close_alerts(session, closings, escalation=esc, now=now)
        notes.extend(note for each in told for note in each)
    return notes


@dataclass(frozen=True, slots=True)
class _Resolving:
    """A resolving alert's columns its words and audit event quote (no ORM object)."""

    id: int
    code: str
    level: str
    rule_id: str
    onset: datetime | None
    until: datetime | None
    evidence: dict[str, Any]
    forecast_run_id: int | None
    authority: str


def _resolving(session: Session, ids: Sequence[int]) -> dict[int, _Resolving]:
    """The alerts of `ids` (a thousand at most) as `_Resolving` columns, in one query."""
    table = Alert.metadata.tables[Alert.__tablename__]
    columns = select(*(table.c[field.name] for field in fields(_Resolving)))
    return {row[0]: _Resolving(*row) for row in session.execute(columns.where(table.c.id.in_(ids)))}


def _open(
    session: Session,
    batch: Sequence[Transition],
    alerts: Mapping[int, Alert],
    ids: Sequence[int],
    event_of: Mapping[str, int],
    *,
    now: datetime,
    county: County,
    wording: Wording,
    channel: str,
    esc: Escalation,
    forecast_run_id: int | None,
) -> list[QueuedRow]:
    openings: list[Opening] = []
    for t in batch:
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
            event_id=event_of.get(t.hazard),
        )
        openings.append(
            Opening(
                new,
                text=partial(
                    _hazard_text, t=t, now=now, county=county, wording=wording, channel=channel
                ),
                data=_audit_data(new, t) | _texts(t, wording),
                transition=t.kind.value,
                previous=alerts[t.alert_id] if t.alert_id is not None else None,
            )
        )
    opened = open_alerts(session, openings, escalation=esc, now=now, ids=ids)
    return [note for _, notes in opened for note in notes]


def _hazard_text(
    alert: Alert | _Resolving,
    t: Transition,
    now: datetime,
    county: County,
    wording: Wording,
    channel: str,
    *,
    lazy: bool = False,
) -> AlertText:
    """The words of a hazard alert's transition, for every medium (its `bodies`), each
    with the rule's template for that medium when it has one; `body` is the default
    channel's. `lazy`: each medium's words rendered when first read, not at once."""
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

    def render(kind: Medium) -> str:
        return render_hazard(
            message,
            wording.timezone,
            template=wording.template(t.hazard, alert.rule_id, kind),
            channel_kind=kind,
        )

    bodies: Mapping[str, str] = (
        RenderedOnRead(render) if lazy else {name: render(kind) for kind, name in _MEDIA}
    )
    return AlertText(
        bodies[medium_of(channel)],
        f"{message.zone}{message.hazard}{message.level_zh}预警",
        bodies,
    )


_MEDIA = tuple((kind, kind.value) for kind in Medium)


def _zone(county: County, zone_id: str) -> ZoneConfig | None:
    try:
        return county.zone(zone_id)
    except KeyError:  # a zone removed from the configuration while its alert is open
        return None


def _continue(session: Session, t: Transition, calm_started: bool, now: datetime) -> None:
    """Audit a continued alert when the forecast had gaps or its calm clock starts."""
    if t.data_missing or calm_started:
        audit.append(
            session,
            at=now,
            actor="system",
            action="alert.data_missing" if t.data_missing else "alert.calming",
            subject=f"alert:{t.alert_id}",
            data={"zone": t.zone_id, "hazard": t.hazard, "level": t.level.key},
        )


def _suppress(session: Session, t: Transition, now: datetime) -> None:
    """Audit, once per resolved alert and level, a warning its cooldown holds back."""
    subject = f"alert:{t.alert_id}"
    audit.write_pending(session)
    earlier = session.scalars(
        select(AuditEvent.data).where(
            AuditEvent.action == "alert.suppressed", AuditEvent.subject == subject
        )
    ).all()
    if any(data.get("level") == t.level.key for data in earlier):
        return
    a = t.assessment
    audit.append(
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


def _audit_data(alert: Alert | NewAlert | _Resolving, t: Transition) -> dict[str, Any]:
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
        # only on alerts relaying an official warning: a forecast alert's audit data,
        # and with it the chain's hashes, stay as they were before authorities
        **({"authority": alert.authority} if alert.authority else {}),
    }
