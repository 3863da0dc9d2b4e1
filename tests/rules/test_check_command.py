"""`yujing rules check` on a county whose rules directory holds one broken file per error kind."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dispatcher.cli import app
from tests.rules.test_loader import BROKEN, EVERY_ERROR_KIND

COUNTY = Path(__file__).resolve().parents[2] / "examples" / "liulin"

runner = CliRunner()


@pytest.fixture(autouse=True)
def no_yujing_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("YUJING_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env is read


def test_rules_check_prints_every_error_with_file_line_and_column(tmp_path: Path) -> None:
    county = tmp_path / "county"
    shutil.copytree(COUNTY, county, ignore=shutil.ignore_patterns("scenarios", "rules"))
    shutil.copytree(BROKEN, county / "rules")

    result = runner.invoke(app, ["rules", "check", "--config", str(county)])

    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    rules = county / "rules"
    expected = [f"{rules}/{line.replace('{dir}', str(rules))}" for line in EVERY_ERROR_KIND]
    assert lines[:-1] == expected
    assert lines[-1] == f"{len(expected)} problem(s) in the configuration; nothing was changed."
    assert "Traceback" not in result.output
