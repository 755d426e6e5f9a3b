"""Four steps that studies repeat, each beside the way it was done before (same process, same
inputs, the results checked equal):

1. Fields of view of the 28 CHASE_DB1 images (the vessel study, every vessel test): closing and
   opening by a radius-10 disk with scipy's ``binary_closing/opening`` (the baseline) against
   ``derive_fov``'s exact distance transforms.
2. The cell-lines study's counts and metadata, read 21 times in one run (its main run, 5 + 5
   folds, 5 left-out lines, the markers, the map): every read parsing the gzipped CSVs (the
   baseline) against ``load_cells`` giving the cells last read again while the files' bytes
   are unchanged.
3. The tf-binding study's k-mer baseline on ELK1: choosing C among 8 strengths by grouped 3-fold
   cross-validation, 24 logistic regressions one after the other (``n_jobs=1``, the baseline)
   against all cores (``n_jobs=-1``).
4. The k-mer spectra of ELK1's training sequences (k 1-6, both strands; the baseline reads
   them for its fits and the study for its test set): a sequence at a time (the baseline)
   against ``spectrum``'s sequences of one length at once.

    python benchmarks/study_inputs.py [--reads 21]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def fov_step() -> tuple[float, float]:
    from scipy import ndimage

    from biodl.data.vessels import _read, derive_fov
    from biodl.datasets import embedded_path

    images = [_read(p, "image") for p in sorted(embedded_path("chase_db1").glob("Image_*.jpg"))]

    def scipy_disk(image: np.ndarray) -> np.ndarray:  # derive_fov before: the same steps, scipy's morphology
        red = image[..., 0].astype(np.float32)
        fov = red > 0.1 * max(np.percentile(red, 99), 1.0)
        r = max(1, round(0.01 * image.shape[1]))
        disk = np.hypot(*np.mgrid[-r:r + 1, -r:r + 1]) <= r
        fov = ndimage.binary_fill_holes(ndimage.binary_opening(ndimage.binary_closing(fov, disk, border_value=0),
                                                               disk))
        labels, n = ndimage.label(fov)
        return labels == 1 + int(np.argmax(ndimage.sum(fov, labels, range(1, n + 1)))) if n > 1 else fov

    t = time.perf_counter()
    before = [scipy_disk(im) for im in images]
    t_before = time.perf_counter() - t
    t = time.perf_counter()
    now = [derive_fov(im) for im in images]
    t_now = time.perf_counter() - t
    assert all(np.array_equal(a, b) for a, b in zip(before, now, strict=True)), "the FOVs differ"
    return t_before, t_now


def cells_step(reads: int) -> tuple[float, float]:
    from biodl.data import cells
    from biodl.datasets import embedded_path

    root = embedded_path("cellbench")
    counts, meta = sorted(root.glob("*.count.csv.gz")), sorted(root.glob("*.metadata.csv.gz"))
    t = time.perf_counter()
    for _ in range(reads):
        cells._LAST.clear()  # every read parses the files, as before
        first = cells.load_cells(counts, meta)
    t_before = time.perf_counter() - t
    cells._LAST.clear()
    t = time.perf_counter()
    for _ in range(reads):
        again = cells.load_cells(counts, meta)
    t_now = time.perf_counter() - t
    assert (first.x != again.x).nnz == 0 and first.obs.equals(again.obs), "the cells differ"
    return t_before, t_now


def kmer_step() -> tuple[float, float]:
    from biodl.config import build_config
    from biodl.omics.kmers import KmerBaseline
    from biodl.studies.tf_binding import CONFIG
    from biodl.tasks.sequence import load_split

    data, parts, _, _ = load_split(build_config(CONFIG, None, where="tf-binding"))
    train = data.subset(np.concatenate([parts["train"], parts["val"]]))
    out = []
    for n_jobs in (1, -1):
        t = time.perf_counter()
        model = KmerBaseline(seed=0, n_jobs=n_jobs).fit(train.sequences, train.labels, train.groups)
        out.append((time.perf_counter() - t, model.cv_auc, model.C))
    assert out[0][1:] == out[1][1:], "the cross-validated AUCs differ"
    return out[0][0], out[1][0]


def spectrum_step() -> tuple[float, float]:
    from scipy import sparse

    from biodl.config import build_config
    from biodl.omics.kmers import _codes, _patterns, _reverse_complement_codes, kmer_codes, spectrum
    from biodl.studies.tf_binding import CONFIG
    from biodl.tasks.sequence import load_split

    def one_at_a_time(sequences: list[str], ks=(1, 2, 3, 4, 5, 6)):
        patterns = _patterns(ks, None)
        offsets = np.cumsum([0] + [4 ** len(p) for p in patterns])
        rows, cols = [], []
        for i, codes in enumerate(_codes(sequences)):
            for offset, pattern in zip(offsets[:-1], patterns, strict=True):
                for strand in (codes, _reverse_complement_codes(codes)):
                    c = kmer_codes(strand, pattern)
                    c = c[c >= 0]
                    rows.append(np.full(len(c), i, dtype=np.int64))
                    cols.append(c + offset)
        r, c = np.concatenate(rows), np.concatenate(cols)
        m = sparse.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(sequences), int(offsets[-1])))
        m.sum_duplicates()
        return m

    sequences = load_split(build_config(CONFIG, None, where="tf-binding"))[0].sequences
    t = time.perf_counter()
    before = one_at_a_time(sequences)
    t_before = time.perf_counter() - t
    t = time.perf_counter()
    now = spectrum(sequences)
    t_now = time.perf_counter() - t
    assert (before != now).nnz == 0 and np.array_equal(before.indices, now.indices), "the spectra differ"
    return t_before, t_now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=21, help="cell table reads (the cell-lines study makes 21)")
    opts = parser.parse_args()
    rows = [("FOV of 28 CHASE_DB1 images", "scipy disk", "distance transform", *fov_step()),
            (f"cell-lines tables read {opts.reads} times", "parse each", "last read kept", *cells_step(opts.reads)),
            ("k-mer baseline C search (24 fits)", "n_jobs=1", f"n_jobs=-1 ({os.cpu_count()} CPUs)", *kmer_step()),
            ("k-mer spectra of ELK1 training", "one at a time", "one length at once", *spectrum_step())]
    print(f"{'step':<36} {'baseline':<20} {'s':>6}   {'now':<22} {'s':>6} {'speed-up':>8}")
    for step, base, now, t_base, t_now in rows:
        print(f"{step:<36} {base:<20} {t_base:6.1f}   {now:<22} {t_now:6.1f} {t_base / t_now:7.1f}x")
    print("results identical in each row (checked)")


if __name__ == "__main__":
    main()
