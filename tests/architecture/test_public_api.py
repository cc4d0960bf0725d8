"""The Airflow face's public subpackages re-export every public class of their modules (``__all__``), lazily:
importing a subpackage loads none of its modules."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "airflow_mlops"
FACE = ["operators", "sensors", "triggers", "hooks", "notifications"]


def _public_classes(sub: str) -> set[str]:
    names = set()
    for path in (PACKAGE / sub).glob("*.py"):
        if path.name == "__init__.py":
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                names.add(node.name)
    return names


@pytest.mark.parametrize("sub", FACE)
def test_all_lists_every_public_class_and_each_resolves(sub):
    module = importlib.import_module(f"airflow_mlops.{sub}")
    missing = _public_classes(sub) - set(module.__all__)
    assert not missing, f"airflow_mlops.{sub}.__all__ lacks {sorted(missing)}"
    for name in module.__all__:
        assert getattr(module, name).__name__ == name


def test_importing_the_subpackages_loads_none_of_their_modules():
    code = ("import sys\n"
            f"for sub in {FACE!r}:\n"
            "    __import__('airflow_mlops.' + sub)\n"
            f"loaded = [m for m in sys.modules if any(m.startswith('airflow_mlops.' + s + '.') for s in {FACE!r})]\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True)
