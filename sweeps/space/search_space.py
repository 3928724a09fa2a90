"""Search spaces as data: YAML files validated on load, compiled to an Optuna define-by-run function.

A space holds every choice a sweep makes: what is searched (params, optionally conditional), what is
held fixed (the training budget included), what is optimised and what each trial may use. Loading
checks all of it against weightmom's own registries and configs, so a typo fails in a second as
`file: key: expected ...` rather than as 64 errored trials on a GPU cluster an hour later.

This module is the public API; the file format lives in space_schema and the checks in space_checks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic

import search_spaces
from sweeps.space.checks import (
    chain_fixed,
    check_fixed,
    check_frontier,
    check_objectives,
    check_params,
    check_sources,
    check_start_point,
    final_density_epochs,
    flatten_fixed,
    possible_methods,
    resolve_early_stopping,
)
from sweeps.space.grid import grid_points
from sweeps.space.schema import (
    CategoricalParam,
    FixedParam,
    FloatParam,
    IntParam,
    Invalid,
    ParamSpec,
    RawSpace,
    pydantic_message,
    read_space_file,
)
from weightmom import contract
from weightmom.chain import ChainPlan, plan_of
from weightmom.contract import TrainConfig
from weightmom.errors import UsageError

if TYPE_CHECKING:
    import optuna

__all__ = ["SPACES_DIR", "CategoricalParam", "EarlyStopping", "FixedParam", "FloatParam",
           "IntParam", "Objective", "ParamSpec", "Resources", "SearchSpace", "find_space", "load_space",
           "shipped_spaces"]

SPACES_DIR: Path = Path(search_spaces.__file__).parent


@dataclass(frozen=True)
class Objective:
    metric: str
    mode: str   # "max" | "min"


@dataclass(frozen=True)
class EarlyStopping:
    enabled: bool            # already resolved from auto
    grace_period: int        # epochs before ASHA may stop a trial
    reduction_factor: float
    promotion: str = "top"   # MO-ASHA's rule; a default, so that a space pickled before it still loads


@dataclass(frozen=True)
class Resources:
    cpu: float
    gpu: float


@dataclass(frozen=True)
class SearchSpace:
    name: str
    path: Path
    description: str
    trials: int
    concurrency: int
    resources: Resources
    objectives: tuple[Objective, ...]
    early_stopping: EarlyStopping
    storage_path: str | None
    fixed: dict              # flat TrainConfig keys (pruner.*, model_args.* dotted) -> constant
    params: dict[str, ParamSpec]
    start_points: tuple[dict, ...]   # for a grid: every combination, in order
    sampler: str = "tpe"

    @property
    def metrics(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def modes(self) -> list[str]:
        return [o.mode for o in self.objectives]

    @property
    def epochs(self) -> int:
        """The budget: fixed epochs, else a searched epochs' upper bound, else TrainConfig's default; a chain's
        further steps on top."""
        return self.first_step_epochs + self.fixed.get("chain_epochs", 0) * len(self.fixed.get("chain", ()))

    @property
    def first_step_epochs(self) -> int:
        """The epochs a trial trains to its density (all of them, but for a chain's further steps)."""
        if "epochs" in self.fixed:
            return int(self.fixed["epochs"])
        if "epochs" in self.params:
            return int(max(v for _, v in self.params["epochs"].samples()))
        return contract.default_value("epochs")

    @property
    def chain_plan(self) -> ChainPlan | None:
        """When each step of the space's chain ends (None: its trials are no chains)."""
        if not self.fixed.get("chain"):
            return None
        densities = (self.fixed["density"], *self.fixed["chain"])
        return plan_of(densities, self.first_step_epochs, self.fixed["chain_epochs"])

    def define_by_run(self, trial: optuna.Trial) -> dict:
        """Suggest the params in order, skipping those whose `when` fails; return the constants.

        Ray's OptunaSearch calls this with a recording stand-in for the trial and merges the returned
        constants into the trial config, so it must stay free of any computation.
        """
        taken: dict[str, Any] = {}
        constants = dict(self.fixed)
        for name, spec in self.params.items():
            if spec.applies(taken):
                if isinstance(spec, FixedParam):
                    taken[name] = constants[name] = spec.value
                else:
                    taken[name] = spec.suggest(trial, name)
        return constants

    def train_config(self, flat: dict) -> TrainConfig:
        """A trial's flat config (`pruner.window` keys) -> a TrainConfig whose pruner knobs fit its method."""
        return contract.config_from_flat(flat)

    def with_overrides(self, **changes: Any) -> SearchSpace:
        """The same space with some fields replaced, e.g. trials and concurrency from CLI flags."""
        for key in ("trials", "concurrency"):
            if key in changes and not (isinstance(changes[key], int) and changes[key] >= 1):
                raise UsageError(f"{_label(self.path)}: {key}: expected an integer >= 1, got {changes[key]!r}")
        if self.sampler == "grid" and changes.get("trials", 0) > len(self.start_points):
            raise UsageError(f"{_label(self.path)}: trials: the grid has {len(self.start_points)} combinations; "
                             f"{changes['trials']} trials would repeat some")
        return dataclasses.replace(self, **changes)

    def smoke_test(self) -> SearchSpace:
        """At most 2 trials of 1 epoch, no early stopping; schedule knobs (in epochs) fall to defaults."""
        drop = {"epochs", *contract.SCHEDULE_KNOBS}   # counted in epochs of the real budget
        return dataclasses.replace(
            self, trials=min(self.trials, 2),
            fixed={**{k: v for k, v in self.fixed.items() if k not in drop}, "epochs": 1,
                   **({"chain_epochs": 1} if "chain" in self.fixed else {})},
            params={k: v for k, v in self.params.items() if k not in drop},
            start_points=tuple({k: v for k, v in p.items() if k not in drop} for p in self.start_points),
            early_stopping=dataclasses.replace(self.early_stopping, enabled=False))


# --------------------------------------------------------------------------- finding, reading and compiling files

def shipped_spaces() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def find_space(name_or_path: str) -> Path:
    """An existing file, else a shipped space by name (`digits-quick` or `digits-quick.yaml`)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = SPACES_DIR / f"{str(name_or_path).removesuffix('.yaml')}.yaml"
    if path.name == str(name_or_path) and shipped.is_file():
        return shipped
    raise UsageError(f"search space not found: {name_or_path} (no such file, and not a shipped space; "
                     f"shipped: {', '.join(shipped_spaces())})")


def _label(path: Path) -> str:
    """How errors name a file: search_spaces/x.yaml for shipped ones, else relative to the cwd if inside."""
    if path.resolve().parent == SPACES_DIR.resolve():
        return f"search_spaces/{path.name}"
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _compile(raw: RawSpace, path: Path, import_code: bool) -> SearchSpace:
    fixed = flatten_fixed(raw.fixed)
    fixed |= chain_fixed(raw, fixed, possible_methods(raw, fixed))
    if isinstance(fixed.get("data_dir"), str) and "://" not in fixed["data_dir"]:
        # Trials run in Ray workers with another working directory: a relative folder means the driver's.
        # A URI (s3://, file://) stays as written: each node copies it once (weightmom.data.node_copy).
        fixed["data_dir"] = str(Path(fixed["data_dir"]).expanduser().resolve())
    methods = possible_methods(raw, fixed)
    check_fixed(fixed, methods)
    check_params(raw, fixed, methods)
    if import_code:
        check_sources(raw, fixed)
    for i, point in enumerate(raw.start_points):
        check_start_point(i, point, raw, fixed)
    final_epochs = final_density_epochs(raw, fixed, methods)
    try:
        enabled, grace_period = resolve_early_stopping(raw, fixed, final_epochs)
    except Invalid:
        if import_code:
            raise
        # A finished sweep's own copy, accepted by the version that ran it: pareto, best and table read the
        # folder whatever today's early-stopping rules would say of it.
        enabled, grace_period = False, raw.early_stopping.grace_period or 1
    early_stopping = EarlyStopping(enabled, grace_period, raw.early_stopping.reduction_factor,
                                   raw.early_stopping.promotion)
    check_objectives(raw, fixed)
    check_frontier(raw)
    trials, start_points = _trials_and_points(raw)
    return SearchSpace(
        name=raw.name or path.stem, path=path, description=raw.description, trials=trials, sampler=raw.sampler,
        concurrency=raw.concurrency, resources=Resources(raw.resources.cpu, raw.resources.gpu),
        objectives=tuple(Objective(o.metric, o.mode) for o in raw.objectives), early_stopping=early_stopping,
        storage_path=raw.storage_path, fixed=fixed, params=dict(raw.params),
        start_points=start_points)


def _trials_and_points(raw: RawSpace) -> tuple[int, tuple[dict, ...]]:
    """The trial budget and the points enqueued first: a grid's combinations, else the start points."""
    if raw.sampler != "grid":
        if raw.trials is None:
            raise Invalid("trials: missing required key (only a grid sampler defaults it, to the grid's size)")
        return raw.trials, tuple(dict(p) for p in raw.start_points)
    if raw.start_points:
        raise Invalid("start_points: a grid runs every combination already; remove start_points")
    points = grid_points(dict(raw.params))
    if raw.trials is not None and raw.trials > len(points):
        raise Invalid(f"trials: the grid has {len(points)} combinations; {raw.trials} trials would repeat some")
    return raw.trials or len(points), tuple(points)


def load_space(name_or_path: str | Path, import_code: bool = True) -> SearchSpace:
    """Read, validate and compile a space; every problem is one UsageError line naming file and key.

    `import_code=False` is for a finished sweep's own copy, checked when the sweep started: it skips
    importing the user's models and loaders (read where that code may not be), and early-stopping
    settings that today's rules refuse are read as off rather than refused.
    """
    path = find_space(str(name_or_path))
    label = _label(path)
    try:
        return _compile(RawSpace.model_validate(read_space_file(path, label)), path, import_code)
    except pydantic.ValidationError as err:
        raise UsageError(f"{label}: {pydantic_message(err)}".replace("\n", " ")) from None
    except Invalid as err:
        raise UsageError(f"{label}: {err}".replace("\n", " ")) from None
