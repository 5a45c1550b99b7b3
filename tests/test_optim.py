"""cygrad.optim: one kernel call per step over the flat buffer, torch.optim equivalence, state."""
import numpy as np
import pytest

import cygrad as cg
from cygrad import nn, optim

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.2)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.5, amsgrad=True)),
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01, maximize=True)),
    ("Adagrad", dict(lr=0.1, weight_decay=0.1, maximize=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, maximize=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", dict(lr=0.01, maximize=True)),
]
TORCH_ONLY = ("foreach", "fused", "capturable", "differentiable")


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return [nn.Parameter(rng.standard_normal(s)) for s in ((3, 4), (4,), (2, 2, 3))]


def _grads(params, step):
    rng = np.random.default_rng(100 + step)
    for p in params:
        p.grad[...] = rng.standard_normal(p.shape)


@pytest.mark.parametrize("backend", ["kernels", "reference"])
@pytest.mark.parametrize("name,kwargs", CASES)
def test_matches_torch_optim(name, kwargs, backend):
    torch = pytest.importorskip("torch")
    params = _params()
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    opt = getattr(optim, name)(params, **kwargs)
    topt = getattr(torch.optim, name)(tparams, foreach=False, **kwargs)
    with cg.use_backend(backend):
        for step in range(8):
            _grads(params, step)
            for p, t in zip(params, tparams):
                t.grad = torch.from_numpy(p.grad.copy())
            opt.step()
            topt.step()
    for p, t in zip(params, tparams):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_step_is_one_kernel_call_on_the_flat_buffer(monkeypatch):
    model = cg.models.mlp(sizes=(8, 6, 3))
    data, grad = model.flat_buffers()
    calls = []
    real = cg.kernels.adam_step
    monkeypatch.setattr(cg.kernels, "adam_step",
                        lambda *a, **k: (calls.append(a), real(*a, **k))[1])
    opt = optim.Adam(model.parameters())
    assert opt.data is data and opt.grad is grad
    assert all(buf.shape == data.shape for buf in opt.state.values())
    grad[...] = 1.0
    before = data.copy()
    opt.step()
    assert len(calls) == 1 and calls[0][0] is data and calls[0][1] is grad
    assert np.all(data < before)  # every parameter moved against its gradient
    opt.zero_grad()
    assert not grad.any()


def test_separate_parameters_are_gathered_into_one_buffer():
    a, b = nn.Linear(3, 2, dtype=np.float64), nn.Linear(2, 1, dtype=np.float64)
    weights = a.weight.data.copy()
    opt = optim.SGD(a.parameters() + b.parameters(), lr=0.1)
    assert opt.data.size == 6 + 2 + 2 + 1 and a.weight.data.base is opt.data
    assert np.array_equal(a.weight.data, weights)
    b(a(np.ones((1, 3)))).sum().backward()
    assert a.weight.grad.base is opt.grad and np.array_equal(opt.grad[:6], a.weight.grad.ravel())
    assert opt.grad[:6].any()


def test_state_dict_round_trip_continues_identically():
    params, copies = _params(1), _params(1)
    opt = optim.Adam(params, lr=0.01, amsgrad=True)
    for step in range(3):
        _grads(params, step)
        opt.step()
    other = optim.Adam(copies, lr=0.5, amsgrad=True)
    for p, q in zip(params, copies):
        q.data[...] = p.data
    other.load_state_dict(opt.state_dict())
    assert other.lr == 0.01 and other.step_count == 3
    for step in range(3, 6):
        _grads(params, step)
        _grads(copies, step)
        opt.step()
        other.step()
    assert all(np.array_equal(p.data, q.data) for p, q in zip(params, copies))
    with pytest.raises(ValueError, match="Adam"):
        optim.SGD(_params(), momentum=0.9).load_state_dict(opt.state_dict())


def test_bad_arguments():
    with pytest.raises(ValueError, match="lr"):
        optim.SGD(_params(), lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(_params(), lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta"):
        optim.Adam(_params(), betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="empty"):
        optim.Adam([])
    with pytest.raises(TypeError, match="mix dtypes"):
        optim.Adam([nn.Parameter(np.zeros(2)), nn.Parameter(np.zeros(2, np.float32))])


@pytest.mark.parametrize("name", ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"])
def test_torch_defaults_and_group_keys(name):
    torch = pytest.importorskip("torch")
    ours = getattr(optim, name)(_params()).param_groups[0]
    theirs = getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)]).param_groups[0]
    want = {k: v for k, v in theirs.items() if k not in TORCH_ONLY + ("params",)}
    assert {k: v for k, v in ours.items() if k != "params"} == want
    assert getattr(optim, name)(_params()).defaults == {
        k: v for k, v in getattr(torch.optim, name)([torch.zeros(1)]).defaults.items()
        if k not in TORCH_ONLY}


@pytest.mark.parametrize("name,kwargs", CASES[1::2])
def test_state_dict_matches_torch_and_loads_torchs(name, kwargs):
    """Our state_dict has torch's structure and numbers; torch's loads into ours and the
    run continues as torch's."""
    torch = pytest.importorskip("torch")
    params = _params()
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    opt = getattr(optim, name)(params, **kwargs)
    topt = getattr(torch.optim, name)(tparams, foreach=False, **kwargs)

    def step(o, t, k):
        _grads(params, k)
        for p, tp in zip(params, tparams):
            tp.grad = torch.from_numpy(p.grad.copy())
        o.step()
        t.step()
    for k in range(3):
        step(opt, topt, k)
    ours, theirs = opt.state_dict(), topt.state_dict()
    assert [g["params"] for g in ours["param_groups"]] == \
        [g["params"] for g in theirs["param_groups"]]
    for i, tstate in theirs["state"].items():
        for key, value in tstate.items():
            if value is None:
                continue
            np.testing.assert_allclose(ours["state"][i][key], np.asarray(value), rtol=1e-12)
    fresh = [nn.Parameter(p.data.copy()) for p in params]
    other = getattr(optim, name)(fresh, lr=123.0)
    other.load_state_dict(theirs)
    assert other.lr == kwargs["lr"]
    params[:] = fresh
    for k in range(3, 6):
        step(other, topt, k)
    for p, t in zip(fresh, tparams):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_repr_lists_each_group():
    p = _params()
    text = repr(optim.SGD([{"params": p[:1]}, {"params": p[1:], "lr": 0.5}], lr=0.1))
    assert text.startswith("SGD (") and "Parameter Group 1" in text and "lr: 0.5" in text


# -- hyperparameters are validated when given, and before every step (issue 15) -------------
def test_a_one_element_array_lr_is_a_float_and_steps_as_torch():
    params, ref = _params(), _params()
    opt, want = optim.Adam(params, lr=np.array(0.01)), optim.Adam(ref, lr=0.01)
    assert type(opt.param_groups[0]["lr"]) is float and opt.param_groups[0]["lr"] == 0.01
    for o, ps in ((opt, params), (want, ref)):
        _grads(ps, 0)
        o.step()
    assert all(np.array_equal(p.data, q.data) for p, q in zip(params, ref))


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(lr=np.array([0.1, 0.2])), ValueError, r"lr for Adam must be a single number.*\(2,\)"),
    (dict(lr="0.1"), TypeError, "lr for Adam must be a real number, got str"),
    (dict(lr=True), TypeError, "lr for Adam must be a real number, got bool"),
    (dict(lr=float("inf")), ValueError, "invalid lr for Adam: inf"),
    (dict(lr=float("nan")), ValueError, "invalid lr for Adam: nan"),
    (dict(eps=float("inf")), ValueError, "invalid eps"),
    (dict(betas=(0.9,)), ValueError, "betas for Adam must be a pair"),
    (dict(betas=0.9), TypeError, "betas for Adam must be a pair"),
    (dict(betas=(0.9, "x")), TypeError, "beta2 for Adam must be a real number"),
    (dict(amsgrad="yes"), TypeError, "amsgrad must be a bool"),
])
def test_bad_hyperparameters_are_refused_at_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        optim.Adam(_params(), **kwargs)


@pytest.mark.parametrize("name,key,value,error,match", [
    ("SGD", "lr", np.array(0.1), None, None),
    ("SGD", "lr", np.array([0.1, 0.2]), ValueError, "lr for SGD must be a single number"),
    ("SGD", "lr", float("inf"), ValueError, "invalid lr for SGD: inf"),
    ("SGD", "nesterov", "no", TypeError, "nesterov must be a bool"),
    ("SGD", "dampening", float("nan"), ValueError, "invalid dampening"),
    ("Adam", "betas", (0.9,), ValueError, "betas for Adam must be a pair"),
    ("Adam", "betas", (0.9, 2.0), ValueError, "invalid beta parameter at index 1"),
    ("Adam", "eps", -1.0, ValueError, "invalid eps for Adam"),
    ("Adagrad", "lr_decay", float("inf"), ValueError, "invalid lr_decay"),
    ("RMSprop", "alpha", "0.9", TypeError, "alpha for RMSprop must be a real number"),
])
def test_a_hyperparameter_set_later_is_checked_before_the_step_moves_anything(
        name, key, value, error, match):
    params = _params()
    opt = getattr(optim, name)(params, lr=0.1)
    _grads(params, 0)
    before = opt.data.copy()
    opt.param_groups[0][key] = value
    if error is None:  # a 1-element array is a number: taken as a float
        opt.step()
        assert type(opt.param_groups[0][key]) is float and not np.array_equal(opt.data, before)
        return
    with pytest.raises(error, match=match):
        opt.step()
    assert np.array_equal(opt.data, before) and opt.step_count == 0


def test_second_order_iteration_limits_are_checked():
    with pytest.raises(ValueError, match="invalid max_iter for LBFGS: 0"):
        optim.LBFGS(_params(), max_iter=0)
    with pytest.raises(ValueError, match="invalid tolerance_grad"):
        optim.LBFGS(_params(), tolerance_grad=float("nan"))
