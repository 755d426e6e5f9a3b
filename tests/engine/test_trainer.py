import csv

import numpy as np
import pytest
import torch
from sklearn.metrics import matthews_corrcoef, roc_auc_score
from torch import nn
from torch.utils.data import TensorDataset

from biodl.engine import BestCheckpoint, Callback, CSVLogger, EarlyStopping, TensorBoardLogger, Trainer
from biodl.engine.checkpoint import load_checkpoint
from biodl.evaluation import binary_metrics
from biodl.models import create_model
from biodl.repro import seed_everything


def _data(n=400, seed=0, noise=0.3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = ((x[:, 0] + x[:, 1] + noise * torch.randn(n, generator=g)) > 0).long()
    return TensorDataset(x, y)


def _bce(out, y):
    return nn.functional.binary_cross_entropy_with_logits(out.squeeze(-1), y.float())


def _trainer(tmp_path=None, epochs=5, lr=1e-2, callbacks=None, every=0, dropout=0.2, **kw):
    seed_everything(0)
    model = create_model("mlp", in_features=4, hidden=[16], dropout=dropout)
    return Trainer(
        model, _bce, lambda p: torch.optim.Adam(p, lr=lr), metrics=binary_metrics(),
        postprocess=lambda o: torch.sigmoid(o.squeeze(-1)), max_epochs=epochs, batch_size=32, seed=0,
        device="cpu", callbacks=callbacks or [], checkpoint_dir=tmp_path, checkpoint_every_steps=every, **kw,
    )


def test_fit_learns_and_metrics_agree_with_sklearn():
    train, val = _data(400, 0), _data(200, 1)
    t = _trainer(epochs=15)
    hist = t.fit(train, val)
    assert len(hist) == 15 and [h["epoch"] for h in hist] == list(range(1, 16))
    assert hist[-1]["train/loss"] < hist[0]["train/loss"]
    logs = t.evaluate(val, prefix="val")
    assert logs["val/accuracy"] > 0.85
    prob = t.predict(val).numpy()
    y = val.tensors[1].numpy()
    assert prob.shape == (200,) and ((prob >= 0) & (prob <= 1)).all()
    assert logs["val/mcc"] == pytest.approx(matthews_corrcoef(y, prob >= 0.5), abs=1e-5)
    assert logs["val/roc_auc"] == pytest.approx(roc_auc_score(y, prob), abs=1e-5)
    assert logs["val/accuracy"] == pytest.approx(((prob >= 0.5) == y).mean(), abs=1e-6)


def test_mc_dropout_passes_differ_are_seeded_and_leave_the_rest_alone():
    train, val = _data(200, 0), _data(50, 1)
    t = _trainer(epochs=3, dropout=0.5)
    t.fit(train, val)
    plain = t.predict(val)
    t.mc_dropout = 6
    state = torch.random.get_rng_state()
    samples = t.predict_passes(val)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global random state is untouched
    assert samples.shape == (6, 50)
    assert not torch.allclose(samples[0], samples[1])  # each pass drops other units
    assert torch.equal(samples, t.predict_passes(val))  # the same masks on a rerun
    # a sample's passes do not depend on its batch: the last 10 alone, in another batch size
    t.batch_size = 7
    alone = t.predict_passes(TensorDataset(*(v[40:] for v in val.tensors)))
    torch.testing.assert_close(alone, samples[:, 40:])
    t.batch_size = 32
    assert torch.allclose(t.predict(val), samples.mean(dim=0))
    assert not any(m.training for m in t.module.modules())  # back in eval mode
    t.mc_dropout = 0
    assert torch.equal(t.predict(val), plain)  # without MC: the plain eval-mode prediction
    assert torch.equal(t.predict_passes(val), plain.unsqueeze(0))


def test_mc_dropout_without_dropout_is_refused():
    with pytest.raises(ValueError, match="dropout layer"):
        _trainer(dropout=0.0, mc_dropout=4)


def test_early_stopping_stops_when_monitor_stalls():
    t = _trainer(epochs=50, lr=0.0, callbacks=[EarlyStopping("val/loss", "min", patience=2)])
    hist = t.fit(_data(64), _data(64, 1))
    assert len(hist) == 3 and t.should_stop


def test_monitor_missing_from_logs_is_a_config_error():
    from biodl.errors import ConfigError

    t = _trainer(epochs=2, callbacks=[EarlyStopping("val/auc", "max", patience=2)])
    with pytest.raises(ConfigError, match="'val/auc' is not logged"):
        t.fit(_data(64), _data(64, 1))


def test_csv_tensorboard_and_best_checkpoint(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cbs = [CSVLogger(tmp_path / "metrics.csv"), TensorBoardLogger(tmp_path / "tb"),
           BestCheckpoint(tmp_path / "ck", "val/mcc", "max")]
    t = _trainer(tmp_path / "ck", epochs=4, callbacks=cbs)
    hist = t.fit(_data(), _data(100, 1))
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert len(rows) == 4
    assert [float(r["val/mcc"]) for r in rows] == [h["val/mcc"] for h in hist]
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert {"train/loss", "val/loss", "val/mcc", "lr"} <= set(acc.Tags()["scalars"])
    events = acc.Scalars("val/mcc")
    assert [e.step for e in events] == [1, 2, 3, 4]
    np.testing.assert_allclose([e.value for e in events], [h["val/mcc"] for h in hist], rtol=1e-6)
    best_epoch = max(range(4), key=lambda i: hist[i]["val/mcc"]) + 1  # first maximum wins
    _, meta = load_checkpoint(tmp_path / "ck" / "best")
    assert meta["epoch"] == best_epoch and meta["value"] == pytest.approx(hist[best_epoch - 1]["val/mcc"])
    _, last = load_checkpoint(tmp_path / "ck" / "last")
    assert last["epoch"] == 4 and last["step"] == 4 * 13


class _Crash(Callback):
    def __init__(self, at):
        self.at = at

    def on_train_batch_end(self, trainer, batch_idx):
        if trainer.step == self.at:
            raise KeyboardInterrupt  # stands in for a crash after step `at` (its checkpoint not yet written)


@pytest.mark.parametrize("crash_at, every", [(7, 1), (20, 3), (26, 5)])
def test_resume_after_crash_is_bit_identical(tmp_path, crash_at, every):
    train, val = _data(400), _data(100, 1)  # 13 batches per epoch, so crashes land mid-epoch and at its end
    ref = _trainer(tmp_path / "ref", epochs=3, every=every)
    ref.fit(train, val)
    crashed = _trainer(tmp_path / "run", epochs=3, every=every, callbacks=[_Crash(crash_at)])
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(train, val)
    resumed = _trainer(tmp_path / "run", epochs=3, every=every)
    hist = resumed.fit(train, val, resume=True)
    for (k, a), b in zip(ref.module.state_dict().items(), resumed.module.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert resumed.step == ref.step == 39
    assert hist[-1]["train/loss"] == ref.history[-1]["train/loss"]


def test_loader_with_workers_gives_the_same_batches_as_without():
    from biodl.engine.loaders import TrainLoader

    ds = _data(100)
    a = TrainLoader(ds, 16, seed=5, num_workers=0)
    b = TrainLoader(ds, 16, seed=5, num_workers=2)
    a.set_epoch(2, start_batch=3)
    b.set_epoch(2, start_batch=3)
    ya = torch.cat([y for _, y in a])
    yb = torch.cat([y for _, y in b])
    assert torch.equal(ya, yb) and len(ya) == 100 - 3 * 16


def test_resume_with_random_augmentation_is_bit_identical(tmp_path):
    from biodl.data.transforms import BatchAugment, ImagePreprocess

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randint(0, 256, (96, 3, 12, 12), dtype=torch.uint8, generator=g),
                         torch.randint(0, 3, (96,), generator=g))

    def make(ckpt, cbs=()):
        seed_everything(0)
        model = create_model("resnet_small", num_classes=3, width=4, blocks=1)
        return Trainer(model, nn.functional.cross_entropy, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
                       max_epochs=2, batch_size=16, seed=0, device="cpu", checkpoint_dir=ckpt,
                       checkpoint_every_steps=1, callbacks=list(cbs),
                       batch_transform=ImagePreprocess([0.5] * 3, [0.2] * 3, BatchAugment()))

    ref = make(tmp_path / "ref")
    ref.fit(data)
    crashed = make(tmp_path / "run", [_Crash(8)])
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(data)
    resumed = make(tmp_path / "run")
    resumed.fit(data, resume=True)
    for a, b in zip(ref.module.state_dict().values(), resumed.module.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_weighted_sampler_balances_classes_and_is_a_pure_function_of_seed_and_epoch():
    from biodl.engine.loaders import ResumableSampler, TrainLoader

    y = torch.tensor([0] * 900 + [1] * 100)
    ds = TensorDataset(torch.arange(1000).float().unsqueeze(1), y)
    w = 1.0 / torch.bincount(y).double()[y]  # every class equally often
    loader = TrainLoader(ds, 50, seed=3, weights=w)
    loader.set_epoch(0)
    y0 = torch.cat([b for _, b in loader])
    assert len(y0) == 1000
    assert 0.44 < y0.float().mean() < 0.56  # ~half minority draws, against 0.10 when shuffled
    loader.set_epoch(0)
    assert torch.equal(torch.cat([b for _, b in loader]), y0)  # same (seed, epoch): same draws
    loader.set_epoch(1)
    x1 = torch.cat([x for x, _ in loader])
    loader.set_epoch(1, start_batch=4)  # resume mid-epoch: exactly the rest of the epoch
    assert torch.equal(torch.cat([x for x, _ in loader]), x1[200:])
    shards = [list(ResumableSampler(ds, 2, r, shuffle=True, seed=3, weights=w)) for r in (0, 1)]
    whole = list(ResumableSampler(ds, 1, 0, shuffle=True, seed=3, weights=w))
    assert shards[0] == whole[0::2] and shards[1] == whole[1::2]  # DDP ranks split one draw
    with pytest.raises(ValueError, match="one non-negative weight per sample"):
        ResumableSampler(ds, 1, 0, shuffle=True, seed=0, weights=torch.ones(5))
    zero = w.clone()
    zero[y == 1] = 0
    loader = TrainLoader(ds, 50, seed=3, weights=zero)
    loader.set_epoch(0)
    assert torch.cat([b for _, b in loader]).sum() == 0  # weight 0: never drawn


def test_a_network_that_learns_nothing_is_reported():
    """A dead ReLU layer (every pre-activation negative): a constant output, a flat loss, a warning."""
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.fill_(-1.0)
        model[2].bias.zero_()  # and the output at chance: only its bias could move, and balanced classes keep it
    t = Trainer(model, _bce, lambda p: torch.optim.Adam(p, lr=1e-2), max_epochs=3, batch_size=32, seed=0,
                device="cpu")
    x = _data(200, 0).tensors[0]
    with pytest.warns(UserWarning, match="the training loss stayed at .* for all 3 epochs"):
        t.fit(TensorDataset(x, torch.arange(200) % 2))  # balanced: the output's bias has nowhere to go
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a network that learns is not warned about
        _trainer(epochs=3).fit(_data(200, 0))
