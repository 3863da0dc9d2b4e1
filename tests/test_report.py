"""The information report (信息报送) for a drill period: HTML and CSV, on both databases.

The drill runs the real pipeline on the recorded cold wave with a simulated
clock and delivers to the console; a few alerts are acknowledged, two
messages get provider receipts and one deadline is missed. The runtime is
wired here from the same parts `open_runtime` uses, on tables made by
create_all (open_runtime would run migrations, which do not have the
acknowledgement tables yet).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from channels.console import ConsoleChannel
from dispatcher import audit
from dispatcher.alerts.acknowledge import acknowledge
from dispatcher.cli import app
from dispatcher.directory import sync_directory
from dispatcher.feeds.points import assign_points
from dispatcher.feeds.replay import ReplayFeed
from dispatcher.outbox import DeliveryWorker, record_receipt
from dispatcher.pipeline import Pipeline
from dispatcher.report import CSV_COLUMNS, build_report, render_csv, render_html
from dispatcher.runtime import drain
from dispatcher.settings import Settings
from dispatcher.storage.models import Alert, Notification
from rules.loader import load_ruleset
from tests.support import Clock, example_county

ROOT = Path(__file__).resolve().parents[1]
COUNTY = ROOT / "examples" / "liulin"
COLDWAVE = COUNTY / "scenarios" / "coldwave-2026-01.json"
AT = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)  # 2026-01-07 00:00 in Shanghai
SHIFT_END = AT + timedelta(hours=8, minutes=30)  # 08:30 handover
TZ = "Asia/Shanghai"


@dataclass(frozen=True)
class Drill:
    """What the drill did, for the report's expected contents."""

    notifications: int
    alerts: int
    sms_acked: str  # alert code acknowledged by SMS reply
    link_acked: str  # alert code acknowledged on the link page, with a note
    overdue: str  # alert code whose deadline was missed
    upgraded: int


async def run_drill(sessions: sessionmaker[Session]) -> Drill:
    clock = Clock(AT)
    settings = Settings(_env_file=None, config_dir=COUNTY, channel="console")
    county = example_county()
    ruleset = load_ruleset(COUNTY / "rules")
    points, point_of = assign_points(
        [(z.id, z.latitude, z.longitude) for z in county.zones], settings.point_resolution_deg
    )
    with sessions.begin() as session:
        sync_directory(session, county, point_of, clock())
    worker = DeliveryWorker.from_settings(
        settings,
        sessions=sessions,
        channels={"console": ConsoleChannel(io.StringIO())},
        clock=clock,
    )
    pipeline = Pipeline(
        sessions=sessions,
        county=county,
        rules=lambda: ruleset,
        feed=ReplayFeed(COLDWAVE),
        points=points,
        zones=county.zone_specs(point_of),
        channel="console",
        interval=timedelta(minutes=30),
        clock=clock,
        started_at=clock(),
    )

    # 00:00 the cold wave is forecast: 80 warnings go out
    await pipeline.poll()
    await drain(worker)

    # 00:20 – 00:40 two people acknowledge, two receipts come back, one deadline is missed
    with sessions.begin() as session:
        orange = session.scalars(
            select(Alert).where(Alert.hazard == "cold_wave", Alert.level == "orange")
        ).first()
        icing = session.scalars(select(Alert).where(Alert.hazard == "road_icing")).first()
        late = session.scalars(
            select(Alert).where(Alert.hazard == "cold_wave", Alert.level == "yellow")
        ).first()
        assert orange and icing and late
        prevention = next(
            p for r, p in county.people_of(orange.zone_id or "") if r == "disaster_prevention"
        )
        acknowledge(
            session,
            alert=orange,
            person_id=prevention.id,
            actor=prevention.id,
            method="sms",
            note=None,
            at=AT + timedelta(minutes=20),
        )
        officer = county.duty_officers()[0]
        acknowledge(
            session,
            alert=icing,
            person_id=officer.id,
            actor=officer.id,
            method="link",
            note="已通知公路段撒盐",
            at=AT + timedelta(minutes=25),
        )
        sent = session.scalars(
            select(Notification).where(Notification.alert_id == orange.id).order_by(Notification.id)
        ).all()
        record_receipt(
            session,
            provider_id=sent[0].provider_id or "",
            status="delivered",
            error_code=None,
            payload={},
            at=AT + timedelta(minutes=1),
        )
        record_receipt(
            session,
            provider_id=sent[1].provider_id or "",
            status="undelivered",
            error_code="30003",
            payload={},
            at=AT + timedelta(minutes=2),
        )
        audit.record(
            session,
            at=AT + timedelta(minutes=40),
            actor="scheduler",
            action="alert.overdue",
            subject=f"alert:{late.id}",
            data={"code": late.code, "deadline": (AT + timedelta(minutes=40)).isoformat()},
        )
        codes = (orange.code, icing.code, late.code)

    # 04:00 road icing gets worse everywhere: 40 warnings are raised to orange
    clock.now = AT + timedelta(hours=4)
    upgraded = (await pipeline.poll()).transitions.get("upgraded", 0)
    await drain(worker)

    with sessions() as session:
        notifications = len(session.scalars(select(Notification.id)).all())
        alerts = len(session.scalars(select(Alert.id)).all())
    return Drill(notifications, alerts, *codes, upgraded=upgraded)


def shift_report(sessions: sessionmaker[Session]) -> tuple[str, str]:
    with sessions() as session:
        report = build_report(
            session,
            start=AT,
            end=SHIFT_END,
            timezone=TZ,
            now=SHIFT_END,
            title="柳林县自然资源局",
        )
    return render_html(report), render_csv(report)


async def test_the_html_report_lists_every_warning_with_its_timeline(
    sessions: sessionmaker[Session],
) -> None:
    drill = await run_drill(sessions)
    assert (drill.alerts, drill.upgraded) == (120, 40)

    page, _ = shift_report(sessions)

    assert "柳林县自然资源局地质灾害气象预警信息报送" in page
    assert "报送时段：2026-01-07 00:00 至 2026-01-07 08:30" in page
    assert page.count('<section class="warning"') == 80  # 40 cold wave + 40 road icing episodes
    assert page.count('<svg class="timeline"') == 80
    assert page.count('class="level-bar"') == 120  # one bar per alert, superseded ones included
    assert page.count('<tr class="delivery">') == drill.notifications
    assert page.count('<span class="lv lv-yellow">黄色</span> → <span class="lv lv-orange">') == 40
    assert page.count('<span class="tag overdue">迟报</span>') == 1
    assert f'id="w-{drill.overdue}"' in page
    assert "短信回复" in page and "链接确认" in page and "已通知公路段撒盐" in page
    assert "未送达（30003）" in page and "已送达" in page
    assert "审计链完整" in page
    # self-contained: no script, no stylesheet or image fetched from anywhere
    assert "<script" not in page and "<link" not in page and "src=" not in page
    assert page.replace('xmlns="http://www.w3.org/2000/svg"', "").count("http") == 0


async def test_the_csv_report_has_one_row_per_message_with_its_alert(
    sessions: sessionmaker[Session],
) -> None:
    drill = await run_drill(sessions)

    _, text = shift_report(sessions)
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)

    assert reader.fieldnames == list(CSV_COLUMNS)
    messages = [r for r in rows if r["notification_id"]]
    assert len(messages) == drill.notifications
    # the duty officer acknowledged on the link without a message of their own: one more row
    [unsent] = [r for r in rows if not r["notification_id"]]
    assert (unsent["alert_code"], unsent["recipient_ack_method"]) == (drill.link_acked, "link")
    assert len({r["alert_code"] for r in rows}) == 120
    assert len({r["episode"] for r in rows}) == 80
    assert Counter(r["level"] for r in rows if r["supersedes"]) == {
        "orange": sum(1 for r in rows if r["hazard"] == "road_icing" and r["level"] == "orange")
    }
    assert len({r["alert_code"] for r in rows if r["supersedes"]}) == 40
    assert {r["status"] for r in messages} == {"sent", "delivered", "undelivered"}
    acked = [r for r in rows if r["recipient_ack_method"]]
    assert {(r["alert_code"], r["recipient_ack_method"]) for r in acked} == {
        (drill.sms_acked, "sms"),
        (drill.link_acked, "link"),
    }
    assert [r["recipient_ack_note"] for r in acked if r["recipient_ack_method"] == "link"] == [
        "已通知公路段撒盐"
    ]
    assert {r["alert_code"] for r in rows if r["overdue_at"]} == {drill.overdue}
    assert all(r["opened_at"].endswith("+08:00") for r in rows)
    assert sum("delivered@2026-01-07T00:01:00+08:00" in r["receipts"] for r in rows) == 1


async def test_yujing_report_writes_the_csv_file_and_the_html_page(
    sessions: sessionmaker[Session],
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drill = await run_drill(sessions)
    for key in [k for k in __import__("os").environ if k.startswith("YUJING_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("YUJING_DATABASE_URL", db_url)
    monkeypatch.setenv("YUJING_CONFIG_DIR", str(COUNTY))
    runner = CliRunner()

    written = runner.invoke(
        app, ["report", "--from", "2026-01-07", "--to", "2026-01-07T08:30", "--out", "shift.csv"]
    )
    shown = runner.invoke(
        app, ["report", "--from", "2026-01-07T00:00+08:00", "--to", "2026-01-07T08:30"]
    )

    assert written.exit_code == 0, written.output
    assert "80 warning(s)" in written.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "shift.csv").read_text("utf-8-sig"))))
    assert sum(1 for r in rows if r["notification_id"]) == drill.notifications
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.count('<section class="warning"') == 80
    assert "柳林县自然资源局地质灾害气象预警信息报送" in shown.stdout


def test_a_quiet_period_reports_no_warning(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        report = build_report(session, start=AT, end=SHIFT_END, timezone=TZ, now=SHIFT_END)

    assert "本时段内没有预警" in render_html(report)
    assert render_csv(report) == ",".join(CSV_COLUMNS) + "\r\n"


def test_a_period_that_ends_before_it_starts_is_refused(sessions: sessionmaker[Session]) -> None:
    with sessions() as session, pytest.raises(ValueError, match="must end after it starts"):
        build_report(session, start=SHIFT_END, end=AT, timezone=TZ, now=SHIFT_END)


def test_a_bad_report_time_is_refused_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUJING_CONFIG_DIR", str(COUNTY))
    result = CliRunner().invoke(app, ["report", "--from", "yesterday", "--to", "2026-01-07"])

    assert result.exit_code == 1
    assert "--from 'yesterday': expected ISO 8601" in result.stderr
    assert "Traceback" not in result.output
