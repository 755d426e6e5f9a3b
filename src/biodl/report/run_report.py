"""``report.html``: one self-contained page per run directory, rebuilt from its saved files.

What a section needs, it reads from the run directory; a section whose files are absent is
left out, so the same builder serves a trained model, an evaluation and a study:

- summary: ``manifest.json`` (+ ``preprocess.json`` for class names);
- training curves: ``metrics.csv`` (redrawn as ``training_curves.png``);
- metrics with 95% CIs: ``metrics.json`` (``test/<m>``, ``test/<m>_ci_low``/``_ci_high``);
- per class, confusion, ROC/PR and calibration: ``test_predictions.csv`` (figures redrawn);
- examples of right and wrong predictions: ``test_examples.png``; attributions: ``explain/*.png``;
- a study's own tables and figures, in the order its ``report.json`` lists them;
- the manifest: versions, platform, git commit, command, input hashes and the config.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, Field, field_validator

from .. import runs
from ..errors import RunDirError
from ..io import atomic_write_json, atomic_write_text
from ..evaluation import canonical
from . import html as h
from .figures import training_curves
from .model_card import model_card
from .predictions import prediction_artefacts
from .trust import trust_sections

__all__ = ["REPORT", "CARD", "CURVES", "build_report", "LayoutSection", "ReportLayout"]


REPORT = "report.html"
CARD = "model_card.md"
CURVES = "training_curves.png"


def build_report(run_dir: str | Path, layout: dict[str, Any] | None = None) -> Path:
    """(Re)draw the derived figures and write ``RUN_DIR/report.html``; returns its path.
    ``layout`` (a study's sections, see :func:`_layout`) is saved as ``report.json`` for rebuilds."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(run_dir, "no such run directory")
    if not (run_dir / runs.MANIFEST).is_file():
        raise RunDirError(run_dir, f"not a run directory (no {runs.MANIFEST})")
    _refuse_links_out(run_dir)
    if layout is not None:
        atomic_write_json(run_dir / runs.LAYOUT, layout)
    manifest = runs.read_manifest(run_dir)
    metrics = runs.read_metrics(run_dir / runs.METRICS) if (run_dir / runs.METRICS).is_file() else {}
    pre = runs.read_json(run_dir / runs.PREPROCESS) if (run_dir / runs.PREPROCESS).is_file() else {}
    config = manifest.get("config") or {}
    shown: set[str] = set()
    sections = [_summary(run_dir, manifest, metrics, pre)]
    sections += _training(run_dir, metrics, shown)
    sections += _metrics(metrics)
    if (run_dir / runs.predictions_file("test")).is_file():
        prediction_artefacts(run_dir, "test")
        sections += _predictions(run_dir, "test", shown)
        sections += trust_sections(run_dir, metrics, shown)
    sections += _examples(run_dir, shown)
    sections += _layout(run_dir, shown)
    sections += _tensorboard(run_dir)
    sections.append(_manifest(manifest))
    title = f"{config.get('name', run_dir.name)}: {run_dir.name}"
    subtitle = (f"{'task ' + config['task'] if 'task' in config else 'study'} · seed {manifest.get('seed', '-')} · "
                f"finished {manifest.get('finished') or 'not finished'} · report written "
                f"{_dt.datetime.now().astimezone().isoformat(timespec='seconds')}")
    out = run_dir / REPORT
    atomic_write_text(run_dir / CARD, model_card(run_dir, manifest, metrics, pre))
    atomic_write_text(out, h.page(title, subtitle, sections))
    return out


def _refuse_links_out(run_dir: Path) -> None:
    """A RunDirError for any symbolic link in the run folder that leads outside it (a received
    run with ``leak.md -> /etc/passwd`` would embed that file in the report): the report reads
    the run's own files only. biodl never writes links, so the check looks at every one."""
    root = run_dir.resolve()
    for folder, dirs, files in os.walk(run_dir):
        for name in dirs + files:
            path = Path(folder) / name
            if not path.is_symlink():
                continue
            try:
                target = path.resolve(strict=True)
            except (OSError, RuntimeError):
                continue  # a dangling link or a loop: nothing to read
            if not target.is_relative_to(root):
                raise RunDirError(path, f"is a symbolic link to {target}, outside the run folder; the report reads "
                                        "only the run's own files")


def _seconds(seconds: dict[str, float] | float | None) -> str | None:
    """``{"decode": 4.2, "train": 61.0, "total": 70.3}`` -> "70 s (decode 4 s, train 61 s)"."""
    if seconds is None or seconds == {}:
        return None
    if not isinstance(seconds, dict):
        seconds = {"total": float(seconds)}
    parts = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items() if k != "total")
    total = seconds.get("total")
    return f"{total:.0f} s" + (f" ({parts})" if parts else "") if total is not None else parts


def _summary(run_dir: Path, manifest: dict[str, Any], metrics: dict[str, float], pre: dict[str, Any]) -> h.Section:
    config = manifest.get("config") or {}
    model = config.get("model") or {}
    trainer = config.get("trainer") or {}
    data = config.get("data") or {}
    pairs: list[tuple[str, object]] = [
        ("run directory", run_dir.resolve()),
        ("task", config.get("task", "study")),
        ("data", data.get("dataset") or data.get("path") or _input_path(manifest)),
        ("split", manifest.get("split")),
        ("model", model.get("name")),
        ("pretrained weights", (manifest.get("pretrained") or {}).get("path")),
        ("seed", manifest.get("seed")),
        ("device", manifest.get("device")),
        ("epochs trained", _int(metrics.get("epochs_trained"))),
        ("best epoch", f"{_int(metrics['best_epoch'])} (by {trainer.get('monitor')})" if "best_epoch" in metrics
         else None),
        ("started", manifest.get("started")),
        ("finished", manifest.get("finished") or "not finished"),
        ("wall time", _seconds(manifest.get("seconds"))),
    ]
    body = h.key_values(pairs)
    body += (f'<p class="note">The model card (intended use, data, metrics with CIs, calibration, limitations, '
             f'licence of the data): <a href="{CARD}">{CARD}</a></p>')
    counts = manifest.get("class_counts")
    if counts and len({len(c) for c in counts.values()}) == 1:
        k = len(next(iter(counts.values())))
        named = [c for c in (pre.get("classes"), manifest.get("classes")) if isinstance(c, list) and len(c) == k]
        classes = named[0] if named else [str(i) for i in range(k)]
        df = pd.DataFrame({"class": classes, **{split: c for split, c in counts.items()}})
        total = pd.DataFrame([{"class": "all", **{split: sum(c) for split, c in counts.items()}}])
        body += "<h3>Class balance (images or records per split)</h3>" + h.table(pd.concat([df, total]))
    if manifest.get("duplicates_across_splits"):
        body += h.para(f"{len(manifest['duplicates_across_splits'])} exact duplicate images cross splits "
                       "(see manifest.json): a leak between training and evaluation.", "warn")
    if manifest.get("note"):
        body += h.para(str(manifest["note"]), "note")
    return h.Section("summary", "Summary", body)


def _training(run_dir: Path, metrics: dict[str, float], shown: set[str]) -> list[h.Section]:
    path = run_dir / runs.METRICS_CSV
    if not path.is_file():
        return []
    try:
        history = pd.read_csv(path).rename(columns=canonical)  # an older run's val/tpr is val/sensitivity
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise RunDirError(path, f"unreadable ({exc})") from None
    if history.empty or "epoch" not in history:
        return []
    best = _int(metrics.get("best_epoch"))
    training_curves(history, run_dir / CURVES, best)
    shown.add(CURVES)
    return [h.Section("training", "Training", h.figure(run_dir / CURVES, "Loss, validation metrics and learning "
                                                       "rate per epoch" + (f"; dotted: best epoch {best}" if best
                                                                           else "")))]


def _metrics(metrics: dict[str, float]) -> list[h.Section]:
    from ..trust.calibration import SCORES

    names = sorted({k.split("/", 1)[1] for k in metrics  # calibration: in the Trust section
                    if k.startswith("test/") and "_ci_" not in k and k != "test/ci_clusters"
                    and k.split("/", 1)[1].removesuffix("_after") not in SCORES})
    if not names:
        return []
    rows = []
    for m in names:
        lo, hi = metrics.get(f"test/{m}_ci_low"), metrics.get(f"test/{m}_ci_high")
        val, test = metrics.get(f"val/{m}"), metrics[f"test/{m}"]
        rows.append({"metric": m, "validation (best epoch)": "undefined" if f"val/{m}" in metrics and val is None
                     else val, "test": "undefined" if test is None else test,
                     "test 95% CI": f"[{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""})
    clusters = metrics.get("test/ci_clusters")
    unit = (f"over the {clusters:.0f} test patients (a cluster bootstrap: patients resampled with replacement, "
            "each with all its images, since images of one patient are not independent)" if clusters
            else "over the test rows (resampled with replacement)")
    notes = [f"95% CIs: percentile bootstrap {unit}."] if any(r["test 95% CI"] for r in rows) else []
    return [h.Section("metrics", "Metrics", h.table(pd.DataFrame(rows)) + (h.para(" ".join(notes), "note")
                                                                            if notes else ""))]


def _predictions(run_dir: Path, prefix: str, shown: set[str]) -> list[h.Section]:
    per_class = pd.read_csv(run_dir / f"{prefix}_per_class.csv", keep_default_na=False, na_values=[""])
    calibration = pd.read_csv(run_dir / f"{prefix}_calibration.csv")
    title = (run_dir / f"{prefix}_calibration.md").read_text().splitlines()[0].lstrip("# ")
    shown.update(f"{prefix}_{k}.png" for k in ("curves", "confusion", "calibration"))
    patients = run_dir / f"{prefix}_per_patient.csv"
    per_patient = (h.Section("per-patient", "Per patient", h.table(pd.read_csv(
        patients, keep_default_na=False, dtype={"patient": str}), 3)),) if patients.is_file() else ()
    return [
        *per_patient,
        h.Section("per-class", "Per class", h.table(per_class) + h.figure(
            run_dir / f"{prefix}_curves.png", "ROC and precision-recall curves, each class against the rest")),
        h.Section("confusion", "Confusion matrix", h.figure(
            run_dir / f"{prefix}_confusion.png", "Rows: true class; columns: predicted; shade: share of the row")),
        h.Section("calibration", "Calibration", h.para(title) + h.figure(
            run_dir / f"{prefix}_calibration.png", "Reliability diagram: observed rate against mean predicted "
            "probability per bin; below, how many predictions fall in each bin") + h.table(calibration, 4)),
    ]


def _examples(run_dir: Path, shown: set[str]) -> list[h.Section]:
    body = ""
    if (run_dir / "test_examples.png").is_file():
        shown.add("test_examples.png")
        body += h.figure(run_dir / "test_examples.png", "Test images: the most confident right (green) and wrong "
                                                        "(red) predictions; caption: true → predicted (probability)")
    folder = run_dir / "explain"
    overview = [folder / f for f in ("grid.png", "similar.png", "feature_map.png", "tabular_importance.png",
                                     "sequences.png", "filters.png", "activations.png")]
    explain = [p for p in overview if p.is_file()] or (sorted(folder.glob("*.png"))[:24] if folder.is_dir() else [])
    if explain:
        body += "<h3>Attributions</h3>" + h.para("From biodl explain: per image and method, explain/NNN_METHOD.png; "
                                                  "the numbers in explain/explain.json.", "note")
        body += "".join(h.figure(p, p.stem.replace("_", " ")) for p in explain)
    return [h.Section("examples", "Examples", body)] if body else []


def _layout(run_dir: Path, shown: set[str]) -> list[h.Section]:
    """A study's sections from ``report.json`` (``{"sections": [{"title", "text", "items"}]}``;
    an item is a PNG, a table stem with ``.md`` and ``.csv``, or an HTML page of the run, linked);
    without it, the PNGs not shown yet."""
    path = run_dir / runs.LAYOUT
    if path.is_file():
        spec = runs.read_validated(path, ReportLayout)
        out = []
        for i, sec in enumerate(spec.sections):
            body = h.para(sec.text) if sec.text else ""
            for item in sec.items:
                body += _item(run_dir, item)
                shown.add(item)
            out.append(h.Section(f"study-{i}", sec.title or f"Part {i + 1}", body))
        return out
    rest = sorted(p for p in run_dir.glob("*.png") if p.name not in shown)
    return [h.Section("figures", "Other figures", "".join(h.figure(p, p.stem) for p in rest))] if rest else []


class LayoutSection(BaseModel):
    title: str | None = None
    text: str | None = None
    items: list[str] = Field(default_factory=list)

    @field_validator("items")
    @classmethod
    def _inside(cls, items: list[str]) -> list[str]:
        bad = [i for i in items if Path(i).is_absolute() or ".." in Path(i).parts]
        if bad:
            raise ValueError(f"item {bad[0]!r} is outside the run directory")
        return items


class ReportLayout(BaseModel):
    """``report.json``: a study's sections, each a title, a text and items (files of the run)."""

    sections: list[LayoutSection] = Field(default_factory=list)


def _item(run_dir: Path, item: str) -> str:
    path = run_dir / item
    if path.suffix == ".html":  # e.g. a slide viewer in the run
        return h.link(item, f"viewer: {path.parent.name}") if path.is_file() else ""
    if path.suffix == ".png":
        return h.figure(path, path.stem.replace("_", " ")) if path.is_file() else ""
    if path.suffix == ".md":
        return h.pre(path.read_text()) if path.is_file() else ""
    md, csv = path.with_suffix(".md"), path.with_suffix(".csv")
    if not csv.is_file():
        return ""
    lines = md.read_text().splitlines() if md.is_file() else []
    title = lines[0].lstrip("# ") if lines and lines[0].startswith("#") else path.name
    note = lines[2] if len(lines) > 2 and not lines[2].startswith("|") else ""
    return f"<h3>{h.esc(title)}</h3>" + (h.para(note, "note") if note else "") + h.table(
        pd.read_csv(csv, keep_default_na=False, na_values=[""]))


def _tensorboard(run_dir: Path) -> list[h.Section]:
    tb = run_dir / runs.TENSORBOARD
    if not tb.is_dir() or not any(tb.iterdir()):
        return []
    parts = ["scalars per epoch"]
    parts += ["the embedding projector (penultimate-layer features)"] if (tb / "projector_config.pbtxt").is_file() \
        else []
    text = (f"TensorBoard logs ({', '.join(parts)}; images, graph and PR curves where the task logs them) are in "
            f"{tb.resolve()}. Open them with: tensorboard --logdir {tb.resolve()}")
    return [h.Section("tensorboard", "TensorBoard", h.para(text))]


def _manifest(manifest: dict[str, Any]) -> h.Section:
    git = manifest.get("git") or {}
    pairs = [("biodl", manifest.get("versions", {}).get("biodl")),
             ("git commit", f"{git.get('commit')}{' (uncommitted changes)' if git.get('dirty') else ''}" if git
              else "not a git checkout"),
             ("command", " ".join(manifest.get("command", []))),
             ("platform", (manifest.get("platform") or {}).get("system"))]
    versions = pd.DataFrame(sorted((manifest.get("versions") or {}).items()), columns=["package", "version"])
    inputs = pd.DataFrame([{"input": k, "path": v.get("path"), "sha256": v.get("sha256"), "bytes": v.get("bytes")}
                           for k, v in (manifest.get("inputs") or {}).items()])
    body = h.key_values(pairs) + "<h3>Versions</h3>" + h.table(versions)
    if not inputs.empty:
        body += "<h3>Inputs</h3>" + h.table(inputs)
    if manifest.get("data_content_sha256"):
        body += h.para(f"Image files: sha256 over every file's name and content: {manifest['data_content_sha256']}")
    body += "<h3>Configuration</h3>" + h.pre(json.dumps(manifest.get("config"), indent=2, default=str))
    return h.Section("manifest", "Manifest", body)


def _input_path(manifest: dict[str, Any]) -> str | None:
    data = (manifest.get("inputs") or {}).get("data")
    return data.get("path") if isinstance(data, dict) else None


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)
