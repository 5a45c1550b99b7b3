"""cygrad.nn.utils: gradient clipping over the flat gradient buffer (torch.nn.utils)."""
import math

import numpy as np

from cygrad import backend
from cygrad.nn.parameter import _adjacent_views
from cygrad.tensor import Tensor, wrap

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _grad_spans(parameters):
    """The gradient arrays of `parameters` as few contiguous arrays as possible: one view
    of the flat gradient buffer when the parameters lie in it side by side (a model's
    parameters in order), else one array per parameter."""
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return []
    span = _adjacent_views(grads) if len(grads) > 1 else None
    return [span] if span is not None else grads


def _norm_type(norm_type):
    if isinstance(norm_type, str):
        if norm_type != "inf":
            raise ValueError(f"norm_type must be a positive number or 'inf', got {norm_type!r}")
        return math.inf
    value = float(norm_type)
    if not value > 0:
        raise ValueError(f"norm_type must be a positive number or 'inf', got {norm_type!r}")
    return value


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scale the gradients so that their total norm is at most max_norm (torch's
    clip_grad_norm_: coefficient max_norm / (total + 1e-6), clamped at 1); returns the
    total norm of the gradients before clipping (a 0-d Tensor).

    The norm is one fixed-order kernel reduction over the flat gradient buffer (float64
    accumulation), so it is the same for any thread count. `foreach` is accepted and
    ignored (there is a single buffer already).
    """
    ord_ = _norm_type(norm_type)
    spans = _grad_spans(parameters)
    if not spans:
        return wrap(np.zeros((), np.float32))
    K = backend.current()
    norms = [K.vector_norm(np.ascontiguousarray(g).reshape(-1), ord_) for g in spans]
    total = norms[0] if len(norms) == 1 else K.vector_norm(np.array(norms), ord_)
    dtype = spans[0].dtype
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from "
                           "`parameters` is non-finite, so it cannot be clipped. To disable "
                           "this error and scale the gradients by the non-finite norm anyway, "
                           "set `error_if_nonfinite=False`")
    coef = float(max_norm) / (float(dtype.type(total)) + 1e-6)
    if coef < 1.0 or math.isnan(coef):
        for g in spans:
            K.scale_(g.reshape(-1), coef)
    return wrap(np.array(total, dtype))


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every gradient element into [-clip_value, clip_value] in place (torch's
    clip_grad_value_); NaN stays NaN."""
    clip_value = float(clip_value)
    K = backend.current()
    for g in _grad_spans(parameters):
        K.clamp_(g.reshape(-1), -clip_value, clip_value)
