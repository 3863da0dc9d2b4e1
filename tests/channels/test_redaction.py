"""Secrets are masked in every spelling, including httpx's request log lines."""

from __future__ import annotations

import logging
from urllib.parse import quote_plus

import httpx
import pytest
import respx

from channels.redaction import MASK, Redactor, protect_in_http_logs

SECRET = "a+b/c=d&e"


def test_masks_the_secret_and_its_url_encoded_forms() -> None:
    redact = Redactor([SECRET])

    text = redact(f"raw {SECRET} plus {quote_plus(SECRET)} pct a%2Bb%2Fc%3Dd%26e")

    assert text == f"raw {MASK} plus {MASK} pct {MASK}"


def test_empty_secrets_are_ignored() -> None:
    assert Redactor(["", "x1y2"])("abc x1y2") == f"abc {MASK}"


def test_the_redactors_repr_shows_no_secret() -> None:
    assert SECRET not in repr(Redactor([SECRET]))


async def test_httpx_request_log_lines_never_show_a_protected_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    protect_in_http_logs("k-9f8e7d6c5b4a")

    with caplog.at_level(logging.DEBUG), respx.mock:
        respx.post("https://robot.example.cn/send").respond(200)
        async with httpx.AsyncClient() as http:
            await http.post("https://robot.example.cn/send?key=k-9f8e7d6c5b4a")

    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert lines, "httpx logged no request line: the test would prove nothing"
    assert all("k-9f8e7d6c5b4a" not in line for line in lines)
    assert any(MASK in line for line in lines)
