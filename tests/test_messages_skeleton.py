"""A batch's warnings rendered from one skeleton read exactly as each rendered whole.

`dispatcher.messages` renders what a batch's warnings share once (with marks where
the zone and the code go) and puts each warning's own zone and code in. These
tests render a varied set of warnings — every medium, every kind, templates or
none, zones long enough to be shortened, times, sources and advice present or
not — both that way and the straightforward way (no skeleton, nothing memoised),
and hold the two to the same bytes.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from channels.base import ChannelLimits, Medium
from dispatcher import messages
from dispatcher.messages import HazardMessage, render_hazard, speakable

TZ = "Asia/Shanghai"
NOW = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)  # 2026-01-07 00:00 in Shanghai
LINK = "https://yujing.example.gov.cn/ack/NDI6cC1kdXR5LXpoYW5nOjE3Njc4MzQwMDA.B0QZUHfLgMVhkUsOv9I"

ZONES = (  # (zone, township, village)
    ("穆村镇冯家沟村黄土滑坡", "穆村镇", "冯家沟村"),
    ("柳林镇贺家坡村307国道崩塌", "柳林镇", "贺家坡村"),  # digits between characters
    ("穆村镇冯家沟村" + "很长的名称" * 14, "穆村镇", "冯家沟村"),  # the SMS shortens it
    ("、".join(f"穆村镇第{n}村黄土滑坡隐患点" for n in range(30)), "穆村镇", ""),  # a list
    ("G307国道K12+300处边坡（东侧）", "", ""),  # letters, brackets: spoken whole
    ("三交镇-5℃冻土区3~5mm裂缝", "三交镇", ""),  # what speakable rewrites
    ("城区龙门塔不稳定斜坡", "", "龙门垣村"),  # a village that is no prefix
    ("", "", ""),
    ("307", "", ""),
    ("滑坡\ue000隐患点", "", ""),  # a skeleton's mark in the zone itself
)
TIMES = (  # (onset, until)
    (None, None),
    (NOW + timedelta(hours=9), NOW + timedelta(hours=47, minutes=30)),
    (NOW - timedelta(hours=2), NOW + timedelta(hours=20)),
    (NOW + timedelta(hours=3), None),
    (NOW - timedelta(hours=5), NOW - timedelta(hours=1)),
)
ADVICE = ("", "立即组织受威胁群众转移避险。", "注意防范3~5mm冻雨，气温-8℃（夜间）" * 6)
AUTHORITY = ("", "吕梁市气象台")
SENDERS = ("柳林县自然资源局", "柳林县\ue000局")  # the second carries a mark: no skeleton

TEMPLATES = {
    "sms": "【{{ sender }}】{{ hazard }}{{ level }}（{{ kind }}）：{{ zone }}（{{ township }}"
    "{{ village }}），{{ when }}至{{ until }}。{{ advice }}{{ link }}编码{{ code }}",
    "voice": "{{ sender }}提醒：{{ zone }}{{ hazard }}{{ level }}预警，{{ onset }}起，-5℃，"
    "{% for name, value in evidence|dictsort %}{{ name }}={{ value }}；{% endfor %}",
    "broadcast": "{{ village }}{{ zone }}一带{{ hazard }}{{ level }}预警。{{ advice }}",
    "im": "{{ hazard }}{{ level }}预警\n隐患点：{{ zone }}\n编码：{{ code }}",
}
BROKEN = "{{ zone.no_such_thing.deeper }}"  # fails to render: the built-in text instead

CHANNELS: tuple[tuple[Medium, ChannelLimits | None], ...] = (
    (Medium.SMS, None),
    (Medium.VOICE, None),
    (Medium.VOICE, ChannelLimits(max_chars=90)),  # the zone cut to fit a short call
    (Medium.BROADCAST, None),
    (Medium.BROADCAST, ChannelLimits(max_chars=160)),
    (Medium.IM, None),
    (Medium.IM, ChannelLimits(max_bytes=420)),  # the zone list cut, then the advice
)


def warnings() -> Iterator[HazardMessage]:
    """Every kind, zone, time and source; advice, sender, link and evidence varied along."""
    combinations = itertools.product(("new", "upgraded", "downgraded", "resolved"), ZONES, TIMES)
    for n, (kind, (zone, township, village), (onset, until)) in enumerate(combinations):
        yield HazardMessage(
            kind=kind,
            sender=SENDERS[n % 7 == 6],
            hazard="寒潮" if n % 2 else "冻雨",
            level_zh=("黄色", "橙色", "红色", "蓝色")[n % 4],
            zone=zone,
            onset=onset,
            now=NOW,
            advice=ADVICE[n % 3],
            code="K7QA" if n % 5 else "K7\ue001A",
            link=LINK if n % 2 else None,
            township=township,
            village=village,
            until=until,
            evidence={"t2m_min": -12.5} if n % 3 else {},
            authority=AUTHORITY[n % 11 % 2],
        )


def render_all(templates: bool = True) -> list[str]:
    texts = []
    for message in warnings():
        for medium, limits in CHANNELS:
            for template in (None, TEMPLATES[medium], BROKEN) if templates else (None,):
                texts.append(
                    render_hazard(
                        message, TZ, template=template, channel_kind=medium, limits=limits
                    )
                )
    return texts


def whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """Render every warning whole: no skeleton, nothing memoised."""
    monkeypatch.setattr(messages, "_sms_skeleton", lambda words, timezone, advised: None)
    monkeypatch.setattr(messages, "_spoken_skeleton", lambda words, timezone, medium: None)
    for name in ("_im_words", "local_time", "spoken_time"):
        monkeypatch.setattr(messages, name, getattr(messages, name).__wrapped__)


def clear_caches() -> None:
    for cached in (
        messages._sms_skeleton,
        messages._spoken_skeleton,
        messages._im_words,
        messages.local_time,
        messages.spoken_time,
    ):
        cached.cache_clear()


def test_every_warning_reads_the_same_rendered_from_the_batch_skeleton_or_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clear_caches()
    fast = render_all()
    # the skeletons were used, again and again: the comparison below is not vacuous
    assert messages._sms_skeleton.cache_info().hits > 100
    assert messages._spoken_skeleton.cache_info().hits > 100
    with monkeypatch.context() as patched:
        whole(patched)
        reference = render_all()
    assert len(fast) == len(reference)
    for number, (got, expected) in enumerate(zip(fast, reference, strict=True)):
        assert got == expected, f"text {number} differs"


def test_a_batch_renders_the_same_in_any_order_whatever_the_caches_hold() -> None:
    clear_caches()
    first = render_all(templates=False)
    shuffled = list(enumerate(warnings()))
    random.Random(14).shuffle(shuffled)
    again: dict[tuple[int, int], str] = {}
    for index, message in shuffled:
        for channel, (medium, limits) in enumerate(CHANNELS):
            again[index, channel] = render_hazard(message, TZ, channel_kind=medium, limits=limits)
    for (index, channel), text in again.items():
        assert text == first[index * len(CHANNELS) + channel]


# --- the splice itself: speakable leaves a place of Chinese characters as it is

# what speakable rewrites, and what it looks at around them
SPECIAL = [
    "-5℃",
    "−3 °C",
    "30%",
    "３０％",
    "3~5",
    "3 - 5",
    "12m/s",
    "40 km/h",
    "5mm",
    "2cm",
    "×",
    "【",
    "】",
    "（",
    "）",
    "…",
    "／",
    "|",
    "*",
    "#",
    "，",
    "。",
    "！",
    "：",
    " ",
    "https://a.example/x?y=1",
    "1",
    "9",
    ".",
    "-",
    "m",
    "a",
]
PLACES = st.from_regex(
    r"[穆村镇冯家沟滑坡一二三][穆村镇冯家沟滑坡、0-9]{0,6}[穆村镇滑坡]", fullmatch=True
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    before=st.lists(st.sampled_from([*SPECIAL, "预警", "的"]), max_size=6),
    after=st.lists(st.sampled_from([*SPECIAL, "一带", "等"]), max_size=6),
    place=PLACES,
    twice=st.booleans(),
)
def test_speakable_of_a_text_with_a_spliceable_place_is_its_skeleton_with_the_place_put_in(
    before: list[str], after: list[str], place: str, twice: bool
) -> None:
    assert messages._spliceable(place)
    head, tail = "".join(before), "".join(after)
    text = head + place + tail + (head + place if twice else "")
    marked = head + messages._ZONE_MARK + tail + (head + messages._ZONE_MARK if twice else "")
    assert speakable(text) == speakable(marked).replace(messages._ZONE_MARK, place)


@pytest.mark.parametrize(
    "place",
    ["G307国道", "3mm裂缝", "滑坡3", "（东侧）", "-5℃冻土", "滑坡 隐患", "", "３号点", "、滑坡"],
)
def test_a_place_speakable_could_change_is_not_spliced(place: str) -> None:
    assert not messages._spliceable(place)


def test_no_pattern_of_speakable_names_a_character_a_spliceable_place_may_hold() -> None:
    for pattern, _ in messages._SPEAKABLE:
        assert not any(messages._spliceable(ch) or ch == "、" for ch in pattern.pattern)
