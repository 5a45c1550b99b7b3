"""Inputs the fuzzers (tests/fuzz) found crashing the process, kept as regression tests."""
import numpy as np
import pytest

from cygrad import kernels as K


@pytest.mark.parametrize("padding", [2**31 - 1, 2**32, 2**62])
def test_huge_padding_raises_instead_of_wrapping_the_column_buffer_size(padding):
    # H_out * W_out = (2^32)^2 wrapped to 0 in C: a 0-byte buffer, then a segfault
    x = np.zeros((4, 3, 2, 2), np.float32)
    w = np.zeros((2, 3, 1, 1), np.float32)
    with pytest.raises(ValueError, match="too large"):
        K.im2col(x, 1, padding=padding)
    with pytest.raises(ValueError, match="too large"):
        K.conv2d_forward(x, w, padding=padding)
    with pytest.raises(ValueError, match="too large"):
        K.conv2d_backward(np.zeros((4, 2, 2, 2), np.float32), x, w, padding=padding)
    with pytest.raises(ValueError, match="too large"):
        K.col2im(np.zeros((4, 3, 4), np.float32), x.shape, 1, padding=padding)
