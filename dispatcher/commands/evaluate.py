"""`yujing evaluate-now`: ask the running daemon to re-read the files and poll at once.

The CLI and the daemon share only the database: the request is an audit event
(`evaluate.requested`, with who asked) that the daemon's watch job answers
within `YUJING_RULES_WATCH_SECONDS` (`dispatcher.configwatch`).
"""

from __future__ import annotations

import getpass
import time
from datetime import UTC, datetime
from typing import Annotated

import typer

from dispatcher.commands.terminal import load_settings, operator_errors, out, say

_NO_TABLES = "the database has no audit table yet; run `yujing db upgrade` first ({error})"


def evaluate_now(
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            metavar="SECONDS",
            help="How long to wait for the daemon's answer; 0: ask and return",
        ),
    ] = 120.0,
) -> None:
    """Ask the running daemon to reload edited files and evaluate the forecast now."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from dispatcher.configwatch import answer, request_evaluation
    from dispatcher.storage.db import make_engine, session_factory

    with operator_errors():
        settings = load_settings()
        engine = make_engine(settings.database_url)
        sessions = session_factory(engine)
        try:
            try:
                with sessions.begin() as session:
                    request = request_evaluation(
                        session, actor=f"cli:{_os_user()}", now=datetime.now(UTC)
                    )
            except (OperationalError, ProgrammingError) as exc:
                raise ValueError(_NO_TABLES.format(error=type(exc).__name__)) from None
            out.print(f"已请求立即评估（请求 {request}）", markup=False, highlight=False)
            if wait <= 0:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                with sessions() as session:
                    done = answer(session)
                if done is not None and int(str(done.get("request", 0))) >= request:
                    _report(done)
                    return
                time.sleep(0.5)
        finally:
            engine.dispose()
    say(
        f"no answer within {wait:g} s: is `yujing run` running (and leading)? "
        "The request stays; the daemon answers it when it next looks."
    )
    raise typer.Exit(1)


def _report(done: dict[str, object]) -> None:
    if not done.get("ok"):
        say(f"评估失败：预报数据未能获取（{done.get('error')}）")
        raise typer.Exit(1)
    transitions = done.get("transitions") or {}
    out.print(
        f"评估完成：预报批次 {done.get('forecast_run_id')}，"
        f"变化 {transitions or '无'}，通知 {done.get('notifications')} 条",
        markup=False,
        highlight=False,
    )


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (containers): still say it was the CLI
        return "unknown"
