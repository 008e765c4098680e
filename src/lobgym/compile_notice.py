"""One line on stderr before lobgym's numba kernels compile, so a cold start is not a silent minute.

The first ``gymnasium.make`` of an env whose kernels are not in numba's on-disk cache (a fresh
install, an edited engine, an empty ``NUMBA_CACHE_DIR``) compiles them, which takes a minute or
more; later processes load them from the cache in well under a second. numba fires a
``numba:compile`` event only when a dispatcher found no cached machine code and is about to
compile, so a listener on it prints the notice exactly when a compile starts, once per process,
and never on a warm cache. ``LOBGYM_NO_COMPILE_NOTICE=1`` silences it.

Not ``warnings``: the line is information, not a problem, and the tests turn warnings into errors.
"""

from __future__ import annotations

import os
import sys

NOTICE = "lobgym: compiling the simulation kernels (first use: up to a few minutes; cached afterwards)"
SILENCE = "LOBGYM_NO_COMPILE_NOTICE"

_installed = False
_announced = False


def _on_compile_start(event) -> None:
    global _announced
    if _announced or os.environ.get(SILENCE, "") not in ("", "0"):
        return
    func = getattr(event.data.get("dispatcher"), "py_func", None)
    if not getattr(func, "__module__", "").startswith("lobgym."):
        return  # another package's kernel
    _announced = True
    print(NOTICE, file=sys.stderr, flush=True)


def announce_compiles() -> None:
    """Print :data:`NOTICE` to stderr when a lobgym kernel first has to be compiled in this process.

    Installs a numba event listener (once; later calls do nothing). Call it before any kernel runs,
    e.g. when the module that drives the kernels is imported.
    """
    global _installed
    if _installed:
        return
    from numba.core import event

    class _Listener(event.Listener):
        def on_start(self, ev) -> None:
            _on_compile_start(ev)

        def on_end(self, ev) -> None:
            pass

    event.register("numba:compile", _Listener())
    _installed = True
