"""The one-line notice before lobgym's numba kernels compile: printed once when a compile starts,
never when the kernels come from the cache, silenced by LOBGYM_NO_COMPILE_NOTICE."""

from __future__ import annotations

import os
import subprocess
import sys

import numba
import pytest

from lobgym import compile_notice
from lobgym.compile_notice import NOTICE, announce_compiles


def _fresh_kernel(module: str):
    def add_one(x):
        return x + 1

    add_one.__module__ = module
    return numba.njit(cache=False)(add_one)


@pytest.fixture
def fresh(monkeypatch):
    """As in a new process: nothing announced yet."""
    monkeypatch.setattr(compile_notice, "_announced", False)
    monkeypatch.delenv(compile_notice.SILENCE, raising=False)
    announce_compiles()


def test_the_first_compile_of_a_lobgym_kernel_prints_one_line_to_stderr(fresh, capsys):
    first, second = _fresh_kernel("lobgym.market.fake"), _fresh_kernel("lobgym.other_fake")
    assert first(1) == 2 and second(1) == 2 and first(2) == 3
    out, err = capsys.readouterr()
    assert err == NOTICE + "\n" and out == ""  # once per process, and not on stdout


def test_other_packages_kernels_and_a_silenced_process_print_nothing(fresh, capsys, monkeypatch):
    assert _fresh_kernel("someone_else")(1) == 2
    assert capsys.readouterr().err == ""
    monkeypatch.setenv(compile_notice.SILENCE, "1")
    assert _fresh_kernel("lobgym.fake")(1) == 2
    assert capsys.readouterr().err == ""


def test_installing_twice_listens_once(fresh, capsys):
    announce_compiles()
    announce_compiles()
    assert _fresh_kernel("lobgym.fake")(1) == 2
    assert capsys.readouterr().err.count(NOTICE) == 1


def _run(code: list[str], cache: str, **env: str) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if k != compile_notice.SILENCE}, "NUMBA_CACHE_DIR": cache,
           "COLUMNS": "200", **env}
    return subprocess.run([sys.executable, *code], capture_output=True, text=True, env=env, timeout=1200)


@pytest.mark.slow
def test_a_cold_cache_cli_run_announces_the_compile_and_a_warm_one_does_not(tmp_path):
    cache = str(tmp_path / "numba-cache")
    args = ["-m", "lobgym", "validate", "cst2010", "--books", "1", "--seconds", "2", "--out", str(tmp_path / "v"),
            "--json"]
    cold = _run(args, cache)
    assert cold.returncode == 0, cold.stderr
    assert cold.stderr.count(NOTICE) == 1 and NOTICE not in cold.stdout
    warm = _run(args, cache)
    assert warm.returncode == 0, warm.stderr
    assert NOTICE not in warm.stderr


@pytest.mark.slow
def test_a_cold_gymnasium_make_announces_the_compile(tmp_path):
    """The Python API: ``gymnasium.make`` + reset + step of an env whose kernels are not cached."""
    code = ["-c", "import gymnasium, numpy as np, lobgym; e = gymnasium.make(lobgym.ENV_ID, config='as2008'); "
                  "e.reset(seed=0); e.step(np.zeros(e.action_space.shape, dtype=np.float32))"]
    cache = str(tmp_path / "numba-cache")
    cold = _run(code, cache)
    assert cold.returncode == 0, cold.stderr
    assert cold.stderr.count(NOTICE) == 1, "no compile notice: is announce_compiles() called in simulation.py?"
    warm = _run(code, cache)
    assert warm.returncode == 0 and NOTICE not in warm.stderr
