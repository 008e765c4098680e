"""Test-block evaluation of a book-learning study: every finished trial on its task's protocol.

Each trial's ``best`` model was chosen by the study's evaluations on the validation seeds
1,000,000.. (``eval.seed`` of the spec). Here it runs, deterministically, on the task's own held-out
seed block (``lobgym tasks``: 1,000 episodes from 5,300,000 on cst2010, 5,400,000 on hawkes,
5,500,000 on queue_reactive), which no training or selection decision has seen, together with the
task's tuned ``book_quoter`` and ``random`` on the same seeds (common random numbers). For every
trial it records the paired difference to the tuned quoter (mean, standard error, 95% BCa interval,
n = 1,000) of the return and the trading metrics, its normalised task score, and the summary metrics;
per arm it adds the mean over seeds with a t interval over the seeds.

    python experiments/book_learning/analyse.py runs/studies/book_learning \
        runs/studies/book_learning_offsets runs/studies/book_learning_sac \
        --json experiments/book_learning/results.json

The JSON is written atomically; the tables are printed as Markdown.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lobgym.agents import make_agent
from lobgym.evaluation import evaluate, paired_differences
from lobgym.io import write_json_atomic
from lobgym.stats import mean_ci, paired_ratio_ci
from lobgym.tasks import build_agent, get_task, resolve_agent, task_env

#: paired differences reported against the tuned quoter (episode quantities of BOOK_METRICS)
DIFFS = ("return", "pnl", "spread_pnl", "inventory_pnl", "mean_abs_inventory", "fills")
#: summary metrics per agent (lobgym.metrics.summarize); spread_pnl is the spread captured by fills,
#: inventory_pnl the mark-to-market of the inventory held (where adverse selection shows)
SUMMARY = ("return_mean", "pnl_mean", "pnl_std", "sharpe", "mean_abs_inventory", "fills_mean", "spread_pnl_mean",
           "inventory_pnl_mean", "mean_spread", "quote_uptime")


def finished_trials(studies: list[Path]) -> list[tuple[dict, Path]]:
    out = []
    for study in studies:
        for run in sorted((study / "runs").iterdir()):
            if (run / "report.json").exists() and (run / "trial.json").exists():
                out.append((json.loads((run / "trial.json").read_text()), run))
    return out


def row(ev, comparison=None, score=None) -> dict:
    r = {k: ev.summary.get(k) for k in SUMMARY}
    if comparison is not None:
        r["vs_reference"] = {m: {"diff": c.mean, "se": c.se, "ci": [c.low, c.high], "n": c.n}
                             for m, c in comparison.diffs.items() if m in DIFFS}
    if score is not None:
        r["score"] = {"mean": score.mean, "ci": [score.low, score.high], "method": score.label("episodes")}
    return r


def wall_seconds(run: Path) -> float:
    """The trial's wall time from its meta.json (start) to report.json (written at the end)."""
    from datetime import datetime

    start = datetime.fromisoformat(json.loads((run / "meta.json").read_text())["started"])
    return (datetime.fromtimestamp((run / "report.json").stat().st_mtime).astimezone() - start).total_seconds()


def analyse(studies: list[Path], previous: dict | None = None) -> dict:
    """Evaluate every finished trial of ``studies``; trials already in ``previous`` (an earlier result
    of this script: the evaluation is deterministic) are kept as they are, not run again."""
    trials = finished_trials(studies)
    old = {env: b["trials"] for env, b in (previous or {}).get("envs", {}).items()}
    envs = sorted({t["env_name"] for t, _ in trials} | set(old))
    result: dict = {"studies": sorted({*(previous or {}).get("studies", []), *(str(s) for s in studies)}),
                    "envs": {}}
    for env_name in envs:
        task = get_task(env_name)
        env = task_env(task)
        ref = evaluate(make_agent(task.reference, env), env, episodes=task.episodes, seed=task.seed,
                       name=task.reference)
        zero = evaluate(make_agent(task.zero, env), env, episodes=task.episodes, seed=task.seed, name=task.zero)
        block = {"task_seeds": task.seeds, "episodes": task.episodes, "reference": task.reference,
                 "agents": {task.reference: row(ref), task.zero: row(zero,
                            paired_differences([ref, zero], task.reference)[0])}, "trials": dict(old.get(env_name, {}))}
        for t, run in trials:
            if t["env_name"] != env_name or t["id"] in block["trials"]:
                continue
            spec = resolve_agent(str(run))
            agent, agent_env = build_agent(spec, task)
            ev = evaluate(agent, agent_env, episodes=task.episodes, seed=task.seed, name=t["id"])
            comp = paired_differences([ref, ev], task.reference)[0]
            score = paired_ratio_ci(ev.returns, zero.returns, ref.returns)
            best = json.loads((run / "best" / "info.json").read_text())
            block["trials"][t["id"]] = {"arm": t["agent"], "seed": t["seed"], "run": run.name, "budget": t["budget"],
                                        "wall_seconds": wall_seconds(run), "best_at": best["timesteps"],
                                        "validation_return": best["score"]} | row(ev, comp, score)
        arms: dict = {}
        for r in block["trials"].values():
            arms.setdefault(r["arm"], []).append(r)
        block["arms"] = {}
        for arm, rs in arms.items():
            diffs = [r["vs_reference"]["return"]["diff"] for r in rs]
            scores = [r["score"]["mean"] for r in rs]
            agg = {"seeds": len(rs), "beats_reference_by_2se": sum(
                r["vs_reference"]["return"]["diff"] > 2 * r["vs_reference"]["return"]["se"] for r in rs)}
            if len(rs) >= 2:
                d, s = mean_ci(diffs), mean_ci(scores)
                agg |= {"return_diff": {"mean": d.mean, "se": d.se, "ci": [d.low, d.high], "method": d.label()},
                        "score": {"mean": s.mean, "se": s.se, "ci": [s.low, s.high], "method": s.label()}}
            block["arms"][arm] = agg
        result["envs"][env_name] = block
    return result


def _f(x, nd=3) -> str:
    return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{nd}f}"


def tables(result: dict) -> str:
    lines = []
    for env_name, b in result["envs"].items():
        lines += [f"### {env_name} (test seeds {b['task_seeds']}, n = {b['episodes']} episodes, paired against "
                  f"`{b['reference']}`)", "",
                  "| agent | seed | return | diff vs tuned quoter (SE) [95% BCa] | score [95% BCa] | PnL | PnL std | "
                  "Sharpe | mean \\|q\\| | fills | spread PnL | inventory PnL |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        entries = [(name, "", r) for name, r in b["agents"].items()]
        entries += [(r["arm"], str(r["seed"]), r) for r in sorted(b["trials"].values(),
                                                                   key=lambda r: (r["arm"], r["seed"]))]
        for name, seed, r in entries:
            v = r.get("vs_reference", {}).get("return")
            diff = "-" if v is None else f"{v['diff']:+.3f} ({v['se']:.3f}) [{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}]"
            s = r.get("score")
            sc = "-" if s is None else f"{s['mean']:.3f} [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]"
            lines.append(f"| {name} | {seed} | {_f(r['return_mean'])} | {diff} | {sc} | {_f(r['pnl_mean'])} | "
                         f"{_f(r['pnl_std'])} | {_f(r['sharpe'], 2)} | {_f(r['mean_abs_inventory'], 2)} | "
                         f"{_f(r['fills_mean'], 1)} | {_f(r['spread_pnl_mean'])} | {_f(r['inventory_pnl_mean'])} |")
        lines += ["", "| arm | seeds | beat the quoter by > 2 SE | return diff, mean over seeds [95% t, n = seeds] | "
                      "score, mean over seeds [95% t] |", "|---|---|---|---|---|"]
        for arm, a in b["arms"].items():
            d, s = a.get("return_diff"), a.get("score")
            lines.append(f"| {arm} | {a['seeds']} | {a['beats_reference_by_2se']} of {a['seeds']} | "
                         + ("-" if d is None else f"{d['mean']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]") + " | "
                         + ("-" if s is None else f"{s['mean']:.3f} [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]") + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("studies", type=Path, nargs="+", help="study --out folders (their trials are pooled)")
    ap.add_argument("--json", type=Path, help="write the results here (atomically); trials already in it are kept")
    ap.add_argument("--fresh", action="store_true", help="evaluate every trial again, ignoring the --json file")
    args = ap.parse_args()
    previous = json.loads(args.json.read_text()) if args.json and args.json.exists() and not args.fresh else None
    result = analyse(args.studies, previous)
    if args.json:
        write_json_atomic(args.json, result)
    print(tables(result))


if __name__ == "__main__":
    main()
