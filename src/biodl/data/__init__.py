"""Data loading, validation and splits."""

from .splits import stratified_split
from .tabular import TabularPreprocessor, load_table, numeric_columns, read_csv

__all__ = ["stratified_split", "TabularPreprocessor", "load_table", "numeric_columns", "read_csv"]
