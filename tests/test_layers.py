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


# -- sweeps/ in wings: lowest first; a wing imports only from itself and the wings below it ----------------
WINGS = ("basis", "space", "records", "search", "analysis", "bookkeeping", "execution")
TOP = ("cli", "cluster_check")   # stand above every wing; nothing below imports them


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def wing_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "sweeps" else None


def upward_imports(module: str, imported: set[str]) -> list[str]:
    """The sweeps modules that `module` (inside a wing) imports from a wing above its own, from the top, or
    from the package itself (its lazy API is for users, not for the wings)."""
    own = WINGS.index(wing_of(module))
    return [name for name in names_any(imported, ("sweeps",))
            if wing_of(name) is None or wing_of(name) in (*TOP, "compat")
            or (wing_of(name) in WINGS and WINGS.index(wing_of(name)) > own)]


def wing_sources() -> list[Path]:
    return [p for p in sources("sweeps") if wing_of(module_name(p)) in WINGS]


@pytest.mark.parametrize("path", wing_sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_wing_imports_one_above_it(path):
    assert upward_imports(module_name(path), imported_modules(path)) == []


def test_every_sweeps_module_lives_in_a_wing_or_on_top():
    loose = [module_name(p) for p in sources("sweeps") if wing_of(module_name(p)) not in (*WINGS, *TOP, "compat")
             and module_name(p) != "sweeps"]
    assert loose == []


@pytest.mark.parametrize("path", sources("sweeps"), ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_reaches_into_another_wings_private_module(path):
    """A `_name` module is its wing's own; other wings (cli and cluster_check aside) use the public ones."""
    own = wing_of(module_name(path))
    if own in TOP:
        return
    private = [m for m in names_any(imported_modules(path), ("sweeps",))
               if wing_of(m) != own and any(part.startswith("_") for part in m.split(".")[2:])]
    assert private == []


PACKAGES = ("weightmom", "sweeps", "weightmom_sweeps")


def imported_names(path: Path, modules: set[str]) -> set[str]:
    """The `modules` that `path` imports, at any depth: function-level (deferred) imports run too.

    `from package import name` names the module `package.name` when there is one (the package itself is
    then only its parent, as for `import package.name`), else `package`.
    """
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                      for alias in node.names}
    return names & modules


def import_graph(*packages: str) -> dict[str, set[str]]:
    """Which of the packages' modules each of them imports."""
    modules = {module_name(p): p for package in packages for p in sources(package)}
    return {m: imported_names(p, set(modules)) - {m} for m, p in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle found by a depth-first walk (each reported once, from where it was entered)."""
    found, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_project_has_no_import_cycle():
    """Across weightmom/, sweeps/ and the console script, deferred imports included: a cycle hidden by an
    import inside a function is still one."""
    assert cycles(import_graph(*PACKAGES)) == []


def test_the_wing_checks_catch_an_upward_import_and_a_cycle(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from sweeps.execution.runner import run_sweep\n    import sweeps.cli\n"
                   "from sweeps.records.results import read_table\nfrom sweeps import pick\n")
    assert upward_imports("sweeps.search.bad", imported_modules(bad)) == [
        "sweeps", "sweeps.cli", "sweeps.execution.runner"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_cycle_check_sees_deferred_and_from_package_imports(tmp_path):
    """The cycle this check was widened for: imagefolder imported streaming in a function, and streaming
    imported imagefolder's decode in another; `from weightmom.data import images` names a module too."""
    module = tmp_path / "streaming.py"
    module.write_text("def f():\n    from weightmom.data.imagefolder import decode\n"
                      "from weightmom.data import images, iterate_batches\n")
    modules = {"weightmom.data", "weightmom.data.imagefolder", "weightmom.data.images", "weightmom.data.streaming"}
    assert imported_names(module, modules) == {"weightmom.data", "weightmom.data.imagefolder", "weightmom.data.images"}
