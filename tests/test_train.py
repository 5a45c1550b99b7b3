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
                           progress=False, **kwargs)
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
