"""Whole training runs: reference replay, torch equivalence, thread determinism, resume,
L1, evaluate, and one real-MNIST epoch."""
import numpy as np
import pytest

import cygrad as cg
from cygrad import nn, optim

F64 = np.float64


def _batches(steps, batch, shape, seed=0, dtype=F64):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((batch,) + shape).astype(dtype), rng.integers(0, 10, batch))
            for _ in range(steps)]


def _run(model, opt, batches, loss_fn=None):
    """The training step of the API (PyTorch's loop, word for word); returns the losses."""
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    losses = []
    for x, y in batches:
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


MODELS = {"mlp": (cg.models.mlp, (784,), 16), "cnn": (cg.models.cnn, (1, 28, 28), 4)}


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_reference_replay_agrees(name):
    build, shape, batch = MODELS[name]
    batches = _batches(20, batch, shape)
    finals = {}
    for backend in ("kernels", "reference"):
        with cg.use_backend(backend):
            model = build(dtype=F64, seed=0)
            _run(model, optim.Adam(model.parameters(), lr=1e-3), batches)
            finals[backend] = model.flat_buffers()[0].copy()
    assert not np.array_equal(finals["kernels"], build(dtype=F64, seed=0).flat_buffers()[0])
    np.testing.assert_allclose(finals["kernels"], finals["reference"], rtol=0, atol=1e-10)


def _torch_model(torch, name):
    T = torch.nn
    if name == "mlp":
        layers = [T.Linear(784, 128), T.ReLU(), T.Linear(128, 64), T.ReLU(), T.Linear(64, 10)]
    else:
        layers = [T.Conv2d(1, 32, 3), T.ReLU(), T.MaxPool2d(2), T.Conv2d(32, 64, 3), T.ReLU(),
                  T.MaxPool2d(2), T.Flatten(), T.Linear(1600, 128), T.ReLU(), T.Linear(128, 10)]
    return T.Sequential(*layers).double()


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("opt_name,kwargs", [("Adam", dict(lr=1e-3)),
                                             ("SGD", dict(lr=0.05, momentum=0.9))])
def test_matches_torch_training(name, opt_name, kwargs):
    torch = pytest.importorskip("torch")
    build, shape, batch = MODELS[name]
    batches = _batches(20, batch, shape, seed=1)
    model = build(dtype=F64, seed=2)
    tmodel = _torch_model(torch, name)
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    losses = _run(model, getattr(optim, opt_name)(model.parameters(), **kwargs), batches)
    topt = getattr(torch.optim, opt_name)(tmodel.parameters(), foreach=False, **kwargs)
    tlosses = []
    for x, y in batches:
        loss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
        topt.zero_grad()
        loss.backward()
        topt.step()
        tlosses.append(loss.item())
    np.testing.assert_allclose(losses, tlosses, rtol=1e-9, atol=1e-9)
    for k, v in tmodel.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[k], v.numpy(), rtol=0, atol=1e-9, err_msg=k)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_one_and_two_threads_are_bitwise_identical(name):
    build, shape, _ = MODELS[name]
    batches = _batches(20, 64 if name == "mlp" else 32, shape, seed=3, dtype=np.float32)
    finals = []
    for n in (1, 2):
        with cg.threads(n):
            model = build(seed=4)
            _run(model, optim.Adam(model.parameters()), batches)
            finals.append(model.flat_buffers()[0].copy())
    assert np.array_equal(finals[0], finals[1])


def _fake_loaders(fake_mnist, batch_size=32):
    return cg.data.mnist_loaders(fake_mnist, batch_size=batch_size, seed=5, test_batch_size=64)


def _model(seed, dropout):
    if not dropout:
        return cg.models.mlp(sizes=(784, 32, 10), seed=seed)
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(784, 32, rng=rng), nn.ReLU(), nn.Dropout(0.3, rng=rng),
                         nn.Linear(32, 10, rng=rng))


def _fit(fake_mnist, tmp_path, epochs, seed=0, dropout=False, **kwargs):
    train, test = _fake_loaders(fake_mnist)
    model = _model(seed, dropout)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    history = cg.train.fit(model, nn.CrossEntropyLoss(), opt, train, epochs=epochs, val_loader=test,
                           **{"progress": False, **kwargs})
    return model, opt, history


def _same_run(h1, h2):
    return all(h1[k] == h2[k] for k in h1 if k not in ("seconds", "images_per_s"))


@pytest.mark.parametrize("dropout", [False, True])
def test_resume_is_bitwise_identical_to_an_uninterrupted_run(fake_mnist, tmp_path, dropout):
    full, full_opt, full_hist = _fit(fake_mnist, tmp_path, 3, dropout=dropout)
    ck = tmp_path / "ck.npz"
    _fit(fake_mnist, tmp_path, 1, checkpoint=ck, dropout=dropout)
    # resume must restore everything: weights, optimizer state, data order, dropout stream
    resumed, resumed_opt, hist = _fit(fake_mnist, tmp_path, 3, checkpoint=ck, resume=True,
                                      dropout=dropout, seed=99)
    assert np.array_equal(full.flat_buffers()[0], resumed.flat_buffers()[0])
    assert all(np.array_equal(full_opt.state[k], resumed_opt.state[k]) for k in full_opt.state)
    assert hist["epoch"] == [1, 2, 3] and _same_run(full_hist, hist)
    assert cg.io.read(ck)[1]["meta"]["epoch"] == 3


def test_ctrl_c_keeps_the_last_checkpoint_resumable(fake_mnist, tmp_path):
    full, _, _ = _fit(fake_mnist, tmp_path, 2)
    ck = tmp_path / "ck.npz"
    train, test = _fake_loaders(fake_mnist)
    model = cg.models.mlp(sizes=(784, 32, 10), seed=0)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    real_iter = type(train).__iter__
    def interrupting(self):  # Ctrl-C in the middle of epoch 2
        for i, batch in enumerate(real_iter(self)):
            if self.epoch == 2 and i == 3:
                raise KeyboardInterrupt
            yield batch
    train.__class__ = type("Interrupting", (type(train),), {"__iter__": interrupting})
    with pytest.raises(KeyboardInterrupt):
        cg.train.fit(model, nn.CrossEntropyLoss(), opt, train, epochs=2, val_loader=test,
                     progress=False, checkpoint=ck)
    assert cg.io.read(ck)[1]["meta"]["epoch"] == 1
    resumed, _, _ = _fit(fake_mnist, tmp_path, 2, checkpoint=ck, resume=True)
    assert np.array_equal(full.flat_buffers()[0], resumed.flat_buffers()[0])


def test_fit_history_evaluate_and_progress(fake_mnist, tmp_path, capsys):
    train, test = _fake_loaders(fake_mnist)
    model = cg.models.mlp(sizes=(784, 32, 10), seed=0)
    opt = optim.Adam(model.parameters(), lr=3e-3)
    history = cg.train.fit(model, nn.CrossEntropyLoss(), opt, train, epochs=3, val_loader=test)
    assert history["epoch"] == [1, 2, 3] and history["val_accuracy"][-1] > 0.9
    assert history["loss"][-1] < history["loss"][0]
    err = capsys.readouterr().err
    assert "epoch 3/3" in err and "img/s" in err and "val_acc" in err
    result = cg.train.evaluate(model, test, nn.CrossEntropyLoss())
    x, y = cg.data.load_mnist(fake_mnist, "test")
    logits = model.eval()(cg.data.Normalize(shape=(784,))(x))
    assert result["accuracy"] == np.mean(logits.argmax(1) == y) == history["val_accuracy"][-1]
    assert np.isclose(result["loss"], nn.CrossEntropyLoss()(logits, y), rtol=1e-5)


def test_l1_adds_sign_of_the_weights():
    model = cg.models.linear_regression(dtype=F64, seed=0)
    x = np.array([[1.0], [2.0], [3.0]])
    loader = cg.data.DataLoader(x, 2 * x, batch_size=3, shuffle=False)
    w0 = model.flat_buffers()[0].copy()
    opt = optim.SGD(model.parameters(), lr=0.1)
    history = cg.train.fit(model, nn.MSELoss(), opt, loader, epochs=1, progress=False, l1=0.5)
    w, b = w0[0], w0[1]  # data order: weight (1, 1), then bias (1,)
    pred = x[:, 0] * w + b
    grad_mse = np.array([np.mean(2 * (pred - 2 * x[:, 0]) * x[:, 0]), np.mean(2 * (pred - 2 * x[:, 0]))])
    want = w0 - 0.1 * (grad_mse + 0.5 * np.sign(w0))
    np.testing.assert_allclose(model.flat_buffers()[0], want, rtol=1e-12)
    assert np.isclose(history["loss"][0], np.mean((pred - 2 * x[:, 0]) ** 2) + 0.5 * np.abs(w0).sum())


def test_linear_regression_learns_y_equals_2x():
    x = np.linspace(-1, 1, 64).reshape(-1, 1)
    model = cg.models.linear_regression(dtype=F64, seed=0)
    loader = cg.data.DataLoader(x, 2 * x, batch_size=16, seed=0)
    cg.train.fit(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), loader, epochs=60,
                 progress=False)
    assert abs(model[0].weight.data[0, 0] - 2) < 1e-3 and abs(model[0].bias.data[0]) < 1e-3


def test_real_mnist_mlp_one_epoch_reaches_95_percent(mnist_dir):
    train, test = cg.data.mnist_loaders(mnist_dir, batch_size=64, seed=0)
    model = cg.models.mlp(seed=0)
    with cg.threads(1):  # same bits as any thread count; robust on a busy (shared) CI machine
        history = cg.train.fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-3),
                               train, epochs=1, val_loader=test, progress=False)
    assert history["val_accuracy"][0] >= 0.95, history


def test_fit_accepts_any_iterable_of_batches(capsys):
    model = cg.models.linear_regression(dtype=F64, seed=0)
    x = np.linspace(-1, 1, 8).reshape(-1, 1)
    batches = iter([(x, 2 * x), (x, 2 * x)])  # one-shot, no len(), no set_epoch()
    history = cg.train.fit(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), batches,
                           epochs=1)
    assert history["epoch"] == [1] and history["accuracy"] == [None]
    assert "epoch 1/1" in capsys.readouterr().err


# -- accuracy for probability targets ------------------------------------------------------

def test_accuracy_for_one_hot_and_probability_targets(fake_mnist):
    _, test = _fake_loaders(fake_mnist)
    model = cg.models.mlp(sizes=(784, 32, 10), seed=0)
    x, y = next(iter(test))
    one_hot = np.eye(10, dtype=np.float32)[y]
    smoothed = 0.9 * one_hot + 0.01  # label smoothing 0.1: rows still sum to 1
    loss_fn = nn.CrossEntropyLoss()
    want = np.mean(model(x).data.argmax(1) == y)
    for targets in (y, one_hot, smoothed, cg.tensor(smoothed)):
        loader = cg.data.DataLoader(x, targets, 16, shuffle=False)
        assert cg.train.evaluate(model, loader, loss_fn)["accuracy"] == want
    assert 0 < want < 1
    history = cg.train.fit(model, loss_fn, optim.Adam(model.parameters(), lr=3e-3),
                           cg.data.DataLoader(x, one_hot, 16, seed=0), epochs=2, progress=False,
                           val_loader=cg.data.DataLoader(x, smoothed, 64, shuffle=False))
    assert history["accuracy"][1] > history["accuracy"][0] and history["val_accuracy"][1] > 0.5


def test_no_accuracy_for_regression_targets():
    model = cg.models.mlp(sizes=(4, 8, 3), dtype=F64, seed=0)
    x = np.random.default_rng(0).standard_normal((10, 4))
    for y in (x[:, :3] * 5,                          # real values
              np.abs(x[:, :3]),                      # non-negative, rows not summing to 1
              np.full((10, 3), 0.5),                 # rows sum to 1.5
              np.eye(4)[np.arange(10) % 4]):         # (N, 4): not the logits' shape
        loader = cg.data.DataLoader(x, y, 5, shuffle=False)
        assert cg.train.evaluate(model, loader)["accuracy"] is None
    onehot = np.eye(3)[np.arange(10) % 3]  # MSE on one-hot rows: a classification after all
    assert cg.train.evaluate(model, cg.data.DataLoader(x, onehot, 5), nn.MSELoss())["accuracy"] \
        == np.mean(model(x).data.argmax(1) == np.arange(10) % 3)


# -- callbacks -------------------------------------------------------------------------------

def _overfitting_run(tmp_path, epochs, callbacks=(), **kwargs):
    """A noisy 5-class problem on which val_loss bottoms out at epoch 5 (lr 0.01) and
    then rises: from a torch-form DataLoader over a random_split TensorDataset."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((20, 5))
    x = rng.standard_normal((300, 20))
    y = (x @ w + 2.0 * rng.standard_normal((300, 5))).argmax(1)
    train, val = cg.data.random_split(cg.data.TensorDataset(x, y), [200, 100], generator=0)
    model = cg.models.mlp(sizes=(20, 64, 5), dtype=F64, seed=0)
    opt = optim.Adam(model.parameters(), lr=0.01)
    history = cg.train.fit(model, nn.CrossEntropyLoss(), opt,
                           cg.data.DataLoader(train, 20, shuffle=True, seed=1), epochs=epochs,
                           val_loader=cg.data.DataLoader(val, 100),
                           callbacks=list(callbacks), **{"progress": False, **kwargs})
    return model, history


def _early(**kwargs):
    return cg.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True,
                                      **kwargs)


def test_early_stopping_stops_and_restores_the_best_weights(tmp_path):
    at_best, best_hist = _overfitting_run(tmp_path, 5)
    es = _early()
    model, history = _overfitting_run(tmp_path, 30, [es])
    assert es.best_epoch == 5 and es.stopped_epoch == 7 and history["epoch"] == list(range(1, 8))
    assert es.best == min(history["val_loss"]) == history["val_loss"][4] == best_hist["val_loss"][4]
    assert np.array_equal(model.flat_buffers()[0], at_best.flat_buffers()[0])
    keep = cg.callbacks.EarlyStopping(patience=2)  # without restore_best_weights: the last ones
    last, _ = _overfitting_run(tmp_path, 30, [keep])
    assert keep.stopped_epoch == 7 and not np.array_equal(last.flat_buffers()[0],
                                                          at_best.flat_buffers()[0])


def test_early_stopping_state_survives_resume(tmp_path, capsys):
    full, full_hist = _overfitting_run(tmp_path, 30, [_early()])
    ck = tmp_path / "ck.npz"
    _overfitting_run(tmp_path, 6, [_early()], checkpoint=ck)  # best epoch 5, one epoch of patience
    state = cg.io.read(ck)[1]["meta"]["callbacks"]["EarlyStopping"]
    assert (state["best_epoch"], state["wait"], state["stopped_epoch"]) == (5, 1, 0)
    es = _early()
    resumed, hist = _overfitting_run(tmp_path, 30, [es], checkpoint=ck, resume=True)
    assert _same_run(full_hist, hist) and es.stopped_epoch == 7 and es.best_epoch == 5
    assert np.array_equal(full.flat_buffers()[0], resumed.flat_buffers()[0])  # epoch 5's, saved
    assert cg.io.read(ck)[1]["meta"]["stopped_by"] == "EarlyStopping"
    # a stopped run is finished: resuming it trains nothing, and restores the best weights again
    again, hist = _overfitting_run(tmp_path, 30, [_early()], checkpoint=ck, resume=True,
                                   progress="epoch")
    assert hist["epoch"] == list(range(1, 8))
    assert np.array_equal(full.flat_buffers()[0], again.flat_buffers()[0])
    assert "stopped by EarlyStopping after epoch 7" in capsys.readouterr().err


def _records(values, key="val_loss"):
    return [{"epoch": i + 1, key: v} for i, v in enumerate(values)]


@pytest.mark.parametrize("kwargs,values,best_epoch,stopped_epoch", [
    (dict(patience=0), [1.0, 0.9, 0.95, 0.5], 2, 3),
    (dict(patience=1), [1.0, 0.9, 0.95, 0.5], 2, 3),  # as Keras: 1 stops like 0
    (dict(patience=2), [1.0, 0.9, 0.95, 0.5, 0.6, 0.7], 4, 6),
    (dict(patience=2, min_delta=0.1), [1.0, 0.95, 0.8, 0.75, 0.72], 3, 5),
    (dict(patience=0, min_delta=-0.1), [1.0, 0.95], 1, 2),  # |min_delta|, as Keras
    (dict(patience=2, monitor="val_accuracy"), [0.5, 0.6, 0.6, 0.59, 0.7], 2, 4),
    (dict(patience=0, monitor="seconds", mode="max"), [3.0, 4.0, 2.0], 2, 3),
    (dict(patience=0), [float("nan"), 1.0, 2.0], 2, 3),  # NaN never improves
    (dict(patience=3), [1.0, 0.9, 0.8], 3, 0),
])
def test_early_stopping_rule(kwargs, values, best_epoch, stopped_epoch):
    es = cg.callbacks.EarlyStopping(**kwargs)
    es.on_train_begin(None, {})
    monitor = kwargs.get("monitor", "val_loss")
    for i, record in enumerate(_records(values, monitor)):  # as fit: until the first stop
        stop = es.on_epoch_end(i, record)
        assert stop == (i + 1 == stopped_epoch)
        if stop:
            break
    assert es.best_epoch == best_epoch and es.stopped_epoch == stopped_epoch
    assert es.best == values[best_epoch - 1]


def test_early_stopping_argument_errors():
    with pytest.raises(ValueError, match="mode='min'"):
        cg.callbacks.EarlyStopping(monitor="seconds")
    with pytest.raises(ValueError, match="mode must be"):
        cg.callbacks.EarlyStopping(mode="up")
    with pytest.raises(ValueError, match="patience"):
        cg.callbacks.EarlyStopping(patience=-1)
    model = cg.models.linear_regression(dtype=F64, seed=0)
    x = np.linspace(-1, 1, 8).reshape(-1, 1)
    with pytest.raises(ValueError, match="monitors 'val_loss'.*needs a val_loader"):
        cg.train.fit(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1),
                     cg.data.DataLoader(x, 2 * x, 4), epochs=2, progress=False,
                     callbacks=[cg.train.EarlyStopping()])


def _csv_rows(path, sep=","):
    import csv
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=sep))


def test_csv_logger_rows_equal_the_history(tmp_path):
    log = tmp_path / "logs" / "run.csv"
    _, history = _overfitting_run(tmp_path, 3, [cg.callbacks.CSVLogger(log, separator=";")])
    rows = _csv_rows(log, ";")
    assert rows[0] == list(cg.train.HISTORY_KEYS) and len(rows) == 4
    for i, row in enumerate(rows[1:]):
        assert int(row[0]) == history["epoch"][i]
        assert [float(v) for v in row[1:]] == [history[k][i] for k in cg.train.HISTORY_KEYS[1:]]
    model = cg.models.linear_regression(dtype=F64, seed=0)  # regression: no accuracy
    x = np.linspace(-1, 1, 8).reshape(-1, 1)
    cg.train.fit(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1),
                 cg.data.DataLoader(x, 2 * x, 4), epochs=1, progress=False,
                 callbacks=[cg.callbacks.CSVLogger(log)])
    rows = _csv_rows(log)
    assert len(rows) == 2 and rows[1][2] == rows[1][3] == rows[1][4] == ""  # None -> empty


def test_csv_logger_on_resume_and_append(tmp_path):
    full_log, log, ck = tmp_path / "full.csv", tmp_path / "log.csv", tmp_path / "ck.npz"
    _overfitting_run(tmp_path, 4, [cg.callbacks.CSVLogger(full_log)])
    _overfitting_run(tmp_path, 2, [cg.callbacks.CSVLogger(log)], checkpoint=ck)
    _overfitting_run(tmp_path, 4, [cg.callbacks.CSVLogger(log)], checkpoint=ck, resume=True)
    untimed = lambda rows: [r[:5] for r in rows]  # noqa: E731 (seconds, images/s differ)
    assert untimed(_csv_rows(log)) == untimed(_csv_rows(full_log)) and len(_csv_rows(log)) == 5
    appended = tmp_path / "appended.csv"
    _overfitting_run(tmp_path, 2, [cg.callbacks.CSVLogger(appended, append=True)], checkpoint=ck.with_name("a.npz"))
    _overfitting_run(tmp_path, 4, [cg.callbacks.CSVLogger(appended, append=True)],
                     checkpoint=ck.with_name("a.npz"), resume=True)
    assert untimed(_csv_rows(appended)) == untimed(_csv_rows(full_log))  # one header


class Recorder(cg.callbacks.Callback):
    """Records the calls; stops after epoch `stop_at` (0-based); its state is a counter."""

    def __init__(self, stop_at=None):
        self.calls, self.stop_at, self.counter, self.loaded = [], stop_at, 0, None

    def on_train_begin(self, model, history):
        self.calls.append(("begin", len(history["epoch"])))

    def on_epoch_end(self, epoch, record):
        self.calls.append(("epoch", epoch, record["epoch"]))
        record["loss"] = -1.0  # a callback gets a copy: the history is not changed
        self.counter += 1
        return epoch == self.stop_at

    def on_train_end(self, model, history):
        self.calls.append(("end", len(history["epoch"])))

    def state_dict(self):
        return {"counter": self.counter}

    def load_state_dict(self, state):
        self.loaded = state
        self.counter = state["counter"]


def test_callback_protocol_order_state_and_stop(tmp_path):
    ck = tmp_path / "ck.npz"
    first, second, bare = Recorder(), Recorder(), object()  # no methods at all: nothing called
    _, history = _overfitting_run(tmp_path, 2, [first, bare, second], checkpoint=ck)
    assert first.calls == [("begin", 0), ("epoch", 0, 1), ("epoch", 1, 2), ("end", 2)]
    assert -1.0 not in history["loss"]
    assert cg.io.read(ck)[1]["meta"]["callbacks"] == {"Recorder": {"counter": 2},
                                                      "Recorder#2": {"counter": 2}}
    resumed = Recorder(stop_at=3)
    _, history = _overfitting_run(tmp_path, 10, [resumed], checkpoint=ck, resume=True)
    assert resumed.loaded == {"counter": 2} and resumed.counter == 4
    assert resumed.calls == [("begin", 2), ("epoch", 2, 3), ("epoch", 3, 4), ("end", 4)]
    assert history["epoch"] == [1, 2, 3, 4]
    assert cg.io.read(ck)[1]["meta"]["stopped_by"] == "Recorder"
    assert cg.callbacks.EarlyStopping is cg.train.EarlyStopping


MPI_SCRIPT = '''
import sys
import numpy as np
import cygrad as cg
from cygrad import distributed

class StopOnRankZero(cg.callbacks.Callback):
    rank_zero_only = True
    def on_epoch_end(self, epoch, record):
        return epoch == 1

out = sys.argv[1]
rank = distributed.init().rank
rng = np.random.default_rng(0)
x, y = rng.standard_normal((64, 6)), rng.integers(0, 3, 64)
model = cg.models.mlp((6, 8, 3), dtype=np.float64, seed=0)
opt = cg.optim.Adam(model.parameters(), lr=1e-2)
loader = cg.data.DataLoader(cg.data.TensorDataset(x, y), 8, shuffle=True)
history = cg.train.fit(model, cg.nn.CrossEntropyLoss(), opt, loader, epochs=5, progress=False,
                       distributed=True, callbacks=[StopOnRankZero(),
                                                    cg.callbacks.CSVLogger(f"{out}/log{rank}.csv")])
with open(f"{out}/epochs{rank}.txt", "w") as f:
    f.write(str(history["epoch"]))
'''


def test_distributed_callbacks_stop_every_rank_and_log_on_rank_zero(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path
    from cygrad import distributed
    mpiexec = Path(sys.executable).with_name("mpiexec")
    if not distributed.available() or not mpiexec.exists():
        pytest.skip("needs mpi4py and mpiexec")
    script = tmp_path / "worker.py"
    script.write_text(MPI_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               PYTHONPATH=str(Path(cg.__file__).resolve().parents[1]))
    proc = subprocess.run([str(mpiexec), "-n", "2", sys.executable, str(script), str(tmp_path)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for rank in (0, 1):
        assert (tmp_path / f"epochs{rank}.txt").read_text() == "[1, 2]"  # rank 0 decided
    assert len(_csv_rows(tmp_path / "log0.csv")) == 3 and not (tmp_path / "log1.csv").exists()


def _scheduled(fake_mnist, epochs, make_scheduler, **kwargs):
    train, test = _fake_loaders(fake_mnist)
    model = _model(0, False)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = make_scheduler(opt, len(train))
    history = cg.train.fit(model, nn.CrossEntropyLoss(), opt, train, epochs=epochs,
                           val_loader=test, progress=False, scheduler=sched, **kwargs)
    return model, opt, sched, history, len(train)


def test_fit_steps_a_per_epoch_scheduler_once_per_epoch(fake_mnist):
    _, opt, sched, _, _ = _scheduled(
        fake_mnist, 3, lambda o, n: optim.lr_scheduler.CosineAnnealingLR(o, T_max=3))
    assert sched.last_epoch == 3
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-15)  # cos(pi): the end


def test_fit_steps_onecycle_after_every_batch(fake_mnist):
    _, opt, sched, _, n = _scheduled(
        fake_mnist, 2, lambda o, n: optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=2 * n))
    assert sched.last_epoch == 2 * n
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(1))
    t_sched = torch.optim.lr_scheduler.OneCycleLR(torch.optim.SGD([p], lr=0.1, momentum=0.9),
                                                  max_lr=0.1, total_steps=2 * n)
    for _ in range(2 * n):
        t_sched.optimizer.step()
        t_sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(t_sched.get_last_lr()[0], rel=1e-12)


def test_fit_gives_reduce_on_plateau_the_validation_loss(fake_mnist):
    seen = []

    class Spy(optim.lr_scheduler.ReduceLROnPlateau):
        def step(self, metrics, epoch=None):
            seen.append(metrics)
            return super().step(metrics)

    _, _, _, history, _ = _scheduled(fake_mnist, 2, lambda o, n: Spy(o, patience=0))
    assert seen == history["val_loss"]


def test_fit_refuses_a_scheduler_mixing_intervals(fake_mnist):
    train, _ = _fake_loaders(fake_mnist)
    model = _model(0, False)
    opt = optim.SGD(model.parameters(), lr=0.1)
    mixed = optim.lr_scheduler.SequentialLR(
        opt, [optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10),
              optim.lr_scheduler.StepLR(opt, 1)], milestones=[10])
    with pytest.raises(ValueError, match="interval"):
        cg.train.fit(model, nn.CrossEntropyLoss(), opt, train, epochs=1, progress=False,
                     scheduler=mixed)


def test_resume_continues_the_schedule_bitwise(fake_mnist, tmp_path):
    make = lambda o, n: optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5)  # noqa: E731
    full, _, full_sched, h_full, _ = _scheduled(fake_mnist, 3, make)
    ck = tmp_path / "sched.npz"
    _scheduled(fake_mnist, 2, make, checkpoint=ck)
    resumed, opt, sched, h_res, _ = _scheduled(fake_mnist, 3, make, checkpoint=ck, resume=True)
    assert sched.last_epoch == full_sched.last_epoch == 3
    assert opt.param_groups[0]["lr"] == 0.1 * 0.5 ** 3
    assert np.array_equal(full.flat_buffers()[0], resumed.flat_buffers()[0])
    assert _same_run(h_full, h_res)


def test_early_stopping_weights_are_a_plain_array_in_the_checkpoint(fake_mnist, tmp_path):
    ck = tmp_path / "es.npz"
    stop = cg.train.EarlyStopping(monitor="val_loss", restore_best_weights=True, patience=5)
    model, _, _ = _fit(fake_mnist, tmp_path, 2, checkpoint=ck, callbacks=[stop])
    arrays, info = cg.io.read(ck)
    stored = arrays["extra/callback/EarlyStopping/best_weights"]
    assert stored.dtype == np.float32 and stored.size == model.num_parameters()
    assert info["meta"]["callbacks"]["EarlyStopping"]["best_weights"] == {
        "__array__": "callback/EarlyStopping/best_weights"}


# -- divergence, argument checks, history with reduction='sum' (issue 15) --------------------

class _NaNFrom(cg.data.DataLoader):
    """Batches turn NaN from step `step` (1-based) of epoch `epoch` (1-based) on."""

    def poison(self, epoch, step):
        self.bad = (epoch, step)
        return self

    def __iter__(self):
        epoch = self.epoch + 1
        for i, (xb, yb) in enumerate(super().__iter__()):
            yield (xb * np.nan if (epoch, i + 1) >= self.bad else xb), yb


def _poisoned_loaders(fake_mnist, epoch, step):
    train, test = _fake_loaders(fake_mnist)
    train.__class__ = _NaNFrom
    return train.poison(epoch, step), test


def test_a_diverging_run_stops_at_the_step_and_keeps_the_last_checkpoint(fake_mnist, tmp_path):
    ck = tmp_path / "ck.npz"
    _fit(fake_mnist, tmp_path, 1, checkpoint=ck)
    saved = ck.read_bytes()
    train, test = _poisoned_loaders(fake_mnist, 2, 3)
    model = _model(0, False)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    with pytest.raises(cg.train.DivergenceError, match=r"the loss is nan at epoch 2, step 3 "
                       rf"\({ck} keeps epoch 1\); lower the learning rate, or pass "
                       r"on_nan='warn' \(--on-nan warn\) to go on anyway") as e:
        cg.train.fit(model, nn.CrossEntropyLoss(), opt, train, epochs=3, val_loader=test,
                     progress=False, checkpoint=ck, resume=True)
    assert (e.value.epoch, e.value.step) == (2, 3) and np.isnan(e.value.value)
    assert isinstance(e.value, ValueError)
    assert ck.read_bytes() == saved  # never overwritten by the NaN epoch
    assert np.isfinite(opt.data).all() and opt.step_count == 8 + 2  # the NaN step was not taken


def test_a_huge_learning_rate_is_stopped():
    x = np.random.default_rng(0).standard_normal((64, 784)).astype(np.float32)
    loader = cg.data.DataLoader(x, np.arange(64) % 10, 16)
    model = cg.models.mlp(seed=0)
    with pytest.raises(cg.train.DivergenceError, match="training diverged"):
        cg.train.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=1e9), loader,
                     epochs=5, progress=False)


class _PoisonAfter(optim.SGD):
    """Writes NaN into the parameters at its `at`-th step (the loss stays finite)."""

    def step(self, closure=None):
        super().step(closure)
        if self.step_count == self.at:
            self.data[0] = np.nan


def test_non_finite_parameters_after_an_epoch_are_never_checkpointed(fake_mnist, tmp_path):
    train, _ = _fake_loaders(fake_mnist)  # 256 / 32: 8 steps per epoch, no validation
    model = _model(0, False)
    opt = _PoisonAfter(model.parameters(), lr=0.01)
    opt.at = 16
    ck = tmp_path / "ck.npz"
    with pytest.raises(cg.train.DivergenceError, match="after epoch 2 the parameters are not "
                       rf"finite \({ck} keeps epoch 1\)"):
        cg.train.fit(model, nn.CrossEntropyLoss(), opt, train, epochs=3, progress=False,
                     checkpoint=ck)
    assert cg.io.read(ck)[1]["meta"]["epoch"] == 1


def test_on_nan_warn_goes_on_but_checkpoints_only_finite_parameters(fake_mnist, tmp_path):
    ck = tmp_path / "ck.npz"
    train, test = _poisoned_loaders(fake_mnist, 2, 3)
    model = _model(0, False)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    with pytest.warns(RuntimeWarning) as warned:
        history = cg.train.fit(model, nn.CrossEntropyLoss(), opt, train, epochs=3,
                               val_loader=test, progress=False, checkpoint=ck, on_nan="warn")
    messages = [str(w.message) for w in warned]
    assert len(messages) == 2  # once per epoch that had non-finite values
    assert messages[0].startswith("epoch 2: the loss was not finite at 6 steps (first: step 3, nan)")
    assert messages[1].startswith("epoch 3: the loss was not finite at 8 steps (first: step 1, nan)")
    assert all(m.endswith(f"the parameters are not finite; not saved ({ck} keeps epoch 1)")
               for m in messages)
    assert history["epoch"] == [1, 2, 3] and np.isnan(history["loss"][1:]).all()
    assert opt.step_count == 24 and cg.io.read(ck)[1]["meta"]["epoch"] == 1


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(epochs=0), ValueError, "epochs must be >= 1, got 0"),
    (dict(epochs=-1), ValueError, "epochs must be >= 1, got -1"),
    (dict(epochs=2.0), TypeError, "epochs must be an int, got float"),
    (dict(epochs=1, l1=float("nan")), ValueError, "l1 must be finite and >= 0, got nan"),
    (dict(epochs=1, l1=-0.1), ValueError, "l1 must be finite and >= 0"),
    (dict(epochs=1, l1="0.1"), TypeError, "l1 must be a real number"),
    (dict(epochs=1, on_nan="ignore"), ValueError, "on_nan must be 'stop' or 'warn'"),
    (dict(epochs=1, progress="bar"), ValueError, "progress must be True, False or 'epoch'"),
])
def test_fit_checks_its_arguments_before_training(kwargs, error, match):
    model = cg.models.linear_regression(dtype=F64, seed=0)
    before = model.flat_buffers()[0].copy()
    loader = cg.data.DataLoader(np.ones((4, 1)), np.ones((4, 1)), 2)
    with pytest.raises(error, match=match):
        cg.train.fit(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), loader,
                     **{"progress": False, **kwargs})
    assert np.array_equal(model.flat_buffers()[0], before)


def test_an_empty_training_loader_is_an_error_not_a_zero_loss():
    model = cg.models.linear_regression(dtype=F64, seed=0)
    loader = cg.data.DataLoader(np.ones((0, 1)), np.ones((0, 1)), 2)
    with pytest.raises(ValueError, match="no samples in epoch 1"):
        cg.train.fit(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), loader,
                     epochs=1, progress=False)


@pytest.mark.parametrize("loss_fn", [nn.CrossEntropyLoss, nn.MSELoss])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_history_loss_follows_the_reduction(loss_fn, reduction):
    """mean: the mean of the batch means (weighted by batch size); sum: the total / N."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6))
    y = rng.integers(0, 3, 40) if loss_fn is nn.CrossEntropyLoss else rng.standard_normal((40, 3))
    loader = cg.data.DataLoader(x, y, 8, seed=0)
    model = cg.models.mlp(sizes=(6, 5, 3), dtype=F64, seed=0)
    opt = optim.SGD(model.parameters(), lr=0.0)  # the model stays as it is
    history = cg.train.fit(model, loss_fn(reduction=reduction), opt, loader, epochs=1,
                           val_loader=loader, progress=False)
    want = loss_fn(reduction=reduction)(model(x), y).item() / (40 if reduction == "sum" else 1)
    assert np.isclose(history["loss"][0], want, rtol=1e-12)
    assert np.isclose(history["val_loss"][0], want, rtol=1e-12)


def test_resuming_a_finished_run_says_there_is_nothing_to_do(fake_mnist, tmp_path, capsys):
    ck = tmp_path / "ck.npz"
    model, _, history = _fit(fake_mnist, tmp_path, 2, checkpoint=ck)
    saved = ck.read_bytes()
    again, _, resumed = _fit(fake_mnist, tmp_path, 2, checkpoint=ck, resume=True, progress="epoch")
    assert f"the run in {ck} has completed 2 epochs (epochs=2): nothing to do" in \
        capsys.readouterr().err
    assert _same_run(history, resumed) and ck.read_bytes() == saved
    assert np.array_equal(model.flat_buffers()[0], again.flat_buffers()[0])
