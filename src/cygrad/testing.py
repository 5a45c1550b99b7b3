"""Test helpers: finite-difference gradient checks.

gradcheck(fn, inputs, grads) compares analytic gradients with central differences
in float64. `fn(*inputs)` returns a scalar (or an array, reduced as sum(out * w)
for a fixed random w); `grads` are the analytic gradients of that scalar with
respect to each input (or a callable returning them). gradcheck(fn, inputs) without
grads checks a Tensor function's autograd gradients.
"""
import numpy as np

__all__ = ["gradcheck", "numerical_grad"]


def numerical_grad(f, x, eps=1e-6):
    """Central-difference gradient of the scalar function f() with respect to array x (in place)."""
    g = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def gradcheck(fn, inputs, grads=None, *, eps=1e-6, rtol=1e-6, atol=1e-8, wrt=None, seed=0):
    """Check analytic gradients against central differences; raise AssertionError on mismatch.

    fn: callable(*inputs) -> float or ndarray (or, with grads=None, Tensors in and a
        Tensor out). For an array output the checked scalar is sum(fn(*inputs) * w) for
        a fixed random w, and `grads` must then be a callable(w) returning the
        gradients of that scalar.
    inputs: list of float64 arrays (or Tensors; perturbed in place, restored after).
    grads: list of analytic gradients (one per checked input) or callable(w) -> list;
        None: autograd's, from backward() of the checked scalar through fn's graph.
    wrt: indices of inputs to check (default: all).
    Returns the largest relative error seen.
    """
    from cygrad.autograd import no_grad
    from cygrad.tensor import Tensor

    inputs = [x.data if isinstance(x, Tensor) else x for x in inputs]
    for i, x in enumerate(inputs):
        if not (isinstance(x, np.ndarray) and x.dtype == np.float64):
            raise TypeError(f"gradcheck input {i} must be a float64 ndarray")
    wrt = list(range(len(inputs))) if wrt is None else list(wrt)
    if grads is None:  # Tensors in, Tensor out: the numerical side records nothing
        views = [Tensor(x) for x in inputs]  # share the arrays that get perturbed

        def value():
            with no_grad():
                out = fn(*views)
            return np.asarray(out.data if isinstance(out, Tensor) else out, dtype=np.float64)
    else:
        def value():
            return np.asarray(fn(*inputs), dtype=np.float64)
    out0 = value()
    if out0.ndim == 0:
        w = None
        scalar = lambda: float(value())  # noqa: E731
    else:
        w = np.random.default_rng(seed).standard_normal(out0.shape)
        scalar = lambda: float(np.sum(value() * w))  # noqa: E731
    if grads is None:
        grads = _autograd_grads(fn, inputs, wrt)
    analytic = grads(w) if callable(grads) else grads
    analytic = list(analytic)
    if len(analytic) != len(wrt):
        raise ValueError(f"got {len(analytic)} analytic gradients for {len(wrt)} checked inputs")
    worst = 0.0
    for idx, ga in zip(wrt, analytic):
        x = inputs[idx]
        gn = numerical_grad(scalar, x, eps)
        ga = np.asarray(ga, dtype=np.float64)
        if ga.shape != x.shape:
            raise AssertionError(f"gradient {idx} has shape {ga.shape}, input has {x.shape}")
        err = np.abs(ga - gn)
        scale = np.maximum(np.abs(gn), np.abs(ga))
        bad = err > atol + rtol * scale
        rel = float(np.max(err / np.maximum(scale, atol))) if err.size else 0.0
        worst = max(worst, rel)
        if bad.any():
            i = np.unravel_index(np.argmax(err - rtol * scale), x.shape)
            raise AssertionError(
                f"gradient of input {idx} differs at {tuple(int(v) for v in i)}: "
                f"analytic {ga[i]!r}, numerical {gn[i]!r} (max rel err {rel:.3g})")
    return worst


def _autograd_grads(fn, inputs, wrt):
    """callable(w) -> the gradients autograd computes for the inputs in wrt."""
    from cygrad.tensor import Tensor

    def grads(w):
        leaves = [Tensor(x.copy(), requires_grad=i in wrt) for i, x in enumerate(inputs)]
        out = fn(*leaves)
        if not isinstance(out, Tensor):
            raise TypeError(f"with grads=None, fn must return a Tensor, got {type(out).__name__}")
        out.backward(None if w is None else w.astype(out.dtype))
        return [np.zeros_like(inputs[i]) if leaves[i].grad is None else leaves[i].grad for i in wrt]

    return grads
