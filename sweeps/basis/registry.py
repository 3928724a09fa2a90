"""The names a space may choose for how a sweep searches: its sampler and MO-ASHA's promotion rule.

One list each: the space schema takes its choices from here, and search/ builds what each name means
(search/samplers.py, search/moasha.py); a test checks that every name here has a builder there.
"""

from __future__ import annotations

SAMPLERS: dict[str, str] = {
    "tpe": "multivariate, grouped TPE with the constant liar, over the newest trials (the default)",
    "frontier": "TPE on how to train, from stopped trials too; the density drawn where it adds most to the front",
    "random": "independent uniform draws: the baseline a guided search has to beat",
    "qmc": "scrambled Sobol points: random search's even-handedness, the space covered more evenly",
    "nsga2": "NSGA-II, with a population sized to the budget",
    "grid": "every combination of the categorical params once, in order",
}
DEFAULT_SAMPLER = "tpe"

PROMOTIONS: dict[str, str] = {
    "top": "a trial continues if it is in the top 1/eta of its rung by Pareto rank and crowding",
    "undominated": "a trial continues unless more than 1/eta^2 of its rung dominate it",
}
DEFAULT_PROMOTION = "top"
