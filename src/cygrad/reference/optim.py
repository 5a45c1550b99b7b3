"""Optimizer updates on flat 1-D buffers, the specification.

Each function follows the single-tensor (foreach=False) algorithm of the matching
torch.optim class, operation by operation, with every scalar rounded to the
buffers' dtype as torch does. param and the state buffers are updated in place;
grad is only read. The functions return None.

`step` is the 1-based count of this update (torch's state['step'] after it).
maximize=True ascends the objective: the gradient is negated first, as torch does.
"""
import numpy as np

from cygrad.reference._checks import check_ndim, check_writeable, float_array, overlaps, same_dtype
from cygrad.reference._elementwise import nonneg, real


def check_step(step):
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"step must be an int, got {type(step).__name__}")
    if step < 1:
        raise ValueError(f"step must be >= 1 (the 1-based count of this update), got {step}")
    float(step)  # the kernels hold step in a C double: OverflowError beyond its range
    return int(step)


def check_buffers(param, grad, **states):
    """param and grad, and the state buffers that are not None: 1-D, one dtype and
    length, C-contiguous, param and states writeable, no two overlapping (in the kernels'
    order of checks)."""
    arrays = [("param", param), ("grad", grad)] + [(k, v) for k, v in states.items() if v is not None]
    for name, a in arrays:
        float_array(a, name)
        if name != "param":
            same_dtype(a, name, param, "param")
        check_ndim(a, 1, name)
        if name != "param" and a.shape != param.shape:
            raise ValueError(f"{name} has length {a.shape[0]} but param has length {param.shape[0]}")
        if name != "grad":
            check_writeable(a, name)
    for i, (na, a) in enumerate(arrays):
        for nb, b in arrays[i + 1:]:
            if overlaps(a, b):
                raise ValueError(f"{na} and {nb} overlap in memory")


def _require(buf, name, why):
    if buf is None:
        raise ValueError(f"{name} is required when {why}")


def _beta(v, name):
    v = real(v, name)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {v}")
    return v


def _lerp(start, end, weight, T):
    """torch.lerp with a scalar weight (start updated in place)."""
    w = T(weight)
    if abs(weight) < 0.5:
        start += w * (end - start)
    else:
        start[...] = end - (end - start) * (T(1) - w)


def check_flag(v, name):
    """A bool argument (TypeError for anything else, e.g. the string 'False')."""
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(v).__name__}")
    return bool(v)


def _signed(grad, maximize):
    """The gradient to descend along: -grad when maximizing (a new array), else grad."""
    return -grad if maximize else grad


def _decayed(grad, param, weight_decay, T):
    """grad + weight_decay * param (a new array; grad itself is not modified)."""
    return grad + T(weight_decay) * param if weight_decay != 0 else grad


def sgd_step(param, grad, momentum_buf, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
             nesterov=False, maximize=False, step):
    """torch.optim.SGD. On step 1 the momentum buffer is set to the gradient (torch
    creates it then); later steps: buf = momentum * buf + (1 - dampening) * g.
    momentum_buf may be None when momentum == 0."""
    lr, momentum = nonneg(lr, "lr"), nonneg(momentum, "momentum")
    dampening, weight_decay = real(dampening, "dampening"), nonneg(weight_decay, "weight_decay")
    step = check_step(step)
    nesterov = bool(nesterov)
    maximize = check_flag(maximize, "maximize")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("nesterov requires momentum > 0 and dampening == 0")
    if momentum != 0:
        _require(momentum_buf, "momentum_buf", "momentum != 0")
    else:
        momentum_buf = None  # not read nor written
    check_buffers(param, grad, momentum_buf=momentum_buf)
    grad = _signed(grad, maximize)
    T = param.dtype.type
    g = _decayed(grad, param, weight_decay, T)
    if momentum != 0:
        if step == 1:
            momentum_buf[...] = g
        else:
            momentum_buf *= T(momentum)
            momentum_buf += T(1 - dampening) * g
        g = g + T(momentum) * momentum_buf if nesterov else momentum_buf
    param += T(-lr) * g


def adagrad_step(param, grad, state_sum, *, lr=0.01, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
                 maximize=False, step):
    """torch.optim.Adagrad: clr = lr / (1 + (step - 1) * lr_decay), state_sum += g*g,
    param -= clr * g / (sqrt(state_sum) + eps)."""
    lr, lr_decay = nonneg(lr, "lr"), nonneg(lr_decay, "lr_decay")
    weight_decay, eps = nonneg(weight_decay, "weight_decay"), nonneg(eps, "eps")
    step = check_step(step)
    maximize = check_flag(maximize, "maximize")
    check_buffers(param, grad, state_sum=state_sum)
    grad = _signed(grad, maximize)
    T = param.dtype.type
    g = _decayed(grad, param, weight_decay, T)
    clr = lr / (1 + (step - 1) * lr_decay)
    state_sum += g * g
    std = np.sqrt(state_sum) + T(eps)
    param += T(-clr) * g / std


def rmsprop_step(param, grad, square_avg, *, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0,
                 momentum=0.0, momentum_buf=None, centered=False, grad_avg=None, maximize=False):
    """torch.optim.RMSprop. momentum_buf is required when momentum > 0, grad_avg when
    centered (both start as zeros, as torch's state)."""
    lr, alpha, eps = nonneg(lr, "lr"), nonneg(alpha, "alpha"), nonneg(eps, "eps")
    weight_decay, momentum = nonneg(weight_decay, "weight_decay"), nonneg(momentum, "momentum")
    maximize = check_flag(maximize, "maximize")
    if momentum > 0:
        _require(momentum_buf, "momentum_buf", "momentum > 0")
    else:
        momentum_buf = None
    if centered:
        _require(grad_avg, "grad_avg", "centered=True")
    else:
        grad_avg = None
    check_buffers(param, grad, square_avg=square_avg, momentum_buf=momentum_buf, grad_avg=grad_avg)
    grad = _signed(grad, maximize)
    T = param.dtype.type
    g = _decayed(grad, param, weight_decay, T)
    square_avg *= T(alpha)
    square_avg += T(1 - alpha) * g * g
    if centered:
        _lerp(grad_avg, g, 1 - alpha, T)
        avg = np.sqrt(square_avg + T(-1) * grad_avg * grad_avg)
    else:
        avg = np.sqrt(square_avg)
    avg = avg + T(eps)
    if momentum > 0:
        momentum_buf *= T(momentum)
        momentum_buf += g / avg
        param += T(-lr) * momentum_buf
    else:
        param += T(-lr) * g / avg


def _adam(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
          amsgrad, max_exp_avg_sq, maximize, decoupled):
    lr, eps, weight_decay = nonneg(lr, "lr"), nonneg(eps, "eps"), nonneg(weight_decay, "weight_decay")
    beta1, beta2 = _beta(beta1, "beta1"), _beta(beta2, "beta2")
    step = check_step(step)
    maximize = check_flag(maximize, "maximize")
    if amsgrad:
        _require(max_exp_avg_sq, "max_exp_avg_sq", "amsgrad=True")
    else:
        max_exp_avg_sq = None
    check_buffers(param, grad, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq, max_exp_avg_sq=max_exp_avg_sq)
    grad = _signed(grad, maximize)
    T = param.dtype.type
    if decoupled:
        g = grad
        if weight_decay != 0:
            param *= T(1 - lr * weight_decay)
    else:
        g = _decayed(grad, param, weight_decay, T)
    _lerp(exp_avg, g, 1 - beta1, T)
    exp_avg_sq *= T(beta2)
    exp_avg_sq += T(1 - beta2) * g * g
    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    step_size = lr / bias_correction1
    bias_correction2_sqrt = bias_correction2 ** 0.5
    if amsgrad:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        v = max_exp_avg_sq
    else:
        v = exp_avg_sq
    denom = np.sqrt(v) / T(bias_correction2_sqrt) + T(eps)
    param += T(-step_size) * exp_avg / denom


def adam_step(param, grad, exp_avg, exp_avg_sq, *, step, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, amsgrad=False, max_exp_avg_sq=None, maximize=False):
    """torch.optim.Adam (L2 decay added to the gradient), with bias correction;
    max_exp_avg_sq is required when amsgrad."""
    _adam(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
          amsgrad, max_exp_avg_sq, maximize, decoupled=False)


def adamw_step(param, grad, exp_avg, exp_avg_sq, *, step, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8,
               weight_decay=0.01, amsgrad=False, max_exp_avg_sq=None, maximize=False):
    """torch.optim.AdamW: param *= 1 - lr * weight_decay, then the Adam update."""
    _adam(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
          amsgrad, max_exp_avg_sq, maximize, decoupled=True)
