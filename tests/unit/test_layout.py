"""The layout's rules, read from the code's own imports (ast): imports only go down.

- ``detectors`` and ``models`` import only the bottom layer (``pipeline.events``,
  ``pipeline.errors``) besides themselves;
- nothing outside ``pipeline.agents`` (and the CLI that starts it) imports Faust;
- no cycle between concept packages, and none between modules.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "detectors", "models")
BOTTOM = ("pipeline.events", "pipeline.errors")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """Module -> the project modules (and 'faust') it imports, at any depth in the file.

    ``from pkg import mod`` names the module ``pkg.mod``; ``from pkg import Name`` names
    ``pkg`` (its ``__init__``).
    """
    paths = {_module_name(p): p for package in PACKAGES
             for p in sorted((ROOT / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in paths
                           else node.module for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                top = target.split(".")[0]
                if top == "faust":
                    found.add("faust")
                elif top in PACKAGES:
                    found.add(target)
        graph[name] = found
    return graph


def _concept(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "pipeline" and len(parts) > 1 else parts[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_detectors_and_models_import_only_the_bottom_layer() -> None:
    bad = [f"{m} imports {t}" for m, targets in _imports().items()
           if m.split(".")[0] in ("detectors", "models")
           for t in targets if t != "faust" and t.split(".")[0] == "pipeline"
           and not t.startswith(BOTTOM)]
    bad += [f"{m} imports {t}" for m, targets in _imports().items()
            if m.split(".")[0] == "detectors" for t in targets if t.startswith("models")]
    bad += [f"{m} imports {t}" for m, targets in _imports().items()
            if m.split(".")[0] == "models" for t in targets if t.startswith("detectors")]
    assert bad == []


def test_only_the_agents_import_faust() -> None:
    allowed = ("pipeline.agents",)
    bad = [m for m, targets in _imports().items()
           if "faust" in targets and not m.startswith(allowed)]
    assert bad == []


def test_the_bottom_layer_imports_nothing_above_it() -> None:
    bad = [f"{m} imports {t}" for m, targets in _imports().items() if m.startswith(BOTTOM)
           for t in targets if t != "faust" and not t.startswith(BOTTOM)]
    assert bad == []


def test_no_cycle_between_concept_packages() -> None:
    concepts: dict[str, set[str]] = defaultdict(set)
    for module, targets in _imports().items():
        for target in targets:
            if target != "faust" and _concept(target) != _concept(module):
                concepts[_concept(module)].add(_concept(target))
    assert _cycles(concepts) == []


def test_no_cycle_between_modules() -> None:
    graph = {m: {t for t in targets if t != "faust"} for m, targets in _imports().items()}
    assert _cycles(graph) == []


def test_read_only_commands_load_neither_faust_nor_the_agents() -> None:
    code = (
        "import sys\n"
        "from pipeline.cli.main import build_parser\n"
        "import pipeline.api.query, pipeline.api.operate\n"
        "build_parser()\n"
        "loaded = sorted(m for m in sys.modules if m == 'faust' or m.startswith('faust.')"
        " or m.startswith('pipeline.agents'))\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.strip()
    assert out == ""
