"""The forecast variable registry: one list that the rule parser and the feeds both read."""

from __future__ import annotations

import pytest

from rules.expr import ExprError, Var, parse_series
from rules.variables import EXPECTED_UNITS, VARIABLES


@pytest.mark.parametrize("name", list(VARIABLES))
def test_every_registered_variable_is_a_series_a_rule_may_read(name: str) -> None:
    assert parse_series(name) == Var(name)


def test_a_variable_outside_the_registry_is_refused_by_the_parser() -> None:
    with pytest.raises(ExprError, match="unknown variable 'cloud_cover'"):
        parse_series("cloud_cover")


def test_the_feeds_check_each_variable_against_its_registered_unit() -> None:
    assert {name: {v.unit} for name, v in VARIABLES.items()} == EXPECTED_UNITS


def test_every_variable_says_what_it_measures() -> None:
    assert all(v.meaning and v.name == name for name, v in VARIABLES.items())
