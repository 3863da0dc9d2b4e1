"""A fact every alert would repeat is logged once per process (issue 16: quiet logs).

The example county posts to groups and loudspeakers whose channels a bare
install has not configured: each step's audit event lists them as
unreached, and the log says so once per channel — not once per zone alert
(64 lines on a cold front before). Run in a fresh process, as the daemon is,
since "once" is per process.
"""

from __future__ import annotations

import subprocess
import sys

from tests.support import ROOT

SCRIPT = """
import asyncio, io, logging, sys
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
from dispatcher.runtime import open_runtime
from tests.support import LIULIN, Clock, OPENED, replay_settings
rt = open_runtime(replay_settings(LIULIN, sys.argv[1]), clock=Clock(OPENED),
                  console=io.StringIO(), wake=lambda: None)
result = asyncio.run(rt.pipeline.poll())
print(result.transitions.get("new"))
"""


def test_unreached_audiences_are_logged_once_per_channel(tmp_path: object) -> None:
    db = f"sqlite:///{tmp_path}/once.db"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, db],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == "80"  # every zone of the cold front warned
    lines = [line for line in done.stderr.splitlines() if "are not reached" in line]
    assert sorted(line.split()[4] for line in lines) == ["broadcast", "dingtalk", "wecom"]
    assert all(line.startswith("WARNING") for line in lines)
