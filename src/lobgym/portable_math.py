"""Training that gives the same weights on every x86-64 machine, not only on the one it ran on.

torch picks its CPU code paths at run time from the processor: MKL (its BLAS) by CPU model and
instruction set, ATen (its own kernels) by vector width. The paths round differently, so the same
seed trained on an AVX-512 machine and on an AVX2 one drifts apart from the first gradient step
(measured: forcing ``MKL_CBWR=AVX2`` changes the weights of a 256-step PPO run on an AVX-512
machine). :func:`pin` fixes both to the AVX2 paths, which every x86-64 processor since about 2015
runs the same way (MKL's conditional numerical reproducibility, ``MKL_CBWR=AVX2``, and
``ATEN_CPU_CAPABILITY=avx2``); they cost no measurable speed against the native AVX-512 paths here.
A processor without AVX2 gets the instruction-set-independent paths instead (``COMPATIBLE`` and
``default``, about 30% slower for large minibatches), which agree with each other but not with
the AVX2 ones.

Both variables are read when torch loads, so :func:`pin` must run before the first ``import
torch``; every ``lobgym`` command and each study trial call it first thing. Set
``LOBGYM_NATIVE_MATH=1`` to keep torch's own, processor-dependent choice.
"""

from __future__ import annotations

import os
import platform
import sys

#: The pinned settings: AVX2 paths where the processor has AVX2, else instruction-set-independent ones.
AVX2 = {"MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
ANY_CPU = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default"}
OPT_OUT = "LOBGYM_NATIVE_MATH"


def _has_avx2() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:  # NumPy's own run-time detection, on every OS
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_features__
    return bool(__cpu_features__.get("AVX2")) and bool(__cpu_features__.get("FMA3"))


def target() -> dict[str, str] | None:
    """The settings :func:`pin` applies on this machine (None off x86-64: MKL and these paths are x86 only)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    return AVX2 if _has_avx2() else ANY_CPU


def pin() -> dict[str, object]:
    """Pin torch's CPU math to fixed code paths, if torch has not been imported yet; returns :func:`settings`."""
    wanted = target()
    if wanted is not None and os.environ.get(OPT_OUT) != "1" and "torch" not in sys.modules:
        os.environ.update(wanted)
    return settings()


def settings() -> dict[str, object]:
    """What applies in this process, for a run's ``meta.json``.

    ``portable`` is true when torch runs (or will run) on the pinned paths, so that another machine with
    the same pins gives the same weights.
    """
    wanted = target()
    keys = tuple(AVX2)
    out: dict[str, object] = {k: os.environ.get(k) for k in keys}
    portable = wanted is not None and all(out[k] == wanted[k] for k in keys)
    if "torch" in sys.modules:
        import torch

        out["torch_cpu_capability"] = capability = torch.backends.cpu.get_cpu_capability()
        portable = portable and capability == wanted["ATEN_CPU_CAPABILITY"].upper()
    out["portable"] = portable
    if not portable:
        out["why_not"] = ("not an x86-64 processor" if wanted is None else f"{OPT_OUT}=1"
                          if os.environ.get(OPT_OUT) == "1" else
                          "torch was imported before lobgym could pin its math (set "
                          + " and ".join(f"{k}={v}" for k, v in wanted.items()) + " before importing torch)")
    return out
