"""Pooling: compiled kernels against the NumPy reference, finite differences and torch."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import cygrad as cg
from cygrad import kernels as K
from cygrad import reference as R
from cygrad.reference._checks import pool_geometry
from cygrad.testing import gradcheck

TOL = {np.float64: 1e-12, np.float32: 1e-5}
BACKENDS = [pytest.param(K, id="kernels"), pytest.param(R, id="reference")]


def close(a, b, dtype, terms=25):
    """max |a - b| within the dtype's tolerance, relative to max(1, max |b|, sqrt(terms))
    (a window sum of up to 25 unit-scale terms is of order 5 even where it cancels)."""
    assert a.shape == b.shape and a.dtype == b.dtype == np.dtype(dtype)
    scale = max(1.0, float(np.max(np.abs(b))) if b.size else 0.0, terms ** 0.5)
    assert float(np.max(np.abs(a.astype(np.float64) - b), initial=0.0)) <= TOL[dtype] * scale


@st.composite
def pool_case(draw):
    n, c = draw(st.integers(1, 5)), draw(st.integers(1, 7))
    h, w = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    s = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    assume(h + 2 * p[0] >= k[0] and w + 2 * p[1] >= k[1])
    kw = dict(kernel_size=k, stride=s, padding=p, ceil_mode=draw(st.booleans()))
    avg = dict(count_include_pad=draw(st.booleans()),
               divisor_override=draw(st.one_of(st.none(), st.integers(1, 30))))
    return (n, c, h, w), kw, avg, draw(st.sampled_from([np.float32, np.float64]))


@settings(max_examples=300, deadline=None)
@given(pool_case(), st.integers(0, 2**32 - 1), st.booleans())
def test_backends_agree(case, seed, ties):
    xs, kw, avg, dtype = case
    rng = np.random.default_rng(seed)
    # ties: small integers, so windows hold equal maxima (the first one must win)
    x = (rng.integers(-2, 3, xs) if ties else rng.standard_normal(xs)).astype(dtype)
    y, idx = K.max_pool2d_forward(x, **kw)
    y_ref, idx_ref = R.max_pool2d_forward(x, **kw)
    assert idx.dtype == np.int64 and np.array_equal(idx, idx_ref)
    close(y, y_ref, dtype)
    g = rng.standard_normal(y.shape).astype(dtype)
    close(K.max_pool2d_backward(g, idx, xs), R.max_pool2d_backward(g, idx_ref, xs), dtype)
    close(K.avg_pool2d_forward(x, **kw, **avg), R.avg_pool2d_forward(x, **kw, **avg), dtype)
    close(K.avg_pool2d_backward(g, xs, **kw, **avg), R.avg_pool2d_backward(g, xs, **kw, **avg), dtype)


AVG_OPTIONS = [dict(), dict(count_include_pad=False), dict(divisor_override=5),
               dict(count_include_pad=False, divisor_override=2)]


@pytest.mark.parametrize("B", BACKENDS)
@pytest.mark.parametrize("avg", AVG_OPTIONS)
@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0)),
                                dict(kernel_size=2, ceil_mode=True),
                                dict(kernel_size=(3, 2), stride=(2, 3), padding=1, ceil_mode=True)])
def test_gradcheck(B, kw, avg):
    rng = np.random.default_rng(1)
    # distinct values 0.01 apart: no ties, so max-pool is differentiable at x
    x = (rng.permutation(2 * 3 * 7 * 6) * 0.01).reshape(2, 3, 7, 6)
    gradcheck(lambda x: B.max_pool2d_forward(x, **kw)[0], [x],
              lambda g: [B.max_pool2d_backward(g, B.max_pool2d_forward(x, **kw)[1], x.shape)])
    gradcheck(lambda x: B.avg_pool2d_forward(x, **kw, **avg), [x],
              lambda g: [B.avg_pool2d_backward(g, x.shape, **kw, **avg)])


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=2, ceil_mode=True, count_include_pad=False),
                                dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                     count_include_pad=False),
                                dict(kernel_size=(3, 2), stride=2, ceil_mode=True, divisor_override=4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thread_count_bitwise(kw, dtype):
    x = np.random.default_rng(2).standard_normal((4, 6, 41, 40)).astype(dtype)
    mkw = {key: v for key, v in kw.items() if key not in ("count_include_pad", "divisor_override")}
    runs = []
    for nt in (1, 2):
        with cg.threads(nt):
            y, idx = K.max_pool2d_forward(x, **mkw)
            a = K.avg_pool2d_forward(x, **kw)
            runs.append((y, idx, a, K.max_pool2d_backward(np.cos(y), idx, x.shape),
                         K.avg_pool2d_backward(np.cos(a), x.shape, **kw)))
    for u, v in zip(*runs):
        assert u.tobytes() == v.tobytes()


# (x shape, kernel_size, stride, padding): odd sizes, stride != kernel, padding, and
# ceil-mode overhangs of one or more rows/columns
TORCH_GEOMETRIES = [((2, 3, 7, 9), 2, None, 0), ((2, 3, 7, 9), 3, 2, 1), ((2, 3, 8, 5), 3, 3, 1),
                    ((2, 3, 11, 6), (3, 2), (2, 3), (1, 1)), ((2, 3, 5, 5), 4, 3, 2),
                    ((2, 3, 4, 4), 2, 3, 1), ((1, 2, 6, 13), (1, 5), (1, 4), (0, 2)),
                    ((2, 2, 3, 3), 3, 2, 0)]


@pytest.mark.parametrize("divisor_override", [None, 1, 3])
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("geometry", TORCH_GEOMETRIES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_oracle_options(dtype, geometry, ceil_mode, count_include_pad, divisor_override):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    shape, k, s, p = geometry
    rng = np.random.default_rng(8)
    x = rng.standard_normal(shape).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    at = F.avg_pool2d(xt, k, s, p, ceil_mode, count_include_pad, divisor_override)
    g = rng.standard_normal(tuple(at.shape)).astype(dtype)
    at.backward(torch.tensor(g))
    mt, it = F.max_pool2d(torch.tensor(x), k, s, p, ceil_mode=ceil_mode, return_indices=True)
    kw = dict(stride=s, padding=p, ceil_mode=ceil_mode)
    avg = dict(kw, count_include_pad=count_include_pad, divisor_override=divisor_override)
    for B in (K, R):
        close(B.avg_pool2d_forward(x, k, **avg), at.detach().numpy(), dtype)
        close(B.avg_pool2d_backward(g, x.shape, k, **avg), xt.grad.numpy(), dtype)
        y, idx = B.max_pool2d_forward(x, k, **kw)
        assert np.array_equal(idx, it.numpy())
        np.testing.assert_array_equal(y, mt.numpy())
        xm = torch.tensor(x, requires_grad=True)
        F.max_pool2d(xm, k, s, p, ceil_mode=ceil_mode).backward(torch.tensor(g))
        close(B.max_pool2d_backward(g, idx, x.shape), xm.grad.numpy(), dtype)


@pytest.mark.parametrize("hw, k, s, p, want", [
    ((5, 5), 2, 2, 0, (3, 3)),          # one partial window at the end
    ((4, 4), 2, 3, 1, (2, 2)),          # the third window would start in the right padding
    ((7, 7), 3, 2, 1, (4, 4)),          # ceil == floor: no overhang
    ((6, 6), 3, 2, 1, (4, 4)),          # the last window overhangs the padding by one
    ((1, 9), (1, 4), (1, 4), (0, 2), (1, 3))])
def test_ceil_mode_output_size(hw, k, s, p, want):
    assert pool_geometry(hw, k, s, p, ceil_mode=True)[-1] == want
    torch = pytest.importorskip("torch")
    x = torch.zeros((1, 1) + hw)
    assert tuple(torch.nn.functional.max_pool2d(x, k, s, p, ceil_mode=True).shape[2:]) == want


@pytest.mark.parametrize("B", BACKENDS)
def test_avg_divisors_by_hand(B):
    # 4x4 ones, kernel 2, stride 3, padding 1, ceil: windows rows/cols [-1, 1) and [2, 4)
    x = np.ones((1, 1, 4, 4))
    kw = dict(stride=3, padding=1, ceil_mode=True)
    np.testing.assert_array_equal(B.avg_pool2d_forward(x, 2, **kw)[0, 0], [[.25, .5], [.5, 1]])
    np.testing.assert_array_equal(B.avg_pool2d_forward(x, 2, count_include_pad=False, **kw), 1)
    np.testing.assert_array_equal(B.avg_pool2d_forward(x, 2, divisor_override=8, **kw)[0, 0],
                                  [[1 / 8, 2 / 8], [2 / 8, 4 / 8]])
    # 5x5, kernel 2, ceil: the last window overhangs the (unpadded) input and counts 2 or 1
    y = B.avg_pool2d_forward(np.ones((1, 1, 5, 5)), 2, ceil_mode=True)
    np.testing.assert_array_equal(y, 1)


def test_torch_oracle():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(3)
    cases = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
             dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1))]
    for kw in cases:
        for dtype in (np.float32, np.float64):
            for x in (rng.standard_normal((3, 4, 13, 12)).astype(dtype),
                      rng.integers(-1, 2, (3, 4, 13, 12)).astype(dtype)):   # ties
                targs = (kw["kernel_size"], kw.get("stride"), kw.get("padding", 0))
                xt = torch.tensor(x, requires_grad=True)
                yt, it = F.max_pool2d(xt, *targs, return_indices=True)
                g = rng.standard_normal(tuple(yt.shape)).astype(dtype)
                yt.backward(torch.tensor(g))
                xa = torch.tensor(x, requires_grad=True)
                at = F.avg_pool2d(xa, *targs)
                at.backward(torch.tensor(g))
                for B in (K, R):
                    y, idx = B.max_pool2d_forward(x, **kw)
                    assert np.array_equal(idx, it.numpy())
                    close(y, yt.detach().numpy(), dtype)
                    close(B.max_pool2d_backward(g, idx, x.shape), xt.grad.numpy(), dtype)
                    close(B.avg_pool2d_forward(x, **kw), at.detach().numpy(), dtype)
                    close(B.avg_pool2d_backward(g, x.shape, **kw), xa.grad.numpy(), dtype)


def test_nan_propagates_like_torch():
    torch = pytest.importorskip("torch")
    x = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4)
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = np.nan
    x[0, 1, 3, 3] = -np.inf
    yt, it = torch.nn.functional.max_pool2d(torch.tensor(x), 2, return_indices=True)
    for B in (K, R):
        y, idx = B.max_pool2d_forward(x, 2)
        assert np.array_equal(idx, it.numpy())
        np.testing.assert_array_equal(y, yt.numpy())


X = np.zeros((2, 3, 8, 8), np.float32)
G = np.zeros((2, 3, 4, 4), np.float32)
I = np.zeros((2, 3, 4, 4), np.int64)
BAD = [
    ("x", TypeError, lambda B: B.max_pool2d_forward(X.astype(np.int64), 2)),
    ("x", ValueError, lambda B: B.max_pool2d_forward(X[0], 2)),
    ("x", ValueError, lambda B: B.avg_pool2d_forward(X[..., ::2], 2)),
    ("padding", ValueError, lambda B: B.max_pool2d_forward(X, 2, padding=2)),
    ("padding", ValueError, lambda B: B.avg_pool2d_forward(X, 3, padding=-1)),
    ("kernel_size", ValueError, lambda B: B.max_pool2d_forward(X, 9)),
    ("kernel_size", TypeError, lambda B: B.avg_pool2d_forward(X, "2")),
    ("stride", ValueError, lambda B: B.max_pool2d_forward(X, 2, stride=0)),
    ("indices", ValueError, lambda B: B.max_pool2d_backward(G, I + 64, X.shape)),
    ("indices", ValueError, lambda B: B.max_pool2d_backward(G, I - 1, X.shape)),
    ("indices", TypeError, lambda B: B.max_pool2d_backward(G, I.astype(np.int32), X.shape)),
    ("indices", TypeError, lambda B: B.max_pool2d_backward(G, I.tolist(), X.shape)),
    ("indices", ValueError, lambda B: B.max_pool2d_backward(G, I[:, :2].copy(), X.shape)),
    ("grad_out", ValueError, lambda B: B.max_pool2d_backward(G[:, :2].copy(), I, X.shape)),
    ("grad_out", TypeError, lambda B: B.max_pool2d_backward(G.astype(np.int32), I, X.shape)),
    ("x_shape", TypeError, lambda B: B.max_pool2d_backward(G, I, (3, 8, 8))),
    ("grad_out", ValueError, lambda B: B.avg_pool2d_backward(G[..., :3].copy(), X.shape, 2)),
    ("x_shape", ValueError, lambda B: B.avg_pool2d_backward(G, (2, 3, -8, 8), 2)),
    ("ceil_mode", TypeError, lambda B: B.max_pool2d_forward(X, 2, ceil_mode=1)),
    ("ceil_mode", TypeError, lambda B: B.avg_pool2d_forward(X, 2, ceil_mode=None)),
    ("ceil_mode", TypeError, lambda B: B.avg_pool2d_backward(G, X.shape, 2, ceil_mode="yes")),
    ("count_include_pad", TypeError, lambda B: B.avg_pool2d_forward(X, 2, count_include_pad=0)),
    ("count_include_pad", TypeError,
     lambda B: B.avg_pool2d_backward(G, X.shape, 2, count_include_pad=None)),
    ("divisor_override", ValueError, lambda B: B.avg_pool2d_forward(X, 2, divisor_override=0)),
    ("divisor_override", ValueError, lambda B: B.avg_pool2d_forward(X, 2, divisor_override=-3)),
    ("divisor_override", ValueError, lambda B: B.avg_pool2d_forward(X, 2, divisor_override=2**63)),
    ("divisor_override", ValueError, lambda B: B.avg_pool2d_backward(G, X.shape, 2, divisor_override=0)),
    ("divisor_override", TypeError, lambda B: B.avg_pool2d_forward(X, 2, divisor_override=1.5)),
    ("divisor_override", TypeError, lambda B: B.avg_pool2d_forward(X, 2, divisor_override=True)),
    ("divisor_override", TypeError, lambda B: B.avg_pool2d_backward(G, X.shape, 2, divisor_override="2")),
    # ceil mode changes the output size: grad_out must have the ceil-mode shape
    ("grad_out", ValueError, lambda B: B.avg_pool2d_backward(G, (2, 3, 9, 9), 2, ceil_mode=True)),
    # empty planes: torch refuses C, H or W = 0 (an all-padding window has no maximum)
    ("x", ValueError, lambda B: B.max_pool2d_forward(X[:, :, :0], 2, padding=1)),
    ("x", ValueError, lambda B: B.avg_pool2d_forward(X[..., :0], 2, padding=1)),
    ("x", ValueError, lambda B: B.max_pool2d_forward(X[:, :0], 2)),
    ("indices", ValueError, lambda B: B.max_pool2d_backward(G, np.zeros((2, 3, 4, 8), np.int64)[..., ::2],
                                                            X.shape)),
    # shared limits: each value at most 2**40, the padded plane 2**31 positions (an avg
    # divisor of 2**32 x 2**32 overflowed int64), an x_shape 2**60 elements
    ("stride", ValueError, lambda B: B.max_pool2d_forward(X, 2, stride=10**400)),
    ("stride", ValueError, lambda B: B.avg_pool2d_backward(G, X.shape, 2, stride=(1, 2**40 + 1))),
    ("padding", ValueError, lambda B: B.avg_pool2d_forward(X, 2**32 + 1, padding=2**31)),
    ("x_shape", ValueError, lambda B: B.max_pool2d_backward(G, I, (2, 3, 2**31, 2**31))),
    ("x_shape", ValueError, lambda B: B.avg_pool2d_backward(G, (2, 3, 2**70, 8), 2)),
]


@pytest.mark.parametrize("B", BACKENDS)
def test_empty_batch(B):
    # N = 0 is allowed (as torch), only the planes must not be empty
    x = np.zeros((0, 3, 5, 5), np.float32)
    y, idx = B.max_pool2d_forward(x, 2, padding=1)
    assert y.shape == idx.shape == (0, 3, 3, 3)
    assert B.max_pool2d_backward(y, idx, x.shape).shape == x.shape
    a = B.avg_pool2d_forward(x, 3, stride=2, ceil_mode=True)
    assert a.shape == (0, 3, 2, 2) and B.avg_pool2d_backward(a, x.shape, 3, stride=2, ceil_mode=True).shape == x.shape


@pytest.mark.parametrize("B", BACKENDS)
@pytest.mark.parametrize("name, exc, call", BAD, ids=[f"{i}-{b[0]}" for i, b in enumerate(BAD)])
def test_bad_input(B, name, exc, call):
    with pytest.raises(exc, match=name):
        call(B)
