"""rules.config: the one duration grammar and the one strict base of every configuration file."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from rules.config import Duration, Strict, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("1h30m", timedelta(minutes=90)),
        ("90m", timedelta(minutes=90)),
        ("3d", timedelta(days=3)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        (0, timedelta(0)),
    ],
)
def test_a_duration_is_days_hours_minutes_seconds_in_that_order(
    text: str | int, expected: timedelta
) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "h", "30", "30 m", "30min", "2H", "30m1h", "-1h"])
def test_anything_else_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_a_bare_number_other_than_zero_is_refused_for_want_of_a_unit() -> None:
    with pytest.raises(ValueError, match="write a duration with its unit"):
        parse_duration(30)


class _Step(Strict):
    after: Duration


def test_the_strict_base_refuses_unknown_keys_and_is_frozen() -> None:
    with pytest.raises(ValidationError, match="after_"):
        _Step.model_validate({"after": "1h", "after_": "2h"})
    step = _Step.model_validate({"after": "1h30m"})
    assert step.after == timedelta(minutes=90)
    with pytest.raises(ValidationError):
        step.after = timedelta(0)  # type: ignore[misc]
