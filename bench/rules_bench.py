"""Rule-engine speed at national scale: the full built-in library on synthetic weather.

Builds 300,000 zones on 100,000 forecast points with 168 hourly steps of
seeded, physically plausible winter weather (a cold front sweeping south-east
with wind, rain turning to snow, snow cover, night fog, a diurnal cycle), then
evaluates the whole built-in library (`rules/library/*.yaml`) and prints:

- the evaluation time: median of `--runs` runs after one warm-up run, with the
  zones as a `ZoneTable` built once (as the daemon builds it once per county
  load; its build time and the first, warm-up evaluation are printed apart);
- the peak memory of one evaluation, measured with tracemalloc in a separate,
  untimed run (numpy reports its buffers to tracemalloc), plus the process's
  peak RSS (resource.getrusage) for scale;
- the number of assessments (firing per hazard and level, indeterminate);
- the time of the reference evaluator (tests/rules/reference.py, plain loops)
  on a random sample of points and their zones, scaled up to all zones, and
  the ratio to the vectorised time. The sample's results are also compared
  with the vectorised evaluator's on the same sample.

    .venv/bin/python bench/rules_bench.py [--zones N --points N --hours N]

Targets (issue 3): the full case under 2 s on one core, at least 20× faster
than the reference loop.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the reference lives in tests/
    sys.path.insert(0, str(ROOT))

from rules.evaluate import evaluate  # noqa: E402
from rules.loader import library_names, load_ruleset  # noqa: E402
from rules.ruleset import RuleSet  # noqa: E402
from rules.schema import RISK_LEVELS, ZONE_KINDS  # noqa: E402
from rules.types import Assessment, FloatArray, ForecastBatch, ZoneSpec  # noqa: E402
from rules.zonetable import ZoneTable  # noqa: E402
from tests.rules.reference import reference_evaluate  # noqa: E402

TIMEZONE = "Asia/Shanghai"
NOW = datetime(2026, 3, 6, 0, tzinfo=UTC)  # 08:00 in Beijing
TAGS = ("school", "work_shed", "slope_cut_housing", "trunk_road", "residential", "scenic_area")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zones", type=int, default=300_000)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--hours", type=int, default=168, help="hourly steps in the batch")
    parser.add_argument(
        "--past",
        type=int,
        default=80,
        help="of those, hours before the evaluation time [default: 80, from local midnight "
        "three days back, so whole local days cover the 72 h drops and the 72 h windows]",
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs (after one warm-up)")
    parser.add_argument("--sample", type=int, default=100, help="points run by the reference")
    parser.add_argument("--seed", type=int, default=20260106)
    parser.add_argument(
        "--weather",
        choices=["front", "calm"],
        default="front",
        help="a cold front with rain, snow and fog (default), or a mild dry week",
    )
    parser.add_argument(
        "--rules", type=Path, help="a rule file or directory [default: the whole built-in library]"
    )
    args = parser.parse_args(argv)
    if args.points > args.zones:
        parser.error("--points must not exceed --zones (every point has a zone)")
    if not 0 <= args.past < args.hours:
        parser.error("--past must be at least 0 and less than --hours")

    ruleset = load_ruleset(args.rules) if args.rules else whole_library()
    levels = sum(len(rule.levels) for rule in ruleset.rules)
    print(
        f"rules bench: {args.zones:,} zones on {args.points:,} points × {args.hours} hours "
        f"({args.past} before now), {len(ruleset.rules)} rules / {levels} levels "
        f"from {args.rules or 'the built-in library (every file)'}"
    )
    print(f"cpu: {_cpu()}, numpy {np.__version__}, {os.cpu_count()} cpus visible")

    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    start = NOW - timedelta(hours=args.past)
    batch = synthetic_weather(
        args.points, args.hours, start, rng, ruleset.variables, calm=args.weather == "calm"
    )
    zones = synthetic_zones(args.zones, batch, rng)
    size = sum(values.nbytes for values in batch.variables.values())
    print(
        f"inputs: {len(batch.variables)} variables ({', '.join(sorted(batch.variables))}), "
        f"{size / 1e9:.2f} GB, generated in {time.perf_counter() - started:.1f} s"
    )

    began = time.process_time()
    table = ZoneTable(zones)  # as the daemon does once per county load
    table_seconds = time.process_time() - began

    def once() -> list[Assessment]:
        return evaluate(ruleset, batch, table, NOW, TIMEZONE)

    rss_before = _max_rss()
    began = time.process_time()
    result = once()  # warm-up (also works out the zone table's point index and selectors)
    first_seconds = time.process_time() - began
    times, cpu = [], []
    for _ in range(args.runs):
        result = []  # as in the daemon, the last poll's assessments are gone by the next
        began, began_cpu = time.perf_counter(), time.process_time()
        result = once()
        times.append(time.perf_counter() - began)
        cpu.append(time.process_time() - began_cpu)
    median = statistics.median(times)
    print(
        f"evaluate: median {median:.3f} s wall of {args.runs} runs "
        f"({', '.join(f'{t:.3f}' for t in times)}) after one warm-up; "
        f"CPU time median {statistics.median(cpu):.3f} s (one thread)"
    )
    print(
        f"once per county load (not in the times above): zone table {table_seconds:.3f} s; "
        f"first evaluation with it {first_seconds:.3f} s CPU (locates the zones on the "
        f"points and applies every selector once)"
    )

    peak = _traced_peak(once)
    print(
        f"peak memory of one evaluation: {peak / 1e9:.2f} GB (tracemalloc, separate untimed run); "
        f"process peak RSS {_max_rss() / 1e9:.2f} GB "
        f"(+{(_max_rss() - rss_before) / 1e9:.2f} GB during evaluation, getrusage)"
    )

    print(f"assessments: {len(result):,} ({_summary(result)})")

    sample_batch, sample_zones = sample(batch, zones, args.sample, rng)
    began = time.perf_counter()
    expected = reference_evaluate(ruleset, sample_batch, sample_zones, NOW, TIMEZONE)
    reference = time.perf_counter() - began
    scaled = reference * len(zones) / len(sample_zones)
    agree = evaluate(ruleset, sample_batch, sample_zones, NOW, TIMEZONE) == expected
    print(
        f"reference loop: {reference:.2f} s on {len(sample_batch.point_ids)} points / "
        f"{len(sample_zones)} zones → {scaled:,.0f} s scaled to {len(zones):,} zones; "
        f"vectorised is {scaled / median:,.0f}× faster "
        f"(sample results {'agree' if agree else 'DISAGREE'})"
    )
    cpu_median = statistics.median(cpu)
    met = cpu_median < 2.0 and scaled / median >= 20
    print(
        f"targets (< 2 s on one core, ≥ 20×): {'met' if met else 'MISSED'} "
        f"(judged on CPU time; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus)"
    )


def whole_library() -> RuleSet:
    """Every file of the built-in library, included by one rule file as a county would."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "library.yaml"
        path.write_text(f"include: [{', '.join(library_names())}]\n", encoding="utf-8")
        return load_ruleset(path)


# --- synthetic inputs ------------------------------------------------------------------


def synthetic_weather(
    points: int,
    hours: int,
    start: datetime,
    rng: np.random.Generator,
    variables: frozenset[str],
    calm: bool = False,
) -> ForecastBatch:
    """Hourly early-spring weather over China for `points` random places: a cold front passes.

    With `calm`, a mild dry week instead (no front, no rain, no fog, 8 ℃ warmer):
    the same arrays to evaluate, few warnings. Values are rounded like the feed's
    (0.1 ℃, 0.1 mm, 0.1 m/s, 10 m).
    """
    mild = 8.0 if calm else 0.0
    # geohazard points cluster in the south-west and centre (Yunnan to Shanxi)
    lat = np.clip(rng.normal(30.0, 5.0, points), 21.0, 50.0)
    lon = np.clip(rng.normal(108.0, 8.0, points), 75.0, 133.0)
    t = np.arange(hours, dtype=np.float64)[None, :]
    utc_hour = (start.hour + t) % 24
    solar = (utc_hour + lon[:, None] / 15.0) % 24  # local solar hour

    base = 14.0 + mild - 0.9 * (lat - 22.0) + rng.normal(0.0, 2.0, points)  # early March
    amplitude = rng.uniform(3.0, 7.0, points)
    diurnal = -_col(amplitude) * np.cos(2 * np.pi * (solar - 15.0) / 24.0)
    # the front reaches the north-west first and sweeps south-east in about two days
    past = int((NOW - start).total_seconds() // 3600)
    arrival = past - 12.0 + (50.0 - lat) * 1.2 + (lon - 75.0) * 0.5 + rng.normal(0.0, 4.0, points)
    depth = (rng.uniform(2.0, 8.0, points) + 0.3 * (lat - 22.0)) * (0.0 if calm else 1.0)
    since = t - _col(arrival)
    front = _col(depth) * (_sigmoid(since / 3.0) - 0.5 * _sigmoid((since - 72.0) / 12.0))
    wobble = np.cumsum(rng.normal(0.0, 0.3, (points, hours)), axis=1)
    temperature = _col(base) + diurnal - front + wobble

    steady = rng.gamma(2.0, 1.5, points)
    gust = rng.uniform(3.0, 12.0, points) * (0.0 if calm else 1.0)
    wind = (
        _col(steady)
        + _col(gust) * np.exp(-((since / 8.0) ** 2))
        + rng.gamma(1.0, 0.6, (points, hours))
    )

    wet = rng.random(points) < (0.0 if calm else 0.4)
    rate = np.where(wet, rng.uniform(0.0, 2.5, points), 0.0)
    showers = np.where(
        rng.random((points, hours)) < (0.0 if calm else 0.03),
        rng.uniform(0.0, 1.0, (points, hours)),
        0.0,
    )
    frontal = _col(rate) * np.exp(-(((since - 3.0) / 5.0) ** 2))
    precipitation = _tenths(frontal + showers)
    showers = np.minimum(_tenths(showers), precipitation)
    snow_share = np.clip((1.0 - temperature) / 2.0, 0.0, 1.0)  # all snow below -1 ℃
    snowfall = _tenths(0.7 * precipitation * snow_share)  # cm of snow from mm of water
    rain = np.maximum(_tenths(precipitation * (1.0 - snow_share)) - showers, 0.0)
    melt = np.where(temperature > 0.0, 0.002, 0.0)
    snow_depth = np.maximum(np.cumsum(snowfall / 100.0 - melt, axis=1), 0.0)

    foggy = rng.random(points) < (0.0 if calm else 0.2)
    fog_night = (solar < 9.0) & (
        rng.random((points, hours // 24 + 2))[:, (t[0] // 24).astype(int)] < 0.35
    )
    fog = foggy[:, None] & fog_night
    visibility = np.where(
        fog, np.exp(rng.uniform(np.log(30.0), np.log(1500.0), (points, hours))), 24140.0
    )
    visibility = np.where(precipitation > 0, np.minimum(visibility, 3000.0), visibility)

    code = np.where(visibility < 1000, 45.0, np.where(rng.random((points, hours)) < 0.5, 3.0, 1.0))
    code = np.where(rain > 0, np.where(rain > 1.0, 63.0, 61.0), code)
    code = np.where(showers > 0, 80.0, code)
    code = np.where(snowfall > 0, np.where(snowfall > 1.0, 73.0, 71.0), code)
    freezing = (precipitation > 0) & (temperature < 0.0) & (temperature > -3.0)
    code = np.where(freezing & (rng.random((points, hours)) < 0.15), 66.0, code)

    soil = temperature + 0.6 * diurnal + 1.0
    made: dict[str, FloatArray] = {
        "temperature_2m": _round(temperature, 1),
        "apparent_temperature": _round(temperature - 0.4 * wind, 1),
        "soil_temperature_0cm": _round(soil, 1),
        "precipitation": precipitation,
        "rain": rain,
        "showers": showers,
        "snowfall": snowfall,
        "snow_depth": _round(snow_depth, 2),
        "weather_code": code,
        "visibility": _round(visibility, -1),
        "wind_speed_10m": _round(wind, 1),
        "wind_gusts_10m": _round(wind * 1.6, 1),
        "freezing_level_height": _round(np.maximum(temperature, 0.0) * 150.0, -1),
        "relative_humidity_2m": np.clip(
            _round(70.0 + 10.0 * np.cos(2 * np.pi * solar / 24)), 0, 100
        ),
        "dew_point_2m": _round(temperature - 4.0, 1),
    }
    wanted = sorted(variables) or sorted(made)
    first = np.datetime64(start.astimezone(UTC).replace(tzinfo=None), "s")
    return ForecastBatch(
        source="bench",
        issued_at=start,
        point_ids=tuple(f"P{k:06d}" for k in range(points)),
        latitudes=_round(lat, 4),
        longitudes=_round(lon, 4),
        times=first + np.arange(hours) * np.timedelta64(3600, "s"),
        variables={name: np.ascontiguousarray(made[name], dtype=np.float64) for name in wanted},
    )


def synthetic_zones(count: int, batch: ForecastBatch, rng: np.random.Generator) -> list[ZoneSpec]:
    """`count` zones: every point has one, the rest fall on random points."""
    points = len(batch.point_ids)
    of = np.concatenate([np.arange(points), rng.integers(0, points, count - points)])
    kinds = rng.choice(len(ZONE_KINDS), count, p=_weights(len(ZONE_KINDS)))
    risks = rng.choice(len(RISK_LEVELS), count, p=[0.3, 0.4, 0.2, 0.1][: len(RISK_LEVELS)])
    tagged = rng.random((count, len(TAGS))) < 0.12
    townships = rng.integers(0, 40_000, count)
    jitter = rng.uniform(-0.01, 0.01, (count, 2))
    return [
        ZoneSpec(
            id=f"Z{k:07d}",
            name=f"隐患点 {k}",
            kind=ZONE_KINDS[kinds[k]],
            township=f"T{townships[k]:05d}",
            risk_level=RISK_LEVELS[risks[k]],
            tags=frozenset(tag for tag, on in zip(TAGS, tagged[k], strict=True) if on),
            latitude=float(batch.latitudes[of[k]] + jitter[k, 0]),
            longitude=float(batch.longitudes[of[k]] + jitter[k, 1]),
            point_id=batch.point_ids[of[k]],
        )
        for k in range(count)
    ]


def sample(
    batch: ForecastBatch, zones: list[ZoneSpec], points: int, rng: np.random.Generator
) -> tuple[ForecastBatch, list[ZoneSpec]]:
    """A batch of `points` random points and the zones on them."""
    chosen = np.sort(rng.choice(len(batch.point_ids), min(points, len(batch.point_ids)), False))
    ids = tuple(batch.point_ids[k] for k in chosen)
    wanted = set(ids)
    sub = ForecastBatch(
        source=batch.source,
        issued_at=batch.issued_at,
        point_ids=ids,
        latitudes=batch.latitudes[chosen],
        longitudes=batch.longitudes[chosen],
        times=batch.times,
        variables={name: values[chosen] for name, values in batch.variables.items()},
    )
    return sub, [zone for zone in zones if zone.point_id in wanted]


def _sigmoid(x: FloatArray) -> FloatArray:
    result: FloatArray = 1.0 / (1.0 + np.exp(-x))
    return result


def _tenths(x: FloatArray) -> FloatArray:
    return _round(np.maximum(x, 0.0), 1)


def _round(x: FloatArray, decimals: int = 0) -> FloatArray:
    return np.asarray(np.round(x, decimals), dtype=np.float64)


def _col(x: FloatArray) -> FloatArray:
    """A per-point value as a column, to broadcast over the hours."""
    return x[:, None]


def _weights(count: int) -> list[float]:
    raw = [3.0, 3.0, 1.0, 1.0, 0.5, 2.0][:count] + [1.0] * max(count - 6, 0)
    return [w / sum(raw) for w in raw]


# --- reporting ---------------------------------------------------------------------------


def _summary(result: list[Assessment]) -> str:
    firing = Counter((a.hazard, a.level.key) for a in result if a.level is not None)
    undecided = sum(1 for a in result if a.level is None)
    parts = [f"{hazard} {level} {n:,}" for (hazard, level), n in sorted(firing.items())]
    parts.append(f"indeterminate {undecided:,}")
    return ", ".join(parts)


def _traced_peak(run: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def _max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
