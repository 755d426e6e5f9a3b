"""Tabular data: validated CSV reading and the preprocessing saved with a model.

The checks are the ones a clinical table needs before any model sees it:
required columns present, numeric columns numeric, no blanks, binary columns
in {0, 1}. Each fault names the file, the column and the first offending rows
(as line numbers of the file, the header being line 1).
"""

from __future__ import annotations

import csv
import gzip
import difflib
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, path_problem
from ..io import check_gzip

__all__ = ["read_csv", "closest_column", "numeric_columns", "TabularPreprocessor", "load_table", "feature_dataset"]


_SHOW = 5  # offending rows named in an error


def _lines(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(r + 2) for r in rows[:_SHOW])  # +1 for 1-based, +1 for the header line
    more = f" and {len(rows) - _SHOW} more" if len(rows) > _SHOW else ""
    return f"line{'s' if len(rows) > 1 else ''} {shown}{more}"


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read a CSV as text cells (nothing coerced yet); every failure is a DataError."""
    path = Path(path)
    problem = path_problem(path)
    if problem or not path.is_file():
        raise DataError(path, problem or "not a file")
    gz = path.name.endswith(".gz")
    if gz:
        check_gzip(path, DataError)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(path, "empty file (no header row)") from None
    except pd.errors.ParserError as exc:
        detail = str(exc).strip().splitlines()[-1]
        raise DataError(path, f"malformed CSV: {detail}") from None
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        why = "not a UTF-8 text CSV (binary file?)" if isinstance(exc, UnicodeDecodeError) else \
            f"cannot be read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        raise DataError(path, why) from None
    if df.empty:
        raise DataError(path, "no data rows")
    opener = gzip.open if gz else open
    with opener(path, "rt", newline="", encoding="utf-8-sig") as f:  # pandas renames duplicates (a, a.1)
        header = [c.strip() for c in next(csv.reader(f))]
    dup = sorted({c for c in header if header.count(c) > 1 and c})
    if dup:
        raise DataError(path, f"duplicated column names: {', '.join(dup)}")
    df.columns = [str(c).strip() for c in df.columns]
    return _drop_saved_index(df, header, path)


def _drop_saved_index(df: pd.DataFrame, header: list[str], path: Path) -> pd.DataFrame:
    """Drop a column without a name (or named ``Unnamed: N`` by an earlier pandas round trip) that
    holds distinct whole numbers: a row index that ``DataFrame.to_csv`` wrote. Kept, it would be a
    feature carrying the file's row order (which can leak the outcome). Another nameless column
    is an error."""
    for j, raw in enumerate(header[: df.shape[1]]):
        if raw and not re.fullmatch(r"Unnamed: \d+", raw):
            continue
        col = df.columns[j]
        text = df[col].str.strip()
        rest = header[:j] + header[j + 1:]
        if (text == "").all():  # e.g. a trailing comma on every line: an empty column, nothing to keep
            return _drop_saved_index(df.drop(columns=col), rest, path)
        label = f"column {j + 1} ({'no name' if not raw else repr(raw)})"
        values = pd.to_numeric(text, errors="coerce")
        if not (text.str.fullmatch(r"\d{1,15}").all() and values.is_unique):
            raise DataError(path, f"{label} has no real name; name it or remove it")
        warnings.warn(f"{path}: {label} holds distinct row numbers ({int(values.min())}..{int(values.max())}), an "
                      "index that pandas saved with the table; dropped (as a feature it would carry the row order)",
                      stacklevel=3)
        return _drop_saved_index(df.drop(columns=col), rest, path)
    return df


def closest_column(name: str, columns: list[str]) -> str:
    """`` (did you mean 'X'?)`` for the column most like ``name`` (case first), else ``""``."""
    same = [c for c in columns if c.lower() == name.lower()]
    close = same or difflib.get_close_matches(name, columns, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def numeric_columns(
    df: pd.DataFrame, columns: list[str], path: str | Path, binary: list[str] = ()
) -> np.ndarray:
    """Columns as a float64 (N, len(columns)) array, validated; raises DataError naming the fault."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(path, f"missing column{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    out = np.empty((len(df), len(columns)), dtype=np.float64)
    for j, col in enumerate(columns):
        text = df[col].astype(str).str.strip()
        blank = (text == "").to_numpy()
        if blank.any():
            raise DataError(path, f"column '{col}': blank value at {_lines(blank)}")
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            first = text.to_numpy()[bad][0]
            raise DataError(path, f"column '{col}': not a number at {_lines(bad)} (e.g. {first!r})")
        if col in binary:
            notbin = ~np.isin(values, (0.0, 1.0))
            if notbin.any():
                raise DataError(
                    path, f"column '{col}': must be 0 or 1, found {values[notbin][0]:g} at {_lines(notbin)}"
                )
        out[:, j] = values
    return out


@dataclass
class TabularPreprocessor:
    """Feature selection and standardisation, fitted on the training rows only.

    Saved as JSON next to the model, so that ``predict`` applies exactly the
    transformation the model was trained with.
    """

    features: list[str]
    binary: list[str]
    target: str
    mean: list[float]
    std: list[float]
    classes: list[str]
    pos_weight: float | None = None  # loss weight of class 1 (n_neg / n_pos in training), None = unweighted

    @classmethod
    def fit(
        cls, x: np.ndarray, features: list[str], binary: list[str], target: str, standardize: bool,
        y: np.ndarray | None = None,
    ) -> "TabularPreprocessor":
        """``x``: (N, F) training features, ``y``: (N,) their labels (sets ``pos_weight``).
        Binary columns are left as 0/1."""
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        for j, col in enumerate(features):
            if not standardize or col in binary:
                mean[j], std[j] = 0.0, 1.0
            elif std[j] == 0:
                std[j] = 1.0  # a constant column stays constant (zero after centring)
        pos_weight = None
        if y is not None and 0 < y.sum() < len(y):
            pos_weight = float((len(y) - y.sum()) / y.sum())
        return cls(features, list(binary), target, mean.tolist(), std.tolist(), ["0", "1"], pos_weight)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(N, F) raw values -> (N, F) float32 model inputs."""
        return ((x - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    def features_from(self, df: pd.DataFrame, path: str | Path) -> np.ndarray:
        """Validated, transformed (N, F) inputs from a table holding at least ``features``."""
        return self.transform(numeric_columns(df, self.features, path, self.binary))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TabularPreprocessor":
        return cls(**d)


def load_table(
    path: str | Path,
    target: str,
    features: list[str] | None,
    drop: list[str],
    binary: list[str],
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a labelled CSV: (N, F) float64 features, (N,) int64 labels in {0, 1}, feature names."""
    df = read_csv(path)
    columns = list(df.columns)
    if target not in df.columns:
        raise DataError(path, f"missing column: {target} (the target, data.target){closest_column(target, columns)}")
    for key, names in (("features", features or []), ("binary", binary), ("drop", drop)):
        missing = [c for c in names if c not in columns]
        if missing:  # a typo must not pass silently: in drop it would keep a leaking column
            raise DataError(path, f"missing column{'s' if len(missing) > 1 else ''}: {', '.join(missing)}"
                                  f"{closest_column(missing[0], columns)}, named in data.{key}; the columns are: "
                                  f"{', '.join(columns)}")
    if features is None:
        features = [c for c in df.columns if c != target and c not in drop]
    else:
        overlap = [c for c in features if c == target or c in drop]
        if overlap:
            raise DataError(path, f"columns both used and excluded: {', '.join(overlap)}")
    if not features:
        raise DataError(path, "no feature columns left")
    y = numeric_columns(df, [target], path, binary=[target])[:, 0].astype(np.int64)
    x = numeric_columns(df, features, path, binary=[c for c in binary if c in features])
    return x, y, features


def feature_dataset(x: np.ndarray, y: np.ndarray | None = None):
    """(N, F) features and (N,) labels as a ``TensorDataset`` of float32 and int64 tensors (the
    labels 0 when ``y`` is None: prediction)."""
    import torch  # here: reading and checking a table needs no torch
    from torch.utils.data import TensorDataset

    xs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    ys = torch.from_numpy(y.astype(np.int64)) if y is not None else torch.zeros(len(xs), dtype=torch.int64)
    return TensorDataset(xs, ys)
