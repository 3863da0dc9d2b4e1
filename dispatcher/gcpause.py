"""Pausing Python's cyclic garbage collector while a poll writes its commit.

A province's cold front builds hundreds of thousands of short-lived rows,
texts and audit records in one go. Each allocation burst makes the cyclic
collector run, and each of its full collections walks the whole heap — the
county's tens of thousands of zones and people included — so a poll paid a
sixth of its commit to collections that found next to nothing: what a poll
builds is freed by reference counting as it goes. Inside `paused()` the
collector waits; it runs again, as usual, as soon as the block ends.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused"]


@contextmanager
def paused() -> Iterator[None]:
    """Within, no automatic cyclic collection (reference counting still frees);
    nested or already disabled: left as it was."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
