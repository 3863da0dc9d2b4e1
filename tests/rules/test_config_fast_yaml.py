"""The fast path of block YAML: libyaml's events made into the round-trip loader's data.

libyaml reads YAML 1.1, the round-trip loader YAML 1.2: the same text can mean
other values (`no` is false to 1.1, text to 1.2; `010` is eight or ten). The
fast path resolves every plain scalar as YAML 1.2 does, and leaves to the
round-trip loader whatever it cannot read exactly alike. Each case is loaded
both ways (`fast=False` forces the round-trip loader) and compared, and the
cases the fast path accepts are checked to be read by it (not silently left to
the slow loader).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
from ruamel.yaml.resolver import VersionedResolver

import rules.config
from dispatcher.county import load_county
from rules.config import (
    _NOT_FAST,
    _RESOLVED_FIRST,
    MAX_ALIAS_NODES,
    ConfigError,
    _fast_block_load,
    load_yaml_text,
)
from tests.support import LIULIN


def loaded(text: str, *, fast: bool) -> object:
    """The data of `text`, or the problems that refused it."""
    try:
        return load_yaml_text(text, "f.yaml", fast=fast).data
    except ConfigError as exc:
        return [str(p) for p in exc.problems]


# Text the fast path reads itself: each must give the round trip's data exactly.
READ_FAST = [
    pytest.param("zones:\n  - id: LL-1\n    name: 柳林镇龙门塔\n", id="chinese"),
    pytest.param(
        "a: &loc {lat: 37.4, lon: 110.8}\nb: *loc\nc: [*loc, *loc]\nd: &s text\ne: *s\n",
        id="anchors-and-aliases",
    ),
    pytest.param(
        "lit: |\n  line 1\n   indented\n\n  line 3\nkeep: |+\n  kept\n\n"
        "strip: |-\n  stripped\nfold: >\n  folded\n  into one\n\n  new paragraph\n",
        id="block-scalars",
    ),
    pytest.param(
        'plain: a plain\n  text over\n  lines\nquoted: "a quoted\n  text"\n'
        "single: 'it''s\n\n  two'\n",
        id="multi-line-flow-scalars",
    ),
    pytest.param(
        'phone: "+8617000000101"\ncode: "010"\narea: \'141125\'\noffice: 0358-4000000\n'
        "unquoted_phone: +8617000000101\n",
        id="phone-numbers-and-codes",
    ),
    pytest.param(
        "yaml11: [no, No, NO, on, On, off, yes, Yes, y, Y, n, N]\n"
        "yaml12: [true, True, TRUE, false, False, FALSE, tRue]\n"
        "nulls: [null, Null, NULL, ~, nil, none]\nempty:\n",
        id="booleans-and-nulls",
    ),
    pytest.param(
        "ints: [0, -0, +0, 7, 007, 010, 08, 09, 0755, +86170, -5, 123456789012345678901]\n"
        "floats: [1.5, 1., .5, -.5, +1.5, 0., -0.0, 1.5e3, 1.5E+3, 1.0e-3, 6.02e23]\n",
        id="numbers",
    ),
    pytest.param(
        "times: [08:00, '08:00', 1:30, 12:30:00, 2026-01-07 08:00]\n"
        "words: [a-b, a:b, 3.14.15, 1e, e3, 0x, 0b, 0o, 1,000]\n",
        id="text-that-looks-like-numbers",
    ),
    pytest.param('esc: "tab\\there \\u00e9 \\x41 \\/ \\\\ \\""\n', id="double-quoted-escapes"),
    pytest.param("1: one\n2: two\nkey with spaces: x\n", id="integer-keys"),
    pytest.param("# only a comment\n", id="empty-document"),
    pytest.param("---\na: 1\n...\n", id="explicit-document-markers"),
    pytest.param("\ufeffa: 1\n", id="byte-order-mark"),
    pytest.param("- [a, [b, {c: d}]]\n- {}\n- []\n- ''\n", id="nested-flow"),
    pytest.param("a: 1 # a comment\nb: 'x # not a comment'\n", id="comments"),
]

# Text the fast path leaves to the round-trip loader (it would read it differently,
# or it is an error whose position the round trip names): still the same result.
LEFT_TO_ROUND_TRIP = [
    pytest.param("n: 1_000\n", id="underscores"),
    pytest.param("n: 0x1F\n", id="hexadecimal"),
    pytest.param("n: 0o17\n", id="octal-1.2"),
    pytest.param("n: 1e3\n", id="exponent-without-point"),
    pytest.param("n: .inf\nm: -.Inf\nk: .NaN\n", id="infinity-and-nan"),
    pytest.param("d: 2026-01-07\nt: 2026-01-07T08:00:00Z\n", id="timestamps"),
    pytest.param("base: &b {x: 1}\nmerged:\n  <<: *b\n  y: 2\n", id="merge-key"),
    pytest.param("a: !!str 010\n", id="explicit-tag"),
    pytest.param("%YAML 1.1\n---\na: no\n", id="yaml-1.1-directive"),
    pytest.param("a: 1\n---\nb: 2\n", id="two-documents"),
    pytest.param("a: 1\na: 2\n", id="duplicate-key"),
    pytest.param("true: 1\nTrue: 2\n", id="duplicate-boolean-keys"),
    pytest.param("? [a, b]\n: c\n", id="complex-key"),
    pytest.param("null: 1\n1.5: 2\n", id="null-and-float-keys"),
    pytest.param("a: *nowhere\n", id="undefined-alias"),
    pytest.param("a: &x [1, *x]\n", id="recursive-alias"),
    pytest.param("a: [1, 2\nb: 3\n", id="syntax-error"),
    pytest.param("a:\n  b: 1\n c: 2\n", id="bad-indentation"),
    pytest.param("a: \x07\n", id="control-character"),
    pytest.param("a: x\u2028y\n", id="yaml-1.1-line-separator"),
    # found by comparing both loaders on mutated copies of the example county's files:
    # libyaml reads these, the round-trip loader refuses them or reads them otherwise
    pytest.param("kind: debr\tis_flow\n", id="tab-inside-a-plain-value"),
    pytest.param("volume: \t90\n", id="tab-before-a-value"),
    pytest.param("a: >#\n  text\n", id="comment-right-after-a-block-header"),
    pytest.param("a: &x?y value\nb: 1\n", id="anchor-name-libyaml-ends-early"),
    pytest.param("a: '%s'\n" % ("k" * 2000) + "%s: 1\n" % ("k" * 1100), id="long-key"),
]


@pytest.mark.parametrize("text", READ_FAST)
def test_block_yaml_read_by_libyaml_gives_the_round_trip_loaders_data(text: str) -> None:
    assert _fast_block_load(text) is not _NOT_FAST, "the fast path should read this itself"
    assert loaded(text, fast=True) == loaded(text, fast=False)


@pytest.mark.parametrize("text", LEFT_TO_ROUND_TRIP)
def test_what_the_fast_path_would_read_differently_is_left_to_the_round_trip(text: str) -> None:
    assert _fast_block_load(text) is _NOT_FAST
    # repr: a tagged value is kept as ruamel's TaggedScalar, which compares by identity
    assert repr(loaded(text, fast=True)) == repr(loaded(text, fast=False))


def test_yaml_11_and_12_differences_resolve_as_the_round_trip_loader_does() -> None:
    """The values YAML 1.1 (libyaml's own resolver) reads otherwise, one by one."""
    values = ["no", "on", "off", "yes", "y", "NO", "010", "0755", "08", "+86170", "1:30"]
    values += ["12:30:00", "-0", "+0", "1.", ".5", "0.", "~", "", "tRue", "Null"]
    for value in values:
        text = f"k: {value}\n"
        fast = _fast_block_load(text)
        slow = load_yaml_text(text, "f.yaml", fast=False).data
        assert fast == slow and type(fast["k"]) is type(slow["k"]), value


def test_every_first_character_ruamel_resolves_is_checked_by_the_fast_path() -> None:
    """A plain scalar starting with a letter outside t/f/n (any case) is always text to YAML
    1.2: if ruamel's resolver ever resolves another first character, the fast path must
    learn it (`_RESOLVED_FIRST`)."""
    table = VersionedResolver().versioned_resolver
    words = set("tTfFnN~")  # true/false/null: the fast path knows these words exactly
    assert set(table) - {""} <= _RESOLVED_FIRST | words


def test_aliases_are_copies_and_bounded_as_the_round_trip_bounds_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = "a: &a [x, y]\nb: *a\n"
    data = _fast_block_load(text)
    assert data == {"a": ["x", "y"], "b": ["x", "y"]} and data["a"] is not data["b"]

    # just over the budget: left to the round trip, which refuses it at the alias
    monkeypatch.setattr(rules.config, "MAX_ALIAS_NODES", 5)
    text = "a: &a [1, 2, 3]\nb: *a\nc: *a\n"  # each alias repeats 4 nodes
    assert _fast_block_load(text) is _NOT_FAST
    refused = loaded(text, fast=True)
    assert refused == loaded(text, fast=False)
    assert isinstance(refused, list) and refused[0].startswith("f.yaml:3:4: ")
    assert MAX_ALIAS_NODES > 5  # the real budget is untouched


def test_more_nodes_than_the_limit_are_left_to_the_round_trip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rules.config, "MAX_YAML_NODES", 1_000)
    under = "x:\n" + "- 0\n" * 990
    over = "x:\n" + "- 0\n" * 1_000

    assert _fast_block_load(under) == {"x": [0] * 990}
    assert _fast_block_load(over) is _NOT_FAST
    refused = loaded(over, fast=True)
    assert isinstance(refused, list) and "MAX_YAML_NODES" in refused[0]


def test_nesting_deeper_than_the_limit_is_left_to_the_round_trip() -> None:
    deep = rules.config.MAX_YAML_DEPTH + 1
    text = "a: " + "[" * deep + "]" * deep + "\n"

    assert _fast_block_load(text) is _NOT_FAST
    refused = loaded(text, fast=True)
    assert refused == loaded(text, fast=False)
    assert isinstance(refused, list) and "MAX_YAML_DEPTH" in refused[0]


def test_a_block_yaml_county_is_read_fast_and_its_errors_still_name_file_and_line(
    tmp_path: Path,
) -> None:
    """A county in ordinary block YAML: read by libyaml, and an error found by
    validation still names zones.yaml:line:column (the positions pass runs only
    then), the same as the round-trip loader names it."""
    county = tmp_path / "county"
    shutil.copytree(LIULIN, county, ignore=shutil.ignore_patterns("scenarios", "README.md"))
    zones = (county / "zones.yaml").read_text(encoding="utf-8")
    assert _fast_block_load(zones) is not _NOT_FAST  # the example's layout is read fast
    bad = zones.replace("kind: collapse", "kind: colapse", 1)
    (county / "zones.yaml").write_text(bad, encoding="utf-8")
    line = bad[: bad.index("kind: colapse")].count("\n") + 1

    with pytest.raises(ConfigError) as caught:
        load_county(county)

    assert str(caught.value).startswith(f"{county / 'zones.yaml'}:{line}:11: kind: unknown kind")
    assert "did you mean 'collapse'?" in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1


def test_a_syntax_error_in_a_block_yaml_county_names_its_line(tmp_path: Path) -> None:
    county = tmp_path / "county"
    shutil.copytree(LIULIN, county, ignore=shutil.ignore_patterns("scenarios", "README.md"))
    zones = (county / "zones.yaml").read_text(encoding="utf-8")
    bad = zones.replace("    risk: high\n", "    risk: [high\n", 1)
    (county / "zones.yaml").write_text(bad, encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_county(county)

    message = str(caught.value)
    assert message.startswith(f"{county / 'zones.yaml'}:")
    assert "YAML syntax" in message and "fix the YAML at this position" in message
    assert len(message.splitlines()) == 1


def test_mutated_county_files_read_fast_give_the_round_trip_loaders_data() -> None:
    """Random small edits (a character inserted, deleted or repeated) to slices of the
    example county's files, as typos would make them: whenever the fast path reads the
    result itself, the round-trip loader reads the same data (the cases above were found
    this way)."""
    sources = [(LIULIN / f"{name}.yaml").read_text(encoding="utf-8") for name in FILES]
    pieces = [*":-[]{},#&*!|>'\"%@` \n\t?~.0123456789a柳", "\n  ", "\n- ", ": "]
    rng = random.Random(14)
    read_fast = 0
    for _ in range(4_000):
        lines = rng.choice(sources).split("\n")
        start = rng.randrange(len(lines))
        text = "\n".join(lines[start : start + rng.randint(3, 30)])
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(text) + 1)
            if rng.random() < 0.5:
                text = text[:at] + rng.choice(pieces) * rng.randint(1, 2) + text[at:]
            else:
                text = text[:at] + text[at + rng.randint(1, 3) :]
        fast = _fast_block_load(text)
        if fast is _NOT_FAST:
            continue
        read_fast += 1
        try:
            slow = load_yaml_text(text, "f.yaml", fast=False).data
        except AssertionError:  # ruamel fails on some odd comments: nothing to compare
            continue
        assert repr(fast) == repr(slow), text
    assert read_fast > 500  # many edits still leave YAML the fast path reads


FILES = ("zones", "people", "county", "roster", "escalation", "broadcast")
