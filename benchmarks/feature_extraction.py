"""Tile-feature extraction of the embedded IDC patient mosaics into the feature cache (#32): wall
time and peak memory for 1 patient and for all 10, against the usual script (decode every tile
of every slide into one array, then run the network over it).

    python benchmarks/feature_extraction.py [--run RUN] [--work DIR]

``--run``: a single image run whose penultimate layer extracts (default: a 2-epoch small ResNet
trained here on the 10 patients, as ``biodl run histopathology``'s fold networks are: 50 px
patches, 4 um/px). Each measurement is a fresh child process (its peak RSS is ``ru_maxrss``), so
the imports (torch ~ 400 MB) are in every number; what matters is how each grows with slides.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _process import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]


def baseline(run: Path, patients: list[Path]) -> None:
    """The usual script: every tile of every slide decoded into memory, then the network over it."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "src"))
    from biodl.data.folders import EXTENSIONS, image_paths
    from biodl.tasks.features import run_extractor

    fn, _ = run_extractor(run)
    files = [f for p in patients for f in sorted(image_paths(p, recursive=True, extensions=EXTENSIONS))]
    from PIL import Image

    tiles = np.full((len(files), 50, 50, 3), 255, np.uint8)
    for i, f in enumerate(files):
        a = np.asarray(Image.open(f).convert("RGB"))
        tiles[i, : a.shape[0], : a.shape[1]] = a
    feats = fn(tiles)
    print(feats.shape)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "biodl-bench-features")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return baseline(Path(args.child[0]), [Path(p) for p in args.child[1:]])
    sys.path.insert(0, str(ROOT / "src"))
    from biodl.datasets import embedded_path

    idc = embedded_path("idc")
    patients = sorted(p for p in idc.iterdir() if p.is_dir())
    biodl = str(Path(sys.executable).with_name("biodl"))
    args.work.mkdir(parents=True, exist_ok=True)
    run = args.run
    if run is None:
        run = args.work / "extractor"
        if not (run / "metrics.json").is_file():
            shutil.rmtree(run, ignore_errors=True)
            subprocess.run([biodl, "train", "--data", str(idc), "--model", "resnet_small", "--epochs", "2",
                            "--out", str(run), "--set", "data.fit=pad", "--set", "data.mpp=4",
                            "--set", "model.args={width: 16, blocks: 1}", "--set", "trainer.progress=false",
                            "--set", "n_boot=100", "--set", f"data.cache_dir={args.work / 'decoded'}"],
                           check=True, capture_output=True)
    rows = []
    for label, chosen in (("1 patient (8950, 610 tiles)", [idc / "8950"]), ("10 patients (4,982 tiles)", patients)):
        cache = args.work / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        ours = peak_rss_mb([biodl, "wsi", "features", str(run), *map(str, chosen), "--cache", str(cache)])
        again = peak_rss_mb([biodl, "wsi", "features", str(run), *map(str, chosen), "--cache", str(cache)])
        base = peak_rss_mb([sys.executable, __file__, "--child", str(run), *map(str, chosen)])
        rows.append((label, ours, again, base))
    print(f"{'':28} {'biodl wsi features':>24} {'rerun (cached)':>16} {'decode all, then run':>24}")
    for label, (mb, s), (_, s2), (bmb, bs) in rows:
        print(f"{label:28} {s:9.1f} s {mb:8.0f} MB {s2:9.1f} s {bmb:10.0f} MB {bs:8.1f} s")
    (m1, _), (m10, s10) = rows[0][1], rows[1][1]
    (b1, _), (b10, bs10) = rows[0][3], rows[1][3]
    print(f"peak memory, 10 slides / 1 slide: biodl {m10 / m1:.2f}x (+{m10 - m1:.0f} MB), the usual script "
          f"{b10 / b1:.2f}x (+{b10 - b1:.0f} MB)")
    print(f"time for 10 slides: biodl {s10:.1f} s, the usual script {bs10:.1f} s ({bs10 / s10:.2f}x biodl's); "
          f"a rerun reads the cache in {rows[1][2][1]:.1f} s")


if __name__ == "__main__":
    main()
