"""Reconcile is a pure table: assessments + open alerts + now → transitions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from dispatcher.alerts.reconcile import OpenAlert, TransitionKind, reconcile
from rules.types import Assessment, Level

NOW = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
HOLD = timedelta(hours=3)


def said(level: Level | None, zone: str = "Z1", hazard: str = "cold_wave") -> Assessment:
    onset = NOW + timedelta(hours=6) if level else None
    return Assessment("r1", hazard, zone, level, onset, onset, {"x": 1.0})


def opened(
    level: Level, calm_since: datetime | None = None, zone: str = "Z1", hazard: str = "cold_wave"
) -> OpenAlert:
    return OpenAlert(7, zone, hazard, level, calm_since)


def test_a_new_firing_assessment_opens_a_new_alert() -> None:
    [t] = reconcile([said(Level.YELLOW)], [], NOW)
    assert (t.kind, t.level, t.alert_id) == (TransitionKind.NEW, Level.YELLOW, None)
    assert t.assessment is not None and t.assessment.evidence == {"x": 1.0}


def test_nothing_said_and_nothing_open_is_no_transition() -> None:
    assert reconcile([], [], NOW) == []


def test_indeterminate_without_an_open_alert_opens_nothing() -> None:
    assert reconcile([said(None)], [], NOW) == []


def test_a_higher_level_upgrades_at_once_even_with_a_hold() -> None:
    [t] = reconcile([said(Level.ORANGE)], [opened(Level.YELLOW)], NOW, hold=HOLD)
    assert (t.kind, t.level, t.previous_level, t.alert_id) == (
        TransitionKind.UPGRADED,
        Level.ORANGE,
        Level.YELLOW,
        7,
    )


def test_the_same_level_continues_and_resets_the_calm_clock() -> None:
    [t] = reconcile([said(Level.YELLOW)], [opened(Level.YELLOW, NOW - HOLD)], NOW, hold=HOLD)
    assert (t.kind, t.calm_since, t.data_missing) == (TransitionKind.CONTINUED, None, False)


def test_a_lower_level_starts_the_calm_clock_before_downgrading() -> None:
    [t] = reconcile([said(Level.BLUE)], [opened(Level.ORANGE)], NOW, hold=HOLD)
    assert (t.kind, t.level, t.calm_since) == (TransitionKind.CONTINUED, Level.ORANGE, NOW)


def test_a_lower_level_downgrades_once_calm_for_the_hold() -> None:
    [t] = reconcile([said(Level.BLUE)], [opened(Level.ORANGE, NOW - HOLD)], NOW, hold=HOLD)
    assert (t.kind, t.level, t.previous_level) == (
        TransitionKind.DOWNGRADED,
        Level.BLUE,
        Level.ORANGE,
    )


def test_a_lower_level_just_inside_the_hold_still_continues() -> None:
    calm = NOW - HOLD + timedelta(seconds=1)
    [t] = reconcile([said(Level.BLUE)], [opened(Level.ORANGE, calm)], NOW, hold=HOLD)
    assert (t.kind, t.calm_since) == (TransitionKind.CONTINUED, calm)


def test_silence_resolves_at_once_without_a_hold() -> None:
    [t] = reconcile([], [opened(Level.YELLOW)], NOW)
    assert (t.kind, t.level, t.alert_id) == (TransitionKind.RESOLVED, Level.YELLOW, 7)


def test_silence_waits_out_the_hold_before_resolving() -> None:
    [first] = reconcile([], [opened(Level.YELLOW)], NOW, hold=HOLD)
    assert (first.kind, first.calm_since) == (TransitionKind.CONTINUED, NOW)
    [later] = reconcile([], [opened(Level.YELLOW, NOW)], NOW + HOLD, hold=HOLD)
    assert later.kind is TransitionKind.RESOLVED


def test_flapping_back_above_resets_the_calm_clock() -> None:
    [t] = reconcile([said(Level.YELLOW)], [opened(Level.YELLOW, NOW - timedelta(hours=2))], NOW)
    assert t.calm_since is None


def test_missing_data_never_clears_an_open_alert() -> None:
    calm = NOW - timedelta(days=3)
    [t] = reconcile([said(None)], [opened(Level.RED, calm)], NOW, hold=HOLD)
    assert (t.kind, t.level, t.data_missing, t.calm_since) == (
        TransitionKind.CONTINUED,
        Level.RED,
        True,
        calm,
    )


def test_gaps_hiding_a_higher_level_never_step_a_warning_down() -> None:
    calm = NOW - HOLD * 2
    gappy = replace(said(Level.BLUE), undecided_above=Level.ORANGE)
    [t] = reconcile([gappy], [opened(Level.ORANGE, calm)], NOW, hold=HOLD)
    assert (t.kind, t.level, t.data_missing, t.calm_since) == (
        TransitionKind.CONTINUED,
        Level.ORANGE,
        True,
        calm,
    )


def test_gaps_above_a_level_that_still_upgrades_do_not_stop_the_upgrade() -> None:
    gappy = replace(said(Level.ORANGE), undecided_above=Level.RED)
    [t] = reconcile([gappy], [opened(Level.YELLOW)], NOW)
    assert (t.kind, t.level) == (TransitionKind.UPGRADED, Level.ORANGE)


def test_each_zone_and_hazard_is_decided_independently_in_a_stable_order() -> None:
    transitions = reconcile(
        [said(Level.YELLOW, "Z2"), said(Level.BLUE, "Z1", "fog")],
        [opened(Level.RED, zone="Z3")],
        NOW,
    )
    assert [(t.zone_id, t.hazard, t.kind) for t in transitions] == [
        ("Z1", "fog", TransitionKind.NEW),
        ("Z2", "cold_wave", TransitionKind.NEW),
        ("Z3", "cold_wave", TransitionKind.RESOLVED),
    ]


def test_two_assessments_for_one_zone_and_hazard_are_refused() -> None:
    with pytest.raises(ValueError, match="two assessments"):
        reconcile([said(Level.BLUE), said(Level.RED)], [], NOW)


@pytest.mark.parametrize("kind", list(TransitionKind))
def test_only_continued_is_silent(kind: TransitionKind) -> None:
    assert kind.notifies is (kind is not TransitionKind.CONTINUED)
