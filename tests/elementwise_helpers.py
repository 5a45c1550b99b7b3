"""Shared helpers of the elementwise-kernel tests (activations, losses, dropout, optim)."""
import numpy as np
import pytest

import cygrad

BACKENDS = pytest.mark.parametrize("B", [cygrad.kernels, cygrad.reference], ids=["kernels", "reference"])
DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64])

# agreement promised between the two backends
RTOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}


def assert_close(actual, expected, *, normwise=False, rtol=None):
    """Elementwise relative agreement (NaN where NaN), or, with normwise=True, relative
    to the largest magnitude of expected (for gradients with cancelling terms).
    Subnormal results carry no relative precision: an absolute floor of the
    smallest normal number covers them."""
    expected = np.asarray(expected)
    rtol = RTOL[expected.dtype] if rtol is None else rtol
    assert np.asarray(actual).dtype == expected.dtype
    atol = float(np.finfo(expected.dtype).tiny)
    if normwise:
        atol += rtol * float(np.max(np.abs(expected[np.isfinite(expected)]), initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


def rng(seed=0):
    return np.random.default_rng(seed)
