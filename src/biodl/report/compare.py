"""Runs side by side: one column per run, one row per setting and metric (``biodl compare``)."""

from __future__ import annotations

import math
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pandas as pd

from .. import runs
from ..errors import BiodlError, RunDirError
from ..io import atomic_write_text, check_writable
from . import html as h
from .tables import to_markdown

__all__ = ["LOWER_IS_BETTER", "compare_runs", "write_comparison"]


LOWER_IS_BETTER = ("loss", "ece")


def _load(run_dir: Path) -> tuple[dict[str, Any], dict[str, float]]:
    if not run_dir.is_dir():
        raise RunDirError(run_dir, "no such run directory")
    for name in (runs.MANIFEST, runs.METRICS):
        if not (run_dir / name).is_file():
            raise RunDirError(run_dir, f"not a finished run directory (no {name})")
    return runs.read_manifest(run_dir), runs.read_metrics(run_dir / runs.METRICS)


def _ci_keys(key: str) -> tuple[str, str]:
    """``test/roc_auc`` -> ``test/roc_auc_ci_low/high``; a study's ``rf/mcc_mean`` -> ``rf/mcc_ci_low/high``."""
    base = key[: -len("_mean")] if key.endswith("_mean") else key
    return f"{base}_ci_low", f"{base}_ci_high"


def compare_runs(run_dirs: list[Path], patterns: list[str] | None = None
                 ) -> tuple[pd.DataFrame, dict[str, list[float | None]]]:
    """A table with one column per run: who each run is (name, task, model, seed, data hash, git
    commit, epochs), then each metric matching ``patterns`` (globs; default ``test/*`` when any run
    has test metrics, else every metric), as ``value [CI low, CI high]`` when a CI was saved.
    Also returns metric row -> the values (None where a run lacks the metric), for highlighting."""
    loaded = [(d, *_load(d)) for d in run_dirs]
    all_keys = sorted({k for _, _, m in loaded for k in m if "_ci_" not in k})
    if not patterns:
        patterns = ["test/*"] if any(k.startswith("test/") for k in all_keys) else ["*"]
    keys = [k for k in all_keys if any(fnmatch(k, p) for p in patterns)]
    if not keys:
        raise BiodlError("--metrics", f"no metric of these runs matches {', '.join(patterns)}")
    names = _column_names(run_dirs)
    rows: list[dict[str, Any]] = []
    for label, get in (
        ("name", lambda man: (man.get("config") or {}).get("name")),
        ("task", lambda man: (man.get("config") or {}).get("task", "study")),
        ("model", lambda man: ((man.get("config") or {}).get("model") or {}).get("name")),
        ("seed", lambda man: man.get("seed")),
        ("data sha256", lambda man: _data_hash(man)),
        ("git commit", lambda man: _commit(man)),
        ("finished", lambda man: man.get("finished") or "not finished"),
    ):
        rows.append({"": label, **{n: "" if get(man) is None else str(get(man)) for n, (_, man, _) in
                                   zip(names, loaded, strict=True)}})
    for label in ("epochs_trained", "best_epoch"):
        if any(label in m for _, _, m in loaded):
            rows.append({"": label.replace("_", " "), **{n: f"{m[label]:.0f}" if m.get(label) is not None else ""
                                                         for n, (_, _, m) in zip(names, loaded, strict=True)}})
    values: dict[str, list[float | None]] = {}
    for key in keys:
        lo_key, hi_key = _ci_keys(key)
        cells = {}
        for n, (_, _, m) in zip(names, loaded, strict=True):
            v = m.get(key)
            lo, hi = m.get(lo_key), m.get(hi_key)
            cells[n] = ("" if key not in m else "undefined" if v is None else
                        f"{v:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else f"{v:.4g}")
        values[key] = [m.get(key) for _, _, m in loaded]
        rows.append({"": key, **cells})
    return pd.DataFrame(rows), values


def _column_names(run_dirs: list[Path]) -> list[str]:
    """Each run's folder name, or its path where two names clash."""
    names = [d.name for d in run_dirs]
    return [str(d) if names.count(d.name) > 1 else d.name for d in run_dirs]


def _data_hash(manifest: dict[str, Any]) -> str | None:
    data = (manifest.get("inputs") or {}).get("data")
    digest = data.get("sha256") if isinstance(data, dict) else manifest.get("data_content_sha256")
    return digest[:12] if digest else None


def _best_cells(table: pd.DataFrame, values: dict[str, list[float | None]]) -> dict[int, set[int]]:
    """Row position -> column positions of the best value (highest; lowest for loss and ECE)."""
    out: dict[int, set[int]] = {}
    for i, key in enumerate(table[""]):
        vals = values.get(key)
        finite = [v for v in (vals or []) if v is not None and not math.isnan(v)]
        if len(finite) < 2 or len(set(finite)) == 1:
            continue
        best = min(finite) if key.rsplit("/", 1)[-1].startswith(LOWER_IS_BETTER) else max(finite)
        out[i] = {j + 1 for j, v in enumerate(vals) if v == best}
    return out


def write_comparison(run_dirs: list[Path], out: Path, patterns: list[str] | None = None,
                     overwrite: bool = False) -> tuple[pd.DataFrame, list[Path]]:
    """Write ``<out>.md`` and ``<out>.html`` (best value per metric row in bold); refuses to
    replace them unless ``overwrite``. Returns the table and the two paths."""
    if len(run_dirs) < 2:
        raise BiodlError("compare", "give two or more run directories")
    stem = out.with_suffix("") if out.suffix in (".md", ".html") else out
    paths = [stem.with_name(stem.name + ".md"), stem.with_name(stem.name + ".html")]
    for p in paths:
        if p.is_dir():
            raise RunDirError(p, "is a folder; --out takes a file stem (writes STEM.md and STEM.html)")
        if p.exists() and not overwrite:
            raise RunDirError(p, "exists; pass --overwrite to replace it")
        check_writable(p, "--out")
    table, values = compare_runs(run_dirs, patterns)
    tasks = set(table.iloc[1, 1:]) if len(table) > 1 else set()
    same = len(tasks) == 1  # "best" across runs of different tasks (or data) compares unlike with unlike
    note = ("Cells: value [95% CI] where the run saved a CI. "
            + ("Bold (HTML): the best value in the row." if same else "No value is marked best: the runs are of "
               "different tasks."))
    atomic_write_text(paths[0], f"# Runs compared\n\n{note}\n\n{to_markdown(table)}")
    sources = h.key_values([(n, d.resolve()) for n, d in zip(_column_names(run_dirs), run_dirs, strict=True)])
    bold = _best_cells(table, values) if same else {}
    atomic_write_text(paths[1], h.page("Runs compared", f"{len(run_dirs)} runs", [
        h.Section("table", "Side by side", h.para(note, "note") + h.table(table, bold=bold)),
        h.Section("runs", "Run directories", sources)]))
    return table, paths


def _commit(manifest: dict[str, Any]) -> str:
    git = manifest.get("git") or {}
    return (git.get("commit") or "")[:10] + (" (dirty)" if git.get("dirty") else "")
