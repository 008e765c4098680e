"""Finding the declarative presets (``envs/``, ``agents/``, ``experiments/``) by name or by path.

Installed from a wheel they live in ``lobgym/presets/<kind>/``; in a source checkout (editable
install) they are the top-level folders of the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

KINDS = ("envs", "agents", "experiments")


def preset_dir(kind: str) -> Path:
    """The folder holding the presets of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"preset kind = {kind!r}: allowed: {', '.join(KINDS)}")
    packaged = Path(__file__).resolve().parent / "presets" / kind
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / kind


def list_presets(kind: str) -> dict[str, Path]:
    """``{name: path}`` of every preset of ``kind``, sorted by name."""
    folder = preset_dir(kind)
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def resolve(kind: str, spec: str | Path) -> Path:
    """The file for a preset name (``as2008``) or a path (``envs/as2008.yaml``)."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"{kind} preset file {str(spec)!r} does not exist")
        return path
    presets = list_presets(kind)
    if str(spec) not in presets:
        raise ValueError(f"{kind} preset = {str(spec)!r}: unknown; available: {', '.join(presets) or 'none'}")
    return presets[str(spec)]


class _Loader(yaml.SafeLoader):
    """The safe loader, reading ``3e-4`` as a float (YAML 1.1 wants ``3.0e-4`` and would give a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9_]+)[eE][-+]?[0-9]+$"""),
    list("-+0123456789."),
)


def load_yaml(text: str):
    """Parse YAML text with the safe loader (no code from YAML is ever run); ``1e-3`` is a float."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 -- _Loader is a SafeLoader


def read_yaml(path: Path) -> dict:
    """Parse a YAML mapping (safe loader: no code from YAML is ever run)."""
    with open(path, encoding="utf-8") as fh:
        data = load_yaml(fh.read())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a YAML mapping at the top level, got {type(data).__name__}")
    return data


def describe(path: Path) -> str:
    """The one-line ``description`` of a preset file."""
    return str(read_yaml(path).get("description", "")).strip().splitlines()[0] if path else ""
