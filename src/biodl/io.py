"""Atomic file writing and hashing.

A reader never sees a half-written file: content goes to a temporary file in
the same directory, is flushed and fsynced, then renamed over the target.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from .errors import BiodlError


__all__ = [
    "fsync_dir", "write_tmp", "atomic_write", "atomic_write_bytes", "atomic_write_text", "finite_json", "json_text",
    "atomic_write_json", "sha256_file", "read_json",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def fsync_dir(path: Path) -> None:
    """Persist a rename by fsyncing the directory that holds it (POSIX)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_tmp(path: Path, write: Callable[[Path], None]) -> Path:
    """Write a sibling temporary file with ``write(tmp_path)`` and fsync it; return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Create or replace ``path`` atomically; ``write(tmp_path)`` produces the content. A folder
    at ``path`` is refused (BiodlError), and no temporary file is ever left behind."""
    path = Path(path)
    if path.is_dir():
        raise BiodlError(path, "is a folder; give a file path")
    tmp = write_tmp(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def finite_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None (JSON null): standard JSON has
    no NaN/Infinity, and a metric that is undefined is written as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # NumPy / torch scalars
        return finite_json(obj.item())
    return obj


def json_text(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON text (NaN and infinities written as null), ending with a newline."""
    return json.dumps(finite_json(obj), indent=indent, sort_keys=False, allow_nan=False) + "\n"


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json_text(obj))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_json(path: str | Path, error: type[BiodlError] = BiodlError) -> dict[str, Any]:
    """Read a JSON object; a missing, unreadable or malformed file raises ``error(path, problem)``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(path, "missing") from None
    except (OSError, ValueError) as exc:
        raise error(path, f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise error(path, "expected a JSON object")
    return data
