"""A county whose files are in JSON form loads fast and exactly as its YAML does.

A province's zones.yaml and people.yaml (30,000 zones, ~90,000 people) are
exported by a script, in JSON form (JSON is YAML 1.2): `rules.config` reads
them with the JSON decoder and finds positions only for an error. The County
must be the very one the round-trip loader gives for the same data written as
YAML, and an error must name the same file:line:column.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from dispatcher.county import County, load_county
from rules.config import ConfigError, load_yaml
from tests.support import LIULIN

LISTS = ("zones", "people")


def county_dir(tmp_path: Path, name: str) -> Path:
    """A copy of the example county's files (no scenarios)."""
    target = tmp_path / name
    shutil.copytree(LIULIN, target, ignore=shutil.ignore_patterns("scenarios", "README.md"))
    return target


def write_json(directory: Path, data: dict[str, Any], indent: int | None = None) -> None:
    for key in LISTS:
        text = json.dumps({key: data[key]}, ensure_ascii=False, indent=indent)
        (directory / f"{key}.yaml").write_text(text, encoding="utf-8")


def write_block_yaml(directory: Path, data: dict[str, Any]) -> None:
    yaml = YAML()  # block style, as an administrator writes it
    for key in LISTS:
        with (directory / f"{key}.yaml").open("w", encoding="utf-8") as stream:
            yaml.dump({key: data[key]}, stream)


def example_lists() -> dict[str, Any]:
    return {key: load_yaml(LIULIN / f"{key}.yaml").data[key] for key in LISTS}


def replicated(copies: int) -> dict[str, Any]:
    """The example county `copies` times over (ids and phones made unique), as plain data."""
    plain = example_lists()
    staff = [p for p in plain["people"] if p.get("duty_role")]
    local = [p for p in plain["people"] if not p.get("duty_role")]
    zones: list[dict[str, Any]] = []
    people: list[dict[str, Any]] = list(staff)
    phone = 10_000_000
    for copy in range(copies):
        ids = {p["id"]: f"{p['id']}-c{copy}" for p in local}
        for p in local:
            phone += 1
            people.append({**p, "id": ids[p["id"]], "phone": f"+86170{phone:08d}"})
        for z in plain["zones"]:
            zone = json.loads(json.dumps(z))
            zone["id"] = f"{z['id']}-c{copy}"
            zone["location"]["lat"] = round(z["location"]["lat"] + 0.001 * copy, 5)
            zone["people"] = {r: [ids.get(i, i) for i in held] for r, held in z["people"].items()}
            zones.append(zone)
    return {"zones": zones, "people": people}


def test_the_example_county_in_json_form_is_the_same_county(tmp_path: Path) -> None:
    # given the example county, and a copy whose zones and people are JSON
    as_json = county_dir(tmp_path, "json")
    write_json(as_json, example_lists())

    # when both are loaded
    fast = load_county(as_json)

    # then they are the same county, entry for entry
    assert fast == load_county(LIULIN)
    assert len(fast.zones) == 40


def test_a_generated_province_loads_the_same_from_json_and_from_block_yaml(
    tmp_path: Path,
) -> None:
    # given 160 zones and their people, written once as JSON and once as block YAML
    data = replicated(4)
    as_json, as_yaml = county_dir(tmp_path, "json"), county_dir(tmp_path, "yaml")
    write_json(as_json, data)
    write_block_yaml(as_yaml, data)
    assert not (as_yaml / "zones.yaml").read_text(encoding="utf-8").startswith("{")

    # when both are loaded (the JSON by the fast path, the YAML by the round trip)
    fast, slow = load_county(as_json), load_county(as_yaml)

    # then the counties are equal
    assert isinstance(fast, County) and fast == slow
    assert len(fast.zones) == 160 and fast.zones[-1].id == "LL-WJG-001-c3"


def problems(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_county(directory)
    return [str(p) for p in caught.value.problems]


def test_errors_in_a_json_zones_file_name_the_same_line_and_column_as_in_yaml(
    tmp_path: Path,
) -> None:
    # given 160 zones with three mistakes far down the file: an unknown tag, an
    # unknown person and an unknown kind
    data = replicated(4)
    data["zones"][100]["tags"] = ["scool"]
    data["zones"][120]["people"]["monitoring"] = ["p-nobody"]
    data["zones"][150]["kind"] = "landslip"
    as_json = county_dir(tmp_path, "json")
    write_json(as_json, data, indent=2)

    # when it is loaded
    found = problems(as_json)

    # then each problem is at the position of the value in the JSON text
    text = (as_json / "zones.yaml").read_text(encoding="utf-8")

    def at(value: str, zone: int) -> str:
        """file:line:column of `value` in the text, after zone number `zone`'s id."""
        index = text.index(f'"{value}"', text.index(f'"{data["zones"][zone]["id"]}"'))
        line, column = text.count("\n", 0, index) + 1, index - text.rfind("\n", 0, index)
        return f"{as_json / 'zones.yaml'}:{line}:{column}"

    assert [p.split(": ", 1)[0] for p in found] == [
        at("scool", 100),
        at("p-nobody", 120),
        at("landslip", 150),
    ]
    assert "unknown exposure tag 'scool'" in found[0]
    assert "unknown person 'p-nobody'" in found[1]
    assert "landslip" in found[2]
    # and the same mistakes in block YAML are reported at their own positions, alike
    as_yaml = county_dir(tmp_path, "yaml")
    write_block_yaml(as_yaml, data)
    assert [p.split(": ", 1)[1] for p in problems(as_yaml)] == [p.split(": ", 1)[1] for p in found]


def test_entries_share_one_set_of_the_fields_they_wrote(tmp_path: Path) -> None:
    """Each zone, person and location keeps which of its fields were written (pydantic's
    `model_fields_set`), but entries that wrote the same fields hold one set between
    them: a province's 120,000 entries held a set each (50 MiB)."""
    # given the example county, in JSON form as a province's export is
    as_json = county_dir(tmp_path, "json")
    lists = example_lists()
    write_json(as_json, lists)

    # when it is loaded
    county = load_county(as_json)

    # then every entry's fields set is what its entry wrote …
    assert [set(z.model_fields_set) for z in county.zones] == [set(z) for z in lists["zones"]]
    people = list(county.people.values())
    assert [set(p.model_fields_set) for p in people] == [set(p) for p in lists["people"]]
    # … and entries share set objects (one per distinct set of fields written in one
    # order), not one each
    for models in (county.zones, people, [z.location for z in county.zones]):
        distinct = {frozenset(m.model_fields_set) for m in models}
        ordered = {tuple(m.model_fields_set) for m in models}
        assert len(distinct) <= len({id(m.model_fields_set) for m in models}) == len(ordered)
        assert len(ordered) < len(models) / 4
    # zones in one township refer to one string of its name, equal to what was written
    townships = [z.township for z in county.zones]
    assert townships == [z["township"] for z in lists["zones"]]
    assert len({id(t) for t in townships}) == len(set(townships)) < len(townships)
    # a copy still gets its own set: changing it leaves the others alone
    copy = county.zones[0].model_copy(update={"village": "新村"})
    assert copy.model_fields_set is not county.zones[0].model_fields_set
    assert set(county.zones[0].model_fields_set) == set(lists["zones"][0])
