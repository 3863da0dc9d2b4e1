"""The information report (信息报送): one event per one or two A4 pages, on both databases.

The real pipeline runs on the recorded cold wave with a simulated clock and
delivers to the console; the events are made by `tests.report_events` (what
the event core will do), the bureau is told about them, a few zones and one
event are acknowledged, two messages get provider receipts and deadlines are
missed. The report of the shift is then read as a superior reads it: in
Chromium's A4 PDF (pages counted here, in Python) and as text.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import shutil
import subprocess
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
from dispatcher.county import County, ReportConfig, load_county
from dispatcher.directory import sync_directory
from dispatcher.feeds.points import assign_points
from dispatcher.feeds.replay import ReplayFeed
from dispatcher.labels import channel_label
from dispatcher.outbox import DeliveryWorker, record_receipt
from dispatcher.pipeline import Pipeline
from dispatcher.report import CSV_COLUMNS, Report, build_report, render_csv, render_html
from dispatcher.reporting.privacy import mask_phone, scrub
from dispatcher.reporting.timeline import event_timeline
from dispatcher.runtime import drain
from dispatcher.settings import Settings
from dispatcher.storage.models import Alert, Notification
from rules.config import ConfigError
from rules.loader import load_ruleset
from tests.report_events import big_county, county_sized_event, group_into_events
from tests.support import Clock, example_county

ROOT = Path(__file__).resolve().parents[1]
COUNTY = ROOT / "examples" / "liulin"
COLDWAVE = COUNTY / "scenarios" / "coldwave-2026-01.json"
AT = datetime(2026, 1, 6, 16, 0, tzinfo=UTC)  # 2026-01-07 00:00 in Shanghai
SHIFT_END = AT + timedelta(hours=8, minutes=30)  # 08:30 handover
TZ = "Asia/Shanghai"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
NOTE = "已通知各乡镇组织巡查，公路段撒盐"
ZONE_NOTE = "已电话通知村防灾责任人，组织巡查"


@dataclass(frozen=True)
class Drill:
    """What the drill did, for the report's expected contents."""

    cold_wave: str  # event codes
    road_icing: str
    officer: str  # the duty officer who acknowledged the cold wave event
    sms_zone: str  # zone acknowledged by SMS reply, with a note
    overdue_zone: str  # zone whose deadline was missed
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

    # 00:00 the cold wave is forecast: 80 zone warnings in two events
    await pipeline.poll()
    with sessions.begin() as session:
        events = group_into_events(session, county, AT)
    await drain(worker)

    # 00:20 – 00:40 the duty officer acknowledges the cold wave, a 防灾责任人 his zone,
    # two receipts come back, one zone's deadline is missed and the leader is told
    officer = county.duty_officers()[0]
    with sessions.begin() as session:
        cold = session.get_one(Alert, events["cold_wave"].id)
        icing = session.get_one(Alert, events["road_icing"].id)
        orange = session.scalars(
            select(Alert).where(Alert.event_id == cold.id, Alert.level == "orange")
        ).first()
        late = session.scalars(
            select(Alert).where(Alert.event_id == icing.id).order_by(Alert.id)
        ).first()
        assert orange and late and orange.zone_id and late.zone_id
        prevention = next(
            p for r, p in county.people_of(orange.zone_id) if r == "disaster_prevention"
        )
        acknowledge(
            session,
            alert=orange,
            person_id=prevention.id,
            actor=prevention.id,
            method="sms",
            note=ZONE_NOTE,
            at=AT + timedelta(minutes=20),
        )
        done = acknowledge(
            session,
            alert=cold,
            person_id=officer.id,
            actor=f"console:{officer.id}",
            method="console",
            note=NOTE,
            at=AT + timedelta(minutes=25),
        )
        assert done.accepted, done.reason
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
        overdue_at = AT + timedelta(minutes=40)
        audit.record(
            session,
            at=overdue_at,
            actor="scheduler",
            action="alert.overdue",
            subject=f"alert:{late.id}",
            data={"code": late.code, "deadline": overdue_at.isoformat()},
        )
        leader = county.leaders_on_duty()[0]
        session.add(
            Notification(
                idempotency_key=f"test-overdue:{icing.id}",
                alert_id=icing.id,
                transition="esc.overdue",
                person_id=leader.id,
                recipient_name=leader.name,
                address=leader.phone,
                channel="twilio_sms",
                body=f"道路结冰黄色预警：1处隐患点超时未确认（编码{icing.code}）",
                status="delivered",
                attempts=1,
                created_at=overdue_at,
                sent_at=overdue_at,
                finished_at=overdue_at,
                next_attempt_at=overdue_at,
            )
        )
        sms_zone = county.zone(orange.zone_id).name
        overdue_zone = county.zone(late.zone_id).name
        codes = (cold.code, icing.code)

    # 04:00 road icing gets worse everywhere: 40 zone warnings raised to orange, the event too
    clock.now = AT + timedelta(hours=4)
    upgraded = (await pipeline.poll()).transitions.get("upgraded", 0)
    with sessions.begin() as session:
        group_into_events(session, county, clock.now)
    await drain(worker)
    return Drill(*codes, officer.name, sms_zone, overdue_zone, upgraded)


def shift_report(sessions: sessionmaker[Session]) -> Report:
    with sessions() as session:
        return build_report(
            session, start=AT, end=SHIFT_END, timezone=TZ, now=SHIFT_END, county=example_county()
        )


def threatened(county: County, zone_ids: set[str]) -> tuple[int, int]:
    zones = [county.zone(z).threatened for z in zone_ids]
    return (
        sum(t.households or 0 for t in zones if t),
        sum(t.people or 0 for t in zones if t),
    )


def pdf_pages(pdf: bytes) -> int:
    """Pages of a PDF, counted from its page objects (no PDF library needed)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))


def print_pdfs(pages: dict[str, str], tmp_path: Path) -> dict[str, bytes]:
    """Each HTML page printed to an A4 PDF by Debian's Chromium (one launch), kept in tmp_path."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing under CI; .ci/run must install Debian's chromium")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    printed = {}
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh user-data dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            page = browser.new_page()
            for name, html in pages.items():
                page.set_content(html, wait_until="load")
                printed[name] = page.pdf(
                    format="A4", print_background=True, prefer_css_page_size=True
                )
                (tmp_path / f"{name}.pdf").write_bytes(printed[name])
        finally:
            browser.close()
    return printed


def people_phones(county: County) -> set[str]:
    phones = {p.phone for p in county.people.values()}
    return phones | {p.removeprefix("+86") for p in phones}


# --- the printable report


async def test_each_event_reads_as_a_report_to_a_superior(
    sessions: sessionmaker[Session],
) -> None:
    drill = await run_drill(sessions)
    assert drill.upgraded == 40
    county = example_county()
    report = shift_report(sessions)
    page = render_html(report)

    assert [e.code for e in report.events] == [drill.cold_wave, drill.road_icing]
    assert page.count('<section class="event') == 2
    # the form's heading, on each event's page
    assert page.count("<h1>柳林县自然资源局地质灾害气象预警信息报送</h1>") == 2
    assert page.count("<th>报送单位</th><td>柳林县自然资源局</td>") == 2
    assert page.count("<th>签发人</th><td>张建国</td>") == 2
    assert page.count("<th>联系电话</th><td>0358-4000000</td>") == 2
    assert "2026-01-07 00:00 至 2026-01-07 08:30（Asia/Shanghai，当地时间）" in page
    cold, icing = report.events
    # townships, zones and the people they threaten, from zones.yaml
    cold_zones = {e.zone_id for e in cold.zone_episodes if e.zone_id}
    households, people = threatened(county, cold_zones)
    assert len(cold_zones) == cold.zones == 40
    assert (cold.households, cold.people) == (households, people) and people > 0
    assert (
        f"涉及 <strong>{len({county.zone(z).township for z in cold_zones})}</strong> 个乡镇 "
        f"<strong>40</strong> 处隐患点，威胁 <strong>{households}</strong> 户 "
        f"<strong>{people}</strong> 人"
    ) in page
    # level changes: the road icing event was raised at 04:00
    assert [(c.label, c.level) for c in icing.changes] == [("发布", "yellow"), ("升级", "orange")]
    assert '<td class="t">2026-01-07 04:00</td><td>升级</td>' in page
    # who was told: bureau staff by name, zone people by role, each with channel and times
    officers = [p.name for p in county.duty_officers()]
    assert all(f"<td>{name}（值班员）</td>" in page for name in officers)
    assert "<td>防灾责任人</td><td>控制台 40</td>" in page  # the test delivers to the console
    leader = county.leaders_on_duty()[0]
    line = {t.who: t for t in icing.told}[f"{leader.name}（带班领导）"]
    ids = [p.id for e in (icing.event, *icing.zone_episodes) for p in e.parts]
    with sessions() as session:
        sent = session.scalars(
            select(Notification).where(
                Notification.person_id == leader.id, Notification.alert_id.in_(ids)
            )
        ).all()
    assert dict(line.channels) == Counter(channel_label(n.channel) for n in sent)
    assert dict(line.channels).get("短信", 0) >= 1  # at least the overdue notice, by SMS
    assert (line.messages, line.last) == (len(sent), AT + timedelta(hours=4))
    # acknowledgements, overdue zones, measures and notes
    assert f"县局确认：{drill.officer}（值班员） 2026-01-07 00:25 值班台" in page
    assert cold.zones_acknowledged == 1 and cold.zone_ack_methods == (("短信回复", 1),)
    assert icing.overdue_zones == (drill.overdue_zone,) and icing.overdue_notices == 1
    assert (
        f'1 处</span>，已向县局发出超时提醒 1 条：\n<span class="zones">{drill.overdue_zone}'
        in page
    )
    assert f"县局 · {drill.officer}（值班员）（值班台）：{NOTE}" in page
    assert f"{drill.sms_zone} · " in page and ZONE_NOTE in page
    # paper: no hover text, no script, nothing fetched; print CSS for A4 with page breaks
    assert "<title>" not in page.split("</title>", 1)[1] and "悬停" not in page
    assert "@page { size: A4" in page and "break-before: page" in page
    assert "<script" not in page and "<link" not in page and "src=" not in page
    assert page.replace('xmlns="http://www.w3.org/2000/svg"', "").count("http") == 0
    # nobody's phone number, in any form
    assert not [p for p in people_phones(county) if p in page]
    assert "审计链完整" in page


async def test_the_appendix_lists_every_message_with_masked_numbers(
    sessions: sessionmaker[Session],
) -> None:
    await run_drill(sessions)
    county = example_county()
    report = shift_report(sessions)

    page = render_html(report, appendix=True)

    messages = sum(len(e.deliveries) for e in report.events)
    assert page.count('<tr class="delivery">') == messages > 100
    assert page.count('<section class="appendix"') == 2
    officer = county.duty_officers()[0]
    assert f"<td>{mask_phone(officer.phone)}</td>" in page
    assert mask_phone(officer.phone) == "170****0001"
    assert not [p for p in people_phones(county) if p in page]
    assert "未送达（30003）" in page and "已送达" in page
    assert '<tr class="delivery">' not in render_html(report)


def test_one_event_prints_on_at_most_two_a4_pages(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    asyncio.run(run_drill(sessions))  # Playwright's sync API wants no running loop
    report = shift_report(sessions)

    pdfs = print_pdfs(
        {
            **{e.code: render_html(report.only(e.code)) for e in report.events},
            "report": render_html(report),
            "appendix": render_html(report, appendix=True),
        },
        tmp_path,
    )
    pages = {e.code: pdf_pages(pdfs[e.code]) for e in report.events}
    whole, with_appendix = pdfs["report"], pdfs["appendix"]

    assert all(1 <= n <= 2 for n in pages.values()), pages
    assert pdf_pages(whole) == sum(pages.values())  # each event starts a page of its own
    assert pdf_pages(with_appendix) > pdf_pages(whole)
    if shutil.which("pdfinfo"):  # the count agrees with poppler's
        info = subprocess.run(
            ["pdfinfo", str(tmp_path / "report.pdf")], capture_output=True, text=True, check=True
        ).stdout
        assert re.search(r"^Pages:\s+(\d+)$", info, re.M)[1] == str(pdf_pages(whole))  # type: ignore[index]


def test_a_county_sized_event_still_prints_on_two_pages(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    county = big_county(example_county())
    with sessions.begin() as session:
        event = county_sized_event(session, county, AT, hours=30)
        code = event.code
    end = AT + timedelta(days=2)
    with sessions() as session:
        report = build_report(session, start=AT, end=end, timezone=TZ, now=end, county=county)
    [section] = report.events

    page = render_html(report)
    pages = pdf_pages(print_pdfs({"big": page}, tmp_path)["big"])

    assert section.code == code and section.zones == 360 and len(section.townships) == 30
    assert len(section.overdue_zones) == 300 and len(section.notes) == 50
    staff = sum(1 for p in county.people.values() if p.duty_role)
    assert section.messages == 360 * 9 + 30 * staff  # 4 people × SMS, voice + group; bureau
    assert 1 <= pages <= 2, pages
    assert "另有 44 条备注" in page and "另有 25 次等级变化" in page
    assert "其间 29 次新增隐患点，共 377 处" in page  # 13 an hour, as the audit said
    assert "第1乡镇 12 处、" in page and "等 25 个乡镇" in page  # 300 overdue zones, per township
    assert event_timeline(section, until=end, timezone=TZ).step == "每6小时"
    assert not [p for p in people_phones(county) if p in page]


async def test_the_timeline_of_a_day_long_event_is_ticked_in_hours(
    sessions: sessionmaker[Session],
) -> None:
    await run_drill(sessions)
    day = AT + timedelta(days=1)
    with sessions() as session:
        report = build_report(
            session, start=AT, end=day, timezone=TZ, now=day, county=example_county()
        )
    cold, icing = report.events

    long = event_timeline(cold, until=day, timezone=TZ)
    short = event_timeline(icing, until=AT + timedelta(minutes=50), timezone=TZ)

    assert long.step == "每3小时" and (long.start, long.end) == (AT, day)
    assert [label for _, label in long.ticks] == [
        "1月7日 00:00",
        "03:00",
        "06:00",
        "09:00",
        "12:00",
        "15:00",
        "18:00",
        "21:00",
        "1月8日 00:00",
    ]
    # the road icing event runs to its 04:00 upgrade messages at least
    assert short.end == AT + timedelta(hours=4) and short.step == "每30分钟"
    assert {b.label for b in long.bars if b.colour == "#e8710a"} == {"橙色"}
    page = render_html(report)
    assert "时间轴每3小时一格" in page and "<title>" not in page.split("</title>", 1)[1]


# --- the full detail: CSV


async def test_the_csv_has_every_message_with_its_event_and_full_numbers(
    sessions: sessionmaker[Session],
) -> None:
    drill = await run_drill(sessions)
    with sessions() as session:
        notifications = len(session.scalars(select(Notification.id)).all())

    reader = csv.DictReader(io.StringIO(render_csv(shift_report(sessions))))
    rows = list(reader)

    assert reader.fieldnames == list(CSV_COLUMNS)
    messages = [r for r in rows if r["notification_id"]]
    assert len(messages) == notifications
    assert {r["event"] for r in rows} == {drill.cold_wave, drill.road_icing}
    bureau = [r for r in messages if r["kind"] == "event"]
    assert {r["transition"] for r in bureau} == {"new", "esc.overdue", "upgraded.1"}
    assert "+8617000000001" in {r["address"] for r in bureau}  # the office's own record
    assert len({r["episode"] for r in rows if r["kind"] == "hazard"}) == 80
    acked = {
        (r["alert_code"], r["recipient_ack_method"]) for r in rows if r["recipient_ack_method"]
    }
    assert (drill.cold_wave, "console") in acked and len(acked) == 2
    assert all(r["opened_at"].endswith("+08:00") for r in rows)
    assert sum("delivered@2026-01-07T00:01:00+08:00" in r["receipts"] for r in rows) == 1


# --- the commands


async def test_yujing_report_writes_the_csv_file_and_the_html_page(
    sessions: sessionmaker[Session],
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drill = await run_drill(sessions)
    for key in [k for k in os.environ if k.startswith("YUJING_")]:
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
    helped = runner.invoke(app, ["report", "--help"])
    appended = runner.invoke(
        app, ["report", "--from", "2026-01-07", "--to", "2026-01-07T08:30", "--appendix"]
    )

    assert written.exit_code == 0, written.output
    # the period in county time, never UTC
    assert "report 2026-01-07 00:00 – 2026-01-07 08:30 (Asia/Shanghai): 2 event(s)" in (
        written.stderr
    )
    rows = list(csv.DictReader(io.StringIO((tmp_path / "shift.csv").read_text("utf-8-sig"))))
    assert {r["event"] for r in rows} == {drill.cold_wave, drill.road_icing}
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.count('<section class="event') == 2
    assert "<th>签发人</th><td>张建国</td>" in shown.stdout
    assert "FULL phone numbers" in " ".join(helped.stdout.split())
    assert appended.exit_code == 0, appended.output
    assert appended.stdout.count('<section class="appendix"') == 2
    assert not [p for p in people_phones(example_county()) if p in appended.stdout]


def test_yujing_drill_writes_the_report_of_its_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("YUJING_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    county = example_county()

    result = CliRunner().invoke(
        app,
        [
            "drill",
            "--replay",
            str(COLDWAVE),
            "--config",
            str(COUNTY),
            "--at",
            "2026-01-07T00:00:00+08:00",
            "--report",
            "out.html",
        ],
    )

    assert result.exit_code == 0, result.output
    assert "drill report 2026-01-07 00:00 (Asia/Shanghai) → out.html" in result.stderr
    page = (tmp_path / "out.html").read_text("utf-8")
    assert '地质灾害气象预警信息报送<span class="drill">（演练）</span>' in page
    assert "<th>签发人</th><td>张建国</td>" in page
    assert "2026-01-07 00:00 至 2026-01-07 00:01（Asia/Shanghai，当地时间）" in page
    assert re.search(r"寒潮<span[^>]*>橙色</span>预警事件（编码 [A-Z0-9]{4}）", page)  # its events
    assert not [p for p in people_phones(county) if p in page]


def test_the_drill_report_prints_each_event_on_at_most_two_a4_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shots = os.environ.get("YUJING_SCREENSHOT_DIR")  # read before the settings are cleared
    for key in [k for k in os.environ if k.startswith("YUJING_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    county = example_county()
    result = CliRunner().invoke(
        app,
        [
            "drill",
            "--replay",
            str(COLDWAVE),
            "--config",
            str(COUNTY),
            "--at",
            "2026-01-07T00:00:00+08:00",
            "--report",
            "out.html",
        ],
    )
    assert result.exit_code == 0, result.output
    page = (tmp_path / "out.html").read_text("utf-8")
    codes = re.findall(r'<section class="event[^"]*" id="event-(\w+)">', page)
    assert codes, "the drill's warnings form events"

    # each event alone (the others' sections cut out), then the whole report
    alone = {
        code: re.sub(
            rf'<section class="event[^"]*" id="event-(?!{code}")\w+">.*?</section>\n',
            "",
            page,
            flags=re.S,
        )
        for code in codes
    }
    pdfs = print_pdfs({**alone, "drill": page}, tmp_path)

    assert sorted(codes) == sorted(set(codes)) and len(codes) == 2  # 寒潮, 道路结冰
    pages = {code: pdf_pages(pdfs[code]) for code in codes}
    assert all(1 <= n <= 2 for n in pages.values()), pages
    assert pdf_pages(pdfs["drill"]) == sum(pages.values())
    for field in (
        "报送单位",
        "签发人",
        "联系电话",
        "影响范围",
        "等级变化",
        "通知情况",
        "确认与超时",
    ):
        assert page.count(field) >= len(codes), field
    assert "处置措施与备注" in page and "威胁" in page
    assert not [p for p in people_phones(county) if p in page]
    if shots and shutil.which("pdftoppm"):  # the README's page: the drill's first event
        subprocess.run(
            [
                *("pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile"),
                str(tmp_path / f"{codes[0]}.pdf"),
                str(Path(shots) / "report-page"),
            ],
            check=True,
        )


# --- the pieces


def test_a_quiet_period_reports_no_event(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        report = build_report(session, start=AT, end=SHIFT_END, timezone=TZ, now=SHIFT_END)

    assert "本时段内没有预警事件" in render_html(report)
    assert "签发人</th><td>（未配置）" in render_html(report)
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


def test_phone_numbers_are_masked_the_way_people_know() -> None:
    assert mask_phone("+8613812345678") == "138****5678"
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("+14155550100") == "141****0100"
    text = "李慧敏 +8617000000001，17000000002；0358-4000000；哈希 a1700000000012345b"
    assert scrub(text, ["+8617000000001", "+8617000000002"]) == (
        "李慧敏 170****0001，170****0002；0358-4000000；哈希 a1700000000012345b"
    )
    assert scrub("回拨 13912345678", []) == "回拨 139****5678"


def county_with(tmp_path: Path, section: str) -> tuple[Path, int]:
    """The example county with `section` in place of its `report:` line, and that line's number."""
    config = tmp_path / "county"
    shutil.copytree(COUNTY, config)
    lines = (config / "county.yaml").read_text("utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("report:"))
    lines[at] = section
    (config / "county.yaml").write_text("\n".join(lines) + "\n", "utf-8")
    return config, at + 1


@pytest.mark.parametrize(
    ("section", "words"),
    [
        (
            'report: {unit: 柳林县自然资源局, signer: 张三, phone: "电话"}',
            ("phone", "0358-4000000"),
        ),
        ("report: {unit: 柳林县自然资源局, signer: 张三, phone: 03584000000}", ("quoted",)),
        ('report: {unit: 柳林县自然资源局, phone: "0358-4000000"}', ("signer",)),
        ('report: {unit: 柳林县自然资源局, signer: 张三, phone: "0358-1", fax: 1}', ("fax",)),
        ("report: 柳林县自然资源局", ("expected a mapping",)),
    ],
)
def test_a_bad_report_section_is_refused_at_its_line(
    tmp_path: Path, section: str, words: tuple[str, ...]
) -> None:
    config, line = county_with(tmp_path, section)

    with pytest.raises(ConfigError) as caught:
        load_county(config)

    found = [str(p) for p in caught.value.problems]
    assert len(found) == 1, found
    assert f"county.yaml:{line}:" in found[0] and all(w in found[0] for w in words), found


def test_the_report_section_is_optional(tmp_path: Path) -> None:
    config, _ = county_with(tmp_path, "")

    assert load_county(config).report is None
    assert load_county(COUNTY).report == ReportConfig(
        unit="柳林县自然资源局", signer="张建国", phone="0358-4000000"
    )
