"""Stain normalisation (Macenko, Reinhard) against the built-in reference from the embedded slide."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from biodl.data.stain import BUILTIN_TILE, StainReference, _lab_stats, builtin_reference, normalize
from biodl.data.wsi import open_slide
from biodl.datasets import embedded_path
from biodl.errors import DataError


@pytest.fixture(scope="module")
def reference_tile():
    with open_slide(embedded_path("cmu1-small-region")) as slide:
        return slide.read_level(*BUILTIN_TILE, 256, 256)


@pytest.fixture(scope="module")
def other_slide():
    """64 IDC patches (other patients, another scanner and staining) as one 400 x 400 mosaic."""
    files = sorted(embedded_path("idc").glob("*/1/*.png"))[:64]
    rows = [np.concatenate([np.asarray(Image.open(f).convert("RGB").resize((50, 50))) for f in files[r * 8:r * 8 + 8]],
                           axis=1) for r in range(8)]
    return np.concatenate(rows, axis=0)


def test_the_reference_maps_to_itself(reference_tile):
    ref = builtin_reference()
    stains = np.asarray(ref.stains)
    assert stains.shape == (3, 2) and np.allclose(np.linalg.norm(stains, axis=0), 1)
    assert stains[0, 0] > stains[0, 1]  # haematoxylin first: the larger red optical density
    for method in ("macenko", "reinhard"):
        out = normalize(reference_tile, ref, method)
        assert out.dtype == np.uint8 and out.shape == reference_tile.shape
        assert np.abs(out.astype(int) - reference_tile.astype(int)).max() <= 1, method


def test_another_slide_moves_toward_the_reference(other_slide):
    ref = builtin_reference()
    target = np.asarray(ref.lab_mean)
    before = np.linalg.norm(_lab_stats(other_slide)[0] - target)
    for method, shrink in (("reinhard", 0.05), ("macenko", 0.9)):
        after = np.linalg.norm(_lab_stats(normalize(other_slide, ref, method))[0] - target)
        assert after < shrink * before, (method, before, after)
    # Macenko matches what it models: the stain vectors found in the output are the reference's
    from biodl.data.stain import macenko_stains

    def angles(stains):  # degrees between each stain vector and the reference's
        cos = np.clip((stains * np.asarray(ref.stains)).sum(axis=0), -1, 1)
        return np.degrees(np.arccos(cos))

    theirs, _ = macenko_stains(other_slide)
    ours, conc = macenko_stains(normalize(other_slide, ref, "macenko"))
    assert angles(ours).max() < angles(theirs).max() and angles(ours).mean() < angles(theirs).mean()
    assert conc == pytest.approx(ref.max_conc, rel=0.15)


def test_reference_round_trips_and_bad_input(other_slide):
    ref = StainReference.fit(other_slide)
    again = StainReference(**json.loads(json.dumps(ref.to_dict())))
    np.testing.assert_array_equal(normalize(other_slide, again), normalize(other_slide, ref))
    with pytest.raises(DataError, match="unknown stain normalisation"):
        normalize(other_slide, ref, "vahadane")
    with pytest.raises(DataError, match="too little stained tissue"):
        normalize(np.full((64, 64, 3), 245, np.uint8), ref, "macenko", where="blank.png")


def test_references_from_files_and_the_batch_normaliser(tmp_path, reference_tile, other_slide):
    from biodl.data.stain import StainNormalizer, load_reference

    Image.fromarray(reference_tile).save(tmp_path / "ref.png")
    from_tile = load_reference(tmp_path / "ref.png")
    assert np.allclose(from_tile.stains, builtin_reference().stains)  # the built-in one is fitted on that tile
    (tmp_path / "ref.json").write_text(json.dumps(from_tile.to_dict()))
    assert load_reference(tmp_path / "ref.json") == from_tile
    (tmp_path / "bad.json").write_text(json.dumps({"stains": [[1, 2]], "max_conc": [1, 1], "lab_mean": [0, 0, 0],
                                                   "lab_std": [1, 1, 1]}))
    (tmp_path / "junk.json").write_text("{not json")
    (tmp_path / "text.png").write_text("not an image")
    for name, match in (("missing.png", "no such stain reference"), ("bad.json", "not a usable stain reference"),
                        ("junk.json", "not valid JSON"), ("text.png", "not a usable reference tile")):
        with pytest.raises(DataError, match=match) as err:
            load_reference(tmp_path / name)
        assert name in str(err.value)
    with pytest.raises(DataError, match="unknown stain normalisation"):
        StainNormalizer.create("vahadane")
    assert StainNormalizer.create("none") is None and StainNormalizer.from_dict(None) is None
    norm = StainNormalizer.create("macenko", tmp_path / "ref.json")
    batch = np.stack([other_slide[:64, :64], np.full((64, 64, 3), 250, np.uint8)])  # tissue, then bare glass
    out = norm(batch)
    np.testing.assert_array_equal(out[0], normalize(batch[0], from_tile, "macenko"))
    np.testing.assert_array_equal(out[1], batch[1])  # glass is left as it is, and counted
    assert norm.skipped == 1
    again = StainNormalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    np.testing.assert_array_equal(again(batch[:1]), out[:1])


@pytest.mark.parametrize("method", ["macenko", "reinhard"])
def test_a_batch_is_normalised_image_by_image_in_order(other_slide, method):
    """The normaliser works on a thread pool: each output is still its own input's, and the
    glass tiles among them are counted once each."""
    from biodl.data.stain import StainNormalizer

    ref = builtin_reference()
    crops = [other_slide[r:r + 48, c:c + 48] for r in range(0, 350, 50) for c in range(0, 350, 100)]
    glass = np.full((48, 48, 3), 245, np.uint8)
    batch = np.stack([glass if i % 5 == 2 else crop for i, crop in enumerate(crops)])
    norm = StainNormalizer(method, ref)
    out = norm(batch)
    skipped = 0
    for i, img in enumerate(batch):
        try:
            want = normalize(img, ref, method)
        except DataError:  # Macenko on glass, or on a crop that is mostly glass
            want, skipped = img, skipped + 1
        np.testing.assert_array_equal(out[i], want, err_msg=str(i))
    assert norm.skipped == skipped and (skipped >= 6 if method == "macenko" else skipped == 0)
    assert not np.array_equal(out[0], batch[0])  # tissue did change


def _ref_json(**change) -> str:
    """A built-in reference's JSON with some values replaced by raw JSON text."""
    d = builtin_reference().to_dict()
    for key in change:
        d[key] = f"@{key}@"
    text = json.dumps(d)
    for key, value in change.items():
        text = text.replace(f'"@{key}@"', value)
    return text


@pytest.mark.parametrize("change, fault", [
    ({"stains": "[[NaN, 0.3], [0.5, 0.8], [0.3, 0.3]]"}, "not valid JSON"),
    ({"max_conc": "[Infinity, 1]"}, "not valid JSON"),
    ({"lab_std": "[1e999, 1, 1]"}, "not valid JSON"),
    ({"stains": "[[0, 0], [0, 0], [0, 0]]"}, "unit vector"),
    ({"stains": "[[true, 0.3], [0.5, 0.8], [0.3, 0.3]]"}, "stains"),
    ({"stains": "[[null, 0.3], [0.5, 0.8], [0.3, 0.3]]"}, "stains"),
    ({"stains": '"a string"'}, "stains"),
    ({"stains": '{"a": 1}'}, "stains"),
    ({"stains": "[[0.6, 0.6], [0.6, 0.6], [0.52915, 0.52915]]"}, "0.0 degrees apart"),
    ({"max_conc": "[0, 1]"}, "must be positive"),
    ({"lab_mean": "[500, 0, 0]"}, "outside [0, 100]"),
    ({"stains": "[" * 50_000 + "]" * 50_000}, "nested too deeply"),
])
def test_a_stain_reference_of_the_right_shape_but_wrong_values_is_refused(tmp_path, change, fault):
    from biodl.data.stain import load_reference

    (tmp_path / "ref.json").write_text(_ref_json(**change))
    with pytest.raises(DataError, match=re.escape(fault)) as err:
        load_reference(tmp_path / "ref.json")
    assert "ref.json" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("colour", [(0, 0, 0), (120, 40, 160)])
def test_a_black_or_one_colour_reference_tile_is_refused_not_fitted_with_one_stain_twice(tmp_path, colour):
    from biodl.data.stain import load_reference

    Image.fromarray(np.full((64, 64, 3), colour, np.uint8)).save(tmp_path / "flat.png")
    with pytest.raises(DataError, match="degrees apart"):
        load_reference(tmp_path / "flat.png")


def test_a_reference_tile_over_the_pixel_limit_is_refused_before_decoding(tmp_path, reference_tile, monkeypatch):
    from biodl.data.stain import load_reference

    Image.fromarray(reference_tile).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DataError, match="more than 1,000 pixels"):
        load_reference(tmp_path / "big.png")


def test_a_run_recording_a_damaged_stain_reference_is_refused_at_load(tmp_path):
    from biodl.errors import RunDirError
    from biodl.runs import read_validated
    from biodl.tasks.image_data import PreprocessFile

    good = {"classes": ["a", "b"], "mean": [0.5] * 3, "std": [0.2] * 3, "size": 32, "in_chans": 3, "graded": False,
            "stain": {"method": "macenko", "reference": builtin_reference().to_dict()}}
    (tmp_path / "preprocess.json").write_text(json.dumps(good))
    assert read_validated(tmp_path / "preprocess.json", PreprocessFile).stain["method"] == "macenko"
    good["stain"]["reference"]["stains"] = [[0.0, 0.0]] * 3
    (tmp_path / "preprocess.json").write_text(json.dumps(good))
    with pytest.raises(RunDirError, match="preprocess.json.*stain is not a usable stain reference"):
        read_validated(tmp_path / "preprocess.json", PreprocessFile)
