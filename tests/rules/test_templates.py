"""Message templates: what a template may use, how long an SMS can get, how it renders."""

from __future__ import annotations

from datetime import UTC, datetime

import jinja2
import pytest

from rules.templates import (
    SMS_MAX_UNITS,
    TEMPLATE_VARIABLES,
    check_template,
    message_values,
    render_template,
    template_problems,
)
from rules.types import Level

NOW = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)  # 7 January 00:00 in Shanghai


def values(**changes: object) -> dict[str, object]:
    base = message_values(
        sender="柳林县自然资源局",
        hazard="寒潮",
        level=Level.ORANGE,
        zone="锄沟村黄土崩塌",
        township="柳林镇",
        village="锄沟村",
        onset=datetime(2026, 1, 7, 0, 0, tzinfo=UTC),
        until=datetime(2026, 1, 7, 12, 0, tzinfo=UTC),
        now=NOW,
        advice="立即组织受威胁群众转移避险",
        code="A7K2",
        link="https://yj.example.gov.cn/a/A7K2",
        evidence={"daily_min(temperature_2m)": -6.5},
        kind="new",
        authority="吕梁市气象台",
    )
    return {**base, **changes}


def test_a_template_renders_every_documented_variable() -> None:
    text = "".join(f"{{{{ {name} }}}}|" for name in TEMPLATE_VARIABLES if name != "evidence")

    rendered = render_template(text, values())

    assert rendered == (
        "柳林县自然资源局|寒潮|橙色|锄沟村黄土崩塌|柳林镇|锄沟村|1月7日08时|1月7日20时|"
        "预计1月7日08时起|立即组织受威胁群众转移避险|A7K2|https://yj.example.gov.cn/a/A7K2|new|"
        "吕梁市气象台|"
    )


def test_when_says_already_happening_once_the_onset_has_passed() -> None:
    begun = message_values(
        sender="局",
        hazard="大雾",
        level=Level.YELLOW,
        zone="z",
        onset=NOW,
        until=NOW,
        now=NOW,
    )

    assert begun["when"] == "已出现并可能持续"


def test_evidence_is_a_mapping_of_expression_text_to_value() -> None:
    rendered = render_template("{{ evidence['daily_min(temperature_2m)'] }}℃", values())

    assert rendered == "-6.5℃"


def test_an_undefined_name_fails_the_rendering_instead_of_leaving_a_blank() -> None:
    with pytest.raises(jinja2.UndefinedError):
        render_template("{{ zone_name }}", values())


def test_the_sandbox_refuses_python_internals() -> None:
    with pytest.raises(jinja2.exceptions.SecurityError):
        render_template("{{ zone.__class__.__mro__ }}", values())


def test_a_good_sms_template_has_no_problems() -> None:
    text = (
        "【{{ sender }}】{{ hazard }}{{ level }}预警：{{ zone }}，{{ when }}。"
        "{{ advice }}回复1确认（编码{{ code }}）"
    )

    assert check_template(text, "sms") == []


def test_an_unknown_variable_is_named_with_the_expected_ones() -> None:
    (problem,) = template_problems("{{ zone }}{{ levle }}", "sms")

    assert problem.message == (
        "unknown variable 'levle' in the template; expected one of sender, hazard, level, zone, "
        "township, village, onset, until, when, advice, code, link, evidence, kind, authority"
    )
    assert problem.offset == 13


def test_a_syntax_error_points_at_its_line() -> None:
    (problem,) = template_problems("第一行\n{{ zone }\n", "voice")

    assert (problem.message, problem.offset) == ("template syntax: unexpected '}'", 4)


def test_an_sms_at_exactly_three_segments_fits_and_one_more_character_does_not() -> None:
    # worst case: zone 20 + code 4 = 24 characters; pad the rest with fixed text
    fits = "{{ zone }}{{ code }}" + "字" * (SMS_MAX_UNITS - 24)

    assert check_template(fits, "sms") == []
    assert check_template(fits + "字", "sms") == [
        "the SMS can reach 202 characters (with a 20-character zone name, a 4-character code, "
        "a 60-character link and the 10-character signature); at most 201 fit in 3 SMS "
        "segments: shorten it"
    ]


def test_the_longest_branch_of_a_template_counts() -> None:
    text = "{% if kind == 'resolved' %}" + "长" * 200 + "{% endif %}{{ zone }}"

    assert check_template(text, "sms") != []


def test_the_long_wording_of_when_counts() -> None:
    text = "{{ zone }}{{ when }}" + "字" * (SMS_MAX_UNITS - 20 - 12)

    assert check_template(text, "sms") == []
    assert check_template(text + "字", "sms") != []


def test_samples_replace_the_worst_case_values() -> None:
    text = "{{ advice }}" + "字" * 150

    assert check_template(text, "sms") == []  # the default sample advice is 20 characters
    assert check_template(text, "sms", samples={"advice": "字" * 60}) != []


def test_only_sms_and_im_have_a_length_limit() -> None:
    long = "{{ zone }}" + "长" * 1000

    assert check_template(long, "voice") == []
    assert check_template(long, "broadcast") == []
    assert check_template(long, "im") == [
        "the message can reach 3060 bytes; IM robots take at most 2048: shorten it"
    ]


def test_a_template_that_fails_on_sample_values_is_reported() -> None:
    assert check_template("{{ zone + 1 }}", "voice") == [
        'the template fails on sample values: can only concatenate str (not "int") to str'
    ]


def test_a_template_may_list_the_evidence_it_is_given() -> None:
    text = "{% for name, value in evidence.items() %}{{ name }}={{ value }} {% endfor %}"

    assert check_template(text, "sms", evidence=["visibility"]) == []
    assert render_template(text, values(evidence={"visibility": 150.0})) == "visibility=150.0 "


def test_an_unknown_channel_kind_is_refused() -> None:
    assert check_template("{{ zone }}", "fax") == [
        "unknown channel kind 'fax'; expected one of sms, voice, broadcast, im"
    ]
