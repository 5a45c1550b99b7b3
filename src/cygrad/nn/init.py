"""Weight initialisation: torch.nn.init's functions, and the generators layers draw from.

Every `*_` function fills its `tensor` in place and returns it: a cygrad.nn.Parameter
(its `.data` is written, never rebound, so it stays a view of the model's flat
buffer), a cygrad.Tensor, or a writable ndarray. Names, arguments, defaults, fan and
gain rules, and error types are torch.nn.init's.

Random values come from `generator` (a numpy Generator, or an int seed for a new one)
or else from cygrad's global generator, which `manual_seed(seed)` resets (seeded with
0 at import), so building and initialising a model is deterministic. Draws are made in
float64 and rounded to the tensor's dtype, so a float32 tensor holds the rounded values
of the float64 one drawn from the same seed.
"""
import math
import numbers
import warnings

import numpy as np

from cygrad.autograd import bump_versions
from cygrad.tensor import Tensor

__all__ = ["calculate_gain", "uniform_", "normal_", "constant_", "zeros_", "ones_",
           "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
           "orthogonal_", "manual_seed", "generator"]

_global = np.random.default_rng(0)


def manual_seed(seed):
    """Reset the global generator the layers draw their initial weights from."""
    global _global
    _global = np.random.default_rng(seed)
    return _global


def generator(rng=None):
    """rng as a numpy Generator: None -> the global one, an int -> a new seeded one."""
    if rng is None:
        return _global
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


_source = generator  # the `generator` argument of the init functions shadows the name


def float_dtype(dtype):
    """dtype as a NumPy dtype, which must be float32 or float64 (TypeError otherwise)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def fan_in_uniform(shape, fan_in, rng, dtype):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch's default for weights and biases.

    Weights: kaiming_uniform_(a=sqrt(5)) has gain sqrt(2/(1+a^2)) = sqrt(1/3) and bound
    gain*sqrt(3/fan_in) = 1/sqrt(fan_in). Biases: bound 1/sqrt(fan_in) directly.
    """
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return _source(rng).uniform(-bound, bound, size=shape).astype(dtype)


# ---- gains and fans -------------------------------------------------------------------

_LINEAR_FNS = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
               "conv_transpose3d")


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for a nonlinearity (torch.nn.init.calculate_gain).

    linear, conv*, sigmoid: 1; tanh: 5/3; relu: sqrt(2); leaky_relu: sqrt(2 / (1 + s^2))
    with negative slope s = param (default 0.01); selu: 3/4. ValueError for any other.
    """
    if nonlinearity in _LINEAR_FNS or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + _negative_slope(param) ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4  # torch's empirical value (pytorch/pytorch#50664)
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _negative_slope(param):
    """leaky_relu's slope: 0.01 by default, else an int or float (a bool is refused, as torch)."""
    if param is None:
        return 0.01
    if isinstance(param, bool) or not isinstance(param, (int, float)):
        raise ValueError(f"negative_slope {param} not a valid number")
    return param


def _calculate_fan_in_and_fan_out(tensor):
    """(fan_in, fan_out) = (size(1), size(0)) times the receptive field (the product of the
    dimensions after the second): Linear (out, in) -> (in, out); Conv2d (C_out, C_in, KH,
    KW) -> (C_in*KH*KW, C_out*KH*KW). ValueError below 2 dimensions, as torch."""
    shape = _array(tensor, "_calculate_fan_in_and_fan_out").shape
    if len(shape) < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than "
                         f"2 dimensions (got shape {shape})")
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def _calculate_correct_fan(tensor, mode):
    """fan_in or fan_out of tensor by mode ('fan_in' or 'fan_out', any case)."""
    chosen = mode.lower() if isinstance(mode, str) else mode
    if chosen not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of ['fan_in', 'fan_out']")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if chosen == "fan_in" else fan_out


# ---- writing into the target ----------------------------------------------------------

def _array(tensor, fn):
    """The ndarray behind tensor (a Tensor's or Parameter's .data, or the ndarray itself)."""
    if isinstance(tensor, Tensor):
        return tensor.data
    if isinstance(tensor, np.ndarray):
        return tensor
    raise TypeError(f"{fn}: tensor must be a cygrad Tensor, Parameter or numpy ndarray, "
                    f"got {type(tensor).__name__}")


def _target(tensor, fn, floating=True):
    """The writable ndarray to fill; floating: its dtype must be a float type (TypeError)."""
    arr = _array(tensor, fn)
    if floating and arr.dtype.kind != "f":
        raise TypeError(f"{fn}: tensor must have a floating dtype, got {arr.dtype}")
    if not arr.flags.writeable:
        raise ValueError(f"{fn}: tensor's array is read-only")
    return arr


def _store(tensor, arr, values):
    """Write values into arr (the tensor's array) and mark a Tensor changed in place, so a
    graph that saved its old value refuses to backward through it."""
    arr[...] = values
    if isinstance(tensor, Tensor):
        bump_versions((tensor,))
    return tensor


def _is_empty(tensor, fn):
    """True (with torch's warning) when tensor has no elements: kaiming/xavier do nothing."""
    if 0 not in _array(tensor, fn).shape:
        return False
    warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=3)
    return True


# ---- the distributions ----------------------------------------------------------------

def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill tensor with draws from U(a, b) (torch.nn.init.uniform_); RuntimeError when
    a > b or a bound is not finite in the tensor's dtype, as torch."""
    arr = _target(tensor, "uniform_")
    a, b = _uniform_bounds(a, b, arr.dtype)
    return _store(tensor, arr, _source(generator).uniform(a, b, size=arr.shape))


def _uniform_bounds(a, b, dtype):
    """(a, b) as floats, checked as torch's uniform_ does."""
    a, b = float(a), float(b)
    top = float(np.finfo(dtype).max)
    for name, v in (("from", a), ("to", b)):
        if not abs(v) <= top:
            raise RuntimeError(f"uniform_: {name}={v} is out of bounds for {dtype}")
    if a > b:
        raise RuntimeError(f"uniform_ expects to return a [from, to) range, but found "
                           f"from={a} > to={b}")
    if b - a > top:
        raise RuntimeError(f"uniform_ expects to-from <= {top} ({dtype}), but found "
                           f"to={b} and from={a}")
    return a, b


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """Fill tensor with draws from N(mean, std^2) (torch.nn.init.normal_); RuntimeError
    when std < 0 (or NaN), as torch."""
    arr = _target(tensor, "normal_")
    mean, std = float(mean), float(std)
    if not std >= 0.0:
        raise RuntimeError(f"normal expects std >= 0.0, but found std {std}")
    return _store(tensor, arr, _source(generator).normal(mean, std, size=arr.shape))


def constant_(tensor, val):
    """Fill tensor with val (torch.nn.init.constant_). Any numeric dtype; ValueError when
    val cannot be stored (a fraction or out-of-range value in an integer or bool tensor,
    a finite value overflowing a float dtype): never truncated or wrapped silently."""
    arr = _target(tensor, "constant_", floating=False)
    return _store(tensor, arr, _fill_value(val, arr.dtype, "constant_"))


def _fill_value(val, dtype, fn):
    """val as a 0-d array of dtype, checked to hold the value (rounding allowed for floats)."""
    if not isinstance(val, numbers.Real):
        raise TypeError(f"{fn}: val must be a real number, got {type(val).__name__}")
    try:
        with np.errstate(all="ignore"):
            stored = np.array(val).astype(dtype)
    except OverflowError:
        stored = None
    if dtype.kind == "f":
        exact = stored is not None and (bool(np.isfinite(stored)) or not math.isfinite(val))
    else:
        exact = stored is not None and bool(stored == val)
    if not exact:
        raise ValueError(f"{fn}: {val!r} cannot be stored in a {dtype} tensor")
    return stored


def zeros_(tensor):
    """Fill tensor with 0 (torch.nn.init.zeros_)."""
    return constant_(tensor, 0)


def ones_(tensor):
    """Fill tensor with 1 (torch.nn.init.ones_)."""
    return constant_(tensor, 1)


def _xavier_std(tensor, gain, fn):
    """gain * sqrt(2 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    if fan_in + fan_out == 0:  # torch: a bare ZeroDivisionError
        raise ZeroDivisionError(f"{fn}: fan_in + fan_out is 0 for a tensor of shape "
                                f"{_array(tensor, fn).shape}")
    return gain * math.sqrt(2.0 / float(fan_in + fan_out))


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """Glorot uniform (torch.nn.init.xavier_uniform_): U(-a, a) with
    a = gain * sqrt(6 / (fan_in + fan_out)) = sqrt(3) * std."""
    _target(tensor, "xavier_uniform_")
    a = math.sqrt(3.0) * _xavier_std(tensor, gain, "xavier_uniform_")
    return uniform_(tensor, -a, a, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    """Glorot normal (torch.nn.init.xavier_normal_): N(0, std^2) with
    std = gain * sqrt(2 / (fan_in + fan_out))."""
    _target(tensor, "xavier_normal_")
    return normal_(tensor, 0.0, _xavier_std(tensor, gain, "xavier_normal_"), generator)


def _kaiming_std(tensor, a, mode, nonlinearity):
    """gain / sqrt(fan) (He et al., 2015), gain = calculate_gain(nonlinearity, a)."""
    fan = _calculate_correct_fan(tensor, mode)
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He uniform (torch.nn.init.kaiming_uniform_): U(-bound, bound) with
    bound = sqrt(3) * gain / sqrt(fan_mode). `a`: the leaky_relu negative slope.
    A zero-element tensor is left as is (with torch's warning)."""
    _target(tensor, "kaiming_uniform_")
    if _is_empty(tensor, "kaiming_uniform_"):
        return tensor
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He normal (torch.nn.init.kaiming_normal_): N(0, std^2) with
    std = gain / sqrt(fan_mode). A zero-element tensor is left as is (torch's warning)."""
    _target(tensor, "kaiming_normal_")
    if _is_empty(tensor, "kaiming_normal_"):
        return tensor
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity), generator)


def orthogonal_(tensor, gain=1, generator=None):
    """A (semi-)orthogonal matrix times gain (torch.nn.init.orthogonal_, Saxe et al. 2013).

    The tensor is seen as (rows, cols) = (size(0), numel / size(0)). Q of the QR
    factorisation of a standard normal (max, min) matrix, its columns multiplied by the
    signs of diag(R) so Q is Haar-distributed (Mezzadri 2007), transposed back when
    rows < cols: W W^T = gain^2 I (rows <= cols), W^T W = gain^2 I (rows >= cols).
    """
    arr = _target(tensor, "orthogonal_")
    if arr.ndim < 2:
        raise ValueError(f"Only tensors with 2 or more dimensions are supported (got shape "
                         f"{arr.shape})")
    if arr.size == 0:
        return tensor
    rows = arr.shape[0]
    cols = arr.size // rows
    flat = _source(generator).standard_normal((rows, cols))
    q, r = np.linalg.qr(flat.T if rows < cols else flat)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return _store(tensor, arr, (q * gain).reshape(arr.shape))
