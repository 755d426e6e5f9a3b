"""Whole-image inference by overlapping tiles, blended with a ramp window."""

from __future__ import annotations

import torch
from torch import Tensor, nn


__all__ = ["tiled_predict"]


def _window(tile: int, overlap: int, device: torch.device) -> Tensor:
    """(tile, tile) weights: 1 in the middle, rising linearly across the ``overlap`` margin
    (never 0, so every pixel has weight)."""
    ramp = torch.ones(tile, device=device)
    if overlap:
        edge = torch.arange(1, overlap + 1, device=device, dtype=torch.float32) / (overlap + 1)
        ramp[:overlap], ramp[-overlap:] = edge, edge.flip(0)
    return ramp[:, None] * ramp[None, :]


def _starts(size: int, tile: int, step: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, step)) + [size - tile]
    return sorted(set(starts))


@torch.no_grad()
def tiled_predict(model: nn.Module, image: Tensor, tile: int = 256, overlap: int = 32, batch: int = 8,
                  multiple: int = 1) -> Tensor:
    """``model`` applied to (C, H, W) ``image`` in overlapping ``tile`` x ``tile`` tiles (the
    image is reflect-padded to at least one tile and to a multiple of ``multiple``); outputs are
    blended where tiles overlap. Returns (K, H, W) on the image's device. Tiles are batched
    ``batch`` at a time."""
    c, h, w = image.shape
    tile = max(tile, multiple)
    tile -= tile % multiple
    ph, pw = max(tile, h), max(tile, w)
    pad = (0, pw - w, 0, ph - h)
    x = image[None]
    if any(pad):
        mode = "reflect" if pw - w < w and ph - h < h else "replicate"
        x = nn.functional.pad(x, pad, mode=mode)
    step = tile - overlap
    ys, xs = _starts(ph, tile, step), _starts(pw, tile, step)
    corners = [(y, x0) for y in ys for x0 in xs]
    win = _window(tile, overlap, image.device)
    out = acc = None
    for i in range(0, len(corners), batch):
        chunk = corners[i:i + batch]
        pred = model(torch.cat([x[..., y:y + tile, x0:x0 + tile] for y, x0 in chunk])).float()
        if out is None:
            out = torch.zeros(pred.shape[1], ph, pw, device=image.device)
            acc = torch.zeros(ph, pw, device=image.device)
        for p, (y, x0) in zip(pred, chunk, strict=True):
            out[:, y:y + tile, x0:x0 + tile] += p * win
            acc[y:y + tile, x0:x0 + tile] += win
    return (out / acc)[:, :h, :w]
