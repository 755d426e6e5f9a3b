"""Export a trained run to ONNX, with the run's own preprocessing inside the graph, checked for
parity against PyTorch on the run's test split.

- **Image runs**: the graph takes uint8 images (N, H, W, C), as a decoder gives them, and does
  what the run's predict does: channels first, the run's normalisation, the model (test-time
  augmentation too when the run has it; a k-fold or ensemble parent's models together), then
  softmax: class probabilities (N, K).
- **Tabular runs**: the graph takes the raw feature columns (N, F) float32 in the order listed
  in the JSON, standardises them as training did, and gives (N, 2) class probabilities.
- **Segmentation runs**: the graph takes a fundus image of any height and width (uint8 NHWC;
  for a run with CLAHE, which no ONNX operator does, the CLAHE'd channels as ``prepare_fundus``
  gives them) and gives the vessel probability map (N, H, W) from one pass over the whole
  image; ``size`` fixes the side instead (a multiple of the U-Net's poolings).

Beside ``model.onnx`` goes ``model.json``: input and output names and shapes, class names, the
preprocessing, the recalibration temperature when the run has one (the graph's probabilities are
the model's own), the sha256 of the weights it came from, and the parity numbers. The export
fails (exit 2, no file left) unless the largest absolute difference from PyTorch's
probabilities on the test split is at most :data:`TOLERANCE` and every predicted class agrees.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import runs
from ..errors import ConfigError, DataError, RunDirError
from ..io import atomic_write_json, sha256_file

__all__ = ["export_run", "TOLERANCE", "FORMATS"]

TOLERANCE = 1e-4
FORMATS = ("onnx",)


class _ImageGraph(nn.Module):
    """uint8 (N, H, W, C) -> (N, K) probabilities, through the run's own Trainer pieces."""

    def __init__(self, trainer) -> None:
        super().__init__()
        self.module, self.transform = trainer.module, trainer.batch_transform
        self.eval_forward, self.post = trainer.eval_forward, trainer.postprocess

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2)
        if self.transform is not None:
            x = self.transform(x, False)
        return self.post(self.eval_forward(self.module, x).float())


class _TabularGraph(nn.Module):
    """raw features (N, F) -> (N, 2) probabilities of class 0 and class 1."""

    def __init__(self, trainer, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.module, self.post = trainer.module, trainer.postprocess
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        p = self.post(self.module((features - self.mean) / self.std).float())
        return torch.stack([1 - p, p], dim=1)


class _SegmentationGraph(nn.Module):
    """A fundus image -> (N, H, W) vessel probability, one forward pass over the whole image,
    padded (reflected) to a multiple of the U-Net's ``multiple`` and cropped back (``multiple``
    0: a fixed-size graph, no padding). Input: uint8 (N, H, W, 3) RGB, or, for a run with CLAHE
    (no ONNX operator does it), float32 (N, C, H, W) in [0, 1] as ``prepare_fundus`` gives it."""

    def __init__(self, module: nn.Module, norm: nn.Module, green: bool, clahe: bool, multiple: int) -> None:
        super().__init__()
        self.module, self.norm, self.green, self.clahe, self.multiple = module, norm, green, clahe, multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.clahe:
            x = (x[..., 1:2] if self.green else x[..., :3]).permute(0, 3, 1, 2).float() / 255
        x = self.norm(x)
        h, w = x.shape[-2], x.shape[-1]
        if self.multiple:
            x = nn.functional.pad(x, (0, (-w) % self.multiple, 0, (-h) % self.multiple), mode="reflect")
        return torch.sigmoid(self.module(x).float())[:, 0, :h, :w]


def _weights(run_dir: Path, checkpoint: str) -> tuple[Path | None, str | None]:
    for name in (checkpoint, "last"):
        path = run_dir / "checkpoints" / f"{name}.safetensors"
        if path.is_file():
            return path, sha256_file(path)
    return None, None


def _image(run_dir: Path, checkpoint: str) -> tuple[nn.Module, np.ndarray, np.ndarray, dict[str, Any]]:
    from ..data.arrays import ImageDataset
    from ..data.stain import StainNormalizer
    from ..tasks.image import load_images, load_run, split_images

    config, pre, trainer = load_run(run_dir, checkpoint)
    if pre.get("stain"):
        raise ConfigError("--format", "the run normalises stain (data.stain) before its model, which an ONNX graph "
                                      "cannot do; export a run trained without data.stain")
    data, path = load_images(config, stain=StainNormalizer.from_dict(pre["stain"]))
    rows = split_images(config, data, path)[0]["test"]
    images = np.ascontiguousarray(np.asarray(data.images[rows])[..., : pre["in_chans"]])
    expected = trainer.predict(ImageDataset(data, indices=rows)).numpy()
    size, c = int(pre["size"]), int(pre["in_chans"])
    tta = " with test-time augmentation" if config.model.tta else ""
    info = {"inputs": [{"name": "images", "dtype": "uint8", "shape": ["batch", size, size, c],
                        "layout": "NHWC, RGB order as decoded (Pillow), no scaling"}],
            "outputs": [{"name": "probabilities", "dtype": "float32", "shape": ["batch", len(pre["classes"])]}],
            "classes": pre["classes"],
            "preprocessing": {"inside_graph": f"x / 255, minus mean, over std (per channel), model{tta}, softmax",
                              "mean": pre["mean"],
                              "std": pre["std"], "resize_before": f"{size} x {size} px (bilinear), as training did",
                              "mpp": pre.get("mpp")}}
    return _ImageGraph(trainer), images, expected, info


def _tabular(run_dir: Path, checkpoint: str) -> tuple[nn.Module, np.ndarray, np.ndarray, dict[str, Any]]:
    from ..data import feature_dataset
    from ..tasks.tabular import load_run, load_test_split

    _, pre, trainer = load_run(run_dir, checkpoint)
    raw = load_test_split(run_dir, runs.load_run_config(run_dir), pre)[0].astype(np.float32)
    p = trainer.predict(feature_dataset(pre.transform(raw))).numpy()
    info = {"inputs": [{"name": "features", "dtype": "float32", "shape": ["batch", len(pre.features)],
                        "columns": pre.features}],
            "outputs": [{"name": "probabilities", "dtype": "float32", "shape": ["batch", 2]}],
            "classes": [f"{pre.target}={k}" for k in (0, 1)],
            "preprocessing": {"inside_graph": "(x - mean) / std per column, model, sigmoid", "mean": pre.mean,
                              "std": pre.std, "binary_columns": pre.binary}}
    return _TabularGraph(trainer, pre.mean, pre.std), raw, np.column_stack([1 - p, p]), info


def _segmentation(run_dir: Path, checkpoint: str, size: int | None
                  ) -> tuple[nn.Module, list[np.ndarray], list[np.ndarray], dict[str, Any]]:
    from ..data.vessels import prepare_fundus
    from ..tasks.segmentation import load_cases, load_run

    config, pre, trainer = load_run(run_dir, checkpoint)
    norm = trainer.batch_transform  # the run's normalisation (Normalise, no jitter)
    multiple = 2 ** int(getattr(trainer.module, "depth", 0))
    if size is not None and size % multiple:
        raise ConfigError("--size", f"this U-Net pools {multiple.bit_length() - 1} times: a fixed-size graph needs a "
                                    f"side divisible by {multiple} (got {size})")
    _, cases, _ = load_cases(config)
    images = [c.image for c in cases]
    if size is not None:
        small = [c.name for c in cases if min(c.image.shape[:2]) < size]
        if small:
            raise ConfigError("--size", f"{size} px is larger than test image {small[0]}: parity is checked on the "
                                        "top-left square of that side of each test image")
        images = [im[:size, :size] for im in images]
    clahe = bool(pre["clahe"])
    inputs = [prepare_fundus(im, pre["channels"], True)[None] if clahe else im[None] for im in images]
    graph = _SegmentationGraph(trainer.module, norm, pre["channels"] == "green", clahe, 0 if size else multiple).eval()
    with torch.no_grad():
        expected = [graph(torch.from_numpy(x)).numpy() for x in inputs]
    c = pre["in_chans"]
    side = [size, size] if size else ["height", "width"]
    shape = ["batch", c, *side] if clahe else ["batch", *side, 3]
    info = {"inputs": [{"name": "images", "dtype": "float32" if clahe else "uint8", "shape": shape,
                        "layout": "NCHW floats in [0, 1] after biodl.data.vessels.prepare_fundus (the run uses CLAHE, "
                                  "which no ONNX operator does)" if clahe else "NHWC RGB, no scaling"}],
            "outputs": [{"name": "probabilities", "dtype": "float32", "shape": ["batch", *side],
                         "meaning": "vessel probability per pixel"}],
            "classes": ["background", "vessel"],
            "preprocessing": {"inside_graph": ("" if clahe else f"{pre['channels']} channel(s) / 255, ") +
                              "minus mean, over std, reflect-padded to a multiple of " + str(multiple) +
                              ", U-Net, sigmoid, cropped back" if not size else "normalisation, U-Net, sigmoid",
                              "mean": pre["mean"], "std": pre["std"], "channels": pre["channels"], "clahe": clahe,
                              "threshold_f1_train": runs.read_json(run_dir / "metrics.json").get("threshold_f1_train"),
                              "note": "one forward pass over the whole image; biodl predict tiles the image with "
                                      "overlapping tiles, so its maps differ slightly at tile borders"}}
    return graph, inputs, expected, info


def export_run(run_dir: str | Path, fmt: str = "onnx", out: str | Path | None = None,
               checkpoint: str = "best", size: int | None = None) -> tuple[Path, dict[str, Any]]:
    """Export the run in ``run_dir`` (see the module docstring); returns (the ONNX file, the
    JSON written beside it)."""
    import onnx
    import onnxruntime as ort

    run_dir = Path(run_dir)
    if fmt not in FORMATS:
        raise ConfigError("--format", f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    config = runs.load_run_config(run_dir)
    weights, digest = _weights(run_dir, checkpoint)
    pre_file = runs.read_json(run_dir / "preprocess.json") if (run_dir / "preprocess.json").is_file() else {}
    parent = pre_file.get("folds") or pre_file.get("members")
    if weights is None and not parent:
        raise RunDirError(run_dir, "has no checkpoints (checkpoints/best.safetensors or last.safetensors): nothing "
                                   "to export")
    if size is not None and config.task != "segmentation":
        raise ConfigError("--size", "a fixed input size is for segmentation runs; image runs have their run's size")
    if config.task == "segmentation":
        graph, inputs, expected, info = _segmentation(run_dir, checkpoint, size)
    else:
        graph, inputs, expected, info = {"image": _image, "tabular": _tabular}[config.task](run_dir, checkpoint)
        inputs, expected = [inputs[i:i + 64] for i in range(0, len(inputs), 64)], \
            [expected[i:i + 64] for i in range(0, len(expected), 64)]
    out = Path(out) if out is not None else run_dir / "export" / "model.onnx"
    if out.suffix != ".onnx":
        raise ConfigError("--out", f"{out}: an ONNX file name ends in .onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    try:
        graph.eval()
        first = inputs[0][:1]
        example = torch.from_numpy(np.concatenate([first, first]))  # batch 2: a batch of 1 would be fixed
        dims = {0: torch.export.Dim("batch", min=1)}
        if config.task == "segmentation" and size is None:  # any image size (the graph pads to its multiple)
            h_axis = 2 if info["inputs"][0]["dtype"] == "float32" else 1
            dims.update({h_axis: torch.export.Dim("height", min=8), h_axis + 1: torch.export.Dim("width", min=8)})
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(graph, (example,), dynamo=True, input_names=[info["inputs"][0]["name"]],
                                        output_names=["probabilities"], dynamic_shapes=(dims,), verbose=False)
            program.save(str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = [session.run(None, {info["inputs"][0]["name"]: x})[0] for x in inputs]
        diff = max(float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True))
        if config.task == "segmentation":  # the decision per pixel, at the run's F1-optimal threshold
            t = info["preprocessing"]["threshold_f1_train"] or 0.5
            agree = all(bool(((g >= t) == (e >= t)).all()) for g, e in zip(got, expected, strict=True))
        else:
            agree = all(bool((g.argmax(axis=1) == e.argmax(axis=1)).all()) for g, e in zip(got, expected, strict=True))
        parity = {"test_cases": int(sum(len(x) for x in inputs)), "max_abs_difference": diff,
                  "classes_identical": agree, "tolerance": TOLERANCE,
                  "runtime": f"onnxruntime {ort.__version__} (CPU)"}
        if not (diff <= TOLERANCE and agree):
            raise DataError(out, f"the exported graph disagrees with PyTorch on the test split (largest probability "
                                 f"difference {diff:.2e}, classes identical: {agree}); nothing exported")
        cal = run_dir / "calibration.json"
        temperature = json.loads(cal.read_text()).get("temperature") if cal.is_file() else None
        meta = {"run": str(run_dir.resolve()), "task": config.task, "format": "onnx", **info,
                "recalibration_temperature": temperature, "weights": str(weights) if weights else "members' weights",
                "weights_sha256": digest, "parity": parity, "opset": onnx.load(str(tmp)).opset_import[0].version}
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    atomic_write_json(out.with_suffix(".json"), meta)
    return out, meta
