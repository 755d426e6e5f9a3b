import numpy as np
import pytest
import torch

from biodl.data.arrays import ImageDataset, ImageSet, load_npy_pair, load_npz
from biodl.datasets import embedded_path
from biodl.errors import DataError

RETINA = embedded_path("retinamnist")


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _medmnist_like(tmp_path, n=(6, 2, 3), shape=(28, 28, 3), label_shape=lambda n: (n, 1)):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, k in zip(("train", "val", "test"), n, strict=True):
        arrays[f"{split}_images"] = rng.integers(0, 256, (k, *shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 5, label_shape(k))
    return _npz(tmp_path / "set.npz", **arrays), arrays


def test_npz_keeps_official_splits(tmp_path):
    path, arrays = _medmnist_like(tmp_path)
    s = load_npz(path)
    assert s.images.shape == (11, 28, 28, 3) and s.images.dtype == np.uint8
    assert s.split.tolist() == ["train"] * 6 + ["val"] * 2 + ["test"] * 3
    np.testing.assert_array_equal(s.labels[:6], arrays["train_labels"][:, 0])
    np.testing.assert_array_equal(s.images[6:8], arrays["val_images"])
    assert s.classes == [str(i) for i in range(int(s.labels.max()) + 1)]
    test = s.subset(np.flatnonzero(s.split == "test"))
    np.testing.assert_array_equal(test.images, arrays["test_images"])
    assert test.split.tolist() == ["test"] * 3 and test.patients is None


def test_npz_with_flat_labels_and_grey_images(tmp_path):
    path, _ = _medmnist_like(tmp_path, shape=(28, 28), label_shape=lambda n: (n,))
    s = load_npz(path, classes=["a", "b", "c", "d", "e"])
    assert s.images.shape == (11, 28, 28, 1) and s.classes == ["a", "b", "c", "d", "e"]


def test_real_retinamnist_official_counts():
    s = load_npz(RETINA)
    assert {k: int((s.split == k).sum()) for k in ("train", "val", "test")} == {"train": 1080, "val": 120,
                                                                                   "test": 400}
    assert np.bincount(s.labels[s.split == "train"]).tolist() == [486, 128, 206, 194, 66]


@pytest.mark.parametrize("drop, fragment", [
    ("train_labels", "missing keys: train_labels"),
    ("val_images", "missing keys: val_images"),
])
def test_npz_missing_keys(tmp_path, drop, fragment):
    path, arrays = _medmnist_like(tmp_path)
    del arrays[drop]
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=fragment):
        load_npz(path)


def test_npz_mismatched_lengths(tmp_path):
    path, arrays = _medmnist_like(tmp_path)
    arrays["test_labels"] = arrays["test_labels"][:2]
    np.savez(path, **arrays)
    with pytest.raises(DataError, match="test_labels: 3 images but 2 labels"):
        load_npz(path)


def test_npz_label_out_of_range_for_given_classes(tmp_path):
    path, _ = _medmnist_like(tmp_path)
    with pytest.raises(DataError, match="out of range for 2 classes"):
        load_npz(path, classes=["no", "yes"])


def test_npz_truncated_and_pickled(tmp_path):
    path, _ = _medmnist_like(tmp_path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_npz(path)
    obj = tmp_path / "obj.npz"
    np.savez(obj, train_images=np.array([{"a": 1}], dtype=object), train_labels=np.array([0]))
    with pytest.raises(DataError, match="never unpickles"):
        load_npz(obj)


def test_npy_pair_like_the_workshop_idc_set(tmp_path):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "X.npy", rng.integers(0, 256, (10, 50, 50, 3), dtype=np.uint8))
    np.save(tmp_path / "Y.npy", np.array([0, 1] * 5))
    s = load_npy_pair(tmp_path, classes=["benign", "IDC"])
    assert s.images.shape == (10, 50, 50, 3) and s.labels.tolist() == [0, 1] * 5 and s.split is None
    np.save(tmp_path / "Y.npy", np.array([0, 1] * 4))
    with pytest.raises(DataError, match="10 images but 8 labels"):
        load_npy_pair(tmp_path)
    (tmp_path / "X.npy").unlink()
    with pytest.raises(DataError, match="X.npy: no such file"):
        load_npy_pair(tmp_path)


def test_float_images_in_unit_range_are_converted(tmp_path):
    np.save(tmp_path / "X.npy", np.full((2, 4, 4, 3), 0.5, dtype=np.float32))
    np.save(tmp_path / "Y.npy", np.array([0, 1]))
    assert load_npy_pair(tmp_path).images[0, 0, 0, 0] == 128
    np.save(tmp_path / "X.npy", np.full((2, 4, 4, 3), 7.5, dtype=np.float32))
    with pytest.raises(DataError, match="uint8"):
        load_npy_pair(tmp_path)


def test_dataset_items_and_batches(tmp_path):
    path, arrays = _medmnist_like(tmp_path)
    ds = ImageDataset(load_npz(path))
    x, y = ds[3]
    assert x.shape == (3, 28, 28) and x.dtype == torch.uint8 and int(y) == arrays["train_labels"][3, 0]
    np.testing.assert_array_equal(x.permute(1, 2, 0).numpy(), arrays["train_images"][3])
    xb, yb = ds[torch.tensor([0, 4, 7])]
    assert xb.shape == (3, 3, 28, 28) and yb.tolist() == [int(arrays["train_labels"][0, 0]),
                                                           int(arrays["train_labels"][4, 0]),
                                                           int(arrays["val_labels"][1, 0])]
    ds2 = ImageDataset(load_npz(path), transform=lambda t: t.float() / 255)
    assert ds2[0][0].dtype == torch.float32 and float(ds2[0][0].max()) <= 1.0


def test_npz_member_that_is_not_npy_is_refused_without_unpickling(tmp_path):
    import pickle
    import zipfile

    path, _ = _medmnist_like(tmp_path)
    marker = tmp_path / "ran"
    payload = pickle.dumps(Exploit(str(marker)))
    with zipfile.ZipFile(path, "a") as z:  # a raw pickle stream where an array belongs
        z.writestr("val_images", payload)
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            if name != "val_images.npy":
                dst.writestr(name, src.read(name))
    with pytest.raises(DataError, match=r"member 'val_images' is not a NumPy array in \.npy format"):
        load_npz(bad)
    assert not marker.exists()


class Exploit:
    """Unpickling this would create a file: the test checks it never happens."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("values, fragment", [
    (np.array([0.5, np.nan]), "1 pixel value is NaN or infinite"),
    (np.array([0.5, np.inf, -np.inf]), "2 pixel values are NaN or infinite"),
    (np.array([0.0, 254.0]), "float pixel values run from 0 to 254"),
])
def test_float_images_outside_the_unit_range_say_what_is_wrong(tmp_path, values, fragment):
    x = np.zeros((4, 8, 8, 1), np.float32)
    x.flat[: len(values)] = values
    with pytest.raises(DataError, match=fragment):
        load_npz(_npz(tmp_path / "f.npz", train_images=x, train_labels=np.array([0, 1, 0, 1])))


def test_empty_official_test_split_is_split_anew_with_a_warning(tmp_path, cli):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    y = np.arange(40) % 2
    path = _npz(tmp_path / "s.npz", train_images=x[:30], train_labels=y[:30], val_images=x[30:],
                val_labels=y[30:], test_images=x[:0], test_labels=y[:0])
    r = cli("train", "--data", path, "--epochs", "1", "--out", tmp_path / "run", "--set", "trainer.progress=false",
            "--set", "n_boot=100", "--set", "model.args={width: 8, blocks: 1}")
    assert r.code == 0, r.err
    assert "warning:" in r.err and "the official split has no test images; all 40 images are split anew" in r.err
    import json

    assert json.loads((tmp_path / "run/manifest.json").read_text())["split"] == "stratified"


def test_labels_stay_on_the_cpu_when_the_pixels_are_resident_elsewhere():
    """data.device_cache: the pixels (and each batch's labels) go to the device, but the dataset's
    labels, which the reports turn into NumPy, stay on the CPU. The "meta" device stands in for a
    GPU here (found on an H200: the test report's labels.numpy() failed on CUDA labels)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 10)
    ds = ImageDataset(ImageSet(rng.integers(0, 256, (10, 4, 4, 3), dtype=np.uint8), labels, ["a", "b", "c"]),
                      indices=np.arange(2, 9))
    on = ds.resident("meta")
    assert on.device.type == "meta" and on.labels.device.type == "cpu"
    np.testing.assert_array_equal(on.labels.numpy(), labels[2:9])
    x, y = on[torch.tensor([0, 3, 6])]
    assert x.device.type == "meta" and x.shape == (3, 3, 4, 4)
    assert y.device.type == "meta" and y.shape == (3,)
    # figures read the same rows on the host
    hx, hy = on.on_host()[torch.tensor([0, 3, 6])]
    gx, gy = ds[torch.tensor([0, 3, 6])]
    assert torch.equal(hx, gx) and torch.equal(hy, gy) and ds.on_host() is ds


def test_example_figure_of_a_set_resident_on_a_device(tmp_path):
    """The test report's figure of confident right and wrong predictions reads its pixels on the
    host when the set lives on a device ("meta" stands in for the GPU)."""
    from PIL import Image

    from biodl.tasks.image_report import show_examples

    rng = np.random.default_rng(1)
    labels = np.array([0, 1, 2, 0, 1, 2])
    ds = ImageDataset(ImageSet(rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8), labels, ["a", "b", "c"]))
    prob = np.eye(3)[[0, 1, 2, 1, 1, 0]] * 0.8 + 0.2 / 3  # 4 right, 2 wrong
    show_examples(ds.resident("meta"), prob, tmp_path / "examples.png")
    with Image.open(tmp_path / "examples.png") as im:
        assert im.size[0] > 100 and im.size[1] > 100


def test_npz_bombs_and_lying_headers_are_refused_before_inflating(tmp_path, monkeypatch):
    import io
    import zipfile

    from biodl import io as biodl_io

    monkeypatch.setattr(biodl_io, "INFLATE_FLOOR", 1 << 20)  # the rule at a test's scale (256 MB in use)
    np.savez_compressed(tmp_path / "bomb.npz", train_images=np.zeros((400, 128, 128, 3), np.uint8),
                        train_labels=np.zeros(400, np.int64))
    with pytest.raises(DataError, match=r"bomb.npz: member 'train_images' inflates \d+-fold"):
        load_npz(tmp_path / "bomb.npz")
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (10**6, 1000, 1000, 3)})
    labels = io.BytesIO()
    np.save(labels, np.zeros(3, np.int64))
    with zipfile.ZipFile(tmp_path / "liar.npz", "w") as z:
        z.writestr("train_images.npy", header.getvalue() + bytes(100))
        z.writestr("train_labels.npy", labels.getvalue())
    with pytest.raises(DataError, match=r"declares an array of shape \(1000000, 1000, 1000, 3\)"):
        load_npz(tmp_path / "liar.npz")
    rng = np.random.default_rng(0)
    np.savez_compressed(tmp_path / "ok.npz", train_images=rng.integers(0, 255, (30, 28, 28, 3), dtype=np.uint8),
                        train_labels=np.arange(30) % 2)
    assert load_npz(tmp_path / "ok.npz").images.shape == (30, 28, 28, 3)
