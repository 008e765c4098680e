"""The one-way dependency rule of DESIGN.md, checked on the source with ``ast`` (no imports run).

``cli/study -> agents -> env -> rewards/spaces -> market``: every module of ``src/lobgym`` sits in a
layer and may import only lower layers (and its own package); the engine (``lobgym.market``)
imports numpy, numba and the standard library only; the test oracle ``market/reduced_form/reference.py`` uses no
numba and no kernel, and nothing in the package imports it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lobgym"

#: Layer of each part of the package: a module may import the lobgym modules of strictly lower
#: layers, and its own part (``market`` -> ``market``, ``agents`` -> ``agents``). ``__init__`` is the
#: package facade ``lobgym`` (it imports env and, lazily, vec_env; agents and tools may use it).
LAYERS: dict[str, int] = {
    "market": 0,
    "config_base": 0,  # pydantic only: the strict base every config model subclasses
    "market_kinds": 1,  # stdlib: market.kind -> its config, simulation, baselines (named, imported on use)
    "rewards": 1,
    "spaces": 1,
    "book_spaces": 1,
    "flow_config": 1,
    "metrics": 1,
    "presets": 1,
    "io": 1,
    "provenance": 1,
    "progress": 1,
    "compile_notice": 1,
    "stats": 1,
    "curriculum": 1,  # pure python: reward-weight schedules over training progress
    "portable_math": 1,  # stdlib: torch's CPU math pinned to processor-independent paths
    "state_files": 1,  # numpy + json: run state in files that do not execute
    "folders": 1,  # stdlib: one writer per run / study folder, leftovers of interrupted writes
    "config": 2,
    "task_suite": 3,  # the tasks' definitions (env presets, seed blocks, references), below training
    "simulation_base": 3,  # the frame both market kinds' simulations extend
    "simulation": 4,  # the reduced-form market's simulation
    "book_simulation": 4,  # the order book's: neither simulation imports the other
    "env": 5,
    "vec_env": 6,
    "gym_vector": 6,  # the Gymnasium VectorEnv over the same simulation (no SB3, no torch)
    "evaluation": 6,  # common-random-number evaluation, stepping the simulation (no SB3, no torch)
    "__init__": 7,
    "agents": 8,
    "tasks": 9,  # the task suite: presets, protocols, references and normalised scores over evaluation
    "tools": 10,  # bench, study, report, validation: tools over the product (import agents, never imported)
    "cli": 11,
    "__main__": 12,
}

#: Third-party packages the engine may use; everything else must be in the standard library.
ENGINE_THIRD_PARTY = {"numpy", "numba"}
#: Engine modules that hold compiled kernels or numba options: the oracle must not use them.
KERNEL_MODULES = {"lobgym.market._jit", "lobgym.market.rng", "lobgym.market.reduced_form.model",
                  "lobgym.market.reduced_form.step", "lobgym.market.book.lob", "lobgym.market.book.flow",
                  "lobgym.market.book.flow.common", "lobgym.market.book.flow.cst", "lobgym.market.book.flow.hawkes",
                  "lobgym.market.book.flow.queue_reactive", "lobgym.market.book.flow.informed",
                  "lobgym.market.book.flow.dispatch", "lobgym.market.book.step"}
#: The engine's market kinds are its sub-packages (``market/reduced_form/``, ``market/book/``): a kind
#: imports the shared engine (``_jit``, ``rng``, ``constants``) and itself, never another kind, and the
#: shared engine imports no kind.
ENGINE_KINDS = {p.name for p in (SRC / "market").iterdir() if (p / "__init__.py").is_file()}
#: The slow test oracles: they use no numba and no kernel, and nothing in the package uses them.
ORACLES = {"lobgym.market.reduced_form.reference", "lobgym.market.book.reference"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_submodule(dotted: str) -> bool:
    """Whether ``lobgym.x.y`` names a module or package in the source tree."""
    rel = Path(*dotted.split(".")[1:]) if "." in dotted else Path()
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def imports_of(source: str, module: str, is_package: bool = False) -> set[str]:
    """Absolute names of every module imported anywhere in ``source`` (also inside functions).

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a lobgym module in the
    source tree, else as importing ``pkg``; relative imports are resolved against ``module``.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if target.split(".")[0] == "lobgym" and _is_submodule(sub) else target)
    return found


def _layer(module: str) -> str:
    """``lobgym.market.reduced_form.step`` -> ``market``; ``lobgym`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _engine_kind(module: str) -> str | None:
    """``lobgym.market.book.flow.cst`` -> ``book``; the shared engine (``lobgym.market.rng``) -> None."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "market" and parts[2] in ENGINE_KINDS else None


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every way ``source`` (the text of lobgym module ``module``) breaks the dependency rules."""
    errors = []
    own = _layer(module)
    if own not in LAYERS:
        return [f"{module}: part {own!r} has no layer in LAYERS (add it, below what may import it)"]
    for imp in sorted(imports_of(source, module, is_package)):
        root = imp.split(".")[0]
        engine_ok = root in ENGINE_THIRD_PARTY | {"lobgym", "__future__"} or root in sys.stdlib_module_names
        if own == "market" and not engine_ok:
            errors.append(f"{module} imports {imp}: the engine may import only numpy, numba and the stdlib")
        if module in ORACLES and (root == "numba" or imp in KERNEL_MODULES):
            errors.append(f"{module} imports {imp}: the oracle must not use numba or the engine's kernels")
        if imp in ORACLES and module not in ORACLES:
            errors.append(f"{module} imports {imp}: the test oracle is never used by the package")
        if root != "lobgym":
            continue
        target = _layer(imp)
        if own == "market" == target and _engine_kind(imp) not in (None, _engine_kind(module)):
            errors.append(f"{module} imports {imp}: a market kind's engine imports the shared engine and "
                          "itself, never another kind")
        if target == own:
            continue
        if target not in LAYERS:
            errors.append(f"{module} imports {imp}: part {target!r} has no layer in LAYERS")
        elif LAYERS[target] >= LAYERS[own]:
            errors.append(f"{module} (layer {own}, {LAYERS[own]}) imports {imp} (layer {target}, "
                          f"{LAYERS[target]}): dependencies point down only")
    return errors


def _package_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_package_source_found():
    files = {_module_name(p) for p in _package_files()}
    assert {"lobgym.market.reduced_form.step", "lobgym.market.reduced_form.reference", "lobgym.market.book.lob",
            "lobgym.env", "lobgym.config"} <= files


@pytest.mark.parametrize("path", _package_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_module_respects_dependency_rules(path):
    errors = violations(path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py")
    assert not errors, "\n".join(errors)


# The checker itself must be able to fail: synthetic sources that break each rule.
BAD = [
    ("lobgym.market.reduced_form.model", "import gymnasium\n", "engine may import only"),
    ("lobgym.market.reduced_form.model", "from torch import nn\n", "engine may import only"),
    ("lobgym.market.reduced_form.step", "def f():\n    import yaml\n", "engine may import only"),
    ("lobgym.market.reduced_form.step", "from stable_baselines3 import PPO\n", "engine may import only"),
    ("lobgym.market.reduced_form.state", "import pydantic\n", "engine may import only"),
    ("lobgym.market.reduced_form.step", "from lobgym.config import EnvConfig\n", "dependencies point down"),
    ("lobgym.market.reduced_form.step", "from ...rewards import TERMS\n", "dependencies point down"),
    ("lobgym.market.reduced_form.step", "from lobgym import spaces\n", "dependencies point down"),
    ("lobgym.market.reduced_form.reference", "import numba\n", "oracle must not"),
    ("lobgym.market.reduced_form.reference", "from lobgym.market.rng import uniform\n", "oracle must not"),
    ("lobgym.market.reduced_form.reference", "from . import step\n", "oracle must not"),
    ("lobgym.simulation", "from lobgym.market.reduced_form.reference import Ref\n", "never used by the package"),
    ("lobgym.market.book.step", "from lobgym.market.reduced_form.model import fill_events\n", "never another kind"),
    ("lobgym.market.rng", "from lobgym.market.book.lob import NO_ORDER\n", "never another kind"),
    ("lobgym.rewards", "from lobgym.spaces import FEATURES\n", "dependencies point down"),
    ("lobgym.metrics", "from lobgym.config import EnvConfig\n", "dependencies point down"),
    ("lobgym.spaces", "import lobgym.env\n", "dependencies point down"),
    ("lobgym.config", "from lobgym.simulation import Simulation\n", "dependencies point down"),
    ("lobgym.env", "from lobgym.agents import make_agent\n", "dependencies point down"),
    ("lobgym.vec_env", "def f():\n    from lobgym.cli import app\n", "dependencies point down"),
    ("lobgym.simulation", "from .agents.baselines import x\n", "dependencies point down"),
    ("lobgym.simulation", "from lobgym import load_env_config\n", "dependencies point down"),
    ("lobgym.agents.baselines", "from lobgym.cli import app\n", "dependencies point down"),
    ("lobgym.newthing", "import math\n", "has no layer"),
]

GOOD = [
    ("lobgym.market.reduced_form.step", "import math\nimport numba\nimport numpy\nfrom lobgym.market.rng import u"),
    ("lobgym.market.reduced_form.step", "from __future__ import annotations\nfrom .model import f\nfrom .. import rng"),
    ("lobgym.market.reduced_form.reference", "from lobgym.market.constants import B\nfrom .state import X"),
    ("lobgym.market.book.flow.cst", "from lobgym.market.book.lob import add_limit\nfrom ..step import x\n"),
    ("lobgym.rewards", "import pydantic\nfrom lobgym.market._jit import inline\n"),
    ("lobgym.config", "from lobgym import presets\nfrom lobgym.rewards import x\nfrom .spaces import y\n"),
    ("lobgym.env", "import gymnasium\nfrom lobgym.simulation import S\nfrom lobgym.config import c\n"),
    ("lobgym.agents.baselines", "from lobgym.vec_env import make_vec_env\nfrom lobgym.agents import x\n"),
    ("lobgym.tools.bench", "from lobgym import ENV_ID\n"),
    ("lobgym.cli", "def f():\n    from lobgym.agents import make_agent\n"),
]


@pytest.mark.parametrize(("module", "source", "message"), BAD)
def test_checker_rejects(module, source, message):
    errors = violations(source, module)
    assert errors and any(message in e for e in errors), errors


@pytest.mark.parametrize(("module", "source"), GOOD)
def test_checker_accepts(module, source):
    assert violations(source, module) == []


def test_relative_imports_resolve():
    assert imports_of("from ...config import X\n", "lobgym.market.reduced_form.step") == {"lobgym.config"}
    assert imports_of("from . import rng\n", "lobgym.market", is_package=True) == {"lobgym.market.rng"}
    assert imports_of("from .state import A\n", "lobgym.market.reduced_form.step") == {
        "lobgym.market.reduced_form.state"}
