"""NaN and inf propagate through the kernels as in PyTorch; subnormals are kept (no FTZ/DAZ).

Inputs hold NaN, +inf and -inf among normal values. Every kernel is compared with its
NumPy spec (cygrad.reference) on them, and those with a direct PyTorch twin with torch.
"""
import numpy as np
import pytest

from cygrad import kernels as K
from cygrad import reference as R

NAN, INF = float("nan"), float("inf")


def _poisoned(rng, *shape, dtype=np.float64):
    x = rng.standard_normal(shape).astype(dtype)
    flat = x.reshape(-1)
    flat[[0, 1, 2]] = NAN, INF, -INF
    flat[len(flat) // 2] = NAN
    return x


def _calls(dtype):
    rng = np.random.default_rng(0)
    p = lambda *s: _poisoned(rng, *s, dtype=dtype)  # noqa: E731
    f = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    x, g = p(4, 6), p(4, 6)
    img, wt = p(2, 3, 6, 6), f(4, 3, 3, 3)
    calls = {name: ((x,), {}) for name in ("relu", "sigmoid", "tanh", "softmax", "log_softmax")}
    calls.update({
        "leaky_relu": ((x,), {"negative_slope": 0.1}),
        "relu_backward": ((g, x), {}), "leaky_relu_backward": ((g, x), {}),
        "sigmoid_backward": ((g, x), {}), "tanh_backward": ((g, x), {}),
        "matmul": ((x, p(6, 5)), {}),
        "mse_loss": ((x, f(4, 6)), {}),
        "cross_entropy": ((x, np.array([0, 1, 2, 3])), {}),
        "binary_cross_entropy_with_logits": ((x, rng.random((4, 6)).astype(dtype)), {}),
        "l1_penalty": ((x, 0.1), {}), "l2_penalty": ((x, 0.1), {}),
        "dropout": ((x, 0.5, 3), {}),
        "im2col": ((img, 3), {"padding": 1}),
        "conv2d_forward": ((img, wt, f(4)), {"padding": 1}),
        "conv2d_backward": ((p(2, 4, 6, 6), img, wt), {"padding": 1}),
        "max_pool2d_forward": ((img, 2), {}), "avg_pool2d_forward": ((img, 2), {}),
        "adam_step": ((f(24), p(24), f(24), np.abs(f(24))), {"step": 2, "lr": 0.1}),
        "sgd_step": ((f(24), p(24), f(24)), {"lr": 0.1, "momentum": 0.9, "step": 2}),
    })
    return calls


def _flat(result):
    if isinstance(result, tuple):
        return [np.asarray(r, dtype=np.float64) for r in result if r is not None]
    return [np.asarray(result, dtype=np.float64)]


def _run(module, name, args, kwargs):
    args = tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)  # steps write in place
    out = getattr(module, name)(*args, **kwargs)
    return _flat(out) + [a for a in args if isinstance(a, np.ndarray) and name.endswith("_step")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(_calls(np.float64)))
def test_nan_and_inf_propagate_as_the_spec(name, dtype):
    args, kwargs = _calls(dtype)[name]
    with np.errstate(all="ignore"):
        ours, spec = _run(K, name, args, kwargs), _run(R, name, args, kwargs)
    assert len(ours) == len(spec)
    for a, b in zip(ours, spec):
        assert np.array_equal(np.isnan(a), np.isnan(b)), name
        assert np.array_equal(np.where(np.isinf(a), a, 0), np.where(np.isinf(b), b, 0)), name
        fin = np.isfinite(a)
        np.testing.assert_allclose(a[fin], b[fin], rtol=1e-4, atol=1e-5)
    assert any(np.isnan(a).any() for a in ours), f"{name}: NaN in, no NaN out"


def _torch_twins(torch):
    F = torch.nn.functional
    t = torch.from_numpy
    return {
        "relu": lambda x: F.relu(t(x)), "sigmoid": lambda x: torch.sigmoid(t(x)),
        "tanh": lambda x: torch.tanh(t(x)), "softmax": lambda x: F.softmax(t(x), 1),
        "log_softmax": lambda x: F.log_softmax(t(x), 1),
        "leaky_relu": lambda x, negative_slope: F.leaky_relu(t(x), negative_slope),
        "matmul": lambda a, b: t(a) @ t(b),
        "mse_loss": lambda a, b: F.mse_loss(t(a), t(b)),
        "cross_entropy": lambda a, y: F.cross_entropy(t(a), t(y)),
        "binary_cross_entropy_with_logits": lambda a, y: F.binary_cross_entropy_with_logits(t(a), t(y)),
        "conv2d_forward": lambda x, w, b, padding: F.conv2d(t(x), t(w), t(b), padding=padding),
        "max_pool2d_forward": lambda x, k: F.max_pool2d(t(x), k, return_indices=True),
        "avg_pool2d_forward": lambda x, k: F.avg_pool2d(t(x), k),
        "im2col": lambda x, k, padding: F.unfold(t(x), k, padding=padding),
    }


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "softmax", "log_softmax", "leaky_relu",
                                  "matmul", "mse_loss", "cross_entropy",
                                  "binary_cross_entropy_with_logits", "conv2d_forward",
                                  "max_pool2d_forward", "avg_pool2d_forward", "im2col"])
def test_nan_and_inf_propagate_as_torch(name):
    torch = pytest.importorskip("torch")
    args, kwargs = _calls(np.float64)[name]
    with np.errstate(all="ignore"):
        ours = _run(K, name, args, kwargs)
    theirs = _torch_twins(torch)[name](*args, **kwargs)
    theirs = [r.numpy().astype(np.float64) for r in (theirs if isinstance(theirs, tuple) else (theirs,))]
    if name in ("mse_loss", "cross_entropy", "binary_cross_entropy_with_logits"):
        ours = ours[:1]  # the loss; torch returns no gradient here
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b.reshape(a.shape), rtol=1e-6, atol=1e-8, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_subnormals_stay_subnormal(dtype):
    """cygrad sets no flush-to-zero / denormals-are-zero mode (as PyTorch's default)."""
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.array([[tiny, -tiny, 3 * tiny, 1.0]], dtype)
    assert np.array_equal(K.relu(x), [[tiny, 0, 3 * tiny, 1.0]])
    eye = np.eye(4, dtype=dtype)
    y = K.matmul(x, eye)                       # subnormal * 1 + 0: exact, not flushed
    assert np.array_equal(y, x) and 0 < y[0, 0] < np.finfo(dtype).tiny
    big = np.repeat(x, 300, axis=0)            # the large (packed, vectorised) GEMM path too
    assert np.array_equal(K.matmul(big, np.eye(4, 300, dtype=dtype))[:, :4], big)
    assert dtype(tiny) * dtype(1) == tiny      # the thread's FP mode is unchanged afterwards
