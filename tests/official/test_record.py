"""The record of received official warnings: Alert, Update, Cancel, expiry, refusals."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.official.record import Receipt, receive, warnings_in_force
from dispatcher.storage.models import AuditEvent, ReceivedWarning
from rules.types import Level, ZoneSpec
from tests.official.data import ALERT, BOMB, CANCEL, UPDATE, XXE, example

AT = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)  # 2026-01-07 00:00 in Liulin
ZONES = [
    ZoneSpec("LL-1", "一号点", "collapse", "柳林镇", "high", frozenset(), 37.43, 110.89, "P1"),
    ZoneSpec("LL-2", "二号点", "landslide", "穆村镇", "high", frozenset(), 37.40, 110.80, "P2"),
]


def take(sessions: sessionmaker[Session], data: bytes, at: datetime = AT) -> Receipt:
    with sessions.begin() as session:
        return receive(session, data, source="test", now=at)


def in_force(sessions: sessionmaker[Session], at: datetime = AT) -> list[tuple[str, Level, str]]:
    with sessions() as session:
        found = warnings_in_force(session, at, ZONES, "141125")
    return [(w.event, w.level, ",".join(sorted(w.zone_ids))) for w in found]


def states(sessions: sessionmaker[Session]) -> list[tuple[str | None, str]]:
    with sessions() as session:
        rows = session.scalars(select(ReceivedWarning).order_by(ReceivedWarning.id)).all()
        return [(row.msg_type, row.state) for row in rows]


def test_an_alert_is_in_force_on_the_zones_its_geocode_covers(
    sessions: sessionmaker[Session],
) -> None:
    receipt = take(sessions, ALERT.read_bytes())

    assert receipt.state == "in_force" and receipt.changes_warnings
    assert in_force(sessions) == [("寒潮", Level.YELLOW, "LL-1,LL-2")]
    with sessions() as session:
        (warning,) = warnings_in_force(session, AT, ZONES, "141125")
    assert warning.authority == "吕梁市气象台"
    assert warning.expires == datetime(2026, 1, 8, 0, 0, tzinfo=UTC)


def test_an_update_replaces_the_warning_it_references(sessions: sessionmaker[Session]) -> None:
    take(sessions, ALERT.read_bytes())
    receipt = take(sessions, UPDATE.read_bytes())

    assert receipt.state == "in_force" and len(receipt.ended) == 1
    assert states(sessions) == [("Alert", "superseded"), ("Update", "in_force")]
    assert in_force(sessions) == [("寒潮", Level.ORANGE, "LL-1,LL-2")]


def test_a_cancel_ends_every_warning_it_references(sessions: sessionmaker[Session]) -> None:
    for message in (ALERT, UPDATE, CANCEL):
        take(sessions, message.read_bytes())

    assert states(sessions) == [
        ("Alert", "superseded"),
        ("Update", "cancelled"),
        ("Cancel", "cancel"),
    ]
    assert in_force(sessions) == []


def test_a_warning_ends_at_its_expiry(sessions: sessionmaker[Session]) -> None:
    take(sessions, ALERT.read_bytes())

    assert in_force(sessions, datetime(2026, 1, 7, 23, 59, tzinfo=UTC)) != []
    assert in_force(sessions, datetime(2026, 1, 8, 0, 0, tzinfo=UTC)) == []


def test_a_message_expired_on_arrival_does_nothing(sessions: sessionmaker[Session]) -> None:
    late = datetime(2026, 1, 9, 0, 0, tzinfo=UTC)

    receipt = take(sessions, ALERT.read_bytes(), at=late)

    assert receipt.state == "expired" and not receipt.changes_warnings
    assert receipt.reason == (
        "expired at 2026-01-08T08:00:00+08:00, before it was received: nothing applied"
    )
    assert in_force(sessions, AT) == []  # not even at a time it would have been in force


def test_the_same_message_twice_is_recorded_once(sessions: sessionmaker[Session]) -> None:
    first = take(sessions, ALERT.read_bytes())
    again = take(sessions, ALERT.read_bytes())

    assert again.state == "duplicate" and again.earlier == first.id
    assert states(sessions) == [("Alert", "in_force")]


def test_a_test_message_is_recorded_but_not_in_force(sessions: sessionmaker[Session]) -> None:
    data = ALERT.read_bytes().replace(b"<status>Actual", b"<status>Test")

    receipt = take(sessions, data)

    assert (receipt.state, receipt.reason) == ("ignored", "status Test: not an actual warning")
    assert in_force(sessions) == []


def test_hostile_and_invalid_messages_are_refused_recorded_and_audited(
    sessions: sessionmaker[Session],
) -> None:
    invalid = example("thunderstorm").replace(b"<severity>Severe", b"<severity>Orange")

    receipts = [take(sessions, data) for data in (BOMB, XXE, invalid)]

    assert [r.state for r in receipts] == ["refused"] * 3
    assert "XML bomb" in (receipts[0].reason or "")
    assert "(XXE)" in (receipts[1].reason or "")
    assert (receipts[2].reason or "").startswith("does not follow the CAP 1.2 schema")
    with sessions() as session:
        audited = session.scalars(
            select(AuditEvent.data).where(AuditEvent.action == "official.refused")
        ).all()
    assert [data["reason"] for data in audited] == [r.reason for r in receipts]
    assert in_force(sessions) == []


def test_an_identifier_received_again_with_other_content_is_refused(
    sessions: sessionmaker[Session],
) -> None:
    take(sessions, ALERT.read_bytes())
    changed = ALERT.read_bytes().replace(b"<severity>Moderate", b"<severity>Extreme")

    receipt = take(sessions, changed)

    assert receipt.state == "refused"
    assert "was already received" in (receipt.reason or "")
    assert in_force(sessions) == [("寒潮", Level.YELLOW, "LL-1,LL-2")]


def test_an_area_outside_the_county_covers_no_zone(sessions: sessionmaker[Session]) -> None:
    then = datetime(2003, 6, 17, 22, 0, tzinfo=UTC)
    take(sessions, example("thunderstorm"), at=then)  # California

    assert states(sessions) == [("Alert", "in_force")]
    assert in_force(sessions, then) == []
