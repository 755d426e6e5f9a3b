"""``biodl explain RUN_DIR``: attributions of a trained run, with their checks, written to
``RUN_DIR/explain/`` (per image and method a PNG of the image, heat map and blend; a grid;
first-layer filters; activation maps; ``explain.json`` with the numbers). Tabular runs get
permutation importance and integrated gradients per feature instead."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import runs
from ..errors import BiodlError, ConfigError, DataError
from ..io import atomic_folder, atomic_write_json
from .attributions import BASELINES, attribute, parse_methods
from .checks import deletion_insertion, sanity_check

__all__ = ["OUTCOMES", "OUT", "EXPLAINERS", "explain_run", "SIMILAR_K", "explain_images", "explain_tabular"]


OUTCOMES = ("tp", "tn", "fp", "fn")
OUT = "explain"
#: task -> "module:function" (modules of biodl.interpret) that explains its runs
EXPLAINERS = {"tabular": "explain:explain_tabular", "image": "explain:explain_images",
              "sequence": "sequences:explain_sequences"}


def explain_run(run_dir: str | Path, images: list[Path] | None = None, methods: str | None = None,
                target: str = "predicted", pick: str = "tp,tn,fp,fn", n: int = 4, baseline: str | None = None,
                steps: int = 50, sanity: bool = True, layer: str | None = None, overwrite: bool = False) -> Path:
    """Explain a run; returns the output folder. ``methods`` and ``baseline`` default to the
    task's (images: ``ig,gradcam,occlusion`` from black; sequences: ``ig,ism`` from shuffles).
    Every input fault is raised before anything is written, and the folder is replaced whole
    (written aside, then renamed)."""
    run_dir = Path(run_dir)
    config = runs.load_run_config(run_dir)
    if config.task not in EXPLAINERS:
        raise ConfigError(run_dir, f"biodl explain does not support {config.task} runs (it supports: "
                                   f"{', '.join(EXPLAINERS)})")
    module, _, function = EXPLAINERS[config.task].partition(":")
    explainer = getattr(import_module(f".{module}", __package__), function)
    out = run_dir / OUT
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise BiodlError(out, "exists; pass --overwrite to replace it")
    with atomic_folder(out, exists="replace") as tmp:
        explainer(run_dir, tmp, images=images or [], methods=methods, target=target, pick=pick, n=n,
                  baseline=baseline, steps=steps, sanity=sanity, layer=layer)
    from ..report.run_report import build_report

    build_report(run_dir)
    return out


# ----------------------------------------------------------------------------- images


def _pixels(predictor: Any, inputs: Any) -> tuple[torch.Tensor, list[str]]:
    """(N, C, H, W) pixels in [0, 1] of ``inputs`` (files or folders) read exactly as ``biodl
    predict`` reads them (decoded at the run's size, stain-normalised as the run's images were, the
    run's channels), and each image's name."""
    found = predictor.read(inputs)
    return found.data[torch.arange(len(found.data))][0].float().div(255), found.ids["image"].tolist()


def _outcomes(pick: str) -> list[str]:
    wanted = [p.strip().lower() for p in pick.split(",") if p.strip()]
    bad = [p for p in wanted if p not in OUTCOMES]
    if bad or not wanted:
        raise BiodlError("--pick", f"unknown outcome {bad[0] if bad else pick!r}; choose from {', '.join(OUTCOMES)}")
    return wanted


def _pick_rows(y: np.ndarray, prob: np.ndarray, wanted: list[str], n: int,
               patients: np.ndarray | None = None) -> list[tuple[int, str]]:
    """(index, outcome) of the ``n`` most confident of each outcome in ``wanted``; with
    ``patients``, spread over patients (each patient's most confident first, then their second,
    ...). Class 0 is the negative class: tp = a non-zero class predicted right, tn = class 0
    right, fp = class 0 called another, fn = another class called 0."""
    pred, conf = prob.argmax(axis=1), prob.max(axis=1)
    masks = {"tp": (y != 0) & (pred == y), "tn": (y == 0) & (pred == 0), "fp": (y == 0) & (pred != 0),
             "fn": (y != 0) & (pred == 0)}
    picked = []
    for o in wanted:
        idx = np.flatnonzero(masks[o])
        idx = idx[np.argsort(-conf[idx], kind="stable")]
        if patients is not None:  # rank within patient, then confidence
            _, who = np.unique(np.asarray(patients)[idx], return_inverse=True)
            rank = np.zeros(len(idx), int)
            for g in range(who.max() + 1 if len(idx) else 0):
                rank[who == g] = np.arange(np.sum(who == g))
            idx = idx[np.lexsort((-conf[idx], rank))]
        picked += [(int(i), o) for i in idx[:n]]
    if not picked:
        raise BiodlError("--pick", f"no test image is {', '.join(wanted)}")
    return picked


def _pick_test(predictor: Any, pick: str, n: int) -> tuple[torch.Tensor, list[dict]]:
    """The ``n`` most confident test images of each outcome in ``pick`` (see :func:`_pick_rows`)."""
    from ..data.arrays import ImageDataset
    from ..tasks.image_data import load_images, split_images

    wanted = _outcomes(pick)
    data, path = load_images(predictor.config)
    parts, _ = split_images(predictor.config, data, path)
    test = ImageDataset(data, indices=parts["test"])
    y = test.labels.numpy()
    picked = _pick_rows(y, predictor.predict_proba(test, recalibrated=False), wanted, n)
    meta = [{"source": f"test row {int(parts['test'][i])}", "outcome": o, "true": predictor.classes[y[i]]}
            for i, o in picked]
    x = test[torch.as_tensor([i for i, _ in picked])][0].float().div(255)
    return x, meta


def _pick_out_of_fold(predictor: Any, pick: str, n: int) -> tuple[torch.Tensor, list[dict]]:
    """A k-fold parent's picks: the ``n`` most confident out-of-fold predictions of each outcome
    (from its pooled ``test_predictions.csv``), spread over patients, each with the fold (``meta[i]["fold"]``) whose
    model tested it and never saw its patient."""
    import pandas as pd

    from ..data.arrays import ImageDataset
    from ..report.predictions import PROB
    from ..tasks.image_data import load_images

    run_dir, config, classes, folds_n = predictor.run_dir, predictor.config, predictor.classes, len(predictor.members)
    wanted = _outcomes(pick)
    path = run_dir / runs.predictions_file("test")
    try:
        pred = pd.read_csv(path, keep_default_na=False, dtype={"patient": str, "source": str})
        y = pred["label"].to_numpy(int)
        prob = pred[[f"{PROB}{c}" for c in classes]].to_numpy(np.float64)
        rows, folds = pred["row"].to_numpy(int), pred["fold"].to_numpy(int)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(path, f"cannot read the pooled out-of-fold predictions ({exc}); did the k-fold run "
                              "finish?") from None
    data, _ = load_images(config)
    if len(rows) and (rows.min() < 0 or rows.max() >= len(data) or folds.min() < 1 or folds.max() > folds_n):
        raise DataError(path, f"rows or folds out of range for the run's {len(data)} images and {folds_n} folds")
    picked = _pick_rows(y, prob, wanted, n, pred["patient"].to_numpy() if "patient" in pred else None)
    meta = []
    for i, o in picked:
        where = pred["source"].iloc[i] if "source" in pred and pred["source"].iloc[i] else f"row {rows[i]}"
        patient = f", patient {pred['patient'].iloc[i]}" if "patient" in pred and pred["patient"].iloc[i] else ""
        meta.append({"source": f"{where}{patient}, fold {folds[i]}", "outcome": o, "true": classes[y[i]],
                     "row": int(rows[i]), "fold": int(folds[i])})
    x = ImageDataset(data, indices=rows[[i for i, _ in picked]])[torch.arange(len(picked))][0].float().div(255)
    return x, meta


#: training images shown as a case's nearest neighbours
SIMILAR_K = 5


def _similar_cases(predictor: Any, x_all: torch.Tensor, which: list, models: dict, out: Path,
                   titles: list[str], k: int = SIMILAR_K) -> list[list[dict]] | None:
    """For each explained image, the ``k`` training images nearest to it in its model's
    penultimate-feature space (cosine), from that model's own training split (a fold's for an
    out-of-fold pick), drawn as ``similar.png``; a single run also gets ``feature_map.png``, its
    test set's features in 2-D. None for models that stand for several (an ensemble, or a k-fold
    parent given image files): their members' feature spaces differ."""
    from ..data.arrays import ImageDataset
    from ..report.figures import image_examples
    from ..tasks.crossval import fold_config
    from ..tasks.image_data import load_images, split_images
    from .similar import feature_map, head_inputs, nearest

    if predictor.kind == "ensemble" or (predictor.kind == "kfold" and None in which):
        return None
    config, classes = predictor.config, predictor.classes
    data, path = load_images(config)

    def pixels(rows: np.ndarray) -> torch.Tensor:
        return ImageDataset(data, indices=rows)[torch.arange(len(rows))][0].float().div(255)

    def features(model, rows: np.ndarray) -> torch.Tensor:
        return torch.cat([head_inputs(model, pixels(rows[i:i + 256])) for i in range(0, len(rows), 256)])

    found: list[list[dict]] = [[] for _ in which]
    for w in sorted(set(which), key=lambda v: -1 if v is None else v):
        parts, _ = split_images(config if w is None else fold_config(config, w - 1), data, path)
        train = np.asarray(parts["train"])
        mine = [i for i, v in enumerate(which) if v == w]
        sim, idx = nearest(head_inputs(models[w], x_all[mine]), features(models[w], train), k)
        for j, i in enumerate(mine):
            found[i] = [{"row": int(train[n]), "label": classes[int(data.labels[train[n]])], "similarity": float(c)}
                        for c, n in zip(sim[j].tolist(), idx[j].tolist(), strict=True)]
        if w is None and len(parts["test"]) > 2:  # one feature space: the test set's map
            test = np.asarray(parts["test"])
            feats = features(models[w], test).numpy()
            with torch.no_grad():
                pred = torch.cat([models[w](pixels(test[i:i + 256])).argmax(1) for i in range(0, len(test), 256)])
            feature_map(feats, data.labels[test], pred.numpy(), classes, out / "feature_map.png")
    images, captions, colors = [], [], []
    cols = min(k, len(found[0])) + 1
    for i, near in enumerate(found):
        images.append((x_all[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        captions.append(titles[i])
        colors.append("black")
        for n in near:
            images.append(np.asarray(data.images[n["row"]]))
            captions.append(f"{n['label']} ({n['similarity']:.2f})")
            colors.append("#555555")
        for _ in range(cols - 1 - len(near)):
            images.append(np.full_like(images[-1], 255))
            captions.append("")
            colors.append("black")
    image_examples(np.stack(images), captions, colors, f"Each case, then its {cols - 1} most similar training "
                   "images (label, cosine similarity of the model's features)", out / "similar.png", cols=cols)
    return found


def _target(target: str, classes: list[str], predicted: int) -> int:
    if target == "predicted":
        return predicted
    if target in classes:
        return classes.index(target)
    if target.lstrip("-").isdigit():
        k = int(target)
        if 0 <= k < len(classes):
            return k
        raise BiodlError("--target", f"class {k} is out of range: the model has {len(classes)} classes "
                                     f"(0-{len(classes) - 1})")
    raise BiodlError("--target", f"{target!r} is not 'predicted', a class index or a class name "
                                 f"({', '.join(classes)})")


def explain_images(run_dir: Path, out: Path, images: list[Path], methods: str | None, target: str, pick: str, n: int,
                   baseline: str | None, steps: int, sanity: bool, layer: str | None) -> None:
    """An image run's attributions (``methods``: comma-separated) of ``images``, or of test
    images picked by outcome, with the sanity and faithfulness checks, into ``out``. Images are
    read as ``biodl predict`` reads them; the attributions and probabilities are the networks'
    own (without recalibration or test-time augmentation), each picked out-of-fold image by the
    fold model that tested it, given files by the run's networks together."""
    from ..progress import progress_bar
    from ..inference.predictor import load
    from .figures import activation_maps, attribution_grid, first_layer_filters, save_triptych

    files, methods, baseline = images, parse_methods(methods or "ig,gradcam,occlusion"), baseline or "black"
    predictor = load(run_dir)
    classes = predictor.classes
    base: str | torch.Tensor = baseline
    if baseline not in BASELINES:
        base = _pixels(predictor, Path(baseline))[0][:1]
    _target(target, classes, 0)  # a bad --target fails before any work
    device = predictor.device
    if files:  # a parent's model here is its members together
        x_all, names = _pixels(predictor, files)  # files as given, or the images in folders as found
        meta = [{"source": s} for s in ([str(f) for f in files] if all(f.is_file() for f in files) else names)]
    elif predictor.kind == "kfold":
        x_all, meta = _pick_out_of_fold(predictor, pick, n)
    else:
        x_all, meta = _pick_test(predictor, pick, n)
    models = {None: predictor.as_module(recalibrated=False, tta=False)}
    for k in sorted({m["fold"] for m in meta if "fold" in m}):  # each out-of-fold image by its own fold's model
        models[k] = predictor.as_module(recalibrated=False, member=k - 1, tta=False)
    which = [m.get("fold") for m in meta]
    with torch.no_grad():
        prob = torch.cat([torch.softmax(models[w](x[None].to(device)).float(), 1).cpu()
                          for x, w in zip(x_all, which, strict=True)])
    records, maps = [], []
    with progress_bar() as bar:
        task = bar.add_task("attributions", total=len(x_all) * len(methods))
        for i, (x, m) in enumerate(zip(x_all, meta, strict=True)):
            model = models[which[i]]
            x = x[None].to(device)
            k = _target(target, classes, int(prob[i].argmax()))
            rec = {**m, "predicted": classes[int(prob[i].argmax())], "target": classes[k],
                   "probability": float(prob[i, k]), "methods": {}}
            row = {}
            for meth in methods:
                amap, info = attribute(meth, model, x, k, base, steps)
                png = f"{i:03d}_{meth}.png"
                w, h = save_triptych(x.cpu(), amap, meth, out / png)
                faith = deletion_insertion(model, x, k, amap.to(device))
                rec["methods"][meth] = {**info, "png": png, "png_size": [w, h],
                                        "deletion_auc": faith["deletion_auc"], "insertion_auc": faith["insertion_auc"],
                                        "deletion": faith["deletion"], "insertion": faith["insertion"]}
                row[meth] = amap
                bar.advance(task)
            records.append(rec)
            maps.append(row)
    model = models[which[0]]  # the checks and layer figures: the first image's model
    titles = [f"{r.get('outcome', '')} {r.get('true', '')}→{r['predicted']}".strip() for r in records]
    neighbours = _similar_cases(predictor, x_all, which, models, out, titles)
    for rec, near in zip(records, neighbours or [], strict=False):
        rec["similar"] = near
    captions = [f"{r.get('outcome', '')} {r.get('true', '')}→{r['predicted']} ({r['probability']:.2f})".strip()
                for r in records]
    attribution_grid([x[None] for x in x_all], maps, captions, out / "grid.png")
    first_layer_filters(model, out / "filters.png")
    checks: dict[str, Any] = {}
    x0 = x_all[:1].to(device)
    k0 = _target(target, classes, int(prob[0].argmax()))
    if sanity:
        for meth in methods:
            checks[meth] = sanity_check(lambda mdl, xx, kk, meth=meth: attribute(meth, mdl, xx, kk, base, steps)[0],
                                        model, x0, k0)
    if layer is None and "gradcam" in methods:
        layer = records[0]["methods"]["gradcam"].get("layer")
    shape = activation_maps(model, layer, x0, out / "activations.png") if layer else None
    atomic_write_json(out / "explain.json", {
        "run": str(run_dir.resolve()), "methods": methods, "target": target, "baseline": baseline, "steps": steps,
        "images": records, "sanity_check": checks, "activations": {"layer": layer, "shape": shape} if layer else None,
        "summary": {meth: {"deletion_auc_mean": float(np.mean([r["methods"][meth]["deletion_auc"] for r in records])),
                           "insertion_auc_mean": float(np.mean([r["methods"][meth]["insertion_auc"]
                                                                for r in records])),
                           "sanity_flagged": checks.get(meth, {}).get("flagged")} for meth in methods}})


# ----------------------------------------------------------------------------- tables


def explain_tabular(run_dir: Path, out: Path, images: list[Path], **_: Any) -> None:
    """Permutation importance (drop in ROC AUC, 10 repeats) and mean integrated gradients per
    feature over the run's test rows, as a bar chart and JSON (the image options do not apply)."""
    if images:
        raise BiodlError(images[0], "a tabular run is explained on its test rows; give no files")
    from captum.attr import IntegratedGradients
    from sklearn.metrics import roc_auc_score

    from ..evaluation.importance import permutation_importance
    from ..report.figures import pyplot, save_figure
    from ..inference.predictor import load
    from ..tasks.tabular import load_test_split

    predictor = load(run_dir)
    pre = predictor.pre
    x, y, rows = load_test_split(run_dir, predictor.config, pre)  # refused if the data changed since training
    xt = x.astype(np.float32)
    model = predictor.as_module(recalibrated=False).float()  # raw features -> (B, 2) scores

    def predict(a: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            scores = model(torch.from_numpy(a.astype(np.float32)).to(predictor.device))
        return torch.softmax(scores, 1)[:, 1].cpu().numpy()

    perm = permutation_importance(predict, xt, y, roc_auc_score, 10, predictor.config.seed)
    for p in model.parameters():
        p.requires_grad_(False)
    inp = torch.from_numpy(xt).to(predictor.device).requires_grad_(True)
    mean = torch.tensor(pre.mean, dtype=torch.float32, device=predictor.device).expand_as(inp)
    ig, delta = IntegratedGradients(model).attribute(inp, mean, target=1, n_steps=50, return_convergence_delta=True)
    ig = ig.detach().cpu().numpy()
    feats = list(pre.features)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.32 * len(feats) + 1.8))
    order = np.argsort(perm)
    axes[0].barh([feats[i] for i in order], perm[order], color="#4c72b0")
    axes[0].set(title="permutation importance (test rows)", xlabel="drop in ROC AUC")
    mean_abs = np.abs(ig).mean(0)
    order = np.argsort(mean_abs)
    axes[1].barh([feats[i] for i in order], ig.mean(0)[order], color="#dd8452", label="mean")
    axes[1].barh([feats[i] for i in order], mean_abs[order], fill=False, edgecolor="grey", label="mean |IG|")
    axes[1].axvline(0, color="grey", lw=0.8)
    axes[1].set(title="integrated gradients (baseline: the training mean)", xlabel="attribution to the logit")
    axes[1].legend(fontsize=8)
    save_figure(fig, out / "tabular_importance.png", tight_layout=True)
    atomic_write_json(out / "explain.json", {
        "run": str(run_dir.resolve()), "rows": len(rows), "features": feats,
        "permutation_importance_auc_drop": dict(zip(feats, map(float, perm), strict=True)),
        "ig_mean": dict(zip(feats, map(float, ig.mean(0)), strict=True)),
        "ig_mean_abs": dict(zip(feats, map(float, mean_abs), strict=True)),
        "ig_convergence_delta_max": float(delta.abs().max())})
