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
    with pytest.raises(ValueError, match="reduction"):
        B.mse_loss(a, a, "none")
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
        B.l1_loss(a, a, "none")
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
    with pytest.raises(ValueError, match=r"target\[1\] = -100"):
        f(z, np.array([0, -100, 0, 0], np.int32))
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
    torch = pytest.importorskip("torch")
    ta = torch.tensor(a, requires_grad=True)
    targs = [torch.from_numpy(x) if isinstance(x, np.ndarray) else x for x in args]
    loss = fn(ta, *targs, **kw)
    loss.backward()
    return loss.item(), ta.grad.numpy()


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
