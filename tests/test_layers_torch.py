"""cygrad.nn layers and functions against torch (float64, <= 1e-12 relative): the options
a PyTorch user reaches for (padding='same', groups, pooling options, BatchNorm, losses
with reduction='none', class weights and ignore_index)."""
import numpy as np
import pytest

import cygrad as cg

torch = pytest.importorskip("torch")
F, TF = cg.nn.functional, torch.nn.functional


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300)) if b.size else 0.0


def compare(ours, theirs, arrays, check_grads=True, tol=1e-12):
    """Run ours(*tensors) and theirs(*torch tensors) on the same float64 arrays; compare the
    outputs and the gradients of every input for a random upstream gradient."""
    xs = [cg.tensor(a, requires_grad=check_grads) for a in arrays]
    ts = [torch.tensor(a, requires_grad=check_grads) for a in arrays]
    y, ty = ours(*xs), theirs(*ts)
    assert y.shape == tuple(ty.shape)
    assert _rel(y.data, ty.detach().numpy()) <= tol
    if check_grads:
        g = np.random.default_rng(7).standard_normal(y.shape)
        y.backward(g)
        ty.backward(torch.tensor(g))
        for i, (x, t) in enumerate(zip(xs, ts)):
            assert _rel(x.grad, t.grad.numpy()) <= tol, f"gradient of input {i}"


@pytest.mark.parametrize("k,d", [(3, 1), (2, 1), (4, 1), (2, 3), (3, 2)])
def test_conv2d_padding_same_including_even_kernels(k, d):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, k, k)),
              rng.standard_normal(4)]
    compare(lambda x, w, b: F.conv2d(x, w, b, padding="same", dilation=d),
            lambda x, w, b: TF.conv2d(x, w, b, padding="same", dilation=d), arrays)
    compare(lambda x, w, b: F.conv2d(x, w, b, padding="valid"),
            lambda x, w, b: TF.conv2d(x, w, b, padding="valid"), arrays)
