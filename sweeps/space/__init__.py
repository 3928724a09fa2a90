"""Search spaces as data: the YAML schema, its checks, grid points, and the compiled SearchSpace.

`sweeps.space.SearchSpace` and `load_space` resolve lazily to sweeps.space.search_space, which also
keeps snapshots written when this was the module `sweeps/space.py` loadable.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(importlib.import_module("sweeps.space.search_space"), name)
