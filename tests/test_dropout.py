"""Dropout: identical counter-based masks in both backends and for any thread count."""
import numpy as np
import pytest

import cygrad
from cygrad import kernels as K, reference as R
from cygrad.testing import gradcheck
from elementwise_helpers import BACKENDS, DTYPES, assert_close, rng


@DTYPES
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9])
@pytest.mark.parametrize("shape", [(0,), (1,), (64, 128), (100_003,), (3, 4, 5)])
def test_matches_reference(shape, p, dtype):
    x = rng().standard_normal(shape).astype(dtype)
    y, mask = K.dropout(x, p, 1234)
    ry, rmask = R.dropout(x, p, 1234)
    assert mask.dtype == np.uint8 and mask.shape == x.shape
    assert np.array_equal(mask, rmask)
    assert_close(y, ry)
    g = rng(1).standard_normal(shape).astype(dtype)
    assert_close(K.dropout_backward(g, mask, p), R.dropout_backward(g, mask, p))


@BACKENDS
def test_mask_statistics_and_scaling(B):
    x = np.ones(400_000, np.float32)
    for p in (0.2, 0.5):
        y, mask = B.dropout(x, p, 7)
        dropped = 1.0 - mask.mean()
        assert abs(dropped - p) < 6 * np.sqrt(p * (1 - p) / x.size)
        assert np.all(y[mask == 1] == np.float32(1 / (1 - p))) and np.all(y[mask == 0] == 0)
    # neighbouring seeds and neighbouring elements are uncorrelated
    m1, m2 = B.dropout(x, 0.5, 7)[1], B.dropout(x, 0.5, 8)[1]
    assert 0.49 < np.mean(m1 == m2) < 0.51
    assert 0.49 < np.mean(m1[1:] == m1[:-1]) < 0.51


@BACKENDS
def test_seed_and_p_zero(B):
    x = rng().standard_normal((50, 40))
    assert np.array_equal(B.dropout(x, 0.3, 5)[1], B.dropout(x, 0.3, 5)[1])
    assert not np.array_equal(B.dropout(x, 0.3, 5)[1], B.dropout(x, 0.3, 6)[1])
    y, mask = B.dropout(x, 0.0, 5)
    assert mask.all() and np.array_equal(y, x)
    # the largest seed wraps like uint64
    assert B.dropout(x, 0.5, 2**64 - 1)[1].shape == x.shape


def test_kernel_mask_equals_reference_for_extreme_seeds():
    x = np.ones(1000)
    for seed in (0, 1, 2**63, 2**64 - 1, np.uint64(12345)):
        assert np.array_equal(K.dropout(x, 0.5, seed)[1], R.dropout(x, 0.5, seed)[1])


@DTYPES
def test_thread_count_does_not_change_bits(dtype):
    x = rng().standard_normal(300_001).astype(dtype)
    with cygrad.threads(1):
        y1, m1 = K.dropout(x, 0.4, 99)
        g1 = K.dropout_backward(x, m1, 0.4)
    with cygrad.threads(2):
        y2, m2 = K.dropout(x, 0.4, 99)
        g2 = K.dropout_backward(x, m2, 0.4)
    assert np.array_equal(m1, m2) and np.array_equal(y1, y2) and np.array_equal(g1, g2)


@BACKENDS
def test_gradcheck(B):
    x = rng(2).standard_normal((6, 7))
    mask = B.dropout(x, 0.3, 11)[1]
    gradcheck(lambda x: B.dropout(x, 0.3, 11)[0], [x],
              lambda w: [B.dropout_backward(np.ascontiguousarray(w), mask, 0.3)])


@BACKENDS
def test_nan_propagates_like_torch(B):
    x = np.full(64, np.nan)
    y, mask = B.dropout(x, 0.5, 3)
    assert np.isnan(y).all()  # x * 0 is NaN where dropped too, as torch's x * mask
    assert np.isnan(B.dropout_backward(x, mask, 0.5)).all()


@BACKENDS
def test_in_place_out(B):
    x = rng().standard_normal(1000)
    want, mask = B.dropout(x, 0.3, 4)
    y = x.copy()
    got, _ = B.dropout(y, 0.3, 4, out=y)
    assert got is y and np.array_equal(y, want)


@BACKENDS
def test_bad_inputs(B):
    x = np.ones((4, 3))
    for p in (1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="p"):
            B.dropout(x, p, 0)
    with pytest.raises(TypeError, match="p"):
        B.dropout(x, "0.5", 0)
    with pytest.raises(ValueError, match="seed"):
        B.dropout(x, 0.5, -1)
    with pytest.raises(ValueError, match="seed"):
        B.dropout(x, 0.5, 2**64)
    with pytest.raises(TypeError, match="seed"):
        B.dropout(x, 0.5, 1.0)
    with pytest.raises(TypeError, match="x"):
        B.dropout(np.ones(3, np.int32), 0.5, 0)
    with pytest.raises(ValueError, match="C-contiguous"):
        B.dropout(x.T, 0.5, 0)
    mask = B.dropout(x, 0.5, 0)[1]
    with pytest.raises(TypeError, match="mask"):
        B.dropout_backward(x, mask.astype(bool), 0.5)
    with pytest.raises(ValueError, match="shape"):
        B.dropout_backward(x, mask.reshape(3, 4), 0.5)
    with pytest.raises(ValueError, match="C-contiguous"):
        B.dropout_backward(x.T.copy(), mask.T, 0.5)
    with pytest.raises(ValueError, match="p"):
        B.dropout_backward(x, mask, 1.0)


def test_scaling_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.ones(10_000, np.float32)
    for p in (0.1, 0.3, 0.7):
        ty = torch.nn.functional.dropout(torch.from_numpy(x), p, training=True).numpy()
        y, mask = K.dropout(x, p, 3)
        assert np.unique(ty[ty != 0]) == pytest.approx(np.unique(y[mask == 1]), rel=1e-7)
