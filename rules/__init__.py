"""The rule engine: YAML rules in, assessments out. Imports nothing from dispatcher/ or
channels/; its only I/O is reading YAML files (no network, database or clock).

config.py       the project's YAML loading: positions for errors, one strict base, durations
variables.py    the forecast variables rules read and feeds supply, with their units
schema.py       the YAML shape of a rules file, as strict pydantic models
loader.py       rule files → RuleSet (with `include:`), every problem at file:line:column
ruleset.py      the loaded rule set: rules with parsed conditions, ready to evaluate
expr.py         condition and series expressions: AST, canonical text, parser
truth.py        three-valued (Kleene) truth of conditions, as points × hours arrays
series.py       vectorised evaluation of series expressions on a forecast batch
zonetable.py    zones as arrays, built once and reused
evaluate.py     a rule set on a forecast batch → assessments (zone, hazard, level, onset …)
templates.py    message templates administrators write (sandboxed Jinja2)
testing.py      rule unit tests (`yujing rules test`), after `promtool test rules`
types.py        the plain data in and out: ForecastBatch, ZoneSpec, Assessment, Level …
library/        the built-in hazard rules (YAML) a county includes
"""
