"""Config sections of molecular runs: DNA sequences (``task: sequence``) and single cells
(``task: cells``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from .schemas import ClassificationRun, ModelConfig, OptimizerConfig, SchedulerConfig, Strict, TrainerConfig

__all__ = ["SequenceDataConfig", "SequenceModelConfig", "SequenceRunConfig"]


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
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give exactly one of data.dataset (embedded) or data.path (your file)")
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
