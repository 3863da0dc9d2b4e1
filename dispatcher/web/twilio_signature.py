"""Twilio webhook signatures, shared by every Twilio webhook route.

Twilio signs the full URL it called (scheme, host, path, query) plus the sorted
form parameters with the account's auth token (`X-Twilio-Signature`). Behind a
reverse proxy the URL the application sees is not the one Twilio called, so
the configured public base URL is used instead.
"""

from __future__ import annotations

import logging

from fastapi import Request
from twilio.request_validator import RequestValidator

from dispatcher.settings import Settings

log = logging.getLogger("yujing.web")


async def verified_twilio_form(request: Request, settings: Settings) -> dict[str, str] | None:
    """The request's form if Twilio signed it; None (and a log line) otherwise."""
    token = settings.twilio_auth_token
    signature = request.headers.get("X-Twilio-Signature", "")
    form = {k: str(v) for k, v in (await request.form()).items()}
    if token is None or not signature:
        log.warning(
            "twilio webhook %s refused: %s",
            request.url.path,
            "Twilio is not configured" if token is None else "no signature",
        )
        return None
    validator = RequestValidator(token.get_secret_value())
    if not validator.validate(public_url(request, settings), form, signature):
        log.warning("twilio webhook %s refused: signature does not match", request.url.path)
        return None
    return form


def public_url(request: Request, settings: Settings) -> str:
    """The URL Twilio called: behind a proxy, the configured public base URL."""
    if not settings.public_base_url:
        return str(request.url)
    url = settings.public_base_url.rstrip("/") + request.url.path
    return f"{url}?{request.url.query}" if request.url.query else url
