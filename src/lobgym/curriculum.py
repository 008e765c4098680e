"""Reward curricula: a reward term's weight that follows a schedule over training progress.

A term declared with a ``schedule`` (see :class:`lobgym.config.RewardTermConfig`) has the weight
``weight * m(progress)``, where ``progress`` in [0, 1] is the fraction of the training budget done
(``num_timesteps / budget``, SB3's ``1 - progress_remaining``) and ``m`` is the schedule's multiplier:

* ``constant`` (the default, as no schedule at all): ``m = 1``;
* ``linear``: ``m`` goes from ``start`` to ``end`` in a straight line between progress ``begin`` and
  ``until``, ``start`` before ``begin``, ``end`` from ``until`` on;
* ``cosine``: the same, along half a cosine wave (flat at both ends of the ramp);
* ``step``: ``values[k]`` where ``k`` is the number of boundaries ``at`` that progress has reached
  (``values[0]`` before ``at[0]``, ``values[1]`` from ``at[0]`` on, ...).

Outside training -- a plain env, an evaluation, the evaluations *during* training -- the weight is the
final one, ``weight * m(1)``: evaluation measures the objective that training ends on, and a run's
evaluations are comparable across its whole history. Training sets the weights of its own env at
each rollout start (:class:`lobgym.agents.callbacks.RewardCurriculumCallback`); the weights are a
pure function of ``num_timesteps``, so a resumed run recomputes the very same ones.

Pure Python and NumPy; the models live in :mod:`lobgym.config`, which calls the functions below.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

#: Progress at which plain envs and evaluations take their weights: the end of training.
FINAL_PROGRESS = 1.0


def check_progress(progress: float) -> float:
    """``progress`` as a float; raises ``ValueError`` naming it unless it is in [0, 1]."""
    p = float(progress)
    if not 0.0 <= p <= 1.0:  # also refuses NaN
        raise ValueError(f"progress = {progress!r}: allowed: a fraction of the training budget in [0, 1]")
    return p


def _ramp_fraction(progress: float, begin: float, until: float) -> float:
    """Where ``progress`` is on the ramp ``[begin, until]``: 0 before it, 1 after it."""
    if progress <= begin:
        return 0.0
    if progress >= until:
        return 1.0
    return (progress - begin) / (until - begin)


def linear(progress: float, start: float, end: float, begin: float = 0.0, until: float = 1.0) -> float:
    """``start`` up to ``begin``, a straight line to ``end`` at ``until``, ``end`` after (exact at both ends)."""
    t = _ramp_fraction(check_progress(progress), begin, until)
    return (1.0 - t) * start + t * end


def cosine(progress: float, start: float, end: float, begin: float = 0.0, until: float = 1.0) -> float:
    """As :func:`linear`, along half a cosine: ``w start + (1 - w) end`` with ``w = (1 + cos(pi t)) / 2``."""
    t = _ramp_fraction(check_progress(progress), begin, until)
    w = 0.5 * (1.0 + math.cos(math.pi * t))
    return w * start + (1.0 - w) * end


def step(progress: float, values: Sequence[float], at: Sequence[float]) -> float:
    """``values[k]``, ``k`` the number of boundaries in ``at`` (increasing) that are <= ``progress``."""
    return float(values[bisect_right(list(at), check_progress(progress))])


def multiplier(schedule: Any, progress: float) -> float:
    """The multiplier of a term's weight at ``progress``.

    1 without a schedule (``None``), else ``schedule.multiplier(progress)`` (a schedule model of
    :mod:`lobgym.config`).
    """
    if schedule is None:
        check_progress(progress)
        return 1.0
    return float(schedule.multiplier(progress))


def term_weights(terms: Iterable[Any], progress: float = FINAL_PROGRESS) -> np.ndarray:
    """The weight of each reward term (items with ``weight`` and ``schedule``) at ``progress``, float64."""
    return np.array([float(t.weight) * multiplier(t.schedule, progress) for t in terms], dtype=np.float64)


def reward_weights(cfg: Any, progress: float = FINAL_PROGRESS) -> np.ndarray:
    """Every reward weight of env config ``cfg`` at ``progress`` (by default the final ones).

    In the order of ``cfg.reward`` -- the order of the simulation's ``reward_spec.weights``.
    """
    return term_weights(cfg.reward, progress)


def scheduled_terms(cfg: Any) -> list[tuple[int, str]]:
    """``(index, term name)`` of the reward terms of ``cfg`` whose weight changes with progress."""
    return [(j, t.term) for j, t in enumerate(cfg.reward)
            if t.schedule is not None and t.schedule.kind != "constant"]


def has_schedule(cfg: Any) -> bool:
    """Whether some reward term of ``cfg`` has a weight that changes over training."""
    return bool(scheduled_terms(cfg))
