"""The alert lifecycle: the one way an alert opens and closes.

Every alert — a hazard at a zone (`dispatcher.alerts.hazards`), an event
(`dispatcher.alerts.events`), a forecast feed that stopped answering
(`dispatcher.alerts.system`), rule files refused (`dispatcher.rulewatch`) —
opens by `open_alert` and closes by `close_alert`: the alert row, its
`alert.*` audit event, and its escalation started or closed
(`dispatcher.escalation`), which is who is told, when, and by what deadline.
Nothing here commits: the caller's one transaction holds all of it, so
either all of it is committed before any message leaves, or none of it is.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.alerts.reconcile import TransitionKind
from dispatcher.escalation import AlertText, Escalation, Policy
from dispatcher.states import AlertKind, AlertState
from dispatcher.storage.models import Alert, Notification

__all__ = ["CODE_ALPHABET", "CODE_LENGTH", "NewAlert", "close_alert", "new_code", "open_alert"]

# no 0/O, 1/I/L, 2/Z, 5/S, 8/B: codes are read aloud and typed on phones
CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
CODE_LENGTH = 4


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
    authority: str = ""  # who issued the official warning it relays


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
        authority=new.authority,
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
