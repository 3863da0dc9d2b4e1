"""The board by event: order, zones under each event, filters, search, pages, refresh, bulk acks.

Over the real database (SQLite and PostgreSQL); events are built as rows
(`tests/web/events.py`) until the event pipeline is on main.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.storage.models import Acknowledgement, Alert
from dispatcher.web.board import PAGE_SIZE, ZONES_SHOWN
from tests.web.events import HAZARDS, TOWNSHIPS, Made, add_event, big_county
from tests.web.test_console import NOW, add_alert, console, csrf_of, log_in

ROOT = Path(__file__).resolve().parents[2]
LIULIN = ROOT / "examples" / "liulin"


def keys(html: str) -> list[str]:
    return re.findall(r'<tbody class="item [^"]*" data-key="(\w+)"', html)


def item_html(html: str, key: str) -> str:
    match = re.search(rf'<tbody class="item [^"]*" data-key="{key}".*?</tbody>', html, re.S)
    assert match, f"no item {key}"
    return match.group(0)


def zone_codes(html: str) -> list[str]:
    return re.findall(r'<tr class="zone [^"]*" data-code="(\w+)"', html)


def set_state(sessions: sessionmaker[Session], code: str, state: str) -> None:
    with sessions.begin() as db:
        db.scalars(select(Alert).where(Alert.code == code)).one().state = state


def acks_of(sessions: sessionmaker[Session], code: str) -> list[Acknowledgement]:
    with sessions() as db:
        return list(
            db.scalars(
                select(Acknowledgement)
                .join(Alert, Alert.id == Acknowledgement.alert_id)
                .where(Alert.code == code)
            )
        )


def duty(sessions: sessionmaker[Session]) -> TestClient:
    client = console(sessions, config_dir=LIULIN)
    log_in(client, "zhang")
    return client


# --- order and contents


def test_events_are_listed_unacknowledged_first_then_by_level_then_newest(
    seeded: sessionmaker[Session],
) -> None:
    made = big_county(seeded, NOW, zones=3)  # levels: orange yellow yellow blue orange blue yellow
    set_state(seeded, made[4].event_code, "acknowledged")
    add_alert(seeded, "SYS1", "red", zone=None, kind="system", opened=NOW - timedelta(hours=2))
    page = duty(seeded).get("/console/").text
    e = [m.event_code for m in made]
    assert keys(page) == ["SYS1", e[0], e[1], e[2], e[6], e[3], e[5], e[4]]
    assert "事件" in item_html(page, e[0]) and "系统" in item_html(page, "SYS1")


def test_an_event_lists_its_open_zones_with_evidence_in_words_and_people_to_call(
    seeded: sessionmaker[Session],
) -> None:
    [cold] = big_county(seeded, NOW, zones=24, events=1)
    set_state(seeded, cold.zone_codes[23], "resolved")
    client = duty(seeded)
    item = item_html(client.get("/console/").text, cold.event_code)
    assert "<strong>23</strong> 处隐患点" in item
    assert len(zone_codes(item)) == ZONES_SHOWN
    assert cold.zone_codes[23] not in zone_codes(item)
    assert "24小时降温12.1℃，日最低气温-6.3℃，24小时最大风力6级" in item
    assert "寒潮预警信号" in item  # the rule's title, not cma-cold-wave
    assert re.search(r'防灾责任人 王建国 <a href="tel:\+8617000000000">\+8617000000000</a>', item)
    assert "还有 3 处未列出" in item
    assert f"show={cold.event_code}" in item

    everything = item_html(client.get(f"/console/?show={cold.event_code}").text, cold.event_code)
    assert len(zone_codes(everything)) == 23
    assert "未列出" not in everything


def test_a_hazard_alert_of_no_event_is_a_row_of_its_own(seeded: sessionmaker[Session]) -> None:
    add_alert(seeded, "LONE", "orange")
    page = duty(seeded).get("/console/").text
    item = item_html(page, "LONE")
    assert "龙门塔不稳定斜坡" in item and "王建国" in item
    assert 'href="tel:+8617000000101"' in item


# --- filters and search


def test_a_township_filter_narrows_each_event_to_its_zones(
    seeded: sessionmaker[Session],
) -> None:
    made = big_county(seeded, NOW, zones=24, events=2)
    page = duty(seeded).get("/console/", params={"township": TOWNSHIPS[1]}).text
    assert keys(page) == [m.event_code for m in made]
    for m in made:
        item = item_html(page, m.event_code)
        assert zone_codes(item) == [m.zone_codes[1], m.zone_codes[13]]  # BIG-0001, BIG-0013
        assert "符合筛选的隐患点 2 处（共 24 处）" in item
        assert ' open"' in item.split(">", 1)[0]  # a narrowed event opens to its zones


def test_hazard_level_and_state_filters_apply_to_the_event(
    seeded: sessionmaker[Session],
) -> None:
    made = big_county(seeded, NOW, zones=2, events=4)
    set_state(seeded, made[2].event_code, "acknowledged")
    client = duty(seeded)
    assert keys(client.get("/console/?hazard=blizzard").text) == [made[1].event_code]
    assert keys(client.get("/console/?level=orange").text) == [made[0].event_code]
    assert keys(client.get("/console/?state=acknowledged").text) == [made[2].event_code]
    assert keys(client.get("/console/?level=yellow&state=firing").text) == [made[1].event_code]
    assert keys(client.get("/console/?level=purple").text) == keys(client.get("/console/").text)


def test_search_finds_events_by_their_code_and_zones_by_code_name_id_or_person(
    seeded: sessionmaker[Session],
) -> None:
    cold, snow = big_county(seeded, NOW, zones=24, events=2)
    client = duty(seeded)

    def search(q: str) -> str:
        return str(client.get("/console/", params={"q": q}).text)

    by_event = search(cold.event_code.lower())
    assert keys(by_event) == [cold.event_code]
    assert len(zone_codes(item_html(by_event, cold.event_code))) == ZONES_SHOWN

    by_zone_code = search(snow.zone_codes[7])
    assert keys(by_zone_code) == [snow.event_code]
    assert zone_codes(by_zone_code) == [snow.zone_codes[7]]

    for q in ("big-0005", "三交镇1号村", "杨玉梅"):  # zone id, zone name, 防灾责任人 of BIG-0005
        found = search(q)
        assert keys(found) == [cold.event_code, snow.event_code], q
        assert zone_codes(found) == [cold.zone_codes[5], snow.zone_codes[5]], q

    nothing = search("100%_")
    assert keys(nothing) == [] and "没有符合筛选条件的在办预警" in nothing


def test_the_board_pages_its_items_fifty_at_a_time(seeded: sessionmaker[Session]) -> None:
    made = big_county(seeded, NOW, zones=1, events=PAGE_SIZE + 5)
    client = duty(seeded)
    first = client.get("/console/").text
    second = client.get("/console/?page=2").text
    assert len(keys(first)) == PAGE_SIZE and len(keys(second)) == 5
    assert set(keys(first)).isdisjoint(keys(second))
    assert set(keys(first)) | set(keys(second)) == {m.event_code for m in made}
    assert "第 1/2 页" in first and 'href="/console/?page=2"' in first
    assert "第 2/2 页" in second and "上一页" in second
    assert len(keys(client.get("/console/?page=99").text)) == 5  # past the end: the last page


# --- refresh


def test_a_refresh_answers_304_when_nothing_changed_and_sends_only_changed_items(
    seeded: sessionmaker[Session],
) -> None:
    made = big_county(seeded, NOW, zones=12, events=3)
    client = duty(seeded)
    full = client.get("/console/board/rows")
    assert full.status_code == 200
    body = full.json()
    assert [key for key, _ in body["order"]] == [m.event_code for m in made]
    assert set(body["rows"]) == {m.event_code for m in made}
    etag = full.headers["etag"]
    have = ",".join(f"{key}:{digest}" for key, digest in body["order"])

    unchanged = client.get("/console/board/rows", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""

    set_state(seeded, made[1].zone_codes[4], "acknowledged")
    changed = client.get(
        "/console/board/rows", headers={"If-None-Match": etag, "X-Board-Have": have}
    )
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert list(changed.json()["rows"]) == [made[1].event_code]
    assert [key for key, _ in changed.json()["order"]] == [m.event_code for m in made]
    assert "11 处待确认" in changed.json()["rows"][made[1].event_code]

    filtered = client.get("/console/board/rows", params={"hazard": "fog"}).json()
    assert [key for key, _ in filtered["order"]] == []


def test_the_board_travels_gzip_compressed(seeded: sessionmaker[Session]) -> None:
    big_county(seeded, NOW, zones=24, events=2)
    client = duty(seeded)
    page = client.get("/console/", headers={"Accept-Encoding": "gzip"})
    assert page.headers["content-encoding"] == "gzip"
    assert int(page.headers["content-length"]) < len(page.content) / 4


# --- acknowledging from the board


def board_token(client: TestClient) -> str:
    return csrf_of(client.get("/console/").text)


def test_acknowledging_an_event_from_the_board_records_it_with_the_note(
    seeded: sessionmaker[Session],
) -> None:
    [cold] = big_county(seeded, NOW, zones=3, events=1)
    client = duty(seeded)
    response = client.post(
        f"/console/events/{cold.event_code}/ack",
        data={
            "csrf_token": board_token(client),
            "note": "已电话通知各乡镇",
            "what": "event",
            "back": "/console/?hazard=cold_wave",
        },
    )
    assert response.status_code == 200
    assert re.search(rf'data-code="{cold.event_code}".*?已确认', response.text, re.S)
    assert 'href="/console/?hazard=cold_wave"' in response.text
    [ack] = acks_of(seeded, cold.event_code)
    assert (ack.method, ack.person_id, ack.actor, ack.note) == (
        "console",
        "p-duty",
        "console:zhang",
        "已电话通知各乡镇",
    )
    with seeded() as db:
        event = db.scalars(select(Alert).where(Alert.code == cold.event_code)).one()
        assert event.state == "acknowledged"
    board = client.get("/console/").text
    assert "张志强" in item_html(board, cold.event_code)  # the login's person, not console:zhang


def test_acknowledging_selected_zones_at_once_shows_the_outcome_of_each(
    seeded: sessionmaker[Session],
) -> None:
    cold, snow = big_county(seeded, NOW, zones=4, events=2)
    set_state(seeded, cold.zone_codes[2], "resolved")
    client = duty(seeded)
    picked = [cold.zone_codes[0], cold.zone_codes[1], cold.zone_codes[2], snow.zone_codes[0]]
    response = client.post(
        f"/console/events/{cold.event_code}/ack",
        data={"csrf_token": board_token(client), "what": "zones", "zone": picked, "note": ""},
    )
    assert response.status_code == 200
    rows = dict(
        re.findall(r'data-code="(\w+)">.*?<td data-label="结果" class="outcome">(.*?)</td>',
                   response.text, re.S)
    )  # fmt: skip
    assert rows[cold.zone_codes[0]] == rows[cold.zone_codes[1]] == "已确认"
    assert "已解除" in rows[cold.zone_codes[2]]
    assert rows[snow.zone_codes[0]] == "不属于该事件，未确认"
    assert "受理 2 条，未受理 2 条" in response.text
    assert [len(acks_of(seeded, c)) for c in picked] == [1, 1, 0, 0]
    assert acks_of(seeded, cold.event_code) == []


def test_bulk_acknowledgement_refuses_viewers_forged_forms_long_notes_and_empty_picks(
    seeded: sessionmaker[Session],
) -> None:
    [cold] = big_county(seeded, NOW, zones=2, events=1)
    guest = console(seeded)
    log_in(guest, "guest")
    board = guest.get("/console/").text
    assert "确认事件" not in board and "只读账号不能确认预警" in board
    url = f"/console/events/{cold.event_code}/ack"
    refused = guest.post(url, data={"csrf_token": csrf_of(board), "what": "event"})
    assert refused.status_code == 403 and "只读账号不能确认" in refused.text

    client = duty(seeded)
    token = board_token(client)
    assert client.post(url, data={"csrf_token": "forged", "what": "event"}).status_code == 403
    long = client.post(url, data={"csrf_token": token, "what": "event", "note": "巡" * 501})
    assert long.status_code == 400 and "备注最多 500 字" in long.text
    empty = client.post(url, data={"csrf_token": token, "what": "zones"})
    assert empty.status_code == 400 and "请先勾选" in empty.text
    assert all(acks_of(seeded, c) == [] for c in [cold.event_code, *cold.zone_codes])


# --- words on the alert page


def test_the_alert_page_names_the_rule_the_people_and_the_evidence_in_words(
    seeded: sessionmaker[Session],
) -> None:
    made: Made = add_event(
        seeded,
        "EVT1",
        [("ZN01", "LL-LL-001", "orange")],
        opened=NOW,
        deadline=NOW + timedelta(hours=1),
    )
    client = duty(seeded)
    token = csrf_of(client.get("/console/alerts/ZN01").text)
    client.post("/console/alerts/ZN01/ack", data={"csrf_token": token, "note": "已巡查"})
    page = client.get("/console/alerts/ZN01").text
    assert "寒潮预警信号" in page and "cma-cold-wave" not in page
    assert "24小时降温12.1℃" in page and "drop(daily_min" not in page
    assert "张志强" in page and "console:zhang" not in page
    assert 'href="/console/alerts/EVT1"' in page  # its event
    event_page = client.get(f"/console/alerts/{made.event_code}").text
    assert "1 处在办" in event_page and f"/console/?q={made.event_code}" in event_page
    assert HAZARDS[0][1] in event_page
