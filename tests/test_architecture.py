"""The structure as tests: the layout's dependency rules, checked on the tree.

- no import cycle among the modules of dispatcher/;
- no module in dispatcher/ over 500 lines unless it says why at its top
  (a line `# Long module: <reason>` among its first lines);
- rules/ imports nothing from dispatcher/ or channels/; channels/ nothing from dispatcher/.

Imports are read with `ast`, not by importing: every `import` and `from … import`
counts, at module level, inside functions and under `if TYPE_CHECKING:` alike —
an import moved into a function or behind TYPE_CHECKING hides a cycle from the
interpreter, not from the reader. The checkers are plain functions of a
directory, so each is also tested on small synthetic trees (below) to show it
can fail and can pass.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

from tests.support import ROOT

MAX_MODULE_LINES = 500
LONG_MODULE_MARK = "# Long module:"
HEAD_LINES = 5  # the mark must be among a module's first lines, where a reader starts


# --- the checkers


def modules_of(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name → file, for every .py under `root/package` (a package is
    named by its __init__.py)."""
    modules: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _base_of_relative(module: str, is_package: bool, level: int) -> str:
    """The package a `from .… import` with this `level` starts from, inside `module`."""
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    return ".".join(parts[: len(parts) - (level - 1)])


def import_statements(path: Path, module: str) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names imported from it) of every import in `path`.

    `import a.b` gives (line, "a.b", []); `from a import b, c` gives (line, "a", ["b", "c"]);
    relative imports are made absolute.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    statements: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(tree):  # ast.walk: function-level imports count too
        if isinstance(node, ast.Import):
            statements.extend((node.lineno, alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _base_of_relative(module, is_package, node.level)
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            statements.append((node.lineno, source, [alias.name for alias in node.names]))
    return sorted(statements)


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module → the modules of the same package it imports (itself excluded).

    `from a import b` is an edge to the module a.b when there is one, else to a.
    """
    modules = modules_of(root, package)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets: set[str] = set()
        for _, source, names in import_statements(path, module):
            if not names:
                targets.add(source)
            for name in names:
                submodule = f"{source}.{name}"
                targets.add(submodule if submodule in modules else source)
        graph[module] = (targets & modules.keys()) - {module}
    return graph


def import_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The import cycles of `graph`: each strongly connected component of more than
    one module, sorted (Tarjan's algorithm, iterative so deep graphs cannot overflow)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop()
                if nxt not in graph:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return sorted(cycles)


def long_modules(root: Path, package: str, limit: int = MAX_MODULE_LINES) -> list[tuple[str, int]]:
    """(module, lines) of each module over `limit` lines without a `# Long module: <reason>`
    line among its first HEAD_LINES lines."""
    found: list[tuple[str, int]] = []
    for module, path in modules_of(root, package).items():
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) <= limit:
            continue
        if any(_is_long_module_mark(line) for line in lines[:HEAD_LINES]):
            continue
        found.append((module, len(lines)))
    return found


def _is_long_module_mark(line: str) -> bool:
    """A `# Long module: <reason>` line with a reason that is not empty."""
    return line.startswith(LONG_MODULE_MARK) and bool(line[len(LONG_MODULE_MARK) :].strip())


def forbidden_imports(root: Path, package: str, forbidden: Iterable[str]) -> list[str]:
    """`module:line imports name` for each import in `package` from a `forbidden` package."""
    banned = tuple(forbidden)
    found: list[str] = []
    for module, path in modules_of(root, package).items():
        for line, source, _ in import_statements(path, module):
            if any(source == b or source.startswith(f"{b}.") for b in banned):
                found.append(f"{module}:{line} imports {source}")
    return found


def cycle_report(graph: Mapping[str, Iterable[str]], cycles: list[list[str]]) -> str:
    """Each cycle with the imports that close it (the edges inside it), for the fixer."""
    lines = [f"{len(cycles)} import cycle(s) in dispatcher/:"]
    for cycle in cycles:
        members = set(cycle)
        lines.append("  " + " ↔ ".join(cycle))
        for module in cycle:
            lines.extend(f"    {module} → {t}" for t in sorted(set(graph[module]) & members))
    return "\n".join(lines)


# --- the tree


def test_dispatcher_has_no_import_cycle() -> None:
    graph = import_graph(ROOT, "dispatcher")
    cycles = import_cycles(graph)

    assert cycles == [], cycle_report(graph, cycles)


def test_no_dispatcher_module_is_over_500_lines_without_a_reason_at_its_top() -> None:
    found = long_modules(ROOT, "dispatcher")

    assert found == [], (
        f"modules over {MAX_MODULE_LINES} lines without a '{LONG_MODULE_MARK} <reason>' line "
        f"among their first {HEAD_LINES}:\n" + "\n".join(f"{m}: {n} lines" for m, n in found)
    )


def test_rules_import_nothing_from_dispatcher_or_channels() -> None:
    found = forbidden_imports(ROOT, "rules", ["dispatcher", "channels"])

    assert found == [], "\n".join(found)


def test_channels_import_nothing_from_dispatcher() -> None:
    found = forbidden_imports(ROOT, "channels", ["dispatcher"])

    assert found == [], "\n".join(found)


# --- the checkers on synthetic trees


def write_tree(root: Path, files: Mapping[str, str]) -> Path:
    """Files (path → text) under `root`; returns `root`."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import helper\n",
            "pkg/b.py": "def helper() -> None:\n    from pkg import a\n",
            "pkg/c.py": "import pkg.a\n",
        },
    )

    assert import_cycles(import_graph(root, "pkg")) == [["pkg.a", "pkg.b"]]


def test_a_cycle_behind_type_checking_and_through_a_subpackage_is_found(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/web/__init__.py": "",
            "pkg/web/app.py": "from pkg.web.console import router\n",
            "pkg/web/console.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from pkg.web.app import AppState\n"
            ),
        },
    )

    assert import_cycles(import_graph(root, "pkg")) == [["pkg.web.app", "pkg.web.console"]]


def test_relative_imports_are_resolved(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/sub/__init__.py": "from . import x\n",
            "pkg/sub/x.py": "from ..y import thing\n",
            "pkg/y.py": "from .sub import x\n",
        },
    )

    graph = import_graph(root, "pkg")

    assert graph["pkg.sub"] == {"pkg.sub.x"}
    assert graph["pkg.sub.x"] == {"pkg.y"}
    assert import_cycles(graph) == [["pkg.sub.x", "pkg.y"]]


def test_each_of_several_cycles_is_listed(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "import pkg.b\n",
            "pkg/b.py": "import pkg.a\n",
            "pkg/c.py": "import pkg.d\n",
            "pkg/d.py": "import pkg.e\n",
            "pkg/e.py": "import pkg.c\n",
        },
    )

    graph = import_graph(root, "pkg")
    cycles = import_cycles(graph)

    assert cycles == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d", "pkg.e"]]
    report = cycle_report(graph, cycles)
    assert "pkg.a ↔ pkg.b\n" in report and "pkg.e → pkg.c" in report


def test_a_layered_tree_has_no_cycle(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg import b\nimport os\n",
            "pkg/b.py": "from pkg.c import VALUE\nfrom pkg import c as c_module\n",
            "pkg/c.py": "VALUE = 1\nimport pkg.c\n",  # a self-import is not a cycle
        },
    )

    graph = import_graph(root, "pkg")

    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg.c"}
    assert import_cycles(graph) == []


def test_a_long_module_is_named_with_its_size_unless_it_says_why(tmp_path: Path) -> None:
    body = "x = 1\n" * 501
    root = write_tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/long.py": body,
            "pkg/explained.py": '"""Doc."""\n# Long module: one state machine, read top to bottom\n'
            + body,
            "pkg/empty_reason.py": "# Long module:\n" + body,
            "pkg/mark_too_late.py": "\n" * HEAD_LINES + "# Long module: too late\n" + body,
            "pkg/sub/__init__.py": "",
            "pkg/sub/short.py": "x = 1\n" * 500,
        },
    )

    assert sorted(long_modules(root, "pkg")) == [
        ("pkg.empty_reason", 502),
        ("pkg.long", 501),
        ("pkg.mark_too_late", 507),
    ]


def test_an_import_of_a_forbidden_package_is_named_wherever_it_is(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "rules/__init__.py": "",
            "rules/a.py": "import dispatcher.settings\n",
            "rules/b.py": "def f() -> None:\n    from channels import base\n",
            "rules/c.py": "import dispatchers_other\nfrom rules import a\n",  # not forbidden
        },
    )

    assert forbidden_imports(root, "rules", ["dispatcher", "channels"]) == [
        "rules.a:1 imports dispatcher.settings",
        "rules.b:2 imports channels",
    ]
    assert forbidden_imports(root, "rules", ["nothing"]) == []
