"""CAP 1.2 messages for alert transitions (OASIS Common Alerting Protocol).

Pure: every function here builds from the data it is given, reads no database
and no clock, so the same transition always gives the same bytes — a message
served after a restart is the message served before it. `dispatcher/web/cap.py`
derives the inputs from the alert rows and their audit events.

One message per transition of one alert (one zone, one hazard):

| transition                 | msgType | references                                      |
| -------------------------- | ------- | ----------------------------------------------- |
| new                        | Alert   | —                                               |
| upgraded / downgraded      | Update  | every earlier message of the episode            |
| continued (window changed) | Update  | every earlier message of the episode            |
| resolved                   | Cancel  | every message of the episode                    |

An episode is the chain of alert rows linked by `supersedes_id` (a level change
closes the old row and opens a new one that points back to it).

Identity, in the style of GB/T 35965.1-2018 (应急信息交互协议 第1部分：预警信息):

- `sender` is the issuing unit's code `ZZZZZZDDDUUUXX`: the county's GB/T 2260
  area code, the GB/T 4657 institution code `DDD`, the unit's internal code
  `UUU` and the extension `XX` (the standard's defaults `000` and `00`). The
  bureau's GB/T 4657 code is not known here, so `DDD` is `000` unless given —
  e.g. `14112500000000` for Liulin.
- `identifier` is `ZZZZZZDDDUUUXX_YYYYMMDDhhmmss_N`: the sender code, the
  transition time in the county's local time (Beijing time for Chinese
  counties), and `N`, the alert row's id. The standard's `N` is a single digit
  counting one unit's messages within one second; a poll issues dozens of
  messages in the same second, so the alert id (unique per message: an alert
  row opens once and closes once) takes its place and the identifier may be
  longer than the standard's 31 characters.
- `sent` and every other time carry the county's UTC offset and no fractional
  seconds (`2026-01-07T00:00:00+08:00`), as CAP requires.

Mapping from our levels (all documented choices, see `SEVERITY`, `response_types`,
`urgency`, `certainty`):

- severity: blue → Minor, yellow → Moderate, orange → Severe, red → Extreme
  (the colour order of GB/T 35965.1 and the CMA signals).
- urgency by onset against sent: already begun (or no onset) → Immediate, within
  the hour → Expected, later → Future; a Cancel is Past.
- certainty: begun → Observed, forecast → Likely; a Cancel is Observed (the
  condition is observed to be over).
- responseType per DOMAIN.md: blue → Monitor; yellow → Prepare, Avoid (keep away
  from gullies, slopes and cliffs); orange → Evacuate at high and very high risk
  points, Prepare, Avoid elsewhere; red → Evacuate; a Cancel → AllClear.
- category: Met and Geo (the hazard is meteorological, the risk geological).
- area: the zone's polygon when it has one, else a circle of `radius_km`
  (default 1 km) around the point, plus geocode valueName `GB/T 2260` with the
  county's area code.
- parameters, each valueName prefixed `yujing:`: level, rule, zone,
  previousLevel (for an Update), and one `yujing:evidence:<expression>` per
  number that decided the level. Never the alert's short code: it acknowledges
  the alert by SMS, and the feed is public.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from dispatcher.alerts.reconcile import TransitionKind
from dispatcher.county import County
from dispatcher.messages import local_time
from rules.types import Level

CAP_NAMESPACE = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_MEDIA_TYPE = "application/cap+xml"
LANGUAGE = "zh-CN"
CATEGORIES = ("Met", "Geo")
GEOCODE_NAME = "GB/T 2260"
PARAMETER_PREFIX = "yujing:"
DEFAULT_RADIUS_KM = 1.0
#: GB/T 4657 institution code of the issuing body; `000` when not configured.
DEFAULT_INSTITUTION = "000"

MSG_TYPES: Mapping[TransitionKind, str] = {
    TransitionKind.NEW: "Alert",
    TransitionKind.UPGRADED: "Update",
    TransitionKind.DOWNGRADED: "Update",
    TransitionKind.CONTINUED: "Update",
    TransitionKind.RESOLVED: "Cancel",
}

SEVERITY: Mapping[Level, str] = {
    Level.BLUE: "Minor",
    Level.YELLOW: "Moderate",
    Level.ORANGE: "Severe",
    Level.RED: "Extreme",
}

#: Zone risk levels (zones.yaml `risk`) at which an orange warning means evacuation.
EVACUATE_AT_ORANGE = frozenset({"high", "very_high"})

CANCEL_INSTRUCTION = "预警条件已结束，请继续做好巡查。"

_IDENTIFIER = re.compile(r"^(?P<sender>[0-9]{14})_(?P<time>[0-9]{14})_(?P<alert>[1-9][0-9]*)$")
_CODE_PART = re.compile(r"^[0-9]+$")


@dataclass(frozen=True)
class CapZone:
    """The area of a message: one hazard point, optionally with its outline."""

    id: str
    name: str
    township: str
    village: str
    latitude: float
    longitude: float
    risk: str
    polygon: tuple[tuple[float, float], ...] = ()  # (lat, lon) pairs, WGS 84


@dataclass(frozen=True)
class CapAlert:
    """An alert as it stood at one transition (a snapshot: it never changes later)."""

    id: int
    code: str
    hazard: str  # key, e.g. cold_wave
    hazard_name: str  # display name, e.g. 寒潮
    level: Level
    zone: CapZone
    onset: datetime | None = None
    until: datetime | None = None
    evidence: Mapping[str, float] = field(default_factory=dict)
    advice: str = ""
    rule_id: str = ""
    title: str = ""  # the rule's title, e.g. 寒潮预警信号
    previous_level: Level | None = None


@dataclass(frozen=True)
class MessageRef:
    """One entry of `references`: `sender,identifier,sent`."""

    sender: str
    identifier: str
    sent: str  # as written in the referenced message

    def __str__(self) -> str:
        return f"{self.sender},{self.identifier},{self.sent}"


@dataclass(frozen=True)
class CapMessage:
    """A built message with the header fields a feed needs without parsing it."""

    identifier: str
    sender: str
    sent: datetime
    msg_type: str
    headline: str
    xml: bytes

    @property
    def ref(self) -> MessageRef:
        return MessageRef(self.sender, self.identifier, cap_time(self.sent))


# --- identity


def sender_code(
    area_code: str,
    institution: str = DEFAULT_INSTITUTION,
    unit: str = "000",
    extension: str = "00",
) -> str:
    """The issuing unit's code `ZZZZZZDDDUUUXX` (GB/T 35965.1 A.1.2)."""
    for name, value, width in (
        ("area code", area_code, 6),
        ("institution code", institution, 3),
        ("unit code", unit, 3),
        ("extension", extension, 2),
    ):
        if len(value) != width or not _CODE_PART.match(value):
            raise ValueError(f"{name} {value!r} must be {width} digits")
    return f"{area_code}{institution}{unit}{extension}"


def cap_time(moment: datetime, timezone: str | None = None) -> str:
    """A CAP dateTime: whole seconds with the UTC offset, e.g. 2026-01-07T00:00:00+08:00.

    Without `timezone` the moment keeps its own offset (it must be aware).
    """
    if moment.tzinfo is None:
        raise ValueError("CAP times need an offset; pass an aware datetime")
    local = moment.astimezone(ZoneInfo(timezone)) if timezone else moment
    return local.replace(microsecond=0).isoformat()


def message_identifier(sender: str, alert_id: int, at: datetime, timezone: str) -> str:
    """`ZZZZZZDDDUUUXX_YYYYMMDDhhmmss_N`: sender code, local transition time, alert id."""
    if alert_id < 1:
        raise ValueError(f"alert id must be positive, got {alert_id}")
    local = at.astimezone(ZoneInfo(timezone))
    return f"{sender}_{local:%Y%m%d%H%M%S}_{alert_id}"


@dataclass(frozen=True)
class ParsedIdentifier:
    sender: str
    start: datetime  # the transition happened in [start, start + 1 s)
    alert_id: int


def parse_identifier(identifier: str, timezone: str) -> ParsedIdentifier | None:
    """The parts of one of our identifiers, or None when it is not one."""
    match = _IDENTIFIER.match(identifier)
    if match is None:
        return None
    try:
        naive = datetime.strptime(match["time"], "%Y%m%d%H%M%S")
    except ValueError:
        return None
    start = naive.replace(tzinfo=ZoneInfo(timezone))
    return ParsedIdentifier(match["sender"], start, int(match["alert"]))


def message_ref(sender: str, alert_id: int, at: datetime, timezone: str) -> MessageRef:
    """How a later message refers to the message of this alert's transition at `at`."""
    return MessageRef(
        sender, message_identifier(sender, alert_id, at, timezone), cap_time(at, timezone)
    )


# --- the mapping


def urgency(transition: TransitionKind, onset: datetime | None, sent: datetime) -> str:
    if transition is TransitionKind.RESOLVED:
        return "Past"
    if onset is None or onset <= sent:
        return "Immediate"
    return "Expected" if onset - sent <= timedelta(hours=1) else "Future"


def certainty(transition: TransitionKind, onset: datetime | None, sent: datetime) -> str:
    if transition is TransitionKind.RESOLVED or onset is None or onset <= sent:
        return "Observed"
    return "Likely"


def response_types(transition: TransitionKind, level: Level, zone_risk: str) -> tuple[str, ...]:
    if transition is TransitionKind.RESOLVED:
        return ("AllClear",)
    if level >= Level.RED:
        return ("Evacuate",)
    if level == Level.ORANGE:
        return ("Evacuate",) if zone_risk in EVACUATE_AT_ORANGE else ("Prepare", "Avoid")
    if level == Level.YELLOW:
        return ("Prepare", "Avoid")
    return ("Monitor",)


# --- the message


def cap_message(
    alert: CapAlert,
    transition: TransitionKind,
    county: County,
    sent: datetime,
    references: Sequence[MessageRef] = (),
    exercise: bool = False,
    *,
    sender: str | None = None,
    radius_km: float = DEFAULT_RADIUS_KM,
) -> bytes:
    """The CAP 1.2 XML (UTF-8) of one transition of one alert."""
    return build_message(
        alert,
        transition,
        county,
        sent,
        references,
        exercise,
        sender=sender,
        radius_km=radius_km,
    ).xml


def build_message(
    alert: CapAlert,
    transition: TransitionKind,
    county: County,
    sent: datetime,
    references: Sequence[MessageRef] = (),
    exercise: bool = False,
    *,
    sender: str | None = None,
    radius_km: float = DEFAULT_RADIUS_KM,
) -> CapMessage:
    """Like `cap_message`, with the header fields alongside the bytes.

    `sent` is the transition time; `references` are the earlier messages of the
    episode (required for an Update or a Cancel); `exercise` marks a drill.
    """
    msg_type = MSG_TYPES[transition]
    if msg_type != "Alert" and not references:
        raise ValueError(f"a {msg_type} must reference the earlier messages of its episode")
    if radius_km <= 0 or not math.isfinite(radius_km):
        raise ValueError(f"radius_km must be a positive number, got {radius_km}")
    tz = county.timezone
    sender = sender or sender_code(county.area_code)
    identifier = message_identifier(sender, alert.id, sent, tz)
    headline = _headline(alert, transition, county)

    root = _el("alert")
    _sub(root, "identifier", identifier)
    _sub(root, "sender", sender)
    _sub(root, "sent", cap_time(sent, tz))
    _sub(root, "status", "Exercise" if exercise else "Actual")
    _sub(root, "msgType", msg_type)
    _sub(root, "scope", "Public")
    if exercise:
        _sub(root, "note", "演练信息，非真实预警")
    if references:
        _sub(root, "references", " ".join(str(ref) for ref in references))

    info = _sub(root, "info")
    _sub(info, "language", LANGUAGE)
    for category in CATEGORIES:
        _sub(info, "category", category)
    _sub(info, "event", f"{alert.hazard_name}预警")
    for response in response_types(transition, alert.level, alert.zone.risk):
        _sub(info, "responseType", response)
    _sub(info, "urgency", urgency(transition, alert.onset, sent))
    _sub(info, "severity", SEVERITY[alert.level])
    _sub(info, "certainty", certainty(transition, alert.onset, sent))
    _pair(info, "eventCode", f"{PARAMETER_PREFIX}hazard", alert.hazard)
    _sub(info, "effective", cap_time(sent, tz))
    if transition is not TransitionKind.RESOLVED:
        if alert.onset is not None:
            _sub(info, "onset", cap_time(alert.onset, tz))
        if alert.until is not None:
            _sub(info, "expires", cap_time(alert.until, tz))
    _sub(info, "senderName", county.sender)
    _sub(info, "headline", headline)
    _sub(info, "description", _description(alert, transition, county, sent))
    instruction = (
        CANCEL_INSTRUCTION if transition is TransitionKind.RESOLVED else alert.advice.strip()
    )
    if instruction:
        _sub(info, "instruction", instruction)
    for name, value in _parameters(alert, transition):
        _pair(info, "parameter", name, value)

    area = _sub(info, "area")
    _sub(area, "areaDesc", area_description(alert.zone, county))
    if alert.zone.polygon:
        _sub(area, "polygon", polygon_text(alert.zone.polygon))
    else:
        lat, lon = _coordinate(alert.zone.latitude), _coordinate(alert.zone.longitude)
        _sub(area, "circle", f"{lat},{lon} {_number(radius_km)}")
    _pair(area, "geocode", GEOCODE_NAME, county.area_code)

    xml: bytes = ET.tostring(
        root, encoding="utf-8", xml_declaration=True, default_namespace=CAP_NAMESPACE
    )
    return CapMessage(identifier, sender, sent, msg_type, headline, xml)


def area_description(zone: CapZone, county: County) -> str:
    """`柳林县柳林镇龙门垣村，柳林镇城区龙门塔不稳定斜坡`: where, then the point's name."""
    return f"{county.name}{zone.township}{zone.village}，{zone.name}"


def polygon_text(points: Sequence[tuple[float, float]]) -> str:
    """CAP polygon: `lat,lon` pairs separated by spaces, first and last the same."""
    ring = list(points)
    if ring and ring[0] != ring[-1]:
        ring.append(ring[0])
    if len(set(ring)) < 3 or len(ring) < 4:
        raise ValueError("a polygon needs at least three distinct points")
    return " ".join(f"{_coordinate(lat)},{_coordinate(lon)}" for lat, lon in ring)


# --- texts


def _lead(alert: CapAlert, transition: TransitionKind, county: County) -> str:
    """What happened, e.g. 柳林县自然资源局将道路结冰预警升级为橙色."""
    sender, hazard, level = county.sender, alert.hazard_name, alert.level.zh
    return {
        TransitionKind.NEW: f"{sender}发布{hazard}{level}预警",
        TransitionKind.UPGRADED: f"{sender}将{hazard}预警升级为{level}",
        TransitionKind.DOWNGRADED: f"{sender}将{hazard}预警降为{level}",
        TransitionKind.CONTINUED: f"{sender}更新{hazard}{level}预警",
        TransitionKind.RESOLVED: f"{sender}解除{hazard}{level}预警",
    }[transition]


def _headline(alert: CapAlert, transition: TransitionKind, county: County) -> str:
    return f"{_lead(alert, transition, county)}：{alert.zone.name}"


def _description(
    alert: CapAlert, transition: TransitionKind, county: County, sent: datetime
) -> str:
    text = f"{_lead(alert, transition, county)}。{area_description(alert.zone, county)}："
    if transition is TransitionKind.RESOLVED:
        return text + "预警条件已结束。"
    if alert.onset is None or alert.onset <= sent:
        text += "已出现并可能持续"
    else:
        text += f"预计{local_time(alert.onset, county.timezone)}起"
    if alert.until is not None and alert.until > sent:
        text += f"，至{local_time(alert.until, county.timezone)}"
    text += "。"
    if alert.title:
        text += f"依据：{alert.title}"
        text += f"（{alert.rule_id}）。" if alert.rule_id else "。"
    if alert.evidence:
        facts = "；".join(f"{name} = {_number(value)}" for name, value in alert.evidence.items())
        text += f"判据：{facts}。"
    return text


def _parameters(alert: CapAlert, transition: TransitionKind) -> list[tuple[str, str]]:
    p = PARAMETER_PREFIX
    # never the alert's short code: it acknowledges by SMS, and the feed is public
    out = [(f"{p}level", alert.level.key)]
    if alert.previous_level is not None and transition in (
        TransitionKind.UPGRADED,
        TransitionKind.DOWNGRADED,
    ):
        out.append((f"{p}previousLevel", alert.previous_level.key))
    if alert.rule_id:
        out.append((f"{p}rule", alert.rule_id))
    out.append((f"{p}zone", alert.zone.id))
    out.extend((f"{p}evidence:{name}", _number(value)) for name, value in alert.evidence.items())
    return out


# --- XML helpers


def _el(tag: str) -> ET.Element:
    return ET.Element(f"{{{CAP_NAMESPACE}}}{tag}")


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    child = ET.SubElement(parent, f"{{{CAP_NAMESPACE}}}{tag}")
    if text is not None:
        child.text = text
    return child


def _pair(parent: ET.Element, tag: str, name: str, value: str) -> None:
    element = _sub(parent, tag)
    _sub(element, "valueName", name)
    _sub(element, "value", value)


def _number(value: float) -> str:
    """Up to two decimals, no trailing zeros: 12.5, -3, 0.25."""
    if not math.isfinite(value):
        return str(value)
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _coordinate(value: float) -> str:
    """WGS 84 degrees to six decimals (about 0.1 m), no trailing zeros."""
    if not math.isfinite(value):
        raise ValueError(f"coordinate must be a finite number, got {value}")
    return f"{value:.6f}".rstrip("0").rstrip(".")


__all__ = [
    "CAP_MEDIA_TYPE",
    "CAP_NAMESPACE",
    "GEOCODE_NAME",
    "SEVERITY",
    "CapAlert",
    "CapMessage",
    "CapZone",
    "MessageRef",
    "ParsedIdentifier",
    "build_message",
    "cap_message",
    "cap_time",
    "message_identifier",
    "message_ref",
    "parse_identifier",
    "sender_code",
]
