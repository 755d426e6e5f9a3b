"""Train/validation/test splits."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from ..errors import DataError


__all__ = ["stratified_split", "grouped_split", "kfold_splits", "cross_split_duplicates"]


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int, where: str = "data",
    names: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Stratified train/val/test indices (sorted) with class proportions kept in each part.

    ``labels``: (N,) integer class labels (``names``: their class names, for messages).
    Returns ``{"train", "val", "test"}`` index arrays.
    """
    labels = np.asarray(labels)
    n = len(labels)
    idx = np.arange(n)
    classes, counts = np.unique(labels, return_counts=True)
    def name(k) -> str:
        return repr(names[int(k)]) if names is not None and 0 <= int(k) < len(names) else str(int(k))

    if len(classes) < 2:
        raise DataError(where, f"only one class present ({', '.join(map(name, classes))}); a classifier needs two "
                               "or more")
    if counts.min() < 3:
        rare = classes[counts.argmin()]
        raise DataError(where, f"class {name(rare)} has {counts.min()} "
                               f"{'row' if counts.min() == 1 else 'rows'}; a stratified split needs at least 3")
    try:
        rest, test = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=seed)
        train, val = train_test_split(
            rest, test_size=val_fraction / (1.0 - test_fraction), stratify=labels[rest], random_state=seed
        )
    except ValueError as exc:  # too few rows for the requested fractions
        raise DataError(where, f"cannot split {n} rows: {exc}") from None
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def grouped_split(labels: np.ndarray, groups: np.ndarray, val_fraction: float, test_fraction: float, seed: int,
                  where: str = "data") -> dict[str, np.ndarray]:
    """Train/val/test indices with every group (patient) in exactly one part, classes balanced
    as far as the groups allow (scikit-learn's StratifiedGroupKFold)."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels, groups = np.asarray(labels), np.asarray(groups)
    n_groups = len(np.unique(groups))
    k_test = max(2, round(1 / test_fraction))
    if n_groups < k_test + 1:
        raise DataError(where, f"{n_groups} patients are too few for a patient-grouped split")
    idx = np.arange(len(labels))
    rest, test = next(StratifiedGroupKFold(k_test, shuffle=True, random_state=seed).split(idx, labels, groups))
    rest_groups = len(np.unique(groups[rest]))
    if rest_groups < 2:
        raise DataError(where, f"{n_groups} patients are too few for a patient-grouped split: {rest_groups} left "
                               "for training and validation")
    k_val = min(max(2, round((1 - test_fraction) / val_fraction)), rest_groups)  # one group each at the least
    tr, va = next(StratifiedGroupKFold(k_val, shuffle=True, random_state=seed).split(rest, labels[rest], groups[rest]))
    return {"train": np.sort(rest[tr]), "val": np.sort(rest[va]), "test": np.sort(test)}


def kfold_splits(labels: np.ndarray, groups: np.ndarray | None, k: int, val_fraction: float, seed: int,
                 where: str = "data", val_by_group: bool = True, unit: str = "patients") -> list[dict[str, np.ndarray]]:
    """``k`` folds of train/val/test indices (sorted): every sample is in the test part of exactly
    one fold; with ``groups`` (patients; ``unit`` names them in errors) the folds are
    StratifiedGroupKFold's, so no group is in two parts of a fold, and the validation part
    (``val_fraction`` of the rest) is grouped too unless ``val_by_group`` is off (then it is
    stratified over the rest's samples: for few groups, e.g. plates, that would each be too
    large a share); classes are stratified as far as the groups allow."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    labels = np.asarray(labels)
    idx = np.arange(len(labels))
    if groups is not None:
        groups = np.asarray(groups)
        n_groups = len(np.unique(groups))
        if n_groups < k:
            raise DataError(where, f"{n_groups} {unit} are fewer than the {k} folds (data.folds); every fold "
                                   f"needs test {unit} of its own")
        outer = StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(idx, labels, groups)
    else:
        _, counts = np.unique(labels, return_counts=True)
        if counts.min() < k:
            raise DataError(where, f"a class has {counts.min()} rows, fewer than the {k} folds (data.folds)")
        outer = StratifiedKFold(k, shuffle=True, random_state=seed).split(idx, labels)
    folds = []
    for rest, test in outer:
        try:
            if groups is not None and val_by_group:
                k_val = min(max(2, round(1 / val_fraction)), len(np.unique(groups[rest])))
                tr, va = next(StratifiedGroupKFold(k_val, shuffle=True, random_state=seed).split(
                    rest, labels[rest], groups[rest]))
                train, val = rest[tr], rest[va]
            else:
                train, val = train_test_split(rest, test_size=val_fraction, stratify=labels[rest], random_state=seed)
        except ValueError as exc:  # scikit-learn's word for too few of a class to stratify
            raise DataError(where, f"too few {unit if groups is not None else 'rows'} of a class to carve a "
                                   f"validation part from a fold's training part ({exc})") from None
        folds.append({"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)})
    return folds


def cross_split_duplicates(images: np.ndarray, parts: dict[str, np.ndarray]) -> list[tuple[int, int, str, str]]:
    """Exact duplicate images that sit in two different parts: (i, j, part_i, part_j) pairs.

    ``images``: (N, ...) arrays; ``parts``: part name -> indices. Each image is hashed once."""
    import hashlib

    seen: dict[bytes, tuple[int, str]] = {}
    found = []
    for name, idx in parts.items():
        idx = np.asarray(idx)
        for start in range(0, len(idx), 256):  # a block of images at a time (also from a cache on disk)
            rows = idx[start:start + 256]
            block = np.asarray(images[rows])
            for i, img in zip(rows, block, strict=True):
                key = hashlib.sha1(np.ascontiguousarray(img).tobytes()).digest()
                if key in seen and seen[key][1] != name:
                    found.append((seen[key][0], int(i), seen[key][1], name))
                seen.setdefault(key, (int(i), name))
    return found
