"""User code named by import path: `package.module:attribute`, for models and datasets alike.

The current directory is searched first, as `python -m` does, so `--model mymod:build` finds
`./mymod.py` whether the command is `weightmom` or `python -m weightmom_sweeps`. Every failure is one
UsageError line naming the path, never an import traceback.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from weightmom.errors import UsageError, require


def is_import_path(name: object) -> bool:
    """`module:attribute` (dotted on either side); built-in names never contain a colon."""
    return isinstance(name, str) and ":" in name


def add_search_path(folder: str) -> None:
    """Put `folder` first on sys.path (once), so modules there import before installed ones."""
    folder = os.path.abspath(folder)
    if folder not in sys.path:
        sys.path.insert(0, folder)


def _one_line(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())


def resolve(path: str, what: str) -> Callable[..., Any]:
    """The callable at `path`; `what` ("model", "dataset") names it in errors."""
    module_name, _, attribute = path.partition(":")
    require(bool(module_name) and bool(attribute) and ":" not in attribute,
            f"{what} {path!r}: expected package.module:attribute")
    add_search_path(os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as err:  # a user module can raise anything at import time
        raise UsageError(f"{what} {path!r}: cannot import module {module_name!r} ({_one_line(err)}); "
                         "run from the folder that holds it or put it on PYTHONPATH") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise UsageError(f"{what} {path!r}: module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    require(callable(target), f"{what} {path!r}: {attribute!r} is a {type(target).__name__}, not callable")
    return target


def check_call(function: Callable[..., Any], label: str, args: int, kwargs: dict, partial: bool = False) -> None:
    """Fail now, with Python's own one-line reason, if `function(*args positional, **kwargs)` cannot bind.

    `partial` only rejects keywords the function does not take (missing ones may come later).
    """
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # some builtins have no signature: calling them will tell
        return
    try:
        bind = signature.bind_partial if partial else signature.bind
        bind(*([None] * args), **dict.fromkeys(kwargs))
    except TypeError as err:
        raise UsageError(f"{label}: {err}") from None


def takes_keyword(function: Callable[..., Any], name: str) -> bool:
    """Whether `function` accepts `name=` (by that name or through **kwargs)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name and p.kind != p.POSITIONAL_ONLY or p.kind == p.VAR_KEYWORD for p in parameters)


def import_path_of(obj: Any) -> str | None:
    """`module:qualname` if importing it gives back `obj` itself (not for lambdas, locals or __main__)."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    try:
        target: Any = importlib.import_module(module)
        for part in qualname.split("."):
            target = getattr(target, part)
    except Exception:
        return None
    return f"{module}:{qualname}" if target is obj else None
