"""Alerts that stay open: their calm clock and latest forecast written, when they change.

A province keeps tens of thousands of hazard alerts open for days, and most
polls change none of them: `update_continued` reads what they store, compares
it with what this poll's CONTINUED transitions say, and writes only the rows
that differ — for the whole poll at once (they touch no other row, so their
order does not matter). `dispatcher.alerts.hazards` calls it first thing when
it applies a poll's transitions (with the cyclic collector paused: `rules.collector`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Text, bindparam, cast, inspect, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from dispatcher.alerts.reconcile import Transition, TransitionKind
from dispatcher.states import OPEN_ALERT_STATES, AlertKind
from dispatcher.storage.models import Alert

__all__ = ["update_continued"]

# ids per IN (…): well within SQLite's and PostgreSQL's parameter limits
_CHUNK = 1000


def update_continued(
    session: Session, transitions: Sequence[Transition], now: datetime
) -> set[int]:
    """Alerts that stay open: their calm clock and latest forecast, for the whole poll
    at once (they touch no other row, so their order does not matter); returns the
    ids of those whose calm clock starts now.

    Only the alerts whose stored values change are written (with `updated_at`,
    which thus says when an alert last changed): in a steady poll a province's
    tens of thousands of open alerts stay as they are, and writing each one
    again every poll was most of that poll's commit. What is stored is read in
    the query that reads the calm clocks; the forecast's evidence is compared
    as the JSON text the column would store, so evidence that would be written
    differently (1.0 for 1, its keys in another order) is never taken for the same.
    """
    continued = [t for t in transitions if t.kind is TransitionKind.CONTINUED]
    ids = [t.alert_id for t in continued if t.alert_id is not None]
    stored = _stored(session, ids)
    # zones with the same numbers share one evidence mapping (rules.evaluate):
    # its JSON text is worked out once
    texts: dict[int, str] = {}
    serialise = _json_serialiser(session)
    calming: dict[datetime | None, list[int]] = {}  # calm clock → the alerts it is stored on
    forecast: list[dict[str, Any]] = []
    for t in continued:
        assert t.alert_id is not None
        calm_since, onset, until, evidence, authority = stored[t.alert_id]
        a = t.assessment
        if a is not None and a.level is not None and t.calm_since is None:
            text = texts.get(id(a.evidence))
            if text is None:
                text = texts[id(a.evidence)] = serialise(dict(a.evidence))
            if (calm_since, onset, until, evidence, authority) != (
                None,
                a.onset,
                a.until,
                text,
                a.authority,
            ):
                forecast.append(
                    {
                        "b_id": t.alert_id,
                        "calm_since": None,
                        "updated_at": now,
                        "onset": a.onset,
                        "until": a.until,
                        "evidence": dict(a.evidence),
                        "authority": a.authority,
                    }
                )
        elif calm_since != t.calm_since:
            calming.setdefault(t.calm_since, []).append(t.alert_id)
    table = Alert.metadata.tables[Alert.__tablename__]
    # Core, not the ORM: no object per alert
    for since, alert_ids in calming.items():
        for start in range(0, len(alert_ids), _CHUNK):
            chunk = alert_ids[start : start + _CHUNK]
            session.execute(
                update(table).where(table.c.id.in_(chunk)).values(calm_since=since, updated_at=now)
            )
    if forecast:
        columns: dict[str, Any] = {key: bindparam(key) for key in forecast[0] if key != "b_id"}
        session.execute(
            update(table).where(table.c.id == bindparam("b_id")).values(columns), forecast
        )
    # alerts loaded as objects (few, if any) are expired when their row was written
    written = {row["b_id"] for row in forecast}.union(*calming.values())
    written_keys = {(alert_id,) for alert_id in written}
    loaded = [o for o in session.identity_map.values() if isinstance(o, Alert)]
    for alert in loaded:
        if inspect(alert).identity in written_keys:
            session.expire(alert)
    return {
        t.alert_id
        for t in continued
        if t.alert_id is not None and stored[t.alert_id][0] is None and t.calm_since is not None
    }


# what `update_continued` compares: calm_since, onset, until, evidence (its JSON text),
# authority
_Stored = tuple[datetime | None, datetime | None, datetime | None, str, str]


def _stored(session: Session, ids: Sequence[int]) -> dict[int, _Stored]:
    """What the alerts of `ids` store of what a continued transition may change.

    Continued alerts are the open ones reconcile was given: every open hazard
    alert is read in one query (no id list to send), and any of `ids` not
    among them by id."""
    columns = (
        Alert.id,
        Alert.calm_since,
        Alert.onset,
        Alert.until,
        # the text as stored, not decoded: compared with the text a write would store
        cast(Alert.evidence, Text),
        Alert.authority,
    )
    wanted = set(ids)
    out: dict[int, _Stored] = {}

    def read(*where: ColumnElement[bool]) -> None:
        for alert_id, calm_since, onset, until, evidence, authority in session.execute(
            select(*columns).where(*where)
        ):
            if alert_id in wanted:
                out[alert_id] = (calm_since, onset, until, evidence, authority)

    if ids:
        read(*_open_hazard())
    rest = [alert_id for alert_id in ids if alert_id not in out]
    for start in range(0, len(rest), _CHUNK):
        read(Alert.id.in_(rest[start : start + _CHUNK]))
    return out


def _open_hazard() -> tuple[ColumnElement[bool], ...]:
    """Where an alert is an open hazard alert."""
    return (Alert.kind == AlertKind.HAZARD, Alert.state.in_(OPEN_ALERT_STATES))


def _json_serialiser(session: Session) -> Callable[[Any], str]:
    """What the database's JSON columns write a value as (SQLAlchemy's own choice)."""
    dialect = session.get_bind().dialect
    serialiser: Callable[[Any], str] | None = getattr(dialect, "_json_serializer", None)
    return serialiser or json.dumps
