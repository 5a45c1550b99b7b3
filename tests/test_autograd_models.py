"""Models written as users write them (a Module subclass with __init__ and forward only):
residual blocks, a layer used twice, tied weights, two heads, custom losses, detach and
no_grad inside forward, a CNN with a skip connection. Their gradients against PyTorch
(float64), the reference backend and thread counts, and training with fit and by hand."""
import types

import numpy as np
import pytest

import cygrad as cg

F64 = np.float64


def _lib(name):
    """The namespace the model code below runs on: cygrad's, or torch's."""
    if name == "cygrad":
        return types.SimpleNamespace(nn=cg.nn, F=cg.nn.functional, no_grad=cg.no_grad,
                                     dtype=F64, index=lambda a: a, name="cygrad")
    torch = pytest.importorskip("torch")
    return types.SimpleNamespace(nn=torch.nn, F=torch.nn.functional, no_grad=torch.no_grad,
                                 dtype=torch.float64, index=torch.from_numpy, name="torch")


# Each builder takes the library namespace and returns (model, loss(model, x, y)); the
# same code defines the cygrad model and the torch model.

def residual_mlp(L):
    class ResidualMLP(L.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = L.nn.Linear(8, 16, dtype=L.dtype)
            self.fc2 = L.nn.Linear(16, 16, dtype=L.dtype)
            self.fc3 = L.nn.Linear(16, 4, dtype=L.dtype)

        def forward(self, x):
            h = L.F.relu(self.fc1(x))
            h = h + L.F.tanh(self.fc2(h))      # x + f(x)
            return self.fc3(h)

    return ResidualMLP(), lambda m, x, y: L.F.cross_entropy(m(x), y)


def layer_twice(L):
    class Twice(L.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = L.nn.Linear(8, 8, dtype=L.dtype)
            self.out = L.nn.Linear(8, 4, dtype=L.dtype)

        def forward(self, x):
            return self.out(self.lin(L.F.sigmoid(self.lin(x))))

    return Twice(), lambda m, x, y: L.F.cross_entropy(m(x), y)


def tied_weights(L):
    class Tied(L.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = L.nn.Linear(8, 8, dtype=L.dtype)
            self.mid = L.nn.Linear(8, 8, dtype=L.dtype)
            self.mid.weight = self.enc.weight      # one Parameter, two layers
            self.head = L.nn.Linear(8, 4, dtype=L.dtype)

        def forward(self, x):
            h = L.F.tanh(self.enc(x))
            h = L.F.relu(self.mid(h))
            h = L.F.linear(h, self.enc.weight.T)    # and once more, transposed
            return self.head(h)

    return Tied(), lambda m, x, y: L.F.cross_entropy(m(x), y)


def two_heads(L):
    class TwoHeads(L.nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = L.nn.Linear(8, 12, dtype=L.dtype)
            self.classify = L.nn.Linear(12, 4, dtype=L.dtype)
            self.regress = L.nn.Linear(12, 1, dtype=L.dtype)

        def forward(self, x):
            h = L.F.leaky_relu(self.trunk(x), 0.1)
            return self.classify(h), self.regress(h)

    def loss(m, x, y):
        logits, value = m(x)
        return L.F.cross_entropy(logits, y) + 0.5 * L.F.mse_loss(value[:, 0], x[:, 0] * 2)

    return TwoHeads(), loss


def custom_losses(L):
    """A multi-class hinge loss and a focal loss built from Tensor ops."""
    class Net(L.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = L.nn.Linear(8, 10, dtype=L.dtype)
            self.fc2 = L.nn.Linear(10, 4, dtype=L.dtype)

        def forward(self, x):
            return self.fc2(L.F.relu(self.fc1(x)))

    def loss(m, x, y):
        scores = m(x)
        rows = L.index(np.arange(len(y)))
        correct = scores[rows, y].reshape(-1, 1)
        hinge = (1.0 - correct + scores).clamp(min=0.0).sum(1).mean() - 1.0
        p = L.F.softmax(scores, dim=1)[rows, y]
        focal = (-((1 - p) ** 2) * p.log()).mean()
        return hinge + 2.0 * focal

    return Net(), loss


def detach_and_no_grad(L):
    class Partial(L.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = L.nn.Linear(8, 8, dtype=L.dtype)
            self.fc2 = L.nn.Linear(8, 4, dtype=L.dtype)
            self.fc3 = L.nn.Linear(8, 4, dtype=L.dtype)

        def forward(self, x):
            h = L.F.tanh(self.fc1(x))
            a = self.fc2(h.detach())           # fc1 gets nothing through this path
            with L.no_grad():
                b = self.fc3(h)                # a constant: fc3 gets no gradient
            return a * b + self.fc2(h)

    return Partial(), lambda m, x, y: L.F.cross_entropy(m(x), y)


def cnn_skip(L):
    class SkipCNN(L.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = L.nn.Conv2d(1, 4, 3, padding=1, dtype=L.dtype)
            self.conv2 = L.nn.Conv2d(4, 4, 3, padding=1, dtype=L.dtype)
            self.pool = L.nn.MaxPool2d(2)
            self.fc = L.nn.Linear(4 * 4 * 4, 4, dtype=L.dtype)

        def forward(self, x):
            h = L.F.relu(self.conv1(x))
            h = L.F.relu(self.conv2(h)) + h          # skip connection
            h = L.F.avg_pool2d(self.pool(h), 1)
            return self.fc(h.flatten(1))

    return SkipCNN(), lambda m, x, y: L.F.cross_entropy(m(x), y)


MODELS = {"residual_mlp": residual_mlp, "layer_twice": layer_twice, "tied_weights": tied_weights,
          "two_heads": two_heads, "custom_losses": custom_losses,
          "detach_and_no_grad": detach_and_no_grad, "cnn_skip": cnn_skip}


def _data(name, n=6, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, 1, 8, 8) if name == "cnn_skip" else (n, 8)
    return rng.standard_normal(shape), rng.integers(0, 4, n)


def _cygrad_grads(name, seed=0, data_seed=0):
    """(model, loss value, {name: grad}, input grad) of one backward on the cygrad model."""
    cg.manual_seed(seed)
    model, loss_fn = MODELS[name](_lib("cygrad"))
    x, y = _data(name, seed=data_seed)
    xt = cg.tensor(x, requires_grad=True)
    loss = loss_fn(model, xt, y)
    loss.backward()
    grads = {k: p.grad.copy() for k, p in model.named_parameters()}
    return model, loss.item(), grads, xt.grad


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_gradients_match_torch(name):
    torch = pytest.importorskip("torch")
    model, loss, grads, gx = _cygrad_grads(name)
    tmodel, tloss_fn = MODELS[name](_lib("torch"))
    state = {k: torch.from_numpy(v) for k, v in model.state_dict().items()}
    missing, unexpected = tmodel.load_state_dict(state, strict=False)
    assert not unexpected and all(k == "mid.weight" for k in missing)  # (tied: listed once)
    x, y = _data(name)
    tx = torch.from_numpy(x).requires_grad_(True)
    tloss = tloss_fn(tmodel, tx, torch.from_numpy(y))
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    tgrads = {k: p.grad for k, p in tmodel.named_parameters()}
    assert sorted(grads) == sorted(tgrads)
    errors = {k: _rel(g, tgrads[k].numpy()) if tgrads[k] is not None else float(np.abs(g).max())
              for k, g in grads.items()}
    errors["input"] = _rel(gx, tx.grad.numpy())
    assert max(errors.values()) <= 1e-12, errors


def test_detach_and_no_grad_block_their_paths():
    _, _, grads, _ = _cygrad_grads("detach_and_no_grad")
    assert not grads["fc3.weight"].any() and not grads["fc3.bias"].any()
    assert grads["fc1.weight"].any() and grads["fc2.weight"].any()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_reference_backend_replays_the_kernels(name):
    results = {}
    for backend in ("kernels", "reference"):
        with cg.use_backend(backend):
            cg.manual_seed(1)
            model, loss_fn = MODELS[name](_lib("cygrad"))
            opt = cg.optim.Adam(model.parameters(), lr=1e-2)
            for step in range(5):
                x, y = _data(name, seed=step)
                loss = loss_fn(model, x, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            results[backend] = model.flat_buffers()[0].copy()
    np.testing.assert_allclose(results["kernels"], results["reference"], rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["residual_mlp", "tied_weights", "cnn_skip"])
def test_one_and_two_threads_give_the_same_bits(name):
    runs = []
    for threads in (1, 2):
        with cg.threads(threads):
            _, loss, grads, gx = _cygrad_grads(name)
        runs.append((loss, [g.tobytes() for g in grads.values()], gx.tobytes()))
    assert runs[0] == runs[1]


def test_a_custom_module_trains_with_fit_and_with_the_manual_loop():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + 2 * (x[:, 2] > 0)  # 4 classes

    class Residual(cg.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = cg.nn.Linear(8, 32)
            self.block = cg.nn.Linear(32, 32)
            self.out = cg.nn.Linear(32, 4)

        def forward(self, x):
            h = cg.nn.functional.relu(self.inp(x))
            return self.out(h + cg.nn.functional.relu(self.block(h)))

    cg.manual_seed(0)
    model = Residual()
    opt = cg.optim.Adam(model.parameters(), lr=1e-2)
    loader = cg.data.DataLoader(x, y, 32, seed=0)
    history = cg.train.fit(model, cg.nn.CrossEntropyLoss(), opt, loader, epochs=8, progress=False)
    assert history["accuracy"][-1] > 0.95 and history["loss"][-1] < history["loss"][0] / 4

    cg.manual_seed(0)
    model = Residual()
    loss_fn = cg.nn.CrossEntropyLoss()
    opt = cg.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for epoch in range(8):
        loader.set_epoch(epoch)
        for xb, yb in loader:
            logits = model(xb); loss = loss_fn(logits, yb)  # noqa: E702  (torch's loop, word for word)
            opt.zero_grad(); loss.backward(); opt.step()    # noqa: E702
            losses.append(loss.item())
    np.testing.assert_allclose(np.mean(losses[-8:]), history["loss"][-1], rtol=1e-6)


def test_gradient_accumulation_over_two_batches_before_one_backward():
    """Two forward calls (and two criterion calls) before one backward: each call keeps
    its own state, so the gradient is the sum of the two batches' gradients."""
    model = cg.models.mlp(sizes=(8, 6, 4), dtype=F64, seed=0)
    loss_fn = cg.nn.CrossEntropyLoss()
    (x1, y1), (x2, y2) = _data("residual_mlp", seed=1), _data("residual_mlp", seed=2)
    separate = []
    for x, y in ((x1, y1), (x2, y2)):
        model.zero_grad()
        loss_fn(model(x), y).backward()
        separate.append(model.flat_buffers()[1].copy())
    model.zero_grad()
    first, second = loss_fn(model(x1), y1), loss_fn(model(x2), y2)
    (first + second).backward()
    np.testing.assert_allclose(model.flat_buffers()[1], separate[0] + separate[1], rtol=1e-13)


def test_sequential_with_one_layer_twice_matches_finite_differences():
    shared = cg.nn.Linear(3, 3, dtype=F64, rng=0)
    model = cg.nn.Sequential(shared, cg.nn.Tanh(), shared)
    x = np.random.default_rng(1).standard_normal((4, 3))
    w0 = shared.weight.data.copy()

    def value(w):
        shared.weight.data = w
        with cg.no_grad():
            return model(x).data

    cg.testing.gradcheck(value, [w0.copy()], lambda g: [_weight_grad(model, shared, x, g, w0)])


def _weight_grad(model, shared, x, g, w0):
    shared.weight.data = w0
    model.zero_grad()
    model(x).backward(g)
    return shared.weight.grad.copy()


def test_no_input_gradient_is_computed_for_data(monkeypatch):
    """The first layer's input (the batch) needs no gradient: conv2d_backward runs with
    input_grad=False there and True after it, as the old explicit input_grad=False did."""
    calls = []
    real = cg.kernels.conv2d_backward

    def spy(*args, input_grad=True, **kwargs):
        calls.append(input_grad)
        return real(*args, input_grad=input_grad, **kwargs)

    monkeypatch.setattr(cg.kernels, "conv2d_backward", spy)
    model = cg.models.cnn(seed=0)
    x = np.zeros((2, 1, 28, 28), np.float32)
    cg.nn.functional.cross_entropy(model(x), np.array([1, 2])).backward()
    assert calls == [True, False]  # backward order: conv2 (its input is conv1's output), conv1
    calls.clear()
    xt = cg.tensor(x, requires_grad=True)
    cg.nn.functional.cross_entropy(model(xt), np.array([1, 2])).backward()
    assert calls == [True, True] and xt.grad.shape == x.shape
