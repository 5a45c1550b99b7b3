"""Fuzz every public kernel: mutated shapes, dtypes, strides, parameters, and `out` aliasing
an input. Bad input must raise TypeError/ValueError (MemoryError/OverflowError for absurd
sizes); anything else, or a crash, is a bug.

    python tests/fuzz/fuzz_kernels.py -seed=1 -max_total_time=600
"""
import inspect
import sys

import atheris

with atheris.instrument_imports():
    import numpy as np

    from cygrad import kernels as K
    from cygrad import reference as R

ALLOWED = (TypeError, ValueError, MemoryError, OverflowError)
NAMES = sorted(K.__all__)
SIGS = {name: inspect.signature(getattr(R, name)) for name in NAMES}
DTYPES = [np.float32, np.float64, np.float32, np.float64, np.int64, np.int32, np.float16,
          np.bool_, np.uint8]
FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-8, 0.9, 0.999, 1e300, -1e300, float("nan"),
          float("inf"), -float("inf"), 5e-324]
INTS = [0, 1, 2, 3, -1, -2, 4, 7, 2**31 - 1, 2**31, 2**32 + 1, 2**62, -2**63, 2**63 - 1]
GEOMETRY = {"kernel_size", "stride", "padding", "dilation"}
SHAPES = {"x_shape"}
FLAGS = {"trans_a", "trans_b", "nesterov", "centered", "amsgrad", "input_grad", "training"}


def _array(fdp, pool, shape_hint):
    ndim = fdp.ConsumeIntInRange(0, 4)
    if shape_hint is not None and fdp.ConsumeBool():
        shape = list(shape_hint)            # often reuse an earlier shape: get past the checks
    else:
        shape = [pool[fdp.ConsumeIntInRange(0, len(pool) - 1)] for _ in range(ndim)]
    dtype = DTYPES[fdp.ConsumeIntInRange(0, len(DTYPES) - 1)]
    layout = fdp.ConsumeIntInRange(0, 4)
    if layout == 1 and shape:                # non-contiguous: every other element of a wider array
        a = np.zeros(shape[:-1] + [2 * shape[-1]], dtype)[..., ::2]
    elif layout == 2 and len(shape) >= 2:   # transposed view
        a = np.zeros(shape[::-1], dtype).T
    else:
        a = np.zeros(shape, dtype)
    if a.size:                               # values from the input; some NaN or inf
        n = a.size
        src = np.frombuffer(fdp.ConsumeBytes(n).ljust(n, b"\1"), np.uint8)
        flat = (src.astype(np.float64) - 128.0) / 16.0
        special = fdp.ConsumeIntInRange(0, 3)
        if special == 1:
            flat[src % 17 == 0] = np.nan
        elif special == 2:
            flat[src % 13 == 0] = np.inf
        with np.errstate(invalid="ignore", over="ignore"):
            np.copyto(a, flat.reshape(a.shape), casting="unsafe")
    if layout == 3:
        a.flags.writeable = False
    return a


def _geometry(fdp):
    kind = fdp.ConsumeIntInRange(0, 4)
    if kind == 0:
        return None
    if kind == 1:
        return (INTS[fdp.ConsumeIntInRange(0, len(INTS) - 1)],
                INTS[fdp.ConsumeIntInRange(0, len(INTS) - 1)])
    if kind == 2:
        return fdp.ConsumeIntInRange(-1, 4)
    return INTS[fdp.ConsumeIntInRange(0, len(INTS) - 1)]


def _args(fdp, name):
    pool = [fdp.ConsumeIntInRange(0, 6) for _ in range(3)] + [1]
    arrays, kwargs, pos, hint = [], {}, [], None
    for p in SIGS[name].parameters.values():
        if fdp.ConsumeIntInRange(0, 9) == 0 and p.default is not inspect.Parameter.empty:
            continue                        # keep the default
        if p.name in GEOMETRY:
            value = _geometry(fdp)
        elif p.name in SHAPES:
            n = fdp.ConsumeIntInRange(0, 5)
            value = tuple(fdp.ConsumeIntInRange(0, 6) if fdp.ConsumeIntInRange(0, 7)
                          else INTS[fdp.ConsumeIntInRange(0, len(INTS) - 1)] for _ in range(n))
            if value and max(value) > 6 and fdp.ConsumeBool():
                value = (2**40,) + value     # absurd sizes must fail, not allocate
        elif p.name in FLAGS:
            value = fdp.ConsumeBool()
        elif p.name == "reduction":
            value = ["mean", "sum", "none", "avg", 3][fdp.ConsumeIntInRange(0, 4)]
        elif p.name in ("step", "seed"):
            value = INTS[fdp.ConsumeIntInRange(0, len(INTS) - 1)]
        elif p.name == "out":
            choice = fdp.ConsumeIntInRange(0, 3)
            value = arrays[fdp.ConsumeIntInRange(0, len(arrays) - 1)] if choice == 0 and arrays \
                else (None if choice == 1 else _array(fdp, pool, hint))
        elif isinstance(p.default, float) or p.name in ("lr", "p", "lam"):
            value = FLOATS[fdp.ConsumeIntInRange(0, len(FLOATS) - 1)] if fdp.ConsumeBool() \
                else fdp.ConsumeRegularFloat()
        elif p.default is None and fdp.ConsumeBool():
            value = None
        else:
            value = _array(fdp, pool, hint)
            if fdp.ConsumeIntInRange(0, 5) == 0 and arrays:
                value = arrays[fdp.ConsumeIntInRange(0, len(arrays) - 1)]   # aliasing inputs
            arrays.append(value)
            hint = value.shape
        if p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD and p.name != "out":
            pos.append(value)
        else:
            kwargs[p.name] = value
    return pos, kwargs


def _valid(fdp, name):
    """A call that passes the checks (small random sizes), for _mutate to start from."""
    d = lambda lo=1, hi=5: fdp.ConsumeIntInRange(lo, hi)  # noqa: E731
    dt = np.float32 if fdp.ConsumeBool() else np.float64
    rng = np.random.default_rng(fdp.ConsumeIntInRange(0, 2**16))
    f = lambda *s: rng.standard_normal(s).astype(dt)  # noqa: E731
    n, c, h, w, k = d(), d(), d(2, 7), d(2, 7), d(1, 2)
    if name == "matmul":
        m, kk, nn = d(0), d(0), d(0)
        return [f(m, kk), f(kk, nn)], {"out": f(m, nn), "beta": 0.5}
    if name in ("relu", "leaky_relu", "sigmoid", "tanh", "softmax", "log_softmax"):
        return [f(n, c)], {"out": f(n, c)}
    if name.endswith("_backward") and name.split("_backward")[0] in (
            "relu", "leaky_relu", "sigmoid", "tanh", "softmax", "log_softmax"):
        return [f(n, c), f(n, c)], {"out": f(n, c)}
    if name in ("mse_loss", "l1_loss", "binary_cross_entropy_with_logits"):
        return [f(n, c), f(n, c)], {}
    if name == "binary_cross_entropy":
        return [1 / (1 + np.exp(-f(n, c))), rng.random((n, c)).astype(dt)], {}
    if name in ("cross_entropy", "nll_loss"):
        kw = {"label_smoothing": 0.1} if name == "cross_entropy" else {"reduction": "sum"}
        return [f(n, c), rng.integers(0, c, n)], kw
    if name in ("l1_penalty", "l2_penalty"):
        return [f(n, c), 0.1], {}
    if name == "dropout":
        return [f(n, c), 0.5, 7], {}
    if name == "dropout_backward":
        return [f(n, c), R.dropout(f(n, c), 0.5, 7)[1], 0.5], {}
    if name == "batch_norm_forward":
        return [f(n + 1, c, h), f(c), f(c), f(c), np.abs(f(c)) + 0.5], {
            "training": fdp.ConsumeBool(), "momentum": 0.1}
    if name == "batch_norm_backward":
        x = f(n + 1, c, h)
        _, mean, invstd = R.batch_norm_forward(x, f(c), f(c), f(c), np.abs(f(c)) + 0.5,
                                               training=False)
        return [f(*x.shape), x, f(c), mean, invstd], {"training": fdp.ConsumeBool(),
                                                        "input_grad": fdp.ConsumeBool()}
    if name == "vector_norm":
        return [f(n, c), [1, 2.0, 3.5, np.inf][d(0, 3)]], {}
    if name == "scale_":
        return [f(n, c), 0.5], {}
    if name == "clamp_":
        return [f(n, c), -0.5, 0.5], {}
    if name.endswith("_step"):
        bufs = {"sgd_step": 1, "adagrad_step": 1, "rmsprop_step": 1}.get(name, 2)
        args = [f(n * c), f(n * c)] + [np.abs(f(n * c)) for _ in range(bufs)]
        kw = {"lr": 0.01, "step": 2}
        if name == "rmsprop_step":
            kw.pop("step")
            kw.update(momentum=0.9, momentum_buf=f(n * c), centered=True, grad_avg=f(n * c))
        if name in ("adam_step", "adamw_step"):
            kw.update(amsgrad=True, max_exp_avg_sq=np.abs(f(n * c)))
        return args, kw
    x = f(n, c, h, w)
    if name == "im2col":
        return [x, k], {"padding": 1}
    if name == "col2im":
        return [R.im2col(x, k, padding=1), x.shape, k], {"padding": 1}
    wt = f(d(), c, k, k)
    if name == "conv2d_forward":
        return [x, wt, f(wt.shape[0])], {"padding": 1}
    if name == "conv2d_backward":
        return [R.conv2d_forward(x, wt, padding=1), x, wt], {"padding": 1}
    if name in ("max_pool2d_forward", "avg_pool2d_forward"):
        return [x, 2], {"padding": 1}
    if name == "max_pool2d_backward":
        y, idx = R.max_pool2d_forward(x, 2, padding=1)
        return [y, idx, x.shape], {}
    if name == "avg_pool2d_backward":
        return [R.avg_pool2d_forward(x, 2, padding=1), x.shape, 2], {"padding": 1}
    raise AssertionError(name)


def _mutate(fdp, pos, kwargs):
    """One or two targeted changes: a dtype, a dim, the layout, an index out of range, `out`
    aliasing an input, or a parameter replaced by an extreme value."""
    slots = [(pos, i) for i in range(len(pos))] + [(kwargs, k) for k in kwargs]
    for _ in range(fdp.ConsumeIntInRange(0, 2)):
        if not slots:
            return
        where, key = slots[fdp.ConsumeIntInRange(0, len(slots) - 1)]
        v = where[key]
        how = fdp.ConsumeIntInRange(0, 6)
        if isinstance(v, np.ndarray):
            if how == 0:
                where[key] = v.astype(DTYPES[fdp.ConsumeIntInRange(0, len(DTYPES) - 1)])
            elif how == 1 and v.ndim:
                shape = list(v.shape)
                shape[fdp.ConsumeIntInRange(0, v.ndim - 1)] = fdp.ConsumeIntInRange(0, 6)
                where[key] = np.resize(v, shape)
            elif how == 2 and v.ndim:
                where[key] = np.repeat(v, 2, axis=-1)[..., ::2]       # same values, strided
            elif how == 3 and v.size and v.dtype.kind in "iu":
                v = v.copy()                                          # index out of range
                v.flat[fdp.ConsumeIntInRange(0, v.size - 1)] = np.array(
                    INTS[fdp.ConsumeIntInRange(0, len(INTS) - 1)]).astype(v.dtype)  # (wraps)
                where[key] = v
            elif how == 4:
                arrays = [a for a in pos if isinstance(a, np.ndarray)]
                if arrays:
                    kwargs["out"] = arrays[fdp.ConsumeIntInRange(0, len(arrays) - 1)]
            elif how == 5 and v.size:
                v = v.copy()
                v.flat[fdp.ConsumeIntInRange(0, v.size - 1)] = FLOATS[fdp.ConsumeIntInRange(
                    0, len(FLOATS) - 1)] if v.dtype.kind == "f" else 0
                where[key] = v
            elif how == 6:
                where[key] = v.reshape(-1) if v.ndim != 1 else v.reshape(1, -1)
        elif isinstance(v, tuple):
            where[key] = tuple(INTS[fdp.ConsumeIntInRange(0, len(INTS) - 1)] if fdp.ConsumeBool()
                               else e for e in v)
        elif isinstance(v, bool):
            where[key] = not v
        elif isinstance(v, int):
            where[key] = INTS[fdp.ConsumeIntInRange(0, len(INTS) - 1)] if how < 4 else _geometry(fdp)
        elif isinstance(v, float):
            where[key] = FLOATS[fdp.ConsumeIntInRange(0, len(FLOATS) - 1)]


def test_one_input(data):
    fdp = atheris.FuzzedDataProvider(data)
    name = NAMES[fdp.ConsumeIntInRange(0, len(NAMES) - 1)]
    if fdp.ConsumeIntInRange(0, 3):          # mostly: a valid call with targeted mutations
        pos, kwargs = _valid(fdp, name)
        _mutate(fdp, pos, kwargs)
    else:                                    # else: every argument random
        pos, kwargs = _args(fdp, name)
    try:
        with np.errstate(all="ignore"):
            getattr(K, name)(*pos, **kwargs)
    except ALLOWED:
        pass


SEEDS = [bytes(range(i, i + 64)) * 4 for i in range(0, 64, 8)]

if __name__ == "__main__":
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from _harness import main
    main(test_one_input, SEEDS)
