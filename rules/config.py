"""Configuration files of the whole project: YAML with positions, one strict base, durations.

Every YAML file an administrator edits (rules, zones, people, roster,
escalation, broadcast) is read here, so every error names file:line:column.
It lives in `rules/` because `rules/` is the leaf package every other one may
import (`dispatcher → rules`, `channels → rules`, never back).

`Strict` is the base of every file's schema and `parse_duration` the one
duration grammar: rules (windows, `hold`, `cooldown`), escalation steps and
rule tests all read durations with it (rules then insist on whole hours where
the data is hourly).

ruamel.yaml parses in round-trip mode (it keeps line/column of every node); we
convert the tree to plain Python and keep a map from the node's path (the same
tuple pydantic uses as an error `loc`) to its position. Validation errors from
pydantic are then reported at the exact node, all at once. That loader is
slow (a minute for a province's 30,000 zones), so files are first read by a
fast path: a file in JSON form (JSON is YAML 1.2; a script exporting a
province's zones writes it) by the standard library's decoder, and any other
file by libyaml's parser (PyYAML's C `CParser`), whose events are turned into
plain data here with the round-trip loader's YAML 1.2 reading of every value
(see `_fast_block_load`). Whatever the fast path cannot read exactly as the
round-trip loader would (a tag, a merge key, `08:00`, a syntax error, a bound
crossed) is left to the round-trip loader. Positions of a file read by the fast
path are found by the round-trip loader only when an error needs them, so its
errors name the same line and column.

Every file is bounded before it can cost much memory or time (billion laughs,
a file the size of a disk): at most `MAX_YAML_BYTES` (refused from its size,
never read whole) holding at most `MAX_YAML_NODES` nodes, nesting at most
`MAX_YAML_DEPTH` deep, and aliases
(`*name`, `<<: *name`) may repeat at most `MAX_ALIAS_NODES` nodes and
`MAX_ALIAS_CHARS` characters in all. The composer counts what each alias
would repeat as it meets it, so a bomb is refused at its first alias over the
budget, before anything is expanded.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer, MaxDepthExceededError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import VersionedResolver

try:  # libyaml through PyYAML: the fast path of block YAML (absent, the round trip reads it)
    import yaml.events as lib_events
    from yaml import YAMLError as LibYAMLError
    from yaml.cyaml import CParser as LibYAMLParser
except ImportError:  # pragma: no cover - PyYAML without libyaml
    LibYAMLParser = None

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)

MAX_YAML_BYTES = 32 * 1024 * 1024
"""The largest configuration file read (32 MB: a province's zones.yaml of 30,000 zones
is about 12 MB); a larger one is refused from its size."""
MAX_YAML_DEPTH = 64
"""The deepest nesting of lists and mappings in one file."""
MAX_YAML_NODES = 2_000_000
"""The most values, lists and mappings written in one file (a zone takes about 25: this
is 80,000 zones, a province); parsing is what costs time and memory, so this bounds both."""
MAX_ALIAS_NODES = 10_000
"""How many nodes (values, lists, mappings) all the aliases of one file may repeat."""
MAX_ALIAS_CHARS = 1_000_000
"""How many characters of text all the aliases of one file may repeat."""


class Strict(BaseModel):
    """The base of every configuration schema: unknown keys are errors, values are frozen.

    A misspelt key must never be silently ignored: the administrator would
    believe a setting is in force that is not.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: str | int) -> timedelta:
    """The one duration grammar of every file: '90s', '30m', '2h', '1h30m', '3d' or 0.

    A bare number other than 0 is refused: '30' could mean seconds, minutes or
    hours, and a wrong guess delays a warning.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value == 0:
            return timedelta(0)
        raise ValueError(f"write a duration with its unit, e.g. '{value}m' or '{value}h'")
    match = _DURATION.match(value.strip()) if isinstance(value, str) else None
    if not match or not any(match.groups()):
        raise ValueError(f"{value!r} is not a duration; expected e.g. 0, 90s, 30m, 2h, 1h30m, 3d")
    d, h, m, s = (int(g) if g else 0 for g in match.groups())
    return timedelta(days=d, hours=h, minutes=m, seconds=s)


def _duration(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str | int) else value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
"""A pydantic field type: a duration written in the grammar of `parse_duration`."""


@dataclass(frozen=True, order=True)
class Problem:
    """One error in one configuration file, at a 1-based line and column."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class ConfigError(Exception):
    """One or more problems in configuration files; `str()` lists them one per line."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class Document:
    """A parsed YAML file: plain data plus the position of every node.

    The positions of a file read by the fast path (`_fast_load`) are found
    only when first asked for (an error to report): by parsing the text again
    with the round-trip loader, so an error names the same line and column
    whichever way the file was read.
    """

    def __init__(
        self,
        path: str,
        data: Any,
        positions: dict[Loc, tuple[int, int]] | None = None,
        *,
        text: str | None = None,
    ) -> None:
        self.path = path
        self.data = data
        self._positions = positions
        self._text = text  # kept for the positions pass until it has run

    @property
    def positions(self) -> dict[Loc, tuple[int, int]]:
        """Line and column (1-based) of every node, by its path."""
        if self._positions is None:
            self._positions = _positions_of(self._text or "", self.path)
            self._text = None
        return self._positions

    def where(self, loc: Sequence[str | int]) -> tuple[int, int]:
        """Position of the node at `loc`, or of its nearest ancestor that exists."""
        positions = self.positions
        path = tuple(loc)
        while path:
            if path in positions:
                return positions[path]
            path = path[:-1]
        return positions.get((), (1, 1))

    def problem(self, loc: Sequence[str | int], message: str) -> Problem:
        line, column = self.where(loc)
        return Problem(self.path, line, column, message)


class _OverBound(MarkedYAMLError):
    """A file over one of the bounds (its `problem` is the whole message)."""


class _BoundedComposer(Composer):
    """ruamel's composer, counting what every alias repeats against the budgets.

    An alias is composed as a reference to its anchor's node; what it costs is
    what converting the document to plain data (and validating it) would copy:
    the anchor's whole subtree. Sizes are memoised per node, so counting is
    linear in the file however the aliases nest. An alias to a collection still
    being composed (a recursive structure) is refused outright.
    """

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader=loader)
        self._sizes: dict[int, tuple[int, int]] = {}
        self._nodes = 0  # repeated by aliases
        self._chars = 0
        self._written = 0  # composed from the text

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.parser.check_event(AliasEvent):
            event = self.parser.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:
                self._count_alias(event, target)
        else:
            self._written += 1
            if self._written > MAX_YAML_NODES:
                raise _OverBound(
                    None,
                    None,
                    f"more than the limit of {MAX_YAML_NODES:,} values, lists and mappings in "
                    "one file (MAX_YAML_NODES); split it into several files, or remove what "
                    "does not belong in it",
                    self.parser.peek_event().start_mark,
                )
        return super().compose_node(parent, index)

    def _count_alias(self, event: Any, target: Node) -> None:
        if isinstance(target, SequenceNode | MappingNode) and target.end_mark is None:
            raise _OverBound(
                None,
                None,
                f"alias *{event.anchor} refers to a list or mapping that contains it "
                "(a structure without end); write the values out instead",
                event.start_mark,
            )
        nodes, chars = self._size(target)
        self._nodes += nodes
        self._chars += chars
        if self._nodes > MAX_ALIAS_NODES or self._chars > MAX_ALIAS_CHARS:
            raise _OverBound(
                None,
                None,
                f"aliases repeat more than the limit of {MAX_ALIAS_NODES:,} values or "
                f"{MAX_ALIAS_CHARS:,} characters in one file (MAX_ALIAS_NODES, "
                f"MAX_ALIAS_CHARS; this alias *{event.anchor} brings the total to "
                f"{self._nodes:,} values, {self._chars:,} characters); write the repeated "
                "part out, or repeat less of it",
                event.start_mark,
            )

    def _size(self, node: Node) -> tuple[int, int]:
        """(nodes, characters) of the subtree at `node`, as plain data would copy it."""
        known = self._sizes.get(id(node))
        if known is not None:
            return known
        if isinstance(node, ScalarNode):
            size = (1, len(node.value))
        else:
            nodes, chars = 1, 0
            children: Iterable[Node] = (
                (part for pair in node.value for part in pair)
                if isinstance(node, MappingNode)
                else node.value
            )
            for child in children:
                n, c = self._size(child)
                nodes += n
                chars += c
            size = (nodes, chars)
        self._sizes[id(node)] = size
        return size


def _too_large(name: str, size: int) -> ConfigError:
    return ConfigError(
        [
            Problem(
                name,
                1,
                1,
                f"file too large: {size:,} bytes, over the limit of {MAX_YAML_BYTES:,} "
                "bytes (MAX_YAML_BYTES) for a configuration file; it is not read. Remove "
                "what does not belong in it, or split it into several files",
            )
        ]
    )


def read_bounded(path: Path, name: str | None = None) -> bytes:
    """The bytes of one configuration file, or ConfigError when it is over MAX_YAML_BYTES.

    The size is checked before reading, and at most one byte more than the limit
    is ever read (a file growing while it is read is refused too). OSError
    other than a missing file is left to the caller.
    """
    name = name or str(path)
    try:
        with path.open("rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            if size > MAX_YAML_BYTES:
                raise _too_large(name, size)
            data = stream.read(MAX_YAML_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError([Problem(name, 1, 1, "file not found")]) from None
    if len(data) > MAX_YAML_BYTES:
        raise _too_large(name, len(data))
    return data


def load_yaml_text(text: str, name: str, *, fast: bool = True) -> Document:
    """Parse YAML text; a syntax error or a bound exceeded becomes a ConfigError at its position.

    With `fast` (the default), text in the JSON form of YAML (what a script
    exporting a province's zones writes) is read by the standard library's JSON
    decoder, and other text by libyaml (`_fast_block_load`), tens of times faster
    than the round-trip loader, and its positions found only if an error needs
    them; text that either would read differently from the round-trip loader,
    or that comes near a bound, is read by the round-trip loader.
    """
    if len(text) > MAX_YAML_BYTES:
        raise _too_large(name, len(text.encode("utf-8")))
    if fast:
        data = _fast_load(text)
        if data is _NOT_FAST and not _JSON_START.match(text):
            data = _fast_block_load(text)
        if data is not _NOT_FAST:
            return Document(name, data, text=text)
    return _round_trip(text, name)


def _round_trip(text: str, name: str) -> Document:
    """Parse `text` with ruamel's round-trip loader, keeping every node's position."""
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    yaml.Composer = _BoundedComposer
    yaml.max_depth = MAX_YAML_DEPTH
    try:
        tree = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = (exc.problem or exc.context or "invalid YAML").strip()
        if isinstance(exc, _OverBound):
            message = what
        elif isinstance(exc, MaxDepthExceededError):
            message = (
                f"nested more than {MAX_YAML_DEPTH} lists or mappings deep (MAX_YAML_DEPTH); "
                "no configuration needs this, check the indentation and brackets"
            )
        else:
            message = f"YAML syntax: {what}; fix the YAML at this position"
        raise ConfigError([Problem(name, line, column, message)]) from None
    except ReaderError as exc:  # a control character: at its position, on one line
        position = exc.position if isinstance(exc.position, int) else 0
        line = text.count("\n", 0, position) + 1
        column = position - text.rfind("\n", 0, position)
        code = exc.character if isinstance(exc.character, int) else 0
        raise ConfigError(
            [
                Problem(
                    name,
                    line,
                    column,
                    f"YAML syntax: control character U+{code:04X} is not allowed; remove it "
                    "(or write it as an escape such as \\t inside double quotes)",
                )
            ]
        ) from None
    except YAMLError as exc:  # errors without a mark (rare)
        what = " ".join(str(exc).split())
        raise ConfigError([Problem(name, 1, 1, f"YAML syntax: {what}")]) from None
    positions: dict[Loc, tuple[int, int]] = {(): (1, 1)}
    return Document(name, _plain(tree, (), positions), positions)


def _positions_of(text: str, name: str) -> dict[Loc, tuple[int, int]]:
    """The positions of a document the fast path read: its round-trip parse."""
    try:
        return _round_trip(text, name).positions
    # not expected: the fast path reads only what YAML reads alike; but ruamel
    # has been seen to fail an assertion on odd comments (`| #` in a comment)
    except (ConfigError, AssertionError):
        return {(): (1, 1)}


_NOT_FAST: Any = object()
"""What `_fast_load` returns for text it leaves to the round-trip loader."""
# Characters YAML refuses in a file (ruamel's reader), or reads as a line break
# (U+0085), which JSON takes as they are inside a string.
_NOT_YAML_TEXT = re.compile(
    r"[^\x09\x0a\x0d\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_JSON_START = re.compile(r'[ \t\r\n]*[\[{"]')
# \ud83d\ude00: JSON joins an escaped surrogate pair into one character, YAML does not
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abAB]")
_MAX_KEY_CHARS = 1024 // 6 - 2
"""The longest key the fast path reads: YAML reads at most 1,024 characters of text
as an implicit key (JSON's keys are implicit keys to YAML), and a character of a
key may have been written as a 6-character escape (\u00e9); a longer key is left
to the round-trip loader."""
# The fast path leaves files this deep to the round-trip loader, which says
# exactly where MAX_YAML_DEPTH is crossed (its depth counts a little differently).
_FAST_MAX_DEPTH = MAX_YAML_DEPTH - 2


class _NotFast(Exception):
    """The text is JSON that YAML would read differently, or refuse."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping = dict(pairs)
    if len(mapping) != len(pairs):
        raise _NotFast  # a duplicate key: YAML refuses it, JSON keeps the last
    return mapping


def _constant(name: str) -> Any:
    raise _NotFast  # NaN, Infinity: JSON's extensions, strings to YAML


def _fast_load(text: str) -> Any:
    """`text` read as JSON, or `_NOT_FAST` when the round-trip loader must read it.

    JSON is YAML 1.2 (it reads the same values: the tests compare the two), but
    for a few corners checked here: duplicate keys, NaN, escaped surrogate
    pairs, characters YAML refuses, keys over 1,024 characters of text. The bounds hold
    as on the round-trip path: JSON has no aliases, and a document over
    MAX_YAML_NODES values or deeper than MAX_YAML_DEPTH goes to the round-trip
    loader, which refuses it at its position.
    """
    if not _JSON_START.match(text):
        return _NOT_FAST  # block YAML (or a bare scalar): not worth trying
    if _NOT_YAML_TEXT.search(text) or _SURROGATE_ESCAPE.search(text):
        return _NOT_FAST
    try:
        data = json.loads(text, parse_constant=_constant)
        keys = _keys_within_bounds(data)
        if keys is None:
            return _NOT_FAST
        # Each key is followed by one ':' outside strings, so as many keys as
        # colons means no key was written twice (JSON keeps the last of a
        # duplicate, YAML refuses it). Colons inside strings ("09:00") leave
        # it unsure: then the decoder looks at every mapping's keys (slower).
        if keys != text.count(":"):
            json.loads(text, object_pairs_hook=_unique, parse_constant=_constant)
    except (ValueError, RecursionError, _NotFast):
        return _NOT_FAST
    return data


def _keys_within_bounds(data: Any) -> int | None:
    """The number of mapping keys in plain JSON data, or None when it is over a bound:
    MAX_YAML_NODES, `_FAST_MAX_DEPTH` or YAML's length of a key."""
    nodes = 1  # keys count as nodes, as the composer counts them
    keys = 0
    level: list[Any] = [data]  # the lists and mappings one level deeper each round
    depth = 0
    while level:
        depth += 1
        if depth > _FAST_MAX_DEPTH:
            return None
        deeper: list[Any] = []
        for value in level:
            if type(value) is dict:
                keys += len(value)
                if value and max(map(len, value)) > _MAX_KEY_CHARS:
                    return None
                deeper += [c for c in value.values() if type(c) is dict or type(c) is list]
            elif type(value) is list:
                nodes += len(value)
                deeper += [c for c in value if type(c) is dict or type(c) is list]
        if nodes + 2 * keys > MAX_YAML_NODES:
            return None
        level = deeper
    return keys


# What libyaml reads where the round-trip loader would refuse it or read it
# otherwise: characters YAML 1.1 takes as line breaks and 1.2 does not; tabs,
# which libyaml takes inside plain values and between tokens ("found character
# '\t' that cannot start any token"); a block scalar's header followed by '#'
# (`>#`, "expected chomping or indentation indicators"); an anchor or alias
# name with a character libyaml ends it at and YAML 1.2 does not (`&a?b`). A
# file with any of these is read by the round-trip loader.
# (three patterns, not one alternation: each starting with a character class, the
# regex engine skips to its candidates fast)
_NOT_LIBYAML = (
    re.compile("[\x85\u2028\u2029\t]"),
    re.compile("[|>][-+0-9]*#"),
    re.compile("[&*][0-9A-Za-z_-]*[^0-9A-Za-z_\\-\\s,\\[\\]{}]"),
)
# The first characters of a plain scalar that YAML 1.2 (the round-trip loader's
# resolver) may read as something other than text, beyond true/false/null; the
# rest (a letter, a CJK character) always read as text. A test checks this
# against ruamel's resolver table.
_RESOLVED_FIRST = frozenset("!&*+-.0123456789<=")
_WORDS: dict[str, Any] = {
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
    **dict.fromkeys(("null", "Null", "NULL", "~", ""), None),
}
_DECIMAL = re.compile(r"[-+]?[0-9]+")
_SIMPLE_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_RESOLVER = VersionedResolver()
_STR_TAG = "tag:yaml.org,2002:str"


def _plain_scalar(value: str) -> Any:
    """A plain (unquoted) scalar as the round-trip loader (YAML 1.2) reads it.

    `no`, `on`, `y` stay text (YAML 1.1 would make them booleans), `010` is
    ten (1.1: eight), `1_000` and `0x1F` numbers, `08:00` text (1.1: 480):
    where this is not certain, ruamel's own resolver decides, and anything it
    reads as other than text or a plain number (a date, `.inf`, `<<`) makes the
    round-trip loader read the file.
    """
    word = _WORDS.get(value, _NO_KEY)
    if word is not _NO_KEY:
        return word
    if value[0] not in _RESOLVED_FIRST:
        return value
    if _DECIMAL.fullmatch(value):
        return int(value)  # ValueError past 4,300 digits: the round trip says what
    if _SIMPLE_FLOAT.fullmatch(value):
        return float(value)
    if str(_RESOLVER.resolve(ScalarNode, value, (True, False))) == _STR_TAG:
        return value
    raise _NotFast


_NO_KEY: Any = object()
"""No key read yet for the next value of an open mapping."""


def _copy(data: Any) -> Any:
    """A deep copy of plain data (what an alias repeats: the round trip copies it too)."""
    if type(data) is dict:
        return {key: _copy(value) for key, value in data.items()}
    if type(data) is list:
        return [_copy(value) for value in data]
    return data


def _fast_block_load(text: str) -> Any:
    """`text` read by libyaml, or `_NOT_FAST` when the round-trip loader must read it.

    libyaml only parses (into events); the data, each scalar's value and the
    bounds are made here, as the round-trip loader makes them: values are
    resolved by YAML 1.2 (`_plain_scalar`), an alias repeats a copy of its
    anchor's data and counts against MAX_ALIAS_NODES and MAX_ALIAS_CHARS as the
    composer counts it, nodes against MAX_YAML_NODES, nesting against
    MAX_YAML_DEPTH. The round-trip loader reads the file instead when any of
    these is crossed (it says where), on a syntax error (likewise), and for
    what is rare in a county's files and read differently by YAML 1.1 or not
    kept as plain data: tags and directives, merge keys, keys that are not text
    or whole numbers, duplicate keys, YAML 1.1 line breaks, several documents.
    """
    if LibYAMLParser is None or _NOT_YAML_TEXT.search(text):
        return _NOT_FAST
    if any(pattern.search(text) for pattern in _NOT_LIBYAML):
        return _NOT_FAST
    try:
        return _from_events(LibYAMLParser(text))
    except (_NotFast, LibYAMLError, ValueError):
        return _NOT_FAST


def _from_events(parser: Any) -> Any:
    """The plain data of the one document of `parser`'s events (see `_fast_block_load`)."""
    scalar, alias = lib_events.ScalarEvent, lib_events.AliasEvent
    mapping_start, sequence_start = lib_events.MappingStartEvent, lib_events.SequenceStartEvent
    mapping_end, sequence_end = lib_events.MappingEndEvent, lib_events.SequenceEndEvent
    document_start, stream_end = lib_events.DocumentStartEvent, lib_events.StreamEndEvent
    get_event = parser.get_event
    words, resolved_first = _WORDS, _RESOLVED_FIRST
    root: Any = None
    documents = 0
    # the open collections: each one's parent, the parent's pending key, its
    # anchor and what was counted before it (to size the anchor's subtree)
    stack: list[tuple[Any, Any, str | None, int, int]] = []
    container: Any = None  # the open collection (a dict or a list); None at the top
    key: Any = _NO_KEY
    anchors: dict[str, tuple[Any, int, int]] = {}  # anchor -> (data, nodes, characters)
    written = 0  # nodes written in the text
    nodes = chars = 0  # nodes and characters of the data, aliases repeated
    alias_nodes = alias_chars = 0
    while True:
        event = get_event()
        kind = type(event)
        if kind is scalar:
            if event.tag is not None:
                raise _NotFast
            text = event.value
            if event.implicit[0]:  # plain: `_plain_scalar`, its common cases inline
                value = words.get(text, _NO_KEY)
                if value is _NO_KEY:
                    value = _plain_scalar(text) if text[0] in resolved_first else text
            else:
                value = text
            written += 1
            nodes += 1
            chars += len(text)
            if event.anchor is not None:
                if event.anchor in anchors:
                    raise _NotFast
                anchors[event.anchor] = (value, 1, len(text))
        elif kind is mapping_start or kind is sequence_start:
            if event.tag is not None or (type(container) is dict and key is _NO_KEY):
                raise _NotFast  # a tag, or a list or mapping as a key
            written += 1
            nodes += 1
            stack.append((container, key, event.anchor, nodes - 1, chars))
            if len(stack) > _FAST_MAX_DEPTH:
                raise _NotFast
            container, key = ({} if kind is mapping_start else []), _NO_KEY
            if written > MAX_YAML_NODES:
                raise _NotFast
            continue
        elif kind is mapping_end or kind is sequence_end:
            value = container
            container, key, anchor, nodes_before, chars_before = stack.pop()
            if anchor is not None:
                if anchor in anchors:
                    raise _NotFast
                anchors[anchor] = (value, nodes - nodes_before, chars - chars_before)
        elif kind is alias:
            target = anchors.get(event.anchor)
            if target is None or (type(container) is dict and key is _NO_KEY):
                raise _NotFast  # undefined, recursive, or a key
            data, size, length = target
            alias_nodes += size
            alias_chars += length
            if alias_nodes > MAX_ALIAS_NODES or alias_chars > MAX_ALIAS_CHARS:
                raise _NotFast
            nodes += size
            chars += length
            value = _copy(data)
        elif kind is document_start:
            documents += 1
            if documents > 1 or event.version is not None or event.tags:
                raise _NotFast  # directives (%YAML 1.1 changes every value), or two documents
            continue
        elif kind is stream_end:
            return root
        else:  # the stream's start, the document's end
            continue
        if written > MAX_YAML_NODES:
            raise _NotFast
        # place `value` in the open collection
        if type(container) is list:
            container.append(value)
        elif container is None:
            root = value
        elif key is _NO_KEY:
            if type(value) is not str and type(value) is not int:
                raise _NotFast  # None, a boolean or a float as a key: the round trip's own way
            if type(value) is str and len(value) > _MAX_KEY_CHARS:
                raise _NotFast
            key = value
        else:
            if key in container:
                raise _NotFast  # a duplicate key: YAML refuses it
            container[key] = value
            key = _NO_KEY


def load_yaml(path: Path, display_name: str | None = None) -> Document:
    """Read and parse one YAML file (the name in errors is `display_name` or the path)."""
    name = display_name or str(path)
    data = read_bounded(path, name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [Problem(name, 1, 1, f"not UTF-8 text ({exc.reason}); save the file as UTF-8")]
        ) from None
    return load_yaml_text(text, name)


def _plain(node: Any, loc: Loc, positions: dict[Loc, tuple[int, int]]) -> Any:
    if isinstance(node, CommentedMap):
        out: dict[Any, Any] = {}
        for key, value in node.items():
            child = (*loc, _key(key))
            if key not in node.lc.data:  # merged in by `<<: *anchor`: at the mapping
                positions[child] = (node.lc.line + 1, node.lc.col + 1)
            elif isinstance(value, CommentedMap | CommentedSeq):
                kl, kc = node.lc.key(key)
                positions[child] = (kl + 1, kc + 1)
            else:
                vl, vc = node.lc.value(key)
                positions[child] = (vl + 1, vc + 1)
            out[_key(key)] = _plain(value, child, positions)
        return out
    if isinstance(node, CommentedSeq):
        items: list[Any] = []
        for index, value in enumerate(node):
            il, ic = node.lc.item(index)
            positions[(*loc, index)] = (il + 1, ic + 1)
            items.append(_plain(value, (*loc, index), positions))
        return items
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def _key(key: Any) -> str | int:
    return key if isinstance(key, int) and not isinstance(key, bool) else str(key)


def problems_from_validation(
    doc: Document, exc: ValidationError, prefix: Loc = ()
) -> list[Problem]:
    """Map each pydantic error to the YAML node it is about."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = (*prefix, *(part for part in error["loc"] if _is_data_path(part)))
        problems.append(doc.problem(loc, _describe(error)))
    return problems


def _is_data_path(part: Any) -> bool:
    # pydantic adds union-member tags such as 'function-after[...]' to locs
    return isinstance(part, int) or (isinstance(part, str) and "[" not in part)


def _describe(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    loc = [p for p in error.get("loc", ()) if _is_data_path(p)]
    name = str(loc[-1]) if loc else "document"
    if len(loc) >= 2 and isinstance(loc[-1], int):
        name = f"{loc[-2]}[{loc[-1]}]"  # kinds[0], not a bare 0
    if kind == "extra_forbidden":
        return f"unknown key {name!r}; remove it or check its spelling"
    if kind == "missing":
        return f"missing required key {name!r}"
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    return f"{name}: {message}"


def validate(doc: Document, model: type[M], data: Any = None, prefix: Loc = ()) -> M:
    """Validate `data` (default: the whole document) as `model`, or raise ConfigError."""
    try:
        return model.model_validate(doc.data if data is None else data)
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(doc, exc, prefix)) from None
