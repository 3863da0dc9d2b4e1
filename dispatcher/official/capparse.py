"""Read a received CAP 1.1 / 1.2 message, safely, or refuse it with the reason.

Inbound CAP (official warnings) — `dispatcher/cap.py` is the outbound side.

A message is untrusted input from the network, so reading it is guarded at
every step, and the first failed step refuses the whole message:

1. size: over `max_bytes` (default `MAX_MESSAGE_BYTES`) is refused unread;
2. XML: parsed by defusedxml — entity declarations (the billion-laughs bomb's
   building block), external entities and external DTDs (XXE) are refused,
   never expanded or fetched;
3. schema: validated against the OASIS CAP 1.2 XSD shipped in this package
   (`cap12.xsd`; no network). CAP 1.1 messages are validated against it with
   their namespace renamed: 1.2 only added values (responseType AllClear,
   None) and tightened `sent`/`effective` to whole seconds with an offset,
   which 1.1 senders follow in practice;
4. content: times with offsets, `references` entries of three parts,
   polygons of at least four `lat,lon` points, circles `lat,lon radius_km`.

The result is plain data (`CapMessage`), with each `<info>` block's warning
level (`info_level`) decided from the CMA signal colour or the CAP severity.
"""

from __future__ import annotations

import functools
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import xmlschema
from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import fromstring

from rules.types import Level

CAP12 = "urn:oasis:names:tc:emergency:cap:1.2"
CAP11 = "urn:oasis:names:tc:emergency:cap:1.1"
VERSIONS = {CAP12: "1.2", CAP11: "1.1"}
MAX_MESSAGE_BYTES = 1 << 20
"""A CAP message larger than this (1 MiB) is refused unread: real ones are a few KB."""
SCHEMA = Path(__file__).with_name("cap12.xsd")

# CMA signals name their colour (寒潮蓝色预警); CAP severity is the fallback.
_COLOURS = {"红色": Level.RED, "橙色": Level.ORANGE, "黄色": Level.YELLOW, "蓝色": Level.BLUE}
_COLOUR = re.compile("|".join(_COLOURS))
SEVERITY_LEVELS = {
    "Extreme": Level.RED,
    "Severe": Level.ORANGE,
    "Moderate": Level.YELLOW,
    "Minor": Level.BLUE,
}
"""CAP severity → level, as China's warning release system pairs them (red = Extreme …)."""


class CapRefused(Exception):
    """A message that is not read: `reason` says why, in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CapCircle:
    """`<circle>`: a centre and a radius in kilometres."""

    latitude: float
    longitude: float
    radius_km: float


@dataclass(frozen=True)
class CapArea:
    """One `<area>`: any number of polygons, circles and geocodes."""

    description: str
    polygons: tuple[tuple[tuple[float, float], ...], ...] = ()  # (lat, lon) vertices
    circles: tuple[CapCircle, ...] = ()
    geocodes: tuple[tuple[str, str], ...] = ()  # (valueName, value)


@dataclass(frozen=True)
class CapInfo:
    """One `<info>` block: what, how bad, when, where, and who says so."""

    event: str
    urgency: str
    severity: str
    certainty: str
    effective: datetime
    onset: datetime
    expires: datetime | None
    sender_name: str
    headline: str
    language: str
    areas: tuple[CapArea, ...]
    parameters: tuple[tuple[str, str], ...] = ()

    @property
    def level(self) -> Level | None:
        """The warning's level: the signal colour its event names (寒潮橙色预警), else
        its severity (Minor … Extreme), else the last colour its headline names
        (…升级为橙色); None when none says.

        The headline comes last: it may name the old colour too.
        """
        found = _COLOUR.findall(self.event)
        if found:
            return _COLOURS[found[-1]]
        if self.severity in SEVERITY_LEVELS:
            return SEVERITY_LEVELS[self.severity]
        found = _COLOUR.findall(self.headline)
        return _COLOURS[found[-1]] if found else None


@dataclass(frozen=True)
class CapReference:
    """One `references` entry: sender, identifier, sent (as written)."""

    sender: str
    identifier: str
    sent: str


@dataclass(frozen=True)
class CapMessage:
    """A received CAP message that passed every check."""

    version: str  # 1.1 or 1.2
    identifier: str
    sender: str
    sent: datetime
    status: str  # Actual, Exercise, System, Test, Draft
    msg_type: str  # Alert, Update, Cancel, Ack, Error
    scope: str
    references: tuple[CapReference, ...]
    infos: tuple[CapInfo, ...]


@functools.cache
def cap_schema() -> xmlschema.XMLSchema:
    """The CAP 1.2 schema, read once from the package (never from the network)."""
    return xmlschema.XMLSchema(str(SCHEMA))


def parse_cap(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> CapMessage:
    """The message in `data`; `CapRefused` naming the first thing wrong with it."""
    if len(data) > max_bytes:
        raise CapRefused(f"message is {len(data)} bytes, over the limit of {max_bytes}")
    root = _parse_xml(data)
    namespace, _, local = root.tag[1:].partition("}") if root.tag.startswith("{") else ("", "", "")
    if local != "alert" or namespace not in VERSIONS:
        raise CapRefused(
            f"not a CAP 1.1/1.2 alert: the root element is {root.tag!r}; expected <alert> "
            f"in namespace {CAP12} or {CAP11}"
        )
    _validate(root if namespace == CAP12 else _renamed(root, namespace, CAP12))
    return _message(root, namespace)


def _parse_xml(data: bytes) -> ET.Element:
    try:
        # entities first, for the precise reason; then no DTD at all (CAP has none)
        fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
        return fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except EntitiesForbidden as exc:
        if exc.sysid or exc.pubid:
            raise CapRefused(
                f"declares the external entity {exc.name!r} ({exc.sysid or exc.pubid}): "
                "external entities (XXE) are never read"
            ) from None
        raise CapRefused(
            f"declares the entity {exc.name!r}: entity declarations (an XML bomb's building "
            "block) are refused, never expanded"
        ) from None
    except ExternalReferenceForbidden as exc:
        raise CapRefused(
            f"refers to an external document ({exc.sysid or exc.pubid}): external DTDs and "
            "entities (XXE) are never read"
        ) from None
    except DTDForbidden as exc:
        named = f" ({exc.sysid or exc.pubid})" if exc.sysid or exc.pubid else ""
        raise CapRefused(
            f"declares a DTD{named}: CAP messages have none, and none is ever read"
        ) from None
    except ET.ParseError as exc:
        raise CapRefused(f"not well-formed XML: {exc}") from None


def _renamed(root: ET.Element, old: str, new: str) -> ET.Element:
    """A copy of the tree with elements of namespace `old` moved to `new`."""
    copy = ET.fromstring(ET.tostring(root))  # our own serialisation: no DTD, no entities
    for element in copy.iter():
        if element.tag.startswith(f"{{{old}}}"):
            element.tag = f"{{{new}}}" + element.tag[len(old) + 2 :]
    return copy


def _validate(root: ET.Element) -> None:
    error = next(iter(cap_schema().iter_errors(root)), None)
    if error is None:
        return
    where = error.path or "/alert"
    reason = _plain_path((error.reason or str(error)).strip().splitlines()[0])
    raise CapRefused(f"does not follow the CAP 1.2 schema at {_plain_path(where)}: {reason}")


def _plain_path(path: str) -> str:
    return re.sub(r"\{[^}]*\}|[a-z]+:(?=[A-Za-z])", "", path)


def _message(root: ET.Element, namespace: str) -> CapMessage:
    ns = {"c": namespace}

    def text(element: ET.Element, name: str, default: str = "") -> str:
        found = element.find(f"c:{name}", ns)
        return (found.text or "").strip() if found is not None else default

    sent = _time(text(root, "sent"), "sent")
    infos = []
    for index, info in enumerate(root.findall("c:info", ns)):
        where = f"info {index + 1}"
        effective_text = text(info, "effective")
        effective = _time(effective_text, f"{where} effective") if effective_text else sent
        onset_text = text(info, "onset")
        expires_text = text(info, "expires")
        infos.append(
            CapInfo(
                event=text(info, "event"),
                urgency=text(info, "urgency"),
                severity=text(info, "severity"),
                certainty=text(info, "certainty"),
                effective=effective,
                onset=_time(onset_text, f"{where} onset") if onset_text else effective,
                expires=_time(expires_text, f"{where} expires") if expires_text else None,
                sender_name=text(info, "senderName"),
                headline=text(info, "headline"),
                language=text(info, "language", "en-US"),
                areas=tuple(
                    _area(area, ns, f"{where} area {n + 1}")
                    for n, area in enumerate(info.findall("c:area", ns))
                ),
                parameters=tuple(
                    (text(p, "valueName"), text(p, "value"))
                    for p in info.findall("c:parameter", ns)
                ),
            )
        )
    return CapMessage(
        version=VERSIONS[namespace],
        identifier=text(root, "identifier"),
        sender=text(root, "sender"),
        sent=sent,
        status=text(root, "status"),
        msg_type=text(root, "msgType"),
        scope=text(root, "scope"),
        references=_references(text(root, "references")),
        infos=tuple(infos),
    )


def _time(value: str, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CapRefused(f"{what} {value!r} is not a date and time") from None
    if moment.tzinfo is None:
        raise CapRefused(f"{what} {value!r} has no UTC offset (CAP times carry one)")
    return moment


def _references(value: str) -> tuple[CapReference, ...]:
    out = []
    for entry in value.split():
        parts = entry.split(",")
        if len(parts) != 3 or not all(parts):
            raise CapRefused(f"references entry {entry!r} is not sender,identifier,sent")
        out.append(CapReference(*parts))
    return tuple(out)


def _area(area: ET.Element, ns: dict[str, str], where: str) -> CapArea:
    def texts(name: str) -> list[str]:
        return [(e.text or "").strip() for e in area.findall(f"c:{name}", ns)]

    desc = area.find("c:areaDesc", ns)
    return CapArea(
        description=(desc.text or "").strip() if desc is not None else "",
        polygons=tuple(_polygon(p, f"{where} polygon") for p in texts("polygon")),
        circles=tuple(_circle(c, f"{where} circle") for c in texts("circle")),
        geocodes=tuple(
            (
                (g.findtext("c:valueName", "", ns) or "").strip(),
                (g.findtext("c:value", "", ns) or "").strip(),
            )
            for g in area.findall("c:geocode", ns)
        ),
    )


def _point(text: str, where: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        lat, lon = (float(part) for part in parts)
    except ValueError:
        raise CapRefused(f"{where}: {text!r} is not a lat,lon pair") from None
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise CapRefused(f"{where}: {text!r} is not a WGS 84 latitude,longitude")
    return lat, lon


def _polygon(text: str, where: str) -> tuple[tuple[float, float], ...]:
    points = tuple(_point(pair, where) for pair in text.split())
    if len(points) < 4 or points[0] != points[-1]:
        raise CapRefused(
            f"{where}: a CAP polygon is at least four lat,lon points, the last equal to the first"
        )
    return points


def _circle(text: str, where: str) -> CapCircle:
    parts = text.split()
    if len(parts) != 2:
        raise CapRefused(f"{where}: {text!r} is not 'lat,lon radius_km'")
    lat, lon = _point(parts[0], where)
    try:
        radius = float(parts[1])
    except ValueError:
        raise CapRefused(f"{where}: radius {parts[1]!r} is not a number of kilometres") from None
    if not math.isfinite(radius) or radius < 0:
        raise CapRefused(f"{where}: radius {parts[1]!r} is not a number of kilometres")
    return CapCircle(lat, lon, radius)
