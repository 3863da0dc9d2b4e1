"""SMS texts: signed, complete, Chinese, acknowledgeable, within three segments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from channels.sms_text import sms_segments
from dispatcher.messages import (
    HazardMessage,
    cut_to_sms,
    hazard_values,
    local_time,
    render_feed,
    render_hazard,
    render_rules_refused,
    render_rules_restored,
)
from rules.templates import TEMPLATE_VARIABLES

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


# --- templates from the rule files


def test_a_rule_template_is_rendered_with_the_evidence_numbers() -> None:
    template = (
        "{{ sender }}：{{ township }}{{ village }}{{ hazard }}{{ level }}，"
        "24小时降温{{ evidence['drop24'] | round(1) }}℃，{{ onset }}至{{ until }}。编码{{ code }}"
    )
    text = render_hazard(
        message(
            township="穆村镇",
            village="冯家沟村",
            until=NOW + timedelta(hours=20),
            evidence={"drop24": 10.26},
        ),
        "Asia/Shanghai",
        template=template,
    )
    assert text == (
        "柳林县自然资源局：穆村镇冯家沟村寒潮黄色，24小时降温10.3℃，1月5日08时至1月5日20时。编码K7QA"
    )


def test_a_template_sees_the_transition_kind() -> None:
    template = "{% if kind == 'resolved' %}解除{% else %}发布{% endif %}{{ code }}"
    assert render_hazard(message(kind="resolved"), "Asia/Shanghai", template=template) == "解除K7QA"


def test_an_overflowing_sms_template_is_cut_short_keeping_the_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    template = "【{{ sender }}】编码{{ code }}：" + "很长的说明" * 60
    text = render_hazard(message(), "Asia/Shanghai", template=template)
    assert sms_segments(text) == 3
    assert text.startswith("【柳林县自然资源局】编码K7QA：很长的说明")
    assert text.endswith("…")
    assert "more than 3 SMS segments" in caplog.text


def test_a_cut_that_would_lose_the_code_puts_it_back_at_the_end() -> None:
    template = "很长的说明" * 60 + "（编码{{ code }}）"
    text = render_hazard(message(), "Asia/Shanghai", template=template)
    assert sms_segments(text) == 3
    assert text.endswith("…（编码K7QA）")


def test_a_template_for_another_channel_kind_is_not_cut_to_sms_length() -> None:
    template = "{{ zone }}" + "。请注意" * 100
    text = render_hazard(message(), "Asia/Shanghai", template=template, channel_kind="voice")
    assert sms_segments(text) > 3
    assert text.endswith("请注意")


def test_a_template_that_fails_to_render_falls_back_to_the_built_in_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = render_hazard(message(), "Asia/Shanghai", template="{{ no_such_variable }}")
    assert text == render_hazard(message(), "Asia/Shanghai")
    assert "failed to render" in caplog.text


def test_cut_to_sms_leaves_a_text_that_fits_alone() -> None:
    assert cut_to_sms("短信", "K7QA") == "短信"


# --- system messages about the rules


def test_a_refused_rule_edit_tells_administrators_where_and_that_old_rules_stay() -> None:
    text = render_rules_refused(
        sender="柳林县自然资源局",
        since=datetime(2026, 1, 4, 16, 30, tzinfo=UTC),
        where="cold_wave.yaml第12行第9列",
        count=3,
        code="AC3D",
        timezone="Asia/Shanghai",
    )
    assert "1月5日00:30修改的预警规则有误，未生效，仍按原规则运行" in text
    assert "首个错误在cold_wave.yaml第12行第9列（共3处）" in text
    assert text.endswith("回复1确认（编码AC3D）")
    assert sms_segments(text) <= 3


def test_a_valid_rule_set_again_is_announced() -> None:
    text = render_rules_restored(
        sender="柳林县自然资源局",
        since=datetime(2026, 1, 4, 16, 45, tzinfo=UTC),
        rules=7,
        timezone="Asia/Shanghai",
    )
    assert (
        text == "【柳林县自然资源局】系统告警解除：预警规则已于1月5日00:45重新加载生效，共7条规则。"
    )


def test_templates_see_exactly_the_variables_rules_check_allows() -> None:
    assert set(hazard_values(message(), "Asia/Shanghai")) == set(TEMPLATE_VARIABLES)
