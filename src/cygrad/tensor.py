"""Tensor: an ndarray that records the ops applied to it (torch.Tensor's API).

Each op computes its result with NumPy (2-D matrix products with the active backend's
GEMM) and, when an input requires a gradient and grad mode is on, records one graph
node (cygrad.autograd) whose closure maps the output's gradient to the inputs'
gradients, broadcasting reduced back to each operand's shape.
"""
import numbers
import weakref
from collections import namedtuple

import numpy as np

from cygrad import backend
from cygrad.autograd import Node, _backward, _mode, bump_versions, is_grad_enabled

__all__ = ["Tensor", "tensor", "MaxMin"]


def record(data, name, backward, inputs):
    """The output Tensor of an op, with its node. `inputs`: the op's tensor inputs."""
    out = Tensor.__new__(Tensor)
    out.data = data
    out.grad = None
    out.requires_grad = True
    out._node = Node(name, backward, inputs)
    out._version = 0
    return out


def wrap(data):
    """A Tensor over `data` (an ndarray) without a node: an op's result that needs no gradient."""
    out = Tensor.__new__(Tensor)
    out.data = data
    out.grad = None
    out.requires_grad = False
    out._node = None
    out._version = 0
    return out


MaxMin = namedtuple("MaxMin", ["values", "indices"])  # as torch.return_types.max / min


def _default_array(data, dtype):
    """data as an ndarray: floats from Python numbers default to float32 (torch's default)."""
    if isinstance(data, Tensor):
        data = data.data
    arr = np.asarray(data, dtype=dtype)
    if dtype is None and not isinstance(data, (np.ndarray, np.generic)) and arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    return arr


def as_dtype(dtype):
    """A NumPy dtype from a NumPy dtype, a name, or a torch dtype (torch.float64 -> float64)."""
    if type(dtype).__module__ == "torch":
        dtype = str(dtype).rsplit(".", 1)[-1]
    return np.dtype(dtype)


DEVICES = ("cpu", "cuda", "mps", "xpu", "meta", "hip", "xla")


def to_arguments(args, dtype=None, device=None, like=None):
    """The dtype asked for by torch-style .to(...) arguments (None: keep it); a device
    other than the CPU raises ValueError."""
    for a in args:
        if isinstance(a, Tensor):
            dtype = a.data.dtype
        elif isinstance(a, str) and a.split(":")[0] in DEVICES or type(a).__name__ == "device":
            device = a
        else:
            dtype = a
    if device is not None and str(device).split(":")[0] != "cpu":
        raise ValueError(f"cygrad runs on the CPU only, not on device {str(device)!r}")
    return None if dtype is None else as_dtype(dtype)


def _check_float(arr, what="requires_grad"):
    if arr.dtype.kind != "f":
        raise TypeError(f"only floating-point tensors can require gradients ({what}); "
                        f"this one is {arr.dtype}")


def tensor(data, requires_grad=False, dtype=None):
    """A new Tensor holding a copy of data (torch.tensor). Python floats become float32
    (torch's default dtype); NumPy arrays keep their dtype unless `dtype` is given."""
    arr = np.array(_default_array(data, dtype), copy=True)
    return Tensor(arr, requires_grad=requires_grad)


def _as_tensor(x):
    return x if isinstance(x, Tensor) else wrap(np.asarray(x))


def _value(x):
    """The NumPy operand of x: a Tensor's array, else x itself (Python scalars stay weakly
    typed, so float32 tensor * 2.0 stays float32, as in torch)."""
    return x.data if isinstance(x, Tensor) else x


def _array(v):
    return v if type(v) is np.ndarray else np.asarray(v)


def _unbroadcast(g, shape, dtype):
    """Sum a broadcast gradient back to an operand's shape (and dtype)."""
    if g.shape != shape:
        lead = g.ndim - len(shape)
        if lead:
            g = g.sum(axis=tuple(range(lead)))
        axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
        if axes:
            g = g.sum(axis=axes, keepdims=True)
    return g if g.dtype == dtype else g.astype(dtype)


def _axes(dim, ndim):
    """dim (None, int or tuple) as a sorted tuple of non-negative axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, numbers.Integral) else tuple(dim)
    out = []
    for d in dims:
        d = int(d)
        if not -max(ndim, 1) <= d < max(ndim, 1):
            raise IndexError(f"dimension {d} is out of range for a {ndim}-D tensor")
        out.append(d % max(ndim, 1))
    return tuple(sorted(set(out)))


def _dim_arg(method, dim, axis):
    if axis is not None:
        if dim is not None:
            raise TypeError(f"{method}() got both dim and axis")
        return axis
    return dim


def _binary(name, a, b, fn, grad_a, grad_b):
    """fn(a, b) on NumPy operands, recording grad_a(g, av, bv, out) / grad_b(...) as needed
    (each returns the gradient in the broadcast shape; it is reduced to the operand's)."""
    av, bv = _value(a), _value(b)
    out = _array(fn(av, bv))
    a_is, b_is = isinstance(a, Tensor), isinstance(b, Tensor)
    need_a, need_b = a_is and a.requires_grad, b_is and b.requires_grad
    if not ((need_a or need_b) and _mode.enabled):
        return wrap(out)
    inputs = (a, b) if a_is and b_is else (a,) if a_is else (b,)

    def backward(g):
        ga = _unbroadcast(_array(grad_a(g, av, bv, out)), av.shape, av.dtype) if need_a else None
        gb = _unbroadcast(_array(grad_b(g, av, bv, out)), bv.shape, bv.dtype) if need_b else None
        return (ga, gb) if a_is and b_is else (ga,) if a_is else (gb,)

    return record(out, name, backward, inputs)


def _unary(name, x, out, grad):
    """A one-input op: out (already computed), recording grad(g) -> gradient wrt x."""
    out = _array(out)
    if not (x.requires_grad and _mode.enabled):
        return wrap(out)
    dtype = x.data.dtype

    def backward(g):
        gx = _array(grad(g))
        return (gx if gx.dtype == dtype else gx.astype(dtype),)

    return record(out, name, backward, (x,))


def _index_key(key):
    """Tensors inside an index become their arrays (integer or boolean indices)."""
    if isinstance(key, tuple):
        return tuple(k.data if isinstance(k, Tensor) else k for k in key)
    return key.data if isinstance(key, Tensor) else key


def _repeats_possible(key):
    """True when an index may read one element twice: it holds an integer array or list."""
    items = key if isinstance(key, tuple) else (key,)
    for k in items:
        if isinstance(k, (list, np.ndarray)) and np.asarray(k).dtype != np.bool_:
            return True
    return False


def _functional():
    from cygrad.nn import functional
    return functional


class Tensor:
    """An n-dimensional array that can record the ops applied to it (torch.Tensor's API).

    Tensor(data, requires_grad=False) wraps an ndarray without copying it (cg.tensor
    copies). Attributes: data (the ndarray), grad (None, or the gradient array after a
    backward), requires_grad, shape, dtype, ndim, is_leaf, grad_fn.
    """

    __slots__ = ("data", "grad", "requires_grad", "_node", "_version", "__weakref__")
    __array_ufunc__ = None  # ndarray <op> Tensor defers to the Tensor's reflected operator
    _grad_is_buffer = False  # Parameter: .grad is a view of the flat gradient buffer

    def __init__(self, data, requires_grad=False):
        arr = _default_array(data, None)
        if requires_grad:
            _check_float(arr)
        self.data = arr
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._node = None
        self._version = 0

    # -- attributes -----------------------------------------------------------------
    @property
    def shape(self):
        """The shape of the data (a tuple)."""
        return self.data.shape

    @property
    def dtype(self):
        """The NumPy dtype of the data."""
        return self.data.dtype

    @property
    def ndim(self):
        """The number of dimensions."""
        return self.data.ndim

    @property
    def is_leaf(self):
        """True for tensors no recorded op produced (parameters, inputs)."""
        return self._node is None

    @property
    def grad_fn(self):
        """The node that produced this tensor (None for a leaf)."""
        return self._node

    def size(self, dim=None):
        """The shape, or its length along dim (torch's Tensor.size)."""
        return self.data.shape if dim is None else self.data.shape[dim]

    def dim(self):
        """The number of dimensions (torch's dim())."""
        return self.data.ndim

    def numel(self):
        """The number of elements."""
        return self.data.size

    def __len__(self):
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __iter__(self):
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.data.shape[0]))

    def __array__(self, dtype=None, copy=None):
        if copy:
            return np.array(self.data, dtype=dtype, copy=True)
        return self.data if dtype is None else self.data.astype(dtype, copy=False)

    def numpy(self):
        """The data as an ndarray (shared, not copied)."""
        return self.data

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape "
                             f"{self.data.shape}")
        return self.data.item()

    def tolist(self):
        """The data as (nested) Python lists of numbers."""
        return self.data.tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor with {self.data.size} elements is "
                             "ambiguous")
        return bool(self.data.item())

    def __format__(self, spec):
        if self.data.ndim == 0 and spec:
            return format(self.data.item(), spec)
        return format(repr(self), spec)

    def __repr__(self):
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        extra = ""
        if self.data.dtype not in (np.float32, np.int64, np.bool_):
            extra += f", dtype={self.data.dtype}"
        if self._node is not None:
            extra += f", grad_fn={self._node!r}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    __hash__ = object.__hash__

    # -- graph ----------------------------------------------------------------------
    def backward(self, gradient=None, retain_graph=False):
        """Add d self / d leaf into every leaf's .grad (torch.Tensor.backward).

        gradient: d loss / d self, needed unless self is a scalar (then 1).
        retain_graph: keep the nodes' saved arrays for another backward.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad and has no "
                               "grad_fn (no input of the ops that made it requires a gradient)")
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(f"grad can be implicitly created only for scalar outputs; "
                                   f"this tensor has shape {self.data.shape}: pass gradient=")
            g = np.ones(self.data.shape, self.data.dtype)
        else:
            g = np.asarray(_value(gradient))
            if g.shape != self.data.shape:
                raise RuntimeError(f"gradient has shape {g.shape}, the tensor has shape "
                                   f"{self.data.shape}")
            g = g.astype(self.data.dtype, copy=False)
        _backward(self, g, retain_graph)

    def detach(self):
        """The same data, outside the graph (no gradient flows back through it)."""
        return wrap(self.data)

    def requires_grad_(self, requires_grad=True):
        """Set requires_grad on a leaf (in place); returns self."""
        if self._node is not None and not requires_grad:
            raise RuntimeError("requires_grad_(False) on a tensor computed by a recorded op: "
                               "use .detach()")
        if requires_grad:
            _check_float(self.data)
        self.requires_grad = bool(requires_grad)
        return self

    def retain_grad(self):
        """Keep the gradient of this non-leaf tensor in .grad during backward."""
        if self._node is not None:
            self._node.retained = weakref.ref(self)
        elif not self.requires_grad:
            raise RuntimeError("retain_grad() on a tensor that does not require grad")

    def cpu(self):
        """This tensor (cygrad runs on the CPU)."""
        return self

    def to(self, *args, dtype=None, device=None):
        """This tensor in another dtype (the gradient is cast back), as torch's .to(dtype);
        .to('cpu') is this tensor (cygrad runs on the CPU only)."""
        dtype = to_arguments(args, dtype, device, self)
        if dtype is None or dtype == self.data.dtype:
            return self
        return _unary("ToCopyBackward", self, self.data.astype(dtype), lambda g: g)

    def float(self):
        """This tensor as float32 (to(np.float32))."""
        return self.to(np.float32)

    def double(self):
        """This tensor as float64 (to(np.float64))."""
        return self.to(np.float64)

    # -- arithmetic -------------------------------------------------------------------
    def __add__(self, other):
        return _binary("AddBackward", self, other, np.add, _pass, _pass)

    def __radd__(self, other):
        return _binary("AddBackward", other, self, np.add, _pass, _pass)

    def __sub__(self, other):
        return _binary("SubBackward", self, other, np.subtract, _pass, _neg_b)

    def __rsub__(self, other):
        return _binary("SubBackward", other, self, np.subtract, _pass, _neg_b)

    def __mul__(self, other):
        return _binary("MulBackward", self, other, np.multiply, _mul_a, _mul_b)

    def __rmul__(self, other):
        return _binary("MulBackward", other, self, np.multiply, _mul_a, _mul_b)

    def __truediv__(self, other):
        return _binary("DivBackward", self, other, np.true_divide, _div_a, _div_b)

    def __rtruediv__(self, other):
        return _binary("DivBackward", other, self, np.true_divide, _div_a, _div_b)

    def __matmul__(self, other):
        return _matmul(self, _as_tensor(other))

    def __rmatmul__(self, other):
        return _matmul(_as_tensor(other), self)

    def __neg__(self):
        return _unary("NegBackward", self, np.negative(self.data), np.negative)

    def __pos__(self):
        return self

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor) or not isinstance(exponent, numbers.Real):
            raise TypeError(f"Tensor ** supports a real scalar exponent, got {type(exponent).__name__}")
        p = exponent
        x = self.data

        def grad(g):
            if p == 0:
                return np.zeros_like(g)
            return g * (p * x ** (p - 1))

        return _unary("PowBackward", self, x ** p, grad)

    def __rpow__(self, base):
        if not isinstance(base, numbers.Real):
            raise TypeError(f"scalar ** Tensor needs a real scalar base, got {type(base).__name__}")
        out = _array(base ** self.data)
        log_base = np.log(base) if base > 0 else np.nan
        return _unary("PowBackward", self, out, lambda g: g * out * out.dtype.type(log_base))

    def __iadd__(self, other):
        return self._in_place(np.add, other, "+=")

    def __isub__(self, other):
        return self._in_place(np.subtract, other, "-=")

    def __imul__(self, other):
        return self._in_place(np.multiply, other, "*=")

    def __itruediv__(self, other):
        return self._in_place(np.true_divide, other, "/=")

    def _in_place(self, ufunc, other, op):
        """In-place arithmetic on the data, as torch allows: on a tensor outside any graph,
        or on a leaf inside no_grad (a hand-written update `w -= lr * w.grad`)."""
        if self._node is not None:
            raise RuntimeError(f"`{op}` on a tensor computed by a recorded op is not supported "
                               "(cygrad records no in-place ops): write `x = x {0} y`".format(op[0]))
        if self.requires_grad and is_grad_enabled():
            raise RuntimeError(f"a leaf tensor that requires grad is used in an in-place operation "
                               f"(`{op}`): wrap the update in `with cygrad.no_grad():`")
        ufunc(self.data, _value(other), out=self.data, casting="same_kind")
        bump_versions((self,))
        return self

    # -- comparisons (no gradient) ----------------------------------------------------
    def __eq__(self, other):
        return wrap(_array(self.data == _value(other)))

    def __ne__(self, other):
        return wrap(_array(self.data != _value(other)))

    def __lt__(self, other):
        return wrap(_array(self.data < _value(other)))

    def __le__(self, other):
        return wrap(_array(self.data <= _value(other)))

    def __gt__(self, other):
        return wrap(_array(self.data > _value(other)))

    def __ge__(self, other):
        return wrap(_array(self.data >= _value(other)))

    # -- elementwise functions ----------------------------------------------------------
    def exp(self):
        """e ** x elementwise; derivative exp(x)."""
        out = np.exp(self.data)
        return _unary("ExpBackward", self, out, lambda g: g * out)

    def log(self):
        """Natural logarithm elementwise; derivative 1 / x."""
        x = self.data
        return _unary("LogBackward", self, np.log(x), lambda g: g / x)

    def sqrt(self):
        """Square root elementwise; derivative 1 / (2 sqrt(x))."""
        out = np.sqrt(self.data)
        return _unary("SqrtBackward", self, out, lambda g: g / (2 * out))

    def abs(self):
        """|x| elementwise; derivative sign(x) (0 at 0, as torch)."""
        x = self.data
        return _unary("AbsBackward", self, np.abs(x), lambda g: g * np.sign(x))

    __abs__ = abs

    def clamp(self, min=None, max=None):
        """Values limited to [min, max] (either may be None); the gradient passes where
        min <= x <= max, as torch.clamp."""
        if min is None and max is None:
            raise ValueError("clamp needs min, max or both")
        x = self.data
        out = np.clip(x, min, max)
        inside = np.ones(x.shape, bool)
        if min is not None:
            inside &= x >= min
        if max is not None:
            inside &= x <= max
        return _unary("ClampBackward", self, out, lambda g: g * inside)

    clip = clamp

    def relu(self):
        """cygrad.nn.functional.relu(self)."""
        return _functional().relu(self)

    def sigmoid(self):
        """cygrad.nn.functional.sigmoid(self)."""
        return _functional().sigmoid(self)

    def tanh(self):
        """cygrad.nn.functional.tanh(self)."""
        return _functional().tanh(self)

    def softmax(self, dim):
        """cygrad.nn.functional.softmax(self, dim)."""
        return _functional().softmax(self, dim)

    def log_softmax(self, dim):
        """cygrad.nn.functional.log_softmax(self, dim)."""
        return _functional().log_softmax(self, dim)

    # -- reductions -----------------------------------------------------------------
    def sum(self, dim=None, keepdim=False, *, axis=None, keepdims=None, dtype=None, out=None):
        """Sum over dim (int, tuple or None for all); torch's names, or NumPy's axis/keepdims
        (so np.sum(tensor) works too); dtype: cast first."""
        dim = _dim_arg("sum", dim, axis)
        keep = keepdim if keepdims is None else keepdims
        self = self._numpy_protocol("sum", dtype, out)
        x = self.data
        axes = _axes(dim, x.ndim)
        out = x.sum(axis=axes, keepdims=keep)
        return _unary("SumBackward", self, out, lambda g: _expand(g, axes, keep, x.shape))

    def mean(self, dim=None, keepdim=False, *, axis=None, keepdims=None, dtype=None, out=None):
        """Mean over dim (int, tuple or None for all); integers and booleans average as
        float64 (NumPy's rule), so np.mean(tensor == labels) is an accuracy."""
        dim = _dim_arg("mean", dim, axis)
        keep = keepdim if keepdims is None else keepdims
        self = self._numpy_protocol("mean", dtype, out)
        if self.data.dtype.kind not in "fc":
            self = self.to(np.float64)
        x = self.data
        axes = _axes(dim, x.ndim)
        # (an empty reduction has an empty gradient: any divisor will do)
        count = max(int(np.prod([x.shape[a] for a in axes])) if x.ndim else 1, 1)
        out = x.mean(axis=axes, keepdims=keep)
        return _unary("MeanBackward", self, out,
                      lambda g: _expand(g / x.dtype.type(count), axes, keep, x.shape))

    def _numpy_protocol(self, name, dtype, out):
        """The arguments NumPy's np.sum / np.mean pass on to a method of that name."""
        if out is not None:
            raise TypeError(f"{name}(out=...) is not supported for Tensors")
        return self if dtype is None else self.to(dtype)

    def max(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """The largest value; with dim, a (values, indices) pair as torch.max(dim)
        (the gradient flows to the index returned, the first maximum). Without dim
        the gradient is shared evenly by tied maxima, as torch's."""
        return self._extreme("max", np.argmax, dim, keepdim, axis, keepdims)

    def min(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """The smallest value; with dim, a (values, indices) pair as torch.min(dim)."""
        return self._extreme("min", np.argmin, dim, keepdim, axis, keepdims)

    def _extreme(self, name, arg, dim, keepdim, axis, keepdims):
        dim = _dim_arg(name, dim, axis)
        keep = keepdim if keepdims is None else keepdims
        x = self.data
        if x.size == 0:
            raise ValueError(f"{name}() of an empty tensor")
        node = name.capitalize() + "Backward"
        if dim is None:
            value = x.max() if name == "max" else x.min()
            out = np.asarray(value, x.dtype)

            def grad(g):
                ties = x == value
                return g * ties / x.dtype.type(np.count_nonzero(ties)) if ties.any() else \
                    np.zeros_like(x)

            return _unary(node, self, out, grad)
        (a,) = _axes(dim, x.ndim) if isinstance(dim, numbers.Integral) else (None,)
        if a is None:
            raise TypeError(f"{name}(dim) takes one dimension, got {dim!r}")
        if x.ndim == 0:
            idx = np.zeros((), np.int64)
            values = x.copy()
        else:
            idx = np.expand_dims(arg(x, axis=a), a)
            values = np.take_along_axis(x, idx, axis=a)
            if not keep:
                values, idx = values.squeeze(a), idx.squeeze(a)

        def grad(g):
            gx = np.zeros_like(x)
            if x.ndim == 0:
                return gx + g
            i = idx if keep else np.expand_dims(idx, a)
            gg = g if keep else np.expand_dims(g, a)
            np.put_along_axis(gx, i, gg, axis=a)
            return gx

        return MaxMin(_unary(node, self, values, grad), wrap(idx.astype(np.int64, copy=False)))

    def argmax(self, dim=None, keepdim=False):
        """Index of the largest value (flat when dim is None); no gradient."""
        if dim is None:
            return wrap(np.asarray(np.argmax(self.data), np.int64))
        return wrap(np.argmax(self.data, axis=dim, keepdims=keepdim).astype(np.int64))

    def argmin(self, dim=None, keepdim=False):
        """Index of the smallest value (flat when dim is None); no gradient."""
        if dim is None:
            return wrap(np.asarray(np.argmin(self.data), np.int64))
        return wrap(np.argmin(self.data, axis=dim, keepdims=keepdim).astype(np.int64))

    # -- shape ----------------------------------------------------------------------
    def reshape(self, *shape):
        """The same elements in a new shape (one dimension may be -1)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        x = self.data
        return _unary("ReshapeBackward", self, x.reshape(shape), lambda g: g.reshape(x.shape))

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        """Dimensions start_dim..end_dim merged into one (torch.flatten)."""
        shape = self.data.shape
        if not shape:
            return self.reshape(1)
        s, e = _axes(start_dim, len(shape))[0], _axes(end_dim, len(shape))[0]
        if s > e:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
        if s == e:
            return self
        return self.reshape(shape[:s] + (-1,) + shape[e + 1:])

    def squeeze(self, dim=None):
        """Dimensions of size 1 removed (only `dim`, when given)."""
        shape = self.data.shape
        if dim is None:
            new = tuple(n for n in shape if n != 1)
        else:
            axes = _axes(dim, len(shape))
            new = tuple(n for i, n in enumerate(shape) if not (i in axes and n == 1))
        return self.reshape(new)

    def unsqueeze(self, dim):
        """A dimension of size 1 inserted at `dim`."""
        shape = self.data.shape
        d = int(dim)
        if not -len(shape) - 1 <= d <= len(shape):
            raise IndexError(f"unsqueeze: dimension {dim} is out of range for a {len(shape)}-D tensor")
        d = d % (len(shape) + 1)
        return self.reshape(shape[:d] + (1,) + shape[d:])

    def transpose(self, dim0, dim1):
        """Dimensions dim0 and dim1 swapped (torch.transpose; a view)."""
        a, b = _axes(dim0, self.data.ndim)[0], _axes(dim1, self.data.ndim)[0]
        return _unary("TransposeBackward", self, np.swapaxes(self.data, a, b),
                      lambda g: np.swapaxes(g, a, b))

    def permute(self, *dims):
        """Dimensions reordered: the i-th of the result is dims[i] of this tensor."""
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        axes = [_axes(d, self.data.ndim)[0] for d in dims]
        if sorted(axes) != list(range(self.data.ndim)):
            raise ValueError(f"permute: {dims} is not a permutation of {self.data.ndim} dimensions")
        inverse = np.argsort(axes)
        return _unary("PermuteBackward", self, np.transpose(self.data, axes),
                      lambda g: np.transpose(g, inverse))

    @property
    def T(self):
        """All dimensions reversed."""
        return _unary("TransposeBackward", self, self.data.T, lambda g: g.T)

    def __getitem__(self, key):
        """Indexing by ints, slices, None, Ellipsis, integer or boolean arrays; the gradient
        is scattered back (summed where an advanced index repeats an element)."""
        key = _index_key(key)
        x = self.data
        out = x[key]
        repeats = _repeats_possible(key)

        def grad(g):
            gx = np.zeros(x.shape, g.dtype)
            if repeats:
                np.add.at(gx, key, g)
            else:
                gx[key] = g
            return gx

        return _unary("IndexBackward", self, out, grad)


def _pass(g, a, b, out):
    return g


def _neg_b(g, a, b, out):
    return -g


def _mul_a(g, a, b, out):
    return g * b


def _mul_b(g, a, b, out):
    return g * a


def _div_a(g, a, b, out):
    return g / b


def _div_b(g, a, b, out):
    return -g * out / b


def _expand(g, axes, keepdims, shape):
    """The gradient of a reduction over `axes`, broadcast back to the input's shape."""
    if not keepdims and axes:
        g = np.expand_dims(g, axes)
    return np.broadcast_to(g, shape)


def _matmul(a, b):
    """a @ b with NumPy's rules (1-D, 2-D, batched); 2-D float operands of one dtype run on
    the active backend's GEMM."""
    av, bv = a.data, b.data
    K = backend.current()
    gemm = av.ndim == 2 and bv.ndim == 2 and av.dtype == bv.dtype and av.dtype.char in "fd"
    if gemm:
        out = K.matmul(np.ascontiguousarray(av), np.ascontiguousarray(bv))
    else:
        out = _array(np.matmul(av, bv))
    need_a, need_b = a.requires_grad, b.requires_grad
    if not ((need_a or need_b) and _mode.enabled):
        return wrap(out)

    def backward(g):
        if gemm:
            g = np.ascontiguousarray(g)
            return (K.matmul(g, np.ascontiguousarray(bv), trans_b=True) if need_a else None,
                    K.matmul(np.ascontiguousarray(av), g, trans_a=True) if need_b else None)
        a2 = av[None, :] if av.ndim == 1 else av   # NumPy's promotion of 1-D operands
        b2 = bv[:, None] if bv.ndim == 1 else bv
        g2 = g
        if av.ndim == 1:
            g2 = np.expand_dims(g2, -2 if bv.ndim > 1 else -1)
        if bv.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        ga = gb = None
        if need_a:
            ga = _unbroadcast(np.matmul(g2, np.swapaxes(b2, -1, -2)), a2.shape, av.dtype)
            ga = ga.reshape(av.shape)
        if need_b:
            gb = _unbroadcast(np.matmul(np.swapaxes(a2, -1, -2), g2), b2.shape, bv.dtype)
            gb = gb.reshape(bv.shape)
        return ga, gb

    return record(out, "MmBackward", backward, (a, b))
