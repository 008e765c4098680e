"""Episode metrics, written by the fused kernel when an episode reaches its horizon.

=====================  ==========================================================================
metric                 definition
=====================  ==========================================================================
pnl                    cash + q_T S_T - (q_0 S_0) - fees: net mark-to-market PnL of the episode
final_inventory        q_T
mean_abs_inventory     mean over steps of |q| after each step
max_abs_inventory      max over the episode of |q|
fills                  lots filled, both sides
bid_fills, ask_fills   lots bought, lots sold
mean_spread            mean quoted spread (ask - bid) over the steps quoted on both sides (NaN if none)
quote_uptime           fraction of step-sides with a live quote
fees                   fees paid (negative = rebates earned)
step_sharpe            mean / std of the per-step net PnL, times sqrt(steps) (0 if std is 0)
steps                  steps in the episode
=====================  ==========================================================================

Across episodes, :func:`summarize` reports means, standard deviations and the Sharpe ratio
mean(pnl) / std(pnl) used to compare market makers since Avellaneda & Stoikov (2008).
"""

from __future__ import annotations

import math

import numpy as np

from lobgym.market._jit import inline

METRICS = (
    "pnl",
    "final_inventory",
    "mean_abs_inventory",
    "max_abs_inventory",
    "fills",
    "bid_fills",
    "ask_fills",
    "mean_spread",
    "quote_uptime",
    "fees",
    "step_sharpe",
    "steps",
)
N_METRICS = len(METRICS)


@inline
def write_metrics_one(i, state, stats, metrics):
    """Write env ``i``'s episode metrics into ``metrics[i]`` in the order of :data:`METRICS`."""
    q = state.inventory[i]
    n = state.step[i]
    metrics[i, 0] = state.cash[i] + q * state.mid[i] - stats.wealth0[i] - state.fees[i]
    metrics[i, 1] = q
    metrics[i, 2] = stats.abs_inventory_sum[i] / n
    metrics[i, 3] = stats.max_abs_inventory[i]
    metrics[i, 4] = stats.bid_lots[i] + stats.ask_lots[i]
    metrics[i, 5] = stats.bid_lots[i]
    metrics[i, 6] = stats.ask_lots[i]
    metrics[i, 7] = stats.spread_sum[i] / stats.two_sided[i] if stats.two_sided[i] > 0 else np.nan
    metrics[i, 8] = (stats.bid_quoted[i] + stats.ask_quoted[i]) / (2.0 * n)
    metrics[i, 9] = state.fees[i]
    mean = stats.pnl_sum[i] / n
    var = stats.pnl_sumsq[i] / n - mean * mean
    metrics[i, 10] = mean / math.sqrt(var) * math.sqrt(n) if var > 1e-300 else 0.0
    metrics[i, 11] = n


#: Episode metrics of the order-book env (:func:`write_book_metrics_one`), in row order.
BOOK_METRICS = (
    "pnl",  # net PnL, as above
    "spread_pnl",  # sum over fills of lots * distance to the mid at the start of their step
    "inventory_pnl",  # sum over steps of q * mid change: pnl = spread_pnl + inventory_pnl - fees
    "fees",
    "final_inventory",
    "mean_abs_inventory",
    "max_abs_inventory",
    "fills",  # lots bought + sold
    "bid_fills",
    "ask_fills",
    "taker_lots",  # lots the agent executed as aggressor (market and marketable orders)
    "fill_ratio",  # lots filled as maker / lots posted in limit orders (NaN if none posted)
    "rejected",  # agent orders rejected (post-only crossing or a full book)
    "mean_spread",  # mean quoted spread in ticks over the steps quoted on both sides at their end
    "quote_uptime",  # fraction of step-sides with an agent order resting at the step's end
    "step_sharpe",
    "events",  # background order-flow events in the episode
    "steps",
)


@inline
def write_book_metrics_one(i, st, stats, metrics):
    """Write env ``i``'s episode metrics into ``metrics[i]`` in the order of :data:`BOOK_METRICS`."""
    q = st.inventory[i]
    n = st.step[i]
    metrics[i, 0] = st.cash[i] + q * st.mid[i] - stats.wealth0[i] - st.fees[i]
    metrics[i, 1] = stats.spread_pnl[i]
    metrics[i, 2] = stats.inventory_pnl[i]
    metrics[i, 3] = st.fees[i]
    metrics[i, 4] = q
    metrics[i, 5] = stats.abs_inventory_sum[i] / n
    metrics[i, 6] = stats.max_abs_inventory[i]
    metrics[i, 7] = stats.bid_lots[i] + stats.ask_lots[i]
    metrics[i, 8] = stats.bid_lots[i]
    metrics[i, 9] = stats.ask_lots[i]
    metrics[i, 10] = stats.taker_lots[i]
    metrics[i, 11] = stats.passive_lots[i] / stats.posted_lots[i] if stats.posted_lots[i] > 0 else np.nan
    metrics[i, 12] = stats.rejected[i]
    metrics[i, 13] = stats.spread_sum[i] / stats.two_sided[i] if stats.two_sided[i] > 0 else np.nan
    metrics[i, 14] = stats.quoted[i] / (2.0 * n)
    mean = stats.pnl_sum[i] / n
    var = stats.pnl_sumsq[i] / n - mean * mean
    metrics[i, 15] = mean / math.sqrt(var) * math.sqrt(n) if var > 1e-300 else 0.0
    metrics[i, 16] = stats.events[i]
    metrics[i, 17] = n


def as_dict(row: np.ndarray, names: tuple[str, ...] = METRICS) -> dict[str, float]:
    """One episode's metrics row as ``{name: value}``."""
    return {name: float(v) for name, v in zip(names, row, strict=True)}


def summarize(rows: np.ndarray, names: tuple[str, ...] = METRICS) -> dict[str, float]:
    """Summary over episodes: means and stds, and the Sharpe ratio.

    ``rows`` hold one episode each, with the metrics ``names`` (:data:`METRICS` or :data:`BOOK_METRICS`).
    """
    rows = np.asarray(rows, dtype=np.float64)
    col = {name: rows[:, j] for j, name in enumerate(names)}
    pnl_std = float(np.std(col["pnl"], ddof=1)) if len(rows) > 1 else 0.0
    return {
        "episodes": float(len(rows)),
        "pnl_mean": float(np.mean(col["pnl"])),
        "pnl_std": pnl_std,
        "sharpe": float(np.mean(col["pnl"]) / pnl_std) if pnl_std > 0 else 0.0,
        "final_inventory_mean": float(np.mean(col["final_inventory"])),
        "final_inventory_std": float(np.std(col["final_inventory"], ddof=1)) if len(rows) > 1 else 0.0,
        "mean_abs_inventory": float(np.mean(col["mean_abs_inventory"])),
        "mean_spread": _nanmean(col["mean_spread"]),
        "fills_mean": float(np.mean(col["fills"])),
        "fees_mean": float(np.mean(col["fees"])),
        "quote_uptime": float(np.mean(col["quote_uptime"])),
        **{f"{k}_mean": _nanmean(col[k]) for k in ("spread_pnl", "inventory_pnl", "fill_ratio") if k in col},
    }


def _nanmean(x: np.ndarray) -> float:
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")
