"""Shared HTTP classification: Retry-After and status codes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from channels.base import Outcome
from channels.http_result import classify_status, retry_after_seconds
from channels.redaction import Redactor

NOW = datetime(2026, 1, 6, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        (format_datetime(NOW - timedelta(hours=1), usegmt=True), 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("inf", None),
        ("nan", None),
    ],
)
def test_retry_after_reads_delta_seconds_and_http_dates(
    header: str | None, seconds: float | None
) -> None:
    assert retry_after_seconds(header, now=NOW) == seconds


def classify(status: int, headers: dict[str, str] | None = None, text: str = "") -> object:
    response = httpx.Response(status, headers=headers, text=text)
    return classify_status(response, "Acme", Redactor(["s3cret"]))


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_a_2xx_is_left_to_the_channel(status: int) -> None:
    assert classify(status) is None


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_timeouts_throttling_and_server_errors_are_retryable(status: int) -> None:
    result = classify(status, {"Retry-After": "30"})

    assert getattr(result, "outcome", None) is Outcome.RETRYABLE
    assert getattr(result, "retry_after", None) == 30.0


@pytest.mark.parametrize("status", [301, 400, 401, 403, 404, 410, 413, 422])
def test_other_statuses_are_permanent(status: int) -> None:
    result = classify(status)

    assert getattr(result, "outcome", None) is Outcome.PERMANENT
    assert getattr(result, "error_code", None) == f"http_{status}"


def test_the_reason_quotes_the_body_redacted() -> None:
    result = classify(401, text="bad token s3cret\n  for robot")

    assert getattr(result, "reason", None) == "Acme HTTP 401: bad token ********** for robot"
