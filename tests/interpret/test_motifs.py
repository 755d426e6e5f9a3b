"""Motifs from sequence CNNs: a planted motif comes back as a filter's PWM, the match score on
hand-made matrices, JASPAR reading, logos, and in-silico mutagenesis on a model with a known answer."""

import numpy as np
import pytest
import torch

from biodl.data.sequences import one_hot
from biodl.errors import DataError
from biodl.interpret.motifs import (consensus_pwm, draw_logo, filter_pwms, information_content, motif_similarity,
                                    mutation_map, read_jaspar)
from biodl.models import create_model

MOTIF = "CCGGAAGT"


def test_a_planted_motif_is_recovered_as_a_filters_pwm():
    """1,000 random 50-bp sequences, half with the ETS site at a random place on a random strand;
    a small DeepBind trained briefly; the best-matching filter's PWM correlates with the site at
    0.75 or more (Tomtom-style mean column correlation; unrelated 8-mers score about 0.2)."""
    rng = np.random.default_rng(0)
    seqs, labels = [], []
    for i in range(1000):
        s = list(rng.choice(list("ACGT"), 50))
        if i % 2:
            site = MOTIF if rng.random() < 0.5 else "ACTTCCGG"  # the reverse complement
            at = int(rng.integers(0, 42))
            s[at:at + 8] = site
        seqs.append("".join(s))
        labels.append(i % 2)
    x, y = torch.from_numpy(one_hot(seqs)), torch.tensor(labels)
    torch.manual_seed(0)
    model = create_model("deepbind", filters=8, width=10, dropout=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(15):
        for i in range(0, 1000, 50):
            loss = torch.nn.functional.cross_entropy(model(x[i:i + 50]), y[i:i + 50])
            opt.zero_grad()
            loss.backward()
            opt.step()
    pwms, sites = filter_pwms(model.motifs, x)
    assert pwms.shape == (8, 10, 4) and np.allclose(pwms.sum(axis=2), 1)
    scores = [motif_similarity(p, consensus_pwm(MOTIF))[0] for p in pwms]
    best = int(np.argmax(scores))
    assert scores[best] >= 0.75 and sites[best] > 0, scores
    random = [motif_similarity(consensus_pwm("".join(rng.choice(list("ACGT"), 8))), consensus_pwm(MOTIF))[0]
              for _ in range(20)]
    assert np.median(random) < 0.5


def test_motif_similarity_on_hand_made_matrices():
    site = consensus_pwm("ACCGGAAGTG")
    score, offset, strand = motif_similarity(site, consensus_pwm(MOTIF))
    assert score == pytest.approx(1.0) and offset == 1 and strand == "+"
    score, _, strand = motif_similarity(site[::-1, ::-1], consensus_pwm(MOTIF))  # the other strand
    assert score == pytest.approx(1.0) and strand == "-"
    assert information_content(consensus_pwm("AN")).round(2).tolist() == [pytest.approx(1.76, abs=0.02), 0.0]
    stacked = np.stack([consensus_pwm("AN"), consensus_pwm("NN")])  # (filters, width, 4) -> (filters, width)
    assert np.allclose(information_content(stacked), [information_content(consensus_pwm("AN")), [0, 0]])


def test_jaspar_files_are_read_and_checked(tmp_path):
    (tmp_path / "m.jaspar").write_text(">MA0028.2 ELK1\nA [ 1 0 ]\nC [ 0 2 ]\nG [ 1 0 ]\nT [ 0 2 ]\n")
    motifs = read_jaspar(tmp_path / "m.jaspar")
    np.testing.assert_allclose(motifs["MA0028.2 ELK1"], [[0.5, 0, 0.5, 0], [0, 0.5, 0, 0.5]])
    (tmp_path / "bad.jaspar").write_text(">X\nA [ 1 ]\nC [ 1 ]\n")
    with pytest.raises(DataError, match="needs rows A, C, G, T"):
        read_jaspar(tmp_path / "bad.jaspar")


def test_in_silico_mutagenesis_of_a_model_with_a_known_answer():
    weights = torch.randn(4, 12)

    def score(batch):  # a linear model: the score of each base at each position is its weight
        return (batch * weights).sum(dim=(1, 2))

    x = torch.from_numpy(one_hot(["ACGTACGTACGT"]))[0]
    got = mutation_map(score, x)
    want = (weights - (weights * x).sum(dim=0, keepdim=True)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.allclose(got[x.numpy().astype(bool)], 0)  # the base already there: no change


def test_a_logo_stacks_letters_to_the_column_information(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 1.5))
    draw_logo(consensus_pwm(MOTIF), ax, "ETS core")
    heights = sorted(round(p.get_extents().height, 1) for p in ax.patches)
    assert len(ax.patches) >= 8 and ax.get_ylim() == (0, 2)
    fig.savefig(tmp_path / "logo.png")
    assert (tmp_path / "logo.png").stat().st_size > 1000 and heights[-1] > 0
