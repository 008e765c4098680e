"""``lobgym report <study dir>``: a markdown report with tables and matplotlib figures of a study.

Arms are the grid cells without the seed (env x agent x reward x initial lr); every statistic is
over the arm's seeds. All trials of an env were evaluated on the same held-out market seeds, so
their scores and the baselines' are directly comparable (common random numbers).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from lobgym.io import write_atomic, write_text_atomic
from lobgym.study import load_results, load_study

METRICS = ("return", "pnl", "pnl_std", "sharpe", "mean_abs_inventory", "fills")


def bootstrap_ci(x: np.ndarray, level: float = 0.95, n: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (a single value gives a zero-width interval)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return float(x.mean()), float(x.mean())
    means = np.random.default_rng(seed).choice(x, size=(n, len(x)), replace=True).mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _arm(row: dict[str, str]) -> tuple[str, str, str, str]:
    return row["env"], row["agent"], row["reward"], row["lr"]


def _label(arm: tuple[str, str, str, str], with_env: bool) -> str:
    env, agent, reward, lr = arm
    parts = ([env] if with_env else []) + [agent] + ([reward] if reward else []) + ([f"lr {float(lr):g}"] if lr else [])
    return " / ".join(parts)


def baselines_of(out: Path, rows: list[dict[str, str]]) -> dict[str, dict[str, dict[str, float]]]:
    """env -> baseline -> summary, from the trials' own baselines.json (same seeds for every trial)."""
    found: dict[str, dict[str, dict[str, float]]] = {}
    for row in rows:
        if row["env"] not in found:
            path = out / "runs" / row["trial"] / "baselines.json"
            if path.is_file():
                found[row["env"]] = json.loads(path.read_text())
    return found


def summarize_arms(rows: list[dict[str, str]]) -> dict[tuple, dict[str, Any]]:
    """Per arm: final metrics per seed, their mean and bootstrap CI, and the learning curves."""
    finals: dict[tuple, list[dict[str, str]]] = defaultdict(list)
    curves: dict[tuple, dict[str, list[tuple[int, float, float]]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        arm = _arm(row)
        curves[arm][row["seed"]].append((int(row["timesteps"]), float(row["return"]), float(row["lr_now"])))
        if row["final"] == "1":
            finals[arm].append(row)
    out = {}
    for arm, fin in finals.items():
        stats: dict[str, Any] = {"seeds": len(fin), "curves": curves[arm]}
        for m in METRICS:
            x = np.array([float(r[m]) for r in fin])
            stats[m] = x
            stats[f"{m}_mean"] = float(np.mean(x))
            stats[f"{m}_ci"] = bootstrap_ci(x)
        out[arm] = stats
    return out


def normalised(arms: dict[tuple, dict[str, Any]], baselines: dict[str, dict[str, dict[str, float]]],
               spec_norm: Any) -> dict[tuple, dict[str, float]]:
    """Per arm, ``(score - zero) / (one - zero)`` for the arm mean and for its worst seed."""
    if spec_norm is None:
        return {}
    metric = spec_norm.metric
    key = {"return": "return_mean", "pnl": "pnl_mean", "sharpe": "sharpe"}[metric]
    out = {}
    for env in {a[0] for a in arms}:
        if spec_norm.zero not in baselines.get(env, {}):
            continue
        zero = baselines[env][spec_norm.zero][key]
        ones = [s[f"{metric}_mean"] for a, s in arms.items() if a[0] == env and a[1] == spec_norm.one]
        if not ones:
            continue
        one = max(ones)
        for arm, s in arms.items():
            if arm[0] == env and one != zero:
                out[arm] = {"mean": (s[f"{metric}_mean"] - zero) / (one - zero),
                            "worst_seed": (float(np.min(s[metric])) - zero) / (one - zero), "zero": zero, "one": one}
    return out


def plot_curves(arms: dict[tuple, dict[str, Any]], baselines: dict, path: Path) -> Path:
    """Evaluation return (mean and 95% band over seeds) and learning rate against timesteps; one
    column per (env, initial lr), one line per agent / reward."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(a[0], a[3]) for a in arms}, key=lambda p: (p[0], float(p[1]) if p[1] else 0.0))
    lines = sorted({(a[1], a[2]) for a in arms})
    colors = {ln: plt.cm.tab10(i % 10) for i, ln in enumerate(lines)}
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 6.5), squeeze=False, sharex="col",
                             sharey="row")
    from matplotlib.ticker import FuncFormatter

    thousands = FuncFormatter(lambda x, _: f"{x / 1000:g}k" if x else "0")
    for j, (env, lr) in enumerate(panels):
        top, bottom = axes[0, j], axes[1, j]
        for arm, s in arms.items():
            if (arm[0], arm[3]) != (env, lr):
                continue
            steps, ret, rate = _aligned(s["curves"])
            mean = ret.mean(axis=0)
            half = 1.96 * ret.std(axis=0, ddof=1) / math.sqrt(len(ret)) if len(ret) > 1 else np.zeros_like(mean)
            c = colors[(arm[1], arm[2])]
            name = " / ".join(x for x in (arm[1], arm[2]) if x)
            top.plot(steps, mean, color=c, label=name)
            top.fill_between(steps, mean - half, mean + half, color=c, alpha=0.2)
            for r in rate:
                bottom.plot(steps, r, color=c, alpha=0.6, lw=1)
        for b, summary in sorted(baselines.get(env, {}).items()):
            top.axhline(summary["return_mean"], ls=":", lw=1, color="grey")
            top.annotate(b, (0, summary["return_mean"]), fontsize=7, color="grey", va="bottom")
        top.set_title(f"{env}" + (f", initial lr {float(lr):g}" if lr else ""), fontsize=10)
        bottom.set_yscale("log")
        bottom.set_xlabel("timesteps")
        bottom.xaxis.set_major_formatter(thousands)
        if j == 0:
            top.set_ylabel("evaluation return (mean, 95% band)")
            bottom.set_ylabel("learning rate (each seed)")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    plt.close(fig)
    return path


def _aligned(curves: dict[str, list[tuple[int, float, float]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeds' curves cut to their common length (same eval schedule, so the same timesteps)."""
    seqs = [sorted(c) for c in curves.values()]
    n = min(len(c) for c in seqs)
    steps = np.array([t for t, _, _ in seqs[0][:n]])
    ret = np.array([[r for _, r, _ in c[:n]] for c in seqs])
    rate = np.array([[lr for _, _, lr in c[:n]] for c in seqs])
    return steps, ret, rate


def _f(x: float, digits: int = 3) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def write_report(out: str | Path) -> Path:
    """report.md and figures in the study folder ``out``; returns the report's path."""
    out = Path(out)
    spec = load_study(out / "spec.yaml")
    rows = load_results(out)
    if not rows:
        raise ValueError(f"{out / 'results.csv'}: no finished trials to report on")
    arms = summarize_arms(rows)
    baselines = baselines_of(out, rows)
    norm = normalised(arms, baselines, spec.normalise)
    fig = plot_curves(arms, baselines, out / "learning_curves.png")
    with_env = len({a[0] for a in arms}) > 1
    lines = [f"# Study `{spec.name}`", "", spec.description.strip(), "",
             f"{len(rows)} evaluations of {sum(s['seeds'] for s in arms.values())} finished trials; budget "
             f"{spec.timesteps:,} timesteps per trial; evaluation: {spec.eval.episodes} episodes on market seeds "
             f"{spec.eval.seed}..{spec.eval.seed + spec.eval.episodes - 1}, the same for every trial and baseline.",
             "", "## Final evaluation per arm (mean over seeds, 95% bootstrap CI)", ""]
    head = ["arm", "seeds", "return", "return 95% CI", "PnL", "PnL std", "Sharpe", "mean abs q"]
    if norm:
        head += [f"normalised ({spec.normalise.zero} = 0, best {spec.normalise.one} = 1)", "worst seed"]
    lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for arm in sorted(arms, key=lambda a: (a[0], a[1], a[2], float(a[3]) if a[3] else 0.0)):
        s = arms[arm]
        cells = [_label(arm, with_env), str(s["seeds"]), _f(s["return_mean"]),
                 f"[{_f(s['return_ci'][0])}, {_f(s['return_ci'][1])}]", _f(s["pnl_mean"]), _f(s["pnl_std_mean"]),
                 _f(s["sharpe_mean"]), _f(s["mean_abs_inventory_mean"])]
        if norm:
            n = norm.get(arm)
            cells += [_f(n["mean"], 2), _f(n["worst_seed"], 2)] if n else ["-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    for env, bl in baselines.items():
        lines += ["", f"Baselines on `{env}` (same seeds):", "", "| baseline | return | PnL | PnL std | Sharpe |",
                  "|---|---|---|---|---|"]
        for name, b in bl.items():
            lines.append(f"| {name} | {_f(b['return_mean'])} | {_f(b['pnl_mean'])} | {_f(b['pnl_std'])} | "
                         f"{_f(b['sharpe'])} |")
    lines += ["", f"![learning curves and learning rates]({fig.name})", "",
              "Top: evaluation return against training timesteps (mean over seeds, 95% band); dotted lines: "
              "baselines. Bottom: the learning rate of each seed's run.", ""]
    failures = out / "failures.json"
    if failures.is_file() and json.loads(failures.read_text()):
        lines += ["## Failed trials", ""] + [f"- `{k}`: {v['error']}" for k, v in
                                             json.loads(failures.read_text()).items()] + [""]
    return write_text_atomic(out / "report.md", "\n".join(lines))
