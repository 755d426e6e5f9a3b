"""Transcription-factor binding from DNA sequence (DeepBind's ENCODE data, embedded): a DeepBind
CNN against a k-mer spectrum baseline under the same split, beside the published figure, and the
motifs its filters learned, matched with the factor's known one.

Default: ELK1 (GM12878). Training: the A+C peaks against two dinucleotide shuffles of each
(validation carved from training, a peak and its shuffle together); test: set B (500 peaks + 500
shuffles). ``--set experiment=GABPA`` (REST, MYC, CTCFL) picks another embedded experiment,
``--set experiment=all`` runs the five into ``OUT/<factor>/`` with one table; ``--data TRAIN
--set data.test=TEST`` takes any other data (a .seq table, a CSV, a FASTA of peaks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["NAME", "SUMMARY", "CONFIG", "PUBLISHED", "run", "finish"]

NAME = "tf-binding"
SUMMARY = "Transcription-factor binding from DNA (5 ENCODE ChIP-seq sets): DeepBind CNN vs k-mer baseline, motifs"

CONFIG: dict[str, Any] = {
    "name": NAME, "task": "sequence", "seed": 0,
    "data": {"dataset": "tf-binding:ELK1", "shuffles": 2},  # chosen on validation: benchmarks/tf_binding_models.py
    "model": {"name": "deepbind", "args": {"filters": 128, "width": 15}},
    "optimizer": {"name": "adamw", "lr": 0.003, "weight_decay": 0.001},
    "trainer": {"epochs": 30, "monitor": "val/roc_auc", "mode": "max"},
}

#: published test ROC AUC on the same files (SOURCE.md): a community PyTorch re-implementation of
#: DeepBind (16 detectors of 24 bp, trained on ELK1's set A with shuffled negatives); not peer reviewed
PUBLISHED = {"ELK1": ("DeepBind re-implementation (PyTorch, set A; SOURCE.md)", 0.8998)}


def run(out: str | Path | None = None, overrides: list[str] | None = None, data: str | Path | None = None) -> Path:
    from ..tasks.sequence import FACTORS
    from . import run_config_study

    rest = [o for o in overrides or [] if not o.startswith("experiment=")]
    chosen = [o.split("=", 1)[1] for o in overrides or [] if o.startswith("experiment=")]
    experiment = chosen[-1] if chosen else None
    if experiment == "all":
        return _all(out, rest, list(FACTORS))
    if experiment is not None:
        rest = [f"data.dataset=tf-binding:{experiment}", *rest]
    run_dir = run_config_study(CONFIG, NAME, out, rest, data)
    finish(run_dir)
    return run_dir


def _all(out: str | Path | None, overrides: list[str], factors: list[str]) -> Path:
    """Every embedded experiment into ``out/<factor>/``, then ``experiments.csv/.md`` over them."""
    import pandas as pd

    from .. import runs
    from ..report.tables import print_table, write_table

    root = Path(out) if out is not None else runs.default_run_dir(NAME)
    rows = []
    for factor in factors:
        run_dir = run(root / factor, [f"experiment={factor}", *overrides])
        rows.append({"experiment": factor, **_row_cells(runs.read_metrics(run_dir / runs.METRICS))})
    table = pd.DataFrame(rows)
    write_table(table, root / "experiments", "Five ENCODE experiments: DeepBind CNN and k-mer baseline (test set B)",
                "ROC AUC and PR AUC on set B with 95% CIs over peak-and-shuffle pairs; the motif match is the best "
                "filter's mean column correlation with the factor's known motif.")
    print_table(table, "tf-binding: every experiment")
    return root


def _row_cells(m: dict[str, float | None]) -> dict[str, str]:
    def cell(key: str) -> str:
        v, lo, hi = m.get(key), m.get(f"{key}_ci_low"), m.get(f"{key}_ci_high")
        return "undefined" if v is None else f"{v:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else "")

    return {"CNN ROC AUC": cell("test/roc_auc"), "k-mer ROC AUC": cell("kmer/roc_auc"),
            "CNN PR AUC": cell("test/pr_auc"), "k-mer PR AUC": cell("kmer/pr_auc"),
            "motif match": f"{m['motif/score']:.2f}" if m.get("motif/score") is not None else ""}


def finish(run_dir: Path) -> None:
    """After the CNN's run: the k-mer baseline on the same split, the table beside the published
    figure, the filters' motifs against the known one, the mutation map of the top test peaks."""
    import pandas as pd

    from .. import runs
    from ..inference.predictor import load
    from ..report.run_report import build_report
    from ..report.tables import print_table, write_table
    from ..tasks.sequence import FACTORS, load_split

    predictor = load(run_dir, device="cpu")
    config = predictor.config
    data, parts, test, _ = load_split(config)
    test = test if test is not None else data.subset(parts["test"])
    fit_rows = np.concatenate([parts["train"], parts["val"]])
    metrics = runs.read_metrics(run_dir / runs.METRICS)
    metrics.update(_baseline(data.subset(fit_rows), test, config))
    factor = (config.data.dataset or "").partition(":")[2]
    metrics.update(_motifs(run_dir, predictor, test, factor if factor in FACTORS else None))
    runs.write_metrics(run_dir, metrics)
    table = pd.DataFrame([{"model": f"biodl {config.model.name} ({config.model.args})",
                           "ROC AUC": _row_cells(metrics)["CNN ROC AUC"], "PR AUC": _row_cells(metrics)["CNN PR AUC"]},
                          {"model": "k-mer spectrum (1-6-mers, both strands) + logistic regression",
                           "ROC AUC": _row_cells(metrics)["k-mer ROC AUC"],
                           "PR AUC": _row_cells(metrics)["k-mer PR AUC"]}]
                         + [{"model": who, "ROC AUC": f"{auc:.4f}", "PR AUC": ""}
                            for f, (who, auc) in PUBLISHED.items() if f == factor])
    write_table(table, run_dir / "models", "The CNN, the k-mer baseline and the published figure (test set B)",
                "The same training sequences and split for both; the baseline's C chosen by grouped 3-fold "
                "cross-validation on them; 95% CIs resample a peak with its shuffle.")
    print_table(table, f"tf-binding {factor or ''}: test set")
    build_report(run_dir, {"sections": [
        {"title": "Models", "items": ["models"]},
        {"title": "Motifs", "text": "First-layer filters as PWMs from their top-activating test windows, matched "
                                    "with the factor's known motif (mean column correlation, both strands).",
         "items": ["motifs.png", "motifs"]},
        {"title": "Mutation map", "items": ["mutation_map.png"]}]})


def _baseline(train, test, config) -> dict[str, float]:
    """``kmer/roc_auc`` and ``kmer/pr_auc`` (with CIs) of the k-mer baseline on the test set."""
    from ..evaluation.bootstrap import bootstrap_cis
    from ..omics.kmers import KmerBaseline
    from sklearn.metrics import average_precision_score, roc_auc_score

    model = KmerBaseline(seed=config.seed).fit(train.sequences, train.labels, train.groups)
    p = model.predict_proba(test.sequences)[:, 1]

    def score(y: np.ndarray, prob: np.ndarray) -> dict[str, float]:
        return {"roc_auc": roc_auc_score(y, prob), "pr_auc": average_precision_score(y, prob)}

    out = {f"kmer/{k}": v for k, v in score(test.labels, p).items()}
    for k, (lo, hi) in bootstrap_cis(test.labels, p, score, config.n_boot, seed=config.seed,
                                     groups=test.groups).items():
        out[f"kmer/{k}_ci_low"], out[f"kmer/{k}_ci_high"] = lo, hi
    out["kmer/C"] = model.C
    return out


def _motifs(run_dir: Path, predictor, test, factor: str | None) -> dict[str, float]:
    """``motifs.png/.csv`` (the filters best matching the known motif, or with most sites) and
    ``mutation_map.png`` (in-silico mutagenesis of the three test peaks scored highest)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import torch

    from ..datasets import embedded_path
    from ..interpret.motifs import draw_logo, filter_pwms, information_content, motif_similarity, mutation_map, \
        read_jaspar
    from ..report.tables import write_table

    module = predictor.members[0].inferer.module
    x = torch.from_numpy(test.one_hot(predictor.pre.length))
    pwms, sites = filter_pwms(module.motifs, x[torch.from_numpy(test.labels == 1)])
    known = {k.split()[0]: v for k, v in read_jaspar(embedded_path("tf-binding") / "known_motifs.jaspar").items()}
    match = [motif_similarity(p, known[factor])[0] if factor else float("nan") for p in pwms]
    order = np.argsort([-m if factor else -s for m, s in zip(match, sites, strict=True)], kind="stable")[:6]
    write_table(pd.DataFrame({"filter": order, "sites": sites[order], "bits": information_content(pwms[order]).sum(1)
                              .round(2), "match": np.round(np.asarray(match)[order], 3)}), run_dir / "motifs",
                f"Filters {'most like the ' + factor + ' motif' if factor else 'with most sites'}")
    fig, axes = plt.subplots(len(order) + bool(factor), 1, figsize=(6, 1.3 * (len(order) + 1)), squeeze=False)
    for ax, f in zip(axes[:, 0], order, strict=False):
        draw_logo(pwms[f], ax, f"filter {f}: {sites[f]} sites" + (f", match {match[f]:.2f}" if factor else ""))
    if factor:
        draw_logo(known[factor], axes[-1, 0], f"known {factor} motif (consensus, known_motifs.jaspar)")
    fig.tight_layout()
    fig.savefig(run_dir / "motifs.png", dpi=120)
    plt.close(fig)
    net = predictor.as_module()

    def score(batch: torch.Tensor) -> torch.Tensor:  # the log-odds of binding, (B,)
        logp = torch.log_softmax(net(batch), dim=1)
        return logp[:, 1] - logp[:, 0]

    with torch.no_grad():
        top = np.argsort(-score(x).numpy())[:3]
    fig, axes = plt.subplots(len(top), 1, figsize=(10, 1.6 * len(top)), squeeze=False)
    for ax, i in zip(axes[:, 0], top, strict=True):
        m = mutation_map(score, x[i])
        lim = np.abs(m).max()
        ax.imshow(m, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_yticks(range(4), list("ACGT"))
        ax.set_title(f"{test.ids[i]}: change in log-odds of binding for each substitution", fontsize=8)
    fig.tight_layout()
    fig.savefig(run_dir / "mutation_map.png", dpi=120)
    plt.close(fig)
    return {"motif/score": float(np.nanmax(match))} if factor else {}
