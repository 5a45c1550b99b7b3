"""Activations and derivatives: compiled vs reference, finite differences, torch, threads, errors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cygrad
from cygrad import kernels as K, reference as R
from cygrad.testing import gradcheck
from elementwise_helpers import BACKENDS, DTYPES, assert_close, rng

UNARY = ["relu", "leaky_relu", "sigmoid", "tanh"]
BACKWARD = {"relu": "relu_backward", "leaky_relu": "leaky_relu_backward",
            "sigmoid": "sigmoid_backward", "tanh": "tanh_backward"}
FROM_OUTPUT = {"sigmoid", "tanh"}  # derivative computed from y, not x
ROW_BACKWARD = {"softmax": "softmax_backward", "log_softmax": "log_softmax_backward"}  # from y
ROW_SHAPES = [(1, 1), (1, 300), (64, 1), (64, 10), (3, 1000), (300, 257), (0, 5), (4, 0)]
# small, above every parallel threshold (140_001), odd sizes, and an N-D shape
SHAPES = [(0,), (1,), (7,), (64, 128), (140_001,), (3, 5, 4099)]


def data(shape, dtype, scale=4.0, seed=0):
    return (rng(seed).standard_normal(shape) * scale).astype(dtype)


@DTYPES
@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_reference(name, shape, dtype):
    x = data(shape, dtype)
    assert_close(getattr(K, name)(x), getattr(R, name)(x))


@DTYPES
@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_reference(name, shape, dtype):
    x, g = data(shape, dtype), data(shape, dtype, 1.0, seed=1)
    v = R.sigmoid(x) if name == "sigmoid" else R.tanh(x) if name == "tanh" else x
    bw = BACKWARD[name]
    assert_close(getattr(K, bw)(g, v), getattr(R, bw)(g, v))


@DTYPES
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape", [(1, 1), (64, 10), (64, 128), (3, 1000), (300, 257), (0, 5), (4, 0)])
def test_softmax_matches_reference(name, shape, dtype):
    x = data(shape, dtype)
    assert_close(getattr(K, name)(x), getattr(R, name)(x))


def row_backward_args(name, shape, dtype, seed=0):
    """(grad_out, y) for a softmax/log_softmax derivative: y is the forward output."""
    y = getattr(R, name)(data(shape, dtype, seed=seed))
    return data(shape, dtype, 1.0, seed=seed + 1), y


@DTYPES
@pytest.mark.parametrize("name", list(ROW_BACKWARD))
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_softmax_backward_matches_reference(name, shape, dtype):
    g, y = row_backward_args(name, shape, dtype)
    bw = ROW_BACKWARD[name]
    got = getattr(K, bw)(g, y)
    assert got.shape == shape
    # y * (g - s) and g - exp(y) * s cancel: compare relative to the largest element
    assert_close(got, getattr(R, bw)(g, y), normwise=True)


@BACKENDS
@DTYPES
def test_softmax_backward_special_values(B, dtype):
    """A NaN poisons its row's sum (so the whole row), and only that row."""
    y = B.softmax(np.array([[0.0, 1.0, 2.0], [0.5, -0.5, 0.0]], dtype))
    g = np.array([[1.0, np.nan, 0.0], [1.0, 2.0, 3.0]], dtype)
    for bw in ROW_BACKWARD.values():
        out = getattr(B, bw)(g, y)
        assert np.isnan(out[0]).all() and np.isfinite(out[1]).all()
    # a constant grad_out has no softmax component: zero gradient
    ones = np.ones_like(y)
    assert np.abs(B.softmax_backward(ones, y)).max() < 4 * np.finfo(dtype).eps


@DTYPES
def test_float32_accuracy_on_dense_grid(dtype):
    """sigmoid/tanh over their whole range, against float64 math."""
    x = np.linspace(-100, 100, 400_001).astype(dtype)
    exact = {"sigmoid": 1 / (1 + np.exp(-x.astype(np.float64))), "tanh": np.tanh(x.astype(np.float64))}
    for name, want in exact.items():
        got = getattr(K, name)(x)
        assert_close(got, getattr(R, name)(x))
        ok = np.abs(want) > 1e-30
        tol = 4e-7 if dtype == np.float32 else 1e-15
        assert np.max(np.abs(got[ok] - want[ok]) / np.abs(want[ok])) < tol, name


@BACKENDS
@DTYPES
def test_special_values(B, dtype):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 88.9, -104.5], dtype)
    with np.errstate(all="ignore"):
        sig = B.sigmoid(x)
        assert np.isnan(sig[0]) and sig[1] == 1 and sig[2] == 0 and sig[3] == 0.5
        th = B.tanh(x)
        assert np.isnan(th[0]) and th[1] == 1 and th[2] == -1 and th[5] == 1 and th[6] == -1
        r = B.relu(x)
        assert np.isnan(r[0]) and r[1] == np.inf and r[2] == 0
        lr = B.leaky_relu(x, 0.1)
        assert np.isnan(lr[0]) and lr[2] == -np.inf
        s = B.softmax(np.array([[0.0, np.nan], [1e4, -1e4]], dtype))
        assert np.isnan(s[0]).all() and s[1, 0] == 1 and s[1, 1] == 0


@DTYPES
def test_extreme_rows_are_finite(dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [3e4, 3e4, -3e4]], dtype)
    for B in (K, R):
        assert np.isfinite(B.softmax(x)).all()
        assert np.isfinite(B.log_softmax(x)).all()
    assert_close(K.log_softmax(x), R.log_softmax(x))


@pytest.mark.parametrize("name", UNARY)
def test_gradcheck(name):
    x = data((5, 7), np.float64, 2.0, seed=3)
    x[np.abs(x) < 1e-3] = 0.5  # keep away from relu's kink
    for B in (K, R):
        fwd = getattr(B, name)
        bw = getattr(B, BACKWARD[name])

        def grads(w):
            arg = fwd(x) if name in FROM_OUTPUT else x
            return [bw(np.ascontiguousarray(w), arg)]
        gradcheck(lambda x: fwd(x), [x], grads)


@pytest.mark.parametrize("name", list(ROW_BACKWARD))
def test_gradcheck_softmax_backward(name):
    """softmax_backward / log_softmax_backward are the derivatives of softmax / log_softmax."""
    x = data((4, 6), np.float64, 2.0, seed=3)
    for B in (K, R):
        fwd, bw = getattr(B, name), getattr(B, ROW_BACKWARD[name])
        gradcheck(lambda x: fwd(x), [x], lambda w: [bw(w, fwd(x))])


@DTYPES
@pytest.mark.parametrize("name", list(ROW_BACKWARD))
def test_softmax_backward_in_place_out(name, dtype):
    g, y = row_backward_args(name, (64, 130), dtype)
    bw = ROW_BACKWARD[name]
    want = getattr(R, bw)(g, y)
    for B in (K, R):
        g2 = g.copy()
        assert getattr(B, bw)(g2, y, out=g2) is g2
        assert_close(g2, want, normwise=True)
        out = np.empty_like(g)
        assert getattr(B, bw)(g, y, out=out) is out
        assert_close(out, want, normwise=True)


@DTYPES
@pytest.mark.parametrize("name", UNARY + ["softmax", "log_softmax"])
def test_in_place_out(name, dtype):
    x = data((64, 130), dtype)
    want = getattr(R, name)(x)
    y = x.copy()
    assert getattr(K, name)(y, out=y) is y
    assert_close(y, want)
    out = np.empty_like(x)
    assert getattr(K, name)(x, out=out) is out
    assert_close(out, want)


@DTYPES
@pytest.mark.parametrize("name", UNARY + ["softmax", "log_softmax"])
def test_thread_count_does_not_change_bits(name, dtype):
    x = data((400, 701), dtype)
    f = getattr(K, name)
    with cygrad.threads(1):
        one = f(x)
    with cygrad.threads(2):
        two = f(x)
    assert np.array_equal(one, two)
    bw = BACKWARD.get(name) or ROW_BACKWARD.get(name)
    if bw:
        v = one if name in ROW_BACKWARD else x  # softmax derivatives take the output
        g = data(x.shape, dtype, 1.0, seed=5)
        with cygrad.threads(1):
            one = getattr(K, bw)(g, v)
        with cygrad.threads(2):
            two = getattr(K, bw)(g, v)
        assert np.array_equal(one, two)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 3000), scale=st.sampled_from([1e-3, 1.0, 30.0]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_hypothesis_against_reference(n, scale, dtype, seed):
    x = data((n,), dtype, scale, seed)
    g = data((n,), dtype, 1.0, seed + 1)
    for name in UNARY:
        assert_close(getattr(K, name)(x), getattr(R, name)(x))
        bw = BACKWARD[name]
        assert_close(getattr(K, bw)(g, x), getattr(R, bw)(g, x))
    if n:
        x2, g2 = x.reshape(1, n), g.reshape(1, n)
        for name, bw in ROW_BACKWARD.items():
            y2 = getattr(R, name)(x2)
            # log_softmax = x - lse: near 0 only lse's absolute accuracy is left
            assert_close(getattr(K, name)(x2), y2, normwise=name == "log_softmax")
            assert_close(getattr(K, bw)(g2, y2), getattr(R, bw)(g2, y2), normwise=True)


# ---- errors: both backends raise the same exception, naming the argument ----------------

@BACKENDS
def test_bad_inputs(B):
    x = np.ones((4, 3))
    with pytest.raises(TypeError, match="x"):
        B.relu([1.0, 2.0])
    with pytest.raises(TypeError, match="x"):
        B.sigmoid(np.ones(3, np.int64))
    with pytest.raises(TypeError, match="x"):
        B.tanh(np.ones(3, ">f8"))
    with pytest.raises(ValueError, match="C-contiguous"):
        B.tanh(x.T)
    with pytest.raises(ValueError, match="2-D"):
        B.softmax(np.ones(3))
    with pytest.raises(ValueError, match="2-D"):
        B.log_softmax(np.ones((2, 2, 2)))
    with pytest.raises(TypeError, match="negative_slope"):
        B.leaky_relu(x, negative_slope="0.1")
    with pytest.raises(TypeError, match="negative_slope"):
        B.leaky_relu_backward(x, x, negative_slope=None)
    with pytest.raises(ValueError, match="shape"):
        B.relu_backward(x, np.ones((3, 4)))
    with pytest.raises(TypeError, match="y"):
        B.sigmoid_backward(x, x.astype(np.float32))
    with pytest.raises(TypeError, match="grad_out"):
        B.tanh_backward(None, x)


@BACKENDS
@pytest.mark.parametrize("bw", list(ROW_BACKWARD.values()))
def test_softmax_backward_bad_inputs(B, bw):
    f = getattr(B, bw)
    g, y = np.ones((4, 3)), np.full((4, 3), 1 / 3)
    with pytest.raises(ValueError, match="2-D"):
        f(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="2-D"):
        f(np.ones((2, 2, 2)), np.ones((2, 2, 2)))
    with pytest.raises(TypeError, match="grad_out"):
        f(g.astype(np.int64), y)
    with pytest.raises(TypeError, match="grad_out"):
        f(g.tolist(), y)
    with pytest.raises(TypeError, match="y"):
        f(g, y.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        f(g, np.ones((3, 4)))
    with pytest.raises(ValueError, match="shape"):
        f(g, np.ones(12))
    with pytest.raises(ValueError, match="C-contiguous"):
        f(np.ones((3, 4)).T, y)
    with pytest.raises(ValueError, match="C-contiguous"):
        f(g, np.ones((3, 4)).T)
    with pytest.raises(TypeError, match="out"):
        f(g, y, out=np.empty((4, 3), np.float32))
    ro = np.empty_like(g)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        f(g, y, out=ro)
    big = np.ones(13)
    with pytest.raises(ValueError, match="overlaps"):
        f(big[:12].reshape(4, 3), y, out=big[1:].reshape(4, 3))
    with pytest.raises(ValueError, match="overlaps"):
        f(g, big[:12].reshape(4, 3), out=big[1:].reshape(4, 3))


@BACKENDS
def test_bad_out(B):
    x = np.ones((4, 3))
    with pytest.raises(ValueError, match="out"):
        B.relu(x, out=np.empty((3, 4)))
    with pytest.raises(TypeError, match="out"):
        B.sigmoid(x, out=np.empty((4, 3), np.float32))
    ro = np.empty_like(x)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        B.tanh(x, out=ro)
    big = np.ones(13)
    with pytest.raises(ValueError, match="overlaps"):
        B.relu(big[:12].reshape(4, 3), out=big[1:].reshape(4, 3))
    g = np.ones((4, 3))
    with pytest.raises(ValueError, match="overlaps"):
        B.relu_backward(g, big[:12].reshape(4, 3), out=big[1:].reshape(4, 3))


# ---- torch oracle --------------------------------------------------------------------

@DTYPES
def test_against_torch(dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = data((64, 257), dtype, 3.0, seed=7)
    g = data((64, 257), dtype, 1.0, seed=8)
    tol = dict(rtol=2e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-15)
    forwards = {"relu": F.relu, "leaky_relu": lambda t: F.leaky_relu(t, 0.2),
                "sigmoid": torch.sigmoid, "tanh": torch.tanh,
                "softmax": lambda t: torch.softmax(t, -1), "log_softmax": lambda t: F.log_softmax(t, -1)}
    for name, tf in forwards.items():
        tx = torch.tensor(x, requires_grad=True)
        ty = tf(tx)
        ty.backward(torch.tensor(g))
        args = (0.2,) if name == "leaky_relu" else ()
        ours = getattr(K, name)(x, *args)
        np.testing.assert_allclose(ours, ty.detach().numpy(), **tol, err_msg=name)
        if name in BACKWARD:
            # the derivative formula, fed torch's own output (1 - y^2 amplifies a 1-ulp y difference)
            v = ty.detach().numpy() if name in FROM_OUTPUT else x
            np.testing.assert_allclose(getattr(K, BACKWARD[name])(g, v, *args), tx.grad.numpy(),
                                       **tol, err_msg=name)
        if name in ROW_BACKWARD:
            # fed torch's output too; torch sums each row in the input dtype and the terms
            # cancel, so compare relative to the largest gradient
            want = tx.grad.numpy()
            np.testing.assert_allclose(getattr(K, ROW_BACKWARD[name])(g, ty.detach().numpy()), want,
                                       rtol=tol["rtol"], atol=tol["rtol"] * np.max(np.abs(want)),
                                       err_msg=name)
