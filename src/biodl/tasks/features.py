"""Tile extractors that fill a :class:`~biodl.data.features.FeatureCache` (#32): a trained image
run's penultimate layer, or a torchvision architecture with a local weights file (its layer
before the classifier), each reading tile files or uint8 tiles cut from a slide."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import runs
from ..data.features import Provenance
from ..engine.checkpoint import load_model_weights, model_state
from ..errors import ConfigError
from ..io import sha256_file
from ..report.tensorboard import head_inputs
from .registry import task_spec

__all__ = ["run_extractor", "torchvision_extractor", "IMAGENET_MEAN", "IMAGENET_STD"]

#: the normalisation torchvision's ImageNet weights expect (RGB, on [0, 1] pixels)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def run_extractor(run_dir: str | Path, batch: int = 64) -> tuple[Callable[[Any], np.ndarray], Provenance]:
    """(files -> (N, D) float32 features, provenance) from a single image run: its network's
    penultimate layer (on the CPU), each image read as ``biodl predict`` reads it (size,
    channels, stain). A k-fold or ensemble parent, or another task's run, is a ConfigError."""
    run_dir = Path(run_dir)
    config = runs.load_run_config(run_dir)
    end = task_spec(config.task, run_dir / runs.CONFIG).load().END
    pre = runs.read_preprocess(run_dir, end.preprocess, config.task)
    if config.task != "image" or getattr(pre, "folds", None) or getattr(pre, "members", None):
        kind = "k-fold" if getattr(pre, "folds", None) else "ensemble" if getattr(pre, "members", None) else "single"
        raise ConfigError(run_dir, f"features come from one image network; this is a {kind} {config.task} run "
                                   "(give one of its folds' or members' folders)")
    network = end.network(config, pre)
    prefix = runs.checkpoint_prefix(run_dir, "best")
    load_model_weights(network, model_state(prefix), prefix.with_suffix(".safetensors"))
    module = end.module(end.inferer(config, pre, network, torch.device("cpu")), pre, tta=False).eval()

    def extract_files(block: Any) -> np.ndarray:
        data = end.read(pre, block if isinstance(block, np.ndarray) else list(block))[0]
        out = []
        for start in range(0, len(data), batch):
            idx = torch.arange(start, min(start + batch, len(data)))
            out.append(head_inputs(module, fixed(data[idx][0].float().div(255), batch))[: len(idx)].numpy())
        return np.concatenate(out).astype(np.float32)

    probe = torch.zeros(1, int(pre.in_chans), int(pre.size), int(pre.size))
    dim = int(head_inputs(module, probe).shape[1])
    stain = json.dumps(pre.stain, sort_keys=True) if pre.stain else None
    return extract_files, Provenance(extractor=f"image run: {config.model.name}, penultimate layer",
                                     weights_sha256=[sha256_file(prefix.with_suffix(".safetensors"))],
                                     size=int(pre.size), mpp=pre.mpp, stain=stain, dim=dim)


def torchvision_extractor(name: str, weights: str | Path, size: int = 224, mpp: float | None = None,
                          batch: int = 64) -> tuple[Callable[[Any], np.ndarray], Provenance]:
    """(block -> (n, D) float32 features, provenance) from torchvision's architecture ``name``
    (e.g. ``resnet50``) with the weights in the local file ``weights`` (a ``.pth`` state dict or
    safetensors; nothing is downloaded): its output with the last linear layer removed, on tiles
    resized to ``size`` and normalised as for ImageNet. ``mpp``: the resolution tiles are cut at
    from slides (and recorded)."""
    import torchvision
    from torch import nn

    from ..data.folders import decode_images
    from ..models.transfer import read_state_dict

    try:
        model = torchvision.models.get_model(name, weights=None)
    except ValueError:
        raise ConfigError("--extractor", f"torchvision has no architecture {name!r}") from None
    state = read_state_dict(weights)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(weights, f"are not {name} weights ({str(exc).splitlines()[0][:120]})") from None
    last = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1][0]
    parent = model.get_submodule(last.rsplit(".", 1)[0]) if "." in last else model
    setattr(parent, last.rsplit(".", 1)[-1], nn.Identity())
    model.eval()
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    @torch.no_grad()
    def extract_block(block: Any) -> np.ndarray:
        if isinstance(block, np.ndarray):
            images = block
        else:
            files = list(block)
            images, _ = decode_images(files, size, Path(files[0]).parent)
        x = torch.from_numpy(np.ascontiguousarray(images[..., :3])).permute(0, 3, 1, 2).float().div(255)
        if x.shape[-1] != size:
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                                align_corners=False)
        x = (x - mean) / std
        return torch.cat([model(fixed(x[i:i + batch], batch))[: len(x[i:i + batch])]
                          for i in range(0, len(x), batch)]).numpy().astype(np.float32)

    dim = int(extract_block(np.zeros((1, size, size, 3), np.uint8)).shape[1])
    return extract_block, Provenance(extractor=f"torchvision {name}, before its last linear layer, ImageNet "
                                               "normalisation", weights_sha256=[sha256_file(weights)], size=size,
                                     mpp=mpp, stain=None, dim=dim)


def fixed(x: torch.Tensor, n: int) -> torch.Tensor:
    """``x`` (B <= n, ...) padded with zeros to n rows: every batch the network sees has one shape,
    so the CPU backend's per-shape kernels and buffers are made once, and memory stays flat
    however many slides (each ending in a batch of its own size) pass through."""
    return x if len(x) == n else torch.cat([x, x.new_zeros((n - len(x), *x.shape[1:]))])
