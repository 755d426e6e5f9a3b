"""Invasive ductal carcinoma (IDC) in breast histopathology patches, binary.

By default on the embedded patients (``idc``: 4,982 H&E patches of 50 x 50 from 10 whole
patients, Kaggle's ``<patient>/<0|1>/<patient>_idx5_x<X>_y<Y>_class<C>.png`` layout); ``--data``
takes any other patient tree, the workshop's X.npy/Y.npy folder, or the full Kaggle set.
Validation is by patient: 5-fold cross-validation grouped by patient (each fold a run in
``RUN_DIR/folds/``), the out-of-fold predictions pooled, and the CIs resample patients.
Patches keep their pixels (``data.fit: pad``): the 6 smaller edge crops are padded with white.

Model: a small ResNet (width 16, one block per stage), 10 epochs, flips, 90-degree rotations,
crops, brightness/contrast and H&E stain jitter (``data.stain_jitter: 0.05``). Chosen with
``benchmarks/histopathology_models.py`` on the folds' validation patients (never their test
patients) against the workshop's CancerCNN, the baseline arm (``--set model.name=cancer_cnn
--set model.args={}``: twice the time, lower validation and test AUC) and the same ResNet
without stain jitter (equal on validation, slightly lower out of fold).

Transfer learning: ``--set model.name=resnet18 --set model.pretrained=FILE`` (a torchvision
``resnet18-*.pth`` or a safetensors copy) or ``model.pretrained=imagenet`` (torchvision's file
in the torch hub cache; nothing is downloaded unless ``model.download=true``); its 1000-class
``fc`` layer is dropped and a new 2-class head is trained alone for ``model.freeze_epochs``
epochs (backbone frozen, its batch-norm statistics kept), then everything trains with the
backbone at ``lr x model.backbone_lr_factor``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

__all__ = ["NAME", "CONFIG", "EXPLAIN_PER_OUTCOME", "PUBLISHED", "run", "finish"]


NAME = "histopathology"

CONFIG: dict[str, Any] = {
    "name": NAME,
    "task": "image",
    "seed": 0,
    # 5-fold cross-validation by patient: every patient tested once, by a model that never saw it
    "data": {"dataset": "idc", "classes": ["no IDC", "IDC"], "fit": "pad", "batch_size": 64, "split": "kfold",
             "folds": 5, "stain_jitter": 0.05,
             # the slides were scanned at 40x and cut into patches after a 16:1 downsampling (2.5x): ~4 um/px
             "mpp": 4.0},
    "model": {"name": "resnet_small", "args": {"width": 16, "blocks": 1, "dropout": 0.2}, "freeze_epochs": 2,
              "backbone_lr_factor": 0.1},
    "optimizer": {"name": "adamw", "lr": 0.003, "weight_decay": 0.05},
    "scheduler": {"name": "cosine"},
    "trainer": {"epochs": 10, "monitor": "val/roc_auc", "mode": "max"},
}


#: attributions of this many out-of-fold true and this many false positives (the most confident)
EXPLAIN_PER_OUTCOME = 4

#: published results on the full set (162 slides), set beside ours for scale only (their tests used
#: 49 patients and far more training data; see datasets/histopathology_idc/SOURCE.md)
PUBLISHED = [("Cruz-Roa et al. 2014 (3-layer CNN; 113 train / 49 test slides)", 0.718, 0.842),
             ("Janowczyk & Madabhushi 2016 (AlexNet variant; same data)", 0.765, 0.847)]


def run(out: str | Path | None = None, overrides: list[str] | None = None, data: str | Path | None = None) -> Path:
    from . import run_config_study

    run_dir = run_config_study(CONFIG, NAME, out, overrides, data)
    finish(run_dir)
    return run_dir


def finish(run_dir: Path) -> None:
    """After the run (fresh or resumed): attributions (Grad-CAM and integrated gradients) of the
    most confident out-of-fold IDC true and false positives, each by the fold model that tested
    it (``explain/``, once); ``published.csv/.md``, our F1 (IDC) and balanced accuracy with their
    CIs beside the published rows, shown on screen; both in the report."""
    import pandas as pd

    from .. import runs
    from ..errors import BiodlError
    from ..interpret.explain import explain_run
    from ..report.run_report import build_report
    from ..report.tables import print_table, write_table

    if not (run_dir / "explain" / "explain.json").is_file():
        try:
            explain_run(run_dir, methods="gradcam,ig", pick="tp,fp", n=EXPLAIN_PER_OUTCOME)
        except BiodlError as exc:  # e.g. --data of one class: no true or false positive to explain
            if exc.where != "--pick":
                raise
            warnings.warn(f"{run_dir}: no attributions: {exc.problem}", stacklevel=2)
    m = runs.read_metrics(run_dir / runs.METRICS)

    def cell(key: str) -> str:
        v, lo, hi = m.get(f"test/{key}"), m.get(f"test/{key}_ci_low"), m.get(f"test/{key}_ci_high")
        return "undefined" if v is None else f"{v:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else "")

    unit = f", CIs over {m['test/ci_clusters']:.0f} patients" if m.get("test/ci_clusters") else ""
    rows = [{"": f"biodl, this run (out of fold{unit})", "F1 (IDC)": cell("f1"),
             "balanced accuracy": cell("balanced_accuracy")}]
    rows += [{"": who, "F1 (IDC)": f"{f1:.3f}", "balanced accuracy": f"{ba:.3f}"} for who, f1, ba in PUBLISHED]
    table = pd.DataFrame(rows)
    write_table(table, run_dir / "published", "Beside the published results, for scale only",
                "They trained on 113 of 162 patients' slides; this run has 10 patients in all.")
    print_table(table, "IDC: this run and the published results (for scale)")
    layout = runs.read_json(run_dir / runs.LAYOUT) if (run_dir / runs.LAYOUT).is_file() else {"sections": []}
    layout["sections"] = [s for s in layout.get("sections", []) if s.get("title") != "Published, for scale"]
    layout["sections"].insert(0, {"title": "Published, for scale", "items": ["published"]})
    build_report(run_dir, layout)
