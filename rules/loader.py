"""Load rule files into a RuleSet, reporting every problem at file:line:column.

All files are read and checked before anything is reported, so an administrator
sees every mistake in one run: YAML syntax, schema, expression syntax (pointing
at the character inside the condition string), unknown parameters, template
problems, includes that cannot be found, ids duplicated across files and
overrides of rules that do not exist.

A file may `include:` files of the built-in library (`rules/library/NAME.yaml`,
by NAME) or other files (by a path relative to the including file); included
files are read before the including file's rules, each file once. `override:`
changes an already loaded rule by id, after every file has been read.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rules.config import (
    ConfigError,
    Document,
    Loc,
    Problem,
    load_yaml_text,
    problems_from_validation,
    read_bounded,
)
from rules.expr import (
    And,
    Condition,
    ExprError,
    Not,
    Or,
    condition_lookback,
    condition_params,
    condition_series,
    condition_variables,
    parse_condition,
)
from rules.official import OfficialCondition, event_name, parse_level_comparison
from rules.ruleset import Hazard, ParamOverride, Rule, RuleLevel, RuleSet, ZoneSelector
from rules.schema import (
    AllOf,
    AnyOf,
    ConditionDecl,
    HazardDecl,
    LevelDecl,
    ParamOverrideDecl,
    RuleDecl,
    RuleOverrideDecl,
    RulesFile,
    SelectorDecl,
    TemplatesDecl,
)
from rules.templates import template_problems
from rules.types import Level

__all__ = ["LIBRARY", "ConfigError", "RuleSet", "library_names", "load_ruleset"]

LIBRARY = Path(__file__).parent / "library"
"""The built-in hazard library: `include: [NAME]` reads LIBRARY / NAME.yaml."""


def library_names() -> list[str]:
    """Names a rule file may include from the built-in library."""
    return sorted(path.stem for path in LIBRARY.glob("*.yaml"))


def load_ruleset(paths: Sequence[Path] | Path) -> RuleSet:
    """Load rule files (a directory loads its `*.yaml` in name order).

    Raises ConfigError listing every problem in every file.
    """
    loading = _Loading()
    for path in _rule_files([paths] if isinstance(paths, Path) else paths, loading.problems):
        loading.read(path)
    loading.finish()
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
class _HazardSite:
    decl: HazardDecl
    site: str
    included: bool
    file: _File
    loc: Loc


@dataclass
class _PendingOverride:
    file: _File
    index: int
    decl: RuleOverrideDecl


@dataclass
class _Loading:
    """State gathered while reading the files of one rule set."""

    problems: list[Problem] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    rule_sites: dict[str, str] = field(default_factory=dict)  # id → file:line
    rule_included: dict[str, bool] = field(default_factory=dict)
    hazards: dict[str, _HazardSite] = field(default_factory=dict)
    overrides: list[_PendingOverride] = field(default_factory=list)
    # template checks wait until every hazard is known (for its name and advice)
    templates: list[tuple[_File, Loc, str, str, str, tuple[str, ...]]] = field(default_factory=list)
    contents: list[bytes] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    seen: set[Path] = field(default_factory=set)

    def ruleset(self) -> RuleSet:
        conditions = [
            level.when for rule in self.rules for level in rule.levels if level.when is not None
        ]
        lookback = max(
            (
                level.since_hours + condition_lookback(level.when)
                for rule in self.rules
                for level in rule.levels
                if level.when is not None
            ),
            default=0,
        )
        hazards = {
            key: Hazard(
                key,
                site.decl.name,
                {str(level): text for level, text in site.decl.advice.items()},
                dict(site.decl.templates.items()) if site.decl.templates else {},
            )
            for key, site in self.hazards.items()
        }
        return RuleSet(
            rules=tuple(self.rules),
            hazards=hazards,
            variables=frozenset().union(*(condition_variables(c) for c in conditions)),
            content_hash=hashlib.sha256(b"".join(self.contents)).hexdigest(),
            lookback_hours=lookback,
            files=tuple(self.files),
        )

    def read(self, path: Path, *, included: bool = False) -> None:
        name = str(path)
        with contextlib.suppress(OSError):
            resolved = path.resolve()
            if resolved in self.seen:
                return  # each file once, however often it is included
            self.seen.add(resolved)
        try:
            data = read_bounded(path, name)
        except ConfigError as exc:  # missing, or over MAX_YAML_BYTES
            self.problems.extend(exc.problems)
            return
        except OSError as exc:
            self.problems.append(Problem(name, 1, 1, f"cannot read: {exc.strerror}"))
            return
        self.contents.append(data)
        self.files.append(name)
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
        _File(self, doc, text, path, included).read()

    def finish(self) -> None:
        """Apply overrides and check templates, once every file has been read."""
        done: dict[str, str] = {}
        for pending in self.overrides:
            pending.file.apply_override(pending.index, pending.decl, done)
        for file, loc, kind, text, hazard, evidence in self.templates:
            file.check_template(loc, kind, text, hazard, evidence)


class _File:
    """One parsed file being turned into rules."""

    def __init__(
        self, loading: _Loading, doc: Document, text: str, path: Path, included: bool
    ) -> None:
        self.loading = loading
        self.doc = doc
        self.text = text
        self.path = path
        self.included = included

    def problem(self, loc: Loc, message: str) -> None:
        self.loading.problems.append(self.doc.problem(loc, message))

    def site(self, loc: Loc) -> str:
        line, _ = self.doc.where(loc)
        return f"{self.doc.path}:{line}"

    # --- the file ---------------------------------------------------------------------

    def read(self) -> None:
        try:
            spec = RulesFile.model_validate({} if self.doc.data is None else self.doc.data)
        except ValidationError as exc:
            self.loading.problems.extend(problems_from_validation(self.doc, exc))
            # still check the parts that are valid on their own, so one run shows all
            self.read_includes(self.salvage("include", str))
            for key, hazard in self.salvage_hazards():
                self.add_hazard(key, hazard)
            self.read_rules(self.salvage("rules", RuleDecl))
            self.add_overrides(self.salvage("override", RuleOverrideDecl))
            return
        self.read_includes(list(enumerate(spec.include)))
        for key, hazard in spec.hazards.items():
            self.add_hazard(key, hazard)
        self.read_rules(list(enumerate(spec.rules)))
        self.add_overrides(list(enumerate(spec.override)))

    def salvage(self, key: str, model: Any) -> list[tuple[int, Any]]:
        data = self.doc.data
        items = data.get(key) if isinstance(data, dict) else None
        if not isinstance(items, list):
            return []
        valid = []
        for index, item in enumerate(items):
            if model is str:
                if isinstance(item, str):
                    valid.append((index, item))
                continue
            # invalid ones were already reported by the whole-file validation
            with contextlib.suppress(ValidationError):
                valid.append((index, model.model_validate(item)))
        return valid

    def salvage_hazards(self) -> list[tuple[str, HazardDecl]]:
        data = self.doc.data
        items = data.get("hazards") if isinstance(data, dict) else None
        if not isinstance(items, dict):
            return []
        valid = []
        for key, item in items.items():
            with contextlib.suppress(ValidationError):
                RulesFile.model_validate({"hazards": {key: item}})
                valid.append((str(key), HazardDecl.model_validate(item)))
        return valid

    # --- includes ---------------------------------------------------------------------

    def read_includes(self, items: list[tuple[int, str]]) -> None:
        for index, name in items:
            path = self.resolve_include(name, ("include", index))
            if path is not None:
                self.loading.read(path, included=True)

    def resolve_include(self, name: str, loc: Loc) -> Path | None:
        if "/" in name or "\\" in name or name.endswith((".yaml", ".yml")):
            path = (self.path.parent / name) if not Path(name).is_absolute() else Path(name)
            if path.is_file():
                return path
            self.problem(
                loc,
                f"include {name!r} not found (looked for {path}); expected a library name "
                "or a path relative to this file",
            )
            return None
        path = LIBRARY / f"{name}.yaml"
        if path.is_file():
            return path
        names = library_names()
        close = difflib.get_close_matches(name, names, n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        self.problem(
            loc,
            f"include {name!r} not found in the rule library; {guess}expected one of "
            f"{', '.join(names)}, or a path relative to this file such as shared/fog.yaml",
        )
        return None

    # --- hazards ----------------------------------------------------------------------

    def add_hazard(self, key: str, decl: HazardDecl) -> None:
        loc: Loc = ("hazards", key)
        first = self.loading.hazards.get(key)
        here = _HazardSite(decl, self.site(loc), self.included, self, loc)
        if first is not None:
            if first.included and not self.included:
                pass  # the county's own declaration replaces the library's
            elif self.included and (not first.included or first.decl == decl):
                return  # the library repeats (or the county replaced) it: keep the first
            else:
                self.problem(loc, f"hazard {key!r} is already declared at {first.site}")
                return
        self.loading.hazards[key] = here
        if decl.templates is not None:
            for kind, text in decl.templates.items():
                self.loading.templates.append(
                    (self, (*loc, "templates", kind), kind, text, key, ())
                )

    # --- rules ------------------------------------------------------------------------

    def read_rules(self, rules: list[tuple[int, RuleDecl]]) -> None:
        for index, decl in rules:
            loc: Loc = ("rules", index)
            first = self.loading.rule_sites.get(decl.id)
            if first is not None:
                message = f"duplicate rule id {decl.id!r}; first defined at {first}"
                if self.loading.rule_included.get(decl.id) and not self.included:
                    message += (
                        f"; to change an included rule, write override: [{{id: {decl.id}, ...}}]"
                    )
                self.problem((*loc, "id"), message)
            else:
                self.loading.rule_sites[decl.id] = self.site((*loc, "id"))
                self.loading.rule_included[decl.id] = self.included
            params = dict(decl.params)
            levels = self.levels(decl.levels, (*loc, "levels"), params)
            overrides = self.param_overrides(decl.overrides, (*loc, "overrides"), params)
            self.unused_params(params, levels, (*loc, "params"))
            zones = self.selector(decl.zones, (*loc, "zones"))
            if first is not None or levels is None or overrides is None or zones is None:
                continue
            rule = Rule(
                id=decl.id,
                hazard=decl.hazard,
                zones=zones,
                levels=levels,
                source=decl.source or "",
                title=decl.title or "",
                description=decl.description or "",
                file=self.doc.path,
                line=self.doc.where(loc)[0],
                params=params,
                overrides=overrides,
                hold=decl.hold,
                cooldown=decl.cooldown,
                templates=dict(decl.templates.items()) if decl.templates else {},
            )
            self.queue_templates(rule, decl.templates, (*loc, "templates"))
            self.loading.rules.append(rule)

    def queue_templates(self, rule: Rule, decl: TemplatesDecl | None, loc: Loc) -> None:
        if decl is None:
            return
        evidence = tuple(
            dict.fromkeys(
                str(series)
                for level in rule.levels
                if level.when is not None
                for series in condition_series(level.when)
            )
        )
        for kind, text in decl.items():
            self.loading.templates.append((self, (*loc, kind), kind, text, rule.hazard, evidence))

    def levels(
        self, decls: Mapping[str, LevelDecl], loc: Loc, params: Mapping[str, float]
    ) -> tuple[RuleLevel, ...] | None:
        """The parsed levels, lowest first, or None after reporting their problems."""
        levels = []
        ok = True
        for name, level in decls.items():
            when = (
                None
                if level.when is None
                else self.condition(level.when, (*loc, name, "when"), params)
            )
            window = None if level.within is None else level.since + level.within
            if window is not None and level.for_ > window:
                self.problem(
                    (*loc, name, "for"),
                    f"for: {level.for_}h is longer than the window ({window}h = since + within); "
                    "it could never hold: shorten `for` or widen the window",
                )
                ok = False
            if when is None and level.when is not None:
                ok = False
                continue
            official = None
            if level.official is not None:
                events = level.official.event
                op, at = (
                    parse_level_comparison(level.official.level)
                    if level.official.level is not None
                    else (">=", None)
                )
                official = OfficialCondition(
                    frozenset(
                        event_name(e) for e in ([events] if isinstance(events, str) else events)
                    ),
                    op,
                    at,
                )
            levels.append(
                RuleLevel(Level.parse(name), when, level.within, level.for_, level.since, official)
            )
        if not ok:
            return None
        return tuple(sorted(levels, key=lambda item: item.level))

    def param_overrides(
        self, decls: list[ParamOverrideDecl], loc: Loc, params: Mapping[str, float]
    ) -> tuple[ParamOverride, ...] | None:
        overrides = []
        ok = True
        for index, decl in enumerate(decls):
            for name in decl.params:
                if name not in params:
                    declared = ", ".join(params) or "none"
                    self.problem(
                        (*loc, index, "params", name),
                        f"unknown parameter {name!r}; the rule's params declare: {declared}",
                    )
                    ok = False
            zones = self.selector(decl.zones, (*loc, index, "zones"))
            if zones is None:
                ok = False
                continue
            overrides.append(ParamOverride(zones, dict(decl.params)))
        return tuple(overrides) if ok else None

    def unused_params(
        self, params: Mapping[str, float], levels: tuple[RuleLevel, ...] | None, loc: Loc
    ) -> None:
        if levels is None:
            return
        used = set().union(
            *(condition_params(level.when) for level in levels if level.when is not None)
        )
        for name in params:
            if name not in used:
                self.problem(
                    (*loc, name),
                    f"parameter {name!r} is not used by any level; use it as ${name} in a "
                    "condition or remove it",
                )

    def selector(self, decl: SelectorDecl, loc: Loc) -> ZoneSelector | None:
        exclude = None
        if decl.exclude is not None:
            if decl.exclude.is_empty():
                self.problem(
                    (*loc, "exclude"),
                    "exclude: {} would leave out every zone; name the zones to leave out, "
                    "e.g. exclude: {tags: [school]}",
                )
                return None
            exclude = self.selector(decl.exclude, (*loc, "exclude"))
            if exclude is None:
                return None
        return ZoneSelector(
            ids=_set(decl.ids),
            kinds=_set(decl.kinds),
            townships=_set(decl.townships),
            risk=_set(decl.risk),
            tags=_set(decl.tags),
            polygon=tuple(decl.polygon) if decl.polygon is not None else None,
            exclude=exclude,
        )

    def condition(
        self, decl: ConditionDecl, loc: Loc, params: Mapping[str, float]
    ) -> Condition | None:
        """The condition AST, or None after reporting its problems."""
        if isinstance(decl, str):
            try:
                return parse_condition(decl, params)
            except ExprError as exc:
                self.loading.problems.append(
                    self.scalar_problem(loc, decl, exc.message, exc.offset)
                )
                return None
        if isinstance(decl, AllOf | AnyOf):
            key, items = ("all", decl.all) if isinstance(decl, AllOf) else ("any", decl.any)
            parsed = [self.condition(item, (*loc, key, i), params) for i, item in enumerate(items)]
            if any(item is None for item in parsed):
                return None
            conditions = tuple(item for item in parsed if item is not None)
            if len(conditions) == 1:
                return conditions[0]
            return And(conditions) if key == "all" else Or(conditions)
        inner = self.condition(decl.not_, (*loc, "not"), params)
        return None if inner is None else Not(inner)

    # --- overrides --------------------------------------------------------------------

    def add_overrides(self, items: list[tuple[int, RuleOverrideDecl]]) -> None:
        for index, decl in items:
            self.loading.overrides.append(_PendingOverride(self, index, decl))

    def apply_override(self, index: int, decl: RuleOverrideDecl, done: dict[str, str]) -> None:
        loc: Loc = ("override", index)
        rules = self.loading.rules
        position = next((i for i, rule in enumerate(rules) if rule.id == decl.id), None)
        if decl.id in done:
            self.problem((*loc, "id"), f"rule {decl.id!r} is already overridden at {done[decl.id]}")
            return
        if position is None:
            if decl.id in self.loading.rule_sites:
                return  # the rule itself is invalid and was reported
            known = [rule.id for rule in rules]
            close = difflib.get_close_matches(decl.id, known, n=1)
            guess = f"did you mean {close[0]!r}? " if close else ""
            self.problem(
                (*loc, "id"),
                f"no rule {decl.id!r} to override; {guess}expected the id of a rule in these "
                "files or their includes",
            )
            return
        done[decl.id] = self.site((*loc, "id"))
        target = rules[position]
        if not decl.enabled:
            del rules[position]
            return
        params = {**target.params, **(decl.params or {})}
        if decl.levels is not None:
            levels = self.levels(decl.levels, (*loc, "levels"), params)
        else:
            levels = target.levels
        for name in decl.params or {}:
            used = levels is None or any(
                lv.when is not None and name in condition_params(lv.when) for lv in levels
            )
            if name not in target.params and not used:
                declared = ", ".join(target.params) or "none"
                self.problem(
                    (*loc, "params", name),
                    f"rule {decl.id!r} has no parameter {name!r}; its params: {declared}",
                )
                levels = None
        overrides: tuple[ParamOverride, ...] | None = target.overrides
        if decl.overrides is not None:
            overrides = self.param_overrides(decl.overrides, (*loc, "overrides"), params)
        zones = self.selector(decl.zones, (*loc, "zones")) if decl.zones else target.zones
        if levels is None or overrides is None or zones is None:
            return
        templates = dict(target.templates)
        if decl.templates is not None:
            templates.update(decl.templates.items())
        rule = replace(
            target,
            zones=zones,
            levels=levels,
            params=params,
            overrides=overrides,
            source=target.source if decl.source is None else decl.source,
            title=target.title if decl.title is None else decl.title,
            description=target.description if decl.description is None else decl.description,
            hold=target.hold if decl.hold is None else decl.hold,
            cooldown=target.cooldown if decl.cooldown is None else decl.cooldown,
            templates=templates,
        )
        self.queue_templates(rule, decl.templates, (*loc, "templates"))
        rules[position] = rule

    # --- templates --------------------------------------------------------------------

    def check_template(
        self, loc: Loc, kind: str, text: str, hazard: str, evidence: tuple[str, ...]
    ) -> None:
        site = self.loading.hazards.get(hazard)
        samples: dict[str, str] = {}
        if site is not None:
            samples["hazard"] = site.decl.name
            samples["advice"] = max(site.decl.advice.values(), key=len, default="")
        for problem in template_problems(text, kind, samples, evidence):
            self.loading.problems.append(
                self.scalar_problem(loc, text, problem.message, problem.offset)
            )

    def scalar_problem(self, loc: Loc, value: str, message: str, offset: int) -> Problem:
        line, column = self.doc.where(loc)
        found = _locate(self.text, line, column, value, offset)
        if found is not None:
            return Problem(self.doc.path, *found, message)
        # escapes or an unusual scalar style: point at the scalar and say where
        return Problem(self.doc.path, line, column, f"{message} (at character {offset + 1})")


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
