"""The fast path of the configuration loader: JSON text read by the JSON decoder.

JSON is YAML 1.2, so a file in JSON form must give exactly what the round-trip
loader gives — the same data, the same refusals with the same positions, the
same bounds — only faster. Each case is loaded both ways (`fast=False` forces
the round-trip loader) and compared.
"""

from __future__ import annotations

import json

import pytest

import rules.config
from rules.config import MAX_YAML_DEPTH, ConfigError, Document, load_yaml_text


def loaded(text: str, *, fast: bool) -> object:
    """The data of `text`, or the problems that refused it."""
    try:
        return load_yaml_text(text, "f.yaml", fast=fast).data
    except ConfigError as exc:
        return [str(p) for p in exc.problems]


CORNERS = [
    pytest.param('{"a": 1, "b": [true, false, null], "c": {"d": "e"}}', id="plain"),
    pytest.param("[1, -0, -0.0, 1.5, 1e3, 1E+2, 1.5e-3, 0.1e1, 123456789012345678901]", id="num"),
    pytest.param("[1e400, -1e400]", id="overflowing-floats"),
    pytest.param(r'["\/", "\b\f\n\r\t", "\u0000", "\u0085", "\u2028", "a\u00e9"]', id="escapes"),
    pytest.param(r'"\ud83d\ude00"', id="escaped-surrogate-pair"),
    pytest.param(r'"\ud800"', id="escaped-lone-surrogate"),
    pytest.param('"\x7f"', id="control-character"),
    pytest.param('"\x85"', id="next-line-character"),
    pytest.param('{"a": 1, "a": 2}', id="duplicate-key"),
    pytest.param('{"t": "09:00", "a": 1, "a": 2}', id="duplicate-key-and-colons-in-strings"),
    pytest.param('{"%s": 1}' % ("k" * 1100), id="key-over-1024-characters"),
    pytest.param('{"%s": 1}' % (r"\u00e9" * 200), id="key-over-1024-characters-as-escapes"),
    pytest.param('{"a": NaN}', id="nan"),
    pytest.param('{\n"a":\n[1,\n2]\n}', id="over-lines"),
    pytest.param('{"a": "# not a comment", "b": "x #y"}', id="hashes"),
    pytest.param("[1, 2,]", id="trailing-comma"),
    pytest.param('\ufeff{"a": 1}', id="byte-order-mark"),
    pytest.param("zones: []\n", id="block-yaml"),
]


@pytest.mark.parametrize("text", CORNERS)
def test_json_text_loads_exactly_as_the_round_trip_loader_reads_it(text: str) -> None:
    assert loaded(text, fast=True) == loaded(text, fast=False)


def test_a_json_file_is_read_by_the_fast_path_and_its_positions_found_only_when_asked() -> None:
    text = json.dumps({"zones": [{"id": "LL-1"}, {"id": "LL-2", "tags": ["school"]}]}, indent=2)

    doc = load_yaml_text(text, "zones.yaml")

    assert doc.data == load_yaml_text(text, "zones.yaml", fast=False).data
    assert doc._positions is None  # not parsed for positions: nothing needed them
    # an error at the second zone's tag names the line and column the round trip names
    slow = load_yaml_text(text, "zones.yaml", fast=False)
    where = ("zones", 1, "tags", 0)
    at = text.index('"school"')
    line, column = text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)
    assert doc.where(where) == slow.where(where) == (line, column)
    assert doc.positions == slow.positions


def test_json_nested_deeper_than_the_limit_is_refused_as_yaml_is() -> None:
    deep = MAX_YAML_DEPTH + 1
    text = "[" * deep + "]" * deep

    refused = loaded(text, fast=True)

    assert refused == loaded(text, fast=False)
    assert isinstance(refused, list) and "MAX_YAML_DEPTH" in refused[0]


def test_json_nested_far_deeper_than_the_decoder_can_is_refused_as_yaml_is() -> None:
    text = "[" * 100_000 + "]" * 100_000  # the JSON decoder's recursion gives up

    assert loaded(text, fast=True) == loaded(text, fast=False)


def test_json_of_more_nodes_than_the_limit_is_refused_at_the_first_one_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limit = 20_000
    monkeypatch.setattr(rules.config, "MAX_YAML_NODES", limit)
    text = '{"x": [' + "0," * limit + "0]}"

    refused = loaded(text, fast=True)

    assert refused == loaded(text, fast=False)
    assert isinstance(refused, list) and "MAX_YAML_NODES" in refused[0]


def test_json_just_under_the_node_limit_still_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    limit = 20_000
    monkeypatch.setattr(rules.config, "MAX_YAML_NODES", limit)
    text = '{"x": [' + "0," * (limit - 10) + "0]}"

    doc = load_yaml_text(text, "f.yaml")

    assert len(doc.data["x"]) == limit - 9
    assert isinstance(doc, Document) and doc._positions is None  # the fast path read it
