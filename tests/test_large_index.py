"""64-bit index arithmetic: matmul, im2col and conv2d on arrays of more than 2^31 elements.

Slow (minutes) and needs ~12 GB of free memory, so it is not in the default run:
    CYGRAD_SLOW=1 python -m pytest tests/test_large_index.py -v -s
Inputs are np.zeros (pages are mapped only when written) with random values in the first
and last rows, so a 32-bit offset that wraps would read or write the wrong rows (or crash);
the far end is checked against the NumPy reference on a small slice.
"""
import os

import numpy as np
import pytest

from cygrad import kernels as K
from cygrad import reference as R

BIG = 2**31


def _available_gib():
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) / 2**20


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("CYGRAD_SLOW") != "1",
                       reason="slow, >2^31-element arrays: run with "
                              "CYGRAD_SLOW=1 python -m pytest tests/test_large_index.py"),
]


@pytest.fixture(autouse=True)
def _enough_memory():
    if not os.path.exists("/proc/meminfo") or _available_gib() < 12:
        pytest.skip("needs 12 GiB of available memory (Linux)")


def _ends(a, rows, rng):
    """Random values in the first and last `rows` rows (axis 0) of a zero array."""
    a[:rows] = rng.standard_normal(a[:rows].shape)
    a[-rows:] = rng.standard_normal(a[-rows:].shape)


def test_matmul_past_2_31_elements():
    rng = np.random.default_rng(0)
    m, k, n = BIG // 1024 + 1, 1024, 8       # a has 2^31 + 1024 elements (8.6 GB)
    a = np.zeros((m, k), np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    _ends(a, 2, rng)
    y = K.matmul(a, b)
    assert a.size > BIG
    np.testing.assert_allclose(y[-2:], R.matmul(np.ascontiguousarray(a[-2:]), b), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(y[:2], R.matmul(np.ascontiguousarray(a[:2]), b), rtol=1e-5, atol=1e-3)  # sums of 1024 terms
    assert not y[2:-2].any()
    at = np.zeros((k, m), np.float32)         # op(a) = at.T: the far end is the last column
    at[:, -1] = rng.standard_normal(k)
    y = K.matmul(at, b, trans_a=True)
    np.testing.assert_allclose(y[-1], at[:, -1] @ b, rtol=1e-5, atol=1e-3)
    assert not y[:-1].any()


def test_im2col_past_2_31_elements():
    rng = np.random.default_rng(1)
    h, w = 16384, 14564                      # cols: 9 * h * w = 2^31 + 65536 elements (8.6 GB)
    x = np.zeros((1, 1, h, w), np.float32)
    _ends(x[0, 0], 4, rng)
    cols = K.im2col(x, 3, padding=1)
    assert cols.size > BIG
    tail = R.im2col(np.ascontiguousarray(x[:, :, -4:]), 3, padding=1)  # last 2 output rows are exact
    assert np.array_equal(cols[0, :, -2 * w:], tail[0, :, -2 * w:])
    head = R.im2col(np.ascontiguousarray(x[:, :, :4]), 3, padding=1)
    assert np.array_equal(cols[0, :, :2 * w], head[0, :, :2 * w])
    del cols


def test_conv2d_past_2_31_elements():
    rng = np.random.default_rng(2)
    n = BIG // (4 * 64 * 64) + 1             # x: 2^31 + 16384 elements (8.6 GB)
    x = np.zeros((n, 4, 64, 64), np.float32)
    _ends(x, 2, rng)
    wt = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(2).astype(np.float32)
    y = K.conv2d_forward(x, wt, bias, stride=2)
    assert x.size > BIG
    for sl in (slice(-2, None), slice(0, 2)):
        want = R.conv2d_forward(np.ascontiguousarray(x[sl]), wt, bias, stride=2)
        np.testing.assert_allclose(y[sl], want, rtol=1e-5, atol=1e-5)
    assert np.array_equal(y[2:-2], np.broadcast_to(bias[:, None, None], y[2:-2].shape))
    del y
    g = np.zeros((n, 2, 31, 31), np.float32)  # only the last images get a gradient
    g[-2:] = rng.standard_normal(g[-2:].shape)
    _, gw, gb = K.conv2d_backward(g, x, wt, stride=2, input_grad=False)
    _, want_w, want_b = R.conv2d_backward(g[-2:], np.ascontiguousarray(x[-2:]), wt, stride=2,
                                          input_grad=False)
    np.testing.assert_allclose(gw, want_w, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gb, want_b, rtol=1e-4, atol=1e-4)
