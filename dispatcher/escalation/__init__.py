"""Escalation until acknowledged: policies, durable timers, the acknowledgement deadline.

An alert's escalation policy (escalation.yaml, per level, overridable per
hazard or per rule; built-in defaults without the file) is a list of steps:
after a delay, notify targets — zone roles, the duty officer and the leader on
duty on duty at that moment (per the roster), named people — on given channels,
optionally repeating every so often.

When an alert opens (`Escalation.start`, called by the lifecycle in the same
transaction as the transition) the first step is enqueued at once, and every
later step, every repeat and the acknowledgement deadline become rows of
`escalation_timers`, each with its plan (targets, channels, text). The
scheduler's `escalate_due` claims due rows with a lease (SKIP LOCKED on
PostgreSQL, like the outbox) and runs each in its own transaction, so a
restart or another instance picks them up and a failing one does not block
the others. An acknowledgement (`cancel_escalation`) cancels the rest; a
resolution or an upgrade/downgrade cancels the old alert's rest, and the new
alert starts its own level's policy.

A missed acknowledgement deadline (settings `YUJING_ACK_DEADLINE_*_SECONDS`)
records `alert.overdue` (迟报) in the audit trail and tells the leader on duty.

A hazard alert does its zone's share of its policy; the bureau's share (the
duty officer, the leader on duty, the duty room's group) is its event's
(`dispatcher.alerts.events`): one message per event change, reminders while
its zones wait, and one overdue notice for all its zones past their deadline.

The package, one concern a module:

- `policy`: the policy model (Step, Policy, Policies), the built-in
  policies and deadlines, and a policy's zone and bureau shares;
- `config`: escalation.yaml — its schema, its checks, `load_policies`;
- `plan`: a planned step (`PlannedStep`, the JSON of a timer's plan) and the
  transition names of escalation messages (`esc1`, `esc1.2`, `esc.overdue`);
- `engine`: `Escalation`, which starts, fires and closes an alert's policy
  (its messages are outbox rows: `dispatcher.outbox.rows.enqueue`);
- `fire`: one planned step's messages — whom, on which channels, in whose words;
- `members`: an event's zone alerts (open, waiting, overdue) and its words;
- `told`: who was told about an alert (people and audiences), to tell them
  of its end or change;
- `timers`: `escalate_due`, which claims and runs due timers, and
  `cancel_escalation`.
"""

from __future__ import annotations

from dispatcher.escalation.config import (
    ESCALATION_FILE,
    load_policies,
    roster_and_escalation_problems,
)
from dispatcher.escalation.engine import AlertText, Escalation, on_channel
from dispatcher.escalation.plan import (
    ESCALATION_PREFIX,
    OVERDUE_TRANSITION,
    PlannedStep,
    parse_step_transition,
    step_transition,
)
from dispatcher.escalation.policy import (
    ADMINISTRATOR_POLICY,
    DEFAULT_DEADLINES,
    DEFAULT_POLICIES,
    Policies,
    Policy,
    Step,
)
from dispatcher.escalation.timers import LEASE, EscalationRun, cancel_escalation, escalate_due
from dispatcher.escalation.told import notified_people

__all__ = [
    "ADMINISTRATOR_POLICY",
    "DEFAULT_DEADLINES",
    "DEFAULT_POLICIES",
    "ESCALATION_FILE",
    "ESCALATION_PREFIX",
    "LEASE",
    "OVERDUE_TRANSITION",
    "AlertText",
    "Escalation",
    "EscalationRun",
    "PlannedStep",
    "Policies",
    "Policy",
    "Step",
    "cancel_escalation",
    "escalate_due",
    "load_policies",
    "notified_people",
    "on_channel",
    "parse_step_transition",
    "roster_and_escalation_problems",
    "step_transition",
]
