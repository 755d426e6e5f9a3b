"""Slide tiles in the cache (biodl wsi tile --to-cache) and slide tables as a training set."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from biodl.data.cache import DiskArray
from biodl.datasets import embedded_path
from tests.conftest import assert_one_line_error, main_ok
from tests.tasks.test_image import FAST

SLIDE = embedded_path("cmu1-small-region")
MPP = 0.499  # the embedded slide's; the PNG "slides" below are cut from it


def _entries(cache):
    return sorted(p for p in (cache / "slides").iterdir() if not p.name.startswith("."))


def test_to_cache_stores_the_tiles_of_the_png_folder(tmp_path, cli):
    args = ["--tile-mpp", "2.0", "--size", "64", "--min-tissue", "0.3"]
    r = cli("wsi", "tile", SLIDE, "--to-cache", "--cache-dir", tmp_path / "c", *args)
    assert r.code == 0, r.err
    (entry,) = _entries(tmp_path / "c")
    assert cli("wsi", "tile", SLIDE, "--out", tmp_path / "png", *args).code == 0
    tiles = pd.read_csv(entry / "tiles.csv")
    pngs = pd.read_csv(tmp_path / "png" / SLIDE.stem / "tiles.csv")
    assert tiles[["x", "y", "tissue", "score"]].equals(pngs[["x", "y", "tissue", "score"]])
    images = np.load(entry / "images.npy")
    assert images.shape == (len(tiles), 64, 64, 3)
    for k in (0, len(tiles) // 2, len(tiles) - 1):
        with Image.open(tmp_path / "png" / SLIDE.stem / pngs["file"].iat[k]) as im:
            np.testing.assert_array_equal(images[k], np.asarray(im))
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["tiles"] == len(tiles) and meta["tile_mpp"] == 2.0 and meta["slide_mpp"] == MPP
    r = cli("wsi", "tile", SLIDE, "--to-cache", "--cache-dir", tmp_path / "c", *args)
    assert "done before, skipped" in r.out and _entries(tmp_path / "c") == [entry]
    # other settings, other entries: the five most nuclear tiles; stain-normalised tiles
    r = cli("wsi", "tile", SLIDE, "--to-cache", "--cache-dir", tmp_path / "c", *args, "--select", "hematoxylin",
            "--tiles", "5")
    assert r.code == 0, r.err
    top = next(e for e in _entries(tmp_path / "c") if e != entry)
    scored = pd.read_csv(top / "tiles.csv")
    assert len(scored) == 5 and scored["score"].is_monotonic_decreasing
    assert set(zip(scored["x"], scored["y"], strict=True)) <= set(zip(tiles["x"], tiles["y"], strict=True))
    assert cli("wsi", "tile", SLIDE, "--to-cache", "--cache-dir", tmp_path / "c", *args, "--stain",
               "macenko").code == 0
    (stained,) = set(_entries(tmp_path / "c")) - {entry, top}
    from biodl.data.stain import StainNormalizer

    np.testing.assert_array_equal(np.load(stained / "images.npy"), StainNormalizer.create("macenko")(images))
    assert json.loads((stained / "meta.json").read_text())["stain"]["method"] == "macenko"


def test_tile_command_bad_input_is_one_line(tmp_path, cli):
    c = ["--cache-dir", tmp_path / "c"]
    assert_one_line_error(cli("wsi", "tile", SLIDE, *c), "--out", "--to-cache")
    assert_one_line_error(cli("wsi", "tile", SLIDE, "--to-cache", "--out", tmp_path / "o", *c), "one of the two")
    assert_one_line_error(cli("wsi", "tile", SLIDE, "--to-cache", *c, "--stain", "macenko", "--stain-reference",
                              tmp_path / "nope.json"), "nope.json", "no such stain reference")
    assert_one_line_error(cli("wsi", "tile", SLIDE, "--to-cache", *c, "--stain", "vahadane"), "vahadane")
    assert_one_line_error(cli("wsi", "tile", SLIDE, "--to-cache", *c, "--select", "random"), "number of tiles")
    assert_one_line_error(cli("wsi", "tile", SLIDE, "--to-cache", *c, "--size", "4096"), "more than the slide")
    Image.new("RGB", (300, 300), (200, 100, 170)).save(tmp_path / "plain.png")
    assert_one_line_error(cli("wsi", "tile", tmp_path / "plain.png", "--to-cache", *c), "plain.png", "--mpp")
    assert not (tmp_path / "c" / "slides").exists() or _entries(tmp_path / "c") == []  # nothing half-written
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Eight "slides" (PNG crops of the embedded slide, four turned upside down), labelled a, b."""
    from biodl.data.wsi import open_slide

    root = tmp_path_factory.mktemp("cohort")
    with open_slide(SLIDE) as s:
        full = s.read_level(0, 0, 2220, 2967)
    rows = ["slide,label"]
    for k in range(8):
        y, x = [(0, 0), (1400, 0), (0, 800), (1500, 800)][k % 4]
        crop = full[y:y + 1450, x:x + 1400]
        Image.fromarray(np.ascontiguousarray(crop if k < 4 else crop[::-1, ::-1])).save(root / f"s{k}.png")
        rows.append(f"s{k}.png,{'ab'[k % 2]}")
    (root / "slides.csv").write_text("\n".join(rows) + "\n")
    return root


def test_training_on_a_slide_table(cohort, tmp_path):
    """Tiles from the cache, labelled and grouped by slide, stain-normalised; the run's predict
    applies the same normalisation to raw tiles and gives the test tiles' probabilities back."""
    settings = ["--set", f"data.cache_dir={tmp_path / 'c'}", "--set", "data.mpp=4.0", "--set", "data.size=32",
                "--set", f"data.tiles.slide_mpp={MPP}", "--set", "data.stain=macenko",
                "--set", "data.tiles.min_tissue=0.3"]
    # one slide tiled into the cache beforehand (biodl wsi tile --to-cache): the run finds its entry
    main_ok("wsi", "tile", cohort / "s0.png", "--to-cache", "--cache-dir", tmp_path / "c", "--tile-mpp", "4.0",
            "--size", "32", "--mpp", str(MPP), "--min-tissue", "0.3", "--stain", "macenko")
    (before,) = _entries(tmp_path / "c")
    main_ok("train", "--data", cohort / "slides.csv", "--out", tmp_path / "run", *FAST, *settings, "--set", "seed=7")
    run = tmp_path / "run"
    pre = json.loads((run / "preprocess.json").read_text())
    assert pre["mpp"] == 4.0 and pre["size"] == 32 and pre["stain"]["method"] == "macenko"
    assert pre["classes"] == ["a", "b"]
    entries = _entries(tmp_path / "c")
    assert len(entries) == 8 and before in entries  # s0's entry was used, not made again
    n = sum(len(DiskArray(e / "images.npy")) for e in entries)
    assert json.loads((run / "manifest.json").read_text())["n_images"] == n
    test = pd.read_csv(run / "test_predictions.csv")
    val = pd.read_csv(run / "val_predictions.csv")
    assert set(test["patient"]) & set(val["patient"]) == set()  # slides are the groups: no slide in two splits
    assert set(test["patient"]) <= {f"s{k}" for k in range(8)}
    assert (test["label"] == test["patient"].map(lambda p: int(p[1]) % 2)).all()  # each tile has its slide's label
    # predict on raw PNG tiles of one test slide: the run normalises them as it did in training
    slide = sorted(set(test["patient"]))[0]
    main_ok("wsi", "tile", cohort / f"{slide}.png", "--out", tmp_path / "tiles", "--tile-mpp", "4.0", "--size", "32",
            "--mpp", str(MPP), "--min-tissue", "0.3")
    main_ok("predict", run, tmp_path / "tiles" / slide / "tiles", "--out", tmp_path / "p.csv")
    pred = pd.read_csv(tmp_path / "p.csv")
    xy = pred["image"].str.extract(r"(\d+)_(\d+)\.png").astype(int).to_numpy()
    xy = np.round(xy * MPP / 4.0).astype(int)  # level-0 pixels -> tile pixels, as the sources name them
    mine = test[test["patient"] == slide]
    coords = mine["source"].str.extract(r"_x(\d+)_y(\d+)$").astype(int).to_numpy()
    theirs = dict(zip(map(tuple, coords), mine["p_b"], strict=True))
    got = [(tuple(c), p) for c, p in zip(xy, pred["p_b"], strict=True) if tuple(c) in theirs]
    assert len(got) == len(mine) > 0
    assert max(abs(p - theirs[c]) for c, p in got) < 1e-4


def test_slide_table_bad_input_is_one_line(cohort, tmp_path, cli):
    base = ["--out", tmp_path / "run", "--set", f"data.cache_dir={tmp_path / 'c'}", "--set", "data.mpp=4.0",
            "--set", f"data.tiles.slide_mpp={MPP}"]
    cases = {
        "missing.csv": ("slide,label\ns0.png,a\nnot_there.svs,b\n",
                        "row 3: slide not_there.svs: no such file or folder"),
        "dup.csv": ("slide,label\ns0.png,a\ns0.png,b\n", "row 3: slide s0.png is listed twice"),
        "empty_label.csv": ("slide,label\ns0.png,a\ns1.png,\n", "row 3: empty label"),
    }
    for name, (text, fault) in cases.items():
        (cohort / name).write_text(text)
        assert_one_line_error(cli("train", "--data", cohort / name, *base), name, fault)
    (cohort / "nolabel.csv").write_text("slide,grade\ns0.png,a\n")
    assert_one_line_error(cli("train", "--data", cohort / "nolabel.csv", "--set", "data.layout=slides", *base),
                          "nolabel.csv", "columns slide and label")
    assert_one_line_error(cli("train", "--data", cohort / "slides.csv", "--out", tmp_path / "run", "--set",
                              f"data.cache_dir={tmp_path / 'c'}"), "slides.csv", "data.mpp")
    assert not (tmp_path / "run").exists()


def test_tiling_into_the_cache_needs_no_torch():
    """A CUDA build of torch alone holds ~500 MB: tiling a slide into the cache must not import it
    (benchmarks/wsi_tiling.py measures the peak memory of a 40,000 px slide under 500 MB)."""
    import subprocess
    import sys

    code = ("import sys, biodl.cli, biodl.data.slides, biodl.data.stain, biodl.data.wsi, biodl.data.tiles, "
            "biodl.data.tissue; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_symlink_loop_or_folder_in_a_slide_table_is_one_line(cohort, tmp_path, cli):
    base = ["--out", tmp_path / "run", "--set", f"data.cache_dir={tmp_path / 'c'}", "--set", "data.mpp=4.0"]
    (tmp_path / "loop.svs").symlink_to(tmp_path / "loop.svs")
    (tmp_path / "folder.svs").mkdir()
    for name, fault in (("loop.svs", "symbolic-link loop"), ("folder.svs", "a folder, not a slide file")):
        (tmp_path / "t.csv").write_text(f"slide,label\n{cohort / 's0.png'},a\n{name},b\n")
        assert_one_line_error(cli("train", "--data", tmp_path / "t.csv", *base), "t.csv", "row 3", fault)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("damage", ["meta.json not JSON", "meta.json NaN mpp", "truncated images.npy",
                                    "no tiles.csv"])
def test_a_damaged_slide_cache_entry_is_warned_about_and_tiled_again(tmp_path, cli, damage):
    args = ["--tile-mpp", "4.0", "--size", "32", "--min-tissue", "0.3", "--to-cache", "--cache-dir", tmp_path / "c"]
    assert cli("wsi", "tile", SLIDE, *args).code == 0
    (entry,) = _entries(tmp_path / "c")
    images = (entry / "images.npy").read_bytes()
    if damage == "meta.json not JSON":
        (entry / "meta.json").write_text("{oops")
    elif damage == "meta.json NaN mpp":
        meta = json.loads((entry / "meta.json").read_text())
        (entry / "meta.json").write_text(json.dumps(meta).replace(f'"tile_mpp": {meta["tile_mpp"]}', '"tile_mpp": NaN'))
    elif damage == "truncated images.npy":
        (entry / "images.npy").write_bytes(images[:len(images) // 2])
    else:
        (entry / "tiles.csv").unlink()
    with pytest.warns(UserWarning, match="damaged slide-cache entry"):
        from biodl.data.slides import cache_slide
        from biodl.data.tiles import Tiling

        again, n, hit = cache_slide(SLIDE, Tiling(4.0, 32, min_tissue=0.3), tmp_path / "c")
    assert again == entry and not hit and n > 0
    assert (entry / "images.npy").read_bytes() == images  # tiled again, the same tiles


def test_a_patient_grouped_split_of_few_patients_never_asks_for_more_folds_than_groups():
    from biodl.data.splits import grouped_split

    for n in range(6, 9):
        for seed in range(10):
            groups, labels = np.repeat(np.arange(n), 5), np.tile([0, 1, 0, 1, 1], n)
            for val in (0.1, 0.2, 0.3):
                parts = grouped_split(labels, groups, val, 0.2, seed)
                assert sum(len(p) for p in parts.values()) == 5 * n and all(len(p) for p in parts.values())
                sets = [set(groups[p]) for p in parts.values()]
                assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])  # no patient in two
