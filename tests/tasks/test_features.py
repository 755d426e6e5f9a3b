"""The tile-feature cache: features of IDC patient mosaics from an image run's penultimate layer,
with their coordinates and provenance; shards whose union is one run; a resume that skips the
finished slides; another extractor's cache refused."""

import numpy as np
import pytest

from biodl.datasets import embedded_path
from biodl.errors import DataError
from biodl.data.features import FeatureCache, Provenance, extract
from biodl.tasks.features import run_extractor
from tests.conftest import train_square_run

IDC = embedded_path("idc")


def _slides(n_patients=3, per=12):
    """Patient -> a few of its patch files (both classes), as small 'slides'."""
    out = {}
    for patient in sorted(p.name for p in IDC.iterdir() if p.is_dir())[:n_patients]:
        files = sorted((IDC / patient).glob("*/*.png"))
        out[patient] = files[:: max(1, len(files) // per)][:per]
    return out


@pytest.fixture(scope="module")
def extractor(tmp_path_factory):
    run = train_square_run(tmp_path_factory.mktemp("feat"), ("neg", "pos"), epochs=1)
    return (*run_extractor(run), run)


def test_features_coordinates_and_provenance_of_each_slide(extractor, tmp_path):
    fn, prov, _ = extractor
    slides = _slides()
    cache = FeatureCache(tmp_path / "cache", prov)
    report = extract(slides, fn, cache)
    assert report["done"] == 3 and report["skipped"] == 0
    for patient, files in slides.items():
        feats, coords = cache.read(report["entries"][patient])
        assert feats.shape == (len(files), prov.dim) and feats.dtype == np.float32
        names = sorted(f.name for f in files)
        first = names[0]
        x, y = int(first.split("_x")[1].split("_")[0]), int(first.split("_y")[1].split("_")[0])
        assert coords[0].tolist() == [x, y]  # level-0 top-left of the tile, from its name
        assert np.allclose(feats, fn(sorted(files, key=lambda p: p.name)), atol=1e-6)
    assert prov.size == 16 and len(prov.weights_sha256) == 1 and prov.extractor.startswith("image run: ")


def test_shards_add_up_to_one_run_and_a_resume_skips_finished_slides(extractor, tmp_path):
    fn, prov, _ = extractor
    slides = _slides(4, 6)
    whole = FeatureCache(tmp_path / "whole", prov)
    one = extract(slides, fn, whole)
    parts = FeatureCache(tmp_path / "parts", prov)
    halves = [extract(slides, fn, parts, shard=f"{i}/2") for i in range(2)]
    assert sum(h["done"] for h in halves) == 4 and not set(halves[0]["entries"]) & set(halves[1]["entries"])
    for key in one["entries"].values():
        assert np.array_equal(whole.read(key)[0], parts.read(key)[0])

    calls = []

    def dying(files):  # killed while extracting the third slide
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(len(files))
        return fn(files)

    fresh = FeatureCache(tmp_path / "fresh", prov)
    with pytest.raises(KeyboardInterrupt):
        extract(slides, dying, fresh)
    assert len([p for p in (tmp_path / "fresh").iterdir() if p.is_dir()]) == 2  # no half-written entry
    again = extract(slides, fn, fresh)
    assert again == {"done": 2, "skipped": 2, "entries": one["entries"]}


def test_a_cache_of_another_extractor_is_refused(extractor, tmp_path):
    _, prov, _ = extractor
    FeatureCache(tmp_path / "c", prov)
    other = Provenance(**{**prov.model_dump(), "mpp": 0.5})
    with pytest.raises(DataError) as err:
        FeatureCache(tmp_path / "c", other)
    assert "mpp" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DataError, match="has no tiles"):
        extract({"empty": []}, extractor[0], FeatureCache(tmp_path / "d", prov))
    with pytest.raises(DataError, match="I/N needs 0 <= I < N"):
        extract(_slides(1, 2), extractor[0], FeatureCache(tmp_path / "e", prov), shard="2/2")


def test_the_command_extracts_resumes_and_refuses_another_extractor(extractor, tmp_path, cli):
    from tests.conftest import assert_one_line_error

    run = extractor[2]
    patients = sorted(p for p in IDC.iterdir() if p.is_dir())[:2]
    r = cli("wsi", "features", run, *patients, "--cache", tmp_path / "cache")
    assert r.code == 0, r.err
    assert "2 slides extracted, 0 done before" in r.out
    r = cli("wsi", "features", run, *patients, "--cache", tmp_path / "cache", "--shard", "1/2")
    assert r.code == 0 and "0 slides extracted, 1 done before" in r.out
    (tmp_path / "cache" / "provenance.json").write_text((tmp_path / "cache" / "provenance.json").read_text()
                                                         .replace('"size": 16', '"size": 32'))
    assert_one_line_error(cli("wsi", "features", run, *patients, "--cache", tmp_path / "cache"),
                          "holds features made otherwise (size differ")
    twin = tmp_path / "x" / patients[0].name
    twin.mkdir(parents=True)
    assert_one_line_error(cli("wsi", "features", run, patients[0], twin, "--cache", tmp_path / "c2"),
                          "two slides are named")


SVS = embedded_path("cmu1-small-region")  # 2220 x 2967 px at 0.499 um/px


def test_a_slide_file_is_cut_at_the_extractors_resolution(idc_patches, tmp_path, cli):
    """The 2-fold IDC patch model's first fold reads 24 px tiles at 4 um/px: on the SVS slide
    (0.499 um/px) a tile is ~192 level-0 px; the features stream block by block into one entry."""
    import json

    from tests.conftest import assert_one_line_error

    fold = idc_patches / "folds" / "fold1"
    r = cli("wsi", "features", fold, SVS, "--cache", tmp_path / "cache")
    assert r.code == 0, r.err
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["slide"] == SVS.stem and meta["tiling"]["mpp"] == 4.0 and meta["tiling"]["size"] == 24
    feats, coords = FeatureCache(tmp_path / "cache", run_extractor(fold)[1]).read(entry.name)
    step = 24 * 4.0 / 0.499
    assert len(feats) == meta["tiles"] > 10 and (coords >= 0).all()
    assert (coords[:, 0] < 2220).all() and (coords[:, 1] < 2967).all()
    assert np.allclose(np.round(coords / step), coords / step, atol=0.02)  # on the tile grid
    r = cli("wsi", "features", fold, SVS, "--cache", tmp_path / "cache", "--min-tissue", "0.9")
    assert r.code == 0 and "1 slides extracted" in r.out  # another tissue threshold: another entry
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (400, 400), "white").save(blank)
    assert_one_line_error(cli("wsi", "features", fold, blank, "--cache", tmp_path / "cache", "--mpp", "0.5"),
                          "blank.png", "no tissue tile")
    assert_one_line_error(cli("wsi", "features", fold, blank, "--cache", tmp_path / "cache"), "blank.png", "--mpp")
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 2  # nothing half written


def test_a_torchvision_architecture_with_a_local_weights_file(tmp_path, cli):
    import json

    import torch
    import torchvision

    from tests.conftest import assert_one_line_error

    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    args = ["wsi", "features", "torchvision:resnet18", SVS, "--cache", tmp_path / "cache", "--size", "64",
            "--tile-mpp", "8"]
    assert_one_line_error(cli(*args), "--weights", "never downloads")
    r = cli(*args, "--weights", weights)
    assert r.code == 0, r.err
    assert "(512 features a tile)" in r.out
    prov = json.loads((tmp_path / "cache" / "provenance.json").read_text())
    assert prov["extractor"].startswith("torchvision resnet18") and prov["mpp"] == 8 and prov["size"] == 64
    bad = tmp_path / "other.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), bad)
    assert_one_line_error(cli(*args[:-4], "--cache", tmp_path / "c2", "--weights", bad), "other.pth",
                          "are not resnet18 weights")
