"""The CAP feed: fetch official warnings (CAP messages) from the configured sources.

A source (YUJING_CAP_SOURCES, docs/feeds.md) is

- an `http(s)://` URL of an Atom or RSS index of CAP messages (each entry's
  link, preferring `type="application/cap+xml"`, or an RSS enclosure), or of
  one CAP message;
- a path: a directory of CAP files (`*.xml`, `*.cap`, in name order), one CAP
  file, or an Atom/RSS index file whose relative links name files beside it
  (recordings for `yujing drill --replay`).

The feed only fetches: each message's bytes go to `dispatcher.official.record`,
which parses, validates and applies them (an index is parsed here with the same
defences: defusedxml, size limit). A message URL once fetched is not fetched
again (CAP messages are immutable: a change is a new message); a source that
fails is reported and the others are still read.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import httpx
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from dispatcher.official.capparse import CAP11, CAP12, MAX_MESSAGE_BYTES

ATOM = "http://www.w3.org/2005/Atom"
CAP_TYPES = ("application/cap+xml", "application/common-alerting-protocol+xml")
MAX_INDEX_BYTES = 4 << 20
"""An index (Atom/RSS) larger than this (4 MiB) is refused."""


def parse_sources(text: str) -> tuple[str, ...]:
    """YUJING_CAP_SOURCES: URLs and paths separated by commas or white space."""
    return tuple(part for part in text.replace(",", " ").split() if part)


@dataclass
class CapFetch:
    """One poll of every source: the messages read (where from, bytes) and what failed."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class CapFeed:
    """Reads CAP messages from URLs (on the shared client) and files."""

    def __init__(
        self,
        sources: Sequence[str],
        client: httpx.AsyncClient | None = None,
        *,
        max_bytes: int = MAX_MESSAGE_BYTES,
        max_entries: int = 200,
    ) -> None:
        self.sources = tuple(sources)
        self._client = client
        self._max_bytes = max_bytes
        self._max_entries = max_entries
        self._seen: set[str] = set()  # message URLs already fetched

    async def fetch(self) -> CapFetch:
        """Every new message of every source; a failing source is listed in `errors`."""
        result = CapFetch()
        for source in self.sources:
            try:
                if source.startswith(("http://", "https://")):
                    await self._url_source(source, result)
                else:
                    await asyncio.to_thread(self._path_source, Path(source), result)
            except CapSourceError as exc:
                result.errors.append(f"{_label(source)}: {exc.reason}")
        return result

    # --- URLs ---------------------------------------------------------------------------

    async def _url_source(self, url: str, result: CapFetch) -> None:
        data = await self._get(url, MAX_INDEX_BYTES)
        links = index_links(data, url)
        if links is None:  # the URL is one CAP message
            if url not in self._seen:
                result.messages.append((url, data))
                self._seen.add(url)
            return
        for link in [link for link in links if link not in self._seen][: self._max_entries]:
            try:
                body = await self._get(link, self._max_bytes)
            except CapSourceError as exc:
                result.errors.append(f"{_label(link)}: {exc.reason}")
                continue
            result.messages.append((link, body))
            self._seen.add(link)

    async def _get(self, url: str, limit: int) -> bytes:
        if self._client is None:
            raise CapSourceError("no HTTP client to fetch it with")
        try:
            async with self._client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise CapSourceError(f"HTTP {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > limit:
                        raise CapSourceError(f"over {limit} bytes: not read")
                return bytes(body)
        except httpx.TimeoutException:
            raise CapSourceError("timed out") from None
        except httpx.HTTPError as exc:
            raise CapSourceError(f"{type(exc).__name__}: {exc}") from None

    # --- paths --------------------------------------------------------------------------

    def _path_source(self, path: Path, result: CapFetch) -> None:
        if path.is_dir():
            files = sorted(
                (p for p in path.iterdir() if p.suffix.lower() in (".xml", ".cap")),
                key=lambda p: p.name,
            )
            for file in files:
                result.messages.append((str(file), _read(file, self._max_bytes)))
            return
        data = _read(path, MAX_INDEX_BYTES)
        links = index_links(data, path.resolve().as_uri())
        if links is None:
            result.messages.append((str(path), data))
            return
        for link in links[: self._max_entries]:
            file = Path(unquote(urlparse(link).path))
            try:
                result.messages.append((str(file), _read(file, self._max_bytes)))
            except CapSourceError as exc:
                result.errors.append(f"{file}: {exc.reason}")


class CapSourceError(Exception):
    """A source (or one of its entries) could not be read."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def index_links(data: bytes, base: str) -> list[str] | None:
    """The message links of an Atom or RSS index, resolved against `base`;
    None when `data` is not an index (a CAP message, or anything else: the
    record says what is wrong with it)."""
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ET.ParseError, DefusedXmlException):
        return None
    if root.tag in (f"{{{CAP12}}}alert", f"{{{CAP11}}}alert"):
        return None
    if root.tag == f"{{{ATOM}}}feed":
        links = []
        for entry in root.findall(f"{{{ATOM}}}entry"):
            found = entry.findall(f"{{{ATOM}}}link")
            chosen = [link for link in found if link.get("type") in CAP_TYPES] or [
                link for link in found if link.get("rel", "alternate") == "alternate"
            ]
            if chosen and chosen[0].get("href"):
                links.append(urljoin(base, chosen[0].get("href", "")))
        return links
    if root.tag == "rss":
        links = []
        for item in root.iter("item"):
            enclosure = item.find("enclosure")
            href = enclosure.get("url") if enclosure is not None else item.findtext("link")
            if href:
                links.append(urljoin(base, href.strip()))
        return links
    return None


def _read(path: Path, limit: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > limit:
            raise CapSourceError(f"{size} bytes, over {limit}: not read")
        return path.read_bytes()
    except OSError as exc:
        raise CapSourceError(f"cannot read: {exc.strerror}") from None


def _label(source: str) -> str:
    """A source as logged: a URL without its query (it may carry a key)."""
    return source.split("?", 1)[0]
