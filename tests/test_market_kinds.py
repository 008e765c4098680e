"""The registry of market kinds (lobgym.market_kinds): every kind resolves, configs and simulations are
built by it, and nothing else in the package dispatches on the config's type."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import pytest

from lobgym import market_kinds, presets
from lobgym.config import ConfigError, load_env_config

SRC = Path(__file__).resolve().parents[1] / "src" / "lobgym"
ENV_MODELS = {"EnvConfig", "BookEnvConfig"}  # a type switch between kinds; accepting a BookMarket is not one


def _presets_by_kind() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in presets.list_presets("envs"):
        out.setdefault(load_env_config(name).market.kind, []).append(name)
    return out


@pytest.mark.parametrize("kind", list(market_kinds.KINDS))
def test_every_field_of_every_kind_resolves(kind):
    k = market_kinds.get(kind)
    market = k.load("config").model_fields["market"].annotation
    assert get_args(market.model_fields["kind"].annotation) == (kind,)  # the model takes exactly this kind
    assert callable(k.load("simulation")) and callable(k.load("bench_rows"))
    builders = k.load("baselines")
    assert builders and all(callable(b) for b in builders.values())
    assert k.default_baselines and k.description


def test_every_shipped_preset_is_built_by_its_kind():
    by_kind = _presets_by_kind()
    assert set(by_kind) == set(market_kinds.KINDS)  # every kind has a shipped preset
    for kind, names in by_kind.items():
        model = market_kinds.get(kind).load("config")
        for name in names:
            cfg = load_env_config(name)
            assert type(cfg) is model and market_kinds.of(cfg).name == kind


def test_the_simulation_of_a_config_is_its_kinds():
    from lobgym.env import make_simulation

    cfg = load_env_config("as2008")
    assert type(make_simulation(cfg, 1, parallel=False)) is market_kinds.of(cfg).load("simulation")


def test_default_baselines_build_on_the_kinds_presets():
    from lobgym.agents import make_agent

    for kind, names in _presets_by_kind().items():
        for agent in market_kinds.get(kind).default_baselines:
            built = []
            for name in names:
                try:
                    built.append(make_agent(agent, name))
                except ConfigError as err:  # only Cartea-Jaimungal may decline: it needs the env's phi
                    assert agent == "cartea_jaimungal" and "phi" in str(err), (agent, name, err)
            assert built, f"default baseline {agent!r} builds on no {kind} preset"


def test_offering_names_the_kinds_whose_baselines_hold_an_agent():
    assert market_kinds.offering("random") == ["reduced_form", "book"]
    assert market_kinds.offering("book_quoter") == ["book"]
    assert market_kinds.offering("avellaneda_stoikov") == ["reduced_form"]
    assert market_kinds.offering("nope") == []


def test_unknown_or_unhashable_kind_is_an_error_naming_the_allowed_kinds():
    base = presets.read_yaml(presets.resolve("envs", "as2008"))
    for bad in ("replay", ["book"]):
        data = {**base, "market": {**base["market"], "kind": bad}}
        with pytest.raises(ConfigError, match=rf"market.kind = {bad!r:s}: unknown market; allowed: "
                                              r"reduced_form, book".replace("[", r"\[").replace("]", r"\]")):
            load_env_config(data)
    with pytest.raises(ValueError, match="market.kind = 'replay': unknown market; allowed: reduced_form, book"):
        market_kinds.get("replay")


def test_a_kind_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="market kind 'book': already registered"):
        market_kinds.register(market_kinds.get("book"))
    assert list(market_kinds.KINDS) == ["reduced_form", "book"]


def _type_dispatch(path: Path, root: Path = SRC) -> list[str]:
    """``isinstance(x, <env config model>)`` calls in ``path``: dispatch the registry owns."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and len(node.args) == 2:
            names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
            if names & ENV_MODELS:
                found.append(f"{path.relative_to(root)}:{node.lineno}: isinstance(..., {ast.unparse(node.args[1])})")
    return found


def test_no_module_dispatches_on_the_env_config_type():
    # config.py may: load_env_config passes a built config through unchanged
    hits = [h for p in sorted(SRC.rglob("*.py")) if p.name != "config.py" for h in _type_dispatch(p)]
    assert hits == [], "dispatch on market.kind through lobgym.market_kinds instead:\n" + "\n".join(hits)


def test_the_dispatch_check_finds_a_type_switch(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("def f(cfg):\n    return 1 if isinstance(cfg, BookEnvConfig) else 2\n")
    assert _type_dispatch(bad, tmp_path) == ["x.py:2: isinstance(..., BookEnvConfig)"]
