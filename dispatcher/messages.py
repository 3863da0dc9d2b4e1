# Long module: one warning in four media's words (SMS, voice, loudspeaker, IM), side by side
"""Message texts: what a person reads on their phone, hears on a call or a village
loudspeaker, or sees in a messaging-app group.

A rule file may give its own template per channel kind (sms, voice, broadcast,
im) for a rule or a hazard; otherwise the built-in texts below are used, one
wording per medium:

- **sms**: the signature, the hazard, level, zone, expected time, the action to
  take, the acknowledgement instruction and the alert's short code, in three
  SMS segments. When a long zone name would overflow, the advice is dropped
  first, then the zone name is shortened — never the code or the signature. The
  acknowledgement link is never dropped silently: the text is shortened the
  same way until the link fits too; only when even the shortest text leaves no
  room is the link left out (logged; the reply code still acknowledges).
- **voice** (a call read by TTS): one spoken sentence — who calls, hazard and
  level, where, when (spoken times, `spoken_time`), what to do. No URL, no
  code, no brackets or symbols a TTS reads badly (`speakable`). The voice
  channel adds its own "press 1" prompt.
- **broadcast** (a village loudspeaker): an attention call, who issues it,
  what, where in the village, what to do, and the core sentence once more.
  No codes, links or reply instructions.
- **im** (a group robot): a title line with the level marked, then one line
  per fact (zone, township and village, time, advice, code, link), within the
  platform's byte limit — the zone list is shortened, a line is never cut.
  The lines read the same as plain text, which is how the robots post them.

All are Jinja2 or Python rendered from plain data; administrators' templates
are rendered in a `SandboxedEnvironment` with strict undefined variables. A
custom SMS template that overflows anyway (`yujing rules check` refuses those
it can foresee) is cut short, keeping the code; one that fails to render falls
back to the built-in text, so a template mistake never stops a warning.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from jinja2 import StrictUndefined, meta
from jinja2.sandbox import SandboxedEnvironment

from channels.base import ChannelLimits, Medium
from channels.sms_text import fits_sms
from channels.twilio_voice import MAX_VOICE_CHARS
from rules.templates import IM_MAX_BYTES, render_template

log = logging.getLogger("yujing.messages")

SMS_MAX_SEGMENTS = 3

# A channel's kind of text is its declared medium: channels.registry.medium_of.

#: (hazard, rule id, channel kind) → the rule's or hazard's template, None for the built-in.
TemplateLookup = Callable[[str, str, str], str | None]

_ACK = "回复1确认（编码{{ code }}）"
# a relayed official signal names its issuer: 【柳林县自然资源局】吕梁市气象台发布寒潮黄色预警
_BY = "{% if authority %}{{ authority }}发布{% endif %}"

TEMPLATES: Mapping[str, str] = {
    "new": "【{{ sender }}】"
    + _BY
    + "{{ hazard }}{{ level }}预警：{{ zone }}，{{ when }}。{{ advice }}"
    + _ACK,
    "upgraded": "【{{ sender }}】"
    + _BY
    + "{{ hazard }}预警升级为{{ level }}：{{ zone }}，{{ when }}。"
    "{{ advice }}" + _ACK,
    "downgraded": "【{{ sender }}】"
    + _BY
    + "{{ hazard }}预警降为{{ level }}：{{ zone }}，{{ when }}。"
    "{{ advice }}" + _ACK,
    "resolved": "【{{ sender }}】{{ hazard }}{{ level }}预警解除：{{ zone }}，"
    "预警条件已结束，请继续做好巡查。",
    "feed_down": "【{{ sender }}】系统告警：{{ data }}（{{ source }}）自{{ since }}起未能更新，"
    "自动预警可能中断，请值班人员人工关注气象信息。回复1确认（编码{{ code }}）",
    "feed_restored": "【{{ sender }}】系统告警解除：{{ data }}（{{ source }}）"
    "已于{{ since }}恢复更新。",
    "rules_refused": "【{{ sender }}】系统告警：{{ since }}修改的{{ what }}有误，未生效，"
    "仍按原{{ kept }}运行。首个错误在{{ where }}（共{{ count }}处），请运行yujing rules check"
    "查看并修正。回复1确认（编码{{ code }}）",
    "rules_restored": "【{{ sender }}】系统告警解除：{{ what }}已于{{ since }}重新加载生效，"
    "{{ summary }}。",
}

_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_compiled = {kind: _env.from_string(text) for kind, text in TEMPLATES.items()}


# Not frozen: a province's cold front builds one or more per alert, tens of thousands,
# and a frozen dataclass sets each field through object.__setattr__ (twice the cost).
# Nothing changes one once built; none is hashed (`evidence` is a mapping).
@dataclass
class HazardMessage:
    """Everything a hazard warning text is made of."""

    kind: str  # new | upgraded | downgraded | resolved
    sender: str
    hazard: str  # display name, e.g. 寒潮
    level_zh: str  # e.g. 黄色
    zone: str
    onset: datetime | None
    now: datetime
    advice: str
    code: str
    link: str | None = None  # signed ack link: SMS keeps it (shortening the text), IM lists it
    township: str = ""
    village: str = ""
    until: datetime | None = None
    evidence: Mapping[str, float] = field(default_factory=dict)  # expression → value
    authority: str = ""  # who issued the official warning it relays (柳林县气象台); "" if none

    @functools.cached_property
    def _words(self) -> _Words:
        """What it says besides where and which alert (asked once per medium)."""
        return _Words.of(self)


# A province's cold front renders tens of thousands of warnings that differ only in
# their zone and code: everything else a built-in text says — times, spoken forms,
# advice, the SMS around the zone — depends on the `_Words` alone, so it is rendered
# once per batch with marks where the zone and the code go (`_ZONE_MARK`), and each
# warning's text is that skeleton with its own zone and code put in. Where that
# could differ from rendering the warning whole, the whole warning is rendered.


class _Words(NamedTuple):
    """What a built-in hazard text says besides where (zone, township, village) and
    which alert (code, link, evidence): the same for every zone of a batch."""

    kind: str
    sender: str
    hazard: str
    level_zh: str
    onset: datetime | None
    until: datetime | None
    now: datetime
    advice: str
    authority: str

    @classmethod
    def of(cls, message: HazardMessage) -> _Words:
        return cls(
            message.kind,
            message.sender,
            message.hazard,
            message.level_zh,
            message.onset,
            message.until,
            message.now,
            message.advice,
            message.authority,
        )

    def message(self) -> HazardMessage:
        """A message saying these words of no zone and no alert."""
        return HazardMessage(
            kind=self.kind,
            sender=self.sender,
            hazard=self.hazard,
            level_zh=self.level_zh,
            zone="",
            onset=self.onset,
            now=self.now,
            advice=self.advice,
            code="",
            until=self.until,
            authority=self.authority,
        )

    def marked(self) -> bool:
        """Whether a mark appears in the words themselves (then no skeleton is made)."""
        return _marked(self.sender + self.hazard + self.level_zh + self.advice + self.authority)


# private-use characters: where the zone and the code go in a skeleton
_ZONE_MARK = "\ue000"
_CODE_MARK = "\ue001"


def _marked(text: str) -> bool:
    return _ZONE_MARK in text or _CODE_MARK in text


# bounds the skeletons kept: one per (words, timezone, medium) of a poll, a few hundred at most
_SKELETONS = 4096


def append_link(
    text: str, link: str | None, max_segments: int = SMS_MAX_SEGMENTS, *, code: str = ""
) -> str:
    """`text` followed by `确认：{link}`, within `max_segments` SMS segments.

    When both do not fit, the text is shortened, not the link: its head is cut
    (ending in "…") and its reply instruction 回复1确认（编码…） — or, without
    one, the alert `code` — is kept, so the ways to acknowledge survive. Only
    when that would leave almost nothing of the warning is the link left out
    (logged): the reply code still acknowledges.
    """
    if not link:
        return text
    linked = f"确认：{link}"
    if fits_sms(text + linked, max_segments):
        return text + linked
    ack = _ACK_TAIL.search(text)
    if ack is not None:
        head, keep = text[: ack.start()], ack.group(0)
    else:
        head, keep = text, (f"（编码{code}）" if code and code in text else "")
    cut = _longest_prefix(head, "…" + keep + linked, max_segments)
    if len(cut) >= _MIN_HEAD_WITH_LINK:
        return cut + "…" + keep + linked
    log.info("an acknowledgement link left too little room for the warning; sent without it")
    return text


# the built-in SMS texts end with the reply instruction (see _ACK)
_ACK_TAIL = re.compile(r"回复1确认（编码[^）]+）$")
# shorter than this, a warning with its link no longer says what is coming where
_MIN_HEAD_WITH_LINK = 24


def _longest_prefix(text: str, suffix: str, max_segments: int) -> str:
    """The longest head of `text` that fits in `max_segments` with `suffix` after it."""
    # fitting is monotone in the prefix length: binary search it
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if fits_sms(text[:middle] + suffix, max_segments):
            low = middle
        else:
            high = middle - 1
    return text[:low]


@functools.lru_cache(maxsize=4096)  # pure; a batch asks the same few times thousands of times
def local_time(moment: datetime, timezone: str) -> str:
    """'1月5日08时' in the county's timezone (the way Chinese warnings state times)."""
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{local.month}月{local.day}日{local.hour:02d}时"


def hazard_values(message: HazardMessage, timezone: str) -> dict[str, Any]:
    """The variables a hazard template sees: `rules.templates.TEMPLATE_VARIABLES`."""
    if message.onset is None or message.onset <= message.now:
        when = "已出现并可能持续"
    else:
        when = f"预计{local_time(message.onset, timezone)}起"
    return {
        "sender": message.sender,
        "hazard": message.hazard,
        "level": message.level_zh,
        "zone": message.zone,
        "township": message.township,
        "village": message.village,
        "onset": local_time(message.onset, timezone) if message.onset else "",
        "until": local_time(message.until, timezone) if message.until else "",
        "when": when,
        "advice": message.advice.strip(),
        "code": message.code,
        "link": message.link or "",
        "evidence": dict(message.evidence),
        "kind": message.kind,
        "authority": message.authority,
    }


def render_hazard(
    message: HazardMessage,
    timezone: str,
    *,
    template: str | None = None,
    channel_kind: str = "sms",
    limits: ChannelLimits | None = None,
) -> str:
    """Render a hazard warning for one channel kind: the rule's template, else the built-in.

    SMS texts fit in three segments and keep the acknowledgement link (shortening
    the text for it) whenever the shortest text leaves room; a template places
    `link` itself. Voice and broadcast texts are spoken: no link, no code. IM
    texts fit `limits.max_bytes` (default: the strictest robot, WeCom's 2048);
    `limits` are the channel's own when the caller knows them.
    """
    if template is not None:
        try:
            text = render_template(template, hazard_values(message, timezone))
        except Exception as exc:  # an administrator's template must never stop a warning
            log.error(
                "the %s template for %s (alert %s) failed to render (%s: %s); "
                "sent the built-in text instead",
                channel_kind,
                message.hazard,
                message.code,
                type(exc).__name__,
                exc,
            )
        else:
            if channel_kind in SPOKEN_KINDS:
                return speakable(text)
            if channel_kind != Medium.SMS or fits_sms(text, SMS_MAX_SEGMENTS):
                return text
            log.warning(
                "the sms template for %s (alert %s) gave %d characters, more than %d SMS "
                "segments; sent it cut short (yujing rules check warns of such templates)",
                message.hazard,
                message.code,
                len(text),
                SMS_MAX_SEGMENTS,
            )
            return cut_to_sms(text, message.code)
    if channel_kind == Medium.VOICE:
        return _voice_text(message, timezone, limits)
    if channel_kind == Medium.BROADCAST:
        return _broadcast_text(message, timezone, limits)
    if channel_kind == Medium.IM:
        return _im_text(message, timezone, limits)
    return _sms_text(message, timezone)


# --- sms


def _sms_text(message: HazardMessage, timezone: str) -> str:
    """The built-in SMS, with its acknowledgement link whenever a shortened text leaves room."""
    render = _sms_renderer(message, timezone)
    if message.link:
        suffix = f"确认：{message.link}"
        text, fits = _shorten_sms(message, render, suffix)
        if fits:
            return text + suffix
        log.info(
            "the acknowledgement link of alert %s does not fit in %d SMS segments even "
            "with the advice dropped and the zone name shortened; sent without it "
            "(a reply still acknowledges)",
            message.code,
            SMS_MAX_SEGMENTS,
        )
    text, _ = _shorten_sms(message, render, "")
    return text


def _shorten_sms(
    message: HazardMessage, render: Callable[[str, bool], str], suffix: str
) -> tuple[str, bool]:
    """The built-in text, shortened until it and `suffix` fit in the SMS limit, and whether
    they do: what matters least goes first, the advice, then the zone's tail.

    `render(zone, advised)` is the text naming `zone`, with the advice or without."""
    text = render(message.zone, True)
    if fits_sms(text + suffix, SMS_MAX_SEGMENTS):
        return text, True
    text = render(message.zone, False)
    zone = message.zone
    while not fits_sms(text + suffix, SMS_MAX_SEGMENTS) and len(zone) > 4:
        zone = zone[:-2]
        text = render(zone + "…", False)
    return text, fits_sms(text + suffix, SMS_MAX_SEGMENTS)


def _sms_values(message: HazardMessage, timezone: str) -> dict[str, Any]:
    values = hazard_values(message, timezone)
    advice = values["advice"]
    values["advice"] = advice.rstrip("。") + "。" if advice else ""
    return values


def _sms_renderer(message: HazardMessage, timezone: str) -> Callable[[str, bool], str]:
    """`render(zone, advised)` for `_shorten_sms`: the batch's skeleton with this
    warning's zone and code put in, or the template rendered whole."""
    code = message.code
    if message.kind in _SMS_SKELETON_KINDS and not _marked(message.zone + code):
        words = message._words
        advised = _sms_skeleton(words, timezone, True)
        plain = _sms_skeleton(words, timezone, False)
        if advised is not None and plain is not None:
            return lambda zone, with_advice: (
                (advised if with_advice else plain)
                .replace(_CODE_MARK, code)
                .replace(_ZONE_MARK, zone)
            )
    values = _sms_values(message, timezone)
    render = _compiled[message.kind].render

    def whole(zone: str, with_advice: bool) -> str:
        return render({**values, "zone": zone, "advice": values["advice"] if with_advice else ""})

    return whole


@functools.lru_cache(maxsize=_SKELETONS)
def _sms_skeleton(words: _Words, timezone: str, advised: bool) -> str | None:
    """The built-in SMS of `words` with marks for the zone and the code (None when the
    words themselves carry a mark)."""
    if words.marked():
        return None
    values = _sms_values(words.message(), timezone)
    values |= {"zone": _ZONE_MARK, "code": _CODE_MARK}
    if not advised:
        values["advice"] = ""
    return _compiled[words.kind].render(values)


# A built-in hazard text puts `zone` and `code` in verbatim and reads no other variable
# that differs between zones: its skeleton is exact. Found from the templates
# themselves, so a wording that one day reads the township goes the whole way.
_SMS_SKELETON_KINDS = frozenset(
    kind
    for kind in ("new", "upgraded", "downgraded", "resolved")
    if meta.find_undeclared_variables(_env.parse(TEMPLATES[kind]))
    <= {"sender", "authority", "hazard", "level", "zone", "when", "advice", "code"}
)


# --- spoken texts: voice calls and village loudspeakers

#: Channel kinds whose text a TTS engine reads aloud.
SPOKEN_KINDS = (Medium.VOICE, Medium.BROADCAST)

# hour → the part of the day a Chinese speaker names it by (凌晨3时, 下午3时)
_DAY_PARTS = ((6, "凌晨"), (9, "早上"), (12, "上午"), (13, "中午"), (18, "下午"), (24, "晚上"))
_RELATIVE_DAYS = {-1: "昨天", 0: "今天", 1: "明天", 2: "后天"}


@functools.lru_cache(maxsize=4096)  # pure; a batch asks the same few times thousands of times
def spoken_time(moment: datetime, timezone: str, now: datetime | None = None) -> str:
    """A time as it is said aloud: '1月7日上午9时', '1月7日晚上11时30分'; with `now`,
    '今天凌晨3时' / '明天下午2时' when the day is near.

    The built-in texts pass no `now`: a text is rendered once and may be read
    out hours later (a reminder, a retry after midnight), when "today" is wrong.
    """
    zone = ZoneInfo(timezone)
    local = moment.astimezone(zone)
    part = next(name for end, name in _DAY_PARTS if local.hour < end)
    hour = local.hour - 12 if local.hour > 12 else local.hour
    clock = f"{part}{hour}时" + (f"{local.minute}分" if local.minute else "")
    if now is not None:
        day = _RELATIVE_DAYS.get((local.date() - now.astimezone(zone).date()).days)
        if day is not None:
            return day + clock
    return f"{local.month}月{local.day}日{clock}"


# (pattern, replacement) in order: what a TTS engine reads badly → what a person says
_SPEAKABLE: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"https?://[A-Za-z0-9\-._~:/?#@!$&'*+,;=%]+", ""),  # URL characters (RFC 3986)
        (r"(?<![\d.])[-−](?=\d+(?:\.\d+)?\s*(?:℃|°C))", "零下"),
        (r"(\d+(?:\.\d+)?)\s*[%％]", r"百分之\1"),
        (r"(\d)\s*[~～\-—–]\s*(?=\d)", r"\1到"),
        (r"\s*(?:℃|°C)", "摄氏度"),
        (r"(\d)\s*m/s", r"\1米每秒"),
        (r"(\d)\s*km/h", r"\1公里每小时"),
        (r"(\d)\s*mm", r"\1毫米"),
        (r"(\d)\s*cm", r"\1厘米"),
        (r"×", "乘"),
        (r"【([^】]*)】", r"\1，"),
        (r"[（(）)…／/|｜]+", "，"),
        (r"[*#_`>\[\]【】~～]+", ""),
        (r"\s*，(?:\s*，)*\s*", "，"),
        (r"，(?=[。！？；：，]|$)", ""),
        (r"(?<=[。！？；：])，", ""),
        (r"^，", ""),
    )
)


def speakable(text: str) -> str:
    """`text` as a TTS engine should get it: no URL, no brackets or ellipses, units and
    symbols in words (℃ → 摄氏度, -5℃ → 零下5摄氏度, 30% → 百分之30, 3~5 → 3到5)."""
    for pattern, replacement in _SPEAKABLE:
        text = pattern.sub(replacement, text)
    return text.strip()


def _place(message: HazardMessage) -> tuple[str, str]:
    """(township + village, the rest of the zone's name): zone names usually start with
    their township and village (穆村镇冯家沟村黄土滑坡), which a listener needs once."""
    spot = message.zone
    area = ""
    for part in (message.township, message.village):
        if part:
            area += part
            spot = spot.removeprefix(part)
    return area, spot


def _spoken_when(message: HazardMessage, timezone: str) -> str:
    until = (
        spoken_time(message.until, timezone)
        if message.until is not None and message.until > message.now
        else ""
    )
    if message.onset is not None and message.onset > message.now:
        start = f"预计{spoken_time(message.onset, timezone)}开始"
        return f"{start}，持续到{until}" if until else start
    under_way = f"{message.hazard}现已出现"  # said by itself, "现已出现" leaves "what?" open
    return f"{under_way}，预计持续到{until}" if until else f"{under_way}，可能持续"


def _spoken_advice(advice: str) -> str:
    advice = advice.strip().rstrip("。")
    if not advice:
        return ""
    return (advice if advice.startswith("请") else "请" + advice) + "。"


def _spoken_warning(message: HazardMessage) -> str:
    """'寒潮黄色预警' / '寒潮预警升级为橙色预警' / '寒潮黄色预警解除'."""
    if message.authority and message.kind != "resolved":
        # a relayed official signal: say whose it is (柳林县气象台发布的寒潮黄色预警)
        plain = replace(message, authority="")
        return f"{message.authority}发布的{_spoken_warning(plain)}"
    if message.kind == "upgraded":
        return f"{message.hazard}预警升级为{message.level_zh}预警"
    if message.kind == "downgraded":
        return f"{message.hazard}预警降为{message.level_zh}预警"
    if message.kind == "resolved":
        return f"{message.hazard}{message.level_zh}预警解除"
    return f"{message.hazard}{message.level_zh}预警"


def _voice_text(message: HazardMessage, timezone: str, limits: ChannelLimits | None) -> str:
    """What a call says: who calls, what, where, when, what to do (the channel adds 按1确认)."""
    area, spot = _place(message)
    limit = limits.max_chars if limits and limits.max_chars else MAX_VOICE_CHARS
    skeleton = _spoken_skeleton(message._words, timezone, Medium.VOICE)

    def say(zone: str) -> str:
        where = f"{area}的{zone}" if area and zone else area or zone
        if skeleton is not None and _spliceable(where):
            return skeleton.replace(_ZONE_MARK, where)
        return speakable(_voice_words(message, timezone, where))

    return _fit_zone(spot, say, lambda text: len(text) <= limit, more="等")


def _voice_words(message: HazardMessage, timezone: str, where: str) -> str:
    """A call's words before `speakable`."""
    if message.kind == "resolved":
        return (
            f"您好，这里是{message.sender}。{where}，{_spoken_warning(message)}，"
            "预警条件已经结束，请继续做好巡查。"
        )
    return (
        f"您好，这里是{message.sender}。{_spoken_warning(message)}：{where}，"
        f"{_spoken_when(message, timezone)}。{_spoken_advice(message.advice)}"
    )


def _broadcast_text(message: HazardMessage, timezone: str, limits: ChannelLimits | None) -> str:
    """A loudspeaker script for villagers: attention, who, what, where, what to do, again."""
    _, spot = _place(message)
    village = message.village
    skeleton = _spoken_skeleton(message._words, timezone, Medium.BROADCAST)

    def script(zone: str) -> str:
        where = f"{village}{zone}" if village else zone
        if skeleton is not None and _spliceable(where):
            return skeleton.replace(_ZONE_MARK, where)
        return speakable(_broadcast_words(message, timezone, where))

    limit = limits.max_chars if limits and limits.max_chars else None
    return _fit_zone(spot, script, lambda text: limit is None or len(text) <= limit, more="等")


def _broadcast_words(message: HazardMessage, timezone: str, where: str) -> str:
    """A loudspeaker script before `speakable`."""
    warning = _spoken_warning(message)
    if message.kind == "resolved":
        core = f"{message.sender}通知：{where}一带，{warning}。"
        closing = "请大家继续注意安全。"
    else:
        issued = f"发布{warning}" if message.kind == "new" else f"通知：{warning}"
        core = (
            f"{message.sender}{issued}。{where}一带，{_spoken_when(message, timezone)}。"
            f"{_spoken_advice(message.advice)}"
        )
        closing = "请大家注意安全，远离危险边坡，听从村里安排。"
    return f"各位村民请注意，各位村民请注意！{core}{closing}重复一遍：{core}"


_SPOKEN_WORDS = {Medium.VOICE: _voice_words, Medium.BROADCAST: _broadcast_words}


@functools.lru_cache(maxsize=_SKELETONS)
def _spoken_skeleton(words: _Words, timezone: str, medium: Medium) -> str | None:
    """`speakable` of a spoken text of `words` with the zone mark where the place goes:
    the text of a `_spliceable` place is this with the place put in. None when the
    words themselves carry a mark."""
    if words.marked():
        return None
    said = _SPOKEN_WORDS[medium](words.message(), timezone, _ZONE_MARK)
    skeleton = speakable(said)
    # every mark is kept (see _spliceable); a mark lost would lose a place
    return skeleton if skeleton.count(_ZONE_MARK) == said.count(_ZONE_MARK) else None


# A place `speakable` leaves alone wherever it stands, and whose neighbours it does not
# change: Chinese characters, 、 between names, and digits between them (穆村镇307国道).
# No pattern of _SPEAKABLE names one of these characters, and none matches a text that
# starts at one or ends at one (a digit is rewritten only before %, ℃, ~, a unit: never
# before a Chinese character); a lookaround that meets one sees a character like the
# zone mark. So `speakable(text with the mark)` with the place put in for the mark is
# `speakable(text with the place)` — tests/test_messages_skeleton.py holds both to it.
_SPLICEABLE = re.compile(r"[\u4e00-\u9fff](?:[\u4e00-\u9fff、0-9]*[\u4e00-\u9fff])?")


def _spliceable(place: str) -> bool:
    return _SPLICEABLE.fullmatch(place) is not None


# --- im: a group robot's post

_LEVEL_MARKS = {"红色": "🔴", "橙色": "🟠", "黄色": "🟡", "蓝色": "🔵"}


def _im_text(message: HazardMessage, timezone: str, limits: ChannelLimits | None) -> str:
    """A title line with the level marked, then one line per fact, within the byte limit."""
    limit = limits.max_bytes if limits and limits.max_bytes else IM_MAX_BYTES

    def fits(text: str) -> bool:
        return len(text.encode("utf-8")) <= limit

    text = _fit_zone(message.zone, lambda zone: _im_lines(message, timezone, zone, True), fits)
    if not fits(text):  # a zone list too long even cut to its first name: the advice goes
        text = _fit_zone(message.zone, lambda zone: _im_lines(message, timezone, zone, False), fits)
    if not fits(text):  # only an absurd signature gets here: whole lines, the code kept
        lines = text.split("\n")
        code = f"编码：{message.code}"
        kept: list[str] = []
        for line in lines:
            if line != code and fits("\n".join([*kept, line, code])):
                kept.append(line)
        text = "\n".join([*kept, code])
    return text


def _im_lines(message: HazardMessage, timezone: str, zone: str, advice: bool) -> str:
    head, said, advised = _im_words(message._words, timezone)
    lines = [*head, f"隐患点：{zone}"]
    if message.township or message.village:
        lines.append(f"乡镇村：{message.township}{message.village}")
    lines.extend(advised if advice else said)
    lines.append(f"编码：{message.code}")
    if message.link:
        lines.append(f"确认：{message.link}")
    return "\n".join(lines)


@functools.lru_cache(maxsize=_SKELETONS)
def _im_words(
    words: _Words, timezone: str
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The lines of a post of `words` before its zone (title, sender, source) and after
    its township and village (time, or the all-clear; with the advice and without)."""
    message = words.message()
    level = message.level_zh
    if message.kind == "resolved":
        title = f"✅【预警解除】{message.hazard}{level}预警解除"
    else:
        change = {"upgraded": "预警升级", "downgraded": "预警降级"}.get(message.kind, "")
        title = f"{_LEVEL_MARKS.get(level, '⚠️')}【{level}预警】{message.hazard}{change}"
    head = [title, f"发布：{message.sender}"]
    if message.authority:
        head.append(f"来源：{message.authority}")
    said: tuple[str, ...]
    advised: tuple[str, ...]
    if message.kind == "resolved":
        said = advised = ("说明：预警条件已结束，请继续做好巡查",)
    else:
        said = (f"时间：{_written_when(message, timezone)}",)
        advice = message.advice.strip()
        advised = (*said, f"措施：{advice.rstrip('。')}") if advice else said
    return tuple(head), said, advised


def _written_when(message: HazardMessage, timezone: str) -> str:
    until = (
        local_time(message.until, timezone)
        if message.until is not None and message.until > message.now
        else ""
    )
    if message.onset is not None and message.onset > message.now:
        start = f"预计{local_time(message.onset, timezone)}起"
        return f"{start}，至{until}" if until else start
    return f"已出现，预计持续至{until}" if until else "已出现并可能持续"


def _fit_zone(
    zone: str, render: Callable[[str], str], fits: Callable[[str], bool], more: str = "…"
) -> str:
    """`render(zone)` with as much of `zone` as `fits`: a list (甲、乙、丙) keeps its first
    names and says how many there are (甲、乙等3处); a single name loses its tail
    (ending in `more`). The shortest try when nothing fits."""
    text = render(zone)
    if fits(text):
        return text
    names = [name for name in zone.split("、") if name] or [zone]
    total = f"等{len(names)}处" if len(names) > 1 else ""

    def listed(keep: int) -> str:
        return render("、".join(names[:keep]) + total)

    def first(length: int) -> str:
        return render(names[0][:length] + (total or more))

    keep = _most(len(names) - 1, lambda k: fits(listed(k)))
    if keep:
        return listed(keep)
    length = _most(len(names[0]) - 1, lambda n: fits(first(n)), least=4)
    return first(length or 4)


def _most(high: int, ok: Callable[[int], bool], least: int = 1) -> int | None:
    """The largest n in [least, high] with ok(n), for an `ok` that holds up to some n and
    fails above it (a shorter text fits when a longer one does); None when none does."""
    low = least - 1  # ok(low) is assumed; high + 1 is known to fail
    while low < high:
        middle = (low + high + 1) // 2
        if ok(middle):
            low = middle
        else:
            high = middle - 1
    return low if low >= least else None


def cut_to_sms(text: str, code: str, max_segments: int = SMS_MAX_SEGMENTS) -> str:
    """Cut `text` to fit the SMS limit, ending in "…"; the alert code survives the cut.

    When the code was in the part cut off, it is appended as （编码CODE）.
    """
    if fits_sms(text, max_segments):
        return text

    def longest(suffix: str) -> str:
        return _longest_prefix(text, "…" + suffix, max_segments) + "…" + suffix

    cut = longest("")
    if code and code in text and code not in cut:
        cut = longest(f"（编码{code}）")
    return cut


def _render_system(kind: str, code: str, **values: object) -> str:
    """A system message in at most three segments (long parts cut, the code kept)."""
    return cut_to_sms(_compiled[kind].render(code=code, **values), code)


def _clock(moment: datetime, timezone: str) -> str:
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{local.month}月{local.day}日{local.hour:02d}:{local.minute:02d}"


# System alerts go to bureau staff: a voice call says what happened and what to do
# (the code and file positions are for the console and the SMS); a loudspeaker
# never carries them, so "broadcast" gets the spoken wording too.
def _system_call(sender: str, text: str) -> str:
    return speakable(f"您好，这里是{sender}预警系统。{text}")


def _system_post(title: str, lines: list[str], code: str) -> str:
    return "\n".join([title, *lines, *([f"编码：{code}"] if code else [])])


FORECAST_DATA = "天气预报数据"
OFFICIAL_DATA = "官方预警信息"


def render_feed(
    kind: str,
    *,
    sender: str,
    source: str,
    since: datetime,
    code: str,
    timezone: str,
    channel_kind: str = "sms",
    data: str = FORECAST_DATA,
) -> str:
    """Render the system message for a feed going down or coming back; `data` says
    what it brings (forecasts, or official warnings: `OFFICIAL_DATA`)."""
    down = kind == "feed_down"
    if channel_kind in SPOKEN_KINDS:
        when = spoken_time(since, timezone)
        return _system_call(
            sender,
            f"{data}{source}自{when}起未能更新，自动预警可能中断，请值班人员人工关注气象信息。"
            if down
            else f"{data}{source}已于{when}恢复更新，系统告警解除。",
        )
    if channel_kind == Medium.IM:
        clock = _clock(since, timezone)
        if down:
            return _system_post(
                f"⚠️【系统告警】{data}未能更新",
                [
                    f"发布：{sender}",
                    f"数据源：{source}",
                    f"时间：自{clock}起",
                    "影响：自动预警可能中断，请值班人员人工关注气象信息",
                ],
                code,
            )
        return _system_post(
            f"✅【系统告警解除】{data}恢复更新",
            [f"发布：{sender}", f"数据源：{source}", f"时间：{clock}恢复"],
            code,
        )
    return _render_system(
        kind, code, sender=sender, source=source, since=_clock(since, timezone), data=data
    )


def render_rules_refused(
    *,
    sender: str,
    since: datetime,
    where: str,
    count: int,
    code: str,
    timezone: str,
    channel_kind: str = "sms",
    what: str = "预警规则",
    kept: str = "规则",
) -> str:
    """Tell administrators an edited rule set (or `what`) was refused; the old one stays."""
    if channel_kind in SPOKEN_KINDS:
        return _system_call(
            sender,
            f"{spoken_time(since, timezone)}修改的{what}有误，共{count}处错误，未生效，"
            f"仍按原{kept}运行。请管理员查看短信或控制台，检查并修正{kept}。",
        )
    if channel_kind == Medium.IM:
        return _system_post(
            f"⚠️【系统告警】{what}修改有误，未生效",
            [
                f"发布：{sender}",
                f"时间：{_clock(since, timezone)}修改",
                f"首个错误：{where}（共{count}处）",
                f"处理：仍按原{kept}运行；请运行 yujing rules check 查看并修正",
            ],
            code,
        )
    return _render_system(
        "rules_refused",
        code,
        sender=sender,
        since=_clock(since, timezone),
        where=where,
        count=count,
        what=what,
        kept=kept,
    )


def render_rules_restored(
    *,
    sender: str,
    since: datetime,
    rules: int,
    timezone: str,
    channel_kind: str = "sms",
    what: str = "预警规则",
    summary: str | None = None,
) -> str:
    """Tell administrators a valid rule set (or `what`) is in force again."""
    line = f"内容：{summary}" if summary else f"规则：共{rules}条"
    summary = summary or f"共{rules}条规则"
    if channel_kind in SPOKEN_KINDS:
        return _system_call(
            sender,
            f"{what}已于{spoken_time(since, timezone)}重新加载生效，{summary}，系统告警解除。",
        )
    if channel_kind == Medium.IM:
        return _system_post(
            f"✅【系统告警解除】{what}重新生效",
            [f"发布：{sender}", f"时间：{_clock(since, timezone)}生效", line],
            "",
        )
    return _render_system(
        "rules_restored",
        "",
        sender=sender,
        since=_clock(since, timezone),
        what=what,
        summary=summary,
    )


def render_undelivered(
    *,
    sender: str,
    since: datetime,
    now: datetime,
    recipients: int,
    messages: int,
    warnings: int,
    channels: str,
    code: str,
    timezone: str,
    channel_kind: str = "sms",
) -> str:
    """Tell the duty officer that warnings could not be delivered by any way left
    (`dispatcher.alerts.undelivered`): how many, over which channels, since when,
    and what to do."""
    if channel_kind in SPOKEN_KINDS:
        return _system_call(
            sender,
            f"有{recipients}位接收人的{messages}条预警消息未能送达，{channels}"
            f"自{spoken_time(since, timezone)}起发送失败。请值班人员立即电话通知相关人员，"
            "名单见值班台，并检查通信服务商。",
        )
    if channel_kind == Medium.IM:
        return _system_post(
            "⚠️【系统告警】预警消息未能送达",
            [
                f"发布：{sender}",
                f"时间：自{_clock(since, timezone)}起（截至{_clock(now, timezone)}）",
                f"未送达：{warnings}项预警的{messages}条消息，{recipients}位接收人",
                f"通道：{channels}（重试和备用通道均已用尽）",
                "处理：请立即电话通知相关人员（名单见值班台），并检查服务商；通道恢复后自动补发",
            ],
            code,
        )
    # short enough to leave room for the acknowledgement link within three segments
    text = (
        f"【{sender}】系统告警：{recipients}人的{messages}条预警消息（{warnings}项预警）"
        f"经{channels}均未送达，自{_clock(since, timezone)}起。请立即电话通知相关人员"
        f"（名单见值班台），检查服务商；恢复后自动补发。回复1确认（编码{code}）"
    )
    return cut_to_sms(text, code)


def render_undelivered_resolved(
    *,
    sender: str,
    at: datetime,
    reached: int,
    skipped: int,
    timezone: str,
    channel_kind: str = "sms",
) -> str:
    """Tell the duty officer that nothing is left undelivered: re-sent, or no longer needed."""
    outcome = f"{reached}条已补发送达" + (
        f"，{skipped}条因预警已确认或解除不再补发" if skipped else ""
    )
    if channel_kind in SPOKEN_KINDS:
        return _system_call(
            sender,
            f"此前未能送达的预警消息已于{spoken_time(at, timezone)}处理完毕，{outcome}，"
            "系统告警解除。",
        )
    if channel_kind == Medium.IM:
        return _system_post(
            "✅【系统告警解除】预警消息已补发",
            [f"发布：{sender}", f"时间：{_clock(at, timezone)}", f"结果：{outcome}"],
            "",
        )
    return cut_to_sms(
        f"【{sender}】系统告警解除：此前未能送达的预警消息已于{_clock(at, timezone)}处理完毕，"
        f"{outcome}。",
        "",
    )
