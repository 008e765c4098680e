"""The one place where numba options live: every engine kernel is compiled through these helpers.

``cache=True`` so that a second process loads machine code from disk instead of recompiling;
``fastmath`` stays off because the same seed must give bit-identical results on every run and in
every batch size (reassociation would make results depend on vectorisation choices).
"""

from __future__ import annotations

import hashlib
import os
import types
from pathlib import Path

# How long OpenMP workers spin before sleeping after a threaded kernel. numba's threading layer here
# is OpenMP (GNU libgomp). Sleeping at once (OMP_WAIT_POLICY=PASSIVE) costs ~50 us to wake the workers
# at every step - more than a whole step of 1,000 reduced-form envs (threads then lost to one core below
# 4,096 envs); libgomp's default spins ~5 ms, which takes a core from whatever runs between steps on a
# busy machine. 10,000 spins (~0.2 ms here) keep back-to-back steps hot and free the core soon after.
# Measured with lobgym bench and PPO on 1,000 book envs (docs/performance.md). Set before numba (or
# torch) loads the OpenMP runtime; a value the user set (either variable) is kept.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import numba  # noqa: E402  (after the OpenMP setting above)

# ``_nrt=False`` compiles without numba's reference-counting runtime: kernels never allocate (they
# write into caller-owned buffers), and without it numba would emit an atomic incref/decref around
# every array pulled out of a NamedTuple inside the env loop, which made a step about 7x slower.
_OPTIONS = {
    "cache": True,
    "nogil": True,
    "fastmath": False,
    "error_model": "numpy",
    "boundscheck": False,
    "_nrt": False,
}


def kernel(fn):
    """Compile ``fn`` as a serial, cached nopython kernel."""
    return numba.njit(**_OPTIONS)(fn)


def parallel_kernel(fn):
    """Compile ``fn`` with ``parallel=True`` so its ``numba.prange`` loop over envs uses all cores.

    The function is cloned under a new qualified name first: numba's on-disk cache is keyed by
    qualified name and line, so a serial and a parallel build of one function would share (and
    overwrite) one cache entry and the parallel build could silently load serial code.
    """
    clone = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_parallel", fn.__defaults__,
                               fn.__closure__)
    clone.__qualname__ = fn.__qualname__ + "_parallel"
    clone.__module__ = fn.__module__
    clone.__doc__ = fn.__doc__
    return numba.njit(parallel=True, **_OPTIONS)(clone)


def inline(fn):
    """Compile a small helper that is always inlined into its caller (per-env scalar code)."""
    return numba.njit(inline="always", **_OPTIONS)(fn)


def _drop_stale_cache() -> None:
    """Delete lobgym's on-disk numba cache when any lobgym source file changed since it was written.

    numba checks only the timestamp of the file a cached function is defined in, but our fused
    kernels inline helpers from several modules: after editing ``rewards.py``, the cached kernel in
    ``simulation.py`` would otherwise keep running the old reward code. Hashing the package's
    sources (about a millisecond) and clearing the cache when the hash moves closes that gap.
    Only modules that hold compiled code count: the engine, and every module that compiles kernels
    through this one (all of lobgym's kernels do); kernels read globals only from such modules.
    """
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for src in sorted(package.rglob("*.py")):
        text = src.read_bytes()
        if not _compiled(src, package, text):
            continue  # editing the CLI, configs or training must not cost a full recompile
        digest.update(src.relative_to(package).as_posix().encode())
        digest.update(text)
    stamp = package / "__pycache__" / "numba-sources.sha256"
    try:
        if stamp.is_file() and stamp.read_text() == digest.hexdigest():
            return
        for cached in package.rglob("__pycache__/*.nb[ic]"):
            cached.unlink(missing_ok=True)
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(digest.hexdigest())
    except OSError:  # a read-only install: numba then caches elsewhere and the sources never change
        pass


def _compiled(src: Path, package: Path, text: bytes) -> bool:
    """Whether ``src`` may hold compiled code or the constants kernels read."""
    return src.relative_to(package).parts[0] == "market" or b"lobgym.market._jit" in text


_drop_stale_cache()
