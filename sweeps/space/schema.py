"""The search space file format: YAML reading and the pydantic models a file must fit.

Everything here is about shape (keys, types, scalars); whether the values make sense to weightmom is
space_checks' job. Errors come out as one line: `key.path: expected ..., got ...`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from sweeps.basis.registry import DEFAULT_PROMOTION, DEFAULT_SAMPLER, PROMOTIONS, SAMPLERS
from weightmom.errors import UsageError

SamplerName = Literal[tuple(SAMPLERS)]         # the choices, from the one registry
PromotionName = Literal[tuple(PROMOTIONS)]
DEFAULT_OBJECTIVES = ({"metric": "val_accuracy", "mode": "max"}, {"metric": "density", "mode": "min"})


class Invalid(Exception):
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


class Param(_Schema):
    when: dict[str, Annotated[Any, AfterValidator(_scalars)]] = {}

    def applies(self, taken: dict[str, Any]) -> bool:
        """Whether this param is drawn, given the params drawn before it: every `when` key matched."""
        return all(name in taken and taken[name] in values for name, values in self.when.items())

    def contains(self, value: Any) -> bool:
        raise NotImplementedError

    def samples(self) -> list[tuple[str, Any]]:
        """(key suffix, value) pairs at the edges of the domain, checked against the configs on load."""
        raise NotImplementedError


class NumericParam(Param):
    log: StrictBool = False

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            return False
        steps = 0.0 if self.step is None else (value - self.low) / self.step
        return abs(steps - round(steps)) < 1e-9

    def samples(self) -> list[tuple[str, Any]]:
        return [("low", self.low), ("high", self.high)]


class FloatParam(NumericParam):
    type: Literal["float"]
    low: StrictFloat
    high: StrictFloat
    step: StrictFloat | None = None

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)


class IntParam(NumericParam):
    type: Literal["int"]
    low: StrictInt
    high: StrictInt
    step: StrictInt | None = None

    def suggest(self, trial: Any, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log, step=self.step or 1)


class CategoricalParam(Param):
    type: Literal["categorical"]
    choices: list[Scalar]

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))

    def contains(self, value: Any) -> bool:
        return any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in self.choices)

    def samples(self) -> list[tuple[str, Any]]:
        return [(f"choices.{i}", c) for i, c in enumerate(self.choices)]


class FixedParam(Param):
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
    grace_period: StrictInt | None = Field(None, ge=1)   # None: when every trial has its final density
    reduction_factor: StrictFloat = Field(3.0, gt=1)
    promotion: PromotionName = DEFAULT_PROMOTION   # MO-ASHA's rule at a rung (sweeps/search/moasha.py)


class _ChainRaw(_Schema):
    """Each trial walks down `densities` (weightmom.chain): every step's end is a front point of its own."""

    densities: list[StrictFloat] = Field(min_length=2)   # densest first: the first is every trial's density
    epochs_per_step: StrictInt = Field(3, ge=1)          # after `fixed.epochs` to the first density
    lr_scale: StrictFloat = Field(0.3, gt=0, le=1)       # each further step's peak lr, as a fraction of lr


class RawSpace(_Schema):
    name: str | None = None
    description: str = ""
    trials: StrictInt | None = Field(None, ge=1)   # required, except for a grid (its size)
    sampler: SamplerName = DEFAULT_SAMPLER
    concurrency: StrictInt = Field(1, ge=1)
    resources: _ResourcesRaw = _ResourcesRaw()
    objectives: list[_ObjectiveRaw] = [_ObjectiveRaw(**o) for o in DEFAULT_OBJECTIVES]
    early_stopping: _EarlyStoppingRaw = _EarlyStoppingRaw()
    storage_path: str | None = None
    fixed: dict[str, Any] = {}
    params: dict[str, ParamSpec]
    start_points: list[dict[str, Any]] = []
    chain: _ChainRaw | None = None

    @pydantic.field_validator("early_stopping", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, (bool, str)) else value


# --------------------------------------------------------------------------- reading files

class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-5` as a float (YAML 1.1 insists on `1.0e-5`)."""


_EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))


def read_space_file(path: Path, label: str) -> dict:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError as err:
        raise UsageError(f"{label}: not a text file: a search space is UTF-8 YAML "
                         f"(byte 0x{err.object[err.start]:02x} at offset {err.start} is not UTF-8)") from None
    except yaml.YAMLError as err:
        mark, problem = getattr(err, "problem_mark", None), getattr(err, "problem", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise UsageError(f"{label}: not valid YAML ({where}{problem or str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{label}: expected a mapping of search space keys, got {type(data).__name__}")
    return data


def pydantic_message(err: pydantic.ValidationError) -> str:
    """The first pydantic error as `key.path: expected ..., got ...` (tags of the param union dropped)."""
    first, more = err.errors()[0], len(err.errors()) - 1
    loc = list(first["loc"])
    model = {"resources": _ResourcesRaw, "early_stopping": _EarlyStoppingRaw, "objectives": _ObjectiveRaw,
             "chain": _ChainRaw}.get(
        loc[0] if len(loc) > 1 else None, RawSpace)
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
