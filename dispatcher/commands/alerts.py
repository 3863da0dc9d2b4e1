"""`yujing alerts list|ack`: the alerts in the database, and acknowledging one by code."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

alerts_app = typer.Typer(help="Alerts.", no_args_is_help=True)

_NO_TABLES = "the database has no {what} table yet; run `yujing db upgrade` first ({error})"


@alerts_app.command("list")
def alerts_list(
    all_: Annotated[bool, typer.Option("--all", help="Include closed alerts")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (for scripts) instead of a table")
    ] = False,
) -> None:
    """List open alerts (firing or acknowledged), newest first."""
    from rich.table import Table
    from sqlalchemy import select

    from dispatcher.commands.terminal import load_settings, operator_errors, out
    from dispatcher.states import OPEN_ALERT_STATES
    from dispatcher.storage.db import make_engine, session_factory
    from dispatcher.storage.models import Alert

    with operator_errors():
        settings = load_settings()
        engine = make_engine(settings.database_url)
        with session_factory(engine)() as session:
            query = select(Alert).order_by(Alert.opened_at.desc(), Alert.id.desc())
            if not all_:
                query = query.where(Alert.state.in_(OPEN_ALERT_STATES))
            rows = session.scalars(query).all()
            # a zone alert's event, by code (the bureau's incident it belongs to)
            events = {
                a.id: a.code
                for a in session.scalars(
                    select(Alert).where(Alert.id.in_({a.event_id for a in rows if a.event_id}))
                )
            }
        engine.dispose()
    tz = ZoneInfo(settings.timezone)
    items = [
        {
            "code": a.code,
            "kind": a.kind,
            "event": events.get(a.event_id) if a.event_id else None,
            "zone_id": a.zone_id,
            "hazard": a.hazard,
            "level": a.level,
            "state": a.state,
            "onset": a.onset.astimezone(tz).isoformat() if a.onset else None,
            "opened_at": a.opened_at.astimezone(tz).isoformat(),
        }
        for a in rows
    ]
    if as_json:
        print(json.dumps(items, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"{'All' if all_ else 'Open'} alerts ({len(items)})")
    for col in ("code", "zone", "event", "hazard", "level", "state", "onset", "opened"):
        table.add_column(col)
    for i in items:
        table.add_row(
            i["code"],
            i["zone_id"] or f"({i['kind']})",
            i["event"] or "",
            i["hazard"],
            i["level"],
            i["state"],
            _short(i["onset"]),
            _short(i["opened_at"]),
        )
    out.print(table)


@alerts_app.command("ack")
def alerts_ack(
    code: Annotated[str, typer.Argument(help="The alert's short code, as in the message")],
    by: Annotated[
        str,
        typer.Option(
            "--by", metavar="PERSON", help="Who acknowledges: person id or name in people.yaml"
        ),
    ],
    note: Annotated[
        str | None, typer.Option("--note", metavar="TEXT", help="A note kept with it")
    ] = None,
) -> None:
    """Acknowledge an open alert on someone's behalf (recorded as method `cli`)."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from dispatcher.commands.terminal import load_settings, operator_errors, out, say
    from dispatcher.storage.db import make_engine, session_factory

    with operator_errors():
        settings = load_settings()
        engine = make_engine(settings.database_url)
        try:
            with session_factory(engine).begin() as session:
                result = _acknowledge(session, code, by, note, settings.timezone)
        except (OperationalError, ProgrammingError) as exc:
            raise ValueError(_NO_TABLES.format(what="alerts", error=type(exc).__name__)) from None
        finally:
            engine.dispose()
    accepted, message = result
    if not accepted:
        say(message)
        raise typer.Exit(1)
    out.print(message, markup=False, highlight=False)


def _acknowledge(
    session: Session, code: str, by: str, note: str | None, tz: str
) -> tuple[bool, str]:
    """(accepted, what to print); ValueError for a code or person that does not exist."""
    from sqlalchemy import or_, select

    from dispatcher.alerts.acknowledge import acknowledge, find_open_alert_by_code
    from dispatcher.storage.models import Acknowledgement, Alert, Person

    alert = find_open_alert_by_code(session, code)
    if alert is None:
        known = session.scalar(select(Alert).where(Alert.code == code.strip().upper()))
        if known is None:
            raise ValueError(f"no alert with code {code!r} (see `yujing alerts list --all`)")
        return False, f"alert {known.code} is {known.state}; there is nothing to acknowledge"
    people = session.scalars(
        select(Person)
        .where(or_(Person.id == by, Person.name == by), Person.active.is_(True))
        .order_by(Person.id)
    ).all()
    if not people:
        raise ValueError(f"--by {by!r}: no active person with that id or name (people.yaml)")
    exact = [p for p in people if p.id == by]
    if len(exact) != 1 and len(people) > 1:
        ids = ", ".join(p.id for p in people)
        raise ValueError(f"--by {by!r}: {len(people)} people have that name ({ids}); give the id")
    person = exact[0] if exact else people[0]
    earlier = session.scalars(
        select(Acknowledgement)
        .where(Acknowledgement.alert_id == alert.id, Acknowledgement.person_id == person.id)
        .order_by(Acknowledgement.at)
        .limit(1)
    ).first()
    outcome = acknowledge(
        session,
        alert=alert,
        person_id=person.id,
        actor=f"cli:{_os_user()}",
        method="cli",
        note=note.strip() if note and note.strip() else None,
        at=datetime.now(UTC),
    )
    what = f"{alert.code} {alert.title or alert.hazard} {alert.level} {alert.zone_id or '(system)'}"
    if not outcome.accepted:
        return False, f"{what}：未确认：{outcome.reason}"
    if earlier is not None:
        # the same person again: nothing new was recorded, and the officer should know
        when = earlier.at.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M")
        return True, (
            f"{what}：{person.name}（{person.id}）已于 {when} 确认过（{earlier.method}），"
            f"本次未重复记录；{outcome.reason}"
        )
    return True, f"{what}：{outcome.reason}（{person.name}，{person.id}）"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (containers): still say it was the CLI
        return "unknown"


def _short(iso: str | None) -> str:
    return iso[5:16].replace("T", " ") if iso else "—"
