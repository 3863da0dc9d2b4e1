"""Given-up messages: nothing is given up silently, and nothing for good while it matters.

A row that failed for good — retries exhausted, its time-to-live spent, a
permanent rejection, the provider reporting it undelivered — goes another way
(`dispatcher.failover`). When failover finds no way left, `give_up` marks the
row (`Notification.gave_up_at`): its recipient was not reached. The mark stays
until `settle` finds what became of it.

`settle` looks at *reaches*: one recipient told of one transition of one alert,
over whichever channels (for a person: every row of the same alert, transition
and person — the SMS and the call that replaced it; for an audience, a village
or a group, the row alone). A reach with a marked row is, at each look:

- **reached** — one of its rows was sent (accepted by the provider) or
  delivered after all: the marks are cleared (`notification.given_up_settled`,
  outcome reached);
- **no longer needed** — its alert is not firing any more (acknowledged,
  resolved, superseded): the warning is not sent again; its marks are cleared
  and a re-send still waiting is cancelled (`notification.resend_skipped`);
- **being tried** — a row of it is pending or sending: left alone;
- **unreached** — tried again on a channel that has *recovered*: one of its
  failed rows is put back in the outbox (`notification.resent`). A channel has
  recovered for a reach when a message on it was accepted by the provider
  after the reach was given up. A channel nobody sends on cannot show that, so
  it is *probed*: when no message on it went through for `probe_seconds` since
  the last failure of a given-up row on it, one given-up row on it is sent
  again (the one re-sent least often, then the oldest). If the probe goes
  through, the channel has recovered and the rest follow at the next look.

A re-send is the same row, not a new one: it keeps its idempotency key
(``alert:transition:recipient:channel``, `dispatcher.outbox.rows`), so a
receiver that drops repeats by the key (the webhook, the broadcast gateway)
drops a re-send of a message that did arrive, and a failover of it finds its
other ways already tried. It is one more attempt of the row (`attempts` goes on
counting; its time-to-live is spent, so a failure fails it at once and gives it
up again). A reach re-sent `n` times is re-sent again only `probe_seconds` ×
2^(n−1) (at most an hour) after it was last given up, so a number the
provider rejects for good is not re-sent at every look.

Nothing here commits; `dispatcher.alerts.undelivered` calls `settle` in the
transaction that raises, updates or resolves the undelivered system alert.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.states import AlertState, NotificationStatus
from dispatcher.storage.models import Alert, Notification

log = logging.getLogger("yujing.outbox")

__all__ = [
    "RESEND_SKIPPED",
    "RESENT",
    "SETTLED",
    "Reach",
    "Settlement",
    "give_up",
    "given_up_count",
    "settle",
]

RESENT: Final = "notification.resent"
RESEND_SKIPPED: Final = "notification.resend_skipped"
SETTLED: Final = "notification.given_up_settled"

#: A recipient told of a transition by one of these rows was reached.
_REACHED: Final = (NotificationStatus.SENT, NotificationStatus.DELIVERED)
_UNDERWAY: Final = (NotificationStatus.PENDING, NotificationStatus.SENDING)
_FAILED: Final = (NotificationStatus.FAILED, NotificationStatus.UNDELIVERED)
#: The longest wait between two re-sends of one reach.
MAX_RESEND_SPACING: Final = timedelta(hours=1)

ReachKey = tuple[int | None, str, str]
"""(alert id, transition, person id) — or (None, "row", row id) for an audience's row."""


def give_up(session: Session, row: Notification, now: datetime) -> bool:
    """Mark `row`, failed for good with no other way left, as given up (in the caller's
    transaction). Not when its person was told of the same transition another way (a
    row of the same alert, transition and person sent or delivered): returns whether
    it was marked. The caller audits it (`notification.undeliverable`)."""
    if row.person_id is not None and row.alert_id is not None:
        reached = session.scalar(
            select(Notification.id)
            .where(
                Notification.alert_id == row.alert_id,
                Notification.transition == row.transition,
                Notification.person_id == row.person_id,
                Notification.id != row.id,
                Notification.status.in_(_REACHED),
            )
            .limit(1)
        )
        if reached is not None:
            return False
    row.gave_up_at = now
    return True


def given_up_count(session: Session) -> int:
    """How many rows are given up and not yet settled (what /healthz shows)."""
    return session.scalar(select(func.count()).where(Notification.gave_up_at.is_not(None))) or 0


@dataclass
class Reach:
    """One recipient told (or not) of one transition of one alert, and its rows."""

    key: ReachKey
    rows: list[Notification]
    alert: Alert | None

    @property
    def marked(self) -> list[Notification]:
        return [r for r in self.rows if r.gave_up_at is not None]

    @property
    def gave_up_at(self) -> datetime:
        """When it was last given up."""
        return max(_utc(r.gave_up_at) for r in self.marked)

    @property
    def first_gave_up_at(self) -> datetime:
        return min(_utc(r.gave_up_at) for r in self.marked)

    @property
    def resends(self) -> int:
        return max(r.recovery_retries for r in self.rows)

    @property
    def failed(self) -> list[Notification]:
        """Its rows that could be sent again: failed or reported undelivered."""
        return [r for r in self.rows if r.status in _FAILED]

    @property
    def channels(self) -> list[str]:
        """The channels it was tried on, in the order tried."""
        return list(dict.fromkeys(r.channel for r in sorted(self.rows, key=lambda r: r.id)))

    @property
    def recipient(self) -> str:
        first = self.marked[0]
        return first.recipient_name or first.address


@dataclass
class Settlement:
    """What one look at the given-up rows found and did."""

    unreached: list[Reach] = field(default_factory=list)  # still not reached (some being tried)
    resent: int = 0  # rows put back in the outbox (recovered channels and probes)
    reached: int = 0  # reaches found reached after all
    skipped: int = 0  # reaches whose alert is no longer firing: not sent again
    down: list[str] = field(default_factory=list)  # channels tried that have not recovered


def settle(
    session: Session,
    now: datetime,
    *,
    channels: Collection[str],
    probe_seconds: float,
    actor: str = "outbox",
) -> Settlement:
    """Settle what can be settled of the given-up rows; re-send on recovered channels.

    `channels` are the channels this instance can send on (a row on another is
    not re-sent here). Does not commit.
    """
    reaches = _reaches(session)
    out = Settlement()
    if not reaches:
        return out
    unreached: list[Reach] = []
    for reach in reaches:
        if any(r.status in _REACHED for r in reach.rows):
            _clear(session, reach, now, actor, SETTLED, outcome="reached")
            out.reached += 1
        elif reach.alert is None or reach.alert.state != AlertState.FIRING:
            _skip(session, reach, now, actor)
            out.skipped += 1
        else:
            unreached.append(reach)
    out.unreached = unreached
    waiting = [
        reach
        for reach in unreached
        if not any(r.status in _UNDERWAY for r in reach.rows)
        and now - reach.gave_up_at >= _spacing(reach.resends, probe_seconds)
    ]
    tried = {r.channel for reach in unreached for r in reach.failed if r.channel in channels}
    last_ok = _last_accepted(session, tried)
    for reach in waiting:
        row = _recovered_row(reach, channels, last_ok)
        if row is not None:
            _resend(session, reach, row, now, actor, "channel recovered", last_ok[row.channel])
            out.resent += 1
    out.resent += _probe(session, unreached, channels, last_ok, now, probe_seconds, actor)
    out.down = _down(unreached, tried, last_ok)
    return out


def _down(unreached: list[Reach], tried: set[str], last_ok: dict[str, datetime]) -> list[str]:
    """The channels given-up rows failed on that have accepted nothing since."""
    down = []
    for channel in sorted(tried):
        failures = [
            _utc(r.finished_at or r.gave_up_at)
            for reach in unreached
            for r in reach.failed
            if r.channel == channel and (r.finished_at or r.gave_up_at)
        ]
        ok = last_ok.get(channel)
        if failures and (ok is None or ok < max(failures)):
            down.append(channel)
    return down


def _reaches(session: Session) -> list[Reach]:
    marked = list(
        session.scalars(
            select(Notification)
            .where(Notification.gave_up_at.is_not(None))
            .order_by(Notification.id)
        )
    )
    if not marked:
        return []
    people = {(r.alert_id, r.person_id) for r in marked if r.person_id is not None}
    rows: dict[ReachKey, list[Notification]] = defaultdict(list)
    if people:
        alert_ids = {a for a, _ in people if a is not None}
        person_ids = {p for _, p in people if p is not None}
        for row in session.scalars(
            select(Notification)
            .where(
                Notification.alert_id.in_(alert_ids),
                Notification.person_id.in_(person_ids),
            )
            .order_by(Notification.id)
        ):
            rows[_key(row)].append(row)
    for row in marked:
        if row.person_id is None or row.alert_id is None:
            rows[_key(row)].append(row)
    keys = {_key(r) for r in marked}
    alert_ids = {r.alert_id for r in marked if r.alert_id is not None}
    alerts = {a.id: a for a in session.scalars(select(Alert).where(Alert.id.in_(alert_ids)))}
    return [
        Reach(key, rows[key], alerts.get(key[0]) if key[0] is not None else None)
        for key in sorted(keys, key=lambda k: min(r.id for r in rows[k]))
    ]


def _key(row: Notification) -> ReachKey:
    if row.person_id is None or row.alert_id is None:
        return (None, "row", str(row.id))
    return (row.alert_id, row.transition, row.person_id)


def _spacing(resends: int, probe_seconds: float) -> timedelta:
    """How long after it was given up a reach re-sent `resends` times waits before the next."""
    if resends == 0:
        return timedelta(0)
    seconds = probe_seconds * 2.0 ** min(resends - 1, 20)
    return min(timedelta(seconds=seconds), MAX_RESEND_SPACING)


def _last_accepted(session: Session, channels: Iterable[str]) -> dict[str, datetime]:
    """When a message on each channel was last accepted by its provider."""
    wanted = sorted(set(channels))
    if not wanted:
        return {}
    return {
        channel: _utc(at)
        for channel, at in session.execute(
            select(Notification.channel, func.max(Notification.sent_at))
            .where(Notification.channel.in_(wanted), Notification.sent_at.is_not(None))
            .group_by(Notification.channel)
        )
        if at is not None
    }


def _recovered_row(
    reach: Reach, channels: Collection[str], last_ok: dict[str, datetime]
) -> Notification | None:
    """A failed row of `reach` on a channel that has recovered since it was given up
    (its own channel first: the way the policy chose)."""
    since = reach.gave_up_at
    rows = sorted(reach.failed, key=lambda r: (r.gave_up_at is None, r.id))
    for row in rows:
        ok = last_ok.get(row.channel)
        if row.channel in channels and ok is not None and ok > since:
            return row
    return None


def _probe(
    session: Session,
    unreached: list[Reach],
    channels: Collection[str],
    last_ok: dict[str, datetime],
    now: datetime,
    probe_seconds: float,
    actor: str,
) -> int:
    """On each channel with given-up rows, none being tried and nothing accepted since
    they failed: one row sent again once `probe_seconds` have passed since the last
    failure there. Returns how many rows were put back."""
    by_channel: dict[str, list[tuple[Reach, Notification]]] = defaultdict(list)
    busy: set[str] = set()
    for reach in unreached:
        underway = {r.channel for r in reach.rows if r.status in _UNDERWAY}
        if underway:
            busy |= underway
            continue
        for row in reach.failed:
            if row.channel in channels:
                by_channel[row.channel].append((reach, row))
    probed = 0
    for channel, candidates in sorted(by_channel.items()):
        if channel in busy:
            continue  # a re-send or a probe is under way on it
        last_failure = max(_utc(row.finished_at or row.gave_up_at or now) for _, row in candidates)
        ok = last_ok.get(channel)
        if ok is not None and ok > last_failure:
            continue  # it has recovered: re-sent as such (or spaced out)
        if now - last_failure < timedelta(seconds=probe_seconds):
            continue
        # a reach probed on another channel just now is not probed twice
        idle = [c for c in candidates if not any(r.status in _UNDERWAY for r in c[0].rows)]
        if not idle:
            continue
        reach, row = min(idle, key=lambda c: (c[1].recovery_retries, c[0].gave_up_at, c[1].id))
        _resend(session, reach, row, now, actor, "probe", None)
        busy.add(channel)
        probed += 1
    return probed


def _resend(
    session: Session,
    reach: Reach,
    row: Notification,
    now: datetime,
    actor: str,
    why: str,
    accepted_at: datetime | None,
) -> None:
    """Put `row` back in the outbox, due now: the same row and idempotency key."""
    row.status = NotificationStatus.PENDING
    row.next_attempt_at = now
    row.lease_until = None
    row.finished_at = None
    row.recovery_retries += 1
    audit.record(
        session,
        at=now,
        actor=actor,
        action=RESENT,
        subject=f"notification:{row.id}",
        data={
            "channel": row.channel,
            "why": why,
            "given_up": [r.id for r in reach.marked],
            "resend": row.recovery_retries,
            "idempotency_key": row.idempotency_key,
            **({"accepted_since": accepted_at.isoformat()} if accepted_at else {}),
        },
    )
    log.warning(
        "notification %s via %s to %s sent again (%s; re-send %d)",
        row.id,
        row.channel,
        row.recipient_name or row.address,
        why,
        row.recovery_retries,
    )


def _clear(
    session: Session, reach: Reach, now: datetime, actor: str, action: str, **data: object
) -> None:
    for row in reach.marked:
        audit.record(
            session,
            at=now,
            actor=actor,
            action=action,
            subject=f"notification:{row.id}",
            data={"channel": row.channel, "gave_up_at": _utc(row.gave_up_at).isoformat(), **data},
        )
        row.gave_up_at = None


def _skip(session: Session, reach: Reach, now: datetime, actor: str) -> None:
    """The warning is no longer needed: not sent again, and a re-send waiting is cancelled."""
    alert = reach.alert
    state = alert.state if alert is not None else None
    recipient = reach.recipient
    cancelled = []
    for row in reach.rows:
        if row.status == NotificationStatus.PENDING and row.recovery_retries > 0:
            row.status = NotificationStatus.CANCELLED
            row.finished_at = now
            cancelled.append(row.id)
    _clear(
        session,
        reach,
        now,
        actor,
        RESEND_SKIPPED,
        alert=alert.code if alert is not None else None,
        alert_state=state,
        cancelled=cancelled,
    )
    log.info(
        "given-up message to %s not sent again: its alert %s is %s",
        recipient,
        alert.code if alert is not None else "(none)",
        state or "gone",
    )


def _utc(value: datetime | str | None) -> datetime:
    """Aggregates bypass the column type on SQLite: naive UTC (or text) comes back."""
    if value is None:
        raise ValueError("a given-up row without its time")
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
