"""Optimizer steps: compiled vs reference, several steps against torch.optim, threads, errors."""
import numpy as np
import pytest

import cygrad
from cygrad import kernels as K, reference as R
from elementwise_helpers import BACKENDS, DTYPES, assert_close, rng

# name -> (positional state buffers, keyword state buffers, has step, torch class name)
ALGOS = {
    "sgd_step": (["momentum_buf"], [], True, "SGD"),
    "adagrad_step": (["state_sum"], [], True, "Adagrad"),
    "rmsprop_step": (["square_avg"], ["momentum_buf", "grad_avg"], False, "RMSprop"),
    "adam_step": (["exp_avg", "exp_avg_sq"], ["max_exp_avg_sq"], True, "Adam"),
    "adamw_step": (["exp_avg", "exp_avg_sq"], ["max_exp_avg_sq"], True, "AdamW"),
}

# every option of each algorithm (ours, torch's spelling)
CASES = [
    ("sgd_step", dict(lr=0.1)),
    ("sgd_step", dict(lr=0.05, momentum=0.9)),
    ("sgd_step", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("sgd_step", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("adagrad_step", dict()),
    ("adagrad_step", dict(lr=0.1, lr_decay=0.05, weight_decay=0.02, eps=1e-6)),
    ("rmsprop_step", dict()),
    ("rmsprop_step", dict(lr=0.02, alpha=0.3, eps=1e-6, weight_decay=0.05)),
    ("rmsprop_step", dict(momentum=0.9, centered=True)),
    ("rmsprop_step", dict(lr=0.001, momentum=0.5, weight_decay=0.01)),
    ("rmsprop_step", dict(centered=True, alpha=0.7)),
    ("adam_step", dict()),
    ("adam_step", dict(lr=0.01, beta1=0.5, beta2=0.9, eps=1e-6, weight_decay=0.1)),
    ("adam_step", dict(lr=0.01, amsgrad=True)),
    ("adam_step", dict(lr=0.01, beta1=0.3, weight_decay=0.02, amsgrad=True)),
    ("adamw_step", dict()),
    ("adamw_step", dict(lr=0.01, weight_decay=0.3, amsgrad=True, beta2=0.95)),
    ("adamw_step", dict(lr=0.01, weight_decay=0.0)),
    # maximize=True: ascend (the gradient negated before anything else, as torch)
    ("sgd_step", dict(lr=0.05, momentum=0.9, weight_decay=0.01, maximize=True)),
    ("sgd_step", dict(lr=0.05, maximize=True)),
    ("adagrad_step", dict(lr=0.1, weight_decay=0.02, maximize=True)),
    ("rmsprop_step", dict(momentum=0.5, centered=True, weight_decay=0.1, maximize=True)),
    ("adam_step", dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True)),
    ("adam_step", dict(lr=0.01, maximize=True)),
    ("adamw_step", dict(lr=0.01, weight_decay=0.3, maximize=True)),
]
CASE_IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for n, kw in CASES]


def state_for(name, kw, n, dtype):
    pos, opt, _, _ = ALGOS[name]
    st = {k: np.zeros(n, dtype) for k in pos}
    needed = {"momentum_buf": kw.get("momentum", 0) != 0, "grad_avg": kw.get("centered", False),
              "max_exp_avg_sq": kw.get("amsgrad", False)}
    for k in opt:
        if needed[k]:
            st[k] = np.zeros(n, dtype)
    if name == "sgd_step" and "momentum" not in kw:
        st["momentum_buf"] = None
    return st


def run(B, name, kw, dtype, n=1001, steps=5, seed=0):
    """param after `steps` updates from a fixed start with fixed random gradients."""
    pos, _, has_step, _ = ALGOS[name]
    p = np.linspace(-1.0, 1.0, n).astype(dtype)
    st = state_for(name, kw, n, dtype)
    r = rng(seed)
    for s in range(1, steps + 1):
        g = r.standard_normal(n).astype(dtype)
        g0 = g.copy()
        extra = {k: v for k, v in st.items() if k not in pos}
        if has_step:
            extra["step"] = s
        assert getattr(B, name)(p, g, *[st[k] for k in pos], **kw, **extra) is None
        assert np.array_equal(g, g0)  # grad is only read
    return p, st


@DTYPES
@pytest.mark.parametrize("name,kw", CASES, ids=CASE_IDS)
def test_matches_reference(name, kw, dtype):
    p, st = run(K, name, kw, dtype)
    rp, rst = run(R, name, kw, dtype)
    assert_close(p, rp)
    for k in st:
        if st[k] is not None:
            assert_close(st[k], rst[k], normwise=True)


@DTYPES
@pytest.mark.parametrize("name,kw", CASES, ids=CASE_IDS)
def test_against_torch(name, kw, dtype):
    torch = pytest.importorskip("torch")
    tkw = dict(kw)
    if "beta1" in tkw or "beta2" in tkw:
        tkw["betas"] = (tkw.pop("beta1", 0.9), tkw.pop("beta2", 0.999))
    if name == "sgd_step":
        tkw.setdefault("lr", 0.1)
    n = 1001
    tp = torch.tensor(np.linspace(-1.0, 1.0, n).astype(dtype), requires_grad=True)
    opt = getattr(torch.optim, ALGOS[name][3])([tp], foreach=False, **tkw)
    r = rng(0)
    for _ in range(5):
        tp.grad = torch.from_numpy(r.standard_normal(n).astype(dtype))
        opt.step()
    p, _ = run(K, name, kw, dtype, n)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(p, tp.detach().numpy(), **tol)


@DTYPES
@pytest.mark.parametrize("name,kw", CASES[1::2], ids=CASE_IDS[1::2])
def test_thread_count_does_not_change_bits(name, kw, dtype):
    with cygrad.threads(1):
        p1, s1 = run(K, name, kw, dtype, n=200_003, steps=2)
    with cygrad.threads(2):
        p2, s2 = run(K, name, kw, dtype, n=200_003, steps=2)
    assert np.array_equal(p1, p2)
    for k in s1:
        if s1[k] is not None:
            assert np.array_equal(s1[k], s2[k])


@BACKENDS
def test_sgd_first_step_sets_buffer(B):
    p, g, buf = np.zeros(3), np.array([1.0, 2.0, 3.0]), np.full(3, 99.0)
    B.sgd_step(p, g, buf, lr=1.0, momentum=0.9, dampening=0.5, step=1)
    assert np.array_equal(buf, g) and np.array_equal(p, -g)


@BACKENDS
def test_adam_first_step_is_lr_sign(B):
    p, g = np.zeros(4), np.array([1.0, -2.0, 3.0, -4.0])
    B.adam_step(p, g, np.zeros(4), np.zeros(4), step=1, lr=0.1, eps=0.0)
    np.testing.assert_allclose(p, -0.1 * np.sign(g), rtol=1e-14)


# ---- errors ----------------------------------------------------------------------------

def buffers(n=8, dtype=np.float64, k=4):
    return [np.zeros(n, dtype) for _ in range(k)]


@BACKENDS
def test_bad_hyperparameters(B):
    p, g, m, v = buffers()
    with pytest.raises(ValueError, match="lr"):
        B.adam_step(p, g, m, v, step=1, lr=-1e-3)
    with pytest.raises(ValueError, match="eps"):
        B.adamw_step(p, g, m, v, step=1, eps=-1.0)
    with pytest.raises(ValueError, match="step"):
        B.adam_step(p, g, m, v, step=0)
    with pytest.raises(TypeError, match="step"):
        B.adam_step(p, g, m, v, step=1.0)
    with pytest.raises(ValueError, match="beta1"):
        B.adam_step(p, g, m, v, step=1, beta1=1.0)
    with pytest.raises(ValueError, match="beta2"):
        B.adam_step(p, g, m, v, step=1, beta2=-0.1)
    with pytest.raises(ValueError, match="weight_decay"):
        B.adam_step(p, g, m, v, step=1, weight_decay=-0.1)
    with pytest.raises(ValueError, match="max_exp_avg_sq"):
        B.adam_step(p, g, m, v, step=1, amsgrad=True)
    with pytest.raises(ValueError, match="lr"):
        B.sgd_step(p, g, m, lr=-0.1, step=1)
    with pytest.raises(ValueError, match="momentum_buf"):
        B.sgd_step(p, g, None, lr=0.1, momentum=0.9, step=1)
    with pytest.raises(ValueError, match="nesterov"):
        B.sgd_step(p, g, m, lr=0.1, nesterov=True, step=1)
    with pytest.raises(ValueError, match="nesterov"):
        B.sgd_step(p, g, m, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True, step=1)
    with pytest.raises(ValueError, match="step"):
        B.sgd_step(p, g, None, lr=0.1, step=-3)
    with pytest.raises(ValueError, match="lr_decay"):
        B.adagrad_step(p, g, m, lr_decay=-1.0, step=1)
    with pytest.raises(ValueError, match="eps"):
        B.adagrad_step(p, g, m, eps=-1.0, step=1)
    with pytest.raises(ValueError, match="momentum_buf"):
        B.rmsprop_step(p, g, m, momentum=0.5)
    with pytest.raises(ValueError, match="grad_avg"):
        B.rmsprop_step(p, g, m, centered=True)
    with pytest.raises(ValueError, match="alpha"):
        B.rmsprop_step(p, g, m, alpha=-0.5)
    with pytest.raises(TypeError, match="lr"):
        B.rmsprop_step(p, g, m, lr="0.1")
    for name, args in [("sgd_step", (p, g, m)), ("adagrad_step", (p, g, m)),
                       ("adam_step", (p, g, m, v)), ("adamw_step", (p, g, m, v))]:
        with pytest.raises(TypeError, match="maximize"):
            getattr(B, name)(*args, step=1, lr=0.1, maximize="False")
    with pytest.raises(TypeError, match="maximize"):
        B.rmsprop_step(p, g, m, maximize=1)


@BACKENDS
@pytest.mark.parametrize("name", sorted(ALGOS))
def test_maximize_ascends_a_concave_objective(B, name):
    """f(p) = -|p - 3|^2 / 2, gradient 3 - p: every algorithm with maximize moves p towards 3."""
    pos, _, has_step, _ = ALGOS[name]
    p = np.zeros(1000)
    st = [np.zeros(1000) for _ in pos]
    for s in range(1, 200):
        extra = {"step": s} if has_step else {}
        getattr(B, name)(p, 3 - p, *st, lr=1.0 if name == "adagrad_step" else 0.05,
                         maximize=True, **extra)
    assert np.all(np.abs(p - 3) < 0.3)


@BACKENDS
def test_bad_buffers(B):
    p, g, m, v = buffers()
    with pytest.raises(TypeError, match="exp_avg"):
        B.adam_step(p, g, m.astype(np.float32), v, step=1)
    with pytest.raises(ValueError, match="length"):
        B.adam_step(p, g, m, np.zeros(9), step=1)
    with pytest.raises(ValueError, match="grad"):
        B.adam_step(p, np.zeros(9), m, v, step=1)
    with pytest.raises(ValueError, match="1-D"):
        B.adam_step(p.reshape(2, 4), g.reshape(2, 4), m.reshape(2, 4), v.reshape(2, 4), step=1)
    with pytest.raises(ValueError, match="C-contiguous"):
        B.sgd_step(np.zeros(16)[::2], g, None, lr=0.1, step=1)
    with pytest.raises(TypeError, match="param"):
        B.sgd_step(np.zeros(8, np.int64), g, None, lr=0.1, step=1)
    with pytest.raises(TypeError, match="grad"):
        B.sgd_step(p, list(g), None, lr=0.1, step=1)
    ro = np.zeros(8)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        B.adagrad_step(ro, g, m, step=1)
    with pytest.raises(ValueError, match="read-only"):
        B.adagrad_step(p, g, ro, step=1)
    with pytest.raises(ValueError, match="overlap"):
        B.adam_step(p, g, m, m, step=1)
    big = np.zeros(9)
    with pytest.raises(ValueError, match="overlap"):
        B.rmsprop_step(big[:8], g, big[1:])
    ro.flags.writeable = False
    B.sgd_step(p, ro, None, lr=0.1, step=1)  # a read-only gradient is fine
