"""Config validation: every error names the field path, the offending value and what is allowed."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from lobgym.config import AgentConfig, ConfigError, EnvConfig, TrainingConfig, load_agent_config, load_env_config
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
