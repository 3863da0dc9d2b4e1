"""SMS segment counting: GSM-7 160/153, UCS-2 70/67 in UTF-16 code units."""

from __future__ import annotations

import pytest

from channels.sms_text import MAX_UCS2_CHARS, fits_sms, is_gsm7, sms_segments

HAN = "预"  # any Chinese character forces UCS-2


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)],
)
def test_chinese_text_counts_70_alone_then_67_per_part(length: int, segments: int) -> None:
    assert sms_segments(HAN * length) == segments


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)],
)
def test_gsm7_text_counts_160_alone_then_153_per_part(length: int, segments: int) -> None:
    assert sms_segments("a" * length) == segments


def test_an_empty_text_still_takes_one_segment() -> None:
    assert sms_segments("") == 1


def test_one_chinese_character_switches_the_whole_text_to_ucs2() -> None:
    text = "a" * 70 + HAN  # 71 units: fine as GSM-7, too long for one UCS-2 segment
    assert sms_segments(text) == 2


def test_gsm7_extension_characters_count_twice() -> None:
    assert is_gsm7("{€}")
    assert sms_segments("€" * 80) == 1  # 160 septets
    assert sms_segments("€" * 81) == 2  # 162 septets


def test_characters_outside_the_bmp_count_as_two_utf16_units() -> None:
    assert sms_segments("😀" * 35) == 1  # 70 units
    assert sms_segments("😀" * 35 + HAN) == 2  # 71 units


def test_full_width_punctuation_is_not_gsm7() -> None:
    assert not is_gsm7("收到，确认【１】")


def test_a_real_warning_with_signature_fits_in_three_segments() -> None:
    warning = (
        "【柳林县自然资源局】寒潮黄色预警：1月5日夜间至6日，三交镇王家沟滑坡隐患点"
        "最低气温降至-12℃，降温12℃，北风6级。请防灾责任人组织巡查，坡要到顶、沟要到头，"
        "发现险情立即撤离并报告。回复1或“收到”确认。编号Y7K2"
    )
    assert sms_segments(warning) == 2
    assert fits_sms(warning)


@pytest.mark.parametrize(
    ("length", "max_segments", "fits"),
    [(MAX_UCS2_CHARS, 3, True), (MAX_UCS2_CHARS + 1, 3, False), (70, 1, True), (71, 1, False)],
)
def test_fits_sms_compares_segments_with_the_limit(
    length: int, max_segments: int, fits: bool
) -> None:
    assert fits_sms(HAN * length, max_segments=max_segments) is fits


def test_the_three_segment_limit_is_201_chinese_characters() -> None:
    assert MAX_UCS2_CHARS == 201
