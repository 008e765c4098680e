"""Pydantic models of the env and agent YAML files: all validation happens here.

Every error names the field, the value and what is allowed, e.g.
``envs/x.yaml: market.fill.A = -1.0: Input should be greater than 0``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from lobgym import market_kinds, presets
from lobgym.book_spaces import BOOK_FEATURES, MAX_LEVELS
from lobgym.config_base import (
    COEF_MAX,
    LOTS_MAX,
    PRICE_MAX,
    RATE_MAX,
    SCALE_MAX,
    SCALE_MIN,
    TIME_MAX,
    TIME_MIN,
    ConfigError,
    Strict,
    format_error,
)
from lobgym.flow_config import FlowConfig, InformedConfig
from lobgym.rewards import validate_term
from lobgym.spaces import FEATURES

# ------------------------------------------------------------------------------------------ market
#: Smallest non-zero volatility: observations divide mid moves by sigma sqrt(dt).
SIGMA_MIN = 1e-9
#: Largest initial price in ticks of a book market (int64 ticks, exact in float64 far beyond).
TICKS_MAX = 1e12
#: Largest agent order in a book market, in lots (each step's fill log is sized from it).
BOOK_ORDER_LOTS_MAX = 10_000

Price = Annotated[float, Field(ge=-PRICE_MAX, le=PRICE_MAX)]
Span = Annotated[float, Field(ge=0, le=TIME_MAX)]

#: Most expected Poisson events per step the kernels' inverse-CDF sampler is used for (fills, jumps).
MAX_EVENTS_PER_DRAW = 50
#: Largest fill intensity A: under the paper rule a larger A only means "a quote at depth 0 always fills".
FILL_A_MAX = 1e12


class FillConfig(Strict):
    """Fills of a quote at depth delta arrive with intensity A * exp(-k * delta)."""

    rule: Literal["paper", "poisson"] = "poisson"
    A: float = Field(gt=0, le=FILL_A_MAX, description="arrival intensity of market orders reaching the mid, per "
                                                      f"unit time (at most {FILL_A_MAX:g}; poisson: A dt at most "
                                                      f"{MAX_EVENTS_PER_DRAW})")
    k: float = Field(gt=0, le=COEF_MAX, description=f"decay of the fill intensity with depth, per price unit "
                                                    f"(at most {COEF_MAX:g})")


class MeanReversion(Strict):
    """Ornstein–Uhlenbeck pull of the mid towards the level ``theta`` at speed ``kappa``."""

    kappa: float = Field(gt=0, le=RATE_MAX,
                         description=f"Ornstein–Uhlenbeck mean-reversion speed (at most {RATE_MAX:g})")
    theta: Price = Field(description=f"long-run level (|theta| at most {PRICE_MAX:g})")


class Jumps(Strict):
    """Jumps of the mid: Poisson arrivals at ``rate``, normal sizes of mean ``mean`` and std ``std``."""

    rate: float = Field(ge=0, le=RATE_MAX, description=f"jumps per unit time (at most {RATE_MAX:g})")
    mean: Price = Field(0.0, description=f"mean jump size (|mean| at most {PRICE_MAX:g})")
    std: float = Field(0.0, ge=0, le=PRICE_MAX, description=f"jump size standard deviation (at most {PRICE_MAX:g})")


class Fees(Strict):
    """Maker fees of a reduced-form market, per filled lot and per traded value (negative = rebate)."""

    per_unit: Price = Field(0.0, description="maker fee per filled lot; negative = rebate")
    rate: float = Field(0.0, gt=-1, lt=1, description="maker fee per traded value; negative = rebate")


class InventoryConfig(Strict):
    """The initial inventory ``q0`` (fixed, or drawn uniformly) and an optional bound on ``|q|``."""

    initial: int | tuple[int, int] = Field(0, description="q0, or [low, high] to draw q0 uniformly "
                                                          f"(|q0| at most {LOTS_MAX:,})")
    limit: int | None = Field(None, gt=0, le=LOTS_MAX, description=f"|q| bound: a side stops quoting at it "
                                                                    f"(at most {LOTS_MAX:,})")

    @model_validator(mode="after")
    def _check(self) -> InventoryConfig:
        low, high = self.bounds
        if low > high:
            raise ValueError(f"initial = [{low}, {high}]: low must be <= high")
        if max(abs(low), abs(high)) > LOTS_MAX:
            raise ValueError(f"initial = {self.initial}: |q0| must be at most {LOTS_MAX:,} lots")
        if self.limit is not None and max(abs(low), abs(high)) > self.limit:
            raise ValueError(f"initial = {self.initial}: must lie within the limit +/-{self.limit}")
        return self

    @property
    def bounds(self) -> tuple[int, int]:
        """``(low, high)`` of the initial inventory; both equal ``initial`` when it is an integer."""
        return (self.initial, self.initial) if isinstance(self.initial, int) else tuple(self.initial)


def _whole_steps(horizon: float, dt: float) -> None:
    steps = horizon / dt
    if abs(steps - round(steps)) > 1e-6 * max(1.0, steps) or round(steps) < 1:
        raise ValueError(f"horizon / dt = {horizon} / {dt} = {steps:g}: must be a whole number >= 1")


class ReducedFormMarket(Strict):
    """Arithmetic Brownian mid (optional drift, OU mean reversion, jumps) and exponential fills."""

    kind: Literal["reduced_form"] = "reduced_form"
    s0: float = Field(100.0, gt=0, le=PRICE_MAX, description=f"initial mid-price (at most {PRICE_MAX:g})")
    sigma: float = Field(ge=0, le=PRICE_MAX, description="volatility, price units per sqrt(time): 0 (no diffusion) "
                                                         f"or in [{SIGMA_MIN:g}, {PRICE_MAX:g}]")
    drift: Price = Field(0.0, description="drift of the mid, price units per unit time")
    noise: Literal["normal", "binomial"] = "normal"
    mean_reversion: MeanReversion | None = None
    jumps: Jumps | None = None
    horizon: float = Field(gt=0, le=TIME_MAX, description=f"episode length T (at most {TIME_MAX:g})")
    dt: float = Field(ge=TIME_MIN, le=TIME_MAX, description=f"step length (at least {TIME_MIN:g})")
    fill: FillConfig
    tick_size: float | None = Field(None, gt=0, le=PRICE_MAX, description="price grid of the quotes (at most s0)")
    fees: Fees = Fees()
    inventory: InventoryConfig = InventoryConfig()

    @field_validator("sigma")
    @classmethod
    def _sigma(cls, v: float) -> float:
        if 0 < v < SIGMA_MIN:
            raise ValueError(f"allowed: 0 (no diffusion) or at least {SIGMA_MIN:g} (observations divide by "
                             "sigma sqrt(dt))")
        return v

    @model_validator(mode="after")
    def _check(self) -> ReducedFormMarket:
        _whole_steps(self.horizon, self.dt)
        if self.fill.rule == "poisson" and self.fill.A * self.dt > MAX_EVENTS_PER_DRAW:
            raise ValueError(
                f"fill.A * dt = {self.fill.A * self.dt:g}: the poisson rule needs at most {MAX_EVENTS_PER_DRAW} "
                "expected fills per step at depth 0; use a smaller dt"
            )
        jumps = self.jumps or Jumps(rate=0.0)
        if jumps.rate * self.dt > MAX_EVENTS_PER_DRAW:
            raise ValueError(f"jumps.rate * dt = {jumps.rate * self.dt:g}: at most {MAX_EVENTS_PER_DRAW} expected "
                             "jumps per step; use a smaller dt")
        if self.tick_size is not None and self.tick_size > self.s0:
            raise ValueError(f"tick_size = {self.tick_size:g}: must be at most s0 = {self.s0:g}")
        # How far the mid travels in an episode (drift, one standard deviation of the noise, the
        # expected jumps): bounded so that cash, PnL and their squares stay far from overflow.
        t = self.horizon
        excursion = abs(self.drift) * t + self.sigma * math.sqrt(t) + jumps.rate * t * (abs(jumps.mean) + jumps.std)
        if excursion > PRICE_MAX:
            raise ValueError(
                f"|drift| T + sigma sqrt(T) + jumps.rate T (|jumps.mean| + jumps.std) = {excursion:.3g}: the mid's "
                f"travel over an episode must be at most {PRICE_MAX:g} price units (lower drift, sigma, jumps or "
                "horizon)")
        return self

    @property
    def n_steps(self) -> int:
        """Steps per episode, ``horizon / dt`` (a whole number: checked on validation)."""
        return int(round(self.horizon / self.dt))


class InitialBook(Strict):
    """The book an episode's warm-up starts from: background orders on both sides of a 1-tick spread."""

    depth: int = Field(10, gt=0, le=10_000, description="price levels per side")
    orders_per_level: int = Field(3, gt=0, le=LOTS_MAX, description="orders of flow.size lots at each level")


class Delay(Strict):
    """A latency: constant, uniform on [low, high], or exponential with mean ``mean`` truncated at ``cap``."""

    dist: Literal["constant", "uniform", "exponential"] = "constant"
    value: Span = Field(0.0, description="the delay of dist: constant")
    low: Span = Field(0.0, description="lower end of dist: uniform")
    high: Span = Field(0.0, description="upper end of dist: uniform")
    mean: Span = Field(0.0, description="mean of the untruncated dist: exponential")
    cap: Span = Field(0.0, description="largest delay of dist: exponential (the draw is truncated there)")

    @model_validator(mode="after")
    def _check(self) -> Delay:
        if self.dist == "uniform" and self.low > self.high:
            raise ValueError(f"low = {self.low} > high = {self.high}: need low <= high")
        if self.dist == "exponential" and (self.mean <= 0 or self.cap <= 0):
            raise ValueError(f"mean = {self.mean}, cap = {self.cap}: dist exponential needs mean > 0 and cap > 0")
        return self

    @property
    def max_field(self) -> str:
        """The field holding the largest delay of ``dist``."""
        return {"constant": "value", "uniform": "high", "exponential": "cap"}[self.dist]

    @property
    def max(self) -> float:
        """The largest delay ``dist`` can draw: the value of :attr:`max_field`."""
        return getattr(self, self.max_field)


class LatencyConfig(Strict):
    """The agent's latencies: order entry, cancellation and observation (each below ``dt``)."""

    entry: Delay = Delay()
    cancel: Delay = Delay()
    observation: Span = Field(0.0, description="the agent sees the market as it was this long ago")


class FeeSchedule(Strict):
    """Fees of one role in a trade, per lot and per traded value (negative = rebate)."""

    per_unit: Price = Field(0.0, description="fee per lot traded; negative = rebate")
    rate: float = Field(0.0, gt=-1, lt=1, description="fee per traded value; negative = rebate")


class BookFees(Strict):
    """Fees of a book market: ``maker`` for the agent's resting orders, ``taker`` for its market orders."""

    maker: FeeSchedule = FeeSchedule()
    taker: FeeSchedule = FeeSchedule()


class BookMarket(Strict):
    """An L3 price-time-priority book driven by background order flow; the agent's orders sit in its queues."""

    kind: Literal["book"]
    tick_size: float = Field(0.01, gt=0, le=PRICE_MAX, description="price of one tick (s0 / tick_size at most "
                                                                   f"{TICKS_MAX:g} ticks)")
    s0: float = Field(100.0, gt=0, le=PRICE_MAX, description="initial mid-price (rounded to the tick grid)")
    horizon: float = Field(gt=0, le=TIME_MAX, description="episode length in seconds of flow")
    dt: float = Field(ge=TIME_MIN, le=TIME_MAX, description="seconds of flow per env step")
    warmup: Span = Field(300.0, description="seconds of background flow before each episode starts")
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
        _whole_steps(self.horizon, self.dt)
        lat = self.latency
        for name, value, field in (("entry", lat.entry.max, "entry." + lat.entry.max_field),
                                   ("cancel", lat.cancel.max, "cancel." + lat.cancel.max_field),
                                   ("observation", lat.observation, "observation")):
            if value >= self.dt:
                raise ValueError(f"latency.{name} = {value:g} (largest delay: latency.{field}): must be < dt = "
                                 f"{self.dt:g}")
        s0_tick = self.s0 / self.tick_size
        if not self.levels <= s0_tick <= TICKS_MAX:
            raise ValueError(f"s0 / tick_size = {self.s0} / {self.tick_size} = {s0_tick:.6g} ticks: allowed: "
                             f"levels = {self.levels} .. {TICKS_MAX:g} ticks (prices stay positive integers of ticks)")
        if abs(s0_tick - round(s0_tick)) > 1e-6 * max(1.0, s0_tick):
            raise ValueError(f"s0 = {self.s0}: must be a multiple of tick_size = {self.tick_size}")
        field, reach = self.flow.reach()
        if reach > self.levels // 2:
            raise ValueError(f"flow.{field}: background orders arrive up to {reach} ticks from the best "
                             f"quotes; allowed: at most levels // 2 = {self.levels // 2} (the book's window of "
                             f"levels = {self.levels} prices; orders beyond it are parked, and every event walks them)")
        if 2 * self.initial_book.depth + 2 > self.levels:
            raise ValueError(f"initial_book.depth = {self.initial_book.depth}: both sides must fit in the "
                             f"window of levels = {self.levels}")
        if 2 * self.initial_book.depth * self.initial_book.orders_per_level > self.max_orders // 2:
            raise ValueError(f"initial_book.depth x initial_book.orders_per_level = {self.initial_book.depth} x "
                             f"{self.initial_book.orders_per_level} per side: must use at most half of max_orders = "
                             f"{self.max_orders}")
        return self

    @property
    def n_steps(self) -> int:
        """Env steps per episode, ``horizon / dt`` (a whole number: checked on validation)."""
        return int(round(self.horizon / self.dt))

    @property
    def s0_tick(self) -> int:
        """The initial mid-price in ticks, ``s0 / tick_size`` (a whole number: checked on validation)."""
        return int(round(self.s0 / self.tick_size))

    def event_rates(self) -> dict[str, float]:
        """Expected background events per second, by the field that drives them.

        An upper estimate in stationarity: each limit order counts twice, as it can also be cancelled.
        """
        rates = {f"flow.{k}": v for k, v in self.flow.event_rates().items()}
        if self.informed is not None:
            rates["informed.rate"] = self.informed.rate
        return rates

    def expected_events(self) -> float:
        """Expected background events of one episode, warm-up included (see :meth:`event_rates`)."""
        seeded = 2 * self.initial_book.depth * self.initial_book.orders_per_level  # each can be cancelled
        return sum(self.event_rates().values()) * (self.warmup + self.horizon) + seeded


# ------------------------------------------------------------------------------------------ limits
#: Default ceilings on one episode's work (see :class:`WorkLimits`).
MAX_STEPS_PER_EPISODE = 1_000_000
MAX_EVENTS_PER_EPISODE = 10_000_000


class WorkLimits(Strict):
    """Ceilings on the work of one episode.

    A config above one is refused (a typo such as ``warmup: 1e7`` would otherwise run for hours);
    raise a ceiling here on purpose.
    """

    max_steps_per_episode: int = Field(MAX_STEPS_PER_EPISODE, gt=0, le=10**12,
                                       description="env steps per episode (horizon / dt)")
    max_events_per_episode: int = Field(MAX_EVENTS_PER_EPISODE, gt=0, le=10**15,
                                        description="expected background order-book events per episode, warm-up "
                                                    "included (order-book markets)")


def _check_work(market: ReducedFormMarket | BookMarket, limits: WorkLimits) -> None:
    """Refuse a market whose episode needs more work than ``limits`` allow, naming the fields responsible."""
    if market.n_steps > limits.max_steps_per_episode:
        raise ValueError(
            f"market.horizon / market.dt = {market.horizon:g} / {market.dt:g} = {market.n_steps:,} steps per episode: "
            f"allowed: at most limits.max_steps_per_episode = {limits.max_steps_per_episode:,} (a larger dt or "
            "shorter horizon, or raise the ceiling on purpose)")
    if not isinstance(market, BookMarket):
        return
    events = market.expected_events()
    if events > limits.max_events_per_episode:
        rates = market.event_rates()
        top, top_rate = max(rates.items(), key=lambda kv: kv[1])
        note = getattr(market.flow, "rate_note", lambda: "")()
        raise ValueError(
            f"market: {events:.3g} expected background events per episode = {sum(rates.values()):.4g} events/s "
            f"(largest: market.{top} -> {top_rate:.4g}/s{'; market.' + note if note else ''}) x "
            f"(market.warmup = {market.warmup:g} + market.horizon = "
            f"{market.horizon:g}) s: allowed: at most limits.max_events_per_episode = "
            f"{limits.max_events_per_episode:,} (lower the rates, warmup or horizon, or raise the ceiling on purpose)")


# ------------------------------------------------------------------------------- actions, obs, reward
def _unique_features(v: list[str]) -> list[str]:
    dupes = sorted({f for f in v if v.count(f) > 1})
    if dupes:
        raise ValueError(f"features {dupes} listed twice; each feature may appear once")
    return v


Scale = Annotated[float, Field(ge=SCALE_MIN, le=SCALE_MAX)]


class SizesConfig(Strict):
    """Quote sizes chosen by the action, from 0 (the side withdrawn) to ``max_size`` lots."""

    max_size: int = Field(gt=0, le=LOTS_MAX, description=f"largest quote size in lots (at most {LOTS_MAX:,})")


class ActionConfig(Strict):
    """How ``Box(-1, 1)`` actions map to quote depths, and optionally sizes (see :mod:`lobgym.spaces`)."""

    max_depth: float = Field(gt=0, le=PRICE_MAX, description=f"depth quoted at action +1, price units (at most "
                                                             f"{PRICE_MAX:g})")
    min_depth: float = Field(0.0, ge=-PRICE_MAX, le=PRICE_MAX, description=(
        "depth quoted at action -1, price units; negative lets a quote sit through the mid (a bid above it, an "
        "ask below it), as the Avellaneda-Stoikov quotes do at large inventories; must be < max_depth"))
    sizes: SizesConfig | None = Field(None, description="when set, actions also choose quote sizes")
    clip: bool = Field(False, description="clip actions outside [-1, 1] instead of raising")

    @model_validator(mode="after")
    def _check(self) -> ActionConfig:
        if self.min_depth >= self.max_depth:
            raise ValueError(f"min_depth = {self.min_depth:g}: must be below max_depth = {self.max_depth:g}")
        return self


FeatureName = Literal[tuple(FEATURES)]  # type: ignore[valid-type]


class ObservationConfig(Strict):
    """The reduced-form env's observation: its features, in order, and the inventory scale."""

    features: list[FeatureName] = Field(default_factory=lambda: ["inventory", "time_left"], min_length=1)
    inventory_scale: Scale = Field(10.0, description=f"inventory divisor when no limit is set ({SCALE_MIN:g} .. "
                                                     f"{SCALE_MAX:g} lots)")

    _unique = field_validator("features")(classmethod(lambda cls, v: _unique_features(v)))


#: Most steps of a ``step`` reward schedule.
SCHEDULE_STEPS_MAX = 1000
_MULTIPLIER = f"multiplier of the weight, 0 .. {COEF_MAX:g}"


class ConstantSchedule(Strict):
    """No curriculum: the term keeps its ``weight`` all through training (as giving no schedule)."""

    kind: Literal["constant"]

    def multiplier(self, progress: float) -> float:
        """1 at every ``progress`` in [0, 1]."""
        from lobgym.curriculum import check_progress

        check_progress(progress)
        return 1.0

    @property
    def peak(self) -> float:
        """The schedule's largest multiplier: 1."""
        return 1.0


class _RampSchedule(Strict):
    """``start`` up to progress ``begin``, a ramp to ``end`` at ``until``, ``end`` after."""

    kind: str
    start: float = Field(ge=0, le=COEF_MAX, description=f"{_MULTIPLIER}, up to progress begin")
    end: float = Field(ge=0, le=COEF_MAX, description=f"{_MULTIPLIER}, from progress until on (and outside "
                                                      "training: plain envs and evaluations use it)")
    begin: float = Field(0.0, ge=0, lt=1, description="fraction of the training budget at which the ramp starts")
    until: float = Field(1.0, gt=0, le=1, description="fraction of the training budget at which the ramp ends")

    @model_validator(mode="after")
    def _check_ramp(self) -> _RampSchedule:
        if self.until <= self.begin:
            raise ValueError(f"until = {self.until:g}: must be above begin = {self.begin:g} (the ramp runs from "
                             "progress begin to progress until; for a jump use kind: step)")
        return self

    @property
    def peak(self) -> float:
        return max(self.start, self.end)


class LinearSchedule(_RampSchedule):
    """The weight's multiplier goes from ``start`` to ``end`` in a straight line over ``[begin, until]``."""

    kind: Literal["linear"]

    def multiplier(self, progress: float) -> float:
        """The multiplier at training ``progress`` in [0, 1] (:func:`lobgym.curriculum.linear`)."""
        from lobgym.curriculum import linear

        return linear(progress, self.start, self.end, self.begin, self.until)


class CosineSchedule(_RampSchedule):
    """The weight's multiplier goes from ``start`` to ``end`` along half a cosine over ``[begin, until]``."""

    kind: Literal["cosine"]

    def multiplier(self, progress: float) -> float:
        """The multiplier at training ``progress`` in [0, 1] (:func:`lobgym.curriculum.cosine`)."""
        from lobgym.curriculum import cosine

        return cosine(progress, self.start, self.end, self.begin, self.until)


class StepSchedule(Strict):
    """Piecewise constant: ``values[0]`` before progress ``at[0]``, ``values[k]`` from ``at[k - 1]`` on."""

    kind: Literal["step"]
    values: list[Annotated[float, Field(ge=0, le=COEF_MAX)]] = Field(
        min_length=1, max_length=SCHEDULE_STEPS_MAX + 1,
        description=f"{_MULTIPLIER}, one more than the boundaries; the last one is used outside training")
    at: list[float] = Field(default_factory=list, max_length=SCHEDULE_STEPS_MAX, description=(
        "progress boundaries (fractions of the training budget), strictly increasing, each in (0, 1)"))

    @model_validator(mode="after")
    def _check_steps(self) -> StepSchedule:
        for j, x in enumerate(self.at):
            if not 0.0 < x < 1.0:
                raise ValueError(f"at[{j}] = {x:g}: allowed: a progress strictly between 0 and 1")
            if j and x <= self.at[j - 1]:
                raise ValueError(f"at[{j}] = {x:g}: must be above at[{j - 1}] = {self.at[j - 1]:g} (boundaries "
                                 "strictly increasing)")
        if len(self.values) != len(self.at) + 1:
            raise ValueError(f"values has {len(self.values)} entries: need one more than at, i.e. "
                             f"{len(self.at) + 1} (the value before at[0], then one from each boundary on)")
        return self

    def multiplier(self, progress: float) -> float:
        """The multiplier at training ``progress`` in [0, 1] (:func:`lobgym.curriculum.step`)."""
        from lobgym.curriculum import step

        return step(progress, self.values, self.at)

    @property
    def peak(self) -> float:
        """The schedule's largest multiplier, ``max(values)``."""
        return max(self.values)


#: A reward term's curriculum (see :mod:`lobgym.curriculum`), chosen by ``kind``.
ScheduleConfig = Annotated[ConstantSchedule | LinearSchedule | CosineSchedule | StepSchedule,
                           Field(discriminator="kind")]


class RewardTermConfig(Strict):
    """One reward term (see :mod:`lobgym.rewards`): its name, weight, parameters and curriculum."""

    term: str
    weight: float = Field(1.0, ge=-COEF_MAX, le=COEF_MAX, description=f"|weight| at most {COEF_MAX:g}")
    params: dict[str, Any] = Field(default_factory=dict)
    # left out of dumps when None: configs without curricula dump (and so hash, e.g. study trial keys) as before
    schedule: ScheduleConfig | None = Field(None, exclude_if=lambda v: v is None, description=(
        "curriculum: during training the weight is weight * m(progress), m following this schedule over the "
        "fraction of the training budget done; outside training (plain envs, evaluations) weight * m(1). "
        "Kinds: constant (the default), linear, cosine, step (lobgym.curriculum)"))

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule_kind(cls, v: Any) -> Any:
        # checked here so that the messages name the kinds, and the fields of the kind given
        models = {"constant": ConstantSchedule, "linear": LinearSchedule, "cosine": CosineSchedule,
                  "step": StepSchedule}
        if not isinstance(v, dict):
            return v
        kind = v.get("kind")
        if not isinstance(kind, str) or kind not in models:
            shown = f"kind = {kind!r}: unknown schedule" if "kind" in v else "kind: missing"
            raise ValueError(f"{shown}; allowed: {', '.join(models)}")
        fields = models[kind].model_fields
        for key, value in v.items():
            if key not in fields:
                raise ValueError(f"{key} = {value!r}: not a field of a {kind} schedule; allowed: {', '.join(fields)}")
        return v

    @model_validator(mode="after")
    def _check(self) -> RewardTermConfig:
        validate_term(self.term, self.params, where="")  # the error's location already names reward[j]
        if self.schedule is not None and abs(self.weight) * self.schedule.peak > COEF_MAX:
            raise ValueError(f"schedule: weight = {self.weight:g} times the schedule's largest multiplier "
                             f"{self.schedule.peak:g} is {abs(self.weight) * self.schedule.peak:g}: allowed: "
                             f"|weight * multiplier| at most {COEF_MAX:g}")
        return self

    def weight_at(self, progress: float) -> float:
        """The term's weight at training ``progress`` in [0, 1] (1: the final weight, used outside training)."""
        from lobgym.curriculum import multiplier

        return float(self.weight) * multiplier(self.schedule, progress)


class EnvConfig(Strict):
    """A market-making environment: market, action codec, observation and reward."""

    name: str = "custom"
    description: str = ""
    market: ReducedFormMarket
    action: ActionConfig
    observation: ObservationConfig = ObservationConfig()
    reward: list[RewardTermConfig] = Field(default_factory=lambda: [RewardTermConfig(term="pnl")], min_length=1)
    limits: WorkLimits = Field(default_factory=WorkLimits, description="ceilings on one episode's work")

    @model_validator(mode="after")
    def _check(self) -> EnvConfig:
        _check_work(self.market, self.limits)
        fill = self.market.fill
        if self.action.min_depth < 0 and fill.rule == "poisson":
            # a quote through the mid fills faster than one at it: A e^{k |min_depth|} per unit time
            rate = fill.A * math.exp(min(-fill.k * self.action.min_depth, 700.0)) * self.market.dt
            if rate > MAX_EVENTS_PER_DRAW:
                raise ValueError(f"action.min_depth = {self.action.min_depth:g}: the poisson rule would expect "
                                 f"A e^(k |min_depth|) dt = {rate:.3g} fills per step, at most {MAX_EVENTS_PER_DRAW}; "
                                 "raise min_depth or use a smaller dt")
        return self

    @property
    def inventory_scale(self) -> float:
        """The observation's inventory divisor: ``market.inventory.limit`` if set, else ``observation``'s."""
        limit = self.market.inventory.limit
        return float(limit) if limit is not None else self.observation.inventory_scale


class BookActionConfig(Strict):
    """How ``Box(-1, 1)`` actions map to the agent's orders in a book market (see :mod:`lobgym.book_spaces`)."""

    kind: Literal["offsets", "spread_skew", "ladder"] = Field(
        "offsets", description="the action codec: offsets and sizes per side, half-spread + inventory skew + sizes, "
                               "or a ladder of up to 5 orders per side")
    reference: Literal["mid", "touch"] = Field(
        "mid", description="offsets count from the nearest tick on each side of the mid, or from the best quotes")
    max_offset: int = Field(10, gt=0, le=10_000, description="offset in ticks at action +1 (0 at action -1)")
    max_size: int = Field(5, gt=0, le=BOOK_ORDER_LOTS_MAX, description="largest quote size in lots (a size of 0 "
                                                                       "withdraws the side)")
    market_order: int = Field(0, ge=0, le=BOOK_ORDER_LOTS_MAX,
                              description="when > 0, a last action sends market orders of up to this many lots")
    max_skew: float = Field(5.0, ge=0, le=10_000, description="spread_skew, ladder: ticks both quotes move at "
                                                              "action +1 when |q| = inventory_scale")
    levels: int = Field(1, ge=1, le=MAX_LEVELS, description=f"ladder: orders per side (1 .. {MAX_LEVELS}; the other "
                                                            "codecs quote one)")
    max_spacing: int = Field(3, ge=1, le=100, description="ladder: ticks between levels at action +1 (1 at -1)")
    clip: bool = Field(False, description="clip actions outside [-1, 1] instead of raising")

    @model_validator(mode="after")
    def _check(self) -> BookActionConfig:
        if self.levels > 1 and self.kind != "ladder":
            raise ValueError(f"levels = {self.levels}: only kind ladder rests several orders per side; "
                             f"kind {self.kind!r} takes levels: 1")
        return self


BookFeatureName = Literal[tuple(BOOK_FEATURES)]  # type: ignore[valid-type]


class BookObservationConfig(Strict):
    """A book env's observation: its features, in order, with their sizes and scales (:mod:`lobgym.book_spaces`)."""

    features: list[BookFeatureName] = Field(
        default_factory=lambda: ["inventory", "time_left", "spread", "depth", "imbalance", "returns", "queue"],
        min_length=1)
    depth_levels: int = Field(5, gt=0, le=50, description="levels per side in the depth feature")
    returns: int = Field(5, gt=0, le=100, description="recent one-step mid returns in the returns feature")
    depth_scale: Scale = Field(10.0, description="lots that map to 1.0 in depth and queue features")
    return_scale: Scale = Field(5.0, description="ticks of mid move that map to 1.0 in the returns feature")
    inventory_scale: Scale = Field(10.0, description="inventory divisor when no limit is set")
    flow_halflife: float = Field(10.0, ge=1, le=10_000, description="half-life in steps of the trade_flow and "
                                 "volatility moving averages, and the unit of since_fill")

    _unique = field_validator("features")(classmethod(lambda cls, v: _unique_features(v)))


class BookEnvConfig(Strict):
    """A market-making environment on an order-book market."""

    name: str = "custom"
    description: str = ""
    market: BookMarket
    action: BookActionConfig = BookActionConfig()
    observation: BookObservationConfig = BookObservationConfig()
    reward: list[RewardTermConfig] = Field(default_factory=lambda: [RewardTermConfig(term="pnl")], min_length=1)
    limits: WorkLimits = Field(default_factory=WorkLimits, description="ceilings on one episode's work")

    @model_validator(mode="after")
    def _check(self) -> BookEnvConfig:
        _check_work(self.market, self.limits)
        return self

    @property
    def inventory_scale(self) -> float:
        """The observation's inventory divisor: ``market.inventory.limit`` if set, else ``observation``'s."""
        limit = self.market.inventory.limit
        return float(limit) if limit is not None else self.observation.inventory_scale


AnyEnvConfig = EnvConfig | BookEnvConfig


# ------------------------------------------------------------------------------------------ agents
class AvellanedaStoikovParams(Strict):
    """Parameters of the Avellaneda & Stoikov (2008) baseline."""

    gamma: float = Field(gt=0, le=COEF_MAX, description=f"risk aversion (at most {COEF_MAX:g})")
    symmetric: bool = Field(False, description="centre the AS spread on the mid (the paper's benchmark)")


class GueantParams(Strict):
    """Parameters of the Guéant, Lehalle & Fernandez-Tapia (2013) baseline."""

    gamma: float = Field(gt=0, le=COEF_MAX, description=f"risk aversion (at most {COEF_MAX:g})")
    inventory_bound: int | None = Field(None, gt=0, le=LOTS_MAX, description="stop quoting a side at |q| = bound")


class CarteaJaimungalParams(Strict):
    """Parameters of the Cartea, Jaimungal & Penalva (2015) baseline."""

    phi: float | None = Field(None, ge=0, le=COEF_MAX,
                              description="running inventory penalty; default: from the env reward")
    alpha: float | None = Field(None, ge=0, le=COEF_MAX,
                                description="terminal inventory penalty; default: from the env reward")
    inventory_bound: int = Field(20, gt=0, le=1000, description="solve on q in [-bound, bound]; a side stops at the "
                                                                "bound (at most 1000: a (2 bound + 1)^2 matrix)")


class FixedSpreadParams(Strict):
    """Parameters of the fixed-spread baseline: the same depth on both sides."""

    half_spread: float = Field(ge=0, le=PRICE_MAX, description="depth quoted on both sides")


class RandomParams(Strict):
    """Parameters of the random baseline: the seed of its own action draws."""

    seed: int = Field(0, ge=0, lt=2**63)


class BookQuoterParams(Strict):
    """Parameters of the book-market quoter baseline: offset, size and inventory skew of its quotes."""

    offset: int = Field(0, ge=0, le=10_000, description="ticks from the reference quote (action.reference) on both "
                                                        "sides")
    size: int = Field(1, gt=0, le=BOOK_ORDER_LOTS_MAX, description="lots per side")
    skew: float = Field(0.0, ge=0, le=COEF_MAX,
                        description="ticks the quotes move away from the inventory's side per lot held")
    max_inventory: int | None = Field(None, gt=0, le=LOTS_MAX,
                                      description="stop adding to the position at |q| = max_inventory")


BASELINE_PARAMS: dict[str, type[Strict]] = {
    "avellaneda_stoikov": AvellanedaStoikovParams,
    "gueant": GueantParams,
    "cartea_jaimungal": CarteaJaimungalParams,
    "fixed_spread": FixedSpreadParams,
    "random": RandomParams,
    "book_quoter": BookQuoterParams,
}


class AgentConfig(Strict):
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
    def typed_params(self) -> Strict:
        """``params`` validated by the parameter model of ``kind`` (:data:`BASELINE_PARAMS`)."""
        return BASELINE_PARAMS[self.kind].model_validate(self.params)


# -------------------------------------------------------------------------- learning-rate control
#: Signals an LR rule can watch: SB3's training logs, the optimiser (gradient norm, the sharpness probe),
#: finished training episodes, evaluations on the model-selection seeds (``eval_*``) and on the separate
#: validation seeds (``val_*``, with ``eval.validation``). ``*_drawdown``: mean over episodes of the largest
#: fall of the marked-to-market PnL from its running peak; ``*_score``: the task's normalised score (the env
#: must be a task of ``lobgym score``).
EVAL_SIGNALS = ("return", "pnl", "sharpe", "drawdown", "score")
LR_SIGNALS = ("approx_kl", "loss", "value_loss", "policy_loss", "clip_fraction", "actor_loss", "critic_loss",
              "grad_norm", "sharpness", "train_return", "train_pnl",
              *(f"eval_{s}" for s in EVAL_SIGNALS), *(f"val_{s}" for s in EVAL_SIGNALS))
LRSignal = Literal[LR_SIGNALS]  # type: ignore[valid-type]


class ConstantBase(Strict):
    """LR time base: a constant rate ``lr``."""

    kind: Literal["constant"]
    lr: float = Field(gt=0)


class LinearBase(Strict):
    """LR time base: a straight line from ``start`` at the beginning of training to ``end`` at the end."""

    kind: Literal["linear"]
    start: float = Field(gt=0)
    end: float = Field(ge=0)


class CosineBase(Strict):
    """LR time base: linear warm-up to ``peak`` over the ``warmup`` fraction, then cosine decay to ``end``."""

    kind: Literal["cosine"]
    peak: float = Field(gt=0)
    end: float = Field(0.0, ge=0)
    warmup: float = Field(0.0, ge=0, lt=1, description="fraction of training spent warming up")


class CyclicBase(Strict):
    """LR time base: triangular cycles between ``low`` and ``high``, ``cycles`` of them over training."""

    kind: Literal["cyclic"]
    low: float = Field(gt=0)
    high: float = Field(gt=0)
    cycles: float = Field(4.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> CyclicBase:
        if self.low > self.high:
            raise ValueError(f"low = {self.low} > high = {self.high}: need low <= high")
        return self


class KLTargetRule(Strict):
    """LR rule: multiplier / ``factor`` when KL > target * band, * ``factor`` when KL < target / band."""

    kind: Literal["kl_target"]
    signal: Literal["approx_kl"] = "approx_kl"
    target: float = Field(0.01, gt=0)
    band: float = Field(1.5, gt=1)
    factor: float = Field(1.5, gt=1)


class PlateauRule(Strict):
    """LR rule: the multiplier times ``factor`` when ``signal`` stops improving (as ``ReduceLROnPlateau``)."""

    kind: Literal["plateau"]
    signal: LRSignal = "eval_return"
    mode: Literal["min", "max"] = "max"
    patience: int = Field(3, ge=0)
    cooldown: int = Field(0, ge=0)
    threshold: float = Field(0.0, ge=0, description="absolute improvement that counts, in the signal's units")
    factor: float = Field(0.5, gt=0, lt=1)


class BoldDriverRule(Strict):
    """LR rule: the multiplier grows while the smoothed ``signal`` rises, and is cut when it falls."""

    kind: Literal["bold_driver"]
    signal: LRSignal = "train_return"
    smoothing: float = Field(0.9, ge=0, lt=1)
    grow: float = Field(1.05, ge=1)
    cut: float = Field(0.5, gt=0, le=1)
    tolerance: float = Field(0.0, ge=0)


class DivergenceGuardRule(Strict):
    """LR rule: a non-finite or exploding ``signal`` cuts the multiplier and blocks increases a while."""

    kind: Literal["divergence_guard"]
    signal: LRSignal = "loss"
    max_ratio: float = Field(10.0, gt=1)
    cut: float = Field(0.1, gt=0, lt=1)
    cooldown: int = Field(10, ge=0)
    reload_best: bool = Field(False, description="lobgym train: also reload the best model's weights and "
                                                 "optimizer state when the guard fires")


class BanditRule(Strict):
    """LR rule: an Exp3 bandit over learning-rate multipliers, rewarded by the improvement of ``signal``."""

    kind: Literal["bandit"]
    signal: LRSignal = "eval_return"
    arms: list[float] = Field(default_factory=lambda: [0.5, 1.0, 2.0],
                              description="the multipliers the bandit picks from (each > 0)")
    gamma: float = Field(0.2, gt=0, le=1, description="Exp3 exploration: the share of uniform picks")
    mode: Literal["min", "max"] = Field("max", description="max: a rise of the signal is an improvement")
    seed: int = Field(0, ge=0, description="seed of the arm draws (the same seed gives the same picks)")

    @field_validator("arms")
    @classmethod
    def _arms(cls, v):
        if len(v) < 2 or any(not (a > 0 and math.isfinite(a)) for a in v):
            raise ValueError(f"arms = {v}: need at least two finite multipliers > 0")
        return v


class LRControlConfig(Strict):
    """``learning_rate:`` of a training preset when it adapts: a time base and rules (lobgym.agents.lr_control)."""

    base: Annotated[ConstantBase | LinearBase | CosineBase | CyclicBase, Field(discriminator="kind")]
    rules: list[Annotated[KLTargetRule | PlateauRule | BoldDriverRule | DivergenceGuardRule | BanditRule,
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
        # without the data: these messages keep pydantic's discriminator tags (``base.cosine.peak``)
        raise ConfigError(format_error(err, source, LRControlConfig)) from None


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

#: Hyperparameters that SB3 takes as text ("auto", "auto_0.1").
STRING_HYPERPARAMS = ("ent_coef", "target_entropy")

#: ``optimizer.name`` -> the optimizer class (``"module:Class"``) and the keyword arguments a preset may
#: pass to it. Prodigy, D-Adaptation Adam and schedule-free AdamW come with ``pip install 'lobgym[optim]'``.
#: Prodigy and D-Adaptation estimate the step size ``d`` themselves and take ``learning_rate`` as a
#: multiplier on it (their default is 1.0; a controller then scales d); schedule-free AdamW takes a rate
#: as Adam does and needs no decay schedule (``lobgym train`` switches it to its averaged weights for
#: rollouts, evaluations and saving, and back for the updates).
OPTIMIZERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "adam": ("torch.optim:Adam", ("betas", "eps", "weight_decay", "amsgrad")),
    "adamw": ("torch.optim:AdamW", ("betas", "eps", "weight_decay", "amsgrad")),
    "rmsprop": ("torch.optim:RMSprop", ("alpha", "eps", "weight_decay", "momentum", "centered")),
    "prodigy": ("prodigyopt:Prodigy", ("betas", "beta3", "eps", "weight_decay", "decouple", "use_bias_correction",
                                       "safeguard_warmup", "d0", "d_coef", "growth_rate")),
    "dadapt_adam": ("dadaptation:DAdaptAdam", ("betas", "eps", "weight_decay", "decouple", "use_bias_correction",
                                               "d0", "growth_rate")),
    "adamw_schedulefree": ("schedulefree:AdamWScheduleFree", ("betas", "eps", "weight_decay", "warmup_steps", "r",
                                                              "weight_lr_power")),
}
#: The pip package behind each optional optimizer (all in the ``optim`` extra).
OPTIMIZER_PACKAGES = {"prodigy": "prodigyopt", "dadapt_adam": "dadaptation", "adamw_schedulefree": "schedulefree"}

Scalar = float | int | bool | str | None
HyperValue = Scalar | list[Scalar]


class PolicyConfig(Strict):
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


class OptimizerConfig(Strict):
    """The torch optimizer and its keyword arguments (the rate comes from ``learning_rate``)."""

    name: Literal["adam", "adamw", "rmsprop", "prodigy", "dadapt_adam", "adamw_schedulefree"] = "adam"
    kwargs: dict[str, HyperValue] = Field(default_factory=dict, description="keyword arguments of the optimizer")

    @model_validator(mode="after")
    def _check(self) -> OptimizerConfig:
        allowed = OPTIMIZERS[self.name][1]
        for k in self.kwargs:
            if k not in allowed:
                raise ValueError(f"kwargs.{k}: not an argument of {OPTIMIZERS[self.name][0].split(':')[1]}; "
                                 f"allowed: {', '.join(allowed)} (lr comes from learning_rate)")
        return self


class NormalizeConfig(Strict):
    """Running normalisation of observations and rewards (SB3's ``VecNormalize``)."""

    obs: bool = False
    reward: bool = False
    clip_obs: float = Field(10.0, gt=0)
    clip_reward: float = Field(10.0, gt=0)


class ValidationConfig(Strict):
    """The validation seed block: episode j runs on market seed ``seed + j``."""

    episodes: int = Field(100, gt=0, description="episodes per validation")
    seed: int = Field(2_000_000, ge=0, description="episode j runs on market seed seed + j")


class ProbeConfig(Strict):
    """The loss-landscape probe: sharpness along the normalised gradient, every ``every`` updates."""

    every: int = Field(10, gt=0, description="train() calls between probes")
    radius: float = Field(1e-2, gt=0, description="step rho along the normalised gradient")
    batch: int = Field(256, gt=0, description="transitions of the probe's minibatch")


class TrainEvalConfig(Strict):
    """Periodic deterministic evaluation on held-out market seeds, the same ones at every evaluation."""

    every: int = Field(10_000, gt=0, description="timesteps between evaluations")
    episodes: int = Field(100, gt=0, description="episodes per evaluation")
    seed: int = Field(1_000_000, ge=0, description="episode j runs on market seed seed + j (held out from training)")
    baselines: list[str] | None = Field(None, description="baseline presets evaluated on the same seeds; "
                                                          "null = the env's default baselines")
    metric: Literal["return", "pnl", "sharpe"] = Field("return", description="what 'best model' maximises")
    validation: ValidationConfig | None = Field(
        None, description="a second held-out seed block, evaluated with the first, whose results (val_* signals) "
                          "drive the learning-rate controller; the first block picks the best model")


class CheckpointConfig(Strict):
    """How often training saves a checkpoint, and how many of them it keeps."""

    every: int = Field(20_000, gt=0, description="timesteps between checkpoints")
    keep: int = Field(2, gt=0, description="checkpoints kept on disk (the newest)")


class TrainingConfig(Strict):
    """A training preset (zoo-style) of an RL agent.

    It sets the algorithm, networks, batch of envs, hyperparameters, optimizer, learning rate (a number or a
    controller spec), evaluation and checkpoints.
    """

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
    critic_loss: Literal["mse", "huber"] = Field(
        "mse", description="the value (PPO) or Q (SAC) regression loss: SB3's squared error, or Huber")
    huber_delta: float = Field(1.0, gt=0, description="Huber's threshold: quadratic below it, linear above")
    probe: ProbeConfig | None = Field(None, description="measure the loss landscape's sharpness (probe/* in "
                                                        "TensorBoard, the sharpness signal)")
    interface: dict[Literal["action", "observation"], dict[str, Any]] | None = Field(
        None, description="the agent's own action codec and observation, merged over the env's sections when a run "
                          "starts (e.g. {action: {kind: spread_skew}}); the market and reward stay the env's")

    @field_validator("learning_rate", mode="before")
    @classmethod
    def _controller(cls, v):
        # A mapping is a controller; validating it here keeps the union's "not a float" noise out of errors.
        if isinstance(v, dict):
            try:
                return LRControlConfig.model_validate(v)
            except ValidationError as err:
                msg = format_error(err, "learning_rate", LRControlConfig, v).removeprefix("learning_rate: ")
                raise ValueError(msg) from None
        if isinstance(v, bool) or not isinstance(v, int | float | LRControlConfig) or (
                not isinstance(v, LRControlConfig) and not v > 0):
            raise ValueError("allowed: a number > 0, or a controller mapping {base, rules, lr_min, lr_max}")
        return v

    @model_validator(mode="after")
    def _check(self) -> TrainingConfig:
        if isinstance(self.learning_rate, LRControlConfig):
            for j, rule in enumerate(self.learning_rate.rules):
                if rule.signal.startswith("val_") and self.eval.validation is None:
                    raise ValueError(f"learning_rate.rules.{j}.signal = {rule.signal!r}: needs a validation seed "
                                     "block (eval.validation: {episodes, seed})")
                if rule.signal == "sharpness" and self.probe is None:
                    raise ValueError(f"learning_rate.rules.{j}.signal = 'sharpness': needs the probe "
                                     "(probe: {every, radius, batch})")
        allowed = HYPERPARAMS[self.kind]
        for k, v in self.hyperparams.items():
            if k not in allowed:
                raise ValueError(f"hyperparams.{k}: not a {self.kind.upper()} hyperparameter here; "
                                 f"allowed: {', '.join(allowed)}")
            if isinstance(v, str) and k not in STRING_HYPERPARAMS:  # a number written as text, e.g. "inf"
                raise ValueError(f"hyperparams.{k} = {v!r}: allowed: a number, not text (text is taken only by "
                                 f"{', '.join(STRING_HYPERPARAMS)})")
        return self


def with_interface(env: AnyEnvConfig, interface: dict[str, dict[str, Any]] | None,
                   where: str = "interface") -> AnyEnvConfig:
    """``env`` with its ``action`` / ``observation`` sections updated key by key from ``interface``.

    ``interface`` is an agent's interface: how it acts and what it sees. The market and the reward are untouched.
    """
    if not interface:
        return env
    data = env.model_dump(mode="json")
    for section, values in interface.items():
        data[section] = {**data[section], **values}
    try:
        return type(env).model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        shown = "" if first["type"] == "missing" else f" = {first.get('input')!r}"
        raise ConfigError(f"{where}.{loc}{shown}: {first['msg']} (applied to env {env.name!r})") from None


# ----------------------------------------------------------------------------------------- loading
def _load(model: type[BaseModel] | Any, kind: str, spec: Any) -> Any:
    """Validate ``spec`` with ``model`` (or with ``model(data)`` when it picks the model from the data)."""
    if isinstance(model, type) and isinstance(spec, model):
        return spec
    source = "config"
    if isinstance(spec, str | Path):
        path = presets.resolve(kind, spec)  # these two raise ConfigError naming the file
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
        raise ConfigError(format_error(err, source, model, data)) from None


def load_env_config(spec: str | Path | dict | EnvConfig | BookEnvConfig) -> EnvConfig | BookEnvConfig:
    """An env config from a preset name (``"as2008"``), a YAML path, a dict or a config.

    Returns a :class:`BookEnvConfig` when ``market.kind`` is ``book``, else an :class:`EnvConfig`.
    """
    if isinstance(spec, EnvConfig | BookEnvConfig):
        return spec
    return _load(_env_model, "envs", spec)


def _env_model(data: Any) -> type[BaseModel] | str:
    """The config model for ``data`` by its ``market.kind``, or an error message."""
    kind = _market_kind(data)
    try:
        return market_kinds.get(market_kinds.DEFAULT_KIND if kind is None else kind).load("config")
    except (ValueError, TypeError):  # TypeError: an unhashable kind such as a list
        return f"market.kind = {kind!r}: unknown market; allowed: {', '.join(market_kinds.KINDS)}"


def _market_kind(data: Any) -> Any:
    market = data.get("market") if isinstance(data, dict) else None
    return market.get("kind") if isinstance(market, dict) else None


def load_agent_config(spec: str | Path | dict | AgentConfig | TrainingConfig) -> AgentConfig | TrainingConfig:
    """An agent preset from a name, a YAML path, a dict or a config.

    Returns a :class:`TrainingConfig` when ``kind`` is an RL algorithm (``ppo``, ``sac``), else a baseline's
    :class:`AgentConfig`.
    """
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


