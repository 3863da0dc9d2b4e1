"""Keeping secrets out of reasons, log lines and reprs.

Channels hold credentials as ``SecretStr`` and unwrap them only to sign or send.
Two things can still carry a secret into text an operator reads:

- provider or library error messages (a proxy quoting a header, a URL in an
  exception): every reason and log line a channel writes goes through its
  `Redactor`;
- httpx's own request log line (``HTTP Request: POST https://…?key=…``), which
  prints the full URL — and WeCom, DingTalk and Feishu put the robot's
  credential in the URL. `protect_in_http_logs` registers such secrets with a
  filter on the ``httpx`` logger that rewrites the line before any handler sees
  it. (The daemon also raises that logger to WARNING; the filter is the
  guarantee, not the volume control.)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

__all__ = ["MASK", "Redactor", "protect_in_http_logs", "redactor_in_urls"]

MASK = "**********"


def _forms(secret: str) -> set[str]:
    # A secret in a URL appears percent-encoded; redact every spelling of it.
    return {secret, quote(secret, safe=""), quote_plus(secret)} - {""}


class Redactor:
    """Replaces each of a fixed set of secrets (and their URL-encoded forms) with a mask."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if secret:
                forms |= _forms(secret)
        # Longest first, so a secret containing another is masked whole.
        self._secrets = tuple(sorted(forms, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def __repr__(self) -> str:
        return f"Redactor({len(self._secrets)} secret form(s))"


class _SecretFilter(logging.Filter):
    """Rewrites log records that contain a registered secret."""

    def __init__(self) -> None:
        super().__init__("yujing-secrets")
        self._lock = threading.Lock()
        self._redactor = Redactor(())
        self._secrets: set[str] = set()

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            self._secrets |= {s for s in secrets if s}
            self._redactor = Redactor(self._secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._redactor(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


_HTTP_LOG_FILTER = _SecretFilter()


def protect_in_http_logs(*secrets: str) -> None:
    """Make sure `secrets` never appear in httpx's request log lines.

    Idempotent; channels call it from their constructors for every secret that
    travels in a URL.
    """
    _HTTP_LOG_FILTER.add(secrets)
    logger = logging.getLogger("httpx")
    if _HTTP_LOG_FILTER not in logger.filters:
        logger.addFilter(_HTTP_LOG_FILTER)


def redactor_in_urls(*secrets: str) -> Redactor:
    """A redactor of `secrets` that also keeps them out of httpx's request log lines
    (for channels whose credentials travel in the URL)."""
    protect_in_http_logs(*secrets)
    return Redactor(secrets)
