"""Slide maps: patches put back at the positions their file names give."""

import numpy as np
import pandas as pd
from PIL import Image

from biodl.report.slides import assemble, patch_positions, write_slide_maps


def _patches(n=12, p=10, seed=0):
    rng = np.random.default_rng(seed)
    xy = np.array([[1 + p * (i % 4), 51 + p * (i // 4)] for i in range(n)])  # a 4 x 3 grid, off the origin
    return rng.integers(0, 256, (n, p, p, 3), dtype=np.uint8), xy


def test_a_patch_drawn_at_its_coordinates_reads_back_the_same_pixels():
    patches, xy = _patches()
    canvas = assemble(patches, xy)
    assert canvas.shape == (30, 40, 3)
    for patch, (x, y) in zip(patches, xy - xy.min(axis=0), strict=True):
        np.testing.assert_array_equal(canvas[y:y + 10, x:x + 10], patch)
    gappy = assemble(patches[[0, 11]], xy[[0, 11]])  # missing patches leave the fill
    assert gappy.shape == (30, 40, 3) and (gappy[0:10, 10:40] == 255).all()
    half = assemble(patches, xy, scale=2)  # subsampled: every other pixel of each patch
    assert half.shape == (15, 20, 3)
    np.testing.assert_array_equal(half[0:5, 0:5], patches[0][::2, ::2])


def test_positions_come_from_the_file_names_or_not_at_all():
    names = ["8916/0/8916_idx5_x1001_y851_class0.png", "8916/1/8916_idx5_x1051_y901_class1.png"]
    assert patch_positions(names).tolist() == [[1001, 851], [1051, 901]]
    assert patch_positions(names + ["8916/0/scan.png"]) is None
    assert patch_positions(["a/r3c7.png"], r"r(?P<y>\d+)c(?P<x>\d+)").tolist() == [[7, 3]]


def test_slide_maps_are_written_per_patient_with_three_panels(tmp_path):
    patches, xy = _patches(12)
    pred = pd.DataFrame({"row": np.arange(12), "source": [f"p{i % 2}/x_x{x}_y{y}.png" for i, (x, y) in enumerate(xy)],
                         "patient": [f"p{i % 2}" for i in range(12)], "label": np.arange(12) % 2,
                         "p_IDC": np.linspace(0, 1, 12)})
    names = write_slide_maps(tmp_path, patches, pred, "IDC")
    assert names == ["slide_p0.png", "slide_p1.png"]
    for patient, colour in (("p0", [250, 250, 250]), ("p1", [214, 39, 40])):  # p0: all class 0, p1: all class 1
        with Image.open(tmp_path / f"slide_{patient}.png") as im:
            px = np.asarray(im.convert("RGB"))
        assert px.shape == (30, 3 * 30 + 2 * 8, 3)  # mosaic | truth | probability, 8 px apart
        assert px[2, 30 + 8 + 2].tolist() == colour  # the truth panel's first cell
        mosaic_first = patches[0] if patient == "p0" else patches[1]
        np.testing.assert_array_equal(px[:10, :10], mosaic_first)
    assert write_slide_maps(tmp_path / "none", patches, pred.assign(source="scan.png"), "IDC") == []


def test_per_patient_table_gives_true_and_predicted_fractions():
    from biodl.report.predictions import per_patient

    p_yes = np.array([0.8, 0.4, 0.1, 0.6, 0.3, 0.2])
    t = per_patient(np.array(["a", "a", "a", "a", "b", "b"]), np.array([1, 1, 0, 0, 0, 0]),
                    np.column_stack([1 - p_yes, p_yes]))
    assert t["patient"].tolist() == ["a", "b"] and t["images"].tolist() == [4, 2]
    assert t["true_fraction"].tolist() == [0.5, 0.0] and t["predicted_fraction"].tolist() == [0.5, 0.0]
    assert t["mean_probability"].round(6).tolist() == [0.475, 0.25]
