"""The `weightmom` console script: weightmom's `train` and `evaluate`, plus sweeps' commands.

It stands above both packages, so the library never imports the sweep layer. Only argparse, yaml and
packaging load here; each command imports what it needs (torch, Ray, Optuna, MLflow) when it runs.
"""

from __future__ import annotations

import sweeps.cli
import weightmom.cli


def main(argv: list[str] | None = None) -> int:
    return weightmom.cli.main(argv, extensions=[sweeps.cli])
