"""The Gymnasium env and the SB3 VecEnv: checkers, construction, episodes, actions, pickling, seeding."""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import yaml
from gymnasium.utils.env_checker import check_env as gym_check_env

import lobgym
from lobgym.env import MarketMakingEnv
from lobgym.presets import list_presets, read_yaml
from lobgym.simulation_base import ActionError

SRC = Path(lobgym.__file__).resolve().parents[1]

FULL = {  # every observation feature, quote sizes, an inventory limit, jumps and mean reversion
    "market": {
        "sigma": 2.0,
        "horizon": 0.3,
        "dt": 0.01,
        "fill": {"rule": "poisson", "A": 140.0, "k": 1.5},
        "inventory": {"initial": [-3, 3], "limit": 5},
        "jumps": {"rate": 5.0, "std": 1.0},
        "mean_reversion": {"kappa": 1.0, "theta": 100.0},
        "fees": {"per_unit": 0.01},
    },
    "action": {"max_depth": 3.0, "sizes": {"max_size": 3}},
    "observation": {"features": ["inventory", "time_left", "mid_change", "bid_filled", "ask_filled"]},
    "reward": [
        {"term": "pnl"},
        {"term": "fees"},
        {"term": "running_inventory_penalty", "params": {"phi": 0.1}},
    ],
}


def short_cj2015(n_steps: int = 20) -> dict:
    """The cj2015 preset with a shorter horizon (its q0 is drawn from [-4, 4])."""
    cfg = read_yaml(list_presets("envs")["cj2015"])
    cfg["market"]["horizon"] = n_steps * cfg["market"]["dt"]
    return cfg


def pnl_fees_config() -> dict:
    """Reward = net PnL; observes the lots filled per step (size scale 1, so the features are lots)."""
    cfg = copy.deepcopy(FULL)
    del cfg["action"]["sizes"]
    cfg["market"]["inventory"] = {"initial": 2}
    cfg["reward"] = [{"term": "pnl"}, {"term": "fees"}]
    return cfg


def make(config) -> gymnasium.Env:
    return gymnasium.make(lobgym.ENV_ID, config=config)


# ------------------------------------------------------------------------------------ checkers
@pytest.mark.parametrize("config", ["as2008", "cj2015", FULL], ids=["as2008", "cj2015", "full"])
def test_gymnasium_and_sb3_env_checkers_pass_without_warnings(config) -> None:
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make(config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env.unwrapped)
        sb3_check_env(env)
    assert [str(w.message) for w in caught] == []


def test_observation_bounds_are_finite_and_hold_over_episodes() -> None:
    env = make(FULL)
    space = env.observation_space
    assert np.isfinite(space.low).all() and np.isfinite(space.high).all()
    assert space.low[0] == -1.0 and space.high[0] == 1.0  # inventory / limit
    rng = np.random.default_rng(0)
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            assert space.contains(obs), obs
            obs, _, done, _, _ = env.step(rng.uniform(-1, 1, size=4).astype(np.float32))
        assert space.contains(obs)


@pytest.mark.parametrize("lam", [1e-4, 0.1, 1.4, 10.0, 50.0, 700.0, 800.0])
def test_poisson_count_bound_covers_the_largest_uniform(lam: float) -> None:
    """The observation bounds rest on max_poisson_events bounding every count the fill/jump draws can make."""
    from lobgym.market.rng import poisson_from_uniform
    from lobgym.spaces import max_poisson_events

    largest_u = 1.0 - 2.0**-53  # uniforms are k / 2**53, k < 2**53; the inverse CDF is monotone in u
    for u in (0.0, 0.5, 0.999, largest_u):
        assert poisson_from_uniform(u, lam) <= max_poisson_events(lam)


# -------------------------------------------------------------------------------- construction
def test_make_from_preset_yaml_path_and_dict(tmp_path: Path) -> None:
    by_name = make("as2008")
    by_path = make(str(list_presets("envs")["as2008"]))
    data = read_yaml(list_presets("envs")["as2008"])
    by_dict = make(data)
    copy_path = tmp_path / "mine.yaml"
    copy_path.write_text(yaml.safe_dump(data))
    by_copy = make(copy_path)
    assert by_name.unwrapped.config.name == "as2008"
    assert by_copy.unwrapped.config.name == "mine"
    trajectories = []
    for env in (by_name, by_path, by_dict, by_copy):
        assert env.unwrapped.config.market == by_name.unwrapped.config.market
        obs, _ = env.reset(seed=5)
        rows = [obs]
        for _ in range(20):
            rows.append(env.step(np.array([-0.5, 0.2], dtype=np.float32))[0])
        trajectories.append(np.array(rows))
    for t in trajectories[1:]:
        np.testing.assert_array_equal(t, trajectories[0])


def test_max_episode_steps_truncates() -> None:
    env = gymnasium.make(lobgym.ENV_ID, config="as2008", max_episode_steps=5)
    env.reset(seed=0)
    flags = [env.step(np.zeros(2, dtype=np.float32))[2:4] for _ in range(5)]
    assert flags == [(False, False)] * 4 + [(False, True)]


def test_episode_terminates_at_horizon_with_metrics() -> None:
    env = make(pnl_fees_config())
    n = env.unwrapped.sim.params.n_steps
    rng = np.random.default_rng(1)
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        assert info == {}
        rewards, bought, sold = [], 0, 0
        for t in range(1, n + 1):
            obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, size=2).astype(np.float32))
            assert truncated is False
            assert terminated is (t == n)
            assert ("episode_metrics" in info) is (t == n)
            rewards.append(reward)
            bought += int(obs[3])  # bid_filled: lots bought this step (one-lot quotes)
            sold += int(obs[4])
        m = info["episode_metrics"]
        assert m["steps"] == n
        assert m["pnl"] == pytest.approx(sum(rewards), rel=1e-9, abs=1e-9)  # reward = pnl - fee per step
        assert (m["bid_fills"], m["ask_fills"], m["fills"]) == (bought, sold, bought + sold)
        assert bought + sold > 0
        assert m["final_inventory"] == 2 + bought - sold == round(obs[0] * 10)  # default inventory_scale
        assert m["fees"] == pytest.approx(0.01 * (bought + sold), rel=1e-12)


def test_step_before_reset_and_after_termination_raise() -> None:
    raw = MarketMakingEnv(short_cj2015(3))
    action = np.zeros(2, dtype=np.float32)
    with pytest.raises(RuntimeError, match="reset"):
        raw.step(action)
    raw.reset(seed=0)
    for _ in range(3):
        raw.step(action)
    with pytest.raises(RuntimeError, match="reset"):
        raw.step(action)
    raw.reset()
    raw.step(action)  # usable again

    made = make(short_cj2015(3))
    with pytest.raises(Exception, match="reset"):  # Gymnasium's OrderEnforcing (ResetNeeded)
        made.step(action)
    made.reset(seed=0)
    for _ in range(3):
        made.step(action)
    with pytest.raises(RuntimeError, match="reset"):
        made.step(action)


def test_render_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="render_mode"):
        MarketMakingEnv("as2008", render_mode="human")


# ------------------------------------------------------------------------------------- actions
@pytest.mark.parametrize(
    ("action", "component", "value"),
    [
        ([np.nan, 0.0], "action[0] (bid_depth)", "nan"),
        ([0.0, np.inf], "action[1] (ask_depth)", "inf"),
        ([0.0, -np.inf], "action[1] (ask_depth)", "-inf"),
        ([1.5, 0.0], "action[0] (bid_depth)", "1.5"),
        ([0.0, -1.25], "action[1] (ask_depth)", "-1.25"),
    ],
)
def test_bad_actions_raise_action_error(action, component: str, value: str) -> None:
    env = make("as2008")
    env.reset(seed=0)
    with pytest.raises(ActionError) as err:
        env.step(np.array(action, dtype=np.float32))
    assert isinstance(err.value, ValueError)
    assert f"{component} = {value}" in str(err.value)
    assert "[-1, 1]" in str(err.value)


def test_bad_action_in_sizes_names_the_component() -> None:
    env = make(FULL)
    env.reset(seed=0)
    with pytest.raises(ActionError, match=r"action\[3\] \(ask_size\) = 2\.0"):
        env.step(np.array([0.0, 0.0, 0.0, 2.0], dtype=np.float32))


def test_rejected_action_leaves_the_env_unchanged() -> None:
    a, b = MarketMakingEnv("cj2015"), MarketMakingEnv("cj2015")
    a.reset(seed=3)
    b.reset(seed=3)
    with pytest.raises(ActionError):
        a.step(np.array([0.0, np.nan], dtype=np.float32))
    good = np.array([0.1, -0.3], dtype=np.float32)
    for _ in range(5):
        oa, ra, *_ = a.step(good)
        ob, rb, *_ = b.step(good)
        np.testing.assert_array_equal(oa, ob)
        assert ra == rb


def clipping_config() -> dict:
    cfg = short_cj2015(10)
    cfg["action"]["clip"] = True
    return cfg


def test_clip_maps_out_of_range_to_the_boundary_and_still_rejects_nan() -> None:
    clipped, boundary = make(clipping_config()), make(clipping_config())
    clipped.reset(seed=9)
    boundary.reset(seed=9)
    for _ in range(10):
        oc, rc, *_ = clipped.step(np.array([7.0, -1.5], dtype=np.float32))
        ob, rb, *_ = boundary.step(np.array([1.0, -1.0], dtype=np.float32))
        np.testing.assert_array_equal(oc, ob)
        assert rc == rb
    clipped.reset(seed=0)
    with pytest.raises(ActionError, match=r"action\[0\] \(bid_depth\) = nan"):
        clipped.step(np.array([np.nan, 0.0], dtype=np.float32))


@pytest.mark.parametrize(
    "action",
    [
        np.float32(0.5),
        np.zeros(1, np.float32),
        np.zeros(3, np.float32),
        np.zeros((2, 1), np.float32),
        np.zeros((1, 2), np.float32),
    ],
)
def test_wrong_action_shape_raises(action) -> None:
    env = MarketMakingEnv("as2008")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"expected shape \(2,\)"):
        env.step(action)


# ------------------------------------------------------------------------------------ pickling
def test_pickled_env_continues_identically() -> None:
    env = make(FULL)
    env.reset(seed=11)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(60, 4)).astype(np.float32)
    for a in actions[:7]:
        env.step(a)
    twin = pickle.loads(pickle.dumps(env))
    n = env.unwrapped.sim.params.n_steps
    for t, a in enumerate(actions[7:n], start=8):
        s1, s2 = env.step(a), twin.step(a)
        np.testing.assert_array_equal(s1[0], s2[0])
        assert s1[1:] == s2[1:]
        assert s1[2] is (t == n)
    np.testing.assert_array_equal(env.reset()[0], twin.reset()[0])  # the streams continue alike too


def test_pickled_vec_env_continues_identically() -> None:
    venv = lobgym.make_vec_env(short_cj2015(10), n_envs=3, seed=4)
    venv.reset()
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1, 1, size=(25, 3, 2)).astype(np.float32)
    for a in actions[:4]:
        venv.step(a)
    twin = pickle.loads(pickle.dumps(venv))
    dones = 0
    for a in actions[4:]:  # runs through auto-resets
        o1, r1, d1, i1 = venv.step(a)
        o2, r2, d2, i2 = twin.step(a)
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(d1, d2)
        for x, y in zip(i1, i2, strict=True):
            assert x.keys() == y.keys()
            assert x["reward_terms"] == y["reward_terms"]
            if "terminal_observation" in x:
                np.testing.assert_array_equal(x["terminal_observation"], y["terminal_observation"])
                assert x["episode_metrics"] == y["episode_metrics"]
        dones += int(d1.sum())
    assert dones == 6


# ------------------------------------------------------------------------------------- VecEnv
def single_env_run(cfg: dict, seed: int, actions: np.ndarray):
    """A single env reset with ``seed`` playing ``actions`` across episodes (then reset() without a seed)."""
    env = MarketMakingEnv(cfg)
    obs, _ = env.reset(seed=seed)
    out = []
    for a in actions:
        obs, reward, terminated, _, info = env.step(a)
        out.append((obs, reward, terminated, info))
        if terminated:
            obs, _ = env.reset()
            out[-1] = (*out[-1], obs)  # the first observation of the next episode
    return out


def test_vec_env_matches_single_envs_with_auto_reset() -> None:
    from stable_baselines3.common.vec_env import VecEnv

    cfg, n_envs, seed, n = short_cj2015(8), 3, 20, 8
    venv = lobgym.make_vec_env(cfg, n_envs=n_envs, seed=seed)
    assert isinstance(venv, VecEnv) and venv.num_envs == n_envs
    rng = np.random.default_rng(2)
    actions = rng.uniform(-1, 1, size=(2 * n, n_envs, 2)).astype(np.float32)
    singles = [single_env_run(cfg, seed + i, actions[:, i]) for i in range(n_envs)]
    first = venv.reset()
    for i in range(n_envs):
        np.testing.assert_array_equal(first[i], MarketMakingEnv(cfg).reset(seed=seed + i)[0])
    for t in range(2 * n):
        obs, rewards, dones, infos = venv.step(actions[t])
        assert obs.dtype == np.float32 and rewards.dtype == np.float32 and dones.dtype == np.bool_
        for i in range(n_envs):
            s_obs, s_reward, s_done, s_info, *s_next = singles[i][t]
            assert dones[i] == s_done == ((t + 1) % n == 0)
            assert rewards[i] == np.float32(s_reward)
            assert infos[i]["reward_terms"] == s_info["reward_terms"]
            if s_done:
                np.testing.assert_array_equal(infos[i]["terminal_observation"], s_obs)
                assert infos[i]["episode_metrics"] == s_info["episode_metrics"]
                assert infos[i]["TimeLimit.truncated"] is False
                np.testing.assert_array_equal(obs[i], s_next[0])  # auto-reset: the next episode's start
            else:
                assert "terminal_observation" not in infos[i]
                np.testing.assert_array_equal(obs[i], s_obs)


def test_vec_env_returns_copies() -> None:
    """Mutating everything a step hands out changes nothing in the env (compared with an untouched twin)."""
    cfg = short_cj2015(3)
    touched, twin = (lobgym.make_vec_env(cfg, n_envs=2, seed=0) for _ in range(2))
    obs, twin_obs = touched.reset(), twin.reset()
    np.testing.assert_array_equal(obs, twin_obs)
    obs[:] = 123.0
    action = np.full((2, 2), -0.5, dtype=np.float32)
    seen_terminal = 0
    for _ in range(7):
        obs, rewards, dones, infos = touched.step(action)
        t_obs, t_rewards, t_dones, t_infos = twin.step(action)
        np.testing.assert_array_equal(obs, t_obs)
        np.testing.assert_array_equal(rewards, t_rewards)
        for i in range(2):
            if "terminal_observation" in infos[i]:
                np.testing.assert_array_equal(
                    infos[i]["terminal_observation"], t_infos[i]["terminal_observation"]
                )
                infos[i]["terminal_observation"][:] = -9.0
                seen_terminal += 1
        assert not np.shares_memory(obs, touched.sim.buffers.obs)
        for arr in (obs, rewards, dones):
            arr[...] = 0
    assert seen_terminal == 4


def test_vec_env_seed_then_reset_seeds_env_i_with_s_plus_i() -> None:
    cfg = short_cj2015(5)
    venv = lobgym.make_vec_env(cfg, n_envs=4)
    venv.seed(100)
    obs = venv.reset()
    expected = np.array([MarketMakingEnv(cfg).reset(seed=100 + i)[0] for i in range(4)])
    np.testing.assert_array_equal(obs, expected)
    assert len({tuple(row) for row in expected}) > 1  # q0 is drawn, so the seeds make a difference
    # Same seeds, same run; a reset without seeding continues the streams instead of repeating them.
    action = np.zeros((4, 2), dtype=np.float32)
    r1 = [venv.step(action)[1] for _ in range(5)]
    venv.seed(100)
    np.testing.assert_array_equal(venv.reset(), expected)
    r2 = [venv.step(action)[1] for _ in range(5)]
    np.testing.assert_array_equal(r1, r2)


def test_vec_env_rejects_bad_actions() -> None:
    venv = lobgym.make_vec_env(short_cj2015(5), n_envs=2, seed=0)
    venv.reset()
    with pytest.raises(ValueError, match=r"actions.shape = \(2,\): expected \(2, 2\)"):
        venv.step(np.zeros(2, dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected \(2, 2\)"):
        venv.step(np.zeros(4, dtype=np.float32))
    bad = np.zeros((2, 2), dtype=np.float32)
    bad[1, 0] = np.inf
    with pytest.raises(ActionError, match=r"action\[0\] \(bid_depth\) of env 1 = inf"):
        venv.step(bad)


def test_vec_monitor_reports_episode_returns() -> None:
    from stable_baselines3.common.vec_env import VecMonitor

    n = 6
    venv = VecMonitor(lobgym.make_vec_env(short_cj2015(n), n_envs=2, seed=0))
    venv.reset()
    rng = np.random.default_rng(3)
    totals = np.zeros(2)
    episodes = []
    for _ in range(2 * n):
        _, rewards, dones, infos = venv.step(rng.uniform(-1, 1, size=(2, 2)).astype(np.float32))
        totals += rewards
        for i in np.flatnonzero(dones):
            assert infos[i]["episode"]["l"] == n
            assert infos[i]["episode"]["r"] == pytest.approx(totals[i], rel=1e-5, abs=1e-5)
            episodes.append(infos[i]["episode"]["r"])
            totals[i] = 0.0
    assert len(episodes) == 4 and len(set(episodes)) > 1


def test_vec_normalize_wraps_the_vec_env() -> None:
    from stable_baselines3.common.vec_env import VecNormalize

    venv = VecNormalize(lobgym.make_vec_env(short_cj2015(10), n_envs=2, seed=0), clip_obs=5.0)
    obs = venv.reset()
    assert obs.shape == (2, 2)
    for _ in range(25):
        obs, rewards, dones, infos = venv.step(np.zeros((2, 2), dtype=np.float32))
        assert np.isfinite(obs).all() and np.abs(obs).max() <= 5.0 and np.isfinite(rewards).all()
    assert venv.obs_rms.count > 25
    assert "terminal_observation" in infos[0] or dones.sum() == 0


def test_reading_infos_as_sb3_does_builds_nothing_for_envs_still_running(monkeypatch) -> None:
    """SB3 reads every info of every step (``_update_info_buffer``): for an env whose episode goes on
    that must not build its reward-terms dict, while every info still reads like a dict."""
    from stable_baselines3 import PPO

    from lobgym.vec_env import StepInfos

    built = []
    original = StepInfos.reward_terms
    monkeypatch.setattr(StepInfos, "reward_terms", lambda self, i: built.append(i) or original(self, i))
    n = 5
    venv = lobgym.make_vec_env(short_cj2015(n), n_envs=8, seed=0)
    model = PPO("MlpPolicy", venv, n_steps=8, device="cpu")
    model._setup_learn(total_timesteps=8)  # SB3's info buffers; resets the env
    for t in range(n):
        _, _, dones, infos = venv.step(np.zeros((8, 2), dtype=np.float32))
        model._update_info_buffer(infos, dones)
        assert built == ([] if t < n - 1 else list(range(8)))  # only the ended episodes' infos were made
        built.clear()
    assert len(model.ep_info_buffer) == 8  # every ended episode reached SB3
    _, _, dones, infos = venv.step(np.zeros((8, 2), dtype=np.float32))
    assert not dones.any()
    info = infos[3]
    assert "reward_terms" in info and "episode" not in info and info.get("episode") is None
    terms = dict(zip(venv.sim.term_names, venv.sim.buffers.terms[3].tolist(), strict=True))
    assert info == {"reward_terms": terms} and info.copy() == {"reward_terms": terms} and dict(info) == info
    info["is_success"] = True  # wrappers may add keys; the same object comes back
    assert infos[3]["is_success"] is True and infos[3] is info and sorted(info) == ["is_success", "reward_terms"]
    assert [dict(i) for i in infos[:2]] == [dict(infos[0]), dict(infos[1])] and len(list(infos)) == 8


def test_tiny_ppo_learns_without_error() -> None:
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    venv = lobgym.make_vec_env("cj2015", 2, seed=0)
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=128)
    assert model.num_timesteps == 128
    actions, _ = model.predict(venv.reset(), deterministic=True)
    assert actions.shape == (2, 2)


# ------------------------------------------------------------------------------------- imports
def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_single_env_does_not_import_torch_or_sb3_and_vec_env_imports_lazily() -> None:
    out = run_python("""
        import sys
        import gymnasium
        import numpy as np
        import lobgym
        env = gymnasium.make(lobgym.ENV_ID, config="as2008")
        env.reset(seed=0)
        env.step(np.zeros(2, dtype=np.float32))
        print(sorted(m for m in ("torch", "stable_baselines3") if m in sys.modules))
        make_vec_env = lobgym.make_vec_env
        print("stable_baselines3" in sys.modules)
    """)
    assert out.splitlines() == ["[]", "True"]
