"""Acceptance (issue 16): `/metrics` after a drill-like run finds each family with the right values.

The real runtime (configuration, rules, pipeline, outbox worker) on the
example county replaying the recorded cold wave, on SQLite and PostgreSQL:
one poll, delivery, one acknowledgement, then a scrape of `/metrics` through
the web application, parsed with prometheus_client's own parser. Then the
families of a refused rules edit, and the token that guards `/metrics`.
"""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from ruamel.yaml import YAML
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.alerts.acknowledge import acknowledge
from dispatcher.metrics import DatabaseCollector, Metrics
from dispatcher.runtime import Runtime, drain, open_runtime
from dispatcher.states import NotificationStatus, TimerStatus
from dispatcher.storage.models import Alert, Base, EscalationTimer, Notification
from dispatcher.web.app import create_app, is_loopback
from dispatcher.web.state import AppState
from tests.support import LIULIN, ROOT, Clock, replay_settings

AT = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)  # 2026-01-07 00:00 in Shanghai
OFFICER = "p-duty-li"  # on duty 2026-01-06 08:30 → 01-07 08:30 (roster.yaml)

#: family name → {labels as sorted tuples: value}, for every sample of the scrape
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def make_runtime(config_dir: Path, db_url: str, clock: Clock, **changes: object) -> Runtime:
    settings = replay_settings(config_dir, db_url, **changes)
    return open_runtime(settings, clock=clock, console=io.StringIO(), wake=lambda: None)


def app_state(rt: Runtime, clock: Clock) -> AppState:
    return AppState(
        sessions=rt.sessions,
        settings=rt.settings,
        clock=clock,
        feed_source=rt.feed.source,
        started_at=AT,
        rules=rt.rules.status,
        metrics=rt.metrics,
    )


def scrape(state: AppState, headers: dict[str, str] | None = None) -> Samples:
    with TestClient(create_app(state)) as client:
        response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def labels(**values: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(values.items()))


@pytest.fixture
def runtime(db_url: str) -> Iterator[tuple[Runtime, Clock]]:
    clock = Clock(AT)
    rt = make_runtime(LIULIN, db_url, clock)
    yield rt, clock
    rt.close_database()


async def test_metrics_after_the_cold_wave_drill(runtime: tuple[Runtime, Clock]) -> None:
    rt, clock = runtime
    state = app_state(rt, clock)
    before = scrape(state)
    assert before["yujing_database_up"] == {(): 1.0}
    assert "yujing_alerts_open" not in before  # nothing open yet

    result = await rt.pipeline.poll()
    assert result.ok
    await drain(rt.worker)
    # the duty officer acknowledges the cold wave event five minutes after it opened
    clock.now = AT + timedelta(minutes=5)
    with rt.sessions.begin() as session:
        cold = session.scalars(
            select(Alert).where(Alert.kind == "event", Alert.hazard == "cold_wave")
        ).one()
        outcome = acknowledge(
            session,
            alert=cold,
            person_id=OFFICER,
            actor=OFFICER,
            method="sms",
            note=None,
            at=clock.now,
        )
        assert outcome.complete, outcome.reason
    # the ten-minute escalation steps are enqueued and not yet delivered; six minutes
    # later they still wait, and the fifteen-minute deadlines are due, not yet run
    clock.now = AT + timedelta(minutes=10)
    assert rt.pipeline.escalate() > 0
    clock.now = AT + timedelta(minutes=16)
    got = scrape(state)

    # zone alerts by hazard and level; events as their own family
    zone_alerts = got["yujing_alerts_open"]
    assert zone_alerts[labels(kind="hazard", hazard="cold_wave", level="orange")] == 10
    assert zone_alerts[labels(kind="hazard", hazard="cold_wave", level="yellow")] == 30
    road = {k: v for k, v in zone_alerts.items() if ("hazard", "road_icing") in k}
    assert sum(road.values()) == 40
    assert got["yujing_events_open"] == {
        labels(hazard="cold_wave", level="orange"): 1,
        labels(hazard="road_icing", level="yellow"): 1,
    }
    # the acknowledged event is no longer unacknowledged; road icing's still is
    unacked = got["yujing_alerts_unacknowledged"]
    assert labels(kind="event", level="orange") not in unacked
    assert unacked[labels(kind="event", level="yellow")] == 1
    assert unacked[labels(kind="hazard", level="orange")] == 10

    with rt.sessions() as session:
        by_status = {
            (channel, status): count
            for channel, status, count in session.execute(
                select(Notification.channel, Notification.status, func.count()).group_by(
                    Notification.channel, Notification.status
                )
            )
        }
        oldest_due = {
            channel: at
            for channel, at in session.execute(
                select(Notification.channel, func.min(Notification.next_attempt_at))
                .where(
                    Notification.status == NotificationStatus.PENDING,
                    Notification.next_attempt_at <= clock.now,
                )
                .group_by(Notification.channel)
            )
        }
        timers = {
            kind: (count, due)
            for kind, count, due in session.execute(
                select(
                    EscalationTimer.kind,
                    func.count(),
                    func.count().filter(EscalationTimer.due_at <= clock.now),
                )
                .where(EscalationTimer.status == TimerStatus.PENDING)
                .group_by(EscalationTimer.kind)
            )
        }
        sent = {
            channel: attempts
            for channel, attempts in session.execute(
                select(Notification.channel, func.sum(Notification.attempts)).group_by(
                    Notification.channel
                )
            )
        }

    # the outbox by channel and status, exactly the database's
    assert {
        (dict(k)["channel"], dict(k)["status"]): v for k, v in got["yujing_outbox_rows"].items()
    } == by_status
    assert sum(c for (_, s), c in by_status.items() if s == "sent") > 0
    assert got["yujing_outbox_oldest_due_seconds"][labels(channel="console")] == 360.0
    for channel in {c for c, _ in by_status}:
        expected = (clock.now - due).total_seconds() if (due := oldest_due.get(channel)) else 0.0
        assert got["yujing_outbox_oldest_due_seconds"][labels(channel=channel)] == expected

    # escalation timers: planned, and due (due_at <= now) since nothing ran them
    assert {dict(k)["kind"]: v for k, v in got["yujing_escalation_timers_pending"].items()} == {
        kind: count for kind, (count, _) in timers.items()
    }
    assert {dict(k)["kind"]: v for k, v in got["yujing_escalation_timers_due"].items()} == {
        kind: due for kind, (_, due) in timers.items()
    }
    assert timers["deadline"][1] > 0
    assert got["yujing_escalation_timers_oldest_due_seconds"] == {(): 60.0}

    # the last good forecast finished at AT: sixteen minutes old
    assert got["yujing_feed_data_age_seconds"] == {labels(source=rt.feed.source): 960.0}

    # acknowledgement latency: one event, orange, five minutes
    ack = {
        (name, dict(k).get("le")): v
        for name in (
            "yujing_acknowledgement_latency_seconds_bucket",
            "yujing_acknowledgement_latency_seconds_count",
            "yujing_acknowledgement_latency_seconds_sum",
        )
        for k, v in got[name].items()
        if dict(k)["kind"] == "event" and dict(k)["level"] == "orange"
    }
    assert ack[("yujing_acknowledgement_latency_seconds_bucket", "60.0")] == 0
    assert ack[("yujing_acknowledgement_latency_seconds_bucket", "300.0")] == 1
    assert ack[("yujing_acknowledgement_latency_seconds_bucket", "+Inf")] == 1
    assert ack[("yujing_acknowledgement_latency_seconds_count", None)] == 1
    assert ack[("yujing_acknowledgement_latency_seconds_sum", None)] == pytest.approx(300.0)
    zone_acks = got.get("yujing_acknowledgement_latency_seconds_count", {})
    assert not any(dict(k)["kind"] == "hazard" for k in zone_acks)

    # in-process: one poll, ok, timed; every send timed per channel; no provider errors
    source = rt.feed.source
    assert got["yujing_feed_polls_total"] == {labels(source=source, outcome="ok"): 1}
    assert got["yujing_feed_poll_duration_seconds_count"] == {labels(source=source): 1}
    assert got["yujing_feed_poll_duration_seconds_sum"][labels(source=source)] > 0
    assert {
        dict(k)["channel"]: v for k, v in got["yujing_send_duration_seconds_count"].items()
    } == {channel: attempts for channel, attempts in sent.items() if attempts}
    assert "yujing_send_errors_total" not in got
    assert got["yujing_rules_error"] == {(): 0.0}
    assert got["yujing_database_up"] == {(): 1.0}


async def test_a_refused_rules_edit_and_a_failed_send_are_counted(
    db_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "county"
    shutil.copytree(LIULIN, config)
    clock = Clock(AT)
    rt = make_runtime(config, db_url, clock)
    try:
        state = app_state(rt, clock)
        (config / "rules" / "cold_wave.yaml").write_text("rules: [\n", encoding="utf-8")
        reload = await rt.rulewatch.poll()
        assert reload is not None and reload.outcome == "refused"
        # the administrators' alert about it cannot go out on a channel not configured here
        with rt.sessions.begin() as session:
            row = session.scalars(select(Notification).order_by(Notification.id)).first()
            assert row is not None
            row.channel = "wecom"
        await drain(rt.worker)
        got = scrape(state)
    finally:
        rt.close_database()
    assert got["yujing_rules_reloads_total"] == {labels(outcome="refused"): 1}
    assert got["yujing_rules_error"] == {(): 1.0}
    assert got["yujing_alerts_open"][labels(kind="system", hazard="rules_refused", level="orange")]
    assert got["yujing_send_errors_total"][labels(channel="wecom", outcome="permanent")] == 1
    assert got["yujing_send_duration_seconds_count"][labels(channel="wecom")] == 1


@pytest.fixture
def empty_runtime(db_url: str) -> Iterator[Runtime]:
    rt = make_runtime(LIULIN, db_url, Clock(AT))
    yield rt
    rt.close_database()


def token_state(rt: Runtime, host: str, token: str | None) -> AppState:
    settings = rt.settings.model_copy(
        update={"http_host": host, "metrics_token": SecretStr(token) if token else None}
    )
    state = app_state(rt, Clock(AT))
    state.settings = settings
    return state


def status_of(state: AppState, authorization: str | None) -> int:
    headers = {"Authorization": authorization} if authorization else {}
    with TestClient(create_app(state)) as client:
        response = client.get("/metrics", headers=headers)
        if response.status_code == 401:
            assert "yujing_" not in response.text
            assert response.headers["www-authenticate"] == "Bearer"
        return int(response.status_code)


def test_metrics_needs_the_token_beyond_loopback(empty_runtime: Runtime) -> None:
    token = "metrics-token-0123456789abcdef"
    public = token_state(empty_runtime, "0.0.0.0", token)
    assert status_of(public, None) == 401
    assert status_of(public, "Bearer wrong-token") == 401
    assert status_of(public, f"Basic {token}") == 401
    assert status_of(public, f"Bearer {token}") == 200
    assert scrape(public, {"Authorization": f"Bearer {token}"})["yujing_database_up"] == {(): 1.0}
    # beyond loopback without a token configured: closed
    assert status_of(token_state(empty_runtime, "0.0.0.0", None), None) == 401
    assert status_of(token_state(empty_runtime, "yujing.example.gov.cn", None), None) == 401
    # loopback: open without a token; a configured token is still required
    assert status_of(token_state(empty_runtime, "127.0.0.1", None), None) == 200
    assert status_of(token_state(empty_runtime, "::1", None), None) == 200
    assert status_of(token_state(empty_runtime, "127.0.0.1", token), None) == 401
    assert status_of(token_state(empty_runtime, "127.0.0.1", token), f"Bearer {token}") == 200


def test_loopback_hosts() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.8.0.1") and is_loopback("localhost")
    assert is_loopback("::1") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.0.0.5")
    assert not is_loopback("yujing.example.gov.cn")


def test_a_database_it_cannot_read_is_reported_not_raised(
    engine: Engine, sessions: sessionmaker[Session], db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    state = AppState(
        sessions=sessions,
        settings=replay_settings(LIULIN, db_url),
        clock=Clock(AT),
        feed_source="openmeteo",
        started_at=AT,
    )
    assert scrape(state)["yujing_database_up"] == {(): 1.0}
    Base.metadata.drop_all(engine)  # every query of the scrape now fails
    with TestClient(create_app(state)) as client, caplog.at_level(logging.INFO, "yujing.metrics"):
        bodies = [client.get("/metrics").text for _ in range(3)]
        Base.metadata.create_all(engine)
        bodies += [client.get("/metrics").text for _ in range(2)]
    assert [("yujing_database_up 0.0" in body) for body in bodies] == [True] * 3 + [False] * 2
    assert "yujing_outbox_rows" not in bodies[0] and "yujing_alerts_open" not in bodies[0]
    assert "yujing_rules_error 0.0" in bodies[0]
    # logged once on failure and once on recovery, not on every scrape
    logged = [r.getMessage() for r in caplog.records if r.name == "yujing.metrics"]
    assert len(logged) == 2, logged
    # no table: OperationalError on SQLite, ProgrammingError on PostgreSQL
    failed = r"metrics: cannot read the database \((Operational|Programming)Error\)"
    assert re.fullmatch(failed, logged[0])
    assert logged[1] == "metrics: the database can be read again"


def exported_samples(sessions: sessionmaker[Session]) -> set[str]:
    """Every sample name /metrics can carry (families with no samples yet included)."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum")}
    names: set[str] = set()
    families = [
        *Metrics().registry.collect(),
        *DatabaseCollector(sessions, lambda: AT).collect(),
    ]
    for family in families:
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def metric_names(expr: str) -> set[str]:
    """The yujing_* series an expression reads (label values and strings removed)."""
    bare = re.sub(r'"[^"]*"', "", re.sub(r"\{[^}]*\}", "", expr))
    return set(re.findall(r"\byujing_[a-z_]+\b", bare))


def test_the_dashboard_and_alerting_rules_read_only_exported_metrics(
    sessions: sessionmaker[Session],
) -> None:
    exported = exported_samples(sessions)
    docs = ROOT / "docs"
    rules = YAML(typ="safe").load((docs / "prometheus-yujing-rules.yml").read_text("utf-8"))
    alerts = {r["alert"]: r["expr"] for group in rules["groups"] for r in group["rules"]}
    for name in (
        "YujingScrapeDown",
        "YujingFeedDataTooOld",
        "YujingOutboxOldestDueTooOld",
        "YujingEscalationTimersOverdue",
        "YujingRulesReloadFailing",
    ):
        assert name in alerts
    assert "up{" in alerts["YujingScrapeDown"]
    for name, expr in alerts.items():
        used = metric_names(expr)
        assert used or name == "YujingScrapeDown", name
        assert used <= exported, (name, used - exported)

    dashboard = json.loads((docs / "grafana-yujing.json").read_text("utf-8"))
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs
    for expr in exprs:
        used = metric_names(expr)
        assert used and used <= exported, (expr, used - exported)

    # docs/monitoring.md describes every family, and only those
    text = (docs / "monitoring.md").read_text("utf-8")
    documented = set(re.findall(r"^\| `(yujing_[a-z_]+)` \|", text, re.MULTILINE))
    families = {
        f.name + ("_total" if f.type == "counter" else "")
        for f in [*Metrics().registry.collect(), *DatabaseCollector(sessions, lambda: AT).collect()]
    }
    assert documented == families
