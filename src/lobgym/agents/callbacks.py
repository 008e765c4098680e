"""SB3 callbacks of ``lobgym train``.

Episode metrics and gradient norms for TensorBoard, periodic evaluation on held-out seeds (best
model kept), checkpoints and a rich progress bar.

Evaluations and checkpoints happen at the start of a rollout, i.e. right after a ``train()``: at
that point the algorithm holds no half-collected rollout, so a checkpoint taken there resumes
exactly. Callbacks with state expose ``state_dict`` / ``load_state_dict`` for the checkpoint.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from lobgym.agents.checkpoints import base_vec_env, save_checkpoint
from lobgym.agents.model_files import load_parameters
from lobgym.evaluation import Evaluation, evaluate
from lobgym.io import write_json_atomic


class PolicyAgent:
    """A trained SB3 model as an evaluation :class:`~lobgym.evaluation.Predictor`.

    Observations are normalised with the run's ``VecNormalize`` statistics (read, never updated) if it
    has them.
    """

    def __init__(self, model: Any, vecnorm: Any = None):
        self.model = model
        self.vecnorm = vecnorm
        self.acts_on = None  #: the env config it acts through, if not the evaluated one (its own interface)

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        """The model's actions for ``observation`` (normalised first if the run normalises observations)."""
        if self.vecnorm is not None and self.vecnorm.norm_obs:
            observation = self.vecnorm.normalize_obs(observation)
        return self.model.predict(observation, deterministic=deterministic)


class EpisodeMetricsCallback(BaseCallback):
    """Logs, per rollout, the metrics of the episodes that ended in it.

    ``episode/<metric>`` means (PnL, |inventory|, fills, ...), ``episode/sharpe`` (mean / std of their
    PnL) and ``reward_terms/<term>`` (each weighted reward term summed over the episode). Reads the
    env's own buffers, so no info dict is built.
    """

    def __init__(self) -> None:
        super().__init__()
        self._terms: np.ndarray | None = None
        self._finished_terms: list[np.ndarray] = []
        self._finished_metrics: list[np.ndarray] = []

    def _on_step(self) -> bool:
        sim = base_vec_env(self.training_env).sim
        b = sim.buffers
        if self._terms is None:
            self._terms = np.zeros_like(b.terms)
        self._terms += b.terms
        if sim.n_done:
            done = np.flatnonzero(b.dones)
            self._finished_terms.append(self._terms[done].copy())
            self._finished_metrics.append(b.metrics[done].copy())
            self._terms[done] = 0.0
        return True

    def _on_rollout_end(self) -> None:
        if not self._finished_metrics:
            return
        sim = base_vec_env(self.training_env).sim
        metrics = np.concatenate(self._finished_metrics)
        terms = np.concatenate(self._finished_terms)
        for j, name in enumerate(sim.metric_names):
            values = metrics[:, j]
            if np.isfinite(values).any():
                self.logger.record(f"episode/{name}", float(np.nanmean(values)))
        pnl = metrics[:, sim.metric_names.index("pnl")]
        if len(pnl) > 1 and np.std(pnl, ddof=1) > 0:
            self.logger.record("episode/sharpe", float(np.mean(pnl) / np.std(pnl, ddof=1)))
        for j, name in enumerate(sim.term_names):
            self.logger.record(f"reward_terms/{name}", float(np.mean(terms[:, j])))
        self.logger.record("episode/count", len(pnl))
        self._finished_terms.clear()
        self._finished_metrics.clear()

    def state_dict(self) -> dict[str, Any]:
        """The running reward terms and the episodes finished in this rollout, for a checkpoint."""
        return {"terms": self._terms, "finished_terms": list(self._finished_terms),
                "finished_metrics": list(self._finished_metrics)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self._terms = state["terms"]
        self._finished_terms = list(state["finished_terms"])
        self._finished_metrics = list(state["finished_metrics"])


class GradNormCallback(BaseCallback):
    """Logs what the optimizers did in the last ``train()``.

    ``train/grad_norm_<optimizer>`` (mean and max over its optimizer steps) is the L2 norm of the
    gradient each step applies, after PPO's clipping at ``max_grad_norm`` (SAC does not clip);
    ``train/grad_norm_<optimizer>_unclipped`` the mean norm before any clipping (SAC does not clip; for
    PPO, measured when a rule watches ``grad_norm``, by summing the squared norms of the parameters'
    gradients as backward writes them); ``train/lr_now`` is the learning rate the
    last step used, for every run (a fixed rate, a schedule or a controller). Measured by an optimizer
    step pre-hook, so both are what was applied, not what a schedule says. The controller's
    ``grad_norm`` signal is the unclipped mean of the policy's (PPO) or actor's (SAC) optimizer.
    """

    def __init__(self, controller: Any = None) -> None:
        super().__init__()
        self.controller = controller
        self._norms: dict[str, list[float]] = {}
        self._unclipped: dict[str, list[float]] = {}
        self._sumsq: dict[str, float] = {}
        self._lr: float | None = None
        self._handles: list[Any] = []

    def _on_training_start(self) -> None:
        optimizers = {"policy": getattr(self.model.policy, "optimizer", None)}
        for part in ("actor", "critic"):
            sub = getattr(self.model, part, None)
            if sub is not None and getattr(sub, "optimizer", None) is not None:
                optimizers = {"actor": self.model.actor.optimizer, "critic": self.model.critic.optimizer}
        for name, opt in optimizers.items():
            if opt is None:
                continue
            self._norms[name], self._unclipped[name] = [], []
            self._handles.append(opt.register_step_pre_hook(self._hook(name)))
            watched = self.controller is not None and "grad_norm" in self.controller.signals
            if name == "policy" and watched:  # PPO clips before the step: sum the squares as backward writes them
                # (~3% of the ppo preset's training time on cj2015, so only when a rule watches grad_norm)
                self._sumsq[name] = 0.0
                for group in opt.param_groups:
                    for param in group["params"]:
                        self._handles.append(param.register_post_accumulate_grad_hook(self._grad_hook(name)))

    def _grad_hook(self, name: str) -> Callable:
        def add(param) -> None:  # after backward wrote param.grad, before any clipping
            with torch.no_grad():
                self._sumsq[name] = self._sumsq[name] + torch.sum(param.grad * param.grad)
        return add

    def _hook(self, name: str) -> Callable:
        def record(optimizer, args, kwargs) -> None:
            if name in ("policy", "actor"):
                self._lr = float(optimizer.param_groups[0]["lr"])
            grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            if grads:
                with torch.no_grad():
                    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
                self._norms[name].append(float(norm))
            if name in self._sumsq:
                self._unclipped[name].append(math.sqrt(float(self._sumsq[name])))
                self._sumsq[name] = 0.0
            elif grads:  # SAC does not clip: the gradient applied is the whole gradient
                self._unclipped[name].append(self._norms[name][-1])
        return record

    def _on_rollout_start(self) -> None:
        self._record()

    def _record(self) -> None:
        for name, norms in self._norms.items():
            if norms:
                self.logger.record(f"train/grad_norm_{name}", float(np.mean(norms)))
                self.logger.record(f"train/grad_norm_{name}_max", float(np.max(norms)))
                norms.clear()
        for name, norms in self._unclipped.items():
            if norms:
                mean = float(np.mean(norms))
                self.logger.record(f"train/grad_norm_{name}_unclipped", mean)
                watched = self.controller is not None and "grad_norm" in self.controller.signals
                if name in ("policy", "actor") and watched:
                    self.controller.observe("grad_norm", mean)
                norms.clear()
        if self._lr is not None:  # recorded next to SB3's train/* scalars of the same train()
            self.logger.record("train/lr_now", self._lr)
            self._lr = None

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self._record()  # the last train(): no rollout follows it
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


#: Controller signal suffix -> the evaluation row's key (``eval_<suffix>``, ``val_<suffix>``).
EVAL_ROW_KEYS = {"return": "return", "pnl": "pnl", "sharpe": "sharpe", "drawdown": "max_drawdown", "score": "score"}


class EvalCallback(BaseCallback):
    """Evaluates the policy every ``every`` timesteps (and at the start), keeping the best model.

    Each evaluation runs deterministically on the same held-out market seeds (the model-selection
    block), logs ``eval/*`` next to the baselines' scores and feeds ``eval_return``, ``eval_pnl``,
    ``eval_sharpe``, ``eval_drawdown`` (and ``eval_score`` on a task) to the learning-rate controller.
    With a validation block (``validation = (episodes, seed)``) the same policy is also evaluated on
    those seeds: ``val/*`` in TensorBoard, ``val_*`` signals for the controller, never used to pick the
    best model. ``score_refs`` maps ``"eval"`` / ``"val"`` to the mean returns ``(zero, reference)``
    of the task's two reference agents on that block; the score is ``(R - zero) / (reference - zero)``.

    The ``eval/*`` scalars are written straight to the logger's outputs at the timestep they were
    measured: ``logger.record`` would hold them until SB3's next dump, at the end of the next rollout
    (the step-0 evaluation would land one rollout late), and dumping the logger here would move SB3's
    own pending scalars too.
    """

    def __init__(self, env_cfg: Any, every: int, episodes: int, seed: int, metric: str,
                 baselines: dict[str, dict[str, float]], save_best: Callable[[], None], controller: Any = None,
                 history_path: Path | None = None, validation: tuple[int, int] | None = None,
                 score_refs: dict[str, tuple[float, float]] | None = None):
        super().__init__()
        self.history_path = history_path
        self.validation = validation
        self.score_refs = score_refs or {}
        self.env_cfg, self.every, self.episodes, self.seed, self.metric = env_cfg, every, episodes, seed, metric
        self.baselines = baselines
        self.save_best = save_best
        self.controller = controller
        self.next_eval = 0
        self.best: float | None = None
        self.history: list[dict[str, float]] = []

    def evaluate_now(self, block: str = "eval") -> Evaluation:
        """Evaluate the current policy on a held-out seed block, ``"eval"`` or ``"val"`` (nothing logged)."""
        episodes, seed = (self.episodes, self.seed) if block == "eval" else self.validation
        agent = PolicyAgent(self.model, self.model.get_vec_normalize_env())
        return evaluate(agent, self.env_cfg, episodes=episodes, seed=seed, name="policy")

    def _block_row(self, block: str) -> dict[str, float]:
        s = self.evaluate_now(block).summary
        row = {"return": s["return_mean"], "pnl": s["pnl_mean"], "sharpe": s["sharpe"],
               "max_drawdown": s["max_drawdown_mean"]}
        if block in self.score_refs:
            zero, ref = self.score_refs[block]
            row["score"] = (row["return"] - zero) / (ref - zero)
        return row | {"_summary": s}

    def _on_rollout_start(self) -> None:
        if self.num_timesteps < self.next_eval:
            return
        self.next_eval = (self.num_timesteps // self.every + 1) * self.every
        self.run_evaluation()

    def run_evaluation(self) -> None:
        """Evaluate now: record the row in the history, feed the controller, log, and keep the best model."""
        block = self._block_row("eval")
        s = block.pop("_summary")
        row = {"timesteps": self.num_timesteps, **block, "pnl_std": s["pnl_std"],
               "mean_abs_inventory": s["mean_abs_inventory"], "fills": s["fills_mean"],
               "terms": {k.removeprefix("term_").removesuffix("_mean"): v for k, v in s.items()
                         if k.startswith("term_")}}
        if self.validation is not None:
            val = self._block_row("val")
            val.pop("_summary")
            row["validation"] = val
        if self.controller is not None:
            row["lr"] = self.controller(self.model._current_progress_remaining)
            for prefix, values in (("eval", row), ("val", row.get("validation"))):
                for suffix, key in EVAL_ROW_KEYS.items():
                    signal = f"{prefix}_{suffix}"
                    if values is not None and signal in self.controller.signals and key in values:
                        self.controller.observe(signal, values[key])
        else:
            row["lr"] = float(self.model.lr_schedule(self.model._current_progress_remaining))
        self.history.append(row)
        if self.history_path is not None:  # rewritten after each evaluation: curves of unfinished runs too
            write_json_atomic(self.history_path, self.history)
        scalars = {f"eval/{key}": row[key] for key in ("return", "pnl", "sharpe", "max_drawdown", "score",
                                                        "mean_abs_inventory", "fills") if key in row}
        scalars |= {f"val/{key}": value for key, value in row.get("validation", {}).items()}
        for name, summary in self.baselines.items():
            scalars[f"eval_baselines/{name}_{self.metric}"] = summary[self.metric]
        score = row[self.metric]
        if math.isfinite(score) and (self.best is None or score > self.best):
            self.best = score
            self.save_best()
        scalars["eval/best"] = self.best if self.best is not None else float("nan")
        self._write_now(scalars)

    def _write_now(self, scalars: dict[str, float]) -> None:
        """Writes ``scalars`` to every output of the logger at the current timestep.

        Uses SB3's ``KVWriter`` interface, as ``Logger.dump`` does, leaving the values SB3 has recorded
        but not dumped alone.
        """
        from stable_baselines3.common.logger import DISABLED, KVWriter

        if self.logger.level == DISABLED:
            return
        for output in self.logger.output_formats:
            if isinstance(output, KVWriter):
                output.write(scalars, dict.fromkeys(scalars), self.num_timesteps)

    @property
    def last_score(self) -> float | None:
        """The ``metric`` of the latest evaluation, ``None`` before the first."""
        return self.history[-1][self.metric] if self.history else None

    def _on_step(self) -> bool:
        return True

    def state_dict(self) -> dict[str, Any]:
        """The next evaluation's timestep, the best score and the history, for a checkpoint."""
        return {"next_eval": self.next_eval, "best": self.best, "history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.next_eval, self.best, self.history = state["next_eval"], state["best"], list(state["history"])


class ScheduleFreeModes(BaseCallback):
    """Puts schedule-free optimizers in the mode each phase needs.

    A schedule-free optimizer keeps two points: ``y``, where gradients are taken, and ``x``, the average it
    converges to; its ``train()`` and ``eval()`` move the weights between them. Rollouts, evaluations,
    checkpoints and saved models use ``x`` (eval mode, set at the start of training and of every rollout);
    the updates run at ``y`` (train mode, set at the end of every rollout, just before SB3's ``train()``).
    Must come before the callbacks that evaluate or save at a rollout start. Does nothing for other
    optimizers.
    """

    def _optimizers(self) -> list[Any]:
        found = [getattr(self.model.policy, "optimizer", None)]
        for part in ("actor", "critic"):
            found.append(getattr(getattr(self.model, part, None), "optimizer", None))
        unique = {id(o): o for o in found if o is not None and "train_mode" in o.param_groups[0]}
        return list(unique.values())

    def _set(self, train: bool) -> None:
        for opt in self._optimizers():
            opt.train() if train else opt.eval()

    def _on_training_start(self) -> None:
        self._set(train=False)

    def _on_rollout_start(self) -> None:
        self._set(train=False)

    def _on_rollout_end(self) -> None:
        self._set(train=True)

    def _on_training_end(self) -> None:
        self._set(train=False)

    def _on_step(self) -> bool:
        return True


class RewardCurriculumCallback(BaseCallback):
    """Reward curricula (:mod:`lobgym.curriculum`) applied to the training env.

    At the start of training and of every rollout, sets the training env's reward weights to those of
    progress ``num_timesteps / total`` and logs each scheduled term's weight as ``curriculum/<term>``
    (``curriculum/<term>_<j>`` when the reward lists a term twice), dumped with SB3's scalars at the
    end of the rollout it applies to.

    The weights are a pure function of ``num_timesteps`` and the budget: a run resumed from a checkpoint
    (taken at a rollout start) recomputes the ones the uninterrupted run used, so the callback has no state.
    Evaluations build their own envs from the config and so use the final weights.
    """

    def __init__(self, env_cfg: Any, total: int):
        super().__init__()
        from lobgym.curriculum import scheduled_terms

        if total < 1:
            raise ValueError(f"total = {total}: the training budget must be >= 1 timestep")
        self.env_cfg, self.total = env_cfg, int(total)
        names = [t.term for t in env_cfg.reward]
        self.tags = {j: f"curriculum/{name}" if names.count(name) == 1 else f"curriculum/{name}_{j}"
                     for j, name in scheduled_terms(env_cfg)}
        self.weights: np.ndarray | None = None

    @property
    def progress(self) -> float:
        """The fraction of the budget done (SB3's ``1 - progress_remaining``), at most 1."""
        return min(1.0, self.model.num_timesteps / self.total)

    def _apply(self) -> None:
        self.weights = base_vec_env(self.training_env).set_reward_progress(self.progress)
        for j, tag in self.tags.items():
            self.logger.record(tag, float(self.weights[j]))

    def _on_training_start(self) -> None:
        self._apply()

    def _on_rollout_start(self) -> None:
        self._apply()

    def _on_step(self) -> bool:
        return True


class ReloadBestCallback(BaseCallback):
    """Reloads the best model when a divergence guard with ``reload_best`` fires.

    The best model's weights and optimizer state (``best/model.zip``) go back into the model at the
    start of the next rollout.
    """

    def __init__(self, controller: Any, best: Path):
        super().__init__()
        self.guards = [r for r in controller.rules if getattr(r, "reload_best", False)]
        self.best = best
        self.seen = sum(g.fired for g in self.guards)
        self.reloads = 0

    def _on_rollout_start(self) -> None:
        fired = sum(g.fired for g in self.guards)
        if fired > self.seen and (self.best / "model.zip").is_file():
            load_parameters(self.model, self.best / "model.zip")  # its tensors only: nothing is unpickled
            self.reloads += 1
            self.logger.record("lr_control/reloads_of_best", self.reloads)
        self.seen = fired

    def _on_step(self) -> bool:
        return True

    def state_dict(self) -> dict[str, Any]:
        """The guard firings seen so far and the reload count, for a checkpoint."""
        return {"seen": self.seen, "reloads": self.reloads}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.seen, self.reloads = state["seen"], state["reloads"]


class CheckpointCallback(BaseCallback):
    """Writes a checkpoint every ``every`` timesteps, at the start of a rollout.

    The checkpoint holds the state of the ``stateful`` callbacks (see :mod:`lobgym.agents.checkpoints`).
    """

    def __init__(self, folder: Path, every: int, keep: int, controller: Any, stateful: dict[str, Any]):
        super().__init__()
        self.folder, self.every, self.keep, self.controller, self.stateful = folder, every, keep, controller, stateful
        self.next_save = every

    def save(self) -> Path:
        """Write a checkpoint now (keeping the newest ``keep``); returns its folder."""
        states = {name: cb.state_dict() for name, cb in self.stateful.items()}
        states["checkpoint"] = {"next_save": self.next_save}
        return save_checkpoint(self.folder, self.model, self.controller, states, self.keep)

    def _on_rollout_start(self) -> None:
        if self.num_timesteps >= self.next_save:
            self.next_save = (self.num_timesteps // self.every + 1) * self.every
            self.save()

    def _on_step(self) -> bool:
        return True

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the timestep of the next checkpoint."""
        self.next_save = state["next_save"]


class ProgressCallback(BaseCallback):
    """Training progress: timesteps, timesteps/s, the latest evaluation score and the learning rate.

    Shown as a rich progress bar on a terminal, else as plain periodic lines on stdout (CI logs, pipes).
    """

    def __init__(self, total: int, evaluation: EvalCallback, description: str, console: Any = None):
        super().__init__()
        from lobgym.progress import bar, is_terminal

        self.total, self.evaluation, self.description = total, evaluation, description
        self.progress: Any = None
        self.lines: Any = None  # the plain lines, made when training starts (a resumed run starts midway)
        if is_terminal(console):
            self.progress = bar("{task.description}", "{task.fields[speed]} steps/s", "eval {task.fields[score]}",
                                "lr {task.fields[lr]}", console=console, transient=False)
            self.task = self.progress.add_task(description, total=total, speed="-", score="-", lr="-")
        self._t0 = self._steps0 = None
        self._last = 0.0

    def _on_training_start(self) -> None:
        self._t0, self._steps0 = time.perf_counter(), self.num_timesteps
        if self.progress is not None:
            self.progress.start()
        else:
            from lobgym.progress import ProgressLines

            self.lines = ProgressLines(f"train {self.description}", self.total, "timesteps", rate_unit="steps",
                                       start=self.num_timesteps)
            self.lines.detail = self._detail()
            self.lines.begin()
            return
        self._update()

    def _detail(self) -> str:
        score = self.evaluation.last_score
        lr = float(self.model.lr_schedule(self.model._current_progress_remaining))
        return f"last eval {self.evaluation.metric} " + ("-" if score is None else f"{score:.4g}") + f", lr {lr:.3g}"

    def _update(self, final: bool = False) -> None:
        if self.lines is not None:
            if final:
                self.lines.done = self.num_timesteps
                self.lines.end(self._detail())
            else:
                self.lines.update(self.num_timesteps, self._detail())
            return
        score = self.evaluation.last_score
        lr = float(self.model.lr_schedule(self.model._current_progress_remaining))
        elapsed = time.perf_counter() - self._t0
        speed = (self.num_timesteps - self._steps0) / elapsed if elapsed > 0 else 0.0
        self.progress.update(self.task, completed=self.num_timesteps, speed=f"{speed:,.0f}",
                             score="-" if score is None else f"{score:.4g}", lr=f"{lr:.3g}")

    def _on_step(self) -> bool:
        now = time.perf_counter()
        if now - self._last > 0.25:
            self._last = now
            self._update()
        return True

    def _on_training_end(self) -> None:
        self._update(final=True)
        if self.progress is not None:
            self.progress.stop()
