# Long module: county, people and zones files are read and cross-checked as one
"""The county configuration: county.yaml, people.yaml and zones.yaml (docs/config.md).

county.yaml may also name the messaging-app groups the bureau posts to
(`groups:`, each a robot of one IM/webhook channel) and each township's group
(`townships:`), and who signs the information report (`report:` 报送单位,
签发人, 联系电话); people.yaml may give a person's per-platform ids (`im:`) for
@-mentions in those groups.

`load_county` reads the three files, validates each entry on its own (one bad
zone does not hide the problems of the others), then checks what only the files
together can tell: duplicate ids, person ids that do not exist, zones without a
disaster-prevention person, a bureau without a duty officer. Every problem of
every file is reported at once, each at its file:line:column, in one
`ConfigError` — the administrator fixes them in one pass.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from channels.base import Addressing
from channels.registry import DECLARATIONS
from rules.config import (
    ConfigError,
    Document,
    Problem,
    Strict,
    load_yaml,
    problems_from_validation,
)
from rules.schema import EXPOSURE_TAGS, RISK_LEVELS, ZONE_KINDS  # shared with rule selectors
from rules.types import ZoneSpec

#: Zone roles, in the order people are listed and notified, with their Chinese labels.
ROLE_LABELS: Mapping[str, str] = {
    "disaster_prevention": "防灾责任人",
    "monitoring": "监测责任人",
    "technical": "技术负责人",
    "mass_monitor": "群测群防员",
}

#: The bureau's duty roles (`duty_role` in people.yaml) with their Chinese labels.
DUTY_ROLE_LABELS: Mapping[str, str] = {
    "duty_officer": "值班员",
    "leader_on_duty": "带班领导",
    "administrator": "系统管理员",  # edits rules and configuration; told when rules are refused
}


#: The channels a county.yaml group may post through: messaging-app robots and
#: webhook targets (what their channel addresses by name, not by phone).
GROUP_CHANNELS: tuple[str, ...] = tuple(
    name
    for name, d in DECLARATIONS.items()
    if d.addressing in (Addressing.ROBOT, Addressing.TARGET)
)

#: The platforms a person's `im:` ids are for, each as its channel @-mentions:
#: WeCom a userid or mobile, DingTalk a mobile, Feishu an open_id (channels/*.py).
IM_PLATFORMS: tuple[str, ...] = tuple(
    name for name, d in DECLARATIONS.items() if d.addressing is Addressing.ROBOT
)


# China's extent with a margin: a coordinate outside it is a typo (or swapped),
# not a hazard point of a Chinese county.
LATITUDE_RANGE = (3.0, 54.0)
LONGITUDE_RANGE = (73.0, 136.0)

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_AREA_CODE = re.compile(r"^[0-9]{6}$")
# an office line as printed on a report: 0358-4000000, +86-358-4000000, 12345
_OFFICE_PHONE = re.compile(r"^\+?[0-9]+(?:-[0-9]+)*$")


# --- field checks (each raises ValueError with the message the administrator sees)


def _one_of(what: str, allowed: tuple[str, ...]) -> Any:
    def check(value: str) -> str:
        if value not in allowed:
            hint = difflib.get_close_matches(value, allowed, n=1)
            guess = f"did you mean {hint[0]!r}? " if hint else ""
            raise ValueError(
                f"unknown {what} {value!r}; {guess}expected one of: {', '.join(allowed)}"
            )
        return value

    return AfterValidator(check)


def _check_id(value: str) -> str:
    if not _ID.match(value):
        raise ValueError(
            f"{value!r} is not a valid id; use letters, digits, '-' and '_' (e.g. LL-MC-001)"
        )
    return value


def _quoted(example: str) -> Any:
    # An unquoted +8617000000101 or 141125 reaches us as a number; say how to fix it
    # rather than pydantic's "Input should be a valid string".
    def check(value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(f'write it as a quoted string, e.g. "{example}"')
        return value

    return BeforeValidator(check)


def _check_phone(value: str) -> str:
    if not _E164.match(value):
        raise ValueError(
            f"{value!r} is not an E.164 phone number; write '+', the country code and the "
            'number without spaces, e.g. "+8617000000101"'
        )
    return value


def _check_area_code(value: str) -> str:
    if not _AREA_CODE.match(value):
        raise ValueError(
            f'{value!r} is not a GB/T 2260 area code; expected six digits, e.g. "141125"'
        )
    return value


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r}; expected an IANA name such as Asia/Shanghai"
        ) from None
    return value


def _check_office_phone(value: str) -> str:
    digits = sum(c.isdigit() for c in value)
    if not _OFFICE_PHONE.match(value) or not 5 <= digits <= 20:
        raise ValueError(
            f"{value!r} is not a phone number; write digits with an optional leading '+' "
            'and hyphens between groups, quoted, e.g. "0358-4000000"'
        )
    return value


Id = Annotated[str, AfterValidator(_check_id)]
Text = Annotated[str, Field(min_length=1)]
Kind = Annotated[str, _one_of("kind", ZONE_KINDS)]
Risk = Annotated[str, _one_of("risk level", RISK_LEVELS)]
Role = Annotated[str, _one_of("role", tuple(ROLE_LABELS))]
DutyRole = Annotated[str, _one_of("duty_role", tuple(DUTY_ROLE_LABELS))]
Phone = Annotated[str, _quoted("+8617000000101"), AfterValidator(_check_phone)]
AreaCode = Annotated[str, _quoted("141125"), AfterValidator(_check_area_code)]
TimeZone = Annotated[str, AfterValidator(_check_timezone)]
OfficePhone = Annotated[str, _quoted("0358-4000000"), AfterValidator(_check_office_phone)]


# --- the YAML shapes


class CountyConfig(Strict):
    """`county:` of county.yaml."""

    name: Text
    area_code: AreaCode
    sender: Text
    timezone: TimeZone = "Asia/Shanghai"


class ReportConfig(Strict):
    """`report:` of county.yaml: who sends and signs the information report (信息报送)."""

    unit: Text  # 报送单位
    signer: Text  # 签发人
    phone: OfficePhone  # 联系电话: the office's line, printed in full


class ImIds(Strict):
    """`im:` of a person: whom a group post @-mentions on each platform."""

    wecom: Annotated[str, _quoted("13800000000"), Field(min_length=1)] | None = None
    dingtalk: Annotated[str, _quoted("13800000000"), Field(min_length=1)] | None = None
    feishu: Annotated[str, Field(min_length=1)] | None = None

    def on(self, platform: str) -> str | None:
        """The id on `platform` (a channel name), None when the person has none there."""
        value = getattr(self, platform, None) if platform in IM_PLATFORMS else None
        return value if isinstance(value, str) else None


class PersonConfig(Strict):
    """One entry of people.yaml."""

    id: Id
    name: Text
    phone: Phone
    duty_role: DutyRole | None = None
    im: ImIds = ImIds()


class GroupConfig(Strict):
    """One entry of county.yaml `groups:`: a robot (its key) of one channel, and its name.

    The key is the robot's name in the channel's secret map
    (YUJING_<CHANNEL>_ROBOTS / _BOTS / _TARGETS); `name` is what people read.
    """

    channel: Annotated[str, _one_of("group channel", GROUP_CHANNELS)]
    name: Text


class Location(Strict):
    """`location: {lat, lon}` of a zone, WGS 84 degrees."""

    lat: Annotated[float, Field(strict=True)]  # strict: a quoted "37.4" is a typo, not a number
    lon: Annotated[float, Field(strict=True)]

    @model_validator(mode="before")
    @classmethod
    def _not_swapped(cls, data: Any) -> Any:
        # Checked on the pair: a swap is the common mistake and deserves its own message.
        if isinstance(data, Mapping):
            lat, lon = data.get("lat"), data.get("lon")
            if _number(lat) and _number(lon) and _plausible(lon, lat) and not _plausible(lat, lon):
                raise ValueError(
                    f"lat {lat} and lon {lon} look swapped; write {{lat: {lon}, lon: {lat}}}"
                )
        return data

    @field_validator("lat")
    @classmethod
    def _latitude(cls, value: float) -> float:
        low, high = LATITUDE_RANGE
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(
                f"latitude {value} is outside the plausible range {low}..{high} (degrees north)"
            )
        return value

    @field_validator("lon")
    @classmethod
    def _longitude(cls, value: float) -> float:
        low, high = LONGITUDE_RANGE
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(
                f"longitude {value} is outside the plausible range {low}..{high} (degrees east)"
            )
        return value


class Threatened(Strict):
    """`threatened:` of a zone: what a failure would hit."""

    households: int | None = Field(default=None, ge=0, strict=True)
    people: int | None = Field(default=None, ge=0, strict=True)


class ZoneConfig(Strict):
    """One entry of zones.yaml: a geohazard point with its people by role."""

    id: Id
    name: Text
    kind: Kind
    township: Text
    village: str = ""
    location: Location
    risk: Risk
    # Values are checked by the loader (`_check_tags`) so the message can name the
    # tag rather than its list index; see EXPOSURE_TAGS.
    tags: tuple[str, ...] = ()
    threatened: Threatened | None = None
    people: dict[Role, list[str]] = Field(default_factory=dict)

    @property
    def latitude(self) -> float:
        return self.location.lat

    @property
    def longitude(self) -> float:
        return self.location.lon


class _CountyFile(Strict):
    county: dict[str, Any]
    groups: dict[str, Any] = Field(default_factory=dict)
    townships: dict[str, Any] = Field(default_factory=dict)
    township_codes: dict[str, Any] = Field(default_factory=dict)
    report: Any = None


class _Audiences(Strict):
    """`groups:` and `townships:` of county.yaml (group key → group, township → group key)."""

    groups: dict[Id, GroupConfig] = Field(default_factory=dict)
    townships: dict[str, str] = Field(default_factory=dict)


class _PeopleFile(Strict):
    people: list[Any]


class _ZonesFile(Strict):
    zones: list[Any]


# --- the loaded county


@dataclass(frozen=True)
class County:
    """A county's configuration, checked: every id unique, every reference resolved."""

    name: str
    area_code: str
    sender: str
    timezone: str
    people: dict[str, PersonConfig]
    zones: list[ZoneConfig]
    groups: Mapping[str, GroupConfig] = field(default_factory=dict)
    townships: Mapping[str, str] = field(default_factory=dict)  # township → group key
    report: ReportConfig | None = None  # county.yaml `report:`; None when not written
    # township → its 9-digit GB/T 2260 + GB/T 10114 code (county.yaml `township_codes:`),
    # for official warnings addressed to a township (docs/feeds.md)
    township_codes: Mapping[str, str] = field(default_factory=dict)
    # routing looks zones up once per transition: keep that O(1) for large counties
    _by_id: dict[str, ZoneConfig] = field(init=False, repr=False, compare=False)
    # zone id → `people_of` it, as first asked: every message of a zone's alerts asks
    _people_of: dict[str, tuple[tuple[str, PersonConfig], ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {zone.id: zone for zone in self.zones})
        object.__setattr__(self, "_people_of", {})

    def duty_officers(self) -> list[PersonConfig]:
        """The bureau's duty officers (值班员), in file order."""
        return [p for p in self.people.values() if p.duty_role == "duty_officer"]

    def leaders_on_duty(self) -> list[PersonConfig]:
        """The bureau's leaders on duty (带班领导), in file order."""
        return [p for p in self.people.values() if p.duty_role == "leader_on_duty"]

    def administrators(self) -> list[PersonConfig]:
        """The system's administrators (系统管理员), in file order."""
        return [p for p in self.people.values() if p.duty_role == "administrator"]

    def zone(self, zone_id: str) -> ZoneConfig:
        """The zone with this id; KeyError naming it when there is none."""
        try:
            return self._by_id[zone_id]
        except KeyError:
            raise KeyError(f"no zone {zone_id!r} in the county configuration") from None

    def people_of(self, zone_id: str) -> tuple[tuple[str, PersonConfig], ...]:
        """(role, person) of a zone in ROLE_LABELS order, then file order within a role.

        A person who holds two roles at the zone appears once per role; a person
        listed twice under one role appears once.
        """
        known = self._people_of.get(zone_id)
        if known is None:
            zone = self.zone(zone_id)
            known = self._people_of[zone_id] = tuple(
                (role, self.people[person_id])
                for role in ROLE_LABELS
                for person_id in dict.fromkeys(zone.people.get(role, ()))
            )
        return known

    def township_group(self, township: str) -> str | None:
        """The key of the township's group (county.yaml `townships:`), or None."""
        return self.townships.get(township)

    def zone_specs(self, point_of: Mapping[str, str]) -> list[ZoneSpec]:
        """What the rule engine needs of each zone; `point_of` maps zone id → forecast point id."""
        missing = [zone.id for zone in self.zones if zone.id not in point_of]
        if missing:
            raise ValueError(f"no forecast point assigned to zone(s) {', '.join(missing)}")
        tags: dict[tuple[str, ...], frozenset[str]] = {}  # a few dozen sets for all the zones
        return [
            ZoneSpec(
                id=zone.id,
                name=zone.name,
                kind=zone.kind,
                township=zone.township,
                risk_level=zone.risk,
                tags=tags.get(zone.tags) or tags.setdefault(zone.tags, frozenset(zone.tags)),
                latitude=zone.latitude,
                longitude=zone.longitude,
                point_id=point_of[zone.id],
                village=zone.village,
            )
            for zone in self.zones
        ]


# --- loading


def load_county(config_dir: Path) -> County:
    """Read county.yaml, people.yaml and zones.yaml of `config_dir`.

    Raises ConfigError listing every problem of the three files (file:line:column,
    what is wrong, what was expected).
    """
    problems: list[Problem] = []
    county, audiences, county_doc = _load_county_section(config_dir / "county.yaml", problems)
    report = _load_report_section(county_doc, problems) if county_doc is not None else None
    people = _load_list(config_dir / "people.yaml", _PeopleFile, PersonConfig, problems)
    zones = _load_list(config_dir / "zones.yaml", _ZonesFile, ZoneConfig, problems)

    if people.doc is not None:
        problems.extend(_check_duty(people))
    if zones.doc is not None:
        problems.extend(_check_tags(zones.doc, zones.raw))
        # Without a readable people.yaml every reference would look unknown: skip
        # the check rather than bury the real problem under dozens of false ones.
        known = people.written_ids if people.doc is not None else None
        problems.extend(_check_zone_people(zones.doc, zones.raw, known))
    if county_doc is not None and audiences is not None and zones.doc is not None:
        problems.extend(_check_townships(county_doc, audiences, zones.raw))
    codes: dict[str, str] = {}
    if county_doc is not None and county is not None and zones.doc is not None:
        codes = _township_codes(county_doc, county.area_code, zones.raw, problems)

    if problems:
        raise ConfigError(problems)
    assert county is not None  # no problems means every file loaded
    return County(
        name=county.name,
        area_code=county.area_code,
        sender=county.sender,
        timezone=county.timezone,
        people={person.id: person for _, person in people.valid},
        zones=[zone for _, zone in zones.valid],
        groups=dict(audiences.groups) if audiences else {},
        townships=dict(audiences.townships) if audiences else {},
        report=report,
        township_codes=codes,
    )


E = TypeVar("E", PersonConfig, ZoneConfig)


@dataclass
class _Loaded(Generic[E]):
    """One list file: its document (None if unreadable) and its entries."""

    doc: Document | None
    raw: list[Any]
    valid: list[tuple[int, E]]  # (index in the file, entry); first of each id only

    @property
    def written_ids(self) -> set[str]:
        # An entry with a bad phone still has its id: references to it are not "unknown".
        return {
            item["id"]
            for item in self.raw
            if isinstance(item, dict) and isinstance(item.get("id"), str)
        }


def _read(path: Path, problems: list[Problem]) -> Document | None:
    try:
        return load_yaml(path)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None


def _top(doc: Document, model: type[BaseModel], key: str, problems: list[Problem]) -> Any:
    """The value under the file's one top-level key, or None after a problem."""
    if not isinstance(doc.data, dict):
        what = "empty" if doc.data is None else f"a {type(doc.data).__name__}"
        problems.append(
            doc.problem((), f"the file is {what}; expected a mapping with the top-level key {key}:")
        )
        return None
    try:
        model.model_validate(doc.data)
    except ValidationError as exc:
        problems.extend(problems_from_validation(doc, exc))
        return None
    return doc.data[key]


def _load_county_section(
    path: Path, problems: list[Problem]
) -> tuple[CountyConfig | None, _Audiences | None, Document | None]:
    """`county:` and the audiences (`groups:`, `townships:`) of county.yaml."""
    doc = _read(path, problems)
    if doc is None:
        return None, None, None
    section = _top(doc, _CountyFile, "county", problems)
    if section is None:
        return None, None, None
    county: CountyConfig | None = None
    try:
        county = CountyConfig.model_validate(section)
    except ValidationError as exc:
        problems.extend(problems_from_validation(doc, exc, ("county",)))
    assert isinstance(doc.data, dict)  # _top checked the shape
    audiences: _Audiences | None = None
    try:
        audiences = _Audiences.model_validate(
            {key: doc.data[key] for key in ("groups", "townships") if key in doc.data}
        )
    except ValidationError as exc:
        problems.extend(problems_from_validation(doc, exc))
    return county, audiences, doc


def _load_report_section(doc: Document, problems: list[Problem]) -> ReportConfig | None:
    """`report:` of county.yaml (optional): 报送单位, 签发人, 联系电话 of the report."""
    section = doc.data.get("report") if isinstance(doc.data, dict) else None
    if section is None:
        return None
    if not isinstance(section, dict):
        problems.append(
            doc.problem(
                ("report",),
                "report: expected a mapping, e.g. "
                '{unit: 柳林县自然资源局, signer: 张三, phone: "0358-4000000"}',
            )
        )
        return None
    try:
        return ReportConfig.model_validate(section)
    except ValidationError as exc:
        problems.extend(problems_from_validation(doc, exc, ("report",)))
        return None


def _township_codes(
    doc: Document, area_code: str, zones: list[Any], problems: list[Problem]
) -> dict[str, str]:
    """`township_codes:` of county.yaml (optional): township → its 9-digit code."""
    section = doc.data.get("township_codes") if isinstance(doc.data, dict) else None
    if not section:
        return {}
    known = {
        z["township"] for z in zones if isinstance(z, dict) and isinstance(z.get("township"), str)
    }
    codes: dict[str, str] = {}
    for township, code in section.items():
        where = ("township_codes", township)
        if township not in known:
            problems.append(
                doc.problem(where, f"no zone in zones.yaml is in township {township!r}")
            )
        elif not (isinstance(code, str) and len(code) == 9 and code.isdigit()) or not (
            code.startswith(area_code)
        ):
            problems.append(
                doc.problem(
                    where,
                    f"{code!r} is not a township code of county {area_code}; expected nine "
                    f'digits, quoted, starting with the county\'s code, e.g. "{area_code}100"',
                )
            )
        else:
            codes[township] = code
    return codes


def _check_townships(doc: Document, audiences: _Audiences, zones: list[Any]) -> Iterator[Problem]:
    """Every township of `townships:` has a zone and names a group of `groups:`."""
    known = sorted(
        {z["township"] for z in zones if isinstance(z, dict) and isinstance(z.get("township"), str)}
    )
    groups = sorted(audiences.groups)
    for township, group in audiences.townships.items():
        if township not in known:
            hint = difflib.get_close_matches(township, known, n=1)
            guess = f"did you mean {hint[0]!r}? " if hint else ""
            yield doc.problem(
                ("townships", township),
                f"no zone in zones.yaml is in township {township!r}; {guess}"
                "townships: maps the townships of zones.yaml to their group",
            )
        if group not in audiences.groups:
            yield doc.problem(("townships", township), unknown_group_message(group, groups))


def unknown_group_message(name: str, groups: list[str], *, township: bool = False) -> str:
    """The message for a group name that county.yaml `groups:` does not have.

    With `township`, the name was an escalation step's `im:` entry, which may
    also be the word township (the zone's township's group).
    """
    choices = [*(["township"] if township else []), *groups]
    hint = difflib.get_close_matches(name, choices, n=1)
    guess = f"did you mean {hint[0]!r}? " if hint else ""
    takes = "im: takes 'township' or a group; " if township else ""
    known = ", ".join(groups) if groups else "none yet"
    return (
        f"unknown group {name!r}; {guess}{takes}groups are the keys of county.yaml groups: "
        f"({known}), each {{channel: wecom|dingtalk|feishu|webhook, name: …}}"
    )


def _load_list(
    path: Path, file_model: type[BaseModel], model: type[E], problems: list[Problem]
) -> _Loaded[E]:
    """Read a file holding one list (its only key), validating each entry on its own."""
    key = next(iter(file_model.model_fields))
    doc = _read(path, problems)
    if doc is None:
        return _Loaded(None, [], [])
    items = _top(doc, file_model, key, problems)
    if items is None:
        return _Loaded(None, [], [])
    # Duplicates are found among the ids as written, so an entry that also has
    # another error still counts and is not mistaken for the first of its id.
    what = "person" if key == "people" else "zone"
    first: dict[str, int] = {}
    duplicate: set[int] = set()
    for index, item in enumerate(items):
        entry_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(entry_id, str):
            continue
        if entry_id in first:
            duplicate.add(index)
            line, _ = doc.where((key, first[entry_id], "id"))
            problems.append(
                doc.problem(
                    (key, index, "id"),
                    f"duplicate {what} id {entry_id!r}; first used at line {line}; "
                    "ids must be unique",
                )
            )
        else:
            first[entry_id] = index
    entries = []
    for index, item in enumerate(items):
        try:
            entries.append((index, model.model_validate(item)))
        except ValidationError as exc:
            problems.extend(problems_from_validation(doc, exc, (key, index)))
    valid: list[tuple[int, E]] = []
    shared: dict[tuple[str, ...], set[str]] = {}
    nested = [name for name in _NESTED if name in model.model_fields]
    texts: dict[Any, Any] = {}
    for index, entry in entries:
        if index not in duplicate:
            _share_fields_set(entry, shared)
            for name in nested:
                if (inner := entry.__dict__[name]) is not None:
                    _share_fields_set(inner, shared)
            if isinstance(entry, ZoneConfig):
                _share_texts(entry, texts)
            valid.append((index, entry))
    return _Loaded(doc, items, valid)


# the fields of a zone that take few values over a province (its tags a few dozen sets)
_FEW_VALUES = ("kind", "risk", "township", "village", "tags")


def _share_texts(zone: ZoneConfig, texts: dict[Any, Any]) -> None:
    """Make `zone` hold one object for each value that many zones repeat (its kind,
    township, tags …, and the ids of its people), an equal one: a province's
    30,000 zones held 15 MiB of copies. The model is frozen, its values are
    never changed: only which equal string or tuple it refers to."""
    values = zone.__dict__
    for name in _FEW_VALUES:
        value = values[name]
        values[name] = texts.setdefault(value, value)
    for held in zone.people.values():
        held[:] = [texts.setdefault(person_id, person_id) for person_id in held]


# the fields of PersonConfig and ZoneConfig that hold a model
_NESTED = ("im", "location", "threatened")


def _share_fields_set(entry: BaseModel, shared: dict[tuple[str, ...], set[str]]) -> None:
    """Make `entry` hold one set of the names of its fields written, shared by every
    entry that wrote the same fields.

    pydantic keeps a set per model instance (`model_fields_set`): 0.2 to 0.7 kB
    each, a quarter of what a province's 30,000 zones and 90,000 people held in
    memory. The models are frozen, so the set is never changed in place (a
    copy gets its own).
    """
    names = entry.__pydantic_fields_set__
    # keyed by the set's order, cheaper than hashing it: equal tuples are equal sets
    # (an equal set in another order only makes a second shared one)
    one = shared.setdefault(tuple(names), names)
    if one is not names:
        object.__setattr__(entry, "__pydantic_fields_set__", one)


def _check_duty(people: _Loaded[PersonConfig]) -> Iterator[Problem]:
    assert people.doc is not None
    # An officer whose entry has another error is still an officer: no second complaint.
    written = any(isinstance(i, dict) and i.get("duty_role") == "duty_officer" for i in people.raw)
    if not written:
        yield people.doc.problem(
            ("people",),
            "no duty officer: give at least one person 'duty_role: duty_officer' (值班员); "
            "system alerts and every zone warning go to the duty officers",
        )


def _check_tags(doc: Document, items: list[Any]) -> Iterator[Problem]:
    for index, item in enumerate(items):
        tags = item.get("tags") if isinstance(item, dict) else None
        if not isinstance(tags, list):
            continue  # absent, or a structural error the model reports
        for position, tag in enumerate(tags):
            if isinstance(tag, str) and tag not in EXPOSURE_TAGS:
                hint = difflib.get_close_matches(tag, EXPOSURE_TAGS, n=1)
                guess = f"did you mean {hint[0]!r}? " if hint else ""
                yield doc.problem(
                    ("zones", index, "tags", position),
                    f"unknown exposure tag {tag!r}; {guess}expected one of: "
                    f"{', '.join(EXPOSURE_TAGS)}",
                )


def _check_zone_people(
    doc: Document, items: list[Any], known: set[str] | None
) -> Iterator[Problem]:
    """Every zone has a disaster-prevention person; every person id exists (`known`).

    Works on the entries as written, so a zone with another error (a bad kind, say)
    still has its people checked in the same pass.
    """
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        zone_id = item.get("id") if isinstance(item.get("id"), str) else f"#{index + 1}"
        people = item.get("people")
        if people is not None and not isinstance(people, dict):
            continue  # the model reports the shape
        if not (people or {}).get("disaster_prevention"):
            where = ("zones", index, "people") if people else ("zones", index)
            yield doc.problem(
                where,
                f"zone {zone_id} has no disaster_prevention person (防灾责任人); add "
                "'disaster_prevention: [person-id]' under its people:",
            )
        if known is None or not people:
            continue
        for role, person_ids in people.items():
            if role not in ROLE_LABELS or not isinstance(person_ids, list):
                continue  # the model reports unknown roles and non-lists
            for position, person_id in enumerate(person_ids):
                if not isinstance(person_id, str) or person_id in known:
                    continue
                hint = difflib.get_close_matches(person_id, sorted(known), n=1, cutoff=0.6)
                guess = f"; did you mean {hint[0]!r}?" if hint else ""
                yield doc.problem(
                    ("zones", index, "people", role, position),
                    f"zone {zone_id}, role {role} ({ROLE_LABELS[role]}): unknown person "
                    f"{person_id!r}, not in people.yaml{guess}",
                )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _plausible(lat: Any, lon: Any) -> bool:
    return bool(
        LATITUDE_RANGE[0] <= lat <= LATITUDE_RANGE[1]
        and LONGITUDE_RANGE[0] <= lon <= LONGITUDE_RANGE[1]
    )
