"""Undecided verdicts: the (zone, hazard) pairs the rules could not decide, and why.

The rule engine says a hazard is undecided at a zone when no level fires and
data it needed was missing (`Assessment.level` None), or when a lower level
fires but a higher one could not be decided (`undecided_above`): the lifecycle
then neither clears nor steps down a warning. People must hear of it, or a
quiet board reads as "calm": the drill prints these pairs, each poll records
them (`dispatcher.pipeline`, audit action `forecast.partial`) and `/healthz`
and the console's board show the last poll's (`last_undecided`).

`explain` counts them per hazard and reason. A reason names the variables
missing in the hours the hazard's rules read at the zone's point ("temperature_2m
missing from 2026-01-07 12:00", the earliest such hour among the zones
counted), a variable the feed did not deliver at all, or hours the rules read
that the forecast does not hold.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher.storage.models import AuditEvent, ForecastRun
from dispatcher.web.words import VARIABLE_WORDS
from rules.expr import Condition, condition_variables
from rules.ruleset import Rule, RuleSet
from rules.series import column_spans
from rules.types import Assessment, ForecastBatch, ZoneSpec
from rules.zonetable import ZoneTable

#: The audit action of a poll that left something undecided or lacked data.
PARTIAL: Final = "forecast.partial"


@dataclass(frozen=True)
class Undecided:
    """Zones whose hazard the rules could not decide, and why."""

    hazard: str
    zones: int
    reason: str
    variables: tuple[str, ...] = ()  # the variables missing, when that is the reason
    name: str = ""  # the hazard's display name (寒潮 …)
    since: datetime | None = None  # the first hour missing, when values are missing

    def __str__(self) -> str:
        zones = "1 zone" if self.zones == 1 else f"{self.zones} zones"
        return f"undecided: {zones} × {self.hazard}: {self.reason}"

    def as_json(self) -> dict[str, Any]:
        return {
            "hazard": self.hazard,
            "zones": self.zones,
            "reason": self.reason,
            "variables": list(self.variables),
            "name": self.name,
            "since": self.since.isoformat() if self.since else None,
        }

    @classmethod
    def of_json(cls, data: Mapping[str, Any]) -> Undecided:
        since = data.get("since")
        return cls(
            str(data["hazard"]),
            int(data["zones"]),
            str(data["reason"]),
            tuple(str(v) for v in data.get("variables", ())),
            str(data.get("name") or data["hazard"]),
            datetime.fromisoformat(since) if isinstance(since, str) else None,
        )


def rule_variables(rule: Rule) -> frozenset[str]:
    """The forecast variables a rule reads, at any of its levels."""
    return frozenset().union(
        *(condition_variables(level.when) for level in rule.levels if level.when is not None)
    )


def reach(ruleset: RuleSet, hazard: str | None = None) -> tuple[int, int]:
    """Hours before and after an instant the rules (of `hazard`, or all) read to decide it:
    their windows, and the past/future their conditions read at the windows' ends."""
    before, after = 0, 1
    for rule in ruleset.rules:
        if hazard is not None and rule.hazard != hazard:
            continue
        for level in rule.levels:
            if level.when is None:
                continue  # an official warning alone reads no forecast
            back, ahead = _condition_reach(level.when)
            before = max(before, level.since_hours + back)
            within = 1 if level.within_hours is None else level.within_hours
            after = max(after, within + ahead)
    return before, after


def _condition_reach(condition: Condition) -> tuple[int, int]:
    far = 1 << 20  # an hour far from both ends of an imaginary batch
    spans = column_spans([(condition, (far, far + 1))], 2 * far)
    first = min(begin for begin, _ in spans.values())
    last = max(end for _, end in spans.values())
    return far - first, last - (far + 1)


def explain(
    ruleset: RuleSet,
    batch: ForecastBatch,
    assessments: Iterable[Assessment],
    zones: Sequence[ZoneSpec] | ZoneTable,
    at: datetime,
    timezone: str,
) -> list[Undecided]:
    """The undecided (zone, hazard) pairs among `assessments`, counted per hazard and reason.

    Each reason is worked out once per (hazard, forecast point), whatever the
    number of zones, so a national evaluation costs one pass over the arrays.
    """
    table = zones if isinstance(zones, ZoneTable) else ZoneTable(zones)
    row_of: dict[str, int] = {}  # zone id → its point's row, built at the first undecided
    tz = ZoneInfo(timezone)
    whys: dict[str, _Why] = {}
    counts: Counter[tuple[str, tuple[str, ...], str]] = Counter()
    earliest: dict[tuple[str, tuple[str, ...], str], int] = {}
    names: dict[str, str] = {}
    for a in assessments:
        if a.level is not None and a.undecided_above is None:
            continue
        names.setdefault(a.hazard, a.title or a.hazard)
        why = whys.get(a.hazard)
        if why is None:
            why = whys[a.hazard] = _Why.of(ruleset, batch, a.hazard, at)
        if not row_of:
            rows = table.point_index(batch.point_ids).tolist()
            row_of = dict(zip(table.id_list, rows, strict=True))
        row = row_of[a.zone_id]
        key, first = why.at(row)
        counts[(a.hazard, *key)] += 1
        if first >= 0:
            slot = (a.hazard, *key)
            earliest[slot] = min(earliest.get(slot, first), first)
    out = []
    for (hazard, variables, kind), count in sorted(counts.items()):
        why = whys[hazard]
        first = earliest.get((hazard, variables, kind), -1)
        out.append(
            Undecided(
                hazard,
                count,
                why.words(variables, kind, first, tz),
                variables,
                names.get(hazard, hazard),
                _utc(batch.times[first]) if first >= 0 else None,
            )
        )
    return out


@dataclass(frozen=True)
class _Why:
    """Why a hazard is undecided, per forecast point (one more row: a point not in the batch)."""

    batch: ForecastBatch
    start: datetime  # the first hour the hazard's rules read
    stop: datetime  # the last
    names: tuple[str, ...]  # the variables they read
    absent: frozenset[str]  # of those, the ones the batch does not carry at all
    gaps: np.ndarray  # (variables × points + 1) bool: missing in the hours read
    first: np.ndarray  # (points + 1) the first batch hour missing at each point (-1: none)

    @classmethod
    def of(cls, ruleset: RuleSet, batch: ForecastBatch, hazard: str, at: datetime) -> _Why:
        before, after = reach(ruleset, hazard)
        hour = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        start, stop = hour - timedelta(hours=before), hour + timedelta(hours=after - 1)
        names = tuple(
            sorted(
                frozenset().union(*(rule_variables(r) for r in ruleset.rules if r.hazard == hazard))
            )
        )
        times = batch.times.astype("datetime64[s]")
        inside = (times >= np.datetime64(start.replace(tzinfo=None), "s")) & (
            times <= np.datetime64(stop.replace(tzinfo=None), "s")
        )
        points = len(batch.point_ids)
        gaps = np.zeros((len(names), points + 1), dtype=np.bool_)
        first = np.full(points + 1, -1, dtype=np.int64)
        hours = np.flatnonzero(inside)
        absent = frozenset(name for name in names if name not in batch.variables)
        for k, name in enumerate(names):
            if name in absent or not len(hours):
                continue
            missing = np.isnan(batch.variables[name][:, hours])
            gaps[k, :points] = missing.any(axis=1)
            at_first = np.where(missing.any(axis=1), hours[missing.argmax(axis=1)], -1)
            sooner = (at_first >= 0) & ((first[:points] < 0) | (at_first < first[:points]))
            first[:points][sooner] = at_first[sooner]
        return cls(batch, start, stop, names, absent, gaps, first)

    def at(self, row: int) -> tuple[tuple[tuple[str, ...], str], int]:
        """(the missing variables and the kind of reason, the first missing hour) at a point."""
        points = len(self.batch.point_ids)
        if row >= points:
            return ((), "point"), -1
        missing = tuple(
            name for k, name in enumerate(self.names) if name in self.absent or self.gaps[k, row]
        )
        if missing:
            return (missing, "missing"), int(self.first[row])
        if len(self.batch.times) and self.start < _utc(self.batch.times[0]):
            return ((), "before"), -1
        return ((), "after"), -1

    def words(self, variables: tuple[str, ...], kind: str, first: int, tz: ZoneInfo) -> str:
        times = self.batch.times
        if kind == "point":
            return "the zone's forecast point is not in the forecast"
        if kind == "missing":
            parts = [f"{name} not delivered" for name in variables if name in self.absent]
            present = [name for name in variables if name not in self.absent]
            if present:
                since = f" from {_local(_utc(times[first]), tz)}" if first >= 0 else ""
                parts.append(f"{', '.join(present)} missing{since}")
            return ", ".join(parts)
        if not len(times):
            return "the forecast has no hours"
        if kind == "before":
            return (
                f"the rules read from {_local(self.start, tz)}, "
                f"the forecast starts {_local(_utc(times[0]), tz)}"
            )
        return (
            f"the rules read to {_local(self.stop, tz)}, "
            f"the forecast ends {_local(_utc(times[-1]), tz)}"
        )


def undecided_words(item: Undecided, timezone: str) -> str:
    """One line for the console: "12 处隐患点的寒潮无法判定：缺少气温（自1月7日12:00起）"."""
    head = f"{item.zones} 处隐患点的{item.name or item.hazard}无法判定："
    if item.variables:
        missing = "、".join(VARIABLE_WORDS.get(v, (v, ""))[0] for v in item.variables)
        since = ""
        if item.since is not None:
            local = item.since.astimezone(ZoneInfo(timezone))
            since = f"（自{local.month}月{local.day}日{local.hour:02d}:{local.minute:02d}起）"
        return f"{head}缺少{missing}{since}"
    return f"{head}预报时段不足（{item.reason}）"


def last_undecided(session: Session, source: str) -> list[Undecided] | None:
    """The undecided pairs of the feed's last usable poll; None when it has had none."""
    last_ok = session.scalar(
        select(ForecastRun.id)
        .where(ForecastRun.source == source, ForecastRun.ok.is_(True))
        .order_by(ForecastRun.id.desc())
        .limit(1)
    )
    if last_ok is None:
        return None
    # the latest such event (the action is indexed): the last poll's, or none for it
    event = session.scalar(
        select(AuditEvent)
        .where(AuditEvent.action == PARTIAL)
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    if event is None or event.subject != f"forecast_run:{last_ok}":
        return []
    return [Undecided.of_json(item) for item in (event.data or {}).get("undecided", [])]


def _utc(value: np.datetime64) -> datetime:
    seconds = int(value.astype("datetime64[s]").astype(np.int64))
    return datetime.fromtimestamp(seconds, tz=UTC)


def _local(when: datetime, tz: ZoneInfo) -> str:
    return f"{when.astimezone(tz):%Y-%m-%d %H:%M}"
