"""`yujing rules test FILE…`: run rule unit tests (docs/rules.md, "Testing rules")."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def rules_test(
    files: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE", help="Test files (YAML), or directories of them", show_default=False
        ),
    ],
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="List passing tests too")
    ] = False,
) -> None:
    """Run rule tests: input series, evaluation time, expected alerts; diff on failure."""
    from rules.testing import run_test_files  # numpy and the engine: only when run

    report = run_test_files(files)
    for problem in report.problems:
        print(problem, file=sys.stderr, flush=True)
    for line in report.lines(verbose=verbose):
        print(line, flush=True)
    if not report.ok:
        raise typer.Exit(1)
