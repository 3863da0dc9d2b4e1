"""Audiences that are not people: the county's groups, township groups, village loudspeakers.

The configuration (county.yaml groups:/townships:, people's im: ids, escalation
steps' broadcast:/im:) and its checks; routing, outbox rows and the engine
follow in their own sections.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from channels.base import SendResult
from channels.broadcast import load_broadcast_directory, village_address
from channels.sms_text import fits_sms
from dispatcher.alerts.hazards import Wording, apply_transitions
from dispatcher.alerts.reconcile import Transition, TransitionKind
from dispatcher.cli import app
from dispatcher.county import County, ZoneConfig, load_county
from dispatcher.escalation import Escalation, escalate_due, load_policies
from dispatcher.escalation.policy import (
    DEFAULT_CHANNEL,
    DEFAULT_POLICIES,
    Policies,
    Policy,
    Step,
)
from dispatcher.failover import FailoverPlan
from dispatcher.messages import SMS_MAX_SEGMENTS, TemplateLookup
from dispatcher.outbox import DeliveryWorker
from dispatcher.outbox.rows import enqueue
from dispatcher.roster import Roster
from dispatcher.routing import addressing, audiences
from dispatcher.storage.models import Alert, EscalationTimer, Notification
from rules.config import ConfigError, load_yaml
from rules.types import Level
from tests.support import OPENED, Clock, ScriptedChannel
from tests.support import open_alert as support_open_alert

ROOT = Path(__file__).resolve().parents[1]
COUNTY = ROOT / "examples" / "liulin"

runner = CliRunner()


@pytest.fixture
def county_dir(tmp_path: Path) -> Path:
    """A copy of the example county to edit."""
    target = tmp_path / "county"
    shutil.copytree(COUNTY, target, ignore=shutil.ignore_patterns("scenarios"))
    return target


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _problems(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [str(p) for p in exc.value.problems]


# --- configuration


def test_the_example_county_names_its_groups_and_each_townships_group() -> None:
    county = load_county(COUNTY)
    assert county.groups["duty-room"].channel == "dingtalk"
    assert county.groups["duty-room"].name == "县局值班室"
    assert {zone.township for zone in county.zones} <= set(county.townships)
    assert county.township_group("穆村镇") == "muchun-town"
    assert county.people["p-mc-djs-1"].im.on("wecom") == "17000000132"
    assert county.people["p-mc-djs-1"].im.on("dingtalk") is None


def test_a_group_on_a_channel_that_posts_to_no_group_is_refused(county_dir: Path) -> None:
    _edit(county_dir / "county.yaml", "{channel: dingtalk, name", "{channel: twilio_sms, name")
    with pytest.raises(ConfigError) as exc:
        load_county(county_dir)
    (problem,) = _problems(exc)
    assert problem.startswith(f"{county_dir / 'county.yaml'}:")
    assert "twilio_sms" in problem and "dingtalk, feishu, webhook, wecom" in problem


def test_a_township_no_zone_has_and_an_unknown_group_are_refused_with_a_suggestion(
    county_dir: Path,
) -> None:
    _edit(county_dir / "county.yaml", "  穆村镇: muchun-town", "  穆村乡: muchun-twn")
    with pytest.raises(ConfigError) as exc:
        load_county(county_dir)
    problems = _problems(exc)
    assert len(problems) == 2, problems
    assert all(p.startswith(f"{county_dir / 'county.yaml'}:") for p in problems)
    assert any("'穆村乡'" in p and "did you mean '穆村镇'" in p for p in problems)
    assert any("'muchun-twn'" in p and "did you mean 'muchun-town'" in p for p in problems)


def test_a_person_im_id_written_as_a_number_asks_for_quotes(county_dir: Path) -> None:
    _edit(county_dir / "people.yaml", '{wecom: "17000000133"}', "{wecom: 17000000133}")
    with pytest.raises(ConfigError) as exc:
        load_county(county_dir)
    (problem,) = _problems(exc)
    assert "people.yaml:" in problem and "quoted string" in problem


def test_a_step_reads_its_audiences(county_dir: Path) -> None:
    _edit(
        county_dir / "escalation.yaml",
        "notify: [disaster_prevention]   # disaster-prevention person at once",
        "notify: [disaster_prevention]\n          broadcast: [village]\n"
        "          im: [township, duty-room]",
    )
    county = load_county(county_dir)
    step = load_policies(county_dir, county).levels["orange"].steps[0]
    assert step.broadcast == ("village",)
    assert step.im == ("township", "duty-room")


def test_a_step_that_sends_its_people_to_a_group_channel_is_refused_at_its_line(
    county_dir: Path,
) -> None:
    # given a step that names a robot's channel for the people it notifies
    _edit(
        county_dir / "escalation.yaml",
        "channels: [twilio_voice, default]",
        "channels: [twilio_voice, wecom]",
    )
    county = load_county(county_dir)

    # when the policies are loaded, then the wecom entry is refused where it stands
    with pytest.raises(ConfigError) as exc:
        load_policies(county_dir, county)
    (problem,) = _problems(exc)
    assert problem.startswith(f"{county_dir / 'escalation.yaml'}:")
    assert "'wecom' does not reach a person's phone" in problem and "im:" in problem


def test_a_step_of_audiences_only_is_a_step_that_notifies(county_dir: Path) -> None:
    _edit(
        county_dir / "escalation.yaml",
        "          notify: [mass_monitor, monitoring]\n"
        "          im: [duty-room]                 # and the bureau's duty room sees every warning",
        "          im: [duty-room]",
    )
    county = load_county(county_dir)
    step = load_policies(county_dir, county).levels["blue"].steps[0]
    assert step.targets == () and step.im == ("duty-room",)


def test_a_system_step_cannot_name_the_zones_village_or_township(county_dir: Path) -> None:
    _edit(
        county_dir / "escalation.yaml",
        "      - after: 0\n        notify: [duty_officer, leader_on_duty]",
        "      - after: 0\n        notify: [duty_officer, leader_on_duty]\n        im: [township]",
    )
    with pytest.raises(ConfigError) as exc:
        load_policies(county_dir, load_county(county_dir))
    (problem,) = _problems(exc)
    assert "escalation.yaml:" in problem and "system alerts have no zone" in problem


def test_rules_check_prints_one_line_each_for_an_unknown_robot_a_village_without_terminals_and_a_township_without_a_group(  # noqa: E501
    county_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # acceptance 4 of issue 11
    for key in [k for k in __import__("os").environ if k.startswith("YUJING_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    _edit(
        county_dir / "escalation.yaml",
        "notify: [disaster_prevention]   # disaster-prevention person at once",
        "notify: [disaster_prevention]\n          broadcast: [village]\n"
        "          im: [township, duty-rom]",
    )
    _edit(
        county_dir / "broadcast.yaml",
        "    - township: 穆村镇\n      village: 穆村\n      groups: [G-MC-02]\n"
        "      terminals: [T-MC-0201, T-MC-0202]\n",
        "",
    )
    _edit(county_dir / "county.yaml", "  三交镇: sanjiao-town\n", "")

    result = runner.invoke(app, ["rules", "check", "--config", str(county_dir)])

    assert result.exit_code == 1, result.output
    escalation = str(county_dir / "escalation.yaml")
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"{escalation}:")]
    assert len(lines) == 3, result.stderr
    assert any("'duty-rom'" in line and "did you mean 'duty-room'" in line for line in lines)
    assert any("'三交镇' has no group" in line and "townships:" in line for line in lines)
    assert any("village 穆村镇/穆村" in line and "broadcast.yaml" in line for line in lines)
    for line in lines:  # file:line:column: message
        _, row, column, _ = line[len(escalation) :].split(":", 3)
        assert row.isdigit() and column.isdigit()
    last = result.stderr.splitlines()[-1]
    assert last == "3 problem(s) in the configuration; nothing was changed."


# --- routing: audiences to addressees


def test_a_village_audience_is_the_zones_village_on_the_broadcast_channel() -> None:
    county = load_county(COUNTY)
    (village,) = audiences(county, zone_id="LL-MC-005", broadcast=["village"])
    assert village.channel == "broadcast"
    assert village.address == village_address("穆村镇", "杜家山村")
    assert village.key == "village:穆村镇/杜家山村"
    assert village.person_id is None and village.mentions == ()


def test_the_township_group_is_addressed_by_its_robot_and_mentions_the_responsible_people() -> None:
    county = load_county(COUNTY)
    (group,) = audiences(county, zone_id="LL-MC-005", im=["township"])
    assert (group.channel, group.address, group.name) == ("wecom", "muchun-town", "穆村镇应急群")
    assert group.key == "group:muchun-town"
    # 防灾责任人 and 监测责任人 with a WeCom id; the 群测群防员 is not mentioned
    assert group.mentions == ("17000000132", "17000000133")


def test_a_named_group_mentions_on_its_own_platform_only() -> None:
    county = load_county(COUNTY)
    (room,) = audiences(county, zone_id="LL-MC-005", im=["duty-room"])
    assert (room.channel, room.address) == ("dingtalk", "duty-room")
    assert room.mentions == ()  # the zone's people have no DingTalk id


def test_no_audience_is_ever_addressed_by_a_phone_number() -> None:
    county = load_county(COUNTY)
    phones = {person.phone for person in county.people.values()}
    for zone in county.zones:
        for audience in audiences(
            county, zone_id=zone.id, broadcast=["village"], im=["township", "duty-room"]
        ):
            assert audience.address not in phones
            assert not audience.address.startswith("+")


def test_a_zone_less_alert_reaches_named_groups_only() -> None:
    county = load_county(COUNTY)
    found = audiences(county, zone_id=None, broadcast=["village"], im=["township", "duty-room"])
    assert [a.key for a in found] == ["group:duty-room"]


def test_people_are_addressed_by_phone_and_audiences_by_what_their_channel_addresses() -> None:
    assert [addressing(c) for c in ("twilio_sms", "twilio_voice", "console")] == ["phone"] * 3
    assert addressing("broadcast") == "village"
    assert addressing("wecom") == addressing("dingtalk") == addressing("feishu") == "robot"
    assert addressing("webhook") == "target"


# --- outbox rows for audiences


async def test_a_group_row_is_keyed_by_the_group_and_its_claim_carries_the_mentions(
    db: sessionmaker[Session],
) -> None:
    county = load_county(COUNTY)
    (group,) = audiences(county, zone_id="LL-MC-005", im=["township"])
    with db.begin() as session:
        row = enqueue(
            session, None, "new", group, group.channel, "正文", OPENED,
            audience=group.key, mentions=group.mentions,
        )  # fmt: skip
        session.flush()
        assert row.idempotency_key == "None:new:group:muchun-town:wecom"
        assert row.person_id is None and row.address == "muchun-town"
    wecom = ScriptedChannel(name="wecom")

    await DeliveryWorker(db, {"wecom": wecom}, Clock(OPENED)).run_until_idle()

    (sent,) = wecom.sent
    assert sent.address == "muchun-town" and sent.recipient_name == "穆村镇应急群"
    assert sent.mentions == ("17000000132", "17000000133")


async def test_a_village_row_has_no_person_and_no_mentions(db: sessionmaker[Session]) -> None:
    county = load_county(COUNTY)
    (village,) = audiences(county, zone_id="LL-MC-005", broadcast=["village"])
    with db.begin() as session:
        row = enqueue(
            session, None, "new", village, "broadcast", "广播", OPENED, audience=village.key
        )
        session.flush()
        assert row.idempotency_key == "None:new:village:穆村镇/杜家山村:broadcast"
        assert row.mentions is None
    speaker = ScriptedChannel(name="broadcast")

    await DeliveryWorker(db, {"broadcast": speaker}, Clock(OPENED)).run_until_idle()

    assert [(m.address, m.mentions) for m in speaker.sent] == [("穆村镇/杜家山村", ())]


def test_a_row_to_no_person_without_its_audience_key_is_refused(
    db: sessionmaker[Session],
) -> None:
    county = load_county(COUNTY)
    (village,) = audiences(county, zone_id="LL-MC-005", broadcast=["village"])
    with db.begin() as session, pytest.raises(ValueError, match="audience key"):
        enqueue(session, None, "new", village, "broadcast", "广播", OPENED)


# --- the engine: audiences in a step, each text in its channel's medium

ZONE_MC = "LL-MC-005"  # 穆村镇杜家山村地裂缝: a village with loudspeakers, a township group
LINK = "https://yj.example/ack/x"
EVERY_CHANNEL = frozenset({"twilio_sms", "twilio_voice", "broadcast", "wecom", "dingtalk"})
AUDIENCE_STEP = Step(
    timedelta(0),
    ("disaster_prevention",),
    channels=("twilio_voice", DEFAULT_CHANNEL),
    broadcast=("village",),
    im=("township", "duty-room"),
)


def _escalation(county: County, channels: frozenset[str] = EVERY_CHANNEL) -> Escalation:
    policy = Policy("test:orange", (AUDIENCE_STEP,))
    policies = Policies(levels={**DEFAULT_POLICIES, "orange": policy})
    return Escalation(
        county,
        Roster.unconfigured(county),
        policies,
        channels,
        "twilio_sms",
        ack_link=lambda alert_id, person_id, now: LINK,
    )


def _warn(
    sessions: sessionmaker[Session],
    template: TemplateLookup = lambda hazard, rule_id, kind: None,
    channels: frozenset[str] = EVERY_CHANNEL,
    transition: Transition | None = None,
) -> list[Notification]:
    """An orange cold wave at ZONE_MC (or `transition`) through the lifecycle; the outbox."""
    county = load_county(COUNTY)
    wording = Wording(
        sender=county.sender,
        timezone=county.timezone,
        hazard_name=lambda hazard: "寒潮",
        advice=lambda hazard, level: "注意防寒保暖",
        template=template,
    )
    transition = transition or Transition(TransitionKind.NEW, ZONE_MC, "cold_wave", Level.ORANGE)
    with sessions.begin() as session:
        apply_transitions(
            session,
            [transition],
            now=OPENED,
            county=county,
            wording=wording,
            channel="twilio_sms",
            forecast_run_id=None,
            escalation=_escalation(county, channels),
        )
    with sessions() as session:
        rows = session.scalars(select(Notification).order_by(Notification.id)).all()
        session.expunge_all()
        return list(rows)


def test_a_step_queues_the_village_the_groups_and_the_person_each_on_its_own_channel(
    db: sessionmaker[Session],
) -> None:
    rows = _warn(db)
    got = {(r.channel, r.address, r.person_id) for r in rows}
    assert got == {
        ("twilio_voice", "+8617000000132", "p-mc-djs-1"),
        ("twilio_sms", "+8617000000132", "p-mc-djs-1"),
        ("broadcast", "穆村镇/杜家山村", None),
        ("wecom", "muchun-town", None),
        ("dingtalk", "duty-room", None),
    }
    wecom = next(r for r in rows if r.channel == "wecom")
    assert wecom.mentions == ["17000000132", "17000000133"]


def test_the_ack_link_goes_on_the_persons_sms_only_never_in_a_group_post(
    db: sessionmaker[Session],
) -> None:
    rows = _warn(db)
    linked = {r.channel for r in rows if LINK in r.body}
    assert linked == {"twilio_sms"}


@pytest.mark.parametrize(
    ("medium", "channel"),
    [("voice", "twilio_voice"), ("broadcast", "broadcast"), ("im", "wecom")],
)
def test_the_rules_template_for_a_medium_words_that_channel_when_it_is_not_the_default(
    db: sessionmaker[Session], medium: str, channel: str
) -> None:
    # acceptance 2 of issue 11 (the engine half): the default channel is twilio_sms
    def template(hazard: str, rule_id: str, kind: str) -> str | None:
        return f"{kind}模板：{{{{ zone }}}}{{{{ level }}}}" if kind == medium else None

    rows = _warn(db, template)

    (row, *_) = [r for r in rows if r.channel == channel]
    assert row.body == f"{medium}模板：穆村镇杜家山村地裂缝橙色"
    sms = next(r for r in rows if r.channel == "twilio_sms")
    assert not sms.body.startswith(f"{medium}模板"), "the SMS keeps its own words"


def test_the_duty_room_hears_of_the_event_in_its_words_not_a_zones_template(
    db: sessionmaker[Session],
) -> None:
    # a zone's template names a zone; the duty room's post is about the event (issue 12)
    rows = _warn(db, lambda hazard, rule_id, kind: "im模板：{{ zone }}" if kind == "im" else None)
    (room,) = [r for r in rows if r.channel == "dingtalk"]
    assert not room.body.startswith("im模板")
    assert room.body.startswith("🟠【寒潮橙色预警】") and "1处隐患点" in room.body
    (township,) = [r for r in rows if r.channel == "wecom"]
    assert township.body == "im模板：穆村镇杜家山村地裂缝"


def test_the_villages_and_groups_that_were_told_hear_the_all_clear_on_their_own_channel(
    db: sessionmaker[Session],
) -> None:
    (first, *_) = _warn(db)
    assert first.alert_id is not None
    end = Transition(
        TransitionKind.RESOLVED, ZONE_MC, "cold_wave", Level.ORANGE, alert_id=first.alert_id
    )
    rows = [r for r in _warn(db, transition=end) if r.transition == "resolved"]
    assert {(r.channel, r.address) for r in rows if r.person_id is None} == {
        ("broadcast", "穆村镇/杜家山村"),
        ("wecom", "muchun-town"),
        ("dingtalk", "duty-room"),
    }
    assert {r.person_id for r in rows if r.person_id} == {"p-mc-djs-1"}
    assert all("解除" in r.body for r in rows)


def test_an_audience_whose_channel_is_not_configured_is_not_sent_by_phone(
    db: sessionmaker[Session],
) -> None:
    rows = _warn(db, channels=frozenset({"twilio_sms", "twilio_voice"}))
    assert {r.channel for r in rows} == {"twilio_sms", "twilio_voice"}
    assert all(r.address.startswith("+") and r.person_id for r in rows)


def test_a_plan_stored_with_one_body_still_fires_that_body_on_every_channel(
    db: sessionmaker[Session],
) -> None:
    county = load_county(COUNTY)
    esc = _escalation(county)
    alert_id = support_open_alert(db, esc, level="orange", zone_id=ZONE_MC)
    with db.begin() as session:
        timer = EscalationTimer(
            alert_id=alert_id,
            kind="step",
            step=5,
            round=0,
            due_at=OPENED + timedelta(minutes=1),
            status="pending",
            # the shape plans had before texts were rendered per medium
            plan={
                "policy": "test:orange",
                "targets": ["disaster_prevention"],
                "people": [],
                "channels": ["twilio_voice", "default"],
                "transition": "esc5",
                "body": "旧计划正文",
            },
            created_at=OPENED,
        )
        session.add(timer)

    escalate_due(db, esc, OPENED + timedelta(minutes=1))

    with db() as session:
        fired = session.scalars(select(Notification).where(Notification.transition == "esc5")).all()
        assert {(n.channel, n.body.startswith("旧计划正文")) for n in fired} == {
            ("twilio_voice", True),
            ("twilio_sms", True),
        }


# --- the drill: every medium of the example county, at the README's instant

SCENARIO = COUNTY / "scenarios" / "coldwave-2026-01.json"
README_INSTANT = "2026-01-07T00:00:00+08:00"  # orange cold-wave alerts are open then


@pytest.fixture(scope="module")
def drill_report() -> dict[str, Any]:
    """`yujing drill --json` of the bundled cold wave at the README's instant."""
    with pytest.MonkeyPatch.context() as env:
        for key in [k for k in os.environ if k.startswith("YUJING_")]:
            env.delenv(key)
        result = runner.invoke(
            app,
            ["drill", "--config", str(COUNTY), "--replay", str(SCENARIO), "--at", README_INSTANT,
             "--json"],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _rows(report: dict[str, Any], channel: str) -> list[dict[str, Any]]:
    rows = [n for n in report["notifications"] if n["channel"] == channel]
    assert rows, f"no {channel} rows in the drill"
    return rows


def _orange_zones(report: dict[str, Any]) -> list[ZoneConfig]:
    county = load_county(COUNTY)
    return [county.zone(a["zone_id"]) for a in report["alerts"] if a["level"] == "orange"]


def test_the_drill_plays_the_orange_warnings_on_the_loudspeakers_of_their_villages(
    drill_report: dict[str, Any],
) -> None:
    # acceptance 1 of issue 11: broadcast rows addressed to the villages of the orange zones
    orange = _orange_zones(drill_report)
    assert orange
    rows = _rows(drill_report, "broadcast")
    assert {r["address"] for r in rows} == {village_address(z.township, z.village) for z in orange}
    assert all(r["audience"] == r["recipient"] and r["status"] == "sent" for r in rows)
    directory = load_broadcast_directory(load_yaml(COUNTY / "broadcast.yaml").data)
    assert all(directory.village(r["address"]) is not None for r in rows)  # terminal groups


def test_the_drill_posts_to_robots_never_to_a_phone_number(drill_report: dict[str, Any]) -> None:
    county = load_county(COUNTY)
    phones = {p.phone for p in county.people.values()}
    wecom, dingtalk = _rows(drill_report, "wecom"), _rows(drill_report, "dingtalk")
    for row in wecom + dingtalk:
        assert row["address"] in county.groups and row["address"] not in phones
        assert not row["address"].startswith("+")
    # every event reaches the duty room, once; the orange zones their township's group
    assert {r["address"] for r in dingtalk} == {"duty-room"}
    assert sorted(r["alert"] for r in dingtalk) == sorted(e["code"] for e in drill_report["events"])
    townships = {county.township_group(z.township) for z in _orange_zones(drill_report)}
    assert {r["address"] for r in wecom} == townships
    codes = {a["code"]: a["zone_id"] for a in drill_report["alerts"]}
    muchun = next(r for r in wecom if codes[r["alert"]] == "LL-MC-005")
    assert muchun["mentions"] == ["17000000132", "17000000133"]


def test_the_drills_voice_calls_read_no_link(drill_report: dict[str, Any]) -> None:
    rows = _rows(drill_report, "twilio_voice")
    assert all("http" not in r["body"] and "确认：" not in r["body"] for r in rows)
    assert all(r["address"].startswith("+") for r in rows)


def test_the_drills_voice_calls_read_no_alert_code(drill_report: dict[str, Any]) -> None:
    rows = _rows(drill_report, "twilio_voice")
    assert all(r["alert"] not in r["body"] for r in rows)


def test_the_drills_sms_rows_are_as_before(drill_report: dict[str, Any]) -> None:
    rows = _rows(drill_report, "twilio_sms")
    # what the drill sent to zone people before audiences existed (230, less the 20
    # per-zone messages of the officer and the leader on duty), and one per event
    # and bureau person told: the orange cold wave both, the yellow road icing the officer
    events = {e["code"] for e in drill_report["events"]}
    assert len([r for r in rows if r["alert"] not in events]) == 210
    assert len([r for r in rows if r["alert"] in events]) == 3
    assert all(r["address"].startswith("+") and r["audience"] is None for r in rows)
    assert all(
        r["body"].startswith("【柳林县自然资源局】") and r["alert"] in r["body"] for r in rows
    )


# --- failover from an audience: there is no person on the failed row

VILLAGE_TEXT = "各位村民请注意：今夜寒潮，远离陡坡。" * 3


def _failing_audience_row(
    sessions: sessionmaker[Session],
    channel: str,
    *,
    im: tuple[str, ...] = (),
    village: bool = False,
) -> int:
    county = load_county(COUNTY)
    (audience,) = audiences(
        county, zone_id=ZONE_MC, broadcast=["village"] if village else [], im=im
    )
    with sessions.begin() as session:
        alert = Alert(
            code="KQ7A", kind="hazard", zone_id=ZONE_MC, hazard="cold_wave", rule_id="r",
            level="orange", state="firing", opened_at=OPENED, updated_at=OPENED,
        )  # fmt: skip
        session.add(alert)
        session.flush()
        row = enqueue(
            session, alert, "esc1", audience, channel, VILLAGE_TEXT, OPENED,
            audience=audience.key, mentions=audience.mentions,
        )  # fmt: skip
        session.flush()
        return row.id


async def _fail(sessions: sessionmaker[Session], channel: str) -> list[Notification]:
    county = load_county(COUNTY)
    down = ScriptedChannel(SendResult.permanent("refused", "refused"), name=channel)
    sms = ScriptedChannel(name="twilio_sms")
    plan = FailoverPlan(county, frozenset({channel, "twilio_sms"}))
    worker = DeliveryWorker(
        sessions, {channel: down, "twilio_sms": sms}, Clock(OPENED), on_failed=plan
    )
    await worker.run_once()
    with sessions() as session:
        found = session.scalars(
            select(Notification).where(Notification.failover_of_id.is_not(None))
        ).all()
        session.expunge_all()
        return list(found)


async def test_a_village_broadcast_that_fails_becomes_an_sms_to_the_zones_disaster_prevention_person(  # noqa: E501
    db: sessionmaker[Session],
) -> None:
    _failing_audience_row(db, "broadcast", village=True)
    sms = await _fail(db, "broadcast")
    assert [(r.person_id, r.address, r.channel) for r in sms] == [
        ("p-mc-djs-1", "+8617000000132", "twilio_sms")
    ]
    (row,) = sms
    assert "KQ7A" in row.body  # the code to reply with, though the loudspeaker had none
    assert fits_sms(row.body, SMS_MAX_SEGMENTS)


async def test_a_group_post_that_fails_becomes_an_sms_to_the_duty_officers(
    db: sessionmaker[Session],
) -> None:
    _failing_audience_row(db, "wecom", im=("township",))
    sms = await _fail(db, "wecom")
    county = load_county(COUNTY)
    assert {r.person_id for r in sms} == {p.id for p in county.duty_officers()}
    assert all(r.address.startswith("+") and r.channel == "twilio_sms" for r in sms)
