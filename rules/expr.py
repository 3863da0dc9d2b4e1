"""Condition and series expressions: the AST, its canonical text, and the parser.

A condition string such as ``drop(daily_min(temperature_2m), 24h) >= $drop and
weather_code in [56, 57]`` is parsed by a small hand-written tokenizer and
recursive-descent parser. `$name` is a rule parameter: a number the rule
declares under `params:` and may change per zone; `bind()` replaces parameters
with their values before evaluation. Errors carry the 0-based `offset` of the offending
character inside the string, so the loader can point at file:line:column.

AST nodes are frozen dataclasses: hashable and comparable, and `str(node)` is a
canonical text (durations in hours, normalised spacing and numbers). The text is
used as the evidence key and equal nodes share one cached array.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, TypeVar, cast

from rules.config import parse_duration
from rules.variables import VARIABLES

DAILY_FUNCTIONS: tuple[str, ...] = ("daily_min", "daily_max")
WINDOW_FUNCTIONS: tuple[str, ...] = ("drop", "sum", "min", "max", "mean", "freeze_thaw")
POINTWISE_FUNCTIONS: tuple[str, ...] = ("beaufort",)
CONDITION_FUNCTIONS: tuple[str, ...] = ("count", "run")
"""Functions of a condition (not of a series) over a trailing window."""
FUNCTIONS: tuple[str, ...] = (
    "daily_min",
    "daily_max",
    "drop",
    "sum",
    "min",
    "max",
    "mean",
    "beaufort",
    "count",
    "run",
    "freeze_thaw",
)

Operator = Literal["<", "<=", ">", ">=", "==", "!="]
OPERATORS: tuple[str, ...] = ("<", "<=", ">", ">=", "==", "!=")
KEYWORDS: frozenset[str] = frozenset({"and", "or", "not", "in"})

_HOUR = timedelta(hours=1)


class ExprError(ValueError):
    """A condition or series expression that cannot be parsed.

    `offset` is the 0-based index of the offending character in the text.
    """

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


def whole_hours(text: str) -> int:
    """Hours in a duration that must be a positive whole number of hours (data is hourly).

    The text is in the project's one duration grammar (`rules.config.parse_duration`),
    so `2h`, `120m` and `1h60m` are all 2; `90m` parses but is refused here.
    """
    try:
        duration = parse_duration(text)
    except ValueError:
        # the grammar's own hint offers 0 and 90s, which no window can be
        raise ValueError(
            f"{text!r} is not a duration; write whole hours, e.g. 1h, 24h or 2d"
        ) from None
    if duration <= timedelta(0) or duration % _HOUR:
        raise ValueError(
            f"duration {text!r} must be a positive whole number of hours "
            "(the forecast is hourly), e.g. 1h, 24h or 2d"
        )
    return duration // _HOUR


def _number_text(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


# --- series expressions -------------------------------------------------------------

_T = TypeVar("_T")


def _hashed_once(cls: type[_T]) -> type[_T]:
    """Remember a (frozen, nested) node's hash: the evaluator looks nodes up in
    dicts thousands of times per batch, and the generated hash walks the whole tree.

    The remembered value is left out of pickles (string hashes differ between
    processes).
    """
    compute = cls.__hash__

    def __hash__(self: _T) -> int:
        state = self.__dict__
        cached: int | None = state.get("_hash")
        if cached is None:
            cached = state["_hash"] = compute(self)
        return cached

    def __getstate__(self: _T) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    setattr(cls, "__hash__", __hash__)  # noqa: B010
    setattr(cls, "__getstate__", __getstate__)  # noqa: B010 (a method, set after the fact)
    return cls


@_hashed_once
@dataclass(frozen=True)
class Var:
    """A raw forecast variable."""

    name: str

    def __str__(self) -> str:
        return self.name

    def variables(self) -> Iterator[str]:
        yield self.name


@_hashed_once
@dataclass(frozen=True)
class Call:
    """A function of a series; `hours` is the window of drop/sum/min/max/mean."""

    function: str
    arg: Series
    hours: int | None = None

    def __str__(self) -> str:
        if self.hours is None:
            return f"{self.function}({self.arg})"
        return f"{self.function}({self.arg}, {self.hours}h)"

    def variables(self) -> Iterator[str]:
        yield from self.arg.variables()


@_hashed_once
@dataclass(frozen=True)
class CondCall:
    """A function of a condition over a trailing window: `count(C, 24h)`, `run(C, 24h)`."""

    function: str
    condition: Condition
    hours: int

    def __str__(self) -> str:
        return f"{self.function}({self.condition}, {self.hours}h)"

    def variables(self) -> Iterator[str]:
        for series in self.condition.operands():
            yield from series.variables()


Series = Var | Call | CondCall


@_hashed_once
@dataclass(frozen=True)
class Param:
    """`$name`: a rule parameter standing for a number until `bind()` replaces it."""

    name: str

    def __str__(self) -> str:
        return f"${self.name}"


Number = float | Param


def _value_text(value: Number) -> str:
    return str(value) if isinstance(value, Param) else _number_text(value)


# --- conditions ---------------------------------------------------------------------


@_hashed_once
@dataclass(frozen=True)
class Compare:
    """`series OP value`."""

    series: Series
    op: Operator
    value: Number

    def __str__(self) -> str:
        return f"{self.series} {self.op} {_value_text(self.value)}"

    def operands(self) -> Iterator[Series]:
        yield self.series


@_hashed_once
@dataclass(frozen=True)
class InSet:
    """`series in [v, v, ...]`: set membership (not a range)."""

    series: Series
    values: tuple[Number, ...]

    def __str__(self) -> str:
        return f"{self.series} in [{', '.join(_value_text(v) for v in self.values)}]"

    def operands(self) -> Iterator[Series]:
        yield self.series


@_hashed_once
@dataclass(frozen=True)
class And:
    """Every item holds (at the same hour)."""

    items: tuple[Condition, ...]

    def __str__(self) -> str:
        return " and ".join(_wrap(item, (Or,)) for item in self.items)

    def operands(self) -> Iterator[Series]:
        for item in self.items:
            yield from item.operands()


@_hashed_once
@dataclass(frozen=True)
class Or:
    """At least one item holds."""

    items: tuple[Condition, ...]

    def __str__(self) -> str:
        return " or ".join(str(item) for item in self.items)

    def operands(self) -> Iterator[Series]:
        for item in self.items:
            yield from item.operands()


@_hashed_once
@dataclass(frozen=True)
class Not:
    """The item does not hold (unknown stays unknown)."""

    item: Condition

    def __str__(self) -> str:
        return f"not {_wrap(self.item, (And, Or))}"

    def operands(self) -> Iterator[Series]:
        yield from self.item.operands()


Condition = Compare | InSet | And | Or | Not


def _wrap(node: Condition, kinds: tuple[type, ...]) -> str:
    return f"({node})" if isinstance(node, kinds) else str(node)


def condition_series(condition: Condition) -> tuple[Series, ...]:
    """The distinct series compared in a condition, in order of appearance."""
    return tuple(dict.fromkeys(condition.operands()))


def lookback_hours(series: Series) -> int:
    """Hours of data before an hour that the series needs to be known at that hour.

    The feed must deliver this much history before `now`, or the first hours of
    every window are unknown (e.g. `drop(daily_min(X), 48h)` needs 48 + 23 hours).
    """
    if isinstance(series, Var):
        return 0
    if isinstance(series, CondCall):
        inner = max((lookback_hours(s) for s in series.condition.operands()), default=0)
        return inner + series.hours - 1
    inner = lookback_hours(series.arg)
    if series.function in DAILY_FUNCTIONS:
        return inner + 23  # the local day may have begun 23 hours earlier
    if series.function == "drop":
        return inner + (series.hours or 0)
    if series.function in WINDOW_FUNCTIONS:
        return inner + (series.hours or 1) - 1
    return inner


def condition_lookback(condition: Condition) -> int:
    """The longest history any series of the condition needs (see `lookback_hours`)."""
    return max((lookback_hours(series) for series in condition.operands()), default=0)


def condition_variables(condition: Condition) -> frozenset[str]:
    """The raw forecast variables a condition reads."""
    return frozenset(name for series in condition.operands() for name in series.variables())


def condition_params(condition: Condition) -> frozenset[str]:
    """The names of the parameters (`$name`) a condition uses, inside functions too."""
    names: set[str] = set()

    def visit(node: Condition) -> None:
        match node:
            case Compare(series=series, value=value):
                if isinstance(value, Param):
                    names.add(value.name)
                visit_series(series)
            case InSet(series=series, values=values):
                names.update(v.name for v in values if isinstance(v, Param))
                visit_series(series)
            case And(items=items) | Or(items=items):
                for item in items:
                    visit(item)
            case Not(item=item):
                visit(item)

    def visit_series(series: Series) -> None:
        if isinstance(series, CondCall):
            visit(series.condition)
        elif isinstance(series, Call):
            visit_series(series.arg)

    visit(condition)
    return frozenset(names)


def bind(condition: Condition, params: Mapping[str, float]) -> Condition:
    """The condition with every parameter replaced by its value (KeyError if one is missing)."""
    match condition:
        case Compare(series=series, op=op, value=value):
            number = params[value.name] if isinstance(value, Param) else value
            return Compare(_bind_series(series, params), op, float(number))
        case InSet(series=series, values=values):
            numbers = tuple(float(params[v.name]) if isinstance(v, Param) else v for v in values)
            return InSet(_bind_series(series, params), numbers)
        case And(items=items):
            return And(tuple(bind(item, params) for item in items))
        case Or(items=items):
            return Or(tuple(bind(item, params) for item in items))
        case Not(item=item):
            return Not(bind(item, params))
    raise TypeError(f"not a condition: {condition!r}")


def _bind_series(series: Series, params: Mapping[str, float]) -> Series:
    if isinstance(series, CondCall):
        return CondCall(series.function, bind(series.condition, params), series.hours)
    if isinstance(series, Call):
        return Call(series.function, _bind_series(series.arg, params), series.hours)
    return series


# --- tokenizer ----------------------------------------------------------------------

TokenKind = Literal["name", "number", "duration", "param", "op", "punct", "end"]


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str
    offset: int

    def describe(self) -> str:
        return "end of expression" if self.kind == "end" else repr(self.text)


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<duration>\d+[A-Za-z]\w*)
  | (?P<number>\d+(?:\.\d*)?|\.\d+)
  | (?P<name>[A-Za-z_]\w*)
  | (?P<param>\$[A-Za-z_]\w*)
  | (?P<op><=|>=|==|!=|<|>)
  | (?P<punct>[()\[\],-])
    """,
    re.VERBOSE,
)

_MISTAKES = {
    "=": "use '==' to compare for equality",
    "&": "use 'and' to combine conditions",
    "|": "use 'or' to combine conditions",
    "!": "use 'not' to negate a condition, or '!=' for 'not equal'",
    "≥": "write '>='",
    "≤": "write '<='",
    "≠": "write '!='",
    "（": "write an ASCII '('",
    "）": "write an ASCII ')'",
    "，": "write an ASCII ','",
    "$": "write a parameter as $name, e.g. $drop",
}


def tokenize(text: str) -> list[Token]:
    """Split an expression into tokens; ExprError at the first unexpected character."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            char = text[pos]
            hint = _MISTAKES.get(char, "expected a name, number, operator or ( ) [ ] ,")
            raise ExprError(f"unexpected character {char!r}; {hint}", pos)
        kind = match.lastgroup
        if kind != "space":
            tokens.append(Token(cast(TokenKind, kind), match.group(), pos))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# --- parser -------------------------------------------------------------------------


def parse_condition(text: str, params: Collection[str] = ()) -> Condition:
    """Parse a condition string (comparisons combined with and/or/not/parentheses).

    `params` are the parameter names the rule declares; any other `$name` is an error.
    """
    parser = _Parser(text, params)
    node = parser.or_expr()
    parser.expect_end("'and', 'or' or the end of the condition")
    return node


def parse_series(text: str, params: Collection[str] = ()) -> Series:
    """Parse a series expression such as `drop(daily_min(temperature_2m), 24h)`."""
    parser = _Parser(text, params)
    node = parser.series()
    parser.expect_end("the end of the expression")
    return node


class _Parser:
    def __init__(self, text: str, params: Collection[str] = ()) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.params = params

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def at(self, text: str) -> bool:
        return self.token.kind in ("name", "op", "punct") and self.token.text == text

    def fail(self, expected: str, token: Token | None = None) -> ExprError:
        token = token or self.token
        message = f"expected {expected}, found {token.describe()}"
        if token.kind == "name" and token.text.lower() in KEYWORDS - {token.text}:
            message += f"; write {token.text.lower()!r} in lower case"
        return ExprError(message, token.offset)

    def expect(self, text: str, expected: str) -> Token:
        if not self.at(text):
            raise self.fail(expected)
        return self.advance()

    def expect_end(self, expected: str) -> None:
        if self.token.kind != "end":
            if self.at(")"):
                raise ExprError("unbalanced ')': no '(' to close", self.token.offset)
            raise self.fail(expected)

    # condition := or ; or := and ('or' and)* ; and := not ('and' not)*
    def or_expr(self) -> Condition:
        items = [self.and_expr()]
        while self.at("or"):
            self.advance()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Condition:
        items = [self.not_expr()]
        while self.at("and"):
            self.advance()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_expr(self) -> Condition:
        if self.at("not"):
            self.advance()
            return Not(self.not_expr())
        if self.at("("):
            opening = self.advance()
            node = self.or_expr()
            if not self.at(")"):
                if self.token.kind == "end":
                    raise ExprError("unclosed '(': expected ')'", opening.offset)
                raise self.fail("')', 'and' or 'or'")
            self.advance()
            return node
        return self.comparison()

    def comparison(self) -> Condition:
        series = self.series()
        if self.token.kind == "op":
            op = cast(Operator, self.advance().text)
            return Compare(series, op, self.number(f"a number after {op!r}"))
        if self.at("in"):
            self.advance()
            self.expect("[", "'[' to start the list of values after 'in'")
            values = [self.number("a number in the list")]
            while self.at(","):
                self.advance()
                values.append(self.number("a number after ','"))
            self.expect("]", "',' or ']' to close the list")
            return InSet(series, tuple(values))
        raise self.fail(f"a comparison (< <= > >= == != or 'in') after '{series}'")

    def number(self, expected: str) -> Number:
        sign = 1.0
        start = self.token
        if start.kind == "param":
            return self.param()
        if self.at("-"):
            self.advance()
            sign = -1.0
        token = self.token
        if token.kind == "param":
            raise ExprError(
                f"a parameter cannot be negated; declare it negative instead "
                f"(e.g. {token.text[1:]}: -3)",
                start.offset,
            )
        if token.kind == "number":
            self.advance()
            return sign * float(token.text)
        if token.kind == "duration":
            raise ExprError(
                f"expected {expected}, found {token.describe()}; thresholds are plain numbers "
                "in the variable's unit (write 500, not 500m)",
                token.offset,
            )
        raise self.fail(expected, token if sign < 0 else start)

    def param(self) -> Param:
        token = self.advance()
        name = token.text[1:]
        if name not in self.params:
            if self.params:
                declared = sorted(self.params)
                hint = f"the rule declares ${', $'.join(declared)}"
                close = difflib.get_close_matches(name, declared, n=1)
                if close:
                    hint = f"did you mean '${close[0]}'? ({hint})"
            else:
                hint = f"declare it in the rule's params, e.g. params: {{{name}: 10}}"
            raise ExprError(f"unknown parameter '{token.text}'; {hint}", token.offset)
        return Param(name)

    def series(self) -> Series:
        token = self.token
        if token.kind == "param":
            raise ExprError(
                f"a parameter stands for a number and goes after the comparison, "
                f"e.g. temperature_2m <= {token.text}",
                token.offset,
            )
        if token.kind != "name" or token.text in KEYWORDS:
            raise self.fail("a variable or function such as temperature_2m or daily_min(...)")
        self.advance()
        if self.at("("):
            return self.call(token)
        return self.variable(token)

    def variable(self, token: Token) -> Var:
        name = token.text
        if name not in VARIABLES:
            if name in FUNCTIONS:
                raise ExprError(f"{name} is a function; write {name}(...)", token.offset)
            if name.lower() in KEYWORDS:
                raise ExprError(f"write {name.lower()!r} in lower case", token.offset)
            raise ExprError(
                f"unknown variable {name!r}; {_suggest(name, tuple(VARIABLES), always_list=False)}",
                token.offset,
            )
        return Var(name)

    def call(self, name: Token) -> Series:
        function = name.text
        if function not in FUNCTIONS:
            if function in VARIABLES:
                raise ExprError(f"{function} is a variable, not a function", name.offset)
            raise ExprError(
                f"unknown function {function!r}; {_suggest(function, FUNCTIONS, always_list=True)}",
                name.offset,
            )
        self.advance()  # '('
        if function in CONDITION_FUNCTIONS:
            condition = self.or_expr()
            self.expect(",", f"',' and a window such as 24h: {function}(condition, 24h)")
            window = self.duration(function)
            self.expect(")", f"')' to close {function}(")
            return CondCall(function, condition, window)
        arg = self.series()
        hours: int | None = None
        if function in WINDOW_FUNCTIONS:
            self.expect(",", f"',' and a window such as 24h: {function}(X, 24h)")
            hours = self.duration(function)
        elif self.at(","):
            raise ExprError(f"{function}() takes one argument and no window", self.token.offset)
        self.expect(")", f"')' to close {function}(")
        return Call(function, arg, hours)

    def duration(self, function: str) -> int:
        token = self.token
        if token.kind == "number":
            raise ExprError(
                f"window of {function}() needs a unit: write {token.text}h", token.offset
            )
        if token.kind != "duration":
            raise self.fail(f"a window such as 24h for {function}()")
        try:
            hours = whole_hours(token.text)
        except ValueError as exc:
            raise ExprError(f"window of {function}(): {exc}", token.offset) from None
        self.advance()
        return hours


def _suggest(name: str, known: tuple[str, ...], *, always_list: bool) -> str:
    listing = f"expected one of {', '.join(known)}"
    close = difflib.get_close_matches(name, known, n=1)
    if not close:
        return listing
    guess = f"did you mean {close[0]!r}?"
    return f"{guess} ({listing})" if always_list else guess
