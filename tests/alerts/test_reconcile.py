"""Reconcile is a pure table: assessments + open alerts + now → transitions."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from dispatcher.alerts.reconcile import (
    ClosedAlert,
    OpenAlert,
    Timing,
    TransitionKind,
    reconcile,
)
from rules.types import Assessment, Level

NOW = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
HOLD = timedelta(hours=3)
COOLDOWN = timedelta(hours=6)


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


def test_a_blind_hazard_without_a_hold_continues_never_resolves() -> None:
    """A variable gone from the feed: no level, undecided up to red. With no hold at all,
    silence would resolve at once; the undecided verdict must not (a false all-clear)."""
    blind = said(None)._replace(undecided_above=Level.RED)
    [t] = reconcile([blind], [opened(Level.YELLOW)], NOW, hold=timedelta(0))
    assert (t.kind, t.level, t.data_missing) == (TransitionKind.CONTINUED, Level.YELLOW, True)
    # while the same zone with nothing said at all is resolved
    [gone] = reconcile([], [opened(Level.YELLOW)], NOW, hold=timedelta(0))
    assert gone.kind is TransitionKind.RESOLVED


def test_gaps_hiding_a_higher_level_never_step_a_warning_down() -> None:
    calm = NOW - HOLD * 2
    gappy = said(Level.BLUE)._replace(undecided_above=Level.ORANGE)
    [t] = reconcile([gappy], [opened(Level.ORANGE, calm)], NOW, hold=HOLD)
    assert (t.kind, t.level, t.data_missing, t.calm_since) == (
        TransitionKind.CONTINUED,
        Level.ORANGE,
        True,
        calm,
    )


def test_gaps_above_a_level_that_still_upgrades_do_not_stop_the_upgrade() -> None:
    gappy = said(Level.ORANGE)._replace(undecided_above=Level.RED)
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
def test_only_continued_and_suppressed_are_silent(kind: TransitionKind) -> None:
    silent = (TransitionKind.CONTINUED, TransitionKind.SUPPRESSED)
    assert kind.notifies is (kind not in silent)


# --- hold and cooldown per hazard


def closed(
    level: Level, ago: timedelta, zone: str = "Z1", hazard: str = "cold_wave", id: int = 3
) -> ClosedAlert:
    return ClosedAlert(id, zone, hazard, level, NOW - ago)


def test_the_hold_can_differ_per_hazard() -> None:
    holds = {"fog": timedelta(hours=1)}
    transitions = reconcile(
        [],
        [
            opened(Level.YELLOW, NOW - timedelta(hours=1)),
            opened(Level.YELLOW, NOW - timedelta(hours=1), hazard="fog"),
        ],
        NOW,
        hold=lambda hazard: holds.get(hazard, HOLD),
    )
    assert [(t.hazard, t.kind) for t in transitions] == [
        ("cold_wave", TransitionKind.CONTINUED),
        ("fog", TransitionKind.RESOLVED),
    ]


def test_within_the_cooldown_the_same_level_is_suppressed_not_issued_again() -> None:
    [t] = reconcile(
        [said(Level.YELLOW)],
        [],
        NOW,
        cooldown=COOLDOWN,
        recently_resolved=[closed(Level.YELLOW, timedelta(hours=1))],
    )
    assert (t.kind, t.level, t.alert_id, t.previous_level) == (
        TransitionKind.SUPPRESSED,
        Level.YELLOW,
        3,
        Level.YELLOW,
    )
    assert not t.kind.notifies


def test_within_the_cooldown_a_lower_level_is_suppressed_too() -> None:
    [t] = reconcile(
        [said(Level.BLUE)],
        [],
        NOW,
        cooldown=COOLDOWN,
        recently_resolved=[closed(Level.YELLOW, timedelta(hours=1))],
    )
    assert (t.kind, t.level) == (TransitionKind.SUPPRESSED, Level.BLUE)


def test_within_the_cooldown_a_higher_level_is_issued_at_once() -> None:
    [t] = reconcile(
        [said(Level.ORANGE)],
        [],
        NOW,
        cooldown=COOLDOWN,
        recently_resolved=[closed(Level.YELLOW, timedelta(minutes=1))],
    )
    assert (t.kind, t.level, t.alert_id) == (TransitionKind.NEW, Level.ORANGE, None)


def test_the_cooldown_ends_exactly_after_its_duration() -> None:
    recent = [closed(Level.YELLOW, COOLDOWN)]
    [t] = reconcile([said(Level.YELLOW)], [], NOW, cooldown=COOLDOWN, recently_resolved=recent)
    assert t.kind is TransitionKind.NEW


def test_just_inside_the_cooldown_still_suppresses() -> None:
    recent = [closed(Level.YELLOW, COOLDOWN - timedelta(seconds=1))]
    [t] = reconcile([said(Level.YELLOW)], [], NOW, cooldown=COOLDOWN, recently_resolved=recent)
    assert t.kind is TransitionKind.SUPPRESSED


def test_without_a_cooldown_a_resolved_warning_may_be_issued_again_at_once() -> None:
    recent = [closed(Level.YELLOW, timedelta(0))]
    [t] = reconcile([said(Level.YELLOW)], [], NOW, recently_resolved=recent)
    assert t.kind is TransitionKind.NEW


def test_the_cooldown_can_differ_per_hazard() -> None:
    cooldowns = {"fog": timedelta(hours=1)}
    transitions = reconcile(
        [said(Level.YELLOW), said(Level.YELLOW, hazard="fog")],
        [],
        NOW,
        cooldown=lambda hazard: cooldowns.get(hazard, COOLDOWN),
        recently_resolved=[
            closed(Level.YELLOW, timedelta(hours=2), id=3),
            closed(Level.YELLOW, timedelta(hours=2), hazard="fog", id=4),
        ],
    )
    assert [(t.hazard, t.kind) for t in transitions] == [
        ("cold_wave", TransitionKind.SUPPRESSED),
        ("fog", TransitionKind.NEW),
    ]


def test_a_cooldown_holds_back_only_its_own_zone_and_hazard() -> None:
    transitions = reconcile(
        [said(Level.YELLOW, "Z2"), said(Level.YELLOW, "Z1", "fog")],
        [],
        NOW,
        cooldown=COOLDOWN,
        recently_resolved=[closed(Level.RED, timedelta(hours=1))],
    )
    assert [t.kind for t in transitions] == [TransitionKind.NEW, TransitionKind.NEW]


def test_a_new_level_must_rise_above_every_level_resolved_within_the_cooldown() -> None:
    recent = [
        closed(Level.RED, timedelta(hours=5), id=3),
        closed(Level.YELLOW, timedelta(hours=1), id=4),
    ]
    [t] = reconcile([said(Level.ORANGE)], [], NOW, cooldown=COOLDOWN, recently_resolved=recent)
    assert (t.kind, t.alert_id, t.previous_level) == (TransitionKind.SUPPRESSED, 3, Level.RED)


def test_missing_data_during_a_cooldown_opens_nothing() -> None:
    recent = [closed(Level.YELLOW, timedelta(hours=1))]
    assert reconcile([said(None)], [], NOW, cooldown=COOLDOWN, recently_resolved=recent) == []


def test_an_open_alert_is_reconciled_as_usual_during_a_cooldown() -> None:
    recent = [closed(Level.YELLOW, timedelta(hours=1))]
    [t] = reconcile(
        [said(Level.ORANGE)],
        [opened(Level.ORANGE)],
        NOW,
        cooldown=COOLDOWN,
        recently_resolved=recent,
    )
    assert (t.kind, t.alert_id) == (TransitionKind.CONTINUED, 7)


def test_timing_gives_each_hazard_its_own_hold_and_cooldown_or_the_defaults() -> None:
    timing = Timing(
        hold=HOLD,
        cooldown=COOLDOWN,
        holds={"fog": timedelta(hours=1)},
        cooldowns={"fog": timedelta(hours=2), "blizzard": timedelta(hours=12)},
    )
    assert (timing.hold_of("fog"), timing.hold_of("cold_wave")) == (timedelta(hours=1), HOLD)
    assert (timing.cooldown_of("fog"), timing.cooldown_of("cold_wave")) == (
        timedelta(hours=2),
        COOLDOWN,
    )
    assert timing.longest_cooldown == timedelta(hours=12)


# --- sequences of polls: the lifecycle in miniature, applying each transition


def play(
    steps: list[tuple[float, Level | None]], hold: timedelta = HOLD, cooldown: timedelta = COOLDOWN
) -> list[str]:
    """Reconcile one zone and hazard at each (hours after NOW, level said; None = nothing).

    Returns the transition of each poll ("-" for none) as the lifecycle would
    apply it: an alert opens on new/upgraded/downgraded and closes on resolved.
    """
    alert: OpenAlert | None = None
    resolved: list[ClosedAlert] = []
    ids = itertools.count(1)
    out: list[str] = []
    for hours, level in steps:
        now = NOW + timedelta(hours=hours)
        transitions = reconcile(
            [said(level)] if level is not None else [],
            [alert] if alert is not None else [],
            now,
            hold=hold,
            cooldown=cooldown,
            recently_resolved=resolved,
        )
        if not transitions:
            out.append("-")
            continue
        [t] = transitions
        out.append(t.kind.value)
        if t.kind is TransitionKind.CONTINUED:
            assert alert is not None
            alert = replace(alert, calm_since=t.calm_since)
        elif t.kind is TransitionKind.RESOLVED:
            assert alert is not None
            resolved.append(ClosedAlert(alert.id, alert.zone_id, alert.hazard, alert.level, now))
            alert = None
        elif t.kind is not TransitionKind.SUPPRESSED:
            alert = OpenAlert(next(ids), t.zone_id, t.hazard, t.level)
    return out


BLUE, YELLOW, ORANGE = Level.BLUE, Level.YELLOW, Level.ORANGE


def test_flapping_yellow_nothing_yellow_within_the_hold_keeps_one_alert_open() -> None:
    assert play(
        [(0, YELLOW), (1, None), (2, YELLOW), (3, None), (5, YELLOW), (6, None), (7, YELLOW)]
    ) == [
        "new",
        "continued",
        "continued",
        "continued",
        "continued",
        "continued",
        "continued",
    ]


def test_flapping_between_two_levels_upgrades_once_and_steps_down_only_after_the_hold() -> None:
    assert play(
        [(0, YELLOW), (1, ORANGE), (2, YELLOW), (3, ORANGE), (4, YELLOW), (6, YELLOW), (7, YELLOW)]
    ) == [
        "new",
        "upgraded",
        "continued",
        "continued",
        "continued",
        "continued",
        "downgraded",
    ]


def test_a_warning_coming_back_within_the_cooldown_is_not_issued_again() -> None:
    assert play([(0, YELLOW), (1, None), (4, None), (5, YELLOW), (8, YELLOW), (9, BLUE)]) == [
        "new",
        "continued",
        "resolved",
        "suppressed",
        "suppressed",
        "suppressed",
    ]


def test_a_warning_coming_back_higher_within_the_cooldown_is_issued_at_once() -> None:
    assert play([(0, YELLOW), (1, None), (4, None), (5, ORANGE)]) == [
        "new",
        "continued",
        "resolved",
        "new",
    ]


def test_a_warning_coming_back_after_the_cooldown_is_issued_again() -> None:
    assert play([(0, YELLOW), (1, None), (4, None), (9, YELLOW), (10, YELLOW)]) == [
        "new",
        "continued",
        "resolved",
        "suppressed",
        "new",
    ]


def test_without_hold_and_cooldown_every_flap_is_a_new_warning() -> None:
    zero = timedelta(0)
    assert play([(0, YELLOW), (1, None), (2, YELLOW)], hold=zero, cooldown=zero) == [
        "new",
        "resolved",
        "new",
    ]
