"""Message templates that administrators write in the rule files (docs/rules.md).

A template is Jinja2 text rendered in a `SandboxedEnvironment` with
`StrictUndefined`: a template cannot reach Python internals, and a name it
uses that is not one of `TEMPLATE_VARIABLES` is an error at load time
(`check_template`), not a blank in a warning. Pure code: the dispatcher builds
the values (`message_values`) and renders (`render_template`).

`check_template` also renders the template with worst-case sample values (a
zone name of 20 Chinese characters, a 4-character code, a 60-character link,
the bureau's name as an 8-character signature, every message kind and both
wordings of `when`): an SMS template that could need more than three UCS-2
segments (201 characters) is refused, and so is an IM template over 2048 bytes
(the WeCom robot's text limit).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

from rules.types import Level

TEMPLATE_KINDS: tuple[str, ...] = ("sms", "voice", "broadcast", "im")
"""Channel kinds a rule file may give a template for."""

MESSAGE_KINDS: tuple[str, ...] = ("new", "upgraded", "downgraded", "resolved")
"""What happened to the warning (the `kind` variable)."""

TEMPLATE_VARIABLES: Mapping[str, str] = {
    "sender": "the bureau's name, the SMS signature without 【】 (柳林县自然资源局)",
    "hazard": "the hazard's display name (寒潮)",
    "level": "the level in Chinese (蓝色, 黄色, 橙色, 红色)",
    "zone": "the zone's name (柳林镇锄沟村黄土崩塌)",
    "township": "the zone's township (柳林镇)",
    "village": "the zone's village (锄沟村; may be empty)",
    "onset": "first hour of the warned condition, local time (1月7日08时)",
    "until": "last hour of its first run, local time (1月7日20时)",
    "when": "预计1月7日08时起 when the onset is ahead, 已出现并可能持续 when it has begun",
    "advice": "the hazard's advice for the level (may be empty)",
    "code": "the alert's short code, to quote in a reply (A7K2)",
    "link": "address of the alert's page (may be empty)",
    "evidence": "the numbers that triggered it: expression text → value (a dict)",
    "kind": "new, upgraded, downgraded or resolved",
    "authority": "who issued the official warning a rule relays (吕梁市气象台); empty otherwise",
}
"""The names a template may use, with what they hold."""

SMS_MAX_UNITS = 201
"""UTF-16 code units in three concatenated UCS-2 SMS segments (3 × 67)."""
IM_MAX_BYTES = 2048
"""UTF-8 bytes of a WeCom group-robot text message (the strictest IM limit)."""

_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


@dataclass(frozen=True)
class TemplateProblem:
    """A problem in a template; `offset` is the 0-based character it is about."""

    message: str
    offset: int = 0


class _AnyEvidence(dict[str, float]):
    """Sample evidence: any expression a template looks up has a (long) value."""

    def __missing__(self, key: str) -> float:
        return -12.34


WORST_CASE: Mapping[str, str] = {
    "sender": "某某县自然资源局",  # 【】 + 8 = the 10-character signature
    "hazard": "道路结冰",
    "level": "橙色",
    "zone": "某" * 20,
    "township": "某某某某乡",
    "village": "某某某某某村",
    "onset": "12月31日23时",
    "until": "12月31日23时",
    "advice": "某" * 20,
    "code": "A7K2",
    "link": "https://yj.example.gov.cn/a/" + "x" * 32,  # 60 characters
    "authority": "某某省某某市某某县气象台",
}
"""Sample values for the worst-case rendering (`check_template`)."""

_WHEN = ("预计12月31日23时起", "已出现并可能持续")


def check_template(
    text: str,
    kind: str,
    samples: Mapping[str, str] | None = None,
    evidence: Iterable[str] = (),
) -> list[str]:
    """Problems of a template for a channel kind; an empty list when it is fine.

    `samples` replace the worst-case values of `WORST_CASE` (the loader passes
    the hazard's name and its longest advice); `evidence` are the expression
    texts the evidence may hold (iterated by templates that list evidence).
    """
    return [problem.message for problem in template_problems(text, kind, samples, evidence)]


def template_problems(
    text: str,
    kind: str,
    samples: Mapping[str, str] | None = None,
    evidence: Iterable[str] = (),
) -> list[TemplateProblem]:
    """Like `check_template`, with the offset in `text` each problem is about."""
    if kind not in TEMPLATE_KINDS:
        return [
            TemplateProblem(
                f"unknown channel kind {kind!r}; expected one of {', '.join(TEMPLATE_KINDS)}"
            )
        ]
    try:
        tree = _env.parse(text)
    except TemplateSyntaxError as exc:
        return [TemplateProblem(f"template syntax: {exc.message}", _line_offset(text, exc.lineno))]
    problems = [
        TemplateProblem(
            f"unknown variable {name!r} in the template; expected one of "
            f"{', '.join(TEMPLATE_VARIABLES)}",
            _name_offset(text, name),
        )
        for name in sorted(meta.find_undeclared_variables(tree) - set(TEMPLATE_VARIABLES))
    ]
    if problems:
        return problems
    try:
        longest = max(
            (render_template(text, values) for values in _worst_cases(samples, evidence)),
            key=_units,
        )
    except Exception as exc:  # whatever the sandbox raises: report it, never crash the loader
        return [TemplateProblem(f"the template fails on sample values: {exc}")]
    if kind == "sms" and _units(longest) > SMS_MAX_UNITS:
        return [
            TemplateProblem(
                f"the SMS can reach {_units(longest)} characters (with a 20-character zone "
                f"name, a 4-character code, a 60-character link and the 10-character "
                f"signature); at most {SMS_MAX_UNITS} fit in 3 SMS segments: shorten it"
            )
        ]
    if kind == "im" and len(longest.encode("utf-8")) > IM_MAX_BYTES:
        return [
            TemplateProblem(
                f"the message can reach {len(longest.encode('utf-8'))} bytes; "
                f"IM robots take at most {IM_MAX_BYTES}: shorten it"
            )
        ]
    return []


def render_template(text: str, values: Mapping[str, Any]) -> str:
    """Render a template (sandboxed; an undefined name raises jinja2.UndefinedError)."""
    return _compile(text).render(values)


def message_values(
    *,
    sender: str,
    hazard: str,
    level: Level | None,
    zone: str,
    township: str = "",
    village: str = "",
    onset: datetime | None,
    until: datetime | None,
    now: datetime,
    advice: str = "",
    code: str = "",
    link: str = "",
    evidence: Mapping[str, float] | None = None,
    kind: str = "new",
    timezone: str = "Asia/Shanghai",
    authority: str = "",
) -> dict[str, Any]:
    """The template variables of one warning message, times formatted in `timezone`."""
    if onset is None or onset <= now:
        when = "已出现并可能持续"
    else:
        when = f"预计{local_time(onset, timezone)}起"
    return {
        "sender": sender,
        "hazard": hazard,
        "level": level.zh if level is not None else "",
        "zone": zone,
        "township": township,
        "village": village,
        "onset": local_time(onset, timezone) if onset is not None else "",
        "until": local_time(until, timezone) if until is not None else "",
        "when": when,
        "advice": advice,
        "code": code,
        "link": link,
        "evidence": dict(evidence or {}),
        "kind": kind,
        "authority": authority,
    }


def local_time(moment: datetime, timezone: str = "Asia/Shanghai") -> str:
    """'1月5日08时' in the given timezone (the way Chinese warnings state times)."""
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{local.month}月{local.day}日{local.hour:02d}时"


@lru_cache(maxsize=512)
def _compile(text: str) -> Template:
    return _env.from_string(text)


def _worst_cases(
    samples: Mapping[str, str] | None, evidence: Iterable[str]
) -> Iterable[dict[str, Any]]:
    base: dict[str, Any] = {**WORST_CASE, **(samples or {})}
    sample_evidence = _AnyEvidence(dict.fromkeys(evidence, -12.34))
    for message_kind in MESSAGE_KINDS:
        for when in _WHEN:
            yield {**base, "when": when, "kind": message_kind, "evidence": sample_evidence}


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _line_offset(text: str, lineno: int | None) -> int:
    if not lineno or lineno <= 1:
        return 0
    lines = text.splitlines(keepends=True)
    return sum(len(line) for line in lines[: lineno - 1])


def _name_offset(text: str, name: str) -> int:
    match = re.search(rf"(?<![\w.'\"]){re.escape(name)}\b", text)
    return match.start() if match else 0
