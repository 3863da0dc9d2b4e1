"""Message texts: what a person reads on their phone, or hears.

A rule file may give its own template per channel kind (sms, voice, broadcast,
im) for a rule or a hazard; otherwise the built-in texts below are used. All
are Jinja2 rendered in a `SandboxedEnvironment` with strict undefined
variables. Every built-in SMS carries the signature, the hazard, level, zone,
expected time, the action to take, the acknowledgement instruction and the
alert's short code, and fits in three SMS segments: when a long zone name would
overflow, the advice is dropped first, then the zone name is shortened — never
the code or the signature; the acknowledgement link follows only if it fits. A custom SMS template
that overflows anyway (`yujing rules check` refuses those it can foresee) is cut
short, keeping the code; one that fails to render falls back to the built-in
text, so a template mistake never stops a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from channels.sms_text import fits_sms
from rules.templates import render_template

log = logging.getLogger("yujing.messages")

SMS_MAX_SEGMENTS = 3

# A channel's kind of text is its declared medium: channels.registry.medium_of.

#: (hazard, rule id, channel kind) → the rule's or hazard's template, None for the built-in.
TemplateLookup = Callable[[str, str, str], str | None]

_ACK = "回复1确认（编码{{ code }}）"

TEMPLATES: Mapping[str, str] = {
    "new": "【{{ sender }}】{{ hazard }}{{ level }}预警：{{ zone }}，{{ when }}。{{ advice }}"
    + _ACK,
    "upgraded": "【{{ sender }}】{{ hazard }}预警升级为{{ level }}：{{ zone }}，{{ when }}。"
    "{{ advice }}" + _ACK,
    "downgraded": "【{{ sender }}】{{ hazard }}预警降为{{ level }}：{{ zone }}，{{ when }}。"
    "{{ advice }}" + _ACK,
    "resolved": "【{{ sender }}】{{ hazard }}{{ level }}预警解除：{{ zone }}，"
    "预警条件已结束，请继续做好巡查。",
    "feed_down": "【{{ sender }}】系统告警：天气预报数据（{{ source }}）自{{ since }}起未能更新，"
    "自动预警可能中断，请值班人员人工关注气象信息。回复1确认（编码{{ code }}）",
    "feed_restored": "【{{ sender }}】系统告警解除：天气预报数据（{{ source }}）"
    "已于{{ since }}恢复更新。",
    "rules_refused": "【{{ sender }}】系统告警：{{ since }}修改的预警规则有误，未生效，"
    "仍按原规则运行。首个错误在{{ where }}（共{{ count }}处），请运行yujing rules check"
    "查看并修正。回复1确认（编码{{ code }}）",
    "rules_restored": "【{{ sender }}】系统告警解除：预警规则已于{{ since }}重新加载生效，"
    "共{{ rules }}条规则。",
}

_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_compiled = {kind: _env.from_string(text) for kind, text in TEMPLATES.items()}


@dataclass(frozen=True)
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
    link: str | None = None  # signed acknowledgement link; appended only if it still fits
    township: str = ""
    village: str = ""
    until: datetime | None = None
    evidence: Mapping[str, float] = field(default_factory=dict)  # expression → value


def append_link(text: str, link: str | None, max_segments: int = SMS_MAX_SEGMENTS) -> str:
    """`text` followed by `确认：{link}` when that still fits in `max_segments` SMS segments."""
    if not link:
        return text
    linked = f"{text}确认：{link}"
    return linked if fits_sms(linked, max_segments) else text


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
    }


def render_hazard(
    message: HazardMessage,
    timezone: str,
    *,
    template: str | None = None,
    channel_kind: str = "sms",
) -> str:
    """Render a hazard warning for one channel kind: the rule's template, else the built-in.

    SMS texts fit in three segments. The built-in texts end with the message's
    acknowledgement link when there is room for it; a template places `link`
    itself.
    """
    values = hazard_values(message, timezone)
    if template is not None:
        try:
            text = render_template(template, values)
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
            if channel_kind != "sms" or fits_sms(text, SMS_MAX_SEGMENTS):
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
    advice = values["advice"]
    values["advice"] = advice.rstrip("。") + "。" if advice else ""
    render = _compiled[message.kind].render
    text = render(values)
    if channel_kind == "sms" and not fits_sms(text, SMS_MAX_SEGMENTS):
        # drop what matters least first: the advice, then the zone's tail
        values["advice"] = ""
        text = render(values)
        zone = message.zone
        while not fits_sms(text, SMS_MAX_SEGMENTS) and len(zone) > 4:
            zone = zone[:-2]
            values["zone"] = zone + "…"
            text = render(values)
    return append_link(text, message.link)


def cut_to_sms(text: str, code: str, max_segments: int = SMS_MAX_SEGMENTS) -> str:
    """Cut `text` to fit the SMS limit, ending in "…"; the alert code survives the cut.

    When the code was in the part cut off, it is appended as （编码CODE）.
    """
    if fits_sms(text, max_segments):
        return text

    def longest(suffix: str) -> str:
        # fitting is monotone in the prefix length: binary search the longest prefix
        low, high = 0, len(text)
        while low < high:
            middle = (low + high + 1) // 2
            if fits_sms(text[:middle] + "…" + suffix, max_segments):
                low = middle
            else:
                high = middle - 1
        return text[:low] + "…" + suffix

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


def render_feed(
    kind: str, *, sender: str, source: str, since: datetime, code: str, timezone: str
) -> str:
    """Render the system message for a forecast feed going down or coming back."""
    return _render_system(kind, code, sender=sender, source=source, since=_clock(since, timezone))


def render_rules_refused(
    *, sender: str, since: datetime, where: str, count: int, code: str, timezone: str
) -> str:
    """Tell administrators an edited rule set was refused and the old one stays in force."""
    return _render_system(
        "rules_refused",
        code,
        sender=sender,
        since=_clock(since, timezone),
        where=where,
        count=count,
    )


def render_rules_restored(*, sender: str, since: datetime, rules: int, timezone: str) -> str:
    """Tell administrators a valid rule set is in force again."""
    return _render_system(
        "rules_restored", "", sender=sender, since=_clock(since, timezone), rules=rules
    )
