"""Data loading, validation, caching and splits."""

from .arrays import ImageDataset, ImageSet, load_npy_pair, load_npz
from .cache import cached
from .folders import load_csv_images, load_image_folder, load_patient_tree
from .splits import cross_split_duplicates, grouped_split, stratified_split
from .tabular import TabularPreprocessor, load_table, numeric_columns, read_csv

__all__ = [
    "ImageDataset", "ImageSet", "load_npy_pair", "load_npz", "load_image_folder", "load_patient_tree",
    "load_csv_images", "cached", "cross_split_duplicates", "grouped_split", "stratified_split",
    "TabularPreprocessor", "load_table", "numeric_columns", "read_csv",
]
