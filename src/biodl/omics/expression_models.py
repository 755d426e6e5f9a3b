"""Models of expression tables under repeated cross-validation: a class from expression (an MLP
through the biodl engine vs multinomial logistic regression) and survival from expression (a
neural Cox model, DeepSurv-style, vs a penalised Cox model), with gene attributions.

Each fold chooses its genes and their standardisation on its training samples only (the most
variable genes of the training fold's log-CPM), so no test sample shapes its own features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch.utils.data import TensorDataset

from ..engine import Trainer
from ..models import create_model
from ..repro import seed_everything
from ..evaluation.survival import concordance_index, cox_loss

__all__ = ["Fold", "folds", "fold_features", "mlp_classifier", "logistic_classifier", "neural_cox",
           "penalised_cox", "classification_scores", "cross_validate", "integrated_gradients"]


@dataclass
class Fold:
    repeat: int
    fold: int
    train: np.ndarray
    test: np.ndarray


def folds(strata: np.ndarray, n_folds: int, n_repeats: int, seed: int = 0) -> list[Fold]:
    """Repeated stratified K-fold over samples (one per patient, so the folds are patient-disjoint)."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    cv = RepeatedStratifiedKFold(n_splits=n_folds, n_repeats=n_repeats, random_state=seed)
    return [Fold(i // n_folds, i % n_folds, tr, te) for i, (tr, te) in enumerate(cv.split(np.zeros(len(strata)),
                                                                                        strata))]


def fold_features(log_expr: pd.DataFrame, train: np.ndarray, test: np.ndarray, n_genes: int
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(train (n, g), test (m, g) standardised features, gene names): the ``n_genes`` genes of
    largest variance over the training samples, standardised by the training mean and std."""
    x = log_expr.to_numpy().T  # samples x genes
    var = x[train].var(axis=0)
    genes = np.argsort(-var, kind="stable")[:n_genes]
    mean, std = x[train][:, genes].mean(axis=0), x[train][:, genes].std(axis=0) + 1e-8
    return ((x[train][:, genes] - mean) / std, (x[test][:, genes] - mean) / std,
            [str(log_expr.index[g]) for g in genes])


def _tensors(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    return TensorDataset(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y))


def mlp_classifier(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, n_classes: int, seed: int,
                   epochs: int = 60, hidden: tuple[int, ...] = (64,), dropout: float = 0.3, lr: float = 1e-3,
                   weight_decay: float = 1e-3) -> tuple[np.ndarray, torch.nn.Module]:
    """An MLP trained through the biodl engine (class-weighted cross-entropy, AdamW); returns (test
    probabilities (m, K), the model)."""
    seed_everything(seed)
    net = create_model("mlp", in_features=x_train.shape[1], num_outputs=n_classes, hidden=list(hidden),
                       dropout=dropout)
    counts = np.bincount(y_train, minlength=n_classes).astype(np.float32)
    weight = torch.as_tensor(counts.sum() / (n_classes * np.maximum(counts, 1)))

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(out, y, weight=weight.to(out.device))

    trainer = Trainer(net, loss, lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=weight_decay),
                      postprocess=lambda o: torch.softmax(o, dim=-1), max_epochs=epochs, batch_size=32, seed=seed,
                      device="cpu")
    trainer.fit(_tensors(x_train, y_train.astype(np.int64)))
    prob = trainer.predict(_tensors(x_test, np.zeros(len(x_test), np.int64))).numpy().astype(np.float64)
    return prob, trainer.module


def logistic_classifier(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, n_classes: int, seed: int,
                        c: float = 0.05) -> tuple[np.ndarray, object]:
    """Multinomial logistic regression (L2, ``C``; balanced class weights): (test probabilities, model)."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed)
    model.fit(x_train, y_train)
    prob = np.zeros((len(x_test), n_classes))
    prob[:, model.classes_] = model.predict_proba(x_test)
    return prob, model


def neural_cox(x_train: np.ndarray, time: np.ndarray, event: np.ndarray, x_test: np.ndarray, seed: int,
               epochs: int = 80, hidden: tuple[int, ...] = (32,), dropout: float = 0.3, lr: float = 1e-3,
               weight_decay: float = 1e-2, ties: str = "efron") -> tuple[np.ndarray, torch.nn.Module]:
    """A DeepSurv-style network (an MLP with one output, the log hazard ratio) trained through
    the biodl engine on the Cox partial likelihood (``ties``: Efron or Breslow), full batch so
    that every risk set is whole; returns (test risks (m,), the model)."""
    seed_everything(seed)
    net = create_model("mlp", in_features=x_train.shape[1], num_outputs=1, hidden=list(hidden), dropout=dropout)
    target = np.column_stack([time, event]).astype(np.float32)

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cox_loss(out.squeeze(-1), y[:, 0], y[:, 1], ties)

    trainer = Trainer(net, loss, lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=weight_decay),
                      postprocess=lambda o: o.squeeze(-1), max_epochs=epochs, batch_size=len(x_train), seed=seed,
                      device="cpu")
    trainer.fit(_tensors(x_train, target))
    risk = trainer.predict(_tensors(x_test, np.zeros((len(x_test), 2), np.float32))).numpy().astype(np.float64)
    return risk, trainer.module


def penalised_cox(x_train: np.ndarray, time: np.ndarray, event: np.ndarray, x_test: np.ndarray, seed: int,
                  penalizer: float = 1.0, genes: list[str] | None = None) -> tuple[np.ndarray, object]:
    """A ridge-penalised Cox model (lifelines, Efron ties): (test log hazard ratios, the fitter)."""
    from lifelines import CoxPHFitter

    names = genes or [f"g{j}" for j in range(x_train.shape[1])]
    frame = pd.DataFrame(x_train, columns=names).assign(_time=time, _event=event)
    cph = CoxPHFitter(penalizer=penalizer).fit(frame, "_time", "_event")
    return np.asarray(pd.DataFrame(x_test, columns=names) @ cph.params_.to_numpy(), dtype=np.float64), cph


def classification_scores(y: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    """Macro F1, balanced accuracy and ROC AUC (the macro one-vs-rest mean; key ``roc_auc``) of
    (N, K) probabilities, any K >= 2 (from :func:`biodl.evaluation.multiclass_scores`)."""
    from sklearn.metrics import f1_score

    from ..evaluation import multiclass_scores

    s = multiclass_scores(y, prob)
    return {"macro_f1": float(f1_score(y, prob.argmax(axis=1), average="macro")),
            "balanced_accuracy": s["balanced_accuracy"], "roc_auc": s["roc_auc"]}


def cross_validate(splits: list[Fold], fit: Callable[[Fold], dict[str, float]], progress: Callable[[], None] | None
                   = None) -> pd.DataFrame:
    """One row per fold: the fold's repeat and index, then what ``fit(fold)`` returns."""
    rows = []
    for f in splits:
        rows.append({"repeat": f.repeat, "fold": f.fold, **fit(f)})
        if progress is not None:
            progress()
    return pd.DataFrame(rows)


def integrated_gradients(model: torch.nn.Module, x: np.ndarray, target: int | None, steps: int = 32) -> np.ndarray:
    """(genes,) mean |integrated gradient| of each input over the samples ``x`` (standardised, so
    the all-zero baseline is the training mean), toward output ``target`` (None: the single
    output)."""
    from captum.attr import IntegratedGradients

    model = model.eval()
    inputs = torch.as_tensor(x, dtype=torch.float32)

    def forward(t: torch.Tensor) -> torch.Tensor:
        out = model(t)
        return out[:, target] if target is not None else out.squeeze(-1)

    attr = IntegratedGradients(forward).attribute(inputs, baselines=torch.zeros_like(inputs), n_steps=steps)
    return attr.abs().mean(dim=0).detach().numpy().astype(np.float64)


def summarise(per_fold: pd.DataFrame, models: dict[str, str], scores: list[str], n_boot: int, seed: int
              ) -> tuple[pd.DataFrame, dict[str, float]]:
    """(a table with one row per model: each score's mean over the folds [95% bootstrap CI of
    that mean, folds resampled], the flat metrics ``<model>/<score>_mean|low|high``)."""
    from ..evaluation.stats import bootstrap_ci

    rows, flat = [], {}
    for key, label in models.items():
        row: dict[str, Any] = {"model": label}
        for s in scores:
            mean, low, high = bootstrap_ci(per_fold[f"{key}_{s}"].to_numpy(), n_boot, seed=seed)
            row[s] = f"{mean:.3f} [{low:.3f}, {high:.3f}]"
            flat.update({f"{key}/{s}_mean": mean, f"{key}/{s}_low": low, f"{key}/{s}_high": high})
        rows.append(row)
    return pd.DataFrame(rows), flat


def compare_classifiers(log_expr: pd.DataFrame, y: np.ndarray, classes: list[str], n_genes: int, n_folds: int,
                        n_repeats: int, seed: int, epochs: int, progress: Callable[[], None] | None = None
                        ) -> pd.DataFrame:
    """Per fold: the MLP's and multinomial logistic regression's macro F1, balanced accuracy and
    macro ROC AUC on the fold's test samples (columns ``mlp_<score>``, ``logistic_<score>``)."""

    def fit(f: Fold) -> dict[str, float]:
        x_train, x_test, _ = fold_features(log_expr, f.train, f.test, n_genes)
        out = {}
        for key, model in (("mlp", lambda: mlp_classifier(x_train, y[f.train], x_test, len(classes),
                                                          seed + f.fold, epochs)),
                           ("logistic", lambda: logistic_classifier(x_train, y[f.train], x_test, len(classes), seed))):
            prob, _ = model()
            out.update({f"{key}_{k}": v for k, v in classification_scores(y[f.test], prob).items()})
        return out

    return cross_validate(folds(y, n_folds, n_repeats, seed), fit, progress)


def compare_survival_models(log_expr: pd.DataFrame, time: np.ndarray, event: np.ndarray, n_genes: int,
                            n_folds: int, n_repeats: int, seed: int, epochs: int, ties: str,
                            progress: Callable[[], None] | None = None) -> pd.DataFrame:
    """Per fold (stratified by event): Harrell's C of the neural Cox model and of the penalised
    Cox model on the fold's test samples (columns ``neural_cox_c_index``, ``penalised_cox_c_index``)."""

    def fit(f: Fold) -> dict[str, float]:
        x_train, x_test, genes = fold_features(log_expr, f.train, f.test, n_genes)
        deep, _ = neural_cox(x_train, time[f.train], event[f.train], x_test, seed + f.fold, epochs, ties=ties)
        ridge, _ = penalised_cox(x_train, time[f.train], event[f.train], x_test, seed, genes=genes)
        return {"neural_cox_c_index": concordance_index(time[f.test], deep, event[f.test]),
                "penalised_cox_c_index": concordance_index(time[f.test], ridge, event[f.test])}

    return cross_validate(folds(event.astype(int), n_folds, n_repeats, seed), fit, progress)


def top_genes(log_expr: pd.DataFrame, y: np.ndarray | None, time: np.ndarray | None, event: np.ndarray | None,
              n_genes: int, seed: int, epochs: int, classes: list[str] | None = None, ties: str = "efron",
              top: int = 15) -> pd.DataFrame:
    """Gene importance of models fitted once on every sample: the neural model's mean |integrated
    gradient| (captum) beside the classical model's largest |coefficient| (per class for the
    classifier, summed over classes). One row per rank."""
    everyone = np.arange(log_expr.shape[1])
    x, _, genes = fold_features(log_expr, everyone, everyone[:1], n_genes)
    if y is not None:
        _, net = mlp_classifier(x, y, x[:1], len(classes), seed, epochs)
        ig = sum(integrated_gradients(net, x, k) for k in range(len(classes)))
        _, lr = logistic_classifier(x, y, x[:1], len(classes), seed)
        coef = np.abs(lr.coef_).sum(axis=0)
    else:
        _, net = neural_cox(x, time, event, x[:1], seed, epochs, ties=ties)
        ig = integrated_gradients(net, x, None)
        _, cph = penalised_cox(x, time, event, x[:1], seed, genes=genes)
        coef = np.abs(cph.params_.to_numpy())
    a, b = np.argsort(-ig, kind="stable")[:top], np.argsort(-coef, kind="stable")[:top]
    return pd.DataFrame({"rank": np.arange(1, len(a) + 1), "neural (integrated gradients)": [genes[i] for i in a],
                         "mean |IG|": np.round(ig[a], 4), "classical (|coefficient|)": [genes[i] for i in b],
                         "|coefficient|": np.round(coef[b], 4)})
