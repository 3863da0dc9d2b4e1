"""What the HTTP side is given: the application's state, shared by every router.

`app.create_app` builds the FastAPI application around an `AppState`; the
routers (`acks`, `cap`, `console`) are handed the same state. It lives apart
from `app` so that the routers need not import the module that imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from dispatcher.leader import Leadership
from dispatcher.metrics import Metrics
from dispatcher.outbox import OnFailed
from dispatcher.roster import Roster
from dispatcher.settings import Settings
from dispatcher.web.throttle import LoginThrottle

__all__ = ["AppState", "RulesStatus"]


@dataclass
class RulesStatus:
    """The rule set in force and the last load attempt (shown by /healthz)."""

    loaded_at: datetime | None = None
    content_hash: str | None = None
    rules: int = 0
    error: str | None = None


@dataclass
class AppState:
    """The database, settings, clock and live status the routes read."""

    sessions: sessionmaker[Session]
    settings: Settings
    clock: Callable[[], datetime]
    feed_source: str
    started_at: datetime
    feed_members: tuple[str, ...] = ()  # the sources of a feed chain (YUJING_FEEDS), in order
    rules: RulesStatus = field(default_factory=RulesStatus)
    roster: Roster | None = None  # who is on duty (the console's 值班 page)
    # where an undelivered message goes next (dispatcher.failover); None: nowhere
    on_failed: OnFailed | None = None
    metrics: Metrics | None = None  # the runtime's in-process metrics, for /metrics
    leadership: Leadership | None = None  # who leads the scheduler (/healthz); None: not known
    # wrong-password backoff of the console's login; None: one of its own, on `clock`
    login_throttle: LoginThrottle | None = None
