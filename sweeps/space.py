"""Search spaces as data: YAML files validated on load, compiled to an Optuna define-by-run function.

A space holds every choice a sweep makes: what is searched (params, optionally conditional), what is
held fixed (the training budget included), what is optimised and what each trial may use. Loading
checks all of it against weightmom's own registries and configs, so a typo fails in a second as
`file: key: expected ...` rather than as 64 errored trials on a GPU cluster an hour later.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pydantic
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

import search_spaces
from weightmom.config import LR_SCHEDULES, OPTIMIZERS, TrainConfig, build, merge
from weightmom.data import DATASETS
from weightmom.errors import UsageError
from weightmom.models import MODELS
from weightmom.pruning import METHODS, pruner_config

if TYPE_CHECKING:
    import optuna

__all__ = ["REPORTED_METRICS", "SPACES_DIR", "EarlyStopping", "Objective", "ParamSpec", "Resources",
           "SearchSpace", "find_space", "load_space", "shipped_spaces"]

REPORTED_METRICS: tuple[str, ...] = ("test_accuracy", "test_loss", "train_loss", "density", "compression_ratio")
SPACES_DIR: Path = Path(search_spaces.__file__).parent
DEFAULT_OBJECTIVES = ({"metric": "test_accuracy", "mode": "max"}, {"metric": "density", "mode": "min"})
AUTO_EARLY_STOPPING_EPOCHS = 6   # below this, ASHA has too few rungs to be worth its noise
# Schedule knobs count epochs of the real budget: a smoke test (1 epoch) drops them.
SCHEDULE_KNOBS = ("pruner.prune_start", "pruner.prune_end", "pruner.prune_every")
TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "pruner")
REGISTRIES: dict[str, Any] = {"method": METHODS, "model": MODELS, "dataset": DATASETS,
                              "optimizer": OPTIMIZERS, "lr_schedule": LR_SCHEDULES}


class _Invalid(Exception):
    """A semantic error at a key path; load_space prefixes the file name."""


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise ValueError("expected a scalar (string, number, bool or null)")


def _scalars(value: Any) -> tuple:
    return tuple(_scalar(v) for v in (value if isinstance(value, list) else [value]))


def _auto_or_bool(value: Any) -> Any:
    if value == "auto" or isinstance(value, bool):
        return value
    raise ValueError("expected auto, true or false")


Scalar = Annotated[Any, AfterValidator(_scalar)]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Param(_Schema):
    when: dict[str, Annotated[Any, AfterValidator(_scalars)]] = {}

    def contains(self, value: Any) -> bool:
        raise NotImplementedError

    def samples(self) -> list[tuple[str, Any]]:
        """(key suffix, value) pairs at the edges of the domain, checked against the configs on load."""
        raise NotImplementedError


class _Numeric(_Param):
    log: StrictBool = False

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            return False
        steps = 0.0 if self.step is None else (value - self.low) / self.step
        return abs(steps - round(steps)) < 1e-9

    def samples(self) -> list[tuple[str, Any]]:
        return [("low", self.low), ("high", self.high)]


class FloatParam(_Numeric):
    type: Literal["float"]
    low: StrictFloat
    high: StrictFloat
    step: StrictFloat | None = None

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)


class IntParam(_Numeric):
    type: Literal["int"]
    low: StrictInt
    high: StrictInt
    step: StrictInt | None = None

    def suggest(self, trial: Any, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log, step=self.step or 1)


class CategoricalParam(_Param):
    type: Literal["categorical"]
    choices: list[Scalar]

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))

    def contains(self, value: Any) -> bool:
        return any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in self.choices)

    def samples(self) -> list[tuple[str, Any]]:
        return [(f"choices.{i}", c) for i, c in enumerate(self.choices)]


class FixedParam(_Param):
    """A constant that applies only where its `when` holds (a plain constant belongs in `fixed`)."""

    type: Literal["fixed"]
    value: Scalar

    def contains(self, value: Any) -> bool:
        return value == self.value

    def samples(self) -> list[tuple[str, Any]]:
        return [("value", self.value)]


ParamSpec = Annotated[FloatParam | IntParam | CategoricalParam | FixedParam, Field(discriminator="type")]
_PARAM_TYPES = {"float": FloatParam, "int": IntParam, "categorical": CategoricalParam, "fixed": FixedParam}


class _ObjectiveRaw(_Schema):
    metric: str
    mode: Literal["max", "min"]


class _ResourcesRaw(_Schema):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


class _EarlyStoppingRaw(_Schema):
    enabled: Annotated[Any, AfterValidator(_auto_or_bool)] = "auto"
    grace_period: StrictInt | None = Field(None, ge=1)   # None: a quarter of the budget
    reduction_factor: StrictFloat = Field(3.0, gt=1)


class _RawSpace(_Schema):
    name: str | None = None
    description: str = ""
    trials: StrictInt = Field(ge=1)
    concurrency: StrictInt = Field(1, ge=1)
    resources: _ResourcesRaw = _ResourcesRaw()
    objectives: list[_ObjectiveRaw] = [_ObjectiveRaw(**o) for o in DEFAULT_OBJECTIVES]
    early_stopping: _EarlyStoppingRaw = _EarlyStoppingRaw()
    storage_path: str | None = None
    fixed: dict[str, Any] = {}
    params: dict[str, ParamSpec]
    start_points: list[dict[str, Any]] = []

    @pydantic.field_validator("early_stopping", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, (bool, str)) else value


@dataclass(frozen=True)
class Objective:
    metric: str
    mode: str   # "max" | "min"


@dataclass(frozen=True)
class EarlyStopping:
    enabled: bool            # already resolved from auto
    grace_period: int        # epochs before ASHA may stop a trial
    reduction_factor: float


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
    fixed: dict              # flat TrainConfig keys (pruner.* dotted) -> constant
    params: dict[str, ParamSpec]
    start_points: tuple[dict, ...]

    @property
    def metrics(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def modes(self) -> list[str]:
        return [o.mode for o in self.objectives]

    @property
    def epochs(self) -> int:
        """The budget: fixed epochs, else a searched epochs' upper bound, else TrainConfig's default."""
        if "epochs" in self.fixed:
            return int(self.fixed["epochs"])
        if "epochs" in self.params:
            return int(max(v for _, v in self.params["epochs"].samples()))
        return TrainConfig().epochs

    def define_by_run(self, trial: optuna.Trial) -> dict:
        """Suggest the params in order, skipping those whose `when` fails; return the constants.

        Ray's OptunaSearch calls this with a recording stand-in for the trial and merges the returned
        constants into the trial config, so it must stay free of any computation.
        """
        taken: dict[str, Any] = {}
        constants = dict(self.fixed)
        for name, spec in self.params.items():
            if all(name_ in taken and taken[name_] in values for name_, values in spec.when.items()):
                if isinstance(spec, FixedParam):
                    taken[name] = constants[name] = spec.value
                else:
                    taken[name] = spec.suggest(trial, name)
        return constants

    def train_config(self, flat: dict) -> TrainConfig:
        """A trial's flat config (`pruner.window` keys) -> a TrainConfig whose pruner knobs fit its method."""
        values: dict[str, Any] = {}
        for key, value in flat.items():
            merge(values, key, value)
        config = build(TrainConfig, values)
        pruner_config(config.method, config.target_density, config.pruner)
        return config

    def with_overrides(self, **changes: Any) -> SearchSpace:
        """The same space with some fields replaced, e.g. trials and concurrency from CLI flags."""
        for key in ("trials", "concurrency"):
            if key in changes and not (isinstance(changes[key], int) and changes[key] >= 1):
                raise UsageError(f"{_label(self.path)}: {key}: expected an integer >= 1, got {changes[key]!r}")
        return dataclasses.replace(self, **changes)

    def smoke_test(self) -> SearchSpace:
        """At most 2 trials of 1 epoch, no early stopping; schedule knobs (in epochs) fall to defaults."""
        drop = {"epochs", *SCHEDULE_KNOBS}
        return dataclasses.replace(
            self, trials=min(self.trials, 2),
            fixed={**{k: v for k, v in self.fixed.items() if k not in drop}, "epochs": 1},
            params={k: v for k, v in self.params.items() if k not in drop},
            start_points=tuple({k: v for k, v in p.items() if k not in drop} for p in self.start_points),
            early_stopping=dataclasses.replace(self.early_stopping, enabled=False))


# --------------------------------------------------------------------------- finding and reading files

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


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-5` as a float (YAML 1.1 insists on `1.0e-5`)."""


_EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))


def _read(path: Path, label: str) -> dict:
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark, problem = getattr(err, "problem_mark", None), getattr(err, "problem", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise UsageError(f"{label}: not valid YAML ({where}{problem or str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{label}: expected a mapping of search space keys, got {type(data).__name__}")
    return data


def _pydantic_error(err: pydantic.ValidationError) -> str:
    """The first pydantic error as `key.path: expected ..., got ...` (tags of the param union dropped)."""
    first, more = err.errors()[0], len(err.errors()) - 1
    loc = list(first["loc"])
    model = {"resources": _ResourcesRaw, "early_stopping": _EarlyStoppingRaw, "objectives": _ObjectiveRaw}.get(
        loc[0] if len(loc) > 1 else None, _RawSpace)
    if loc[:1] == ["params"] and len(loc) > 2:
        model = _PARAM_TYPES[loc.pop(2)]
    if first["type"] == "extra_forbidden":
        keys = sorted(model.model_fields, key=lambda k: k != "type")  # a param's type first
        message = f"unknown key; expected one of: {', '.join(keys)}"
    elif first["type"] == "missing":
        message = "missing required key"
    elif first["type"].startswith("union_tag"):
        given = first["input"].get("type")
        message = f"expected type: one of {', '.join(_PARAM_TYPES)}, got {given!r}" if given is not None \
            else f"missing type; expected one of {', '.join(_PARAM_TYPES)}"
    elif first["type"] in ("model_attributes_type", "dict_type", "model_type"):
        message = f"expected a mapping, got {first['input']!r}"
    else:
        message = first["msg"].removeprefix("Value error, ")
        message = f"{message[0].lower()}{message[1:]}, got {first['input']!r}"
    suffix = f" (and {more} more error{'s' * (more > 1)})" if more else ""
    return f"{'.'.join(map(str, loc))}: {message}{suffix}"


# --------------------------------------------------------------------------- semantic checks

def _flatten_fixed(fixed: dict) -> dict:
    flat = {k: v for k, v in fixed.items() if k != "pruner"}
    if "pruner" in fixed:
        if not isinstance(fixed["pruner"], dict):
            raise _Invalid("fixed.pruner: expected a mapping of pruner knobs")
        flat.update({f"pruner.{k}": v for k, v in fixed["pruner"].items()})
    return flat


def _possible_methods(raw: _RawSpace, fixed: dict) -> list[str]:
    """The methods trials can run, checked first: every knob check depends on them."""
    spec = raw.params.get("method")
    if spec is None:
        named = [("fixed.method", fixed.get("method", TrainConfig().method))]
    elif isinstance(spec, (CategoricalParam, FixedParam)):
        named = [(f"params.method.{suffix}", value) for suffix, value in spec.samples()]
    else:
        raise _Invalid("params.method: expected type categorical or fixed (method names)")
    for key, method in named:
        if method not in METHODS:
            raise _Invalid(f"{key}: unknown method {method!r}; choose from: {', '.join(METHODS)}")
    return [method for _, method in named]


def _knobs(method: str) -> set[str]:
    """The pruner.* knobs `method` accepts: its config's fields, less density and what the method fixes."""
    return {f.name for f in dataclasses.fields(METHODS[method].config)} - {"density", *METHODS[method].fixed}


def _knob_takers(knob: str, methods: list[str]) -> list[str]:
    return [m for m in methods if knob in _knobs(m)]


def _check_name(key: str, name: str, methods: list[str]) -> None:
    """`name` is a TrainConfig field or a pruner knob that every method in `methods` accepts."""
    head, dotted, knob = name.partition(".")
    if name == "pruner" or (dotted and head != "pruner"):
        raise _Invalid(f"{key}: expected a TrainConfig field or pruner.<knob>; nested keys exist only under pruner")
    if not dotted:
        if name not in TRAIN_FIELDS:
            raise _Invalid(f"{key}: unknown key; expected a TrainConfig field ({', '.join(TRAIN_FIELDS)}) "
                           f"or pruner.<knob>")
        return
    if knob == "density":
        raise _Invalid(f"{key}: the target density is the top-level key 'density', not pruner.density")
    takers = _knob_takers(knob, methods)
    if not takers:
        valid = sorted(set().union(*map(_knobs, methods)))
        raise _Invalid(f"{key}: unknown pruner knob for method {', '.join(methods)}; "
                       f"valid knobs: {', '.join(valid) or 'none'}")
    if len(takers) < len(methods):
        others = [m for m in methods if m not in takers]
        when = f"when: {{method: [{', '.join(takers)}]}}"
        hint = f"add {when}" if key.startswith("params.") else f"move it to params: {{type: fixed, value: ..., {when}}}"
        raise _Invalid(f"{key}: method {', '.join(others)} does not take this knob; {hint}")


def _reason(err: UsageError, name: str) -> str:
    """A weightmom error without the key it starts with, when the caller's key path already names it."""
    return str(err).removeprefix(f"{name}: ")


def _check_value(key: str, name: str, value: Any, methods: list[str]) -> None:
    """Registry names must exist; other values must pass TrainConfig's or each method config's checks.

    TrainConfig checks each field on its own, so one key at a time pins any error on the right key.
    """
    try:
        if name in REGISTRIES and value not in REGISTRIES[name]:
            raise UsageError(f"unknown {name} {value!r}; choose from: {', '.join(REGISTRIES[name])}")
        if name.startswith("pruner."):
            for method in _knob_takers(name.removeprefix("pruner."), methods):
                pruner_config(method, 0.1, {name.removeprefix("pruner."): value})
        else:
            build(TrainConfig, {name: value})
        if name == "density":  # e.g. dense keeps every weight: a searched density would fail its trials
            for method in methods:
                pruner_config(method, value)
    except UsageError as err:
        raise _Invalid(f"{key}: {_reason(err, name)}") from None


def _check_fixed(fixed: dict, methods: list[str]) -> None:
    for name, value in fixed.items():
        _check_name(f"fixed.{name}", name, methods)
        _check_value(f"fixed.{name}", name, value, methods)


def _check_bounds(key: str, spec: _Param) -> None:
    if isinstance(spec, _Numeric):
        if spec.low >= spec.high:
            raise _Invalid(f"{key}.low: expected a number below high ({spec.high}), got {spec.low}")
        if spec.log and spec.low <= 0:
            raise _Invalid(f"{key}.low: log scale needs low > 0, got {spec.low}")
        if spec.step is not None and spec.step <= 0:
            raise _Invalid(f"{key}.step: expected a step > 0, got {spec.step}")
        if spec.log and spec.step is not None and (isinstance(spec, FloatParam) or spec.step != 1):
            raise _Invalid(f"{key}.step: Optuna cannot combine log with a step, got step {spec.step}")
    if isinstance(spec, CategoricalParam):
        if not spec.choices:
            raise _Invalid(f"{key}.choices: expected a non-empty list")
        if len(set(map(repr, spec.choices))) < len(spec.choices):
            raise _Invalid(f"{key}.choices: expected distinct choices, got {spec.choices}")


def _reachable(name: str, spec: _Param, reach: dict[str, list[str]], methods: list[str]) -> list[str]:
    """The methods under which `name` can be sampled: its own condition and its conditions' conditions."""
    allowed = [m for m in methods if "method" not in spec.when or m in spec.when["method"]]
    for other in spec.when:
        allowed = [m for m in allowed if m in reach[other]]
    if not allowed:
        raise _Invalid(f"params.{name}.when: can never hold for the space's methods ({', '.join(methods)})")
    return allowed


def _check_params(raw: _RawSpace, fixed: dict, methods: list[str]) -> None:
    reach: dict[str, list[str]] = {}
    for name, spec in raw.params.items():
        key = f"params.{name}"
        if name in fixed:
            raise _Invalid(f"{key}: also set in fixed; a key is either searched or fixed")
        for other, values in spec.when.items():
            if other not in reach:
                raise _Invalid(f"{key}.when.{other}: expected an earlier param (params are sampled in order); "
                               f"earlier: {', '.join(reach) or 'none'}")
            for value in values:
                if not raw.params[other].contains(value):
                    raise _Invalid(f"{key}.when.{other}: {value!r} is not a value params.{other} can take")
        _check_bounds(key, spec)
        reach[name] = _reachable(name, spec, reach, methods)
        _check_name(key, name, reach[name])
        for suffix, value in spec.samples():
            _check_value(f"{key}.{suffix}", name, value, reach[name])


def _numbers(raw: _RawSpace, fixed: dict, name: str) -> tuple[str, list[float]]:
    """Where `name` is set and the numeric values it can take there."""
    where, values = (f"params.{name}", [v for _, v in raw.params[name].samples()]) if name in raw.params \
        else (f"fixed.{name}", [fixed.get(name)])
    return where, [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _check_schedule(raw: _RawSpace, fixed: dict) -> None:
    """Epoch-unit schedule knobs must fit the fixed budget and each other, or such trials fail at setup."""
    if "epochs" in raw.params or "pruner.unit" in raw.params or fixed.get("pruner.unit", "epoch") != "epoch":
        return
    epochs = fixed.get("epochs", TrainConfig().epochs)
    (_, starts), (end_key, ends) = _numbers(raw, fixed, "pruner.prune_start"), _numbers(raw, fixed, "pruner.prune_end")
    if ends and max(ends) > epochs:
        raise _Invalid(f"{end_key}: expected at most the budget of {epochs} epochs, got {max(ends)}")
    if starts and ends and max(starts) > min(ends):
        raise _Invalid(f"{end_key}: expected at least pruner.prune_start's largest value ({max(starts)}), "
                       f"got {min(ends)}")


def _check_start_point(index: int, point: dict, raw: _RawSpace, fixed: dict) -> None:
    for name, value in point.items():
        key = f"start_points.{index}.{name}"
        if name not in raw.params:
            what = "a fixed key" if name in fixed else "unknown"
            raise _Invalid(f"{key}: {what}; start points set searched params only ({', '.join(raw.params)})")
        spec = raw.params[name]
        if not spec.contains(value):
            domain = ", ".join(f"{k} {v!r}" for k, v in spec.samples())
            raise _Invalid(f"{key}: expected a value in params.{name} ({domain}), got {value!r}")
        for other, values in spec.when.items():
            if other in point and point[other] not in values:
                raise _Invalid(f"{key}: never sampled when {other} is {point[other]!r} "
                               f"(when: {other} in {list(values)})")


def _objectives(raw: _RawSpace) -> tuple[Objective, ...]:
    if not 1 <= len(raw.objectives) <= 3:
        raise _Invalid(f"objectives: expected 1 to 3 objectives, got {len(raw.objectives)}")
    seen: set[str] = set()
    for i, o in enumerate(raw.objectives):
        if o.metric not in REPORTED_METRICS:
            raise _Invalid(f"objectives.{i}.metric: no trial reports {o.metric!r}; "
                           f"reported: {', '.join(REPORTED_METRICS)}")
        if o.metric in seen:
            raise _Invalid(f"objectives.{i}.metric: duplicate objective {o.metric!r}")
        seen.add(o.metric)
    return tuple(Objective(o.metric, o.mode) for o in raw.objectives)


def _early_stopping(raw: _RawSpace, fixed: dict) -> EarlyStopping:
    """Resolve auto: ASHA compares trials at shared epochs, so it needs a fixed budget of some length."""
    es, epochs = raw.early_stopping, fixed.get("epochs", TrainConfig().epochs)
    if es.enabled is True and "epochs" in raw.params:
        raise _Invalid("early_stopping.enabled: ASHA needs a fixed budget, but params.epochs is searched")
    enabled = es.enabled if es.enabled != "auto" else (
        "epochs" not in raw.params and epochs >= AUTO_EARLY_STOPPING_EPOCHS)
    # Before pruning ends, a denser trial is ahead just for being dense: compare only after the last prune_end.
    _, ends = _numbers(raw, fixed, "pruner.prune_end")
    pruning_done = math.ceil(max(ends)) if ends else round(0.75 * epochs)
    grace = es.grace_period if es.grace_period is not None else pruning_done
    if enabled and grace >= epochs:
        raise _Invalid(f"early_stopping.grace_period: expected fewer than the {epochs} epochs, got {grace}")
    if enabled and grace < pruning_done and fixed.get("pruner.unit", "epoch") == "epoch":
        raise _Invalid(f"early_stopping.grace_period: expected at least {pruning_done} (the latest prune_end), "
                       f"so trials are compared at their final density; got {grace}")
    return EarlyStopping(enabled, grace, es.reduction_factor)


def _compile(raw: _RawSpace, path: Path) -> SearchSpace:
    fixed = _flatten_fixed(raw.fixed)
    methods = _possible_methods(raw, fixed)
    _check_fixed(fixed, methods)
    _check_params(raw, fixed, methods)
    for i, point in enumerate(raw.start_points):
        _check_start_point(i, point, raw, fixed)
    _check_schedule(raw, fixed)
    early_stopping = _early_stopping(raw, fixed)
    return SearchSpace(
        name=raw.name or path.stem, path=path, description=raw.description, trials=raw.trials,
        concurrency=raw.concurrency, resources=Resources(raw.resources.cpu, raw.resources.gpu),
        objectives=_objectives(raw), early_stopping=early_stopping, storage_path=raw.storage_path,
        fixed=fixed, params=dict(raw.params), start_points=tuple(dict(p) for p in raw.start_points))


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Read, validate and compile a space; every problem is one UsageError line naming file and key."""
    path = find_space(str(name_or_path))
    label = _label(path)
    try:
        return _compile(_RawSpace.model_validate(_read(path, label)), path)
    except pydantic.ValidationError as err:
        raise UsageError(f"{label}: {_pydantic_error(err)}".replace("\n", " ")) from None
    except _Invalid as err:
        raise UsageError(f"{label}: {err}".replace("\n", " ")) from None
