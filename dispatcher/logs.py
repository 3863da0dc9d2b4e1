"""Logging: readable text on a terminal, one JSON object per line under systemd.

Also what keeps the logs worth reading: `Episode` says a failure once and its
recovery once instead of a line per attempt, and `ConsoleLog` turns the
console channel's printed messages into log records when the logs are JSON, so
nothing but JSON lines reaches the journal.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO, cast

# attributes every LogRecord has; anything else was passed in `extra=` and is kept
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# uvicorn repeats its message with terminal colour codes: not for a JSON log
_STANDARD.add("color_message")

# libraries whose INFO lines are noise here: per-request lines (ours is one per
# poll) and the scheduler's "Adding job tentatively", "Added job", "Scheduler started"
QUIET = ("httpx", "httpcore", "apscheduler", "uvicorn.access")

_json_active = False

#: How long a repeated operational-fault line stays quiet after it was written.
REPEAT_QUIET_SECONDS = 300.0


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                entry[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str = "INFO", fmt: str = "auto") -> None:
    """Set up the root logger once for the process."""
    global _json_active
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    _json_active = use_json
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if use_json
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    handler.addFilter(OperationalFaults())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def is_operational(exc: BaseException | None) -> bool:
    """A fault of the world (database down or refusing), not a bug: no traceback for it."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, OperationalError | ConnectionError | TimeoutError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def fault_summary(exc: BaseException) -> str:
    """The driver's own words (`connection refused`), not SQLAlchemy's page of context."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__


class OperationalFaults(logging.Filter):
    """Every part that logs an operational fault with its traceback, made one plain line.

    The outbox worker, the leadership loop and the jobs each retry on their own
    schedule while the database is down; this keeps their lines to one per
    message per REPEAT_QUIET_SECONDS, each ending with the driver's reason,
    and drops the tracebacks (a bug's traceback is kept).
    """

    def __init__(self, quiet_seconds: float | None = None) -> None:
        super().__init__()
        self.quiet = REPEAT_QUIET_SECONDS if quiet_seconds is None else quiet_seconds
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not is_operational(exc):
            return True
        assert exc is not None
        key = (record.name, str(record.msg))
        last, repeats = self._last.get(key, (float("-inf"), 0))
        if record.created - last < self.quiet:
            self._last[key] = (last, repeats + 1)
            return False
        self._last[key] = (record.created, 0)
        suffix = f" (and {repeats} more like it)" if repeats else ""
        record.msg = f"{record.getMessage()}: {fault_summary(exc)}{suffix}"
        record.args = None
        record.exc_info = None
        record.exc_text = None
        return True


_said: set[tuple[str, str]] = set()


def log_once(
    logger: logging.Logger, message: str, *args: object, level: int = logging.INFO
) -> None:
    """A line said once per process (a fallback every alert would repeat)."""
    key = (logger.name, message % args)
    if key not in _said:
        _said.add(key)
        logger.log(level, message, *args)


def console_stream() -> TextIO | None:
    """Where the console channel should write under `yujing run`.

    None (stdout, the channel's readable blocks) when the logs are text; with
    JSON logs, a stream that makes each printed message one log record.
    """
    return cast(TextIO, ConsoleLog()) if _json_active else None


class ConsoleLog(io.TextIOBase):
    """A text stream whose every flush becomes one INFO record of `yujing.console`."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        super().__init__()
        self._log = logger or logging.getLogger("yujing.console")
        self._buffer: list[str] = []

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._buffer.append(text)
        return len(text)

    def flush(self) -> None:
        text = "".join(self._buffer).strip("\n")
        self._buffer.clear()
        if text:
            # the channel's rule lines are decoration for a terminal, not log content
            lines = [line for line in text.splitlines() if line.strip("─ ")]
            self._log.info("console message:\n%s", "\n".join(lines))


class Episode:
    """A failure logged once when it starts and once when it ends, not at every attempt.

    Home Assistant's DataUpdateCoordinator does the same for its integrations:
    the first failure is a warning, repeats are debug lines, the first success
    after them says it recovered and how many attempts failed.
    """

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._log = logger
        self.what = what
        self.failures = 0
        self.since: datetime | None = None

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def failed(self, reason: str, at: datetime | None = None) -> None:
        self.failures += 1
        if self.failures == 1:
            self.since = at or datetime.now(UTC)
            self._log.warning("%s failed: %s (logged once until it recovers)", self.what, reason)
        else:
            self._log.debug("%s failed again (%d): %s", self.what, self.failures, reason)

    def succeeded(self) -> None:
        if self.failures:
            self._log.info(
                "%s recovered after %d failed attempt(s)%s",
                self.what,
                self.failures,
                f" since {self.since:%Y-%m-%d %H:%M:%S} UTC" if self.since else "",
            )
        self.failures = 0
        self.since = None
