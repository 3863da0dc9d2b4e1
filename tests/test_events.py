"""Events: the bureau's share of a policy, the event's words, acknowledging an event,
and every code the bureau is sent answering an SMS reply.

The policy split and the texts are pure; the rest runs the real code (events,
escalation, acknowledgement, the SMS reply's answer) on SQLite and PostgreSQL
with the example county.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from channels.base import Medium
from channels.sms_text import fits_sms
from dispatcher.alerts.acknowledge import acknowledge
from dispatcher.alerts.events import open_events, open_hazard_zones, update_events
from dispatcher.alerts.reconcile import Transition, TransitionKind
from dispatcher.alerts.system import watch_feed
from dispatcher.escalation import DEFAULT_DEADLINES, DEFAULT_POLICIES, Escalation, Policies
from dispatcher.escalation.policy import Policy, Step, bureau_part, zone_part
from dispatcher.escalation.timers import escalate_due
from dispatcher.eventtext import EVENT_TEXT_KINDS, EventFacts, EventZone, render_event
from dispatcher.messages import SMS_MAX_SEGMENTS
from dispatcher.storage.models import Alert, Notification
from dispatcher.web.acks import answer_sms
from rules.templates import IM_MAX_BYTES
from rules.types import Level
from tests.support import OPENED, example_county, example_roster, open_alert, open_event

COUNTY = example_county()
OFFICER, LEADER = "p-duty-li", "p-lead-xue"
TZ = "Asia/Shanghai"


def escalation() -> Escalation:
    return Escalation(
        COUNTY, example_roster(), Policies(), frozenset({"console"}), "console", DEFAULT_DEADLINES
    )


def staff(person_id: str) -> bool:
    return person_id in ("p-duty-li", "p-lead-xue")


# --- the bureau's share and the zone's share of a policy (pure) ----------------------


def test_the_zone_keeps_its_people_and_the_bureau_gets_the_duty_staff_and_groups() -> None:
    policy = Policy(
        "p",
        (
            Step(timedelta(0), ("mass_monitor", "leader_on_duty"), im=("township", "duty-room")),
            Step(timedelta(minutes=30), ("disaster_prevention",), broadcast=("village",)),
            Step(
                timedelta(minutes=60),
                ("duty_officer",),
                people=("p-duty-li",),
                repeat=2,
                every=timedelta(minutes=30),
            ),
        ),
    )
    zone = zone_part(policy, staff)
    assert [(s.after, s.targets, s.people, s.im, s.broadcast) for s in zone.steps] == [
        (timedelta(0), ("mass_monitor",), (), ("township",), ()),
        (timedelta(minutes=30), ("disaster_prevention",), (), (), ("village",)),
    ]
    bureau = bureau_part(policy, staff)
    first, reminder = bureau.steps
    # the bureau hears at once of everything it is named for, whatever the delay …
    assert first.after == timedelta(0)
    assert (first.targets, first.people, first.im) == (
        ("leader_on_duty", "duty_officer"),
        ("p-duty-li",),
        ("duty-room",),
    )
    # … and the later steps stay reminders, without the groups
    assert (reminder.after, reminder.targets, reminder.repeat, reminder.im) == (
        timedelta(minutes=60),
        ("duty_officer",),
        2,
        (),
    )
    assert bureau.name == "p:bureau"


def test_an_immediate_bureau_step_that_repeats_keeps_its_repeats_as_reminders() -> None:
    policy = Policy(
        "p",
        (
            Step(
                timedelta(0),
                ("duty_officer",),
                channels=("twilio_voice", "default"),
                repeat=3,
                every=timedelta(minutes=5),
            ),
        ),
    )
    first, reminder = bureau_part(policy, staff).steps
    assert first.channels == ("twilio_voice", "default")
    assert (reminder.after, reminder.repeat, reminder.every) == (
        timedelta(minutes=5),
        2,
        timedelta(minutes=5),
    )


@pytest.mark.parametrize("level", ["blue", "yellow", "orange", "red"])
def test_the_built_in_policies_split_with_nobody_lost(level: str) -> None:
    policy = DEFAULT_POLICIES[level]
    zone, bureau = zone_part(policy, staff), bureau_part(policy, staff)
    named = {t for s in policy.steps for t in s.targets}
    assert {t for s in zone.steps for t in s.targets} | {
        t for s in bureau.steps for t in s.targets
    } == named
    assert not {t for s in zone.steps for t in s.targets} & {"duty_officer", "leader_on_duty"}
    assert bureau.steps[0].after == timedelta(0)


# --- the event's words (pure) -----------------------------------------------------


def facts(kind: str, zones: int = 40, **changes: object) -> EventFacts:
    listed = [
        EventZone(
            f"z{i}",
            f"某某镇某某村第{i}号不稳定斜坡",
            f"第{i % 15}乡镇",
            Level.ORANGE if i < 10 else Level.YELLOW,
        )
        for i in range(zones)
    ]
    values: dict[str, object] = {
        "kind": kind,
        "sender": "柳林县自然资源局",
        "code": "K7M3",
        "hazard": "寒潮",
        "level": Level.ORANGE,
        "zones": listed,
        "now": OPENED,
        "onset": OPENED + timedelta(hours=8),
        "previous_level": Level.YELLOW,
        "added": listed[:5],
        "waiting": 12,
        "minutes": 15,
        **changes,
    }
    return EventFacts(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("zones", [1, 40, 1116])
@pytest.mark.parametrize("kind", EVENT_TEXT_KINDS)
def test_every_event_sms_fits_three_segments_and_carries_the_code(kind: str, zones: int) -> None:
    text = render_event(facts(kind, zones), TZ, Medium.SMS)
    assert text.startswith("【柳林县自然资源局】")
    assert fits_sms(text, SMS_MAX_SEGMENTS)
    assert "K7M3" in text
    if kind != "resolved":
        assert "回复“1 K7M3”确认" in text


@pytest.mark.parametrize("kind", EVENT_TEXT_KINDS)
def test_a_call_says_the_event_without_the_code_and_a_post_stays_within_its_bytes(
    kind: str,
) -> None:
    spoken = render_event(facts(kind, 1116), TZ, Medium.VOICE)
    assert "K7M3" not in spoken and "【" not in spoken and "寒潮" in spoken
    post = render_event(facts(kind, 1116), TZ, Medium.IM)
    assert len(post.encode()) <= IM_MAX_BYTES and "编码：K7M3" in post


def test_the_overdue_notice_says_how_many_zones_are_late() -> None:
    text = render_event(facts("overdue", waiting=63), TZ, Medium.SMS)
    assert "迟报提醒：寒潮橙色预警：63处隐患点超时未确认（超过15分钟）（编码K7M3）" in text


def test_the_new_events_sms_names_the_townships_and_counts_by_level() -> None:
    text = render_event(facts("new", 40), TZ, Medium.SMS)
    assert "40处隐患点（橙色10处、黄色30处）" in text
    assert re.search(r"等15个乡镇", text) and "预计1月7日08时起" in text


# --- acknowledging an event (real database) -------------------------------------------


def ack(
    db: sessionmaker[Session], alert_id: int, person_id: str, at: datetime
) -> tuple[bool, bool, str]:
    with db.begin() as session:
        outcome = acknowledge(
            session,
            alert=session.get_one(Alert, alert_id),
            person_id=person_id,
            actor=person_id,
            method="sms",
            note=None,
            at=at,
        )
        return outcome.accepted, outcome.complete, outcome.reason


def state_of(db: sessionmaker[Session], alert_id: int) -> str:
    with db() as session:
        return session.get_one(Alert, alert_id).state


def test_one_bureau_acknowledgement_completes_an_event_but_no_zone(
    db: sessionmaker[Session],
) -> None:
    event_id, zones = open_event(db, escalation(), level="orange", zones=("LL-LL-001", "LL-MC-005"))
    assert ack(db, event_id, LEADER, OPENED + timedelta(minutes=3)) == (True, True, "已确认")
    assert state_of(db, event_id) == "acknowledged"
    assert {state_of(db, z) for z in zones} == {"firing"}  # each zone's people acknowledge theirs


def test_a_zones_person_cannot_acknowledge_the_event(db: sessionmaker[Session]) -> None:
    event_id, _ = open_event(db, escalation())
    accepted, complete, reason = ack(db, event_id, "p-ll-lmy-1", OPENED)
    assert (accepted, complete) == (False, False) and "局值班人员" in reason
    assert state_of(db, event_id) == "firing"


def test_the_officers_event_acknowledgement_is_his_half_of_each_red_zone(
    db: sessionmaker[Session],
) -> None:
    esc = escalation()
    event_id, (red,) = open_event(db, esc, level="red")
    keeper = "p-ll-lmy-1"  # 防灾责任人 of LL-LL-001
    assert ack(db, red, keeper, OPENED + timedelta(minutes=1))[1] is False  # still needs 值班员
    ack(db, event_id, OFFICER, OPENED + timedelta(minutes=2))
    assert state_of(db, red) == "acknowledged"  # both roles now


def test_the_leaders_event_acknowledgement_is_no_duty_officers_half(
    db: sessionmaker[Session],
) -> None:
    event_id, (red,) = open_event(db, escalation(), level="red")
    ack(db, red, "p-ll-lmy-1", OPENED + timedelta(minutes=1))
    ack(db, event_id, LEADER, OPENED + timedelta(minutes=2))
    assert state_of(db, event_id) == "acknowledged"
    assert state_of(db, red) == "firing"  # the duty officer still has to


def test_a_red_zone_joining_later_gets_the_officers_half_when_he_replies_again(
    db: sessionmaker[Session],
) -> None:
    esc = escalation()
    event_id, _ = open_event(db, esc, level="red")
    ack(db, event_id, OFFICER, OPENED + timedelta(minutes=2))
    later = OPENED + timedelta(minutes=10)
    joined = open_alert(db, esc, level="red", zone_id="LL-MC-005", at=later)
    with db.begin() as session:
        update_events(
            session,
            {"cold_wave": {"LL-LL-001": Level.RED}},
            open_events(session),
            [Transition(TransitionKind.NEW, "LL-MC-005", "cold_wave", Level.RED)],
            now=later,
            county=COUNTY,
            hazard_name=lambda hazard: "寒潮",
            escalation=esc,
            forecast_run_id=None,
        )
    ack(db, joined, "p-mc-djs-1", later)  # its 防灾责任人
    assert state_of(db, joined) == "firing"
    assert ack(db, event_id, OFFICER, later + timedelta(minutes=1))[0]  # "1 CODE" again
    assert state_of(db, joined) == "acknowledged"


def test_an_acknowledged_event_raised_to_a_higher_level_is_acknowledged_anew(
    db: sessionmaker[Session],
) -> None:
    esc = escalation()
    event_id, (zone,) = open_event(db, esc, level="yellow")
    assert ack(db, event_id, OFFICER, OPENED + timedelta(minutes=2))[1]
    later = OPENED + timedelta(minutes=10)
    open_alert(db, esc, level="orange", zone_id="LL-LL-001", at=later, previous=zone)
    with db.begin() as session:
        update_events(
            session,
            {"cold_wave": {"LL-LL-001": Level.YELLOW}},
            open_events(session),
            [Transition(TransitionKind.UPGRADED, "LL-LL-001", "cold_wave", Level.ORANGE, zone)],
            now=later,
            county=COUNTY,
            hazard_name=lambda hazard: "寒潮",
            escalation=esc,
            forecast_run_id=None,
        )
    with db() as session:
        event = session.get_one(Alert, event_id)
        assert (event.state, event.level, event.epoch, event.acknowledged_by) == (
            "firing",
            "orange",
            1,
            None,
        )
        raised = session.scalars(
            select(Notification.person_id).where(
                Notification.alert_id == event_id, Notification.transition == "upgraded.1"
            )
        ).all()
    assert {OFFICER, LEADER} <= set(raised)  # orange names the leader too
    assert ack(db, event_id, OFFICER, later + timedelta(minutes=1)) == (True, True, "已确认")


# --- acceptance 2: every code the bureau is sent can be acknowledged by SMS ------------


def bureau_rows(db: sessionmaker[Session], after_id: int) -> list[Notification]:
    with db() as session:
        rows = session.scalars(
            select(Notification).where(Notification.id > after_id).order_by(Notification.id)
        ).all()
        session.expunge_all()
    return [r for r in rows if r.person_id and COUNTY.people[r.person_id].duty_role]


def answers_every_code(db: sessionmaker[Session], rows: list[Notification], now: datetime) -> None:
    """Each code in each row, replied by its recipient as "1 CODE", is acknowledged —
    tried in a transaction that is rolled back, so the next stage starts as it was."""
    for row in rows:
        codes = set(re.findall(r"编码[：:]?([A-Z0-9]{4})", row.body))
        assert codes, f"no code in {row.transition} message: {row.body}"
        phone = COUNTY.people[row.person_id or ""].phone
        for code in codes:
            with db() as session:
                answer = answer_sms(session, sender=phone, body=f"1 {code}", now=now)
                session.rollback()
            assert "已确认" in answer or "已由" in answer, (row.transition, answer)


def test_every_code_printed_to_bureau_staff_can_be_acknowledged_by_sms(
    db: sessionmaker[Session],
) -> None:
    esc = escalation()
    seen = 0
    kinds: set[str] = set()

    def stage(now: datetime) -> None:
        nonlocal seen
        rows = bureau_rows(db, seen)
        answers_every_code(db, [r for r in rows if not r.transition.startswith("resolved")], now)
        kinds.update(re.sub(r"[.@]\d+", "", r.transition) for r in rows)
        with db() as session:
            seen = max([seen, *(r.id for r in session.scalars(select(Notification)))])

    def poll(now: datetime, transitions: list[Transition]) -> None:
        """What a poll does with `transitions`: zone alerts, then the events (as read before)."""
        with db() as session:
            before, events = open_hazard_zones(session), open_events(session)
            session.expunge_all()
        for tr in transitions:
            if tr.kind is TransitionKind.NEW:
                open_alert(db, esc, level=tr.level.key, zone_id=tr.zone_id, at=now)
        with db.begin() as session:
            for tr in transitions:
                if tr.kind is TransitionKind.RESOLVED:
                    alert = session.scalars(
                        select(Alert).where(Alert.zone_id == tr.zone_id, Alert.kind == "hazard")
                    ).one()
                    alert.state, alert.closed_at = "resolved", now
            update_events(
                session,
                before,
                {h: session.merge(e) for h, e in events.items()},
                transitions,
                now=now,
                county=COUNTY,
                hazard_name=lambda hazard: "寒潮",
                escalation=esc,
                forecast_run_id=None,
            )

    def at(minutes: int) -> datetime:
        return OPENED + timedelta(minutes=minutes)

    new = TransitionKind.NEW
    poll(at(0), [Transition(new, "LL-LL-001", "cold_wave", Level.YELLOW)])  # new
    stage(at(0))
    poll(at(5), [Transition(new, "LL-MC-005", "cold_wave", Level.YELLOW)])  # zones added
    stage(at(5))
    escalate_due(db, esc, at(95))  # the officer's reminder, the leader's overdue notice
    stage(at(95))
    poll(at(96), [Transition(new, "LL-XC-001", "cold_wave", Level.ORANGE)])  # upgraded
    stage(at(96))
    escalate_due(db, esc, at(130))  # orange's reminders and deadline
    stage(at(130))
    with db.begin() as session:  # and the feed going down: a system alert to the bureau
        watch_feed(
            session,
            now=at(130),
            source="open-meteo",
            watching_since=OPENED,
            interval=timedelta(minutes=30),
            county=COUNTY,
            channel="console",
            escalation=esc,
        )
    stage(at(130))
    poll(
        at(140),
        [
            Transition(TransitionKind.RESOLVED, z, "cold_wave", Level.YELLOW, alert_id=1)
            for z in ("LL-LL-001", "LL-MC-005", "LL-XC-001")
        ],
    )  # ended
    stage(at(140))
    assert {"new", "zones", "esc1", "esc.overdue", "upgraded", "resolved"} <= kinds
