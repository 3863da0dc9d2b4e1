"""Load rule files into a RuleSet, reporting every problem at file:line:column.

All files are read and checked before anything is reported, so an administrator
sees every mistake in one run: YAML syntax, schema, expression syntax (pointing
at the character inside the condition string), and ids duplicated across files.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from rules.expr import (
    And,
    Condition,
    ExprError,
    Not,
    Or,
    condition_series,
    condition_variables,
    lookback_hours,
    parse_condition,
)
from rules.ruleset import Hazard, Rule, RuleLevel, RuleSet, ZoneSelector
from rules.schema import AllOf, AnyOf, ConditionDecl, HazardDecl, RuleDecl, RulesFile
from rules.types import Level
from rules.yamlsource import (
    ConfigError,
    Document,
    Loc,
    Problem,
    load_yaml_text,
    problems_from_validation,
)

__all__ = ["ConfigError", "RuleSet", "load_ruleset"]


def load_ruleset(paths: Sequence[Path] | Path) -> RuleSet:
    """Load rule files (a directory loads its `*.yaml` in name order).

    Raises ConfigError listing every problem in every file.
    """
    loading = _Loading()
    for path in _rule_files([paths] if isinstance(paths, Path) else paths, loading.problems):
        loading.read(path)
    if loading.problems:
        raise ConfigError(loading.problems)
    return loading.ruleset()


def _rule_files(paths: Sequence[Path], problems: list[Problem]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(path.glob("*.yaml"), key=lambda p: p.name)
        # a rule file the loader skips is a warning nobody gets: refuse, don't ignore
        for stray in sorted(path.glob("*.yml"), key=lambda p: p.name):
            problems.append(
                Problem(
                    str(stray), 1, 1, f"rule files must end in .yaml; rename it {stray.stem}.yaml"
                )
            )
        if not found:
            problems.append(Problem(str(path), 1, 1, "no rule files (*.yaml) in this directory"))
        files.extend(found)
    return files


@dataclass
class _Loading:
    """State gathered while reading the files of one rule set."""

    problems: list[Problem] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    hazards: dict[str, Hazard] = field(default_factory=dict)
    rule_sites: dict[str, str] = field(default_factory=dict)  # id → file:line
    hazard_sites: dict[str, str] = field(default_factory=dict)
    contents: list[bytes] = field(default_factory=list)

    def ruleset(self) -> RuleSet:
        conditions = [level.when for rule in self.rules for level in rule.levels]
        series = {s for condition in conditions for s in condition_series(condition)}
        return RuleSet(
            rules=tuple(self.rules),
            hazards=dict(self.hazards),
            variables=frozenset().union(*(condition_variables(c) for c in conditions)),
            content_hash=hashlib.sha256(b"".join(self.contents)).hexdigest(),
            lookback_hours=max((lookback_hours(s) for s in series), default=0),
        )

    def read(self, path: Path) -> None:
        name = str(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self.problems.append(Problem(name, 1, 1, "file not found"))
            return
        except OSError as exc:
            self.problems.append(Problem(name, 1, 1, f"cannot read: {exc.strerror}"))
            return
        self.contents.append(data)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.problems.append(
                Problem(name, 1, 1, f"not UTF-8 text ({exc.reason}); save the file as UTF-8")
            )
            return
        try:
            doc = load_yaml_text(text, name)
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return
        _File(self, doc, text).read()


class _File:
    """One parsed file being turned into rules."""

    def __init__(self, loading: _Loading, doc: Document, text: str) -> None:
        self.loading = loading
        self.doc = doc
        self.text = text

    def problem(self, loc: Loc, message: str) -> None:
        self.loading.problems.append(self.doc.problem(loc, message))

    def site(self, loc: Loc) -> str:
        line, _ = self.doc.where(loc)
        return f"{self.doc.path}:{line}"

    def read(self) -> None:
        try:
            spec = RulesFile.model_validate({} if self.doc.data is None else self.doc.data)
        except ValidationError as exc:
            self.loading.problems.extend(problems_from_validation(self.doc, exc))
            # still check the rules that are valid on their own, so one run shows all
            self.read_rules(self.salvage_rules())
            return
        for key, hazard in spec.hazards.items():
            self.add_hazard(key, hazard)
        self.read_rules(list(enumerate(spec.rules)))

    def salvage_rules(self) -> list[tuple[int, RuleDecl]]:
        data = self.doc.data
        items = data.get("rules") if isinstance(data, dict) else None
        if not isinstance(items, list):
            return []
        valid = []
        for index, item in enumerate(items):
            # invalid ones were already reported by the whole-file validation
            with contextlib.suppress(ValidationError):
                valid.append((index, RuleDecl.model_validate(item)))
        return valid

    def add_hazard(self, key: str, decl: HazardDecl) -> None:
        loc: Loc = ("hazards", key)
        if key in self.loading.hazard_sites:
            self.problem(
                loc, f"hazard {key!r} is already declared at {self.loading.hazard_sites[key]}"
            )
            return
        self.loading.hazard_sites[key] = self.site(loc)
        advice = {str(level): text for level, text in decl.advice.items()}
        self.loading.hazards[key] = Hazard(key, decl.name, advice)

    def read_rules(self, rules: list[tuple[int, RuleDecl]]) -> None:
        for index, decl in rules:
            loc: Loc = ("rules", index)
            first = self.loading.rule_sites.get(decl.id)
            if first is not None:
                message = f"duplicate rule id {decl.id!r}; first defined at {first}"
                self.problem((*loc, "id"), message)
            else:
                self.loading.rule_sites[decl.id] = self.site((*loc, "id"))
            levels = []
            for name, level in decl.levels.items():
                when = self.condition(level.when, (*loc, "levels", name, "when"))
                if when is not None:
                    levels.append(RuleLevel(Level.parse(name), when, level.within))
            if first is not None or len(levels) != len(decl.levels):
                continue
            selector = decl.zones
            self.loading.rules.append(
                Rule(
                    id=decl.id,
                    hazard=decl.hazard,
                    zones=ZoneSelector(
                        ids=_set(selector.ids),
                        kinds=_set(selector.kinds),
                        townships=_set(selector.townships),
                        risk=_set(selector.risk),
                        tags=_set(selector.tags),
                    ),
                    levels=tuple(sorted(levels, key=lambda item: item.level)),
                    source=decl.source or "",
                    title=decl.title or "",
                    description=decl.description or "",
                    file=self.doc.path,
                    line=self.doc.where(loc)[0],
                )
            )

    def condition(self, decl: ConditionDecl, loc: Loc) -> Condition | None:
        """The condition AST, or None after reporting its problems."""
        if isinstance(decl, str):
            try:
                return parse_condition(decl)
            except ExprError as exc:
                self.loading.problems.append(self.expression_problem(loc, decl, exc))
                return None
        if isinstance(decl, AllOf | AnyOf):
            key, items = ("all", decl.all) if isinstance(decl, AllOf) else ("any", decl.any)
            parsed = [self.condition(item, (*loc, key, i)) for i, item in enumerate(items)]
            if any(item is None for item in parsed):
                return None
            conditions = tuple(item for item in parsed if item is not None)
            if len(conditions) == 1:
                return conditions[0]
            return And(conditions) if key == "all" else Or(conditions)
        inner = self.condition(decl.not_, (*loc, "not"))
        return None if inner is None else Not(inner)

    def expression_problem(self, loc: Loc, value: str, exc: ExprError) -> Problem:
        line, column = self.doc.where(loc)
        found = _locate(self.text, line, column, value, exc.offset)
        if found is not None:
            return Problem(self.doc.path, *found, exc.message)
        # escapes or an unusual scalar style: point at the scalar and say where
        return Problem(
            self.doc.path, line, column, f"{exc.message} (at character {exc.offset + 1})"
        )


def _set(values: Sequence[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


def _locate(text: str, line: int, column: int, value: str, offset: int) -> tuple[int, int] | None:
    """File line/column of character `offset` of a scalar that starts at line/column.

    Walks the source alongside the parsed value: quotes and block-scalar headers
    are skipped, and a line break plus indentation in the source matches the
    single space (or newline) YAML folded it into. None if they do not line up
    (escape sequences), in which case the caller reports the scalar's start.
    """
    lines = text.splitlines(keepends=True)
    if line > len(lines):
        return None
    pos = sum(len(item) for item in lines[: line - 1]) + column - 1
    if pos < len(text) and text[pos] in "'\"":
        pos += 1
    elif pos < len(text) and text[pos] in "|>":
        pos = text.find("\n", pos) + 1 or len(text)
    for char in value[:offset]:
        if pos < len(text) and text[pos] == char:
            pos += 1
            continue
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if char.isspace():
            continue
        if pos < len(text) and text[pos] == char:
            pos += 1
            continue
        return None
    at_char = offset < len(value) and not value[offset].isspace()
    while at_char and pos < len(text) and text[pos] in " \t\r\n":
        pos += 1  # land on the offending character, not the indentation before it
    before = text[:pos]
    return before.count("\n") + 1, pos - (before.rfind("\n") + 1) + 1
