"""Where a result came from: versions, source revision, machine, load, start time and command.

That is lobgym's version and source revision, package versions, the machine, its load, the start time
and the command. One helper for training runs (``meta.json``) and benchmarks (``benchmark.json``), and
for ``lobgym --version``.

The git revision is lobgym's own: it is reported only when the imported package's source is a
tracked file of a git work tree whose top-level ``pyproject.toml`` names the project ``lobgym``
(a checkout of lobgym, installed editable). A lobgym copied, vendored or pip-installed into a
virtual environment inside some other repository reports no revision, only its installed version:
the revision of the user's repository says nothing about the code that ran.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

#: Packages whose versions a record lists unless told otherwise.
PACKAGES = ("lobgym", "numpy", "numba", "scipy", "gymnasium", "stable-baselines3", "torch", "pydantic")
PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class SourceRevision:
    """The git commit of lobgym's own checkout and whether its tracked files differ from it."""

    commit: str
    dirty: bool

    def __str__(self) -> str:
        return self.commit + ("+dirty" if self.dirty else "")


def lobgym_version() -> str | None:
    """The installed distribution's version (``importlib.metadata``), None if not installed."""
    try:
        return metadata.version("lobgym")
    except metadata.PackageNotFoundError:
        return None


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution in ``names`` (None when it is not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git(folder: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _names_lobgym(pyproject: Path) -> bool:
    """Whether ``pyproject`` declares ``[project] name = "lobgym"``."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: no TOML reader in the standard library
        tomllib = None
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return False
    if tomllib is None:
        return any(line.replace(" ", "") in ('name="lobgym"', "name='lobgym'") for line in text.splitlines())
    try:
        return tomllib.loads(text).get("project", {}).get("name") == "lobgym"
    except tomllib.TOMLDecodeError:
        return False


def source_revision(package_dir: Path = PACKAGE_DIR) -> SourceRevision | None:
    """The revision of lobgym's own git checkout that ``package_dir`` (the package source) belongs to.

    None unless ``package_dir`` lies in a git work tree whose top level holds lobgym's
    ``pyproject.toml`` and its ``__init__.py`` is tracked there (not a copy in an ignored virtual
    environment); ``dirty`` when tracked files differ from the commit.
    """
    top = _git(package_dir, "rev-parse", "--show-toplevel")
    if not top or not _names_lobgym(Path(top) / "pyproject.toml"):
        return None
    if _git(package_dir, "ls-files", "--error-unmatch", "__init__.py") is None:
        return None
    commit = _git(package_dir, "rev-parse", "HEAD")
    if not commit:
        return None
    status = _git(package_dir, "status", "--porcelain", "--untracked-files=no")
    return SourceRevision(commit, bool(status))


def version_line() -> str:
    """``lobgym <version>``, with the git revision when running from a checkout of lobgym."""
    rev = source_revision()
    line = f"lobgym {lobgym_version() or 'unknown version (not installed)'}"
    if rev is not None:
        line += f" (git {rev.commit}{', with uncommitted changes' if rev.dirty else ''})"
    return line


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), None)
    except OSError:
        model = None
    return model or platform.processor() or None


def machine() -> dict[str, Any]:
    """The machine: platform, CPU model and count, numba's threads and threading layer, and the load.

    Logical CPUs are counted twice (all, and those available to this process); the load is the 1, 5 and
    15-minute load averages at the call.
    """
    import numba
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        layer = None
    cpus = os.cpu_count()
    return {
        "platform": platform.platform(), "machine": platform.machine(), "cpu": _cpu_model(), "cpus": cpus,
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus,
        "numba_threads": numba.get_num_threads(), "numba_threading_layer": layer,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def command_line(command: list[str] | None = None) -> str:
    """``command`` (default ``sys.argv``) as a shell line, the entry point shown as ``lobgym``."""
    argv = list(sys.argv if command is None else command)
    if argv and Path(argv[0]).name in ("lobgym", "__main__.py"):
        argv[0] = "lobgym"  # what the user typed, not the entry point's path
    return shlex.join(argv)


def provenance(command: list[str] | None = None, packages: tuple[str, ...] = PACKAGES) -> dict[str, Any]:
    """A JSON-ready record of what produced a result, taken now.

    Keys: ``lobgym`` (installed version), ``git_revision`` (lobgym's own commit, or None outside a
    checkout of lobgym; see :func:`source_revision`), ``git_dirty`` (None without a revision),
    ``versions`` (of ``packages``), ``python``, ``machine`` (:func:`machine`), ``started`` (local
    time with offset) and ``command`` (:func:`command_line`).
    """
    rev = source_revision()
    return {
        "lobgym": lobgym_version(),
        "git_revision": rev.commit if rev else None,
        "git_dirty": rev.dirty if rev else None,
        "versions": package_versions(packages),
        "python": platform.python_version(),
        "machine": machine(),
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command_line(command),
    }
