"""The Gymnasium VectorEnv over the fused simulation: imports, bit-identity with the SB3 VecEnv and with a
SyncVectorEnv of single envs (SAME_STEP infos included), spaces, and argument errors."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.vector.utils import batch_space
from gymnasium.wrappers import TimeLimit
from helpers import short_env

from lobgym.env import MarketMakingEnv
from lobgym.gym_vector import MarketMakingVectorEnv

CONFIGS = {"as2008": short_env("as2008", 12), "cj2015": short_env("cj2015", 12), "cst2010": short_env("cst2010", 6)}


def actions_for(env: MarketMakingVectorEnv, steps: int, seed: int = 0) -> np.ndarray:
    shape = (steps, env.num_envs, env.single_action_space.shape[0])
    return np.random.default_rng(seed).uniform(-1.0, 1.0, shape).astype(np.float32)


def assert_info_equal(a, b, where: str) -> None:
    """Vector infos equal: same keys, arrays equal in dtype and values (NaN == NaN), object arrays elementwise."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_info_equal(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, np.ndarray) and a.dtype == object:
        assert b.dtype == object and a.shape == b.shape, where
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            assert (u is None) == (v is None), f"{where}[{i}]"
            if u is not None:
                assert u.dtype == v.dtype, f"{where}[{i}]"
                np.testing.assert_array_equal(u, v, err_msg=f"{where}[{i}]")
    else:
        assert a.dtype == b.dtype, f"{where}: {a.dtype} != {b.dtype}"
        np.testing.assert_array_equal(a, b, err_msg=where)


# ------------------------------------------------------------------------------------ imports
def test_importing_the_vector_env_imports_neither_torch_nor_sb3() -> None:
    code = ("import sys, lobgym.gym_vector; "
            "bad = [m for m in ('torch', 'stable_baselines3') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------- SB3 VecEnv identity
@pytest.mark.parametrize("name", ["as2008", "cst2010"])
def test_bit_identical_to_the_sb3_vec_env_across_episode_ends(name) -> None:
    from lobgym.vec_env import make_vec_env

    cfg, n, seed = CONFIGS[name], 3, 123
    venv = MarketMakingVectorEnv(n, config=cfg)
    sb3 = make_vec_env(cfg, n_envs=n, seed=seed)
    horizon = venv.config.market.n_steps
    obs, info = venv.reset(seed=seed)
    assert info == {}
    np.testing.assert_array_equal(obs, sb3.reset())
    ends = 0
    for t, a in enumerate(actions_for(venv, 2 * horizon + 3)):
        obs, rew, term, trunc, infos = venv.step(a)
        s_obs, s_rew, s_done, s_infos = sb3.step(a)
        assert obs.dtype == np.float32 and rew.dtype == np.float64
        np.testing.assert_array_equal(obs, s_obs, err_msg=f"step {t}")
        np.testing.assert_array_equal(rew.astype(np.float32), s_rew, err_msg=f"step {t}")
        np.testing.assert_array_equal(term, s_done)
        assert not trunc.any()
        if not s_done.any():
            assert infos.keys() == {"reward_terms", "_reward_terms"}
            for i in range(n):
                assert {k: v[i] for k, v in infos["reward_terms"].items() if k[0] != "_"} == s_infos[i]["reward_terms"]
            continue
        ends += int(s_done.sum())
        np.testing.assert_array_equal(infos["_final_obs"], s_done)
        np.testing.assert_array_equal(infos["_final_info"], s_done)
        final = infos["final_info"]
        np.testing.assert_array_equal(final["_episode_metrics"], s_done)
        for i in range(n):
            if not s_done[i]:
                assert infos["final_obs"][i] is None
                continue
            np.testing.assert_array_equal(infos["final_obs"][i], s_infos[i]["terminal_observation"])
            metrics = {k: v[i] for k, v in final["episode_metrics"].items() if k[0] != "_"}
            np.testing.assert_equal(metrics, s_infos[i]["episode_metrics"])
            terms = {k: v[i] for k, v in final["reward_terms"].items() if k[0] != "_"}
            assert terms == s_infos[i]["reward_terms"]
    assert ends == 2 * n


# -------------------------------------------------------------- SyncVectorEnv of single envs
@pytest.mark.parametrize("max_episode_steps", [None, 5, 12], ids=["horizon", "truncated", "both"])
@pytest.mark.parametrize("name", ["cj2015", "cst2010"])
def test_equals_a_same_step_sync_vector_env_of_single_envs(name, max_episode_steps) -> None:
    """Env i seeded s + i == MarketMakingEnv reset(seed=s + i), through auto-resets, partial resets
    (staggered episodes) and truncation; the infos equal SyncVectorEnv's, masks and all."""
    cfg, n, seed = CONFIGS[name], 3, 7
    if name == "cst2010" and max_episode_steps == 12:
        max_episode_steps = 6  # its horizon

    def single() -> gymnasium.Env:
        env = MarketMakingEnv(cfg)
        return env if max_episode_steps is None else TimeLimit(env, max_episode_steps)

    venv = MarketMakingVectorEnv(n, config=cfg, max_episode_steps=max_episode_steps)
    sync = SyncVectorEnv([single] * n, autoreset_mode=AutoresetMode.SAME_STEP)
    assert venv.metadata["autoreset_mode"] == sync.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert venv.single_observation_space == sync.single_observation_space
    assert venv.single_action_space == sync.single_action_space
    assert venv.observation_space == sync.observation_space and venv.action_space == sync.action_space
    horizon = venv.config.market.n_steps
    outcomes = {"terminated": 0, "truncated": 0}
    mask = np.array([False, True, False])
    for t, a in enumerate(actions_for(venv, 2 * horizon + 5, seed=1)):
        if t == 0:
            got, want = venv.reset(seed=seed), sync.reset(seed=seed)
        elif t == 2:  # restart env 1 only: its episodes now end two steps after the others'
            got, want = venv.reset(options={"reset_mask": mask}), sync.reset(options={"reset_mask": mask.copy()})
        else:
            got = want = None
        if got is not None:
            np.testing.assert_array_equal(got[0], want[0])
            assert got[1] == want[1] == {}
        got, want = venv.step(a), sync.step(a)
        for k, (x, y) in enumerate(zip(got[:4], want[:4], strict=True)):
            assert x.dtype == y.dtype, f"step {t}, output {k}"
            np.testing.assert_array_equal(x, y, err_msg=f"step {t}, output {k}")
        assert_info_equal(got[4], want[4], f"step {t}: infos")
        outcomes["terminated"] += int(got[2].sum())
        outcomes["truncated"] += int(got[3].sum())
    if max_episode_steps is None or max_episode_steps == horizon:
        assert outcomes["terminated"] >= 2 * n - 1
    if max_episode_steps is not None:
        assert outcomes["truncated"] >= 2 * n - 1


# ----------------------------------------------------------------------------- spaces, checks
def test_spaces_contain_observations_and_seeding_is_reproducible() -> None:
    n = 4
    venv = MarketMakingVectorEnv(n, config=CONFIGS["cj2015"])
    assert venv.observation_space == batch_space(venv.single_observation_space, n)
    assert venv.action_space == batch_space(venv.single_action_space, n)
    assert venv.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    venv.action_space.seed(0)

    def rollout(seed):
        obs, _ = venv.reset(seed=seed)
        out = [obs]
        assert obs in venv.observation_space
        for _ in range(venv.config.market.n_steps + 2):
            obs, rew, term, trunc, infos = venv.step(venv.action_space.sample())
            assert obs in venv.observation_space and rew.shape == term.shape == trunc.shape == (n,)
            for i in np.flatnonzero(term):
                assert infos["final_obs"][i] in venv.single_observation_space
            out.append(obs)
        return np.array(out)

    venv.action_space.seed(0)
    a = rollout(5)
    venv.action_space.seed(0)
    np.testing.assert_array_equal(a, rollout(5))
    venv.action_space.seed(0)
    np.testing.assert_array_equal(a, rollout([5, 6, 7, 8]))  # an int seed s seeds env i with s + i
    venv.action_space.seed(0)
    b = rollout([5, 6, 7, 9])
    np.testing.assert_array_equal(a[:, :3], b[:, :3])
    assert not np.array_equal(a[:, 3], b[:, 3])


def test_make_vec_of_the_registered_id_builds_the_fused_vector_env() -> None:
    from lobgym import ENV_ID

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        venv = gymnasium.make_vec(ENV_ID, num_envs=3, config=CONFIGS["as2008"])
    assert type(venv) is MarketMakingVectorEnv and venv.num_envs == 3
    direct = MarketMakingVectorEnv(3, config=CONFIGS["as2008"])
    acts = actions_for(direct, 15)
    for env in (venv, direct):
        env.reset(seed=7)
    for t, a in enumerate(acts):  # crosses the 12-step horizon: autoreset included
        (o1, r1, d1, _, _), (o2, r2, d2, _, _) = venv.step(a), direct.step(a)
        np.testing.assert_array_equal(o1, o2, err_msg=f"step {t}")
        np.testing.assert_array_equal(r1, r2, err_msg=f"step {t}")
        np.testing.assert_array_equal(d1, d2, err_msg=f"step {t}")
    venv.close()
    assert venv.closed
    # the loop over single envs stays available by name, and Gymnasium refuses what the fused env cannot take
    sync = gymnasium.make_vec(ENV_ID, num_envs=2, vectorization_mode="sync", config=CONFIGS["as2008"])
    assert isinstance(sync, SyncVectorEnv) and sync.num_envs == 2
    with pytest.raises(gymnasium.error.Error, match="vector_kwargs"):
        gymnasium.make_vec(ENV_ID, num_envs=2, vector_kwargs={"copy": False}, config=CONFIGS["as2008"])


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("num_envs", [0, -2, 2.5, "3", True, None])
def test_bad_num_envs_names_the_value(num_envs) -> None:
    with pytest.raises(ValueError, match=re.escape(f"num_envs = {num_envs!r}: must be an integer >= 1")):
        MarketMakingVectorEnv(num_envs, config=CONFIGS["as2008"])


def test_bad_action_shapes_seeds_and_order_raise_clear_errors() -> None:
    venv = MarketMakingVectorEnv(3, config=CONFIGS["as2008"])
    with pytest.raises(RuntimeError, match="before reset"):
        venv.step(np.zeros((3, 2), dtype=np.float32))
    venv.reset(seed=0)
    for shape in [(3,), (2, 3), (4, 2), (3, 2, 1), (6,)]:
        with pytest.raises(ValueError, match=rf"actions\.shape = \({', '.join(map(str, shape))},?\): "
                                             r"expected \(3, 2\) \(num_envs, action_dim\)"):
            venv.step(np.zeros(shape, dtype=np.float32))
    with pytest.raises(ValueError, match=r"actions\.shape = \(\): expected"):
        venv.step(0.0)
    with pytest.raises(ValueError, match="action"):  # NaN: the simulation's ActionError, a ValueError
        venv.step(np.full((3, 2), np.nan, dtype=np.float32))
    for seed in [-1, [1, 2], "a", [0, -1, 2]]:
        with pytest.raises(ValueError, match="seed = "):
            venv.reset(seed=seed)
    with pytest.raises(ValueError, match="reset_mask"):
        venv.reset(options={"reset_mask": np.zeros(3, dtype=np.bool_)})
    for bad in [{"render_mode": "human"}, {"max_episode_steps": 0}]:
        with pytest.raises(ValueError, match=f"{next(iter(bad))} = "):
            MarketMakingVectorEnv(2, config=CONFIGS["as2008"], **bad)
