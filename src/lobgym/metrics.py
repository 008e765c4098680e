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


def as_dict(row: np.ndarray) -> dict[str, float]:
    """One episode's metrics row as ``{name: value}``."""
    return {name: float(v) for name, v in zip(METRICS, row, strict=True)}


def summarize(rows: np.ndarray) -> dict[str, float]:
    """Summary over episodes (rows of :data:`METRICS`): means and stds, and the Sharpe ratio."""
    rows = np.asarray(rows, dtype=np.float64)
    col = {name: rows[:, j] for j, name in enumerate(METRICS)}
    pnl_std = float(np.std(col["pnl"], ddof=1)) if len(rows) > 1 else 0.0
    return {
        "episodes": float(len(rows)),
        "pnl_mean": float(np.mean(col["pnl"])),
        "pnl_std": pnl_std,
        "sharpe": float(np.mean(col["pnl"]) / pnl_std) if pnl_std > 0 else 0.0,
        "final_inventory_mean": float(np.mean(col["final_inventory"])),
        "final_inventory_std": float(np.std(col["final_inventory"], ddof=1)) if len(rows) > 1 else 0.0,
        "mean_abs_inventory": float(np.mean(col["mean_abs_inventory"])),
        "mean_spread": float(np.nanmean(col["mean_spread"])) if np.isfinite(col["mean_spread"]).any() else float("nan"),
        "fills_mean": float(np.mean(col["fills"])),
        "fees_mean": float(np.mean(col["fees"])),
        "quote_uptime": float(np.mean(col["quote_uptime"])),
    }
