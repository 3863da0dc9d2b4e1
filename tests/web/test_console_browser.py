"""The duty console in a real browser: Debian's Chromium driven by Playwright.

The real application is served by uvicorn on 127.0.0.1 over a real SQLite
database, filled by the real pipeline from the recorded cold wave of January
2026 (examples/liulin/scenarios). A duty officer logs in, sees the firing
warnings on the board, acknowledges one in a second tab, and the board —
never reloaded — shows it acknowledged at its next refresh.

Screenshots go to the test's tmp directory; with $YUJING_SCREENSHOT_DIR set,
the README's (board.png, alert.png, board-phone.png) are copied there too:
`YUJING_SCREENSHOT_DIR=docs/img pytest tests/web/test_console_browser.py`.

Only Debian's /usr/bin/chromium is used; nothing is ever downloaded (never run
`playwright install`). Without it the test fails under CI and is skipped
elsewhere, saying why.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from alembic import command
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.roster import load_roster
from dispatcher.runtime import Runtime, drain, open_runtime
from dispatcher.settings import Settings
from dispatcher.storage.db import make_engine
from dispatcher.storage.migrate import alembic_config
from dispatcher.storage.models import Acknowledgement, Alert, Base
from dispatcher.web.app import create_app
from dispatcher.web.auth import create_user
from dispatcher.web.state import AppState

ROOT = Path(__file__).resolve().parents[2]
LIULIN = ROOT / "examples" / "liulin"
SCENARIO = LIULIN / "scenarios" / "coldwave-2026-01.json"
AT = datetime.fromisoformat("2026-01-07T00:00:00+08:00")
LOOKED_AT = AT + timedelta(minutes=20)  # the duty officer opens the console 20 min later
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PASSWORD = "duty-room-password"
NOTE = "已电话通知村防灾责任人，组织巡查"
NOTE_BY = "张志强"  # p-duty-zhang of examples/liulin/people.yaml, the login's person

pytestmark = pytest.mark.slow  # a browser, a server and the board's 10 s refresh


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing under CI; .ci/run must install Debian's chromium")
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium); never `playwright install`")


def fill_database(settings: Settings) -> Runtime:
    """A database holding what the pipeline makes of the recorded cold wave, and a user."""
    # tables from the models, then marked current, so open_runtime's upgrade is a no-op
    engine = make_engine(settings.database_url)
    Base.metadata.create_all(engine)
    engine.dispose()
    command.stamp(alembic_config(settings.database_url), "head")
    runtime = open_runtime(settings, clock=lambda: AT, console=io.StringIO(), wake=lambda: None)

    async def poll_and_deliver() -> None:
        await runtime.pipeline.poll()
        await drain(runtime.worker)

    asyncio.run(poll_and_deliver())
    with runtime.sessions.begin() as db:
        create_user(
            db, name="zhang", password=PASSWORD, role="duty", person_id="p-duty-zhang", at=AT
        )
    return runtime


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """The app on a free port of 127.0.0.1, in a thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def acknowledgements(sessions: sessionmaker[Session], code: str) -> list[Acknowledgement]:
    with sessions() as db:
        return list(
            db.scalars(
                select(Acknowledgement)
                .join(Alert, Alert.id == Acknowledgement.alert_id)
                .where(Alert.code == code)
            )
        )


def test_a_duty_officer_acknowledges_a_firing_warning_and_the_board_updates(
    tmp_path: Path,
) -> None:
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    settings = Settings(
        _env_file=None,
        config_dir=LIULIN,
        database_url=f"sqlite:///{tmp_path / 'yujing.db'}",
        feed="replay",
        replay_file=SCENARIO,
        replay_rebase=False,
        channel="console",
        twilio_account_sid=None,
        twilio_auth_token=None,
        secret_key=SecretStr("browser-test-secret-browser-test-secret"),
    )
    runtime = fill_database(settings)
    state = AppState(
        sessions=runtime.sessions,
        settings=settings,
        clock=lambda: LOOKED_AT,
        feed_source=runtime.feed.source,
        started_at=AT,
        rules=runtime.rules.status,
        roster=load_roster(LIULIN, runtime.county),
    )
    shots = tmp_path / "screenshots"
    shots.mkdir()
    try:
        with serving(create_app(state)) as base, sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            try:
                context = browser.new_context(
                    viewport={"width": 1366, "height": 900}, locale="zh-CN"
                )
                board = context.new_page()

                # given a duty officer at the login page
                board.goto(f"{base}/console/")
                expect(board).to_have_url(f"{base}/console/login?next=/console/")
                board.fill("input[name=username]", "zhang")
                board.fill("input[name=password]", PASSWORD)
                board.click("button[type=submit]")

                # then the board lists the events of the cold front: the orange cold
                # wave first, its zones past their deadline counted
                expect(board).to_have_url(f"{base}/console/")
                first = board.locator("tr[data-code]").first
                expect(first.locator(".level")).to_have_text("橙色")
                expect(first.locator(".state")).to_have_text("待确认")
                expect(first.locator(".tag.overdue")).to_contain_text("超时未确认")
                expect(first).to_contain_text("寒潮")
                code = first.get_attribute("data-code")
                assert code
                board.screenshot(path=shots / "board.png")

                # when they acknowledge it with a note, in a second tab
                detail = context.new_page()
                detail.goto(f"{base}/console/alerts/{code}")
                detail.fill("textarea[name=note]", NOTE)
                detail.click("button.primary")
                expect(detail.locator(".notice.ok")).to_contain_text("已确认")
                expect(detail.locator("ol.timeline")).to_contain_text(NOTE)
                detail.screenshot(path=shots / "alert.png", full_page=True)

                # then the board, never reloaded, shows it acknowledged at its next
                # refresh, by whom, below the event still waiting (road icing)
                row = board.locator(f'tr[data-code="{code}"]')
                expect(row.locator(".state")).to_have_text("已确认", timeout=25_000)
                expect(row).to_have_count(1)  # the refreshed row replaced the old one
                expect(row).to_contain_text(NOTE_BY)
                expect(board.locator("#refresh-status")).to_contain_text("已更新")
                expect(board.locator("tr[data-code]").first).to_contain_text("道路结冰")
                board.goto(f"{base}/console/?q={code}")
                expect(row.locator(".state")).to_have_text("已确认")
                board.screenshot(path=shots / "board-after.png")

                phone = browser.new_context(
                    viewport={"width": 390, "height": 844},
                    device_scale_factor=2,
                    is_mobile=True,
                    locale="zh-CN",
                    storage_state=context.storage_state(),
                )
                small = phone.new_page()
                small.goto(f"{base}/console/")
                expect(small.locator("tr[data-code]").first).to_be_visible()
                small.screenshot(path=shots / "board-phone.png")
            finally:
                browser.close()
    finally:
        asyncio.run(runtime.aclose())

    [ack] = acknowledgements(runtime.sessions, code)
    assert (ack.method, ack.person_id, ack.note) == ("console", "p-duty-zhang", NOTE)
    saved = sorted(p.name for p in shots.iterdir())
    assert saved == ["alert.png", "board-after.png", "board-phone.png", "board.png"]
    assert all((shots / name).stat().st_size > 10_000 for name in saved)
    if target := os.environ.get("YUJING_SCREENSHOT_DIR"):  # the README's pictures
        Path(target).mkdir(parents=True, exist_ok=True)
        for name in ("board.png", "alert.png", "board-phone.png"):
            shutil.copy(shots / name, Path(target) / name)
