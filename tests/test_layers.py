"""The layering, checked: weightmom/ is a library that knows nothing above it; sweeps/ talks to it through
weightmom.contract; the console script stands above both. And no function grows past a readable size."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ABOVE_THE_LIBRARY = ("sweeps", "weightmom_sweeps", "ray", "optuna", "mlflow")
# The library's internals that a driver must not reach around the contract for.
LIBRARY_INTERNALS = ("weightmom.config", "weightmom.strict", "weightmom.methods", "weightmom.pruning")
MAX_FUNCTION_LINES = 60


def imported_modules(path: Path) -> set[str]:
    """Every module an `import` or `from ... import` statement in `path` names, at any depth."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def sources(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def names_any(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(f"{p}.") for p in prefixes))


@pytest.mark.parametrize("path", sources("weightmom"), ids=lambda p: str(p.relative_to(REPO)))
def test_the_library_imports_nothing_above_it(path):
    assert names_any(imported_modules(path), ABOVE_THE_LIBRARY) == []


@pytest.mark.parametrize("path", sources("sweeps"), ids=lambda p: str(p.relative_to(REPO)))
def test_sweeps_reach_configs_through_the_contract_only(path):
    assert names_any(imported_modules(path), LIBRARY_INTERNALS) == []


def test_the_check_catches_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from sweeps.space.search_space import load_space\n    import ray.tune\n")
    assert names_any(imported_modules(bad), ABOVE_THE_LIBRARY) == ["ray.tune", "sweeps.space.search_space"]


def test_importing_every_library_module_loads_no_sweep_code():
    """At run time too: `import weightmom.cli` (and every other module) pulls in nothing of the layers above."""
    modules = [".".join(p.relative_to(REPO).with_suffix("").parts) for p in sources("weightmom")
               if p.name != "__main__.py"]
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m.removesuffix('.__init__'))\n"
            f"print([m for m in sys.modules if m.split('.')[0] in {ABOVE_THE_LIBRARY!r}])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_config_is_checked_without_torch():
    """`weightmom train` checks the whole config, pruner knobs included, before torch loads: a typo costs
    milliseconds. The console script's module and the config (with its method registry) import no torch."""
    code = ("import sys, weightmom_sweeps.cli, weightmom.config, weightmom.methods\n"
            "from weightmom import TrainConfig\nTrainConfig(method='weightmom', pruner={'window': 3})\n"
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_every_method_has_a_pruner():
    from weightmom.methods import METHODS
    from weightmom.pruning import PRUNERS

    assert list(PRUNERS) == list(METHODS)


def long_functions(path: Path) -> list[str]:
    return [f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


def test_no_function_in_the_packages_is_longer_than_60_lines():
    assert [line for package in ("weightmom", "sweeps", "weightmom_sweeps")
            for path in sources(package) for line in long_functions(path)] == []
