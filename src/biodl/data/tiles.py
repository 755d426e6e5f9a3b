"""Tiles of a whole slide at a physical resolution: where they are (a grid over the tissue, random
places on it, or the grid's top tiles by nuclei density), their pixels read block by block
(memory does not grow with the slide), and a slide's tiles written as PNGs (``biodl wsi tile``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from ..errors import DataError
from ..io import atomic_folder, atomic_write_json, json_text, read_json
from .tissue import TissueMap, hematoxylin_score, mask_overlay
from .wsi import Slide, check_mpp, open_slide

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "grid_tiles", "random_tiles", "scored", "iter_tiles", "read_tiles", "with_score", "top_tiles", "SELECT",
    "Tiling", "tile_slide", "shard", "unique_stems", "MAX_GRID",
]


#: the most cells a slide's tile grid may have (a 100k x 100k px slide cut in 32 px tiles has
#: 10 million): more means a resolution far finer than the scan's
MAX_GRID = 20_000_000


def _tile_side(slide: Slide, mpp: float, size: int) -> float:
    """A ``size``-pixel tile's side at ``mpp`` um/px in level-0 pixels; refused when larger than
    the slide, or when the slide's grid of such tiles would exceed :data:`MAX_GRID` cells."""
    side0 = size * mpp / slide.need_mpp()
    w0, h0 = slide.dimensions
    if side0 > w0 or side0 > h0:
        raise DataError(slide.path, f"a {size} px tile at {mpp:g} um/px covers {side0:.0f} level-0 pixels, more "
                                    f"than the slide ({w0} x {h0})")
    if (cells := (w0 / side0) * (h0 / side0)) > MAX_GRID:
        raise DataError(slide.path, f"{size} px tiles at {mpp:g} um/px (the slide has {slide.mpp:g}) would make a "
                                    f"grid of {cells:.3g} tiles, over {MAX_GRID:,}; choose a coarser resolution")
    return side0


def _table(slide: Slide, x: np.ndarray, y: np.ndarray, row: np.ndarray, col: np.ndarray,
           tissue: np.ndarray, grid: tuple[int, int], step0: float) -> "pd.DataFrame":
    import pandas as pd

    xi, yi, m = np.round(x).astype(int), np.round(y).astype(int), slide.need_mpp()
    tiles = pd.DataFrame({"x": xi, "y": yi, "row": row, "col": col, "x_um": np.round(xi * m, 2),
                          "y_um": np.round(yi * m, 2), "tissue": np.round(tissue, 4)})
    tiles.attrs.update(grid=grid, step=step0)  # the whole grid: rows x cols, level-0 step
    return tiles


def grid_tiles(slide: Slide, mpp: float, size: int, overlap: int = 0, min_tissue: float = 0.5,
               thumb_side: int = 512, tissue: TissueMap | None = None) -> tuple["pd.DataFrame", TissueMap]:
    """The grid of ``size``-pixel tiles at ``mpp`` um/px (neighbours overlapping by ``overlap``
    output pixels) that lie inside the slide and whose tissue fraction (the share of the tile
    under the thumbnail's tissue mask) is at least ``min_tissue``. Returns (one row per kept
    tile: ``x``, ``y`` (level-0 pixels, top-left), ``row``, ``col`` (its cell in the grid, whose
    shape and level-0 step are in ``attrs``), ``x_um``, ``y_um``, ``tissue``) and the slide's
    :class:`TissueMap`."""
    if not 0 <= overlap < size:
        raise DataError(slide.path, f"tile overlap must be at least 0 and less than the tile size {size} "
                                    f"(got {overlap})")
    side0 = _tile_side(slide, mpp, size)
    step0 = side0 * (size - overlap) / size
    tissue = tissue or TissueMap.of(slide, thumb_side)
    w0, h0 = slide.dimensions
    xs, ys = np.arange(0, w0 - side0 + 1e-6, step0), np.arange(0, h0 - side0 + 1e-6, step0)
    gx, gy = np.meshgrid(xs, ys)
    x, y = np.round(gx.ravel()), np.round(gy.ravel())  # whole level-0 pixels: where the tiles are read
    share = tissue.share(x, y, side0)
    keep = share >= min_tissue
    row, col = np.divmod(np.flatnonzero(keep), len(xs))  # the tile's cell in the slide's grid
    return _table(slide, x[keep], y[keep], row, col, share[keep], (len(ys), len(xs)), step0), tissue


def random_tiles(slide: Slide, mpp: float, size: int, n: int, min_tissue: float = 0.5, seed: int = 0,
                 thumb_side: int = 512, tissue: TissueMap | None = None) -> tuple["pd.DataFrame", TissueMap]:
    """Up to ``n`` tiles at random places (not on a grid; they may overlap) whose tissue fraction
    is at least ``min_tissue``: centres drawn uniformly over the tissue of the mask, the same
    for the same ``seed``. Same columns as :func:`grid_tiles`; ``row``/``col`` are the cell of
    the tile's centre in the non-overlapping grid (for heat maps)."""
    side0 = _tile_side(slide, mpp, size)
    tissue = tissue or TissueMap.of(slide, thumb_side)
    w0, h0 = slide.dimensions
    cells = np.flatnonzero(tissue.mask.ravel())
    rng = np.random.default_rng(seed)
    found_x: list[np.ndarray] = []
    found_y: list[np.ndarray] = []
    found_s: list[np.ndarray] = []
    have = 0
    for _ in range(20):  # rounds of candidates: a patchy mask rejects many
        if not len(cells) or have >= n:
            break
        pick = rng.choice(cells, size=4 * (n - have) + 16)
        r, c = np.divmod(pick, tissue.mask.shape[1])
        cx = (c + rng.random(len(pick))) * tissue.down  # a uniform point inside the mask pixel
        cy = (r + rng.random(len(pick))) * tissue.down
        x = np.round(np.clip(cx - side0 / 2, 0, w0 - side0))
        y = np.round(np.clip(cy - side0 / 2, 0, h0 - side0))
        share = tissue.share(x, y, side0)
        ok = np.flatnonzero(share >= min_tissue)[: n - have]
        found_x.append(x[ok])
        found_y.append(y[ok])
        found_s.append(share[ok])
        have += len(ok)
    x, y, share = (np.concatenate(v) if v else np.zeros(0) for v in (found_x, found_y, found_s))
    cols, rows = int(w0 // side0), int(h0 // side0)
    col = np.minimum(((x + side0 / 2) // side0).astype(int), max(cols - 1, 0))
    row = np.minimum(((y + side0 / 2) // side0).astype(int), max(rows - 1, 0))
    return _table(slide, x, y, row, col, share, (rows, cols), side0), tissue


def scored(blocks: Iterator[np.ndarray], scores: list[np.ndarray]) -> Iterator[np.ndarray]:
    """``blocks`` passed through, each block's :func:`hematoxylin_score` appended to ``scores``."""
    for block in blocks:
        scores.append(hematoxylin_score(block))
        yield block


def iter_tiles(slide: Slide, tiles: "pd.DataFrame", size: int, mpp: float, chunk: int = 64,
               workers: int | None = None, progress: Callable[[int, int], None] | None = None
               ) -> Iterator[np.ndarray]:
    """The tiles of ``tiles`` (level-0 ``x``, ``y``) at ``mpp`` in order, as (n <= chunk, size,
    size, 3) uint8 blocks, read by ``workers`` threads (default: the CPU count; OpenSlide is
    thread-safe and releases the GIL), the next block read while the caller uses this one. At
    most two blocks are held, so memory does not grow with the slide. ``progress(done, total)``
    is called after each block."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    xs, ys = tiles["x"].to_numpy(), tiles["y"].to_numpy()

    def block(pool: ThreadPoolExecutor, start: int) -> tuple[np.ndarray, list]:
        out = np.empty((min(chunk, len(xs) - start), size, size, 3), dtype=np.uint8)

        def one(i: int) -> None:
            out[i] = slide.read(int(xs[start + i]), int(ys[start + i]), size, mpp)

        return out, [pool.submit(one, i) for i in range(len(out))]

    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        pending = block(pool, 0) if len(xs) else None
        start = 0
        while pending is not None:
            out, futures = pending
            nxt = start + len(out)
            pending = block(pool, nxt) if nxt < len(xs) else None
            for f in futures:
                f.result()  # a read's error surfaces here
            yield out
            start = nxt
            if progress is not None:
                progress(start, len(xs))


def read_tiles(slide: Slide, tiles: "pd.DataFrame", size: int, mpp: float, workers: int | None = None) -> np.ndarray:
    """(N, size, size, 3) uint8: every tile of ``tiles`` at ``mpp`` in memory (see :func:`iter_tiles`)."""
    blocks = list(iter_tiles(slide, tiles, size, mpp, workers=workers))
    return np.concatenate(blocks) if blocks else np.zeros((0, size, size, 3), dtype=np.uint8)


def with_score(tiles: "pd.DataFrame", scores: list[np.ndarray]) -> "pd.DataFrame":
    """``tiles`` with each tile's haematoxylin score (from the blocks :func:`scored` saw, in
    order) as a ``score`` column, unless it has one."""
    if "score" in tiles.columns:
        return tiles
    out = tiles.assign(score=np.round(np.concatenate(scores), 5) if scores else np.zeros(0))
    out.attrs.update(tiles.attrs)
    return out


def top_tiles(slide: Slide, tiles: "pd.DataFrame", size: int, mpp: float, k: int) -> "pd.DataFrame":
    """The ``k`` tiles of ``tiles`` with the highest :func:`hematoxylin_score` (read block by
    block, in memory one block at a time), with the score as a ``score`` column, best first."""
    scores: list[np.ndarray] = []
    for _ in scored(iter_tiles(slide, tiles, size, mpp), scores):
        pass
    best = with_score(tiles, scores).sort_values(["score", "y", "x"], ascending=[False, True, True],
                                                 kind="stable").head(k)
    best.attrs.update(tiles.attrs)
    return best


SELECT = ("grid", "random", "hematoxylin")
#: the objective magnifications and tile sides (pixels) a tiling may ask for
MAGNIFICATION, SIZE = (0.1, 400.0), (8, 8192)


@dataclass(frozen=True)
class Tiling:
    """How tiles are cut from a slide: ``size`` px at ``mpp`` um/px (or at an objective
    ``magnification``: mpp = slide mpp x objective power / magnification), kept when their tissue
    fraction is at least ``min_tissue``, chosen by ``select``:

    - ``grid``: every tissue tile of the grid (neighbours overlapping by ``overlap`` px), or the
      ``n`` with the most tissue;
    - ``random``: ``n`` tiles at random places on the tissue (``seed``);
    - ``hematoxylin``: the top ``n`` grid tiles by :func:`hematoxylin_score` (nuclei first).

    ``pen``: pen-marked areas are not tissue."""

    mpp: float | None = 0.5
    size: int = 224
    overlap: int = 0
    min_tissue: float = 0.5
    select: str = "grid"
    n: int | None = None
    seed: int = 0
    pen: bool = False
    magnification: float | None = None

    def __post_init__(self) -> None:
        where = "tiling"
        if self.select not in SELECT:
            raise DataError(where, f"unknown tile selection {self.select!r}; known: {', '.join(SELECT)}")
        if self.select != "grid" and self.n is None:
            raise DataError(where, f"{self.select} tiles need a number of tiles per slide (--tiles N)")
        if self.n is not None and self.n < 1:
            raise DataError(where, f"the number of tiles per slide must be at least 1 (got {self.n})")
        if (self.mpp is None) == (self.magnification is None):
            raise DataError(where, "give the tiles' resolution as micrometres per pixel or as a magnification, "
                                   "one of the two")
        if not 0 <= self.min_tissue <= 1:
            raise DataError(where, f"the minimum tissue fraction must be in [0, 1] (got {self.min_tissue})")
        if self.mpp is not None:
            check_mpp(self.mpp, "--tile-mpp")
        if self.magnification is not None and not (isinstance(self.magnification, (int, float))
                                                   and MAGNIFICATION[0] <= self.magnification <= MAGNIFICATION[1]):
            raise DataError("--magnification", f"must be {MAGNIFICATION[0]:g} to {MAGNIFICATION[1]:g} (got "
                                               f"{self.magnification:.4g})")
        if not (isinstance(self.size, int) and SIZE[0] <= self.size <= SIZE[1]):
            raise DataError("--size", f"a tile side must be {SIZE[0]} to {SIZE[1]} pixels (got {self.size})")
        if not 0 <= self.overlap < self.size:
            raise DataError("--overlap", f"must be at least 0 and less than the tile size {self.size} (got "
                                         f"{self.overlap})")

    def tile_mpp(self, slide: Slide) -> float:
        """The tiles' micrometres per pixel on ``slide``."""
        if self.mpp is not None:
            return self.mpp
        if slide.objective_power is None:
            raise DataError(slide.path, f"does not record its objective power, so {self.magnification:g}x cannot "
                                        "be turned into a resolution; give the tiles' micrometres per pixel instead")
        return check_mpp(slide.need_mpp() * slide.objective_power / self.magnification, slide.path)

    def cut(self, slide: Slide) -> tuple["pd.DataFrame", TissueMap, float]:
        """(the chosen tiles, see :func:`grid_tiles`; the slide's tissue map; the tiles' mpp)."""
        mpp = self.tile_mpp(slide)
        tissue = TissueMap.of(slide, pen=self.pen)
        if self.select == "random":
            tiles, _ = random_tiles(slide, mpp, self.size, self.n, self.min_tissue, self.seed, tissue=tissue)
            return tiles, tissue, mpp
        tiles, _ = grid_tiles(slide, mpp, self.size, self.overlap, self.min_tissue, tissue=tissue)
        if self.select == "hematoxylin":
            return top_tiles(slide, tiles, self.size, mpp, self.n), tissue, mpp
        if self.n is not None and len(tiles) > self.n:
            best = tiles.sort_values(["tissue", "y", "x"], ascending=[False, True, True], kind="stable").head(self.n)
            best.attrs.update(tiles.attrs)
            tiles = best
        return tiles, tissue, mpp

    def to_dict(self) -> dict[str, Any]:
        """The settings (what a cache key holds): the seed only where it matters (random tiles),
        so that grid tiles cached by ``biodl wsi tile`` are found by a run of any seed."""
        from dataclasses import asdict

        return {**asdict(self), "seed": self.seed if self.select == "random" else None}


def tile_slide(path: str | Path, out_dir: str | Path, tiling: Tiling, slide_mpp: float | None = None,
               normalizer: Any = None, progress: Callable[[int, int], None] | None = None,
               override_mpp: bool = False) -> tuple[Path, int]:
    """Cut one slide's tiles (see :class:`Tiling`) into ``out_dir/<slide stem>/``:
    ``tiles/<x>_<y>.png`` (level-0 coordinates), ``tiles.csv`` (see :func:`grid_tiles`; with each
    tile's :func:`hematoxylin_score` as ``score``),
    ``mask.png`` (the tissue mask over the thumbnail) and ``tiling.json``; tiles stain-normalised
    by ``normalizer`` (a :class:`~biodl.data.stain.StainNormalizer`) when given. Written into a
    hidden folder and renamed when complete, so a failed slide leaves nothing behind; a slide
    whose folder exists is skipped when that folder's ``tiling.json`` says the same slide and
    settings made it (else a DataError). ``slide_mpp``: the resolution of a slide that records
    none (``override_mpp``: of every slide). Returns (its folder, the number of tiles; -1 when
    skipped)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    path = Path(path)
    final = Path(out_dir) / path.stem
    settings = {**tiling.to_dict(), "stain": normalizer.to_dict() if normalizer is not None else None,
                "slide_mpp": slide_mpp, "override_mpp": override_mpp}
    if final.is_dir():
        done_before(final / "tiling.json", path, settings)
        return final, -1
    with open_slide(path, slide_mpp, override_mpp) as slide, atomic_folder(final, exists="keep") as staging:
        tiles, tissue, mpp = tiling.cut(slide)
        (staging / "tiles").mkdir()
        names = [f"tiles/{x}_{y}.png" for x, y in zip(tiles["x"], tiles["y"], strict=True)]
        done, scores = 0, []
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # Pillow's PNG encoder releases the GIL
            for block in scored(iter_tiles(slide, tiles, tiling.size, mpp, progress=progress), scores):
                block = normalizer(block) if normalizer is not None else block
                list(pool.map(lambda t, name: Image.fromarray(t).save(staging / name), block,
                              names[done:done + len(block)]))
                done += len(block)
        with_score(tiles, scores).assign(file=names).to_csv(staging / "tiles.csv", index=False)
        Image.fromarray(mask_overlay(tissue.thumb, tissue.mask)).save(staging / "mask.png")
        atomic_write_json(staging / "tiling.json", {"slide": str(path.resolve()), "slide_mpp": slide.mpp,
                                                    "tile_mpp": mpp, "settings": settings})
    return final, len(tiles)


def done_before(record: Path, slide: Path, settings: dict[str, Any]) -> None:
    """Check that the folder of ``record`` (its ``tiling.json`` or ``slide.json``) was made from
    ``slide`` with ``settings``: else a DataError naming it (another slide of the same name, other
    settings, or a folder biodl did not write), so a "done before" folder is never reused blindly."""
    if not record.is_file():
        raise DataError(record.parent, f"exists but holds no {record.name}: not a folder biodl finished; remove "
                                       "it or choose another --out")
    data = read_json(record, DataError)
    if data.get("slide") != str(slide.resolve()):
        raise DataError(record.parent, f"holds the results of {data.get('slide')!r}, another slide of the same file "
                                       "name; give the slides distinct names or another --out")
    if data.get("settings") != json.loads(json_text(settings)):
        raise DataError(record.parent, "was made with other settings (resolution, tile size, selection, stain, or "
                                       "run); remove it or choose another --out")


def unique_stems(paths: list[Path]) -> list[Path]:
    """``paths`` when no two share a file stem (each slide's results go to ``<out>/<stem>/``); else
    a DataError naming both."""
    seen: dict[str, Path] = {}
    for p in paths:
        if (other := seen.setdefault(Path(p).stem, Path(p))) != Path(p):
            raise DataError(p, f"has the same name as {other}: their results would share one folder; rename one")
    return paths


def shard(paths: list[Path], spec: str | None) -> list[Path]:
    """Shard ``i/n`` of the slides (0 <= i < n): every n-th slide of the list sorted by path,
    starting at the i-th, so that n machines (e.g. a SLURM array, ``--shard
    $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``) share a cohort without a coordinator: the n
    shards are disjoint and together hold every slide. ``None``: all slides."""
    ordered = sorted(paths, key=str)
    if spec is None:
        return ordered
    try:
        i, n = (int(v) for v in spec.split("/"))
    except ValueError:
        raise DataError("--shard", f"expected I/N, e.g. 0/4 (got {spec!r})") from None
    if not (n >= 1 and 0 <= i < n):
        raise DataError("--shard", f"I/N needs 0 <= I < N (got {spec!r})")
    return ordered[i::n]
