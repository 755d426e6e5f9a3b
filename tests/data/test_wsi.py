"""Whole-slide reading and tissue detection on the embedded Aperio slide (CMU-1-Small-Region)."""

import json

import numpy as np
import pytest
from PIL import Image

from biodl.data.wsi import open_slide
from biodl.data.tissue import tissue_mask
from biodl.datasets import embedded_path
from biodl.errors import DataError
from tests.conftest import assert_one_line_error

SLIDE = embedded_path("cmu1-small-region")


@pytest.fixture(scope="module")
def slide():
    with open_slide(SLIDE) as s:
        yield s


@pytest.fixture(scope="module")
def level0(slide):
    """The whole of level 0 through OpenSlide, (2967, 2220, 3)."""
    return slide.read_level(0, 0, 2220, 2967)


def test_info_reads_the_aperio_metadata(slide):
    info = slide.info()
    assert (info["vendor"], info["width"], info["height"]) == ("aperio", 2220, 2967)
    assert info["mpp"] == pytest.approx(0.499) and info["objective_power"] == 20
    assert info["levels"] == [{"level": 0, "width": 2220, "height": 2967, "downsample": 1.0}]


def test_a_level0_tile_is_the_same_region_of_the_full_array(slide, level0):
    tile = slide.read(300, 1200, 224, slide.mpp)  # at the slide's own resolution: no resampling
    np.testing.assert_array_equal(tile, level0[1200:1424, 300:524])
    with Image.open(SLIDE) as img:  # Pillow's own decoder of the same JPEG tiles: the same pixels, +- rounding
        pillow = np.asarray(img.convert("RGB"))
    assert pillow.shape == level0.shape
    diff = np.abs(tile.astype(int) - pillow[1200:1424, 300:524].astype(int))
    assert diff.mean() < 1.0 and diff.max() <= 8


def test_a_coarser_resolution_averages_the_finer_pixels(slide, level0):
    tile = slide.read(0, 0, 100, 2 * slide.mpp)  # 100 px at 0.998 um/px: 200 x 200 level-0 pixels
    expected = level0[:200, :200].reshape(100, 2, 100, 2, 3).mean(axis=(1, 3))
    assert tile.shape == (100, 100, 3)
    assert np.abs(tile - expected).max() <= 1  # a 2 x 2 box average, rounded


def test_outside_the_slide_is_white(slide, level0):
    tile = slide.read_level(2100, 2900, 224, 224)
    np.testing.assert_array_equal(tile[:67, :120], level0[2900:, 2100:])
    assert (tile[67:] == 255).all() and (tile[:, 120:] == 255).all()


def test_tissue_mask_matches_an_independent_count(slide):
    thumb, downsample = slide.thumbnail(512)
    assert thumb.shape == (512, 383, 3) and downsample == pytest.approx(2220 / 383)
    mask = tissue_mask(thumb)
    # SOURCE.md: 32.7% of the level-0 pixels are darker than grey 220 (counted once with Pillow)
    assert abs(mask.mean() - 0.327) < 0.04
    grey = np.asarray(Image.fromarray(thumb).convert("L")) < 220
    iou = (mask & grey).sum() / (mask | grey).sum()
    assert iou > 0.8
    assert not mask[:40, :60].any()  # the top-left corner is bare glass
    assert not tissue_mask(np.full((64, 64, 3), 240, np.uint8)).any()  # an empty slide has no tissue


#: A hand count, made once (2026-11-30) by point counting (the stereologist's way to measure an area
#: fraction): a 10 x 14 grid of points at the centres of equal cells over the whole slide, each
#: judged by eye on the level-0 image as tissue (#) or glass (.). 52 of 140 points: 0.371 (standard
#: error 0.041). Points on loose fibres or at a fragment's edge were the hard calls.
HAND_COUNT = ["..........", "....##....", "....###...", "....###...", "....####..", "....####..", "....##.##.",
              "....##.#..", "....###...", "...#####..", "...#####..", "...#####..", "..######..", "..###.##.."]


def test_tissue_mask_matches_a_hand_count(slide):
    hand = np.array([[ch == "#" for ch in row] for row in HAND_COUNT])
    assert hand.shape == (14, 10) and hand.sum() == 52
    thumb, _ = slide.thumbnail(512)
    mask = tissue_mask(thumb)
    assert abs(mask.mean() - hand.mean()) < 0.04  # within a few percent (and the count's own error)
    h, w = mask.shape
    points = mask[np.ix_(((np.arange(14) + 0.5) / 14 * h).astype(int), ((np.arange(10) + 0.5) / 10 * w).astype(int))]
    assert (points == hand).mean() >= 0.9  # and point by point: 133 of 140 agree


def test_a_plain_image_is_a_one_level_slide_that_needs_mpp(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    with open_slide(tmp_path / "a.png") as s:
        assert (s.vendor, s.dimensions, s.mpp) == ("image", (70, 50), None)
        np.testing.assert_array_equal(s.read_level(10, 5, 20, 20), pixels[5:25, 10:30])
        with pytest.raises(DataError, match="--mpp"):
            s.read(0, 0, 16, 0.5)
    with open_slide(tmp_path / "a.png", mpp=0.5) as s:
        np.testing.assert_array_equal(s.read(10, 5, 20, 0.5), pixels[5:25, 10:30])


def test_bad_slides_are_one_line_errors(tmp_path, cli):
    (tmp_path / "empty.svs").write_bytes(b"")
    Image.new("RGB", (8, 8)).save(tmp_path / "png.png")
    (tmp_path / "renamed.svs").write_bytes((tmp_path / "png.png").read_bytes())
    (tmp_path / "truncated.svs").write_bytes(SLIDE.read_bytes()[:100_000])
    assert_one_line_error(cli("wsi", "info", tmp_path / "empty.svs"), "empty.svs", "is empty")
    assert_one_line_error(cli("wsi", "info", tmp_path / "renamed.svs"), "renamed.svs", "not a slide")
    assert_one_line_error(cli("wsi", "info", tmp_path / "truncated.svs"), "truncated.svs")
    assert_one_line_error(cli("wsi", "info", tmp_path / "missing.svs"), "missing.svs", "no such file or folder")
    r = cli("wsi", "info", SLIDE)
    assert r.code == 0 and json.loads(r.out)["vendor"] == "aperio"
    # a generic tiled TIFF, whole and cut short: the whole one tiles, the short one is refused
    import tifffile

    pixels = np.full((1024, 1024, 3), (200, 100, 170), np.uint8)
    pixels[::7] = 40
    tifffile.imwrite(tmp_path / "whole.tif", pixels, tile=(256, 256), compression="zlib", photometric="rgb")
    data = (tmp_path / "whole.tif").read_bytes()
    (tmp_path / "short.tif").write_bytes(data[: len(data) // 2])
    tile = ("--mpp", "0.5", "--tile-mpp", "0.5", "--size", "128", "--min-tissue", "0")
    r = cli("wsi", "tile", tmp_path / "whole.tif", "--out", tmp_path / "out", *tile)
    assert r.code == 0 and "64 tiles" in r.out
    assert_one_line_error(cli("wsi", "tile", tmp_path / "short.tif", "--out", tmp_path / "out", *tile), "short.tif")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["whole"]  # nothing of the short one


def test_grid_tiles_cover_the_slide_and_keep_tissue(slide):
    from biodl.data.tiles import grid_tiles

    every, _ = grid_tiles(slide, 0.5, 224, min_tissue=0)
    assert len(every) == 9 * 13  # 224 px at 0.5 um/px = 224.4 level-0 px: 9 across 2220, 13 down 2967
    assert sorted(set(every["x"]))[:3] == [0, 224, 449] and every["x"].max() + 224 <= 2220
    tiles, tissue = grid_tiles(slide, 0.5, 224, min_tissue=0.5)
    mask, down = tissue.mask, tissue.down
    assert 0 < len(tiles) < len(every) and (tiles["tissue"] >= 0.5).all()
    assert tiles["x_um"].tolist() == pytest.approx((tiles["x"] * 0.499).tolist(), abs=0.01)
    # the tissue share of a kept tile is the mask's mean over the tile's box
    row = tiles.iloc[0]
    r0, c0 = int(row["y"] // down), int(row["x"] // down)
    r1, c1 = int(np.ceil((row["y"] + 224 * 0.5 / 0.499) / down)), int(np.ceil((row["x"] + 224 * 0.5 / 0.499) / down))
    assert row["tissue"] == pytest.approx(mask[r0:r1, c0:c1].mean(), abs=1e-4)
    overlapping, _ = grid_tiles(slide, 0.5, 224, overlap=112, min_tissue=0)
    assert len(overlapping) == 18 * 25  # steps of 112 output px
    with pytest.raises(DataError, match="more than the slide"):
        grid_tiles(slide, 2.0, 2048)


def test_tile_command_writes_tiles_that_match_their_coordinates(tmp_path, cli, slide, monkeypatch):
    import pandas as pd

    r = cli("wsi", "tile", SLIDE, "--out", tmp_path / "out", "--tile-mpp", "1.0", "--size", "128")
    assert r.code == 0, r.err
    folder = tmp_path / "out" / SLIDE.stem
    tiles = pd.read_csv(folder / "tiles.csv")
    assert len(tiles) == len(list((folder / "tiles").iterdir())) > 0
    row = tiles.iloc[len(tiles) // 2]
    with Image.open(folder / row["file"]) as im:
        np.testing.assert_array_equal(np.asarray(im), slide.read(int(row["x"]), int(row["y"]), 128, 1.0))
        from biodl.data.tissue import hematoxylin_score

        assert row["score"] == pytest.approx(hematoxylin_score(np.asarray(im)[None])[0], abs=1e-5)
    with Image.open(folder / "mask.png") as im:
        assert im.size == (383, 512)  # the thumbnail the mask was found on
    before = (folder / "tiles.csv").stat().st_mtime_ns
    r = cli("wsi", "tile", SLIDE, "--out", tmp_path / "out", "--tile-mpp", "1.0", "--size", "128")
    assert "skipped" in r.out and (folder / "tiles.csv").stat().st_mtime_ns == before
    # a slide that fails half-way leaves no folder behind
    from biodl.data import wsi

    calls = {"n": 0}
    real = wsi.Slide.read

    def failing(self, *args):
        calls["n"] += 1
        if calls["n"] > 3:
            raise DataError(self.path, "cannot read the region (simulated)")
        return real(self, *args)

    monkeypatch.setattr(wsi.Slide, "read", failing)
    r = cli("wsi", "tile", SLIDE, "--out", tmp_path / "again")
    assert_one_line_error(r, "simulated")
    assert list((tmp_path / "again").iterdir()) == []
    r = cli("wsi", "tile", SLIDE, "--out", tmp_path / "big", "--size", "4096")
    assert_one_line_error(r, "more than the slide")
    assert not (tmp_path / "big").exists() or list((tmp_path / "big").iterdir()) == []


def test_shards_partition_the_slides_exactly(cli, tmp_path):
    from pathlib import Path

    from biodl.data.tiles import shard

    slides = [Path(f"/cohort/s{k:03d}.svs") for k in range(23)][::-1]
    for n in (1, 2, 4, 7, 30):
        parts = [shard(slides, f"{i}/{n}") for i in range(n)]
        flat = [p for part in parts for p in part]
        assert sorted(flat) == sorted(slides) and len(flat) == len(set(flat)) == 23  # disjoint, complete
        assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
    assert shard(slides, None) == sorted(slides)
    for bad in ("4/4", "1", "a/b", "-1/3", "0/0"):
        with pytest.raises(DataError, match="--shard"):
            shard(slides, bad)
    r = cli("wsi", "tile", SLIDE, SLIDE, "--out", tmp_path / "o", "--shard", "1/2", "--size", "512")
    assert r.code == 0 and r.out.count("tiles ->") == 1  # the second of the two (same) slides
    assert_one_line_error(cli("wsi", "tile", SLIDE, "--out", tmp_path / "o", "--shard", "2/2"), "--shard")


def test_iter_tiles_streams_the_same_tiles_in_blocks(slide):
    from biodl.data.tiles import grid_tiles, iter_tiles, read_tiles

    tiles, _ = grid_tiles(slide, 1.0, 64, min_tissue=0.3)
    seen = []
    blocks = list(iter_tiles(slide, tiles, 64, 1.0, chunk=7, workers=3, progress=lambda d, n: seen.append((d, n))))
    assert [len(b) for b in blocks[:-1]] == [7] * (len(blocks) - 1) and 0 < len(blocks[-1]) <= 7
    whole = np.concatenate(blocks)
    assert whole.shape == (len(tiles), 64, 64, 3)
    np.testing.assert_array_equal(whole, read_tiles(slide, tiles, 64, 1.0, workers=1))
    k = len(tiles) // 2
    np.testing.assert_array_equal(whole[k], slide.read(int(tiles["x"].iat[k]), int(tiles["y"].iat[k]), 64, 1.0))
    assert seen[-1] == (len(tiles), len(tiles)) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_random_tiles_lie_on_tissue_and_follow_the_seed(slide):
    from biodl.data.tiles import grid_tiles, random_tiles

    a, tissue = random_tiles(slide, 0.5, 224, n=25, min_tissue=0.6, seed=3)
    b, _ = random_tiles(slide, 0.5, 224, n=25, min_tissue=0.6, seed=3, tissue=tissue)
    c, _ = random_tiles(slide, 0.5, 224, n=25, min_tissue=0.6, seed=4, tissue=tissue)
    assert len(a) == 25 and (a["tissue"] >= 0.6).all()
    assert a.equals(b) and not a[["x", "y"]].equals(c[["x", "y"]])
    side = 224 * 0.5 / 0.499
    assert (a["x"] >= 0).all() and (a["x"] + side <= 2220 + 1).all() and (a["y"] + side <= 2967 + 1).all()
    # not on the grid: positions are not multiples of the tile side
    assert (np.round(a["x"] / side, 3) % 1 != 0).any()
    # the stored share is the mask's share under the tile, as for grid tiles
    assert a["tissue"].tolist() == pytest.approx(tissue.share(a["x"].to_numpy(), a["y"].to_numpy(), side).tolist(),
                                                 abs=2e-3)
    grid, _ = grid_tiles(slide, 0.5, 224, min_tissue=0.6, tissue=tissue)
    assert a["row"].max() < grid.attrs["grid"][0] + 1 and a["col"].max() < grid.attrs["grid"][1] + 1


def test_hematoxylin_score_ranks_nuclei_over_eosin_and_glass(slide):
    from biodl.data.tiles import grid_tiles, top_tiles
    from biodl.data.tissue import hematoxylin_score

    purple = np.full((1, 32, 32, 3), (90, 60, 150), np.uint8)  # haematoxylin-stained nuclei
    pink = np.full((1, 32, 32, 3), (200, 100, 170), np.uint8)  # eosin-stained stroma
    glass = np.full((1, 32, 32, 3), 255, np.uint8)
    h = hematoxylin_score(np.concatenate([purple, pink, glass]))
    assert h[0] > 5 * h[1] > 0 and h[2] == pytest.approx(0, abs=1e-6)
    from skimage.color import rgb2hed

    noise = np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    np.testing.assert_allclose(hematoxylin_score(noise), np.clip(rgb2hed(noise), 0, None)[..., 0].mean(axis=(1, 2)),
                               rtol=1e-5)  # the lookup table is skimage's deconvolution
    tiles, _ = grid_tiles(slide, 1.0, 128, min_tissue=0.3)
    best = top_tiles(slide, tiles, 128, 1.0, k=5)
    assert len(best) == 5 and best["score"].is_monotonic_decreasing
    every = top_tiles(slide, tiles, 128, 1.0, k=len(tiles))
    assert best["score"].min() >= every["score"].iloc[5:].max()  # the top five are the five best
    assert best.attrs["grid"] == tiles.attrs["grid"]


def test_pen_marks_are_not_tissue(slide):
    from biodl.data.tissue import pen_mask

    thumb, _ = slide.thumbnail(512)
    inked = thumb.copy()
    inked[20:60, 10:200] = (40, 80, 200)  # a blue marker line across the glass at the top
    assert tissue_mask(inked)[25:55, 15:195].mean() > 0.9  # saturated ink passes Otsu as "tissue"
    clean = tissue_mask(inked, pen=True)
    assert not clean[20:60, 10:200].any() and pen_mask(inked)[20:60, 10:200].all()
    plain = tissue_mask(thumb)
    assert abs(clean.mean() - plain.mean()) < 0.01  # the real tissue is kept


def test_tiling_settings_and_magnification(slide):
    from biodl.data.tiles import Tiling

    tiles, _, mpp = Tiling(None, 64, magnification=10).cut(slide)  # a 20x scan at 0.499 um/px, read at 10x
    assert mpp == pytest.approx(0.998) and len(tiles) > 0
    top, _, _ = Tiling(1.0, 64, n=4, min_tissue=0.2).cut(slide)  # grid: the four with most tissue
    assert len(top) == 4 and top["tissue"].min() >= Tiling(1.0, 64, min_tissue=0.2).cut(slide)[0]["tissue"].nlargest(
        4).min()
    for bad, match in (({"select": "spiral"}, "unknown tile selection"), ({"select": "random"}, "number of tiles"),
                       ({"n": 0}, "at least 1"), ({"magnification": 20}, "one of the two"),
                       ({"min_tissue": 1.5}, r"\[0, 1\]")):
        with pytest.raises(DataError, match=match):
            Tiling(**{"mpp": 0.5, **bad})


def test_a_single_huge_level_is_thumbnailed_in_bands(slide, level0, monkeypatch):
    """A slide without a coarse level: the thumbnail is shrunk band by band, with the same result."""
    from biodl.data import wsi

    whole, _ = slide.thumbnail(256)
    monkeypatch.setattr(wsi, "STRIP_PIXELS", 2220 * 100)  # bands of ~100 level-0 rows
    monkeypatch.setattr(wsi.Slide, "_stored_thumbnail", lambda self, size: None)
    banded, _ = slide.thumbnail(256)
    assert banded.shape == whole.shape
    # the same box average up to the rounding of the band edges
    assert np.abs(banded.astype(int) - whole.astype(int)).mean() < 3


# ----------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize("flag, value", [("--tile-mpp", "0"), ("--tile-mpp", "nan"), ("--tile-mpp", "1e-300"),
                                         ("--tile-mpp", "-0.5"), ("--tile-mpp", "inf"), ("--magnification", "0"),
                                         ("--magnification", "inf"), ("--magnification", "nan"),
                                         ("--magnification", "-20"), ("--mpp", "inf"), ("--mpp", "1e300"),
                                         ("--mpp", "-1"), ("--mpp", "0")])
def test_resolutions_outside_their_range_are_refused_before_any_tile(tmp_path, cli, flag, value):
    """Negative values used to exit 0 with "0 tiles"; 0, NaN and tiny ones were tracebacks."""
    args = [flag, value] if flag != "--magnification" else [flag, value]
    r = cli("wsi", "tile", SLIDE, "--out", tmp_path / "out", *args)
    assert_one_line_error(r, flag)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_grid_that_would_not_fit_in_memory_is_refused_before_it_is_built(slide):
    from biodl.data.tiles import MAX_GRID, Tiling

    with pytest.raises(DataError, match=f"over {MAX_GRID:,}"):
        Tiling(0.01, 8).cut(slide)  # 0.01 um/px on a 0.5 um/px scan: ~1.3 billion 8 px tiles


@pytest.mark.parametrize("value, note", [("0", "metadata 0, not a resolution"), ("nan", "metadata nan"),
                                         ("1e300", r"metadata 1e\+300"), ("abc", "'abc', not a number")])
def test_a_slide_whose_header_has_an_absurd_resolution_says_so(slide, monkeypatch, value, note):
    """Read as "no resolution metadata" before: the header has one, and it is wrong."""
    import openslide

    props = {**slide._handle.properties, openslide.PROPERTY_NAME_MPP_X: value}
    monkeypatch.setattr(openslide.OpenSlide, "properties", property(lambda self: props))
    with open_slide(SLIDE) as s:
        assert s.mpp is None
        with pytest.raises(DataError, match=note):
            s.need_mpp()
    with open_slide(SLIDE, mpp=0.5) as s:  # the fallback applies: the file's value is not usable
        assert s.mpp == 0.5


def test_mpp_is_a_fallback_unless_overridden(tmp_path, cli):
    """--mpp is for the slides without metadata: the embedded Aperio slide keeps its 0.499."""
    with open_slide(SLIDE, mpp=0.25) as s:
        assert s.mpp == pytest.approx(0.499)
    with open_slide(SLIDE, mpp=0.25, override=True) as s:
        assert s.mpp == 0.25
    Image.fromarray(np.full((600, 600, 3), 150, np.uint8)).save(tmp_path / "plain.png")
    with open_slide(tmp_path / "plain.png", mpp=0.25) as s:
        assert s.mpp == 0.25
    tile = ("--tile-mpp", "2", "--size", "64", "--min-tissue", "0")
    r = cli("wsi", "tile", SLIDE, "--out", tmp_path / "a", "--mpp", "0.25", *tile)
    assert r.code == 0, r.err
    assert json.loads((tmp_path / "a" / SLIDE.stem / "tiling.json").read_text())["slide_mpp"] == pytest.approx(0.499)
    r = cli("wsi", "tile", SLIDE, "--out", tmp_path / "b", "--mpp", "0.25", "--override-mpp", *tile)
    assert r.code == 0, r.err
    assert json.loads((tmp_path / "b" / SLIDE.stem / "tiling.json").read_text())["slide_mpp"] == 0.25
    assert_one_line_error(cli("wsi", "tile", SLIDE, "--out", tmp_path / "c", "--override-mpp"), "--override-mpp")


def test_two_slides_of_one_name_and_a_folder_from_other_settings_are_refused(tmp_path, cli):
    for folder, colour in (("a", 150), ("b", 90)):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.full((300, 300, 3), colour, np.uint8)).save(tmp_path / folder / "case.png")
    tile = ("--mpp", "0.5", "--tile-mpp", "0.5", "--size", "64", "--min-tissue", "0")
    r = cli("wsi", "tile", tmp_path / "a/case.png", tmp_path / "b/case.png", "--out", tmp_path / "out", *tile)
    assert_one_line_error(r, "case.png", "same name as")
    assert not (tmp_path / "out").exists()
    assert cli("wsi", "tile", tmp_path / "a/case.png", "--out", tmp_path / "out", *tile).code == 0
    r = cli("wsi", "tile", tmp_path / "b/case.png", "--out", tmp_path / "out", *tile)  # a later command, same stem
    assert_one_line_error(r, "another slide of the same file name")
    r = cli("wsi", "tile", tmp_path / "a/case.png", "--out", tmp_path / "out", *tile[:-2], "--min-tissue", "0.1")
    assert_one_line_error(r, "was made with other settings")
    r = cli("wsi", "tile", tmp_path / "a/case.png", "--out", tmp_path / "out", *tile)
    assert r.code == 0 and "done before, skipped" in r.out
    r = cli("wsi", "tile", tmp_path / "a/case.png", "--out", tmp_path / "out", *tile[2:], "--mpp", "0.25")
    assert_one_line_error(r, "was made with other settings")  # the resolution given for the slide differs


def test_slide_files_that_are_not_files_are_named_for_what_they_are(tmp_path, cli):
    import os

    (tmp_path / "loop.svs").symlink_to(tmp_path / "loop.svs")
    (tmp_path / "dir.svs").mkdir()
    os.mkfifo(tmp_path / "fifo.svs")
    for name, what in (("loop.svs", "symbolic-link loop"), ("dir.svs", "is a folder"),
                       ("fifo.svs", "not a regular file")):
        assert_one_line_error(cli("wsi", "info", tmp_path / name), name, what)
    Image.new("RGB", (8, 8)).save(tmp_path / "p.png")
    (tmp_path / "renamed.svs").write_bytes((tmp_path / "p.png").read_bytes())
    assert_one_line_error(cli("wsi", "info", tmp_path / "renamed.svs"), "its content is a PNG image")


def test_a_slide_without_a_coarse_level_is_refused_before_a_huge_thumbnail(slide, monkeypatch):
    from biodl.data import wsi

    monkeypatch.setattr(wsi, "THUMBNAIL_READ_PIXELS", 1_000_000)  # the slide's one level has 6.6 million
    monkeypatch.setattr(wsi.Slide, "_stored_thumbnail", lambda self, size: None)
    with pytest.raises(DataError, match="no pyramid level small enough for a thumbnail"):
        slide.thumbnail(256)


def test_plain_images_over_the_pixel_limit_and_16_bit_tiffs(tmp_path, monkeypatch):
    import tifffile

    grey = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    tifffile.imwrite(tmp_path / "g16.tif", grey)
    with open_slide(tmp_path / "g16.tif", mpp=0.5) as s:
        got = s.read_level(0, 0, 64, 64)
    np.testing.assert_array_equal(got[..., 0], (grey >> 8).astype(np.uint8))  # scaled, not clipped at 255
    assert got.max() > 200
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)  # 10,000 pixels: over, but under twice (a warning)
    with pytest.raises(DataError, match="big.png.*over the limit of 6,000"), \
            pytest.warns(Image.DecompressionBombWarning):
        open_slide(tmp_path / "big.png", mpp=0.5)


def test_a_damaged_stored_thumbnail_is_one_line(slide, monkeypatch):
    class Broken(dict):
        def get(self, key, default=None):
            raise RuntimeError("Corrupt JPEG data")

    monkeypatch.setattr(type(slide._handle), "associated_images", property(lambda self: Broken()))
    with pytest.raises(DataError, match="stored thumbnail cannot be read"):
        slide.thumbnail(256)


def test_an_out_or_cache_dir_that_is_a_file_is_refused_before_any_slide_is_read(tmp_path, cli):
    (tmp_path / "file").write_text("x")
    assert_one_line_error(cli("wsi", "tile", SLIDE, "--out", tmp_path / "file"), "--out", "not a folder")
    assert_one_line_error(cli("wsi", "tile", SLIDE, "--out", tmp_path / "file" / "sub"), "--out",
                          "is a file, not a folder")
    assert_one_line_error(cli("wsi", "tile", SLIDE, "--to-cache", "--cache-dir", tmp_path / "file"), "--cache-dir",
                          "not a folder")
    assert (tmp_path / "file").read_text() == "x"
