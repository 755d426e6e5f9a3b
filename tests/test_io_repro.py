import json
import os
import random

import numpy as np
import pytest
import torch

from biodl.io import atomic_write, atomic_write_json, sha256_file
from biodl.repro import finish_manifest, get_rng_state, seed_everything, set_rng_state, write_manifest


def test_atomic_write_keeps_old_content_when_writer_fails(tmp_path):
    target = tmp_path / "results.json"
    atomic_write_json(target, {"a": 1})

    def broken(p):
        p.write_text('{"a": 2, "trunc')
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temp file left behind
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def _draw():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_seed_everything_covers_python_numpy_torch():
    seed_everything(123)
    a = _draw()
    seed_everything(123)
    assert _draw() == a
    seed_everything(124)
    assert _draw() != a


def test_rng_state_survives_json():
    seed_everything(7)
    _draw()
    state = json.loads(json.dumps(get_rng_state()))
    expected = [_draw() for _ in range(3)]
    random.random(), np.random.rand(), torch.rand(5)  # move on
    set_rng_state(state)
    assert [_draw() for _ in range(3)] == expected


def test_manifest_records_versions_inputs_and_times(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("a,b\n1,2\n")
    m = write_manifest(tmp_path, config={"x": 1}, seed=5, device="cpu", inputs={"data": data})
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["inputs"]["data"]["sha256"] == sha256_file(data)
    assert on_disk["versions"]["torch"] == torch.__version__
    assert on_disk["versions"]["numpy"] == np.__version__
    assert {"biodl", "python", "torchvision"} <= set(on_disk["versions"])
    assert on_disk["seed"] == 5 and on_disk["config"] == {"x": 1} and on_disk["finished"] is None
    finish_manifest(tmp_path, m)
    assert json.loads((tmp_path / "manifest.json").read_text())["finished"] is not None
