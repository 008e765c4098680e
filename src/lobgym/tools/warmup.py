"""Fill numba's on-disk cache ahead of time: ``lobgym warmup [PRESETS]``.

The first use of an env compiles its kernels (seconds for the reduced-form market, about 40 s for the
order book on 2 cores); later processes load them from the cache in well under a second. Warming up
compiles, per env preset, exactly what using it compiles: the serial step and reset that a single env,
evaluation and batches below the kind's threshold run, and (``threads``) the threaded ones that batches
at or above it run. Kernels specialise on the config's types, not its values: presets that differ only
in values share them (``cj2015`` after ``as2008`` costs nothing), while each flow model of the book
has its own. Run it in a Docker build or a CI step to move the compile out of the first experiment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lobgym.compile_notice import SILENCE


@dataclass
class Warmup:
    """What warming one env preset took, in seconds (``None``: not asked for)."""

    preset: str
    kind: str
    serial_seconds: float
    threaded_seconds: float | None
    threaded_min_envs: int


def _first_steps(sim) -> None:
    sim.reset()
    sim.step(auto_reset=True)
    sim.step(auto_reset=False)


def warm(preset: str, threads: bool = True) -> Warmup:
    """Compile (or load from the cache) every kernel that using ``preset`` runs; timed."""
    import os

    from lobgym.config import load_env_config
    from lobgym.env import make_simulation

    os.environ.setdefault(SILENCE, "1")  # the caller reports what is compiling
    cfg = load_env_config(preset)
    t = time.perf_counter()
    serial = make_simulation(cfg, 1, parallel=False)
    _first_steps(serial)  # with the zero action, which every codec accepts
    serial_seconds = time.perf_counter() - t
    threaded_seconds = None
    if threads:
        t = time.perf_counter()
        _first_steps(make_simulation(cfg, 2, parallel=True))
        threaded_seconds = time.perf_counter() - t
    return Warmup(preset, cfg.market.kind, serial_seconds, threaded_seconds, type(serial).parallel_min_envs)
