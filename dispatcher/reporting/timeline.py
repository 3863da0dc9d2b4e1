"""An event's timeline, drawn to the event's own scale (SVG geometry for the template).

One band shows the event's level over time; below it, how many messages
left, how many acknowledgements came in and how many deadlines were missed,
as bars per slice of time with their counts written on them — paper has no
hover. The axis is ticked in steps that fit the event: minutes for a short
one, hours for a day-long one, days for a week.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from dispatcher.labels import level_label
from dispatcher.reporting.events import EventSection

__all__ = ["LEVEL_COLOUR", "Bar", "Timeline", "event_timeline"]

LEVEL_COLOUR: Final = {
    "blue": "#1f6fd1",
    "yellow": "#d9a400",
    "orange": "#e8710a",
    "red": "#c9252c",
}
_LANES: Final = (
    ("level", "等级"),
    ("send", "通知"),
    ("ack", "确认"),
    ("overdue", "超时"),
)
_LANE_COLOUR: Final = {"send": "#5b6670", "ack": "#1a7f37", "overdue": "#c9252c"}
_TICK_STEPS: Final = tuple(
    timedelta(minutes=m) for m in (5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 4320, 10080)
)
_MIN_SPAN: Final = timedelta(hours=1)
_SLICES: Final = 24


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str  # written on the page (a count or a level), "" for none


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    left: int
    right: int
    lanes: tuple[tuple[float, str], ...]  # (y of the lane's middle, label)
    bars: tuple[Bar, ...]
    ticks: tuple[tuple[float, str], ...]  # (x, label)
    step: str  # the tick step in words (每3小时)
    start: datetime
    end: datetime


def event_timeline(
    section: EventSection, *, until: datetime, timezone: str, width: int = 680
) -> Timeline:
    """The event from its opening to its close (or `until`, for one still open)."""
    tz = ZoneInfo(timezone)
    sends = [d.at for d in section.deliveries]
    acks = [a.at for a in section.event.acks] + [
        a.at for e in section.zone_episodes for a in e.acks
    ]
    overdue = [
        t for e in (section.event, *section.zone_episodes) for p in e.parts for t in p.overdue_at
    ]
    t0 = section.opened_at
    t1 = max([section.closed_at or until, *sends, *acks, *overdue])
    t1 = max(t1, t0 + _MIN_SPAN)
    span = (t1 - t0).total_seconds()
    left, right, top, lane_h = 44, width - 8, 20, 26

    def x(moment: datetime) -> float:
        return round(left + (right - left) * (moment - t0).total_seconds() / span, 1)

    lane_y = {key: top + lane_h * i + lane_h / 2 for i, (key, _) in enumerate(_LANES)}
    bars: list[Bar] = []
    # the level band: one segment per level held
    held: list[tuple[datetime, str]] = []
    for change in section.changes:
        level = change.level or (held[-1][1] if held else section.event.parts[0].level)
        if not held or held[-1][1] != level:
            held.append((change.at, level))
    if not held:
        held = [(t0, section.level)]
    band_end = section.closed_at or until
    for i, (since, level) in enumerate(held):
        stop = held[i + 1][0] if i + 1 < len(held) else max(band_end, since)
        x0, x1 = x(max(since, t0)), x(min(stop, t1))
        bars.append(
            Bar(
                x=x0,
                y=lane_y["level"] - 8,
                width=max(round(x1 - x0, 1), 2),
                height=16,
                colour=LEVEL_COLOUR.get(level, "#888"),
                label=level_label(level) if x1 - x0 > 30 else "",
            )
        )
    # counts per slice of time
    slice_s = span / _SLICES
    for lane, moments in (("send", sends), ("ack", acks), ("overdue", overdue)):
        counts = [0] * _SLICES
        for m in moments:
            counts[min(int((m - t0).total_seconds() / slice_s), _SLICES - 1)] += 1
        most = max(counts) or 1
        slot = (right - left) / _SLICES
        for i, n in enumerate(counts):
            if not n:
                continue
            h = 4 + 12 * n / most
            bars.append(
                Bar(
                    x=round(left + slot * i + 1, 1),
                    y=round(lane_y[lane] + 8 - h, 1),
                    width=round(max(slot - 2, 2), 1),
                    height=round(h, 1),
                    colour=_LANE_COLOUR[lane],
                    label=str(n),
                )
            )
    step = next((s for s in _TICK_STEPS if span / s.total_seconds() <= 8), _TICK_STEPS[-1])
    local0, local1 = t0.astimezone(tz), t1.astimezone(tz)
    tick = local0.replace(minute=0, second=0, microsecond=0)
    if step >= timedelta(days=1):
        tick = tick.replace(hour=0)
    elif step >= timedelta(hours=1):
        tick = tick.replace(hour=tick.hour - tick.hour % int(step.total_seconds() // 3600))
    ticks: list[tuple[float, str]] = []
    previous_day = None
    while tick <= local1:
        if tick >= local0:
            day = (tick.month, tick.day)
            label = (
                f"{tick:%H:%M}"
                if day == previous_day
                else f"{tick.month}月{tick.day}日 {tick:%H:%M}"
            )
            if step >= timedelta(days=1):
                label = f"{tick.month}月{tick.day}日"
            ticks.append((x(tick), label))
            previous_day = day
        tick = (tick.astimezone(tz) + step).astimezone(tz)
    return Timeline(
        width=width,
        height=int(top + lane_h * len(_LANES) + 4),
        left=left,
        right=right,
        lanes=tuple((lane_y[key], label) for key, label in _LANES),
        bars=tuple(bars),
        ticks=tuple(ticks),
        step=_step_words(step),
        start=t0,
        end=t1,
    )


def _step_words(step: timedelta) -> str:
    minutes = int(step.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"每{minutes // 1440}天"
    if minutes % 60 == 0:
        return f"每{minutes // 60}小时"
    return f"每{minutes}分钟"
