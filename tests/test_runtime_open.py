"""Opening the runtime: the county's files are parsed while the database is migrated.

The two go side by side (the client parses, the server builds the schema),
but what the operator is told stays as it was: a problem in the files at
once, the database's error only when the files are valid.
"""

from __future__ import annotations

import io
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from dispatcher.runtime import open_runtime
from rules.config import ConfigError
from tests.processes import COUNTY
from tests.support import Clock, replay_settings
from tests.test_config_reload import AT, BROKEN_ZONE, add_zone

# nothing listens on port 1 of this machine: the connection is refused at once
NOWHERE = "postgresql+psycopg://yujing:yujing@127.0.0.1:1/yujing"


def county_copy(tmp_path: Path) -> Path:
    return Path(
        shutil.copytree(COUNTY, tmp_path / "county", ignore=shutil.ignore_patterns("scenarios"))
    )


def open_on(county: Path, database_url: str) -> None:
    settings = replay_settings(county, database_url)
    open_runtime(settings, clock=Clock(AT), console=io.StringIO(), wake=lambda: None)


def test_a_problem_in_the_files_is_reported_at_once_even_when_the_database_does_not_answer(
    tmp_path: Path,
) -> None:
    county = county_copy(tmp_path)
    add_zone(county, BROKEN_ZONE)
    # a server that takes connections and never answers (a PostgreSQL host gone
    # quiet); closing it resets the connection the migration waits on, at the
    # latest after 15 s (so that waiting for it fails the test, not hangs it)
    with socket.create_server(("127.0.0.1", 0)) as silent:
        closing = threading.Timer(15, silent.close)
        closing.start()
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(ConfigError) as caught:
            open_on(county, f"postgresql+psycopg://yujing:yujing@127.0.0.1:{port}/yujing")
        assert time.monotonic() - started < 10  # the files alone take well under a second
        closing.cancel()
    assert any("zones.yaml:" in str(p) and "p-nobody" in str(p) for p in caught.value.problems)


def test_valid_files_and_an_unreachable_database_fail_with_the_database_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(OperationalError, match=r"127\.0\.0\.1"):
        open_on(county_copy(tmp_path), NOWHERE)
