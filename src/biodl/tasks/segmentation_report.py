"""Whole-image inference and the test report of a segmentation run: per-image FOV metrics
(ours and the second observer's), the threshold chosen on the training images, and figures
(each test image with its ground truth, prediction and errors; the fields of view). The task
module (``tasks.segmentation``) calls into this one, never the other way round."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import runs
from ..engine.inferer import Inferer
from ..data.vessels import VesselCase, patient_of, prepare_fundus
from ..io import atomic_write, atomic_write_json
from ..evaluation import bootstrap_cis, f1_optimal_threshold, fov_scores
from ..report.tables import write_table
from .common import Stopwatch

__all__ = ["PANEL", "predict_map", "case_metrics", "write_test_report"]


PANEL = 480  # pixels: the width of each panel of a test-image figure


def predict_map(inferer: Inferer, x: np.ndarray, tile: int, overlap: int) -> np.ndarray:
    """(C, H, W) prepared image -> (H, W) vessel probability: the run's inference path (the
    trainer's inferer, or a predictor's: the run's normalisation, the model, the sigmoid) over
    the whole image in blended tiles."""
    return inferer.tiled(torch.from_numpy(x), tile, overlap)[0].cpu().numpy()


def case_metrics(inferer: Inferer, config, cases: list[VesselCase], threshold: float, prefix: str,
                 prepared: dict | None = None, watch: Stopwatch | None = None
                 ) -> tuple[pd.DataFrame, dict[str, float], dict[str, np.ndarray]]:
    """Per-image FOV metrics at 0.5 (``_at05``) and at ``threshold`` (``_opt``), their means as
    ``<prefix>/<metric>`` with 95% bootstrap CIs that resample patients (``_ci_low``,
    ``_ci_high``; ``<prefix>/ci_clusters`` of them: :func:`biodl.data.vessels.patient_of`), and the
    probability maps by image name. ``watch`` gets the seconds of tiled inference (phase
    ``tiled_inference``, in the manifest: a time is no metric, it differs on every rerun)."""
    d = config.data
    rows, probs = [], {}
    for c in cases:
        x = prepared[c.name] if prepared else prepare_fundus(c.image, d.channels, d.clahe)
        t0 = time.perf_counter()
        probs[c.name] = predict_map(inferer, x, d.tile, d.overlap)
        if watch is not None:
            watch.add("tiled_inference", time.perf_counter() - t0)
        rows.append({"image": c.name, **fov_scores(probs[c.name], c.mask, c.fov, {"_at05": 0.5, "_opt": threshold})})
    table = pd.DataFrame(rows)
    names = [k for k in table.columns if k != "image"]
    metrics = {f"{prefix}/{k}": float(table[k].mean()) for k in names}
    patients = np.array([patient_of(c.name) for c in cases])
    cis = bootstrap_cis(np.zeros(len(table)), table[names].to_numpy(np.float64),
                        lambda _, v: dict(zip(names, v.mean(axis=0), strict=True)), config.n_boot, groups=patients)
    for k, (lo, hi) in cis.items():
        metrics.update({f"{prefix}/{k}_ci_low": lo, f"{prefix}/{k}_ci_high": hi})
    metrics[f"{prefix}/ci_clusters"] = float(len(set(patients)))
    return table, metrics, probs


def _with_mean(table: pd.DataFrame) -> pd.DataFrame:
    mean = {"image": "mean", **{k: float(table[k].mean()) for k in table.columns if k != "image"}}
    return pd.concat([table, pd.DataFrame([mean])], ignore_index=True)


def write_test_report(run_dir: Path, inferer: Inferer, config, train_cases: list[VesselCase],
                      test_cases: list[VesselCase], prepared: dict, watch: Stopwatch | None = None
                      ) -> dict[str, float]:
    d = config.data
    train_probs = [predict_map(inferer, prepared[c.name], d.tile, d.overlap) for c in train_cases]
    t = f1_optimal_threshold(train_probs, [c.mask for c in train_cases], [c.fov for c in train_cases])
    table, metrics, probs = case_metrics(inferer, config, test_cases, t, "test", prepared, watch)
    metrics["threshold_f1_train"] = t
    cols = ["image", "roc_auc", "pr_auc", "f1_opt", "sensitivity_opt", "specificity_opt", "accuracy_opt", "f1_at05",
            "sensitivity_at05", "specificity_at05", "accuracy_at05"]
    write_table(_with_mean(table[cols]), run_dir / "test_per_image",
                f"Test images: FOV-only metrics (threshold {t:.3f}, F1-optimal on the training images; and 0.5)")
    human = [c for c in test_cases if c.second is not None]
    summary = [{"who": f"U-Net ({config.model.name})", **{k: metrics[f"test/{k}"] for k in cols[1:]}},
               {"who": f"its 95% CI ({metrics['test/ci_clusters']:.0f} patients resampled)",
                **{k: f"[{metrics[f'test/{k}_ci_low']:.3f}, {metrics[f'test/{k}_ci_high']:.3f}]" for k in cols[1:]}}]
    if human:
        h = pd.DataFrame([{"image": c.name, **fov_scores(c.second.astype(np.float64), c.mask, c.fov, {"_opt": 0.5})}
                          for c in human])
        write_table(_with_mean(h[["image", "roc_auc", "f1_opt", "sensitivity_opt", "specificity_opt", "accuracy_opt"]]),
                    run_dir / "human_per_image", "Second observer against the first (the human reference), FOV only")
        metrics.update({f"human/{k}": float(h[k].mean()) for k in ("roc_auc", "f1_opt", "sensitivity_opt",
                                                                   "specificity_opt", "accuracy_opt")})
        summary.append({"who": "second observer", **{k: metrics.get(f"human/{k}", np.nan) for k in cols[1:]}})
    write_table(pd.DataFrame(summary), run_dir / "test_summary",
                f"Mean over {len(test_cases)} test images, inside the FOV (_opt: threshold {t:.3f}; the observer's "
                f"mask is binary, so its ROC AUC is (sensitivity + specificity) / 2)")
    figures = []
    (run_dir / "test_maps").mkdir(exist_ok=True)
    for c in test_cases:
        _save_png(np.round(probs[c.name] * 255).astype(np.uint8), run_dir / "test_maps" / f"{c.name}_prob.png")
        figures.append(f"test_{c.name}.png")
        _case_figure(c, probs[c.name], t, run_dir / figures[-1])
    _fov_figure([*train_cases, *test_cases], run_dir / "fov.png")
    atomic_write_json(run_dir / runs.LAYOUT, {"sections": [
        {"title": "Vessel segmentation: test results", "items": ["test_summary", "test_per_image", "human_per_image"]},
        {"title": "Test images", "text": "Each: the fundus, the first observer's vessels, our probability map, and "
         "the errors at the chosen threshold inside the FOV (white: hit, red: false positive, blue: missed vessel; "
         "grey: outside the FOV).", "items": figures},
        {"title": "Fields of view", "text": "Derived from the red channel (threshold and morphology) where the data "
         "have no FOV masks; shaded: outside the FOV.", "items": ["fov.png"]}]})
    return metrics


def _save_png(a: np.ndarray, path: Path) -> None:
    from PIL import Image

    im = Image.fromarray(a)
    atomic_write(path, lambda p: im.save(p, format="PNG"))


def _case_figure(c: VesselCase, prob: np.ndarray, t: float, path: Path) -> None:
    from PIL import Image

    pred = prob >= t
    err = np.zeros((*prob.shape, 3), np.uint8)
    err[~c.fov] = 60
    err[c.fov & pred & c.mask] = 255
    err[c.fov & pred & ~c.mask] = (230, 40, 40)
    err[c.fov & ~pred & c.mask] = (40, 90, 255)
    panels = [c.image, np.repeat(c.mask[..., None] * 255, 3, -1).astype(np.uint8),
              np.repeat(np.round(prob * 255)[..., None], 3, -1).astype(np.uint8), err]
    h = round(PANEL * prob.shape[0] / prob.shape[1])
    strip = Image.new("RGB", (4 * PANEL, h), "white")
    for i, p in enumerate(panels):
        strip.paste(Image.fromarray(p).resize((PANEL, h), Image.BILINEAR), (i * PANEL, 0))
    atomic_write(path, lambda p: strip.save(p, format="PNG"))


def _fov_figure(cases: list[VesselCase], path: Path, side: int = 160, cols: int = 7) -> None:
    from PIL import Image

    rows = -(-len(cases) // cols)
    h = round(side * cases[0].image.shape[0] / cases[0].image.shape[1])
    grid = Image.new("RGB", (cols * side, rows * h), "white")
    for i, c in enumerate(cases):
        img = c.image.astype(np.float32)
        img[~c.fov] = img[~c.fov] * 0.3 + np.array([0, 90, 160]) * 0.7
        grid.paste(Image.fromarray(img.astype(np.uint8)).resize((side, h), Image.BILINEAR),
                   ((i % cols) * side, (i // cols) * h))
    atomic_write(path, lambda p: grid.save(p, format="PNG"))
