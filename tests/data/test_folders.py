import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from biodl.data.folders import DR_GRADES, load_csv_images, load_image_folder, load_patient_tree
from biodl.errors import DataError


def _png(path, value=0, size=(8, 8), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        Image.fromarray(np.full(size, value * 257, dtype=np.uint16)).save(path)
    else:
        arr = np.full((*size, 3), value, dtype=np.uint8)
        Image.fromarray(arr).convert(mode).save(path)
    return path


def test_image_folder_keeps_the_dr_grade_order(tmp_path):
    for g, name in enumerate(DR_GRADES):
        for k in range(2):
            _png(tmp_path / name / f"{k}.png", value=10 * g)
    s = load_image_folder(tmp_path, size=8)
    assert s.classes == DR_GRADES  # not alphabetical (which would put Mild first)
    assert s.labels.tolist() == sorted([0, 0, 1, 1, 2, 2, 3, 3, 4, 4], key=lambda g: DR_GRADES[g])
    for img, y in zip(s.images, s.labels, strict=True):
        assert img.shape == (8, 8, 3) and int(img[0, 0, 0]) == 10 * y


def test_image_folder_resizes_and_converts_with_a_warning(tmp_path):
    _png(tmp_path / "a" / "grey.png", 100, size=(16, 16), mode="L")
    _png(tmp_path / "a" / "rgba.png", 50, size=(16, 16), mode="RGBA")
    _png(tmp_path / "b" / "deep.png", 200, size=(16, 16), mode="I;16")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = load_image_folder(tmp_path, size=8)
    msgs = " ".join(str(x.message) for x in w)
    assert "1 grey image" in msgs and "1 RGBA image" in msgs and "1 16-bit image" in msgs
    assert s.images.shape == (3, 8, 8, 3)
    assert s.images[s.labels == 1][0, 0, 0].tolist() == [200, 200, 200]  # 16-bit scaled to 8-bit


def test_every_bad_file_is_reported_or_skipped(tmp_path):
    _png(tmp_path / "a" / "ok.png", size=(64, 64))
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    (tmp_path / "b").mkdir()
    Image.fromarray(noise).save(tmp_path / "b" / "ok.png")  # noise: large enough to cut inside the pixel data
    (tmp_path / "a" / "empty.png").write_bytes(b"")
    good = (tmp_path / "b" / "ok.png").read_bytes()
    (tmp_path / "b" / "cut.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "b" / "text.png").write_text("not an image")
    with pytest.raises(DataError) as err:
        load_image_folder(tmp_path, size=64)
    msg = str(err.value)
    assert "3 unreadable images" in msg and "a/empty.png (empty file)" in msg
    assert "b/cut.png (unreadable" in msg and "b/text.png (not an image" in msg and "--set data.skip_bad=true" in msg
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        s = load_image_folder(tmp_path, size=64, skip_bad=True)
    assert len(s) == 2 and sorted(s.sources) == sorted([str(tmp_path / "a/ok.png"), str(tmp_path / "b/ok.png")])


def test_empty_class_folder(tmp_path):
    _png(tmp_path / "a" / "1.png")
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match="class folder with no images: b"):
        load_image_folder(tmp_path)


def test_patient_tree(tmp_path):
    for patient in ("p1", "p2"):
        for label in ("0", "1"):
            _png(tmp_path / patient / label / "x.png", value=int(label) * 100)
    s = load_patient_tree(tmp_path, size=8)
    assert s.patients.tolist() == ["p1", "p1", "p2", "p2"] and s.labels.tolist() == [0, 1, 0, 1]
    assert s.classes == ["0", "1"]
    _png(tmp_path / "p3" / "maybe" / "x.png")
    with pytest.raises(DataError, match="numeric label folder"):
        load_patient_tree(tmp_path)


def test_csv_layout_aptos_style(tmp_path):
    img = tmp_path / "train_images"
    for i in range(4):
        _png(img / f"id{i}.png", value=i)
    (tmp_path / "train.csv").write_text("id_code,diagnosis\nid0,0\nid1,2\nid2,4\nid3,1\n")
    s = load_csv_images(tmp_path / "train.csv", img, size=8)
    assert s.labels.tolist() == [0, 2, 4, 1] and s.classes == ["0", "1", "2", "3", "4"]
    assert s.images[:, 0, 0, 0].tolist() == [0, 1, 2, 3]


def test_csv_ids_escaping_or_missing(tmp_path):
    img = tmp_path / "images"
    _png(img / "a.png")
    _png(tmp_path / "secret.png")
    (tmp_path / "esc.csv").write_text("image,label\na.png,x\n../secret.png,y\n")
    with pytest.raises(DataError, match=r"ids outside .*images: line 3 \(../secret.png\)"):
        load_csv_images(tmp_path / "esc.csv", img)
    (tmp_path / "miss.csv").write_text("image,label,patient\na.png,x,p1\nb.png,y,p2\n")
    with pytest.raises(DataError, match=r"1 ids name no file .*line 3 \(b.png\)"):
        load_csv_images(tmp_path / "miss.csv", img)
    _png(img / "b.png", 9)
    s = load_csv_images(tmp_path / "miss.csv", img, classes=["y", "x"])
    assert s.labels.tolist() == [1, 0] and s.patients.tolist() == ["p1", "p2"]


def test_csv_blank_label_and_conflicting_ids_are_reported(tmp_path):
    for i in range(4):
        _png(tmp_path / "img" / f"{i}.png", value=i)
    (tmp_path / "blank.csv").write_text("image,label\n0.png,a\n1.png,\n2.png,b\n")
    with pytest.raises(DataError, match=r"blank.csv: column 'label': blank label at line 3$"):
        load_csv_images(tmp_path / "blank.csv", tmp_path / "img", size=8)
    (tmp_path / "dup.csv").write_text("image,label\n0.png,a\n1.png,b\n0.png,b\n2.png,a\n3.png,b\n")
    with pytest.warns(UserWarning, match=r"dup.csv: 1 id listed with different labels: 0.png \(a/b\)"):
        s = load_csv_images(tmp_path / "dup.csv", tmp_path / "img", size=8)
    assert len(s) == 5


def test_cache_key_takes_relative_and_absolute_paths_together(tmp_path, monkeypatch):
    from biodl.data.cache import content_key

    a = _png(tmp_path / "img" / "a.png")
    monkeypatch.chdir(tmp_path)
    assert content_key([Path("img/a.png"), tmp_path / "labels.csv"], {}) == content_key(
        [a, tmp_path / "labels.csv"], {})


def test_embedded_idc_matches_its_manifest_and_published_counts():
    import hashlib

    from biodl.datasets import embedded_path

    root = embedded_path("idc")
    manifest = (root.parent / "MANIFEST.sha256").read_text().split("\n")
    listed = {name.removeprefix("./"): digest for digest, name in (line.split("  ", 1) for line in manifest if line)}
    files = sorted(p for p in root.rglob("*.png"))
    assert len(files) == len(listed) == 4982
    for p in files:
        assert hashlib.sha256(p.read_bytes()).hexdigest() == listed[str(p.relative_to(root))], p
    counts = {}
    for p in files:
        patient, label = p.parts[-3], int(p.parts[-2])
        counts.setdefault(patient, [0, 0])[label] += 1
    assert counts["8916"] == [60, 111] and counts["9124"] == [175, 290] and len(counts) == 10  # SOURCE.md
    assert sum(c[1] for c in counts.values()) == 1748


def _idc_tree(root, patients=("p1", "p2"), n=3):
    for p in patients:
        for label in (0, 1):
            for k in range(n):
                _png(root / p / str(label) / f"{p}_idx5_x{50 * k + 1}_y1_class{label}.png", value=40 + 150 * label,
                     size=(50, 50))
    return root


def test_patient_tree_bad_inputs_name_the_fault(tmp_path):
    root = _idc_tree(tmp_path / "a")
    (root / "p3" / "0").mkdir(parents=True)  # a patient without images
    with pytest.raises(DataError, match=r"patient folder with no images: p3"):
        load_patient_tree(root, classes=["no IDC", "IDC"])
    root = _idc_tree(tmp_path / "b")
    _png(root / "p1" / "2" / "p1_idx5_x1_y51_class2.png", size=(50, 50))
    with pytest.raises(DataError, match=r"b/p1/2: label folder 2 is not a class: the classes are 0 \(no IDC\), "
                                        r"1 \(IDC\)"):
        load_patient_tree(root, classes=["no IDC", "IDC"])
    root = _idc_tree(tmp_path / "c")
    _png(root / "p2" / "1" / "p2_idx5_x1_y51_class0.png", size=(50, 50))
    with pytest.raises(DataError, match=r"1 file whose class<C> suffix contradicts the label folder: "
                                        r"p2/1/p2_idx5_x1_y51_class0.png"):
        load_patient_tree(root)


def test_pad_keeps_patch_pixels_pads_edge_crops_and_refuses_larger_patches(tmp_path):
    root = _idc_tree(tmp_path / "t")
    edge = np.full((50, 12, 3), 90, np.uint8)  # a crop at the slide's right edge: 12 px wide
    Image.fromarray(edge).save(root / "p1" / "0" / "p1_idx5_x151_y1_class0.png")
    with pytest.warns(UserWarning, match=r"padded 1 smaller edge crop to 50 x 50 \(white, right and bottom\)"):
        s = load_patient_tree(root, size=50, fit="pad")
    i = next(i for i, src in enumerate(s.sources) if "x151" in src)
    assert s.images.shape[1:] == (50, 50, 3)
    assert (s.images[i][:, :12] == 90).all() and (s.images[i][:, 12:] == 255).all()
    j = next(i for i, src in enumerate(s.sources) if "x1_" in src and "/p1/1/" in src)
    assert (s.images[j] == 190).all()  # a full patch is kept as it is, not resampled
    _png(root / "p2" / "0" / "p2_idx5_x201_y1_class0.png", size=(60, 60))
    with pytest.raises(DataError, match=r"1 image larger than the 50 x 50 patches \(not an edge crop\): "
                                        r"p2/0/p2_idx5_x201_y1_class0.png \(60 x 60\)"):
        load_patient_tree(root, size=50, fit="pad")
    with pytest.warns(UserWarning, match="left out 1 images larger than the 50 x 50 patches"):
        assert len(load_patient_tree(root, size=50, fit="pad", skip_bad=True)) == len(s)
