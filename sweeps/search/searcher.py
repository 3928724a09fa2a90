"""Ray's OptunaSearch, made to tell Optuna the truth about trials that did not finish.

Ray 2.60 reports the last result of any ended trial as COMPLETE, so a trial
stopped early by ASHA enters the study (and the Pareto front) with its
half-trained accuracy, and an errored trial with its last values. Here only a
trial that reached the full budget is COMPLETE; stopped ones are PRUNED,
errored ones FAIL.

It also keeps the sweep recoverable from the study alone: every Optuna trial
records its Ray trial id, and the Optuna trials that were running when the
driver died but that Ray will not bring back (its snapshot is unreadable, or
older than them) are `adopt`ed: they run again with exactly their parameters,
under their own id, instead of being left RUNNING beside a newly sampled trial.
And a trial that started and finished between Ray's last snapshot and the crash
counts against the budget: once the study holds the sweep's `trials`, no more are
sampled.
"""

from __future__ import annotations

import pickle

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from sweeps.records.requeue import REQUEUED
from sweeps.search.frontier import LAST_RESULT

RAY_TRIAL_ID = "ray_trial_id"        # Optuna user attr: the Ray trial that ran this Optuna trial
RAY_TRIAL_LATEST = "ray_trial_latest"    # Optuna user attr: the Ray trial that runs it again after a recovery
RESUME_CHECKPOINT = "resume_checkpoint"  # Optuna user attr, set by recovery: where a re-queued trial continues
_LIVE_TRIALS = "_live_trial_ids"   # in a slim snapshot: Ray trial id -> Optuna storage id, for unfinished trials
CHAIN_OF, CHAIN_STEP = "chain_of", "chain_step"   # Optuna user attrs of a chain step's own trial (not of the budget)


class BudgetAwareOptunaSearch(OptunaSearch):
    def __init__(self, *args, budget: int, budget_key: str = "epoch", trials: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.budget = budget
        self.budget_key = budget_key
        self.trials = trials   # the sweep's trial budget, over every Ray experiment it has had
        self._adoptable: list[int] = []   # storage ids of Optuna trials to hand to the next new Ray trials

    def adopt(self, trials: list[optuna.trial.FrozenTrial]) -> None:
        """The next len(trials) Ray trials run these RUNNING Optuna trials again, params and all."""
        self._adoptable = [t._trial_id for t in trials]   # Optuna has no public handle to reattach to a trial

    def suggest(self, trial_id: str) -> dict | None:
        adopted = None
        if self._adoptable and trial_id not in self._ot_trials:
            # Suggesting a param the trial already holds returns the held value: the same config.
            self._ot_trials[trial_id] = adopted = optuna.Trial(self._ot_study, self._adoptable.pop(0))
        elif trial_id not in self._ot_trials and self._study_is_full():
            return Searcher.FINISHED
        config = super().suggest(trial_id)
        trial = self._ot_trials[trial_id]
        original = trial.user_attrs.get(RAY_TRIAL_ID) if adopted else None
        if original is None:
            trial.set_user_attr(RAY_TRIAL_ID, trial_id)
            return config
        trial.set_user_attr(RAY_TRIAL_LATEST, trial_id)
        link = {"trial_id": original}
        if trial.user_attrs.get(RESUME_CHECKPOINT):
            link["checkpoint"] = trial.user_attrs[RESUME_CHECKPOINT]
        return {**config, REQUEUED: link}

    def _study_is_full(self) -> bool:
        """The study already holds the sweep's budget of started trials (Ray may know fewer after a restore)."""
        if getattr(self, "trials", None) is None:   # a searcher pickled before the budget was kept
            return False
        started = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                   optuna.trial.TrialState.FAIL)
        trials = self._ot_study.get_trials(deepcopy=False, states=started)
        return sum(CHAIN_OF not in t.user_attrs for t in trials) >= self.trials

    def save(self, checkpoint_path: str) -> None:
        """Ray snapshots the searcher every few seconds. OptunaSearch pickles its whole study (the storage's cache
        of every trial) and an Optuna Trial for every trial ever run: a snapshot that grew with the sweep, 40% of
        the driver's time at 5,000 trials. The study lives in its own storage, so the snapshot keeps ids only."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("_ot_study", "_ot_trials", "_steps_told")}
        state[_LIVE_TRIALS] = {ray_id: trial._trial_id for ray_id, trial in self._ot_trials.items()}
        with open(checkpoint_path, "wb") as file:
            pickle.dump(state, file)

    def restore(self, checkpoint_path: str) -> None:
        """Ray's snapshot can be older than the study: the Optuna trials started since are unknown to Ray,
        which would sample others in their place and leave them RUNNING. The restored searcher adopts them."""
        super().restore(checkpoint_path)   # the study: the one this searcher was built with (tuner.pkl)
        live = self.__dict__.pop(_LIVE_TRIALS, None)
        if live is not None:   # a slim snapshot (an older one holds the Trial objects themselves)
            self._ot_trials = {ray_id: optuna.Trial(self._ot_study, storage_id) for ray_id, storage_id in live.items()}
        known = {trial.number for trial in self._ot_trials.values()}
        self.adopt([t for t in self._ot_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                    if t.number not in known])

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if result.get("step_end") and result.get(self.budget_key, 0) < self.budget:   # a chain's step, not its last
            self._tell_step(trial_id, result)
        super().on_trial_result(trial_id, result)

    def _tell_step(self, trial_id: str, result: dict) -> None:
        """A chain's finished step enters the study as a trial of its own (its trial's params, the step's values),
        so the sampler learns from every step. Once per (trial, step): a trial resumed from an earlier
        checkpoint reports the step again."""
        trial = self._ot_trials.get(trial_id)
        metrics = self._metric if isinstance(self._metric, list) else [self._metric]
        if trial is None or not all(isinstance(result.get(m), (int, float)) for m in metrics):
            return
        key = (trial.user_attrs.get(RAY_TRIAL_ID, trial_id), int(result["chain_step"]))
        if key in self._steps_in_study():
            return
        self._ot_study.add_trial(optuna.trial.create_trial(
            params=trial.params, distributions=trial.distributions, values=[float(result[m]) for m in metrics],
            user_attrs={CHAIN_OF: key[0], CHAIN_STEP: key[1]}))
        self._steps_told.add(key)

    def _steps_in_study(self) -> set[tuple[str, int]]:
        """The chain steps in the study; read from it once per driver (the snapshot leaves them out)."""
        if getattr(self, "_steps_told", None) is None:
            self._steps_told = {(t.user_attrs[CHAIN_OF], t.user_attrs[CHAIN_STEP])
                                for t in self._ot_study.get_trials(deepcopy=False) if CHAIN_OF in t.user_attrs}
        return self._steps_told

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        trial = self._ot_trials.get(trial_id)
        if trial is not None and self._settled(trial):
            # Settled already: by reconciling after a crash, from the row the killed driver had written.
            self._completed_trials.add(trial_id)
            self._ot_trials.pop(trial_id)
            return
        finished = bool(result) and not error and result.get(self.budget_key, 0) >= self.budget
        if trial is not None and result and not error and not finished:   # stopped: where it got to, for frontier
            self._keep_last_result(trial, result)
        # OptunaSearch turns "no values, no error" into PRUNED and "no values, error" into FAIL.
        super().on_trial_complete(trial_id, result if finished else None, error)
        if trial is not None and self._settled(trial):   # told (a failed tell leaves it RUNNING, and known to Ray)
            self._ot_trials.pop(trial_id)   # Ray never reports on it again, and snapshots stay small

    def _keep_last_result(self, trial: optuna.Trial, result: dict) -> None:
        first = self._metric[0] if isinstance(self._metric, list) else self._metric
        if self.budget_key in result and isinstance(result.get(first), (int, float)):
            trial.set_user_attr(LAST_RESULT, [result[self.budget_key], float(result[first])])

    def _settled(self, trial: optuna.Trial) -> bool:
        return self._ot_study._storage.get_trial(trial._trial_id).state.is_finished()
