"""Finding and reading the declarative presets (``envs/``, ``agents/``, ``experiments/``) by name or by path.

Installed from a wheel they live in ``lobgym/presets/<kind>/``; in a source checkout (editable
install) they are the top-level folders of the repository.

Every YAML file lobgym reads goes through :func:`read_yaml`: the safe loader (no code from YAML is
ever run), a size cap, a nesting-depth cap, a budget on what anchors and aliases expand to (a
"billion laughs" file is refused, not expanded) and no duplicate keys. Each problem is one
:class:`~lobgym.config_base.ConfigError` line ``<file>[:line]: <what> (allowed ...)``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from lobgym.config_base import ConfigError

KINDS = ("envs", "agents", "experiments")

#: Largest YAML file read, in bytes (the shipped presets are a few kB).
MAX_YAML_BYTES = 1_000_000
#: Deepest nesting of mappings and lists (the shipped presets nest 4 deep).
MAX_YAML_DEPTH = 32
#: Most nodes a YAML document may hold once its aliases are expanded.
MAX_YAML_NODES = 100_000
#: What a preset name may look like (a path needs a .yaml or .yml suffix).
PRESET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


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
    """The file for a preset name (``as2008``) or a path (``envs/as2008.yaml``).

    Raises:
        ConfigError: an empty spec, a name that is not a preset, a path that is missing or not a file.
    """
    text = str(spec)
    if not text.strip():
        raise ConfigError(f"{kind} preset = {text!r}: empty; allowed: a preset name "
                          f"({', '.join(list_presets(kind)) or 'none'}) or a .yaml path")
    path = Path(spec)
    if path.suffix in (".yaml", ".yml"):
        if path.is_dir():
            raise ConfigError(f"{path}: is a directory; allowed: a YAML file")
        if not path.is_file():
            raise ConfigError(f"{path}: does not exist (allowed: an existing .yaml file, or a preset name: "
                              f"{', '.join(list_presets(kind)) or 'none'})")
        return path
    presets = list_presets(kind)
    if not PRESET_NAME.fullmatch(text) or text not in presets:
        what = "unknown" if PRESET_NAME.fullmatch(text) else "not a preset name (letters, digits, _ . -) nor a " \
                                                            ".yaml path"
        raise ConfigError(f"{kind} preset = {text!r}: {what}; available: {', '.join(presets) or 'none'}")
    return presets[text]


class _Loader(yaml.SafeLoader):
    """The safe loader, reading ``3e-4`` as a float, with size caps and no duplicate keys.

    YAML 1.1 wants ``3.0e-4`` and would give a string for ``3e-4``. The caps are on nesting depth and on
    the size aliases expand to.
    """

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, depth) once the node is complete

    def compose_node(self, parent, index):  # noqa: D102 -- PyYAML's composer, with the budgets
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = self.anchors.get(event.anchor)
            if node is not None and id(node) not in self._sizes:
                raise yaml.composer.ComposerError(None, None, f"alias *{event.anchor} refers to a node that contains "
                                                  "it (allowed: aliases to complete nodes)", event.start_mark)
        mark = self.peek_event().start_mark
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep "
                                              f"(allowed: at most {MAX_YAML_DEPTH})", mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if id(node) not in self._sizes:
            children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else (
                node.value if isinstance(node, yaml.SequenceNode) else [])
            sizes = [self._sizes[id(c)] for c in children]
            nodes = 1 + sum(n for n, _ in sizes)
            depth = 1 + max((d for _, d in sizes), default=0)
            if nodes > MAX_YAML_NODES or depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"anchors and aliases expand to {nodes:,} nodes, {depth} levels deep (allowed: at "
                    f"most {MAX_YAML_NODES:,} nodes, {MAX_YAML_DEPTH} levels)", mark)
            self._sizes[id(node)] = (nodes, depth)
        return node

    def construct_mapping(self, node, deep=False):  # noqa: D102 -- refuses duplicate keys
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(None, None, "a mapping key is a list or mapping (allowed: "
                                                        "scalar keys)", key_node.start_mark) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r} (allowed: each key once)",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9_]+)[eE][-+]?[0-9]+$"""),
    list("-+0123456789."),
)


def _yaml_error(err: yaml.YAMLError, source: str, text: str) -> ConfigError:
    """``source:line: problem`` from a PyYAML error, on one line."""
    if isinstance(err, yaml.reader.ReaderError):  # a character YAML does not allow (e.g. a NUL byte)
        line = text[: err.position].count("\n") + 1
        return ConfigError(f"{source}:{line}: invalid YAML: unacceptable character #x{err.character:04x}: "
                           f"{err.reason} (allowed: printable text)")
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f"{source}:{mark.line + 1}" if mark is not None else source
    problem = getattr(err, "problem", None) or str(err)
    context = getattr(err, "context", None)
    text = f"{context}: {problem}" if context else problem
    if "could not determine a constructor for the tag" in text:
        text += " (allowed: plain YAML; tags such as !!python/... are never run)"
    return ConfigError(f"{where}: invalid YAML: {' '.join(text.split())}")


def load_yaml(text: str, source: str = "<yaml>") -> Any:
    """Parse YAML text with the safe loader and lobgym's caps; ``1e-3`` is a float.

    Raises:
        ConfigError: ``source[:line]: <what>`` for malformed YAML, tags, too deep or too large documents.
    """
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{source}: {len(text):,} characters; allowed: at most {MAX_YAML_BYTES:,}")
    try:
        loader = _Loader(text)  # the reader already refuses unprintable characters here
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        raise _yaml_error(err, source, text) from None


def read_yaml(path: Path) -> dict:
    """Parse a YAML file holding a mapping (see :func:`load_yaml`).

    Raises:
        ConfigError: ``<file>[:line]: <what>`` when the file is missing, a directory, too large, not
            UTF-8 text, not valid YAML, or not a mapping at the top level.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise ConfigError(f"{path}: is a directory; allowed: a YAML file")
        if size > MAX_YAML_BYTES:
            raise ConfigError(f"{path}: {size:,} bytes; allowed: at most {MAX_YAML_BYTES:,}")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: does not exist") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte {raw[err.start]:#04x}); allowed: UTF-8 YAML") from None
    data = load_yaml(text, str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level, got "
                          f"{'an empty file' if data is None else type(data).__name__}")
    return data


def describe(path: Path) -> str:
    """The one-line ``description`` of a preset file ("" if it has none)."""
    lines = str(read_yaml(path).get("description", "")).strip().splitlines() if path else []
    return lines[0] if lines else ""
