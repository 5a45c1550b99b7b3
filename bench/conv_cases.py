"""The seed CNN's convolution and pooling layers (MNIST 28x28), and a depthwise and a
grouped convolution, as bench_conv.py and report_conv.py time them: conv1 1->32 3x3 on
28x28 (no input gradient: first layer), conv2 32->64 3x3 on 13x13, max-pool 2 on
26x26x32 and on 11x11x64, depthwise 3x3 (padding 1) on 26x26x32, grouped 32->64 3x3
(groups=4) on 13x13; each op is its forward and backward pass, float32.
"""

import numpy as np

from cygrad.benchmark import torch_threads
from cygrad.reference._checks import conv_geometry

OPS = ["conv1", "conv2", "conv1+conv2", "maxpool", "depthwise", "grouped"]
# (C, H, W), weight, conv2d keyword arguments, input_grad
CONV1 = ((1, 28, 28), (32, 1, 3, 3), {}, False)
CONV2 = ((32, 13, 13), (64, 32, 3, 3), {}, True)
DEPTHWISE = ((32, 26, 26), (32, 1, 3, 3), dict(padding=1, groups=32), True)
GROUPED = ((32, 13, 13), (64, 8, 3, 3), dict(groups=4), True)
LAYERS = {"conv1": [CONV1], "conv2": [CONV2], "conv1+conv2": [CONV1, CONV2], "maxpool": [],
          "depthwise": [DEPTHWISE], "grouped": [GROUPED]}
POOLS = [(32, 26, 26), (64, 11, 11)]


def conv2_flops(batch):
    """Forward + backward multiply-adds x 2 of conv2 (weight and input gradients)."""
    (c, h, w), (co, _, kh, kw), _, _ = CONV2
    return 3 * 2.0 * batch * co * (h - kh + 1) * (w - kw + 1) * c * kh * kw


def _conv_data(layer, batch, rng):
    (c, h, w), ws, kw, input_grad = layer
    x = rng.standard_normal((batch, c, h, w)).astype(np.float32)
    wt = (rng.standard_normal(ws) * 0.1).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    geometry = {k: v for k, v in kw.items() if k != "groups"}
    ho, wo = conv_geometry((h, w), ws[2:], geometry.get("stride", 1), geometry.get("padding", 0),
                           geometry.get("dilation", 1))[-1]
    g = rng.standard_normal((batch, ws[0], ho, wo)).astype(np.float32)
    return x, wt, b, g, kw, input_grad


def _numpy_steps(B, convs, pools):
    """Callables running forward + backward of each layer on backend B."""
    def conv(x, w, b, g, kw, input_grad):
        B.conv2d_forward(x, w, b, **kw)
        B.conv2d_backward(g, x, w, input_grad=input_grad, **kw)

    def pool(x):
        y, idx = B.max_pool2d_forward(x, 2)
        B.max_pool2d_backward(y, idx, x.shape)
    return [lambda d=d: conv(*d) for d in convs] + [lambda x=x: pool(x) for x in pools]


def _torch_steps(torch, convs, pools):
    F = torch.nn.functional
    steps = []
    for x, w, b, g, kw, input_grad in convs:
        tx = torch.from_numpy(x).requires_grad_(input_grad)
        tw, tb = torch.from_numpy(w).requires_grad_(), torch.from_numpy(b).requires_grad_()
        wrt = [tx, tw, tb] if input_grad else [tw, tb]
        steps.append(lambda tx=tx, tw=tw, tb=tb, tg=torch.from_numpy(g), wrt=wrt, kw=kw:
                     torch.autograd.grad(F.conv2d(tx, tw, tb, **kw), wrt, tg))
    for x in pools:
        tx = torch.from_numpy(x).requires_grad_()

        def pool(tx=tx):
            y = F.max_pool2d(tx, 2)
            return torch.autograd.grad(y, [tx], y.detach())
        steps.append(pool)
    return steps


def runners(op, batch, threads, seed=0, impls=("cygrad", "reference", "torch")):
    """{implementation: (zero-argument callable, context manager factory fixing threads)}
    for those of impls that are installed (torch is imported only when asked for)."""
    import cygrad as cg
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    convs = [_conv_data(layer, batch, rng) for layer in LAYERS[op]]
    pools = [rng.standard_normal((batch,) + p).astype(np.float32) for p in POOLS] if op == "maxpool" else []

    def run_all(steps):
        def run():
            for step in steps:
                step()
        return run

    res = {
        "cygrad": (run_all(_numpy_steps(cg.kernels, convs, pools)), lambda: cg.threads(threads)),
        "reference": (run_all(_numpy_steps(cg.reference, convs, pools)),
                      lambda: threadpool_limits(threads, user_api="blas")),
    }
    res = {name: run for name, run in res.items() if name in impls}
    if "torch" not in impls:
        return res
    try:
        import torch
    except ImportError:
        return res

    res["torch"] = (run_all(_torch_steps(torch, convs, pools)), lambda: torch_threads(threads))
    return res


def gemm_runner(batch, threads):
    """conv2's three GEMMs at its im2col shape, the whole batch as one call each (our
    layout: columns are batch*positions): forward W @ cols, input gradient W^T @ g,
    weight gradient g @ cols^T. Returns (callable, context factory)."""
    import cygrad as cg
    (c, h, w), (co, _, kh, kw), _, _ = CONV2
    k, n = c * kh * kw, batch * (h - kh + 1) * (w - kw + 1)
    rng = np.random.default_rng(0)
    wt, cols, g = (rng.standard_normal(s).astype(np.float32) for s in ((co, k), (k, n), (co, n)))
    y, dcols, gw = np.empty((co, n), np.float32), np.empty((k, n), np.float32), np.empty((co, k), np.float32)

    def run():
        cg.kernels.matmul(wt, cols, out=y)
        cg.kernels.matmul(wt, g, trans_a=True, out=dcols)
        cg.kernels.matmul(g, cols, trans_b=True, out=gw)
    return run, lambda: cg.threads(threads)
