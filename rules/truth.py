"""Three-valued (Kleene) truth of conditions, as arrays over points × hours.

A condition evaluates to two boolean arrays: `true` and `known`. Where a series
is missing (NaN) a comparison is unknown; `and`/`or` are unknown only when the
known parts do not already decide (false and unknown is false; true or unknown
is true). Missing data therefore never reads as "no hazard".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rules.expr import And, Compare, Condition, InSet, Not, Operator, Or, Param, Series
from rules.series import SeriesCache, Span
from rules.types import FloatArray

BoolArray = npt.NDArray[np.bool_]


# Forecast values are decimals (0.1 mm, 0.1 ℃) and so are thresholds, but sums
# and differences are computed in binary: 0.6 × 7 = 4.199999999999999 and
# −4.7 − (−12.7) = 7.999999999999999. A value this close to a threshold *is*
# the threshold, so "≥ 4.2" holds and "> 8" does not.
TOLERANCE = 1e-9


def _compare(x: FloatArray, op: Operator, value: float) -> BoolArray:
    with np.errstate(invalid="ignore"):
        match op:
            case "<":
                return np.less(x, value - TOLERANCE)
            case "<=":
                return np.less_equal(x, value + TOLERANCE)
            case ">":
                return np.greater(x, value + TOLERANCE)
            case ">=":
                return np.greater_equal(x, value - TOLERANCE)
            case "==":
                return np.less_equal(np.abs(x - value), TOLERANCE)
            case "!=":
                return np.greater(np.abs(x - value), TOLERANCE)
    raise ValueError(f"unknown operator {op!r}")


@dataclass(frozen=True)
class Truth:
    """Where a condition holds (`true`) and where its value is known (`known`).

    `true` implies `known`. `complete` says that `known` is true everywhere
    (nothing was missing): the operators then skip the three-valued work.
    """

    true: BoolArray
    known: BoolArray
    complete: bool = False

    def __and__(self, other: Truth) -> Truth:
        a, b = self, other
        if a.complete and b.complete:
            return Truth(a.true & b.true, a.known, True)
        known = (a.known & b.known) | (a.known & ~a.true) | (b.known & ~b.true)
        return Truth(a.true & b.true, known)

    def __or__(self, other: Truth) -> Truth:
        a, b = self, other
        if a.complete and b.complete:
            return Truth(a.true | b.true, a.known, True)
        return Truth(a.true | b.true, (a.known & b.known) | a.true | b.true)

    def __invert__(self) -> Truth:
        return Truth(self.known & ~self.true, self.known, self.complete)

    def part(self, start: int, stop: int) -> Truth:
        """The same truth over its columns [start, stop)."""
        if start == 0 and stop == self.true.shape[1]:
            return self
        return Truth(self.true[:, start:stop], self.known[:, start:stop], self.complete)


class TruthCache:
    """Truth arrays of conditions for one batch; equal conditions are computed once.

    A condition's arrays cover the hours of its span, from the series cache's
    `spans` (the whole batch when not given).
    """

    def __init__(self, series: SeriesCache) -> None:
        self.series = series
        self._truths: dict[Condition, Truth] = {}
        series.attach(self)  # count()/run() inside series share these truths

    def span(self, condition: Condition) -> Span:
        """The hours (batch columns) the truth of a condition covers."""
        return self.series.span(condition)

    def start(self, condition: Condition) -> int:
        """The first hour (batch column) the truth of a condition covers."""
        return self.series.span(condition)[0]

    def get(self, condition: Condition) -> Truth:
        """The truth of a condition at every point and hour of its span."""
        cached = self._truths.get(condition)
        if cached is None:
            cached = self._compute(condition)
            self._truths[condition] = cached
        return cached

    def _item(self, item: Condition, span: Span) -> Truth:
        first = self.start(item)
        return self.get(item).part(span[0] - first, span[1] - first)

    def _compute(self, condition: Condition) -> Truth:
        span = self.span(condition)
        match condition:
            case Compare(series=series, op=op, value=value):
                if isinstance(value, Param):
                    raise ValueError(f"parameter {value} is not bound; evaluate bind(condition)")
                return self._compared(series, span, lambda x: _compare(x, op, value))
            case InSet(series=series, values=values):
                numbers = [value for value in values if not isinstance(value, Param)]
                if len(numbers) != len(values):
                    raise ValueError(f"{condition}: parameters are not bound")
                return self._compared(series, span, lambda x: np.isin(x, numbers))
            case And(items=items):
                result = self._item(items[0], span)
                for item in items[1:]:
                    result = result & self._item(item, span)
                return result
            case Or(items=items):
                result = self._item(items[0], span)
                for item in items[1:]:
                    result = result | self._item(item, span)
                return result
            case Not(item=item):
                return ~self._item(item, span)
        raise TypeError(f"not a condition: {condition!r}")

    def _compared(
        self, series: Series, span: Span, test: Callable[[FloatArray], BoolArray]
    ) -> Truth:
        x = self.series.at(series, span)
        known = self.series.known(series)
        true = test(x)
        if known is None:
            return Truth(true, self.series.everywhere(span), True)
        offset = self.series.start(series)
        known = known[:, span[0] - offset : span[1] - offset]
        true &= known  # NaN != v is True in numpy: mask with known
        return Truth(true, known)
