"""Ray's OptunaSearch, made to tell Optuna the truth about trials that did not finish.

Ray 2.60 reports the last result of any ended trial as COMPLETE, so a trial
stopped early by ASHA enters the study (and the Pareto front) with its
half-trained accuracy, and an errored trial with its last values. Here only a
trial that reached the full budget is COMPLETE; stopped ones are PRUNED,
errored ones FAIL.
"""

from __future__ import annotations

from ray.tune.search.optuna import OptunaSearch


class BudgetAwareOptunaSearch(OptunaSearch):
    def __init__(self, *args, budget: int, budget_key: str = "epoch", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.budget = budget
        self.budget_key = budget_key

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        finished = bool(result) and not error and result.get(self.budget_key, 0) >= self.budget
        # OptunaSearch turns "no values, no error" into PRUNED and "no values, error" into FAIL.
        super().on_trial_complete(trial_id, result if finished else None, error)
