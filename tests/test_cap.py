"""CAP 1.2 publishing: every alert transition is a valid CAP message, served over HTTP.

The builder is tested on plain data; the publishing end to end on the example
county's cold wave (new → road icing rises to orange → calm resolves all), on
SQLite and PostgreSQL. Every message is validated against the OASIS CAP 1.2
schema in ../shared/reference/cap (absent: skip locally, fail under CI).
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import xmlschema
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dispatcher import audit
from dispatcher.alerts.reconcile import TransitionKind
from dispatcher.cap import (
    CAP_NAMESPACE,
    CapAlert,
    CapZone,
    MessageRef,
    cap_message,
    message_identifier,
    sender_code,
)
from dispatcher.county import County
from dispatcher.feeds.replay import ReplayFeed
from dispatcher.runtime import Runtime
from dispatcher.settings import Settings
from dispatcher.storage.models import Alert, AuditEvent
from dispatcher.web.app import create_app
from dispatcher.web.state import AppState
from rules.types import Level
from tests.conftest import _postgres_database
from tests.support import Clock
from tests.test_pipeline import AT, CALM, COUNTY, runtime_for

SHARED_CAP = Path(__file__).resolve().parents[2] / "shared" / "reference" / "cap"
CAP = {"cap": CAP_NAMESPACE}
ATOM = {"atom": "http://www.w3.org/2005/Atom"}
SENDER = "14112500000000"
LIULIN = County(
    name="柳林县",
    area_code="141125",
    sender="柳林县自然资源局",
    timezone="Asia/Shanghai",
    people={},
    zones=[],
)
POINT = CapZone(
    id="LL-LL-001",
    name="柳林镇城区龙门塔不稳定斜坡",
    township="柳林镇",
    village="龙门垣村",
    latitude=37.4318,
    longitude=110.8935,
    risk="high",
)


# --- the schema (shared reference data)


@pytest.fixture(scope="module")
def cap_schema() -> xmlschema.XMLSchema:
    xsd = SHARED_CAP / "cap12.xsd"
    if not xsd.is_file():
        reason = (
            f"{xsd} is absent: the OASIS CAP 1.2 schema comes from ../shared/reference "
            "(see its README); without it CAP messages cannot be validated"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return xmlschema.XMLSchema(str(xsd))


def schema_errors(schema: xmlschema.XMLSchema, xml: bytes) -> list[str]:
    return [str(error.reason or error) for error in schema.iter_errors(io.BytesIO(xml))]


def _cap12_examples() -> list[Path]:
    found = [
        path
        for path in sorted(SHARED_CAP.glob("example-*.cap"))
        if ET.parse(path).getroot().tag == f"{{{CAP_NAMESPACE}}}alert"
    ]
    # absent reference data: one case that skips (or fails under CI) through cap_schema
    return found or [SHARED_CAP / "example-*.cap"]


@pytest.mark.parametrize("example", _cap12_examples(), ids=lambda p: p.name)
def test_the_reference_cap_12_examples_validate(
    cap_schema: xmlschema.XMLSchema, example: Path
) -> None:
    assert schema_errors(cap_schema, example.read_bytes()) == []


def test_the_validator_rejects_a_severity_cap_does_not_know(
    cap_schema: xmlschema.XMLSchema,
) -> None:
    xml = cap_message(warning(Level.ORANGE), TransitionKind.NEW, LIULIN, AT)
    broken = xml.replace(b"<severity>Severe</severity>", b"<severity>Orange</severity>")
    assert broken != xml
    assert schema_errors(cap_schema, broken) != []


# --- the builder, on plain data


def warning(level: Level = Level.YELLOW, **changes: object) -> CapAlert:
    values: dict[str, object] = {
        "id": 42,
        "code": "KQ7A",
        "hazard": "cold_wave",
        "hazard_name": "寒潮",
        "level": level,
        "zone": POINT,
        "onset": AT + timedelta(hours=8),
        "until": AT + timedelta(hours=32),
        "evidence": {"drop(daily_min(temperature_2m), 24h)": 12.25},
        "advice": "立即组织受威胁群众转移避险",
        "rule_id": "cma-cold-wave-signal",
        "title": "寒潮预警信号",
        **changes,
    }
    return CapAlert(**values)  # type: ignore[arg-type]


def parse(xml: bytes) -> ET.Element:
    return ET.fromstring(xml)


def text(root: ET.Element, path: str) -> str:
    found = root.findtext(path, namespaces=CAP)
    assert found is not None, f"no {path}"
    return found


def texts(root: ET.Element, path: str) -> list[str]:
    return [e.text or "" for e in root.findall(path, namespaces=CAP)]


def parameters(root: ET.Element) -> dict[str, str]:
    return {
        text(p, "cap:valueName"): text(p, "cap:value")
        for p in root.findall("cap:info/cap:parameter", namespaces=CAP)
    }


FIRST = MessageRef(SENDER, f"{SENDER}_20260107000000_41", "2026-01-07T00:00:00+08:00")


def test_a_new_warning_is_a_valid_cap_alert_for_its_point(cap_schema: xmlschema.XMLSchema) -> None:
    xml = cap_message(warning(Level.ORANGE), TransitionKind.NEW, LIULIN, AT)
    root = parse(xml)
    assert schema_errors(cap_schema, xml) == []
    assert (text(root, "cap:status"), text(root, "cap:msgType"), text(root, "cap:scope")) == (
        "Actual",
        "Alert",
        "Public",
    )
    assert root.find("cap:references", CAP) is None
    assert text(root, "cap:info/cap:language") == "zh-CN"
    assert texts(root, "cap:info/cap:category") == ["Met", "Geo"]
    assert text(root, "cap:info/cap:event") == "寒潮预警"
    assert text(root, "cap:info/cap:senderName") == "柳林县自然资源局"
    assert text(root, "cap:info/cap:headline") == (
        "柳林县自然资源局发布寒潮橙色预警：柳林镇城区龙门塔不稳定斜坡"
    )
    assert text(root, "cap:info/cap:instruction") == "立即组织受威胁群众转移避险"
    assert text(root, "cap:info/cap:area/cap:areaDesc") == (
        "柳林县柳林镇龙门垣村，柳林镇城区龙门塔不稳定斜坡"
    )
    assert text(root, "cap:info/cap:area/cap:circle") == "37.4318,110.8935 1"
    assert (
        text(root, "cap:info/cap:area/cap:geocode/cap:valueName"),
        text(root, "cap:info/cap:area/cap:geocode/cap:value"),
    ) == ("GB/T 2260", "141125")


def test_times_carry_the_county_offset_without_fractions() -> None:
    sent = AT + timedelta(microseconds=654321)
    root = parse(cap_message(warning(), TransitionKind.NEW, LIULIN, sent))
    assert text(root, "cap:sent") == "2026-01-07T00:00:00+08:00"
    assert text(root, "cap:info/cap:effective") == "2026-01-07T00:00:00+08:00"
    assert text(root, "cap:info/cap:onset") == "2026-01-07T08:00:00+08:00"
    assert text(root, "cap:info/cap:expires") == "2026-01-08T08:00:00+08:00"


def test_the_sender_and_identifier_follow_gbt_35965() -> None:
    root = parse(cap_message(warning(), TransitionKind.NEW, LIULIN, AT + timedelta(seconds=7)))
    assert sender_code("141125") == SENDER
    assert text(root, "cap:sender") == SENDER
    assert text(root, "cap:identifier") == f"{SENDER}_20260107000007_42"


def test_the_identifier_depends_only_on_sender_alert_and_time() -> None:
    at = AT + timedelta(minutes=5, microseconds=999)
    first = message_identifier(SENDER, 42, at, "Asia/Shanghai")
    again = message_identifier(SENDER, 42, at.replace(microsecond=0), "Asia/Shanghai")
    other_alert = message_identifier(SENDER, 43, at, "Asia/Shanghai")
    assert first == again == f"{SENDER}_20260107000500_42"
    assert other_alert != first


@pytest.mark.parametrize(
    ("level", "severity"),
    [
        (Level.BLUE, "Minor"),
        (Level.YELLOW, "Moderate"),
        (Level.ORANGE, "Severe"),
        (Level.RED, "Extreme"),
    ],
)
def test_severity_follows_the_warning_colour(level: Level, severity: str) -> None:
    root = parse(cap_message(warning(level), TransitionKind.NEW, LIULIN, AT))
    assert text(root, "cap:info/cap:severity") == severity
    assert parameters(root)["yujing:level"] == level.key


@pytest.mark.parametrize(
    ("onset", "urgency", "certainty"),
    [
        (None, "Immediate", "Observed"),
        (timedelta(hours=-2), "Immediate", "Observed"),
        (timedelta(minutes=40), "Expected", "Likely"),
        (timedelta(hours=8), "Future", "Likely"),
    ],
)
def test_urgency_and_certainty_follow_the_onset(
    onset: timedelta | None, urgency: str, certainty: str
) -> None:
    alert = warning(onset=None if onset is None else AT + onset)
    root = parse(cap_message(alert, TransitionKind.NEW, LIULIN, AT))
    assert text(root, "cap:info/cap:urgency") == urgency
    assert text(root, "cap:info/cap:certainty") == certainty


@pytest.mark.parametrize(
    ("level", "risk", "responses"),
    [
        (Level.BLUE, "high", ["Monitor"]),
        (Level.YELLOW, "high", ["Prepare", "Avoid"]),
        (Level.ORANGE, "very_high", ["Evacuate"]),
        (Level.ORANGE, "high", ["Evacuate"]),
        (Level.ORANGE, "medium", ["Prepare", "Avoid"]),
        (Level.RED, "low", ["Evacuate"]),
    ],
)
def test_orange_evacuates_high_risk_points_and_red_every_point(
    level: Level, risk: str, responses: list[str]
) -> None:
    zone = CapZone(**{**POINT.__dict__, "risk": risk})
    root = parse(cap_message(warning(level, zone=zone), TransitionKind.NEW, LIULIN, AT))
    assert texts(root, "cap:info/cap:responseType") == responses


def test_the_evidence_numbers_are_parameters_and_in_the_description() -> None:
    root = parse(cap_message(warning(), TransitionKind.NEW, LIULIN, AT))
    assert parameters(root) == {
        "yujing:level": "yellow",
        "yujing:rule": "cma-cold-wave-signal",
        "yujing:zone": "LL-LL-001",
        "yujing:evidence:drop(daily_min(temperature_2m), 24h)": "12.25",
    }
    description = text(root, "cap:info/cap:description")
    assert b"KQ7A" not in cap_message(warning(), TransitionKind.NEW, LIULIN, AT)  # the SMS code
    assert "预计1月7日08时起，至1月8日08时" in description
    assert "drop(daily_min(temperature_2m), 24h) = 12.25" in description


def test_an_upgrade_is_an_update_that_references_the_original() -> None:
    alert = warning(Level.ORANGE, previous_level=Level.YELLOW)
    root = parse(cap_message(alert, TransitionKind.UPGRADED, LIULIN, AT, [FIRST]))
    assert text(root, "cap:msgType") == "Update"
    assert text(root, "cap:references") == f"{SENDER},{SENDER}_20260107000000_41,{FIRST.sent}"
    assert parameters(root)["yujing:previousLevel"] == "yellow"
    assert "升级为橙色" in text(root, "cap:info/cap:headline")


def test_a_resolution_is_an_all_clear_cancel_of_every_earlier_message(
    cap_schema: xmlschema.XMLSchema,
) -> None:
    second = MessageRef(SENDER, f"{SENDER}_20260107040000_42", "2026-01-07T04:00:00+08:00")
    xml = cap_message(warning(Level.ORANGE), TransitionKind.RESOLVED, LIULIN, AT, [FIRST, second])
    root = parse(xml)
    assert schema_errors(cap_schema, xml) == []
    assert text(root, "cap:msgType") == "Cancel"
    assert text(root, "cap:references").split() == [str(FIRST), str(second)]
    assert texts(root, "cap:info/cap:responseType") == ["AllClear"]
    assert text(root, "cap:info/cap:urgency") == "Past"
    assert root.find("cap:info/cap:expires", CAP) is None


def test_an_update_or_cancel_without_references_is_refused() -> None:
    for transition in (TransitionKind.UPGRADED, TransitionKind.RESOLVED):
        with pytest.raises(ValueError, match="must reference"):
            cap_message(warning(), transition, LIULIN, AT)


def test_a_drill_message_is_an_exercise() -> None:
    root = parse(cap_message(warning(), TransitionKind.NEW, LIULIN, AT, exercise=True))
    assert text(root, "cap:status") == "Exercise"


def test_a_zone_with_an_outline_gets_a_closed_polygon_instead_of_a_circle(
    cap_schema: xmlschema.XMLSchema,
) -> None:
    outline = ((37.43, 110.89), (37.44, 110.89), (37.44, 110.90))
    zone = CapZone(**{**POINT.__dict__, "polygon": outline})
    xml = cap_message(warning(zone=zone), TransitionKind.NEW, LIULIN, AT)
    root = parse(xml)
    assert schema_errors(cap_schema, xml) == []
    assert texts(root, "cap:info/cap:area/cap:polygon") == [
        "37.43,110.89 37.44,110.89 37.44,110.9 37.43,110.89"
    ]
    assert root.find("cap:info/cap:area/cap:circle", CAP) is None


# --- publishing, end to end on the example county


@dataclass
class Message:
    identifier: str
    sender: str
    sent: str
    msg_type: str
    zone: str
    hazard: str
    references: list[MessageRef]
    xml: bytes


def app_for(rt: Runtime) -> TestClient:
    state = AppState(
        sessions=rt.sessions,
        settings=rt.settings,
        clock=rt.pipeline.clock,
        feed_source=rt.feed.source,
        started_at=rt.pipeline.started_at,
    )
    return TestClient(create_app(state))


def read_message(xml: bytes) -> Message:
    root = parse(xml)
    refs = [
        MessageRef(*entry.split(","))
        for entry in (root.findtext("cap:references", "", CAP)).split()
    ]
    return Message(
        identifier=text(root, "cap:identifier"),
        sender=text(root, "cap:sender"),
        sent=text(root, "cap:sent"),
        msg_type=text(root, "cap:msgType"),
        zone=parameters(root)["yujing:zone"],
        hazard=text(root, "cap:info/cap:eventCode/cap:value"),
        references=refs,
        xml=xml,
    )


def published(client: TestClient) -> list[Message]:
    """Every message in the feed, in feed order, fetched through its link."""
    feed = client.get("/cap/feed.atom", params={"limit": 500})
    assert feed.status_code == 200
    out = []
    for entry in ET.fromstring(feed.content).findall("atom:entry", ATOM):
        link = entry.find("atom:link[@rel='alternate']", ATOM)
        assert link is not None
        response = client.get(link.attrib["href"])
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/cap+xml"
        out.append(read_message(response.content))
    return out


async def run_episode(rt: Runtime, clock: Clock) -> None:
    assert (await rt.pipeline.poll()).transitions.get("new") == 80
    clock.now = AT + timedelta(hours=4)  # road icing reaches orange everywhere
    assert (await rt.pipeline.poll()).transitions.get("upgraded") == 40
    rt.pipeline.feed = ReplayFeed(CALM)
    resolved = 0
    for hour in range(5, 30):  # calm, hourly, until the hold has passed
        clock.now = AT + timedelta(hours=hour)
        resolved += (await rt.pipeline.poll()).transitions.get("resolved", 0)
        if resolved == 80:
            break
    assert resolved == 80


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def episode_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One database per backend for the module: the tests below only read the episode."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('cap') / 'yujing.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture(scope="module")
def episode(episode_db: str) -> Iterator[Runtime]:
    """A cold wave warned, road icing raised to orange, then all resolved by calm weather."""
    clock = Clock(AT)
    rt = runtime_for(episode_db, clock)
    try:
        asyncio.run(run_episode(rt, clock))
        yield rt
    finally:
        asyncio.run(rt.aclose())


@pytest.fixture(scope="module")
def messages(episode: Runtime) -> list[Message]:
    return published(app_for(episode))


def test_every_message_of_a_cold_wave_episode_validates_against_the_schema(
    messages: list[Message], cap_schema: xmlschema.XMLSchema
) -> None:
    assert Counter(m.msg_type for m in messages) == {"Alert": 80, "Update": 40, "Cancel": 80}
    for message in messages:
        assert schema_errors(cap_schema, message.xml) == [], message.identifier


def test_there_is_one_message_per_audited_transition(
    episode: Runtime, messages: list[Message]
) -> None:
    with episode.sessions() as session:
        transitions = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action.in_(
                    ["alert.new", "alert.upgraded", "alert.downgraded", "alert.resolved"]
                )
            )
        ).all()
    # a zone's transitions, not its event's (the bureau's incident is no CAP message)
    zones = [t for t in transitions if "zone" in t.data]
    assert len(messages) == len(zones) == 200
    events = Counter(t.action for t in transitions if "zone" not in t.data)
    # the two events (cold wave, road icing) opened and ended; road icing's went up once
    assert events == {"alert.new": 2, "alert.upgraded": 1, "alert.resolved": 2}


def test_updates_and_cancels_reference_the_earlier_messages_of_their_episode(
    messages: list[Message],
) -> None:
    by_identifier = {m.identifier: m for m in messages}
    for message in messages:
        if message.msg_type == "Alert":
            assert message.references == []
            continue
        assert message.references, message.identifier
        for ref in message.references:
            earlier = by_identifier[ref.identifier]
            assert (ref.sender, ref.sent) == (earlier.sender, earlier.sent)
            assert (earlier.zone, earlier.hazard) == (message.zone, message.hazard)
            assert datetime.fromisoformat(ref.sent) <= datetime.fromisoformat(message.sent)
        assert by_identifier[message.references[0].identifier].msg_type == "Alert"
    # the road icing episode at one zone: Alert, then Update → Alert, then Cancel → both
    icing = [m for m in reversed(messages) if (m.zone, m.hazard) == ("LL-LL-001", "road_icing")]
    assert [m.msg_type for m in icing] == ["Alert", "Update", "Cancel"]
    alert, update, cancel = icing
    assert [r.identifier for r in update.references] == [alert.identifier]
    assert [r.identifier for r in cancel.references] == [alert.identifier, update.identifier]


def test_the_atom_feed_lists_the_messages_newest_first_with_links_to_them(
    episode: Runtime,
) -> None:
    response = app_for(episode).get("/cap/feed.atom", params={"limit": 500})
    assert response.headers["content-type"].startswith("application/atom+xml")
    feed = ET.fromstring(response.content)
    assert feed.tag == "{http://www.w3.org/2005/Atom}feed"
    for required in ("atom:id", "atom:title", "atom:updated", "atom:author/atom:name"):
        assert feed.findtext(required, namespaces=ATOM), required
    entries = feed.findall("atom:entry", ATOM)
    assert len(entries) == 200
    updated = [datetime.fromisoformat(e.findtext("atom:updated", "", ATOM)) for e in entries]
    assert updated == sorted(updated, reverse=True)
    assert feed.findtext("atom:updated", "", ATOM) == entries[0].findtext("atom:updated", "", ATOM)
    for entry in entries:
        assert entry.findtext("atom:id", "", ATOM).startswith("urn:uuid:")
        assert entry.findtext("atom:title", "", ATOM).startswith("柳林县自然资源局")
        [link] = entry.findall("atom:link", ATOM)
        assert link.attrib["rel"] == "alternate"
        assert link.attrib["type"] == "application/cap+xml"
        assert re.fullmatch(
            r"http://testserver/cap/141125\d{8}_\d{14}_\d+\.xml", link.attrib["href"]
        )
    assert len({e.findtext("atom:id", "", ATOM) for e in entries}) == 200


def test_the_feed_returns_the_latest_messages_up_to_the_limit(episode: Runtime) -> None:
    feed = ET.fromstring(app_for(episode).get("/cap/feed.atom", params={"limit": 5}).content)
    entries = feed.findall("atom:entry", ATOM)
    assert len(entries) == 5
    assert {e.findtext("atom:summary", "", ATOM).split()[0] for e in entries} == {"Cancel"}


def test_identifiers_are_unique_and_messages_identical_after_a_restart(
    messages: list[Message], episode_db: str
) -> None:
    before = messages
    identifiers = [m.identifier for m in before]
    assert len(set(identifiers)) == len(identifiers)
    for message in before:
        assert re.fullmatch(rf"{SENDER}_\d{{14}}_\d+", message.identifier)
        stamp = message.identifier.split("_")[1]
        assert datetime.fromisoformat(message.sent).strftime("%Y%m%d%H%M%S") == stamp

    restarted = runtime_for(episode_db, Clock(AT + timedelta(days=3)))
    try:
        after = published(app_for(restarted))
    finally:
        asyncio.run(restarted.aclose())
    assert [(m.identifier, m.xml) for m in after] == [(m.identifier, m.xml) for m in before]


# --- publishing: what is not published


def client_on(sessions: sessionmaker[Session]) -> TestClient:
    now = datetime(2026, 1, 7, tzinfo=UTC)
    state = AppState(
        sessions=sessions,
        settings=Settings(_env_file=None, config_dir=COUNTY),
        clock=lambda: now,
        feed_source="open-meteo",
        started_at=now,
    )
    return TestClient(create_app(state))


def test_an_unknown_or_malformed_identifier_is_not_found(
    sessions: sessionmaker[Session],
) -> None:
    client = client_on(sessions)
    for identifier in (
        f"{SENDER}_20260107000000_1",
        "99999900000000_20260107000000_1",
        f"{SENDER}_20261399000000_1",
        "not-an-identifier",
    ):
        assert client.get(f"/cap/{identifier}.xml").status_code == 404, identifier


def test_system_alerts_are_not_published(sessions: sessionmaker[Session]) -> None:
    at = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)
    with sessions.begin() as session:
        down = Alert(
            code="KQ7A",
            kind="system",
            hazard="feed_down",
            rule_id="feed:open-meteo",
            level="orange",
            state="firing",
            opened_at=at,
            updated_at=at,
        )
        session.add(down)
        session.flush()
        audit.record(
            session,
            at=at,
            actor="system",
            action="alert.new",
            subject=f"alert:{down.id}",
            data={"code": down.code, "hazard": "feed_down"},
        )
        down_id = down.id
    client = client_on(sessions)
    feed = ET.fromstring(client.get("/cap/feed.atom").content)
    assert feed.findall("atom:entry", ATOM) == []
    identifier = message_identifier(SENDER, down_id, at, "Asia/Shanghai")
    assert client.get(f"/cap/{identifier}.xml").status_code == 404
