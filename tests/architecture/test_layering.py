"""The package map of docs/architecture.md, enforced: no import cycle between modules, no import against the
layering, no Airflow import in the capability packages. Read from the source with :mod:`ast` (every import
statement counts, at module level or inside a function, under ``TYPE_CHECKING`` or not)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "airflow_mlops"

#: Tiers, lowest first. A module may import modules of its own top-level package and of lower tiers;
#: packages of one tier are independent of each other. Keep in step with docs/architecture.md.
TIERS: list[set[str]] = [
    {"platform"},  # the Airflow seam
    {"trust", "reports", "evaluation", "tracking"},  # foundation (tracking: a team's MLflow server)
    {"store"},
    {"sql"},  # SQL sources and prediction tables over a common.sql hook passed in
    {"config"},
    {"training", "validation", "alerts"},
    {"registry", "ml"},  # ml: module paths stored models of earlier releases name
    {"scoring"},
    {"monitoring", "governance", "segments"},
    # the Airflow face
    {"assets", "hooks", "demo"},
    {"triggers", "links"},
    {"operators"},
    {"sensors", "notifications"},
    {"plugins", "dag_factory"},
    {"cli"},
]
CAPABILITY_TIERS = 9  # the first nine tiers are plain Python: no Airflow import (``platform`` is the one seam)
AIRFLOW_SEAM = "platform"


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


MODULES = _modules()


def _imports(name: str) -> list[tuple[str, int]]:
    """(imported name, line) of every import in a module; ``from x import y`` yields ``x.y`` when that is a
    module, else ``x``. Relative imports are resolved against the module's package."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for a in node.names:
                full = f"{base}.{a.name}"
                out.append((full if full in MODULES else base, node.lineno))
    return out


def _internal_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for name in MODULES:
        for target, _ in _imports(name):
            if target in MODULES and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    return graph


def _top(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def _tier(top: str) -> int:
    for i, tier in enumerate(TIERS):
        if top in tier:
            return i
    raise AssertionError(f"airflow_mlops.{top} is in no tier of tests/architecture/test_layering.py "
                         f"(and docs/architecture.md): place it")


def test_every_package_and_module_has_a_tier():
    for name in MODULES:
        if name != "airflow_mlops":
            _tier(_top(name))


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk of ``graph`` meets (as ``[a, b, ..., a]``)."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_the_cycle_finder_finds_direct_and_indirect_cycles():
    assert find_cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycles():
    cycles = find_cycles(_internal_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_follow_the_layering():
    bad = []
    for name in MODULES:
        if name == "airflow_mlops":
            continue
        top = _top(name)
        for target, line in _imports(name):
            if not target.startswith("airflow_mlops.") or target == "airflow_mlops":
                continue
            other = _top(target)
            if other != top and _tier(other) >= _tier(top):
                bad.append(f"{MODULES[name].relative_to(PACKAGE.parent)}:{line} {name} imports {target} "
                           f"(tier {_tier(top)} -> tier {_tier(other)})")
    assert not bad, "imports against the layering of docs/architecture.md:\n" + "\n".join(sorted(bad))


def test_the_root_package_imports_nothing_of_its_own():
    assert not [t for t, _ in _imports("airflow_mlops") if t.startswith("airflow_mlops")]


def test_capability_packages_do_not_import_airflow():
    bad = []
    for name in MODULES:
        top = _top(name)
        if name == "airflow_mlops" or top == AIRFLOW_SEAM or _tier(top) >= CAPABILITY_TIERS:
            continue
        for target, line in _imports(name):
            if target == "airflow" or target.startswith("airflow."):
                bad.append(f"{MODULES[name].relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not bad, ("capability packages are plain Python; Airflow settings, connections and providers go "
                     f"through airflow_mlops.{AIRFLOW_SEAM}:\n" + "\n".join(sorted(bad)))
