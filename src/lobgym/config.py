"""Pydantic models of the env and agent YAML files: all validation happens here.

Every error names the field, the value and what is allowed, e.g.
``envs/x.yaml: market.fill.A = -1.0: Input should be greater than 0``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lobgym import presets
from lobgym.book_spaces import BOOK_FEATURES
from lobgym.flow_config import FlowConfig, InformedConfig
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


class InitialBook(_Strict):
    """The book an episode's warm-up starts from: background orders on both sides of a 1-tick spread."""

    depth: int = Field(10, gt=0, description="price levels per side")
    orders_per_level: int = Field(3, gt=0, description="orders of flow.size lots at each level")


class Delay(_Strict):
    """A latency: constant, uniform on [low, high], or exponential with mean ``mean`` truncated at ``cap``."""

    dist: Literal["constant", "uniform", "exponential"] = "constant"
    value: float = Field(0.0, ge=0, description="the delay of dist: constant")
    low: float = Field(0.0, ge=0, description="lower end of dist: uniform")
    high: float = Field(0.0, ge=0, description="upper end of dist: uniform")
    mean: float = Field(0.0, ge=0, description="mean of the untruncated dist: exponential")
    cap: float = Field(0.0, ge=0, description="largest delay of dist: exponential (the draw is truncated there)")

    @model_validator(mode="after")
    def _check(self) -> Delay:
        if self.dist == "uniform" and self.low > self.high:
            raise ValueError(f"low = {self.low} > high = {self.high}: need low <= high")
        if self.dist == "exponential" and (self.mean <= 0 or self.cap <= 0):
            raise ValueError(f"mean = {self.mean}, cap = {self.cap}: dist exponential needs mean > 0 and cap > 0")
        return self

    @property
    def max(self) -> float:
        return {"constant": self.value, "uniform": self.high, "exponential": self.cap}[self.dist]


class LatencyConfig(_Strict):
    entry: Delay = Delay()
    cancel: Delay = Delay()
    observation: float = Field(0.0, ge=0, description="the agent sees the market as it was this long ago")


class FeeSchedule(_Strict):
    per_unit: float = Field(0.0, description="fee per lot traded; negative = rebate")
    rate: float = Field(0.0, gt=-1, lt=1, description="fee per traded value; negative = rebate")


class BookFees(_Strict):
    maker: FeeSchedule = FeeSchedule()
    taker: FeeSchedule = FeeSchedule()


class BookMarket(_Strict):
    """An L3 price-time-priority book driven by background order flow; the agent's orders sit in its queues."""

    kind: Literal["book"]
    tick_size: float = Field(0.01, gt=0, description="price of one tick")
    s0: float = Field(100.0, gt=0, description="initial mid-price (rounded to the tick grid)")
    horizon: float = Field(gt=0, description="episode length in seconds of flow")
    dt: float = Field(gt=0, description="seconds of flow per env step")
    warmup: float = Field(300.0, ge=0, description="seconds of background flow before each episode starts")
    levels: int = Field(200, ge=20, le=100_000, description="price levels kept in each book's window")
    max_orders: int = Field(1024, ge=64, le=1_000_000, description="resting orders a book can hold")
    initial_book: InitialBook = InitialBook()
    flow: FlowConfig
    informed: InformedConfig | None = None
    latency: LatencyConfig = LatencyConfig()
    fees: BookFees = BookFees()
    post_only: bool = Field(True, description="reject (not execute) agent limit orders that arrive marketable")
    inventory: InventoryConfig = InventoryConfig()

    @model_validator(mode="after")
    def _check(self) -> BookMarket:
        steps = self.horizon / self.dt
        if abs(steps - round(steps)) > 1e-6 * max(1.0, steps) or round(steps) < 1:
            raise ValueError(f"horizon / dt = {self.horizon} / {self.dt} = {steps:g}: must be a whole number >= 1")
        lat = self.latency
        for name, value in (("entry", lat.entry.max), ("cancel", lat.cancel.max), ("observation", lat.observation)):
            if value >= self.dt:
                raise ValueError(f"latency.{name} = {value:g} (largest delay): must be < dt = {self.dt:g}")
        s0_tick = self.s0 / self.tick_size
        if abs(s0_tick - round(s0_tick)) > 1e-6 * max(1.0, s0_tick):
            raise ValueError(f"s0 = {self.s0}: must be a multiple of tick_size = {self.tick_size}")
        if 2 * self.initial_book.depth + 2 > self.levels:
            raise ValueError(f"initial_book.depth = {self.initial_book.depth}: both sides must fit in the "
                             f"window of levels = {self.levels}")
        if 2 * self.initial_book.depth * self.initial_book.orders_per_level > self.max_orders // 2:
            raise ValueError(f"initial_book = {self.initial_book.depth} x {self.initial_book.orders_per_level}: "
                             f"must use at most half of max_orders = {self.max_orders}")
        return self

    @property
    def n_steps(self) -> int:
        return int(round(self.horizon / self.dt))

    @property
    def s0_tick(self) -> int:
        return int(round(self.s0 / self.tick_size))


# ------------------------------------------------------------------------------- actions, obs, reward
def _unique_features(v: list[str]) -> list[str]:
    dupes = sorted({f for f in v if v.count(f) > 1})
    if dupes:
        raise ValueError(f"features {dupes} listed twice; each feature may appear once")
    return v


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

    _unique = field_validator("features")(classmethod(lambda cls, v: _unique_features(v)))


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


class BookActionConfig(_Strict):
    """How ``Box(-1, 1)`` actions map to the agent's orders in a book market (see :mod:`lobgym.book_spaces`)."""

    reference: Literal["mid", "touch"] = Field(
        "mid", description="offsets count from the nearest tick on each side of the mid, or from the best quotes")
    max_offset: int = Field(10, gt=0, le=10_000, description="offset in ticks at action +1 (0 at action -1)")
    max_size: int = Field(5, gt=0, description="largest quote size in lots (a size of 0 withdraws the side)")
    market_order: int = Field(0, ge=0, description="when > 0, a 5th action sends market orders of up to this many lots")
    clip: bool = Field(False, description="clip actions outside [-1, 1] instead of raising")


BookFeatureName = Literal[tuple(BOOK_FEATURES)]  # type: ignore[valid-type]


class BookObservationConfig(_Strict):
    features: list[BookFeatureName] = Field(
        default_factory=lambda: ["inventory", "time_left", "spread", "depth", "imbalance", "returns", "queue"],
        min_length=1)
    depth_levels: int = Field(5, gt=0, le=50, description="levels per side in the depth feature")
    returns: int = Field(5, gt=0, le=100, description="recent one-step mid returns in the returns feature")
    depth_scale: float = Field(10.0, gt=0, description="lots that map to 1.0 in depth and queue features")
    return_scale: float = Field(5.0, gt=0, description="ticks of mid move that map to 1.0 in the returns feature")
    inventory_scale: float = Field(10.0, gt=0, description="inventory divisor when no limit is set")

    _unique = field_validator("features")(classmethod(lambda cls, v: _unique_features(v)))


class BookEnvConfig(_Strict):
    """A market-making environment on an order-book market."""

    name: str = "custom"
    description: str = ""
    market: BookMarket
    action: BookActionConfig = BookActionConfig()
    observation: BookObservationConfig = BookObservationConfig()
    reward: list[RewardTermConfig] = Field(default_factory=lambda: [RewardTermConfig(term="pnl")], min_length=1)

    @property
    def inventory_scale(self) -> float:
        limit = self.market.inventory.limit
        return float(limit) if limit is not None else self.observation.inventory_scale


AnyEnvConfig = EnvConfig | BookEnvConfig


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


class BookQuoterParams(_Strict):
    offset: int = Field(0, ge=0, description="ticks from the reference quote (action.reference) on both sides")
    size: int = Field(1, gt=0, description="lots per side")
    skew: float = Field(0.0, ge=0, description="ticks the quotes move away from the inventory's side per lot held")
    max_inventory: int | None = Field(None, gt=0, description="stop adding to the position at |q| = max_inventory")


BASELINE_PARAMS: dict[str, type[_Strict]] = {
    "avellaneda_stoikov": AvellanedaStoikovParams,
    "gueant": GueantParams,
    "cartea_jaimungal": CarteaJaimungalParams,
    "fixed_spread": FixedSpreadParams,
    "random": RandomParams,
    "book_quoter": BookQuoterParams,
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


# -------------------------------------------------------------------------- learning-rate control
#: Signals an LR rule can watch: SB3's training logs, finished training episodes, evaluations.
LR_SIGNALS = ("approx_kl", "loss", "value_loss", "policy_loss", "clip_fraction", "actor_loss", "critic_loss",
              "train_return", "train_pnl", "eval_return", "eval_sharpe", "eval_pnl")
LRSignal = Literal[LR_SIGNALS]  # type: ignore[valid-type]


class ConstantBase(_Strict):
    kind: Literal["constant"]
    lr: float = Field(gt=0)


class LinearBase(_Strict):
    kind: Literal["linear"]
    start: float = Field(gt=0)
    end: float = Field(ge=0)


class CosineBase(_Strict):
    kind: Literal["cosine"]
    peak: float = Field(gt=0)
    end: float = Field(0.0, ge=0)
    warmup: float = Field(0.0, ge=0, lt=1, description="fraction of training spent warming up")


class CyclicBase(_Strict):
    kind: Literal["cyclic"]
    low: float = Field(gt=0)
    high: float = Field(gt=0)
    cycles: float = Field(4.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> CyclicBase:
        if self.low > self.high:
            raise ValueError(f"low = {self.low} > high = {self.high}: need low <= high")
        return self


class KLTargetRule(_Strict):
    kind: Literal["kl_target"]
    signal: Literal["approx_kl"] = "approx_kl"
    target: float = Field(0.01, gt=0)
    band: float = Field(1.5, gt=1)
    factor: float = Field(1.5, gt=1)


class PlateauRule(_Strict):
    kind: Literal["plateau"]
    signal: LRSignal = "eval_return"
    mode: Literal["min", "max"] = "max"
    patience: int = Field(3, ge=0)
    cooldown: int = Field(0, ge=0)
    threshold: float = Field(0.0, ge=0, description="absolute improvement that counts, in the signal's units")
    factor: float = Field(0.5, gt=0, lt=1)


class BoldDriverRule(_Strict):
    kind: Literal["bold_driver"]
    signal: LRSignal = "train_return"
    smoothing: float = Field(0.9, ge=0, lt=1)
    grow: float = Field(1.05, ge=1)
    cut: float = Field(0.5, gt=0, le=1)
    tolerance: float = Field(0.0, ge=0)


class DivergenceGuardRule(_Strict):
    kind: Literal["divergence_guard"]
    signal: LRSignal = "loss"
    max_ratio: float = Field(10.0, gt=1)
    cut: float = Field(0.1, gt=0, lt=1)
    cooldown: int = Field(10, ge=0)
    reload_best: bool = Field(False, description="lobgym train: also reload the best model's weights and "
                                                 "optimizer state when the guard fires")


class LRControlConfig(_Strict):
    """``learning_rate:`` of a training preset when it adapts: a time base and rules (lobgym.agents.lr_control)."""

    base: Annotated[ConstantBase | LinearBase | CosineBase | CyclicBase, Field(discriminator="kind")]
    rules: list[Annotated[KLTargetRule | PlateauRule | BoldDriverRule | DivergenceGuardRule,
                          Field(discriminator="kind")]] = Field(default_factory=list)
    lr_min: float = Field(1e-7, gt=0)
    lr_max: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> LRControlConfig:
        if self.lr_min > self.lr_max:
            raise ValueError(f"lr_min = {self.lr_min} > lr_max = {self.lr_max}: need lr_min <= lr_max")
        return self


def load_lr_control(spec: dict | LRControlConfig, source: str = "learning_rate") -> LRControlConfig:
    """Validate a learning-rate control spec; errors name the field under ``source``."""
    if isinstance(spec, LRControlConfig):
        return spec
    try:
        return LRControlConfig.model_validate(spec)
    except ValidationError as err:
        raise ConfigError(_format(err, source, LRControlConfig)) from None


# ---------------------------------------------------------------------------------------- training
ALGORITHMS = ("ppo", "sac")

#: Constructor arguments of each algorithm a preset may set under ``hyperparams`` (the others --
#: policy, env, learning_rate, policy_kwargs, seed, logging -- are set by lobgym from the preset).
HYPERPARAMS: dict[str, tuple[str, ...]] = {
    "ppo": ("n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda", "clip_range", "clip_range_vf",
            "normalize_advantage", "ent_coef", "vf_coef", "max_grad_norm", "use_sde", "sde_sample_freq",
            "target_kl", "stats_window_size"),
    "sac": ("buffer_size", "learning_starts", "batch_size", "tau", "gamma", "train_freq", "gradient_steps",
            "optimize_memory_usage", "n_steps", "ent_coef", "target_update_interval", "target_entropy", "use_sde",
            "sde_sample_freq", "use_sde_at_warmup", "stats_window_size"),
}

#: ``optimizer.name`` -> the torch optimizer and the keyword arguments a preset may pass to it.
OPTIMIZERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "adam": ("Adam", ("betas", "eps", "weight_decay", "amsgrad")),
    "adamw": ("AdamW", ("betas", "eps", "weight_decay", "amsgrad")),
    "rmsprop": ("RMSprop", ("alpha", "eps", "weight_decay", "momentum", "centered")),
}

Scalar = float | int | bool | str | None
HyperValue = Scalar | list[Scalar]


class PolicyConfig(_Strict):
    """The networks: SB3's ``MlpPolicy`` with these hidden layers and activation."""

    net_arch: list[int] | dict[str, list[int]] = Field(
        default_factory=lambda: [64, 64],
        description="hidden sizes shared by actor and critic, or {pi: [...], vf: [...]} (PPO) / {pi, qf} (SAC)")
    activation: Literal["tanh", "relu", "elu", "leaky_relu"] = "tanh"
    log_std_init: float | None = Field(None, description="initial log std of the Gaussian policy")
    ortho_init: bool | None = Field(None, description="orthogonal initialisation (PPO)")

    @field_validator("net_arch")
    @classmethod
    def _sizes(cls, v):
        layers = v if isinstance(v, list) else [x for sizes in v.values() for x in sizes]
        if any(x < 1 for x in layers):
            raise ValueError(f"layer sizes {layers}: must be >= 1")
        if isinstance(v, dict) and not set(v) <= {"pi", "vf", "qf"}:
            raise ValueError(f"keys {sorted(v)}: allowed: pi, vf (PPO), qf (SAC)")
        return v


class OptimizerConfig(_Strict):
    name: Literal["adam", "adamw", "rmsprop"] = "adam"
    kwargs: dict[str, HyperValue] = Field(default_factory=dict, description="keyword arguments of the optimizer")

    @model_validator(mode="after")
    def _check(self) -> OptimizerConfig:
        allowed = OPTIMIZERS[self.name][1]
        for k in self.kwargs:
            if k not in allowed:
                raise ValueError(f"kwargs.{k}: not an argument of {OPTIMIZERS[self.name][0]}; "
                                 f"allowed: {', '.join(allowed)} (lr comes from learning_rate)")
        return self


class NormalizeConfig(_Strict):
    """Running normalisation of observations and rewards (SB3's ``VecNormalize``)."""

    obs: bool = False
    reward: bool = False
    clip_obs: float = Field(10.0, gt=0)
    clip_reward: float = Field(10.0, gt=0)


class TrainEvalConfig(_Strict):
    """Periodic deterministic evaluation on held-out market seeds, the same ones at every evaluation."""

    every: int = Field(10_000, gt=0, description="timesteps between evaluations")
    episodes: int = Field(100, gt=0, description="episodes per evaluation")
    seed: int = Field(1_000_000, ge=0, description="episode j runs on market seed seed + j (held out from training)")
    baselines: list[str] | None = Field(None, description="baseline presets evaluated on the same seeds; "
                                                          "null = the env's default baselines")
    metric: Literal["return", "pnl", "sharpe"] = Field("return", description="what 'best model' maximises")


class CheckpointConfig(_Strict):
    every: int = Field(20_000, gt=0, description="timesteps between checkpoints")
    keep: int = Field(2, gt=0, description="checkpoints kept on disk (the newest)")


class TrainingConfig(_Strict):
    """A training preset (zoo-style): algorithm, networks, batch of envs, hyperparameters, optimizer,
    learning rate (a number or a controller spec), evaluation and checkpoints."""

    name: str = "custom"
    description: str = ""
    kind: Literal["ppo", "sac"]
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    n_envs: int = Field(8, gt=0, description="envs stepped together (one batched MarketMakingVecEnv)")
    normalize: NormalizeConfig = Field(default_factory=NormalizeConfig)
    hyperparams: dict[str, HyperValue] = Field(default_factory=dict)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    learning_rate: float | LRControlConfig = Field(
        3e-4, description="a fixed rate, or a controller: {base, rules, lr_min, lr_max}")
    timesteps: int = Field(100_000, gt=0, description="default training budget (lobgym train --timesteps overrides)")
    eval: TrainEvalConfig = Field(default_factory=TrainEvalConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    torch_threads: int = Field(1, gt=0, description="torch CPU threads (1 is fastest for small MLPs)")

    @field_validator("learning_rate", mode="before")
    @classmethod
    def _controller(cls, v):
        # A mapping is a controller; validating it here keeps the union's "not a float" noise out of errors.
        if isinstance(v, dict):
            try:
                return LRControlConfig.model_validate(v)
            except ValidationError as err:
                msg = _format(err, "learning_rate", LRControlConfig).removeprefix("learning_rate: ")
                raise ValueError(msg) from None
        if isinstance(v, bool) or not isinstance(v, int | float | LRControlConfig) or (
                not isinstance(v, LRControlConfig) and not v > 0):
            raise ValueError("allowed: a number > 0, or a controller mapping {base, rules, lr_min, lr_max}")
        return v

    @model_validator(mode="after")
    def _check(self) -> TrainingConfig:
        allowed = HYPERPARAMS[self.kind]
        for k in self.hyperparams:
            if k not in allowed:
                raise ValueError(f"hyperparams.{k}: not a {self.kind.upper()} hyperparameter here; "
                                 f"allowed: {', '.join(allowed)}")
        return self


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


def _model_names() -> set[str]:
    """Class names of every pydantic model defined so far (pydantic uses them as union tags)."""
    stack, names = [BaseModel], set()
    while stack:
        for sub in stack.pop().__subclasses__():
            names.add(sub.__name__)
            stack.append(sub)
    return names


def _format(err: ValidationError, source: str, model: type[BaseModel] | None = None) -> str:
    # drop union members' tags (``list[...]``, ``function-after[...]``, a model class name) from the
    # locations: they are not fields or keys the user wrote
    models = _model_names()
    errors = [e | {"loc": tuple(x for x in e["loc"] if not (isinstance(x, str) and ("[" in x or x in models)))}
              for e in err.errors()]
    # a value that failed every member of a union: drop the members whose very type did not match
    # ("Input should be a valid dictionary") when another member got further into it
    errors = [e for e in errors if not (e["type"].endswith("_type") and any(
        o is not e and not o["type"].endswith("_type") and o["loc"][:len(e["loc"])] == e["loc"] for o in errors))]
    lines: list[str] = []
    for e in errors:
        loc = ".".join(f"[{x}]" if isinstance(x, int) else str(x) for x in e["loc"]).replace(".[", "[")
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            allowed = _fields_at(model, tuple(e["loc"]))
            if allowed:
                msg += f"; allowed: {', '.join(allowed)}"
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" = {value!r}"
        line = f"{loc}{shown}: {msg}" if loc else msg  # top-level validator messages name their field
        if line not in lines:
            lines.append(line)
    return f"{source}: " + "; ".join(lines)


def _load(model: type[BaseModel] | Any, kind: str, spec: Any) -> Any:
    """Validate ``spec`` with ``model`` (or with ``model(data)`` when it picks the model from the data)."""
    if isinstance(model, type) and isinstance(spec, model):
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
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        model = model(data)
        if isinstance(model, str):
            raise ConfigError(f"{source}: {model}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format(err, source, model)) from None


def load_env_config(spec: str | Path | dict | EnvConfig | BookEnvConfig) -> EnvConfig | BookEnvConfig:
    """An env config from a preset name (``"as2008"``), a YAML path, a dict or a config: a
    :class:`BookEnvConfig` when ``market.kind`` is ``book``, else an :class:`EnvConfig`."""
    if isinstance(spec, EnvConfig | BookEnvConfig):
        return spec
    return _load(_env_model, "envs", spec)


def _env_model(data: Any) -> type[BaseModel] | str:
    """The config model for ``data`` by its ``market.kind``, or an error message."""
    kind = _market_kind(data)
    if kind == "book":
        return BookEnvConfig
    if kind in (None, "reduced_form"):
        return EnvConfig
    return f"market.kind = {kind!r}: unknown market; allowed: reduced_form, book"


def _market_kind(data: Any) -> Any:
    market = data.get("market") if isinstance(data, dict) else None
    return market.get("kind") if isinstance(market, dict) else None


def load_agent_config(spec: str | Path | dict | AgentConfig | TrainingConfig) -> AgentConfig | TrainingConfig:
    """An agent preset from a name, a YAML path, a dict or a config: a :class:`TrainingConfig` when
    ``kind`` is an RL algorithm (``ppo``, ``sac``), else a baseline's :class:`AgentConfig`."""
    if isinstance(spec, AgentConfig | TrainingConfig):
        return spec
    return _load(_agent_model, "agents", spec)


def load_training_config(spec: str | Path | dict | TrainingConfig) -> TrainingConfig:
    """A :class:`TrainingConfig`; a baseline preset gets an error that says how to evaluate it instead."""
    cfg = load_agent_config(spec)
    if not isinstance(cfg, TrainingConfig):
        raise ConfigError(f"agent {cfg.name!r}: kind = {cfg.kind!r} is an analytic baseline, nothing to train "
                          f"(allowed kinds: {', '.join(ALGORITHMS)}); evaluate it with `lobgym evaluate`")
    return cfg


def _agent_model(data: Any) -> type[BaseModel] | str:
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind in ALGORITHMS:
        return TrainingConfig
    if isinstance(kind, str) and kind not in BASELINE_PARAMS:
        return f"kind = {kind!r}: unknown agent; allowed: {', '.join([*BASELINE_PARAMS, *ALGORITHMS])}"
    return AgentConfig


