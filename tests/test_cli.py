"""Every CLI command in a subprocess with a tiny budget, as a user would run it."""

from __future__ import annotations

import json

import pytest
from helpers import run_lobgym

pytestmark = pytest.mark.slow


def test_envs_and_agents_list_presets_with_descriptions():
    out = run_lobgym("envs").stdout
    assert "as2008" in out and "cj2015" in out and "Avellaneda" in out
    out = run_lobgym("agents").stdout
    for name in ("avellaneda_stoikov", "gueant", "cartea_jaimungal", "fixed_spread", "random"):
        assert name in out


def test_evaluate_prints_table_and_writes_json(tmp_path):
    out_json = tmp_path / "eval.json"
    proc = run_lobgym("evaluate", "--env", "as2008", "--agent", "avellaneda_stoikov", "--agent", "fixed_spread",
                      "--episodes", "20", "--seed", "3", "--json", str(out_json))
    assert "avellaneda_stoikov" in proc.stdout and "fixed_spread" in proc.stdout and "Sharpe" in proc.stdout
    data = json.loads(out_json.read_text())
    assert data["episodes"] == 20 and data["seed"] == 3
    assert [a["agent"] for a in data["agents"]] == ["avellaneda_stoikov", "fixed_spread"]
    assert len(data["agents"][0]["episodes"]["pnl"]) == 20
    # The JSON summary is what the table shows: recompute the mean PnL from the episodes.
    pnl = data["agents"][0]["episodes"]["pnl"]
    assert data["agents"][0]["summary"]["pnl_mean"] == pytest.approx(sum(pnl) / len(pnl))
    # Paired differences against the first agent, episode by episode, in the JSON and in a second table.
    assert data["reference"] == "avellaneda_stoikov" and "paired_diff" not in data["agents"][0]
    other = data["agents"][1]
    diffs = [x - y for x, y in zip(other["episodes"]["return"], data["agents"][0]["episodes"]["return"], strict=True)]
    assert other["paired_diff"]["return"] == pytest.approx(sum(diffs) / 20)
    low, high = other["paired_ci"]["pnl"]
    assert low < other["paired_diff"]["pnl"] < high and other["paired_se"]["pnl"] > 0
    assert other["paired_method"]["pnl"] == "95% t interval, n = 20 episodes"
    assert "paired differences, agent - avellaneda_stoikov" in proc.stdout and f"{high:.3f}" in proc.stdout
    # --reference flips the comparison
    flipped = run_lobgym("evaluate", "--env", "as2008", "--agent", "avellaneda_stoikov", "--agent", "fixed_spread",
                         "--episodes", "20", "--seed", "3", "--reference", "fixed_spread", "--json", str(out_json))
    data = json.loads(out_json.read_text())
    assert data["reference"] == "fixed_spread" and "paired_diff" not in data["agents"][1]
    assert data["agents"][0]["paired_diff"]["pnl"] == pytest.approx(-other["paired_diff"]["pnl"])
    assert "agent - fixed_spread" in flipped.stdout


def test_evaluate_takes_inline_agents_and_refuses_two_with_one_name(tmp_path):
    out_json = tmp_path / "eval.json"
    run_lobgym("evaluate", "--env", "as2008_paper", "--episodes", "10", "--json", str(out_json),
               "--agent", "{name: g1, kind: avellaneda_stoikov, params: {gamma: 1.0}}",
               "--agent", "{name: g1_sym, kind: avellaneda_stoikov, params: {gamma: 1.0, symmetric: true}}")
    data = json.loads(out_json.read_text())
    assert [a["agent"] for a in data["agents"]] == ["g1", "g1_sym"] and data["reference"] == "g1"
    proc = run_lobgym("evaluate", "--episodes", "2", "--agent", "random", "--agent", "{kind: random, name: random}",
                      check=False)
    assert proc.returncode == 2 and "'random' given twice" in proc.stdout
    proc = run_lobgym("evaluate", "--episodes", "2", "--agent", "{kind: avellaneda_stoikov, params: {gamma: -1}}",
                      check=False)
    assert proc.returncode == 2 and "params.gamma = -1" in proc.stdout and "Traceback" not in proc.stderr


def test_a_broken_preset_file_is_listed_as_unreadable_and_the_others_still_show(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from lobgym import cli, presets

    folder = tmp_path / "envs"
    folder.mkdir()
    (folder / "good.yaml").write_text("description: a fine one\n")
    (folder / "quiet.yaml").write_text("description: ''\n")
    (folder / "broken.yaml").write_text("description: [unclosed\n")
    monkeypatch.setattr(presets, "preset_dir", lambda kind: folder)
    result = CliRunner().invoke(cli.app, ["envs"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "a fine one" in result.output and "quiet" in result.output
    assert "broken" in result.output and "unreadable" in result.output


def test_evaluate_bad_input_names_the_field():
    proc = run_lobgym("evaluate", "--env", "no_such_env", "--episodes", "2", check=False)
    assert proc.returncode == 2
    assert "no_such_env" in proc.stdout and "as2008" in proc.stdout  # lists what is available
    proc = run_lobgym("evaluate", "--agent", "no_such_agent", "--episodes", "2", check=False)
    assert proc.returncode == 2 and "no_such_agent" in proc.stdout
    proc = run_lobgym("evaluate", "--agent", "random", "--episodes", "2", "--reference", "nobody", check=False)
    assert proc.returncode == 2 and "--reference 'nobody'" in proc.stdout and "(random)" in proc.stdout


def test_bench_runs_and_reports_ratios(tmp_path):
    out_json = tmp_path / "bench.json"
    run_lobgym("bench", "--n-envs", "1,300", "--seconds", "0.05", "--no-startup", "--no-book", "--json", str(out_json))
    data = json.loads(out_json.read_text())
    rows = data["rows"]
    # per N: the SB3 VecEnv, gymnasium.make_vec's fused VectorEnv, and its SyncVectorEnv over single envs
    kinds = ("batched", "gymnasium.make_vec", "gymnasium.make_vec(sync)")
    assert [(r["n_envs"], r["what"].split()[0]) for r in rows] == [(1, "single"), *[(n, w) for n in (1, 300)
                                                                                   for w in kinds]]
    assert all(r["steps_per_s"] > 0 for r in rows)
    assert rows[4]["ratio_to_bare"] == pytest.approx(rows[4]["steps_per_s"] / rows[4]["bare_steps_per_s"])
    assert [g["n_envs"] for g in data["gym_vector"]] == [1, 300]
    g = data["gym_vector"][1]
    assert g["make_vec_over_vec_env"] == pytest.approx(rows[5]["steps_per_s"] / rows[4]["steps_per_s"])
    assert g["make_vec_over_sync"] == pytest.approx(rows[5]["steps_per_s"] / rows[6]["steps_per_s"])
    proc = run_lobgym("bench", "--n-envs", "0,x", check=False)
    assert proc.returncode == 2 and "--n-envs" in proc.stdout


def test_python_dash_m_and_console_script_agree():
    proc = run_lobgym("--help")
    assert "evaluate" in proc.stdout and "bench" in proc.stdout


@pytest.mark.slow
def test_validate_writes_figure_and_json_and_refuses_non_book_presets(tmp_path):
    out = tmp_path / "val"
    proc = run_lobgym("validate", "cst2010", "--books", "2", "--seconds", "30", "--seed", "5", "--out", str(out))
    assert "spread" in proc.stdout and "market_buy" in proc.stdout and "variance ratio" in proc.stdout
    assert (out / "stylised_facts.png").read_bytes()[:4] == b"\x89PNG"
    facts = json.loads((out / "stylised_facts.json").read_text())
    assert facts["env"] == "cst2010" and facts["books"] == 2 and facts["seconds"] == 30 and facts["seed"] == 5
    assert facts["spread"]["min"] >= 1 and facts["events"]["total"] > 0
    # --json prints the same facts (and nothing else) on stdout.
    proc = run_lobgym("validate", "cst2010", "--books", "2", "--seconds", "30", "--seed", "5", "--out", str(out),
                      "--json")
    assert json.loads(proc.stdout) == facts
    proc = run_lobgym("validate", "as2008", "--out", str(tmp_path / "x"), check=False)
    assert proc.returncode == 2 and "market.kind" in proc.stdout and "book" in proc.stdout
    assert not (tmp_path / "x").exists()


def test_bad_env_files_are_one_line_errors_without_a_traceback(tmp_path):
    files = {"malformed.yaml": b"market:\n  kind: book\n  s0: [1, 2\n",
             "tag.yaml": b"market: !!python/object/apply:os.system [echo pwned]\n",
             "latin1.yaml": b"description: caf\xe9\n",
             "slow.yaml": b"market: {kind: book, horizon: 300, dt: 1.0, warmup: 1.0e7, flow: {model: cst}}\n"}
    expected = {"malformed.yaml": ":4: invalid YAML", "tag.yaml": ":1: invalid YAML: could not determine a constructor",
                "latin1.yaml": ":1: not UTF-8 text", "slow.yaml": "market.warmup = 1e+07"}
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content)
        proc = run_lobgym("evaluate", "--env", str(path), "--episodes", "2", check=False)
        out = " ".join(proc.stdout.split())  # rich wraps long lines at the terminal width
        assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr, (name, proc.stdout, proc.stderr)
        assert out.startswith(f"error: {path}") and expected[name] in out, (name, out)
        assert "pwned" not in proc.stdout + proc.stderr
    proc = run_lobgym("evaluate", "--env", "", "--episodes", "2", check=False)
    assert proc.returncode == 2 and "envs preset = '': empty" in proc.stdout  # not the default env


def test_train_refuses_bad_env_files_before_creating_a_run(tmp_path):
    (tmp_path / "folder.yaml").mkdir()
    (tmp_path / "malformed.yaml").write_text("market: [1, 2\n")
    for env, fragment in ((str(tmp_path / "folder.yaml"), "is a directory"),
                          (str(tmp_path / "malformed.yaml"), "malformed.yaml:2: invalid YAML"),
                          ("", "envs preset = '': empty")):
        proc = run_lobgym("train", "--env", env, "--timesteps", "10", "--runs-dir", str(tmp_path / "runs"), check=False)
        out = " ".join(proc.stdout.split())
        assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr and fragment in out, out
    assert not (tmp_path / "runs").exists()
