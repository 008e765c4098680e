"""Run-folder state in files that do not execute when read.

NumPy arrays go in ``<name>.npz`` (read with ``allow_pickle=False``), everything else (structure,
scalars, strings) in ``<name>.json``.

A state tree is made of dicts with string keys, lists, tuples (read back as lists), strings, numbers,
booleans, None and NumPy arrays or scalars. Each array is stored in the ``.npz`` under a short key and
replaced in the JSON by ``{"__array__": key}``. Floats are written with ``repr`` precision (NaN and
infinities included), so a tree reads back bit-identically.

Readers raise :class:`RunFileError` (a ``ValueError``) with a one-line message naming the file.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ARRAY = "__array__"


class RunFileError(ValueError):
    """A run file is missing, truncated, corrupted or not what lobgym wrote."""


def write_state(folder: str | Path, name: str, tree: Any) -> tuple[Path, Path]:
    """Write ``tree`` as ``folder/<name>.json`` and ``folder/<name>.npz``; returns both paths.

    Not atomic by itself: callers write into a temporary folder that they rename into place.
    """
    folder = Path(folder)
    arrays: dict[str, np.ndarray] = {}
    structure = _encode(tree, arrays, name)
    json_path, npz_path = folder / f"{name}.json", folder / f"{name}.npz"
    json_path.write_text(json.dumps(structure, allow_nan=True) + "\n")
    with open(npz_path, "wb") as fh:
        np.savez(fh, **arrays)
    return json_path, npz_path


def read_state(folder: str | Path, name: str) -> Any:
    """The tree written by :func:`write_state`; raises :class:`RunFileError` naming the bad file."""
    folder = Path(folder)
    json_path, npz_path = folder / f"{name}.json", folder / f"{name}.npz"
    structure = read_json(json_path)
    arrays = read_npz(npz_path)
    return _decode(structure, arrays, npz_path)


def read_json(path: str | Path, expect: type | tuple[type, ...] | None = None) -> Any:
    """Parse a JSON file.

    Raises :class:`RunFileError` naming it if it is missing, truncated or not of type ``expect``.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFileError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise RunFileError(f"{path}: unreadable JSON ({_one_line(err)})") from None
    if expect is not None and not isinstance(data, expect):
        names = " or ".join(t.__name__ for t in (expect if isinstance(expect, tuple) else (expect,)))
        raise RunFileError(f"{path}: expected a JSON {_json_name(names)}, got {_json_name(type(data).__name__)}")
    return data


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, loaded without unpickling anything (object arrays are refused)."""
    path = Path(path)
    try:
        raw = io.BytesIO(path.read_bytes())  # np.load leaks its file handle when the archive is truncated
        with np.load(raw, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise RunFileError(f"{path}: missing") from None
    except ValueError as err:
        if "allow_pickle" in str(err):  # numpy's own message suggests unpickling them: lobgym never does
            raise RunFileError(f"{path}: unreadable arrays (it holds pickled objects, which lobgym never "
                               "loads)") from None
        raise RunFileError(f"{path}: unreadable arrays ({_one_line(err)})") from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise RunFileError(f"{path}: unreadable arrays ({_one_line(err)})") from None


def named_arrays(prefix: str, value: Any) -> Iterator[tuple[str, np.ndarray]]:
    """``(dotted name, array)`` for every array in a (nested) NamedTuple of arrays, e.g. ``state.book.price``."""
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        for field in value._fields:
            yield from named_arrays(f"{prefix}.{field}", getattr(value, field))
    elif isinstance(value, np.ndarray):
        yield prefix, value


def _encode(x: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    if isinstance(x, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = x
        return {ARRAY: key}
    if isinstance(x, np.generic):
        return x.item()
    if x is None or isinstance(x, bool | int | float | str):
        return x
    if isinstance(x, dict):
        if ARRAY in x:
            raise TypeError(f"{where}: the key {ARRAY!r} is reserved")
        if not all(isinstance(k, str) for k in x):
            raise TypeError(f"{where}: dict keys must be strings, got {sorted(map(repr, x))}")
        return {k: _encode(v, arrays, f"{where}.{k}") for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(x)]
    raise TypeError(f"{where}: {type(x).__name__} cannot be written to a state file")


def _decode(x: Any, arrays: dict[str, np.ndarray], npz_path: Path) -> Any:
    if isinstance(x, dict):
        if ARRAY in x:
            key = x[ARRAY]
            if not isinstance(key, str) or key not in arrays:
                raise RunFileError(f"{npz_path}: no array {key!r} (named in {npz_path.with_suffix('.json').name})")
            return arrays[key]
        return {k: _decode(v, arrays, npz_path) for k, v in x.items()}
    if isinstance(x, list):
        return [_decode(v, arrays, npz_path) for v in x]
    return x


def _json_name(python_name: str) -> str:
    return python_name.replace("dict", "object").replace("list", "array")


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
