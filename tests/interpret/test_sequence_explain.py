"""biodl explain on a sequence run: attributions land on a planted motif, integrated gradients
are complete against their references, the checks are recorded, and bad options fail cleanly."""

import json

import numpy as np
import pytest
import torch

from biodl.data.sequences import one_hot
from biodl.interpret.sequences import WINDOW, LogOdds, attribute_sequence, letters
from tests.conftest import assert_one_line_error, main_ok
from tests.tasks.test_sequence import MOTIF, _config, _planted

AT = 20  # where the motif is planted in the hand-made sequence


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seqx")
    _planted(tmp / "train.csv")
    main_ok("train", "--config", _config(tmp, tmp / "train.csv", batch_size=32), "--out", tmp / "run")
    rng = np.random.default_rng(3)
    plain = "".join(rng.choice(list("ACGT"), 40))
    (tmp / "new.fa").write_text(f">site\n{plain[:AT]}{MOTIF}{plain[AT + len(MOTIF):]}\n")
    return tmp


def test_attributions_of_a_given_sequence_land_on_its_planted_motif(run, cli):
    r = cli("explain", run / "run", run / "new.fa", "--method", "ig,ism,ixg", "--no-sanity")
    assert r.code == 0, r.err
    out = run / "run" / "explain"
    rec = json.loads((out / "explain.json").read_text())["sequences"][0]
    assert rec["source"].endswith("new.fa: site") and rec["sequence"][AT:AT + len(MOTIF)] == MOTIF
    assert rec["predicted"] == "1" and rec["probability"] > 0.5
    for meth in ("ig", "ism", "ixg"):
        window = rec["methods"][meth]["best_window"]
        assert abs(window["start"] - AT) <= WINDOW - 4, (meth, window)  # the best window overlaps most of the site
        assert rec["methods"][meth]["deletion_auc"] < rec["methods"][meth]["insertion_auc"], meth
    assert rec["methods"]["ig"]["baseline"] == "shuffle" and rec["methods"]["ig"]["references"] == 10
    assert (out / "000.png").stat().st_size > 5_000 and (out / "sequences.png").is_file()
    assert "<figcaption>sequences</figcaption>" in (run / "run" / "report.html").read_text()


def test_test_sequences_are_picked_by_outcome_with_the_sanity_check(run, cli):
    r = cli("explain", run / "run", "--pick", "tp,tn", "--n", "2", "--overwrite")
    assert r.code == 0, r.err
    data = json.loads((run / "run" / "explain" / "explain.json").read_text())
    outcomes = [s["outcome"] for s in data["sequences"]]
    assert outcomes == ["tp", "tp", "tn", "tn"]
    assert all(s["predicted"] == s["true"] for s in data["sequences"])
    assert data["methods"] == ["ig", "ism"] and set(data["sanity_check"]) == {"ig", "ism"}
    steps = data["sanity_check"]["ig"]["steps"]
    assert len(steps) >= 2 and all(-1 <= s["spearman"] <= 1 for s in steps)
    assert len(list((run / "run" / "explain").glob("0*.png"))) == 4


def test_integrated_gradients_are_complete_against_the_shuffled_references():
    """Sum over positions of the attribution = log-odds(x) - mean log-odds(references), up to
    the reported convergence delta."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv1d(4, 8, 5), torch.nn.ReLU(), torch.nn.AdaptiveMaxPool1d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 2)).eval()
    x = torch.from_numpy(one_hot(["ACGTTGCAACCGGAAGTTACGATCGA"]))
    a, info = attribute_sequence("ig", net, x, 1, "shuffle", steps=200)
    from biodl.interpret.sequences import _references

    refs = _references(x[0], "shuffle", 0)
    odds = LogOdds(net)
    with torch.no_grad():
        gap = float(odds(x)[0, 1] - odds(refs)[:, 1].mean())
        logits = net(x)
        assert torch.allclose(odds(x)[0], torch.stack([logits[0, 0] - logits[0, 1], logits[0, 1] - logits[0, 0]]),
                              atol=1e-5)  # two classes: the log-odds is the difference of the logits
    assert a.shape == (26,) and float(a.sum()) == pytest.approx(gap, abs=max(3 * info["convergence_delta"], 1e-3))
    assert letters(x[0]) == "ACGTTGCAACCGGAAGTTACGATCGA"
    assert all(sorted(letters(r)) == sorted(letters(x[0])) for r in refs)  # shuffles keep the composition
    ism, info = attribute_sequence("ism", net, x, 1)
    assert ism.shape == (26,) and info["map"].shape == (4, 26)
    assert np.allclose(info["map"][one_hot(["ACGTTGCAACCGGAAGTTACGATCGA"])[0].astype(bool)], 0)


@pytest.mark.parametrize(("args", "fragment"), [(("--method", "gradcam"), "does not apply to sequences"),
                                                (("--baseline", "black"), "unknown reference"),
                                                (("--layer", "features.0"), "image runs only"),
                                                (("--target", "7"), "out of range")])
def test_image_options_on_a_sequence_run_are_one_line_errors(run, cli, args, fragment):
    out = run / "run" / "explain"
    before = sorted(p.name for p in out.iterdir()) if out.exists() else None
    assert_one_line_error(cli("explain", run / "run", *args, "--overwrite"), fragment)
    assert (sorted(p.name for p in out.iterdir()) if out.exists() else None) == before
