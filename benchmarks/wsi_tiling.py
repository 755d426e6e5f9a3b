"""Whole-slide tiling, side by side with its baselines, in one script.

1. **The embedded slide** (CMU-1-Small-Region, Aperio SVS, 2220 x 2967 at 0.499 um/px) into
   224 px tissue tiles at 0.5 um/px (tissue >= 50%), three ways, each writing PNG tiles:
   - biodl (``tile_slide``: one thumbnail mask decides which tiles hold tissue; only those are
     read, by threads);
   - a plain OpenSlide loop (read every grid tile, judge its tissue on the tile itself, keep it);
   - histolab's ``GridTiler`` (level 0, 224 px, tissue_percent 50), run in its own environment
     because histolab pins scikit-image < 0.19.4 and numpy < 2 (``make bench-histolab`` builds
     ``.venv-histolab``; ``--histolab-python`` points elsewhere). Without one it is left out and
     said so.
2. **A generated 40,000 x 40,000 pyramidal TIFF** (0.25 um/px, JPEG tiles of 256 px, levels down
   to 625 px; the embedded slide's texture inside an ellipse of tissue on white glass; written
   once into ``--work``, needs ``imagecodecs``: ``pip install -e '.[bench]'``): every tissue tile
   at 0.5 um/px, 224 px, streamed into the biodl cache in a fresh process whose peak resident
   memory is reported (target < 500 MB) with the tiles per second.

    python benchmarks/wsi_tiling.py [--repeats 3] [--work /tmp/biodl-wsi-bench] [--no-big]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from biodl.data.tiles import Tiling, tile_slide
from biodl.data.wsi import open_slide
from biodl.datasets import embedded_path

MPP, SIZE, MIN_TISSUE = 0.5, 224, 0.5
PERIOD = 1024  # the generated slide repeats a square of the embedded one; it halves evenly down to 16 px
ROOT = Path(__file__).resolve().parent.parent


def biodl_png(path: Path, out: Path) -> int:
    _, n = tile_slide(path, out, Tiling(MPP, SIZE, min_tissue=MIN_TISSUE))
    return n


def openslide_png(path: Path, out: Path) -> int:
    import openslide

    slide = openslide.OpenSlide(str(path))
    side = int(round(SIZE * MPP / float(slide.properties[openslide.PROPERTY_NAME_MPP_X])))
    w, h = slide.dimensions
    out.mkdir(parents=True)
    kept = 0
    for y in range(0, h - side + 1, side):
        for x in range(0, w - side + 1, side):
            tile = slide.read_region((x, y), 0, (side, side)).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
            if (np.asarray(tile.convert("L")) < 220).mean() >= MIN_TISSUE:
                tile.save(out / f"{x}_{y}.png")
                kept += 1
    slide.close()
    return kept


HISTOLAB = """
import sys, time
from pathlib import Path
from histolab.slide import Slide
from histolab.tiler import GridTiler
src, out = sys.argv[1], sys.argv[2]
t = time.perf_counter()
slide = Slide(src, processed_path=out)
GridTiler(tile_size=({size}, {size}), level=0, check_tissue=True, tissue_percent={pct}, pixel_overlap=0,
          prefix="", suffix=".png").extract(slide)
print(time.perf_counter() - t, len(list(Path(out).glob("*.png"))))
"""


def histolab_python(given: str | None) -> str | None:
    for candidate in (given, os.environ.get("HISTOLAB_PYTHON"), str(ROOT / ".venv-histolab" / "bin" / "python")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def embedded(repeats: int, hl_python: str | None) -> None:
    path = embedded_path("cmu1-small-region")
    print(f"1. {path.name} -> {SIZE} px PNG tiles at {MPP} um/px, tissue >= {MIN_TISSUE:.0%} (best of {repeats})")
    results: dict[str, float] = {}
    ways = [("biodl tile_slide", biodl_png), ("plain OpenSlide loop", openslide_png)]
    for name, fn in ways:
        times, n = [], 0
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                n = fn(path, Path(tmp) / "out")
                times.append(time.perf_counter() - started)
        results[name] = min(times)
        print(f"   {name:24s} {min(times):6.2f} s  {n} tiles")
    if hl_python is None:
        print("   histolab GridTiler      not run: no histolab environment (make bench-histolab builds one)")
    else:
        times, n = [], 0
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                code = HISTOLAB.format(size=SIZE, pct=int(MIN_TISSUE * 100))
                out = subprocess.run([hl_python, "-c", code, str(path), tmp], capture_output=True, text=True,
                                     check=True).stdout.split()
                times.append(float(out[0]))
                n = int(out[1])
        results["histolab GridTiler"] = min(times)
        print(f"   {'histolab GridTiler':24s} {min(times):6.2f} s  {n} tiles (level 0: 0.499 um/px; its own process)")
    ours = results["biodl tile_slide"]
    for name, t in results.items():
        if name != "biodl tile_slide":
            print(f"   biodl vs {name}: {t / ours:.2f}x faster")
    print(f"   target <= 3 s: {'met' if ours <= 3 else 'missed'} ({ours:.2f} s)")


def make_pyramid(path: Path, side: int = 40_000, mpp: float = 0.25, tile: int = 256) -> None:
    """A pyramidal, JPEG-tiled TIFF of ``side`` px square (see the module's docstring), written tile
    by tile (never whole in memory). Levels: each half the one above, a box average of it."""
    import tifffile

    with open_slide(embedded_path("cmu1-small-region")) as s:
        texture = s.read_level(736, 1920, PERIOD, PERIOD)  # its densest 1024 px square (85% darker than grey 220)

    def tiles(level: int):
        scale = 2 ** level
        tex = texture if level == 0 else np.asarray(Image.fromarray(texture).resize(
            (PERIOD // scale, PERIOD // scale), Image.Resampling.BOX))
        period = tex.shape[0]
        n = -(-side // scale // tile)
        for j in range(n):
            ys = j * tile + np.arange(tile)
            for i in range(n):
                xs = i * tile + np.arange(tile)
                block = tex[np.ix_(ys % period, xs % period)]
                # tissue: an ellipse filling most of the slide; glass (white) around it
                cy, cx = (ys[:, None] + 0.5) * scale / side - 0.5, (xs[None, :] + 0.5) * scale / side - 0.5
                inside = (cx / 0.45) ** 2 + (cy / 0.38) ** 2 <= 1
                yield np.where(inside[..., None], block, 255).astype(np.uint8)

    tmp = path.with_suffix(".partial")
    with tifffile.TiffWriter(tmp, bigtiff=True) as w:
        level = 0
        while side // 2 ** level >= 512:
            size = side // 2 ** level
            extra = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"} if level == 0 else {}
            w.write(tiles(level), shape=(size, size, 3), dtype=np.uint8, tile=(tile, tile), compression="jpeg",
                    photometric="rgb", subfiletype=0 if level == 0 else 1, **extra)
            level += 1
    tmp.rename(path)


CACHE_RUN = """
import json, resource, sys, time
from biodl.data.slides import cache_slide
from biodl.data.tiles import Tiling
t = time.perf_counter()
entry, n, hit = cache_slide(sys.argv[1], Tiling({mpp}, {size}, min_tissue={pct}), sys.argv[2])
s = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
print(json.dumps({{"seconds": s, "tiles": n, "peak_rss_mb": rss}}))
"""


def big(work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    path = work / "generated-40k.tif"
    if not path.is_file():
        started = time.perf_counter()
        make_pyramid(path)
        print(f"   (generated {path} in {time.perf_counter() - started:.0f} s, {path.stat().st_size / 1e9:.2f} GB)")
    with open_slide(path) as s:
        levels = s.levels
    print(f"2. a generated {levels[0][0]} x {levels[0][1]} pyramidal TIFF ({len(levels)} levels, 0.25 um/px, JPEG) "
          f"-> {SIZE} px tiles at {MPP} um/px streamed into the cache, in a fresh process")
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    code = CACHE_RUN.format(mpp=MPP, size=SIZE, pct=MIN_TISSUE)
    out = subprocess.run([sys.executable, "-c", code, str(path), str(cache)], capture_output=True, text=True,
                         check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    gb = r["tiles"] * SIZE * SIZE * 3 / 1e9
    print(f"   {r['tiles']} tiles ({gb:.2f} GB of pixels) in {r['seconds']:.1f} s: "
          f"{r['tiles'] / r['seconds']:.0f} tiles/s; peak RSS {r['peak_rss_mb']:.0f} MB "
          f"(target < 500 MB: {'met' if r['peak_rss_mb'] < 500 else 'missed'})")
    shutil.rmtree(cache, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--histolab-python", default=None, help="a Python with histolab (default: .venv-histolab)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "biodl-wsi-bench")
    ap.add_argument("--no-big", action="store_true", help="skip the generated 40,000 px slide")
    args = ap.parse_args()
    print(f"{os.cpu_count()} CPUs")
    embedded(args.repeats, histolab_python(args.histolab_python))
    if not args.no_big:
        big(args.work)


if __name__ == "__main__":
    main()
