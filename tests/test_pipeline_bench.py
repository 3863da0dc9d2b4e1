"""The province bench runs end to end on a small province and prints every figure the
README quotes (it is run by hand at 30,000 zones; here it must not rot)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "db_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_the_pipeline_bench_prints_each_phase_and_what_the_poll_waited_on_the_database(
    db_url: str,
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "YUJING_TEST_POSTGRES_URL"}
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "pipeline_bench.py"),
            "--zones",
            "80",
            "--database",
            db_url,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    ).stdout
    assert "config load (first start)" in out and "config load (restart)" in out
    polls = [line for line in out.splitlines() if " poll " in line]
    assert [line.split()[0] for line in polls] == ["cold", "steady", "calm", "all"]
    cold = polls[0]
    assert "transitions {'new': 160}" in cold
    for phase in ("evaluate", "reconcile", "events", "commit", "waiting on the database"):
        assert phase in cold
    assert "transitions {'resolved': 160}" in polls[3]
    assert "peak RSS" in out
