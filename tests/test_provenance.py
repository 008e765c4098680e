"""Provenance: lobgym's own git revision only from a checkout of lobgym, never the revision of a
repository that merely contains a copy of it; the same record in a run's meta.json and a benchmark."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from helpers import ROOT

from lobgym import provenance

SRC = ROOT / "src" / "lobgym"


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def _repo(root: Path, project: str) -> Path:
    """A git repository at ``root`` whose pyproject.toml names ``project``, with a copy of lobgym's
    package source in src/lobgym, all committed."""
    root.mkdir(parents=True)
    _git(root, "init", "-q")
    (root / "pyproject.toml").write_text(f'[project]\nname = "{project}"\nversion = "9.9"\n')
    shutil.copytree(SRC, root / "src" / "lobgym", ignore=shutil.ignore_patterns("__pycache__"))
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "init")
    return root


def _checkout_head() -> str:
    try:
        return _git(ROOT, "rev-parse", "HEAD")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("the tests do not run from a git checkout of lobgym")


def test_the_checkout_reports_its_own_head_and_dirty_state():
    head = _checkout_head()
    rev = provenance.source_revision()
    assert rev is not None and rev.commit == head
    dirty = bool(_git(ROOT, "status", "--porcelain", "--untracked-files=no"))
    assert rev.dirty is dirty
    assert provenance.version_line() == f"lobgym {metadata.version('lobgym')} (git {head}" + (
        ", with uncommitted changes)" if dirty else ")")


def test_a_copy_inside_another_repository_reports_no_revision(tmp_path):
    user = _repo(tmp_path / "user", "userproject")
    assert provenance.source_revision(user / "src" / "lobgym") is None


def test_a_copy_in_an_untracked_venv_inside_a_lobgym_checkout_reports_no_revision(tmp_path):
    """e.g. ``pip install lobgym`` into ``.venv`` inside a clone: the installed copy is not the commit."""
    clone = _repo(tmp_path / "clone", "lobgym")
    site = clone / ".venv" / "lib" / "site-packages"
    shutil.copytree(SRC, site / "lobgym", ignore=shutil.ignore_patterns("__pycache__"))
    assert provenance.source_revision(site / "lobgym") is None


def test_a_lobgym_checkout_reports_its_head_and_edits_mark_it_dirty(tmp_path):
    clone = _repo(tmp_path / "clone", "lobgym")
    rev = provenance.source_revision(clone / "src" / "lobgym")
    assert rev == provenance.SourceRevision(_git(clone, "rev-parse", "HEAD"), dirty=False)
    with open(clone / "src" / "lobgym" / "cli.py", "a") as fh:
        fh.write("# edited\n")
    assert provenance.source_revision(clone / "src" / "lobgym").dirty is True


@pytest.mark.slow
def test_meta_json_and_version_of_a_copy_in_another_repository_name_no_foreign_revision(tmp_path):
    """The real code paths (run metadata, ``--version``) run from the copy, in a fresh process."""
    user = _repo(tmp_path / "user", "userproject")
    foreign = _git(user, "rev-parse", "HEAD")
    code = ("import json, lobgym.provenance as p; from lobgym.agents.training import run_metadata; "
            "print(json.dumps({'dir': str(p.PACKAGE_DIR), 'meta': run_metadata(), 'version': p.version_line()}))")
    env = {**os.environ, "PYTHONPATH": str(user / "src")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=user, capture_output=True, text=True, env=env,
                          check=True)
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["dir"] == str(user / "src" / "lobgym")  # the copy is what ran
    assert foreign not in proc.stdout
    assert out["meta"]["git_revision"] is None and out["meta"]["git_dirty"] is None
    assert out["meta"]["lobgym"] == metadata.version("lobgym")
    assert out["version"] == f"lobgym {metadata.version('lobgym')}"


def test_run_metadata_is_the_provenance_record():
    from lobgym.agents import training

    meta = training.run_metadata()
    rev = provenance.source_revision()
    assert meta["git_revision"] == (rev.commit if rev else None)
    assert meta["git_dirty"] == (rev.dirty if rev else None)
    assert set(meta["versions"]) == set(training.PACKAGES)
    m = meta["machine"]
    assert m["cpus"] == os.cpu_count() and m["numba_threads"] >= 1 and len(m["load_average"]) == 3
    assert m["cpu"] is None or isinstance(m["cpu"], str)
    assert {"started", "command", "python"} <= set(meta)


def test_a_benchmark_records_the_same_provenance(tmp_path, monkeypatch):
    import lobgym.tools.bench as bench

    monkeypatch.setattr(bench, "bench_training", lambda env, agent, timesteps: {
        "what": "PPO training (ppo)", "env": env, "agent": agent, "n_envs": 1, "timesteps": timesteps,
        "seconds": 1.0, "timesteps_per_s": float(timesteps), "env_seconds": 0.5, "env_share": 0.5})
    result = bench.run_spec({"kind": "benchmark", "training": {"agents": ["ppo"], "timesteps": 8}}, tmp_path,
                            progress=False, command=["lobgym", "bench", "--all"])
    rev = provenance.source_revision()
    assert result["git_revision"] == (rev.commit if rev else None)
    assert result["lobgym"] == metadata.version("lobgym") and result["command"] == "lobgym bench --all"
    m = result["machine"]
    assert m["cpus"] == os.cpu_count() and len(m["load_average_start"]) == 3 and len(m["load_average_end"]) == 3
    readme = (tmp_path / "README.md").read_text()
    assert (f"| git revision | {rev.commit}" in readme) if rev else ("| git revision |" not in readme)
