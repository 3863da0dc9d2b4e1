"""One GET of a feed's provider, its transport failures sorted, and the retry loop.

Open-Meteo and QWeather retry the same way: a timeout or a dropped connection
is worth another try, a bad URL or an undecodable request is not, and tries
are spaced by a doubling backoff (or as long as the server asks). Each feed
keeps its own reading of the answer (status codes, error bodies): its attempt
returns the body, a `Retry`, or raises `FeedError` for what repeating cannot mend.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Retry:
    """An attempt worth repeating: what went wrong, and how long the server asked to
    wait (Retry-After), if it did."""

    problem: str
    wait: float | None = None


async def with_retries(
    attempt: Callable[[], Awaitable[object]],
    *,
    retries: int,
    backoff: float,
    sleep: Callable[[float], Awaitable[None]],
    warn: Callable[[str, int, float], None],
    max_wait: float | None = None,
) -> object:
    """What `attempt` answers, trying again up to `retries` times while it answers a
    `Retry`: after `backoff` × 2^n seconds, or the server's wait — unless that is
    longer than `max_wait` (a daily quota, say: `FeedError` at once). `warn(problem,
    retry number, delay)` before each retry; `FeedError` when the tries run out."""
    attempts = retries + 1
    problem = "no attempt made"
    for number in range(attempts):
        answer = await attempt()
        if not isinstance(answer, Retry):
            return answer
        problem = answer.problem
        if number == attempts - 1:
            break
        delay = backoff * 2**number
        if answer.wait is not None:
            if max_wait is not None and answer.wait > max_wait:
                raise FeedError(
                    f"{problem}: server asks to wait {answer.wait:.0f} s (Retry-After), "
                    f"more than {max_wait:.0f} s; not retrying this poll"
                )
            delay = answer.wait
        warn(problem, number + 1, delay)
        await sleep(delay)
    raise FeedError(f"{problem} after {attempts} attempts")


def json_or_none(response: httpx.Response) -> object:
    """The decoded JSON body, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None
