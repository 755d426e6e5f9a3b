"""Data sets embedded in the package, each with its SOURCE.md (licence and citation)."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError

_HERE = Path(__file__).resolve().parent

#: name -> (file inside the package, one-line description)
EMBEDDED: dict[str, tuple[str, str]] = {
    "heart-failure": (
        "heart_failure/heart_failure_clinical_records_dataset.csv",
        "299 heart-failure patients, 12 clinical features + DEATH_EVENT (Ahmad 2017; Chicco & Jurman 2020), CC BY 4.0",
    ),
    "retinamnist": (
        "retina_dr/retinamnist.npz",
        "RetinaMNIST (MedMNIST v2): 1,600 fundus photographs 28x28, 5 DR grades, official splits, CC BY 4.0",
    ),
    "chase_db1": (
        "vessels_chase",
        "CHASE_DB1: 28 fundus photographs 999x960 with two observers' vessel masks (Fraz 2012), CC BY 4.0",
    ),
    "idc": (
        "histopathology_idc/IDC_regular_ps50_idx5",
        "Breast histopathology IDC: 4,982 H&E patches 50x50 from 10 whole patients, patient tree with slide "
        "coordinates (Cruz-Roa 2014; Janowczyk 2016), CC0",
    ),
    "tcga-skcm": (
        "tcga_skcm",
        "TCGA melanoma (SKCM): raw RNA-seq read counts of 2,454 genes x 472 samples, overall survival, the TCGA "
        "2015 RNA subclasses and gene lengths (from consICA), TCGA open access (consICA: MIT)",
    ),
    "tf-binding": (
        "tf_binding_deepbind",
        "ENCODE ChIP-seq peaks as released with DeepBind (Alipanahi 2015): 5 factors (ELK1, GABPA, REST, MYC, "
        "CTCFL), 101 bp, training peaks (A+C) and 500 + 500 test sequences (B) each; ENCODE, no restrictions",
    ),
    "cellbench": (
        "cellbench_celseq2",
        "CellBench CEL-seq2 (Tian 2019): 909 wells on 3 plates from a mix of 5 lung adenocarcinoma lines, UMI "
        "counts (genes x cells), the line of each cell by genotype (571 singlets, 338 doublets), MIT",
    ),
    "cmu1-small-region": (
        "wsi_cmu1/CMU-1-Small-Region.svs",
        "OpenSlide test slide CMU-1-Small-Region: Aperio SVS, H&E, 2220x2967 at 0.499 um/px, one level, CC0",
    ),
}


def embedded_path(name: str) -> Path:
    """Path of an embedded data file by name (e.g. ``heart-failure``)."""
    if name not in EMBEDDED:
        raise DataError(f"data.dataset={name}", f"no embedded data set of that name; known: {', '.join(EMBEDDED)}")
    return _HERE / EMBEDDED[name][0]
