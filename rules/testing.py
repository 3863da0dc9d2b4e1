"""Rule unit tests (`yujing rules test`), modelled on `promtool test rules`.

A test file names rule files, zones, hourly input series per forecast point in
a compact notation, an evaluation time, and the assessments expected then
(docs/rules.md, "Testing rules"). This module parses such files (every mistake
at file:line:column), builds the forecast batch, evaluates the rules with
`rules.evaluate.evaluate`, and compares what fired with what was expected,
zone by zone and hazard by hazard. It reads YAML files and does nothing else
with the outside world; printing and exit codes belong to the CLI.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from pydantic import BeforeValidator, Field, ValidationError

from rules.config import (
    ConfigError,
    Document,
    Loc,
    Problem,
    load_yaml,
    parse_duration,
    problems_from_validation,
)
from rules.evaluate import evaluate
from rules.loader import LIBRARY, library_names, load_ruleset
from rules.ruleset import RuleSet
from rules.schema import RiskLevel, Uncoerced, ZoneKind
from rules.types import Assessment, ForecastBatch, Level, OfficialWarning, ZoneSpec

DEFAULT_TIMEZONE = "Asia/Shanghai"
DEFAULT_LOCATION = (37.43, 110.89)  # the seat of the example county (柳林镇)


# --- the compact notation for hourly values ------------------------------------------


class NotationError(ValueError):
    """A series notation that cannot be read; `offset` is the 0-based bad character."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_ITEM = re.compile(
    rf"""
    (?P<missing>_)(?:x(?P<missing_count>\d+))?
  | (?P<start>{_NUMBER})
    (?:(?P<sign>[+-])(?P<step>\d+(?:\.\d*)?|\.\d+))?
    (?:x(?P<count>\d+))?
    """,
    re.VERBOSE,
)
_NOTATION_HELP = "expected a number (4.5), a repeat (4.5x12), a ramp (2+0.5x6), _ or _x3"


def parse_values(text: str) -> list[float]:
    """Hourly values from the compact notation, one item per hour unless repeated.

    `4.5` one value; `4.5x12` twelve times 4.5; `2+0.5x6` six values from 2 in
    steps of 0.5 (2, 2.5 … 4.5; `10-2x3` is 10, 8, 6); `_` one missing hour,
    `_x3` three. Unlike promtool, `xN` always means N values. Ramps are computed
    in decimal, so `0+0.1x4` is exactly 0, 0.1, 0.2, 0.3.
    """
    values: list[float] = []
    for match in re.finditer(r"\S+", text):
        values.extend(_item(match.group(), match.start()))
    if not values:
        raise NotationError(f"no values; {_NOTATION_HELP}", 0)
    return values


def _item(token: str, offset: int) -> list[float]:
    match = _ITEM.fullmatch(token)
    if match is None:
        hint = _NOTATION_HELP
        if "," in token:
            hint = "separate values with spaces, not commas"
        elif "+-" in token or "-+" in token:
            hint = "write a falling ramp as 10-2x3 (10, 8, 6), a rising one as 2+0.5x6"
        elif "*" in token or "×" in token:
            hint = "write repeats with a lower-case x: 4.5x12"
        elif token.lower() in ("nan", "null", "none", "-"):
            hint = "write a missing hour as _"
        raise NotationError(f"cannot read {token!r}; {hint}", offset)
    if match.group("missing"):
        count = _count(match.group("missing_count"), token, offset)
        return [float("nan")] * count
    start = Decimal(match.group("start"))
    count = _count(match.group("count"), token, offset)
    if match.group("step") is None:
        return [float(start)] * count
    if match.group("count") is None:
        raise NotationError(f"ramp {token!r} needs a count: write {token}xN for N values", offset)
    step = Decimal(match.group("step")) * (-1 if match.group("sign") == "-" else 1)
    return [float(start + k * step) for k in range(count)]


def _count(text: str | None, token: str, offset: int) -> int:
    if text is None:
        return 1
    if int(text) < 1:
        raise NotationError(f"{token!r} repeats zero times; the count must be at least 1", offset)
    return int(text)


# --- the YAML shape of a test file ---------------------------------------------------


def _time_text(value: Any) -> Any:
    # YAML reads unquoted 2026-01-05T08:00:00+08:00 as a timestamp: accept it as such
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _values_text(value: Any) -> Any:
    # `visibility: 400` is one hour of 400
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


TimeText = Annotated[str, BeforeValidator(_time_text)]
ValuesText = Annotated[str, BeforeValidator(_values_text)]
ExpectedLevel = Literal["blue", "yellow", "orange", "red", "indeterminate"]


class LocationDecl(Uncoerced):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class ZoneDecl(Uncoerced):
    """A zone of a test; everything but the id has a default."""

    id: str = Field(min_length=1)
    point: str | None = None  # default: the zone's id
    name: str | None = None
    kind: ZoneKind = "landslide"
    township: str = "柳林镇"
    village: str = ""
    risk: RiskLevel = "high"
    tags: list[str] = Field(default_factory=list)
    location: LocationDecl | None = None


class OfficialDecl(Uncoerced):
    """An official warning in force during a test (`official:`), for levels on warnings."""

    event: str = Field(min_length=1)
    level: Literal["blue", "yellow", "orange", "red"]
    zones: list[str] | None = Field(default=None, min_length=1)  # default: every zone
    onset: TimeText
    expires: TimeText | None = None
    authority: str = "柳林县气象台"


class ExpectDecl(Uncoerced):
    """One expected assessment; `until`, `evidence`, `rule`, `undecided_above` are optional."""

    zone: str
    hazard: str
    level: ExpectedLevel
    onset: TimeText | None = None
    until: TimeText | None = None
    evidence: dict[str, float] | None = None
    rule: str | None = None
    undecided_above: Literal["blue", "yellow", "orange", "red"] | None = None
    authority: str | None = None


class TestDecl(Uncoerced):
    """One test: input series, evaluation time and the expected assessments."""

    name: str = Field(min_length=1)
    start: TimeText | None = None
    at: TimeText | None = None
    zones: list[ZoneDecl] | None = None
    series: dict[str, dict[str, ValuesText]] = Field(min_length=1)
    official: list[OfficialDecl] | None = None
    expect: list[ExpectDecl]


class TestFile(Uncoerced):
    """A whole test file."""

    rule_files: list[str] = Field(min_length=1)
    timezone: str = DEFAULT_TIMEZONE
    start: TimeText | None = None
    at: TimeText | None = None
    zones: list[ZoneDecl] | None = None
    series: dict[str, ValuesText] = Field(default_factory=dict)
    official: list[OfficialDecl] = Field(default_factory=list)
    tests: list[TestDecl] = Field(min_length=1)


# --- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TestResult:
    """The outcome of one test: `diff` lines are empty when it passed."""

    file: str
    line: int
    column: int
    name: str
    diff: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.diff


@dataclass
class Report:
    """Results and problems of a run over one or more test files."""

    results: list[TestResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def failed(self) -> list[TestResult]:
        return [result for result in self.results if not result.passed]

    @property
    def ok(self) -> bool:
        return not self.problems and not self.failed and bool(self.results)

    def lines(self, *, verbose: bool = False) -> list[str]:
        """Each failure with its diff, then a summary (problems are listed apart)."""
        out: list[str] = []
        for result in self.results:
            where = f"{result.file}:{result.line}:{result.column}"
            if result.passed:
                if verbose:
                    out.append(f"{where}: ok: {result.name}")
                continue
            out.append(f"{where}: FAILED: {result.name}")
            out.extend(f"  {line}" for line in result.diff)
        summary = f"{len(self.results)} test(s), {len(self.failed)} failed"
        if self.problems:
            summary += f", {len(self.problems)} problem(s) in test or rule files"
        out.append(summary)
        return out


def run_test_files(paths: Iterable[Path]) -> Report:
    """Run every test of the given files (a directory runs its `*.yaml` in name order)."""
    report = Report()
    for path in _test_files(paths, report.problems):
        run_test_file(path, report)
    report.problems = list(dict.fromkeys(report.problems))  # a file default, once
    return report


def _test_files(paths: Iterable[Path], problems: list[Problem]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.yaml"), key=lambda p: p.name)
            if not found:
                problems.append(
                    Problem(str(path), 1, 1, "no test files (*.yaml) in this directory")
                )
            files.extend(found)
        else:
            files.append(path)
    return files


def run_test_file(path: Path, report: Report | None = None) -> Report:
    """Run the tests of one file, adding results and problems to `report`."""
    report = report if report is not None else Report()
    try:
        doc = load_yaml(path)
    except ConfigError as exc:
        report.problems.extend(exc.problems)
        return report
    try:
        spec = TestFile.model_validate({} if doc.data is None else doc.data)
    except ValidationError as exc:
        report.problems.extend(problems_from_validation(doc, exc))
        return report
    suite = _Suite(path, doc, spec, report.problems)
    ruleset = suite.ruleset()
    cases = [suite.case(index, test) for index, test in enumerate(spec.tests)]
    if ruleset is None:
        return report
    if not suite.known_hazards(ruleset):
        return report
    for case in cases:
        if case is not None:
            report.results.append(case.run(ruleset))
    return report


# --- one file --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Expected:
    level: Level | None
    onset: datetime | None
    until: datetime | None
    evidence: Mapping[str, float] | None
    rule: str | None
    undecided_above: Level | None
    authority: str | None = None


@dataclass(frozen=True)
class _Case:
    """A test ready to run: batch, zones, evaluation time and expectations."""

    file: str
    line: int
    column: int
    name: str
    batch: ForecastBatch
    zones: tuple[ZoneSpec, ...]
    now: datetime
    timezone: str
    expected: Mapping[tuple[str, str], _Expected]
    official: tuple[OfficialWarning, ...] = ()

    def run(self, ruleset: RuleSet) -> TestResult:
        try:
            got = evaluate(
                ruleset, self.batch, list(self.zones), self.now, self.timezone, self.official
            )
        except Exception as exc:  # a test runner reports, whatever the engine raises
            return self._result((f"evaluation failed: {type(exc).__name__}: {exc}",))
        actual = {(a.zone_id, a.hazard): a for a in got}
        diff: list[str] = []
        for key in sorted(set(actual) | set(self.expected)):
            lines = _compare(self.expected.get(key), actual.get(key), ZoneInfo(self.timezone))
            if lines:
                diff.append(f"{key[0]} {key[1]}:")
                diff.extend(f"  {line}" for line in lines)
        return self._result(tuple(diff))

    def _result(self, diff: tuple[str, ...]) -> TestResult:
        return TestResult(self.file, self.line, self.column, self.name, diff)


class _Suite:
    """The shared parts of one test file and the checks that need its positions."""

    def __init__(self, path: Path, doc: Document, spec: TestFile, problems: list[Problem]) -> None:
        self.path = path
        self.doc = doc
        self.spec = spec
        self.problems = problems
        self.tz: ZoneInfo | None = None
        try:
            self.tz = ZoneInfo(spec.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            self.problem(
                ("timezone",), f"unknown timezone {spec.timezone!r}; expected e.g. Asia/Shanghai"
            )
        self.defaults: dict[str, list[float]] = {}
        for name, text in spec.series.items():
            values = self.values(("series", name), text)
            if values is not None:
                self.defaults[name] = values

    def problem(self, loc: Loc, message: str) -> None:
        self.problems.append(self.doc.problem(loc, message))

    def ruleset(self) -> RuleSet | None:
        files: list[Path] = []
        for index, name in enumerate(self.spec.rule_files):
            path = self.rule_file(name)
            if path is None:
                self.problem(("rule_files", index), _unknown_library(name))
            else:
                files.append(path)
        if len(files) != len(self.spec.rule_files):
            return None
        try:
            return load_ruleset(files)
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return None

    def known_hazards(self, ruleset: RuleSet) -> bool:
        """Whether every expectation names a hazard of the rules (a typo never passes)."""
        hazards = sorted({rule.hazard for rule in ruleset.rules})
        ok = True
        for index, test in enumerate(self.spec.tests):
            for item, expected in enumerate(test.expect):
                if expected.hazard not in hazards:
                    self.problem(
                        ("tests", index, "expect", item, "hazard"),
                        f"unknown hazard {expected.hazard!r}; the rules have "
                        f"{', '.join(hazards) or 'no rules'}",
                    )
                    ok = False
        return ok

    def rule_file(self, name: str) -> Path | None:
        # the same convention as `include:` in rule files
        if "/" in name or "\\" in name or name.endswith((".yaml", ".yml")):
            return self.path.parent / name
        library = LIBRARY / f"{name}.yaml"
        return library if library.is_file() else None

    def values(self, loc: Loc, text: str) -> list[float] | None:
        try:
            return parse_values(text)
        except NotationError as exc:
            line, column = self.doc.where(loc)
            self.problems.append(
                Problem(
                    self.doc.path,
                    line,
                    _column(self.path, line, column, text, exc.offset),
                    exc.message,
                )
            )
            return None

    def time(self, loc: Loc, text: str, start: datetime | None) -> datetime | None:
        """An ISO 8601 time (without offset: the file's timezone) or `+6h` after `start`."""
        if self.tz is None:
            return None
        if text.startswith("+"):
            if start is None:
                self.problem(loc, f"{text!r} is relative to the series start; give a start")
                return None
            try:
                return start + parse_duration(text[1:])
            except ValueError:
                self.problem(loc, f"invalid time {text!r}; expected a duration such as +6h")
                return None
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            self.problem(
                loc,
                f"invalid time {text!r}; expected ISO 8601 such as 2026-01-05T08:00 "
                "(the file's timezone) or 2026-01-05T08:00:00+08:00, or +6h after the start",
            )
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=self.tz)
        return value.astimezone(UTC)

    def case(self, index: int, test: TestDecl) -> _Case | None:
        loc: Loc = ("tests", index)
        before = len(self.problems)
        start = self.start(loc, test)
        now = None
        at_text = test.at if test.at is not None else self.spec.at
        if at_text is None:
            self.problem((*loc, "name"), "missing evaluation time 'at' (in the test or the file)")
        else:
            at_loc = (*loc, "at") if test.at is not None else ("at",)
            now = self.time(at_loc, at_text, start)
        batch = self.batch(loc, test, start)
        zones = self.zones(loc, test, batch)
        expected = self.expectations(loc, test, start, zones)
        official = self.official(loc, test, start, zones)
        if len(self.problems) > before or start is None or now is None or batch is None:
            return None
        assert self.tz is not None and zones is not None and expected is not None
        line, column = self.doc.where(loc)
        return _Case(
            self.doc.path,
            line,
            column,
            test.name,
            batch,
            zones,
            now,
            self.spec.timezone,
            expected,
            official,
        )

    def official(
        self, loc: Loc, test: TestDecl, start: datetime | None, zones: tuple[ZoneSpec, ...] | None
    ) -> tuple[OfficialWarning, ...]:
        """The official warnings in force in a test (its own, else the file's)."""
        declared = test.official if test.official is not None else self.spec.official
        where: Loc = (*loc, "official") if test.official is not None else ("official",)
        every = frozenset(zone.id for zone in zones or ())
        out = []
        for index, decl in enumerate(declared):
            onset = self.time((*where, index, "onset"), decl.onset, start)
            expires = self.optional_time((*where, index, "expires"), decl.expires, start)
            unknown = sorted(set(decl.zones or ()) - every)
            if zones is not None and unknown:
                self.problem(
                    (*where, index, "zones"),
                    f"unknown zone {unknown[0]!r}; expected one of {', '.join(sorted(every))}",
                )
            if onset is None:
                continue
            out.append(
                OfficialWarning(
                    id=f"test-{index}",
                    event=decl.event,
                    level=Level.parse(decl.level),
                    zone_ids=frozenset(decl.zones) if decl.zones is not None else every,
                    onset=onset,
                    expires=expires,
                    authority=decl.authority,
                )
            )
        return tuple(out)

    def start(self, loc: Loc, test: TestDecl) -> datetime | None:
        text = test.start if test.start is not None else self.spec.start
        if text is None:
            self.problem((*loc, "name"), "missing series 'start' (in the test or the file)")
            return None
        start_loc = (*loc, "start") if test.start is not None else ("start",)
        if text.startswith("+"):
            self.problem(start_loc, "the series start must be a time, not a duration")
            return None
        start = self.time(start_loc, text, None)
        if start is not None and (start.minute or start.second or start.microsecond):
            self.problem(start_loc, "the series start must be on the hour (values are hourly)")
            return None
        return start

    def batch(self, loc: Loc, test: TestDecl, start: datetime | None) -> ForecastBatch | None:
        rows: dict[str, dict[str, list[float]]] = {}
        ok = True
        for point, variables in test.series.items():
            row = dict(self.defaults)
            for name, text in variables.items():
                values = self.values((*loc, "series", point, name), text)
                if values is None:
                    ok = False
                else:
                    row[name] = values
            rows[point] = row
        hours: tuple[int, str] | None = None
        for point, row in rows.items():
            for name, values in row.items():
                if hours is None:
                    hours = (len(values), f"{point} {name}")
                elif len(values) != hours[0]:
                    own = name in test.series[point]
                    self.problem(
                        (*loc, "series", point, name) if own else ("series", name),
                        f"{point} {name} has {len(values)} hourly values but {hours[1]} has "
                        f"{hours[0]}; every series of a test must cover the same hours",
                    )
                    ok = False
        if not ok or start is None:
            return None
        if hours is None:
            self.problem((*loc, "series"), "no values: give at least one variable of one point")
            return None
        names = sorted({name for row in rows.values() for name in row})
        missing = [float("nan")] * hours[0]
        first = np.datetime64(start.astimezone(UTC).replace(tzinfo=None), "s")
        return ForecastBatch(
            source="rules-test",
            issued_at=start,
            point_ids=tuple(rows),
            latitudes=np.full(len(rows), DEFAULT_LOCATION[0]),
            longitudes=np.full(len(rows), DEFAULT_LOCATION[1]),
            times=first + np.arange(hours[0]) * np.timedelta64(3600, "s"),
            variables={
                name: np.array([row.get(name, missing) for row in rows.values()], dtype=np.float64)
                for name in names
            },
        )

    def zones(
        self, loc: Loc, test: TestDecl, batch: ForecastBatch | None
    ) -> tuple[ZoneSpec, ...] | None:
        declared = test.zones if test.zones is not None else self.spec.zones
        zones_loc: Loc = (*loc, "zones") if test.zones is not None else ("zones",)
        if declared is None:
            declared = [ZoneDecl(id=point) for point in test.series]
        specs: list[ZoneSpec] = []
        seen: set[str] = set()
        ok = True
        for index, decl in enumerate(declared):
            point = decl.point or decl.id
            if decl.id in seen:
                self.problem((*zones_loc, index, "id"), f"duplicate zone id {decl.id!r}")
                ok = False
            seen.add(decl.id)
            if point not in test.series:
                where = (*zones_loc, index, "point" if decl.point else "id")
                known = ", ".join(test.series)
                self.problem(
                    where,
                    f"zone {decl.id!r} is on point {point!r}, which has no series in this "
                    f"test; expected one of {known} (give the zone a 'point')",
                )
                ok = False
            location = decl.location or LocationDecl(
                lat=DEFAULT_LOCATION[0], lon=DEFAULT_LOCATION[1]
            )
            specs.append(
                ZoneSpec(
                    id=decl.id,
                    name=decl.name or decl.id,
                    kind=decl.kind,
                    township=decl.township,
                    risk_level=decl.risk,
                    tags=frozenset(decl.tags),
                    latitude=location.lat,
                    longitude=location.lon,
                    point_id=point,
                    village=decl.village,
                )
            )
        return tuple(specs) if ok and batch is not None else None

    def expectations(
        self,
        loc: Loc,
        test: TestDecl,
        start: datetime | None,
        zones: tuple[ZoneSpec, ...] | None,
    ) -> dict[tuple[str, str], _Expected] | None:
        expected: dict[tuple[str, str], _Expected] = {}
        zone_ids = {zone.id for zone in zones} if zones is not None else None
        ok = True
        for index, decl in enumerate(test.expect):
            where: Loc = (*loc, "expect", index)
            key = (decl.zone, decl.hazard)
            if key in expected:
                self.problem(where, f"zone {decl.zone} and hazard {decl.hazard} expected twice")
                ok = False
            if zone_ids is not None and decl.zone not in zone_ids:
                self.problem(
                    (*where, "zone"),
                    f"unknown zone {decl.zone!r}; expected one of {', '.join(sorted(zone_ids))}",
                )
                ok = False
            level = None if decl.level == "indeterminate" else Level.parse(decl.level)
            if level is None and (decl.onset or decl.until or decl.evidence or decl.rule):
                self.problem(
                    (*where, "level"),
                    "an indeterminate assessment has no onset, until, evidence or rule",
                )
                ok = False
            if level is not None and decl.onset is None:
                self.problem(where, f"missing 'onset' of the expected {decl.level} level")
                ok = False
            onset = self.optional_time((*where, "onset"), decl.onset, start)
            until = self.optional_time((*where, "until"), decl.until, start)
            above = None if decl.undecided_above is None else Level.parse(decl.undecided_above)
            expected[key] = _Expected(
                level, onset, until, decl.evidence, decl.rule, above, decl.authority
            )
        return expected if ok else None

    def optional_time(self, loc: Loc, text: str | None, start: datetime | None) -> datetime | None:
        return None if text is None else self.time(loc, text, start)


def _unknown_library(name: str) -> str:
    names = library_names()
    close = difflib.get_close_matches(name, names, n=1)
    guess = f"did you mean {close[0]!r}? " if close else ""
    return (
        f"no library rule file {name!r}; {guess}expected one of {', '.join(names)}, "
        "or a path ending in .yaml relative to this test file"
    )


def _column(path: Path, line: int, column: int, value: str, offset: int) -> int:
    """Column of character `offset` of a one-line scalar that starts at line/column."""
    try:
        source = path.read_text(encoding="utf-8").splitlines()[line - 1]
    except (OSError, IndexError, UnicodeDecodeError):
        return column
    start = column - 1
    if source[start : start + 1] in ("'", '"'):
        start += 1
    if source[start : start + len(value)] == value:
        return start + offset + 1
    return column


# --- comparing ---------------------------------------------------------------------------


def _compare(expected: _Expected | None, got: Assessment | None, tz: ZoneInfo) -> list[str]:
    """Diff lines for one zone and hazard; empty when they agree."""
    if expected is None and got is None:
        return []
    if expected is not None and got is not None and _agrees(expected, got):
        return []
    return [
        f"expected: {_describe_expected(expected, tz)}",
        f"got:      {_describe_got(got, expected, tz)}",
    ]


def _agrees(expected: _Expected, got: Assessment) -> bool:
    if expected.level != got.level:
        return False
    if expected.onset is not None and expected.onset != got.onset:
        return False
    if expected.until is not None and expected.until != got.until:
        return False
    if expected.rule is not None and expected.rule != got.rule_id:
        return False
    if expected.undecided_above is not None and expected.undecided_above != got.undecided_above:
        return False
    if expected.authority is not None and expected.authority != got.authority:
        return False
    if expected.evidence is not None:
        wanted = {key: round(value, 2) for key, value in expected.evidence.items()}
        if wanted != dict(got.evidence):
            return False
    return True


def _time(value: datetime | None, tz: ZoneInfo) -> str:
    return "—" if value is None else value.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _level(level: Level | None) -> str:
    return "indeterminate" if level is None else level.key


def _evidence(evidence: Mapping[str, float]) -> str:
    items = ", ".join(f"{key}: {_number(value)}" for key, value in sorted(evidence.items()))
    return "{" + items + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _describe_expected(expected: _Expected | None, tz: ZoneInfo) -> str:
    if expected is None:
        return "nothing"
    parts = [_level(expected.level)]
    if expected.onset is not None:
        parts.append(f"onset {_time(expected.onset, tz)}")
    if expected.until is not None:
        parts.append(f"until {_time(expected.until, tz)}")
    if expected.undecided_above is not None:
        parts.append(f"undecided above {expected.undecided_above.key}")
    if expected.rule is not None:
        parts.append(f"rule {expected.rule}")
    if expected.authority is not None:
        parts.append(f"authority {expected.authority}")
    if expected.evidence is not None:
        parts.append(f"evidence {_evidence(expected.evidence)}")
    return "  ".join(parts)


def _describe_got(got: Assessment | None, expected: _Expected | None, tz: ZoneInfo) -> str:
    if got is None:
        return "nothing"
    parts = [_level(got.level)]
    if got.level is not None:
        parts.append(f"onset {_time(got.onset, tz)}")
        parts.append(f"until {_time(got.until, tz)}")
    if got.undecided_above is not None:
        parts.append(f"undecided above {got.undecided_above.key}")
    parts.append(f"rule {got.rule_id}")
    if got.authority:
        parts.append(f"authority {got.authority}")
    if got.level is not None:
        parts.append(f"evidence {_evidence(got.evidence)}")
    return "  ".join(parts)
