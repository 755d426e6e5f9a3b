"""Export a trained run to ONNX, with the run's own preprocessing inside the graph, checked for
parity against the run's predictor (:func:`biodl.load`) on the run's test split.

- **Image runs**: the graph takes uint8 images (N, H, W, C), as a decoder gives them, and does
  what ``biodl predict`` does: channels first, each network's own normalisation, the networks
  (test-time augmentation too when the run has it; a k-fold or ensemble parent's networks
  together), the run's recalibration. Two outputs: ``probabilities`` (N, K), the run's, which are
  ``biodl predict``'s ``p_<class>`` columns (recalibrated when the run has a recalibration, of
  whatever method, at whatever level: a single run's or ensemble's map, or each fold's), and
  ``raw_probabilities`` (N, K), the networks' own (``raw_p_<class>``).
- **Tabular runs**: the same two outputs (N, 2) from the raw feature columns (N, F) float32 in
  the order listed in the JSON, standardised inside the graph as training did.
- **Sequence runs**: one-hot sequences (N, 4, L) float32, both strands averaged inside.
- **Cells runs**: each cell's log-normalised values over the run's gene panel (N, P) float32,
  the genes listed in the JSON; each network's gene choice, scaling and PCA are inside.
Each task's end gives the test inputs and their description (``export_sample``).
- **Segmentation runs**: the graph takes a fundus image of any height and width (uint8 NHWC;
  for a run with CLAHE, which no ONNX operator does, the CLAHE'd channels as ``prepare_fundus``
  gives them) and gives the vessel probability map (N, H, W) from one pass over the whole
  image; ``size`` fixes the side instead (a multiple of the U-Net's poolings).

Beside ``model.onnx`` goes ``model.json``: input and output names and shapes, class names, the
preprocessing, the recalibration (``recalibration.inside_graph``: which output has it, and each
map with its parameters, for the record), the sha256 of every weights file it came from, and
the parity numbers. The export fails (exit 2, no file left) unless the largest absolute
difference from the predictor's probabilities on the test split, for every output, is at most
:data:`TOLERANCE` and every predicted class agrees. Runs the graph cannot reproduce are refused
before anything is written: stain normalisation (no ONNX operator does it) and MC dropout
(predictions averaged over random passes).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, DataError
from ..io import check_writable, json_text, sha256_file, write_tmp
from .predictor import MapPredictor, Predictor, load

__all__ = ["export_run", "TOLERANCE", "FORMATS"]

TOLERANCE = 1e-4
FORMATS = ("onnx",)
OUTPUTS = ("probabilities", "raw_probabilities")


class _ClassGraph(nn.Module):
    """The run's input as a caller has it -> (the run's probabilities, the networks' own): uint8
    (N, H, W, C) images, or (N, F) float32 raw features."""

    def __init__(self, predictor: Predictor, images: bool) -> None:
        super().__init__()
        self.images = images
        self.run, self.raw = predictor.as_module(recalibrated=True), predictor.as_module(recalibrated=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.images:
            x = x.permute(0, 3, 1, 2).float() / 255
        return torch.softmax(self.run(x).float(), dim=1), torch.softmax(self.raw(x).float(), dim=1)


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


def _recalibration(predictor: Predictor) -> dict[str, Any]:
    """Where the run's recalibration is, with each map's parameters (the graph applies them)."""
    maps = [{"member": str(m.run_dir.relative_to(predictor.run_dir)) or ".", **m.recalibration.model_dump(
        exclude_none=True)} for m in predictor.members if m.recalibration is not None]
    if predictor.recalibration is not None:
        maps.append({"member": "the mean of the members", **predictor.recalibration.model_dump(exclude_none=True)})
    return {"inside_graph": True, "output": OUTPUTS[0] if maps else None, "maps": maps,
            "rule": "probabilities = R_parent(mean over members of R_member(softmax(network(x)))), each R where "
                    "listed; raw_probabilities = the mean of the networks' own"}


def _classes(predictor: Predictor) -> tuple[nn.Module, np.ndarray, list[np.ndarray], dict[str, Any]]:
    """(graph, test inputs, expected outputs (recalibrated, raw), info) of a classification run;
    its task's end gives the test inputs and describes them (``export_sample``)."""
    config = predictor.config
    if getattr(config.model, "mc_dropout", 0):
        raise ConfigError("--format", f"the run predicts by the mean of {config.model.mc_dropout} MC-dropout passes, "
                                      "which one pass of an ONNX graph does not reproduce; export a run without "
                                      "model.mc_dropout")
    inputs, test, first, preprocessing = predictor.end.export_sample(predictor)
    samples = predictor.samples(predictor.read(test)).mean(axis=1)
    expected = [predictor.combine(samples), predictor.combine(samples, recalibrated=False)]
    k = len(predictor.classes)
    info = {"inputs": [first],
            "outputs": [{"name": OUTPUTS[0], "dtype": "float32", "shape": ["batch", k],
                         "meaning": "the run's probabilities: biodl predict's p_<class> (recalibrated where the run "
                                    "has a recalibration)"},
                        {"name": OUTPUTS[1], "dtype": "float32", "shape": ["batch", k],
                         "meaning": "the networks' own probabilities: biodl predict's raw_p_<class>"}],
            "classes": predictor.classes, "preprocessing": preprocessing, "recalibration": _recalibration(predictor)}
    return _ClassGraph(predictor, predictor.task == "image"), inputs, expected, info


def _segmentation(predictor: MapPredictor, size: int | None
                  ) -> tuple[nn.Module, list[np.ndarray], list[list[np.ndarray]], dict[str, Any]]:
    from ..data.vessels import prepare_fundus
    from ..tasks.segmentation import load_cases

    pre, inferer = predictor.pre, predictor.members[0].inferer
    multiple = 2 ** int(getattr(inferer.module, "depth", 0))
    if size is not None and size % multiple:
        raise ConfigError("--size", f"this U-Net pools {multiple.bit_length() - 1} times: a fixed-size graph needs a "
                                    f"side divisible by {multiple} (got {size})")
    _, cases, _ = load_cases(predictor.config)
    images = [c.image for c in cases]
    if size is not None:
        small = [c.name for c in cases if min(c.image.shape[:2]) < size]
        if small:
            raise ConfigError("--size", f"{size} px is larger than test image {small[0]}: parity is checked on the "
                                        "top-left square of that side of each test image")
        images = [im[:size, :size] for im in images]
    clahe = bool(pre.clahe)
    inputs = [prepare_fundus(im, pre.channels, True)[None] if clahe else im[None] for im in images]
    network = predictor.end.module(inferer, pre).float()  # with the run's 4 flips averaged where it has model.tta
    graph = _SegmentationGraph(network, inferer.batch_transform, pre.channels == "green", clahe,
                               0 if size else multiple).eval()
    with torch.no_grad():
        expected = [[graph(torch.from_numpy(x)).numpy()] for x in inputs]
    side = [size, size] if size else ["height", "width"]
    shape = ["batch", pre.in_chans, *side] if clahe else ["batch", *side, 3]
    tta = " on the image and its 3 flips, probabilities averaged (model.tta)" if network is not inferer.module else ""
    info = {"inputs": [{"name": "images", "dtype": "float32" if clahe else "uint8", "shape": shape,
                        "layout": "NCHW floats in [0, 1] after biodl.data.vessels.prepare_fundus (the run uses CLAHE, "
                                  "which no ONNX operator does)" if clahe else "NHWC RGB, no scaling"}],
            "outputs": [{"name": OUTPUTS[0], "dtype": "float32", "shape": ["batch", *side],
                         "meaning": "vessel probability per pixel"}],
            "classes": ["background", "vessel"],
            "preprocessing": {"inside_graph": ("" if clahe else f"{pre.channels} channel(s) / 255, ") +
                              "minus mean, over std, reflect-padded to a multiple of " + str(multiple) +
                              f", U-Net{tta}, sigmoid, cropped back" if not size else
                              f"normalisation, U-Net{tta}, sigmoid",
                              "mean": pre.mean, "std": pre.std, "channels": pre.channels, "clahe": clahe,
                              "threshold_f1_train": predictor.threshold,
                              "note": "one forward pass over the whole image; biodl predict tiles the image with "
                                      "overlapping tiles, so its maps differ slightly at tile borders"}}
    return graph, inputs, expected, info


def export_run(run_dir: str | Path, fmt: str = "onnx", out: str | Path | None = None,
               checkpoint: str = "best", size: int | None = None, overwrite: bool = False
               ) -> tuple[Path, dict[str, Any]]:
    """Export the run in ``run_dir`` (see the module docstring); returns (the ONNX file, the
    JSON written beside it). An existing pair is replaced only with ``overwrite``; both files
    are written aside and moved into place together."""
    import onnx
    import onnxruntime as ort

    run_dir = Path(run_dir)
    if fmt not in FORMATS:
        raise ConfigError("--format", f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    out = Path(out) if out is not None else run_dir / "export" / "model.onnx"
    if out.suffix != ".onnx":
        raise ConfigError("--out", f"{out}: an ONNX file name ends in .onnx")
    for path in (out, out.with_suffix(".json")):
        check_writable(path, "--out")
        if path.exists() and not overwrite:
            raise ConfigError("--out", f"{path} exists; pass --overwrite to replace it")
    predictor = load(run_dir, checkpoint, device="cpu")
    if size is not None and predictor.task != "segmentation":
        raise ConfigError("--size", "a fixed input size is for segmentation runs; image runs have their run's size")
    if isinstance(predictor, MapPredictor):
        graph, inputs, expected, info = _segmentation(predictor, size)
    else:
        graph, test, want, info = _classes(predictor)
        inputs = [test[i:i + 64] for i in range(0, len(test), 64)]
        expected = [[w[i:i + 64] for w in want] for i in range(0, len(test), 64)]
    names = [o["name"] for o in info["outputs"]]
    first = inputs[0][:1]
    example = torch.from_numpy(np.concatenate([first, first]))  # batch 2: a batch of 1 would be fixed
    dims = {0: torch.export.Dim("batch", min=1)}
    if predictor.task == "segmentation" and size is None:  # any image size (the graph pads to its multiple)
        h_axis = 2 if info["inputs"][0]["dtype"] == "float32" else 1
        dims.update({h_axis: torch.export.Dim("height", min=8), h_axis + 1: torch.export.Dim("width", min=8)})
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(graph.eval(), (example,), dynamo=True, input_names=[info["inputs"][0]["name"]],
                                    output_names=names, dynamic_shapes=(dims,), verbose=False)
    tmp, tmp_json = write_tmp(out, lambda p: program.save(str(p))), None
    try:
        onnx.checker.check_model(str(tmp), full_check=True)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = [session.run(None, {info["inputs"][0]["name"]: x}) for x in inputs]
        diff = max(float(np.abs(g - e).max()) for gs, es in zip(got, expected, strict=True)
                   for g, e in zip(gs, es, strict=True))
        if predictor.task == "segmentation":  # the decision per pixel, at the run's F1-optimal threshold
            t = predictor.threshold
            agree = all(bool(((g[0] >= t) == (e[0] >= t)).all()) for g, e in zip(got, expected, strict=True))
        else:
            agree = all(bool((g[0].argmax(axis=1) == e[0].argmax(axis=1)).all())
                        for g, e in zip(got, expected, strict=True))
        parity = {"test_cases": int(sum(len(x) for x in inputs)), "outputs": names, "max_abs_difference": diff,
                  "classes_identical": agree, "tolerance": TOLERANCE,
                  "runtime": f"onnxruntime {ort.__version__} (CPU)"}
        if not (diff <= TOLERANCE and agree):
            raise DataError(out, f"the exported graph disagrees with PyTorch on the test split (largest probability "
                                 f"difference {diff:.2e}, classes identical: {agree}); nothing exported")
        weights = [m.checkpoint.with_suffix(".safetensors") for m in predictor.members]
        meta = {"run": str(run_dir.resolve()), "task": predictor.task, "kind": predictor.kind, "format": "onnx",
                "checkpoint": predictor.members[0].checkpoint.name,
                **info, "weights": [{"path": str(w), "sha256": sha256_file(w)} for w in weights],
                "parity": parity, "opset": onnx.load(str(tmp)).opset_import[0].version}
        tmp_json = write_tmp(out.with_suffix(".json"), lambda p: p.write_text(json_text(meta)))
        os.replace(tmp, out)
        os.replace(tmp_json, out.with_suffix(".json"))
    except BaseException:
        for path in (tmp, tmp_json):
            if path is not None:
                path.unlink(missing_ok=True)
        raise
    return out, meta
