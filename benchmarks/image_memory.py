"""Peak resident memory of ``biodl train`` on a 3,662-image 224 x 224 set (the size of the
workshop's diabetic-retinopathy data), first while it builds the decoded cache, then training
from the cache. For scale it also reports what the imports alone take, and the decoded set's size.

    python benchmarks/image_memory.py [--n 3662] [--model dbrnet] [--epochs 1]

Peak RSS is the child process's ``ru_maxrss``. Images read from the cache go through the
operating system's page cache, which is shared and reclaimable, and not part of the process's RSS.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from _images import make_tree
from _process import peak_rss_mb

IMPORTS = "import biodl.cli, biodl.tasks.image, biodl.evaluation, torch, torchmetrics, sklearn.metrics"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3662)
    ap.add_argument("--model", default="dbrnet")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "biodl-bench-images")
    args = ap.parse_args()
    root = make_tree(args.work / f"tree-{args.n}", args.n, 224)
    biodl = str(Path(sys.executable).with_name("biodl"))
    tmp = Path(tempfile.mkdtemp(prefix="mem-", dir=args.work))
    try:
        base, _ = peak_rss_mb([sys.executable, "-c", IMPORTS])
        print(f"{args.n} images of 224x224: {args.n * 224 * 224 * 3 / 2**20:.0f} MB decoded; "
              f"imports alone (biodl, torch, torchmetrics, scikit-learn): {base:.0f} MB")
        for run in ("first run (decodes into the cache)", "second run (trains from the cache)"):
            cmd = [biodl, "train", "--data", str(root), "--model", args.model, "--epochs", str(args.epochs),
                   "--out", str(tmp / run.split()[0]), "--set", f"data.cache_dir={tmp / 'cache'}",
                   "--set", "trainer.progress=false", "--set", "n_boot=200"]
            mb, secs = peak_rss_mb(cmd)
            print(f"{run}: peak RSS {mb:.0f} MB ({mb / 1024:.2f} GB), {secs:.0f} s; model {args.model}, "
                  f"batch 64, {args.epochs} epoch(s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
