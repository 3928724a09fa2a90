"""The README and docs/ stand alone: every relative link resolves inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_links(page: Path) -> list[str]:
    return [target for target in LINK.findall(page.read_text())
            if not re.match(r"[a-z]+:", target) and not target.startswith("#")]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves_inside_the_repository(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists() or REPO not in path.parents:
            broken.append(target)
    assert broken == []


def test_the_readme_stays_short() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 200


# -- every module a page names exists -----------------------------------------------------------------------
PACKAGES = ("weightmom", "sweeps", "weightmom_sweeps", "search_spaces", "benchmarks", "tests", "examples")
FILE_NAME = re.compile(r"(?<![\w./-])((?:[\w-]+/)*[\w-]+\.(?:py|sh))\b")
DOTTED = re.compile(rf"(?<![\w./-])((?:{'|'.join(PACKAGES[:3])})(?:\.[A-Za-z_]\w*)+)")
USERS_FILES = {"mynet.py", "myloader.py", "train.py"}   # what the docs call a user's own files
PROJECT_FILES = [p for p in REPO.rglob("*") if p.is_file() and not {".git", ".venv", "runs"} & set(p.parts)]


def file_exists(name: str) -> bool:
    """A path from the repository root or from a package (`records/state.py`), or a bare file name
    (`callback.py`) that some file in the project has. A path outside the project's folders is the user's own
    (`my_models/mynet.py`), and a bare name a page marks as the user's (EXAMPLE_FILES) too."""
    if "/" not in name:
        return name in USERS_FILES or any(p.name == name for p in PROJECT_FILES)
    top = name.split("/")[0]
    if top not in PACKAGES and not (REPO / "weightmom" / top).is_dir() and not (REPO / "sweeps" / top).is_dir():
        return True
    return any((REPO / root / name).exists() for root in ("", "weightmom", "sweeps"))


def module_exists(dotted: str) -> bool:
    """`weightmom.data.node_copy` or `sweeps.search.samplers.FrontierSampler`: the longest prefix that is a
    module or package in the tree, the rest names defined (or imported) in it."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        path = REPO.joinpath(*parts[:cut])
        source = path.with_suffix(".py") if path.with_suffix(".py").is_file() else path / "__init__.py"
        if source.is_file():
            rest = parts[cut:]
            return not rest or re.search(rf"\b{re.escape(rest[0])}\b", source.read_text()) is not None
    return False


def named_modules(page: Path) -> list[str]:
    text = page.read_text()
    files = [n for n in FILE_NAME.findall(text) if not n.startswith(("s3/", "gs/"))]
    return [*files, *DOTTED.findall(text)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_module_a_page_names_exists(page: Path) -> None:
    missing = [name for name in named_modules(page)
               if not (file_exists(name) if name.endswith((".py", ".sh", ".yaml")) else module_exists(name))]
    assert missing == []


def test_the_module_check_catches_a_missing_module(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("`callback.py`, `records/state.py`, `sweeps.search.fifo`, weightmom.train, my_models/mynet.py, "
                    "sweeps.search.samplers.NoSuchThing")
    names = named_modules(page)
    assert [n for n in names if not (file_exists(n) if n.endswith(".py") else module_exists(n))] == [
        "callback.py", "sweeps.search.fifo", "sweeps.search.samplers.NoSuchThing"]
