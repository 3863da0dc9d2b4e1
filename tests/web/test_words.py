"""The console's words: evidence with units, actors by name, phone numbers as links."""

from __future__ import annotations

import pytest

from dispatcher.web.words import (
    actor_words,
    event_summary_words,
    evidence_words,
    number,
    phone_href,
)


@pytest.mark.parametrize(
    ("expression", "value", "words"),
    [
        ("drop(daily_min(temperature_2m), 24h)", 12.1, "24小时降温12.1℃"),
        ("drop(daily_min(temperature_2m), 48h)", 8.0, "48小时降温8℃"),
        ("daily_min(temperature_2m)", -6.34, "日最低气温-6.3℃"),
        ("max(beaufort(wind_speed_10m), 24h)", 6.0, "24小时最大风力6级"),
        ("sum(snowfall, 12h)", 4.6, "12小时累计降雪4.6厘米"),
        ("visibility", 180.0, "能见度180米"),
        ("soil_temperature_0cm", -2.1, "地表温度-2.1℃"),
        ("freeze_thaw(soil_temperature_0cm, 72h)", 3.0, "72小时冻融循环3次"),
        ("precipitation", 0.4, "降水量0.4毫米"),
        ("cape * 2", 350.0, "cape * 2 = 350"),  # no words for it: shown as written
    ],
)
def test_evidence_is_said_in_words_with_units(expression: str, value: float, words: str) -> None:
    assert evidence_words({expression: value}) == [words]


def test_evidence_that_is_not_a_number_is_shown_as_it_is() -> None:
    assert evidence_words({"last_success": "2026-01-07T00:00:00Z"}) == [
        "last_success：2026-01-07T00:00:00Z"
    ]


def test_numbers_keep_one_decimal_and_drop_a_trailing_zero() -> None:
    assert [number(v) for v in (12.14, 6.0, -0.04, -3.25)] == ["12.1", "6", "0", "-3.2"]


def test_actors_are_named_and_otherwise_said_in_chinese() -> None:
    names = {"p-duty": "张志强", "console:zhang": "张志强"}.get
    assert actor_words("p-duty", names) == "张志强"
    assert actor_words("console:zhang", names) == "张志强"
    assert actor_words("console:wang", names) == "值班台用户wang"
    assert actor_words("system", names) == "系统"
    assert actor_words("escalation", names) == "逐级通知程序"
    assert actor_words("phone:+8617000000101", names) == "来电/短信 +8617000000101"
    assert actor_words("cli:root", names) == "命令行（root）"


def test_phone_numbers_become_tel_links_and_other_addresses_do_not() -> None:
    assert phone_href("+86 170-0000-0101") == "tel:+8617000000101"
    assert phone_href("wecom:robot-1") is None
    assert phone_href("") is None


def test_an_events_summary_reads_as_zones_by_level() -> None:
    assert event_summary_words({"zones": 40, "levels": {"orange": 10, "yellow": 30}}) == [
        "40处隐患点（橙色10处、黄色30处）"
    ]
    assert event_summary_words({"zones": 3, "levels": {"red": 3}}) == ["3处隐患点"]
