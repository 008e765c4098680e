"""Config validation: every error names the field path, the offending value and what is allowed."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, preset

from lobgym.config import (
    AgentConfig,
    ConfigError,
    EnvConfig,
    TrainingConfig,
    load_agent_config,
    load_env_config,
    load_training_config,
)
from lobgym.presets import list_presets, read_yaml
from lobgym.spaces import FEATURES

BASE = {
    "market": {
        "kind": "reduced_form",
        "s0": 100.0,
        "sigma": 2.0,
        "horizon": 1.0,
        "dt": 0.01,
        "fill": {"rule": "paper", "A": 140.0, "k": 1.5},
        "inventory": {"initial": 0, "limit": 5},
    },
    "action": {"max_depth": 5.0},
    "observation": {"features": ["inventory", "time_left"]},
    "reward": [{"term": "pnl"}],
}


def edited(edit: Callable[[dict], None]) -> dict:
    cfg = copy.deepcopy(BASE)
    edit(cfg)
    return cfg


def env_error(cfg) -> str:
    with pytest.raises(ConfigError) as err:
        load_env_config(cfg)
    assert isinstance(err.value, ValueError)
    return str(err.value)


def test_base_config_is_valid() -> None:
    cfg = load_env_config(BASE)
    assert isinstance(cfg, EnvConfig)
    assert cfg.market.n_steps == 100
    assert load_env_config(cfg) is cfg  # an EnvConfig passes through


def case(name: str, edit: Callable[[dict], object], *fragments: str):
    return pytest.param(edit, list(fragments), id=name)


def fill(**kw) -> Callable[[dict], object]:
    return lambda c: c["market"]["fill"].update(**kw)


def inventory(**kw) -> Callable[[dict], object]:
    return lambda c: c["market"]["inventory"].update(**kw)


def features(*names: str) -> Callable[[dict], object]:
    return lambda c: c["observation"].update(features=list(names))


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        case(
            "negative-sigma",
            lambda c: c["market"].update(sigma=-1.5),
            "market.sigma = -1.5",
            "greater than or equal to 0",
        ),
        case("zero-A", fill(A=0.0), "market.fill.A = 0.0", "greater than 0"),
        case("negative-A", fill(A=-3.0), "market.fill.A = -3.0", "greater than 0"),
        case("zero-k", fill(k=0), "market.fill.k = 0", "greater than 0"),
        case("unknown-fill-rule", fill(rule="linear"), "market.fill.rule = 'linear'", "'paper' or 'poisson'"),
        case(
            "horizon-not-whole",
            lambda c: c["market"].update(dt=0.03),
            "market",
            "horizon / dt = 1.0 / 0.03",
            "whole number",
        ),
        case(
            "horizon-below-dt",
            lambda c: c["market"].update(horizon=0.005),
            "horizon / dt = 0.005 / 0.01",
            "whole number >= 1",
        ),
        case(
            "extra-top-level-key",
            lambda c: c.update(colour="blue"),
            "colour = 'blue'",
            "Extra inputs are not permitted",
            "allowed: name, description, market, action",
        ),
        case("extra-nested-key", fill(B=1.0), "market.fill.B = 1.0", "allowed: rule, A, k"),
        case(
            "extra-key-in-list",
            lambda c: c["reward"][0].update(wieght=2.0),
            "reward[0].wieght = 2.0",
            "allowed: term, weight, params",
        ),
        case("initial-outside-limit", inventory(initial=6), "market.inventory", "initial = 6", "limit +/-5"),
        case(
            "initial-range-outside-limit",
            inventory(initial=[-7, 2]),
            "market.inventory",
            "initial = (-7, 2)",
            "limit +/-5",
        ),
        case(
            "initial-range-reversed",
            inventory(initial=[3, 1]),
            "market.inventory",
            "[3, 1]",
            "low must be <= high",
        ),
        case("zero-limit", inventory(limit=0), "market.inventory.limit = 0", "greater than 0"),
        case(
            "duplicate-features",
            features("inventory", "time_left", "inventory"),
            "observation.features",
            "['inventory']",
            "listed twice",
        ),
        case(
            "unknown-feature",
            features("inventory", "spread"),
            "observation.features[1] = 'spread'",
            *(repr(f) for f in FEATURES),
        ),
        case("no-features", features(), "observation.features", "at least 1"),
        case(
            "nan-sigma",
            lambda c: c["market"].update(sigma=float("nan")),
            "market.sigma = nan",
            "finite number",
        ),
        case("inf-s0", lambda c: c["market"].update(s0=float("inf")), "market.s0 = inf", "finite number"),
        case(
            "nan-weight",
            lambda c: c["reward"][0].update(weight=float("nan")),
            "reward[0].weight = nan",
            "finite number",
        ),
        case(
            "negative-max-depth",
            lambda c: c["action"].update(max_depth=-1),
            "action.max_depth = -1",
            "greater than 0",
        ),
        case(
            "poisson-too-many-fills",
            fill(rule="poisson", A=6000.0),
            "fill.A * dt = 60",
            "at most 50",
            "smaller dt",
        ),
        case(
            "min-depth-not-below-max",
            lambda c: c["action"].update(min_depth=5.0),
            "min_depth = 5: must be below max_depth = 5",
        ),
        case(
            "min-depth-through-mid-too-many-poisson-fills",
            lambda c: (c["market"]["fill"].update(rule="poisson"), c["action"].update(min_depth=-5.0)),
            "action.min_depth = -5",
            "fills per step, at most 50",
        ),
        case("missing-market", lambda c: c.pop("market"), "market", "Field required"),
        case("empty-reward", lambda c: c.update(reward=[]), "reward", "at least 1"),
    ],
)
def test_env_config_errors_name_field_value_and_allowed(edit, fragments: list[str]) -> None:
    msg = env_error(edited(edit))
    assert msg.startswith("config: ")
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


def test_every_error_is_reported_at_once() -> None:
    msg = env_error(edited(lambda c: (c["market"].update(sigma=-1.0), c["action"].update(max_depth=0))))
    assert "market.sigma = -1.0" in msg and "action.max_depth = 0" in msg


def test_yaml_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(edited(lambda c: c["market"].update(sigma=-2.0))))
    msg = env_error(path)
    assert msg.startswith(f"{path}: ") and "market.sigma = -2.0" in msg
    assert env_error(str(path)) == msg


def test_yaml_file_name_becomes_the_config_name(tmp_path: Path) -> None:
    path = tmp_path / "my_market.yaml"
    path.write_text(yaml.safe_dump(BASE))
    assert load_env_config(path).name == "my_market"


def test_unknown_preset_lists_available_presets() -> None:
    msg = env_error("as2009")
    assert "'as2009'" in msg and "unknown" in msg
    available = list_presets("envs")
    assert available
    for name in available:
        assert name in msg


def test_missing_yaml_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "market.yaml"
    msg = env_error(missing)
    assert str(missing) in msg and "does not exist" in msg


def test_wrong_config_type() -> None:
    msg = env_error(42)
    assert "config = 42" in msg and "preset name, a YAML path, or a dict" in msg


def test_non_mapping_yaml_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="expected a YAML mapping"):
        load_env_config(path)


# -------------------------------------------------------------------------------------- agents
def test_unknown_agent_kind_lists_known_kinds() -> None:
    with pytest.raises(ConfigError) as err:
        load_agent_config({"kind": "mystery"})
    msg = str(err.value)
    assert "kind = 'mystery'" in msg
    for kind in ("avellaneda_stoikov", "gueant", "cartea_jaimungal", "fixed_spread", "random"):
        assert kind in msg


@pytest.mark.parametrize(
    ("agent", "fragments"),
    [
        (
            {"kind": "avellaneda_stoikov", "params": {"gamma": -0.1}},
            ["params.gamma = -0.1", "greater than 0", "'avellaneda_stoikov'", "gamma, symmetric"],
        ),
        ({"kind": "avellaneda_stoikov", "params": {}}, ["params.gamma", "Field required"]),
        (
            {"kind": "fixed_spread", "params": {"half_spread": 0.5, "width": 1}},
            ["params.width = 1", "Extra inputs", "half_spread"],
        ),
        (
            {"kind": "fixed_spread", "params": {"half_spread": -1.0}},
            ["params.half_spread = -1.0", "greater than or equal to 0"],
        ),
        (
            {"kind": "gueant", "params": {"gamma": 0.1, "inventory_bound": 0}},
            ["params.inventory_bound = 0", "greater than 0"],
        ),
        (
            {"kind": "cartea_jaimungal", "params": {"phi": float("nan")}},
            ["params.phi = nan", "finite number"],
        ),
        ({"kind": "random", "params": {"seed": -3}}, ["params.seed = -3", "greater than or equal to 0"]),
        ({"kind": "random", "colour": "red"}, ["colour = 'red'", "allowed: name, description, kind, params"]),
    ],
)
def test_bad_agent_params_name_the_field(agent: dict, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_agent_config(agent)
    for fragment in fragments:
        assert fragment in str(err.value), (fragment, str(err.value))


def test_unknown_agent_preset_lists_available() -> None:
    with pytest.raises(ConfigError) as err:
        load_agent_config("no_such_agent")
    for name in list_presets("agents"):
        assert name in str(err.value)


# ------------------------------------------------------------------------------------- presets
@pytest.mark.parametrize("name", sorted(list_presets("envs")))
def test_env_presets_load(name: str) -> None:
    cfg = load_env_config(name)
    assert cfg.name == name
    assert cfg.description  # presets document what they set up
    assert load_env_config(list_presets("envs")[name]) == cfg  # by path too
    assert type(cfg).model_validate(read_yaml(list_presets("envs")[name]) | {"name": name}) == cfg


@pytest.mark.parametrize("name", sorted(list_presets("agents")) or ["(none)"])
def test_agent_presets_load(name: str) -> None:
    if name == "(none)":
        pytest.skip("no agent presets yet")
    cfg = load_agent_config(name)
    assert cfg.name == name and cfg.description
    if isinstance(cfg, TrainingConfig):  # a training preset: RL algorithm, networks, hyperparameters
        assert cfg.kind in ("ppo", "sac")
    else:
        assert isinstance(cfg, AgentConfig)
        cfg.typed_params  # noqa: B018  (the parameters validate against the kind's model)


def test_the_two_reference_presets_exist() -> None:
    assert {"as2008", "cj2015"} <= set(list_presets("envs"))


# ------------------------------------------------------------------- one strict base, finite values
def at(data: dict, path: tuple, value) -> dict:
    """A copy of ``data`` with the item at ``path`` set to ``value``."""
    out = copy.deepcopy(data)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def test_every_config_model_subclasses_the_one_strict_base() -> None:
    from pydantic import BaseModel

    import lobgym.tools.bench
    import lobgym.tools.study  # noqa: F401  (defines the study models)
    from lobgym.config_base import Strict

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    models = [m for m in subclasses(BaseModel) if m.__module__.startswith("lobgym.")]
    assert {"RewardTermConfig", "CSTFlow", "RunningInventoryParams", "StudySpec", "BenchSpec",
            "LRControlConfig", "AvellanedaStoikovParams"} <= {m.__name__ for m in models}
    outside = [f"{m.__module__}.{m.__name__}" for m in models if not issubclass(m, Strict)]
    assert outside == []


@pytest.mark.parametrize(
    ("name", "path", "value", "fragment"),
    [
        ("cj2015", ("reward", 1, "params", "phi"), float("inf"), "reward[1]: params.phi = inf"),
        ("cj2015", ("reward", 2, "params", "alpha"), float("nan"), "params.alpha = nan"),
        ("cst2010", ("market", "flow", "lam", 2), float("inf"), "market.flow.lam[2] = inf"),
        ("hawkes", ("market", "informed", "kappa"), float("nan"), "market.informed.kappa = nan"),
    ],
)
def test_inf_and_nan_are_refused_in_every_model(name, path, value, fragment) -> None:
    msg = env_error(at(preset(name), path, value))
    assert fragment in msg and "finite number" in msg, msg


def test_inf_and_nan_are_refused_inside_free_form_values() -> None:
    from typing import Any

    from lobgym.config_base import Strict

    class FreeForm(Strict):
        extra: dict[str, Any] = {}

    assert FreeForm(extra={"a": [1.0, {"b": 2}]}).extra["a"][1] == {"b": 2}
    with pytest.raises(ValueError, match=r"extra.a\[1\].b = inf: Input should be a finite number"):
        FreeForm(extra={"a": [1.0, {"b": float("inf")}]})
    with pytest.raises(ConfigError, match=r"hyperparams.gamma = nan: Input should be a finite number$"):
        load_agent_config({"kind": "ppo", "hyperparams": {"gamma": float("nan")}})
    with pytest.raises(ConfigError, match=r"optimizer.kwargs.betas\[1\] = inf: Input should be a finite number$"):
        load_agent_config({"kind": "ppo", "optimizer": {"kwargs": {"betas": [0.9, float("inf")]}}})


# ----------------------------------------------------------------------------- magnitude bounds
@pytest.mark.parametrize(
    ("name", "path", "value", "fragment"),
    [
        ("as2008", ("market", "sigma"), 1e300, "market.sigma = 1e+300: Input should be less than or equal to"),
        ("as2008", ("market", "sigma"), 1e-300, "market.sigma = 1e-300: allowed: 0 (no diffusion) or at least"),
        ("as2008", ("market", "tick_size"), 1e300, "market.tick_size = 1e+300"),
        ("as2008", ("market", "tick_size"), 500.0, "tick_size = 500: must be at most s0 = 100"),
        ("as2008", ("market", "s0"), 1e308, "market.s0 = 1e+308"),
        ("as2008", ("observation", "inventory_scale"), 1e-300, "observation.inventory_scale = 1e-300"),
        ("as2008", ("market", "fill", "k"), 1e300, "market.fill.k = 1e+300"),
        ("as2008", ("action", "max_depth"), 1e300, "action.max_depth = 1e+300"),
        ("as2008", ("market", "dt"), 1e-300, "market.dt = 1e-300"),
        ("cj2015", ("reward", 0, "weight"), 1e308, "reward[0].weight = 1e+308"),
        ("cj2015", ("reward", 1, "params", "phi"), 1e300, "params.phi = 1e+300"),
        ("cj2015", ("market", "inventory", "initial"), [-10**30, 0], "initial = (-1000000000000000000000000000000, 0)"),
        ("cst2010", ("market", "tick_size"), 1e-300, "s0 / tick_size = 100.0 / 1e-300"),
        ("cst2010", ("observation", "depth_scale"), 1e-300, "observation.depth_scale = 1e-300"),
        ("cst2010", ("observation", "return_scale"), 1e-300, "observation.return_scale = 1e-300"),
        ("cst2010", ("market", "flow", "alpha"), 1e300, "market.flow.alpha = 1e+300"),
        ("cst2010", ("action", "max_size"), 10**9, "action.max_size = 1000000000"),
        ("hawkes", ("market", "informed", "jump_ticks"), 1e300, "market.informed.jump_ticks = 1e+300"),
    ],
)
def test_magnitudes_that_overflow_are_refused(name, path, value, fragment) -> None:
    msg = env_error(at(preset(name), path, value))
    assert fragment in msg, msg


def test_products_that_overflow_are_refused() -> None:
    jumps = at(preset("as2008"), ("market", "jumps"), {"rate": 1e3, "mean": 1e8, "std": 1e8})
    msg = env_error(jumps)
    assert "jumps.rate T (|jumps.mean| + jumps.std) = 2e+11" in msg and "at most 1e+09" in msg, msg
    msg = env_error(at(preset("as2008"), ("market", "jumps"), {"rate": 1e5, "mean": 0.0, "std": 1.0}))
    assert "jumps.rate * dt = 500: at most 50 expected jumps per step" in msg, msg


def _finite_episode(cfg, steps: int = 200) -> None:
    import gymnasium as gym
    import numpy as np

    import lobgym  # noqa: F401

    env = gym.make("lobgym/MarketMaking-v0", config=cfg)
    obs, _ = env.reset(seed=3)
    env.action_space.seed(3)
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert np.isfinite(reward) and np.isfinite(obs).all() and env.observation_space.contains(obs), (reward, obs)
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()


def test_reduced_form_env_at_the_bounds_steps_finitely() -> None:
    cfg = {
        "market": {"s0": 1e9, "sigma": 1e9, "horizon": 1.0, "dt": 0.005, "tick_size": 1e-9,
                   "fill": {"rule": "poisson", "A": 1e4, "k": 1e-6}, "fees": {"per_unit": -1e9, "rate": 0.99},
                   "inventory": {"initial": [-10**6, 10**6]}},
        "action": {"max_depth": 1e9, "sizes": {"max_size": 10**6}},
        "observation": {"features": ["inventory", "time_left", "mid_change", "bid_filled", "ask_filled"],
                        "inventory_scale": 1e-3},
        "reward": [{"term": "pnl", "weight": 1e6}, {"term": "running_inventory_penalty", "weight": -1e6,
                                                     "params": {"phi": 1e6}},
                   {"term": "terminal_liquidation", "weight": 1e6, "params": {"cost_per_unit": 1e9, "impact": 1e6}},
                   {"term": "cara_utility", "weight": 1e6, "params": {"gamma": 1e6}},
                   {"term": "dampened_pnl", "weight": 1e6, "params": {"eta": 1e6, "asymmetric": False}},
                   {"term": "differential_sharpe", "weight": 1e6}, {"term": "cvar_penalty", "weight": 1e6}],
    }
    _finite_episode(load_env_config(cfg))
    sigma0 = at(cfg, ("market", "sigma"), 1e-9)
    sigma0["market"] |= {"s0": 100.0, "drift": 1e8, "jumps": {"rate": 1e2, "mean": 1e4, "std": 1e4},
                         "mean_reversion": {"kappa": 1e6, "theta": -1e9},
                         "fill": {"rule": "paper", "A": 1e12, "k": 1e6}}
    _finite_episode(load_env_config(sigma0))


def test_book_env_at_the_bounds_steps_finitely() -> None:
    cfg = preset("hawkes")
    cfg["market"] |= {"s0": 1e9, "tick_size": 1e-3, "fees": {"maker": {"per_unit": -1e9, "rate": -0.99},
                                                             "taker": {"per_unit": 1e9, "rate": 0.99}}}
    cfg["market"]["informed"] = {"rate": 10.0, "jump_ticks": 1e6, "kappa": 1e6}
    cfg["market"]["inventory"] = {"initial": [-10**6, 10**6]}
    cfg["action"] |= {"max_size": 10_000, "market_order": 10_000}
    cfg["observation"] |= {"depth_scale": 1e-3, "return_scale": 1e-3, "inventory_scale": 1e-3}
    cfg["reward"] = [{"term": "pnl", "weight": 1e6}, {"term": "fees", "weight": 1e6},
                     {"term": "running_inventory_penalty", "weight": 1e6, "params": {"phi": 1e6}},
                     {"term": "adverse_selection", "weight": 1e6, "params": {"horizon": 10_000}}]
    _finite_episode(load_env_config(cfg), steps=310)


def test_agent_params_are_bounded() -> None:
    for agent, fragment in (({"kind": "avellaneda_stoikov", "params": {"gamma": 1e300}}, "params.gamma = 1e+300"),
                            ({"kind": "cartea_jaimungal", "params": {"inventory_bound": 10**6}},
                             "params.inventory_bound = 1000000"),
                            ({"kind": "fixed_spread", "params": {"half_spread": 1e300}}, "params.half_spread")):
        with pytest.raises(ConfigError, match=re.escape(fragment)):
            load_agent_config(agent)


# ------------------------------------------------------------------------ copies are validated
def test_model_copy_with_an_update_is_validated() -> None:
    cfg = load_env_config("as2008")
    with pytest.raises(ConfigError, match=r"ReducedFormMarket.model_copy: sigma = -1.0: .*greater than or equal to 0"):
        cfg.market.model_copy(update={"sigma": -1.0})
    with pytest.raises(ConfigError, match=r"horizon / dt = 1.0 / 0.003"):
        cfg.market.model_copy(update={"dt": 0.003})
    with pytest.raises(ConfigError, match=r"colour = 'red': Extra inputs"):
        cfg.model_copy(update={"colour": "red"})
    copied = cfg.model_copy(update={"market": cfg.market.model_copy(update={"sigma": 3.0})})
    assert copied.market.sigma == 3.0 and copied.market.fill == cfg.market.fill and cfg.market.sigma == 2.0
    assert cfg.model_copy() == cfg and cfg.model_copy(deep=True) == cfg
    with pytest.raises(Exception, match="frozen"):
        cfg.market.sigma = -1.0  # type: ignore[misc]


def test_study_learning_rate_copies_stay_valid() -> None:
    from lobgym.config import LRControlConfig
    from lobgym.tools.study import with_initial_lr

    fixed = with_initial_lr(load_training_config("ppo"), 1e-3)
    assert fixed.learning_rate == 1e-3
    controlled = with_initial_lr(load_training_config("ppo_adaptive_lr"), 2e-3)
    assert isinstance(controlled.learning_rate, LRControlConfig) and controlled.learning_rate.base.lr == 2e-3
    with pytest.raises(ConfigError, match="learning_rate"):
        with_initial_lr(load_training_config("ppo"), float("inf"))


# ------------------------------------------------------------------------------- bounded work
@pytest.mark.parametrize(
    ("name", "path", "value", "fragments"),
    [
        ("cst2010", ("market", "flow", "lam", 3), 1e7, ["market.flow.lam[3] = 10000000.0: Input should be less"]),
        ("cst2010", ("market", "flow", "lam", 3), 1e5,
         ["(largest: market.flow.lam[3] -> 4e+05/s)", "limits.max_events_per_episode = 10,000,000"]),
        ("hawkes", ("market", "informed", "rate"), 1e7, ["market.informed.rate = 10000000.0: Input should be less"]),
        ("hawkes", ("market", "informed", "rate"), 1e5, ["(largest: market.informed.rate -> 1e+05/s"]),
        ("cst2010", ("market", "warmup"), 1e7, ["market.warmup = 1e+07 + market.horizon = 300"]),
        ("queue_reactive", ("market", "flow", "market"), 1e6, ["(largest: market.flow.market -> 2e+06/s)"]),
        ("hawkes", ("market", "flow", "baseline"), [6.1, 6.1, 1e5, 0.66, 1.3, 1.3],
         ["(largest: market.flow.baseline[2]"]),
        ("hawkes", ("market", "flow", "beta"), 3.0001, ["market.flow.alpha / flow.beta has spectral radius 0.999967"]),
        ("hawkes", ("market", "flow", "beta"), 3.01, ["spectral radius 0.996678, each event exciting on average ~301"]),
        ("cst2010", ("market", "flow", "levels"), 1000,
         ["flow.levels: background orders arrive up to 1000 ticks", "at most levels // 2 = 100"]),
        ("queue_reactive", ("market", "flow"), {"model": "queue_reactive", "insert": [1.0] * 101,
                                                "cancel": [1.0] * 101},
         ["flow.insert: background orders arrive up to 101 ticks", "levels // 2 = 100"]),
        ("as2008", ("market", "horizon"), 1e4,
         ["market.horizon / market.dt = 10000 / 0.005 = 2,000,000 steps per episode",
          "limits.max_steps_per_episode = 1,000,000"]),
    ],
)
def test_configs_above_the_work_ceiling_are_refused(name, path, value, fragments) -> None:
    msg = env_error(at(preset(name), path, value))
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


def test_work_ceiling_can_be_raised_on_purpose() -> None:
    heavy = at(preset("cst2010"), ("market", "warmup"), 3e5)  # ~1.2e7 expected events
    assert "limits.max_events_per_episode" in env_error(heavy)
    cfg = load_env_config(heavy | {"limits": {"max_events_per_episode": 20_000_000}})
    assert 1e7 < cfg.market.expected_events() < 2e7
    long = at(preset("as2008"), ("market", "horizon"), 1e4) | {"limits": {"max_steps_per_episode": 2_000_000}}
    assert load_env_config(long).market.n_steps == 2_000_000
    assert "limits.max_events_per_episode = 0" in env_error(heavy | {"limits": {"max_events_per_episode": 0}})
    assert "limits.colour" in env_error(heavy | {"limits": {"colour": 1}})


def test_shipped_presets_are_far_below_the_ceilings() -> None:
    from lobgym.config import MAX_EVENTS_PER_EPISODE, MAX_STEPS_PER_EPISODE, BookEnvConfig

    for name in list_presets("envs"):
        cfg = load_env_config(name)
        assert cfg.market.n_steps * 100 <= MAX_STEPS_PER_EPISODE
        if isinstance(cfg, BookEnvConfig):
            assert cfg.market.expected_events() * 100 <= MAX_EVENTS_PER_EPISODE


@pytest.mark.slow
def test_expected_events_bound_what_the_book_engine_does() -> None:
    """The estimate the ceiling is checked against is an upper estimate of the events one episode applies."""
    from lobgym.book_simulation import BookSimulation

    for name in ("cst2010", "hawkes", "queue_reactive"):
        cfg = load_env_config(name)
        sim = BookSimulation(cfg, 2)
        sim.reset()
        for _ in range(cfg.market.n_steps):
            sim.step(False)
        applied = sim.state.flow.events.sum(axis=1)
        assert (applied <= cfg.market.expected_events()).all() and (applied >= 0.5 * cfg.market.expected_events()).all()


# --------------------------------------------------------------------------------------- files
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcde", "bcdef", strict=True))


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        pytest.param("market:\n  kind: book\n  s0: [1, 2\n", ":4: invalid YAML: while parsing a flow sequence",
                     id="malformed"),
        pytest.param("market: !!python/object/apply:os.system [echo hi]\n", ":1: invalid YAML: could not determine "
                     "a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'", id="python-tag"),
        pytest.param(BOMB, ": invalid YAML: anchors and aliases expand to", id="yaml-bomb"),
        pytest.param("a: &x [1, *x]\n", ":1: invalid YAML: alias *x refers to a node that contains it",
                     id="recursive-alias"),
        pytest.param("a: " + "[" * 5000 + "]" * 5000 + "\n", ":1: invalid YAML: nested more than 32 levels",
                     id="deep-flow"),
        pytest.param("".join("  " * i + f"k{i}:\n" for i in range(100)), ":32: invalid YAML: nested more than 32",
                     id="deep-block"),
        pytest.param(b"description: caf\xe9\n", ":1: not UTF-8 text (byte 0xe9)", id="latin-1"),
        pytest.param(b"a: 1\nb: x\x00y\n", ":2: invalid YAML: unacceptable character #x0000", id="nul-byte"),
        pytest.param("- 1\n- 2\n", ": expected a YAML mapping at the top level, got list", id="list"),
        pytest.param("", ": expected a YAML mapping at the top level, got an empty file", id="empty"),
        pytest.param("market:\n  sigma: 1\n  sigma: 2\n", ":3: invalid YAML: duplicate key 'sigma'", id="duplicate"),
        pytest.param("description: '" + "x" * 1_100_000 + "'\n", ": 1,100,016 bytes; allowed: at most 1,000,000",
                     id="huge"),
    ],
)
def test_bad_files_give_one_line_naming_the_file(tmp_path: Path, content, fragment) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    msg = env_error(path)
    assert msg.startswith(f"{path}:") and fragment in msg and "\n" not in msg, msg


def test_bad_paths_and_names_give_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    assert env_error(folder) == f"{folder}: is a directory; allowed: a YAML file"
    missing = tmp_path / "missing.yaml"
    assert env_error(missing).startswith(f"{missing}: does not exist (allowed: an existing .yaml file, or a preset")
    assert env_error("").startswith("envs preset = '': empty; allowed: a preset name (as2008")
    assert env_error("  ").startswith("envs preset = '  ': empty")
    for name in ("../envs/as2008", "/etc/passwd", "as2008;rm", "envs/as2008"):
        assert f"envs preset = {name!r}: not a preset name" in env_error(name)
    with pytest.raises(ConfigError, match="agents preset = '': empty"):
        load_agent_config("")


def test_readme_limits_example_raises_the_ceilings() -> None:
    from lobgym.presets import load_yaml

    readme = (ROOT / "README.md").read_text()
    (block,) = [b for b in readme.split("```yaml\n")[1:] if b.startswith("limits:")]
    limits = load_yaml(block.split("```")[0])["limits"]
    heavy = at(preset("cst2010"), ("market", "warmup"), 1e6)  # ~4e7 expected events
    assert "limits.max_events_per_episode = 10,000,000" in env_error(heavy)
    assert load_env_config(heavy | {"limits": limits}).limits.max_events_per_episode == 100_000_000


def test_training_hyperparameters_written_as_text_are_refused_unless_sb3_takes_text() -> None:
    from lobgym.config import load_training_config

    with pytest.raises(ConfigError, match=r"hyperparams.gamma = 'inf': allowed: a number, not text"):
        load_training_config({"kind": "ppo", "hyperparams": {"gamma": "inf"}})
    assert load_training_config({"kind": "sac", "hyperparams": {"ent_coef": "auto_0.1"}}).hyperparams["ent_coef"] == (
        "auto_0.1")
