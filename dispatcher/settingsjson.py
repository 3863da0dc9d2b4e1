"""The JSON-valued settings (robot and target maps), checked by pydantic models at load.

`YUJING_WECOM_ROBOTS`, `YUJING_DINGTALK_ROBOTS`, `YUJING_FEISHU_BOTS` and
`YUJING_WEBHOOK_TARGETS` are JSON objects mapping an address (the id routing
and escalation policies name) to credentials. A value that is not JSON, not
an object, or lacks a field is refused when the settings load, with one line
naming the variable and what it expects — never a KeyError from deep inside
a channel, and never the value itself (it holds secrets).
"""

from __future__ import annotations

import json
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, SecretStr, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

__all__ = [
    "EXPECTED",
    "DingTalkRobotConfig",
    "FeishuBotConfig",
    "WebhookTargetConfig",
    "json_setting",
]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class DingTalkRobotConfig(_Entry):
    """One DingTalk custom robot: its access token and, when it signs, its secret."""

    access_token: SecretStr
    secret: SecretStr | None = None


class FeishuBotConfig(_Entry):
    """One Feishu custom bot: the hook id of its webhook URL and, when it signs, its secret."""

    hook_id: SecretStr
    secret: SecretStr | None = None


class WebhookTargetConfig(_Entry):
    """One receiving system: where to post and the secret both sides sign with."""

    url: str
    secret: SecretStr


#: What each JSON setting must hold, shown when it does not.
EXPECTED: Final[dict[str, str]] = {
    "wecom_robots": '{"id": "webhook key"}',
    "dingtalk_robots": '{"id": {"access_token": "…", "secret": "SEC…"}}',
    "feishu_bots": '{"id": {"hook_id": "…", "secret": "…"}}',
    "webhook_targets": '{"id": {"url": "https://…", "secret": "…"}}',
}

_MODELS: Final[dict[str, TypeAdapter[Any]]] = {
    "wecom_robots": TypeAdapter(dict[str, SecretStr]),
    "dingtalk_robots": TypeAdapter(dict[str, DingTalkRobotConfig]),
    "feishu_bots": TypeAdapter(dict[str, FeishuBotConfig]),
    "webhook_targets": TypeAdapter(dict[str, WebhookTargetConfig]),
}


def json_setting(field: str, value: SecretStr | None) -> dict[str, Any]:
    """The parsed value of the JSON setting `field` ({} when unset).

    Raises a pydantic custom error (so the settings report it as
    `YUJING_FIELD: …`) saying what is wrong and what is expected; the message
    names positions and keys, never values.
    """
    if value is None:
        return {}
    expected = EXPECTED[field]
    try:
        document = json.loads(value.get_secret_value())
    except json.JSONDecodeError as exc:
        raise PydanticCustomError(
            "json_setting",
            "not valid JSON (line {line}, column {column}); expected {expected}",
            {"line": exc.lineno, "column": exc.colno, "expected": expected},
        ) from None
    try:
        parsed: dict[str, Any] = _MODELS[field].validate_python(document)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        problem = f"{where}: {first['msg'].lower()}" if where else first["msg"].lower()
        raise PydanticCustomError(
            "json_setting",
            "{problem}; expected {expected}",
            {"problem": problem, "expected": expected},
        ) from None
    return parsed
