"""What bench_elementwise.py and report_elementwise.py time: cygrad.kernels vs
cygrad.reference vs PyTorch on the same data, each as a zero-argument callable.

Cases are (function, size label). "10M" is 10,000,000 float32 elements, "64x128"
a small float32 batch (the MLP's activations). Activation cases time forward +
backward; "out=" variants write into preallocated arrays (the kernel alone),
"new" variants allocate their results (the plain call).
"""
import numpy as np

import cygrad
from cygrad import kernels as K, reference as R

LARGE, SMALL = 10_000_000, (64, 128)
ACTIVATIONS = ["relu", "leaky_relu", "sigmoid", "tanh"]
FROM_OUTPUT = {"sigmoid", "tanh"}


def _data(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _activation(name, shape, alloc):
    """forward then backward (the backward reads x, or the output y for sigmoid/tanh)."""
    x, g = _data(shape), _data(shape, 1)
    y, gx = np.empty_like(x), np.empty_like(x)
    fwd, bwd = name, f"{name}_backward"
    res = {}
    for label, B in (("cygrad", K), ("reference", R)):
        f, b = getattr(B, fwd), getattr(B, bwd)
        if alloc:
            def run(f=f, b=b):
                out = f(x)
                return b(g, out if name in FROM_OUTPUT else x)
        else:
            def run(f=f, b=b):
                f(x, out=y)
                return b(g, y if name in FROM_OUTPUT else x, out=gx)
        res[label] = run
    torch = _torch()
    if torch is not None:
        tx, tg, ty, tgx = (torch.from_numpy(a) for a in (x, g, y, gx))
        aten = torch.ops.aten
        tf = {"relu": lambda o=None: torch.relu(tx) if o is None else torch.clamp_min(tx, 0, out=o),
              "leaky_relu": lambda o=None: torch._C._nn.leaky_relu(tx, 0.01, **({"out": o} if o is not None else {})),
              "sigmoid": lambda o=None: torch.sigmoid(tx, out=o),
              "tanh": lambda o=None: torch.tanh(tx, out=o)}[name]
        tb = {"relu": lambda v, o=None: aten.threshold_backward.grad_input(tg, tx, 0, grad_input=o) if o is not None else aten.threshold_backward(tg, tx, 0),
              "leaky_relu": lambda v, o=None: aten.leaky_relu_backward.grad_input(tg, tx, 0.01, False, grad_input=o) if o is not None else aten.leaky_relu_backward(tg, tx, 0.01, False),
              "sigmoid": lambda v, o=None: aten.sigmoid_backward.grad_input(tg, v, grad_input=o) if o is not None else aten.sigmoid_backward(tg, v),
              "tanh": lambda v, o=None: aten.tanh_backward.grad_input(tg, v, grad_input=o) if o is not None else aten.tanh_backward(tg, v)}[name]
        if alloc:
            res["torch"] = lambda: tb(tf())
        else:
            res["torch"] = lambda: tb(tf(ty), tgx)
    return res


def _adam(n):
    p, g = _data(n), _data(n, 1)
    state = [np.zeros(n, np.float32), np.zeros(n, np.float32)]
    res = {"cygrad": lambda: K.adam_step(p, g, *state, step=10),
           "reference": lambda: R.adam_step(p, g, *state, step=10)}
    torch = _torch()
    if torch is not None:
        for label, kw in (("torch", {"fused": True}), ("torch foreach=False", {"foreach": False})):
            tp = torch.nn.Parameter(torch.from_numpy(p.copy()))
            tp.grad = torch.from_numpy(g)
            opt = torch.optim.Adam([tp], **kw)
            opt.step()  # creates the state
            res[label] = opt.step
    return res


def _softmax(name, shape):
    x, y = _data(shape), np.empty(shape, np.float32)
    res = {"cygrad": lambda: getattr(K, name)(x, out=y), "reference": lambda: getattr(R, name)(x, out=y)}
    torch = _torch()
    if torch is not None:
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        f = torch.softmax if name == "softmax" else torch.log_softmax
        res["torch"] = lambda: f(tx, -1, out=ty)
    return res


def _cross_entropy(shape):
    """loss and gradient: torch through autograd, as a training step computes them."""
    z = _data(shape) * 3
    t = np.random.default_rng(2).integers(0, shape[1], shape[0])
    res = {"cygrad": lambda: K.cross_entropy(z, t), "reference": lambda: R.cross_entropy(z, t)}
    torch = _torch()
    if torch is not None:
        tz, tt = torch.tensor(z, requires_grad=True), torch.from_numpy(t)

        def run():
            tz.grad = None
            loss = torch.nn.functional.cross_entropy(tz, tt)
            loss.backward()
            return loss.item(), tz.grad
        res["torch"] = run
    return res


def _mse(shape):
    a, b = _data(shape), _data(shape, 1)
    res = {"cygrad": lambda: K.mse_loss(a, b), "reference": lambda: R.mse_loss(a, b)}
    torch = _torch()
    if torch is not None:
        ta, tb = torch.tensor(a, requires_grad=True), torch.from_numpy(b)

        def run():
            ta.grad = None
            loss = torch.nn.functional.mse_loss(ta, tb)
            loss.backward()
            return loss.item(), ta.grad
        res["torch"] = run
    return res


def _dropout(shape):
    x = _data(shape)
    res = {"cygrad": lambda: K.dropout(x, 0.5, 1), "reference": lambda: R.dropout(x, 0.5, 1)}
    torch = _torch()
    if torch is not None:
        tx = torch.from_numpy(x)
        res["torch"] = lambda: torch.nn.functional.dropout(tx, 0.5, training=True)
    return res


def _overhead():
    """relu of one element: the fixed cost of a call (checks, allocation, dispatch)."""
    x = _data((1,))
    res = {"cygrad": lambda: K.relu(x), "reference": lambda: R.relu(x)}
    torch = _torch()
    if torch is not None:
        tx = torch.from_numpy(x)
        res["torch"] = lambda: torch.relu(tx)
    return res


def cases():
    """[(function, size, {implementation: callable})], in table order."""
    out = []
    for name in ACTIVATIONS:
        out.append((f"{name} fwd+bwd out=", "10M", lambda name=name: _activation(name, LARGE, False)))
        out.append((f"{name} fwd+bwd new", "10M", lambda name=name: _activation(name, LARGE, True)))
    out.append(("adam_step", "10M", lambda: _adam(LARGE)))
    out.append(("relu call overhead", "1", _overhead))
    for name in ACTIVATIONS:
        out.append((f"{name} fwd+bwd out=", "64x128", lambda name=name: _activation(name, SMALL, False)))
    for name in ("softmax", "log_softmax"):
        out.append((f"{name} out=", "64x128", lambda name=name: _softmax(name, SMALL)))
    out.append(("cross_entropy loss+grad", "64x10", lambda: _cross_entropy((64, 10))))
    out.append(("mse_loss loss+grad", "64x128", lambda: _mse(SMALL)))
    out.append(("dropout", "64x128", lambda: _dropout(SMALL)))
    out.append(("adam_step", "8192", lambda: _adam(SMALL[0] * SMALL[1])))
    return out


def threads(n):
    """Context fixing cygrad's and torch's thread counts."""
    import contextlib

    @contextlib.contextmanager
    def both():
        torch = _torch()
        old = torch.get_num_threads() if torch is not None else None
        if torch is not None:
            torch.set_num_threads(n)
        try:
            with cygrad.threads(n):
                yield
        finally:
            if torch is not None:
                torch.set_num_threads(old)
    return both()
