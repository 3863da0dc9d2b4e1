"""Signed, expiring acknowledgement links: what they carry and what they refuse."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from channels.sms_text import sms_segments
from dispatcher.acklinks import (
    AckClaim,
    LinkExpired,
    LinkInvalid,
    ack_link,
    carries_personal_link,
    ensure_secret_key,
    make_token,
    read_token,
)
from dispatcher.directory import sync_directory
from dispatcher.escalation import AlertText, Escalation, Policies
from dispatcher.feeds.points import assign_points
from dispatcher.messages import HazardMessage, append_link, render_hazard
from dispatcher.roster import Roster
from dispatcher.settings import Settings
from dispatcher.storage.models import Alert
from tests.support import example_county

NOW = datetime(2026, 1, 7, 1, 0, tzinfo=UTC)
KEY = SecretStr("test-secret-key-for-ack-links-0123456789")
PUBLIC = "https://yujing.example.gov.cn"


def settings(**changes: object) -> Settings:
    values: dict[str, object] = {"public_base_url": PUBLIC, "secret_key": KEY, **changes}
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_a_token_names_the_alert_the_person_and_the_expiry() -> None:
    token = make_token(KEY, 42, "p-duty-zhang", NOW + timedelta(hours=24))

    assert read_token(KEY, token, NOW) == AckClaim(42, "p-duty-zhang", NOW + timedelta(hours=24))


def test_a_person_id_with_separators_survives_the_round_trip() -> None:
    token = make_token(KEY, 7, "p:村:1.2", NOW + timedelta(hours=1))

    assert read_token(KEY, token, NOW).person_id == "p:村:1.2"


def test_a_token_is_refused_from_its_expiry_on() -> None:
    token = make_token(KEY, 42, "p-1", NOW + timedelta(hours=1))

    read_token(KEY, token, NOW + timedelta(minutes=59, seconds=59))
    with pytest.raises(LinkExpired, match="链接已过期"):
        read_token(KEY, token, NOW + timedelta(hours=1))


def test_a_token_signed_with_another_key_is_invalid() -> None:
    token = make_token(SecretStr("someone else's key"), 42, "p-1", NOW + timedelta(hours=1))

    with pytest.raises(LinkInvalid, match="链接无效"):
        read_token(KEY, token, NOW)


def test_an_expired_token_with_a_bad_signature_is_invalid_not_expired() -> None:
    # the signature is checked first: a forger learns nothing from the answer
    token = make_token(SecretStr("other"), 42, "p-1", NOW - timedelta(hours=1))

    with pytest.raises(LinkInvalid):
        read_token(KEY, token, NOW)


def test_every_single_character_change_is_refused() -> None:
    token = make_token(KEY, 42, "p-1", NOW + timedelta(hours=1))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

    for i, original in enumerate(token):
        if original == ".":
            continue
        for replacement in {alphabet[(alphabet.index(original) + 1) % 64], "=", "!"}:
            changed = token[:i] + replacement + token[i + 1 :]
            with pytest.raises(LinkInvalid):
                read_token(KEY, changed, NOW)


def test_a_link_is_the_public_url_of_the_ack_page_and_valid_for_the_ttl() -> None:
    link = ack_link(settings(ack_link_ttl_seconds=3600), 42, "p-1", NOW)

    assert link is not None and link.startswith(f"{PUBLIC}/ack/")
    claim = read_token(KEY, link.removeprefix(f"{PUBLIC}/ack/"), NOW)
    assert claim == AckClaim(42, "p-1", NOW + timedelta(hours=1))


def test_a_link_is_short_enough_for_an_sms() -> None:
    link = ack_link(settings(), 123456, "p-duty-zhang", NOW)

    assert link is not None and len(link) <= 100


def test_there_is_no_link_without_a_public_base_url() -> None:
    assert ack_link(settings(public_base_url=None), 42, "p-1", NOW) is None


def test_without_a_configured_key_one_random_key_is_made_once_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = settings(secret_key=None)

    with caplog.at_level(logging.WARNING, logger="yujing.acklinks"):
        first = ensure_secret_key(config)
        second = ensure_secret_key(config)

    assert first is second and len(first.get_secret_value()) >= 32
    assert config.secret_key is first
    assert [r.message for r in caplog.records if "YUJING_SECRET_KEY" in r.message] == [
        "YUJING_SECRET_KEY is not set: using a random key for this process; "
        "acknowledgement links and console sessions will not survive a restart"
    ]
    assert ensure_secret_key(settings(secret_key=None)) != first


def test_a_configured_key_is_used_as_is() -> None:
    assert ensure_secret_key(settings()) == KEY


# --- the link in the message


def warning(**changes: object) -> HazardMessage:
    values: dict[str, object] = {
        "kind": "new",
        "sender": "柳林县自然资源局",
        "hazard": "寒潮",
        "level_zh": "黄色",
        "zone": "穆村镇冯家沟村黄土滑坡",
        "onset": NOW + timedelta(hours=8),
        "now": NOW,
        "advice": "加强隐患点巡查，做好防寒防冻",
        "code": "K7QA",
        **changes,
    }
    return HazardMessage(**values)  # type: ignore[arg-type]


def test_a_warning_with_room_ends_with_its_link() -> None:
    link = ack_link(settings(), 42, "p-duty-zhang", NOW)
    assert link is not None

    text = render_hazard(warning(link=link), "Asia/Shanghai")

    assert text.endswith(f"回复1确认（编码K7QA）确认：{link}")
    assert sms_segments(text) <= 3


def test_a_link_that_would_need_a_fourth_segment_costs_the_advice_not_the_link() -> None:
    link = ack_link(settings(), 42, "p-duty-zhang", NOW)
    assert link is not None
    long_advice = "加强隐患点巡查，做好防寒防冻，" * 5  # still fits without the link
    plain = render_hazard(warning(advice=long_advice), "Asia/Shanghai")
    assert long_advice.rstrip("，") in plain

    text = render_hazard(warning(advice=long_advice, link=link), "Asia/Shanghai")

    assert text.endswith(f"回复1确认（编码K7QA）确认：{link}")
    assert "加强隐患点巡查" not in text
    assert sms_segments(text) <= 3


def test_a_rendered_text_too_long_for_its_link_is_shortened_and_keeps_link_and_reply() -> None:
    # given an SMS rendered without a link that fills its three segments
    link = ack_link(settings(), 42, "p-duty-zhang", NOW)
    assert link is not None
    body = render_hazard(warning(advice="加强隐患点巡查，做好防寒防冻，" * 5), "Asia/Shanghai")
    assert sms_segments(body + "确认：" + link) > 3

    # when the escalation adds the recipient's link
    text = append_link(body, link, code="K7QA")

    # then the head of the text gave way: the reply instruction and the link are both there
    assert text.startswith("【柳林县自然资源局】寒潮黄色预警：穆村镇冯家沟村黄土滑坡")
    assert text.endswith(f"…回复1确认（编码K7QA）确认：{link}")
    assert sms_segments(text) <= 3


def test_a_link_that_would_leave_almost_nothing_of_the_warning_is_left_out() -> None:
    body = "【柳林县自然资源局】" + "很" * 190 + "回复1确认（编码K7QA）"
    assert append_link(body, "https://yujing.example.gov.cn/ack/" + "x" * 150) == body


def test_without_a_link_the_text_is_unchanged() -> None:
    assert append_link("【柳林县自然资源局】测试", None) == "【柳林县自然资源局】测试"


def test_every_person_told_by_sms_gets_a_link_of_their_own(
    sessions: sessionmaker[Session],
) -> None:
    # given the example county and an escalation configured from settings with a public URL
    county = example_county()
    _, point_of = assign_points([(z.id, z.latitude, z.longitude) for z in county.zones], 0.02)
    escalation = Escalation.from_settings(
        settings(channel="twilio_sms"),
        county=county,
        roster=Roster.unconfigured(county),
        policies=Policies(),
        channels=["twilio_sms"],
    )
    with sessions.begin() as session:
        sync_directory(session, county, point_of, NOW)
        alert = Alert(
            code="K7QA",
            kind="hazard",
            zone_id=county.zones[0].id,
            hazard="cold_wave",
            rule_id="r",
            title="寒潮",
            level="yellow",
            state="firing",
            opened_at=NOW,
            updated_at=NOW,
        )
        session.add(alert)
        session.flush()
        body = render_hazard(warning(), "Asia/Shanghai")

        # when the alert's first step goes out
        notes = escalation.start(
            session, alert, transition="new", text=AlertText(body, "寒潮黄色预警"), now=NOW
        )

        # then each message is the text plus a link that acknowledges for its own recipient
        assert notes
        for note in notes:
            assert note.channel == "twilio_sms"
            text, link = note.body.split("确认：https://")
            assert text == body
            token = link.removeprefix("yujing.example.gov.cn/ack/")
            assert read_token(KEY, token, NOW) == AckClaim(
                alert.id, note.person_id or "", NOW + timedelta(hours=24)
            )


@pytest.mark.parametrize(
    ("channel", "carries"),
    [
        ("twilio_sms", True),
        ("console", True),  # stands in for a phone in drills: the same text, link and all
        ("twilio_voice", False),  # heard, not read
        ("broadcast", False),  # a loudspeaker: anyone could use it
        ("wecom", False),  # a group chat: anyone in it could acknowledge for the person
        ("webhook", False),
        ("carrier_pigeon", False),  # nothing declares it
    ],
)
def test_only_a_channel_that_shows_links_on_one_persons_phone_carries_their_link(
    channel: str, carries: bool
) -> None:
    assert carries_personal_link(channel) is carries
