"""Reward terms: a registry of named terms, each a formula over one step, composed by weight.

An env's reward is ``sum_j weight_j * term_j`` over the terms listed under ``reward:`` in its
config, and ``info["reward_terms"]`` reports each weighted term so that they sum exactly to the
reward. Notation per step of length dt: PnL_t = change of cash + q * S (gross of fees), f_t = fees
paid this step, q the inventory after the step (q_T at the horizon), S the mid, W_T the episode's
net PnL at the horizon (mark-to-market at the mid, after fees). "Terminal" terms are 0 except at
the step that reaches the horizon.

Every term is evaluated inside the env's fused kernel through one signature, selected by an
integer code; its parameters travel as a row of floats (kernels never see strings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from pydantic import Field, ValidationError

from lobgym.config_base import COEF_MAX, PRICE_MAX, Strict
from lobgym.market._jit import inline

PNL = 0
FEES = 1
RUNNING_INVENTORY_PENALTY = 2
TERMINAL_INVENTORY_PENALTY = 3
TERMINAL_LIQUIDATION = 4
DAMPENED_PNL = 5
CARA_UTILITY = 6
DIFFERENTIAL_SHARPE = 7
CVAR_PENALTY = 8
SPREAD_CAPTURED = 9
ADVERSE_SELECTION = 10

MAX_PARAMS = 2
_CARA_MAX_EXPONENT = 50.0  # keeps -exp(-gamma W) finite for catastrophic episodes


class _Params(Strict):
    """A term's parameters: finite, bounded (coefficients at most COEF_MAX, prices at most PRICE_MAX)."""


class NoParams(_Params):
    """A term without parameters."""


class RunningInventoryParams(_Params):
    """Parameters of ``running_inventory_penalty``."""

    phi: float = Field(ge=0, le=COEF_MAX, description=f"running inventory aversion (at most {COEF_MAX:g})")


class TerminalInventoryParams(_Params):
    """Parameters of ``terminal_inventory_penalty``."""

    alpha: float = Field(ge=0, le=COEF_MAX, description=f"terminal inventory aversion (at most {COEF_MAX:g})")


class LiquidationParams(_Params):
    """Parameters of ``terminal_liquidation``."""

    cost_per_unit: float = Field(0.0, ge=0, le=PRICE_MAX, description="cost per lot liquidated (e.g. a half-spread; "
                                                                      f"at most {PRICE_MAX:g})")
    impact: float = Field(0.0, ge=0, le=COEF_MAX, description=f"quadratic impact coefficient (at most {COEF_MAX:g})")


class DampenedPnlParams(_Params):
    """Parameters of ``dampened_pnl``."""

    eta: float = Field(ge=0, le=COEF_MAX, description="dampening factor on inventory PnL (1 removes it all; at most "
                                                      f"{COEF_MAX:g})")
    asymmetric: bool = Field(True, description="dampen only speculative gains (Spooner et al.)")


class CaraParams(_Params):
    """Parameters of ``cara_utility``."""

    gamma: float = Field(gt=0, le=COEF_MAX, description=f"absolute risk aversion (at most {COEF_MAX:g})")


class DifferentialSharpeParams(_Params):
    """Parameters of ``differential_sharpe``."""

    eta: float = Field(0.01, gt=0, lt=1, description="adaptation rate of the moving moments")


class MarkoutParams(_Params):
    """Parameters of ``adverse_selection``."""

    horizon: int = Field(1, ge=1, le=10_000, description="steps after a fill's step at which it is marked")


class CvarParams(_Params):
    """Parameters of ``cvar_penalty``."""

    alpha: float = Field(0.05, gt=0, le=1, description="tail fraction of the worst per-step losses")


#: The step-outcome contract: every field a reward term may read, ``"<struct>.<field>"`` as the kernel
#: names them (``out`` the step outcome, ``state`` the market state, ``stats`` the episode accumulators,
#: ``p`` the market parameters). Every market kind's step provides all of them (a test checks each
#: kind's structs, another that :func:`_term_value` reads nothing else); a term declares which it reads.
STEP_FIELDS: dict[str, str] = {
    "out.pnl": "change of cash + q * mid this step, gross of fees",
    "out.fee": "fees paid this step",
    "out.done": "the step reached the horizon",
    "out.inventory_before": "inventory at the step's start",
    "out.mid_before": "mid at the step's start",
    "out.bid_lots": "lots bought this step",
    "out.ask_lots": "lots sold this step",
    "out.spread_captured": "sum over this step's fills of signed (mid at the step's start - price) * lots",
    "state.inventory": "inventory after the step",
    "state.mid": "mid after the step",
    "state.cash": "cash after the step, gross of fees",
    "state.fees": "fees paid this episode",
    "stats.wealth0": "mark-to-market value at reset",
    "p.dt": "step length",
}
#: Read for every term, whichever it is (the kernel's shared preamble).
COMMON_READS = ("out.pnl", "out.fee", "state.inventory", "out.done")


@dataclass(frozen=True)
class RewardTerm:
    """A registered reward term.

    Its code, parameter model, formula, the contract fields it reads (:data:`STEP_FIELDS`, besides
    :data:`COMMON_READS`) and the per-env state it needs.
    """

    code: int
    params: type[_Params]
    formula: str
    reads: tuple[str, ...] = ()
    # "none", "two" (moving moments), "tail" (a heap of the worst losses) or "markout" (a ring of fills)
    state_slots: str = "none"

    def encode(self, params: _Params) -> np.ndarray:
        """The parameters as the kernel's row of ``MAX_PARAMS`` floats, in field order (zeros after)."""
        row = np.zeros(MAX_PARAMS)
        values = [float(v) for v in params.model_dump().values()]
        row[: len(values)] = values
        return row


TERMS: dict[str, RewardTerm] = {
    "pnl": RewardTerm(PNL, NoParams, "PnL_t = (cash + q S)_t - (cash + q S)_{t-dt}, gross of fees",
                      reads=("out.pnl",)),
    "fees": RewardTerm(FEES, NoParams, "-f_t: fees paid this step (positive for rebates)", reads=("out.fee",)),
    "running_inventory_penalty": RewardTerm(
        RUNNING_INVENTORY_PENALTY, RunningInventoryParams, "-phi * q^2 * dt  (q after the step)",
        reads=("state.inventory", "p.dt"),
    ),
    "terminal_inventory_penalty": RewardTerm(
        TERMINAL_INVENTORY_PENALTY, TerminalInventoryParams, "-alpha * q_T^2 at the horizon",
        reads=("state.inventory", "out.done"),
    ),
    "terminal_liquidation": RewardTerm(
        TERMINAL_LIQUIDATION,
        LiquidationParams,
        "-(cost_per_unit * |q_T| + impact * q_T^2) at the horizon: the cost of unwinding q_T at the mid",
        reads=("state.inventory", "out.done"),
    ),
    "dampened_pnl": RewardTerm(
        DAMPENED_PNL,
        DampenedPnlParams,
        "PnL_t - max(0, eta * q_{t-dt} dS_t) (asymmetric; Spooner et al. 2018), or PnL_t - eta * q_{t-dt} dS_t",
        reads=("out.pnl", "out.inventory_before", "state.mid", "out.mid_before"),
    ),
    "cara_utility": RewardTerm(
        CARA_UTILITY, CaraParams, "-exp(-gamma * W_T) at the horizon (exponent capped at 50)",
        reads=("out.done", "state.cash", "state.inventory", "state.mid", "stats.wealth0", "state.fees"),
    ),
    "differential_sharpe": RewardTerm(
        DIFFERENTIAL_SHARPE,
        DifferentialSharpeParams,
        "D_t = (B dA - A dB / 2) / (B - A^2)^(3/2), dA = R_t - A, dB = R_t^2 - B, R_t = PnL_t - f_t, then"
        " A += eta dA, B += eta dB (Moody & Saffell 2001); 0 while B - A^2 <= 0; A = B = 0 at reset",
        reads=("out.pnl", "out.fee"),
        state_slots="two",
    ),
    "cvar_penalty": RewardTerm(
        CVAR_PENALTY,
        CvarParams,
        "-CVaR_alpha of the episode's per-step losses -(PnL_t - f_t): minus the mean of the"
        " ceil(alpha n) largest losses, at the horizon",
        reads=("out.pnl", "out.fee", "out.done"),
        state_slots="tail",
    ),
    "spread_captured": RewardTerm(
        SPREAD_CAPTURED, NoParams,
        "sum over this step's fills of lots * (mid - price) for buys, lots * (price - mid) for sells, mid at the"
        " step's start (so PnL_t = spread_captured + q_t dS_t exactly)",
        reads=("out.spread_captured",),
    ),
    "adverse_selection": RewardTerm(
        ADVERSE_SELECTION, MarkoutParams,
        "markout of past fills: the fills of step t - horizon, sum of signed lots * (S_t - S at the start of"
        " their step), paid at step t (all pending fills at the horizon T); negative when fills precede"
        " adverse moves",
        reads=("out.bid_lots", "out.ask_lots", "out.mid_before", "state.mid", "out.done"),
        state_slots="markout",
    ),
}


class RewardSpec(NamedTuple):
    """The composed reward as arrays for the kernels."""

    codes: np.ndarray  #: (T,) int64
    weights: np.ndarray  #: (T,) float64
    params: np.ndarray  #: (T, MAX_PARAMS) float64
    offsets: np.ndarray  #: (T,) int64 first slot of each term in the per-env reward state


def contract_fields(structs: dict[str, type]) -> set[str]:
    """The ``"<struct>.<field>"`` names a market's step structs provide.

    ``structs`` maps names to the NamedTuple types its kernel passes to :func:`reward_one`
    (``{"out": StepOutcome, ...}``).
    """
    return {f"{key}.{name}" for key, cls in structs.items() for name in cls._fields}


def check_reward_fields(terms: list[str], provided: set[str], market: str) -> None:
    """Raise a ``ValueError`` naming the first term (``reward[j]``) that reads a field ``provided`` lacks.

    The message names the field too. Run before the step is compiled, which would otherwise fail with a numba typing
    error.
    """
    for j, name in enumerate(terms):
        for f in (*COMMON_READS, *TERMS[name].reads):
            if f not in provided:
                raise ValueError(f"reward[{j}].term = {name!r} reads {f} ({STEP_FIELDS.get(f, 'not in the contract')}),"
                                 f" which the {market} market's step does not provide")


def cvar_tail_size(alpha: float, n_steps: int) -> int:
    """Number of worst steps averaged by the CVaR term over a full episode: ceil(alpha * n)."""
    return max(1, math.ceil(alpha * n_steps - 1e-12))


def validate_term(name: str, params: dict, where: str = "reward") -> _Params:
    """Validate one term's name and parameters; raise ``ValueError`` naming the field otherwise.

    ``where`` prefixes the field paths in messages (``"reward[0]"`` gives ``reward[0].params.phi``;
    ``""`` gives ``params.phi``).
    """
    prefix = f"{where}." if where else ""
    if name not in TERMS:
        raise ValueError(f"{prefix}term = {name!r}: unknown reward term; known terms: {', '.join(TERMS)}")
    model = TERMS[name].params
    try:
        return model.model_validate(params or {})
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(x) for x in first["loc"])
        allowed = ", ".join(model.model_fields) or "none"
        # A missing field's "input" is the whole params mapping, which says nothing about the field.
        shown = "" if first["type"] == "missing" else f" = {first.get('input')!r}"
        raise ValueError(
            f"{prefix}params.{field}{shown}: {first['msg']} (term {name!r} takes: {allowed})"
        ) from None


def build_reward_spec(terms: list[tuple[str, float, dict]], n_steps: int) -> tuple[RewardSpec, int]:
    """Arrays for ``[(name, weight, params), ...]`` and the per-env state width they need."""
    codes, weights, rows, offsets = [], [], [], []
    width = 0
    for j, (name, weight, params) in enumerate(terms):
        term = TERMS[name]
        codes.append(term.code)
        weights.append(float(weight))
        row = term.encode(validate_term(name, params, where=f"reward[{j}]"))
        offsets.append(width)
        if term.state_slots == "tail":
            row[1] = cvar_tail_size(row[0], n_steps)
            width += 1 + int(row[1])
        elif term.state_slots == "markout":
            width += 1 + 2 * int(row[0])
        else:
            width += {"none": 0, "two": 2}[term.state_slots]
        rows.append(row)
    spec = RewardSpec(
        codes=np.array(codes, dtype=np.int64),
        weights=np.array(weights, dtype=np.float64),
        params=np.array(rows, dtype=np.float64).reshape(len(terms), MAX_PARAMS),
        offsets=np.array(offsets, dtype=np.int64),
    )
    return spec, max(width, 1)


@inline
def _term_value(code, prm, off, i, out, state, stats, p, rstate):
    pnl = out.pnl[i]
    net = pnl - out.fee[i]
    q = state.inventory[i]
    done = out.done[i]
    if code == PNL:
        return pnl
    if code == FEES:
        return -out.fee[i]
    if code == RUNNING_INVENTORY_PENALTY:
        return -prm[0] * q * q * p.dt
    if code == TERMINAL_INVENTORY_PENALTY:
        return -prm[0] * q * q if done else 0.0
    if code == TERMINAL_LIQUIDATION:
        return -(prm[0] * abs(q) + prm[1] * q * q) if done else 0.0
    if code == DAMPENED_PNL:
        speculative = prm[0] * out.inventory_before[i] * (state.mid[i] - out.mid_before[i])
        if prm[1] != 0.0:
            return pnl - max(0.0, speculative)
        return pnl - speculative
    if code == CARA_UTILITY:
        if not done:
            return 0.0
        wealth = state.cash[i] + q * state.mid[i] - stats.wealth0[i] - state.fees[i]
        return -math.exp(min(-prm[0] * wealth, _CARA_MAX_EXPONENT))
    if code == DIFFERENTIAL_SHARPE:
        a = rstate[i, off]
        b = rstate[i, off + 1]
        d_a = net - a
        d_b = net * net - b
        var = b - a * a
        value = (b * d_a - 0.5 * a * d_b) / var**1.5 if var > 0.0 else 0.0
        rstate[i, off] = a + prm[0] * d_a
        rstate[i, off + 1] = b + prm[0] * d_b
        return value
    if code == SPREAD_CAPTURED:
        return out.spread_captured[i]
    if code == ADVERSE_SELECTION:
        return _markout(rstate, i, off, np.int64(prm[0]), out.bid_lots[i] - out.ask_lots[i], out.mid_before[i],
                        state.mid[i], done)
    # CVAR_PENALTY: a min-heap of the m largest losses so far (slot off holds its size), so the
    # tail mean is ready at the horizon without storing or sorting the whole episode.
    m = np.int64(prm[1])
    _heap_push(rstate, i, off, m, -net)
    if not done:
        return 0.0
    count = np.int64(rstate[i, off])
    tail = 0.0
    for j in range(count):
        tail += rstate[i, off + 1 + j]
    return -tail / count


@inline
def _markout(rstate, i, off, k, signed_lots, mid_before, mid, done):
    """The markout due now, from a ring of the last ``k`` steps' fills.

    The ring holds (signed lots, signed lots * mid at the step's start) at ``rstate[i, off + 1 :]``;
    slot ``off`` counts steps.
    """
    n = np.int64(rstate[i, off])
    slot = off + 1 + 2 * (n % k)
    value = rstate[i, slot] * mid - rstate[i, slot + 1]  # step n - k's fills (zeros while n < k)
    rstate[i, slot] = signed_lots
    rstate[i, slot + 1] = signed_lots * mid_before
    rstate[i, off] = n + 1
    if done:
        for j in range(k):
            value += rstate[i, off + 1 + 2 * j] * mid - rstate[i, off + 2 + 2 * j]
    return value


@inline
def _heap_push(rstate, i, off, m, x):
    """Keep the ``m`` largest values seen in a min-heap stored at ``rstate[i, off + 1 : off + 1 + m]``."""
    count = np.int64(rstate[i, off])
    h = off + 1
    if count < m:
        j = count
        rstate[i, off] = count + 1
    elif x > rstate[i, h]:
        j = 0  # replace the smallest and sift it down
        while True:
            child = 2 * j + 1
            if child >= m:
                break
            if child + 1 < m and rstate[i, h + child + 1] < rstate[i, h + child]:
                child += 1
            if rstate[i, h + child] >= x:
                break
            rstate[i, h + j] = rstate[i, h + child]
            j = child
        rstate[i, h + j] = x
        return
    else:
        return
    while j > 0:  # sift the new value up
        parent = (j - 1) // 2
        if rstate[i, h + parent] <= x:
            break
        rstate[i, h + j] = rstate[i, h + parent]
        j = parent
    rstate[i, h + j] = x


@inline
def reward_one(i, spec, out, state, stats, p, rstate, terms):
    """Write env ``i``'s weighted terms into ``terms[i]`` and return their sum (the reward)."""
    total = 0.0
    for j in range(spec.codes.shape[0]):
        value = spec.weights[j] * _term_value(
            spec.codes[j], spec.params[j], spec.offsets[j], i, out, state, stats, p, rstate
        )
        terms[i, j] = value
        total += value
    return total


@inline
def reset_reward_state_one(i, rstate):
    """Zero env ``i``'s reward state (moving moments, loss heap, markout ring) for a new episode."""
    for j in range(rstate.shape[1]):
        rstate[i, j] = 0.0
