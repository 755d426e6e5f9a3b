"""Tiling the embedded slide (CMU-1-Small-Region, Aperio SVS) into 224 px tissue tiles at
0.5 um/px: biodl's ``grid_tiles`` + ``read_tiles`` (threads) against a plain OpenSlide loop, in one
process.

The baseline does what a hand-written script (and histolab's GridTiler, which scores each tile
after reading it) does: read every grid tile at level 0, resize it to 224 px, and keep it when
enough of it is tissue, judged on the tile itself (grey < 220). biodl decides which tiles hold
tissue from one thumbnail mask first and reads only those. histolab is not installed in this
environment, so the baseline is the loop.

    python benchmarks/wsi_tiling.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from PIL import Image

from biodl.data.wsi import grid_tiles, open_slide, read_tiles
from biodl.datasets import embedded_path

MPP, SIZE, MIN_TISSUE = 0.5, 224, 0.5


def biodl_tiles(path) -> int:
    with open_slide(path) as slide:
        tiles, _ = grid_tiles(slide, MPP, SIZE, min_tissue=MIN_TISSUE)
        read_tiles(slide, tiles, SIZE, MPP)
    return len(tiles)


def openslide_loop(path) -> int:
    import openslide

    slide = openslide.OpenSlide(str(path))
    side = int(round(SIZE * MPP / float(slide.properties[openslide.PROPERTY_NAME_MPP_X])))
    w, h = slide.dimensions
    kept = 0
    for y in range(0, h - side + 1, side):
        for x in range(0, w - side + 1, side):
            tile = slide.read_region((x, y), 0, (side, side)).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
            grey = np.asarray(tile.convert("L"))
            kept += (grey < 220).mean() >= MIN_TISSUE
    slide.close()
    return kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    path = embedded_path("cmu1-small-region")
    results = {}
    for name, fn in (("biodl grid_tiles + read", biodl_tiles), ("plain OpenSlide loop", openslide_loop)):
        times, n = [], 0
        for _ in range(args.repeats):
            started = time.perf_counter()
            n = fn(path)
            times.append(time.perf_counter() - started)
        results[name] = min(times)
        print(f"{name:26s} {min(times):6.2f} s (best of {args.repeats})  {n} tissue tiles")
    base, ours = results["plain OpenSlide loop"], results["biodl grid_tiles + read"]
    print(f"speed-up over the plain loop: {base / ours:.2f}x   target: <= 3 s ({'met' if ours <= 3 else 'missed'})")


if __name__ == "__main__":
    main()
