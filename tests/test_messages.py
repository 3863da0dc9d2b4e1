"""SMS texts: signed, complete, Chinese, acknowledgeable, within three segments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from channels.sms_text import sms_segments
from dispatcher.messages import HazardMessage, local_time, render_feed, render_hazard

NOW = datetime(2026, 1, 4, 16, 0, tzinfo=UTC)  # 2026-01-05 00:00 in Shanghai


def message(**changes: object) -> HazardMessage:
    base = {
        "kind": "new",
        "sender": "柳林县自然资源局",
        "hazard": "寒潮",
        "level_zh": "黄色",
        "zone": "穆村镇冯家沟村黄土滑坡",
        "onset": NOW + timedelta(hours=8),
        "now": NOW,
        "advice": "加强隐患点巡查，做好防寒防冻",
        "code": "K7QA",
    }
    base.update(changes)
    return HazardMessage(**base)  # type: ignore[arg-type]


def test_times_are_stated_in_the_county_timezone() -> None:
    assert local_time(datetime(2026, 1, 4, 16, 0, tzinfo=UTC), "Asia/Shanghai") == "1月5日00时"


def test_a_new_warning_names_hazard_level_zone_time_action_and_how_to_acknowledge() -> None:
    text = render_hazard(message(), "Asia/Shanghai")
    assert text == (
        "【柳林县自然资源局】寒潮黄色预警：穆村镇冯家沟村黄土滑坡，预计1月5日08时起。"
        "加强隐患点巡查，做好防寒防冻。回复1确认（编码K7QA）"
    )
    assert sms_segments(text) <= 3


def test_a_warning_already_under_way_says_so() -> None:
    text = render_hazard(message(onset=NOW - timedelta(hours=1)), "Asia/Shanghai")
    assert "已出现并可能持续" in text


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("upgraded", "寒潮预警升级为橙色"),
        ("downgraded", "寒潮预警降为橙色"),
        ("resolved", "寒潮橙色预警解除"),
    ],
)
def test_each_transition_has_its_own_wording(kind: str, expected: str) -> None:
    assert expected in render_hazard(message(kind=kind, level_zh="橙色"), "Asia/Shanghai")


def test_an_overlong_text_drops_the_advice_then_shortens_the_zone_never_the_code() -> None:
    text = render_hazard(message(zone="很长的名称" * 30, advice="很长的建议" * 10), "Asia/Shanghai")
    assert sms_segments(text) <= 3
    assert text.startswith("【柳林县自然资源局】寒潮黄色预警：")
    assert text.endswith("回复1确认（编码K7QA）")
    assert "很长的建议" not in text


def test_the_feed_down_message_tells_duty_officers_what_to_do() -> None:
    text = render_feed(
        "feed_down",
        sender="柳林县自然资源局",
        source="open-meteo",
        since=datetime(2026, 1, 4, 16, 30, tzinfo=UTC),
        code="AC3D",
        timezone="Asia/Shanghai",
    )
    assert "天气预报数据（open-meteo）自1月5日00:30起未能更新" in text
    assert "编码AC3D" in text
    assert sms_segments(text) <= 3
