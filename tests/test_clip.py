"""vector_norm, scale_, clamp_: compiled vs reference, NumPy, torch, threads, edge cases, errors."""
import math

import numpy as np
import pytest

import cygrad
from cygrad import kernels as K, reference as R
from elementwise_helpers import BACKENDS, DTYPES, rng

ORDS = [1, 2.0, 3, 0.5, 2.5, math.inf, "inf"]
# 0 and one element; around the 8192-element block; above the parallel thresholds
SIZES = [0, 1, 7, 8191, 8193, 100_003, 300_001]


def values(n, dtype, seed=0):
    return (rng(seed).standard_normal(n) * 3).astype(dtype)


@DTYPES
@pytest.mark.parametrize("n, ord", [(n, o) for n in SIZES for o in ORDS  # for n = 0 and inf:
                                    if n or o not in (math.inf, "inf")])  # test_vector_norm_empty
def test_vector_norm_matches_reference_and_numpy(n, ord, dtype):
    x = values(n, dtype)
    got = K.vector_norm(x, ord)
    assert isinstance(got, float)
    assert got == pytest.approx(R.vector_norm(x, ord), rel=1e-13, abs=0)
    p = math.inf if ord == "inf" else ord
    assert got == pytest.approx(np.linalg.norm(x.astype(np.float64), p), rel=1e-12, abs=0)


@DTYPES
@pytest.mark.parametrize("ord", [1, 2, 3.5, math.inf])
def test_vector_norm_against_torch(ord, dtype):
    torch = pytest.importorskip("torch")
    x = values(50_000, dtype, seed=1).reshape(100, 500)
    want = torch.linalg.vector_norm(torch.from_numpy(x), ord).item()
    # torch sums float32 in float32; cygrad in float64
    assert K.vector_norm(x, ord) == pytest.approx(want, rel=1e-12 if dtype == np.float64 else 1e-5)


@pytest.mark.parametrize("ord", [1, 2, 3, math.inf])
def test_vector_norm_thread_count_does_not_change_bits(ord):
    x = values(1_000_003, np.float32, seed=2)
    runs = []
    for n in (1, 2):
        with cygrad.threads(n):
            runs.append(K.vector_norm(x, ord))
    assert runs[0] == runs[1]


@BACKENDS
def test_vector_norm_nan_and_inf_propagate_like_torch(B):
    nan, inf = math.nan, math.inf
    for ord in (1, 2, 3, inf):
        assert math.isnan(B.vector_norm(np.array([1.0, nan, inf]), ord))
        assert B.vector_norm(np.array([1.0, -inf], np.float32), ord) == inf
    assert math.isnan(B.vector_norm(np.array([inf, nan]), inf))
    assert math.isnan(B.vector_norm(np.array([nan] + [0.0] * 9000, np.float32), inf))


@BACKENDS
def test_vector_norm_rescales_terms_that_leave_float64(B):
    """Where |x|^ord overflows or underflows float64 the sum is formed on |x| / max|x|:
    a finite norm is never inf or 0 (torch returns inf and 0 here)."""
    assert B.vector_norm(np.array([1e200, -1e200])) == pytest.approx(2 ** 0.5 * 1e200, rel=1e-15)
    assert B.vector_norm(np.array([3e-200, 4e-200])) == pytest.approx(5e-200, rel=1e-15)
    assert B.vector_norm(np.array([1e300, 1e300]), 1) == pytest.approx(2e300, rel=1e-15)
    assert B.vector_norm(np.array([2e120, 2e120]), 3) == pytest.approx(2e120 * 2 ** (1 / 3),
                                                                       rel=1e-14)
    big = np.full(4, 3e38, np.float32)  # float32 squares fit in float64: no rescale needed
    assert B.vector_norm(big) == pytest.approx(2 * float(np.float32(3e38)), rel=1e-15)
    assert B.vector_norm(np.array([0.5, 0.25]), 2000) == pytest.approx(0.5, rel=1e-15)
    assert B.vector_norm(np.zeros(5), 0.5) == 0.0


@BACKENDS
def test_vector_norm_empty(B):
    for ord in (1, 2, 0.5):
        assert B.vector_norm(np.empty(0), ord) == 0.0
    with pytest.raises(ValueError, match="empty"):
        B.vector_norm(np.empty((0, 3), np.float32), math.inf)


@BACKENDS
def test_vector_norm_bad_inputs(B):
    x = np.ones((3, 4))
    for ord in (0, -1, -math.inf, math.nan, "fro", "2", "-inf"):
        with pytest.raises(ValueError, match="ord"):
            B.vector_norm(x, ord)
    for ord in (None, True, [2]):
        with pytest.raises(TypeError, match="ord"):
            B.vector_norm(x, ord)
    with pytest.raises(ValueError, match="C-contiguous"):
        B.vector_norm(x.T)
    with pytest.raises(TypeError, match="x"):
        B.vector_norm(x.astype(np.int32))
    with pytest.raises(TypeError, match="x"):
        B.vector_norm([1.0, 2.0])


# ---- scale_ and clamp_ ---------------------------------------------------------------------

def in_place(B, name, x, *args):
    """Run B.name on a copy of x; check it returns that very array."""
    y = x.copy()
    assert getattr(B, name)(y, *args) is y
    return y


@DTYPES
@pytest.mark.parametrize("n", [0, 5, 200_003])
@pytest.mark.parametrize("call", [("scale_", 0.1), ("scale_", -3), ("clamp_", -0.5, 0.25),
                                  ("clamp_", None, 0.1), ("clamp_", 0.3, None),
                                  ("clamp_", 1.0, -1.0)])
def test_in_place_matches_reference(call, n, dtype):
    x = values(n, dtype, seed=3)
    if n:
        x[n // 2] = np.nan
    got, want = in_place(K, *call[:1], x, *call[1:]), in_place(R, *call[:1], x, *call[1:])
    assert np.array_equal(got, want, equal_nan=True)


@DTYPES
@pytest.mark.parametrize("bounds", [(-0.5, 0.25), (None, 0.1), (0.3, None), (1.0, -1.0),
                                    (math.nan, 1.0), (0.0, math.nan), (-math.inf, math.inf)])
def test_clamp_against_torch(bounds, dtype):
    torch = pytest.importorskip("torch")
    x = values(1000, dtype, seed=4)
    x[[3, 500]] = [np.nan, -0.0]
    want = torch.from_numpy(x.copy()).clamp_(*bounds).numpy()
    got = in_place(K, "clamp_", x, *bounds)
    assert np.array_equal(got, want, equal_nan=True)
    assert np.array_equal(np.signbit(got), np.signbit(want))


@DTYPES
@pytest.mark.parametrize("alpha", [0.1, -2.5, 1e-30, 1e39, 0.0, math.inf, math.nan])
def test_scale_against_torch(alpha, dtype):
    """alpha is rounded to x's dtype (0.1 -> float32(0.1), 1e39 -> inf in float32)."""
    torch = pytest.importorskip("torch")
    x = values(1000, dtype, seed=5)
    x[[3, 7]] = [np.nan, np.inf]
    want = torch.from_numpy(x.copy()).mul_(alpha).numpy()
    assert np.array_equal(in_place(K, "scale_", x, alpha), want, equal_nan=True)


@pytest.mark.parametrize("call", [("scale_", 0.7), ("clamp_", -1.0, 1.0)])
def test_in_place_thread_count_does_not_change_bits(call):
    x = values(1_000_003, np.float32, seed=6)
    runs = []
    for n in (1, 2):
        with cygrad.threads(n):
            runs.append(in_place(K, call[0], x, *call[1:]))
    assert np.array_equal(runs[0], runs[1])


@BACKENDS
def test_in_place_bad_inputs(B):
    x = np.ones((3, 4))
    ro = np.ones(4)
    ro.flags.writeable = False
    for call in (lambda y: B.scale_(y, 2.0), lambda y: B.clamp_(y, 0.0, 1.0)):
        with pytest.raises(ValueError, match="read-only"):
            call(ro)
        with pytest.raises(ValueError, match="C-contiguous"):
            call(x.T)
        with pytest.raises(TypeError, match="x"):
            call(x.astype(np.int64))
        with pytest.raises(TypeError, match="x"):
            call([1.0])
    with pytest.raises(TypeError, match="alpha"):
        B.scale_(x, "2")
    with pytest.raises(TypeError, match="alpha"):
        B.scale_(x, None)
    with pytest.raises(ValueError, match="min and max"):
        B.clamp_(x, None, None)
    with pytest.raises(TypeError, match="min"):
        B.clamp_(x, "0", 1.0)
    with pytest.raises(TypeError, match="max"):
        B.clamp_(x, 0.0, [1.0])
    assert np.all(x == 1.0)  # nothing was written
