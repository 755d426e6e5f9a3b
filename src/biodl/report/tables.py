"""Tables written side by side as CSV (for analysis) and Markdown (for reading)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_write_text


__all__ = ["md_text", "to_markdown", "write_table", "compare_with_published", "print_table", "summary_table"]


#: characters that would make Markdown of a text that is not Markdown (a class name, a feature)
#: (``_`` is left alone: GitHub's Markdown ignores it inside a word, as in metric names; brackets
#: make a link only as ``](``, which is escaped, so a CI's ``[0.1, 0.3]`` stays as it is)
_MARKDOWN = str.maketrans({c: "\\" + c for c in "\\`*<>|"} | {"\n": " ", "\r": " "})


def md_text(text: object) -> str:
    """``text`` as literal Markdown: a user's class or feature name (``**a**``, ``<img>``, a
    ``|``) is shown as written, never as formatting, a link, HTML or a table cell's end."""
    return str(text).translate(_MARKDOWN).replace("](", "\\](")


def to_markdown(df: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table; floats rounded to ``digits``; text cells literal (see
    :func:`md_text`)."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return "" if pd.isna(v) else f"{v:.{digits}f}"
        return md_text(v)

    head = "| " + " | ".join(map(md_text, df.columns)) + " |"
    rule = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(df[c]) else "---" for c in df.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows]) + "\n"


def write_table(df: pd.DataFrame, path_stem: str | Path, title: str | None = None, note: str | None = None) -> None:
    """Write ``<stem>.csv`` and ``<stem>.md`` atomically. As in biodl's JSON, no cell is NaN or
    infinite: an undefined or unbounded number is an empty cell (a caller that means something
    by it, e.g. a median survival "not reached", writes those words itself)."""
    stem = Path(path_stem)
    df = df.replace([np.inf, -np.inf], np.nan)
    atomic_write_text(stem.with_suffix(".csv"), df.to_csv(index=False))
    md = (f"# {title}\n\n" if title else "") + (f"{note}\n\n" if note else "") + to_markdown(df)
    atomic_write_text(stem.with_suffix(".md"), md)


def compare_with_published(summaries: dict[str, dict[str, float]], published: dict[str, dict[str, float]],
                           metrics: dict[str, str], aliases: dict[str, dict[str, str]] | None = None
                           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Our means and 95% CIs beside published means.

    ``summaries``: method -> ``{metric}_mean/_ci_low/_ci_high`` (see ``HoldoutResult.summary``);
    ``published``: method -> ``{"label": ..., metric: value}``; ``metrics``: key -> column title.
    Returns a long table (one row per method and metric, with ``paper_in_ci``) and a wide one
    for reading (one row per method; a cell reads ``0.344 [0.321, 0.367]``, the paper's value
    is marked ``in`` or ``OUT`` of our interval). ``aliases[method][metric]`` names another of
    our metrics to set beside the paper's (when the paper computed that one differently);
    such cells are marked with ``*``.
    """
    long_rows, wide_rows = [], []
    for name, pub in published.items():
        s = summaries[name]
        wide = {"method": pub["label"]}
        inside_count = 0
        for key, title in metrics.items():
            ours = (aliases or {}).get(name, {}).get(key, key)
            mean, lo, hi, paper = s[f"{ours}_mean"], s[f"{ours}_ci_low"], s[f"{ours}_ci_high"], pub[key]
            inside = bool(lo <= paper <= hi)
            inside_count += inside
            long_rows.append({"method": pub["label"], "key": name, "metric": title, "ours": ours, "mean": mean,
                              "ci_low": lo, "ci_high": hi, "paper": paper, "paper_in_ci": inside})
            cell = f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]" if key == "mcc" else f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"
            wide[title] = cell + ("*" if ours != key else "")
            wide[f"paper {title}"] = f"{paper:.3f} {'in' if inside else 'OUT'}"
        wide["paper inside our CI"] = f"{inside_count}/{len(metrics)}"
        wide_rows.append(wide)
    return pd.DataFrame(long_rows), pd.DataFrame(wide_rows)


def print_table(df: pd.DataFrame, title: str) -> None:
    """Show a table in the terminal (rich)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for col in df.columns:
        table.add_column(str(col), justify="left" if df[col].dtype == object else "right")
    for row in df.itertuples(index=False):
        table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    Console(width=200).print(table)


def summary_table(labels: dict[str, str], summaries: dict[str, dict[str, float]],
                  metrics: dict[str, str]) -> pd.DataFrame:
    """One row per method (``labels``: key -> name): the mean of each metric and the MCC's 95% CI."""
    rows = []
    for key, label in labels.items():
        s = summaries[key]
        rows.append({"method": label, **{title: s[f"{m}_mean"] for m, title in metrics.items()},
                     "MCC CI": f"[{s['mcc_ci_low']:+.3f}, {s['mcc_ci_high']:+.3f}]"})
    return pd.DataFrame(rows)
