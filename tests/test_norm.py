"""Batch norm: compiled vs reference, finite differences, torch, threads, edge cases, errors."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cygrad
from cygrad import kernels as K, reference as R
from cygrad.testing import gradcheck
from elementwise_helpers import BACKENDS, DTYPES, assert_close, rng

# (N, C) and (N, C, L) with L < 64 take the column path; the others the strip path,
# (4, 3, 70) with a part group of lanes, (3, 2, 100, 100) with several reduction blocks.
SHAPES = [(2, 3), (64, 128), (8, 3, 5), (7, 5, 3, 4), (4, 3, 20), (5, 4, 1, 1), (4, 3, 70),
          (2, 3, 40, 40), (3, 2, 100, 100)]
TRAINING = pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
AFFINE = pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])


def batch(shape, dtype, seed=0, offset=1.0):
    """x, weight, bias, running_mean, running_var, grad_out of a BatchNorm on shape."""
    r = rng(seed)
    c = shape[1]
    x = (r.standard_normal(shape) * 3 + offset).astype(dtype)
    weight, bias = r.standard_normal(c).astype(dtype), r.standard_normal(c).astype(dtype)
    rm, rv = r.standard_normal(c).astype(dtype), r.uniform(0.5, 2.0, c).astype(dtype)
    return x, weight, bias, rm, rv, r.standard_normal(shape).astype(dtype)


def close(got, want, rtol=None):
    """Arrays (or None) agree, relative to the largest magnitude of want."""
    if want is None:
        assert got is None
    else:
        assert_close(got, want, normwise=True, rtol=rtol)


def both_backends(fn):
    """fn(B) for the kernels and the reference, each on its own copy of any state."""
    return fn(K), fn(R)


@DTYPES
@TRAINING
@AFFINE
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_reference(shape, affine, training, dtype):
    x, w, b, rm, rv, _ = batch(shape, dtype)
    w, b = (w, b) if affine else (None, None)

    def run(B):
        m, v = rm.copy(), rv.copy()
        out = B.batch_norm_forward(x, w, b, m, v, training=training, momentum=0.3, eps=1e-3)
        return out + (m, v)

    got, want = both_backends(run)
    for g, e in zip(got, want):
        close(g, e, rtol=1e-12 if g.dtype == np.float64 else None)
    assert got[1].dtype == got[2].dtype == np.float64 and got[1].shape == (shape[1],)


@DTYPES
@TRAINING
@AFFINE
@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_reference(shape, input_grad, affine, training, dtype):
    x, w, b, rm, rv, g = batch(shape, dtype, seed=1)
    w = w if affine else None
    _, mean, invstd = R.batch_norm_forward(x, w, None if w is None else b, rm.copy(), rv.copy(),
                                           training=training)
    got, want = both_backends(lambda B: B.batch_norm_backward(g, x, w, mean, invstd,
                                                              training=training,
                                                              input_grad=input_grad))
    for a, e in zip(got, want):
        close(a, e)
    assert (got[0] is None) == (not input_grad) and (got[1] is None) == (not affine)


@BACKENDS
@TRAINING
@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 4), (2, 2, 3, 3), (2, 2, 8, 9)])
def test_gradcheck(B, shape, training):
    """Finite differences of sum(y * u) through x, weight and bias (the batch statistics
    depend on x in training; in evaluation the running statistics are constants)."""
    x, w, b, rm, rv, _ = batch(shape, np.float64, seed=2)

    def forward(x, w, b):
        stats = (None, None) if training else (rm, rv)
        return B.batch_norm_forward(x, w, b, *stats, training=training)[0]

    def grads(u):
        stats = (None, None) if training else (rm, rv)
        _, mean, invstd = B.batch_norm_forward(x, w, b, *stats, training=training)
        return list(B.batch_norm_backward(u, x, w, mean, invstd, training=training))

    gradcheck(forward, [x, w, b], grads)


# ---- torch oracle ----------------------------------------------------------------------

def torch_run(x, w, b, rm, rv, g_steps, training_steps):
    """torch.nn.functional.batch_norm over the steps (training, then evaluation), with
    autograd: [(y, grad_x, grad_weight, grad_bias)], running_mean, running_var."""
    torch = pytest.importorskip("torch")
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    out = []
    for step, g in enumerate(g_steps):
        tx = torch.tensor(x + step, requires_grad=True)
        tw, tb = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
        y = torch.nn.functional.batch_norm(tx, trm, trv, tw, tb, step < training_steps, 0.1, 1e-5)
        y.backward(torch.tensor(g))
        out.append((y.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()))
    return out, trm.numpy(), trv.numpy()


def cygrad_run(B, x, w, b, rm, rv, g_steps, training_steps):
    """The same steps on a cygrad backend."""
    rm, rv = rm.copy(), rv.copy()
    out = []
    for step, g in enumerate(g_steps):
        training = step < training_steps
        y, mean, invstd = B.batch_norm_forward(x + step, w, b, rm, rv, training=training)
        out.append((y,) + B.batch_norm_backward(g, x + step, w, mean, invstd, training=training))
    return out, rm, rv


@DTYPES
@pytest.mark.parametrize("shape", [(16, 6), (8, 4, 10), (4, 3, 9, 9), (4, 3, 2, 2)])
def test_against_torch(shape, dtype):
    """5 training steps (the running statistics move) and an evaluation step; float64
    agrees with torch to 1e-12 relative."""
    x, w, b, rm, rv, _ = batch(shape, dtype, seed=3, offset=2.0)
    g_steps = [rng(10 + i).standard_normal(shape).astype(dtype) for i in range(6)]
    want = torch_run(x, w, b, rm, rv, g_steps, 5)
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    for B in (K, R):
        got = cygrad_run(B, x, w, b, rm, rv, g_steps, 5)
        for step_got, step_want in zip(got[0], want[0]):
            for a, e in zip(step_got, step_want):
                close(a, e, rtol=rtol)
        close(got[1], want[1], rtol=rtol)
        close(got[2], want[2], rtol=rtol)


@pytest.mark.parametrize("shape", [(64, 32, 26, 26), (16, 5, 64, 64), (300, 96)])
def test_against_torch_float32_large(shape):
    x, w, b, rm, rv, g = batch(shape, np.float32, seed=4)
    want = torch_run(x, w, b, rm, rv, [g], 1)
    got = cygrad_run(K, x, w, b, rm, rv, [g], 1)
    for a, e in zip(got[0][0], want[0][0]):
        close(a, e, rtol=1e-5)
    close(got[1], want[1], rtol=1e-6)
    close(got[2], want[2], rtol=1e-6)


# ---- determinism ------------------------------------------------------------------------

@DTYPES
@pytest.mark.parametrize("shape", [(64, 32, 26, 26), (16, 5, 64, 64), (2, 1, 300, 300),
                                   (512, 256), (128, 64, 3), (64, 512, 4, 4)],
                         ids=["whole-channels", "blocks", "one-channel", "columns", "columns-L3",
                              "columns-L16"])
def test_thread_count_does_not_change_bits(shape, dtype):
    """1 thread runs each channel's passes back to back; 2 threads split 5 channels by
    blocks: the same sums in the same order either way."""
    x, w, b, rm, rv, g = batch(shape, dtype, seed=5)
    runs = []
    for n in (1, 2):
        with cygrad.threads(n):
            m, v = rm.copy(), rv.copy()
            y, mean, invstd = K.batch_norm_forward(x, w, b, m, v, training=True)
            grads = K.batch_norm_backward(g, x, w, mean, invstd, training=True)
            runs.append((y, mean, invstd, m, v) + grads)
    for a, e in zip(*runs):
        assert np.array_equal(a, e)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 9), c=st.integers(1, 6),
       trailing=st.sampled_from([(), (1,), (3,), (17,), (2, 9), (5, 7), (70,), (8, 9)]),
       dtype=st.sampled_from([np.float32, np.float64]), training=st.booleans(),
       seed=st.integers(0, 2**16))
def test_hypothesis_shapes(n, c, trailing, dtype, training, seed):
    shape = (n, c) + trailing
    if training and n * int(np.prod(trailing)) == 1:
        n, shape = 2, (2, c) + trailing
    x, w, b, rm, rv, g = batch(shape, dtype, seed)
    got, want = both_backends(lambda B: B.batch_norm_forward(x, w, b, rm.copy(), rv.copy(),
                                                             training=training))
    for a, e in zip(got, want):
        close(a, e, rtol=1e-12 if a.dtype == np.float64 else None)
    grads = both_backends(lambda B: B.batch_norm_backward(g, x, w, want[1], want[2],
                                                          training=training))
    for a, e in zip(*grads):
        close(a, e)


# ---- semantics --------------------------------------------------------------------------

@BACKENDS
def test_running_statistics_update(B):
    """rm = (1 - m) rm + m mean, rv = (1 - m) rv + m var_unbiased; momentum 0 keeps them."""
    x = np.array([[1.0, 10.0], [3.0, 20.0], [8.0, 60.0]])
    rm, rv = np.array([0.5, -1.0]), np.array([2.0, 3.0])
    B.batch_norm_forward(x, None, None, rm, rv, training=True, momentum=0.25)
    np.testing.assert_allclose(rm, 0.75 * np.array([0.5, -1.0]) + 0.25 * x.mean(0), rtol=1e-15)
    np.testing.assert_allclose(rv, 0.75 * np.array([2.0, 3.0]) + 0.25 * x.var(0, ddof=1),
                               rtol=1e-15)
    before = (rm.copy(), rv.copy())
    B.batch_norm_forward(x, None, None, rm, rv, training=True, momentum=0.0)
    assert np.array_equal(rm, before[0]) and np.array_equal(rv, before[1])
    B.batch_norm_forward(x, None, None, rm, rv, training=False)  # evaluation reads only
    assert np.array_equal(rm, before[0]) and np.array_equal(rv, before[1])


@BACKENDS
def test_evaluation_uses_running_statistics(B):
    x = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    rm, rv = np.array([1.0, -1.0], np.float32), np.array([4.0, 0.25], np.float32)
    w, b = np.array([2.0, 1.0], np.float32), np.array([0.5, 0.0], np.float32)
    y, mean, invstd = B.batch_norm_forward(x, w, b, rm, rv, training=False, eps=0.0)
    assert np.array_equal(y, np.array([[0.5, 6.0], [2.5, 10.0]], np.float32))
    assert mean.tolist() == [1.0, -1.0] and invstd.tolist() == [0.5, 2.0]
    g = np.ones_like(x)
    gx, gw, gb = B.batch_norm_backward(g, x, w, mean, invstd, training=False)
    assert gx.tolist() == [[1.0, 2.0], [1.0, 2.0]]  # g * weight * invstd
    assert gb.tolist() == [2.0, 2.0] and gw.tolist() == [0.5 * (0 + 2), 2.0 * (3 + 5)]


@BACKENDS
def test_large_mean_keeps_the_variance(B):
    """Two passes: a mean 1e8 times the spread costs no digits (E[x^2] - E[x]^2 would
    lose all of them)."""
    x = 1e8 + rng(6).standard_normal((1000, 3, 20))
    _, mean, invstd = B.batch_norm_forward(x, None, None, None, None, training=True, eps=0.0)
    var = np.var(x - 1e8, axis=(0, 2))
    np.testing.assert_allclose(1.0 / invstd**2, var, rtol=1e-9)
    exact = [math.fsum(x[:, c].ravel()) / x[:, c].size for c in range(3)]
    np.testing.assert_allclose(mean, exact, rtol=1e-15)  # the deviations' sum refines it


@BACKENDS
def test_constant_channel(B):
    """var 0: invstd = 1/sqrt(eps); with eps 0, torch's InvStd gives 0 (y = bias)."""
    x = np.full((4, 2, 3), 7.0)
    y, mean, invstd = B.batch_norm_forward(x, None, None, None, None, training=True)
    assert np.all(y == 0.0) and mean.tolist() == [7.0, 7.0]
    assert invstd.tolist() == [1.0 / np.sqrt(1e-5)] * 2
    b = np.array([1.5, -2.0])
    y, _, invstd = B.batch_norm_forward(x, np.ones(2), b, None, None, training=True, eps=0.0)
    assert invstd.tolist() == [0.0, 0.0] and np.all(y == b.reshape(1, 2, 1))


@BACKENDS
def test_nan_stays_in_its_channel(B):
    x, w, b, rm, rv, g = batch((6, 3, 5), np.float64, seed=7)
    x[2, 1, 3] = np.nan
    y, mean, invstd = B.batch_norm_forward(x, w, b, rm, rv, training=True)
    assert np.isnan(y[:, 1]).all() and np.isfinite(y[:, [0, 2]]).all()
    assert np.isnan(rm[1]) and np.isnan(rv[1]) and np.isfinite(rm[[0, 2]]).all()
    gx, gw, gb = B.batch_norm_backward(g, x, w, mean, invstd, training=True)
    assert np.isnan(gx[:, 1]).all() and np.isfinite(gx[:, [0, 2]]).all()
    assert np.isnan(gw[1]) and np.isfinite(gb).all()


@BACKENDS
def test_empty_batch_like_torch(B):
    """An empty batch normalises to an empty y and leaves the running statistics alone."""
    x = np.empty((0, 3, 4), np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    y, mean, invstd = B.batch_norm_forward(x, None, None, rm, rv, training=True)
    assert y.shape == x.shape and np.isnan(mean).all() and np.isnan(invstd).all()
    assert rm.tolist() == [0, 0, 0] and rv.tolist() == [1, 1, 1]
    gx, gw, gb = B.batch_norm_backward(x, x, np.ones(3, np.float32), mean, invstd, training=True)
    assert gx.shape == x.shape and gw.tolist() == [0, 0, 0] and gb.tolist() == [0, 0, 0]
    y, _, _ = B.batch_norm_forward(np.empty((5, 0)), None, None, None, None, training=True)
    assert y.shape == (5, 0)


@BACKENDS
def test_input_grad_false_skips_grad_x(B):
    x, w, b, rm, rv, g = batch((6, 3, 5), np.float32, seed=8)
    _, mean, invstd = B.batch_norm_forward(x, w, b, rm, rv, training=True)
    full = B.batch_norm_backward(g, x, w, mean, invstd, training=True)
    part = B.batch_norm_backward(g, x, w, mean, invstd, training=True, input_grad=False)
    assert part[0] is None and np.array_equal(part[1], full[1]) and np.array_equal(part[2], full[2])
    assert B.batch_norm_backward(g, x, None, mean, invstd, training=False,
                                 input_grad=False) == (None, None, None)


# ---- errors -----------------------------------------------------------------------------

def caller(fn, **defaults):
    """fn called by keyword: these defaults (and training=True) updated by each call's."""
    return lambda **changes: fn(**{"training": True, **defaults, **changes})


@BACKENDS
def test_forward_bad_inputs(B):
    x = np.ones((4, 3, 2))
    c3 = np.ones(3)
    fwd = caller(B.batch_norm_forward, x=x, weight=c3, bias=c3, running_mean=None,
                 running_var=None)

    with pytest.raises(ValueError, match="C-contiguous"):
        fwd(x=np.ones((2, 3, 4)).transpose(2, 1, 0))
    with pytest.raises(TypeError, match="x"):
        fwd(x=x.astype(np.int64))
    with pytest.raises(TypeError, match="x"):
        fwd(x=x.tolist())
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        fwd(x=np.ones(4))
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        fwd(weight=np.ones(4))
    with pytest.raises(TypeError, match="bias"):
        fwd(bias=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="weight and bias"):
        fwd(bias=None)
    with pytest.raises(ValueError, match="running_mean and running_var"):
        fwd(running_mean=c3.copy())
    with pytest.raises(ValueError, match="running_var is read-only"):
        ro = np.ones(3)
        ro.flags.writeable = False
        fwd(running_mean=c3.copy(), running_var=ro)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        fwd(x=np.ones((1, 3)))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        fwd(x=np.ones((1, 3, 1, 1)))
    with pytest.raises(ValueError, match="required when training=False"):
        fwd(training=False)
    with pytest.raises(ValueError, match="momentum"):
        fwd(momentum=1.5)
    with pytest.raises(TypeError, match="momentum"):
        fwd(momentum=None)
    with pytest.raises(ValueError, match="eps"):
        fwd(eps=-1e-5)
    with pytest.raises(TypeError, match="training"):
        fwd(training=1)
    with pytest.raises(TypeError):
        B.batch_norm_forward(x, c3, c3, None, None)  # training is required


@BACKENDS
def test_read_only_running_stats_are_fine_in_evaluation(B):
    rm, rv = np.zeros(3), np.ones(3)
    rm.flags.writeable = rv.flags.writeable = False
    y, _, _ = B.batch_norm_forward(np.ones((2, 3)), None, None, rm, rv, training=False)
    assert y.shape == (2, 3)


@BACKENDS
def test_backward_bad_inputs(B):
    x = np.ones((4, 3, 2))
    s = np.ones(3)
    bwd = caller(B.batch_norm_backward, grad_out=x, x=x, weight=s, save_mean=s, save_invstd=s)

    with pytest.raises(ValueError, match="grad_out has shape"):
        bwd(grad_out=np.ones((4, 3, 3)))
    with pytest.raises(TypeError, match="grad_out"):
        bwd(grad_out=x.astype(np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        bwd(grad_out=np.ones((2, 3, 4)).transpose(2, 1, 0))
    with pytest.raises(TypeError, match="save_mean must be float64"):
        bwd(save_mean=s.astype(np.float32))
    with pytest.raises(ValueError, match=r"save_invstd must have shape \(3,\)"):
        bwd(save_invstd=np.ones(2))
    with pytest.raises(ValueError, match="save_invstd must be 1-D"):
        bwd(save_invstd=np.ones((3, 1)))
    with pytest.raises(ValueError, match=r"weight must have shape"):
        bwd(weight=np.ones(2))
    with pytest.raises(TypeError, match="input_grad"):
        bwd(input_grad=None)
    with pytest.raises(TypeError, match="training"):
        bwd(training="yes")
