"""The ``biodl`` command line.

User faults (a bad file, key or option) print ``error: <where>: <what>`` on one
line and exit with code 2. Anything else is a bug: it keeps its traceback and
exits with 1. ``--debug`` shows tracebacks for everything.
"""

from __future__ import annotations

import math
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from . import __version__
from .errors import PREEMPTED_EXIT, BiodlError, ConfigError, Preempted, path_problem

__all__ = [
    "studies", "run", "train", "evaluate", "predict", "export", "explain", "calibrate", "report", "compare",
    "wsi_info", "wsi_tile", "wsi_infer", "main",
]


app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="biodl: reproducible deep learning for the health and life sciences.",
)

OverridesOpt = typer.Option(None, "--set", help="override a config key, e.g. --set trainer.epochs=5 (repeatable)")
OutOpt = typer.Option(None, "--out", help="run directory (default: runs/<name>-<timestamp>)")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"biodl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version"),
    debug: bool = typer.Option(False, "--debug", help="show tracebacks for every error"),
) -> None:
    """biodl: reproducible deep learning for the health and life sciences."""


def _print_metrics(metrics: dict[str, float], prefix: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{prefix} metrics", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    with_ci = any(k.endswith("_ci_low") for k in metrics)
    if with_ci:
        table.add_column("95% CI", justify="right")
    for k, v in metrics.items():
        if not k.startswith(prefix + "/") or k.endswith(("_ci_low", "_ci_high", "/ci_clusters")):
            continue
        row = [k.split("/", 1)[1], _number(v)]
        if with_ci:
            lo, hi = metrics.get(f"{k}_ci_low"), metrics.get(f"{k}_ci_high")
            row.append(f"[{_number(lo)}, {_number(hi)}]" if _defined(lo) and _defined(hi) else "")
        table.add_row(*row)
    Console().print(table)
    if with_ci:
        n = metrics.get(f"{prefix}/ci_clusters")
        typer.echo(f"95% CIs: cluster bootstrap over {n:.0f} groups (patients, plates, or a peak with its "
                   "shuffles: groups resampled, not rows)" if n and n > 1 else "95% CIs: bootstrap over the rows"
                   + (" of one group (they leave out the variation between groups)" if n == 1 else ""))
    undefined = sorted(k.split("/", 1)[1] for k, v in metrics.items()
                       if k.startswith(prefix + "/") and "_ci_" not in k and not _defined(v))
    if undefined:
        typer.echo(f"undefined: {', '.join(undefined)} (these labels lack a class; null in the JSON file)")


def _defined(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _number(value: float | None) -> str:
    """A metric on screen: 4 decimals, or "undefined" (JSON null: e.g. ROC AUC with one class)."""
    return f"{value:.4f}" if _defined(value) else "undefined"


EnsembleOpt = typer.Option(None, "--ensemble", help="train a deep ensemble of this many members (seeds seed, "
                           "seed+1, ...; each a run in members/), and report the mean of their probabilities with "
                           "their disagreement")


@app.command()
def studies() -> None:
    """List the studies that `biodl run` knows, one line each."""
    from .studies import list_studies

    for name, summary in list_studies().items():
        typer.echo(f"{name:<22} {summary}")


@app.command()
def run(
    study: str = typer.Argument(..., help="study name (see `biodl studies`)"),
    out: Optional[Path] = OutOpt,
    overrides: Optional[list[str]] = OverridesOpt,
    data: Optional[Path] = typer.Option(None, "--data", help="your own data file instead of the embedded one"),
    resume: bool = typer.Option(False, "--resume", help="continue the study's run in --out from checkpoints/last "
                                "(studies that train through the engine)"),
    ensemble: Optional[int] = EnsembleOpt,
    counts: Optional[Path] = typer.Option(None, "--counts", help="tcga-melanoma: your counts table (genes x samples)"),
    samples: Optional[Path] = typer.Option(None, "--samples", help="tcga-melanoma: your samples table"),
    test: Optional[Path] = typer.Option(None, "--test", help="tf-binding: your test sequences (with --data; the "
                                        "same forms)"),
    experiment: Optional[str] = typer.Option(None, "--experiment", help="tf-binding: an embedded experiment (ELK1, "
                                             "GABPA, REST, MYC, CTCFL) or 'all' (one table)"),
    metadata: Optional[Path] = typer.Option(None, "--metadata", help="cell-lines: the cell metadata CSV of --data"),
    label: Optional[str] = typer.Option(None, "--label", help="cell-lines: the metadata column of the classes"),
    group: Optional[str] = typer.Option(None, "--group", help="cell-lines: the metadata column of the batches "
                                        "(plates, donors) to hold out"),
) -> None:
    """Run a study end to end on its embedded data (or on --data); --resume continues it."""
    from .studies import get_study, resume_study

    for flag, value, owner in (("--test", test, "tf-binding"), ("--experiment", experiment, "tf-binding"),
                               ("--counts", counts, "tcga-melanoma"), ("--samples", samples, "tcga-melanoma"),
                               ("--metadata", metadata, "cell-lines"), ("--label", label, "cell-lines"),
                               ("--group", group, "cell-lines")):
        if value is not None and study != owner:
            raise BiodlError(flag, f"belongs to the {owner} study, not to {study}")
    if ensemble is not None:
        overrides = [*(overrides or []), f"ensemble={ensemble}"]
    overrides = [*(overrides or []), *([f"counts={counts}"] if counts else []),
                 *([f"samples={samples}"] if samples else []), *([f"data.test={test}"] if test else []),
                 *([f"experiment={experiment}"] if experiment else []),
                 *[f"{k}={v}" for k, v in (("metadata", metadata), ("label", label), ("group", group)) if v]]
    if resume:
        if out is None:
            raise BiodlError("--resume", "needs --out RUN_DIR, the run to continue")
        if overrides or data is not None:
            raise BiodlError("--resume", "continues a run with its own config; drop --set and --data")
        run_dir = resume_study(study, out)
    else:
        run_dir = get_study(study).run(out, overrides or [], data)
    typer.echo(f"results: {run_dir}")


TrackOpt = typer.Option(None, "--track", help="also log the run to an experiment tracker: mlflow (pip install "
                        "'biodl[track]'); TensorBoard logs are always written")
TrackUriOpt = typer.Option(None, "--track-uri", help="the MLflow tracking URI (default: sqlite:///RUN_DIR/mlflow.db)")


def _check_track(track: Optional[str]) -> None:
    if track is not None and track != "mlflow":
        raise BiodlError("--track", f"unknown tracker {track!r}; known: mlflow")
    if track is not None:
        from .report.tracking import mlflow_client

        mlflow_client(None)  # installed? (one line naming the extra, before any training)


@app.command()
def tune(
    config: Optional[Path] = typer.Argument(None, help="a config YAML with a search: block (not needed to --resume)"),
    out: Path = typer.Option(..., "--out", help="the search's folder: study.db, trials/, best.yaml, best/, default/"),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="trials in all (default 20; with --resume: "
                                         "the study's own, or a new total)"),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=1, help="start no trial after this many seconds"),
    metric: Optional[str] = typer.Option(None, "--metric", help="the validation metric searched on (default: the "
                                         "config's trainer.monitor)"),
    resume: bool = typer.Option(False, "--resume", help="continue the study in --out"),
    track: Optional[str] = TrackOpt,
    track_uri: Optional[str] = TrackUriOpt,
) -> None:
    """Search hyper-parameters on validation only (Optuna TPE, median pruning); then train the best
    once, test it once beside the default, and report."""
    from .tasks.tune import tune as run_tune

    _check_track(track)
    best = run_tune(config, trials, out, timeout, resume, metric)
    if track:
        from .report.tracking import log_search

        typer.echo(f"tracked: MLflow run {log_search(out, track_uri)}")
    typer.echo(f"best config: {out / 'best.yaml'}")
    _print_metrics(runs_metrics(best), "test")
    typer.echo(f"results: {best}")


def runs_metrics(run_dir: Path) -> dict:
    from . import runs

    return runs.read_metrics(run_dir / runs.METRICS)


@app.command()
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config file"),
    overrides: Optional[list[str]] = OverridesOpt,
    out: Optional[Path] = OutOpt,
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out from checkpoints/last"),
    data: Optional[Path] = typer.Option(None, "--data", help="images to train on with no config file: .npz, "
                                        "X.npy/Y.npy folder, class-folder tree, patient tree, or CSV + --images"),
    images: Optional[Path] = typer.Option(None, "--images", help="image folder for a CSV given as --data"),
    model: Optional[str] = typer.Option(None, "--model", help="model name (default: chosen by image size)"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="number of epochs"),
    ensemble: Optional[int] = EnsembleOpt,
    track: Optional[str] = TrackOpt,
    track_uri: Optional[str] = TrackUriOpt,
) -> None:
    """Train a model from a config file (or straight from --data); --resume continues a run."""
    _check_track(track)
    from .api import training_config
    from .tasks import task_command

    cfg = training_config(config, data, images=images, model=model, epochs=epochs, ensemble=ensemble,
                          overrides=overrides or [], resume=resume, out=out)
    result = task_command(cfg.task, "train", config or data or out)(cfg, out, resume=resume)
    from .engine import is_main_process

    if is_main_process():
        m = result.metrics
        if "epochs_trained" in m:
            typer.echo(f"trained {m['epochs_trained']:.0f} of {cfg.trainer.epochs} epochs; best epoch "
                       f"{m['best_epoch']:.0f} by {cfg.trainer.monitor} (weights in checkpoints/best.*)")
        elif getattr(cfg, "ensemble", 1) > 1:
            typer.echo(f"trained {cfg.ensemble} ensemble members (runs in members/); test metrics of the mean of "
                       "their probabilities")
        else:  # a k-fold parent
            typer.echo(f"trained {cfg.data.folds} folds (runs in folds/); test metrics pooled over their "
                       "out-of-fold predictions")
        _print_metrics(result.metrics, "val" if getattr(cfg, "trial", False) else "test")
        if track:
            from .report.tracking import log_run

            typer.echo(f"tracked: MLflow run {log_run(result.run_dir, track_uri)}")
        typer.echo(f"results: {result.run_dir}")


def _checked_run(run_dir: Path) -> Path:
    """``run_dir``, once its config is read and valid: a wrong folder is a one-line error before
    torch and the model code are imported (seconds)."""
    from .runs import load_run_config

    load_run_config(run_dir)
    return run_dir


def _predictor(run_dir: Path, checkpoint: str):
    """The run in ``run_dir`` as one object (:func:`biodl.load`), every part checked."""
    _checked_run(run_dir)
    from .inference.predictor import load

    return load(run_dir, checkpoint)


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    data: Optional[Path] = typer.Option(None, "--data", help="labelled data of the run's kind (default: the run's own "
                                        "test split): a CSV for tabular runs, images in any layout, a vessel folder, "
                                        "sequences, cells (.h5ad, 10x folder or counts CSV)"),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best or last"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an earlier evaluation file"),
    metadata: Optional[Path] = typer.Option(None, "--metadata", help="cells runs: the cell metadata CSV of a counts "
                                            "CSV or 10x folder given as --data (the label in the run's column)"),
) -> None:
    """Evaluate a trained run on its test split or on another labelled data set.

    A metric that is undefined on the labels given (ROC AUC, PR AUC, MCC when a class is
    missing) is shown as "undefined" and written as null."""
    from .tasks import task_command

    predictor = _predictor(run_dir, checkpoint)
    if metadata is not None and (predictor.task != "cells" or data is None):
        raise BiodlError("--metadata", "goes with --data, for cells runs")
    more = {"metadata": metadata} if metadata is not None else {}
    metrics, path = task_command(predictor.task, "evaluate", run_dir)(predictor, data, overwrite, **more)
    _print_metrics(metrics, path.stem)
    typer.echo(f"results: {path}")


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    input: Path = typer.Argument(..., help="new data: a CSV with the run's feature columns (tabular runs), or an "
                                 "image file or folder of images (image and segmentation runs)"),
    out: Optional[Path] = typer.Option(None, "--out", help="output: a CSV file (tabular and image runs; default "
                                       "RUN_DIR/predictions/<input>.csv) or a folder (segmentation runs)"),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best or last"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output file"),
) -> None:
    """Predict new data with a trained run, applying its saved preprocessing: one row per case
    with p_<class> (recalibrated), raw_p_<class>, predicted, set, entropy, mutual_information."""
    _checked_run(run_dir)
    if problem := path_problem(input):
        raise BiodlError(input, problem)
    from .inference.predict import write_predictions
    from .inference.predictor import load

    typer.echo(f"results: {write_predictions(load(run_dir, checkpoint), input, out, overwrite)}")


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="a trained image or tabular run"),
    fmt: str = typer.Option("onnx", "--format", help="onnx"),
    out: Optional[Path] = typer.Option(None, "--out", help="the .onnx file (default RUN_DIR/export/model.onnx); "
                                       "its JSON goes beside it"),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best or last"),
    size: Optional[int] = typer.Option(None, "--size", min=8, help="segmentation runs: a fixed side in pixels "
                                       "(default: any height and width)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing export"),
) -> None:
    """Export a run to ONNX with its preprocessing inside the graph (uint8 NHWC images, or the raw
    feature columns, in; class probabilities or the vessel probability map out), checked against
    PyTorch on the run's test split: it fails, leaving no file, unless the probabilities agree
    within 1e-4 and every predicted class (every pixel's decision) is the same."""
    _checked_run(run_dir)
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ConfigError("--format", "ONNX export needs onnx, onnxscript and onnxruntime: pip install "
                                      "'biodl[export]'") from None
    from .inference.export import export_run

    path, meta = export_run(run_dir, fmt, out, checkpoint, size, overwrite)
    if meta["checkpoint"] != checkpoint:
        typer.echo(f"note: the run kept no {checkpoint} checkpoint; exported {meta['checkpoint']}")
    parity = meta["parity"]
    typer.echo(f"parity on {parity['test_cases']} test cases: largest probability difference "
               f"{parity['max_abs_difference']:.2e} (tolerance {parity['tolerance']:g}), predicted classes identical: "
               f"{parity['classes_identical']}")
    typer.echo(f"results: {path} and {path.with_suffix('.json').name}")


@app.command()
def explain(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    images: Optional[list[Path]] = typer.Argument(None, help="image files at the model's input size, or sequence "
                                                  "files (default: test cases picked by outcome)"),
    method: Optional[str] = typer.Option(None, "--method", help="comma-separated; images (default ig,gradcam,"
                                         "occlusion): saliency, ixg, ig, gradshap, smoothgrad, occlusion, gradcam, "
                                         "superpixels; sequences (default ig,ism): ig, ixg, saliency, ism"),
    target: str = typer.Option("predicted", "--target", help="predicted, or a class index or name"),
    pick: str = typer.Option("tp,tn,fp,fn", "--pick", help="without images: test outcomes to show (class 0 is "
                             "the negative class)"),
    n: int = typer.Option(4, "--n", min=1, help="without images: images per outcome"),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="IG baseline; images: black (default), "
                                           "blurred, masked, or an image; sequences: shuffle (default), uniform, "
                                           "zeros"),
    steps: int = typer.Option(50, "--steps", min=2, help="IG steps (also samples for SmoothGrad and GradientSHAP)"),
    sanity: bool = typer.Option(True, "--sanity/--no-sanity", help="model-randomisation sanity check"),
    layer: Optional[str] = typer.Option(None, "--layer", help="module for the activation maps (default: "
                                       "Grad-CAM's layer)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an earlier RUN_DIR/explain"),
) -> None:
    """Attribution maps (captum) with sanity and faithfulness checks; sequence runs: per-base
    attributions and mutation maps; tabular runs: feature importance."""
    _checked_run(run_dir)
    from .interpret.explain import explain_run

    out = explain_run(run_dir, images, method, target, pick, n, baseline, steps, sanity, layer, overwrite)
    typer.echo(f"results: {out}")


@app.command()
def calibrate(
    run_dir: Path = typer.Argument(..., help="a finished classification run (image or tabular)"),
    method: str = typer.Option("temperature", "--method", help="temperature, vector, platt or isotonic (platt and "
                               "isotonic: two classes)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the run's calibration.json"),
) -> None:
    """Fit a recalibration on the run's validation predictions, without retraining.

    Writes RUN_DIR/calibration.json (predict and evaluate apply it from then on) and the test
    split's calibration metrics before and after (ECE, Brier, NLL...) to metrics.json and the
    report. A k-fold run recalibrates each fold on its own validation patients."""
    _checked_run(run_dir)
    from .inference.calibrate import calibrate_run

    metrics, path = calibrate_run(run_dir, method, overwrite)
    from .trust.calibration import SCORES

    _print_metrics({k: v for k, v in metrics.items() if k.split("/", 1)[-1].split("_ci_")[0].removesuffix("_after")
                    in SCORES}, "test")
    typer.echo(f"results: {path}")


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    screenshot: Optional[Path] = typer.Option(None, "--screenshot", help="also open the report in headless "
                                              "Chromium, check every figure, and save the page as this PNG"),
) -> None:
    """Rebuild RUN_DIR/report.html (and its figures) from the run's saved files."""
    from .report.run_report import build_report

    path = build_report(run_dir)
    if screenshot is not None:
        from .report.browser import check_page

        check = check_page(path, screenshot)
        problems = [f"image not shown: {a}" for a in check.broken] + check.console + [
            f"request: {u}" for u in check.requests]
        typer.echo(f"checked in Chromium: {len(check.images)} images, {len(problems)} problems; screenshot: "
                   f"{screenshot}")
        if problems:
            raise BiodlError(path, "; ".join(problems))
    typer.echo(f"results: {path}")


@app.command()
def compare(
    run_dirs: list[Path] = typer.Argument(..., help="two or more run directories"),
    out: Path = typer.Option(Path("compare"), "--out", help="output stem: writes OUT.md and OUT.html"),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="comma-separated globs of metric names "
                                          "(default: test/* when the runs have test metrics, else all)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace earlier comparison files"),
) -> None:
    """Put runs side by side: settings and metrics (with CIs), as Markdown and HTML."""
    from .report.compare import write_comparison
    from .report.tables import print_table

    patterns = [p.strip() for p in metrics.split(",") if p.strip()] if metrics else None
    table, paths = write_comparison(run_dirs, out, patterns, overwrite)
    print_table(table, "runs compared")
    typer.echo(f"results: {paths[0]} {paths[1]}")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
    """Warnings on one line each, ``warning: <text>``, each text once per command."""
    text = f"warning: {str(message).strip()}"
    if text not in _SHOWN:
        _SHOWN.add(text)
        print(text, file=file or sys.stderr)


_SHOWN: set[str] = set()


wsi_app = typer.Typer(no_args_is_help=True, help="whole-slide images: info, tissue tiles, slide inference, tile "
                      "features, a zoomable viewer")
app.add_typer(wsi_app, name="wsi")


@wsi_app.command("info")
def wsi_info(
    slides: list[Path] = typer.Argument(..., help="slide files (SVS, NDPI, MRXS, pyramidal TIFF...) or images"),
    mpp: Optional[float] = typer.Option(None, "--mpp", help="micrometres per level-0 pixel, when the file lacks it"),
) -> None:
    """Vendor, levels, dimensions, resolution (um/px) and objective power of each slide, as JSON."""
    import json

    from .data.wsi import open_slide

    for path in slides:
        with open_slide(path, mpp) as slide:
            typer.echo(json.dumps(slide.info(), indent=1))


@contextmanager
def _slide_bars(total: int):
    """Two progress bars: the slides, and the tiles of the slide in hand. Yields (a callback for
    a slide's tiles (done, total), a function to call when a slide is finished)."""
    from .progress import progress_bar

    with progress_bar() as bar:
        slides = bar.add_task("slides", total=total)
        tiles = bar.add_task("tiles", total=None)

        def on_tiles(done: int, of: int) -> None:
            bar.update(tiles, completed=done, total=of)

        def next_slide() -> None:
            bar.advance(slides)
            bar.reset(tiles, total=None)

        yield on_tiles, next_slide


def _check_mpp_flags(mpp: float | None, override: bool) -> None:
    from .data.wsi import check_mpp

    if mpp is not None:
        check_mpp(mpp, "--mpp")
    elif override:
        raise ConfigError("--override-mpp", "needs --mpp, the resolution to use for every slide")


def _todo(slides: list[Path], spec: str | None) -> list[Path]:
    """This shard's slides (see :func:`biodl.data.tiles.shard`), after checking that no two of all
    the slides share a name (their results would share a folder); an empty shard says so."""
    from .data.tiles import shard, unique_stems

    todo = shard(unique_stems(slides), spec)
    if not todo:
        typer.echo(f"shard {spec} holds none of the {len(slides)} slides given: nothing to do")
    return todo


@wsi_app.command("tile")
def wsi_tile(
    slides: list[Path] = typer.Argument(..., help="slide files (SVS, NDPI, MRXS, pyramidal TIFF...) or images"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder: one subfolder of PNG tiles per slide"),
    to_cache: bool = typer.Option(False, "--to-cache", help="instead of PNGs, store each slide's tiles in the biodl "
                                  "cache (no tile files), where training on a slide table (data.layout: slides) "
                                  "with the same settings finds them"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="the cache (default $BIODL_CACHE or "
                                             "~/.cache/biodl)"),
    tile_mpp: Optional[float] = typer.Option(None, "--tile-mpp", help="resolution of the tiles, micrometres per "
                                             "pixel (default 0.5)"),
    magnification: Optional[float] = typer.Option(None, "--magnification", help="resolution of the tiles as an "
                                                  "objective magnification (e.g. 20), instead of --tile-mpp"),
    size: int = typer.Option(224, "--size", min=8, help="tile side in pixels"),
    overlap: int = typer.Option(0, "--overlap", min=0, help="pixels shared by neighbouring tiles"),
    min_tissue: float = typer.Option(0.5, "--min-tissue", min=0.0, max=1.0, help="keep tiles with at least this "
                                     "share of tissue"),
    select: str = typer.Option("grid", "--select", help="grid: every tissue tile (or the --tiles N with most "
                               "tissue); random: N tiles at random places on the tissue; hematoxylin: the top N "
                               "grid tiles by nuclei (haematoxylin) density"),
    n_tiles: Optional[int] = typer.Option(None, "--tiles", min=1, help="tiles per slide (random, hematoxylin)"),
    seed: int = typer.Option(0, "--seed", help="random tiles: the seed"),
    pen: bool = typer.Option(False, "--pen", help="leave pen-marked areas (blue, green, black ink) out"),
    stain: str = typer.Option("none", "--stain", help="normalise the tiles' stain: none, macenko or reinhard"),
    stain_reference: str = typer.Option("builtin", "--stain-reference", help="the stain reference: builtin, a "
                                        "reference tile image, or a reference JSON"),
    mpp: Optional[float] = typer.Option(None, "--mpp", help="micrometres per level-0 pixel of slides whose files "
                                        "do not record it (a slide's own resolution wins, unless --override-mpp)"),
    override_mpp: bool = typer.Option(False, "--override-mpp", help="use --mpp for every slide, even where the file "
                                      "records its own resolution"),
    shard_spec: Optional[str] = typer.Option(None, "--shard", help="I/N: only every N-th slide from the I-th "
                                             "(0-based; e.g. a SLURM array task)"),
) -> None:
    """Tissue tiles at a physical resolution: per slide, PNGs, tiles.csv (level-0 and micrometre
    coordinates, tissue share, score), mask.png and tiling.json in --out, or the tiles streamed
    into the cache (--to-cache); slides done before are skipped."""
    import os

    from .data.slides import cache_slide
    from .data.stain import StainNormalizer
    from .data.tiles import Tiling, tile_slide
    from .io import check_writable

    if (out is None) == (not to_cache):
        raise ConfigError("--out", "give --out DIR (PNG tiles) or --to-cache (tiles in the cache), one of the two")
    if tile_mpp is not None and magnification is not None:
        raise ConfigError("--tile-mpp", "give the tiles' resolution as --tile-mpp or --magnification, not both")
    tiling = Tiling(tile_mpp if tile_mpp is not None else None if magnification is not None else 0.5, size, overlap,
                    min_tissue, select, n_tiles, seed, pen, magnification)
    _check_mpp_flags(mpp, override_mpp)
    cache = cache_dir or Path(os.environ.get("BIODL_CACHE", Path.home() / ".cache" / "biodl"))
    check_writable(cache if to_cache else out, "--cache-dir" if to_cache else "--out", folder=True)
    normalizer = StainNormalizer.create(stain, stain_reference)
    todo = _todo(slides, shard_spec)
    with _slide_bars(len(todo)) as (on_tiles, next_slide):
        for path in todo:
            if to_cache:
                folder, n, hit = cache_slide(path, tiling, cache, mpp, normalizer, on_tiles, override_mpp)
                n = -1 if hit else n
            else:
                folder, n = tile_slide(path, out, tiling, mpp, normalizer, on_tiles, override_mpp)
            next_slide()
            typer.echo(f"{path}: {'done before, skipped' if n < 0 else f'{n} tiles'} -> {folder}")


@wsi_app.command("infer")
def wsi_infer(
    run_dir: Path = typer.Argument(..., help="a trained image run (a patch classifier)"),
    slides: list[Path] = typer.Argument(..., help="slide files"),
    out: Path = typer.Option(..., "--out", help="folder: one subfolder per slide, slides.csv and index.html"),
    tile_mpp: Optional[float] = typer.Option(None, "--tile-mpp", help="micrometres per pixel of the patches the "
                                             "run was trained on (default: the run's data.mpp)"),
    min_tissue: float = typer.Option(0.5, "--min-tissue", min=0.0, max=1.0, help="tiles with less tissue are "
                                     "skipped"),
    pen: bool = typer.Option(False, "--pen", help="leave pen-marked areas (blue, green, black ink) out"),
    mpp: Optional[float] = typer.Option(None, "--mpp", help="micrometres per level-0 pixel of slides whose files "
                                        "do not record it (a slide's own resolution wins, unless --override-mpp)"),
    override_mpp: bool = typer.Option(False, "--override-mpp", help="use --mpp for every slide, even where the file "
                                      "records its own resolution"),
    shard_spec: Optional[str] = typer.Option(None, "--shard", help="I/N: only every N-th slide from the I-th"),
    viewer: bool = typer.Option(False, "--viewer", help="also a zoomable offline viewer of each slide with its heat "
                                "map (viewer/index.html, linked from the slide's report)"),
) -> None:
    """A trained patch classifier over every tissue tile: per slide tiles.csv, heatmap.png/.npy,
    mask.png, slide.json (mean, top-10 mean, share above 0.5) and report.html; slides.csv and
    index.html over the slides done; slides done before are skipped."""
    _checked_run(run_dir)
    from .data.wsi import check_mpp
    from .inference.slides import check_patch_run, infer_slide, read_cohort, write_cohort
    from .io import check_writable

    if tile_mpp is not None:
        check_mpp(tile_mpp, "--tile-mpp")
    _check_mpp_flags(mpp, override_mpp)
    check_writable(out, "--out", folder=True)
    read_cohort(out)  # a stray or damaged slide.json there: found before any slide is scored
    todo = _todo(slides, shard_spec)
    predictor = _predictor(run_dir, "best") if todo else None  # loaded once for every slide
    if predictor is not None:
        check_patch_run(predictor)
    with _slide_bars(len(todo)) as (on_tiles, next_slide):
        for path in todo:
            folder, scores = infer_slide(predictor, path, out, tile_mpp, min_tissue, mpp, pen=pen, progress=on_tiles,
                                         override_mpp=override_mpp, viewer=viewer)
            next_slide()
            if scores is None:
                typer.echo(f"{path}: done before, skipped -> {folder}")
            else:
                typer.echo(f"{path}: {scores['tiles']} tiles, mean P({scores['positive_class']}) "
                           f"{scores['mean'] if scores['mean'] is None else round(scores['mean'], 4)} -> {folder}")
    if todo:
        typer.echo(f"slide scores -> {write_cohort(out)}")


@wsi_app.command("features")
def wsi_features(
    extractor: str = typer.Argument(..., help="an image run of one network (its penultimate layer makes the "
                                    "features), or torchvision:NAME (e.g. torchvision:resnet50) with --weights"),
    sources: list[Path] = typer.Argument(..., help="slide files (cut into tissue tiles at the extractor's resolution "
                                         "and tile size), or one folder of tile images per slide or patient (names "
                                         "carrying _x<X>_y<Y>, the tile's level-0 position, as Kaggle IDC's)"),
    cache: Path = typer.Option(..., "--cache", help="the feature cache folder (one extractor per folder)"),
    shard_spec: Optional[str] = typer.Option(None, "--shard", help="I/N: only every N-th slide from the I-th"),
    weights: Optional[Path] = typer.Option(None, "--weights", help="torchvision:NAME: the local weights file (.pth "
                                           "or .safetensors; nothing is downloaded)"),
    tile_mpp: Optional[float] = typer.Option(None, "--tile-mpp", help="torchvision:NAME: micrometres per pixel of "
                                             "the tiles cut from slides"),
    size: int = typer.Option(224, "--size", help="torchvision:NAME: the tiles' side in pixels"),
    mpp: Optional[float] = typer.Option(None, "--mpp", help="micrometres per level-0 pixel of slides whose files do "
                                        "not record it"),
    min_tissue: float = typer.Option(0.5, "--min-tissue", min=0.0, max=1.0, help="slides: tiles with less tissue "
                                     "are left out"),
) -> None:
    """Tile features of every slide into a cache, with their positions and provenance; slides done
    before (same tiles, same extractor) are skipped, so a killed run resumes."""
    from .data.features import FeatureCache, SlideTiles, TileFiles, extract
    from .data.folders import EXTENSIONS
    from .data.tiles import shard
    from .data.wsi import check_mpp
    from .progress import progress_bar
    from .tasks.common import image_files

    names = [f.stem if f.is_file() else f.name for f in sources]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BiodlError(sources[0], f"two slides are named {twice[0]!r}: slides need distinct names")
    if mpp is not None:
        check_mpp(mpp, "--mpp")
    if extractor.startswith("torchvision:"):
        from .tasks.features import torchvision_extractor

        if weights is None:
            raise BiodlError("--weights", f"{extractor} needs its weights file (biodl never downloads weights)")
        fn, provenance = torchvision_extractor(extractor.split(":", 1)[1], weights, size,
                                               check_mpp(tile_mpp, "--tile-mpp") if tile_mpp is not None else None)
    else:
        from .tasks.features import run_extractor

        if weights is not None or tile_mpp is not None:
            raise BiodlError("--weights" if weights is not None else "--tile-mpp", "belongs to a torchvision:NAME "
                             "extractor; an image run brings its own weights and resolution")
        fn, provenance = run_extractor(extractor)
    files = [f for f in sources if f.is_file()]
    if files and provenance.mpp is None:
        raise BiodlError(files[0], "a slide is cut at the extractor's resolution, which it does not record: give "
                                   "--tile-mpp (torchvision) or use a run trained with data.mpp")
    slides = {n: SlideTiles(f, provenance.size, provenance.mpp, min_tissue, mpp) if f.is_file()
              else TileFiles(image_files(f, EXTENSIONS)) for n, f in zip(names, sources, strict=True)}
    store = FeatureCache(cache, provenance)
    with progress_bar() as bar:
        task = bar.add_task("slides", total=len(shard([Path(s) for s in slides], shard_spec)))
        report = extract(slides, fn, store, shard_spec, progress=lambda: bar.advance(task))
    typer.echo(f"{report['done']} slides extracted, {report['skipped']} done before -> {cache} "
               f"({provenance.dim} features a tile)")


@wsi_app.command("view")
def wsi_view(
    slide: Path = typer.Argument(..., help="a slide file (SVS, NDPI, ..., or an image), or a folder of one patient's "
                                 "tiles named with their positions (..._x<X>_y<Y>...)"),
    out: Path = typer.Option(..., "--out", help="the viewer's folder (index.html opens from file://)"),
    heatmap: Optional[Path] = typer.Option(None, "--heatmap", help="tile scores over the slide: a CSV (x, y, "
                                           "probability[, attention, set, size]), a biodl wsi infer slide folder or "
                                           "a MIL run"),
    mpp: Optional[float] = typer.Option(None, "--mpp", help="micrometres per level-0 pixel, for a slide that does "
                                        "not record it (and any mosaic of tiles)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the viewer in --out"),
) -> None:
    """A zoomable, offline viewer of a slide: a Deep Zoom pyramid, OpenSeadragon, and the heat map
    as a layer with opacity, colour bar, scale bar and a click readout."""
    from .progress import progress_bar
    from .report.viewer import write_viewer

    with progress_bar() as bar:
        task = bar.add_task("pyramid tiles", total=None)
        folder = write_viewer(slide, out, heatmap, mpp, overwrite,
                              progress=lambda done, total: bar.update(task, completed=done, total=total))
    typer.echo(f"viewer: {folder / 'index.html'}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    from PIL import Image

    args = list(sys.argv[1:] if argv is None else argv)
    _SHOWN.clear()
    with warnings.catch_warnings():  # both settings end with the command (it may run in-process)
        warnings.showwarning = _show_warning
        # a file declaring more pixels than Pillow's limit is a bad file (biodl.data.images), not a warning
        warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
        try:
            app(args=args, prog_name="biodl")
        except BiodlError as exc:
            if "--debug" in args:
                raise
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        except Preempted as exc:
            out = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--out"), "RUN_DIR")
            command = " ".join(args[:2] if args[:1] == ["run"] else args[:1])
            print(f"interrupted: {exc}; continue with: biodl {command} --resume --out {out}", file=sys.stderr)
            sys.exit(PREEMPTED_EXIT)
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
