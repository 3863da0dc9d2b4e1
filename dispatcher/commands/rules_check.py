"""`yujing rules check`: validate the county configuration and rules before deploying them."""

from __future__ import annotations

import typer

from dispatcher.commands.terminal import (
    ConfigOption,
    JsonOption,
    load_settings,
    operator_errors,
    out,
    print_json,
)
from rules.config import ConfigError, Problem


def rules_check(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Validate the county configuration and rules; list every problem with file:line:column."""
    from dispatcher.county import County, load_county
    from dispatcher.escalation import roster_and_escalation_problems
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
        if as_json:
            print_json(
                {
                    "ok": True,
                    "zones": len(county.zones),
                    "people": len(county.people),
                    "rules": len(ruleset.rules),
                    "variables": sorted(ruleset.variables),
                    "problems": [],
                }
            )
            return
        out.print(
            f"ok: {len(county.zones)} zones, {len(county.people)} people, "
            f"{len(ruleset.rules)} rules over {', '.join(sorted(ruleset.variables))}"
        )
