"""CPU cost of a province's hazard texts: `hazards._hazard_text` over a real poll's transitions.

Runs the pipeline bench's province (examples/liulin replicated, `--zones`) through the
cold-front poll and the all-clear poll on SQLite, recording every `_hazard_text` call
(the alert's fields the text reads, the transition, the wording); then renders the
recorded calls again `--rounds` times and prints the CPU time (time.process_time) per
alert, and a digest of every text rendered so two versions of the code can be shown
to write the same bytes. `--templates` gives every hazard an SMS and a voice template
(the rule files of the example declare none).

    .venv/bin/python bench/render_bench.py [--zones 4000] [--rounds 3] [--templates]
    .venv/bin/python bench/render_bench.py --root /work/main   # the same, on another checkout
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import hashlib
import importlib
import io
import logging
import pstats
import random
import secrets
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

SMS_TEMPLATE = (
    "【{{ sender }}】{{ hazard }}{{ level }}预警（{{ kind }}）：{{ zone }}，{{ when }}，"
    "至{{ until }}。{{ advice }}编码{{ code }}"
)
VOICE_TEMPLATE = "{{ sender }}提醒：{{ zone }}{{ hazard }}{{ level }}预警，{{ onset }}起，-5℃。"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zones", type=int, default=4_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--templates", action="store_true")
    parser.add_argument("--profile", action="store_true", help="print the last round's profile")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.root))
    sys.path.insert(1, str(args.root / "bench"))
    logging.basicConfig(level=logging.ERROR)
    calls = _record(args.zones)
    hazards: Any = sys.modules["dispatcher.alerts.hazards"]
    if args.templates:
        templates = {"sms": SMS_TEMPLATE, "voice": VOICE_TEMPLATE}

        def template(hazard: str, rule_id: str, kind: str) -> str | None:
            return templates.get(kind)

        calls = [
            (alert, t, now, county, dataclasses.replace(wording, template=template), channel)
            for alert, t, now, county, wording, channel in calls
        ]
    print(f"{len(calls)} texts recorded ({args.root}, dispatcher from {hazards.__file__})")
    digest = hashlib.sha256()
    for round_ in range(args.rounds):
        profile = cProfile.Profile() if args.profile and round_ == args.rounds - 1 else None
        started = time.process_time()
        if profile is not None:
            profile.enable()
        texts = [hazards._hazard_text(*call) for call in calls]
        spent = time.process_time() - started
        if profile is not None:
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        print(f"round {round_ + 1}: {spent:.2f} s CPU, {spent / len(calls) * 1e6:.0f} µs per alert")
        if round_ == 0:
            for text in texts:
                digest.update(repr((text.body, text.summary, sorted(text.bodies.items()))).encode())
    print(f"digest of the texts: {digest.hexdigest()[:16]}")


def _record(zones: int) -> list[tuple[Any, ...]]:
    """Every `_hazard_text` call of the cold-front and the all-clear polls."""
    pb: Any = importlib.import_module("pipeline_bench")  # the province builder, --root's bench/

    import dispatcher.alerts.hazards as hazards
    import dispatcher.runtime as runtime_module
    from dispatcher.feeds.replay import ReplayFeed
    from dispatcher.settings import Settings

    calls: list[tuple[Any, ...]] = []
    real = hazards._hazard_text

    def recording(
        alert: Any, t: Any, now: Any, county: Any, wording: Any, channel: str, **options: Any
    ) -> Any:
        seen = SimpleNamespace(  # the columns a text reads, kept past the session
            onset=alert.onset,
            until=alert.until,
            evidence=dict(alert.evidence),
            authority=alert.authority,
            code=alert.code,
            rule_id=alert.rule_id,
        )
        # replayed rendering every medium (`lazy` resolutions too), as every version can
        calls.append((seen, t, now, county, wording, channel))
        return real(alert, t, now, county, wording, channel, **options)

    with tempfile.TemporaryDirectory(prefix="yujing-render-bench-") as tmp:
        work = Path(tmp)
        config, cold, calm = pb.province(work, max(1, zones // 40))
        settings = Settings(
            _env_file=None,
            config_dir=config,
            database_url=f"sqlite:///{work / 'bench.db'}",
            feed="replay",
            replay_file=cold,
            replay_rebase=False,
            channel="console",
        )
        clock = pb._Clock()
        rt = runtime_module.open_runtime(
            settings, clock=clock, console=io.StringIO(), wake=lambda: None
        )
        hazards._hazard_text = recording
        drawing = secrets.choice
        secrets.choice = random.Random(14).choice  # the same alert codes on every run
        try:
            rounds = [
                (cold, pb.AT),
                (calm, pb.AT.replace(day=8)),
                (calm, pb.AT.replace(day=8, hour=20)),
            ]
            for recording_file, now in rounds:
                rt.pipeline.feed = ReplayFeed(recording_file)
                clock.now = now
                asyncio.run(rt.pipeline.poll())
        finally:
            secrets.choice = drawing
            hazards._hazard_text = real
            asyncio.run(rt.aclose())
    return calls


if __name__ == "__main__":
    main()
