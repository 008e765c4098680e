"""``lobgym study``: a tiny grid end to end on both backends (a process pool, and a real local Ray
instance), resuming, failing trials, spec validation, and resuming after a SIGKILL of the whole study.

Trials are tiny (256 timesteps of PPO, 4 evaluation episodes); the Ray run and the subprocess round
trip are marked slow (they still run in CI).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import lobgym.tools.study as study
from lobgym.config import ConfigError
from lobgym.tools.study import run_study

TINY_PPO: dict[str, Any] = {
    "kind": "ppo", "n_envs": 2, "policy": {"net_arch": [8, 8]},
    "hyperparams": {"n_steps": 64, "batch_size": 64, "n_epochs": 1, "gamma": 1.0},
    "learning_rate": 1e-3, "timesteps": 256, "eval": {"every": 128, "episodes": 4},
    "checkpoint": {"every": 128, "keep": 1},
}
TIMESTEPS = 256
EVALS = [0, 128, 256]  # eval.every = 128: at the start, every 128 timesteps, and at the end


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _spec(folder: Path, agents: dict[str, dict[str, Any]], seeds: list[int], timesteps: int = TIMESTEPS,
          every: int = 128, name: str = "tiny") -> Path:
    """A study spec in ``folder``: each agent a tiny preset written next to it."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {label: str(_write(folder / f"{label}.yaml", {"name": f"tiny_{label}", **preset}))
             for label, preset in agents.items()}
    return _write(folder / "spec.yaml", {
        "name": name, "envs": ["cj2015"], "agents": paths, "seeds": seeds, "timesteps": timesteps,
        "eval": {"episodes": 4, "every": every, "baselines": ["random"]}})


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _run_dirs(out: Path) -> dict[str, list[Path]]:
    """Trial id -> its run folders (one per configuration it was run with), from their trial.json."""
    found: dict[str, list[Path]] = {}
    for record in sorted((out / "runs").glob("*/trial.json")):
        found.setdefault(json.loads(record.read_text())["id"], []).append(record.parent)
    return found


def _run_dir(out: Path, trial: str) -> Path:
    """The one run folder of ``trial``."""
    (folder,) = _run_dirs(out)[trial]
    return folder


def _report_mtimes(out: Path) -> dict[str, int]:
    return {json.loads((p.parent / "trial.json").read_text())["id"]: p.stat().st_mtime_ns
            for p in (out / "runs").glob("*/report.json")}


TRIALS = {f"cj2015__{agent}__seed{seed}" for agent in ("a", "b") for seed in (0, 1)}


@pytest.fixture(scope="module")
def grid_spec(tmp_path_factory) -> Path:
    """2 arms (two learning rates) x 2 seeds."""
    return _spec(tmp_path_factory.mktemp("grid"), {"a": TINY_PPO, "b": {**TINY_PPO, "learning_rate": 3e-4}},
                 seeds=[0, 1])


@pytest.fixture(scope="module")
def local_study(grid_spec, tmp_path_factory) -> Path:
    return run_study(str(grid_spec), out=tmp_path_factory.mktemp("local") / "study", workers=2, progress=False)


@pytest.mark.slow
def test_local_backend_runs_every_trial_and_writes_one_row_per_evaluation(local_study):
    rows = _rows(local_study)
    assert {r["trial"] for r in rows} == TRIALS
    for trial in TRIALS:
        mine = [r for r in rows if r["trial"] == trial]
        assert [int(r["timesteps"]) for r in mine] == EVALS
        assert [r["final"] for r in mine] == ["0", "0", "1"]
        run_dir = _run_dir(local_study, trial)
        assert {r["run"] for r in mine} == {run_dir.name} and run_dir.name.startswith(f"{trial}-")
        assert (run_dir / "report.json").is_file() and (run_dir / "final" / "model.zip").is_file()
    lrs = {r["agent"]: r["lr_now"] for r in rows}
    assert lrs == {"a": "0.001", "b": "0.0003"}
    # every row carries the trial's configuration
    assert {(r["agent"], Path(r["agent_preset"]).name) for r in rows} == {("a", "a.yaml"), ("b", "b.yaml")}
    assert {(r["budget"], r["eval_episodes"], r["eval_seed"]) for r in rows} == {(str(TIMESTEPS), "4", "1000000")}
    assert json.loads((local_study / "failures.json").read_text()) == {}
    # the study's own baselines.json: the env's baselines as its first trial evaluated them
    first = json.loads((_run_dir(local_study, sorted(TRIALS)[0]) / "baselines.json").read_text())
    assert json.loads((local_study / "baselines.json").read_text()) == {"cj2015": first}
    assert "random" in first and "pnl_mean" in first["random"]


def test_rerunning_a_finished_study_runs_nothing(local_study, monkeypatch):
    before, csv_before = _report_mtimes(local_study), (local_study / "results.csv").read_text()
    assert set(before) == TRIALS

    def no_pool(*args, **kwargs):
        raise AssertionError("a finished study started a process pool")

    monkeypatch.setattr(study, "ProcessPoolExecutor", no_pool)
    run_study(local_study / "spec.yaml", out=local_study, workers=2, progress=False)
    assert _report_mtimes(local_study) == before
    assert (local_study / "results.csv").read_text() == csv_before


@pytest.mark.slow
def test_ray_backend_gives_the_same_results_as_the_local_one(grid_spec, local_study, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized()
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(ray, "init", _inspecting(ray.init, seen))
    out = run_study(str(grid_spec), out=tmp_path / "study", workers=2, progress=False, backend="ray")
    assert not ray.is_initialized()  # the local instance it started is shut down
    # it listened on loopback only, with token authentication
    (instance,) = seen
    assert instance["node_ip_address"] == "127.0.0.1" and instance["gcs_address"].startswith("127.0.0.1:")
    assert instance["token_auth"] is True
    assert instance["outward"] in (None, "refused"), instance
    rows = _rows(out)
    assert {r["trial"] for r in rows} == TRIALS
    assert (out / "results.csv").read_text() == (local_study / "results.csv").read_text()
    assert json.loads((out / "failures.json").read_text()) == {}
    for trial in TRIALS:
        assert (_run_dir(out, trial) / "report.json").is_file()

    # finished: the Ray backend resumes like the local one and does not even start Ray
    before = _report_mtimes(out)

    def no_init(*args, **kwargs):
        raise AssertionError("a finished study started Ray")

    monkeypatch.setattr(ray, "init", no_init)
    run_study(str(grid_spec), out=out, workers=2, progress=False, backend="ray")
    assert _report_mtimes(out) == before


def _outward_ip() -> str | None:
    """This machine's address on its default route (no packet is sent), None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: routed like any outside address
        except OSError:
            return None
        ip = s.getsockname()[0]
    return None if ip.startswith("127.") else ip


def _inspecting(init, seen: list[dict[str, Any]]):
    """``ray.init`` that also records where the instance it starts listens and whether tokens are on."""
    def inspected(*args, **kwargs):
        from ray._private.authentication.authentication_utils import is_token_auth_enabled

        context = init(*args, **kwargs)
        info = dict(context.address_info, token_auth=is_token_auth_enabled(), outward=None)
        ip = _outward_ip()
        if ip is not None:  # the GCS port, on the address other machines would use
            try:
                socket.create_connection((ip, int(info["gcs_address"].rsplit(":", 1)[1])), timeout=5).close()
                info["outward"] = "accepted"
            except ConnectionRefusedError:
                info["outward"] = "refused"
        seen.append(info)
        return context

    return inspected


def test_a_ray_without_token_authentication_is_refused_naming_its_version(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray, "__version__", "2.51.3")
    with pytest.raises(ConfigError, match=r"^backend = 'ray': Ray 2\.51\.3 is installed; lobgym needs Ray >= 2\.52 "
                                          r"\(token authentication\): pip install -U 'lobgym\[ray\]'$"):
        run_study(BASE, out=tmp_path / "study", progress=False, backend="ray")
    assert not (tmp_path / "study").exists()


@pytest.mark.slow
def test_a_failing_trial_is_recorded_and_the_others_finish(tmp_path):
    bad = {**TINY_PPO, "hyperparams": {**TINY_PPO["hyperparams"], "batch_size": 1}}  # SB3 rejects it at start
    spec = _spec(tmp_path / "spec", {"ok": TINY_PPO, "bad": bad}, seeds=[0])
    out = run_study(str(spec), out=tmp_path / "study", workers=1, progress=False)  # one process: cheaper
    failures = json.loads((out / "failures.json").read_text())
    assert set(failures) == {"cj2015__bad__seed0"}
    failure = failures["cj2015__bad__seed0"]
    assert failure["status"] == "failed"
    assert "ConfigError" in failure["error"] and "`batch_size` must be greater than 1" in failure["error"]
    assert "Traceback" in failure["traceback"]
    rows = _rows(out)
    assert {r["trial"] for r in rows} == {"cj2015__ok__seed0"}
    assert [int(r["timesteps"]) for r in rows] == EVALS


BASE = {"envs": ["cj2015"], "agents": {"a": "ppo"}, "seeds": [0], "timesteps": 256}


@pytest.mark.parametrize(("update", "message"), [
    ({"seeds": [0, 0]}, r"seeds = \[0, 0\]: .*seeds must be distinct"),
    ({"seeds": []}, r"seeds"),
    ({"agents": {"a": "no_such_preset"}}, r"agents\.a = 'no_such_preset': .*unknown; available: .*ppo"),
    ({"envs": ["no_such_env"]}, r"envs: 'no_such_env': .*unknown; available: .*cj2015"),
    ({"learning_rates": [-1]}, r"learning_rates = \[-1\]: .*every learning rate must be > 0"),
    ({"timesteps": 0}, r"timesteps"),
    ({"workers": 0}, r"workers"),
    # a reward is a list or a per-env mapping: the error follows the form given, not pydantic's union tags
    ({"rewards": {"bad": [{"term": "pnl", "params": {"nope": 1}}]}},
     r"rewards\.bad\[0\]: params\.nope = 1: Extra inputs are not permitted \(term 'pnl' takes: none\)$"),
    ({"rewards": {"bad": {"cj2015": [{"term": "nope"}]}}}, r"rewards\.bad\.cj2015\[0\]: term = 'nope': unknown"),
    ({"rewards": {"bad": {"as2008": [{"term": "pnl"}]}}}, r"rewards\.bad: per-env rewards for \['as2008'\]"),
])
def test_spec_errors_name_the_field(update, message, tmp_path):
    with pytest.raises(ConfigError, match=message) as err:
        run_study({**BASE, **update}, out=tmp_path / "study", progress=False)
    assert "function-after" not in str(err.value) and "list[" not in str(err.value)
    assert not (tmp_path / "study").exists()


def test_backend_errors_name_the_value_and_the_allowed_ones(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"backend = 'dask': expected one of 'local', 'ray'"):
        run_study(BASE, out=tmp_path / "study", progress=False, backend="dask")
    with pytest.raises(ConfigError, match=r"address = 'auto': only with backend = 'ray'"):
        run_study(BASE, out=tmp_path / "study", progress=False, address="auto")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed: `import ray` fails
    with pytest.raises(ConfigError, match=r"^backend = 'ray': Ray is not installed; pip install 'lobgym\[ray\]'$"):
        run_study(BASE, out=tmp_path / "study", progress=False, backend="ray")
    assert not (tmp_path / "study").exists()


def test_cli_study_reports_a_bad_backend(tmp_path):
    from typer.testing import CliRunner

    from lobgym.cli import app

    result = CliRunner().invoke(app, ["study", "lr_robustness", "--backend", "dask", "--out", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "backend = 'dask': expected one of 'local', 'ray'" in result.output
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_a_study_killed_mid_way_resumes_without_rerunning_finished_trials(tmp_path):
    preset = {**TINY_PPO, "timesteps": 512, "eval": {"every": 256, "episodes": 4}}
    spec = _spec(tmp_path / "spec", {"a": preset}, seeds=[0, 1, 2], timesteps=512, every=256)
    trials = {f"cj2015__a__seed{s}" for s in (0, 1, 2)}
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "lobgym", "study", str(spec), "--out", str(out), "--workers", "1", "--no-progress"]
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while not ((out / "results.csv").is_file() and _rows(out)):
                assert proc.poll() is None, (tmp_path / "killed.log").read_text()
                assert time.monotonic() < deadline, "no trial finished in 120 s"
                time.sleep(0.02)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the study and its worker process
            proc.wait()
    finished = _report_mtimes(out)
    assert {r["trial"] for r in _rows(out)} <= set(finished)
    assert 1 <= len(finished) < len(trials), "the study was not killed mid-way"

    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = _rows(out)
    pairs = [(r["trial"], int(r["timesteps"])) for r in rows]
    assert len(pairs) == len(set(pairs)), "duplicate rows"
    assert sorted(pairs) == sorted((t, ts) for t in trials for ts in (0, 256, 512))
    after = _report_mtimes(out)
    assert set(after) == trials
    assert {t: after[t] for t in finished} == finished, "a trial finished before the kill was run again"
    assert json.loads((out / "failures.json").read_text()) == {}


# ------------------------------------------------------------- results that cannot be relabelled or lost
def _no_pool(monkeypatch) -> None:
    def no_pool(*args, **kwargs):
        raise AssertionError("a trial was trained")

    monkeypatch.setattr(study, "ProcessPoolExecutor", no_pool)


@pytest.mark.slow
def test_a_changed_spec_trains_the_changed_trial_anew_and_rows_say_what_each_trial_ran(tmp_path, monkeypatch):
    first = _spec(tmp_path / "first", {"a": TINY_PPO}, seeds=[0])
    longer = _spec(tmp_path / "longer", {"a": TINY_PPO}, seeds=[0], timesteps=384)
    out = tmp_path / "study"
    run_study(str(first), out=out, workers=1, progress=False)
    (old_dir,) = _run_dirs(out)["cj2015__a__seed0"]
    old_report = (old_dir / "report.json").read_bytes()

    run_study(str(longer), out=out, workers=1, progress=False)  # a bigger budget into the same folder
    dirs = _run_dirs(out)["cj2015__a__seed0"]
    assert len(dirs) == 2 and old_dir in dirs, dirs  # trained anew; the old trial kept as it was
    (new_dir,) = [d for d in dirs if d != old_dir]
    assert (old_dir / "report.json").read_bytes() == old_report
    rows = _rows(out)
    assert {(r["run"], r["budget"]) for r in rows} == {(new_dir.name, "384")}
    assert [int(r["timesteps"]) for r in rows] == [0, 128, 256, 384]  # what the trial ran: 384 timesteps
    assert json.loads((new_dir / "trial.json").read_text())["budget"] == 384
    # every distinct spec run into the folder is kept; spec.yaml is the last one
    history = sorted((out / "specs").glob("*.yaml"))
    assert [yaml.safe_load(p.read_text())["timesteps"] for p in history] == [256, 384]
    assert yaml.safe_load((out / "spec.yaml").read_text())["timesteps"] == 384

    # back to the first spec: its finished trial is found again, nothing is trained
    _no_pool(monkeypatch)
    run_study(str(first), out=out, workers=1, progress=False)
    assert {(r["run"], r["budget"]) for r in _rows(out)} == {(old_dir.name, "256")}
    assert len(list((out / "specs").glob("*.yaml"))) == 2


def test_trial_keys_follow_every_resolved_field_but_not_the_preset_path(tmp_path):
    spec = study.load_study(_spec(tmp_path / "s", {"a": TINY_PPO}, seeds=[0]))
    (trial,) = study.keyed_trials(spec)
    key = trial["record"]["key"]
    moved = _spec(tmp_path / "moved", {"a": TINY_PPO}, seeds=[0])  # the same preset, at another path
    assert study.keyed_trials(study.load_study(moved))[0]["record"]["key"] == key
    for changed in ({"timesteps": 512}, {"eval": {"episodes": 5, "every": 128, "baselines": ["random"]}},
                    {"learning_rates": [3e-4]}, {"rewards": {"flat": [{"term": "pnl"}]}}):
        other = study.load_study(spec.model_dump(mode="json") | changed)
        assert study.keyed_trials(other)[0]["record"]["key"] != key, changed
    bigger_net = _spec(tmp_path / "net", {"a": {**TINY_PPO, "policy": {"net_arch": [16, 16]}}}, seeds=[0])
    (other,) = study.keyed_trials(study.load_study(bigger_net))
    assert other["record"]["key"] != key
    assert study.changed_fields(trial["record"]["resolved"], other["record"]["resolved"]) == {
        "agent.policy.net_arch": ([8, 8], [16, 16])}


def _hold_lock(folder: Path) -> subprocess.Popen:
    """Another process holding ``folder``'s study lock until killed."""
    code = ("import sys, time\nfrom lobgym.folders import exclusive\n"
            "with exclusive(sys.argv[1], 'study'):\n    print('held', flush=True)\n    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder), "--marker"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    return proc


def test_one_study_per_folder_a_live_holder_is_named_and_a_dead_ones_lock_taken_over(local_study, tmp_path):
    out = tmp_path / "study"
    shutil.copytree(local_study, out)
    holder = _hold_lock(out)
    try:
        with pytest.raises(ValueError, match=rf"^{re.escape(str(out))}: another lobgym study \(pid {holder.pid} on "
                                             rf"{re.escape(socket.gethostname())}, started .*--marker\) holds "):
            run_study(str(out / "spec.yaml"), out=out, progress=False)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    # the holder was killed: its lock (file left behind, named pid dead) is taken over
    lock = json.loads((out / ".lock").read_text())
    assert lock["pid"] == holder.pid
    run_study(str(out / "spec.yaml"), out=out, progress=False)
    assert not (out / ".lock").exists()
    assert _rows(out) == _rows(local_study)


def test_leftovers_of_interrupted_writes_are_removed_when_a_study_resumes(local_study, tmp_path):
    out = tmp_path / "study"
    shutil.copytree(local_study, out)
    run_dir = _run_dir(out, sorted(TRIALS)[0])
    planted = [out / ".results.csv.k2j4_x.tmp", run_dir / ".report.md.a8d_q1.tmp",
               run_dir / "checkpoints" / ".evaluations.json.u7.tmp"]
    for path in planted:
        path.write_text("half written")
    folders = [run_dir / "checkpoints" / ".step_000000000128.w3e9x_", run_dir / ".best.z0p2_m", run_dir / ".final.old"]
    for folder in folders:
        folder.mkdir()
        (folder / "model.zip").write_bytes(b"PK")
    kept = [out / ".gitignore", run_dir / "notes.tmp"]  # not ours: left alone
    for path in kept:
        path.write_text("mine")
    run_study(str(out / "spec.yaml"), out=out, progress=False)
    assert [p for p in planted + folders if p.exists()] == []
    assert all(p.read_text() == "mine" for p in kept)


@pytest.mark.slow
def test_an_unreadable_finished_trial_is_recorded_and_the_study_and_its_report_go_on(local_study, tmp_path):
    from lobgym.tools.report import write_report

    out = tmp_path / "study"
    shutil.copytree(local_study, out)
    broken, rewritten = sorted(TRIALS)[:2]
    evaluations = _run_dir(out, broken) / "evaluations.json"
    evaluations.write_text(evaluations.read_text()[:40])  # truncated
    report = _run_dir(out, rewritten) / "report.json"
    report.write_text("{")  # a report killed mid-write: the trial is resumed and writes it again
    run_study(str(out / "spec.yaml"), out=out, progress=False)
    failures = json.loads((out / "failures.json").read_text())
    assert set(failures) == {broken} and failures[broken]["status"] == "unreadable"
    assert failures[broken]["error"].startswith(f"{evaluations}: unreadable JSON (")
    assert "\n" not in failures[broken]["error"]
    assert {r["trial"] for r in _rows(out)} == TRIALS - {broken}
    assert json.loads(report.read_text())["run"] == report.parent.name
    assert write_report(out).is_file()


@pytest.mark.parametrize(("text", "message"), [
    ("trial,env\ncj2015__a__seed0,cj2015\n", r"not a study's results \(no column agent, reward, "),
    (None, r"line 3: truncated or malformed row"),
])
def test_a_corrupt_results_csv_is_an_error_naming_the_file(local_study, tmp_path, text, message):
    out = tmp_path / "study"
    out.mkdir()
    full = (local_study / "results.csv").read_text()
    (out / "results.csv").write_text(text if text is not None else full[:full.index("\n", full.index("\n") + 1) + 30])
    with pytest.raises(ValueError, match=rf"^{re.escape(str(out / 'results.csv'))}: {message}"):
        study.load_results(out)


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(x) for x in (task / "children").read_text().split()]
    return kids


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the pool's workers through /proc")
def test_pool_workers_exit_when_the_study_process_is_sigkilled(tmp_path):
    preset = {**TINY_PPO, "timesteps": 200_000, "eval": {"every": 100_000, "episodes": 4}}
    spec = _spec(tmp_path / "spec", {"a": preset}, seeds=[0], timesteps=200_000, every=100_000)
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "lobgym", "study", str(spec), "--out", str(out), "--workers", "1", "--no-progress"]
    workers: list[int] = []
    with open(tmp_path / "study.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 180
        while not list((out / "runs").glob("*/config.yaml")):  # the worker is training its trial
            assert proc.poll() is None, (tmp_path / "study.log").read_text()
            assert time.monotonic() < deadline, "the trial did not start in 180 s"
            time.sleep(0.05)
        workers = [k for k in _children(proc.pid) if "spawn_main" in _cmdline(k)]
        assert len(workers) == 1, [(k, _cmdline(k)) for k in _children(proc.pid)]
        proc.send_signal(signal.SIGKILL)  # the study only: its worker is left on its own
        assert proc.wait(timeout=30) == -signal.SIGKILL
        deadline = time.monotonic() + 20
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "a pool worker outlived its study by 20 s"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for w in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w, signal.SIGKILL)
