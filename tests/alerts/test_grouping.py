"""Grouping (pure): which zone alerts form one event, and what changes in a poll.

Plain data in, plain data out: every row of the table in
`dispatcher.alerts.grouping` is a case here, and `zones_after` is checked
against every transition kind reconcile produces.
"""

from __future__ import annotations

import pytest

from dispatcher.alerts.grouping import EventChangeKind, EventState, group, zones_after
from dispatcher.alerts.reconcile import Transition, TransitionKind
from rules.types import Level

B, Y, O, R = Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED  # noqa: E741


def state(level: Level, **zones: Level) -> EventState:
    return EventState(7, "cold_wave", level, zones)


def t(kind: TransitionKind, zone: str, level: Level, hazard: str = "cold_wave") -> Transition:
    return Transition(kind, zone, hazard, level, alert_id=None if kind is TransitionKind.NEW else 1)


def test_zones_of_one_hazard_opening_together_start_one_event() -> None:
    (change,) = group({}, {"cold_wave": {"z2": Y, "z1": O}})
    assert change.kind is EventChangeKind.NEW
    assert (change.event_id, change.level, change.previous_level) == (None, O, None)
    assert change.added == ("z1", "z2")
    assert dict(change.zones) == {"z1": O, "z2": Y}


def test_each_hazard_has_its_own_event() -> None:
    changes = group({}, {"road_icing": {"z1": Y}, "cold_wave": {"z1": Y}})
    assert [(c.hazard, c.kind) for c in changes] == [
        ("cold_wave", EventChangeKind.NEW),
        ("road_icing", EventChangeKind.NEW),
    ]


def test_nothing_open_and_nothing_before_is_no_change() -> None:
    assert group({}, {}) == []


def test_the_last_zone_closing_ends_the_event() -> None:
    (change,) = group({"cold_wave": state(Y, z1=Y)}, {})
    assert (change.kind, change.event_id, change.level, change.previous_level) == (
        EventChangeKind.ENDED,
        7,
        None,
        Y,
    )


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [
        ({"z1": Y}, {"z1": O}, EventChangeKind.UPGRADED),
        ({"z1": Y}, {"z1": Y, "z2": R}, EventChangeKind.UPGRADED),
        ({"z1": O, "z2": Y}, {"z2": Y}, EventChangeKind.DOWNGRADED),
        ({"z1": O}, {"z1": B}, EventChangeKind.DOWNGRADED),
        ({"z1": O}, {"z1": O, "z2": Y}, EventChangeKind.ZONES_ADDED),
        ({"z1": O}, {"z2": O}, EventChangeKind.ZONES_ADDED),
    ],
)
def test_a_change_of_level_or_zones_is_one_change(
    before: dict[str, Level], after: dict[str, Level], kind: EventChangeKind
) -> None:
    (change,) = group({"cold_wave": state(max(before.values()), **before)}, {"cold_wave": after})
    assert change.kind is kind
    assert change.event_id == 7
    assert change.level == max(after.values())
    assert change.previous_level == max(before.values())
    assert change.added == tuple(sorted(set(after) - set(before)))


@pytest.mark.parametrize(
    "after",
    [{"z1": O, "z2": Y}, {"z1": O}, {"z1": O, "z2": O}],
    ids=["same", "fewer", "a zone up, not the highest"],
)
def test_the_same_level_with_no_new_zone_tells_nobody(after: dict[str, Level]) -> None:
    assert group({"cold_wave": state(O, z1=O, z2=Y)}, {"cold_wave": after}) == []


def test_an_upgrade_that_brings_zones_lists_them() -> None:
    (change,) = group({"cold_wave": state(Y, z1=Y)}, {"cold_wave": {"z1": Y, "z3": R, "z2": R}})
    assert (change.kind, change.added) == (EventChangeKind.UPGRADED, ("z2", "z3"))


def test_zones_after_applies_every_transition_kind() -> None:
    before = {"cold_wave": {"z1": Y, "z2": O, "z3": Y, "z4": Y}}
    transitions = [
        t(TransitionKind.UPGRADED, "z1", O),
        t(TransitionKind.DOWNGRADED, "z2", Y),
        t(TransitionKind.RESOLVED, "z3", Y),
        t(TransitionKind.CONTINUED, "z4", Y),
        t(TransitionKind.NEW, "z5", R),
        t(TransitionKind.SUPPRESSED, "z6", Y),
        t(TransitionKind.NEW, "z1", Y, hazard="fog"),
    ]
    assert zones_after(before, transitions) == {
        "cold_wave": {"z1": O, "z2": Y, "z4": Y, "z5": R},
        "fog": {"z1": Y},
    }
    assert before == {"cold_wave": {"z1": Y, "z2": O, "z3": Y, "z4": Y}}  # not changed


def test_a_hazard_whose_zones_all_resolve_is_gone_from_zones_after() -> None:
    after = zones_after({"fog": {"z1": Y}}, [t(TransitionKind.RESOLVED, "z1", Y, hazard="fog")])
    assert after == {}
    (change,) = group({"fog": EventState(3, "fog", Y, {"z1": Y})}, after)
    assert change.kind is EventChangeKind.ENDED


def test_alerts_open_without_an_event_are_adopted_by_a_new_one() -> None:
    # alerts opened before events existed (an upgraded installation): the next
    # poll gives their hazard an event, announced once
    (change,) = group({}, zones_after({"cold_wave": {"z1": Y}}, []))
    assert (change.kind, change.added) == (EventChangeKind.NEW, ("z1",))
