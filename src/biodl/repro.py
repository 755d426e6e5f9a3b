"""Reproducibility: seeding, deterministic mode, RNG snapshots and the run manifest.

Same seed, same machine, same thread count -> the same numbers. Everything random
in biodl draws from Python's ``random``, NumPy's global generator or torch's
generators, all three seeded here; DataLoader workers and augmentations derive
their seeds from torch's.
"""

from __future__ import annotations

import base64
import datetime as _dt
import os
import platform
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .io import atomic_write_json, sha256_file
from .runs import MANIFEST

__all__ = [
    "seed_everything",
    "seed_worker",
    "get_rng_state",
    "set_rng_state",
    "write_manifest",
    "finish_manifest",
]


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device).

    ``deterministic=True`` also makes torch refuse non-deterministic kernels,
    turns off cuDNN autotuning and sets ``CUBLAS_WORKSPACE_CONFIG`` as CUDA
    requires for deterministic cuBLAS (only when it is not already set).
    DataLoader workers are covered by :func:`seed_worker`; augmentations on
    tensors use torch's generator and so follow this seed.
    """
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ["PYTHONHASHSEED"] = str(seed)  # for subprocesses (workers spawned later)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def seed_worker(worker_id: int) -> None:  # noqa: ARG001 - DataLoader's signature
    """``worker_init_fn`` for DataLoader: seed NumPy and ``random`` from the worker's torch seed.

    torch gives each worker ``base_seed + worker_id``; the base seed comes from the
    loader's generator, which the engine reseeds from (seed, epoch).
    """
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


# ----------------------------------------------------------------------------- RNG state


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def get_rng_state() -> dict[str, Any]:
    """A JSON-serialisable snapshot of Python, NumPy, torch CPU and CUDA RNG states."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": py_version, "state": list(py_state), "gauss_next": py_gauss},
        "numpy": {
            "kind": np_kind,
            "keys": np.asarray(np_keys).tolist(),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": _b64(torch.get_rng_state()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a snapshot made by :func:`get_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(_unb64(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [_unb64(s) for s in state["cuda"]]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


# ----------------------------------------------------------------------------- manifest


def _git_commit(where: Path) -> dict[str, Any] | None:
    """The commit (and dirty flag) of the git checkout holding ``where``, if any."""
    try:
        top = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if top.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {"commit": top.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    from . import __version__

    out = {
        "biodl": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    for mod in ("torchvision", "torchmetrics", "sklearn", "pandas"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:  # pragma: no cover - optional
            pass
    return out


def write_manifest(
    run_dir: str | Path,
    *,
    config: dict[str, Any],
    seed: int,
    device: str,
    inputs: dict[str, str | Path] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``manifest.json`` at the start of a run and return it.

    ``inputs`` maps a role (``data``) to a file whose sha256 is recorded. The
    manifest is completed by :func:`finish_manifest` when the run ends.
    """
    import biodl

    manifest: dict[str, Any] = {
        "versions": _versions(),
        "git": _git_commit(Path(biodl.__file__).resolve().parent) or _git_commit(Path.cwd()),
        "platform": {"system": platform.platform(), "machine": platform.machine(), "threads": torch.get_num_threads()},
        "device": device,
        "seed": seed,
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "cwd": os.getcwd(),
        "inputs": {
            role: {"path": str(Path(p).resolve()), "sha256": sha256_file(p), "bytes": Path(p).stat().st_size}
            for role, p in (inputs or {}).items()
        },
        "config": config,
        "started": _now(),
        "finished": None,
        **(extra or {}),
    }
    atomic_write_json(Path(run_dir) / MANIFEST, manifest)
    return manifest


def finish_manifest(run_dir: str | Path, manifest: dict[str, Any], **extra: Any) -> None:
    """Stamp the end time (and any extra fields) into ``manifest.json``."""
    manifest.update(extra)
    manifest["finished"] = _now()
    atomic_write_json(Path(run_dir) / MANIFEST, manifest)
