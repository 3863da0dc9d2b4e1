"""Digests: a duty officer gets one message listing twelve zones, not twelve messages.

Messages to bureau staff (people with a duty role) about zones they are not a
zone person of are held for a short window after they are enqueued; when the
first of them is due, every such pending message to the same person on the same
channel goes out as one digest, and all their outbox rows share its outcome.
Zone people always get the message about their own zone on its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, exists, select
from sqlalchemy.orm import Session

from channels.sms_text import fits_sms
from dispatcher.states import AlertKind
from dispatcher.storage.models import Alert, Notification, Person, Zone, ZoneRole
from rules.types import Level

DIGEST_TRANSITIONS = ("new", "upgraded", "downgraded", "resolved")
DIGEST_MAX_SEGMENTS = 7  # ~470 characters: under domestic providers' ~500-character cap
_WORDS = {"new": "", "upgraded": "升级", "downgraded": "降级", "resolved": "解除"}


@dataclass(frozen=True)
class DigestPolicy:
    """Hold staff messages `window_seconds` after they are enqueued, then merge them;
    `sender` heads the digest's text (the bureau's name)."""

    window_seconds: float
    sender: str

    def digestible(self) -> ColumnElement[bool]:
        """SQL condition: this outbox row may be merged into a digest."""
        return and_(
            Notification.transition.in_(DIGEST_TRANSITIONS),
            Notification.alert_id.is_not(None),
            exists().where(Person.id == Notification.person_id, Person.duty_role.is_not(None)),
            exists().where(Alert.id == Notification.alert_id, Alert.kind == AlertKind.HAZARD),
            ~exists().where(
                ZoneRole.person_id == Notification.person_id,
                ZoneRole.zone_id == Alert.zone_id,
                Alert.id == Notification.alert_id,
            ),
        )

    def compose(self, session: Session, rows: Sequence[Notification]) -> str:
        """One text for several hazard messages: counts per hazard and level, then zones."""
        alerts = {
            a.id: a
            for a in session.scalars(select(Alert).where(Alert.id.in_([r.alert_id for r in rows])))
        }
        zone_ids = {a.zone_id for a in alerts.values() if a.zone_id}
        zones = {z.id: z.name for z in session.scalars(select(Zone).where(Zone.id.in_(zone_ids)))}
        groups: Counter[tuple[str, str, str]] = Counter()
        names: list[str] = []
        for row in sorted(rows, key=lambda r: r.id):
            alert = alerts.get(row.alert_id or -1)
            if alert is None:
                continue
            level = Level.parse(alert.level).zh if alert.kind == AlertKind.HAZARD else alert.level
            groups[(alert.title or alert.hazard, level, _WORDS.get(row.transition, ""))] += 1
            name = zones.get(alert.zone_id or "", alert.zone_id or "")
            if name and name not in names:
                names.append(name)
        summary = "；".join(
            f"{title}{level}预警{word}{count}处" for (title, level, word), count in groups.items()
        )
        head = f"【{self.sender}】预警汇总（{len(rows)}条）：{summary}。"
        tail = "请登录值班台确认，或回复各条短信编码确认。"
        listed: list[str] = []
        for name in names:
            candidate = f"{head}涉及：{'、'.join([*listed, name])}等。{tail}"
            if not fits_sms(candidate, DIGEST_MAX_SEGMENTS):
                break
            listed.append(name)
        if not listed:
            return head + tail
        rest = "" if len(listed) == len(names) else "等"
        return f"{head}涉及：{'、'.join(listed)}{rest}。{tail}"
