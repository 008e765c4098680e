"""The critic's regression loss: SB3's squared error, or Huber (``critic_loss: huber`` in a training preset).

SB3 computes PPO's value loss and SAC's Q loss with ``F.mse_loss`` inside ``train()`` and offers no
setting for it. :func:`critic_loss` swaps the ``F`` those two modules see, for the duration of
``learn()``, for torch's functional namespace with ``mse_loss`` replaced by ``huber_loss(delta)``; nothing
else in either module uses ``F``. ``tests/agents/test_critic_loss.py`` checks that the swap takes effect
(Huber with a threshold above every error is half the squared error: PPO with Huber and twice the
``vf_coef`` trains bit-identically to PPO with the squared error), so an SB3 release that moves the loss
fails there rather than training silently with the squared error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch.nn import functional


class _HuberFunctional:
    """``torch.nn.functional`` with ``mse_loss`` computing the Huber loss at threshold ``delta``."""

    def __init__(self, delta: float):
        self.delta = float(delta)

    def mse_loss(self, input: Any, target: Any, reduction: str = "mean") -> Any:  # noqa: A002  (torch's names)
        """Huber loss: ``0.5 x^2`` for ``|x| <= delta``, ``delta (|x| - 0.5 delta)`` above it."""
        return functional.huber_loss(input, target, reduction=reduction, delta=self.delta)

    def __getattr__(self, name: str) -> Any:
        return getattr(functional, name)


def value_loss_fn(kind: str, delta: float):
    """The loss ``(prediction, target) -> scalar`` that ``kind`` (``"mse"`` or ``"huber"``) trains with."""
    return functional.mse_loss if kind == "mse" else _HuberFunctional(delta).mse_loss


@contextmanager
def critic_loss(kind: str, delta: float = 1.0) -> Iterator[None]:
    """Train PPO's value function and SAC's critics with ``kind`` (``"mse"``, ``"huber"``) inside the block."""
    if kind == "mse":
        yield
        return
    if kind != "huber":
        raise ValueError(f"critic_loss = {kind!r}: allowed: 'mse', 'huber'")
    import stable_baselines3.ppo.ppo as ppo_module
    import stable_baselines3.sac.sac as sac_module

    saved = ppo_module.F, sac_module.F
    ppo_module.F = sac_module.F = _HuberFunctional(delta)
    try:
        yield
    finally:
        ppo_module.F, sac_module.F = saved
