"""A claim is checked once more right before its send: a worker that lost it does not send.

The case: an instance is frozen (SIGSTOP, a VM pause) or its clock lags while
its claim's lease runs out, and another instance claims the row again and sends
it. When the first one resumes, it must drop the row, not send it a second time,
and leave the row to its new owner (its attempt is audited as stale).
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from channels.base import SendResult
from dispatcher.outbox.claim import ClaimCheck
from tests.support import Clock, ScriptedChannel
from tests.test_outbox import NOW, add_notifications, audit_trail, make_worker, row


async def test_a_claim_whose_lease_ran_out_while_frozen_is_dropped_not_sent(
    sessions: sessionmaker[Session],
) -> None:
    [nid] = add_notifications(sessions)
    clock = Clock(NOW)
    frozen_channel, other_channel = ScriptedChannel(), ScriptedChannel(SendResult.ok("SM-other"))
    frozen = make_worker(sessions, clock, frozen_channel, lease_seconds=60)
    other = make_worker(sessions, clock, other_channel, lease_seconds=60)
    # given a worker that claimed the row and was then frozen past its lease
    [claim] = frozen.claim(1)
    clock.advance(90)
    # while another instance claimed it again and sent it
    await other.deliver(*other.claim(1))

    # when the frozen worker resumes and gets to its send
    await frozen.deliver(claim)

    # then it sends nothing: one message reached the provider, the row is the other's
    assert frozen_channel.sent == []
    assert len(other_channel.sent) == 1
    sent = row(sessions, nid)
    assert (sent.status, sent.attempts, sent.provider_id) == ("sent", 2, "SM-other")
    trail = audit_trail(sessions, nid)
    events = [(e.action, e.data["attempt"], e.data.get("outcome")) for e in trail]
    assert events == [("notification.sent", 2, None), ("notification.stale", 1, "retryable")]


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_claim_taken_over_by_an_instance_whose_clock_runs_ahead_is_not_sent(
    sessions: sessionmaker[Session],
) -> None:
    # two instances whose clocks disagree: the lagging one still thinks its lease
    # runs, the other sees it expired — only the database knows who owns the row
    [nid] = add_notifications(sessions)
    lagging_clock, ahead_clock = Clock(NOW), Clock(NOW)
    lagging_channel, ahead_channel = ScriptedChannel(), ScriptedChannel(SendResult.ok("SM-ahead"))
    lagging = make_worker(sessions, lagging_clock, lagging_channel, lease_seconds=60)
    ahead = make_worker(sessions, ahead_clock, ahead_channel, lease_seconds=60)
    [claim] = lagging.claim(1)
    ahead_clock.advance(61)  # by its clock, the lease is over
    [reclaimed] = ahead.claim(1)
    lagging_clock.advance(10)  # by the claimer's own clock, 50 s of the lease are left

    await lagging.deliver(claim)
    await ahead.deliver(reclaimed)

    assert lagging_channel.sent == []
    assert len(ahead_channel.sent) == 1
    sent = row(sessions, nid)
    assert (sent.status, sent.attempts, sent.provider_id) == ("sent", 2, "SM-ahead")
    stale = [e for e in audit_trail(sessions, nid) if e.action == "notification.stale"]
    assert [(e.data["attempt"], e.data["error_code"]) for e in stale] == [(1, "claim_lost")]


async def test_claims_of_senders_ready_together_are_checked_in_one_query(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    add_notifications(sessions, 5)
    clock = Clock(NOW)
    mine = make_worker(sessions, clock, ScriptedChannel(), lease_seconds=60)
    other = make_worker(sessions, clock, ScriptedChannel(), lease_seconds=60)
    claims = mine.claim(5)
    clock.advance(61)
    [taken] = other.claim(1)  # one of them was claimed again meanwhile
    clock.advance(-61)  # (by a clock running ahead of this worker's)
    check = ClaimCheck(mine._claimer)
    queries: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: queries.append(args[2]))

    answers = await asyncio.gather(*(check.still_ours(c) for c in claims))

    assert dict(zip([c.id for c in claims], answers, strict=True)) == {
        c.id: c.id != taken.id for c in claims
    }
    assert len([q for q in queries if "FROM notifications" in q]) == 1
