"""Fuzzing every shipped env preset: a random mutation (a numeric leaf replaced by a float -- inf, NaN,
huge, tiny, negative --, an int, a string, None or a list; a key deleted; an unknown key added)
either fails validation with one ConfigError line naming the mutated field, or builds an env whose
200 random steps give finite rewards and observations inside its observation space.

Derandomized (the same examples on every run) and small, so that CI stays fast: N = 1 envs reuse
the compiled kernels.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lobgym  # noqa: F401  (registers lobgym/MarketMaking-v0)
from lobgym.config import ConfigError, load_env_config
from lobgym.presets import list_presets, read_yaml

PRESETS = sorted(list_presets("envs"))
STEPS = 200
UNKNOWN_KEY = "zz_not_a_field"


def _nodes(node: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    """Every (path, value) of a YAML tree, containers included."""
    out = [(path, node)]
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        out += _nodes(child, (*path, key))
    return out


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


NEW_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.inf, -math.inf, math.nan, 0.0, -1.0, 1e-300, 1e300, 1e7, 1e-7, -1e7, 0.5]),
    st.integers(min_value=-10**13, max_value=10**13),
    st.text(max_size=4),
    st.none(),
    st.lists(st.floats(min_value=-10, max_value=10), max_size=3),
)


@st.composite
def mutations(draw, data: dict) -> tuple[str, tuple, Any]:
    """One mutation of ``data``: (what, path, new value)."""
    nodes = _nodes(data)
    leaves = [p for p, v in nodes if _is_number(v)]
    keys = [p for p, _ in nodes if p and isinstance(p[-1], str)]
    mappings = [p for p, v in nodes if isinstance(v, dict)]
    what = draw(st.sampled_from(["replace", "replace", "scale", "delete", "add"]))
    if what == "replace":
        return what, draw(st.sampled_from(leaves)), draw(NEW_VALUES)
    if what == "scale":  # near the original: more mutants get past validation and into the engine
        path = draw(st.sampled_from(leaves))
        original = dict(nodes)[path]
        factor = draw(st.sampled_from([-1.0, 0.0, 1e-6, 0.01, 0.5, 1.5, 3.0, 100.0, 1e4, 1e6]))
        value = original * factor
        return "replace", path, type(original)(value) if isinstance(original, int) else value
    if what == "delete":
        return what, draw(st.sampled_from(keys)), None
    return what, (*draw(st.sampled_from(mappings)), UNKNOWN_KEY), draw(NEW_VALUES)


def mutated(data: dict, what: str, path: tuple, value: Any) -> dict:
    out = copy.deepcopy(data)
    node = out
    for key in path[:-1]:
        node = node[key]
    if what == "delete":
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


def field_name(path: tuple) -> str:
    """The name an error must mention: the innermost key on the path (a list index names its list)."""
    return next(str(k) for k in reversed(path) if isinstance(k, str))


def assert_finite_steps(cfg, seed: int) -> None:
    env = gym.make("lobgym/MarketMaking-v0", config=cfg)
    try:
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        for t in range(STEPS):
            assert np.isfinite(obs).all() and env.observation_space.contains(obs), (t, obs)
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            assert math.isfinite(reward), (t, reward)
            if terminated or truncated:
                assert np.isfinite(obs).all() and env.observation_space.contains(obs), (t, obs)
                obs, _ = env.reset()
    finally:
        env.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
@settings(max_examples=100, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_preset_is_refused_by_field_or_steps_finitely(name: str, data) -> None:
    preset = read_yaml(list_presets("envs")[name]) | {"name": name}
    what, path, value = data.draw(mutations(preset), label="mutation")
    try:
        cfg = load_env_config(mutated(preset, what, path, value))
    except ConfigError as err:
        msg = str(err)
        assert "\n" not in msg, msg
        assert field_name(path) in msg, (what, path, value, msg)
        return
    assert_finite_steps(cfg, seed=len(path))


def test_mutations_reach_every_kind_of_change() -> None:
    """The strategy above can replace, delete and add anywhere in a preset (it is not fuzzing a corner)."""
    preset = read_yaml(list_presets("envs")["cst2010"])
    leaves = [p for p, v in _nodes(preset) if _is_number(v)]
    assert ("market", "flow", "lam", 3) in leaves and ("market", "warmup") in leaves
    assert mutated(preset, "delete", ("market", "flow", "mu"), None)["market"]["flow"].keys() == \
        preset["market"]["flow"].keys() - {"mu"}
    assert mutated(preset, "add", ("action", UNKNOWN_KEY), 1)["action"][UNKNOWN_KEY] == 1
    assert field_name(("market", "flow", "lam", 3)) == "lam"
