"""Three-valued (Kleene) truth of conditions, as arrays over points × hours.

A condition evaluates to two boolean arrays: `true` and `known`. Where a series
is missing (NaN) a comparison is unknown; `and`/`or` are unknown only when the
known parts do not already decide (false and unknown is false; true or unknown
is true). Missing data therefore never reads as "no hazard".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rules.expr import And, Compare, Condition, InSet, Not, Operator, Or, Param
from rules.series import SeriesCache
from rules.types import FloatArray

BoolArray = npt.NDArray[np.bool_]


def _compare(x: FloatArray, op: Operator, value: float) -> BoolArray:
    with np.errstate(invalid="ignore"):
        match op:
            case "<":
                return np.less(x, value)
            case "<=":
                return np.less_equal(x, value)
            case ">":
                return np.greater(x, value)
            case ">=":
                return np.greater_equal(x, value)
            case "==":
                return np.equal(x, value)
            case "!=":
                return np.not_equal(x, value)
    raise ValueError(f"unknown operator {op!r}")


@dataclass(frozen=True)
class Truth:
    """Where a condition holds (`true`) and where its value is known (`known`).

    `true` implies `known`.
    """

    true: BoolArray
    known: BoolArray

    def __and__(self, other: Truth) -> Truth:
        a, b = self, other
        if a.known is b.known:  # one mask (e.g. both complete): known where it is
            return Truth(a.true & b.true, a.known)
        known = (a.known & b.known) | (a.known & ~a.true) | (b.known & ~b.true)
        return Truth(a.true & b.true, known)

    def __or__(self, other: Truth) -> Truth:
        a, b = self, other
        if a.known is b.known:
            return Truth(a.true | b.true, a.known)
        return Truth(a.true | b.true, (a.known & b.known) | a.true | b.true)

    def __invert__(self) -> Truth:
        return Truth(self.known & ~self.true, self.known)


class TruthCache:
    """Truth arrays of conditions for one batch; equal conditions are computed once."""

    def __init__(self, series: SeriesCache) -> None:
        self.series = series
        self._truths: dict[Condition, Truth] = {}
        series.attach(self)  # count()/run() inside series share these truths

    def get(self, condition: Condition) -> Truth:
        """The truth of a condition at every point and hour."""
        cached = self._truths.get(condition)
        if cached is None:
            cached = self._compute(condition)
            self._truths[condition] = cached
        return cached

    def _compute(self, condition: Condition) -> Truth:
        match condition:
            case Compare(series=series, op=op, value=value):
                if isinstance(value, Param):
                    raise ValueError(f"parameter {value} is not bound; evaluate bind(condition)")
                x = self.series.get(series)
                known = self.series.known(series)
                true = _compare(x, op, value)
                if known is not self.series.everywhere:
                    true &= known  # NaN != v is True in numpy: mask with known
                return Truth(true, known)
            case InSet(series=series, values=values):
                numbers = [value for value in values if not isinstance(value, Param)]
                if len(numbers) != len(values):
                    raise ValueError(f"{condition}: parameters are not bound")
                x = self.series.get(series)
                known = self.series.known(series)
                return Truth(np.isin(x, numbers) & known, known)  # NaN is in no set, but be sure
            case And(items=items):
                result = self.get(items[0])
                for item in items[1:]:
                    result = result & self.get(item)
                return result
            case Or(items=items):
                result = self.get(items[0])
                for item in items[1:]:
                    result = result | self.get(item)
                return result
            case Not(item=item):
                return ~self.get(item)
        raise TypeError(f"not a condition: {condition!r}")
