"""The blind-hazards system alert: the forecast lacks what some rules read.

A batch missing one variable is not rejected (`dispatcher.pipeline`): the
rules that do not read it warn as usual, and those that do are undecided at
the zones concerned — which neither raises nor clears a warning. That is a
blind spot people must hear about: a poll that leaves a hazard blind raises
this alert (like the feed-down alert: the `system` policy of escalation.yaml,
its lifecycle, its audit trail), naming the hazards, the variables, the feed
and since when; a later poll that changes which hazards or variables are
blind tells everyone told so far; a poll with the data whole again resolves it.

A variable is blind at a forecast point when it has no value there from the
current hour on (not delivered, masked for a feed problem, or all null); a
hazard is blind where a rule of it that reads a blind variable selects a
zone on such a point.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.alerts.lifecycle import NewAlert, close_alert, open_alert
from dispatcher.alerts.system import open_system_alert
from dispatcher.county import County
from dispatcher.escalation import AlertText, Escalation, on_channel
from dispatcher.messages import cut_to_sms
from dispatcher.outbox.rows import QueuedRow
from dispatcher.states import AlertKind
from dispatcher.storage.models import Alert, AuditEvent
from dispatcher.undecided import rule_variables
from dispatcher.web.words import VARIABLE_WORDS
from rules.loader import RuleSet
from rules.types import ForecastBatch
from rules.zonetable import ZoneTable

__all__ = [
    "BLIND",
    "BlindVariable",
    "Blindness",
    "find_blindness",
    "open_blind_alert",
    "watch_blind",
]

BLIND: Final = "hazards_blind"  # Alert.hazard of the system alert
SHOWN_PROBLEMS: Final = 3  # feed problems quoted per variable


@dataclass(frozen=True)
class BlindVariable:
    """A variable the rules read that some forecast points lack from now on, and why."""

    name: str
    points: int  # points in use without a value from now on
    of: int  # points in use
    why: str  # the feed's problems with it, or what is seen in the data

    def as_json(self) -> dict[str, Any]:
        return {"points": self.points, "of": self.of, "why": self.why}


@dataclass(frozen=True)
class Blindness:
    """What one poll could not see: blind variables, and the hazards blind for them."""

    source: str
    variables: tuple[BlindVariable, ...] = ()
    # hazard → (zones blind, the variables that blind it)
    hazards: Mapping[str, tuple[int, tuple[str, ...]]] = field(default_factory=dict)

    @property
    def blind(self) -> bool:
        return bool(self.hazards)

    def notes(self) -> list[str]:
        """One line per blind variable, for the forecast run's record."""
        return [
            f"{v.name} missing at {v.points} of {v.of} points ({v.why})" for v in self.variables
        ]


def find_blindness(
    ruleset: RuleSet, batch: ForecastBatch, table: ZoneTable, now: datetime
) -> Blindness:
    """The variables the rules read that lack values from the hour of `now` on, and the
    hazards (and their zones) left blind for them."""
    rows = table.point_index(batch.point_ids)
    points = len(batch.point_ids)
    used = np.zeros(points + 1, dtype=np.bool_)
    used[rows] = True
    used = used[:points]
    hour = np.datetime64(now.astimezone(UTC).replace(tzinfo=None), "s").astype("datetime64[h]")
    ahead = batch.times.astype("datetime64[h]") >= hour
    blind_at: dict[str, np.ndarray] = {}  # variable → (points + 1) bool
    variables = []
    for name in sorted(ruleset.variables):
        values = batch.variables.get(name)
        lacking = np.zeros(points + 1, dtype=np.bool_)
        if values is None:
            lacking[:points] = used
        else:
            lacking[:points] = used & np.isnan(values[:, ahead]).all(axis=1)
        if not lacking.any():
            continue
        blind_at[name] = lacking
        variables.append(
            BlindVariable(name, int(lacking.sum()), int(used.sum()), _why(name, batch, values))
        )
    hazards: dict[str, tuple[np.ndarray, set[str]]] = {}
    for rule in ruleset.rules:
        reads = sorted(rule_variables(rule) & blind_at.keys())
        if not reads:
            continue
        zones = table.select(rule.zones) & np.logical_or.reduce([blind_at[n][rows] for n in reads])
        if not zones.any():
            continue
        mask, names = hazards.get(rule.hazard, (np.zeros(table.count, dtype=np.bool_), set()))
        hazards[rule.hazard] = (mask | zones, names | set(reads))
    return Blindness(
        batch.source,
        tuple(variables),
        {
            h: (int(mask.sum()), tuple(sorted(names)))
            for h, (mask, names) in sorted(hazards.items())
        },
    )


def _why(name: str, batch: ForecastBatch, values: np.ndarray | None) -> str:
    said = [p for p in batch.problems if re.search(rf"hourly(_units)?\.{name}\b", p)]
    if said:
        more = f" (+{len(said) - SHOWN_PROBLEMS} more)" if len(said) > SHOWN_PROBLEMS else ""
        return "; ".join(said[:SHOWN_PROBLEMS]) + more
    if values is None:
        return f"{name} not delivered"
    return f"{name} has no value from now on"


def _subject(source: str) -> str:
    return f"blind:{source}"


def open_blind_alert(session: Session, source: str) -> Alert | None:
    return open_system_alert(session, BLIND, _subject(source))


def watch_blind(
    session: Session,
    blindness: Blindness,
    *,
    now: datetime,
    county: County,
    channel: str,
    hazard_name: Callable[[str], str],
    escalation: Escalation | None = None,
) -> list[QueuedRow]:
    """Raise, update or resolve the blind-hazards alert after a usable poll. Does not commit."""
    alert = open_blind_alert(session, blindness.source)
    esc = on_channel(escalation, county, channel)
    if not blindness.blind:
        if alert is None:
            return []
        hazards = list((alert.evidence or {}).get("hazards", {}))
        body = _restored(county, blindness.source, hazards, hazard_name, now)
        return close_alert(
            session,
            alert,
            escalation=esc,
            body=body,
            data={"hazard": BLIND, "source": blindness.source},
            now=now,
        )
    before = (alert.evidence or {}) if alert is not None else {}
    since = {name: v.get("since") for name, v in before.get("variables", {}).items()}
    evidence = {
        "source": blindness.source,
        "hazards": {
            h: {"zones": z, "variables": list(n)} for h, (z, n) in blindness.hazards.items()
        },
        "variables": {
            v.name: {**v.as_json(), "since": since.get(v.name) or now.isoformat()}
            for v in blindness.variables
        },
    }
    data = {"hazard": BLIND, "source": blindness.source, "blind": sorted(blindness.hazards)}

    def text(code: str, changed: bool = False) -> AlertText:
        body = _blind_text(county, evidence, hazard_name, code, changed)
        return AlertText(body, "部分灾种无法判定")

    if alert is None:
        _, notes = open_alert(
            session,
            NewAlert(
                kind=AlertKind.SYSTEM,
                hazard=BLIND,
                rule_id=_subject(blindness.source),
                title="预报数据不全：部分灾种无法判定",
                level="yellow",
                onset=now,
                evidence=evidence,
            ),
            escalation=esc,
            text=lambda opened: text(opened.code),
            data=data,
            now=now,
        )
        return notes
    changed = set(before.get("hazards", {})) != set(blindness.hazards) or set(
        before.get("variables", {})
    ) != {v.name for v in blindness.variables}
    alert.evidence = evidence
    alert.updated_at = now
    if not changed:
        return []  # the counts may move; the people told already know what is blind
    audit.record(
        session,
        at=now,
        actor="system",
        action="alert.changed",
        subject=f"alert:{alert.id}",
        data={"code": alert.code, **data},
    )
    count = session.scalar(
        select(func.count(AuditEvent.id)).where(
            AuditEvent.action == "alert.changed", AuditEvent.subject == f"alert:{alert.id}"
        )
    )
    return esc.tell(
        session, alert, transition=f"changed.{count}", text=text(alert.code, True), now=now
    )


def _words(name: str) -> str:
    return VARIABLE_WORDS.get(name, (name, ""))[0]


def _clock(moment: datetime, timezone: str) -> str:
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{local.month}月{local.day}日{local.hour:02d}:{local.minute:02d}"


def _blind_text(
    county: County,
    evidence: Mapping[str, Any],
    hazard_name: Callable[[str], str],
    code: str,
    changed: bool,
) -> str:
    variables = evidence["variables"]
    first = min(datetime.fromisoformat(v["since"]) for v in variables.values())
    missing = "、".join(_words(name) for name in variables)
    hazards = evidence["hazards"]
    blind = "、".join(f"{hazard_name(h)}（{v['zones']}处隐患点）" for h, v in hazards.items())
    head = "系统告警更新" if changed else "系统告警"
    text = (
        f"【{county.sender}】{head}：天气预报数据（{evidence['source']}）自"
        f"{_clock(first, county.timezone)}起缺少{missing}，{blind}无法判定，"
        "其余灾种照常预警。请值班人员人工关注相关天气，并通知系统管理员检查数据源。"
        f"回复1确认（编码{code}）"
    )
    return cut_to_sms(text, code)


def _restored(
    county: County,
    source: str,
    hazards: list[str],
    hazard_name: Callable[[str], str],
    now: datetime,
) -> str:
    blind = "、".join(hazard_name(h) for h in hazards) or "各灾种"
    return (
        f"【{county.sender}】系统告警解除：天气预报数据（{source}）已于"
        f"{_clock(now, county.timezone)}恢复完整，{blind}恢复自动判定。"
    )
