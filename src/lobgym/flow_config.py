"""Pydantic models of the background order flow of the order-book market.

All flow validation happens here, and :func:`build_flow_params` turns a validated config into the engine's
:class:`~lobgym.market.book.flow.FlowParams` (the kernels never see these strings).

Three models, chosen by ``model`` (see :mod:`lobgym.market.book.flow` for their exact definitions):

* ``cst`` — Cont, Stoikov & Talreja (2010) zero-intelligence flow; the defaults are the paper's
  calibration (Table 2), rates per second, orders of one lot.
* ``hawkes`` — exponential-kernel Hawkes flow over the six event types (limit bid, limit ask,
  market buy, market sell, cancel bid, cancel ask). The defaults give CST-like activity (about 38
  events per second, mean rates ``(I - alpha / beta)^-1 baseline`` = 9.4 limit orders, 0.94 market
  orders and 4.0 cancel events per side and second, branching-matrix spectral radius 0.3) with
  clustering: limit and market orders excite themselves (0.3 children each), a market order
  that eats one side is followed by limit orders refilling it (0.5), insertions are followed by
  cancellations on the same side (0.2), cancels excite cancels (0.2); decay ``beta = 10`` per
  second. ``order_cancel = 0.5`` adds the per-order cancellation that keeps the depth
  mean-reverting (about 16 orders per side, a side empty 0.5% of the time).
* ``queue_reactive`` — Huang, Lehalle & Rosenbaum (2015): intensities of each of the first K queues
  depend on that queue's size. Give each level a constant (the Poisson special case; for cancels
  the rate per order, so the queue's total is rate * q) or a table by queue size ``q = 0, 1, ...``
  (padded with its last value up to ``q_max``). The defaults carry the CST calibration over to
  levels counted from the same-side best (10 levels; inside-spread orders at the CST rate at
  distance 1): about 40 events per second, 16 orders per side, mean spread 1.5 ticks.

``InformedConfig`` adds the informed component (a latent fundamental price that jumps, towards
which market-order direction is tilted) to any model.

Every error names the field, the value and what is allowed.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from lobgym.config_base import COEF_MAX, LIST_MAX, LOTS_MAX, RATE_MAX, Strict
from lobgym.market.book import flow as F

# The Cont–Stoikov–Talreja (2010) calibration, written once in the engine (lobgym.market.book.flow.CST2010).
CST_LAM = F.CST2010["lam_table"]
CST_THETA = F.CST2010["theta_table"]
CST_MU = F.CST2010["mu"]
CST_K = F.CST2010["k"]
CST_ALPHA = F.CST2010["alpha"]

Rate = Annotated[float, Field(ge=0, le=RATE_MAX)]  # events per second; the sum over a config is bounded too
#: Largest exponent of the limit-order profile k / d**alpha beyond its table.
EXPONENT_MAX = 10.0
#: Most entries of the queue-reactive tables (levels x queue sizes 0..q_max).
QR_TABLE_MAX = 1_000_000

#: Default Hawkes flow (EVENT_* order: limit bid, limit ask, market buy, market sell, cancel bid,
#: cancel ask); alpha[e][j] is the jump of lambda_e at an event of type j, per unit of beta.
HAWKES_BASELINE = (6.1, 6.1, 0.66, 0.66, 1.3, 1.3)
HAWKES_BETA = 10.0
HAWKES_ALPHA = (
    (3.0, 0.0, 0.0, 5.0, 0.0, 0.0),  # limit bids: self-excited, and refill after a sell market order
    (0.0, 3.0, 5.0, 0.0, 0.0, 0.0),
    (0.0, 0.0, 3.0, 0.0, 0.0, 0.0),  # market orders: self-excited
    (0.0, 0.0, 0.0, 3.0, 0.0, 0.0),
    (2.0, 0.0, 0.0, 0.0, 2.0, 0.0),  # cancel bids: after bid insertions and other bid cancels
    (0.0, 2.0, 0.0, 0.0, 0.0, 2.0),
)


def _cst_profile(levels: int) -> tuple[float, ...]:
    return tuple(CST_LAM[d - 1] if d <= len(CST_LAM) else round(CST_K / d**CST_ALPHA, 4) for d in range(1, levels + 1))


def _tail(k: float | None, alpha: float | None, start: int, levels: int) -> float:
    """Sum of the profile k / d**alpha over the distances beyond a table of ``start`` entries."""
    if k is None or alpha is None:
        return 0.0
    return sum(k / d**alpha for d in range(start + 1, levels + 1))


def _check_profile(lam: list[float], levels: int, k: float | None, alpha: float | None, alpha_name: str) -> None:
    if len(lam) > levels:
        raise ValueError(f"lam has {len(lam)} entries but levels = {levels}: give at most one rate per distance")
    if (k is None) != (alpha is None):
        raise ValueError(f"k = {k}, {alpha_name} = {alpha}: give both (rates k / d**{alpha_name} beyond the lam table) "
                         "or neither")


class CSTFlow(Strict):
    """Cont–Stoikov–Talreja (2010) flow.

    Limit orders arrive at distance d = 1..levels from the opposite best with rate lam[d-1] (beyond the table k /
    d**alpha), market orders at rate mu per side, each order at distance d cancelled at rate theta[d-1] (the last
    entry further out).
    """

    model: Literal["cst"] = "cst"
    lam: list[Rate] = Field(list(CST_LAM), min_length=1, description="limit rate at distance 1, 2, ... per side")
    theta: list[Rate] = Field(list(CST_THETA), min_length=1, max_length=LIST_MAX,
                              description="cancel rate per order at distance 1, 2, ...; the last one further out")
    mu: Rate = Field(CST_MU, description="market order rate per side")
    k: Rate | None = Field(CST_K, description="limit rate k / d**alpha beyond the lam table")
    alpha: float | None = Field(CST_ALPHA, ge=0, le=EXPONENT_MAX,
                                description="exponent of the limit rate beyond the table")
    levels: int = Field(10, ge=1, le=10_000, description="distances D where limit orders arrive")
    size: int = Field(1, ge=1, le=LOTS_MAX, description="lots per background order")

    @field_validator("theta")
    @classmethod
    def _far_theta(cls, v: list[float]) -> list[float]:
        if v[-1] <= 0:
            raise ValueError(f"last entry {v[-1]} must be > 0: it is the cancel rate of every order further out, "
                             "which would otherwise never leave the book")
        return v

    @model_validator(mode="after")
    def _check(self) -> CSTFlow:
        _check_profile(self.lam, self.levels, self.k, self.alpha, "alpha")
        return self

    def event_rates(self) -> dict[str, float]:
        """Expected events per second by field: an upper estimate in stationarity.

        Both sides; each limit order is counted twice, as it can be cancelled.
        """
        rates = {f"lam[{j}]": 4.0 * v for j, v in enumerate(self.lam)}
        rates["k"] = 4.0 * _tail(self.k, self.alpha, len(self.lam), self.levels)
        rates["mu"] = 2.0 * self.mu
        return rates

    def reach(self) -> tuple[str, int]:
        """The field setting how far from the best quotes orders arrive, and that distance in ticks."""
        return "levels", self.levels

    def params(self) -> F.FlowParams:
        """The engine's parameters of this flow."""
        return F.cst_params(self.lam, self.theta, self.mu, self.levels, k=self.k, alpha=self.alpha, size=self.size)


def _six(name: str) -> str:
    return f"{name} must have 6 entries, in the order limit bid, limit ask, market buy, market sell, cancel bid, " \
           "cancel ask"


class HawkesFlow(Strict):
    """Multivariate exponential-kernel Hawkes flow.

    lambda_e(t) = baseline[e] + sum over past events (t_k, e_k) of alpha[e][e_k] * exp(-beta_e (t - t_k)); where
    orders go follows the CST profiles.
    """

    model: Literal["hawkes"] = "hawkes"
    baseline: list[Rate] = Field(list(HAWKES_BASELINE), description=_six("baseline intensities"))
    beta: Rate | list[Rate] = Field(HAWKES_BETA, description="excitation decay rate, one or one per event type")
    alpha: list[list[Rate]] = Field([list(r) for r in HAWKES_ALPHA],
                                    description="6 x 6 excitation jumps alpha[e][j] of lambda_e at a type-j event")
    order_cancel: float = Field(0.5, ge=0, le=COEF_MAX,
                                description="extra cancellation rate of each order, times theta(d)")
    lam: list[Rate] = Field(list(CST_LAM), min_length=1, description="weights of a limit order's distance 1, 2, ...")
    k: Rate | None = Field(CST_K, description="weight k / d**lam_alpha beyond the lam table")
    lam_alpha: float | None = Field(CST_ALPHA, ge=0, le=EXPONENT_MAX,
                                    description="exponent of the weight beyond the table")
    theta: list[Rate] = Field(list(CST_THETA), min_length=1, max_length=LIST_MAX,
                              description="weights of the order a cancel removes by distance; the last one further out")
    levels: int = Field(10, ge=1, le=10_000, description="distances D where limit orders arrive")
    size: int = Field(1, ge=1, le=LOTS_MAX, description="lots per background order")

    @field_validator("baseline")
    @classmethod
    def _baseline(cls, v: list[float]) -> list[float]:
        if len(v) != F.N_EVENT_TYPES:
            raise ValueError(_six(f"{len(v)} entries given; baseline"))
        if sum(v) <= 0:
            raise ValueError("at least one baseline intensity must be > 0 (else no event ever happens)")
        return v

    @field_validator("beta")
    @classmethod
    def _beta(cls, v: float | list[float]) -> float | list[float]:
        values = [v] if isinstance(v, float | int) else v
        if isinstance(v, list) and len(v) != F.N_EVENT_TYPES:
            raise ValueError(_six(f"{len(v)} entries given; beta (a number, or one decay per event type)"))
        if any(b <= 0 for b in values):
            raise ValueError("decay rates must be > 0")
        return v

    @field_validator("alpha")
    @classmethod
    def _alpha(cls, v: list[list[float]], info: ValidationInfo) -> list[list[float]]:
        if len(v) != F.N_EVENT_TYPES or any(len(row) != F.N_EVENT_TYPES for row in v):
            raise ValueError(f"shape {len(v)} x {[len(r) for r in v]}: must be 6 x 6 (rows: excited type, columns: "
                             "exciting type; order limit bid, limit ask, market buy, market sell, cancel bid, "
                             "cancel ask)")
        beta = info.data.get("beta")
        if beta is not None:
            radius = F.hawkes_spectral_radius(v, beta)
            if radius >= 1:
                raise ValueError(f"the branching matrix alpha / beta has spectral radius {radius:.4g}; it must be "
                                 "< 1 for a stationary Hawkes process (lower alpha or raise beta)")
        return v

    @field_validator("theta")
    @classmethod
    def _far_theta(cls, v: list[float]) -> list[float]:
        if v[-1] <= 0:
            raise ValueError(f"last entry {v[-1]} must be > 0: it weighs every order further out")
        return v

    @model_validator(mode="after")
    def _check(self) -> HawkesFlow:
        _check_profile(self.lam, self.levels, self.k, self.lam_alpha, "lam_alpha")
        return self

    def event_rates(self) -> dict[str, float]:
        """Expected events per second by field, from the stationary mean rates.

        The events of each baseline with all the events they excite through ``alpha``, and the per-order cancellations
        (at most one per limit order).
        """
        mean = F.hawkes_mean_rates(self.baseline, self.alpha, self.beta)
        # (I - alpha / beta)^-1 column e: the events of every type one type-e immigrant leads to
        cluster = F.hawkes_mean_rates(np.eye(F.N_EVENT_TYPES), self.alpha, self.beta).sum(axis=0)
        rates = {f"baseline[{e}]": b * float(cluster[e]) for e, b in enumerate(self.baseline)}
        if self.order_cancel > 0:
            rates["order_cancel"] = float(mean[F.EVENT_LIMIT_BID] + mean[F.EVENT_LIMIT_ASK])
        return rates

    def reach(self) -> tuple[str, int]:
        """The field setting how far from the best quotes orders arrive, and that distance in ticks."""
        return "levels", self.levels

    def params(self) -> F.FlowParams:
        """The engine's parameters of this flow."""
        return F.hawkes_params(self.baseline, self.alpha, self.beta, self.lam, self.theta, self.levels, k=self.k,
                               lam_alpha=self.lam_alpha, size=self.size, order_cancel=self.order_cancel)

    def rate_note(self) -> str:
        """What drives the rates beyond the baselines: the branching of the excitation."""
        radius = F.hawkes_spectral_radius(self.alpha, self.beta)
        return f"flow.alpha / flow.beta has spectral radius {radius:.6g}, each event exciting on average " \
               f"~{1 / (1 - radius):.3g} in all"


class QueueReactiveFlow(Strict):
    """Queue-reactive flow (Huang, Lehalle & Rosenbaum 2015).

    It acts on the first K = len(insert) levels of each side, counted from the same-side best; per level
    a constant or a table by queue size.
    """

    model: Literal["queue_reactive"] = "queue_reactive"
    insert: list[Rate | list[Rate]] = Field(
        list(_cst_profile(10)), min_length=1, max_length=1000,
        description="limit insertion rate at level 1..K: a constant per level, or a table by queue size")
    cancel: list[Rate | list[Rate]] = Field(
        [CST_THETA[min(k, len(CST_THETA)) - 1] for k in range(1, 11)], min_length=1, max_length=1000,
        description="per level: a cancel rate per order (total = rate * q), or a table of total rates by queue size")
    market: Rate | list[Rate] = Field(CST_MU, description="rate of market orders at the best: a constant (q >= 1) "
                                                          "or a table by the best queue's size")
    inside: Rate = Field(CST_LAM[0], description="rate of a limit order inside a spread of >= 2 ticks, per side")
    far_cancel: float = Field(CST_THETA[-1], gt=0, le=RATE_MAX, description="cancel rate per order beyond level K")
    q_max: int = Field(30, ge=1, le=100_000, description="queue sizes above q_max use the q_max entry")
    size: int = Field(1, ge=1, le=LOTS_MAX,
                      description="lots per background order; queue sizes are counted in these units")

    @field_validator("market")
    @classmethod
    def _market(cls, v: float | list[float]) -> float | list[float]:
        if isinstance(v, list) and not v:
            raise ValueError("the table needs at least one entry (queue size 0)")
        if not isinstance(v, list) and v < 0:
            raise ValueError("must be >= 0")
        return v

    @model_validator(mode="after")
    def _check(self) -> QueueReactiveFlow:
        levels = len(self.insert)
        if len(self.cancel) != levels:
            raise ValueError(f"cancel has {len(self.cancel)} levels but insert has {levels}: give one entry per level")
        if levels * (self.q_max + 1) > QR_TABLE_MAX:
            raise ValueError(f"{levels} levels x (q_max + 1 = {self.q_max + 1}) queue sizes: the tables may hold at "
                             f"most {QR_TABLE_MAX:,} entries (fewer levels or a smaller q_max)")
        for name in ("insert", "cancel", "market"):
            value = getattr(self, name)
            if name == "market":
                tables = [value] if isinstance(value, list) else []
            else:
                tables = [t for t in value if isinstance(t, list)]
            for table in tables:
                if not table or len(table) > self.q_max + 1:
                    raise ValueError(f"{name}: a table has {len(table)} entries; it needs 1 .. q_max + 1 = "
                                     f"{self.q_max + 1} (queue sizes 0 .. q_max)")
        return self

    def tables(self) -> tuple[list[list[float]], list[list[float]], list[float]]:
        """(insert (K, Q + 1), cancel (K, Q + 1), market (Q + 1,)) expanded from constants and short tables."""
        width = self.q_max + 1

        def pad(table: list[float]) -> list[float]:
            return list(table[:width]) + [table[-1]] * (width - len(table))

        insert = [pad(v) if isinstance(v, list) else [v] * width for v in self.insert]
        cancel = [pad(v) if isinstance(v, list) else [v * q for q in range(width)] for v in self.cancel]
        market = pad(self.market) if isinstance(self.market, list) else [0.0] + [self.market] * self.q_max
        return insert, cancel, market

    def event_rates(self) -> dict[str, float]:
        """Largest events per second by field: an upper estimate.

        Both sides, at the queue sizes with the highest rates; each limit order is counted twice, as it
        can be cancelled.
        """
        insert, _, market = self.tables()
        rates = {f"insert[{k}]": 4.0 * max(row) for k, row in enumerate(insert)}
        rates["inside"] = 4.0 * self.inside
        rates["market"] = 2.0 * max(market[1:])
        return rates

    def reach(self) -> tuple[str, int]:
        """The field setting how far from the best quotes orders arrive, and that distance in ticks."""
        return "insert", len(self.insert)

    def params(self) -> F.FlowParams:
        """The engine's parameters of this flow."""
        insert, cancel, market = self.tables()
        return F.queue_reactive_params(insert, cancel, market, inside=self.inside, far_cancel=self.far_cancel,
                                       size=self.size)


#: A flow config, dispatched on its ``model`` key. Every model's config has ``params()`` (the engine's
#: ``FlowParams``), ``event_rates()`` (expected events per second by field) and ``reach()``.
FlowConfig = Annotated[CSTFlow | HawkesFlow | QueueReactiveFlow, Field(discriminator="model")]


class InformedConfig(Strict):
    """Informed flow: a fundamental price towards which market orders lean.

    The fundamental F (ticks) jumps at ``rate`` by N(0, jump_ticks**2); market orders buy with probability 1 / (1 +
    exp(-kappa (F - mid))), so the price is pulled towards F.
    """

    rate: Rate = Field(0.05, description="jumps of the fundamental per unit time")
    jump_ticks: float = Field(5.0, gt=0, le=1e6, description="standard deviation of a jump, in ticks (at most 1e6)")
    kappa: float = Field(0.5, ge=0, le=COEF_MAX, description="tilt of market-order direction per tick of F - mid")


def build_flow_params(flow: FlowConfig, informed: InformedConfig | None = None) -> F.FlowParams:
    """The engine's parameters for a validated flow config (and optional informed component)."""
    params = flow.params()
    if informed is not None:
        params = F.with_informed(params, informed.rate, informed.jump_ticks, informed.kappa)
    return params
