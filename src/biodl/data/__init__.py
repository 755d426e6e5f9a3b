"""Data loading, validation, caching and splits.

Names load on first use, so that a part that needs no torch (whole-slide tiling into the cache,
``biodl wsi tile``) does not import it: a CUDA build of torch alone holds about 500 MB.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ImageDataset": "arrays", "ImageSet": "arrays", "load_npy_pair": "arrays", "load_npz": "arrays",
    "cached": "cache",
    "load_csv_images": "folders", "load_image_folder": "folders", "load_patient_tree": "folders",
    "cross_split_duplicates": "splits", "grouped_split": "splits", "stratified_split": "splits",
    "TabularPreprocessor": "tabular", "load_table": "tabular", "numeric_columns": "tabular", "read_csv": "tabular",
    "feature_dataset": "tabular",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'biodl.data' has no attribute {name!r}")
