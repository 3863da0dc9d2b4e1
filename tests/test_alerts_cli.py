"""`yujing alerts list|ack`: the alerts in the database, and acknowledging one by code."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from dispatcher.cli import app
from dispatcher.storage.models import Acknowledgement, Alert, AuditEvent, Person

T0 = datetime(2026, 1, 7, 0, 0, tzinfo=UTC)
runner = CliRunner()


@pytest.fixture(autouse=True)
def database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> None:
    for key in [k for k in os.environ if k.startswith("YUJING_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    monkeypatch.setenv("YUJING_DATABASE_URL", db_url)


def given(sessions: sessionmaker[Session]) -> None:
    """Two duty officers (one name shared with a zone person) and three alerts."""
    with sessions.begin() as session:
        session.add_all(
            [
                Person(id="p-duty-zhang", name="张志强", phone="+8617000000001",
                       duty_role="duty_officer", updated_at=T0),
                Person(id="p-duty-li", name="李慧敏", phone="+8617000000002",
                       duty_role="duty_officer", updated_at=T0),
                Person(id="p-li-2", name="李慧敏", phone="+8617000000102", duty_role=None,
                       updated_at=T0),
            ]
        )  # fmt: skip
        for i, (code, level, state) in enumerate(
            [
                ("K7QA", "yellow", "firing"),
                ("AC3D", "orange", "firing"),
                ("YG33", "blue", "resolved"),
            ]
        ):
            session.add(
                Alert(
                    code=code,
                    kind="hazard",
                    zone_id=None,
                    hazard="cold_wave",
                    rule_id="cma-cold-wave",
                    title="寒潮",
                    level=level,
                    state=state,
                    opened_at=T0 + timedelta(hours=i),
                    updated_at=T0 + timedelta(hours=i),
                    closed_at=T0 + timedelta(hours=5) if state == "resolved" else None,
                )
            )


def acks(sessions: sessionmaker[Session]) -> list[tuple[str, str | None, str, str, str | None]]:
    with sessions() as session:
        rows = session.execute(
            select(Alert.code, Acknowledgement.person_id, Acknowledgement.actor,
                   Acknowledgement.method, Acknowledgement.note)
            .join(Alert, Alert.id == Acknowledgement.alert_id)
            .order_by(Acknowledgement.id)
        ).all()  # fmt: skip
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_ack_by_person_id_acknowledges_the_alert_with_method_cli(
    sessions: sessionmaker[Session],
) -> None:
    given(sessions)

    result = runner.invoke(app, ["alerts", "ack", "k7qa", "--by", "p-duty-zhang"])

    assert result.exit_code == 0, result.output
    assert "K7QA 寒潮 yellow (system)：已确认（张志强，p-duty-zhang）" in result.stdout
    [(code, person, actor, method, note)] = acks(sessions)
    assert (code, person, method, note) == ("K7QA", "p-duty-zhang", "cli", None)
    assert actor.startswith("cli:")
    with sessions() as session:
        alert = session.scalars(select(Alert).where(Alert.code == "K7QA")).one()
        assert alert.state == "acknowledged"
        assert session.scalars(
            select(AuditEvent.action).where(AuditEvent.subject == f"alert:{alert.id}")
        ).all() == ["alert.ack", "alert.acknowledged"]


def test_ack_by_name_with_a_note_keeps_the_note(sessions: sessionmaker[Session]) -> None:
    given(sessions)

    result = runner.invoke(
        app, ["alerts", "ack", "AC3D", "--by", "张志强", "--note", "电话通知村主任，已组织巡查"]
    )

    assert result.exit_code == 0, result.output
    assert [(a[0], a[1], a[4]) for a in acks(sessions)] == [
        ("AC3D", "p-duty-zhang", "电话通知村主任，已组织巡查")
    ]


def test_a_name_two_people_share_must_be_given_as_an_id(sessions: sessionmaker[Session]) -> None:
    given(sessions)

    result = runner.invoke(app, ["alerts", "ack", "K7QA", "--by", "李慧敏"])

    assert result.exit_code == 1
    assert "2 people have that name (p-duty-li, p-li-2); give the id" in result.stderr
    assert acks(sessions) == []


def test_an_unknown_person_is_refused(sessions: sessionmaker[Session]) -> None:
    given(sessions)

    result = runner.invoke(app, ["alerts", "ack", "K7QA", "--by", "nobody"])

    assert result.exit_code == 1
    assert "--by 'nobody': no active person with that id or name" in result.stderr
    assert acks(sessions) == []


def test_an_unknown_code_is_refused(sessions: sessionmaker[Session]) -> None:
    given(sessions)

    result = runner.invoke(app, ["alerts", "ack", "ZZZZ", "--by", "p-duty-zhang"])

    assert result.exit_code == 1
    assert "no alert with code 'ZZZZ'" in result.stderr
    assert acks(sessions) == []


def test_a_resolved_alert_cannot_be_acknowledged(sessions: sessionmaker[Session]) -> None:
    given(sessions)

    result = runner.invoke(app, ["alerts", "ack", "YG33", "--by", "p-duty-zhang"])

    assert result.exit_code == 1
    assert "alert YG33 is resolved; there is nothing to acknowledge" in result.stderr
    assert acks(sessions) == []


def test_list_shows_open_alerts_newest_first(sessions: sessionmaker[Session]) -> None:
    given(sessions)

    result = runner.invoke(app, ["alerts", "list", "--json"])

    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)
    assert [(i["code"], i["state"]) for i in items] == [("AC3D", "firing"), ("K7QA", "firing")]
    assert items[0]["opened_at"] == "2026-01-07T09:00:00+08:00"


def test_list_all_includes_closed_alerts(sessions: sessionmaker[Session]) -> None:
    given(sessions)

    result = runner.invoke(app, ["alerts", "list", "--all"])

    assert result.exit_code == 0, result.output
    assert "All alerts (3)" in result.stdout
    assert "YG33" in result.stdout and "resolved" in result.stdout
