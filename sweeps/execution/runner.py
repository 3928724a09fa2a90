"""`weightmom sweep`: Ray Tune runs the trials, Optuna chooses them, SweepRecorder keeps the books.

Traps this design handles (measured with Ray 2.60 and Optuna 5.0):
(a) metric/mode on TuneConfig silently makes the search single-objective: they
    go to the searcher (and the scheduler) only;
(b) early-stopped trials would reach Optuna as COMPLETE: BudgetAwareOptunaSearch;
(c) Optuna's TPE is not multivariate for several objectives unless asked.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

import optuna
import ray
from mlflow.entities import Param
from mlflow.tracking import MlflowClient
from ray import tune

from sweeps.bookkeeping.recorder import SweepRecorder
from sweeps.execution import ray_patches, ray_session, recovery
from sweeps.execution.code_dir import runtime_env
from sweeps.execution.reconcile import ORPHANED, reconcile
from sweeps.execution.storage import check_shared, default_storage, ensure_local
from sweeps.execution.trial import CHAIN_KEEP, run_trial
from sweeps.records.folder import MLFLOW_ARTIFACTS, MLFLOW_PENDING, OPTUNA_DB, TRIALS
from sweeps.records.lock import LOCK_FILE, SweepLock
from sweeps.records.mlflow_client import ResilientClient, check_reachable, default_tracking_uri
from sweeps.records.mlflow_ui import ensure_experiment
from sweeps.records.partial import set_aside_partial, set_aside_unreadable_table
from sweeps.records.results import ResultsTable, recorded_name
from sweeps.records.state import SPACE_COPY, SWEEP_STATE_FILE, SweepState, write_state
from sweeps.search.samplers import make_sampler
from sweeps.search.schedulers import TargetValue, make_scheduler
from sweeps.search.searcher import BudgetAwareOptunaSearch
from sweeps.space.search_space import SearchSpace
from weightmom.contract import metric
from weightmom.errors import UsageError, require
from weightmom.files import atomic_write


@dataclass(frozen=True)
class SweepOptions:
    out: Path
    trials: int | None = None          # overrides the space's
    concurrency: int | None = None     # overrides the space's
    tracking_uri: str | None = None    # default: sqlite in `out`
    address: str | None = None         # Ray cluster address ("auto" on a cluster's head); None: local
    storage_path: str | None = None    # trial checkpoints; default: the space's, else `out`/ray
    resume: bool = False
    smoke_test: bool = False
    reuse_actors: bool = True
    max_failures: int = 1              # retries of a failed trial (node loss); divergence fails again fast
    seed: int = 0
    verbose: int = 1
    code_dir: Path | None = None       # the user's modules, shipped to every trial (see sweeps.execution.code_dir)


@dataclass(frozen=True)
class Plan:
    """A checked sweep that has written nothing yet."""

    space: SearchSpace
    tracking_uri: str
    storage: str
    state: SweepState | None   # set when resuming


def plan(space: SearchSpace, options: SweepOptions) -> Plan:
    """Every check that needs no Ray and writes nothing: a bad request fails here, at once."""
    out = options.out
    state_file = out / SWEEP_STATE_FILE
    if options.resume:
        require(state_file.is_file(), f"--resume: {out} holds no sweep to resume ({SWEEP_STATE_FILE} missing)")
        state = SweepState(**json.loads(state_file.read_text()))
        require(state.space == space.name,
                f"--resume: {out} holds a sweep of space {state.space!r}, not {space.name!r}")
        space = replace(space.smoke_test() if state.smoke_test else space,
                        trials=state.trials, concurrency=state.concurrency, sampler=state.sampler)
        check_reachable(state.tracking_uri)
        return Plan(space, state.tracking_uri, state.storage, state)
    require(not state_file.exists(), f"{out} already holds a sweep; pass --resume to continue it, or another --out")
    if options.smoke_test:
        space = space.smoke_test()
    space = space.with_overrides(**{k: v for k, v in (("trials", options.trials),
                                                      ("concurrency", options.concurrency)) if v is not None})
    require(space.trials >= 1 and space.concurrency >= 1, "--trials and --concurrency must be >= 1")
    uri = options.tracking_uri or default_tracking_uri(out)
    check_reachable(uri)
    return Plan(space, uri, options.storage_path or space.storage_path or default_storage(out), None)


def start_records(plan: Plan, options: SweepOptions) -> SweepState:
    """Create the parent run, the sweep folder and its state file (or return the resumed state)."""
    if plan.state is not None:
        return plan.state
    space, out, uri = plan.space, options.out, plan.tracking_uri
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    client = MlflowClient(uri)
    artifacts = (out.resolve() / MLFLOW_ARTIFACTS).as_uri() if options.tracking_uri is None else None
    experiment_id = ensure_experiment(client, space, artifacts)
    parent = client.create_run(experiment_id, run_name=f"{space.name} sweep ({out.name})",
                               tags={"sweep_dir": str(out.resolve()), "space_file": str(space.path)})
    client.log_batch(parent.info.run_id, params=_params({
        "space": space.name, "sampler": space.sampler, "trials": space.trials, "concurrency": space.concurrency,
        "objectives": ", ".join(f"{o.metric} {o.mode}" for o in space.objectives), "storage": plan.storage,
        "early_stopping": space.early_stopping.enabled,
        **{f"fixed.{recorded_name(k)}": v for k, v in space.fixed.items()}}))
    client.log_artifact(parent.info.run_id, str(space.path), "space")
    state = SweepState(space.name, uri, experiment_id, parent.info.run_id, f"sqlite:///{out.resolve() / OPTUNA_DB}",
                       plan.storage, f"{space.name}-{parent.info.run_id[:8]}", space.trials, space.concurrency,
                       options.smoke_test, space.sampler)
    text = space.path.read_text()
    atomic_write(out / SPACE_COPY, lambda tmp: Path(tmp).write_text(text))
    write_state(out, state)
    return state


def _params(values: dict) -> list[Param]:
    return [Param(k, str(v)) for k, v in values.items()]


def make_searcher(space: SearchSpace, state: SweepState, seed: int) -> BudgetAwareOptunaSearch:
    return BudgetAwareOptunaSearch(
        space=space.define_by_run, metric=space.metrics, mode=space.modes,
        sampler=make_sampler(space.sampler, space.trials, seed),
        storage=optuna.storages.RDBStorage(state.optuna_storage), study_name=space.name,
        points_to_evaluate=[dict(p) for p in space.start_points] or None, budget=space.epochs, trials=space.trials)


TargetDensity = TargetValue   # the name MO-ASHA's density reader was pickled under in older snapshots


def make_reporter(space: SearchSpace) -> tune.CLIReporter:
    metrics = {"epoch": "epoch", **{m: _header(m) for m in space.metrics}}
    return tune.CLIReporter(metric_columns=metrics, parameter_columns=list(space.params)[:6],
                            max_report_frequency=15, max_progress_rows=12)


def _header(name: str) -> str:
    entry = metric(name)
    return entry.header if entry is not None else name


def run_sweep(space: SearchSpace, options: SweepOptions) -> list[dict]:
    """Run (or resume) the sweep; returns the rows of trials.parquet. One driver per folder: see records/lock.py."""
    SweepLock(options.out).probe()   # a held folder: the holder's line first, whatever else is wrong
    plan(space, options)   # a bad request fails here, before even the folder's lock file is written
    fresh = not options.out.exists()
    try:
        with SweepLock(options.out):
            moved = None if options.resume else set_aside_partial(options.out)
            if moved:
                print(f"weightmom: {moved}", file=sys.stderr, flush=True)
            return _run_held(space, options)
    except UsageError:
        if fresh:   # refused before anything but the lock was written (e.g. local storage on a cluster)
            remove_if_only_lock(options.out)
        raise


def remove_if_only_lock(out: Path) -> None:
    """A folder this driver made that holds nothing but its released lock file is removed: bad input writes nothing."""
    lock = out / LOCK_FILE
    if out.is_dir() and [p.name for p in out.iterdir()] == [LOCK_FILE]:
        lock.unlink()
        out.rmdir()


def _run_held(space: SearchSpace, options: SweepOptions) -> list[dict]:
    checked = plan(space, options)   # again, under the lock: the folder cannot change from here on
    space = checked.space
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the trimmed CLIReporter below, not the verbose default
    # Snapshot the experiment at most every 2 s, not at every step (measured: 7% of a digits sweep's wall
    # time, and a snapshot being uploaded, open to a torn write, 3% of it) nor every 10+ s (Ray's default:
    # after a crash Ray resumes from a state 5 s old on average). benchmarks/snapshot_cost.py, README.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    ray_patches.bound_snapshot_cost()   # ... and at most ~5% of the driver's time however many trials
    ray_patches.write_snapshots_after_uploads()   # ... each written only once the last is uploaded
    require(options.code_dir is None or not ray.is_initialized(),
            "--code-dir: Ray is already initialised in this process, so the sweep cannot ship the code")
    if options.resume:
        ray_session.end_leftovers(options.out)
        ray_patches.tolerate_deleted_checkpoints()
        _say(set_aside_unreadable_table(options.out))
    session_dir = start_ray(checked, options)
    resources = {"cpu": space.resources.cpu, "gpu": space.resources.gpu}
    check_shared(checked.storage, resources)
    state = start_records(checked, options)
    if session_dir:
        ray_session.record(options.out, session_dir)
    ensure_local(state.storage)
    trainable = tune.with_resources(tune.with_parameters(run_trial, space=space), resources)
    experiment = f"{state.storage.rstrip('/')}/{state.ray_experiment}"
    problem = recovery.snapshot_problem(experiment) if options.resume else None
    recorder = SweepRecorder(space, options.out.resolve(), state.tracking_uri, state.experiment_id,
                             state.parent_run_id, state.optuna_storage)
    if options.resume:
        _say(reconcile(space, state, options.out).message())
    if options.resume and problem is None:
        tuner = tune.Tuner.restore(experiment, trainable, resume_unfinished=True, resume_errored=False)
    elif options.resume:
        state, tuner = recovered_tuner(space, state, options, trainable, recorder, problem)
    else:
        tuner = make_tuner(space, state, options, trainable, make_searcher(space, state, options.seed), recorder,
                           space.trials)
    fit(tuner, recorder)
    if options.resume and problem is None:
        state = run_the_rest(space, state, options, trainable, recorder)
    return close_sweep(space, state, options.out)


def fit(tuner: tune.Tuner | None, recorder: SweepRecorder) -> None:
    if tuner is not None:
        tuner.fit()
    else:   # nothing left to run: only the closing books
        recorder.on_experiment_end(trials=[])


def run_the_rest(space: SearchSpace, state: SweepState, options: SweepOptions, trainable,
                 recorder: SweepRecorder) -> SweepState:
    """Ray's restored experiment ran what it knew; trials that no record holds run in a new one."""
    reconcile(space, state, options.out)
    settled = len(ResultsTable(options.out / TRIALS))
    if settled >= state.trials:
        return state
    why = f"Ray's experiment ended with {settled} of {state.trials} trials settled"
    state, tuner = recovered_tuner(space, state, options, trainable, recorder, why, why="the rest re-queued")
    fit(tuner, recorder)
    return state


def _say(message: str | None) -> None:
    if message:
        print(f"weightmom: {message}", file=sys.stderr, flush=True)


def start_ray(checked: Plan, options: SweepOptions) -> str | None:
    """Connect to Ray, or start a local one; returns the session folder of a local Ray started here."""
    if ray.is_initialized():
        return None
    # Workers learn the tracking server (unless it is this machine's loopback, which they could
    # not reach) and the checkpoint cadence from the job's runtime env.
    env = {k: os.environ[k] for k in ("WEIGHTMOM_CHECKPOINT_EVERY_S",) if k in os.environ}
    if urlparse(checked.tracking_uri).hostname not in ("127.0.0.1", "localhost", None):
        env["MLFLOW_TRACKING_URI"] = checked.tracking_uri
    # No --address means this machine alone: "local" starts a fresh Ray even if another one runs here
    # (plain ray.init() would silently join it). A cluster is joined only when asked, e.g. --address auto.
    context = ray.init(address=options.address or "local", include_dashboard=False,
                       log_to_driver=options.verbose > 1, configure_logging=False,
                       runtime_env=runtime_env(options.code_dir, env))
    return None if options.address else context.address_info["session_dir"]


def recovered_tuner(space: SearchSpace, state: SweepState, options: SweepOptions, trainable,
                    recorder: SweepRecorder, problem: str,
                    why: str = "snapshot unreadable") -> tuple[SweepState, tune.Tuner | None]:
    """A new Ray experiment for what the sweep's own records say is left (Ray's snapshot is unreadable)."""
    recovered = recovery.recover(space, state, options.out, problem, why)
    print(f"weightmom: {recovered.message()}", file=sys.stderr, flush=True)
    # The start points were enqueued in the study at the start; those not run yet still wait there. The seed
    # moves on: a sampler seeded as before would draw the configs the sweep's first trials drew, again.
    searcher = make_searcher(replace(space, start_points=()), state, options.seed + recovered.count)
    state = replace(state, ray_experiment=recovered.experiment)
    write_state(options.out, state)
    searcher.adopt(recovered.requeued)
    return state, make_tuner(space, state, options, trainable, searcher, recorder, recovered.to_run)


def close_sweep(space: SearchSpace, state: SweepState, out: Path) -> list[dict]:
    """Close the books of a sweep that settled its budget; one that ended short keeps them open for --resume."""
    table = ResultsTable(out / TRIALS)
    _say(reconcile(space, state, out, table).message())
    table.flush()   # rows a killed driver left in the journal only
    rows = table.rows()
    settled = len(rows) >= state.trials
    if settled:
        close_orphans(space, state)
        recovery.end_stray_runs(state, out, {r["trial_id"]: r for r in rows}, set(),
                                "the sweep ended without this trial reporting again")
    # Queued like every other write when the server is down: a finished sweep must not end in a traceback.
    ResilientClient(state.tracking_uri, out / MLFLOW_PENDING).set_terminated(
        state.parent_run_id, "FINISHED" if settled else "KILLED")
    return rows


def make_tuner(space: SearchSpace, state: SweepState, options: SweepOptions, trainable, searcher,
               recorder: SweepRecorder, samples: int) -> tune.Tuner | None:
    """A new Ray experiment of `samples` trials (None when there is nothing to run)."""
    if samples < 1:
        return None
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=make_scheduler(space), num_samples=samples,
                                    max_concurrent_trials=space.concurrency, reuse_actors=options.reuse_actors),
        run_config=tune.RunConfig(
            name=state.ray_experiment, storage_path=state.storage, callbacks=[recorder], verbose=options.verbose,
            progress_reporter=make_reporter(space),
            checkpoint_config=checkpoint_config(space),
            failure_config=tune.FailureConfig(max_failures=options.max_failures)),
    )


def checkpoint_config(space: SearchSpace) -> tune.CheckpointConfig:
    """Two, so the checkpoint named by the latest snapshot still exists after a crash; and a chain's every step,
    each a model that `best` and `export` may pick (ranked by the score its trial reports, sweeps.execution.trial)."""
    plan = space.chain_plan
    if plan is None:
        return tune.CheckpointConfig(num_to_keep=2)
    return tune.CheckpointConfig(num_to_keep=len(plan.densities) + 2, checkpoint_score_attribute=CHAIN_KEEP,
                                 checkpoint_score_order="max")


def close_orphans(space: SearchSpace, state: SweepState) -> None:
    """Optuna trials left RUNNING by a killed driver will never report: mark them FAIL."""
    study = optuna.load_study(study_name=space.name, storage=state.optuna_storage)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        optuna.Trial(study, trial._trial_id).set_user_attr(ORPHANED, True)   # not a trial of the budget: no row
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
