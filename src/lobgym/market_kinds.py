"""The registry of market kinds: one place that maps ``market.kind`` to everything built from it.

A market kind is a family of markets with its own engine: ``reduced_form`` (the closed-form markets of
Avellaneda-Stoikov and Cartea-Jaimungal) and ``book`` (the L3 order book). Each entry names, as
``"module:attribute"`` strings resolved on first use (like Gymnasium entry points), its config model,
its simulation class, its analytic baselines, the baselines evaluated next to a trained policy by
default, and the ``lobgym bench`` rows of N envs. Nothing else in the package asks which kind a config
is by its type: it asks :func:`of`. The strings keep this module at the bottom of the layers (stdlib
only), below the config models and simulations it names.

Adding a kind: a folder for its engine and simulation, and one :func:`register` call here (see
``docs/architecture.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any

#: The kind of a config whose ``market`` section gives no ``kind``.
DEFAULT_KIND = "reduced_form"


@dataclass(frozen=True)
class MarketKind:
    """What ``market.kind = name`` builds; the ``"module:attribute"`` fields are resolved by :meth:`load`."""

    name: str
    description: str
    config: str  #: the env config model (pydantic), e.g. ``"lobgym.config:EnvConfig"``
    simulation: str  #: ``cls(cfg, n_envs, parallel=...)``: N envs stepped by one compiled call
    baselines: str  #: ``{agent kind: cls(agent_cfg, env_cfg)}``: the analytic agents of this market
    default_baselines: tuple[str, ...]  #: agent presets evaluated next to a policy when none are given
    bench_rows: str  #: ``f(cfg, n_envs, min_seconds) -> list[Row]``: ``lobgym bench`` rows of N envs

    def load(self, field: str) -> Any:
        """The object the ``field`` string names, imported on first use."""
        module, _, attr = getattr(self, field).partition(":")
        return getattr(import_module(module), attr)


KINDS: dict[str, MarketKind] = {}


def register(kind: MarketKind) -> MarketKind:
    """Add ``kind`` to :data:`KINDS`; a second kind of the same name is an error."""
    if kind.name in KINDS:
        raise ValueError(f"market kind {kind.name!r}: already registered")
    KINDS[kind.name] = kind
    return kind


def get(name: str) -> MarketKind:
    """The kind called ``name``; a ``ValueError`` naming ``market.kind`` and the allowed kinds otherwise."""
    if name not in KINDS:
        raise ValueError(f"market.kind = {name!r}: unknown market; allowed: {', '.join(KINDS)}")
    return KINDS[name]


def of(cfg: Any) -> MarketKind:
    """The kind of an env config (anything with ``cfg.market.kind``)."""
    return get(cfg.market.kind)


def offering(agent_kind: str) -> list[str]:
    """The market kinds whose baselines include ``agent_kind`` (for error messages)."""
    return [k.name for k in KINDS.values() if agent_kind in k.load("baselines")]


register(MarketKind(
    name="reduced_form",
    description="reduced-form market: Brownian mid (drift, mean reversion, jumps), fills at A exp(-k depth)",
    config="lobgym.config:EnvConfig",
    simulation="lobgym.simulation:Simulation",
    baselines="lobgym.agents.baselines:REDUCED_FORM_BASELINES",
    default_baselines=("avellaneda_stoikov", "avellaneda_stoikov_symmetric", "cartea_jaimungal", "fixed_spread",
                       "random"),
    bench_rows="lobgym.tools.bench:bench_batched",
))
register(MarketKind(
    name="book",
    description="L3 price-time-priority order book driven by background order flow",
    config="lobgym.config:BookEnvConfig",
    simulation="lobgym.book_simulation:BookSimulation",
    baselines="lobgym.agents.book_baselines:BOOK_KINDS",
    default_baselines=("book_quoter", "random"),
    bench_rows="lobgym.tools.bench:bench_book_rows",
))
