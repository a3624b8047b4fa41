"""Atomic file writes shared by the data cache, checkpoints, configs and reports."""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping, Union

PathLike = Union[str, os.PathLike]


def file_mode() -> int:
    """The mode a plain ``open()`` would give a new file under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Calls ``write(f)`` on a temporary file beside ``path``, fsyncs it, then
    renames it over ``path``: a process killed at any moment leaves either the
    old file or the complete new one, never a torn write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())  # mkstemp makes 0600 files
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_json(path: PathLike, obj: object, indent: int = 1) -> None:
    """Writes ``jsonable(obj)`` as strict JSON (plus a trailing newline) to ``path``
    atomically: NaN and inf become ``null`` (a bare ``NaN`` token is not JSON, and
    strict readers reject the whole file), NumPy and torch scalars plain numbers."""
    import json

    atomic_write_text(path, json.dumps(jsonable(obj), indent=indent, allow_nan=False) + "\n")


def jsonable(obj: Any) -> Any:
    """``obj`` with what JSON cannot hold made plain: non-finite floats become
    ``None`` (JSON has no inf or NaN), mapping keys strings, tuples lists, and
    NumPy or torch scalars and arrays Python numbers and lists."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # NumPy, torch
        return jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def write_json(path: PathLike, obj: Any, indent: int = 2) -> None:
    """Writes ``jsonable(obj)`` as strict JSON (plus a trailing newline) to ``path``
    atomically: the writer of run folders' metrics and of diagnostics reports."""
    import json

    atomic_write_text(path, json.dumps(jsonable(obj), indent=indent, allow_nan=False) + "\n")


def update_json_locked(path: PathLike, update: Callable[[object], object],
                       default: Callable[[], object] = dict) -> object:
    """Read-modify-write of the JSON file ``path`` under an exclusive lock.

    ``update`` gets the current content (``default()`` when the file does not
    exist yet) and returns the new one, which is written atomically. The lock
    (``path`` + ``.lock``, POSIX ``flock``) lets several processes share one
    results file without losing each other's rows. Returns the new content.
    """
    import fcntl
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            with open(path, encoding="utf-8") as f:
                current = json.load(f)
        else:
            current = default()
        new = update(current)
        atomic_write_json(path, new)
        return new
