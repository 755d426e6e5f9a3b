"""Transcription-factor binding from DNA sequence (DeepBind's ENCODE data, embedded): a DeepBind
CNN against a k-mer spectrum baseline under the same split, beside the published figure, and the
motifs its filters learned, matched with the factor's known one.

Default: ELK1 (GM12878). Training: the A+C peaks against two dinucleotide shuffles of each
(validation carved from training, a peak and its shuffle together); test: set B (500 peaks + 500
shuffles). ``--experiment GABPA`` (REST, MYC, CTCFL) picks another embedded experiment,
``--experiment all`` runs the five into ``OUT/<factor>/`` with one table; ``--data TRAIN
[--test TEST]`` takes any other data (a .seq table, a CSV, a FASTA of peaks, a folder of one
FASTA per class; without TEST the test set is carved from TRAIN, grouped).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["NAME", "CONFIG", "PUBLISHED", "run", "finish"]

NAME = "tf-binding"

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
    from ..errors import ConfigError
    from ..tasks.sequence import FACTORS
    from . import run_config_study

    rest = [o for o in overrides or [] if not o.startswith("experiment=")]
    chosen = [o.split("=", 1)[1] for o in overrides or [] if o.startswith("experiment=")]
    experiment = chosen[-1] if chosen else None
    if experiment is not None and (experiment not in FACTORS and experiment != "all" or data is not None):
        raise ConfigError("--experiment", f"{experiment!r} is not an embedded experiment (known: "
                                          f"{', '.join(FACTORS)}, all)" if data is None else
                          "picks embedded data; it does not go with --data")
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
    figure, both models' curves, the filters' motifs against the known one, the mutation map of
    the top test peaks."""
    import pandas as pd
    import torch
    from torch.utils.data import TensorDataset

    from .. import runs
    from ..inference.predictor import load
    from ..report.figures import model_curves
    from ..report.run_report import build_report
    from ..report.tables import print_table, write_table
    from ..tasks.sequence import FACTORS, load_split

    predictor = load(run_dir, device="cpu")
    config = predictor.config
    data, parts, test, _ = load_split(config)
    test = test if test is not None else data.subset(parts["test"])
    x = torch.from_numpy(test.one_hot(predictor.pre.length))
    metrics = runs.read_metrics(run_dir / runs.METRICS)
    kmer, p_kmer = _baseline(data.subset(np.concatenate([parts["train"], parts["val"]])), test, config)
    metrics.update(kmer)
    factor = (config.data.dataset or "").partition(":")[2]
    metrics.update(_motifs(run_dir, predictor, x, test, factor if factor in FACTORS else None))
    runs.write_metrics(run_dir, metrics)
    cells = _row_cells(metrics)
    cnn = f"biodl {config.model.name} ({config.model.args})"
    table = pd.DataFrame([{"model": cnn, "ROC AUC": cells["CNN ROC AUC"], "PR AUC": cells["CNN PR AUC"]},
                          {"model": KMER, "ROC AUC": cells["k-mer ROC AUC"], "PR AUC": cells["k-mer PR AUC"]}]
                         + [{"model": who, "ROC AUC": f"{auc:.4f}", "PR AUC": ""}
                            for f, (who, auc) in PUBLISHED.items() if f == factor])
    write_table(table, run_dir / "models", "The CNN, the k-mer baseline and the published figure (test set B)",
                "The same training sequences and split for both; the baseline's C chosen by grouped 3-fold "
                "cross-validation on them; 95% CIs resample a peak with its shuffle.")
    print_table(table, f"tf-binding {factor or ''}: test set")
    p_cnn = predictor.predict_proba(TensorDataset(x, torch.from_numpy(test.labels)), recalibrated=False)[:, 1]
    model_curves(test.labels == 1, {config.model.name: p_cnn, "k-mer baseline": p_kmer}, "test set",
                 run_dir / "curves.png", test.groups, config.n_boot, config.seed, "a peak with its shuffles")
    build_report(run_dir, {"sections": [
        {"title": "Models", "items": ["models", "curves.png"]},
        {"title": "Motifs", "text": "First-layer filters as PWMs from their top-activating test windows, matched "
                                    "with the factor's known motif (mean column correlation, both strands).",
         "items": ["motifs.png", "motifs"]},
        {"title": "Mutation map", "items": ["mutation_map.png"]}]})


KMER = "k-mer spectrum (1-6-mers, both strands) + logistic regression"


def _baseline(train, test, config) -> tuple[dict[str, float], np.ndarray]:
    """``kmer/roc_auc`` and ``kmer/pr_auc`` (with CIs) of the k-mer baseline on the test set, and
    its (N,) probabilities of binding."""
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
    return out, p


def _motifs(run_dir: Path, predictor, x, test, factor: str | None) -> dict[str, float]:
    """``motifs.png/.csv`` (the filters best matching the known motif, or with most sites) and
    ``mutation_map.png`` (in-silico mutagenesis of the three test peaks scored highest); ``x``:
    the test set one-hot (N, 4, L)."""
    import pandas as pd
    import torch

    from ..datasets import embedded_path
    from ..interpret.motifs import filter_pwms, information_content, logo_figure, motif_similarity, \
        mutation_figure, mutation_map, read_jaspar
    from ..report.tables import write_table

    pwms, sites = filter_pwms(predictor.members[0].inferer.module.motifs, x[torch.from_numpy(test.labels == 1)])
    known = {k.split()[0]: v for k, v in read_jaspar(embedded_path("tf-binding") / "known_motifs.jaspar").items()}
    match = [motif_similarity(p, known[factor])[0] if factor else float("nan") for p in pwms]
    order = np.argsort([-m if factor else -s for m, s in zip(match, sites, strict=True)], kind="stable")[:6]
    write_table(pd.DataFrame({"filter": order, "sites": sites[order], "bits": information_content(pwms[order]).sum(1)
                              .round(2), "match": np.round(np.asarray(match)[order], 3)}), run_dir / "motifs",
                f"Filters {'most like the ' + factor + ' motif' if factor else 'with most sites'}")
    logo_figure([(pwms[f], f"filter {f}: {sites[f]} sites" + (f", match {match[f]:.2f}" if factor else ""))
                 for f in order] + ([(known[factor], f"known {factor} motif (consensus, known_motifs.jaspar)")]
                                    if factor else []), run_dir / "motifs.png")
    net = predictor.as_module()

    def score(batch: torch.Tensor) -> torch.Tensor:  # the log-odds of binding, (B,)
        logp = torch.log_softmax(net(batch), dim=1)
        return logp[:, 1] - logp[:, 0]

    with torch.no_grad():
        top = np.argsort(-score(x).numpy())[:3]
    mutation_figure([mutation_map(score, x[i]) for i in top],
                    [f"{test.ids[i]}: change in log-odds of binding for each substitution" for i in top],
                    run_dir / "mutation_map.png")
    return {"motif/score": float(np.nanmax(match))} if factor else {}
