"""Pydantic models of the env and agent YAML files: all validation happens here.

Every error names the field, the value and what is allowed, e.g.
``envs/x.yaml: market.fill.A = -1.0: Input should be greater than 0``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lobgym import presets
from lobgym.rewards import validate_term
from lobgym.spaces import FEATURES


class ConfigError(ValueError):
    """A config file or dict failed validation; the message names field, value and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


# ------------------------------------------------------------------------------------------ market
class FillConfig(_Strict):
    """Fills of a quote at depth delta arrive with intensity A * exp(-k * delta)."""

    rule: Literal["paper", "poisson"] = "poisson"
    A: float = Field(gt=0, description="arrival intensity of market orders reaching the mid, per unit time")
    k: float = Field(gt=0, description="decay of the fill intensity with depth")


class MeanReversion(_Strict):
    kappa: float = Field(gt=0, description="Ornstein–Uhlenbeck mean-reversion speed")
    theta: float = Field(description="long-run level")


class Jumps(_Strict):
    rate: float = Field(ge=0, description="jumps per unit time")
    mean: float = 0.0
    std: float = Field(0.0, ge=0)


class Fees(_Strict):
    per_unit: float = Field(0.0, description="maker fee per filled lot; negative = rebate")
    rate: float = Field(0.0, gt=-1, lt=1, description="maker fee per traded value; negative = rebate")


class InventoryConfig(_Strict):
    initial: int | tuple[int, int] = Field(0, description="q0, or [low, high] to draw q0 uniformly")
    limit: int | None = Field(None, gt=0, description="|q| bound: a side stops quoting at it")

    @model_validator(mode="after")
    def _check(self) -> InventoryConfig:
        low, high = self.bounds
        if low > high:
            raise ValueError(f"initial = [{low}, {high}]: low must be <= high")
        if self.limit is not None and max(abs(low), abs(high)) > self.limit:
            raise ValueError(f"initial = {self.initial}: must lie within the limit +/-{self.limit}")
        return self

    @property
    def bounds(self) -> tuple[int, int]:
        return (self.initial, self.initial) if isinstance(self.initial, int) else tuple(self.initial)


class ReducedFormMarket(_Strict):
    """Arithmetic Brownian mid (optional drift, OU mean reversion, jumps) and exponential fills."""

    kind: Literal["reduced_form"] = "reduced_form"
    s0: float = Field(100.0, description="initial mid-price")
    sigma: float = Field(ge=0, description="volatility, price units per sqrt(time)")
    drift: float = 0.0
    noise: Literal["normal", "binomial"] = "normal"
    mean_reversion: MeanReversion | None = None
    jumps: Jumps | None = None
    horizon: float = Field(gt=0, description="episode length T")
    dt: float = Field(gt=0, description="step length")
    fill: FillConfig
    tick_size: float | None = Field(None, gt=0)
    fees: Fees = Fees()
    inventory: InventoryConfig = InventoryConfig()

    @model_validator(mode="after")
    def _check(self) -> ReducedFormMarket:
        steps = self.horizon / self.dt
        if abs(steps - round(steps)) > 1e-6 * max(1.0, steps) or round(steps) < 1:
            raise ValueError(f"horizon / dt = {self.horizon} / {self.dt} = {steps:g}: must be a whole number >= 1")
        if self.fill.rule == "poisson" and self.fill.A * self.dt > 50:
            raise ValueError(
                f"fill.A * dt = {self.fill.A * self.dt:g}: the poisson rule needs at most 50 expected fills "
                "per step at depth 0; use a smaller dt"
            )
        return self

    @property
    def n_steps(self) -> int:
        return int(round(self.horizon / self.dt))


# ------------------------------------------------------------------------------- actions, obs, reward
class SizesConfig(_Strict):
    max_size: int = Field(gt=0, description="largest quote size in lots")


class ActionConfig(_Strict):
    max_depth: float = Field(gt=0, description="depth quoted at action +1, price units")
    sizes: SizesConfig | None = Field(None, description="when set, actions also choose quote sizes")
    clip: bool = Field(False, description="clip actions outside [-1, 1] instead of raising")


FeatureName = Literal[tuple(FEATURES)]  # type: ignore[valid-type]


class ObservationConfig(_Strict):
    features: list[FeatureName] = Field(default_factory=lambda: ["inventory", "time_left"], min_length=1)
    inventory_scale: float = Field(10.0, gt=0, description="inventory divisor when no limit is set")

    @field_validator("features")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dupes = sorted({f for f in v if v.count(f) > 1})
        if dupes:
            raise ValueError(f"features {dupes} listed twice; each feature may appear once")
        return v


class RewardTermConfig(_Strict):
    term: str
    weight: float = 1.0
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> RewardTermConfig:
        validate_term(self.term, self.params, where="")  # the error's location already names reward[j]
        return self


class EnvConfig(_Strict):
    """A market-making environment: market, action codec, observation and reward."""

    name: str = "custom"
    description: str = ""
    market: ReducedFormMarket
    action: ActionConfig
    observation: ObservationConfig = ObservationConfig()
    reward: list[RewardTermConfig] = Field(default_factory=lambda: [RewardTermConfig(term="pnl")], min_length=1)

    @property
    def inventory_scale(self) -> float:
        limit = self.market.inventory.limit
        return float(limit) if limit is not None else self.observation.inventory_scale


# ------------------------------------------------------------------------------------------ agents
class AvellanedaStoikovParams(_Strict):
    gamma: float = Field(gt=0, description="risk aversion")
    symmetric: bool = Field(False, description="centre the AS spread on the mid (the paper's benchmark)")


class GueantParams(_Strict):
    gamma: float = Field(gt=0, description="risk aversion")
    inventory_bound: int | None = Field(None, gt=0, description="stop quoting a side at |q| = bound")


class CarteaJaimungalParams(_Strict):
    phi: float | None = Field(None, ge=0, description="running inventory penalty; default: from the env reward")
    alpha: float | None = Field(None, ge=0, description="terminal inventory penalty; default: from the env reward")
    inventory_bound: int = Field(20, gt=0, description="solve on q in [-bound, bound]; a side stops at the bound")


class FixedSpreadParams(_Strict):
    half_spread: float = Field(ge=0, description="depth quoted on both sides")


class RandomParams(_Strict):
    seed: int = Field(0, ge=0)


BASELINE_PARAMS: dict[str, type[_Strict]] = {
    "avellaneda_stoikov": AvellanedaStoikovParams,
    "gueant": GueantParams,
    "cartea_jaimungal": CarteaJaimungalParams,
    "fixed_spread": FixedSpreadParams,
    "random": RandomParams,
}


class AgentConfig(_Strict):
    """An agent preset: which agent and its parameters."""

    name: str = "custom"
    description: str = ""
    kind: Annotated[str, Field(description="agent kind")]
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> AgentConfig:
        if self.kind not in BASELINE_PARAMS:
            raise ValueError(f"kind = {self.kind!r}: unknown agent; known: {', '.join(BASELINE_PARAMS)}")
        model = BASELINE_PARAMS[self.kind]
        try:
            model.model_validate(self.params)
        except ValidationError as err:
            # Re-raised as a ValueError so the message carries the path under params and the kind.
            first = err.errors()[0]
            field = ".".join(str(x) for x in first["loc"])
            shown = "" if first["type"] == "missing" else f" = {first.get('input')!r}"
            takes = ", ".join(model.model_fields)
            raise ValueError(
                f"params.{field}{shown}: {first['msg']} (kind {self.kind!r} takes: {takes})"
            ) from None
        return self

    @property
    def typed_params(self) -> _Strict:
        return BASELINE_PARAMS[self.kind].model_validate(self.params)


# ----------------------------------------------------------------------------------------- loading
def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``X``, ``X | None`` or ``list[X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _fields_at(model: type[BaseModel] | None, loc: tuple) -> list[str] | None:
    """Field names accepted by the (nested) model that holds the item at ``loc``, if it can be found."""
    for key in loc[:-1]:
        if isinstance(key, int):
            continue  # a list index: the items' model is the list's
        field = model.model_fields.get(key) if model is not None else None
        if field is None:
            return None
        model = _model_in(field.annotation)
    return list(model.model_fields) if model is not None else None


def _format(err: ValidationError, source: str, model: type[BaseModel] | None = None) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(f"[{x}]" if isinstance(x, int) else str(x) for x in e["loc"]).replace(".[", "[")
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            allowed = _fields_at(model, tuple(e["loc"]))
            if allowed:
                msg += f"; allowed: {', '.join(allowed)}"
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" = {value!r}"
        lines.append(f"{loc}{shown}: {msg}" if loc else msg)  # top-level validator messages name their field
    return f"{source}: " + "; ".join(lines)


def _load(model: type[BaseModel], kind: str, spec: Any) -> Any:
    if isinstance(spec, model):
        return spec
    source = "config"
    if isinstance(spec, str | Path):
        try:
            path = presets.resolve(kind, spec)
        except (ValueError, FileNotFoundError) as err:
            raise ConfigError(str(err)) from None
        source = str(path)
        data = presets.read_yaml(path)
        data.setdefault("name", path.stem)
    elif isinstance(spec, dict):
        data = spec
    else:
        raise ConfigError(f"config = {spec!r}: expected a preset name, a YAML path, or a dict")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format(err, source, model)) from None


def load_env_config(spec: str | Path | dict | EnvConfig) -> EnvConfig:
    """An :class:`EnvConfig` from a preset name (``"as2008"``), a YAML path, a dict or a config."""
    return _load(EnvConfig, "envs", spec)


def load_agent_config(spec: str | Path | dict | AgentConfig) -> AgentConfig:
    """An :class:`AgentConfig` from a preset name, a YAML path, a dict or a config."""
    return _load(AgentConfig, "agents", spec)


