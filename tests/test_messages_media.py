"""Each medium in its own words: a call and a loudspeaker speak, a group post lists,
an SMS keeps its way to acknowledge."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from channels import dingtalk, feishu, wecom
from channels.base import ChannelLimits
from channels.sms_text import sms_segments
from channels.twilio_voice import MAX_VOICE_CHARS, PROMPT
from dispatcher.messages import (
    HazardMessage,
    render_feed,
    render_hazard,
    render_rules_refused,
    render_rules_restored,
    speakable,
    spoken_time,
)

TZ = "Asia/Shanghai"
NOW = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)  # 2026-01-07 00:00 in Shanghai
LINK = (
    "https://yujing.example.gov.cn/ack/NDI6cC1kdXR5LXpoYW5nOjE3Njc4MzQwMDA.B0QZUHfLgMVhkUsOv9Ijgg"
)
URL = re.compile(r"https?://|www\.|/ack/")
KINDS = ("new", "upgraded", "downgraded", "resolved")


def warning(**changes: object) -> HazardMessage:
    values: dict[str, object] = {
        "kind": "new",
        "sender": "柳林县自然资源局",
        "hazard": "寒潮",
        "level_zh": "橙色",
        "zone": "穆村镇冯家沟村黄土滑坡",
        "township": "穆村镇",
        "village": "冯家沟村",
        "onset": NOW + timedelta(hours=9),  # 1月7日09时
        "until": NOW + timedelta(hours=47),  # 1月8日23时
        "now": NOW,
        "advice": "立即组织受威胁群众转移避险",
        "code": "K7QA",
        "link": LINK,
        **changes,
    }
    return HazardMessage(**values)  # type: ignore[arg-type]


def many_zones(count: int) -> str:
    return "、".join(f"穆村镇第{n}村黄土滑坡隐患点" for n in range(count))


# --- spoken times


@pytest.mark.parametrize(
    ("local_hour", "minute", "expected"),
    [
        (0, 0, "1月7日凌晨0时"),
        (3, 0, "1月7日凌晨3时"),
        (7, 0, "1月7日早上7时"),
        (9, 0, "1月7日上午9时"),
        (9, 30, "1月7日上午9时30分"),
        (12, 0, "1月7日中午12时"),
        (15, 0, "1月7日下午3时"),
        (23, 0, "1月7日晚上11时"),
    ],
)
def test_a_time_is_said_with_its_part_of_the_day_on_a_twelve_hour_clock(
    local_hour: int, minute: int, expected: str
) -> None:
    moment = datetime(2026, 1, 7, local_hour, minute, tzinfo=UTC) - timedelta(hours=8)
    assert spoken_time(moment, TZ) == expected


@pytest.mark.parametrize(
    ("hours_after_midnight", "expected"),
    [(-1, "昨天晚上11时"), (3, "今天凌晨3时"), (33, "明天上午9时"), (57, "后天上午9时")],
)
def test_a_time_near_now_is_said_as_today_or_tomorrow(
    hours_after_midnight: int, expected: str
) -> None:
    assert spoken_time(NOW + timedelta(hours=hours_after_midnight), TZ, now=NOW) == expected


def test_a_time_days_away_is_said_with_its_date() -> None:
    assert spoken_time(NOW + timedelta(days=5, hours=9), TZ, now=NOW) == "1月12日上午9时"


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("最低气温-12℃", "最低气温零下12摄氏度"),
        ("降温10~12℃", "降温10到12摄氏度"),
        ("湿度30%", "湿度百分之30"),
        ("风速8.5m/s", "风速8.5米每秒"),
        ("【柳林县自然资源局】寒潮", "柳林县自然资源局，寒潮"),
        ("柳林镇…等", "柳林镇，等"),
        ("详见https://yujing.example.gov.cn/ack/x。", "详见。"),
        ("链接https://yujing.example.gov.cn/ack/x请点击", "链接请点击"),
        ("3×3网格", "3乘3网格"),
    ],
)
def test_symbols_a_tts_reads_badly_are_said_in_words(written: str, said: str) -> None:
    assert speakable(written) == said


# --- voice


@pytest.mark.parametrize("kind", KINDS)
def test_a_call_says_no_url_no_code_and_no_brackets(kind: str) -> None:
    text = render_hazard(warning(kind=kind), TZ, channel_kind="voice")
    assert not URL.search(text)
    assert "K7QA" not in text
    assert "编码" not in text
    assert not set(text) & set("【】…×℃()（）")


def test_a_call_says_who_calls_what_where_when_and_what_to_do() -> None:
    text = render_hazard(warning(), TZ, channel_kind="voice")
    assert text == (
        "您好，这里是柳林县自然资源局。寒潮橙色预警：穆村镇冯家沟村的黄土滑坡，"
        "预计1月7日上午9时开始，持续到1月8日晚上11时。请立即组织受威胁群众转移避险。"
    )


def test_a_call_leaves_the_keypress_prompt_to_the_voice_channel() -> None:
    text = render_hazard(warning(), TZ, channel_kind="voice")
    assert PROMPT not in text
    assert "按1" not in text


def test_a_call_about_a_condition_under_way_says_so() -> None:
    text = render_hazard(warning(onset=NOW - timedelta(hours=2)), TZ, channel_kind="voice")
    assert "寒潮现已出现，预计持续到1月8日晚上11时" in text


@pytest.mark.parametrize(
    ("kind", "said"), [("upgraded", "寒潮预警升级为橙色预警"), ("resolved", "寒潮橙色预警解除")]
)
def test_a_call_says_what_changed(kind: str, said: str) -> None:
    assert said in render_hazard(warning(kind=kind), TZ, channel_kind="voice")


def test_a_call_about_many_zones_stays_within_what_twilio_reads() -> None:
    text = render_hazard(warning(zone=many_zones(200)), TZ, channel_kind="voice")
    assert len(text) <= MAX_VOICE_CHARS
    assert "等200处" in text
    assert text.endswith("请立即组织受威胁群众转移避险。")


# --- village broadcast


@pytest.mark.parametrize("kind", KINDS)
def test_a_loudspeaker_says_no_code_no_link_and_no_reply_instruction(kind: str) -> None:
    text = render_hazard(warning(kind=kind), TZ, channel_kind="broadcast")
    assert not URL.search(text)
    assert "K7QA" not in text
    assert "回复" not in text
    assert "确认" not in text
    assert not set(text) & set("【】")


def test_a_loudspeaker_calls_attention_names_the_slope_of_the_village_and_what_to_do() -> None:
    text = render_hazard(warning(), TZ, channel_kind="broadcast")
    assert text.startswith("各位村民请注意")
    assert "柳林县自然资源局发布寒潮橙色预警" in text
    assert "冯家沟村黄土滑坡一带" in text
    assert "请立即组织受威胁群众转移避险" in text


def test_a_loudspeaker_says_the_core_sentence_again_at_the_end() -> None:
    text = render_hazard(warning(), TZ, channel_kind="broadcast")
    head, _, again = text.partition("重复一遍：")
    assert again
    assert again in head


def test_a_loudspeaker_announces_the_end_of_a_warning() -> None:
    text = render_hazard(warning(kind="resolved"), TZ, channel_kind="broadcast")
    assert "冯家沟村黄土滑坡一带，寒潮橙色预警解除" in text
    assert "转移避险" not in text


def test_a_loudspeaker_text_stays_within_the_gateways_declared_length() -> None:
    limits = ChannelLimits(max_chars=300)
    text = render_hazard(warning(zone=many_zones(40)), TZ, channel_kind="broadcast", limits=limits)
    assert len(text) <= 300
    assert "重复一遍" in text


# --- messaging-app groups


@pytest.mark.parametrize(
    ("level", "title"),
    [
        ("红色", "🔴【红色预警】寒潮"),
        ("橙色", "🟠【橙色预警】寒潮"),
        ("黄色", "🟡【黄色预警】寒潮"),
        ("蓝色", "🔵【蓝色预警】寒潮"),
    ],
)
def test_a_group_post_marks_the_level_in_its_title_line(level: str, title: str) -> None:
    text = render_hazard(warning(level_zh=level), TZ, channel_kind="im")
    assert text.split("\n")[0] == title


def test_a_group_post_lists_zone_place_time_advice_code_and_link() -> None:
    text = render_hazard(warning(), TZ, channel_kind="im")
    assert text.split("\n") == [
        "🟠【橙色预警】寒潮",
        "发布：柳林县自然资源局",
        "隐患点：穆村镇冯家沟村黄土滑坡",
        "乡镇村：穆村镇冯家沟村",
        "时间：预计1月7日09时起，至1月8日23时",
        "措施：立即组织受威胁群众转移避险",
        "编码：K7QA",
        f"确认：{LINK}",
    ]


def test_a_group_post_without_a_link_has_no_link_line() -> None:
    text = render_hazard(warning(link=None), TZ, channel_kind="im")
    assert text.split("\n")[-1] == "编码：K7QA"
    assert not URL.search(text)


def test_a_group_post_says_an_upgrade_and_an_end() -> None:
    assert render_hazard(warning(kind="upgraded"), TZ, channel_kind="im").startswith(
        "🟠【橙色预警】寒潮预警升级\n"
    )
    ended = render_hazard(warning(kind="resolved"), TZ, channel_kind="im")
    assert ended.startswith("✅【预警解除】寒潮橙色预警解除\n")
    assert "措施" not in ended


@pytest.mark.parametrize(
    "max_bytes",
    [
        wecom.TEXT_MAX_BYTES,
        wecom.MARKDOWN_MAX_BYTES,
        dingtalk.MAX_BYTES,
        feishu.MAX_TEXT_BYTES,
    ],
)
def test_a_group_post_about_a_long_zone_list_fits_each_platform(max_bytes: int) -> None:
    zones = many_zones(1500)
    text = render_hazard(
        warning(zone=zones), TZ, channel_kind="im", limits=ChannelLimits(max_bytes=max_bytes)
    )
    assert len(text.encode("utf-8")) <= max_bytes
    lines = text.split("\n")
    # shortened, never cut: whole names and how many there are, every other line whole
    assert lines[2].startswith("隐患点：穆村镇第0村黄土滑坡隐患点、")
    assert lines[2].endswith("隐患点等1500处")
    assert lines[-2:] == ["编码：K7QA", f"确认：{LINK}"]
    assert "措施：立即组织受威胁群众转移避险" in lines


def test_a_group_post_fits_the_strictest_robot_when_no_limit_is_given() -> None:
    text = render_hazard(warning(zone=many_zones(300)), TZ, channel_kind="im")
    assert len(text.encode("utf-8")) <= wecom.TEXT_MAX_BYTES
    assert "等300处" in text


def test_a_group_post_with_a_single_overlong_name_cuts_the_name_not_a_line() -> None:
    text = render_hazard(warning(zone="很长的名称" * 300), TZ, channel_kind="im")
    assert len(text.encode("utf-8")) <= wecom.TEXT_MAX_BYTES
    zone_line = text.split("\n")[2]
    assert zone_line.startswith("隐患点：很长的名称")
    assert zone_line.endswith("…")
    assert text.endswith(f"编码：K7QA\n确认：{LINK}")


def test_a_group_post_whose_advice_cannot_fit_drops_the_advice_line() -> None:
    text = render_hazard(warning(advice="很长的建议" * 200), TZ, channel_kind="im")
    assert len(text.encode("utf-8")) <= wecom.TEXT_MAX_BYTES
    assert "措施" not in text
    assert "隐患点：穆村镇冯家沟村黄土滑坡" in text.split("\n")


def test_a_group_post_leaves_mentions_to_the_channel() -> None:
    assert "@" not in render_hazard(warning(), TZ, channel_kind="im")


# --- sms: the link is kept


def test_a_text_too_long_for_its_link_is_shortened_and_the_link_kept() -> None:
    # given a warning whose text fits three segments alone but not with its link
    long_advice = "加密巡查黄土边坡，坡要到顶、沟要到头，发现裂缝立即报告" * 2
    alone = render_hazard(warning(advice=long_advice, link=None), TZ)
    assert long_advice in alone
    assert sms_segments(alone + f"确认：{LINK}") > 3

    # when it is rendered with the link
    text = render_hazard(warning(advice=long_advice), TZ)

    # then the advice made room, and the code and the link are both there
    assert text == (
        "【柳林县自然资源局】寒潮橙色预警：穆村镇冯家沟村黄土滑坡，预计1月7日09时起。"
        f"回复1确认（编码K7QA）确认：{LINK}"
    )
    assert sms_segments(text) <= 3


def test_a_long_zone_name_is_shortened_for_the_link_too() -> None:
    text = render_hazard(warning(zone="穆村镇冯家沟村" + "很长的名称" * 12), TZ)
    assert sms_segments(text) <= 3
    assert text.endswith(f"回复1确认（编码K7QA）确认：{LINK}")
    assert "穆村镇冯家沟村很长的名称" in text
    assert "…，" in text


def test_a_link_that_no_text_leaves_room_for_is_dropped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    huge = "https://yujing.example.gov.cn/ack/" + "x" * 200
    with caplog.at_level(logging.INFO, logger="yujing.messages"):
        text = render_hazard(warning(link=huge), TZ)
    assert huge not in text
    assert text.endswith("回复1确认（编码K7QA）")
    assert "does not fit" in caplog.text


def test_an_sms_that_fits_with_its_link_is_the_text_then_the_link() -> None:
    plain = render_hazard(warning(link=None), TZ)
    assert render_hazard(warning(), TZ) == f"{plain}确认：{LINK}"


# --- a rule's own template for the medium


@pytest.mark.parametrize("kind", ["voice", "broadcast", "im"])
def test_a_rules_template_for_a_medium_wins_over_the_built_in(kind: str) -> None:
    text = render_hazard(
        warning(), TZ, template="{{ village }}{{ hazard }}{{ level }}预警", channel_kind=kind
    )
    assert text == "冯家沟村寒潮橙色预警"


def test_a_spoken_template_is_made_speakable() -> None:
    template = "{{ zone }}最低气温-12℃。{{ link }}"
    text = render_hazard(warning(), TZ, template=template, channel_kind="voice")
    assert text == "穆村镇冯家沟村黄土滑坡最低气温零下12摄氏度。"


# --- system messages


SINCE = datetime(2026, 1, 4, 16, 30, tzinfo=UTC)  # 1月5日00:30 in Shanghai


def feed(kind: str, medium: str) -> str:
    return render_feed(
        kind,
        sender="柳林县自然资源局",
        source="open-meteo",
        since=SINCE,
        code="AC3D",
        timezone=TZ,
        channel_kind=medium,
    )


def refused(medium: str) -> str:
    return render_rules_refused(
        sender="柳林县自然资源局",
        since=SINCE,
        where="cold_wave.yaml第12行第9列",
        count=3,
        code="AC3D",
        timezone=TZ,
        channel_kind=medium,
    )


def restored(medium: str) -> str:
    return render_rules_restored(
        sender="柳林县自然资源局", since=SINCE, rules=7, timezone=TZ, channel_kind=medium
    )


@pytest.mark.parametrize(
    "text",
    [
        feed("feed_down", "voice"),
        feed("feed_restored", "voice"),
        refused("voice"),
        restored("voice"),
    ],
)
def test_a_system_call_says_no_code_no_file_position_and_no_brackets(text: str) -> None:
    assert text.startswith("您好，这里是柳林县自然资源局预警系统。")
    assert "AC3D" not in text
    assert ".yaml" not in text
    assert not set(text) & set("【】（）")


def test_a_feed_down_call_says_since_when_and_what_to_do() -> None:
    assert feed("feed_down", "voice") == (
        "您好，这里是柳林县自然资源局预警系统。天气预报数据open-meteo自1月5日凌晨0时30分起未能更新，"
        "自动预警可能中断，请值班人员人工关注气象信息。"
    )


def test_a_refused_rule_edit_posted_to_a_group_says_where_and_carries_the_code() -> None:
    text = refused("im")
    assert text.split("\n")[0] == "⚠️【系统告警】预警规则修改有误，未生效"
    assert "首个错误：cold_wave.yaml第12行第9列（共3处）" in text
    assert text.endswith("编码：AC3D")


def test_a_feed_post_and_a_rules_restored_post_are_one_fact_a_line() -> None:
    lines = feed("feed_down", "im").split("\n")
    assert lines[2:4] == ["数据源：open-meteo", "时间：自1月5日00:30起"]
    assert restored("im").startswith("✅【系统告警解除】预警规则重新生效\n")


def test_system_sms_texts_are_the_default() -> None:
    assert feed("feed_down", "sms") == render_feed(
        "feed_down",
        sender="柳林县自然资源局",
        source="open-meteo",
        since=SINCE,
        code="AC3D",
        timezone=TZ,
    )
    assert restored("sms") == render_rules_restored(
        sender="柳林县自然资源局", since=SINCE, rules=7, timezone=TZ
    )
    assert refused("sms").startswith("【柳林县自然资源局】系统告警：")


# --- whatever the zone list and the link, each medium keeps its promise

_names = st.lists(st.text(alphabet="滑坡崩塌村镇沟黄土斜坡", min_size=1, max_size=30), max_size=60)


@hypothesis_settings(max_examples=60, deadline=None)
@given(names=_names, link_length=st.integers(min_value=0, max_value=220))
def test_any_warning_fits_its_sms_and_its_group_post(names: list[str], link_length: int) -> None:
    link = ("https://yujing.example.gov.cn/ack/" + "x" * link_length) if link_length else None
    message = warning(zone="、".join(names) or "穆村镇冯家沟村黄土滑坡", link=link)

    sms = render_hazard(message, TZ)
    post = render_hazard(message, TZ, channel_kind="im")

    assert sms_segments(sms) <= 3
    assert "编码K7QA" in sms
    assert len(post.encode("utf-8")) <= wecom.TEXT_MAX_BYTES
    assert "编码：K7QA" in post.split("\n")
