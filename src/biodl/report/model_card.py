"""``model_card.md``: a run's model card (Mitchell et al. 2019, "Model Cards for Model
Reporting"), written from the run's saved files only (config, manifest, metrics, preprocessing,
calibration, per-class results), so ``biodl report`` rebuilds it and it never says more than the
run recorded. A study adds its own caveats through ``manifest["note"]`` or a ``MODEL_CARD.md``
beside its embedded data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from .. import runs
from ..datasets import EMBEDDED, embedded_path
from ..io import sha256_file
from .tables import md_text, to_markdown

__all__ = ["model_card"]

#: the test metrics shown, with their names in the card
SHOWN = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "roc_auc": "ROC AUC",
         "pr_auc": "PR AUC", "mcc": "MCC", "f1": "F1", "sensitivity": "sensitivity", "specificity": "specificity",
         "precision": "precision (PPV)", "npv": "NPV", "qwk": "quadratic weighted kappa", "macro_f1": "macro F1",
         "brier": "Brier score", "nll": "log loss", "ece": "expected calibration error",
         "f1_opt": "F1 (at the F1-optimal threshold of training)", "sensitivity_opt": "sensitivity (same threshold)",
         "specificity_opt": "specificity (same threshold)"}
#: summary quantities of a study's models (``<model>/<quantity>_mean``) shown in its card
STUDY_QUANTITIES = ("mcc", "roc_auc", "f1", "accuracy", "macro_f1", "balanced_accuracy",
                    "c_index")


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _clusters(metrics: dict[str, float]) -> str:
    n = metrics.get("test/ci_clusters")
    return f" over {int(n)} patients (patients resampled)" if n else " over test cases"


def _study_table(metrics: dict[str, float], limit: int = 40) -> str:
    """A study's per-model summaries: ``<model>/<quantity>_mean`` with its CI bounds."""
    rows = []
    for key in sorted(metrics):
        if not key.endswith("_mean") or "/" not in key:
            continue
        stem = key[: -len("_mean")]
        if stem.rsplit("/", 1)[-1] not in STUDY_QUANTITIES:
            continue
        low = metrics.get(f"{stem}_low", metrics.get(f"{stem}_ci_low"))
        high = metrics.get(f"{stem}_high", metrics.get(f"{stem}_ci_high"))
        rows.append({"model / quantity": stem, "mean": _fmt(metrics[key]),
                     "95% CI": f"[{_fmt(low)}, {_fmt(high)}]" if low is not None else "not computed"})
    if not rows:
        return "No test metrics were recorded for this run."
    more = f"\n\n({len(rows) - limit} more in metrics.json)" if len(rows) > limit else ""
    return to_markdown(pd.DataFrame(rows[:limit])) + more


def _metrics_table(metrics: dict[str, float]) -> str:
    rows = []
    for key, name in SHOWN.items():
        v = metrics.get(f"test/{key}")
        if v is None:
            continue
        low, high = metrics.get(f"test/{key}_ci_low"), metrics.get(f"test/{key}_ci_high")
        rows.append({"metric": name, "value": _fmt(v), "95% CI": f"[{_fmt(low)}, {_fmt(high)}]" if low is not None
                     else "not computed"})
    for key, name in (("human/f1_opt", "F1"), ("human/roc_auc", "ROC AUC")):  # a second observer, if any
        if key in metrics:
            rows.append({"metric": f"second observer: {name}", "value": _fmt(metrics[key]), "95% CI": "-"})
    return to_markdown(pd.DataFrame(rows)) if rows else _study_table(metrics)


def _data_source(config: dict[str, Any], manifest: dict[str, Any]) -> tuple[list[str], str]:
    """(lines on where the data came from, the licence line)."""
    data = config.get("data") or {}
    name = data.get("dataset") or _embedded_input(manifest)
    lines = []
    if name in EMBEDDED:
        where = embedded_path(name)
        folder = where.parent.name if where.is_file() else where.name
        lines.append(f"- Embedded data set `{name}`: {EMBEDDED[name][1]} (see `datasets/{folder}/SOURCE.md` in the "
                     "package).")
        licence = (f"As stated for the embedded data set: {EMBEDDED[name][1].rsplit(', ', 1)[-1]}; its SOURCE.md has "
                   "the citation and the conditions.")
    else:
        licence = "Your own data: its licence was not recorded by biodl; state it here before sharing the model."
    for role, info in (manifest.get("inputs") or {}).items():
        if isinstance(info, dict) and info.get("sha256"):
            lines.append(f"- {role}: `{info.get('path')}` (sha256 `{info['sha256']}`, {info.get('bytes')} bytes)")
    if manifest.get("data_content_sha256"):
        lines.append(f"- content hash of the decoded images: `{manifest['data_content_sha256']}`")
    return lines, licence


def _embedded_input(manifest: dict[str, Any]) -> str | None:
    """The embedded data set a study read its input from (by the input's path), if any."""
    for info in (manifest.get("inputs") or {}).values():
        path = Path(str(info.get("path", ""))) if isinstance(info, dict) else None
        for name in EMBEDDED:
            where = embedded_path(name)
            if path is not None and (path == where or where in path.parents or (where.is_file() and path.parent ==
                                                                                 where.parent)):
                return name
    return None


def _balance(manifest: dict[str, Any], classes: list[str]) -> str:
    counts = manifest.get("class_counts")
    if not counts or len({len(c) for c in counts.values()}) != 1:
        return ""
    k = len(next(iter(counts.values())))
    names = classes if len(classes) == k else [str(i) for i in range(k)]
    df = pd.DataFrame({"class": names, **{split: c for split, c in counts.items()}})
    return "Class balance per split:\n\n" + to_markdown(df)


def _calibration(run_dir: Path, metrics: dict[str, float]) -> list[str]:
    lines = []
    if "test/ece" in metrics:
        lines.append(f"- Expected calibration error on the test split: {metrics['test/ece']:.3f}.")
    cal = runs.read_calibration(run_dir)
    folds = sorted((run_dir / runs.FOLDS).glob(f"fold*/{runs.CALIBRATION}"))
    if cal is not None:
        extra = f" (temperature {cal.temperature:.3f})" if cal.temperature is not None else ""
        lines.append(f"- Recalibration fitted on the validation split: {cal.method}{extra}; biodl predict applies "
                     "it.")
    elif folds:
        lines.append(f"- Recalibration: each of the {len(folds)} folds' own map, fitted on its validation patients; "
                     "biodl predict applies them to the folds' models.")
    else:
        lines.append("- No recalibration: the probabilities are the model's own.")
    if "test/conformal_coverage" in metrics:
        lines.append(f"- Conformal prediction sets: test coverage {metrics['test/conformal_coverage']:.3f}, mean set "
                     f"size {metrics.get('test/conformal_set_size', float('nan')):.2f}.")
    return lines


def model_card(run_dir: Path, manifest: dict[str, Any], metrics: dict[str, float], pre: dict[str, Any]) -> str:
    """The card's Markdown text (see the module docstring)."""
    config = manifest.get("config") or {}
    model, data = config.get("model") or {}, config.get("data") or {}
    classes = [md_text(c) for c in pre.get("classes") or manifest.get("classes") or []]
    task = config.get("task", "study")
    git = manifest.get("git") or {}
    versions = manifest.get("versions") or {}
    weights = run_dir / runs.CHECKPOINTS / "best.safetensors"
    if task == "segmentation":
        inputs = (f"fundus photographs, the {pre.get('channels', 'green')} channel"
                  f"{', CLAHE-equalised' if pre.get('clahe') else ''}")
        classes = ["a vessel probability per pixel"]
    elif task == "image":
        inputs = f"{pre.get('in_chans', 3)}-channel images of {pre.get('size')} x {pre.get('size')} px"
        if pre.get("mpp"):
            inputs += f" at {pre['mpp']:g} um/px"
        if pre.get("stain"):
            inputs += f", stain-normalised ({pre['stain']['method']})"
    elif task == "tabular":
        features = pre.get("features") or []
        inputs = f"the {len(features)} features {', '.join(map(md_text, features))}"
    else:
        inputs = "see the run's config"
    source, licence = _data_source(config, manifest)
    lines = [f"# Model card: {config.get('name', run_dir.name)}", "",
             f"Written by biodl from the files of `{run_dir.name}`, following Mitchell et al. 2019. It says only what "
             "the run recorded; fill in what it cannot know (who may use the model, for what).", "",
             "## Model details", "",
             (f"- Task: {task}; model `{model['name']}`" + (f" with {json.dumps(model.get('args'))}" if
                                                           model.get("args") else "") + "." if model.get("name") else
              "- A study: several models compared under resampling; see its report and tables."),
             f"- Inputs: {inputs}. Outputs: " + (("a vessel probability per pixel." if task == "segmentation" else
                                                  f"probabilities of {', '.join(classes)}.") if classes else
                                                 "see the run's report."),
             f"- Trained {manifest.get('finished') or 'not finished'} with seed {manifest.get('seed')}, on "
             f"{manifest.get('device', 'cpu')}; biodl {versions.get('biodl')}, torch {versions.get('torch')}; git "
             f"commit {git.get('commit', 'unknown')}{' (with uncommitted changes)' if git.get('dirty') else ''}.",
             ("- Weights: `checkpoints/best.safetensors`" + (f" (sha256 `{sha256_file(weights)}`)." if weights.is_file()
                                                             else " (not in this folder).")
              if model.get("name") or weights.is_file() else "- Weights: none saved (the study fits and scores its "
                                                               "models under resampling)."), "",
             "## Intended use", "",
             "- Research on data like the training data: the same kind of images or records, from a similar "
             "population and acquisition, read at the same resolution. Not a medical device; not validated for "
             "clinical decisions.",
             "",
             "## Out-of-scope use", "",
             "- Decisions about individual patients without prospective, external validation.",
             "- Inputs unlike the training data (another scanner, stain, resolution, population or label definition): "
             "its errors and calibration there are unknown.", "",
             "## Training and evaluation data", "",
             *source,
             f"- Split: {manifest.get('split', 'see the run')}"
             + (f"; sizes {manifest['split_sizes']}" if manifest.get("split_sizes") else "") + ".",
             "", _balance(manifest, classes), "",
             "## Metrics (test split)", "",
             _metrics_table(metrics), "",
             ("No CIs were recorded for these numbers." if not any(k.endswith(("_low", "_ci_low")) for k in metrics)
              else f"95% CIs: bootstrap{_clusters(metrics)}." if any(k.startswith("test/") for k in metrics)
              else "95% CIs as the study computed them over its resampled splits or folds (see its tables)."),
             "", "## Calibration", "", *_calibration(run_dir, metrics), ""]
    per_class = run_dir / "test_per_class.csv"
    lines += ["## Per-class and per-subgroup results", ""]
    if per_class.is_file():
        lines += [to_markdown(pd.read_csv(per_class).round(3)), ""]
    lines += ["No subgroup (sex, age band, site) was recorded with the test cases, so results by subgroup are not "
              "available; check them before use in any population.", "",
              "## Limitations", "",
              f"- One {task} run: the numbers above are from one split and one seed; the CIs cover test-set sampling, "
              "not the variation between training runs.",
              "- A model learns its training data's shortcuts (scanner, site, labelling habits) along with the "
              "signal."]
    study_notes = [str(manifest["note"])] if manifest.get("note") else []
    name = data.get("dataset")
    if name in EMBEDDED:
        notes = embedded_path(name)
        notes = (notes if notes.is_dir() else notes.parent) / "MODEL_CARD.md"
        if notes.is_file():
            study_notes.append(notes.read_text().strip())
    lines += [f"- {n}" for n in study_notes]
    lines += ["", "## Licence of the data", "", licence, ""]
    return "\n".join(line for line in lines if line is not None) + "\n"
