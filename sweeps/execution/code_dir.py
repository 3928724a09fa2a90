"""The user's own code (a model or data-loader module) for every trial, on whatever node it runs.

`weightmom sweep SPACE --code-dir DIR` treats DIR as a folder on the Python path: the driver imports
from it (to check the space), and Ray's runtime environment ships each module and package in it to
the workers as `py_modules`, so `model: mymod:build` imports there without being installed.
`py_modules` rather than `working_dir`: a sweep submitted with `ray job submit --working-dir .`
already has a working_dir, and Ray refuses to merge two.
"""

from __future__ import annotations

from pathlib import Path

from weightmom.errors import require
from weightmom.imports import add_search_path

SKIPPED = ("__pycache__",)


def modules_in(code_dir: Path) -> list[str]:
    """Its top-level modules (`*.py`) and packages (folders with `__init__.py`), as py_modules entries."""
    entries = sorted(p for p in code_dir.iterdir() if not p.name.startswith(".") and p.name not in SKIPPED
                     and ((p.is_file() and p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").is_file())))
    require(bool(entries), f"--code-dir {code_dir}: no Python module (*.py) or package (folder with __init__.py)")
    return [str(p) for p in entries]


def use_code_dir(folder: str | Path) -> Path:
    """Check the folder and put it on this process's path; returns it absolute."""
    code_dir = Path(folder).expanduser().absolute()
    require(code_dir.is_dir(), f"--code-dir {folder}: no such directory")
    modules_in(code_dir)
    add_search_path(str(code_dir))
    return code_dir


def runtime_env(code_dir: Path | None, env_vars: dict[str, str]) -> dict:
    """The sweep job's Ray runtime environment: environment variables, and the user's modules."""
    env: dict = {"env_vars": env_vars}
    if code_dir is not None:
        env["py_modules"] = modules_in(code_dir)
    return env
