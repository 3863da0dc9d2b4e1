"""The alert lifecycle: the one way an alert opens and closes.

Every alert — a hazard at a zone (`dispatcher.alerts.hazards`), an event
(`dispatcher.alerts.events`), a forecast feed that stopped answering
(`dispatcher.alerts.system`), rule files refused (`dispatcher.rulewatch`) —
opens by `open_alert` and closes by `close_alert`: the alert row, its
`alert.*` audit event, and its escalation started or closed
(`dispatcher.escalation`), which is who is told, when, and by what deadline.
A poll opening thousands opens them together (`open_alerts`): their rows
inserted at once, then each one's audit event and escalation, in order —
the same rows as one `open_alert` each, without a round trip per alert.
Nothing here commits: the caller's one transaction holds all of it, so
either all of it is committed before any message leaves, or none of it is.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from dispatcher import audit
from dispatcher.alerts.reconcile import TransitionKind
from dispatcher.escalation import AlertText, Escalation, Policy
from dispatcher.escalation.told import AlertRef
from dispatcher.outbox.rows import QueuedRow
from dispatcher.states import AlertKind, AlertState
from dispatcher.storage import held
from dispatcher.storage.models import Alert, AlertFacts

__all__ = [
    "CODE_ALPHABET",
    "CODE_LENGTH",
    "Closing",
    "NewAlert",
    "OpenedAlert",
    "Opening",
    "close_alert",
    "close_alerts",
    "new_code",
    "new_codes",
    "open_alert",
    "open_alerts",
]

# no 0/O, 1/I/L, 2/Z, 5/S, 8/B: codes are read aloud and typed on phones
CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
CODE_LENGTH = 4


def new_code(session: Session) -> str:
    """A short alert code, unique among all alerts (people reply with it)."""
    (code,) = new_codes(session, 1)
    return code


def new_codes(session: Session, count: int) -> list[str]:
    """`count` distinct short alert codes, unique among all alerts, in one query or a few.

    Drawn in order as `new_code` draws them one by one (a code already drawn
    is drawn again), so a seeded generator gives the same codes either way.
    """
    codes: list[str] = []
    drawn: set[str] = set()

    def draw() -> str:
        while True:
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            if code not in drawn:
                drawn.add(code)
                return code

    codes = [draw() for _ in range(count)]
    while taken := _taken(session, codes):
        # rare: an older alert has it; only those are drawn again
        codes = [draw() if code in taken else code for code in codes]
    return codes


def _taken(session: Session, codes: list[str]) -> set[str]:
    taken: set[str] = set()
    for start in range(0, len(codes), _CHUNK):
        chunk = codes[start : start + _CHUNK]
        taken.update(session.scalars(select(Alert.code).where(Alert.code.in_(chunk))))
    return taken


# ids or codes per IN (…): well within SQLite's and PostgreSQL's parameter limits
_CHUNK = 1000


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
    event_id: int | None = None  # the event it joins, when known as it opens


@dataclass(frozen=True)
class Opening:
    """One alert to open: what it is about (`new`), its words once it has its code
    (`text`), its audit data after the code (`data`), the transition that opens it,
    the alert it supersedes (`previous`) and a policy replacing its own (`policy`)."""

    new: NewAlert
    text: Callable[[AlertFacts], AlertText]
    data: Mapping[str, Any]
    transition: str = TransitionKind.NEW.value
    previous: Alert | None = None
    policy: Policy | None = None


def open_alert(
    session: Session,
    new: NewAlert,
    *,
    escalation: Escalation,
    text: Callable[[AlertFacts], AlertText],
    data: Mapping[str, Any],
    now: datetime,
    transition: str = TransitionKind.NEW.value,
    previous: Alert | None = None,
    policy: Policy | None = None,
    id_: int | None = None,
) -> tuple[Alert, list[QueuedRow]]:
    """Open an alert: its row, `alert.{transition}` audited, its escalation started.

    `text` gives the warning's words once the alert has its code (they quote
    it); `data` is the audit event's, after the code. With `previous` (the
    alert of another level this one replaces) that one is marked superseded
    and its escalation handed over. `policy` replaces the one escalation.yaml
    gives the alert. `id_` is the id taken for it beforehand (`held.next_ids`).
    Returns the alert and the notifications enqueued; does not commit.
    """
    opening = Opening(new, text, data, transition, previous, policy)
    ids = None if id_ is None else [id_]
    ((opened, notes),) = open_alerts(session, [opening], escalation=escalation, now=now, ids=ids)
    alert = session.get(Alert, opened.id)  # its one caller may change it: the object
    assert alert is not None
    return alert, notes


def open_alerts(
    session: Session,
    openings: Sequence[Opening],
    *,
    escalation: Escalation,
    now: datetime,
    ids: Sequence[int] | None = None,
) -> list[tuple[AlertFacts, list[QueuedRow]]]:
    """Open many alerts as `open_alert` opens one, in order; does not commit.

    Their rows are inserted together, without an ORM object each (their ids,
    read back in order, go into idempotency keys and audit subjects), then
    each one's `alert.{transition}` is audited and its escalation started, as
    fresh: nothing was sent about an alert that did not exist. Returns each
    alert (an `OpenedAlert`) with its notifications enqueued. `ids` are theirs
    when taken beforehand (`held.next_ids`), else they are taken here.
    """
    codes = new_codes(session, len(openings))
    superseded = [opening.previous for opening in openings if opening.previous is not None]
    _end(session, superseded, AlertState.SUPERSEDED, now)
    opened: list[tuple[AlertFacts, list[QueuedRow]]] = []
    session.flush()  # what the caller changed goes first, as with session.add
    # every id at once: no query between two parts (a part's rows may still be
    # on their way to PostgreSQL, `held.batch`), and the same ids as part by part
    all_ids = list(ids) if ids is not None else held.next_ids(session, Alert, len(openings))
    if len(all_ids) != len(openings):
        raise ValueError(f"{len(openings)} alerts to open, {len(all_ids)} ids taken for them")
    for start in range(0, len(openings), _WRITE_EVERY):
        part = openings[start : start + _WRITE_EVERY]
        rows = [
            _row(opening, code, now) for opening, code in zip(part, codes[start:], strict=False)
        ]
        ids = all_ids[start : start + _WRITE_EVERY]
        session.flush()  # (nothing, unless the part before changed objects)
        held.insert_rows(
            session, Alert, [{"id": id_, **row} for id_, row in zip(ids, rows, strict=True)]
        )
        for id_, row, opening in zip(ids, rows, part, strict=True):
            alert = OpenedAlert(id=id_, **row)
            _audit(session, alert, opening.transition, opening.data, now)
            notes = escalation.start(
                session,
                alert,
                transition=opening.transition,
                text=opening.text(alert),
                now=now,
                previous=opening.previous,
                policy=opening.policy,
                fresh=True,
            )
            opened.append((alert, notes))
        if len(openings) > _WRITE_EVERY:
            # a batch's rows and audit events so far written (in order, as at its end):
            # memory stays bounded, and a long commit never sits idle in its
            # transaction for long (a fenced one is ended after one lease idle)
            held.write(session)
            audit.write_pending(session)
    return opened


# alerts opened between two writes of what a batch holds
_WRITE_EVERY = 2000


# Not frozen: a province's cold front builds one or more per alert, tens of thousands,
# and a frozen dataclass sets each field through object.__setattr__ (twice the cost).
# Nothing changes one once built; none is hashed (`evidence` is a dict).
@dataclass(slots=True)
class OpenedAlert:
    """An alert row as `open_alerts` inserted it: its columns, without an ORM object
    (a province's cold front opens tens of thousands). Reads as `AlertFacts`."""

    id: int
    code: str
    kind: str
    zone_id: str | None
    hazard: str
    rule_id: str
    title: str
    level: str
    state: str
    onset: datetime | None
    until: datetime | None
    evidence: dict[str, Any]
    authority: str
    opened_at: datetime
    updated_at: datetime
    supersedes_id: int | None
    forecast_run_id: int | None
    event_id: int | None
    epoch: int


def _row(opening: Opening, code: str, now: datetime) -> dict[str, Any]:
    """The column values of the alert `opening` opens (all but its id)."""
    new, previous = opening.new, opening.previous
    return {
        "code": code,
        "kind": new.kind.value,
        "zone_id": new.zone_id,
        "hazard": new.hazard,
        "rule_id": new.rule_id,
        "title": new.title,
        "level": new.level,
        "state": AlertState.FIRING.value,
        "onset": new.onset,
        "until": new.until,
        "evidence": dict(new.evidence),
        "authority": new.authority,
        "opened_at": now,
        "updated_at": now,
        "supersedes_id": previous.id if previous else None,
        "forecast_run_id": new.forecast_run_id,
        "event_id": new.event_id,
        "epoch": 0,
    }


def close_alert(
    session: Session,
    alert: Alert,
    *,
    escalation: Escalation,
    body: str,
    data: Mapping[str, Any],
    now: datetime,
    bodies: Mapping[str, str] | None = None,
) -> list[QueuedRow]:
    """Resolve an alert: `alert.resolved` audited, the rest of its escalation cancelled,
    and `body` sent to everyone who was told (villages and groups in their medium's
    words from `bodies`). Does not commit."""
    text = AlertText(body, "", bodies or {})
    (notes,) = close_alerts(session, [Closing(alert, text, data)], escalation=escalation, now=now)
    session.flush()
    return notes


@dataclass(frozen=True)
class Closing:
    """One alert to resolve: the alert (an `Alert`, or only its columns), the words of
    its end (`text.body` for people, `text.bodies` per medium), its audit data
    after the code."""

    alert: AlertRef
    text: AlertText
    data: Mapping[str, Any]


def close_alerts(
    session: Session, closings: Sequence[Closing], *, escalation: Escalation, now: datetime
) -> list[list[QueuedRow]]:
    """Resolve many alerts as `close_alert` resolves one, in order; their rows ended,
    their escalations cancelled and their people told with a few statements for
    all, no query or flush per alert. Returns each alert's notifications; does
    not commit."""
    transition = TransitionKind.RESOLVED.value
    data = {closing.alert.id: closing.data for closing in closings}
    _end(session, [closing.alert for closing in closings], AlertState.RESOLVED, now)
    return escalation.close_all(
        session,
        [(closing.alert, closing.text) for closing in closings],
        transition=transition,
        now=now,
        # each alert's own event ahead of its escalation's, as one at a time
        before=lambda alert: _audit(session, alert, transition, data[alert.id], now),
    )


def _end(session: Session, alerts: Sequence[AlertRef], state: AlertState, now: datetime) -> None:
    """Mark `alerts` ended: one UPDATE per thousand, not one per alert at the next flush.
    Their objects (those given, and those the session holds for alerts given as
    columns) take the new values as their stored ones."""
    values = {"state": state, "closed_at": now, "updated_at": now}
    ids = [alert.id for alert in alerts]
    for start in range(0, len(ids), _CHUNK):
        session.execute(
            update(Alert).where(Alert.id.in_(ids[start : start + _CHUNK])).values(values),
            execution_options={"synchronize_session": False},
        )
    in_session = session.identity_map
    for alert in alerts:
        loaded = (
            alert if isinstance(alert, Alert) else in_session.get(identity_key(Alert, alert.id))
        )
        if loaded is not None:
            for key, value in values.items():
                set_committed_value(loaded, key, value)


def _audit(
    session: Session, alert: AlertRef, transition: str, data: Mapping[str, Any], now: datetime
) -> None:
    audit.append(
        session,
        at=now,
        actor="system",
        action=f"alert.{transition}",
        subject=f"alert:{alert.id}",
        data={"code": alert.code, **data},
    )
