"""Events for the console's tests, built as rows (until the event pipeline is on main).

An event is an alert of kind event; its zone alerts point to it (`event_id`).
`add_event` makes one with a few zones; `big_county` fills a database with
thousands of zones, people and open alerts in bulk (a county in a cold wave
on a bad night), for the board's paging and refresh measurements. Swap these
for the real pipeline once it makes events.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.alerts.lifecycle import CODE_ALPHABET
from dispatcher.storage.models import Alert, EscalationTimer, Person, Zone, ZoneRole

COLD_EVIDENCE = {
    "drop(daily_min(temperature_2m), 24h)": 12.1,
    "daily_min(temperature_2m)": -6.3,
    "max(beaufort(wind_speed_10m), 24h)": 6.0,
}

#: what decided each hazard's zone alerts in the big county (shown in words)
EVIDENCE = {
    "cold_wave": COLD_EVIDENCE,
    "blizzard": {"sum(snowfall, 12h)": 4.6, "snowfall": 0.8},
    "road_icing": {"soil_temperature_0cm": -2.1, "precipitation": 0.4},
    "fog": {"visibility": 180.0},
    "freezing_rain": {"precipitation": 1.2, "temperature_2m": -1.5},
    "frost": {"soil_temperature_0cm": -3.4},
    "freeze_thaw": {"freeze_thaw(soil_temperature_0cm, 72h)": 3.0},
}

#: (hazard key, name, rule id) of the big county's events
HAZARDS: Sequence[tuple[str, str, str]] = (
    ("cold_wave", "寒潮", "cma-cold-wave"),
    ("blizzard", "暴雪", "cma-blizzard"),
    ("road_icing", "道路结冰", "cma-road-icing"),
    ("fog", "大雾", "cma-fog"),
    ("freezing_rain", "冻雨", "eng-freezing-rain"),
    ("frost", "霜冻", "cma-frost"),
    ("freeze_thaw", "冻融", "eng-freeze-thaw"),
)
LEVELS = ("orange", "yellow", "yellow", "blue", "orange", "blue", "yellow")
GIVEN = ("建国", "志强", "秀英", "桂兰", "海涛", "玉梅", "国庆", "红霞", "德明", "春生", "丽娟")
TOWNSHIPS = (
    "柳林镇", "穆村镇", "薛村镇", "庄上镇", "留誉镇", "三交镇",
    "成家庄镇", "高家沟乡", "李家湾乡", "贾家垣乡", "陈家湾乡", "金家庄乡",
)  # fmt: skip


def codes(skip: Sequence[str] = ()) -> Iterator[str]:
    """Distinct 4-character codes in the alert alphabet, in a scrambled order."""
    avoid = set(skip)
    for letters in itertools.product(CODE_ALPHABET, repeat=4):
        code = "".join((letters[2], letters[0], letters[3], letters[1]))
        if code not in avoid:
            yield code


@dataclass(frozen=True)
class Made:
    event_id: int
    event_code: str
    zone_codes: list[str]


def add_event(
    sessions: sessionmaker[Session],
    code: str,
    zones: Sequence[tuple[str, str, str]],  # (zone alert code, zone id, level)
    *,
    hazard: str = "cold_wave",
    title: str = "寒潮",
    rule_id: str = "cma-cold-wave",
    level: str | None = None,
    opened: datetime,
    state: str = "firing",
    deadline: datetime | None = None,
) -> Made:
    """An event with one firing zone alert per (code, zone, level); deadlines on the zones."""
    top = level or max((z[2] for z in zones), key=("blue", "yellow", "orange", "red").index)
    with sessions.begin() as db:
        event = Alert(
            code=code,
            kind="event",
            zone_id=None,
            hazard=hazard,
            rule_id=rule_id,
            title=title,
            level=top,
            state=state,
            onset=opened,
            until=opened + timedelta(hours=24),
            evidence={},
            opened_at=opened,
            updated_at=opened,
        )
        db.add(event)
        db.flush()
        for zone_code, zone_id, zone_level in zones:
            alert = Alert(
                code=zone_code,
                kind="hazard",
                zone_id=zone_id,
                hazard=hazard,
                rule_id=rule_id,
                title=title,
                level=zone_level,
                state="firing",
                onset=opened,
                until=opened + timedelta(hours=24),
                evidence=dict(COLD_EVIDENCE),
                opened_at=opened,
                updated_at=opened,
                event_id=event.id,
            )
            db.add(alert)
            db.flush()
            if deadline is not None:
                db.add(
                    EscalationTimer(
                        alert_id=alert.id,
                        kind="deadline",
                        due_at=deadline,
                        status="pending",
                        plan={},
                        created_at=opened,
                    )
                )
        return Made(event.id, code, [z[0] for z in zones])


def big_county(
    sessions: sessionmaker[Session],
    at: datetime,
    *,
    zones: int = 715,
    events: int = len(HAZARDS),
    overdue_event: int = 0,
) -> list[Made]:
    """`zones` zones over 12 townships, a 防灾责任人 each, and `events` events over all of them.

    Event i is hazard HAZARDS[i] at level LEVELS[i], opened i minutes before
    `at`; the zones of event `overdue_event` are past their deadline.
    """
    zone_rows = []
    people = []
    roles = []
    for n in range(zones):
        township = TOWNSHIPS[n % len(TOWNSHIPS)]
        zone_id = f"BIG-{n:04d}"
        zone_rows.append(
            {
                "id": zone_id,
                "name": f"{township}{n // len(TOWNSHIPS) + 1}号村黄土崩塌",
                "kind": "collapse",
                "township": township,
                "village": f"{n // len(TOWNSHIPS) + 1}号村",
                "latitude": 37.3 + (n % 40) * 0.005,
                "longitude": 110.8 + (n // 40) * 0.005,
                "risk_level": "high",
                "tags": [],
                "point_id": f"pt-{n // 4}",
                "active": True,
                "updated_at": at,
            }
        )
        people.append(
            {
                "id": f"p-big-{n:04d}",
                "name": "王李张刘陈杨赵黄"[n % 8] + GIVEN[n % len(GIVEN)],
                "phone": f"+86170{n:08d}",
                "duty_role": None,
                "active": True,
                "updated_at": at,
            }
        )
        roles.append(
            {"zone_id": zone_id, "person_id": f"p-big-{n:04d}", "role": "disaster_prevention"}
        )
    made = []
    with sessions.begin() as db:
        db.execute(insert(Zone), zone_rows)
        db.execute(insert(Person), people)
        db.execute(insert(ZoneRole), roles)
        taken = set(db.scalars(select(Alert.code)))
        fresh = codes(sorted(taken))
        for i in range(events):
            hazard, name, rule = HAZARDS[i % len(HAZARDS)]
            level = LEVELS[i % len(LEVELS)]
            opened = at - timedelta(minutes=i + 1)
            event = Alert(
                code=next(fresh),
                kind="event",
                hazard=hazard,
                rule_id=rule,
                title=name,
                level=level,
                state="firing",
                onset=opened,
                until=opened + timedelta(hours=24),
                evidence={},
                opened_at=opened,
                updated_at=opened,
            )
            db.add(event)
            db.flush()
            zone_codes = [next(fresh) for _ in range(zones)]
            db.execute(
                insert(Alert),
                [
                    {
                        "code": zone_codes[n],
                        "kind": "hazard",
                        "zone_id": zone_rows[n]["id"],
                        "hazard": hazard,
                        "rule_id": rule,
                        "title": name,
                        "level": level,
                        "state": "firing",
                        "onset": opened,
                        "until": opened + timedelta(hours=24),
                        "evidence": EVIDENCE[hazard],
                        "opened_at": opened,
                        "updated_at": opened,
                        "event_id": event.id,
                        "epoch": 0,
                    }
                    for n in range(zones)
                ],
            )
            if i == overdue_event:
                ids = db.scalars(select(Alert.id).where(Alert.event_id == event.id)).all()
                db.execute(
                    insert(EscalationTimer),
                    [
                        {
                            "alert_id": alert_id,
                            "kind": "deadline",
                            "step": 0,
                            "round": 0,
                            "epoch": 0,
                            "due_at": at - timedelta(minutes=5),
                            "status": "done",
                            "plan": {},
                            "created_at": opened,
                        }
                        for alert_id in ids
                    ],
                )
            made.append(Made(event.id, event.code, zone_codes))
    return made
