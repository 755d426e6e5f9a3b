"""Train/validation/test splits."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from ..errors import DataError


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int, where: str = "data"
) -> dict[str, np.ndarray]:
    """Stratified train/val/test indices (sorted) with class proportions kept in each part.

    ``labels``: (N,) integer class labels. Returns ``{"train", "val", "test"}`` index arrays.
    """
    labels = np.asarray(labels)
    n = len(labels)
    idx = np.arange(n)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise DataError(where, f"only one class present ({classes.tolist()}); a classifier needs two or more")
    if counts.min() < 3:
        rare = classes[counts.argmin()]
        raise DataError(where, f"class {rare!r} has {counts.min()} rows; a stratified split needs at least 3")
    try:
        rest, test = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=seed)
        train, val = train_test_split(
            rest, test_size=val_fraction / (1.0 - test_fraction), stratify=labels[rest], random_state=seed
        )
    except ValueError as exc:  # too few rows for the requested fractions
        raise DataError(where, f"cannot split {n} rows: {exc}") from None
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}
