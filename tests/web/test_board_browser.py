"""The board by event in a real browser, on a county with 5,000 open alerts.

Debian's Chromium driven by Playwright, the real application served by uvicorn
over a real SQLite database holding 715 zones (12 townships, a 防灾责任人 each)
and 7 events over all of them: 5,005 open zone alerts. A duty officer filters
by township, searches by code, acknowledges an event; a refresh with nothing
changed transfers almost nothing (measured from the browser's own network
accounting); a red event inserted mid-test beeps, changes the tab title and
shows a banner; a dead server covers the page with a stale-data overlay.

Screenshots go to the test's tmp directory, and with $YUJING_SCREENSHOT_DIR
set, the README's console-*.png are copied there:
`YUJING_SCREENSHOT_DIR=docs/img pytest tests/web/test_board_browser.py`.
Timings and sizes are printed (`-s`) and saved as measurements.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from dispatcher.settings import Settings
from dispatcher.storage.db import make_engine, session_factory
from dispatcher.storage.models import Alert, Base, Person
from dispatcher.web import console
from dispatcher.web.app import create_app
from dispatcher.web.auth import create_user
from dispatcher.web.board import ZONES_SHOWN
from dispatcher.web.state import AppState, RulesStatus
from tests.web.events import TOWNSHIPS, add_event, big_county
from tests.web.test_console_browser import CHROMIUM, CHROMIUM_ARGS, require_chromium, serving

ROOT = Path(__file__).resolve().parents[2]
LIULIN = ROOT / "examples" / "liulin"
NOW = datetime(2026, 1, 6, 23, 40, tzinfo=UTC)  # 07:40 in the county
PASSWORD = "duty-room-password"
NOTE = "已电话通知各乡镇值班室，组织巡查"
REFRESH = 2  # seconds; the stale overlay comes after three missed refreshes
UNCHANGED_LIMIT = 100_000  # bytes a refresh may transfer when nothing changed

pytestmark = pytest.mark.slow  # a browser, a server and 5,000 alerts


def wait_until(page: Any, condition: Callable[[], bool], seconds: float) -> None:
    """Poll from here: the console's CSP (rightly) forbids the eval wait_for_function needs.

    Waiting through the page lets Playwright deliver the browser's events meanwhile.
    """
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        page.wait_for_timeout(100)


def test_a_county_with_5000_open_alerts_is_usable_on_the_board(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_chromium()
    from playwright.sync_api import Page, expect, sync_playwright

    engine = make_engine(f"sqlite:///{tmp_path / 'yujing.db'}")
    Base.metadata.create_all(engine)
    sessions = session_factory(engine)
    with sessions.begin() as db:
        db.add(
            Person(
                id="p-duty-zhang",
                name="张志强",
                phone="+8617000000001",
                duty_role="duty_officer",
                updated_at=NOW,
            )
        )
        db.flush()
        create_user(
            db, name="zhang", password=PASSWORD, role="duty", person_id="p-duty-zhang", at=NOW
        )
    started = time.monotonic()
    events = big_county(sessions, NOW, zones=715)
    filled = time.monotonic() - started
    with sessions() as db:
        open_alerts = db.scalar(
            select(func.count()).where(Alert.kind == "hazard", Alert.state == "firing")
        )
    assert open_alerts == 5005
    cold, fog = events[0], events[3]

    monkeypatch.setattr(console, "REFRESH_SECONDS", REFRESH)
    settings = Settings(
        _env_file=None,
        config_dir=LIULIN,
        database_url=f"sqlite:///{tmp_path / 'yujing.db'}",
        secret_key=SecretStr("browser-test-secret-browser-test-secret"),
    )
    state = AppState(
        sessions=sessions,
        settings=settings,
        clock=lambda: NOW,
        feed_source="open-meteo",
        started_at=NOW,
        rules=RulesStatus(loaded_at=NOW, content_hash="h", rules=6),
    )
    shots = tmp_path / "screenshots"
    shots.mkdir()
    measured: dict[str, Any] = {"fill_seconds": round(filled, 2)}
    refreshes: list[dict[str, Any]] = []

    # the browser's own accounting (Chrome DevTools Protocol): bytes on the wire per response
    wire: dict[str, dict[str, Any]] = {}

    def responded(event: dict[str, Any]) -> None:
        if "/console/board/rows" in event["response"]["url"]:
            wire[event["requestId"]] = {"status": event["response"]["status"]}

    def finished(event: dict[str, Any]) -> None:
        if event["requestId"] in wire:
            entry = wire[event["requestId"]]
            entry["bytes"] = event["encodedDataLength"]
            refreshes.append(entry)

    def timed(name: str, page: Page, action: Any) -> None:
        began = time.monotonic()
        action()
        page.wait_for_load_state("load")
        measured[f"{name}_seconds"] = round(time.monotonic() - began, 3)

    try:
        with serving(create_app(state)) as base, sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                args=[*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"],
            )
            try:
                context = browser.new_context(
                    viewport={"width": 1440, "height": 1000}, locale="zh-CN"
                )
                context.grant_permissions(["notifications"], origin=base)
                page = context.new_page()
                cdp = context.new_cdp_session(page)
                cdp.on("Network.responseReceived", responded)
                cdp.on("Network.loadingFinished", finished)

                cdp.send("Network.enable")

                page.goto(f"{base}/console/login")
                page.fill("input[name=username]", "zhang")
                page.fill("input[name=password]", PASSWORD)
                with page.expect_response(f"{base}/console/") as first_load:
                    page.click("button[type=submit]")
                board = first_load.value
                sizes = board.request.sizes()
                measured["board_bytes_transferred"] = (
                    sizes["responseBodySize"] + sizes["responseHeadersSize"]
                )
                measured["board_encoding"] = board.headers.get("content-encoding")

                # then the events are listed, unacknowledged first, the most severe first
                heads = page.locator("tbody.item.event > tr.head")
                expect(heads).to_have_count(7)
                expect(heads.first.locator(".level")).to_have_text("橙色")
                expect(heads.first).to_contain_text("寒潮")
                expect(heads.first).to_contain_text("715 处隐患点")
                expect(heads.first.locator(".tag.overdue")).to_contain_text("超时未确认 715 处")
                expect(page.locator("#board-head")).to_contain_text("隐患点预警 5005 条")
                page.locator("#notify-toggle").click()
                expect(page.locator("#notify-toggle")).to_have_text("关闭桌面通知")

                # and an event opens to its zones, in words, with the people to call
                page.locator(f'tbody[data-key="{cold.event_code}"] [data-toggle]').click()
                zone_rows = page.locator(f'tbody[data-key="{cold.event_code}"] tr.zone[data-code]')
                expect(zone_rows).to_have_count(ZONES_SHOWN)
                expect(zone_rows.first).to_contain_text("24小时降温12.1℃")
                expect(zone_rows.first.locator("a[href^='tel:']")).to_have_count(1)
                page.screenshot(path=shots / "console-board.png", full_page=True)

                # a refresh with nothing changed: 304, no body
                wait_until(page, lambda: page.evaluate("window.yujingCues.unchanged") >= 2, 15)
                wait_until(page, lambda: sum(r["status"] == 304 for r in refreshes) >= 2, 5)
                unchanged = [r for r in refreshes if r["status"] == 304]
                assert all(r["bytes"] < UNCHANGED_LIMIT for r in unchanged), unchanged
                measured["unchanged_refresh_bytes"] = max(r["bytes"] for r in unchanged)

                # filter by township: every event narrowed to that township's zones
                township = TOWNSHIPS[1]
                page.select_option("select[name=township]", township)
                timed("filter_township", page, lambda: page.click("form.filters button"))
                expect(page).to_have_url(re.compile(re.escape(f"?township={quote(township)}&")))
                listed = page.locator("tbody.item.event tr.zone[data-code] td.c-title")
                expect(listed.first).to_be_visible()
                texts = listed.all_inner_texts()
                assert texts and all(township in t for t in texts), texts[:5]
                expect(page.locator("tbody.item.event").first).to_contain_text(
                    "符合筛选的隐患点 60 处"
                )
                page.screenshot(path=shots / "console-board-township.png")

                # search by a zone alert's code: its event, with that one zone
                wanted = fog.zone_codes[100]
                page.goto(f"{base}/console/")
                page.fill("input[name=q]", wanted.lower())
                timed("search_code", page, lambda: page.press("input[name=q]", "Enter"))
                expect(page.locator("tbody.item")).to_have_count(1)
                expect(page.locator("tbody.item tr.head")).to_contain_text("大雾")
                expect(page.locator("tbody.item tr.zone[data-code]")).to_have_count(1)
                expect(page.locator(f'tr.zone[data-code="{wanted}"]')).to_be_visible()

                # acknowledge an event with a note
                timed("open_hazard", page, lambda: page.goto(f"{base}/console/?hazard=cold_wave"))
                item = page.locator(f'tbody[data-key="{cold.event_code}"]')
                item.locator("[data-toggle]").click()
                item.locator("input[name=note]").fill(NOTE)
                timed(
                    "acknowledge_event",
                    page,
                    lambda: item.locator("button[value=event]").click(),
                )
                expect(page.locator("table.results tr.ok")).to_have_count(1)
                expect(page.locator("table.results")).to_contain_text(cold.event_code)
                page.locator("a", has_text="返回预警看板").first.click()
                item = page.locator(f'tbody[data-key="{cold.event_code}"]')
                expect(item.locator("tr.head .state")).to_have_text("已确认")
                expect(item.locator("tr.head")).to_contain_text("张志强")

                # the whole board: the acknowledged event has gone below the waiting ones
                timed("board_reload", page, lambda: page.goto(f"{base}/console/"))
                keys = page.locator("tbody.item").evaluate_all("els => els.map(e => e.dataset.key)")
                assert keys[-1] == cold.event_code, keys
                expect(page).to_have_title("预警看板 · 预警值班台")

                # a new red event arrives while the board is open: sound, title, banner
                before = len(refreshes)
                red = add_event(
                    sessions,
                    "RRRR",
                    [(f"RR{n}{n}", f"BIG-{n:04d}", "red") for n in (3, 4, 6, 7)],
                    hazard="blizzard",
                    title="暴雪",
                    rule_id="cma-blizzard",
                    opened=NOW,
                )
                banner = page.locator("#cue-banner")
                expect(banner).to_be_visible(timeout=15_000)
                expect(banner).to_contain_text("新红色暴雪预警（编码 RRRR，4 处隐患点）")
                expect(page).to_have_title("（1）新红色预警 — 预警值班台")
                assert page.evaluate("window.yujingCues.beeps") == 1
                assert page.evaluate("window.yujingCues.oscillators") == 3
                assert page.locator("html").get_attribute("data-beeps") == "1"
                measured["notifications"] = page.evaluate("window.yujingCues.notifications")
                assert measured["notifications"] == 1  # 开启桌面通知 clicked, permission granted
                expect(page.locator("tbody.item").first).to_have_attribute(
                    "data-key", red.event_code
                )
                changed = [r for r in refreshes[before:] if r["status"] == 200]
                assert changed, refreshes[before:]
                measured["changed_refresh_bytes"] = changed[0]["bytes"]
                page.screenshot(path=shots / "console-board-new-red.png")
                page.locator("#cue-dismiss").click()
                expect(page).to_have_title("预警看板 · 预警值班台")

                # the server goes quiet: after three refresh intervals the page says so
                page.route("**/console/board/rows**", lambda route: route.abort())
                overlay = page.locator("#stale-overlay")
                expect(overlay).to_be_visible(timeout=4 * REFRESH * 1000 + 3000)
                expect(overlay).to_contain_text("连接中断：页面数据已过期（最后更新 ")
                page.screenshot(path=shots / "console-board-stale.png")
                page.unroute("**/console/board/rows**")
                expect(overlay).to_be_hidden(timeout=3 * REFRESH * 1000)
            finally:
                browser.close()
    finally:
        engine.dispose()

    with sessions() as db:
        event = db.scalars(select(Alert).where(Alert.code == cold.event_code)).one()
        assert event.state == "acknowledged"
    (shots / "measurements.json").write_text(json.dumps(measured, indent=2, ensure_ascii=False))
    print(json.dumps(measured, ensure_ascii=False))
    assert measured["unchanged_refresh_bytes"] < UNCHANGED_LIMIT
    saved = sorted(p.name for p in shots.glob("*.png"))
    assert saved == [
        "console-board-new-red.png",
        "console-board-stale.png",
        "console-board-township.png",
        "console-board.png",
    ]
    if target := os.environ.get("YUJING_SCREENSHOT_DIR"):
        Path(target).mkdir(parents=True, exist_ok=True)
        for name in saved:
            shutil.copy(shots / name, Path(target) / name)
