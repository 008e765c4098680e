"""``lobgym report`` on a hand-made study folder: tables have the right rows and values, figures exist."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import yaml

from lobgym.stats import describe, mean_ci
from lobgym.tools.report import curve_bands, summarize_arms, write_report
from lobgym.tools.study import COLUMNS, load_results

PNG = b"\x89PNG\r\n\x1a\n"
BASELINES = {"random": {"return_mean": 0.0, "pnl_mean": 1.0, "pnl_std": 2.0, "sharpe": 0.5,
                        "mean_abs_inventory": 3.0},
             "avellaneda_stoikov": {"return_mean": 2.0, "pnl_mean": 3.0, "pnl_std": 1.0, "sharpe": 3.0,
                                    "mean_abs_inventory": 1.0}}


def _study(tmp_path: Path) -> Path:
    """Two reward variants x 3 seeds on one env, 3 evaluations each; the final returns are chosen so
    that the normalised scores are known: 'pnl' arm mean 1.0 (= best of 'ppo'), 'penalty' arm 0.5."""
    out = tmp_path / "study"
    spec = {"name": "fixture", "description": "a fixture", "envs": ["cj2015"], "agents": {"ppo": "ppo"},
            "rewards": {"pnl": [{"term": "pnl"}],
                        "penalty": [{"term": "pnl"}, {"term": "running_inventory_penalty", "params": {"phi": 1.0}}]},
            "seeds": [0, 1, 2], "timesteps": 300, "normalise": {"zero": "random", "one": "ppo"}}
    (out / "runs").mkdir(parents=True)
    (out / "spec.yaml").write_text(yaml.safe_dump(spec))
    finals = {"pnl": [0.8, 1.0, 1.2], "penalty": [0.4, 0.5, 0.6]}
    rows = []
    for reward, values in finals.items():
        for seed, final in enumerate(values):
            trial = f"cj2015__ppo__{reward}__seed{seed}"
            (out / "runs" / trial).mkdir()
            (out / "runs" / trial / "baselines.json").write_text(json.dumps(BASELINES))
            for k, t in enumerate((0, 100, 300)):
                ret = final * t / 300
                row = {"trial": trial, "env": "cj2015", "agent": "ppo", "reward": reward, "lr": "", "seed": seed,
                       "timesteps": t, "final": int(t == 300), "return": ret, "pnl": ret + 1.0,
                       "pnl_std": 2.0 - k * 0.1, "sharpe": 1.0, "mean_abs_inventory": 2.0 - 0.5 * k, "fills": 5.0,
                       "lr_now": 3e-4, "term_pnl": ret + 0.5, "term_running_inventory_penalty": ""}
                if reward == "penalty":
                    row["term_running_inventory_penalty"] = -0.5
                rows.append(row)
    with open(out / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*COLUMNS, "term_pnl", "term_running_inventory_penalty"])
        writer.writeheader()
        writer.writerows(rows)
    return out


def test_report_tables_have_one_row_per_arm_with_the_right_values(tmp_path):
    out = _study(tmp_path)
    text = write_report(out).read_text()
    table = [line for line in text.splitlines() if line.startswith("| ppo /")]
    arms = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in table[:2]}
    assert set(arms) == {"ppo / pnl", "ppo / penalty"}
    assert arms["ppo / pnl"][0] == "3" and arms["ppo / pnl"][1] == "1.000"  # seeds, mean final return
    assert arms["ppo / penalty"][1] == "0.500"
    assert arms["ppo / pnl"][-2] == "1.00" and arms["ppo / penalty"][-2] == "0.50"  # normalised: random 0, best 1
    assert arms["ppo / penalty"][-1] == "0.40"  # the worst seed
    # attribution table: both arms, the penalty term blank for the pure-PnL arm
    attribution = [line for line in text.splitlines() if line.startswith("| ppo /")][2:]
    assert len(attribution) == 2
    pnl_row = next(line for line in attribution if line.startswith("| ppo / pnl "))
    assert [c.strip() for c in pnl_row.split("|")[2:-1]] == ["1.500", "", "1.000"]
    assert "| random | 1.000 | 2.000 | 0.500 | 3.000 |" in text  # the baselines table (no return: rewards differ)
    for name in ("learning_curves.png", "frontier.png", "attribution.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000
        assert f"]({name})" in text


def test_a_folder_without_run_folders_reports_from_its_baselines_json(tmp_path):
    """A committed study folder (spec.yaml, results.csv, baselines.json; no runs/) gives the same report."""
    import shutil

    out = _study(tmp_path)
    full = write_report(out).read_text()
    shutil.rmtree(out / "runs")
    (out / "baselines.json").write_text(json.dumps({"cj2015": BASELINES}))
    assert write_report(out).read_text() == full
    assert "| avellaneda_stoikov | 3.000 | 1.000 | 3.000 | 1.000 |" in full


def _rows(values: list[float], agent: str = "a") -> list[dict[str, str]]:
    return [{"env": "e", "agent": agent, "reward": "", "lr": "", "seed": str(s), "trial": f"{agent}{s}",
             "timesteps": "10", "final": "1", "return": str(x), "pnl": str(x), "pnl_std": "1", "sharpe": "1",
             "mean_abs_inventory": "1", "fills": "1", "lr_now": "0.1", "term_pnl": str(x)}
            for s, x in enumerate(values)]


def test_arm_summaries_use_t_intervals_over_seeds():
    arm = summarize_arms(_rows([1.0, 2.0, 3.0, 4.0]))[("e", "a", "", "")]
    assert arm["seeds"] == 4 and arm["return_mean"] == pytest.approx(2.5) and arm["terms"] == {"pnl": 2.5}
    ci = arm["return_ci"]
    assert ci == mean_ci([1.0, 2.0, 3.0, 4.0]) and ci.method == "t" and ci.n == 4
    # mean 2.5, s = 1.291, t_{0.975, 3} = 3.182446: wider than the seeds' range, unlike a percentile bootstrap
    assert (ci.low, ci.high) == pytest.approx((2.5 - 3.182446 * 1.290994 / 2, 2.5 + 3.182446 * 1.290994 / 2), rel=1e-5)
    assert ci.low < 1.0 and ci.high > 4.0
    single = summarize_arms(_rows([7.0]))[("e", "a", "", "")]["return_ci"]
    assert single.method == "none" and single.mean == 7.0  # one seed: no interval, not a zero-width one


def test_a_non_finite_result_names_the_arm_and_column():
    rows = _rows([1.0, 2.0])
    rows[1]["pnl"] = "nan"
    with pytest.raises(ValueError, match="arm e / a, column pnl: .*not finite"):
        summarize_arms(rows)


def test_report_labels_every_interval_with_its_method_and_n(tmp_path):
    out = _study(tmp_path)
    text = write_report(out).read_text()
    assert "bootstrap" not in text
    assert "## Final evaluation per arm (mean over seeds; 95% t interval, n = 3 seeds)" in text
    assert "band: 95% t interval, n = 3 seeds" in text  # learning-curve caption
    assert "bars: interval of the mean PnL over seeds (95% t interval, n = 3 seeds)" in text  # frontier caption
    # the table's intervals at n = 3 are t intervals of the seeds' final returns
    row = next(line for line in text.splitlines() if line.startswith("| ppo / pnl |"))
    ci = mean_ci([0.8, 1.0, 1.2])
    assert row.split("|")[4].strip() == f"[{ci.low:.3f}, {ci.high:.3f}]"
    # the learning-curve bands are the same intervals, per evaluation
    arms = summarize_arms(load_results(out), "pnl")
    final = curve_bands(arms)[("cj2015", "ppo", "pnl", "")][-1]
    assert final == mean_ci([1.8, 2.0, 2.2])


def test_arms_with_different_seed_counts_are_labelled_with_the_range():
    rows = _rows([1.0, 2.0, 3.0], "a") + _rows([1.0, 5.0], "b") + _rows([4.0], "c")
    arms = summarize_arms(rows)
    assert describe(s["return_ci"] for s in arms.values()) == (
        "95% t interval, n = 2-3 seeds; no interval for n = 1 seed")


def test_report_without_finished_trials_says_so(tmp_path):
    out = _study(tmp_path)
    (out / "results.csv").write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(ValueError, match=re.escape("no finished trials")):
        write_report(out)
