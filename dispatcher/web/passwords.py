"""Password checks off the webhooks' path: their own thread, their own queue, low priority.

An argon2 check takes ~0.3 s of a core and 64 MiB. Run in the worker threads
the webhooks share (as the console once did), eight guessers pushed the SMS
acknowledgement's latency to seconds. Here:

- checks run in `threads` threads of their own (one by default), so a flood
  costs one core at most and the shared worker threads stay free;
- those threads run at a lower CPU priority (Linux niceness per thread), so
  when the cores are busy the event loop and the webhooks go first;
- waiting checks queue without holding a thread, and a check from an address
  with no wrong passwords behind it (`urgent`) goes before the guessers' — the
  duty officer does not wait behind a flood.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import queue
import threading
import weakref
from dataclasses import dataclass, field
from typing import Final

from dispatcher.web.auth import verify_password

__all__ = ["PASSWORD_NICENESS", "PASSWORD_THREADS", "PasswordChecks"]

PASSWORD_THREADS: Final = 1
PASSWORD_NICENESS: Final = 10  # below the event loop and the webhooks' threads (nice 0)


@dataclass(order=True)
class _Check:
    rank: int  # 0: urgent, 1: the rest; then first come, first served
    seq: int
    password_hash: str | None = field(compare=False)
    password: str = field(compare=False, repr=False)
    loop: asyncio.AbstractEventLoop = field(compare=False)
    done: asyncio.Future[bool] = field(compare=False)


_STOP: Final = _Check(2, 0, None, "", None, None)  # type: ignore[arg-type]


class PasswordChecks:
    """`verify_password` in threads of its own (see the module docstring)."""

    def __init__(self, threads: int = PASSWORD_THREADS) -> None:
        self._threads = threads
        self._queue: queue.PriorityQueue[_Check] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._started = False
        self._lock = threading.Lock()

    async def verify(self, password_hash: str | None, password: str, *, urgent: bool) -> bool:
        """Whether `password` matches (None: no account, a dummy check of the same cost)."""
        self._start()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        rank = 0 if urgent else 1
        self._queue.put(_Check(rank, next(self._seq), password_hash, password, loop, done))
        return await done

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            for n in range(self._threads):
                threading.Thread(
                    target=_work, args=(self._queue,), name=f"yujing-password-{n}", daemon=True
                ).start()
            # the threads hold the queue, not this object: when it goes, they stop
            weakref.finalize(self, _stop, self._queue, self._threads)


def _work(checks: queue.PriorityQueue[_Check]) -> None:
    _yield_cpu()
    while True:
        check = checks.get()
        if check is _STOP:
            return
        ok: bool | None = None
        error: Exception | None = None
        try:
            ok = verify_password(check.password_hash, check.password)
        except Exception as exc:  # reported to the request that asked, not lost in a thread
            error = exc
        # a loop already closed (its request long gone) has nobody to tell
        with contextlib.suppress(RuntimeError):
            check.loop.call_soon_threadsafe(_settle, check.done, ok, error)


def _settle(done: asyncio.Future[bool], ok: bool | None, exc: Exception | None) -> None:
    if done.cancelled():  # the client went away meanwhile
        return
    if exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(bool(ok))


def _stop(checks: queue.PriorityQueue[_Check], threads: int) -> None:
    for _ in range(threads):
        checks.put(_STOP)


def _yield_cpu() -> None:
    """Lower this thread's CPU priority: when the cores are busy, the webhooks go first.

    Linux applies a thread id's niceness to that thread alone; elsewhere (or if
    refused) the thread count still bounds what password checks can take.
    """
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PASSWORD_NICENESS)
