"""k-mer spectra on hand-counted sequences, gapped k-mers, and the baseline's honest C."""

import numpy as np

from biodl.omics.kmers import KmerBaseline, kmer_names, spectrum


def _row(matrix, i, names):
    dense = matrix[i].toarray().ravel()
    return {names[j]: dense[j] for j in np.flatnonzero(dense)}


def test_the_spectrum_of_a_hand_counted_sequence():
    names = kmer_names((1, 2))
    one = _row(spectrum(["AACGN T".replace(" ", "")], (1, 2), both_strands=False), 0, names)
    # AACGNT: A 2, C 1, G 1, T 1 (N skipped); AA, AC, CG (GN, NT skipped)
    assert one == {"A": 2, "C": 1, "G": 1, "T": 1, "AA": 1, "AC": 1, "CG": 1}
    both = _row(spectrum(["AAC"], (2,), both_strands=True), 0, kmer_names((2,)))
    # AAC: AA, AC; its reverse complement GTT: GT, TT
    assert both == {"AA": 1, "AC": 1, "GT": 1, "TT": 1}


def test_gapped_kmers_read_the_kept_positions_with_wildcards_between():
    names = kmer_names((), gapped=(4, 3))
    assert names[0] == "AA.A" and len(names) == 2 * 64  # patterns (0, 1, 3) and (0, 2, 3)
    got = _row(spectrum(["ACGT"], (), both_strands=False, gapped=(4, 3)), 0, names)
    assert got == {"AC.T": 1, "A.GT": 1}


def test_sequences_counted_together_get_the_rows_each_gets_alone():
    """Sequences of several lengths (empty, shorter than k, with ambiguity codes and lower case)
    counted in one call, a length at a time: each row is that sequence's spectrum on its own."""
    from scipy import sparse

    rng = np.random.default_rng(1)
    seqs = ["".join(rng.choice(list("ACGTNacgt"), int(n))) for n in rng.integers(0, 40, 60)] + ["", "A", "ACGT"]
    for kw in ({"ks": (1, 2, 3)}, {"ks": (2,), "both_strands": False}, {"ks": (), "gapped": (5, 3)}):
        together = spectrum(seqs, **kw)
        alone = sparse.vstack([spectrum([s], **kw) for s in seqs]).tocsr()
        assert together.shape == alone.shape and (together != alone).nnz == 0, kw
        assert together.sum() > 0


def test_the_baseline_chooses_c_by_grouped_cross_validation_and_learns_a_planted_motif():
    rng = np.random.default_rng(0)
    seqs, labels, groups = [], [], []
    for i in range(600):
        s = list(rng.choice(list("ACGT"), 60))
        if i % 2:
            at = rng.integers(0, 52)
            s[at:at + 8] = "CCGGAAGT"  # an ETS site in the positives only
        seqs.append("".join(s))
        labels.append(i % 2)
        groups.append(str(i // 2))
    model = KmerBaseline(ks=(4, 5, 6), cs=(0.1, 100.0)).fit(seqs, np.array(labels), np.array(groups))
    assert set(model.cv_auc) == {0.1, 100.0} and model.C == max(model.cv_auc, key=model.cv_auc.get)
    alone = KmerBaseline(ks=(4, 5, 6), cs=(0.1, 100.0), n_jobs=1).fit(seqs, np.array(labels), np.array(groups))
    assert alone.cv_auc == model.cv_auc and alone.C == model.C  # worker processes change the time, not a digit
    assert model.cv_auc[0.1] != model.cv_auc[100.0]
    test = ["".join(rng.choice(list("ACGT"), 60)) for _ in range(40)]
    test = [t[:20] + "CCGGAAGT" + t[28:] if k % 2 else t for k, t in enumerate(test)]
    from sklearn.metrics import roc_auc_score

    p = model.predict_proba(test)[:, 1]
    assert roc_auc_score(np.arange(40) % 2, p) > 0.97 and np.median(p[1::2]) > np.median(p[0::2]) + 0.1
