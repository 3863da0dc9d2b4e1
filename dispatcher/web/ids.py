"""Database ids taken from requests: only what a BIGINT column can hold.

An id from a URL, a query or a form is text a stranger chose. `int()` accepts
`-5` and digit strings of any length, and a number past 2^63 − 1 makes
the database driver raise (SQLite: OverflowError; PostgreSQL: "integer out of
range") — a 500 instead of "not found". Every id read from a request goes
through `parse_id` or the `DatabaseId` path parameter.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Path

__all__ = ["MAX_ID", "DatabaseId", "in_range", "parse_id"]

#: The largest value of a signed 64-bit (BIGINT) primary key.
MAX_ID: Final = 2**63 - 1

#: A path parameter that is a database id: anything else is a 422, never a query.
DatabaseId = Annotated[int, Path(ge=1, le=MAX_ID)]


def parse_id(text: str) -> int | None:
    """The id `text` names (ASCII digits, 1 … 2^63 − 1), or None when it names none."""
    if not text.isascii() or not text.isdigit() or len(text) > len(str(MAX_ID)):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None


def in_range(value: int) -> bool:
    """Whether `value` could be a database id (so looking it up cannot overflow)."""
    return 1 <= value <= MAX_ID
