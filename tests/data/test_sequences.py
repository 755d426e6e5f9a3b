"""DNA sequences: one-hot and reverse complements on hand-written sequences, the dinucleotide
shuffle (exact counts, seeded), the readers on the embedded DeepBind files, and bad input."""

import gzip
from collections import Counter

import numpy as np
import pytest

from biodl.data.sequences import (dinucleotide_shuffle, fit_length, load_sequences, one_hot, read_fasta,
                                  reverse_complement, with_shuffled_negatives)
from biodl.datasets import embedded_path
from biodl.errors import DataError

TF = embedded_path("tf-binding")
ELK1 = "ELK1_GM12878_ELK1_(1277-1)_Stanford"


def test_one_hot_of_hand_written_sequences():
    x = one_hot(["ACGTN", "acgtr"])
    assert x.shape == (2, 4, 5) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0, :, :4], np.eye(4))  # A, C, G, T columns
    np.testing.assert_array_equal(x[0, :, 4], [0.25] * 4)  # N: every base a quarter
    np.testing.assert_array_equal(x[1, :, :4], np.eye(4))  # soft-masked (lower case) reads the same
    np.testing.assert_array_equal(x[1, :, 4], [0.5, 0, 0.5, 0])  # R = A or G


def test_reverse_complement_of_one_hot_is_the_reverse_complement_sequence():
    import torch

    x = one_hot(["AACGTTG", "GATTACA"])
    want = one_hot(["CAACGTT", "TGTAATC"])
    np.testing.assert_array_equal(reverse_complement(x), want)
    np.testing.assert_array_equal(reverse_complement(torch.from_numpy(x)).numpy(), want)
    np.testing.assert_array_equal(reverse_complement(reverse_complement(x)), x)


def _pairs(s: str) -> Counter:
    return Counter(s[i:i + 2] for i in range(len(s) - 1))


def test_the_dinucleotide_shuffle_keeps_every_dinucleotide_count_exactly_and_is_seeded():
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), size=n)) for n in (3, 10, 101, 500)] + [
        "AAAAAAAAAAC", "ACACACACAC", "GGGCCCGGGTTTAAANNNACGT"]
    for s in seqs:
        for seed in range(5):
            t = dinucleotide_shuffle(s, np.random.default_rng(seed))
            assert len(t) == len(s) and t[0] == s[0] and t[-1] == s[-1]
            assert _pairs(t) == _pairs(s), (s, t)
    s = seqs[2]
    a, b = dinucleotide_shuffle(s, np.random.default_rng(7)), dinucleotide_shuffle(s, np.random.default_rng(7))
    assert a == b and a != s and dinucleotide_shuffle(s, np.random.default_rng(8)) != a


def test_the_shuffle_draws_every_arrangement_of_a_small_sequence():
    """'AACAB'-like small cases: all sequences with the same dinucleotide counts, first and last
    letters appear, roughly equally often (Altschul & Erikson draw them uniformly)."""
    from itertools import permutations

    s = "ACAGATA"
    same = {"".join(p) for p in permutations(s) if "".join(p)[0] == s[0] and "".join(p)[-1] == s[-1]
            and _pairs("".join(p)) == _pairs(s)}
    rng = np.random.default_rng(0)
    drawn = Counter(dinucleotide_shuffle(s, rng) for _ in range(6000))
    assert set(drawn) == same and len(same) > 2
    counts = np.array(list(drawn.values()))
    assert counts.min() > 0.7 * counts.mean()  # uniform within sampling noise


def test_fit_length_cuts_the_centre_and_pads_with_n():
    with pytest.warns(UserWarning, match="2 of 3 sequences"):
        out = fit_length(["AACCGGTT", "ACGT", "ACGTAC"], 6, "x.fa")
    assert out == ["ACCGGT", "NACGTN", "ACGTAC"]


def test_the_embedded_deepbind_files_read_with_their_labels():
    train = load_sequences(TF / f"{ELK1}_AC.seq.gz")
    test = load_sequences(TF / f"{ELK1}_B.seq.gz")
    assert len(train) == 5084 and set(train.labels) == {1} and train.classes == ["0", "1"]
    assert len(test) == 1000 and np.bincount(test.labels).tolist() == [500, 500]
    assert {len(s) for s in train.sequences} == {101} and train.ids[0] == "seq_00001_peak"
    paired = with_shuffled_negatives(train.subset(np.arange(50)), seed=3)
    assert len(paired) == 100 and np.bincount(paired.labels).tolist() == [50, 50]
    assert paired.groups[50] == paired.groups[0] == "seq_00001" and paired.ids[50] == "seq_00001_peak_shuf0"
    assert _pairs(paired.sequences[50]) == _pairs(paired.sequences[0])


def test_fasta_csv_and_folder_layouts(tmp_path):
    (tmp_path / "a.fa").write_text(">r1 some description\nACGT\nacgt\n>r2\nNNACG\n")
    assert read_fasta(tmp_path / "a.fa") == [("r1", "ACGTACGT"), ("r2", "NNACG")]
    with gzip.open(tmp_path / "b.fa.gz", "wt") as f:
        f.write(">x\nACGTTT\n")
    assert read_fasta(tmp_path / "b.fa.gz") == [("x", "ACGTTT")]
    (tmp_path / "labels.csv").write_text("id,label\nr1,bound\nr2,unbound\n")
    data = load_sequences(tmp_path / "a.fa", labels=tmp_path / "labels.csv")
    assert data.classes == ["bound", "unbound"] and data.labels.tolist() == [0, 1]
    (tmp_path / "t.csv").write_text("sequence,label,group\nACGT,1,g1\nTTGA,0,g1\n")
    data = load_sequences(tmp_path / "t.csv")
    assert data.sequences == ["ACGT", "TTGA"] and data.groups.tolist() == ["g1", "g1"]
    (tmp_path / "classes").mkdir()
    (tmp_path / "classes" / "bound.fa").write_text(">p1\nACGT\n")
    (tmp_path / "classes" / "unbound.fasta").write_text(">n1\nTTTT\n>n2\nGGGG\n")
    data = load_sequences(tmp_path / "classes")
    assert data.classes == ["bound", "unbound"] and data.labels.tolist() == [0, 1, 1]


@pytest.mark.parametrize("text, fault", [
    (">r1\nACGT\n>r2\nACXT\n", "record 'r2', position 3: 'X' is not a DNA letter"),
    (">r1\nAC-T\n", "record 'r1', position 3: '-'"),
    (">r1\nNNNN\n", "record 'r1': all N"),
    ("", "no FASTA records"),
    ("ACGT\n", "sequence text before the first '>'"),
    (">r1\n>r2\nACGT\n", "record 'r1': a header without a sequence"),
    (">r1\nACGT\n>r1\nACGA\n", "record 'r1' appears twice"),
    (">\nACGT\n", "a header without a name"),
])
def test_bad_fasta_is_one_error_naming_the_file_and_record(tmp_path, text, fault):
    (tmp_path / "bad.fa").write_text(text)
    with pytest.raises(DataError, match="bad.fa") as err:
        load_sequences(tmp_path / "bad.fa")
    assert fault in str(err.value)


def test_missing_labels_and_bad_tables(tmp_path):
    (tmp_path / "a.fa").write_text(">r1\nACGT\n>r2\nACGA\n")
    (tmp_path / "labels.csv").write_text("id,label\nr1,1\n")
    with pytest.raises(DataError, match="labels.csv: no label for record 'r2' of a.fa"):
        load_sequences(tmp_path / "a.fa", labels=tmp_path / "labels.csv")
    (tmp_path / "x.seq").write_text("FoldID\tEventID\tseq\tBound\nA\ts1\tACGT\t2\n")
    with pytest.raises(DataError, match="record 's1'\\): Bound is '2'"):
        load_sequences(tmp_path / "x.seq")
    (tmp_path / "y.seq").write_text("a\tb\n")
    with pytest.raises(DataError, match="not a DeepBind .seq table"):
        load_sequences(tmp_path / "y.seq")
    (tmp_path / "t.csv").write_text("sequence,label\nACGT,\n")
    with pytest.raises(DataError, match="empty label"):
        load_sequences(tmp_path / "t.csv")
    with pytest.raises(DataError, match="holds negatives already"):
        with_shuffled_negatives(load_sequences(TF / f"{ELK1}_B.seq.gz"), seed=0)
