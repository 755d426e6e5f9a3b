"""``biodl predict RUN_DIR INPUT``: a trained run's predictions of new data, written whole.

- Runs with one probability per class (image, tabular): a CSV (default
  ``RUN_DIR/predictions/<input name>.csv``), one row per case: what identifies it (the image
  file; a table's own columns), then the predictor's columns (``p_<class>``, ``raw_p_<class>``,
  ``predicted``, ``set``, ``entropy``, ``mutual_information``).
- Runs with a probability per pixel (segmentation): a folder (default
  ``RUN_DIR/predictions/<input name>/``) with ``<image>_prob.png`` (probability x 255) and
  ``<image>_mask.png`` (at the run's threshold, inside the field of view) per image,
  ``predictions.csv`` (one row per image) and ``threshold.json``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import runs
from ..io import atomic_folder, atomic_write_json, atomic_write_text
from ..tasks.common import refuse_overwrite
from .predictor import MapPredictor, Predictor

__all__ = ["write_predictions"]


def write_predictions(predictor: Predictor, inputs: str | Path, out: str | Path | None = None,
                      overwrite: bool = False) -> Path:
    """Predict ``inputs`` (a file or folder) with ``predictor`` into ``out`` (see the module
    docstring); an existing output is refused without ``overwrite``, and every input is read and
    checked before anything is written. Returns the file or folder written."""
    inputs = Path(inputs)
    maps = isinstance(predictor, MapPredictor)
    default = predictor.run_dir / runs.PREDICTIONS / (inputs.stem if maps else f"{inputs.stem}.csv")
    out = Path(out) if out is not None else default
    refuse_overwrite(out, overwrite, folder=maps)
    if not maps:
        table = predictor.predict(inputs)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, table.to_csv(index=False, float_format="%.8g"))
        return out
    from PIL import Image

    found, probs, masks = predictor.predict_maps(inputs)
    table = predictor.summarise(found, probs, masks)
    with atomic_folder(out, exists="replace") as folder:
        for name, prob, mask in zip(found.ids["image"], probs, masks, strict=True):
            Image.fromarray(np.round(prob * 255).astype(np.uint8)).save(folder / f"{name}_prob.png", format="PNG")
            Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{name}_mask.png", format="PNG")
        atomic_write_text(folder / "predictions.csv", table.to_csv(index=False, float_format="%.8g"))
        atomic_write_json(folder / "threshold.json", {"threshold": predictor.threshold,
                                                      "source": "F1-optimal on the training images"})
    return out
