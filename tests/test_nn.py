"""cygrad.nn: module machinery, flat buffers, initialisation, layers' gradients, losses, errors."""
import numpy as np
import pytest

import cygrad as cg
from cygrad import nn
from cygrad.testing import gradcheck

F64 = np.float64


def _layer_gradcheck(layer, x, backend="reference"):
    """Check d(sum(y * w))/d(x and every parameter) of one layer against finite differences."""
    with cg.use_backend(backend):
        params = layer.parameters()

        def fn(x, *values):
            for p, v in zip(params, values):
                p.data[...] = v
            with cg.no_grad():
                return layer(x).data

        def grads(w):
            xt = cg.tensor(x, requires_grad=True)
            layer.zero_grad()
            layer(xt).backward(w)
            return [xt.grad] + [p.grad.copy() for p in params]

        return gradcheck(fn, [x] + [p.data.copy() for p in params], grads)


def test_sequential_parameters_are_views_of_one_buffer():
    model = cg.models.mlp(dtype=F64, seed=1)
    data, grad = model.flat_buffers()
    assert data.ndim == 1 and data.size == 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10 == 109386
    for p in model.parameters():
        assert p.data.base is data and p.grad.base is grad
    data2, grad2 = model.flat_buffers()  # already flat: the same buffers again
    assert data2.base is data or data2 is data
    model[0].weight.data[0, 0] = 123.0
    assert data[0] == 123.0  # views, not copies
    model.zero_grad()
    assert not grad.any()


def test_state_dict_keys_and_shapes_as_torch_sequential():
    sd = cg.models.cnn().state_dict()
    assert [(k, v.shape) for k, v in sd.items()] == [
        ("0.weight", (32, 1, 3, 3)), ("0.bias", (32,)), ("3.weight", (64, 32, 3, 3)),
        ("3.bias", (64,)), ("7.weight", (128, 1600)), ("7.bias", (128,)),
        ("9.weight", (10, 128)), ("9.bias", (10,))]


def test_state_dict_round_trips_with_torch():
    torch = pytest.importorskip("torch")
    ours = cg.models.cnn(seed=0)
    theirs = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Conv2d(32, 64, 3),
        torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(1600, 128),
        torch.nn.ReLU(), torch.nn.Linear(128, 10))
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        want = theirs(torch.from_numpy(x)).numpy()
    assert np.allclose(ours.eval()(x), want, atol=1e-5)
    other = cg.models.cnn(seed=5)
    other.load_state_dict(theirs.state_dict())  # torch tensors straight in
    assert all(np.array_equal(a, b) for a, b in zip(other.state_dict().values(),
                                                     ours.state_dict().values()))


def test_default_init_is_torch_bounds_and_seeded():
    a, b, c = (cg.models.mlp(seed=s) for s in (7, 7, 8))
    assert all(np.array_equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not np.array_equal(a[0].weight.data, c[0].weight.data)
    w = a[0].weight.data
    bound = 1 / np.sqrt(784)  # kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.01 * bound
    conv = nn.Conv2d(3, 4, 5)
    assert np.abs(conv.bias.data).max() <= 1 / np.sqrt(75)
    cg.manual_seed(3)
    first = nn.Linear(4, 2).weight.data.copy()
    cg.manual_seed(3)
    assert np.array_equal(nn.Linear(4, 2).weight.data, first)
    assert a[0].weight.dtype == np.float32 and cg.models.mlp(dtype=F64)[0].weight.dtype == F64


def test_load_state_dict_errors():
    model = cg.models.mlp()
    sd = model.state_dict()
    with pytest.raises(ValueError, match=r"missing keys \['4.bias'\]"):
        model.load_state_dict({k: v for k, v in sd.items() if k != "4.bias"})
    with pytest.raises(ValueError, match=r"unexpected keys \['5.weight'\]"):
        model.load_state_dict({**sd, "5.weight": np.zeros(3)})
    bad = dict(sd, **{"2.weight": np.zeros((3, 3))})
    before = model[0].weight.data.copy()
    model[0].weight.data[...] += 1  # differs from sd
    with pytest.raises(ValueError, match=r"'2.weight' has shape \(3, 3\)"):
        model.load_state_dict(bad)
    assert np.array_equal(model[0].weight.data, before + 1)  # nothing loaded: all or nothing
    missing, unexpected = model.load_state_dict({"0.bias": sd["0.bias"], "x": 1}, strict=False)
    assert "0.weight" in missing and unexpected == ["x"]


@pytest.mark.parametrize("backend", ["reference", "kernels"])
def test_linear_gradients(backend):
    rng = np.random.default_rng(0)
    layer = nn.Linear(5, 3, dtype=F64, rng=1)
    _layer_gradcheck(layer, rng.standard_normal((4, 5)), backend)
    _layer_gradcheck(nn.Linear(5, 3, bias=False, dtype=F64), rng.standard_normal((2, 5)), backend)


@pytest.mark.parametrize("backend", ["reference", "kernels"])
def test_conv2d_gradients(backend):
    rng = np.random.default_rng(1)
    layer = nn.Conv2d(2, 3, 3, stride=2, padding=1, dtype=F64, rng=0)
    _layer_gradcheck(layer, rng.standard_normal((2, 2, 5, 6)), backend)


@pytest.mark.parametrize("make", [
    lambda: nn.MaxPool2d(2), lambda: nn.AvgPool2d(3, stride=2, padding=1), lambda: nn.Flatten()])
@pytest.mark.parametrize("backend", ["reference", "kernels"])
def test_pool_and_flatten_gradients(make, backend):
    layer = make()
    x = np.random.default_rng(2).permutation(2 * 3 * 6 * 6).reshape(2, 3, 6, 6) / 7.0  # no ties
    _layer_gradcheck(layer, x, backend)


@pytest.mark.parametrize("cls", [nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh])
@pytest.mark.parametrize("backend", ["reference", "kernels"])
def test_activation_gradients(cls, backend):
    x = np.random.default_rng(3).standard_normal((4, 6))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from ReLU's kink
    _layer_gradcheck(cls(dtype=F64), x, backend)


def test_dropout_train_and_eval():
    layer = nn.Dropout(0.25, seed=11, dtype=F64)
    x = cg.tensor(np.ones((200, 50)), requires_grad=True)
    y = layer(x).data
    kept = y != 0
    assert 0.7 < kept.mean() < 0.8 and np.allclose(y[kept], 1 / 0.75)
    layer(x).backward(np.ones((200, 50)))  # (the next call draws the next mask...)
    assert not np.array_equal(x.grad != 0, kept)  # a fresh mask per call
    x.grad = None
    layer.seed, layer.calls = 11, 0   # (...so replay the first call's seed)
    layer(x).backward(np.ones((200, 50)))
    assert np.array_equal(x.grad != 0, kept) and np.allclose(x.grad[kept], 1 / 0.75)
    layer.eval()
    assert np.array_equal(layer(x).data, x.data)
    with pytest.raises(ValueError, match="probability"):
        nn.Dropout(1.5)
    z = cg.tensor(np.array([np.nan, 2.0]), requires_grad=True)
    out = nn.Dropout(1.0)(z)           # p = 1 drops everything, as torch (NaN * 0 stays NaN)
    out.sum().backward()
    assert np.isnan(out.data[0]) and out.data[1] == 0 and not z.grad.any()


def test_loss_backward_fills_every_gradient_and_input_grad_is_optional():
    model = cg.models.mlp(sizes=(6, 5, 4), dtype=F64, seed=0)
    x = np.random.default_rng(0).standard_normal((3, 6))
    loss_fn = nn.CrossEntropyLoss()
    xt = cg.tensor(x, requires_grad=True)
    loss = loss_fn(model(xt), np.array([0, 3, 1]))
    assert isinstance(loss, cg.Tensor) and loss.shape == () and isinstance(loss.item(), float)
    loss.backward()
    assert xt.grad.shape == x.shape and all(p.grad.any() for p in model.parameters())
    g1 = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    out = model(x)  # an ndarray input: no gradient is computed for it
    loss_fn(out, np.array([0, 3, 1])).backward()
    assert all(np.array_equal(a, p.grad) for a, p in zip(g1, model.parameters()))
    loss_fn(model(x), np.array([0, 3, 1])).backward()  # without zero_grad, gradients accumulate
    assert all(np.allclose(2 * a, p.grad) for a, p in zip(g1, model.parameters()))


def test_wrong_input_shapes_name_the_layer():
    model = cg.models.mlp()
    with pytest.raises(ValueError, match=r"Linear\(in_features=784.*\(5, 783\)"):
        model(np.zeros((5, 783), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d.*expected \(N, 1, H, W\)"):
        cg.models.cnn()(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d.*4-D"):
        cg.models.cnn()(np.zeros((2, 784), np.float32))
    with pytest.raises(ValueError, match=r"MaxPool2d.*smaller than the kernel"):
        nn.MaxPool2d(3)(np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(TypeError, match="float64.*float32"):
        model(np.zeros((5, 784)))


def test_old_explicit_backward_is_refused_and_graphs_run_once():
    layer = nn.Linear(3, 2)
    with pytest.raises(TypeError, match=r"loss\.backward\(\)"):
        layer.backward(np.zeros((1, 2), np.float32))
    with pytest.raises(TypeError, match=r"loss\.backward\(\)"):
        nn.MSELoss().backward()
    y = layer(np.zeros((4, 3), np.float32)).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()
    with cg.no_grad():  # evaluation records nothing
        z = layer(np.zeros((4, 3), np.float32))
    assert z.grad_fn is None and not z.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        z.sum().backward()


def test_losses_match_their_formulas():
    rng = np.random.default_rng(4)
    logits, y = rng.standard_normal((5, 4)), np.array([0, 3, 1, 1, 2], np.uint8)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    ce = nn.CrossEntropyLoss()
    assert np.isclose(ce(logits, y).item(), -logp[np.arange(5), y].mean(), rtol=1e-12)
    assert np.isclose(nn.CrossEntropyLoss(reduction="sum")(logits, y).item(),
                      -logp[np.arange(5), y].sum())
    smooth = nn.CrossEntropyLoss(label_smoothing=0.1)(logits, y).item()
    t = np.full((5, 4), 0.1 / 4)
    t[np.arange(5), y] += 0.9
    assert np.isclose(smooth, -(t * logp).sum(1).mean(), rtol=1e-12)
    pred, target = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    mse = nn.MSELoss()
    pt = cg.tensor(pred, requires_grad=True)
    loss = mse(pt, target)
    assert np.isclose(loss.item(), ((pred - target) ** 2).mean())
    loss.backward()
    assert np.allclose(pt.grad, 2 * (pred - target) / 6)
    p, t01 = 1 / (1 + np.exp(-pred)), (target > 0).astype(F64)
    bce = -(t01 * np.log(p) + (1 - t01) * np.log(1 - p)).mean()
    assert np.isclose(nn.BCEWithLogitsLoss()(pred, t01).item(), bce)
    assert np.isclose(nn.BCELoss()(p, t01).item(), bce)
    per_element = nn.MSELoss(reduction="none")(pred, target)
    np.testing.assert_allclose(per_element.data, (pred - target) ** 2)
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="average")


def test_labels_out_of_range_are_rejected():
    with pytest.raises(ValueError):
        nn.CrossEntropyLoss()(np.zeros((2, 10)), np.array([3, 10]))


def test_repr_and_summary(capsys):
    model = cg.models.cnn()
    assert "(7): Linear(in_features=1600, out_features=128, bias=True)" in repr(model)
    text = model.summary((1, 28, 28))
    assert "(None, 32, 26, 26)" in text and "(None, 1600)" in text and "225,034" in text
    assert "204,928" in capsys.readouterr().out
    assert model.training  # summary restores the mode


def test_backend_switching():
    assert cg.get_backend() == "kernels"
    with cg.use_backend("reference") as F:
        assert cg.get_backend() == "reference" and F is cg.reference
    assert cg.get_backend() == "kernels"
    with pytest.raises(ValueError, match="unknown backend"):
        cg.set_backend("cuda")
    cg.set_backend("reference")
    try:
        assert cg.backend.current() is cg.reference
    finally:
        cg.set_backend("kernels")


def test_parameter_free_layers_take_either_float_dtype():
    for dtype in (np.float32, np.float64):
        x = cg.tensor(np.ones((2, 1, 4, 4), dtype), requires_grad=True)
        layer = nn.MaxPool2d(2)
        y = layer(x)
        y.backward(np.ones(y.shape, dtype))
        assert y.dtype == dtype and x.grad.dtype == dtype
    with pytest.raises(TypeError, match="float32 or float64"):
        nn.Flatten()(np.ones((2, 2), np.int64))
    with pytest.raises(TypeError, match="float64"):
        nn.ReLU(dtype=np.float32)(np.ones((2, 2)))


def test_shared_parameters_are_listed_once():
    shared = nn.Linear(3, 3, dtype=F64)
    model = nn.Sequential(shared, nn.Tanh(), shared)
    assert list(model.state_dict()) == ["0.weight", "0.bias"]
    assert model.flat_buffers()[0].size == 12
