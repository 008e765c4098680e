"""The one place where numba options live: every engine kernel is compiled through these helpers.

``cache=True`` so that a second process loads machine code from disk instead of recompiling;
``fastmath`` stays off because the same seed must give bit-identical results on every run and in
every batch size (reassociation would make results depend on vectorisation choices).
"""

from __future__ import annotations

import types

import numba

_OPTIONS = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy", "boundscheck": False, "_nrt": False}


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
