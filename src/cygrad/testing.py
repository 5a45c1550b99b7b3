"""Test helpers: finite-difference gradient checks.

gradcheck(fn, inputs, grads) compares analytic gradients with central differences
in float64. `fn(*inputs)` returns a scalar (or an array, reduced as sum(out * w)
for a fixed random w); `grads` are the analytic gradients of that scalar with
respect to each input (or a callable returning them).
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


def gradcheck(fn, inputs, grads, *, eps=1e-6, rtol=1e-6, atol=1e-8, wrt=None, seed=0):
    """Check analytic gradients against central differences; raise AssertionError on mismatch.

    fn: callable(*inputs) -> float or ndarray. For an ndarray output the checked
        scalar is sum(fn(*inputs) * w) for a fixed random w, and `grads` must then
        be a callable(w) returning the gradients of that scalar.
    inputs: list of float64 arrays (perturbed in place, restored after).
    grads: list of analytic gradients (one per checked input) or callable(w) -> list.
    wrt: indices of inputs to check (default: all).
    Returns the largest relative error seen.
    """
    inputs = list(inputs)
    for i, x in enumerate(inputs):
        if not (isinstance(x, np.ndarray) and x.dtype == np.float64):
            raise TypeError(f"gradcheck input {i} must be a float64 ndarray")
    wrt = list(range(len(inputs))) if wrt is None else list(wrt)
    out0 = fn(*inputs)
    if np.ndim(out0) == 0:
        w = None
        scalar = lambda: float(fn(*inputs))
    else:
        w = np.random.default_rng(seed).standard_normal(np.shape(out0))
        scalar = lambda: float(np.sum(np.asarray(fn(*inputs), dtype=np.float64) * w))
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
