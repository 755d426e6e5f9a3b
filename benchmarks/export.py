"""An exported ResNet-18 (224 px, two classes) under onnxruntime against eager PyTorch, in one
process on this CPU: per-image latency at batch 1 and throughput at batch 32.

Both run the same thing biodl export puts in the graph: uint8 (N, 224, 224, 3) images in,
channels first, normalisation, ResNet-18, softmax out. The weights are random (no download):
speed does not depend on them. Parity of the two on the benchmark batch is printed too.

    python benchmarks/export.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from biodl.data.transforms import ImagePreprocess
from biodl.models import create_model


class Graph(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.prep = ImagePreprocess([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
        self.net = create_model("resnet18", num_classes=2, in_chans=3)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(self.prep(images.permute(0, 3, 1, 2))), dim=1)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    import onnxruntime as ort

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.manual_seed(0)
    graph = Graph().eval()
    rng = np.random.default_rng(0)
    one, many = (rng.integers(0, 256, (n, 224, 224, 3), dtype=np.uint8) for n in (1, 32))
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(tmp) / "resnet18.onnx"
        t0 = time.perf_counter()
        torch.onnx.export(graph, (torch.from_numpy(many[:2]),), dynamo=True, input_names=["images"],
                          output_names=["probabilities"], dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                          verbose=False).save(str(path))
        export_s = time.perf_counter() - t0
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        with torch.inference_mode():
            eager = {n: timed(lambda x=x: graph(torch.from_numpy(x)), args.repeats) for n, x in ((1, one), (32, many))}
            reference = graph(torch.from_numpy(many)).numpy()
        onnx = {n: timed(lambda x=x: session.run(None, {"images": x}), args.repeats) for n, x in ((1, one), (32, many))}
        diff = float(np.abs(session.run(None, {"images": many})[0] - reference).max())
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime "
          f"{ort.__version__}; export took {export_s:.1f} s; median of {args.repeats}")
    print(f"{'':24s}{'batch 1: ms/image':>20s}{'batch 32: images/s':>22s}")
    print(f"{'eager PyTorch':24s}{eager[1] * 1e3:20.1f}{32 / eager[32]:22.1f}")
    print(f"{'ONNX (onnxruntime)':24s}{onnx[1] * 1e3:20.1f}{32 / onnx[32]:22.1f}")
    print(f"onnxruntime vs eager: latency {eager[1] / onnx[1]:.2f}x, throughput {eager[32] / onnx[32]:.2f}x; "
          f"largest probability difference {diff:.1e}")


if __name__ == "__main__":
    main()
