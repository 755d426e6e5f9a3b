"""Checkpoints: tensors in safetensors, everything else in JSON, committed atomically.

A checkpoint ``PREFIX`` is the pair ``PREFIX.safetensors`` (model weights and
the tensor parts of optimiser and scheduler state) and ``PREFIX.json`` (epoch,
step, RNG states, sampler position, config hash, the non-tensor parts of the
states, and the sha256 of the safetensors file). Nothing is ever unpickled.

Commit protocol (a kill at any instant leaves a complete, consistent pair):
1. write both files to temporary names and fsync them;
2. rename the JSON to ``PREFIX.json.pending``  (the intent);
3. rename the safetensors into place;
4. rename ``PREFIX.json.pending`` to ``PREFIX.json`` and fsync the directory.
Before every load, :func:`recover` finishes step 4 if the new safetensors is in
place (its sha256 matches the pending JSON) and otherwise drops the pending JSON,
leaving the previous pair, which steps 1-2 never touched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError
from safetensors.torch import save_file
from torch import nn

from ..errors import CheckpointError
from ..io import fsync_dir, json_text, read_json, read_safetensors, sha256_file, write_tmp
from .faults import crash_point

__all__ = [
    "FORMAT", "VERSION", "split_tree", "join_tree", "save_checkpoint", "recover", "load_checkpoint", "model_state",
    "TrainingState",
    "check_training_state", "check_architecture", "check_finite", "load_model_weights",
]


FORMAT = "biodl-checkpoint"
VERSION = 1


# ----------------------------------------------------------------------------- state trees


def split_tree(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested state by a reference, collecting tensors by key.

    Dicts with non-string keys (optimiser state is keyed by int) and tuples are
    tagged so that :func:`join_tree` restores them exactly.
    """
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: split_tree(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[k, split_tree(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [split_tree(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [split_tree(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix} in a checkpoint")


def join_tree(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`split_tree`."""
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__items__" in obj:
            return {k: join_tree(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(join_tree(v, tensors) for v in obj["__tuple__"])
        return {k: join_tree(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [join_tree(v, tensors) for v in obj]
    return obj


# ----------------------------------------------------------------------------- files


def _paths(prefix: Path) -> tuple[Path, Path, Path]:
    prefix = Path(prefix)
    return (
        prefix.with_name(prefix.name + ".safetensors"),
        prefix.with_name(prefix.name + ".json"),
        prefix.with_name(prefix.name + ".json.pending"),
    )


def save_checkpoint(prefix: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Atomically write the pair PREFIX.safetensors / PREFIX.json (see module docstring)."""
    st_path, js_path, pending = _paths(Path(prefix))
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    st_tmp = write_tmp(st_path, lambda p: save_file(tensors, str(p), metadata={"format": FORMAT}))
    try:
        record = {"format": FORMAT, "version": VERSION, "safetensors_sha256": sha256_file(st_tmp), **meta}
        js_tmp = write_tmp(js_path, lambda p: p.write_text(json_text(record, indent=1)))
        os.replace(js_tmp, pending)
        crash_point("pending")
        os.replace(st_tmp, st_path)
        crash_point("renamed")
    except BaseException:
        st_tmp.unlink(missing_ok=True)
        raise
    os.replace(pending, js_path)
    fsync_dir(st_path.parent)


def recover(prefix: str | Path) -> None:
    """Finish or roll back a commit that a kill interrupted, and remove stale temporary files."""
    st_path, js_path, pending = _paths(Path(prefix))
    if pending.exists():
        try:
            record = json.loads(pending.read_text())
            complete = st_path.exists() and record.get("safetensors_sha256") == sha256_file(st_path)
        except (OSError, ValueError):
            complete = False
        if complete:
            os.replace(pending, js_path)
        else:
            pending.unlink()
        fsync_dir(st_path.parent)
    for stale in st_path.parent.glob(f".{Path(prefix).name}.*.tmp"):
        stale.unlink(missing_ok=True)


def load_checkpoint(prefix: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint pair, verifying its format and the sha256 link between the two files."""
    recover(prefix)
    st_path, js_path, _ = _paths(Path(prefix))
    if not js_path.exists() and not st_path.exists():
        raise CheckpointError(st_path, "no such checkpoint")
    tensors = read_safetensors(st_path)
    meta = read_json(js_path, CheckpointError)
    if meta.get("format") != FORMAT:
        raise CheckpointError(js_path, "not a biodl checkpoint record")
    if meta.get("safetensors_sha256") != sha256_file(st_path):
        raise CheckpointError(st_path, f"does not match its record {js_path.name} (sha256 differs)")
    return tensors, meta


def model_state(prefix: str | Path) -> dict[str, torch.Tensor]:
    """The model's tensors in the checkpoint ``prefix``: a weights checkpoint's, or the ``model.``
    part of a training state (``last``)."""
    tensors, meta = load_checkpoint(prefix)
    if meta.get("kind") == "training":
        tensors = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    return tensors


class _Sampler(BaseModel):
    epoch: StrictInt = Field(ge=0)
    batches_done: StrictInt = Field(ge=0)
    batch_size: StrictInt = Field(ge=1)
    seed: StrictInt
    world_size: StrictInt = Field(ge=1)


class _PartialLoss(BaseModel):
    sum: StrictFloat | StrictInt
    count: StrictInt = Field(ge=0)


class _Rng(BaseModel):
    model_config = ConfigDict(extra="allow")

    python: dict[str, Any]
    numpy: dict[str, Any]
    torch: str


class TrainingState(BaseModel):
    """The JSON half of a ``last`` checkpoint (what resuming needs), checked before use."""

    model_config = ConfigDict(extra="allow")

    kind: str
    epoch: StrictInt = Field(ge=0)
    step: StrictInt = Field(ge=0)
    should_stop: bool
    sampler: _Sampler
    partial_train_loss: _PartialLoss
    rng: _Rng
    config_hash: str | None = None
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None = None
    callbacks: dict[str, dict[str, Any]] = Field(default_factory=dict)


def check_training_state(meta: dict[str, Any], where: str | Path) -> None:
    """Raise CheckpointError naming the key when ``meta`` is not a training state biodl wrote."""
    if meta.get("kind") != "training":
        raise CheckpointError(where, "holds weights only, not a training state to resume")
    try:
        TrainingState.model_validate(meta)
    except ValidationError as exc:
        from ..config import validation_problem

        raise CheckpointError(where, f"not a complete training state: {validation_problem(exc)}") from None


def check_architecture(model: nn.Module, weights: dict[str, torch.Tensor], where: str | Path) -> None:
    """Raise CheckpointError naming the tensors that do not fit ``model`` (missing, unexpected, shape)."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [
        f"{k} {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in weights and tuple(weights[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("shape mismatch", shapes), ("missing", missing), ("unexpected", unexpected)):
            if items:
                more = f" (+{len(items) - 4} more)" if len(items) > 4 else ""
                parts.append(f"{label}: {', '.join(items[:4])}{more}")
        raise CheckpointError(where, "made for another architecture; " + "; ".join(parts))


def check_finite(weights: dict[str, torch.Tensor], where: str | Path) -> None:
    """Raise CheckpointError naming the tensors that hold NaN or infinite values: a network with
    one would give NaN for every case (and NaN probabilities argmax to the first class)."""
    bad = [k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise CheckpointError(where, f"holds NaN or infinite weights in {', '.join(bad[:3])}{more}; the training "
                                     "diverged or the file was altered, and the network cannot be used")


def load_model_weights(model: nn.Module, weights: dict[str, torch.Tensor], where: str | Path) -> None:
    """Copy checked weights (the model's architecture, finite values) into ``model`` in place."""
    check_architecture(model, weights, where)
    check_finite(weights, where)
    model.load_state_dict(weights, strict=True)
