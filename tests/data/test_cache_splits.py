import numpy as np
import pytest
from PIL import Image

from biodl.data.cache import DiskArray, cached, content_key
from biodl.data.folders import load_image_folder
from biodl.data.splits import cross_split_duplicates, grouped_split
from biodl.errors import DataError


def _tree(root, n=3):
    for c in ("a", "b"):
        for k in range(n):
            (root / c).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((12, 12, 3), 40 * k + (c == "b"), dtype=np.uint8)).save(root / c / f"{k}.png")
    return sorted(root.rglob("*.png"))


def test_cache_hit_miss_and_invalidation(tmp_path):
    files = _tree(tmp_path / "img")
    calls = []

    def load():
        calls.append(1)
        return load_image_folder(tmp_path / "img", size=8)

    first, hit1 = cached(load, files, {"size": 8}, tmp_path / "cache")
    again, hit2 = cached(load, files, {"size": 8}, tmp_path / "cache")
    assert (hit1, hit2, len(calls)) == (False, True, 1)
    assert isinstance(again.images, DiskArray) and again.images.dtype == np.uint8
    assert again.images.shape == first.images.shape == (6, 8, 8, 3)
    np.testing.assert_array_equal(np.asarray(again.images), np.asarray(first.images))
    np.testing.assert_array_equal(again.labels, first.labels)
    assert again.classes == first.classes and again.sources == first.sources
    _, hit3 = cached(load, files, {"size": 6}, tmp_path / "cache")  # another size: another entry
    assert not hit3
    Image.fromarray(np.full((12, 12, 3), 255, dtype=np.uint8)).save(files[0])  # an input changes
    _, hit4 = cached(load, files, {"size": 8}, tmp_path / "cache")
    assert not hit4 and len(calls) == 3
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]  # no temp folder left


def test_disk_array_reads_the_rows_asked_for(tmp_path):
    a = np.arange(7 * 4 * 3 * 2, dtype=np.uint8).reshape(7, 4, 3, 2)
    np.save(tmp_path / "a.npy", a)
    d = DiskArray(tmp_path / "a.npy")
    assert d.shape == a.shape and len(d) == 7 and d.dtype == np.uint8
    for index in (3, -1, slice(1, 6, 2), [6, 0, 1, 2, 2], np.array([], dtype=np.int64), a[:, 0, 0, 0] % 2 == 0):
        np.testing.assert_array_equal(d[index], a[index])
    np.testing.assert_array_equal(np.asarray(d), a)
    with pytest.raises(IndexError):
        d[[7]]
    import pickle

    np.testing.assert_array_equal(pickle.loads(pickle.dumps(d))[[5, 4]], a[[5, 4]])  # for DataLoader workers


def test_damaged_cache_entry_is_decoded_again(tmp_path):
    files = _tree(tmp_path / "img")
    first, _ = cached(lambda: load_image_folder(tmp_path / "img", size=8), files, {"size": 8}, tmp_path / "cache")
    (entry,) = (tmp_path / "cache").iterdir()
    with open(entry / "images.npy", "r+b") as f:  # cut the file short, as a full disk or a bad copy would
        f.truncate(200)
    with pytest.warns(UserWarning, match="unreadable cache entry"):
        again, hit = cached(lambda: load_image_folder(tmp_path / "img", size=8), files, {"size": 8},
                            tmp_path / "cache")
    assert not hit
    np.testing.assert_array_equal(np.asarray(again.images), np.asarray(first.images))


def test_content_key_ignores_where_the_tree_lives(tmp_path):
    a = _tree(tmp_path / "one")
    b = _tree(tmp_path / "two")
    assert content_key(a, {"size": 8}) == content_key(b, {"size": 8})


def test_failed_load_leaves_no_entry(tmp_path):
    files = _tree(tmp_path / "img")

    def broken():
        raise DataError("x", "bad")

    with pytest.raises(DataError):
        cached(broken, files, {"size": 8}, tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_no_patient_crosses_splits():
    rng = np.random.default_rng(0)
    patients = np.repeat([f"p{i}" for i in range(40)], 5)
    labels = rng.integers(0, 2, len(patients))
    parts = grouped_split(labels, patients, 0.2, 0.2, seed=1)
    sets = {k: set(patients[v]) for k, v in parts.items()}
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(len(patients)))
    assert 0.1 < len(parts["test"]) / len(patients) < 0.3
    with pytest.raises(DataError, match="too few"):
        grouped_split(labels[:10], patients[:10], 0.2, 0.2, seed=1)


def test_planted_duplicate_across_splits_is_reported():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 4, 4, 3), dtype=np.uint8)
    images[17] = images[3]  # the same picture twice
    images[5] = images[6]  # a duplicate inside one part is not a leak
    parts = {"train": np.arange(0, 15), "test": np.arange(15, 20)}
    assert cross_split_duplicates(images, parts) == [(3, 17, "train", "test")]


def test_concat_array_reads_rows_across_parts(tmp_path):
    from biodl.data.cache import ConcatArray, cache_key, write_npy

    parts = [np.arange(n * 6, dtype=np.uint8).reshape(n, 2, 3) + 100 * k for k, n in enumerate((3, 1, 4))]
    disk = []
    for k, a in enumerate(parts):
        (tmp_path / f"e{k}").mkdir()
        assert write_npy(tmp_path / f"e{k}" / "images.npy", a.shape, [a[:2], a[2:]]) == len(a)  # in two blocks
        disk.append(DiskArray(tmp_path / f"e{k}" / "images.npy"))
    whole = np.concatenate(parts)
    joined = ConcatArray(disk)
    assert joined.shape == whole.shape and len(joined) == 8
    for index in (0, -1, 4, [7, 0, 3, 3, 5], slice(2, 6), np.array([], dtype=np.int64)):
        np.testing.assert_array_equal(joined[index], whole[index])
    np.testing.assert_array_equal(np.asarray(joined), whole)
    with pytest.raises(IndexError):
        joined[[8]]
    assert cache_key(joined) != cache_key(ConcatArray(disk[:2])) and len(cache_key(joined)) == 64
    with pytest.raises(ValueError, match="rows written"):  # a short stream is not a valid array
        write_npy(tmp_path / "short.npy", (5, 2, 3), [parts[0]])
    with pytest.raises(ValueError, match="block of"):
        write_npy(tmp_path / "odd.npy", (3, 2, 2), [parts[0]])


def test_large_files_are_hashed_once_per_version(tmp_path, monkeypatch):
    import hashlib
    import os

    from biodl.data import cache

    f = tmp_path / "slide.svs"
    f.write_bytes(b"x" * 5000)
    calls = []
    real = cache.sha256_file
    monkeypatch.setattr(cache, "sha256_file", lambda p: calls.append(p) or real(p))
    first = cache.memo_sha256(f, tmp_path / "c")
    assert first == hashlib.sha256(b"x" * 5000).hexdigest()
    assert cache.memo_sha256(f, tmp_path / "c") == first and len(calls) == 1  # remembered
    f.write_bytes(b"y" * 5000)  # same size, new content and time
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    assert cache.memo_sha256(f, tmp_path / "c") == hashlib.sha256(b"y" * 5000).hexdigest() and len(calls) == 2
