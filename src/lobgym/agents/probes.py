"""The loss-landscape probe: how sharply the training loss rises around the current weights.

Every ``every`` rollouts, on a minibatch of ``batch`` transitions, the probe computes the loss ``L`` the
algorithm trains (PPO: clipped surrogate + entropy + value loss on the rollout just collected; SAC: the
critics' loss on the replay buffer), its gradient ``g``, and the loss after a step of ``radius`` along
``g / |g|``. It logs

* ``probe/sharpness``: ``L(w + rho g/|g|) - L(w)``, the rise of the loss at radius ``rho`` (the
  sharpness of sharpness-aware minimisation); the controller's ``sharpness`` signal;
* ``probe/curvature``: ``2 (sharpness - rho |g|) / rho^2``, the loss's second derivative along the
  gradient (by a finite difference);
* ``probe/grad_norm``, ``probe/loss``, and ``probe/seconds`` (the probe's cost).

The probe draws its minibatch from its own generator and runs inside saved-and-restored torch and numpy
random states, and puts the weights back exactly, so a run with the probe trains bit-identically to one
without (tested).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from lobgym.agents.losses import value_loss_fn


def sharpness(loss: Callable[[], torch.Tensor], params: list[torch.Tensor], radius: float) -> dict[str, float]:
    """Loss, gradient norm, sharpness and curvature of ``loss()`` at ``params`` (see the module)."""
    l0 = loss()
    grads = torch.autograd.grad(l0, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
    norm = float(torch.sqrt(sum(torch.sum(g * g) for g in grads)))
    saved = [p.detach().clone() for p in params]
    try:
        with torch.no_grad():
            if norm > 0.0:
                for p, g in zip(params, grads, strict=True):
                    p.add_(g, alpha=radius / norm)
            l1 = float(loss())
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved, strict=True):
                p.copy_(s)
    rise = l1 - float(l0.detach())
    return {"loss": float(l0.detach()), "grad_norm": norm, "sharpness": rise,
            "curvature": 2.0 * (rise - radius * norm) / radius ** 2}


def _ppo_batch(model: Any, rng: np.random.Generator, size: int) -> dict[str, torch.Tensor]:
    buf = model.rollout_buffer
    n = buf.buffer_size * buf.n_envs
    idx = rng.choice(n, size=min(size, n), replace=False)

    def take(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a.reshape(n, *a.shape[2:])[idx], device=model.device)

    return {"obs": take(buf.observations), "actions": take(buf.actions), "old_log_prob": take(buf.log_probs),
            "advantages": take(buf.advantages), "returns": take(buf.returns), "old_values": take(buf.values)}


def _ppo_loss(model: Any, batch: dict[str, torch.Tensor], value_loss: Callable) -> Callable[[], torch.Tensor]:
    """PPO's training loss on ``batch`` at the current weights, as SB3's ``PPO.train`` computes it."""
    clip = model.clip_range(model._current_progress_remaining)
    clip_vf = model.clip_range_vf(model._current_progress_remaining) if model.clip_range_vf is not None else None
    actions = batch["actions"]
    if isinstance(model.action_space, gymnasium.spaces.Discrete):
        actions = actions.long().flatten()
    adv = batch["advantages"]
    if model.normalize_advantage and len(adv) > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)

    def loss() -> torch.Tensor:
        values, log_prob, entropy = model.policy.evaluate_actions(batch["obs"], actions)
        values = values.flatten()
        ratio = torch.exp(log_prob - batch["old_log_prob"])
        policy_loss = -torch.min(adv * ratio, adv * torch.clamp(ratio, 1 - clip, 1 + clip)).mean()
        if clip_vf is not None:
            values = batch["old_values"] + torch.clamp(values - batch["old_values"], -clip_vf, clip_vf)
        entropy_loss = -torch.mean(-log_prob) if entropy is None else -torch.mean(entropy)
        return policy_loss + model.ent_coef * entropy_loss + model.vf_coef * value_loss(batch["returns"], values)

    return loss


def _sac_loss(model: Any, rng: np.random.Generator, size: int, value_loss: Callable) -> Callable[[], torch.Tensor]:
    """SAC's critic loss on a replay minibatch at the current critic weights, as SB3's ``SAC.train``."""
    buf = model.replay_buffer
    idx = rng.integers(0, buf.size(), size=size)
    data = buf._get_samples(idx, env=model._vec_normalize_env)
    with torch.no_grad():
        next_actions, next_log_prob = model.actor.action_log_prob(data.next_observations)
        next_q = torch.cat(model.critic_target(data.next_observations, next_actions), dim=1)
        next_q, _ = torch.min(next_q, dim=1, keepdim=True)
        ent_coef = torch.exp(model.log_ent_coef.detach()) if model.log_ent_coef is not None else model.ent_coef_tensor
        next_q = next_q - ent_coef * next_log_prob.reshape(-1, 1)
        target = data.rewards + (1 - data.dones) * model.gamma * next_q

    def loss() -> torch.Tensor:
        return 0.5 * sum(value_loss(q, target) for q in model.critic(data.observations, data.actions))

    return loss


class SharpnessProbeCallback(BaseCallback):
    """Runs the probe at the end of every ``every``-th rollout and feeds ``sharpness`` to the controller."""

    def __init__(self, every: int, radius: float, batch: int, critic_loss: str = "mse", huber_delta: float = 1.0,
                 controller: Any = None, seed: int = 0):
        super().__init__()
        self.every, self.radius, self.batch, self.controller, self.seed = every, radius, batch, controller, seed
        self.value_loss = value_loss_fn(critic_loss, huber_delta)
        self.rollouts = 0
        self.seconds: list[float] = []  #: wall time of each probe (its cost)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.rollouts += 1
        if (self.rollouts - 1) % self.every:
            return
        is_sac = hasattr(self.model, "replay_buffer")
        if is_sac and (self.model.replay_buffer.size() < 2 or self.model.num_timesteps <= self.model.learning_starts):
            return
        t0 = time.perf_counter()
        np_state = np.random.get_state()  # noqa: NPY002  (SB3's replay sampling draws from numpy's global one)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed * 1_000_003 + self.rollouts)
                rng = np.random.default_rng([self.seed, self.rollouts])
                if is_sac:
                    loss = _sac_loss(self.model, rng, self.batch, self.value_loss)
                    params = [p for p in self.model.critic.parameters() if p.requires_grad]
                else:
                    loss = _ppo_loss(self.model, _ppo_batch(self.model, rng, self.batch), self.value_loss)
                    params = [p for p in self.model.policy.parameters() if p.requires_grad]
                result = sharpness(loss, params, self.radius)
        finally:
            np.random.set_state(np_state)  # noqa: NPY002
        result["seconds"] = time.perf_counter() - t0
        self.seconds.append(result["seconds"])
        for key, value in result.items():
            self.logger.record(f"probe/{key}", value)
        if self.controller is not None and "sharpness" in self.controller.signals:
            self.controller.observe("sharpness", result["sharpness"])

    def state_dict(self) -> dict[str, Any]:
        """The rollout count (which rollouts are probed, and their draws), for a checkpoint."""
        return {"rollouts": self.rollouts}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.rollouts = int(state["rollouts"])
