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


def test_checkpoint_with_a_mangled_npy_header_raises_checkpoint_error(tmp_path):
    # numpy's header parser raised tokenize.TokenError here, which cg.load let through
    import struct
    import zipfile

    import cygrad as cg
    header = b"{'descr': '<f8', 'shape': (\x00"
    header += b" " * (63 - len(header)) + b"\n"
    path = tmp_path / "bad.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("__meta__.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header)
    model = cg.models.mlp(sizes=(3, 4, 2), dtype=np.float64, seed=0)
    before = model.state_dict()["0.weight"].copy()
    with pytest.raises(cg.CheckpointError, match="not a readable cygrad checkpoint"):
        cg.load(path, model)
    assert np.array_equal(model.state_dict()["0.weight"], before)
