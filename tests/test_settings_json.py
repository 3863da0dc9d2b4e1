"""JSON-valued settings are checked when the settings load (issue 13).

A malformed `YUJING_*_ROBOTS` value used to end `yujing run` in a KeyError
traceback from deep inside a channel. Now each JSON setting is validated by a
pydantic model with the other settings: the operator reads one line naming the
variable, what is wrong and what is expected — never the value (it is secret).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dispatcher.cli import app
from dispatcher.settings import Settings
from dispatcher.settingsjson import DingTalkRobotConfig, json_setting

SECRET = "SECnever-print-this-0123"
runner = CliRunner()

MALFORMED = [
    # (variable, value, what the line must say)
    ("YUJING_DINGTALK_ROBOTS", '{"duty": {"token": "' + SECRET + '"}}', "duty.access_token"),
    ("YUJING_DINGTALK_ROBOTS", '{"duty": "' + SECRET + '"}', "duty: input should be"),
    ("YUJING_WECOM_ROBOTS", '["' + SECRET + '"]', "input should be a valid dictionary"),
    ("YUJING_FEISHU_BOTS", '{"duty": {"secret": "' + SECRET + '"}}', "duty.hook_id"),
    ("YUJING_WEBHOOK_TARGETS", '{"gis": {"url": "https://x", "key": "' + SECRET + '"}}', "gis."),
    ("YUJING_WECOM_ROBOTS", '{"duty": "' + SECRET, "not valid JSON (line 1, column"),
]


@pytest.mark.parametrize(("variable", "value", "says"), MALFORMED)
def test_a_malformed_json_setting_is_one_line_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    database = f"sqlite:///{tmp_path / 'yujing.db'}"
    monkeypatch.setenv("YUJING_DATABASE_URL", database)
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    monkeypatch.setenv(variable, value)

    result = runner.invoke(app, ["run"])

    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), "an error, not a crash"
    lines = result.stderr.splitlines()
    named = [line for line in lines if line.startswith(f"{variable}: ")]
    assert len(named) == 1, result.stderr
    assert says in named[0] and "expected {" in named[0], named[0]
    assert "Traceback" not in result.output and "KeyError" not in result.output
    assert SECRET not in result.output


def test_a_well_formed_map_loads_into_its_model() -> None:
    settings = Settings(
        _env_file=None,
        dingtalk_robots='{"duty-room": {"access_token": "' + SECRET + '", "secret": "SECx"}}',
    )
    robots = json_setting("dingtalk_robots", settings.dingtalk_robots)
    assert set(robots) == {"duty-room"}
    robot = robots["duty-room"]
    assert isinstance(robot, DingTalkRobotConfig)
    assert robot.access_token.get_secret_value() == SECRET
    assert SECRET not in repr(settings)
