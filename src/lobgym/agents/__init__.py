"""Agents: the analytic baseline market makers (:mod:`lobgym.agents.baselines`) and SB3 training."""

from __future__ import annotations

from lobgym.agents.baselines import (
    AvellanedaStoikov,
    BaselineAgent,
    CarteaJaimungal,
    FixedSpread,
    Gueant,
    RandomAgent,
    make_agent,
)

__all__ = [
    "AvellanedaStoikov",
    "BaselineAgent",
    "CarteaJaimungal",
    "FixedSpread",
    "Gueant",
    "RandomAgent",
    "make_agent",
]
