"""The `weightmom` console script: weightmom's `train` and `evaluate`, plus sweeps' commands.

It stands above both packages, so the library never imports the sweep layer. Only argparse loads here;
each command imports what it needs when it runs.
"""

from __future__ import annotations

import sweeps.cli
import weightmom.cli


def main(argv: list[str] | None = None) -> int:
    return weightmom.cli.main(argv, extensions=[sweeps.cli])
