"""QWeather's official weather alerts as a source of official warnings (issue 15).

Each poll asks QWeather for the alerts in force at every forecast point
(`QWeatherAlerts`) and brings `received_warnings` in line with the answer, in
one transaction and only when every point answered — never half-applied:

- an alert with a signal level becomes one row (source "qweather", state
  in_force), its `<info>` naming the zones at the points that returned it
  (`zone_ids`: QWeather answers per location, not with CAP areas);
- an alert whose content or zones changed supersedes its earlier row;
- a row no longer returned ends: superseded when an alert in the answer says
  it supersedes it, cancelled otherwise (as a CAP Update or Cancel would);
- cancels and alerts without a level (white, green …) are not recorded.

A failed poll changes nothing; its error is logged and audited once per
episode (`official.source_failed`), and its recovery once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dispatcher import audit
from dispatcher.feeds.base import FeedError, ForecastPoint
from dispatcher.feeds.qweather_alerts import OfficialAlert, QWeatherAlerts
from dispatcher.official.record import CANCELLED, IN_FORCE, SUPERSEDED, Receipt
from dispatcher.storage.models import ReceivedWarning
from rules.types import OfficialWarning

log = logging.getLogger("yujing.official")

SOURCE = "qweather"


def official_warning(alert: OfficialAlert, zone_ids: frozenset[str]) -> OfficialWarning | None:
    """The rules' view of one QWeather alert on `zone_ids`; None for a cancel or no level."""
    if alert.message_type == "cancel" or alert.level is None:
        return None
    return OfficialWarning(
        id=alert.id,
        event=alert.event_name,
        level=alert.level,
        zone_ids=zone_ids,
        onset=alert.onset or alert.effective or alert.issued,
        expires=alert.expires,
        authority=alert.sender or "",
    )


def _info(warning: OfficialWarning, alert: OfficialAlert) -> dict[str, Any]:
    # the shape of a CAP <info> block (record._info_data), zones in place of areas
    return {
        "event": warning.event,
        "level": warning.level.key,
        "severity": alert.severity,
        "urgency": alert.urgency,
        "certainty": alert.certainty,
        "onset": warning.onset.isoformat(),
        "expires": warning.expires.isoformat() if warning.expires else None,
        "sender_name": warning.authority,
        "headline": alert.headline,
        "language": "zh-CN",
        "areas": [],
        "zone_ids": sorted(warning.zone_ids),
    }


@dataclass
class QWeatherWarnings:
    """Polls QWeather's alerts at the forecast points and records them."""

    alerts: QWeatherAlerts
    sessions: sessionmaker[Session]
    clock: Callable[[], datetime]
    points: Sequence[ForecastPoint]
    point_of: Mapping[str, str]  # zone id → point id
    max_concurrency: int = 4  # requests in flight at once (YUJING_QWEATHER_MAX_CONCURRENCY)
    errors: list[str] = field(default_factory=list)  # of the last poll
    _failing: bool = False

    async def poll(self) -> list[Receipt]:
        """One poll; the receipts of the rows it put in force or ended (none on an error)."""
        slots = asyncio.Semaphore(self.max_concurrency)

        async def current(point: ForecastPoint) -> list[OfficialAlert]:
            async with slots:
                return await self.alerts.current(point)

        answers = await asyncio.gather(
            *(current(point) for point in self.points), return_exceptions=True
        )
        failures = [str(a) for a in answers if isinstance(a, FeedError)]
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, FeedError):
                raise answer
        now = self.clock()
        if failures:
            self._failed(failures, now)
            return []
        self.errors = []
        if self._failing:
            self._failing = False
            log.info("QWeather warnings answered again")
        zones_at: dict[str, set[str]] = {}
        for zone_id, point_id in self.point_of.items():
            zones_at.setdefault(point_id, set()).add(zone_id)
        found: dict[str, tuple[OfficialAlert, set[str]]] = {}
        for point, point_alerts in zip(self.points, answers, strict=True):
            assert not isinstance(point_alerts, BaseException)
            for alert in point_alerts:
                _, zones = found.setdefault(alert.id, (alert, set()))
                zones |= zones_at.get(point.id, set())
        with self.sessions.begin() as session:
            return self._apply(session, found, now)

    def _apply(
        self,
        session: Session,
        found: Mapping[str, tuple[OfficialAlert, set[str]]],
        now: datetime,
    ) -> list[Receipt]:
        current = {
            row.identifier: row
            for row in session.scalars(
                select(ReceivedWarning).where(
                    ReceivedWarning.source == SOURCE, ReceivedWarning.state == IN_FORCE
                )
            )
        }
        receipts: list[Receipt] = []
        kept: set[str] = set()
        for alert_id, (alert, zones) in sorted(found.items()):
            warning = official_warning(alert, frozenset(zones))
            if warning is None or not zones:
                continue
            info = _info(warning, alert)
            earlier = current.get(alert_id)
            if earlier is not None and earlier.infos == [info]:
                kept.add(alert_id)
                continue
            row = self._insert(session, alert, info, now)
            ended: tuple[int, ...] = ()
            if earlier is not None:  # changed level, times or zones: the new row replaces it
                self._end(session, earlier, SUPERSEDED, row.id, now)
                ended = (earlier.id,)
            kept.add(alert_id)
            receipts.append(self._received(session, row, ended, now))
        superseders = {old: alert.id for alert, _ in found.values() for old in alert.supersedes}
        by_identifier = {
            row.identifier: row
            for row in session.scalars(
                select(ReceivedWarning).where(
                    ReceivedWarning.source == SOURCE, ReceivedWarning.state == IN_FORCE
                )
            )
        }
        for identifier, row in current.items():
            if identifier in kept or row.state != IN_FORCE:
                continue
            by = by_identifier.get(superseders.get(identifier or ""))
            state = SUPERSEDED if by is not None else CANCELLED
            self._end(session, row, state, by.id if by is not None else None, now)
            # `ended` names the row itself: the warnings in force changed
            receipts.append(Receipt(row.id, state, row.reason, row.identifier, (row.id,)))
        return receipts

    def _insert(
        self, session: Session, alert: OfficialAlert, info: dict[str, Any], now: datetime
    ) -> ReceivedWarning:
        body = json.dumps({"alert": alert.id, "info": info}, ensure_ascii=False, sort_keys=True)
        # the same content may come back after it ended: the digest is of what and when
        digest = hashlib.sha256(f"{body}\n{now.isoformat()}".encode()).hexdigest()
        row = ReceivedWarning(
            digest=digest,
            source=SOURCE,
            received_at=now,
            state=IN_FORCE,
            identifier=alert.id[:255],
            sender=(alert.sender or SOURCE)[:255],
            sent=alert.issued,
            msg_type=alert.message_type,
            status="Actual",
            references=list(alert.supersedes),
            infos=[info],
            body=body,
        )
        session.add(row)
        session.flush()
        return row

    def _end(
        self,
        session: Session,
        row: ReceivedWarning,
        state: str,
        by: int | None,
        now: datetime,
    ) -> None:
        row.state, row.ended_at, row.ended_by_id = state, now, by
        if state == CANCELLED:
            row.reason = "no longer returned by QWeather"
        audit.record(
            session,
            at=now,
            actor="system",
            action="official.ended",
            subject=f"received_warning:{row.id}",
            data={"source": SOURCE, "identifier": row.identifier, "state": state, "by": by},
        )
        log.info("official warning %s from %s: %s", row.identifier, SOURCE, state)

    def _received(
        self, session: Session, row: ReceivedWarning, ended: tuple[int, ...], now: datetime
    ) -> Receipt:
        audit.record(
            session,
            at=now,
            actor="system",
            action="official.received",
            subject=f"received_warning:{row.id}",
            data={
                "source": SOURCE,
                "identifier": row.identifier,
                "sender": row.sender,
                "msg_type": row.msg_type,
                "state": row.state,
                "reason": None,
                "ended": list(ended),
            },
        )
        log.info("official warning %s from %s: %s", row.identifier, SOURCE, row.state)
        return Receipt(row.id, row.state, None, row.identifier, ended)

    def _failed(self, failures: list[str], now: datetime) -> None:
        self.errors = [f"{SOURCE}: {failure}" for failure in failures]
        if self._failing:
            return  # said once per episode
        self._failing = True
        log.warning("QWeather warnings failed, nothing changed: %s", "; ".join(failures))
        with self.sessions.begin() as session:
            audit.record(
                session,
                at=now,
                actor="system",
                action="official.source_failed",
                subject=f"source:{SOURCE}",
                data={"source": SOURCE, "errors": failures},
            )
