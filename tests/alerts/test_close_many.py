"""Resolving many alerts at once (a province's all-clear) writes what resolving each does.

`close_alerts` ends many alerts with a few statements for all, and takes an
alert as an `Alert` or as its columns alone; `close_alert` ends one. Both must
leave the same rows — alerts, outbox rows, timers — and the same audit chain,
on both databases.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from dispatcher import audit
from dispatcher.alerts.hazards import Wording, apply_transitions
from dispatcher.alerts.lifecycle import Closing, close_alert, close_alerts
from dispatcher.alerts.reconcile import Transition, TransitionKind
from dispatcher.directory import sync_directory
from dispatcher.escalation import AlertText, Escalation, Policies, escalate_due
from dispatcher.escalation.policy import DEFAULT_CHANNEL, DEFAULT_POLICIES, Policy, Step
from dispatcher.escalation.timers import cancel_escalations
from dispatcher.feeds.points import assign_points
from dispatcher.roster import Roster
from dispatcher.storage import held
from dispatcher.storage.db import make_engine, session_factory
from dispatcher.storage.models import Alert, AuditEvent, Base, EscalationTimer, Notification
from rules.types import Level
from tests.support import OPENED, ZONE, example_county, open_alert

COUNTY = example_county()
# zones with and without a village's loudspeakers and a township's group
ZONES = ("LL-MC-005", "LL-LL-001", "LL-MC-005", "LL-LL-001", "LL-MC-005")
LEVELS = ("orange", "yellow", "red", "orange", "blue")
TABLES: tuple[type[Any], ...] = (Alert, Notification, EscalationTimer, AuditEvent)
CHANNELS = frozenset({"console", "twilio_voice", "broadcast", "wecom", "dingtalk"})
RESOLVED_AT = OPENED + timedelta(minutes=45)
BODY = "【柳林县自然资源局】寒潮预警解除"
BODIES = {
    "sms": BODY,
    "voice": "寒潮预警解除了",
    "broadcast": "广播：预警解除",
    "im": "群：预警解除",
}


def _escalation() -> Escalation:
    """Orange tells a person, the village and the groups at once; the built-in policies
    plan later steps and deadlines for every level (timers to cancel)."""
    audiences = Step(
        timedelta(0),
        ("disaster_prevention",),
        channels=("twilio_voice", DEFAULT_CHANNEL),
        broadcast=("village",),
        im=("township", "duty-room"),
    )
    orange = Policy("test:orange", (audiences, *DEFAULT_POLICIES["orange"].steps[1:]))
    policies = Policies(levels={**DEFAULT_POLICIES, "orange": orange})
    return Escalation(COUNTY, Roster.unconfigured(COUNTY), policies, CHANNELS, "console")


@dataclass(frozen=True)
class _Columns:
    """An alert as a caller that read only its columns passes it."""

    id: int
    code: str
    level: str


def _opened(db: sessionmaker[Session], esc: Escalation) -> list[int]:
    """Five alerts told, the steps due twelve minutes on fired (their messages pending)."""
    ids = [
        open_alert(db, esc, level=level, zone_id=zone, code=f"C{n}AA")
        for n, (zone, level) in enumerate(zip(ZONES, LEVELS, strict=True))
    ]
    escalate_due(db, esc, OPENED + timedelta(minutes=12))
    return ids


def _data(n: int) -> dict[str, Any]:
    return {"zone": ZONES[n], "level": LEVELS[n]}


def _rows(session: Session, new_after: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables a resolution writes, by id; the ids of rows written by it
    as their rank (PostgreSQL does not give back ids a rolled-back run took)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for model in TABLES:
        columns = [c.key for c in inspect(model).column_attrs]
        table = model.__tablename__
        rows = []
        for rank, row in enumerate(session.scalars(select(model).order_by(model.id))):
            values = {c: getattr(row, c) for c in columns}
            if values["id"] > new_after[table]:
                values["id"] = f"new {rank}"
            rows.append(values)
        out[table] = rows
    return out


def _last_ids(session: Session) -> dict[str, int]:
    return {
        model.__tablename__: session.scalar(select(model.id).order_by(model.id.desc()).limit(1))
        or 0
        for model in TABLES
    }


def test_resolving_many_at_once_writes_the_rows_and_chain_of_resolving_each_in_turn(
    db: sessionmaker[Session],
) -> None:
    # given five open alerts whose people, village and groups were told, timers pending
    esc = _escalation()
    ids = _opened(db, esc)
    with db() as session:
        before = _last_ids(session)

    # when they are resolved one by one, as a system alert is ...
    with db() as session, session.begin():
        one_by_one = [
            close_alert(
                session,
                session.get_one(Alert, alert_id),
                escalation=esc,
                body=BODY,
                bodies=BODIES,
                data=_data(n),
                now=RESOLVED_AT,
            )
            for n, alert_id in enumerate(ids)
        ]
        session.flush()
        each = _rows(session, before)
        told_each = [[(r.idempotency_key, r.body) for r in notes] for notes in one_by_one]
        session.rollback()

    # ... and, from the same state, all at once as a poll does, given their columns alone
    with db() as session, session.begin():
        with audit.batch(session), held.batch(session):
            columns = {
                alert_id: _Columns(alert_id, code, level)
                for alert_id, code, level in session.execute(
                    select(Alert.id, Alert.code, Alert.level)
                )
            }
            at_once = close_alerts(
                session,
                [
                    Closing(columns[alert_id], AlertText(BODY, "", BODIES), _data(n))
                    for n, alert_id in enumerate(ids)
                ],
                escalation=esc,
                now=RESOLVED_AT,
            )
        session.flush()
        together = _rows(session, before)
        told_together = [[(r.idempotency_key, r.body) for r in notes] for notes in at_once]
        problems = audit.verify(session)
        session.rollback()

    # then every row, id and audit event is the same, and the chain verifies
    assert problems == []
    assert told_together == told_each
    assert together == each
    resolved = [r for r in each["notifications"] if r["transition"] == "resolved"]
    assert {r["channel"] for r in resolved} == {"console", "broadcast", "wecom"}
    assert {r["body"] for r in resolved if r["channel"] == "broadcast"} == {"广播：预警解除"}
    cancelled = [r for r in each["escalation_timers"] if r["status"] == "cancelled"]
    assert {r["alert_id"] for r in cancelled} == set(ids)
    unsent = [r for r in each["notifications"] if r["status"] == "cancelled"]
    assert unsent and all(r["transition"].startswith("esc") for r in unsent)


def test_an_alert_resolved_by_its_columns_reads_resolved_in_a_session_holding_its_object(
    db: sessionmaker[Session],
) -> None:
    # given an open alert whose object the session holds
    esc = _escalation()
    (alert_id, *_) = _opened(db, esc)
    with db() as session, session.begin():
        alert = session.get_one(Alert, alert_id)
        assert alert.state == "firing"

        # when it is resolved given its columns alone
        close_alerts(
            session,
            [Closing(_Columns(alert.id, alert.code, alert.level), AlertText(BODY, "", {}), {})],
            escalation=esc,
            now=RESOLVED_AT,
        )

        # then the object says so without being read again, and so does the row
        assert (alert.state, alert.closed_at) == ("resolved", RESOLVED_AT)
        stored = session.execute(
            select(Alert.__table__.c.state).where(Alert.__table__.c.id == alert_id)
        ).scalar_one()
        assert stored == "resolved"


def _plans(engine: Engine, statements: list[tuple[str, Any]]) -> list[str]:
    with engine.connect() as conn:
        return [
            " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", p))
            for sql, p in statements
        ]


def test_cancelling_escalations_searches_the_alerts_own_rows_not_every_pending_one(
    tmp_path: Path,
) -> None:
    # given SQLite without statistics, where the status index looks as good as the alert's
    engine = make_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    Base.metadata.create_all(engine)
    _, point_of = assign_points([(z.id, z.latitude, z.longitude) for z in COUNTY.zones], 0.02)
    db = session_factory(engine)
    with db.begin() as session:
        sync_directory(session, COUNTY, point_of, OPENED)
    ids = _opened(db, _escalation())
    updates: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().startswith("UPDATE"):
            updates.append((statement, parameters))

    # when their escalations are cancelled
    event.listen(engine, "before_cursor_execute", seen)
    with db() as session, session.begin():
        alerts = session.scalars(select(Alert).where(Alert.id.in_(ids))).all()
        cancel_escalations(session, alerts, at=RESOLVED_AT, actor="test", reason="resolved")
    event.remove(engine, "before_cursor_execute", seen)

    # then each statement finds the rows through the alert id, not through the status
    plans = _plans(engine, updates)
    assert len(plans) == 2
    assert all("alert_id" in plan for plan in plans), plans
    engine.dispose()


def test_an_all_clear_renders_only_the_words_of_the_media_it_is_sent_on(
    db: sessionmaker[Session],
) -> None:
    # given an alert whose people were told on the console (an SMS medium) only
    esc = Escalation.plain(COUNTY, "console")
    alert_id = open_alert(db, esc, level="yellow")
    asked: list[str] = []

    def template(hazard: str, rule_id: str, kind: str) -> str | None:
        asked.append(kind)
        return None

    wording = Wording(
        sender=COUNTY.sender,
        timezone=COUNTY.timezone,
        hazard_name=lambda hazard: "寒潮",
        advice=lambda hazard, level: "注意防寒保暖",
        template=template,
    )

    # when the all-clear resolves it
    with db.begin() as session:
        notes = apply_transitions(
            session,
            [Transition(TransitionKind.RESOLVED, ZONE, "cold_wave", Level.YELLOW, alert_id)],
            now=RESOLVED_AT,
            county=COUNTY,
            wording=wording,
            channel="console",
            forecast_run_id=None,
            escalation=esc,
        )

    # then its people hear it, and only the SMS words were rendered for it
    assert notes and all("解除" in note.body for note in notes)
    assert asked == ["sms"]
