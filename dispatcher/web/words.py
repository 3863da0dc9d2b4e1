"""What the console says in words: evidence with units, actors by name, phone links.

An alert's `evidence` is keyed by the rule's expression text
(``drop(daily_min(temperature_2m), 24h)``) with the number that decided it;
officers read "24小时降温12.1℃", not the expression. An audit actor or an
`acknowledged_by` entry is a person id, ``console:wang`` (a console login),
``system`` or ``cli:root``; officers read a person's name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final

from dispatcher.labels import channel_label, level_label

__all__ = ["actor_words", "event_summary_words", "evidence_words", "number", "phone_href"]

#: hourly forecast variables (Open-Meteo names and units) in words
VARIABLE_WORDS: Final[Mapping[str, tuple[str, str]]] = {
    "temperature_2m": ("气温", "℃"),
    "apparent_temperature": ("体感温度", "℃"),
    "dew_point_2m": ("露点温度", "℃"),
    "soil_temperature_0cm": ("地表温度", "℃"),
    "precipitation": ("降水量", "毫米"),
    "rain": ("降雨量", "毫米"),
    "showers": ("阵雨量", "毫米"),
    "snowfall": ("降雪量", "厘米"),
    "snow_depth": ("积雪深度", "米"),
    "visibility": ("能见度", "米"),
    "wind_speed_10m": ("平均风速", "米/秒"),
    "wind_gusts_10m": ("阵风风速", "米/秒"),
    "relative_humidity_2m": ("相对湿度", "%"),
    "weather_code": ("天气现象代码", ""),
    "freezing_level_height": ("零度层高度", "米"),
}

#: the parts of Yujing that act on their own, as the audit log names them
MACHINE_ACTORS: Final[Mapping[str, str]] = {
    "system": "系统",
    "scheduler": "定时任务",
    "escalation": "逐级通知程序",
    "outbox": "发送队列",
    "provider": "运营商回执",
}

_DAILY: Final = {"daily_min": "日最低", "daily_max": "日最高", "daily_mean": "日平均"}


def number(value: float) -> str:
    """12.1 → '12.1', 6.0 → '6', -0.04 → '0' (one decimal place, as warnings print them)."""
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _hours(window: str) -> str:
    match = re.fullmatch(r"(\d+)h", window)
    if match:
        return f"{match.group(1)}小时"
    match = re.fullmatch(r"(\d+)d", window)
    return f"{match.group(1)}天" if match else window


def _quantity(expr: str) -> tuple[str, str] | None:
    """A quantity expression (a variable, daily_min(…), beaufort(…)) → (words, unit)."""
    if expr in VARIABLE_WORDS:
        return VARIABLE_WORDS[expr]
    match = re.fullmatch(r"(daily_min|daily_max|daily_mean)\((\w+)\)", expr)
    if match and match.group(2) in VARIABLE_WORDS:
        words, unit = VARIABLE_WORDS[match.group(2)]
        return f"{_DAILY[match.group(1)]}{words}", unit
    match = re.fullmatch(r"beaufort\((\w+)\)", expr)
    if match:
        return "风力", "级"
    return None


def _phrase(expr: str, value: float) -> str | None:
    e = expr.replace(" ", "")
    v = number(value)
    match = re.fullmatch(r"drop\((.+),(\w+)\)", e)
    if match and (q := _quantity(match.group(1))):
        words, unit = q
        if words.endswith("气温"):
            return f"{_hours(match.group(2))}降温{v}{unit}"
        return f"{_hours(match.group(2))}{words}下降{v}{unit}"
    match = re.fullmatch(r"rise\((.+),(\w+)\)", e)
    if match and (q := _quantity(match.group(1))):
        words, unit = q
        return f"{_hours(match.group(2))}{words}上升{v}{unit}"
    match = re.fullmatch(r"(max|min|sum|mean)\((.+),(\w+)\)", e)
    if match and (q := _quantity(match.group(2))):
        words, unit = q
        how = {"max": "最大", "min": "最小", "sum": "累计", "mean": "平均"}[match.group(1)]
        if match.group(1) == "sum":
            words = words.removesuffix("量")
        return f"{_hours(match.group(3))}{how}{words}{v}{unit}"
    match = re.fullmatch(r"freeze_thaw\((\w+),(\w+)\)", e)
    if match:
        return f"{_hours(match.group(2))}冻融循环{v}次"
    q = _quantity(e)
    if q:
        words, unit = q
        return f"{words}{v}{unit}"
    return None


def evidence_words(evidence: Mapping[str, object]) -> list[str]:
    """Each number that decided an alert, in words with its unit.

    ``{"drop(daily_min(temperature_2m), 24h)": 12.1}`` → ``["24小时降温12.1℃"]``;
    an expression without words is shown as ``expression = value``.
    """
    if "unreached" in evidence and "messages" in evidence:
        return undelivered_words(evidence)
    out = []
    for expr, value in evidence.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            out.append(f"{expr}：{value}")
            continue
        out.append(_phrase(expr, float(value)) or f"{expr} = {number(float(value))}")
    return out


def undelivered_words(evidence: Mapping[str, object]) -> list[str]:
    """The undelivered system alert's evidence (`dispatcher.alerts.undelivered`) in
    words: how many messages to how many people, over which channels, and whom to call."""
    channels = evidence.get("channels")
    names = "、".join(channel_label(str(c)) for c in channels) if isinstance(channels, list) else ""
    out = [
        f"{evidence.get('recipients')}人的{evidence.get('messages')}条预警消息未送达"
        f"（{evidence.get('warnings')}项预警）" + (f"，经{names}均失败" if names else ""),
    ]
    unreached = evidence.get("unreached")
    if isinstance(unreached, list):
        for entry in unreached:
            if isinstance(entry, Mapping):
                code = entry.get("alert")
                out.append(
                    f"请电话通知：{entry.get('name') or ''} {entry.get('address') or ''}"
                    + (f"（编码{code}）" if code else "")
                )
    return out


def event_summary_words(summary: Mapping[str, object]) -> list[str]:
    """An event's `evidence` (its zones by level) in words: ``{"zones": 40,
    "levels": {"orange": 10, "yellow": 30}}`` → ``["40处隐患点（橙色10处、黄色30处）"]``."""
    zones = summary.get("zones")
    levels = summary.get("levels")
    if not isinstance(zones, int):
        return evidence_words(summary)
    parts = (
        "、".join(f"{level_label(str(k))}{v}处" for k, v in levels.items())
        if isinstance(levels, Mapping) and len(levels) > 1
        else ""
    )
    return [f"{zones}处隐患点" + (f"（{parts}）" if parts else "")]


def actor_words(actor: str, person_name: Callable[[str], str | None]) -> str:
    """Who did something, for an officer: a person's name, else what the actor is.

    `person_name` gives the name for a person id or for ``console:<login>`` (the
    login's linked person); without one a console login reads 值班台用户<login>.
    """
    actor = actor.strip()
    if not actor:
        return "—"
    named = person_name(actor)
    if named:
        return named
    if actor in MACHINE_ACTORS:
        return MACHINE_ACTORS[actor]
    if actor.startswith("phone:"):
        return f"来电/短信 {actor.removeprefix('phone:')}"
    if actor == "cli" or actor.startswith("cli:"):
        return "命令行" + (f"（{actor[4:]}）" if actor.startswith("cli:") else "")
    if actor.startswith("console:"):
        return f"值班台用户{actor.removeprefix('console:')}"
    return actor


def phone_href(phone: str) -> str | None:
    """'tel:+8617000000101' for a phone number, None for anything else."""
    digits = re.sub(r"[\s\-()]", "", phone)
    return f"tel:{digits}" if re.fullmatch(r"\+?\d{5,20}", digits) else None
