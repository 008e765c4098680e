"""``lobgym report <study dir>``: a markdown report with tables and matplotlib figures of a study.

Arms are the grid cells without the seed (env x agent x reward x initial lr); every statistic is
over the arm's seeds, and every interval is :func:`lobgym.stats.mean_ci` over them (a Student t
interval at the usual 2-10 seeds), labelled with its method and n. All trials of an env were
evaluated on the same held-out market seeds, so their scores and the baselines' are directly
comparable (common random numbers).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from lobgym.io import write_atomic, write_text_atomic
from lobgym.state_files import read_json
from lobgym.stats import CI, describe, mean_ci
from lobgym.tools.study import load_results, load_study, trial_baselines

METRICS = ("return", "pnl", "pnl_std", "sharpe", "mean_abs_inventory", "fills")


def _arm(row: dict[str, str]) -> tuple[str, str, str, str]:
    return row["env"], row["agent"], row["reward"], row["lr"]


def _order(arm: tuple[str, str, str, str]) -> tuple:
    """Arms by env, agent, reward, then initial learning rate as a number (1e-5 before 1e-4)."""
    env, agent, reward, lr = arm
    return env, agent, reward, float(lr) if lr else 0.0


def _label(arm: tuple[str, str, str, str], with_env: bool) -> str:
    env, agent, reward, lr = arm
    parts = ([env] if with_env else []) + [agent] + ([reward] if reward else []) + ([f"lr {float(lr):g}"] if lr else [])
    return " / ".join(parts)


def baselines_of(out: Path, rows: list[dict[str, str]]) -> dict[str, dict[str, dict[str, float]]]:
    """Env -> baseline -> summary: the study's baselines.json, else (older study folders) the trials' own."""
    if (out / "baselines.json").is_file():
        return read_json(out / "baselines.json", expect=dict)
    return trial_baselines(out, rows)


def summarize_arms(rows: list[dict[str, str]], curve: str = "return") -> dict[tuple, dict[str, Any]]:
    """Per arm: final metrics per seed and over seeds, reward terms and learning curves.

    The final metrics per seed, their mean and interval over seeds (``<metric>_ci``, a
    :class:`lobgym.stats.CI`), each reward term's mean episode sum (``terms``), and the learning curves.
    """
    finals: dict[tuple, list[dict[str, str]]] = defaultdict(list)
    curves: dict[tuple, dict[str, list[tuple[int, float, float]]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        arm = _arm(row)
        curves[arm][row["seed"]].append((int(row["timesteps"]), float(row[curve]), float(row["lr_now"])))
        if row["final"] == "1":
            finals[arm].append(row)
    out = {}
    for arm, fin in finals.items():
        stats: dict[str, Any] = {"seeds": len(fin), "curves": curves[arm]}
        for m in METRICS:
            x = np.array([float(r[m]) for r in fin])
            stats[m] = x
            stats[f"{m}_mean"] = float(np.mean(x))
            try:
                stats[f"{m}_ci"] = mean_ci(x)
            except ValueError as err:
                raise ValueError(f"results.csv, arm {_label(arm, True)}, column {m}: {err}") from None
        stats["terms"] = {k.removeprefix("term_"): float(np.mean([float(r[k]) for r in fin]))
                          for k in fin[0] if k.startswith("term_") and fin[0][k] != ""}
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


def plot_curves(arms: dict[tuple, dict[str, Any]], baselines: dict, path: Path, curve: str = "return") -> Path:
    """Evaluation ``curve`` and learning rate against timesteps.

    The ``curve`` is the return or PnL (mean and :func:`lobgym.stats.mean_ci` band over seeds); one
    column per (env, initial lr), one line per agent / reward.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(a[0], a[3]) for a in arms}, key=lambda p: (p[0], float(p[1]) if p[1] else 0.0))
    lines = sorted({(a[1], a[2]) for a in arms})
    colors = {ln: plt.cm.tab10(i % 10) for i, ln in enumerate(lines)}
    one_env = len({env for env, _ in panels}) == 1  # share the y axes only where the scales agree
    # the learning-rate row only when some rate moved or differs between arms
    show_lr = _rates_vary(arms)
    fig, axes = plt.subplots(2 if show_lr else 1, len(panels), figsize=(4.2 * len(panels), 6.5 if show_lr else 3.6),
                             squeeze=False, sharex="col", sharey="row" if one_env else False)
    from matplotlib.ticker import FuncFormatter

    thousands = FuncFormatter(lambda x, _: f"{x / 1000:g}k" if x else "0")
    bands = curve_bands(arms)
    for j, (env, lr) in enumerate(panels):
        top, bottom = axes[0, j], axes[-1, j]
        for arm, s in arms.items():
            if (arm[0], arm[3]) != (env, lr):
                continue
            steps, _, rate = _aligned(s["curves"])
            band = bands[arm]
            mean, low, high = (np.array([getattr(ci, k) for ci in band]) for k in ("mean", "low", "high"))
            c = colors[(arm[1], arm[2])]
            name = " / ".join(x for x in (arm[1], arm[2]) if x)
            top.plot(steps, mean, color=c, label=name)
            if np.isfinite(low).all():  # a single seed has no band
                top.fill_between(steps, low, high, color=c, alpha=0.2)
            for r in rate if show_lr else ():
                bottom.plot(steps, r, color=c, alpha=0.6, lw=1)
        for b, summary in sorted(baselines.get(env, {}).items()):
            level = summary[f"{curve}_mean"]
            top.axhline(level, ls=":", lw=1, color="grey")
            top.annotate(b, (0, level), fontsize=7, color="grey", va="bottom")
        top.set_title(f"{env}" + (f", initial lr {float(lr):g}" if lr else ""), fontsize=10)
        if show_lr:
            bottom.set_yscale("log")
        bottom.set_xlabel("timesteps")
        bottom.xaxis.set_major_formatter(thousands)
        if j == 0:
            top.set_ylabel(f"evaluation {'PnL' if curve == 'pnl' else 'return'} (mean over seeds)")
            if show_lr:
                bottom.set_ylabel("learning rate (each seed)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"lines: mean over seeds; bands: {describe((ci for b in bands.values() for ci in b), 'seeds')}",
                 fontsize=9)
    fig.tight_layout()
    write_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    plt.close(fig)
    return path


def curve_bands(arms: dict[tuple, dict[str, Any]]) -> dict[tuple, list[CI]]:
    """Per arm, the interval of the mean evaluation score over seeds at each evaluation of its curve."""
    return {arm: [mean_ci(col) for col in _aligned(s["curves"])[1].T] for arm, s in arms.items()}


def _rates_vary(arms: dict[tuple, dict[str, Any]]) -> bool:
    """Whether some learning rate moved during training or differs between arms."""
    return len({lr for s in arms.values() for c in s["curves"].values() for _, _, lr in c}) > 1


def plot_frontier(arms: dict[tuple, dict[str, Any]], baselines: dict, path: Path) -> Path:
    """Risk against return of the final policies: mean PnL against std of PnL and against mean |q|.

    One point per arm (bars: :func:`lobgym.stats.mean_ci` of the mean PnL over seeds, its method and n
    in the title), baselines in grey.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({a[0] for a in arms})
    fig, axes = plt.subplots(len(envs), 2, figsize=(11, 4.2 * len(envs)), squeeze=False)
    for i, env in enumerate(envs):
        mine = sorted((a for a in arms if a[0] == env), key=_order)
        for j, (risk, label) in enumerate((("pnl_std", "std of episode PnL"),
                                           ("mean_abs_inventory", "mean |inventory|"))):
            ax = axes[i, j]
            for k, arm in enumerate(mine):
                s = arms[arm]
                ci = s["pnl_ci"]
                yerr = [[ci.mean - ci.low], [ci.high - ci.mean]] if ci.method != "none" else None
                ax.errorbar(s[f"{risk}_mean"], s["pnl_mean"], yerr=yerr,
                            fmt="o", color=plt.cm.tab10(k % 10), label=_label(arm, False), capsize=3)
            for name, b in sorted(baselines.get(env, {}).items()):
                x = b["pnl_std"] if risk == "pnl_std" else b["mean_abs_inventory"]
                ax.plot(x, b["pnl_mean"], marker="s", color="grey", ls="none")
                ax.annotate(name, (x, b["pnl_mean"]), fontsize=7, color="grey", xytext=(3, 3),
                            textcoords="offset points")
            ax.set_xlabel(label)
            ax.set_ylabel("mean episode PnL")
            ax.set_title(f"{env}: return against risk\nbars: {describe(arms[a]['pnl_ci'] for a in mine)}",
                         fontsize=10)
        axes[i, 0].legend(fontsize=7)
    fig.tight_layout()
    write_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    plt.close(fig)
    return path


def plot_attribution(arms: dict[tuple, dict[str, Any]], path: Path) -> Path:
    """Each arm's mean episode reward split into its weighted terms.

    The terms are shown as shares of the arm's total absolute term mass (stacked; negatives below 0), so
    that arms whose rewards differ in scale by orders of magnitude (CARA utility against PnL) are all
    readable; each bar is labelled with the arm's mean episode reward.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({a[0] for a in arms})
    names = sorted({t for s in arms.values() for t in s["terms"]})
    colors = {t: plt.cm.tab10(i % 10) for i, t in enumerate(names)}
    fig, axes = plt.subplots(1, len(envs), figsize=(max(6.0, 1.1 * len(arms)), 4.8), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        mine = sorted((a for a in arms if a[0] == env), key=_order)
        for x, arm in enumerate(mine):
            terms = arms[arm]["terms"]
            mass = sum(abs(v) for v in terms.values())
            up = down = 0.0
            for t, v in sorted(terms.items()):
                share = v / mass if mass > 0 else 0.0
                ax.bar(x, share, bottom=up if share >= 0 else down, color=colors[t], width=0.7)
                up, down = (up + share, down) if share >= 0 else (up, down + share)
            ax.annotate(f"{arms[arm]['return_mean']:.4g}", (x, up), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_ylim(-1.1, 1.15)
        ax.set_ylabel("share of the arm's total |term| (label: mean episode reward)", fontsize=8)
        ax.set_xticks(range(len(mine)), [_label(a, False) for a in mine], rotation=35, ha="right", fontsize=8)
        ax.set_title(f"{env}: reward by term", fontsize=10)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[t]) for t in names]
    axes[0, -1].legend(handles, names, fontsize=7)
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
    # Rewards differ between reward variants, so their returns are not comparable: PnL is.
    curve = "pnl" if spec.rewards else "return"
    arms = summarize_arms(rows, curve)
    baselines = baselines_of(out, rows)
    norm = normalised(arms, baselines, spec.normalise)
    fig = plot_curves(arms, baselines, out / "learning_curves.png", curve)
    frontier = plot_frontier(arms, baselines, out / "frontier.png")
    attribution = plot_attribution(arms, out / "attribution.png")
    with_env = len({a[0] for a in arms}) > 1
    final_label = describe((s[f"{m}_ci"] for s in arms.values() for m in ("return", "pnl")), "seeds")
    pnl_label = describe((s["pnl_ci"] for s in arms.values()), "seeds")
    band_label = describe((ci for b in curve_bands(arms).values() for ci in b), "seeds")
    lines = [f"# Study `{spec.name}`", "", spec.description.strip(), "",
             f"{len(rows)} evaluations of {sum(s['seeds'] for s in arms.values())} finished trials; budget "
             f"{spec.timesteps:,} timesteps per trial; evaluation: {spec.eval.episodes} episodes on market seeds "
             f"{spec.eval.seed}..{spec.eval.seed + spec.eval.episodes - 1}, the same for every trial and baseline.",
             "", f"## Final evaluation per arm (mean over seeds; {final_label})", ""]
    head = ["arm", "seeds", "return", "return CI", "PnL", "PnL CI", "PnL std", "Sharpe", "mean abs q"]
    if norm:
        head += [f"normalised ({spec.normalise.zero} = 0, best {spec.normalise.one} = 1)", "worst seed"]
    lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for arm in sorted(arms, key=_order):
        s = arms[arm]
        cells = [_label(arm, with_env), str(s["seeds"]), _f(s["return_mean"]),
                 f"[{_f(s['return_ci'].low)}, {_f(s['return_ci'].high)}]", _f(s["pnl_mean"]),
                 f"[{_f(s['pnl_ci'].low)}, {_f(s['pnl_ci'].high)}]", _f(s["pnl_std_mean"]),
                 _f(s["sharpe_mean"]), _f(s["mean_abs_inventory_mean"])]
        if norm:
            n = norm.get(arm)
            cells += [_f(n["mean"], 2), _f(n["worst_seed"], 2)] if n else ["-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    for env, bl in baselines.items():
        # with reward variants a baseline's return depends on the arm's reward; its PnL does not
        ret = [] if spec.rewards else ["return"]
        lines += ["", f"Baselines on `{env}` (same seeds):", "",
                  "| " + " | ".join(["baseline", *ret, "PnL", "PnL std", "Sharpe", "mean abs q"]) + " |",
                  "|---" * (5 + len(ret)) + "|"]
        for name, b in bl.items():
            cells = [name] + ([_f(b["return_mean"])] if ret else []) + [
                _f(b["pnl_mean"]), _f(b["pnl_std"]), _f(b["sharpe"]), _f(b["mean_abs_inventory"])]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Learning curves", "", f"![learning curves and learning rates]({fig.name})", "",
              ("Top: e" if _rates_vary(arms) else "E")
              + f"valuation {'PnL (rewards differ between arms)' if curve == 'pnl' else 'return'} against "
              f"training timesteps (mean over seeds, band: {band_label}); dotted lines: baselines."
              + (" Bottom: the learning rate of each seed's run." if _rates_vary(arms) else
                 f" Every run kept the same learning rate ({float(rows[0]['lr_now']):g})."), "",
              "## Risk and return", "", f"![risk-return frontier]({frontier.name})", "",
              "Mean episode PnL of each arm's final policy against the std of episode PnL (left) and the mean "
              f"|inventory| (right); bars: interval of the mean PnL over seeds ({pnl_label}); grey: baselines.", "",
              "## Reward attribution", ""]
    terms = sorted({t for s in arms.values() for t in s["terms"]})
    if terms:
        lines += ["Mean episode sum of each weighted reward term of the final policies (the terms of each arm's "
                  "own reward; blank where its reward has no such term):", "",
                  "| arm | " + " | ".join(terms) + " | total |", "|---" * (len(terms) + 2) + "|"]
        for arm in sorted(arms, key=_order):
            s = arms[arm]
            lines.append(f"| {_label(arm, with_env)} | " + " | ".join(
                _f(s["terms"][t]) if t in s["terms"] else "" for t in terms) + f" | {_f(s['return_mean'])} |")
        lines += ["", f"![reward attribution]({attribution.name})", "",
                  "Figure: each term's share of the arm's total absolute term mass (rewards differ in scale by "
                  "orders of magnitude); the label over each bar is the arm's mean episode reward.", ""]
    failures = out / "failures.json"
    failed = read_json(failures, expect=dict) if failures.is_file() else {}
    if failed:
        lines += ["## Failed trials", ""] + [f"- `{k}`: {v['error']}" for k, v in failed.items()] + [""]
    return write_text_atomic(out / "report.md", "\n".join(lines))
