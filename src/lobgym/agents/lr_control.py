"""Learning-rate controllers driven by measured training performance, for stable-baselines3.

SB3 sets every optimizer's learning rate from ``lr_schedule(progress_remaining)`` at the start of
each ``train()``, so a callback that edits ``param_groups`` is silently overwritten. A
:class:`LRController` is therefore passed *as* the ``learning_rate``: its ``__call__`` is a pure
function of the progress and of the controller's state, and a thin callback feeds it measured
signals through :meth:`LRController.observe`. The next ``train()`` then uses the new rate in every
param group. The controller is picklable (SB3's own save pickles ``lr_schedule`` into the model,
for plain SB3 users); lobgym never reads that copy back: :meth:`state_dict` / :meth:`load_state_dict`
carry its state through ``controller.json`` in every checkpoint.

The effective rate is ``clamp(base(progress) * multiplier, lr_min, lr_max)``: a time-based base
(:class:`Constant`, :class:`Linear`, :class:`CosineWarmup`, :class:`Cyclic`) times an adaptive
multiplier that the rules move. Each rule reacts to one named signal:

* :class:`KLTarget` (``approx_kl``): multiplier / ``factor`` when KL > target * band, * ``factor``
  when KL < target / band.
* :class:`Plateau` (an evaluation metric): reduce-only, the semantics of torch's
  ``ReduceLROnPlateau`` with ``threshold_mode="abs"`` (so negative PnL behaves): a value is better
  if it beats the best by more than ``threshold`` (above it in ``max`` mode, below in ``min``);
  after more than ``patience`` non-improving values the multiplier is multiplied by ``factor``,
  then ``cooldown`` values are ignored.
* :class:`BoldDriver` (a training return): exponential smoothing ``s = smoothing * s + (1 -
  smoothing) * x``; the multiplier grows by ``grow`` when ``s`` rises and is cut by ``cut`` when it
  falls by more than ``tolerance``.
* :class:`Bandit` (any signal; LRRL-style): an Exp3 bandit whose arms are multipliers. Each observation
  after the first rewards the arm in play with the signal's improvement since the previous observation
  (a rise in ``max`` mode, a fall in ``min`` mode), squashed to [0, 1] by ``0.5 + 0.5 tanh(delta /
  scale)`` with ``scale`` the running mean magnitude of the improvements, and the bandit then draws the
  next arm from ``(1 - gamma) w / sum(w) + gamma / K``; its factor moves the multiplier from the old arm
  to the new one. The draws come from ``seed`` and the count of draws, so a resumed run draws the same.
* :class:`DivergenceGuard` (losses, KL): a non-finite value, or one above ``max_ratio`` times the
  running mean of its magnitude, cuts the multiplier by ``cut`` at once and blocks every increase
  (from any rule) for the next ``cooldown`` observations of that signal. With ``reload_best``,
  ``lobgym train`` also puts back the best model's weights and optimizer state.

The multiplier stays within ``[multiplier_min, multiplier_max]``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np


# ------------------------------------------------------------------------------------ time bases
@dataclass
class Constant:
    """The same rate ``lr`` all through training."""

    lr: float

    def __call__(self, progress_remaining: float) -> float:
        """The base learning rate at ``progress_remaining`` (1 at the start of training, 0 at the end)."""
        return self.lr


@dataclass
class Linear:
    """From ``start`` at the beginning of training to ``end`` at the end."""

    start: float
    end: float

    def __call__(self, progress_remaining: float) -> float:
        """The base learning rate at ``progress_remaining`` (1 at the start of training, 0 at the end)."""
        return self.end + (self.start - self.end) * progress_remaining


@dataclass
class CosineWarmup:
    """Linear warm-up from 0 over the first ``warmup`` fraction, then cosine decay to ``end``."""

    peak: float
    end: float = 0.0
    warmup: float = 0.0

    def __call__(self, progress_remaining: float) -> float:
        """The base learning rate at ``progress_remaining`` (1 at the start of training, 0 at the end)."""
        done = 1.0 - progress_remaining
        if done < self.warmup:
            return self.peak * done / self.warmup
        frac = (done - self.warmup) / (1.0 - self.warmup) if self.warmup < 1.0 else 1.0
        return self.end + 0.5 * (self.peak - self.end) * (1.0 + math.cos(math.pi * min(frac, 1.0)))


@dataclass
class Cyclic:
    """Triangular cycles between ``low`` and ``high``, ``cycles`` of them over training."""

    low: float
    high: float
    cycles: float = 4.0

    def __call__(self, progress_remaining: float) -> float:
        """The base learning rate at ``progress_remaining`` (1 at the start of training, 0 at the end)."""
        phase = ((1.0 - progress_remaining) * self.cycles) % 1.0
        return self.low + (self.high - self.low) * (1.0 - abs(2.0 * phase - 1.0))


BASES = {"constant": Constant, "linear": Linear, "cosine": CosineWarmup, "cyclic": Cyclic}


# ------------------------------------------------------------------------------------------ rules
@dataclass
class Rule(ABC):
    """A rule reacts to observations of ``signal`` with a factor for the multiplier (1 = no change)."""

    signal: str
    #: Fields that change as the rule observes (logged to TensorBoard as the rule's state).
    state_fields: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def update(self, value: float) -> float:
        """Take one observation; return the factor to apply to the multiplier."""


@dataclass
class KLTarget(Rule):
    """Multiplier / ``factor`` when KL > ``target * band``, * ``factor`` when KL < ``target / band``."""

    signal: str = "approx_kl"
    target: float = 0.01
    band: float = 1.5
    factor: float = 1.5

    def update(self, value: float) -> float:
        """Take one KL observation; return the factor for the multiplier (1 inside the band or non-finite)."""
        if not math.isfinite(value):
            return 1.0  # the divergence guard handles these
        if value > self.target * self.band:
            return 1.0 / self.factor
        if value < self.target / self.band:
            return self.factor
        return 1.0


@dataclass
class Plateau(Rule):
    """Reduce-only: multiplier * ``factor`` after more than ``patience`` non-improving values (see the module)."""

    signal: str = "eval_return"
    mode: str = "max"
    patience: int = 3
    cooldown: int = 0
    threshold: float = 0.0
    factor: float = 0.5
    best: float | None = None
    num_bad: int = 0
    cooldown_counter: int = 0
    state_fields: ClassVar[tuple[str, ...]] = ("best", "num_bad", "cooldown_counter")

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode = {self.mode!r}: allowed: 'min', 'max'")
        if not 0.0 < self.factor < 1.0:
            raise ValueError(f"factor = {self.factor}: must be in (0, 1) (the plateau rule only reduces)")

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.threshold
        return value < self.best - self.threshold

    def update(self, value: float) -> float:
        """Take one observation; return ``factor`` when the plateau lasted too long, else 1."""
        if not math.isfinite(value):
            return 1.0
        if self._better(value):
            self.best = value
            self.num_bad = 0
        else:
            self.num_bad += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad = 0
        if self.num_bad > self.patience:
            self.cooldown_counter = self.cooldown
            self.num_bad = 0
            return self.factor
        return 1.0


@dataclass
class BoldDriver(Rule):
    """Multiplier * ``grow`` while the smoothed signal rises, * ``cut`` when it falls by more than ``tolerance``."""

    signal: str = "train_return"
    smoothing: float = 0.9
    grow: float = 1.05
    cut: float = 0.5
    tolerance: float = 0.0
    smoothed: float | None = None
    state_fields: ClassVar[tuple[str, ...]] = ("smoothed",)

    def update(self, value: float) -> float:
        """Take one observation; return ``grow``, ``cut`` or 1 from the move of the smoothed signal."""
        if not math.isfinite(value):
            return 1.0
        if self.smoothed is None:
            self.smoothed = value
            return 1.0
        previous = self.smoothed
        self.smoothed = self.smoothing * previous + (1.0 - self.smoothing) * value
        if self.smoothed > previous:
            return self.grow
        if self.smoothed < previous - self.tolerance:
            return self.cut
        return 1.0


@dataclass
class DivergenceGuard(Rule):
    """Cuts the multiplier at once on a non-finite or exploding value, then blocks increases (see the module)."""

    signal: str = "loss"
    max_ratio: float = 10.0
    cut: float = 0.1
    cooldown: int = 10
    decay: float = 0.9
    reload_best: bool = False  #: read by lobgym train, which reloads the best model when ``fired`` grows
    mean_abs: float | None = None
    blocked: int = 0
    fired: int = 0
    state_fields: ClassVar[tuple[str, ...]] = ("mean_abs", "blocked", "fired")

    def update(self, value: float) -> float:
        """Take one observation; return ``cut`` if non-finite or above ``max_ratio`` x its mean magnitude, else 1."""
        if self.blocked > 0:
            self.blocked -= 1
        exploding = self.mean_abs is not None and abs(value) > self.max_ratio * max(self.mean_abs, 1e-12)
        if not math.isfinite(value) or exploding:
            self.blocked = self.cooldown
            self.fired += 1
            return self.cut
        self.mean_abs = abs(value) if self.mean_abs is None else self.decay * self.mean_abs + (
            1.0 - self.decay) * abs(value)
        return 1.0


@dataclass
class Bandit(Rule):
    """Exp3 over learning-rate multipliers ``arms``, rewarded by the improvement of the signal (see the module)."""

    signal: str = "eval_return"
    arms: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    gamma: float = 0.2
    mode: str = "max"
    seed: int = 0
    log_weights: list[float] | None = None  #: Exp3's weights, as logarithms (they only grow)
    arm: int | None = None  #: index of the arm in play (None before the first observation)
    draws: int = 0
    last: float | None = None
    scale: float | None = None
    state_fields: ClassVar[tuple[str, ...]] = ("arm", "draws", "last", "scale")

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode = {self.mode!r}: allowed: 'min', 'max'")
        if len(self.arms) < 2 or any(not (a > 0 and math.isfinite(a)) for a in self.arms):
            raise ValueError(f"arms = {self.arms}: need at least two finite multipliers > 0")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma = {self.gamma}: must be in (0, 1]")
        if self.log_weights is None:
            self.log_weights = [0.0] * len(self.arms)

    def probabilities(self) -> np.ndarray:
        """Exp3's probability of each arm at the next draw."""
        w = np.exp(np.asarray(self.log_weights) - max(self.log_weights))
        return (1.0 - self.gamma) * w / w.sum() + self.gamma / len(self.arms)

    def _draw(self) -> int:
        u = np.random.default_rng([self.seed, self.draws]).random()
        self.draws += 1
        return int(min(np.searchsorted(np.cumsum(self.probabilities()), u, side="right"), len(self.arms) - 1))

    def update(self, value: float) -> float:
        """Take one observation; return the factor from the old arm's multiplier to the next arm's."""
        if not math.isfinite(value):
            return 1.0
        if self.arm is None:  # the first observation: nothing to reward yet, pick an arm
            self.last = value
            self.arm = self._draw()
            return self.arms[self.arm]
        delta = (value - self.last) if self.mode == "max" else (self.last - value)
        self.last = value
        self.scale = abs(delta) if self.scale is None else 0.9 * self.scale + 0.1 * abs(delta)
        reward = 0.5 + 0.5 * math.tanh(delta / self.scale) if self.scale > 0 else 0.5
        k = len(self.arms)
        p = self.probabilities()[self.arm]
        self.log_weights[self.arm] += self.gamma * (reward / p) / k
        old = self.arm
        self.arm = self._draw()
        return self.arms[self.arm] / self.arms[old]


RULES = {"kl_target": KLTarget, "plateau": Plateau, "bold_driver": BoldDriver, "divergence_guard": DivergenceGuard,
         "bandit": Bandit}


# ------------------------------------------------------------------------------------ controller
@dataclass
class LRController:
    """``learning_rate`` for SB3: ``clamp(base(progress) * multiplier, lr_min, lr_max)``."""

    base: Any
    rules: list[Rule] = field(default_factory=list)
    lr_min: float = 1e-7
    lr_max: float = 1.0
    multiplier: float = 1.0
    multiplier_min: float = 1e-3
    multiplier_max: float = 1e3
    history: list[tuple[str, float, float]] = field(default_factory=list)  #: (signal, value, multiplier after)
    history_limit: int = 10_000  #: only the newest observations are kept (SAC observes losses every step)

    def __post_init__(self) -> None:
        if not 0.0 < self.lr_min <= self.lr_max:
            raise ValueError(f"lr_min = {self.lr_min}, lr_max = {self.lr_max}: need 0 < lr_min <= lr_max")

    def __call__(self, progress_remaining: float) -> float:
        """The learning rate at ``progress_remaining`` (1 at the start, 0 at the end); no side effects."""
        return min(max(self.base(progress_remaining) * self.multiplier, self.lr_min), self.lr_max)

    def observe(self, signal: str, value: float) -> float:
        """Feed one measurement to the rules watching ``signal``; returns the new multiplier."""
        value = float(value)
        factor = 1.0
        for rule in self.rules:
            if rule.signal == signal:
                factor *= rule.update(value)
        if factor > 1.0 and any(isinstance(r, DivergenceGuard) and r.blocked > 0 for r in self.rules):
            factor = 1.0  # increases are blocked after a divergence
        self.multiplier = min(max(self.multiplier * factor, self.multiplier_min), self.multiplier_max)
        self.history.append((signal, value, self.multiplier))
        if len(self.history) > self.history_limit:
            del self.history[: len(self.history) - self.history_limit]
        return self.multiplier

    @property
    def signals(self) -> set[str]:
        """The signals some rule watches."""
        return {r.signal for r in self.rules}

    def state_dict(self) -> dict[str, Any]:
        """The state that changes while training: multiplier, history and every rule's fields."""
        return {"multiplier": self.multiplier, "history": list(self.history),
                "rules": [asdict(r) for r in self.rules]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output; raises ``ValueError`` if it does not fit these rules."""
        try:
            rules = state["rules"]
            if len(rules) != len(self.rules):
                raise ValueError(f"{len(rules)} rules saved, {len(self.rules)} configured")
            for rule, saved in zip(self.rules, rules, strict=True):
                if set(saved) != set(asdict(rule)):
                    raise ValueError(f"rule {type(rule).__name__}: saved fields {sorted(saved)} differ")
                for key, value in saved.items():
                    _check_type(rule, key, value)
            multiplier = float(state["multiplier"])
            history = [tuple(h) for h in state["history"]]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"controller state does not match the configured controller: {err}") from None
        for rule, saved in zip(self.rules, rules, strict=True):
            for k, v in saved.items():
                setattr(rule, k, v)
        self.multiplier = multiplier
        self.history = history


def _check_type(rule: Rule, key: str, value: Any) -> None:
    """A saved rule field must have the kind of value the rule holds (text, or a number / None)."""
    current = getattr(rule, key)
    if isinstance(current, list):
        ok = isinstance(value, list) and len(value) == len(current) and all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in value)
    elif isinstance(current, str | bool):
        ok = isinstance(value, type(current))
    else:
        ok = value is None or (isinstance(value, int | float) and not isinstance(value, bool))
    if not ok:
        raise ValueError(f"rule {type(rule).__name__}: {key} = {value!r} is not a valid value")


def controller_of(model: Any) -> LRController:
    """The :class:`LRController` an SB3 model trains with (SB3 wraps it in a ``FloatSchedule``)."""
    schedule = getattr(model, "lr_schedule", None)
    inner = getattr(schedule, "value_schedule", schedule)
    if not isinstance(inner, LRController):
        raise ValueError(f"model.lr_schedule = {schedule!r}: no LRController; pass one as learning_rate")
    return inner


#: SB3 logger keys -> controller signal names, read after each ``train()``.
TRAIN_SIGNALS = {
    "train/approx_kl": "approx_kl",
    "train/loss": "loss",
    "train/value_loss": "value_loss",
    "train/policy_gradient_loss": "policy_loss",
    "train/clip_fraction": "clip_fraction",
    "train/actor_loss": "actor_loss",
    "train/critic_loss": "critic_loss",
}


def make_lr_callback(controller: LRController):
    """A thin SB3 callback that feeds ``controller`` what training measures.

    After every ``train()`` (read at the start of the next rollout) it passes SB3's logged
    losses, approx KL and clip fraction (:data:`TRAIN_SIGNALS`); at the end of every rollout, the
    mean return (``train_return``) and mean episode PnL (``train_pnl``) of the episodes that ended
    since the last decision, if any. Only signals some rule watches are passed. The controller's
    multiplier and its rules' state are logged under ``lr_control/``; the rate each ``train()`` used
    is logged for every run, controlled or not, as ``train/lr_now`` (``GradNormCallback``).
    """
    from stable_baselines3.common.callbacks import BaseCallback

    class LRControlCallback(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.controller = controller
            self._returns: list[float] = []
            self._pnls: list[float] = []
            self._running: np.ndarray | None = None

        def _on_rollout_start(self) -> None:
            watched = self.controller.signals
            for key, signal in TRAIN_SIGNALS.items():
                value = self.model.logger.name_to_value.get(key)
                if signal in watched and value is not None:
                    self.controller.observe(signal, float(value))

        def _on_step(self) -> bool:
            rewards = np.asarray(self.locals.get("rewards", []), dtype=np.float64)
            dones = np.asarray(self.locals.get("dones", []), dtype=bool)
            if self._running is None or self._running.shape != rewards.shape:
                self._running = np.zeros_like(rewards)
            self._running += rewards
            for i in np.flatnonzero(dones):
                self._returns.append(float(self._running[i]))
                metrics = self.locals.get("infos", [{}] * len(dones))[i].get("episode_metrics")
                if metrics is not None:
                    self._pnls.append(float(metrics["pnl"]))
                self._running[i] = 0.0
            return True

        def _on_rollout_end(self) -> None:
            watched = self.controller.signals
            if self._returns and "train_return" in watched:
                self.controller.observe("train_return", float(np.mean(self._returns)))
            if self._pnls and "train_pnl" in watched:
                self.controller.observe("train_pnl", float(np.mean(self._pnls)))
            self._returns.clear()
            self._pnls.clear()
            self.logger.record("lr_control/multiplier", self.controller.multiplier)
            for i, rule in enumerate(self.controller.rules):
                for key in rule.state_fields:
                    value = getattr(rule, key)
                    if value is not None:
                        self.logger.record(f"lr_control/{i}_{type(rule).__name__}/{key}", float(value))

        def state_dict(self) -> dict[str, Any]:
            return {"returns": list(self._returns), "pnls": list(self._pnls), "running": self._running}

        def load_state_dict(self, state: dict[str, Any]) -> None:
            self._returns, self._pnls = list(state["returns"]), list(state["pnls"])
            self._running = state["running"]

    return LRControlCallback()


def build_controller(spec: Any) -> LRController:
    """An :class:`LRController` from a :class:`~lobgym.config.LRControlConfig` or a dict.

    A dict looks like::

        {"base": {"kind": "cosine", "peak": 3e-4, "warmup": 0.05},
         "rules": [{"kind": "kl_target", "target": 0.01}, {"kind": "divergence_guard"}],
         "lr_min": 1e-6, "lr_max": 1e-2}
    """
    from lobgym.config import load_lr_control

    cfg = load_lr_control(spec)
    b = cfg.base.model_dump()
    base = BASES[b.pop("kind")](**b)
    rules = []
    for r in cfg.rules:
        params = r.model_dump()
        rules.append(RULES[params.pop("kind")](**params))
    return LRController(base, rules, lr_min=cfg.lr_min, lr_max=cfg.lr_max)
