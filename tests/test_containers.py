"""Containers and small modules: ModuleList, ModuleDict, Sequential (named, sliced, edited),
Identity, Softmax, LogSoftmax, Unflatten. The same model code runs on cygrad and torch:
state_dict keys, outputs and gradients must agree."""
import types
import warnings
from collections import OrderedDict

import numpy as np
import pytest

import cygrad as cg
from cygrad import nn
from cygrad.testing import gradcheck

F64 = np.float64


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _lib(name):
    """The namespace the model code below runs on: cygrad's, or torch's."""
    if name == "cygrad":
        return types.SimpleNamespace(nn=cg.nn, F=cg.nn.functional, dtype=F64, name="cygrad")
    torch = pytest.importorskip("torch")
    return types.SimpleNamespace(nn=torch.nn, F=torch.nn.functional, dtype=torch.float64,
                                 name="torch")


def tower(L):
    """A ModuleList of blocks and a ModuleDict of heads, as users write them."""
    class Tower(L.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = L.nn.ModuleList([L.nn.Linear(6, 8, dtype=L.dtype)])
            self.layers.extend([L.nn.Linear(8, 8, dtype=L.dtype) for _ in range(2)])
            self.acts = L.nn.ModuleList([L.nn.Tanh(), L.nn.ReLU(), L.nn.Identity()])
            self.heads = L.nn.ModuleDict({"cls": L.nn.Linear(8, 3, dtype=L.dtype)})
            self.heads["reg"] = L.nn.Sequential(OrderedDict([
                ("fc", L.nn.Linear(8, 4, dtype=L.dtype)), ("unflat", L.nn.Unflatten(1, (2, 2))),
                ("soft", L.nn.LogSoftmax(dim=-1))]))

        def forward(self, x):
            for layer, act in zip(self.layers, self.acts):
                x = act(layer(x))
            return self.heads["cls"](x), self.heads["reg"](x)

    def loss(m, x, y):
        logits, logp = m(x)
        return L.F.cross_entropy(logits, y) - logp[:, 0, 1].mean() + (logp[:, 1, :] ** 2).mean()

    return Tower(), loss


def named_cnn(L):
    return L.nn.Sequential(OrderedDict([
        ("conv", L.nn.Conv2d(2, 4, 3, dtype=L.dtype)), ("relu", L.nn.ReLU()),
        ("pool", L.nn.MaxPool2d(2)), ("flat", L.nn.Flatten()),
        ("fc", L.nn.Linear(4 * 3 * 3, 5, dtype=L.dtype)), ("soft", L.nn.Softmax(dim=1))]))


def _to_torch(torch, model, tmodel):
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((5, 6)), rng.integers(0, 3, 5)


def test_state_dict_keys_equal_torchs(torch):
    for build in (tower, named_cnn):
        ours, theirs = build(_lib("cygrad")), build(_lib("torch"))
        ours, theirs = (m[0] if isinstance(m, tuple) else m for m in (ours, theirs))
        assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
            [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    model, _ = tower(_lib("cygrad"))
    assert list(model.state_dict())[:2] == ["layers.0.weight", "layers.0.bias"]
    assert "heads.cls.weight" in model.state_dict() and "heads.reg.fc.bias" in model.state_dict()
    assert [n for n, _ in model.named_modules()][:3] == ["", "layers", "layers.0"]


def test_tower_gradients_equal_torchs(torch):
    model, loss_fn = tower(_lib("cygrad"))
    tmodel, tloss_fn = tower(_lib("torch"))
    _to_torch(torch, model, tmodel)
    x, y = _data()
    loss = loss_fn(model, x, y)
    loss.backward()
    tloss = tloss_fn(tmodel, torch.from_numpy(x), torch.from_numpy(y))
    tloss.backward()
    assert loss.item() == pytest.approx(tloss.item(), rel=1e-12)
    for (name, p), (tname, tp) in zip(model.named_parameters(), tmodel.named_parameters()):
        assert name == tname
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_training_a_modulelist_model_follows_torch(torch):
    """Ten SGD steps with loss.backward(): the same losses and weights as torch."""
    model, loss_fn = tower(_lib("cygrad"))
    tmodel, tloss_fn = tower(_lib("torch"))
    _to_torch(torch, model, tmodel)
    opt = cg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for step in range(10):
        x, y = _data(step % 3)
        loss = loss_fn(model, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        tloss = tloss_fn(tmodel, torch.from_numpy(x), torch.from_numpy(y))
        topt.zero_grad()
        tloss.backward()
        topt.step()
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-9)
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5
    for k, v in tmodel.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[k], v.numpy(), rtol=1e-9, atol=1e-12)


def test_named_sequential_forward_equals_torchs(torch):
    model, tmodel = named_cnn(_lib("cygrad")), named_cnn(_lib("torch"))
    _to_torch(torch, model, tmodel)
    x = np.random.default_rng(0).standard_normal((3, 2, 8, 8))
    np.testing.assert_allclose(model(x).data, tmodel(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-12)
    assert model.relu is model[1] and model.fc is model[-2]
    assert list(model._modules) == list(tmodel._modules)
    assert model._plan()[1:3] == [model.pool, model.relu]  # the ReLU -> MaxPool2d swap
    assert "(conv): Conv2d(2, 4" in repr(model)


# ---- ModuleList / Sequential editing: the same operations on both libraries ----------

def _layers(L, kind, n=5):
    """Linear(i + 1, 1) for i < n: in_features identifies each module."""
    mods = [L.nn.Linear(i + 1, 1, dtype=L.dtype) for i in range(n)]
    return getattr(L.nn, kind)(*mods) if kind == "Sequential" else L.nn.ModuleList(mods)


def _signature(container):
    """(child name, in_features) pairs, and the state_dict keys."""
    return ([(name, m.in_features) for name, m in container._modules.items()],
            list(container.state_dict()))


EDITS = {
    "append": lambda L, c: c.append(L.nn.Linear(9, 1, dtype=L.dtype)),
    "extend": lambda L, c: c.extend([L.nn.Linear(7, 1, dtype=L.dtype),
                                     L.nn.Linear(8, 1, dtype=L.dtype)]),
    "insert": lambda L, c: c.insert(2, L.nn.Linear(9, 1, dtype=L.dtype)),
    "insert_negative": lambda L, c: c.insert(-1, L.nn.Linear(9, 1, dtype=L.dtype)),
    "insert_end": lambda L, c: c.insert(len(c), L.nn.Linear(9, 1, dtype=L.dtype)),
    "setitem": lambda L, c: c.__setitem__(-2, L.nn.Linear(9, 1, dtype=L.dtype)),
    "delitem": lambda L, c: c.__delitem__(1),
    "delitem_slice": lambda L, c: c.__delitem__(slice(1, 4, 2)),
    "pop": lambda L, c: c.pop(0),
    "setattr": lambda L, c: setattr(c, "1", L.nn.Linear(9, 1, dtype=L.dtype)),
    "iadd": lambda L, c: c.__iadd__(_layers(L, type(c).__name__, 2)),
}


# torch's ModuleList.insert(-1, m) raises KeyError: test_insert_as_list covers ours
@pytest.mark.parametrize("kind, edit", [(k, e) for k in ("ModuleList", "Sequential")
                                        for e in sorted(EDITS)
                                        if (k, e) != ("ModuleList", "insert_negative")])
def test_edits_as_torch(torch, kind, edit):
    ours, theirs = _layers(_lib("cygrad"), kind), _layers(_lib("torch"), kind)
    EDITS[edit](_lib("cygrad"), ours)
    EDITS[edit](_lib("torch"), theirs)
    assert _signature(ours) == _signature(theirs)
    for name, m in ours._modules.items():
        assert getattr(ours, name) is m  # attributes follow the renumbering
    assert not [k for k in vars(ours) if k.isdigit() and k not in ours._modules]


@pytest.mark.parametrize("kind", ["ModuleList", "Sequential"])
@pytest.mark.parametrize("idx", [slice(None, 3), slice(1, None), slice(None, None, 2),
                                 slice(None, None, -1), slice(3, 1), slice(-2, None)])
def test_slices_as_torch_and_shared(torch, kind, idx):
    ours, theirs = _layers(_lib("cygrad"), kind), _layers(_lib("torch"), kind)
    part = ours[idx]
    assert type(part) is type(ours)
    assert _signature(part) == _signature(theirs[idx])
    assert all(any(m is o for o in ours) for m in part)  # the same modules, not copies


@pytest.mark.parametrize("kind", ["ModuleList", "Sequential"])
def test_indexing(kind):
    c = _layers(_lib("cygrad"), kind)
    assert c[0].in_features == 1 and c[-1].in_features == 5 and c[-5] is c[0]
    assert len(c) == 5 and [m.in_features for m in c] == [1, 2, 3, 4, 5]
    for bad in (5, -6):
        with pytest.raises(IndexError, match=f"index {bad} is out of range"):
            c[bad]
    with pytest.raises(TypeError):
        c["0"]
    with pytest.raises(TypeError, match="is not a Module subclass"):
        c.append(np.zeros(3))
    with pytest.raises(IndexError, match="Index out of range: 7"):
        c.insert(7, nn.ReLU())
    with pytest.raises(TypeError, match="iterable"):
        c.extend(3)


@pytest.mark.parametrize("kind", ["ModuleList", "Sequential"])
@pytest.mark.parametrize("index", range(-5, 6))
def test_insert_as_list(kind, index):
    c = _layers(_lib("cygrad"), kind)
    want = [m.in_features for m in c]
    want.insert(index, 9)
    c.insert(index, nn.Linear(9, 1))
    assert [m.in_features for m in c] == want and list(c._modules) == list(map(str, range(6)))


def test_modulelist_add_and_empty():
    a, b = nn.ModuleList([nn.ReLU()]), [nn.Tanh(), nn.Sigmoid()]
    c = a + b
    assert [type(m) for m in c] == [nn.ReLU, nn.Tanh, nn.Sigmoid] and c[0] is a[0] and len(a) == 1
    a += b
    assert list(a._modules) == ["0", "1", "2"] and a[2] is b[1]
    empty = nn.ModuleList()
    assert len(empty) == 0 and empty.parameters() == [] and list(empty) == []
    with pytest.raises(NotImplementedError):
        empty(np.zeros(2))  # no forward, as torch


def test_sequential_add_and_iadd_share_modules():
    a = nn.Sequential(nn.Linear(2, 3, dtype=F64), nn.ReLU())
    b = nn.Sequential(OrderedDict([("out", nn.Linear(3, 1, dtype=F64))]))
    c = a + b
    assert list(c._modules) == ["0", "1", "2"] and c[2] is b.out
    a += b
    assert list(a._modules) == ["0", "1", "2"] and a[2] is b.out
    with pytest.raises(ValueError, match="only objects of Sequential class"):
        a + [nn.ReLU()]
    with pytest.raises(ValueError, match="already named '2'"):  # torch would replace it
        nn.Sequential(OrderedDict([("a", nn.ReLU()), ("2", nn.ReLU())])).append(nn.Tanh())


def test_sequential_slice_leaves_the_parent_buffer_alone():
    """model[i:j] and Sequential(existing modules) share the parameters without moving them
    out of the model's flat buffer (the optimizer keeps updating what the model reads)."""
    model = cg.models.mlp(dtype=F64, seed=0)
    opt = cg.optim.SGD(model.parameters(), lr=0.1)
    data = opt.data
    head, every_other = model[:3], model[::2]
    reordered = nn.Sequential(model[4], model[0])
    for p in model.parameters():
        assert np.shares_memory(p.data, data)
    assert head.parameters() == model.parameters()[:4]
    assert reordered.parameters()[0] is model[4].weight and every_other[1] is model[2]
    x = np.random.default_rng(0).standard_normal((4, 784))
    before = head(x).data.copy()
    loss = model(x).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert not np.allclose(head(x).data, before)  # the step moved what the slice computes


def test_sequential_of_fresh_layers_is_one_buffer():
    model = nn.Sequential(OrderedDict([("a", nn.Linear(3, 4, dtype=F64)), ("b", nn.Tanh()),
                                       ("c", nn.Linear(4, 2, dtype=F64))]))
    data, _ = model.flat_buffers()
    assert all(p.data.base is data for p in model.parameters()) and data.size == 16 + 10


def test_sequential_arguments():
    with pytest.raises(TypeError, match="argument 0 is a dict.*OrderedDict"):
        nn.Sequential({"a": nn.ReLU()})
    with pytest.raises(TypeError, match="argument 1 is a int"):
        nn.Sequential(nn.ReLU(), 3)
    with pytest.raises(TypeError, match="str is not a Module subclass"):
        nn.Sequential(OrderedDict([("a", "relu")]))
    assert len(nn.Sequential()) == 0


# ---- ModuleDict ---------------------------------------------------------------------

def test_moduledict_api_as_torch(torch):
    def run(L):
        d = L.nn.ModuleDict({"b": L.nn.Linear(2, 1, dtype=L.dtype)})
        d.update([("a", L.nn.Linear(3, 1, dtype=L.dtype)), ("c", L.nn.Linear(4, 1, dtype=L.dtype))])
        d.update(OrderedDict([("b", L.nn.Linear(5, 1, dtype=L.dtype))]))  # replaced in place
        d["z"] = L.nn.Linear(6, 1, dtype=L.dtype)
        d.c = L.nn.Linear(7, 1, dtype=L.dtype)  # replaced through the attribute: same place
        order = [(k, m.in_features) for k, m in d.items()]
        popped = d.pop("a").in_features
        del d["c"]
        return (list(d), list(d.keys()), [m.in_features for m in d.values()],
                [(k, m.in_features) for k, m in d.items()], len(d), "b" in d, "a" in d,
                popped, list(d.state_dict()), order)

    assert run(_lib("cygrad")) == run(_lib("torch"))


def test_moduledict_clear_and_attributes():
    d = nn.ModuleDict({"x": nn.Linear(2, 2), "y": nn.ReLU()})
    assert d.x is d["x"] and len(d.parameters()) == 2
    d.clear()
    assert len(d) == 0 and d.parameters() == [] and not hasattr(d, "x")
    with pytest.raises(KeyError):
        d["x"]


@pytest.mark.parametrize("key, error", [("keys", KeyError), ("train", KeyError), ("a.b", KeyError),
                                        ("", KeyError), (1, TypeError)])
def test_moduledict_bad_keys_as_torch(torch, key, error):
    with pytest.raises(error):
        torch.nn.ModuleDict({key: torch.nn.ReLU()})
    with pytest.raises(error):
        nn.ModuleDict({key: nn.ReLU()})


def test_moduledict_bad_updates():
    with pytest.raises(TypeError, match="is not a Module subclass"):
        nn.ModuleDict({"a": 3})
    with pytest.raises(TypeError, match="iterable of key/value pairs"):
        nn.ModuleDict(3)
    with pytest.raises(ValueError, match="element #0 has length 3"):
        nn.ModuleDict([("a", nn.ReLU(), 1)])
    with pytest.raises(TypeError, match="element #0 should be Iterable"):
        nn.ModuleDict([3])


# ---- Identity, Softmax, LogSoftmax, Unflatten ----------------------------------------

def test_identity():
    t = cg.tensor(np.ones(3), requires_grad=True)
    assert nn.Identity(54, unused_argument=0.1)(t) is t
    a = np.ones((2, 2))
    out = nn.Identity()(a)
    assert isinstance(out, cg.Tensor) and out.data is a
    model = nn.Sequential(nn.Linear(3, 2, dtype=F64), nn.Identity())
    model(np.ones((1, 3))).sum().backward()
    assert model[0].bias.grad.tolist() == [1.0, 1.0]


SOFTMAX_CASES = [((4, 7), 1), ((4, 7), 0), ((4, 7), -1), ((2, 3, 5), 1), ((2, 3, 5), -1),
                 ((2, 3, 5), 0), ((6,), 0), ((2, 3, 2, 4), 2)]


@pytest.mark.parametrize("name", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("shape, dim", SOFTMAX_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_modules_equal_torch(torch, name, shape, dim, dtype):
    rng = np.random.default_rng(1)
    x, g = (rng.standard_normal(shape).astype(dtype) * 3 for _ in range(2))
    xt = cg.tensor(x, requires_grad=True)
    y = getattr(nn, name)(dim=dim)(xt)
    y.backward(g)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = getattr(torch.nn, name)(dim=dim)(tx)
    ty.backward(torch.from_numpy(g))
    rtol, atol = (1e-5, 1e-6) if dtype == np.float32 else (1e-12, 1e-14)
    assert y.dtype == dtype and xt.grad.dtype == dtype
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(xt.grad, tx.grad.numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", ["Softmax", "LogSoftmax"])
def test_softmax_modules_gradcheck_and_repr(name):
    x = np.random.default_rng(2).standard_normal((3, 4, 2))
    gradcheck(lambda t: getattr(nn, name)(dim=1)(t), [x])
    assert repr(getattr(nn, name)(dim=1)) == f"{name}(dim=1)"
    with pytest.raises(TypeError):
        getattr(nn, name)(dim=1.5)


@pytest.mark.parametrize("name", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4), (2, 3, 4, 5)])
def test_softmax_implicit_dim_as_torch(torch, name, shape):
    x = np.random.default_rng(3).standard_normal(shape)
    with pytest.warns(UserWarning, match="Implicit dimension"):
        ours = getattr(nn, name)()(x).data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = getattr(torch.nn, name)()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


UNFLATTEN_CASES = [((4, 12), 1, (3, 4)), ((4, 12), -1, (2, -1, 3)), ((12, 5), 0, [2, 6]),
                   ((2, 6, 5), 1, (-1,)), ((2, 6, 5), -2, (1, 6, 1)), ((3, 0), 1, (0, 4)),
                   ((2, 8), 1, (2, 2, 2))]


@pytest.mark.parametrize("shape, dim, sizes", UNFLATTEN_CASES)
def test_unflatten_equals_torch(torch, shape, dim, sizes):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape)
    xt = cg.tensor(x, requires_grad=True)
    y = nn.Unflatten(dim, sizes)(xt)
    ty = torch.nn.Unflatten(dim, sizes)(torch.from_numpy(x))
    assert y.shape == tuple(ty.shape)
    np.testing.assert_array_equal(y.data, ty.numpy())
    g = rng.standard_normal(y.shape)
    y.backward(g)
    np.testing.assert_array_equal(xt.grad, g.reshape(shape))  # a reshape: gradient reshaped back
    assert repr(nn.Unflatten(dim, sizes)) == repr(torch.nn.Unflatten(dim, sizes))


def test_unflatten_in_a_model_trains():
    model = nn.Sequential(nn.Linear(4, 6, dtype=F64), nn.Unflatten(1, (2, 3)), nn.Flatten(),
                          nn.Linear(6, 1, dtype=F64))
    x = np.random.default_rng(5).standard_normal((3, 4))
    gradcheck(lambda t: model(t), [x])
    model(x).sum().backward()
    assert model[0].weight.grad.any()


def test_unflatten_errors():
    for bad in (3, "23", (2, 1.5), (2, True)):
        with pytest.raises(TypeError, match="unflattened_size must be"):
            nn.Unflatten(1, bad)
    for bad in ((), (-1, -1), (2, -3)):
        with pytest.raises(ValueError):
            nn.Unflatten(1, bad)
    with pytest.raises(NotImplementedError, match="named dimension"):
        nn.Unflatten("features", (("C", 2), ("H", 3)))
    x = np.zeros((2, 6))
    with pytest.raises(IndexError, match=r"range of \[-2, 1\], but got 2"):
        nn.Unflatten(2, (2, 3))(x)
    with pytest.raises(ValueError, match="don't multiply up to the size of dim 1 \\(6\\)"):
        nn.Unflatten(1, (4, 2))(x)
    with pytest.raises(ValueError, match="cannot infer"):
        nn.Unflatten(1, (4, -1))(x)
    with pytest.raises(ValueError, match="cannot infer"):
        nn.Unflatten(1, (0, -1))(np.zeros((2, 0)))
    with pytest.raises(TypeError, match="float32"):
        nn.Unflatten(1, (2, 3), dtype=np.float32)(x)
