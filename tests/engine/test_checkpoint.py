import json
import os
import pickle

import pytest
import torch
from torch import nn

from biodl.engine.checkpoint import (
    check_architecture,
    join_tree,
    load_checkpoint,
    recover,
    save_checkpoint,
    split_tree,
)
from biodl.errors import CheckpointError
from biodl.io import read_safetensors, sha256_file
from tests.conftest import assert_one_line_error


def _adam_state():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2, betas=(0.8, 0.95))
    for _ in range(3):
        opt.zero_grad()
        m(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
    return m, opt


def test_optimizer_state_round_trips_exactly_through_json_and_safetensors(tmp_path):
    m, opt = _adam_state()
    tensors: dict = {}
    tree = split_tree(opt.state_dict(), "optimizer", tensors)
    save_checkpoint(tmp_path / "ck", tensors, {"optimizer": tree})
    loaded, meta = load_checkpoint(tmp_path / "ck")
    back = join_tree(meta["optimizer"], loaded)
    orig = opt.state_dict()
    assert back["param_groups"][0]["betas"] == (0.8, 0.95)  # tuples stay tuples
    assert set(back["state"]) == set(orig["state"]) == {0, 1, 2, 3}  # int keys stay ints
    for k in orig["state"]:
        for name, t in orig["state"][k].items():
            assert torch.equal(back["state"][k][name], t)
    opt2 = torch.optim.Adam(m.parameters(), lr=1.0)
    opt2.load_state_dict(back)
    assert opt2.param_groups[0]["lr"] == 1e-2


def test_truncated_checkpoint_is_refused(tmp_path):
    save_checkpoint(tmp_path / "ck", {"w": torch.randn(100, 100)}, {})
    st = tmp_path / "ck.safetensors"
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(tmp_path / "ck")


def test_pickle_renamed_safetensors_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "weights.safetensors"
    bad.write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(CheckpointError, match="biodl never unpickles"):
        read_safetensors(bad)
    torch.save({"w": torch.zeros(2)}, tmp_path / "zip.safetensors")
    with pytest.raises(CheckpointError, match="pickle"):
        read_safetensors(tmp_path / "zip.safetensors")
    assert not marker.exists()


def test_record_and_tensors_must_match(tmp_path):
    save_checkpoint(tmp_path / "a", {"w": torch.zeros(3)}, {})
    save_checkpoint(tmp_path / "b", {"w": torch.ones(3)}, {})
    os.replace(tmp_path / "b.safetensors", tmp_path / "a.safetensors")
    with pytest.raises(CheckpointError, match="sha256 differs"):
        load_checkpoint(tmp_path / "a")


def test_architecture_mismatch_names_the_tensors():
    small = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 1))
    other = nn.Sequential(nn.Linear(4, 16), nn.Linear(16, 1), nn.Linear(1, 1))
    with pytest.raises(CheckpointError) as err:
        check_architecture(small, other.state_dict(), "best.safetensors")
    msg = str(err.value)
    assert "another architecture" in msg
    assert "0.weight (16, 4) vs model (8, 4)" in msg
    assert "unexpected: 2.weight, 2.bias" in msg


def _write_pair(prefix, value):
    save_checkpoint(prefix, {"w": torch.full((4,), float(value))}, {"value": value})


def test_recover_rolls_forward_after_kill_between_renames(tmp_path):
    prefix = tmp_path / "last"
    _write_pair(prefix, 1)
    # simulate: new pair written, JSON moved to .pending, safetensors renamed, then SIGKILL
    _write_pair(tmp_path / "new", 2)
    os.replace(tmp_path / "new.json", tmp_path / "last.json.pending")
    os.replace(tmp_path / "new.safetensors", tmp_path / "last.safetensors")
    tensors, meta = load_checkpoint(prefix)
    assert meta["value"] == 2 and torch.equal(tensors["w"], torch.full((4,), 2.0))
    assert not (tmp_path / "last.json.pending").exists()


def test_recover_rolls_back_after_kill_before_safetensors_rename(tmp_path):
    prefix = tmp_path / "last"
    _write_pair(prefix, 1)
    _write_pair(tmp_path / "new", 2)
    os.replace(tmp_path / "new.json", tmp_path / "last.json.pending")
    (tmp_path / ".last.safetensors.abc.tmp").write_bytes(b"partial")
    tensors, meta = load_checkpoint(prefix)
    assert meta["value"] == 1 and torch.equal(tensors["w"], torch.ones(4))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("last") or p.name.startswith(".last")) == [
        "last.json", "last.safetensors"]


def test_json_records_the_sha_of_the_tensors(tmp_path):
    _write_pair(tmp_path / "x", 3)
    rec = json.loads((tmp_path / "x.json").read_text())
    assert rec["safetensors_sha256"] == sha256_file(tmp_path / "x.safetensors")
    assert rec["format"] == "biodl-checkpoint" and rec["value"] == 3


def test_recover_is_a_no_op_on_a_clean_pair(tmp_path):
    _write_pair(tmp_path / "x", 3)
    before = sorted(p.name for p in tmp_path.iterdir())
    recover(tmp_path / "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_safetensors_file_whose_first_byte_looks_like_pickle_loads(tmp_path):
    # the first 8 bytes are the header length (little endian); make its low byte 0x80, pickle's magic
    from safetensors.torch import save_file

    for n in range(1, 400):
        path = tmp_path / "w.safetensors"
        save_file({"x" * n: torch.zeros(2)}, str(path))
        if path.read_bytes()[0] == 0x80:
            break
    else:  # pragma: no cover
        pytest.skip("could not produce such a header")
    assert torch.equal(read_safetensors(path)["x" * n], torch.zeros(2))


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d.update(epoch="abc"), "not a complete training state: epoch: Input should be a valid integer"),
    (lambda d: d.pop("rng"), "not a complete training state: rng: Field required"),
    (lambda d: d["sampler"].update(batch_size=0), "sampler.batch_size"),
    (lambda d: d["callbacks"].update(EarlyStopping={}), "training state does not fit this run (KeyError"),
    (lambda d: d["rng"]["python"].update(state=[1, 2]), "training state does not fit this run"),
])
def test_a_malformed_training_state_is_one_line_on_resume(run_copy, cli, edit, fragment):
    """The JSON half of last.* is checked before it is used (its sha256 link to the tensors
    still holds: only the record was edited)."""
    path = run_copy / "checkpoints/last.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))
    before = (run_copy / "metrics.json").read_bytes()
    r = cli("train", "--resume", "--out", run_copy)
    assert_one_line_error(r, "last.json", fragment)
    assert (run_copy / "metrics.json").read_bytes() == before
