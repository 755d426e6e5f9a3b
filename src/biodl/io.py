"""Atomic file writing and hashing.

A reader never sees a half-written file: content goes to a temporary file in
the same directory, is flushed and fsynced, then renamed over the target.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal

from .errors import BiodlError, CheckpointError, describe_os_error

if TYPE_CHECKING:
    import torch


__all__ = [
    "fsync_dir", "write_tmp", "atomic_write", "atomic_write_bytes", "atomic_write_text", "finite_json", "json_text",
    "atomic_write_json", "atomic_folder", "check_writable", "check_gzip", "MAX_INFLATION", "INFLATE_FLOOR",
    "sha256_file", "strict_json", "read_json", "read_safetensors",
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


def check_writable(path: str | Path, option: str, folder: bool = False) -> Path:
    """``path`` when it can be written (a file, or with ``folder`` a folder, made there or already
    there); else a BiodlError naming ``option``: a folder where a file is wanted or the other way
    round, a path part that is a file, a place without write permission. Called before any work
    starts, so a wrong ``--out`` fails at once, not after an hour."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise BiodlError(option, f"{path} exists and is not a folder")
    if not folder and path.is_dir():
        raise BiodlError(option, f"{path} is a folder; give a file name")
    probe = path if folder else path.parent
    while not probe.exists():
        if probe.is_symlink():
            raise BiodlError(option, f"{path}: {probe} is a dangling symbolic link")
        probe = probe.parent
    if not probe.is_dir():
        raise BiodlError(option, f"{path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise BiodlError(option, f"{path}: cannot write in {probe} (permission denied)")
    return path


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


def atomic_write(path: str | Path, write: Callable[[Path], None], exclusive: bool = False) -> None:
    """Create or replace ``path`` atomically; ``write(tmp_path)`` produces the content. A folder
    at ``path`` is refused (BiodlError), and no temporary file is ever left behind.
    ``exclusive``: create only; a file at ``path`` (even one another process made a moment ago)
    is a BiodlError and is left as it is (a hard link is created or fails atomically)."""
    path = Path(path)
    if path.is_dir():
        raise BiodlError(path, "is a folder; give a file path")
    tmp = write_tmp(path, write)
    try:
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise BiodlError(path, "exists (written by another process meanwhile?); pass --overwrite to "
                                       "replace it") from None
            tmp.unlink()
        else:
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes, exclusive: bool = False) -> None:
    atomic_write(path, lambda p: p.write_bytes(data), exclusive)


def atomic_write_text(path: str | Path, text: str, exclusive: bool = False) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), exclusive)


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


def atomic_write_json(path: str | Path, obj: Any, exclusive: bool = False) -> None:
    atomic_write_text(path, json_text(obj), exclusive)


@contextmanager
def atomic_folder(path: str | Path, exists: Literal["error", "keep", "replace"] = "error") -> Iterator[Path]:
    """A folder that appears whole or not at all. Yields a new hidden sibling folder (a name of
    its own, so concurrent writers never share one) for the block to fill; when the block ends
    without a fault, every file in it is fsynced and the folder is renamed to ``path``. An empty
    folder at ``path`` is replaced; a non-empty one is, by ``exists``: ``error`` a BiodlError
    naming it, ``keep`` kept (another writer made the same folder first) and the new one dropped,
    ``replace`` replaced. On any fault (or a kill) the temporary folder goes and ``path`` is as it
    was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700; give the usual permissions
        yield tmp
        for folder, _, files in os.walk(tmp):
            for name in files:
                fd = os.open(os.path.join(folder, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        try:
            os.replace(tmp, path)  # onto nothing or an empty folder (POSIX rename)
        except OSError:
            if not path.is_dir() or exists == "error":
                what = "exists and is not empty" if path.is_dir() else "exists and is not a folder"
                raise BiodlError(path, f"{what} (made by another process meanwhile?); choose another output") from None
            if exists == "keep":
                shutil.rmtree(tmp)
            else:
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
                os.replace(path, old / path.name)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(path.parent)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


#: a compressed file (a gzipped table, an ``.npz`` member) inflating more than this many times
#: its stored size, to more than INFLATE_FLOOR bytes, is refused as a decompression bomb (tables
#: and images compress 2-20 fold)
MAX_INFLATION, INFLATE_FLOOR = 100, 256 << 20


def check_gzip(path: str | Path, error: type[BiodlError] = BiodlError) -> None:
    """A gzipped file inflating like a decompression bomb (see :data:`MAX_INFLATION`) is an
    ``error`` naming it, found by inflating it in chunks that are counted and dropped (the module
    globals are read at each call, so a test can lower them)."""
    import gzip
    import zlib

    path = Path(path)
    cap = max(INFLATE_FLOOR, MAX_INFLATION * path.stat().st_size)
    total = 0
    try:
        with gzip.open(path, "rb") as f:
            while block := f.read(1 << 22):
                total += len(block)
                if total > cap:
                    raise error(path, f"inflates more than {MAX_INFLATION}-fold, past {cap:,} bytes (a decompression "
                                      "bomb?)")
    except (OSError, EOFError, zlib.error) as exc:
        raise error(path, f"not a readable gzip file ({exc})") from None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number standard JSON allows (biodl writes none; was the file edited?)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:30]} does not fit a 64-bit float")
    return value


def strict_json(text: str) -> Any:
    """Parse JSON text as biodl writes it: NaN, Infinity and numbers that overflow a float
    (``1e999``) are refused, and so is nesting too deep to parse (ValueError, in words)."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def read_json(path: str | Path, error: type[BiodlError] = BiodlError) -> dict[str, Any]:
    """Read a JSON object; a missing, unreadable or malformed file raises ``error(path, problem)``."""
    path = Path(path)
    try:
        data = strict_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(path, "missing") from None
    except OSError as exc:
        raise error(path, f"cannot read: {describe_os_error(exc)}") from None
    except ValueError as exc:
        raise error(path, f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise error(path, "expected a JSON object")
    return data


def read_safetensors(path: str | Path) -> dict[str, "torch.Tensor"]:
    """The tensors of a safetensors file (weights, checkpoints), read safely: nothing is ever
    unpickled. A missing, truncated or corrupt file, or a pickle under a safetensors name, is
    one CheckpointError naming the file."""
    from safetensors.torch import load_file

    path = Path(path)
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(path, "no such file") from None
    except Exception as exc:  # safetensors raises its own error type for every format fault
        try:
            head = path.read_bytes()[:4]
        except OSError as err:
            raise CheckpointError(path, f"cannot read: {err.strerror}") from None
        if head[:2] == b"PK" or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
            raise CheckpointError(path, "is a pickle/torch.save file, not safetensors; biodl never unpickles files") \
                from None
        detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise CheckpointError(path, f"not a valid safetensors file (truncated or corrupt): {detail}") from None
