"""The CAP feed: Atom and RSS indexes, message URLs, directories and index files.

HTTP is mocked with respx at the edge; the messages are real ones (tests/data/cap).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import respx

from dispatcher.feeds.cap_feed import CapFeed, parse_sources
from tests.official.data import ALERT, BOMB, CANCEL, UPDATE, example

BASE = "https://warnings.example.cn/cap"


def atom(*hrefs: str) -> bytes:
    entries = "".join(
        f"<entry><id>{h}</id><title>t</title><updated>2026-01-07T00:00:00+08:00</updated>"
        f'<link rel="alternate" type="application/cap+xml" href="{h}"/></entry>'
        for h in hrefs
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<id>{BASE}</id><title>预警</title><updated>2026-01-07T00:00:00+08:00</updated>"
        f"{entries}</feed>"
    ).encode()


def test_sources_are_separated_by_commas_or_spaces() -> None:
    assert parse_sources(f" {BASE}/feed.atom, /var/cap  /srv/x.xml ") == (
        f"{BASE}/feed.atom",
        "/var/cap",
        "/srv/x.xml",
    )


@respx.mock
async def test_an_atom_index_brings_each_new_message_once() -> None:
    respx.get(f"{BASE}/feed.atom").mock(
        return_value=httpx.Response(200, content=atom("1.xml", f"{BASE}/2.xml"))
    )
    first = respx.get(f"{BASE}/1.xml").mock(
        return_value=httpx.Response(200, content=ALERT.read_bytes())
    )
    respx.get(f"{BASE}/2.xml").mock(return_value=httpx.Response(200, content=UPDATE.read_bytes()))
    async with httpx.AsyncClient() as client:
        feed = CapFeed([f"{BASE}/feed.atom"], client)

        fetched = await feed.fetch()
        again = await feed.fetch()

    assert fetched.errors == []
    assert fetched.messages == [
        (f"{BASE}/1.xml", ALERT.read_bytes()),  # a relative link, resolved
        (f"{BASE}/2.xml", UPDATE.read_bytes()),
    ]
    assert again.messages == [] and first.call_count == 1


@respx.mock
async def test_an_rss_index_and_a_message_url_are_read() -> None:
    rss = (
        f"<rss version='2.0'><channel><item><link>{BASE}/c.xml</link></item></channel></rss>"
    ).encode()
    respx.get(f"{BASE}/feed.rss").mock(return_value=httpx.Response(200, content=rss))
    respx.get(f"{BASE}/c.xml").mock(return_value=httpx.Response(200, content=CANCEL.read_bytes()))
    respx.get(f"{BASE}/one.cap").mock(
        return_value=httpx.Response(200, content=example("thunderstorm"))
    )
    async with httpx.AsyncClient() as client:
        fetched = await CapFeed([f"{BASE}/feed.rss", f"{BASE}/one.cap"], client).fetch()

    assert [where for where, _ in fetched.messages] == [f"{BASE}/c.xml", f"{BASE}/one.cap"]


@respx.mock
async def test_a_failing_source_is_reported_and_the_others_still_read(tmp_path: Path) -> None:
    respx.get(f"{BASE}/feed.atom").mock(return_value=httpx.Response(503))
    respx.get(f"{BASE}/slow.atom").mock(side_effect=httpx.ConnectTimeout("slow"))
    shutil.copy(ALERT, tmp_path)
    async with httpx.AsyncClient() as client:
        fetched = await CapFeed(
            [f"{BASE}/feed.atom?key=secret", f"{BASE}/slow.atom", str(tmp_path)], client
        ).fetch()

    assert fetched.errors == [f"{BASE}/feed.atom: HTTP 503", f"{BASE}/slow.atom: timed out"]
    assert [Path(where).name for where, _ in fetched.messages] == ["1-alert.xml"]


@respx.mock
async def test_a_message_over_the_limit_is_not_read() -> None:
    respx.get(f"{BASE}/feed.atom").mock(return_value=httpx.Response(200, content=atom("big.xml")))
    respx.get(f"{BASE}/big.xml").mock(return_value=httpx.Response(200, content=b"<a/>" * 1000))
    async with httpx.AsyncClient() as client:
        fetched = await CapFeed([f"{BASE}/feed.atom"], client, max_bytes=2000).fetch()

    assert fetched.messages == []
    assert fetched.errors == [f"{BASE}/big.xml: over 2000 bytes: not read"]


async def test_a_directory_is_read_in_name_order_hostile_files_too(tmp_path: Path) -> None:
    for path in (UPDATE, ALERT):
        shutil.copy(path, tmp_path)
    (tmp_path / "0-bomb.xml").write_bytes(BOMB)
    (tmp_path / "notes.txt").write_text("not a message", encoding="utf-8")

    fetched = await CapFeed([str(tmp_path)]).fetch()

    # the record refuses the bomb with its reason: the feed only reads
    assert [Path(where).name for where, _ in fetched.messages] == [
        "0-bomb.xml",
        "1-alert.xml",
        "2-update.xml",
    ]


async def test_an_index_file_names_messages_beside_it(tmp_path: Path) -> None:
    shutil.copy(ALERT, tmp_path)
    (tmp_path / "index.atom").write_bytes(atom("1-alert.xml", "missing.xml"))

    fetched = await CapFeed([str(tmp_path / "index.atom")]).fetch()

    assert fetched.messages == [(str(tmp_path / "1-alert.xml"), ALERT.read_bytes())]
    assert fetched.errors == [f"{tmp_path / 'missing.xml'}: cannot read: No such file or directory"]
