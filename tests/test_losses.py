"""Losses and penalties: compiled vs reference, finite differences, torch, threads, errors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cygrad
from cygrad import kernels as K, reference as R
from cygrad.testing import gradcheck
from elementwise_helpers import BACKENDS, DTYPES, RTOL, assert_close, rng

REDUCTIONS = pytest.mark.parametrize("reduction", ["mean", "sum"])
SIZES = [(1,), (33,), (64, 128), (100_003,), (3, 7, 5)]


def inputs(name, shape, dtype, seed=0):
    """(first argument, target) for a pairwise loss."""
    r = rng(seed)
    if name == "binary_cross_entropy":
        p = r.uniform(0.0, 1.0, shape)
        p.flat[: min(3, p.size)] = [0.0, 1.0, 0.5][: min(3, p.size)]  # the clamped ends
        return p.astype(dtype), r.uniform(0.0, 1.0, shape).astype(dtype)
    first = r.standard_normal(shape) * (5.0 if name == "binary_cross_entropy_with_logits" else 1.0)
    target = r.uniform(0.0, 1.0, shape) if name != "mse_loss" else r.standard_normal(shape)
    return first.astype(dtype), target.astype(dtype)


def check_pair(got, want):
    (lg, gg), (lw, gw) = got, want
    assert isinstance(lg, float)
    assert lg == pytest.approx(lw, rel=RTOL[gw.dtype], abs=0, nan_ok=True)
    assert_close(gg, gw, normwise=True)


PAIR_LOSSES = pytest.mark.parametrize(
    "name", ["mse_loss", "l1_loss", "binary_cross_entropy_with_logits", "binary_cross_entropy"])


@PAIR_LOSSES
@DTYPES
@REDUCTIONS
@pytest.mark.parametrize("shape", SIZES)
def test_pair_losses_match_reference(name, shape, dtype, reduction):
    a, t = inputs(name, shape, dtype)
    check_pair(getattr(K, name)(a, t, reduction), getattr(R, name)(a, t, reduction))


@DTYPES
@pytest.mark.parametrize("penalty", ["l1_penalty", "l2_penalty"])
@pytest.mark.parametrize("shape", SIZES + [(0,)])
def test_penalties_match_reference(penalty, shape, dtype):
    w = rng(1).standard_normal(shape).astype(dtype)
    if w.size > 2:
        w.flat[1] = 0.0
    check_pair(getattr(K, penalty)(w, 0.3), getattr(R, penalty)(w, 0.3))


def targets(kind, n, c, dtype, seed=0):
    r = rng(seed)
    if kind == "probs":
        return r.dirichlet(np.ones(c), n).astype(dtype)
    return r.integers(0, c, n).astype(kind)


CE_TARGETS = pytest.mark.parametrize("kind", ["int64", "int32", "probs"])


@DTYPES
@REDUCTIONS
@CE_TARGETS
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("shape", [(1, 1), (64, 10), (7, 1000), (600, 37)])
def test_cross_entropy_matches_reference(shape, smoothing, kind, reduction, dtype):
    z = (rng(2).standard_normal(shape) * 3).astype(dtype)
    t = targets(kind, *shape, dtype)
    check_pair(K.cross_entropy(z, t, reduction, smoothing), R.cross_entropy(z, t, reduction, smoothing))


@BACKENDS
@PAIR_LOSSES
@REDUCTIONS
def test_gradcheck_pair_losses(B, name, reduction):
    a, t = inputs(name, (4, 5), np.float64, seed=4)
    if name == "binary_cross_entropy":
        a = np.clip(a, 0.05, 0.95)  # away from the clamp, where the loss is smooth
    if name == "l1_loss":
        a[np.abs(a - t) < 1e-2] += 0.1  # away from the kink of |pred - target|
    f = getattr(B, name)
    gradcheck(lambda a: f(a, t, reduction)[0], [a], [f(a, t, reduction)[1]])


@BACKENDS
@CE_TARGETS
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_gradcheck_cross_entropy(B, kind, smoothing):
    z = rng(5).standard_normal((6, 5)) * 2
    t = targets(kind, 6, 5, np.float64, seed=6)
    for reduction in ("mean", "sum"):
        gradcheck(lambda z: B.cross_entropy(z, t, reduction, smoothing)[0], [z],
                  [B.cross_entropy(z, t, reduction, smoothing)[1]])


@BACKENDS
@pytest.mark.parametrize("penalty", ["l1_penalty", "l2_penalty"])
def test_gradcheck_penalties(B, penalty):
    w = rng(7).standard_normal((3, 4)) + 0.1
    w[np.abs(w) < 1e-3] = 0.5  # l1 is not differentiable at 0
    f = getattr(B, penalty)
    gradcheck(lambda w: f(w, 0.7)[0], [w], [f(w, 0.7)[1]])


@DTYPES
@REDUCTIONS
@pytest.mark.parametrize("kind", ["int64", "int32"])
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1), (64, 10), (7, 1000), (3000, 37)])
def test_nll_loss_matches_reference(shape, kind, reduction, dtype):
    logp = R.log_softmax((rng(2).standard_normal(shape) * 3).astype(dtype))
    t = targets(kind, *shape, dtype)
    check_pair(K.nll_loss(logp, t, reduction), R.nll_loss(logp, t, reduction))


@BACKENDS
@REDUCTIONS
def test_gradcheck_nll_loss(B, reduction):
    logp = rng(5).standard_normal((6, 5)) * 2
    t = targets("int64", 6, 5, np.float64, seed=6)
    gradcheck(lambda z: B.nll_loss(z, t, reduction)[0], [logp], [B.nll_loss(logp, t, reduction)[1]])


@BACKENDS
@DTYPES
@REDUCTIONS
def test_nll_of_log_softmax_is_cross_entropy(B, dtype, reduction):
    """nll_loss(log_softmax(z)) and its gradient chained through log_softmax_backward
    equal the fused cross_entropy."""
    z = (rng(12).standard_normal((50, 11)) * 3).astype(dtype)
    t = targets("int64", 50, 11, dtype, seed=13)
    logp = B.log_softmax(z)
    loss, g = B.nll_loss(logp, t, reduction)
    want_loss, want_grad = B.cross_entropy(z, t, reduction)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert loss == pytest.approx(want_loss, rel=rtol)
    assert_close(B.log_softmax_backward(g, logp), want_grad, normwise=True, rtol=rtol)


@BACKENDS
def test_l1_loss_sign_of_zero_is_zero(B):
    a = np.array([1.0, 2.0, -3.0, 0.0])
    loss, grad = B.l1_loss(a, np.array([1.0, 1.0, 0.0, 0.0]), "sum")
    assert loss == 4.0
    assert grad.tolist() == [0.0, 1.0, -1.0, 0.0]


@DTYPES
def test_extreme_logits(dtype):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, 1e4]], dtype)
    t = np.array([1, 0, 2])
    for B in (K, R):
        loss, grad = B.cross_entropy(z, t)
        assert np.isfinite(loss) and np.isfinite(grad).all()
        assert loss == pytest.approx((2e4 + 2e4 + np.log(3)) / 3, rel=1e-6)
        loss, grad = B.cross_entropy(z, t, label_smoothing=0.1)
        assert np.isfinite(loss) and np.isfinite(grad).all()
        loss, grad = B.binary_cross_entropy_with_logits(z, np.full_like(z, 0.5))
        assert np.isfinite(loss) and np.isfinite(grad).all()
    check_pair(K.cross_entropy(z, t, "sum", 0.1), R.cross_entropy(z, t, "sum", 0.1))


@BACKENDS
def test_binary_cross_entropy_clamps_log(B):
    p = np.array([0.0, 1.0, 0.0, 1.0])
    y = np.array([1.0, 0.0, 0.0, 1.0])
    loss, grad = B.binary_cross_entropy(p, y, "sum")
    assert loss == 200.0  # two clamped -log(0) terms of 100
    assert np.all(np.isfinite(grad))


@BACKENDS
def test_empty_mean_is_nan_like_torch(B):
    e = np.empty((0,))
    assert np.isnan(B.mse_loss(e, e)[0])
    assert B.mse_loss(e, e, "sum")[0] == 0.0
    assert np.isnan(B.cross_entropy(np.empty((0, 3)), np.empty(0, np.int64))[0])
    assert np.isnan(B.l1_loss(e, e)[0])
    assert B.l1_loss(e, e, "sum")[0] == 0.0
    loss, grad = B.nll_loss(np.empty((0, 3)), np.empty(0, np.int64))
    assert np.isnan(loss) and grad.shape == (0, 3)
    assert B.nll_loss(np.empty((0, 3)), np.empty(0, np.int32), "sum")[0] == 0.0


@BACKENDS
def test_nan_propagates(B):
    a = np.array([0.5, np.nan])
    t = np.array([0.2, 0.3])
    for f in (B.mse_loss, B.l1_loss, B.binary_cross_entropy_with_logits, B.binary_cross_entropy):
        loss, grad = f(a, t)
        assert np.isnan(loss) and np.isnan(grad[1]) and not np.isnan(grad[0])
    loss, grad = B.cross_entropy(np.array([[0.0, np.nan], [1.0, 2.0]]), np.array([0, 1]))
    assert np.isnan(loss) and np.isnan(grad[0]).all() and np.isfinite(grad[1]).all()
    loss, grad = B.nll_loss(np.array([[0.0, np.nan], [-1.0, -2.0]]), np.array([1, 0]))
    assert np.isnan(loss) and np.isfinite(grad).all()  # the gradient does not read logp


@DTYPES
def test_thread_count_does_not_change_bits(dtype):
    a, t = inputs("mse_loss", (1_000_003,), dtype)
    z = (rng(3).standard_normal((3000, 50)) * 3).astype(dtype)
    zt = targets("int64", 3000, 50, dtype)
    runs = []
    for n in (1, 2):
        with cygrad.threads(n):
            runs.append([K.mse_loss(a, t), K.binary_cross_entropy_with_logits(a, np.abs(t) % 1),
                         K.l1_penalty(a, 0.1), K.l2_penalty(a, 0.1), K.l1_loss(a, t),
                         K.cross_entropy(z, zt, label_smoothing=0.1),
                         K.nll_loss(K.log_softmax(z), zt, "sum")])
    for (l1, g1), (l2, g2) in zip(*runs):
        assert l1 == l2 and np.array_equal(g1, g2)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), c=st.integers(1, 40), scale=st.sampled_from([0.1, 3.0, 300.0]),
       smoothing=st.sampled_from([0.0, 0.3]), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_hypothesis_cross_entropy(n, c, scale, smoothing, dtype, seed):
    z = (rng(seed).standard_normal((n, c)) * scale).astype(dtype)
    for kind in ("int64", "probs"):
        t = targets(kind, n, c, dtype, seed)
        check_pair(K.cross_entropy(z, t, "mean", smoothing), R.cross_entropy(z, t, "mean", smoothing))
    t = targets("int32", n, c, dtype, seed)
    check_pair(K.nll_loss(z, t), R.nll_loss(z, t))


# ---- errors ----------------------------------------------------------------------------

@BACKENDS
def test_bad_inputs(B):
    a = np.ones((4, 3))
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'bogus'"):
        B.mse_loss(a, a, "bogus")
    with pytest.raises(ValueError, match="shape"):
        B.mse_loss(a, np.ones((3, 4)))
    with pytest.raises(TypeError, match="target"):
        B.binary_cross_entropy_with_logits(a, a.astype(np.float32))
    with pytest.raises(TypeError, match="pred"):
        B.mse_loss(a.astype(np.int32), a)
    with pytest.raises(ValueError, match="C-contiguous"):
        B.mse_loss(a.T, a.T)
    with pytest.raises(ValueError, match=r"prob\[5\]"):
        B.binary_cross_entropy(np.array([0, 0, 0, 0, 0, 1.5, -1.0]), np.zeros(7))
    with pytest.raises(ValueError, match="lam"):
        B.l1_penalty(a, -1.0)
    with pytest.raises(TypeError, match="lam"):
        B.l2_penalty(a, "1")
    with pytest.raises(TypeError, match="w"):
        B.l2_penalty([1.0], 1.0)
    with pytest.raises(ValueError, match="reduction"):
        B.l1_loss(a, a, "avg")
    with pytest.raises(ValueError, match="shape"):
        B.l1_loss(a, np.ones(12))
    with pytest.raises(TypeError, match="target"):
        B.l1_loss(a, a.astype(np.float32))
    with pytest.raises(TypeError, match="pred"):
        B.l1_loss(a.astype(np.int64), a)
    with pytest.raises(TypeError, match="target"):
        B.l1_loss(a, a.tolist())
    with pytest.raises(ValueError, match="C-contiguous"):
        B.l1_loss(np.ones((3, 4)).T, a)


@BACKENDS
@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_class_target_bad_inputs(B, name):
    """cross_entropy and nll_loss check class-index targets with the same code."""
    f = getattr(B, name)
    z = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"target\[2\] = 3 is out of range \[0, 3\)"):
        f(z, np.array([0, 1, 3, -1]))
    with pytest.raises(ValueError, match=r"target\[1\] = -100"):  # -100 ignored only by default
        f(z, np.array([0, -100, 0, 0], np.int32), ignore_index=5)
    with pytest.raises(ValueError, match="shape"):
        f(z, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="C-contiguous"):
        f(z, np.arange(8)[::2])
    with pytest.raises(TypeError, match="target"):
        f(z, np.array([0, 1, 2, 0], np.int16))
    with pytest.raises(TypeError, match="target"):
        f(z, [0, 1, 2, 0])
    with pytest.raises(ValueError, match="2-D"):
        f(np.zeros(3), np.array([0]))
    with pytest.raises(ValueError, match="reduction"):
        f(z, np.zeros(4, np.int64), reduction="avg")


@BACKENDS
def test_cross_entropy_bad_inputs(B):
    z = np.zeros((4, 3))
    with pytest.raises(ValueError, match="C-contiguous"):
        B.cross_entropy(z, np.full((3, 4), 0.25).T)
    with pytest.raises(TypeError, match="target"):
        B.cross_entropy(z, np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        B.cross_entropy(z, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="class"):
        B.cross_entropy(np.zeros((2, 0)), np.array([0, 0]))
    with pytest.raises(ValueError, match="label_smoothing"):
        B.cross_entropy(z, np.zeros(4, np.int64), label_smoothing=1.5)


@BACKENDS
def test_nll_loss_bad_inputs(B):
    z = np.zeros((4, 3))
    with pytest.raises(ValueError, match="shape"):
        B.nll_loss(z, np.zeros((4, 1), np.int64))
    with pytest.raises(TypeError, match="target"):
        B.nll_loss(z, np.array([0, 1, 2, 0], ">i8"))
    with pytest.raises(TypeError, match="target"):
        B.nll_loss(z, np.zeros((4, 3)))  # no probability targets
    with pytest.raises(TypeError, match="logp"):
        B.nll_loss(z.astype(np.int64), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="C-contiguous"):
        B.nll_loss(np.zeros((3, 4)).T, np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=r"target\[0\] = 0 is out of range \[0, 0\)"):
        B.nll_loss(np.zeros((2, 0)), np.array([0, 0]))


# ---- torch oracle ----------------------------------------------------------------------

def torch_loss(fn, a, *args, **kw):
    """torch's loss (a float, or the per-element array for reduction='none') and the
    gradient of its sum with respect to a; array arguments go in as tensors."""
    torch = pytest.importorskip("torch")
    ta = torch.tensor(a, requires_grad=True)
    targs = [torch.from_numpy(x) if isinstance(x, np.ndarray) else x for x in args]
    kw = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    loss = fn(ta, *targs, **kw)
    loss.sum().backward()
    return (loss.item() if loss.ndim == 0 else loss.detach().numpy()), ta.grad.numpy()


def check_torch(ours, theirs, dtype):
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    assert ours[0] == pytest.approx(theirs[0], rel=rtol)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=rtol, atol=rtol * np.max(np.abs(theirs[1])))


@DTYPES
@REDUCTIONS
def test_pair_losses_against_torch(dtype, reduction):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for name, tf in [("mse_loss", F.mse_loss), ("l1_loss", F.l1_loss),
                     ("binary_cross_entropy_with_logits", F.binary_cross_entropy_with_logits),
                     ("binary_cross_entropy", F.binary_cross_entropy)]:
        a, t = inputs(name, (50, 40), dtype, seed=9)
        check_torch(getattr(K, name)(a, t, reduction), torch_loss(tf, a, t, reduction=reduction), dtype)


@DTYPES
@REDUCTIONS
@CE_TARGETS
@pytest.mark.parametrize("smoothing", [0.0, 0.15])
def test_cross_entropy_against_torch(dtype, reduction, kind, smoothing):
    torch = pytest.importorskip("torch")
    z = (rng(10).standard_normal((64, 10)) * 3).astype(dtype)
    z[0, :3] = [1e4, -1e4, 0]
    t = targets(kind, 64, 10, dtype, seed=11)
    tt = t.astype(np.int64) if kind != "probs" else t  # torch takes int64 class indices
    check_torch(K.cross_entropy(z, t, reduction, smoothing),
                torch_loss(torch.nn.functional.cross_entropy, z, tt, reduction=reduction,
                           label_smoothing=smoothing), dtype)


@DTYPES
@REDUCTIONS
@pytest.mark.parametrize("kind", ["int64", "int32"])
def test_nll_loss_against_torch(dtype, reduction, kind):
    torch = pytest.importorskip("torch")
    logp = R.log_softmax((rng(14).standard_normal((64, 10)) * 3).astype(dtype))
    t = targets(kind, 64, 10, dtype, seed=15)
    check_torch(K.nll_loss(logp, t, reduction),
                torch_loss(torch.nn.functional.nll_loss, logp, t.astype(np.int64), reduction=reduction),
                dtype)


# ---- reduction='none', class weights, ignore_index, BCE weight and pos_weight ----------

REDUCTIONS3 = pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
ULPS = 4  # float32 agreement with torch, in float32 ulps of the largest magnitude
IGNORES = {"default": -100, "custom": 3, "negative": -1}
BCE_OPTIONS = pytest.mark.parametrize("name,options", [
    ("binary_cross_entropy", ("weight",)),
    ("binary_cross_entropy_with_logits", ("weight",)),
    ("binary_cross_entropy_with_logits", ("pos_weight",)),
    ("binary_cross_entropy_with_logits", ("weight", "pos_weight"))])


def check_oracle(ours, theirs, dtype):
    """Agreement with torch: float64 within 1e-12 relative (each loss element; the
    gradient normwise), float32 within ULPS ulps (relative for a scalar loss, else of
    the largest magnitude)."""
    (lo, go), (lt, gt) = ours, theirs
    f64 = np.dtype(dtype) == np.float64
    rtol = 1e-12 if f64 else ULPS * float(np.finfo(np.float32).eps)
    if np.ndim(lt) == 0:
        assert isinstance(lo, float)
        assert lo == pytest.approx(lt, rel=rtol, abs=0, nan_ok=True)
    else:
        assert lo.shape == lt.shape
        assert_close(lo, lt, normwise=not f64, rtol=rtol)
    assert_close(go, gt, normwise=True, rtol=rtol)


def check_backends(got, want):
    """Compiled vs reference for any reduction (a 'none' loss normwise, as a gradient)."""
    if isinstance(want[0], float):
        return check_pair(got, want)
    assert got[0].shape == want[0].shape
    assert_close(got[0], want[0], normwise=True)
    assert_close(got[1], want[1], normwise=True)


def class_case(kind, n, c, dtype, ignore, seed=20):
    """(logits, target, target as torch takes it); every 5th class target is `ignore`."""
    z = (rng(seed).standard_normal((n, c)) * 3).astype(dtype)
    t = targets(kind, n, c, dtype, seed + 1)
    if kind != "probs":
        t[::5] = ignore
        return z, t, t.astype(np.int64)
    return z, t, t


def class_options(ignore, weighted, c, dtype, seed=22):
    """Keyword arguments: ignore_index unless the default, weight if weighted."""
    kw = {} if ignore == "default" else {"ignore_index": IGNORES[ignore]}
    if weighted:
        kw["weight"] = rng(seed).uniform(0.2, 2.0, c).astype(dtype)
    return kw


def bce_case(name, options, shape, dtype, seed=30):
    """(input, target, our options at the input's shape, torch's options: the same rows of
    the last dimension, broadcast by torch as a user would pass them)."""
    a, t = inputs(name, shape, dtype, seed)
    ours, theirs = {}, {}
    for k, opt in enumerate(options):
        row = rng(seed + 1 + k).uniform(0.2, 3.0, shape[-1]).astype(dtype)
        ours[opt], theirs[opt] = np.ascontiguousarray(np.broadcast_to(row, shape)), row
    return a, t, ours, theirs


@DTYPES
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "binary_cross_entropy_with_logits",
                                  "binary_cross_entropy"])
def test_pair_losses_none_against_torch(name, dtype):
    F = pytest.importorskip("torch").nn.functional
    a, t = inputs(name, (50, 40), dtype, seed=9)
    ours = getattr(K, name)(a, t, "none")
    assert ours[0].dtype == dtype and ours[0].shape == a.shape
    check_oracle(ours, torch_loss(getattr(F, name), a, t, reduction="none"), dtype)
    check_backends(ours, getattr(R, name)(a, t, "none"))


@DTYPES
@REDUCTIONS3
@BCE_OPTIONS
def test_bce_weights_against_torch(name, options, reduction, dtype):
    F = pytest.importorskip("torch").nn.functional
    a, t, ours, theirs = bce_case(name, options, (50, 40), dtype)
    got = getattr(K, name)(a, t, reduction, **ours)
    check_oracle(got, torch_loss(getattr(F, name), a, t, reduction=reduction, **theirs), dtype)
    check_backends(got, getattr(R, name)(a, t, reduction, **ours))


@DTYPES
@REDUCTIONS3
@CE_TARGETS
@pytest.mark.parametrize("smoothing", [0.0, 0.15])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("ignore", list(IGNORES))
def test_cross_entropy_options_against_torch(ignore, weighted, smoothing, kind, reduction, dtype):
    """class weights (smoothing term weighted too), ignore_index (the default -100, one
    inside [0, C), another negative) and 'none', as torch; probability targets take the
    weights, and refuse an ignore_index >= 0 (torch raises too)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    z, t, tt = class_case(kind, 64, 10, dtype, IGNORES[ignore])
    kw = class_options(ignore, weighted, 10, dtype)
    if kind == "probs" and IGNORES[ignore] >= 0:
        for B in (K, R):
            with pytest.raises(ValueError, match="ignore_index = 3 applies to class-index targets only"):
                B.cross_entropy(z, t, reduction, smoothing, **kw)
        with pytest.raises(RuntimeError, match="ignore_index"):
            torch_loss(F.cross_entropy, z, tt, reduction=reduction, label_smoothing=smoothing, **kw)
        return
    got = K.cross_entropy(z, t, reduction, smoothing, **kw)
    check_oracle(got, torch_loss(F.cross_entropy, z, tt, reduction=reduction,
                                 label_smoothing=smoothing, **kw), dtype)
    check_backends(got, R.cross_entropy(z, t, reduction, smoothing, **kw))


@DTYPES
@REDUCTIONS3
@pytest.mark.parametrize("kind", ["int64", "int32"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("ignore", list(IGNORES))
def test_nll_loss_options_against_torch(ignore, weighted, kind, reduction, dtype):
    F = pytest.importorskip("torch").nn.functional
    z, t, tt = class_case(kind, 64, 10, dtype, IGNORES[ignore])
    logp = R.log_softmax(z)
    kw = class_options(ignore, weighted, 10, dtype)
    got = K.nll_loss(logp, t, reduction, **kw)
    check_oracle(got, torch_loss(F.nll_loss, logp, tt, reduction=reduction, **kw), dtype)
    check_backends(got, R.nll_loss(logp, t, reduction, **kw))


@BACKENDS
@DTYPES
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_no_kept_row_or_weight_is_nan_like_torch(B, weighted, smoothing, dtype):
    """'mean' over rows that are all ignored (0/0) or whose class weights sum to 0 is NaN,
    with torch's gradient: 0 in ignored rows, NaN where a zero-weight row is divided by 0."""
    F = pytest.importorskip("torch").nn.functional
    z = (rng(40).standard_normal((5, 4)) * 2).astype(dtype)
    w = np.array([0.0, 0.0, 0.0, 1.0], dtype) if weighted else None
    cases = [np.full(5, -100)] + ([np.array([0, 1, 2, -100, 0])] if weighted else [])
    for t in cases:
        kw = {} if w is None else {"weight": w}
        for name, x in (("cross_entropy", z), ("nll_loss", B.log_softmax(z))):
            opts = dict(kw, label_smoothing=smoothing) if name == "cross_entropy" else kw
            got = getattr(B, name)(x, t, **opts)
            want = torch_loss(getattr(F, name), x, t, **opts)
            assert np.isnan(got[0]) and np.isnan(want[0])
            np.testing.assert_array_equal(np.isnan(got[1]), np.isnan(want[1]))
            np.testing.assert_array_equal(np.nan_to_num(got[1]), np.nan_to_num(want[1]))
            assert getattr(B, name)(x, t, "sum", **kw)[0] == pytest.approx(
                torch_loss(getattr(F, name), x, t, reduction="sum", **kw)[0], rel=1e-6)


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_ignored_rows_are_left_out(name, reduction):
    """The loss with ignored rows is the loss of the kept rows alone, bit for bit (the
    row sum adds zeros; 'mean' divides by the kept count); ignored rows' gradient is 0."""
    z = (rng(41).standard_normal((300, 7)) * 3).astype(np.float32)
    t = targets("int64", 300, 7, np.float32, seed=42)
    t[rng(43).random(300) < 0.3] = 4
    kept = t != 4
    f = getattr(K, name)
    loss, grad = f(z, t, reduction, ignore_index=4)
    want_loss, want_grad = f(np.ascontiguousarray(z[kept]), np.ascontiguousarray(t[kept]), reduction)
    assert loss == want_loss
    assert np.array_equal(grad[kept], want_grad) and not grad[~kept].any()
    r_loss, r_grad = getattr(R, name)(z, t, reduction, ignore_index=4)
    check_pair((loss, grad), (r_loss, r_grad))


@BACKENDS
def test_ignored_row_is_not_read(B):
    """A NaN in an ignored row changes nothing: its loss and gradient are 0."""
    z = rng(44).standard_normal((4, 3))
    z[2] = np.nan
    t = np.array([0, 2, -100, 1])
    for name, x in (("cross_entropy", z), ("nll_loss", z)):
        loss, grad = getattr(B, name)(x, t, "none")
        assert loss[2] == 0.0 and np.isfinite(loss).all() and not grad[2].any()
        assert np.isfinite(getattr(B, name)(x, t)[0])
    assert np.isfinite(B.cross_entropy(z, t, label_smoothing=0.1, weight=np.ones(3))[0])


@BACKENDS
@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_ignore_index_values(B, name):
    """Any int: numpy integers; one outside int64 matches no target (so -100 is then out
    of range); one equal to a real class leaves that class out."""
    f = getattr(B, name)
    z = rng(45).standard_normal((4, 3))
    t = np.array([0, 1, 2, 1], np.int32)
    assert f(z, t, "sum", ignore_index=np.int64(1))[0] == pytest.approx(
        f(z[[0, 2]].copy(), t[[0, 2]].copy(), "sum")[0], rel=1e-15)
    for big in (2**70, -2**70, 2**40):
        loss, grad = f(z, t, ignore_index=big)
        assert loss == f(z, t)[0] and np.array_equal(grad, f(z, t)[1])
    with pytest.raises(ValueError, match=r"target\[1\] = -100 is out of range"):
        f(z, np.array([0, -100, 0, 0]), ignore_index=2**70)


@BACKENDS
@DTYPES
def test_neutral_options_change_nothing(B, dtype):
    """weight of ones, pos_weight of ones and an absent ignore_index give the plain losses
    (to rounding: the weighted forms round differently)."""
    z = (rng(46).standard_normal((30, 6)) * 3).astype(dtype)
    t = targets("int64", 30, 6, dtype, seed=47)
    ones = np.ones(6, dtype)
    for smoothing in (0.0, 0.3):
        check_pair(B.cross_entropy(z, t, "mean", smoothing, ones, 17),
                   B.cross_entropy(z, t, "mean", smoothing))
    check_pair(B.nll_loss(z, t, "sum", ones), B.nll_loss(z, t, "sum"))
    a, y = inputs("binary_cross_entropy_with_logits", (30, 6), dtype)
    full = np.ones_like(a)
    check_pair(B.binary_cross_entropy_with_logits(a, y, "mean", full, full),
               B.binary_cross_entropy_with_logits(a, y, "mean"))
    p, y = inputs("binary_cross_entropy", (30, 6), dtype)
    check_pair(B.binary_cross_entropy(p, y, "sum", full), B.binary_cross_entropy(p, y, "sum"))


@BACKENDS
def test_none_of_empty_inputs(B):
    e = np.empty((0,))
    for name in ("mse_loss", "l1_loss", "binary_cross_entropy_with_logits", "binary_cross_entropy"):
        loss, grad = getattr(B, name)(e, e, "none")
        assert loss.shape == (0,) and grad.shape == (0,)
    for name in ("cross_entropy", "nll_loss"):
        loss, grad = getattr(B, name)(np.empty((0, 3), np.float32), np.empty(0, np.int64), "none")
        assert loss.shape == (0,) and loss.dtype == np.float32 and grad.shape == (0, 3)


@DTYPES
def test_pos_weight_extreme_logits(dtype):
    x = np.array([[1e4, -1e4, 0.0, 50.0, -50.0]], dtype)
    y = np.array([[0.0, 1.0, 0.5, 0.3, 0.7]], dtype)
    pw = np.full_like(x, 3.0)
    for B in (K, R):
        loss, grad = B.binary_cross_entropy_with_logits(x, y, "none", pos_weight=pw)
        assert np.isfinite(loss).all() and np.isfinite(grad).all()
        # x = 1e4 with y = 0 costs x; x = -1e4 with y = 1 costs pos_weight * |x|
        assert loss[0, 0] == pytest.approx(1e4) and loss[0, 1] == pytest.approx(3e4)
    check_backends(K.binary_cross_entropy_with_logits(x, y, "none", x * 0 + 2, pw),
                   R.binary_cross_entropy_with_logits(x, y, "none", x * 0 + 2, pw))


# ---- compiled vs reference, gradients, threads ----------------------------------------

@PAIR_LOSSES
@DTYPES
@pytest.mark.parametrize("shape", SIZES)
def test_pair_losses_none_match_reference(name, shape, dtype):
    a, t = inputs(name, shape, dtype)
    got = getattr(K, name)(a, t, "none")
    assert got[0].dtype == dtype and got[0].shape == shape
    check_backends(got, getattr(R, name)(a, t, "none"))


@DTYPES
@REDUCTIONS3
@BCE_OPTIONS
@pytest.mark.parametrize("shape", [(1,), (33,), (100_003,), (3, 7, 5)])
def test_bce_weights_match_reference(shape, name, options, reduction, dtype):
    a, t, ours, _ = bce_case(name, options, shape, dtype)
    check_backends(getattr(K, name)(a, t, reduction, **ours), getattr(R, name)(a, t, reduction, **ours))


@DTYPES
@REDUCTIONS3
@CE_TARGETS
@pytest.mark.parametrize("shape", [(1, 1), (7, 1000), (600, 37)])
def test_class_options_match_reference(shape, kind, reduction, dtype):
    ignore = -1 if kind == "probs" else 0  # probability targets take only a negative one
    z, t, _ = class_case(kind, *shape, dtype, ignore)
    w = rng(23).uniform(0.0, 2.0, shape[1]).astype(dtype)
    for smoothing in (0.0, 0.1):
        check_backends(K.cross_entropy(z, t, reduction, smoothing, w, ignore),
                       R.cross_entropy(z, t, reduction, smoothing, w, ignore))
    if kind != "probs":
        check_backends(K.nll_loss(z, t, reduction, w, 0), R.nll_loss(z, t, reduction, w, 0))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), c=st.integers(1, 12), smoothing=st.sampled_from([0.0, 0.3]),
       reduction=st.sampled_from(["mean", "sum", "none"]), ignore=st.integers(-2, 3),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_hypothesis_class_options(n, c, smoothing, reduction, ignore, dtype, seed):
    z = (rng(seed).standard_normal((n, c)) * 3).astype(dtype)
    t = rng(seed).integers(0, c, n)
    t[rng(seed + 1).random(n) < 0.3] = ignore  # may be all rows ('mean' is then NaN)
    w = rng(seed + 2).uniform(0.0, 2.0, c).astype(dtype)
    check_backends(K.cross_entropy(z, t, reduction, smoothing, w, ignore),
                   R.cross_entropy(z, t, reduction, smoothing, w, ignore))
    check_backends(K.nll_loss(z, t, reduction, w, ignore), R.nll_loss(z, t, reduction, w, ignore))


def _gradcheck_none(f, x, per_row=False):
    """gradcheck of a 'none' loss: its plain sum, and sum(loss * v) for a random v, whose
    gradient is grad * v (elementwise, or row-wise for per-row losses)."""
    g = f(x)[1]
    gradcheck(lambda x: float(np.sum(f(x)[0])), [x], [g])
    gradcheck(lambda x: f(x)[0], [x], lambda v: [g * (v[:, None] if per_row else v)])


@BACKENDS
@PAIR_LOSSES
def test_gradcheck_pair_losses_none(B, name):
    a, t = inputs(name, (4, 5), np.float64, seed=4)
    if name == "binary_cross_entropy":
        a = np.clip(a, 0.05, 0.95)
    if name == "l1_loss":
        a[np.abs(a - t) < 1e-2] += 0.1
    _gradcheck_none(lambda a: getattr(B, name)(a, t, "none"), a)


@BACKENDS
@REDUCTIONS3
@BCE_OPTIONS
def test_gradcheck_bce_weights(B, name, options, reduction):
    a, t, ours, _ = bce_case(name, options, (4, 5), np.float64, seed=8)
    if name == "binary_cross_entropy":
        a = np.clip(a, 0.05, 0.95)
    f = lambda a: getattr(B, name)(a, t, reduction, **ours)  # noqa: E731
    if reduction == "none":
        _gradcheck_none(f, a)
    else:
        gradcheck(lambda a: f(a)[0], [a], [f(a)[1]])


@BACKENDS
@REDUCTIONS3
@CE_TARGETS
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_gradcheck_cross_entropy_options(B, kind, smoothing, reduction):
    ignore = -1 if kind == "probs" else 1
    z, t, _ = class_case(kind, 7, 5, np.float64, ignore, seed=50)
    w = rng(51).uniform(0.2, 2.0, 5)
    f = lambda z: B.cross_entropy(z, t, reduction, smoothing, w, ignore)  # noqa: E731
    if reduction == "none":
        _gradcheck_none(f, z, per_row=True)
    else:
        gradcheck(lambda z: f(z)[0], [z], [f(z)[1]])


@BACKENDS
@REDUCTIONS3
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_gradcheck_nll_loss_options(B, weighted, reduction):
    z, t, _ = class_case("int64", 7, 5, np.float64, ignore=-100, seed=52)
    w = rng(53).uniform(0.2, 2.0, 5) if weighted else None
    f = lambda z: B.nll_loss(z, t, reduction, w)  # noqa: E731
    if reduction == "none":
        _gradcheck_none(f, z, per_row=True)
    else:
        gradcheck(lambda z: f(z)[0], [z], [f(z)[1]])


@DTYPES
def test_thread_count_does_not_change_bits_of_options(dtype):
    n = 1_000_003
    a, t = inputs("binary_cross_entropy_with_logits", (n,), dtype)
    p, y = inputs("binary_cross_entropy", (n,), dtype)
    w = rng(60).uniform(0.0, 2.0, n).astype(dtype)
    z, zt, _ = class_case("int64", 3000, 50, dtype, ignore=7)
    zp = targets("probs", 3000, 50, dtype)
    cw = rng(61).uniform(0.2, 2.0, 50).astype(dtype)
    runs = []
    for threads in (1, 2):
        with cygrad.threads(threads):
            runs.append([K.mse_loss(a, t, "none"), K.l1_loss(a, t, "none"),
                         K.binary_cross_entropy_with_logits(a, t, "none"),
                         K.binary_cross_entropy_with_logits(a, t, "mean", w, w + 0.5),
                         K.binary_cross_entropy(p, y, "sum", w), K.binary_cross_entropy(p, y, "none", w),
                         K.cross_entropy(z, zt, "mean", 0.1, cw, 7),
                         K.cross_entropy(z, zt, "none", 0.1, cw, 7), K.cross_entropy(z, zp, "sum", 0.1, cw),
                         K.nll_loss(z, zt, "mean", cw, 7), K.nll_loss(z, zt, "none", cw, 7)])
    for (l1, g1), (l2, g2) in zip(*runs):
        assert np.array_equal(l1, l2) and np.array_equal(g1, g2)


# ---- errors of the options ------------------------------------------------------------

def _option_errors():
    """(argument named in the message, exception type, call on a backend)."""
    p, z, t = np.full((4, 3), 0.5), np.zeros((4, 3)), np.array([0, 1, 2, 0])
    bce, bcel = "binary_cross_entropy", "binary_cross_entropy_with_logits"
    out = []
    for name, x in ((bce, p), (bcel, p)):
        out += [("weight", TypeError, name, (x, p), {"weight": p.astype(np.float32)}),
                ("weight", ValueError, name, (x, p), {"weight": np.ones(3)}),  # not broadcast here
                ("weight", TypeError, name, (x, p), {"weight": p.tolist()}),
                ("weight", ValueError, name, (x, p), {"weight": np.ones((3, 4)).T}),
                ("reduction", ValueError, name, (x, p, "bogus"), {})]
    out += [("pos_weight", ValueError, bcel, (p, p), {"pos_weight": np.ones(3)}),
            ("pos_weight", ValueError, bcel, (p, p), {"pos_weight": np.ones((4, 1))}),
            ("pos_weight", TypeError, bcel, (p, p), {"pos_weight": p.astype(np.float32)})]
    for name in ("cross_entropy", "nll_loss"):
        out += [("weight", ValueError, name, (z, t), {"weight": np.ones(4)}),
                ("weight", ValueError, name, (z, t), {"weight": np.ones((3, 1))}),
                ("weight", ValueError, name, (z, t), {"weight": np.ones(6)[::2]}),
                ("weight", TypeError, name, (z, t), {"weight": np.ones(3, np.float32)}),
                ("weight", TypeError, name, (z, t), {"weight": np.ones(3, np.int64)}),
                ("weight", TypeError, name, (z, t), {"weight": [1.0, 1.0, 1.0]}),
                ("reduction", ValueError, name, (z, t, "bogus"), {}),
                ("ignore_index", TypeError, name, (z, t), {"ignore_index": 1.0}),
                ("ignore_index", TypeError, name, (z, t), {"ignore_index": None}),
                ("ignore_index", TypeError, name, (z, t), {"ignore_index": True}),
                ("ignore_index", TypeError, name, (z, t), {"ignore_index": np.array([1])})]
    probs = np.full((4, 3), 1 / 3)
    out += [("weight", ValueError, "cross_entropy", (z, probs), {"weight": np.ones(2)}),
            ("ignore_index", ValueError, "cross_entropy", (z, probs), {"ignore_index": 0}),
            ("ignore_index", ValueError, "cross_entropy", (z, probs), {"ignore_index": 2**70})]
    return out


@pytest.mark.parametrize("arg,exc,name,args,kw", _option_errors(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_option_errors_same_on_both_backends(arg, exc, name, args, kw):
    messages = []
    for B in (K, R):
        with pytest.raises(exc, match=arg) as info:
            getattr(B, name)(*args, **kw)
        assert type(info.value) is exc
        messages.append(str(info.value))
    assert messages[0] == messages[1]
