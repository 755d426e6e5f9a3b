"""task: sequence end to end on a planted motif (train, predict by record id, evaluate, export),
the embedded ELK1 experiment in a reduced setting, and bad input."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import assert_one_line_error, main_ok

MOTIF = "CCGGAAGT"  # an ETS site


def _planted(path, n=240, length=40, seed=0):
    """A CSV of ``n`` random sequences, every other one with the motif planted (label 1)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        s = list(rng.choice(list("ACGT"), length))
        if i % 2:
            at = int(rng.integers(0, length - len(MOTIF)))
            s[at:at + len(MOTIF)] = MOTIF
        rows.append({"id": f"r{i}", "sequence": "".join(s), "label": i % 2})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _config(tmp_path, data, **more):
    cfg = {"name": "seq", "task": "sequence", "data": {"path": str(data), **more},
           "model": {"name": "deepbind", "args": {"filters": 16, "width": 8}},
           "trainer": {"epochs": 8, "progress": False}, "n_boot": 100}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "run.yaml"


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seq")
    _planted(tmp / "train.csv")
    main_ok("train", "--config", _config(tmp, tmp / "train.csv", batch_size=32), "--out", tmp / "run")
    return tmp


def test_a_planted_motif_is_learned_and_predicted_by_record_id(planted_run, cli):
    run = planted_run / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/roc_auc"] > 0.9, metrics["test/roc_auc"]
    assert metrics["test/roc_auc_ci_low"] <= metrics["test/roc_auc"] <= metrics["test/roc_auc_ci_high"]
    pre = json.loads((run / "preprocess.json").read_text())
    assert pre["classes"] == ["0", "1"] and pre["length"] == 40
    rng = np.random.default_rng(9)
    plain = "".join(rng.choice(list("ACGT"), 40))
    (planted_run / "new.fa").write_text(f">with\n{plain[:10]}{MOTIF}{plain[18:]}\n>without\n{plain}\n")
    r = cli("predict", run, planted_run / "new.fa", "--out", planted_run / "p.csv")
    assert r.code == 0, r.err
    table = pd.read_csv(planted_run / "p.csv")
    assert table["id"].tolist() == ["with", "without"]
    assert table["p_1"].iloc[0] > table["p_1"].iloc[1] + 0.3  # the same sequence, with and without the site


def test_evaluate_on_a_labelled_file_and_export(planted_run, cli):
    _planted(planted_run / "other.csv", n=60, seed=5)
    r = cli("evaluate", planted_run / "run", "--data", planted_run / "other.csv")
    assert r.code == 0, r.err
    m = json.loads((planted_run / "run" / "evaluation" / "other.json").read_text())
    assert m["other/n"] == 60 and m["other/roc_auc"] > 0.85
    pytest.importorskip("onnxruntime")
    r = cli("export", planted_run / "run", "--out", planted_run / "m.onnx")
    assert r.code == 0, r.err
    meta = json.loads((planted_run / "m.json").read_text())
    assert meta["inputs"][0]["shape"] == ["batch", 4, 40] and meta["parity"]["classes_identical"]


def test_the_embedded_elk1_experiment_trains_on_peaks_with_shuffled_negatives(tmp_path, cli):
    cfg = {"name": "elk1", "task": "sequence", "data": {"dataset": "tf-binding:ELK1"},
           "model": {"args": {"filters": 32}}, "trainer": {"epochs": 2, "progress": False}, "n_boot": 100}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = cli("train", "--config", tmp_path / "c.yaml", "--out", tmp_path / "run")
    assert r.code == 0, r.err
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["split_sizes"]["test"] == 1000  # set B: 500 peaks + 500 shuffles
    assert manifest["split_sizes"]["train"] + manifest["split_sizes"]["val"] == 2 * 5084
    assert "dinucleotide shuffle" in manifest["negatives"][0]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test/roc_auc"] > 0.8 and metrics["test/ci_clusters"] == 500  # a peak and its shuffle resampled


def test_bad_sequence_inputs_are_one_line_and_write_nothing(tmp_path, cli):
    (tmp_path / "one.csv").write_text("sequence,label\n" + "ACGTACGTACGTACGT,bound\n" * 20)
    assert_one_line_error(cli("train", "--config", _config(tmp_path, tmp_path / "one.csv"), "--out",
                              tmp_path / "r1"), "one.csv", "holds one class ('bound') and no way to make negatives")
    (tmp_path / "short.csv").write_text("sequence,label\n" + "ACGTAC,1\nTTGACA,0\n" * 20)
    assert_one_line_error(cli("train", "--config", _config(tmp_path, tmp_path / "short.csv"), "--out",
                              tmp_path / "r2"), "short.csv", "shorter than deepbind's first convolution")
    (tmp_path / "bad.fa").write_text(">p1\nACGTTGCA\n>p2\nACGUTGCA\n")
    assert_one_line_error(cli("train", "--config", _config(tmp_path, tmp_path / "bad.fa"), "--out", tmp_path / "r3"),
                          "bad.fa", "record 'p2', position 4: 'U'")
    assert not any((tmp_path / f"r{k}").exists() for k in (1, 2, 3))


def test_the_same_seed_gives_the_same_numbers(tmp_path):
    _planted(tmp_path / "t.csv", n=80)
    config = _config(tmp_path, tmp_path / "t.csv")
    for k in (1, 2):
        main_ok("train", "--config", config, "--out", tmp_path / f"run{k}", "--set", "trainer.epochs=2")
    assert (tmp_path / "run1" / "metrics.json").read_bytes() == (tmp_path / "run2" / "metrics.json").read_bytes()
