"""`yujing report --from … --to …`: the information report (信息报送) for a shift or holiday."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer

from dispatcher.commands.terminal import checks_database_itself

if TYPE_CHECKING:
    from dispatcher.county import County


@checks_database_itself
def report(
    start: Annotated[
        str,
        typer.Option(
            "--from",
            metavar="TIME",
            help="Start, ISO 8601 (2026-01-07T08:30 or 2026-01-07); no offset: county time",
        ),
    ],
    end: Annotated[
        str, typer.Option("--to", metavar="TIME", help="End (exclusive), same forms as --from")
    ],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            metavar="html|csv",
            help="html (printable, one event per page or two, phone numbers masked) or csv "
            "(one row per message with FULL phone numbers: the office's own record, not for "
            "passing on) [default: from --out's suffix, else html]",
        ),
    ] = None,
    appendix: Annotated[
        bool,
        typer.Option(
            "--appendix", help="html: add every message of each event as an appendix (masked)"
        ),
    ] = False,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", metavar="FILE", help="Write to this file [default: stdout]"),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="County configuration directory [default: YUJING_CONFIG_DIR]"
        ),
    ] = None,
) -> None:
    """Each event of the period on one or two A4 pages: 报送单位, 签发人, 联系电话, zones and
    people threatened, level changes, who was told, acknowledgements, overdue, measures."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from dispatcher.commands.terminal import (
        check_database,
        fail,
        load_settings,
        operator_errors,
        say,
    )
    from dispatcher.report import build_report, render_csv, render_html
    from dispatcher.storage.db import make_engine, session_factory

    chosen = fmt or (
        "csv" if out_file is not None and out_file.suffix.lower() == ".csv" else "html"
    )
    if chosen not in ("html", "csv"):
        fail(f"--format {fmt!r}: expected html or csv")
    with operator_errors():
        settings = load_settings(config_dir=config)
    since = _parse_time("--from", start, settings.timezone)
    until = _parse_time("--to", end, settings.timezone)
    if until <= since:
        fail(f"--to {end} is not after --from {start}: nothing to report")
    with operator_errors():
        check_database(settings.database_url)
        county = _county(settings.config_dir)
        engine = make_engine(settings.database_url)
        try:
            with session_factory(engine)() as session:
                built = build_report(
                    session,
                    start=since,
                    end=until,
                    timezone=settings.timezone,
                    now=datetime.now(UTC),
                    county=county,
                )
        except (OperationalError, ProgrammingError) as exc:
            raise ValueError(
                "the database is missing tables; run `yujing db upgrade` first "
                f"({type(exc).__name__})"
            ) from None
        finally:
            engine.dispose()
        text = render_csv(built) if chosen == "csv" else render_html(built, appendix=appendix)
        if out_file is None:
            print(text, end="")
            return
        # a BOM lets spreadsheet programs open the Chinese CSV as UTF-8
        out_file.write_text(text, encoding="utf-8-sig" if chosen == "csv" else "utf-8")
    say(
        f"report {built.local(since)} – {built.local(until)} ({settings.timezone}): "
        f"{len(built.events)} event(s), {len(built.others)} other warning(s), "
        f"{sum(len(e.deliveries) for e in built.episodes)} message(s) → {out_file}"
    )


def _county(config_dir: Path) -> County | None:
    """The county (names, threatened people, who signs); the report still works without it."""
    from dispatcher.county import load_county
    from rules.config import ConfigError

    try:
        return load_county(config_dir)
    except (ConfigError, OSError, ValueError) as exc:
        from dispatcher.commands.terminal import say

        say(f"warning: county configuration unreadable, report without it: {exc}")
        return None


def _parse_time(option: str, text: str, tz: str) -> datetime:
    """ISO 8601 date or time; without an offset it is read in the county's timezone."""
    from dispatcher.commands.terminal import fail

    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{option} {text!r}: expected ISO 8601, e.g. 2026-01-07T08:30 or 2026-01-07")
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(tz))
    return value.astimezone(UTC)
