"""Reading received CAP: real messages in, hostile and invalid ones refused with the reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dispatcher.official.capparse import CapRefused, parse_cap
from rules.types import Level
from tests.official.data import ALERT, BOMB, CANCEL, UPDATE, XXE, example


def refusal(data: bytes, **kwargs: int) -> str:
    with pytest.raises(CapRefused) as caught:
        parse_cap(data, **kwargs)
    return caught.value.reason


def test_the_specification_example_is_read_with_its_polygon_and_geocodes() -> None:
    message = parse_cap(example("thunderstorm"))

    assert (message.version, message.msg_type, message.status) == ("1.2", "Alert", "Actual")
    assert message.sender == "KSTO@NWS.NOAA.GOV"
    assert message.sent == datetime(2003, 6, 17, 21, 57, tzinfo=UTC)
    (info,) = message.infos
    assert (info.event, info.severity, info.level) == (
        "SEVERE THUNDERSTORM",
        "Severe",
        Level.ORANGE,
    )
    assert info.expires == datetime(2003, 6, 17, 23, 0, tzinfo=UTC)
    assert info.onset == message.sent  # no onset: effective, which defaults to sent
    assert info.sender_name == "NATIONAL WEATHER SERVICE SACRAMENTO CA"
    (area,) = info.areas
    assert area.polygons[0][:2] == ((38.47, -120.14), (38.34, -119.95))
    assert ("SAME", "006109") in area.geocodes


def test_an_update_keeps_its_references() -> None:
    message = parse_cap(example("canada"))

    assert message.msg_type == "Update"
    assert [r.identifier for r in message.references] == [
        "2.49.0.1.124.a3f342a4.2012",
        "2.49.0.1.124.60f31a3a.2012",
    ]
    assert len(message.infos) == 2  # English and French


def test_a_cap_11_message_is_read_with_its_circle() -> None:
    message = parse_cap(example("earthquake"))

    assert message.version == "1.1"
    (circle,) = message.infos[0].areas[0].circles
    assert (circle.latitude, circle.longitude, circle.radius_km) == (-16.053, -173.274, 0.0)
    assert message.infos[0].level is None  # severity Unknown: no level to relay


def test_the_colour_of_a_cma_signal_decides_its_level_before_its_severity() -> None:
    alert, update, cancel = (parse_cap(p.read_bytes()) for p in (ALERT, UPDATE, CANCEL))

    assert alert.infos[0].level is Level.YELLOW  # severity Moderate
    # the headline names the old colour too (黄色…升级为橙色): severity Severe decides
    assert update.infos[0].level is Level.ORANGE
    assert update.infos[0].sender_name == "吕梁市气象台"
    assert cancel.msg_type == "Cancel" and len(cancel.references) == 2


def test_a_billion_laughs_bomb_is_refused_without_expanding_it() -> None:
    reason = refusal(BOMB)

    assert "declares the entity 'lol'" in reason
    assert "XML bomb" in reason


def test_an_external_entity_is_refused_without_reading_it() -> None:
    reason = refusal(XXE)

    assert reason == (
        "declares the external entity 'secret' (file:///etc/passwd): external entities (XXE) "
        "are never read"
    )


def test_an_external_dtd_is_refused() -> None:
    data = example("thunderstorm").replace(
        b"<alert ", b'<!DOCTYPE alert SYSTEM "http://attacker.example/cap.dtd">\n<alert ', 1
    )

    assert refusal(data) == (
        "declares a DTD (http://attacker.example/cap.dtd): CAP messages have none, and none is "
        "ever read"
    )


def test_a_schema_violation_is_refused_naming_the_element() -> None:
    data = example("thunderstorm").replace(b"<severity>Severe", b"<severity>Orange")

    reason = refusal(data)

    assert reason.startswith("does not follow the CAP 1.2 schema at /alert/info/severity: ")
    assert "Extreme" in reason


def test_a_missing_required_element_is_refused() -> None:
    data = example("thunderstorm").replace(b"<status>Actual</status>", b"")

    assert "does not follow the CAP 1.2 schema at /alert" in refusal(data)


def test_a_message_over_the_size_limit_is_refused_unread() -> None:
    data = example("thunderstorm")

    assert refusal(data, max_bytes=1000) == (
        f"message is {len(data)} bytes, over the limit of 1000"
    )


def test_something_else_than_cap_is_refused() -> None:
    assert refusal(b"<feed xmlns='http://www.w3.org/2005/Atom'/>").startswith(
        "not a CAP 1.1/1.2 alert: the root element is '{http://www.w3.org/2005/Atom}feed'"
    )
    assert refusal(b"<alert").startswith("not well-formed XML: ")


def test_a_polygon_that_does_not_close_is_refused() -> None:
    data = example("thunderstorm").replace(b" 38.47,-120.14</polygon>", b"</polygon>")

    assert "a CAP polygon is at least four lat,lon points" in refusal(data)
