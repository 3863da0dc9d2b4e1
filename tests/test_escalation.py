"""Escalation until acknowledged: steps at their delays, to the right people, as DB timers.

Every test runs on SQLite and PostgreSQL, with the example county and its
roster, and a simulated clock: `escalate_due` is called at chosen instants.
"""

from __future__ import annotations

import io
import json
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from channels.console import ConsoleChannel
from dispatcher import audit
from dispatcher.alerts.acknowledge import acknowledge
from dispatcher.alerts.system import watch_feed
from dispatcher.county import County
from dispatcher.escalation import (
    DEFAULT_DEADLINES,
    Escalation,
    Policies,
    escalate_due,
    load_policies,
)
from dispatcher.escalation.plan import (
    OVERDUE_TRANSITION,
    PlannedStep,
    StepTransition,
    parse_step_transition,
    step_transition,
)
from dispatcher.outbox import DeliveryWorker
from dispatcher.runtime import drain
from dispatcher.states import TimerKind
from dispatcher.storage.models import Alert, AuditEvent, EscalationTimer, Notification
from rules.config import ConfigError
from tests.support import OPENED, ZONE, example_county, example_roster, open_alert, open_event

ROOT = Path(__file__).resolve().parents[1]
COUNTY_DIR = ROOT / "examples" / "liulin"
COUNTY = example_county()
ROSTER = example_roster()

DISASTER_PREVENTION = "p-ll-lmy-1"
MONITORING = "p-ll-lmy-2"
MASS_MONITORS = {"p-ll-lmy-3", "p-ll-lmy-4"}
TECHNICAL = "p-tech-he"
OFFICER_ON_DUTY = "p-duty-li"
LEADER_ON_DUTY = "p-lead-xue"


def escalation(channels: tuple[str, ...] = ("console",), **changes: Any) -> Escalation:
    values: dict[str, Any] = {
        "county": COUNTY,
        "roster": ROSTER,
        "policies": Policies(),
        "channels": frozenset(channels),
        "default_channel": "console",
        "deadlines": dict(DEFAULT_DEADLINES),
        **changes,
    }
    return Escalation(**values)


def told(sessions: sessionmaker[Session], alert_id: int) -> dict[str, set[tuple[str, str]]]:
    """transition → {(person, channel)} of the alert's messages that were not cancelled."""
    out: dict[str, set[tuple[str, str]]] = {}
    with sessions() as session:
        for n in session.scalars(
            select(Notification).where(
                Notification.alert_id == alert_id, Notification.status != "cancelled"
            )
        ):
            out.setdefault(n.transition, set()).add((n.person_id or "", n.channel))
    return out


def people(sessions: sessionmaker[Session], alert_id: int, transition: str) -> set[str]:
    return {person for person, _ in told(sessions, alert_id).get(transition, set())}


def timers(sessions: sessionmaker[Session], alert_id: int) -> list[tuple[str, int, int, str]]:
    with sessions() as session:
        rows = session.scalars(
            select(EscalationTimer)
            .where(EscalationTimer.alert_id == alert_id)
            .order_by(EscalationTimer.due_at, EscalationTimer.kind, EscalationTimer.id)
        ).all()
        return [(t.kind, t.step, t.round, t.status) for t in rows]


def actions(sessions: sessionmaker[Session], alert_id: int) -> list[str]:
    with sessions() as session:
        return list(
            session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.subject == f"alert:{alert_id}")
                .order_by(AuditEvent.id)
            )
        )


def ack(
    sessions: sessionmaker[Session], alert_id: int, person_id: str, at: datetime
) -> tuple[bool, bool, str]:
    with sessions.begin() as session:
        alert = session.get_one(Alert, alert_id)
        outcome = acknowledge(
            session,
            alert=alert,
            person_id=person_id,
            actor=person_id,
            method="sms",
            note=None,
            at=at,
        )
        return outcome.accepted, outcome.complete, outcome.reason


def after(minutes: float) -> datetime:
    return OPENED + timedelta(minutes=minutes)


# --- the first step and the plan ---------------------------------------------------


def test_a_yellow_warning_first_tells_the_monitors_and_plans_the_rest(
    db: sessionmaker[Session],
) -> None:
    alert_id = open_alert(db, escalation())

    assert told(db, alert_id) == {
        "new": {(p, "console") for p in {MONITORING, *MASS_MONITORS}},
    }
    # the policy's duty-officer step (+60 min, repeated) is its event's (the bureau's)
    assert timers(db, alert_id) == [
        ("step", 1, 0, "pending"),  # +30 min: disaster-prevention person
        ("deadline", 0, 0, "pending"),  # +90 min: acknowledgement deadline
    ]
    assert actions(db, alert_id) == ["escalation.step", "escalation.started"]


def test_an_orange_warning_calls_the_disaster_prevention_person_and_tells_the_leader_at_once(
    db: sessionmaker[Session],
) -> None:
    alert_id = open_alert(db, escalation(("console", "twilio_voice")), level="orange")

    assert told(db, alert_id)["new"] == {
        (DISASTER_PREVENTION, "twilio_voice"),
        (DISASTER_PREVENTION, "console"),
        (MONITORING, "console"),
        (TECHNICAL, "console"),
        *((p, "console") for p in MASS_MONITORS),
    }  # the leader and the officer on duty hear of its event


def test_a_channel_this_instance_lacks_falls_back_to_the_default_and_says_so(
    db: sessionmaker[Session],
) -> None:
    alert_id = open_alert(db, escalation(("console",)), level="orange")

    assert (DISASTER_PREVENTION, "console") in told(db, alert_id)["new"]
    assert not any(channel == "twilio_voice" for _, channel in told(db, alert_id)["new"])
    with db() as session:
        first = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "escalation.step").order_by(AuditEvent.id)
        ).first()
    assert first is not None and first.data["channel_fallbacks"] == ["twilio_voice→console"]


def test_a_first_step_that_reaches_nobody_is_followed_at_once_by_the_next(
    db: sessionmaker[Session],
) -> None:
    zone = COUNTY.zone(ZONE)
    bare = zone.model_copy(update={"people": {"disaster_prevention": [DISASTER_PREVENTION]}})
    county = County(
        COUNTY.name,
        COUNTY.area_code,
        COUNTY.sender,
        COUNTY.timezone,
        COUNTY.people,
        [bare if z.id == ZONE else z for z in COUNTY.zones],
    )

    alert_id = open_alert(db, escalation(county=county))

    assert people(db, alert_id, "esc1") == {DISASTER_PREVENTION}
    assert ("step", 1, 0, "pending") not in timers(db, alert_id)


# --- later steps, by the clock -----------------------------------------------------


def test_a_step_fires_at_its_delay_and_not_a_second_before(db: sessionmaker[Session]) -> None:
    esc = escalation()
    alert_id = open_alert(db, esc)

    early = escalate_due(db, esc, after(30) - timedelta(seconds=1))
    assert early.timers == 0 and "esc1" not in told(db, alert_id)

    due = escalate_due(db, esc, after(30))
    assert (due.timers, due.notifications) == (1, 1)
    assert told(db, alert_id)["esc1"] == {(DISASTER_PREVENTION, "console")}


def test_the_duty_step_reaches_the_officer_on_duty_then_per_the_roster(
    db: sessionmaker[Session],
) -> None:
    esc = escalation()
    # opened 07:00 on 01-07 (Shanghai): 李慧敏's shift; the handover at 08:30 is 90 min later
    opened = datetime(2026, 1, 6, 23, 0, tzinfo=UTC)
    event_id, _ = open_event(db, esc, at=opened)  # the duty step is the event's

    escalate_due(db, esc, opened + timedelta(minutes=60))
    escalate_due(db, esc, opened + timedelta(minutes=90))

    assert people(db, event_id, "new") == {"p-duty-li"}  # the bureau hears of it at once
    assert people(db, event_id, "esc1") == {"p-duty-li"}
    assert people(db, event_id, "esc1.1") == {"p-duty-liu"}  # 刘晓东 took over at 08:30


def test_running_the_due_timers_twice_tells_nobody_twice(db: sessionmaker[Session]) -> None:
    esc = escalation()
    alert_id = open_alert(db, esc)

    first = escalate_due(db, esc, after(30))
    again = escalate_due(db, esc, after(30))

    assert first.timers == 1 and again.timers == 0
    assert Counter(t[3] for t in timers(db, alert_id)) == {"done": 1, "pending": 1}
    assert people(db, alert_id, "esc1") == {DISASTER_PREVENTION}


def test_two_runners_at_once_fire_each_timer_exactly_once(db: sessionmaker[Session]) -> None:
    esc = escalation()
    alerts = [open_alert(db, esc, zone_id=z.id) for z in COUNTY.zones[:10]]
    results: list[int] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        results.append(escalate_due(db, esc, after(30)).timers)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sum(results) == len(alerts)
    for alert_id in alerts:
        assert len(people(db, alert_id, "esc1")) == 1


def test_a_timer_held_by_a_runner_that_died_runs_when_its_lease_expires(
    db: sessionmaker[Session],
) -> None:
    esc = escalation()
    alert_id = open_alert(db, esc)
    with db.begin() as session:  # another instance claimed it at +30 min and died
        session.execute(
            update(EscalationTimer)
            .where(EscalationTimer.alert_id == alert_id, EscalationTimer.step == 1)
            .values(lease_until=after(31))
        )

    assert escalate_due(db, esc, after(30.5)).timers == 0
    assert escalate_due(db, esc, after(31.5)).timers == 1
    assert people(db, alert_id, "esc1") == {DISASTER_PREVENTION}


def test_catching_up_after_downtime_sends_one_reminder_not_every_missed_one(
    db: sessionmaker[Session],
) -> None:
    esc = escalation()
    event_id, _ = open_event(db, esc)  # the event reminds the officer at +60, +90, +120

    escalate_due(db, esc, after(125))  # the daemon was down for two hours

    assert "esc1" not in told(db, event_id) and "esc1.1" not in told(db, event_id)
    assert people(db, event_id, "esc1.2") == {OFFICER_ON_DUTY}
    assert actions(db, event_id).count("escalation.skipped") == 2


# --- acknowledgement, deadline ----------------------------------------------------


def test_an_acknowledgement_cancels_the_steps_to_come_and_unsent_reminders(
    db: sessionmaker[Session],
) -> None:
    esc = escalation()
    alert_id = open_alert(db, esc)
    escalate_due(db, esc, after(30))  # the disaster-prevention person's message is queued

    ack(db, alert_id, MONITORING, after(31))
    later = escalate_due(db, esc, after(180))

    assert later.timers == 0
    assert "esc1" not in told(db, alert_id)  # not yet sent when acknowledged: cancelled
    assert {t[3] for t in timers(db, alert_id) if t[1] != 1} == {"cancelled"}
    assert "escalation.cancelled" in actions(db, alert_id)
    assert "alert.overdue" not in actions(db, alert_id)


def test_the_warning_itself_still_goes_out_after_an_acknowledgement(
    db: sessionmaker[Session],
) -> None:
    alert_id = open_alert(db, escalation())

    ack(db, alert_id, OFFICER_ON_DUTY, after(1))

    assert people(db, alert_id, "new") == {MONITORING, *MASS_MONITORS}


def test_a_missed_deadline_marks_the_alert_overdue_and_tells_the_leader_on_duty(
    db: sessionmaker[Session],
) -> None:
    esc = escalation()
    alert_id = open_alert(db, esc)

    escalate_due(db, esc, after(89))
    assert "alert.overdue" not in actions(db, alert_id)
    escalate_due(db, esc, after(90))

    assert "alert.overdue" in actions(db, alert_id)
    assert told(db, alert_id)["esc.overdue"] == {(LEADER_ON_DUTY, "console")}
    with db() as session:
        [notice] = session.scalars(
            select(Notification.body).where(Notification.transition == "esc.overdue")
        ).all()
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "alert.overdue")
        ).one()
        assert audit.verify(session) == []
    assert "迟报提醒" in notice and "90分钟无人确认" in notice
    assert event.data["deadline"] == after(90).isoformat()


def test_people_who_acknowledged_a_red_warning_are_not_reminded(
    db: sessionmaker[Session],
) -> None:
    esc = escalation()
    event_id, (alert_id,) = open_event(db, esc, level="red")

    ack(db, alert_id, DISASTER_PREVENTION, after(1))  # the duty officer has not yet
    escalate_due(db, esc, after(5))

    assert "esc2" not in told(db, alert_id)  # the zone's reminder: to no one left
    assert "escalation.step" in actions(db, alert_id)
    assert people(db, event_id, "esc1") == {OFFICER_ON_DUTY}  # the zone still waits for him


# --- level changes and endings ---------------------------------------------------


def test_an_upgrade_cancels_the_old_escalation_and_starts_the_new_levels(
    db: sessionmaker[Session],
) -> None:
    esc = escalation()
    old = open_alert(db, esc)
    escalate_due(db, esc, after(30))  # the disaster-prevention person was told of yellow

    new = open_alert(db, esc, level="orange", at=after(40), previous=old)

    assert {t[3] for t in timers(db, old) if t[1] != 1} == {"cancelled"}
    upgraded = people(db, new, "upgraded")
    assert {DISASTER_PREVENTION, TECHNICAL} <= upgraded
    assert not {LEADER_ON_DUTY, OFFICER_ON_DUTY} & upgraded  # they hear of its event
    assert ("step", 2, 0, "pending") in timers(db, new)  # orange's reminder at +10 min


async def test_a_resolution_cancels_the_rest_and_tells_everyone_who_was_told(
    db: sessionmaker[Session],
) -> None:
    esc = escalation()
    alert_id = open_alert(db, esc)
    escalate_due(db, esc, after(30))
    worker = DeliveryWorker(db, {"console": ConsoleChannel(io.StringIO())}, lambda: after(31))
    await drain(worker)
    with db.begin() as session:
        alert = session.get_one(Alert, alert_id)
        alert.state = "resolved"
        esc.close(session, alert, transition="resolved", body="预警解除", now=after(45))

    assert people(db, alert_id, "resolved") == {MONITORING, *MASS_MONITORS, DISASTER_PREVENTION}
    assert {t[3] for t in timers(db, alert_id) if t[1] != 1} == {"cancelled"}
    assert escalate_due(db, esc, after(200)).timers == 0


def test_a_feed_down_alert_goes_to_the_officer_and_the_leader_on_duty(
    db: sessionmaker[Session],
) -> None:
    esc = escalation()
    with db.begin() as session:
        notes = watch_feed(
            session,
            now=OPENED,
            source="open-meteo",
            watching_since=OPENED - timedelta(hours=2),
            interval=timedelta(minutes=30),
            county=COUNTY,
            channel="console",
            escalation=esc,
        )
        recipients = {n.person_id for n in notes}

    assert recipients == {OFFICER_ON_DUTY, LEADER_ON_DUTY}


# --- planned steps and their transition names -----------------------------------

# a timer's plan as stored before plans were typed: old rows must still load
STORED_STEP_PLAN = (
    '{"policy": "default:yellow", "targets": ["duty_officer"], "people": [], '
    '"channels": ["default"], "transition": "esc2.1", "body": "B"}'
)
STORED_DEADLINE_PLAN = (
    '{"policy": "default:yellow", "targets": ["leader_on_duty"], "people": [], '
    '"channels": ["default"], "transition": "esc.overdue", "body": "B", "minutes": 90}'
)


@pytest.mark.parametrize("stored", [STORED_STEP_PLAN, STORED_DEADLINE_PLAN])
def test_a_stored_plan_loads_and_is_written_back_byte_for_byte(stored: str) -> None:
    plan = json.loads(stored)
    kind = TimerKind.DEADLINE if "minutes" in plan else TimerKind.STEP

    planned = PlannedStep.from_json(plan, kind=kind, step=2, round_=1)

    assert json.dumps(planned.to_json(), ensure_ascii=False) == stored


def test_the_plans_of_a_new_alert_are_stored_in_the_shape_old_rows_have(
    db: sessionmaker[Session],
) -> None:
    alert_id = open_alert(db, escalation())

    with db() as session:
        plans = {
            t.kind: list(t.plan)
            for t in session.scalars(
                select(EscalationTimer).where(EscalationTimer.alert_id == alert_id)
            )
        }
    assert plans == {
        "step": list(json.loads(STORED_STEP_PLAN)),
        "deadline": list(json.loads(STORED_DEADLINE_PLAN)),
    }


def test_a_later_steps_transition_names_its_step_and_round() -> None:
    assert [step_transition(2, 0), step_transition(2, 1)] == ["esc2", "esc2.1"]
    assert parse_step_transition("esc2") == StepTransition(2, 0)
    assert parse_step_transition("esc2.1") == StepTransition(2, 1)


@pytest.mark.parametrize("transition", ["new", "upgraded", "resolved", OVERDUE_TRANSITION, "esc"])
def test_other_transitions_name_no_step(transition: str) -> None:
    assert parse_step_transition(transition) is None


# --- policies -----------------------------------------------------------------


def write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "escalation.yaml").write_text(body, encoding="utf-8")
    return tmp_path


def test_a_rule_override_wins_over_a_hazard_override_and_the_level(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        """escalation:
  overrides:
    - hazard: cold_wave
      levels:
        yellow: {steps: [{after: 0, notify: [disaster_prevention]}]}
    - rule: cma-cold-wave-signal
      levels:
        yellow: {steps: [{after: 0, notify: [technical]}]}
""",
    )
    policies = load_policies(config, COUNTY)

    def policy(hazard: str, rule: str, level: str = "yellow") -> str:
        alert = Alert(kind="hazard", hazard=hazard, rule_id=rule, level=level)
        return policies.for_alert(alert).name

    assert policy("cold_wave", "cma-cold-wave-signal") == "rule:cma-cold-wave-signal:yellow"
    assert policy("cold_wave", "gbt21987-cold-wave") == "hazard:cold_wave:yellow"
    assert policy("fog", "cma-fog") == "default:yellow"
    assert policy("cold_wave", "cma-cold-wave-signal", "orange") == "default:orange"


def test_the_example_escalation_yaml_loads(tmp_path: Path) -> None:
    policies = load_policies(COUNTY_DIR, COUNTY)

    assert policies.levels["yellow"].steps[1].targets == ("disaster_prevention",)
    assert policies.hazards[("freezing_rain", "yellow")].steps[0].targets[-1] == (
        "disaster_prevention"
    )


def test_escalation_yaml_problems_are_reported_where_they_are(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        """escalation:
  levels:
    yellow:
      steps:
        - after: 10m
          notify: [mass_monitors]
        - after: 30m
          notify: [duty_officer]
          repeat: 2
  overrides:
    - hazard: cold_wav
      levels:
        blue: {steps: [{after: 0, people: [p-duty-lee]}]}
""",
    )
    from rules.loader import load_ruleset

    with pytest.raises(ConfigError) as caught:
        load_policies(config, COUNTY, load_ruleset(COUNTY_DIR / "rules"))

    found = [str(p).removeprefix(f"{config / 'escalation.yaml'}:") for p in caught.value.problems]
    assert found == [
        "5:18: the first step must be 'after: 0' (it goes out with the warning itself)",
        "6:20: unknown target 'mass_monitors'; did you mean 'mass_monitor'? expected one of: "
        "disaster_prevention, monitoring, technical, mass_monitor, duty_officer, leader_on_duty "
        "(named people go under people:)",
        "9:19: repeat needs every: (e.g. every: 30m)",
        "11:15: unknown hazard 'cold_wav', not in rules/; did you mean 'cold_wave'?",
        "13:44: unknown person 'p-duty-lee', not in people.yaml; did you mean 'p-duty-li'?",
    ]
