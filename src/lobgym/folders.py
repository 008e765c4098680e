"""Run and study folders: one writer at a time, and no leftovers of interrupted writes.

:func:`exclusive` holds ``<folder>/.lock`` while a study or a training run writes the folder. The file
names its holder (pid, host, start time, command) and is locked with ``flock``, which the system
releases when the holder dies however it dies, so a lock left by a killed process is simply taken over.
Where ``flock`` does not exist the holder's pid decides: a lock of a pid that no longer runs on this
host is stale and taken over.

:func:`remove_leftovers` deletes what an interrupted atomic write leaves: ``.<name>.<random>.tmp``
files (:func:`lobgym.io.write_atomic`) and hidden ``.<name>.<random>`` folders of checkpoints and model
folders being built or replaced. Call it only while holding the folder's lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import socket
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

LOCK = ".lock"
#: Hidden folders of an interrupted checkpoint (``.step_<n>.<random>``) or model-folder swap
#: (``.best.<random>``, ``.final.old``, ...).
_TEMP_FOLDER = re.compile(r"^\.(step_\d+|best|final)\.\w+$")


class FolderBusy(ValueError):
    """Another live process holds the folder's lock."""


@contextlib.contextmanager
def exclusive(folder: str | Path, what: str) -> Iterator[Path]:
    """Hold ``folder``'s lock for the ``with`` block (``what``: "study", "training run", for messages).

    Raises:
        FolderBusy: another live process holds it; the message names it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    fd = _acquire(path, folder, what)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                os.unlink(path)  # while still locked, so nobody locks the file being removed
        os.close(fd)


def _acquire(path: Path, folder: Path, what: str) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        locked = _flock(fd)
        holder = _read_holder(fd)
        if locked is False or (locked is None and holder is not None and _alive(holder)):
            os.close(fd)
            raise FolderBusy(f"{folder}: {_describe(holder, what)} holds {path}; wait for it to end or stop it, "
                             "or use another folder")
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # its previous holder removed the file after we opened it: lock the new one
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": datetime.now().astimezone().isoformat(timespec="seconds"), "command": shlex.join(sys.argv)}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
    os.fsync(fd)
    return fd


def _flock(fd: int) -> bool | None:
    """Lock ``fd`` without waiting: True if locked, False if another process holds it, None without flock."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read_holder(fd: int) -> dict[str, Any] | None:
    try:
        holder = json.loads(os.pread(fd, 1 << 16, 0).decode() or "null")
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the holder may still run: a pid of this host that exists, or any other host's."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _describe(holder: dict[str, Any] | None, what: str) -> str:
    if holder is None:
        return f"another lobgym {what}"
    return (f"another lobgym {what} (pid {holder.get('pid')} on {holder.get('host')}, started "
            f"{holder.get('started')}: {holder.get('command')})")


def remove_leftovers(folder: str | Path, subfolders: tuple[str, ...] = ()) -> list[Path]:
    """Delete the temporary files and folders of interrupted writes in ``folder`` and its ``subfolders``.

    Returns what was removed.
    """
    folder = Path(folder)
    removed = []
    for where in (folder, *(folder / s for s in subfolders)):
        if not where.is_dir():
            continue
        for entry in where.iterdir():
            if entry.is_file() and entry.name.startswith(".") and entry.name.endswith(".tmp"):
                entry.unlink(missing_ok=True)
                removed.append(entry)
            elif entry.is_dir() and _TEMP_FOLDER.match(entry.name):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed
