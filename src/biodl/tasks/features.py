"""Tile features from a trained image run (#32): its network's penultimate layer as the extractor
that fills a :class:`~biodl.data.features.FeatureCache`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import runs
from ..data.features import Provenance
from ..engine.checkpoint import load_model_weights, model_state
from ..errors import ConfigError
from ..io import sha256_file
from ..report.tensorboard import head_inputs
from .registry import task_spec

__all__ = ["run_extractor"]


def run_extractor(run_dir: str | Path, batch: int = 256) -> tuple[Callable[[list[Path]], np.ndarray], Provenance]:
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

    def extract_files(files: list[Path]) -> np.ndarray:
        data = end.read(pre, list(files))[0]
        out = []
        for start in range(0, len(data), batch):
            idx = torch.arange(start, min(start + batch, len(data)))
            out.append(head_inputs(module, data[idx][0].float().div(255)).numpy())
        return np.concatenate(out).astype(np.float32)

    probe = torch.zeros(1, int(pre.in_chans), int(pre.size), int(pre.size))
    dim = int(head_inputs(module, probe).shape[1])
    stain = json.dumps(pre.stain, sort_keys=True) if pre.stain else None
    return extract_files, Provenance(extractor=f"image run: {config.model.name}, penultimate layer",
                                     weights_sha256=[sha256_file(prefix.with_suffix(".safetensors"))],
                                     size=int(pre.size), mpp=pre.mpp, stain=stain, dim=dim)
