"""The acknowledge service every way of saying "收到" goes through, on both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from dispatcher import audit
from dispatcher.alerts.acknowledge import (
    BARE_REPLY_WINDOW,
    AckOutcome,
    acknowledge,
    find_open_alert_by_code,
    latest_open_alert_for,
)
from dispatcher.escalation import Escalation, Policies
from dispatcher.storage.models import (
    Acknowledgement,
    Alert,
    AuditEvent,
    EscalationTimer,
    Notification,
)
from tests.support import OPENED, example_county, example_roster, open_alert

ESCALATION = Escalation(
    example_county(), example_roster(), Policies(), frozenset({"console"}), "console"
)

DISASTER_PREVENTION = "p-ll-lmy-1"  # 王建平
MONITORING = "p-ll-lmy-2"
MASS_MONITOR = "p-ll-lmy-3"
OFFICER = "p-duty-li"  # 李慧敏
OTHER_OFFICER = "p-duty-zhang"


def ack(
    db: sessionmaker[Session],
    alert_id: int,
    person_id: str | None,
    *,
    minutes: int = 10,
    actor: str | None = None,
    method: str = "sms",
    note: str | None = None,
) -> AckOutcome:
    with db.begin() as session:
        alert = session.get_one(Alert, alert_id)
        return acknowledge(
            session,
            alert=alert,
            person_id=person_id,
            actor=actor or person_id or "console:wang",
            method=method,
            note=note,
            at=OPENED + timedelta(minutes=minutes),
        )


def state(db: sessionmaker[Session], alert_id: int) -> tuple[str, str | None]:
    with db() as session:
        alert = session.get_one(Alert, alert_id)
        return alert.state, alert.acknowledged_by


def pending_timers(db: sessionmaker[Session], alert_id: int) -> int:
    with db() as session:
        return len(
            session.scalars(
                select(EscalationTimer).where(
                    EscalationTimer.alert_id == alert_id, EscalationTimer.status == "pending"
                )
            ).all()
        )


def test_an_acknowledgement_records_who_when_how_and_the_note(db: sessionmaker[Session]) -> None:
    alert_id = open_alert(db, ESCALATION, code="ACDE")

    outcome = ack(db, alert_id, MONITORING, method="link", note="已到现场巡查")

    assert (outcome.accepted, outcome.complete, outcome.reason) == (True, True, "已确认")
    with db() as session:
        [row] = session.scalars(select(Acknowledgement)).all()
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "alert.ack")).one()
        assert audit.verify(session) == []
    assert (row.person_id, row.method, row.note, row.role) == (
        MONITORING,
        "link",
        "已到现场巡查",
        "monitoring",
    )
    assert row.at == OPENED + timedelta(minutes=10)
    assert event.data == {
        "code": "ACDE",
        "person": MONITORING,
        "method": "link",
        "role": "monitoring",
        "note": "已到现场巡查",
    }


def test_acknowledging_marks_the_alert_and_stops_its_escalation(
    db: sessionmaker[Session],
) -> None:
    alert_id = open_alert(db, ESCALATION, code="ACDE")
    assert pending_timers(db, alert_id) > 0

    ack(db, alert_id, MASS_MONITOR)

    assert state(db, alert_id) == ("acknowledged", MASS_MONITOR)
    assert pending_timers(db, alert_id) == 0


def test_a_repeat_by_the_same_person_is_accepted_and_records_nothing_new(
    db: sessionmaker[Session],
) -> None:
    alert_id = open_alert(db, ESCALATION, code="ACDE")
    ack(db, alert_id, MONITORING)

    again = ack(db, alert_id, MONITORING, minutes=12)

    assert (again.accepted, again.complete) == (True, True)
    with db() as session:
        assert len(session.scalars(select(Acknowledgement)).all()) == 1
        acks = session.scalars(select(AuditEvent).where(AuditEvent.action == "alert.ack")).all()
        assert len(acks) == 1


def test_a_second_person_is_recorded_and_told_who_acknowledged_first(
    db: sessionmaker[Session],
) -> None:
    alert_id = open_alert(db, ESCALATION, code="ACDE")
    ack(db, alert_id, DISASTER_PREVENTION)

    second = ack(db, alert_id, OFFICER, minutes=15)

    assert (second.accepted, second.complete, second.reason) == (True, True, "已由王建平确认")
    with db() as session:
        assert len(session.scalars(select(Acknowledgement)).all()) == 2


def test_a_console_acknowledgement_without_a_person_counts_by_its_actor(
    db: sessionmaker[Session],
) -> None:
    alert_id = open_alert(db, ESCALATION, code="ACDE")

    first = ack(db, alert_id, None, actor="console:wang", method="console")
    again = ack(db, alert_id, None, actor="console:wang", method="console")

    assert first.complete and again.accepted
    assert state(db, alert_id) == ("acknowledged", "console:wang")
    with db() as session:
        assert len(session.scalars(select(Acknowledgement)).all()) == 1


def test_a_red_warning_needs_the_disaster_prevention_person_and_the_duty_officer(
    db: sessionmaker[Session],
) -> None:
    alert_id = open_alert(db, ESCALATION, level="red", code="ACDE")

    first = ack(db, alert_id, DISASTER_PREVENTION)
    assert (first.accepted, first.complete, first.reason) == (True, False, "已确认，尚需值班员确认")
    assert state(db, alert_id) == ("firing", None)
    assert pending_timers(db, alert_id) > 0  # escalation goes on

    second = ack(db, alert_id, OFFICER, minutes=12)

    assert (second.accepted, second.complete, second.reason) == (True, True, "已确认")
    assert state(db, alert_id) == ("acknowledged", f"{DISASTER_PREVENTION}, {OFFICER}")
    assert pending_timers(db, alert_id) == 0


def test_a_red_warning_is_not_complete_with_two_people_of_the_bureau(
    db: sessionmaker[Session],
) -> None:
    alert_id = open_alert(db, ESCALATION, level="red", code="ACDE")

    ack(db, alert_id, OFFICER)
    second = ack(db, alert_id, OTHER_OFFICER, minutes=11)
    third = ack(db, alert_id, MONITORING, minutes=12)

    assert (second.complete, second.reason) == (False, "已确认，尚需防灾责任人确认")
    assert (third.complete, third.reason) == (False, "已确认，尚需防灾责任人确认")
    assert state(db, alert_id)[0] == "firing"


def test_a_closed_alert_cannot_be_acknowledged(db: sessionmaker[Session]) -> None:
    alert_id = open_alert(db, ESCALATION, code="ACDE")
    with db.begin() as session:
        session.execute(update(Alert).where(Alert.id == alert_id).values(state="resolved"))

    outcome = ack(db, alert_id, MONITORING)

    assert (outcome.accepted, outcome.complete, outcome.reason) == (
        False,
        False,
        "预警ACDE已解除，无需确认",
    )
    with db() as session:
        assert session.scalars(select(Acknowledgement)).all() == []


def test_an_unknown_method_is_refused(db: sessionmaker[Session]) -> None:
    alert_id = open_alert(db, ESCALATION, code="ACDE")

    with pytest.raises(ValueError, match="unknown acknowledgement method 'fax'"):
        ack(db, alert_id, MONITORING, method="fax")


def test_an_open_alert_is_found_by_its_code_in_any_case(db: sessionmaker[Session]) -> None:
    alert_id = open_alert(db, ESCALATION, code="ACDE")
    closed = open_alert(db, ESCALATION, code="FGHJ")
    with db.begin() as session:
        session.execute(update(Alert).where(Alert.id == closed).values(state="superseded"))

    with db() as session:
        found = find_open_alert_by_code(session, " acde ")
        assert found is not None and found.id == alert_id
        assert find_open_alert_by_code(session, "FGHJ") is None
        assert find_open_alert_by_code(session, "") is None


def test_the_latest_open_alert_of_a_person_is_the_last_one_sent_to_them(
    db: sessionmaker[Session],
) -> None:
    older = open_alert(db, ESCALATION, code="ACDE")
    newer = open_alert(db, ESCALATION, code="FGHJ")
    with db() as session:
        # nothing has left the outbox yet: a reply cannot be about it
        assert latest_open_alert_for(session, MONITORING, OPENED) is None
    with db.begin() as session:  # the delivery worker sent them, older first
        session.execute(update(Notification).values(status="sent"))

    with db() as session:
        latest = latest_open_alert_for(session, MONITORING, OPENED)
        assert latest is not None and latest.id == newer
        assert latest_open_alert_for(session, "p-lead-gao", OPENED) is None  # never told
        # once the newer one is closed, a reply is about the older one
        session.execute(update(Alert).where(Alert.id == newer).values(state="resolved"))
        latest = latest_open_alert_for(session, MONITORING, OPENED)
        assert latest is not None and latest.id == older
        # a bare "1" a day and more later is about nothing any more
        assert latest_open_alert_for(session, MONITORING, OPENED + BARE_REPLY_WINDOW) is not None
        late = OPENED + BARE_REPLY_WINDOW + timedelta(seconds=1)
        assert latest_open_alert_for(session, MONITORING, late) is None
