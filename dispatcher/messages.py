"""Message texts: what a person reads on their phone.

Templates are Jinja2 rendered in a `SandboxedEnvironment` with strict
undefined variables (administrators will write their own per rule later). Every
SMS carries the signature, the hazard, level, zone, expected time, the action to
take, the acknowledgement instruction and the alert's short code, and fits in
three SMS segments; when a long zone name would overflow, the advice is dropped
first and then the zone name is shortened, never the code or the signature.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from channels.sms_text import fits_sms

SMS_MAX_SEGMENTS = 3

TEMPLATES: Mapping[str, str] = {
    "new": "【{{ sender }}】{{ hazard }}{{ level }}预警：{{ zone }}，{{ when }}。"
    "{{ advice }}回复1确认（编码{{ code }}）",
    "upgraded": "【{{ sender }}】{{ hazard }}预警升级为{{ level }}：{{ zone }}，{{ when }}。"
    "{{ advice }}回复1确认（编码{{ code }}）",
    "downgraded": "【{{ sender }}】{{ hazard }}预警降为{{ level }}：{{ zone }}，{{ when }}。"
    "{{ advice }}回复1确认（编码{{ code }}）",
    "resolved": "【{{ sender }}】{{ hazard }}{{ level }}预警解除：{{ zone }}，"
    "预警条件已结束，请继续做好巡查。",
    "feed_down": "【{{ sender }}】系统告警：天气预报数据（{{ source }}）自{{ since }}起未能更新，"
    "自动预警可能中断，请值班人员人工关注气象信息。回复1确认（编码{{ code }}）",
    "feed_restored": "【{{ sender }}】系统告警解除：天气预报数据（{{ source }}）"
    "已于{{ since }}恢复更新。",
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


def local_time(moment: datetime, timezone: str) -> str:
    """'1月5日08时' in the county's timezone (the way Chinese warnings state times)."""
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{local.month}月{local.day}日{local.hour:02d}时"


def render_hazard(message: HazardMessage, timezone: str) -> str:
    """Render a hazard warning SMS that fits in three segments."""
    if message.onset is None or message.onset <= message.now:
        when = "已出现并可能持续"
    else:
        when = f"预计{local_time(message.onset, timezone)}起"
    advice = message.advice.strip().rstrip("。") + "。" if message.advice.strip() else ""
    values = {
        "sender": message.sender,
        "hazard": message.hazard,
        "level": message.level_zh,
        "zone": message.zone,
        "when": when,
        "advice": advice,
        "code": message.code,
    }
    text = _compiled[message.kind].render(values)
    if fits_sms(text, SMS_MAX_SEGMENTS):
        return text
    values["advice"] = ""
    text = _compiled[message.kind].render(values)
    zone = message.zone
    while not fits_sms(text, SMS_MAX_SEGMENTS) and len(zone) > 4:
        zone = zone[:-2]
        values["zone"] = zone + "…"
        text = _compiled[message.kind].render(values)
    return text


def render_feed(
    kind: str, *, sender: str, source: str, since: datetime, code: str, timezone: str
) -> str:
    """Render the system message for a forecast feed going down or coming back."""
    local = since.astimezone(ZoneInfo(timezone))
    return _compiled[kind].render(
        sender=sender,
        source=source,
        since=f"{local.month}月{local.day}日{local.hour:02d}:{local.minute:02d}",
        code=code,
    )
