"""Config sections of molecular runs: DNA sequences (``task: sequence``) and single cells
(``task: cells``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from .schemas import (ClassificationRun, ModelConfig, OptimizerConfig, SchedulerConfig, Strict, TrainerConfig,
                      fold_in_range, one_source)

__all__ = ["SequenceDataConfig", "SequenceModelConfig", "SequenceRunConfig", "CellPreprocessConfig", "CellsDataConfig",
           "CellsRunConfig"]


class SequenceDataConfig(Strict):
    """DNA sequences with labels (``task: sequence``): the training file, where the negatives
    come from when it holds positives only, the test set, and the length the model sees."""

    dataset: str | None = Field(None, description="an embedded experiment: tf-binding:<FACTOR> (ELK1, GABPA, REST, "
                                                   "MYC, CTCFL): trains on its A+C peaks, tests on its B set")
    path: Path | None = Field(None, description="training sequences: a DeepBind .seq[.gz] table, a CSV of "
                                                "sequence,label[,group][,id], a FASTA (labels: data.labels, or all "
                                                "positives), or a folder of one FASTA per class")
    labels: Path | None = Field(None, description="a CSV id,label for a FASTA file")
    test: Path | None = Field(None, description="a test set in the same forms (default: data.test_fraction of the "
                                                "training sequences, grouped)")
    negatives: str = Field("shuffle", description="when the training (or test) sequences are positives only: "
                                                  "shuffle (dinucleotide shuffles of each) or a FASTA of background "
                                                  "sequences")
    shuffles: int = Field(1, ge=1, le=10, description="dinucleotide shuffles made of each positive")
    length: int | None = Field(None, ge=8, le=100_000, description="the length the model sees (default: the "
                                                                    "longest training sequence)")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="validation carved from training, grouped (a peak "
                                                             "and its shuffles together)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="without data.test: the test share, grouped")
    reverse_complement: bool = Field(True, description="train on a random strand of each sequence")
    batch_size: int = Field(128, ge=1)
    num_workers: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_source(self) -> "SequenceDataConfig":
        one_source(self)
        return self


class SequenceModelConfig(ModelConfig):
    """A sequence model from the registry (``deepbind``, ``basset``)."""

    name: str = "deepbind"
    strands: bool = Field(True, description="validate, test and predict on the mean of both strands (the sequence "
                                            "and its reverse complement)")


class SequenceRunConfig(ClassificationRun):
    """A DNA sequence classification run (``task: sequence``), e.g. transcription-factor binding."""

    name: str = "sequences"
    task: Literal["sequence"] = "sequence"
    data: SequenceDataConfig
    model: SequenceModelConfig = Field(default_factory=SequenceModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=lambda: OptimizerConfig(name="adamw", lr=3e-3,
                                                                               weight_decay=1e-3))
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = Field(default_factory=lambda: TrainerConfig(epochs=40, monitor="val/roc_auc",
                                                                         mode="max"))


class CellPreprocessConfig(Strict):
    """Quality filter and the preprocessing fitted on training cells (:mod:`biodl.omics.cells`)."""

    min_genes: int = Field(200, ge=0, description="cells with fewer genes detected are left out (counted)")
    min_counts: int = Field(0, ge=0, description="cells with fewer counts are left out (counted)")
    min_cells: int = Field(3, ge=1, description="genes detected in fewer training cells are not considered")
    n_top_genes: int = Field(2000, ge=2, le=100_000, description="highly variable genes kept (Seurat dispersion)")
    target_sum: float = Field(1e4, gt=0, description="counts per cell after library-size normalisation")
    clip: float | None = Field(10.0, gt=0, description="standardised values are clipped at +-clip (null: never)")
    n_pcs: int = Field(0, ge=0, le=1000, description="principal components of the scaled genes (0: the genes)")
    min_present: float = Field(0.5, gt=0, le=1, description="new data must hold this share of the model's genes")


class CellsDataConfig(Strict):
    """Single-cell counts with a label per cell (``task: cells``), how cells are grouped (plates,
    batches, donors) and split."""

    dataset: Literal["cellbench"] | None = Field(None, description="embedded: cellbench (CellBench CEL-seq2, 3 "
                                                                   "plates, 5 lung adenocarcinoma lines, singlets)")
    path: list[Path] | None = Field(None, description="counts: .h5ad files, 10x folders or genes x cells CSVs (one "
                                                      "or several, joined on their genes)")
    metadata: list[Path] | None = Field(None, description="cell metadata CSVs (cell id first): one for all count "
                                                          "files, or one each")
    label: str | None = Field(None, description="the metadata column holding each cell's class (cellbench: "
                                                "cell_line_demuxlet)")
    group: str | None = Field(None, description="the column grouping cells into batches (plates, donors), kept "
                                                "whole in splits (cellbench: batch)")
    only: dict[str, list[str]] | None = Field(None, description="train and test on the cells whose column holds one "
                                                                "of the values (cellbench: demuxlet_cls: [SNG], "
                                                                "the singlets)")
    normalised: bool = Field(False, description="the values are already normalised and log1p-transformed: take them "
                                                "as they are (no whole-count check, no normalisation)")
    preprocess: CellPreprocessConfig = Field(default_factory=CellPreprocessConfig)
    split: Literal["holdout", "kfold"] = Field("holdout", description="holdout: one train/val/test split; kfold: "
                                               "data.folds folds, each a run in RUN_DIR/folds/, pooled out of fold")
    folds: int = Field(5, ge=2, le=50, description="kfold: folds (with data.group: at most one per group, e.g. 3 "
                                                   "plates: leave one plate out)")
    fold: int | None = Field(None, ge=0, description="kfold: the one fold this run trains (set by the parent run)")
    group_by: bool = Field(True, description="with data.group: test on whole groups (none seen in training)")
    val_fraction: float = Field(0.15, gt=0, lt=1, description="validation carved from the training cells, "
                                                              "stratified by class (across the training groups)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="holdout: the test share")
    batch_size: int = Field(64, ge=1)
    num_workers: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_source(self) -> "CellsDataConfig":
        one_source(self, "your counts")
        if self.path is not None and self.label is None:
            raise ValueError("data.label: name the metadata column that holds each cell's class")
        fold_in_range(self)
        return self


class CellsRunConfig(ClassificationRun):
    """A single-cell classification run (``task: cells``), e.g. which cell line a cell is."""

    name: str = "cells"
    task: Literal["cells"] = "cells"
    data: CellsDataConfig
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(name="mlp", args={"hidden": [256, 64],
                                                                                      "dropout": 0.3}))
    optimizer: OptimizerConfig = Field(default_factory=lambda: OptimizerConfig(name="adamw", lr=1e-3,
                                                                               weight_decay=1e-4))
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = Field(default_factory=lambda: TrainerConfig(epochs=30, monitor="val/loss", mode="min"))
