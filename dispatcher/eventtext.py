"""An event's words: what the duty officer and the leader on duty read, hear and see.

One message per event and per event change (dispatcher.alerts.grouping): new,
upgraded, downgraded, zones added, ended; and the bureau's reminders and the
grouped overdue notice (迟报: "寒潮橙色预警：63处隐患点超时未确认"). Every
text carries the event's code and how to acknowledge it by SMS ("回复“1 K7M3”
确认"), except the one saying it ended.

Three media, like a zone's warning (dispatcher.messages): **sms** within three
segments (the zone list is shortened first, the code never); **voice** one
spoken sentence without the code (the call's own "press 1" prompt
acknowledges); **im** a title line and one line per fact for the duty room's
group. Pure: facts in, texts out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from channels.base import Medium
from channels.sms_text import fits_sms
from dispatcher.messages import SMS_MAX_SEGMENTS, cut_to_sms, local_time, speakable, spoken_time
from rules.templates import IM_MAX_BYTES
from rules.types import Level

__all__ = ["EVENT_TEXT_KINDS", "EventFacts", "EventZone", "render_event", "render_event_all"]

#: What an event message is about.
EVENT_TEXT_KINDS: Final = (
    "new",
    "upgraded",
    "downgraded",
    "zones_added",
    "resolved",
    "reminder",
    "overdue",
)

_LEVEL_MARKS: Final = {Level.RED: "🔴", Level.ORANGE: "🟠", Level.YELLOW: "🟡", Level.BLUE: "🔵"}


@dataclass(frozen=True)
class EventZone:
    """A zone of the event as its texts name it."""

    zone_id: str
    name: str
    township: str
    level: Level


@dataclass(frozen=True)
class EventFacts:
    """Everything an event message is made of.

    `zones` are the event's open zones (for `resolved`: those it had at the
    end, possibly none); `added` those the change brought in; `waiting` the
    zones still unacknowledged (reminders) or past their deadline (overdue).
    """

    kind: str  # one of EVENT_TEXT_KINDS
    sender: str
    code: str
    hazard: str  # display name, e.g. 寒潮
    level: Level
    zones: Sequence[EventZone]
    now: datetime
    onset: datetime | None = None
    previous_level: Level | None = None
    added: Sequence[EventZone] = ()
    waiting: int = 0
    minutes: int | None = None  # the acknowledgement deadline, for `overdue`


def _ack(code: str) -> str:
    return f"回复“1 {code}”确认。"


def _counts(zones: Sequence[EventZone]) -> str:
    """'32处隐患点（橙色12处、黄色20处）' — by level, highest first."""
    by_level = Counter(z.level for z in zones)
    total = f"{len(zones)}处隐患点"
    if len(by_level) < 2:
        return total
    parts = "、".join(f"{lv.zh}{by_level[lv]}处" for lv in sorted(by_level, reverse=True))
    return f"{total}（{parts}）"


def _townships(zones: Sequence[EventZone]) -> list[str]:
    """Townships by the number of their zones, most first (then by name)."""
    counts = Counter(z.township for z in zones if z.township)
    return sorted(counts, key=lambda t: (-counts[t], t))


def _where(zones: Sequence[EventZone], listed: int) -> str:
    """'柳林镇、穆村镇等5个乡镇' with the first `listed` townships named."""
    towns = _townships(zones)
    if not towns:
        return ""
    if listed >= len(towns):
        return "、".join(towns)
    if listed <= 0:
        return f"{len(towns)}个乡镇"
    return f"{'、'.join(towns[:listed])}等{len(towns)}个乡镇"


def _names(zones: Sequence[EventZone], listed: int) -> str:
    if listed <= 0 or not zones:
        return ""
    names = "、".join(z.name for z in zones[:listed])
    return f"（{names}{'等' if listed < len(zones) else ''}）"


def _when(facts: EventFacts, timezone: str) -> str:
    if facts.onset is None:
        return ""
    if facts.onset > facts.now:
        return f"，预计{local_time(facts.onset, timezone)}起"
    return "，已出现"


def _headline(facts: EventFacts) -> str:
    """'寒潮橙色预警', '寒潮预警升级为红色' …: the event in its change's words."""
    f = facts
    if f.kind == "upgraded":
        return f"{f.hazard}预警升级为{f.level.zh}"
    if f.kind == "downgraded":
        return f"{f.hazard}预警降为{f.level.zh}"
    if f.kind == "resolved":
        return f"{f.hazard}{f.level.zh}预警解除"
    return f"{f.hazard}{f.level.zh}预警"


def _sms(facts: EventFacts, timezone: str, towns: int, names: int) -> str:
    f = facts
    head = f"【{f.sender}】"
    code = f"（编码{f.code}）"
    where = _where(f.zones, towns)
    scope = f"{where}{_counts(f.zones)}" if where else _counts(f.zones)
    if f.kind == "overdue":
        minutes = f"（超过{f.minutes}分钟）" if f.minutes else ""
        late = (
            f"{f.waiting}处隐患点超时未确认{minutes}" if f.waiting else f"事件超时未确认{minutes}"
        )
        return f"{head}迟报提醒：{_headline(f)}：{late}{code}，请督促落实。{_ack(f.code)}"
    if f.kind == "resolved":
        return f"{head}{_headline(f)}{code}：各隐患点预警条件已结束，请继续做好巡查。"
    if f.kind == "reminder":
        return (
            f"{head}{_headline(f)}{code}仍未确认：{scope}中{f.waiting}处尚未确认，"
            f"请督促落实。{_ack(f.code)}"
        )
    if f.kind == "zones_added":
        return (
            f"{head}{_headline(f)}{code}新增{len(f.added)}处隐患点{_names(f.added, names)}，"
            f"共{scope}。{_ack(f.code)}"
        )
    if f.kind == "upgraded":
        top = [z for z in f.zones if z.level == f.level]
        return (
            f"{head}{_headline(f)}{code}：{f.level.zh}{len(top)}处{_names(top, names)}，"
            f"共{scope}{_when(f, timezone)}。请督促落实防范。{_ack(f.code)}"
        )
    return (
        f"{head}{_headline(f)}{code}：{scope}{_when(f, timezone)}。请督促落实防范。{_ack(f.code)}"
    )


def _fit(render: Callable[[int, int], str], fits: Callable[[str], bool]) -> str | None:
    """The richest text that fits: fewer zone names first, then fewer townships."""
    for names in (5, 3, 1, 0):
        for towns in (4, 2, 1, 0):
            text = render(towns, names)
            if fits(text):
                return text
    return None


def _sms_text(facts: EventFacts, timezone: str) -> str:
    text = _fit(
        lambda towns, names: _sms(facts, timezone, towns, names),
        lambda t: fits_sms(t, SMS_MAX_SEGMENTS),
    )
    return text or cut_to_sms(_sms(facts, timezone, 0, 0), facts.code)


def _voice_text(facts: EventFacts, timezone: str) -> str:
    f = facts
    where = _where(f.zones, 2)
    scope = f"{where}{len(f.zones)}处隐患点" if where else f"{len(f.zones)}处隐患点"
    when = (
        f"，预计{spoken_time(f.onset, timezone)}起"
        if f.onset is not None and f.onset > f.now
        else ""
    )
    intro = f"您好，这里是{f.sender}预警系统。"
    if f.kind == "overdue":
        late = f"有{f.waiting}处隐患点超时未确认" if f.waiting else "超时无人确认"
        body = f"迟报提醒，{_headline(f)}{late}，请督促落实。"
    elif f.kind == "resolved":
        body = f"{_headline(f)}，各隐患点预警条件已结束，请继续做好巡查。"
    elif f.kind == "reminder":
        body = f"{_headline(f)}仍有{f.waiting}处隐患点尚未确认，请督促落实。"
    elif f.kind == "zones_added":
        body = f"{_headline(f)}新增{len(f.added)}处隐患点，共{scope}。"
    else:
        body = f"{_headline(f)}，涉及{scope}{when}，请督促落实防范。"
    return speakable(intro + body)


def _im(facts: EventFacts, timezone: str, towns: int, names: int) -> str:
    f = facts
    mark = "✅" if f.kind == "resolved" else _LEVEL_MARKS.get(f.level, "⚠️")
    title = {
        "overdue": f"⏰【迟报提醒】{_headline(f)}",
        "reminder": f"{mark}【未确认】{_headline(f)}",
        "zones_added": f"{mark}【新增隐患点】{_headline(f)}",
    }.get(f.kind, f"{mark}【{_headline(f)}】")
    lines = [title, f"发布：{f.sender}"]
    if f.kind == "overdue":
        lines.append(f"超时未确认：{f.waiting}处隐患点" if f.waiting else "事件超时未确认")
    elif f.kind == "reminder":
        lines.append(f"尚未确认：{f.waiting}处隐患点")
    if f.kind == "zones_added" and f.added:
        lines.append(f"新增：{len(f.added)}处{_names(f.added, names)}")
    if f.zones:
        lines.append(f"涉及：{_counts(f.zones)}")
        where = _where(f.zones, towns)
        if where:
            lines.append(f"乡镇：{where}")
    if f.kind == "resolved":
        lines.append("说明：预警条件已结束，请继续做好巡查")
    elif f.onset is not None and f.onset > f.now:
        lines.append(f"时间：预计{local_time(f.onset, timezone)}起")
    reply = "" if f.kind == "resolved" else f"（值班人员回复“1 {f.code}”确认）"
    lines.append(f"编码：{f.code}{reply}")
    return "\n".join(lines)


def _im_text(facts: EventFacts, timezone: str) -> str:
    text = _fit(
        lambda towns, names: _im(facts, timezone, towns, names),
        lambda t: len(t.encode("utf-8")) <= IM_MAX_BYTES,
    )
    return text or _im(facts, timezone, 0, 0)


def render_event(facts: EventFacts, timezone: str, medium: str = Medium.SMS) -> str:
    """The text of an event message for a channel of `medium`."""
    if facts.kind not in EVENT_TEXT_KINDS:
        raise ValueError(f"unknown event message kind {facts.kind!r}")
    if medium in (Medium.VOICE, Medium.BROADCAST):
        return _voice_text(facts, timezone)
    if medium == Medium.IM:
        return _im_text(facts, timezone)
    return _sms_text(facts, timezone)


def render_event_all(facts: EventFacts, timezone: str) -> Mapping[str, str]:
    """Medium → text, for every medium (an outbox row takes its channel's)."""
    return {medium.value: render_event(facts, timezone, medium) for medium in Medium}
