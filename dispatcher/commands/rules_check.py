"""`yujing rules check`: validate the county configuration and rules before deploying them.

Problems fail the check (exit 1). Warnings do not (exit 0, one
`file:line:column: warning: …` line each on stderr, after the ok line): a
roster that ends within `ROSTER_NOTICE_DAYS` of now, and the duty days of that
period nobody is rostered for.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from dispatcher.commands.terminal import (
    ConfigOption,
    JsonOption,
    load_settings,
    operator_errors,
    out,
    print_json,
    say,
)
from rules.config import ConfigError, Problem

if TYPE_CHECKING:
    from dispatcher.roster import Roster

#: How far ahead the roster must reach before `rules check` warns.
ROSTER_NOTICE_DAYS = 14


def rules_check(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Validate the county configuration and rules; list every problem with file:line:column."""
    from datetime import UTC

    from dispatcher.county import County, load_county
    from dispatcher.escalation import roster_and_escalation_problems
    from dispatcher.roster import load_roster
    from rules.loader import RuleSet, load_ruleset

    with operator_errors():
        config_dir = load_settings(config_dir=config).config_dir
        problems: list[Problem] = []
        county: County | None = None
        ruleset: RuleSet | None = None
        try:
            county = load_county(config_dir)
        except ConfigError as exc:
            problems.extend(exc.problems)
        try:
            ruleset = load_ruleset(config_dir / "rules")
        except ConfigError as exc:
            problems.extend(exc.problems)
        if county is not None:
            problems.extend(roster_and_escalation_problems(config_dir, county, ruleset))
        if problems and as_json:
            print_json({"ok": False, "problems": [str(p) for p in problems]})
            raise typer.Exit(1)
        if problems:
            raise ConfigError(problems)
        assert county is not None and ruleset is not None
        warnings = roster_warnings(config_dir, load_roster(config_dir, county), datetime.now(UTC))
        if as_json:
            print_json(
                {
                    "ok": True,
                    "zones": len(county.zones),
                    "people": len(county.people),
                    "rules": len(ruleset.rules),
                    "variables": sorted(ruleset.variables),
                    "problems": [],
                    "warnings": [str(w) for w in warnings],
                }
            )
            return
        out.print(
            f"ok: {len(county.zones)} zones, {len(county.people)} people, "
            f"{len(ruleset.rules)} rules over {', '.join(sorted(ruleset.variables))}"
        )
        for warning in warnings:
            say(f"{warning.file}:{warning.line}:{warning.column}: warning: {warning.message}")


def roster_warnings(
    config_dir: Path, roster: Roster, now: datetime, days: int = ROSTER_NOTICE_DAYS
) -> list[Problem]:
    """The roster's end within `days` of now, and the duty days in them nobody holds a role."""
    from dispatcher.county import DUTY_ROLE_LABELS
    from dispatcher.roster import ROSTER_FILE, ROSTER_ROLES
    from rules.config import load_yaml

    if not roster.configured or roster.horizon is None:
        return []
    doc = load_yaml(config_dir / ROSTER_FILE)
    today = roster.duty_day(now)
    last = today + timedelta(days=days - 1)
    end = roster.horizon[1]
    found: list[Problem] = []
    if end < last:
        when = "ended" if end < today else "ends"
        found.append(
            doc.problem(
                ("roster", "horizon", "to"),
                f"the roster {when} on {end.isoformat()}, within {days} days of today "
                f"({today.isoformat()}); extend horizon: and the rotations before then",
            )
        )
    shifts = roster.shifts(today, days)
    for role in ROSTER_ROLES:
        uncovered = [s.day for s in shifts if s.holder(role) is None]
        if uncovered:
            found.append(
                doc.problem(
                    ("roster",),
                    f"nobody is rostered as {role} ({DUTY_ROLE_LABELS.get(role, role)}) on "
                    f"{_ranges(uncovered)}; add a rotation or an override for those days",
                )
            )
    return found


def _ranges(days: list[date]) -> str:
    """'2026-12-20..2026-12-31, 2027-01-02': consecutive days as ranges."""
    spans: list[tuple[date, date]] = []
    for day in days:
        if spans and day == spans[-1][1] + timedelta(days=1):
            spans[-1] = (spans[-1][0], day)
        else:
            spans.append((day, day))
    return ", ".join(a.isoformat() if a == b else f"{a}..{b}" for a, b in spans)
