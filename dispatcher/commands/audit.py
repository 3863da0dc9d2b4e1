"""`yujing audit verify`: walk the hash-chained audit log and report any tampering."""

from __future__ import annotations

from typing import Annotated

import typer

audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (for scripts) instead of lines")
    ] = False,
) -> None:
    """Check every event's hash and link; exit 1 listing each changed, deleted or inserted row.

    On success prints the number of events and the latest hash: keep that hash
    somewhere else (the shift report prints it too) — a chain alone cannot show
    that its tail was cut off or rewritten from some row on.
    """
    from sqlalchemy import func, select
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from dispatcher.audit import verify
    from dispatcher.commands.terminal import load_settings, operator_errors, out, say
    from dispatcher.storage.db import make_engine, session_factory
    from dispatcher.storage.models import AuditEvent

    with operator_errors():
        settings = load_settings()
        engine = make_engine(settings.database_url)
        try:
            with session_factory(engine)() as session:
                problems = verify(session)
                count = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
                last = session.execute(
                    select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
                ).first()
        except (OperationalError, ProgrammingError) as exc:
            raise ValueError(
                "the database has no audit table yet; run `yujing db upgrade` first "
                f"({type(exc).__name__})"
            ) from None
        finally:
            engine.dispose()
    if as_json:
        import json

        document = {
            "ok": not problems,
            "events": count,
            "latest": None if last is None else {"id": last.id, "hash": last.hash},
            "problems": [str(p) for p in problems],
        }
        print(json.dumps(document, ensure_ascii=False, indent=2))
        if problems:
            raise typer.Exit(1)
        return
    if problems:
        for problem in problems:
            say(problem)
        say(f"audit chain BROKEN: {len(problems)} problem(s) in {count} events")
        raise typer.Exit(1)
    out.print(f"audit chain intact: {count} events", markup=False, highlight=False)
    if last is not None:
        out.print(f"latest: event {last.id}, hash {last.hash}", markup=False, highlight=False)
