"""What a finished run adds to its TensorBoard log beyond the per-epoch scalars: a grid of
training images, the model graph, a precision-recall curve per class, and the embedding
projector (penultimate-layer features with their images and labels)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn


__all__ = ["last_linear", "head_inputs", "thumbnails", "log_extras"]


def last_linear(model: nn.Module) -> nn.Linear | None:
    """The model's last ``nn.Linear`` (its classifier head), whose input is the penultimate layer."""
    found = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            found = module
    return found


def head_inputs(model: nn.Module, x: Tensor, batch: int = 256) -> Tensor:
    """(N, D) features: what the model's last linear layer receives for inputs ``x`` (N, ...)."""
    head = last_linear(model)
    if head is None:
        raise ValueError("the model has no linear head to take features from")
    captured: list[Tensor] = []
    handle = head.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0].detach().float().cpu()))
    try:
        with torch.no_grad():
            for part in x.split(batch):
                model(part.to(next(model.parameters()).device))
    finally:
        handle.remove()
    return torch.cat(captured).flatten(1)


def _tag(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "class"


def _tsv(text: object) -> str:
    return re.sub(r"[\t\r\n]+", " ", str(text))


def thumbnails(images: torch.Tensor, size: int = 32) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, 3, s, s) floats in [0, 1], at most ``size`` pixels a side."""
    x = images.float() / 255.0
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = x[:, :3]
    if max(x.shape[-2:]) > size:
        x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1)


def log_extras(log_dir: str | Path, *, step: int, images: torch.Tensor | None = None,
               graph: tuple[nn.Module, torch.Tensor] | None = None,
               pr: tuple[np.ndarray, np.ndarray, list[str]] | None = None,
               embedding: tuple[torch.Tensor, list[list[str]], list[str], torch.Tensor | None] | None = None) -> None:
    """Write the extras to a new event file in ``log_dir``.

    ``images``: (N, C, H, W) uint8, shown as one grid (``train/images``). ``graph``: (model, an
    input batch), traced; a model that cannot be traced is skipped with a warning. ``pr``:
    (labels (N,), probabilities (N, K), class names): one curve per class, one vs rest
    (``test_pr/<k>_<class>``). ``embedding``: (features (N, D), metadata rows, metadata header,
    label images (N, 3, h, w) in [0, 1] or None).
    """
    from torch.utils.tensorboard import SummaryWriter
    from torchvision.utils import make_grid

    with SummaryWriter(str(log_dir), filename_suffix=".extras") as w:
        if images is not None and len(images):
            grid = make_grid(thumbnails(images, max(images.shape[-2:])), nrow=int(np.ceil(np.sqrt(len(images)))))
            w.add_image("train/images", grid, global_step=step)
        if graph is not None:
            model, example = graph
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    w.add_graph(model.eval(), example)
            except Exception as exc:  # noqa: BLE001 - an optional view; tracing fails on some models
                warnings.warn(f"TensorBoard graph skipped: the model could not be traced ({exc})", stacklevel=2)
        if pr is not None:
            y, prob, classes = pr
            for k, name in enumerate(classes):
                w.add_pr_curve(f"test_pr/{k}_{_tag(name)}", torch.as_tensor(y == k),
                               torch.as_tensor(prob[:, k], dtype=torch.float32), global_step=step)
        if embedding is not None:
            feats, meta, header, label_img = embedding
            w.add_embedding(feats, metadata=[[_tsv(c) for c in row] for row in meta],
                            metadata_header=[_tsv(c) for c in header], label_img=label_img, global_step=step,
                            tag="penultimate")
