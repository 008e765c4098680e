"""The step-outcome contract of reward terms (lobgym.rewards.STEP_FIELDS): every market kind provides
every field, every term declares what it reads and reads nothing else, a market lacking a field is
refused by name before compiling, and every term runs on every kind."""

from __future__ import annotations

import ast
import inspect
import math
from typing import NamedTuple

import numpy as np
import pytest

from lobgym import market_kinds, rewards
from lobgym.rewards import COMMON_READS, STEP_FIELDS, TERMS, check_reward_fields, contract_fields

STRUCTS = ("out", "state", "stats", "p")


@pytest.mark.parametrize("kind", list(market_kinds.KINDS))
def test_every_kind_provides_every_contract_field(kind):
    sim = market_kinds.get(kind).load("simulation")
    missing = sorted(set(STEP_FIELDS) - contract_fields(sim.step_structs))
    assert missing == [], f"market kind {kind!r} lacks {missing}"


def test_every_term_reads_only_contract_fields():
    for name, term in TERMS.items():
        assert set(term.reads) <= set(STEP_FIELDS), name
    assert set(COMMON_READS) <= set(STEP_FIELDS)


def _struct_reads(node: ast.AST, aliases: dict[str, set[str]]) -> set[str]:
    """``"<struct>.<field>"`` read anywhere under ``node``, through the preamble's local aliases."""
    found = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in STRUCTS:
            found.add(f"{n.value.id}.{n.attr}")
        elif isinstance(n, ast.Name) and n.id in aliases:
            found |= aliases[n.id]
    return found


def _branch_reads() -> tuple[dict[str, set[str]], set[str]]:
    """Per term code name, the fields its branch of ``_term_value`` reads; and the preamble's reads."""
    fn = ast.parse(inspect.getsource(rewards._term_value)).body[0]
    aliases: dict[str, set[str]] = {}
    branches: dict[str, set[str]] = {}
    preamble: set[str] = set()
    body = fn.body[1:] if isinstance(fn.body[0], ast.Expr) else fn.body  # skip a docstring
    rest = []
    for stmt in body:
        if isinstance(stmt, ast.Assign) and not branches and len(stmt.targets) == 1 and isinstance(
                stmt.targets[0], ast.Name):
            aliases[stmt.targets[0].id] = _struct_reads(stmt.value, aliases)
            preamble |= aliases[stmt.targets[0].id]
        elif (isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Compare)
              and isinstance(stmt.test.left, ast.Name) and stmt.test.left.id == "code"):
            branches[stmt.test.comparators[0].id] = set().union(*(_struct_reads(s, aliases) for s in stmt.body))
        else:
            rest.append(stmt)
    # the code falling through every test (the last term) runs the statements after the branches
    left = [n for n in TERMS if n.upper() not in branches]
    assert len(left) == 1, left
    branches[left[0].upper()] = set().union(*(_struct_reads(s, aliases) for s in rest))
    assert {getattr(rewards, c) for c in branches} == {t.code for t in TERMS.values()}
    return branches, preamble


def test_each_terms_declared_reads_are_what_its_formula_reads():
    branches, preamble = _branch_reads()
    assert preamble == set(COMMON_READS)
    for name, term in TERMS.items():
        read = branches[name.upper()]
        assert read == set(term.reads), f"term {name!r}: declare reads={sorted(read)}"


def test_the_reads_check_finds_an_undeclared_read():
    src = "def f(code, out, state):\n    q = state.inventory[0]\n    if code == PNL:\n        return out.nope[0] + q\n"
    fn = ast.parse(src).body[0]
    aliases = {"q": _struct_reads(fn.body[0].value, {})}
    assert _struct_reads(fn.body[1], aliases) == {"out.nope", "state.inventory"}


def test_a_market_lacking_a_field_is_refused_naming_the_term_and_field():
    class Outcome(NamedTuple):  # a market whose step outcome has no spread capture
        pnl: np.ndarray
        fee: np.ndarray
        done: np.ndarray

    class State(NamedTuple):
        inventory: np.ndarray

    provided = contract_fields({"out": Outcome, "state": State})
    check_reward_fields(["pnl", "fees"], provided, "toy")  # reads only what it has
    with pytest.raises(ValueError, match=r"reward\[1\].term = 'spread_captured' reads out.spread_captured "
                                         r"\(sum over this step's fills.*\), which the toy market's step does not"):
        check_reward_fields(["pnl", "spread_captured"], provided, "toy")


ALL_TERMS = [
    {"term": "pnl"}, {"term": "fees"},
    {"term": "running_inventory_penalty", "params": {"phi": 0.01}},
    {"term": "terminal_inventory_penalty", "params": {"alpha": 0.1}},
    {"term": "terminal_liquidation", "params": {"cost_per_unit": 0.01, "impact": 0.001}},
    {"term": "dampened_pnl", "params": {"eta": 0.5}},
    {"term": "cara_utility", "params": {"gamma": 0.1}},
    {"term": "differential_sharpe", "params": {"eta": 0.1}},
    {"term": "cvar_penalty", "params": {"alpha": 0.2}},
    {"term": "spread_captured"},
    {"term": "adverse_selection", "params": {"horizon": 2}},
]


@pytest.mark.parametrize("preset", ["as2008", "cst2010"])
def test_every_term_compiles_and_runs_on_every_kind(preset):
    from lobgym.config import load_env_config
    from lobgym.env import make_simulation
    from lobgym.presets import list_presets, read_yaml

    assert {t["term"] for t in ALL_TERMS} == set(TERMS)
    data = read_yaml(list_presets("envs")[preset])
    m = data["market"]
    m["horizon"] = 8 * m["dt"]
    if m.get("kind") == "book":
        m.update({"warmup": 10 * m["dt"], "levels": 64, "max_orders": 256})
    data["reward"] = ALL_TERMS
    cfg = load_env_config(data)
    sim = make_simulation(cfg, 3, parallel=False)
    sim.seed(np.arange(3, dtype=np.uint64))
    sim.reset()
    rng = np.random.default_rng(0)
    for _ in range(8):
        sim.actions[...] = rng.uniform(-1, 1, sim.actions.shape)
        b = sim.step(auto_reset=False)
        assert np.isfinite(b.terms).all() and np.allclose(b.terms.sum(axis=1), b.rewards, rtol=1e-12, atol=1e-12)
    assert b.dones.all()
    cara = [t["term"] for t in ALL_TERMS].index("cara_utility")
    assert all(v < 0 and math.isfinite(v) for v in b.terms[:, cara])  # paid at the horizon
