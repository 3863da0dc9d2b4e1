"""One GET of a feed's provider, its transport failures sorted for the retry loop.

Open-Meteo and QWeather retry the same way: a timeout or a dropped connection
is worth another try, a bad URL or an undecodable request is not. Each feed
keeps its own reading of the answer (status codes, error bodies).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from dispatcher.feeds.base import FeedError


async def get_once(
    client: httpx.AsyncClient,
    url: str,
    *,
    params: Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
    timeout: float | None,
    redact: Callable[[str], str],
    bad_url: str,
) -> httpx.Response | str:
    """The response, or a transient problem in words (timeout, connection error);
    `FeedError` for what retrying cannot mend. `timeout` None: the client's own;
    `bad_url` says what an unusable URL is (e.g. "bad feed URL")."""
    options: dict[str, Any] = {"params": params}
    if headers is not None:
        options["headers"] = headers
    if timeout is not None:
        options["timeout"] = timeout
    try:
        return await client.get(url, **options)
    except httpx.TimeoutException as exc:
        return f"timeout ({type(exc).__name__})"
    except httpx.UnsupportedProtocol as exc:
        raise FeedError(redact(f"{bad_url}: {exc}")) from None
    except httpx.TransportError as exc:
        return redact(f"connection error ({type(exc).__name__}: {exc})")
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        # not transient (bad URL, undecodable body): report, don't retry
        raise FeedError(redact(f"request failed: {type(exc).__name__}: {exc}")) from None
