"""DistributedDataParallel on the CPU: 2 processes, gloo backend, launched by torchrun."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples/heart_failure_mlp.yaml"
SETS = ["trainer.epochs=3", "trainer.progress=false", "trainer.early_stopping_patience=null"]

SCRIPT = """
import sys, torch.distributed as dist
from safetensors.torch import save_file
from biodl.config import load_config
from biodl.tasks.tabular import train
cfg = load_config(sys.argv[1], sys.argv[3:])
result = train(cfg, sys.argv[2])
rank = dist.get_rank()
save_file({k: v.contiguous() for k, v in result.trainer.module.state_dict().items()},
          f"{sys.argv[2]}/rank{rank}.safetensors")
with open(f"{sys.argv[2]}/rank{rank}.json", "w") as f:
    import json; json.dump({"world": dist.get_world_size(), "metrics": result.metrics,
                            "steps": result.trainer.step}, f)
dist.destroy_process_group()
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    # an explicit free loopback port: torchrun's --standalone rendezvous was seen to fail now and then here
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_two_cpu_processes_end_with_identical_parameters(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    p = _torchrun(str(script), str(EXAMPLE), str(out), *SETS)
    assert p.returncode == 0, p.stderr[-3000:]
    r0, r1 = load_file(out / "rank0.safetensors"), load_file(out / "rank1.safetensors")
    assert r0.keys() == r1.keys() and len(r0) > 0
    for k in r0:
        assert r0[k].equal(r1[k]), k
    m0 = json.loads((out / "rank0.json").read_text())
    m1 = json.loads((out / "rank1.json").read_text())
    assert m0["world"] == m1["world"] == 2
    assert m0["metrics"] == m1["metrics"]  # metrics reduced across ranks: both see the full test split
    written = json.loads((out / "metrics.json").read_text())
    assert written == pytest.approx(m0["metrics"])
    # each rank stepped through its own half of the 179 training rows: ceil(90 / 16) = 6 steps per epoch
    assert m0["steps"] == m1["steps"] == 3 * 6
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 3  # one writer: no duplicate rows
    # one writer: the per-epoch event file and the end-of-run extras, each once
    assert sorted(p.name.endswith(".extras") for p in (out / "tb").iterdir()) == [False, True]


def test_the_cli_command_works_under_torchrun(tmp_path):
    out = tmp_path / "run"
    sets = [a for s in SETS for a in ("--set", s)]
    p = _torchrun("-m", "biodl", "train", "--config", str(EXAMPLE), "--out", str(out), *sets)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("results: ") == 1  # only rank 0 reports
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["finished"] and manifest["split_sizes"]["test"] == 60
    assert (out / "checkpoints/best.safetensors").exists()


def test_two_nodes_through_c10d_rendezvous_match_one_process(tmp_path, cli):
    """How clusters launch: one torchrun per node (two here, one CPU process each, gloo), meeting
    at a c10d rendezvous, all writing to one shared run directory. Batch 8 on each of the two
    ranks is the same optimisation as batch 16 in one process (the DDP sampler's rank r takes
    every other index of the same permutation; 178 training rows, so no padding), so the metrics
    and weights must match a single-process run to float tolerance."""
    sets = [a for s in [*SETS, "data.val_fraction=0.2025", "model.args={hidden: [32, 16], dropout: 0.0}"]
            for a in ("--set", s)]
    single = cli("train", "--config", EXAMPLE, "--out", tmp_path / "one", *sets)  # in this process: no DDP
    assert single.code == 0, single.err[-3000:]
    port = _free_port()
    node = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
            "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=biodl-test",
            "--local-addr=127.0.0.1", "-m", "biodl", "train", "--config", str(EXAMPLE), "--out", str(tmp_path / "two"),
            *sets, "--set", "data.batch_size=8"]
    nodes = [subprocess.Popen(node, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=600) for p in nodes]
    for p, (_, err) in zip(nodes, results, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert sum(out.count("results: ") for out, _ in results) == 1  # one rank 0, one report
    manifest = json.loads((tmp_path / "two/manifest.json").read_text())
    assert manifest["split_sizes"] == {"train": 178, "val": 61, "test": 60}
    one = json.loads((tmp_path / "one/metrics.json").read_text())
    two = json.loads((tmp_path / "two/metrics.json").read_text())
    assert one.keys() == two.keys()
    for k in one:
        assert two[k] == pytest.approx(one[k], rel=1e-4, abs=1e-5), k
    w1 = load_file(tmp_path / "one/checkpoints/last.safetensors")
    w2 = load_file(tmp_path / "two/checkpoints/last.safetensors")
    assert w1.keys() == w2.keys()
    for k in w1:
        assert torch.allclose(w1[k], w2[k], rtol=1e-4, atol=1e-6), k
