"""Every CLI command in a subprocess with a tiny budget, as a user would run it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def lobgym(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "lobgym", *args], capture_output=True, text=True,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", **_python_env()})
    if check and proc.returncode != 0:
        raise AssertionError(f"lobgym {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _python_env() -> dict[str, str]:
    import os

    keep = ("PYTHONPATH", "HOME", "NUMBA_CACHE_DIR", "VIRTUAL_ENV", "LANG")
    return {k: os.environ[k] for k in keep if k in os.environ}


def test_envs_and_agents_list_presets_with_descriptions():
    out = lobgym("envs").stdout
    assert "as2008" in out and "cj2015" in out and "Avellaneda" in out
    out = lobgym("agents").stdout
    for name in ("avellaneda_stoikov", "gueant", "cartea_jaimungal", "fixed_spread", "random"):
        assert name in out


def test_evaluate_prints_table_and_writes_json(tmp_path):
    out_json = tmp_path / "eval.json"
    proc = lobgym("evaluate", "--env", "as2008", "--agent", "avellaneda_stoikov", "--agent", "fixed_spread",
                  "--episodes", "20", "--seed", "3", "--json", str(out_json))
    assert "avellaneda_stoikov" in proc.stdout and "fixed_spread" in proc.stdout and "Sharpe" in proc.stdout
    data = json.loads(out_json.read_text())
    assert data["episodes"] == 20 and data["seed"] == 3
    assert [a["agent"] for a in data["agents"]] == ["avellaneda_stoikov", "fixed_spread"]
    assert len(data["agents"][0]["episodes"]["pnl"]) == 20
    # The JSON summary is what the table shows: recompute the mean PnL from the episodes.
    pnl = data["agents"][0]["episodes"]["pnl"]
    assert data["agents"][0]["summary"]["pnl_mean"] == pytest.approx(sum(pnl) / len(pnl))


def test_evaluate_bad_input_names_the_field():
    proc = lobgym("evaluate", "--env", "no_such_env", "--episodes", "2", check=False)
    assert proc.returncode == 2
    assert "no_such_env" in proc.stdout and "as2008" in proc.stdout  # lists what is available
    proc = lobgym("evaluate", "--agent", "no_such_agent", "--episodes", "2", check=False)
    assert proc.returncode == 2 and "no_such_agent" in proc.stdout


def test_bench_runs_and_reports_ratios(tmp_path):
    out_json = tmp_path / "bench.json"
    lobgym("bench", "--n-envs", "1,300", "--seconds", "0.05", "--no-startup", "--no-book", "--json", str(out_json))
    data = json.loads(out_json.read_text())
    rows = data["rows"]
    assert [r["n_envs"] for r in rows] == [1, 1, 300]
    assert all(r["steps_per_s"] > 0 for r in rows)
    assert rows[2]["ratio_to_bare"] == pytest.approx(rows[2]["steps_per_s"] / rows[2]["bare_steps_per_s"])
    proc = lobgym("bench", "--n-envs", "0,x", check=False)
    assert proc.returncode == 2 and "--n-envs" in proc.stdout


def test_python_dash_m_and_console_script_agree():
    proc = lobgym("--help")
    assert "evaluate" in proc.stdout and "bench" in proc.stdout


@pytest.mark.slow
def test_validate_writes_figure_and_json_and_refuses_non_book_presets(tmp_path):
    out = tmp_path / "val"
    proc = lobgym("validate", "cst2010", "--books", "2", "--seconds", "30", "--seed", "5", "--out", str(out))
    assert "spread" in proc.stdout and "market_buy" in proc.stdout and "variance ratio" in proc.stdout
    assert (out / "stylised_facts.png").read_bytes()[:4] == b"\x89PNG"
    facts = json.loads((out / "stylised_facts.json").read_text())
    assert facts["env"] == "cst2010" and facts["books"] == 2 and facts["seconds"] == 30 and facts["seed"] == 5
    assert facts["spread"]["min"] >= 1 and facts["events"]["total"] > 0
    # --json prints the same facts (and nothing else) on stdout.
    proc = lobgym("validate", "cst2010", "--books", "2", "--seconds", "30", "--seed", "5", "--out", str(out), "--json")
    assert json.loads(proc.stdout) == facts
    proc = lobgym("validate", "as2008", "--out", str(tmp_path / "x"), check=False)
    assert proc.returncode == 2 and "market.kind" in proc.stdout and "book" in proc.stdout
    assert not (tmp_path / "x").exists()
