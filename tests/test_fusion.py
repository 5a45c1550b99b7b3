"""Sequential runs ReLU -> MaxPool2d as MaxPool2d -> ReLU: results must not change a bit."""
import numpy as np
import pytest

import cygrad as cg
from cygrad import kernels as K


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_maxpool_swap_is_exact(dtype):
    rng = np.random.default_rng(0)
    model = cg.nn.Sequential(cg.nn.Conv2d(2, 3, 3, dtype=dtype, rng=1), cg.nn.ReLU(),
                             cg.nn.MaxPool2d(2), cg.nn.Flatten(),
                             cg.nn.Linear(3 * 3 * 3, 4, dtype=dtype, rng=2))
    x = rng.standard_normal((5, 2, 8, 8)).astype(dtype)
    x[0, 0, :4, :4] = -1.0  # windows whose max is negative: zero output and gradient
    xt = cg.tensor(x, requires_grad=True)
    out = model(xt)
    g = rng.standard_normal(out.shape).astype(dtype)
    out.backward(g)
    out, gx = out.data, xt.grad

    # the declared order, by hand, on the same kernels
    conv, lin = model[0], model[4]
    h = K.conv2d_forward(x, conv.weight.data, conv.bias.data)
    r = K.relu(h)
    p, idx = K.max_pool2d_forward(r, 2)
    y = K.matmul(p.reshape(5, -1), lin.weight.data, trans_b=True) + lin.bias.data
    np.testing.assert_array_equal(out, y.astype(dtype))
    gp = K.matmul(g, lin.weight.data).reshape(p.shape)
    gr = K.max_pool2d_backward(gp, idx, r.shape)
    gh = K.relu_backward(gr, h)
    gx_ref, gw_ref, gb_ref = K.conv2d_backward(gh, x, conv.weight.data)
    np.testing.assert_array_equal(gx, gx_ref)
    np.testing.assert_array_equal(conv.weight.grad, gw_ref)
    np.testing.assert_array_equal(conv.bias.grad, gb_ref)


def test_plan_follows_replaced_layers():
    model = cg.nn.Sequential(cg.nn.ReLU(), cg.nn.MaxPool2d(2))
    x = np.arange(-8, 8, dtype=np.float32).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(model(x).data, np.maximum(K.max_pool2d_forward(x, 2)[0], 0))
    model[1]  # indexing works after planning
    setattr(model, "1", cg.nn.AvgPool2d(2))
    np.testing.assert_array_equal(model(x).data, K.avg_pool2d_forward(K.relu(x), 2))


def test_first_order_step_accepts_a_closure():
    """opt.step(closure) as torch: the closure runs first, its loss is returned."""
    p = cg.nn.Parameter(np.array([3.0, -2.0]))
    opt = cg.optim.SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        p.grad[...] = 2 * p.data  # d/dp of |p|^2
        return float(np.sum(p.data ** 2))

    assert opt.step(closure) == 13.0
    np.testing.assert_allclose(p.data, [1.5, -1.0])
    assert opt.step() is None
