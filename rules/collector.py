"""Pausing Python's cyclic garbage collector while a large structure is built.

Building hundreds of thousands of small objects (assessments, a province's
parsed zones and their checked entries, a cold front's rows, texts and audit
events as its commit is written) triggers the collector again and again, and
each full pass walks every object already built — the county's whole heap:
half the time of loading 30,000 zones went there, and a sixth of a commit.
Reference counting goes on while it is paused; the collector runs as usual
afterwards.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (if it was running)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
