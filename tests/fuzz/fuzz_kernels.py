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
FLAGS = {"trans_a", "trans_b", "nesterov", "centered", "amsgrad", "input_grad", "maximize",
         "ceil_mode", "count_include_pad", "training"}
COUNTS = {"groups", "ignore_index", "divisor_override"}   # ints, not arrays
REDUCTIONS = ["mean", "sum", "none"]
CONV = ("im2col", "col2im", "conv2d_forward", "conv2d_backward")


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
        return _int(fdp), _int(fdp)
    if kind == 2:
        return fdp.ConsumeIntInRange(-1, 4)
    return _int(fdp)


def _int(fdp):
    """One of INTS: small, negative, at the int32/int64 limits and beyond."""
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
                          else _int(fdp) for _ in range(n))
            if value and max(value) > 6 and fdp.ConsumeBool():
                value = (2**40,) + value     # absurd sizes must fail, not allocate
        elif p.name in FLAGS:
            value = fdp.ConsumeBool()
        elif p.name in COUNTS:
            value = None if p.default is None and fdp.ConsumeBool() else \
                fdp.ConsumeIntInRange(-1, 6) if fdp.ConsumeBool() else _int(fdp)
        elif p.name == "reduction":
            value = ["mean", "sum", "none", "avg", 3][fdp.ConsumeIntInRange(0, 4)]
        elif p.name in ("step", "seed"):
            value = _int(fdp)
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
    """A call that passes the checks (small random sizes, the kernel's options drawn too),
    for _mutate to start from."""
    d = lambda lo=1, hi=5: fdp.ConsumeIntInRange(lo, hi)  # noqa: E731
    dt = np.float32 if fdp.ConsumeBool() else np.float64
    rng = np.random.default_rng(fdp.ConsumeIntInRange(0, 2**16))
    f = lambda *s: rng.standard_normal(s).astype(dt)  # noqa: E731
    if name.endswith("_step"):
        family = _valid_step
    elif name in CONV:
        family = _valid_conv
    elif "pool" in name:
        family = _valid_pool
    elif "loss" in name or "entropy" in name:
        family = _valid_loss
    elif name.startswith("batch_norm") or name in ("vector_norm", "scale_", "clamp_"):
        family = _valid_norm
    else:
        family = _valid_elementwise
    return family(fdp, name, d, f, rng)


def _valid_norm(fdp, name, d, f, rng):
    """Batch norm (N >= 2 for training's statistics) and the clipping kernels."""
    n, c, h = d(), d(), d()
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
    return [f(n, c), -0.5, 0.5], {}   # clamp_


def _valid_elementwise(fdp, name, d, f, rng):
    n, c = d(), d()
    if name == "matmul":
        m, kk, nn = d(0), d(0), d(0)
        return [f(m, kk), f(kk, nn)], {"out": f(m, nn), "beta": 0.5}
    if name in ("relu", "leaky_relu", "sigmoid", "tanh", "softmax", "log_softmax"):
        return [f(n, c)], {"out": f(n, c)}
    if name.endswith("_backward") and name.split("_backward")[0] in (
            "relu", "leaky_relu", "sigmoid", "tanh", "softmax", "log_softmax"):
        return [f(n, c), f(n, c)], {"out": f(n, c)}
    if name in ("l1_penalty", "l2_penalty"):
        return [f(n, c), 0.1], {}
    if name == "dropout":
        return [f(n, c), 0.5, 7], {}
    if name == "dropout_backward":
        return [f(n, c), R.dropout(f(n, c), 0.5, 7)[1], 0.5], {}
    raise AssertionError(f"no valid call for {name}: add one to fuzz_kernels._valid")


def _valid_loss(fdp, name, d, f, rng):
    """reduction of the three; cross_entropy/nll_loss: class weights (C,) or None and an
    ignore_index from INTS or a class, some targets equal to it; the binary losses: weight
    (and pos_weight) of the input's shape or None."""
    n, c = d(), d()
    kw = {"reduction": REDUCTIONS[d(0, 2)]}
    if name in ("cross_entropy", "nll_loss"):
        if name == "cross_entropy":
            kw["label_smoothing"] = 0.1
        kw["weight"] = np.abs(f(c)) if fdp.ConsumeBool() else None
        kw["ignore_index"] = d(0, c - 1) if fdp.ConsumeBool() else _int(fdp)
        target = rng.integers(0, c, n)
        if fdp.ConsumeBool() and -2**63 <= kw["ignore_index"] < 2**63:
            target[rng.random(n) < 0.5] = kw["ignore_index"]
        return [f(n, c), target], kw
    x = 1 / (1 + np.exp(-f(n, c))) if name == "binary_cross_entropy" else f(n, c)
    target = rng.random((n, c)).astype(x.dtype) if name == "binary_cross_entropy" else f(n, c)
    if name.startswith("binary"):
        kw["weight"] = np.abs(f(n, c)) if fdp.ConsumeBool() else None
    if name == "binary_cross_entropy_with_logits":
        kw["pos_weight"] = np.abs(f(n, c)) if fdp.ConsumeBool() else None
    return [x, target], kw


def _valid_step(fdp, name, d, f, rng):
    size = d() * d()
    bufs = {"sgd_step": 1, "adagrad_step": 1, "rmsprop_step": 1}.get(name, 2)
    args = [f(size), f(size)] + [np.abs(f(size)) for _ in range(bufs)]
    kw = {"lr": 0.01, "step": 2, "maximize": fdp.ConsumeBool()}
    if name == "rmsprop_step":
        kw.pop("step")
        kw.update(momentum=0.9, momentum_buf=f(size), centered=True, grad_avg=f(size))
    if name in ("adam_step", "adamw_step"):
        kw.update(amsgrad=True, max_exp_avg_sq=np.abs(f(size)))
    return args, kw


def _conv_channels(fdp, d):
    """(groups, C_in, C_out): groups 1, a divisor of C_in, or C_in itself (depthwise)
    with a channel multiplier."""
    c, kind, mult = d(), d(0, 2), d(1, 3)
    divisors = [g for g in range(1, c + 1) if c % g == 0]
    groups = (1, divisors[d(0, len(divisors) - 1)], c)[kind]
    return groups, c, groups * mult


def _valid_conv(fdp, name, d, f, rng):
    groups, c, c_out = _conv_channels(fdp, d)
    x, k = f(d(0), c, d(3, 7), d(3, 7)), d(1, 2)       # N = 0 too
    geometry = {"stride": d(1, 2), "padding": d(0, 1), "dilation": d(1, 2)}
    if name == "im2col":
        return [x, k], geometry
    if name == "col2im":
        return [R.im2col(x, k, **geometry), x.shape, k], geometry
    wt = f(c_out, c // groups, k, k)
    if name == "conv2d_forward":
        return [x, wt, f(c_out) if fdp.ConsumeBool() else None], dict(geometry, groups=groups)
    y = R.conv2d_forward(x, wt, stride=geometry["stride"], padding=geometry["padding"],
                         dilation=geometry["dilation"], groups=groups)
    return [y, x, wt], dict(geometry, groups=groups, input_grad=fdp.ConsumeBool())


def _valid_pool(fdp, name, d, f, rng):
    """kernel 1-3, stride None or 1-3, padding up to half the kernel, ceil_mode; average
    pooling: count_include_pad and divisor_override too (the backward as its forward)."""
    x, k = f(d(0), d(), d(3, 7), d(3, 7)), d(1, 3)     # N = 0 too
    kw = {"stride": None if fdp.ConsumeBool() else d(1, 3), "padding": d(0, k // 2),
          "ceil_mode": fdp.ConsumeBool()}
    if name.startswith("avg"):
        kw.update(count_include_pad=fdp.ConsumeBool(),
                  divisor_override=None if fdp.ConsumeBool() else d(1, 9))
    if name in ("max_pool2d_forward", "avg_pool2d_forward"):
        return [x, k], kw
    if name == "max_pool2d_backward":
        y, idx = R.max_pool2d_forward(x, k, **kw)
        return [y, idx, x.shape], {}
    return [R.avg_pool2d_forward(x, k, **kw), x.shape, k], kw     # avg_pool2d_backward


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
                v.flat[fdp.ConsumeIntInRange(0, v.size - 1)] = np.array(_int(fdp)).astype(
                    v.dtype)                                          # (wraps)
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
            where[key] = tuple(_int(fdp) if fdp.ConsumeBool() else e for e in v)
        elif isinstance(v, bool):
            where[key] = not v
        elif isinstance(v, int):
            where[key] = _int(fdp) if how < 4 else _geometry(fdp)
        elif isinstance(v, float):
            where[key] = FLOATS[fdp.ConsumeIntInRange(0, len(FLOATS) - 1)]


def call(fdp):
    """(name, positional args, keyword args) of the call an input encodes: mostly a valid
    call with targeted mutations, else every argument random."""
    name = NAMES[fdp.ConsumeIntInRange(0, len(NAMES) - 1)]
    if fdp.ConsumeIntInRange(0, 3):
        pos, kwargs = _valid(fdp, name)
        _mutate(fdp, pos, kwargs)
    else:
        pos, kwargs = _args(fdp, name)
    return name, pos, kwargs


def _run(name, pos, kwargs):
    """The kernel's result; TypeError/ValueError/MemoryError/OverflowError pass through."""
    with np.errstate(all="ignore"):
        return getattr(K, name)(*pos, **kwargs)


def test_one_input(data):
    try:
        _run(*call(atheris.FuzzedDataProvider(data)))
    except ALLOWED:
        pass


def _features(name, kwargs):
    """What a call exercises: its kernel, and each keyword option set to other than its
    default (by value; arrays as 'array')."""
    found = {(name,)}
    for key, value in kwargs.items():
        param = SIGS[name].parameters.get(key)
        if isinstance(value, np.ndarray):
            found.add((name, key, "array"))
        elif param is not None and (type(value) is not type(param.default)
                                    or value != param.default):
            found.add((name, key, repr(value)))
    return found


def covering_seeds(tries=5000):
    """The starting corpus: inputs from a fixed stream of random bytes whose calls pass the
    checks, each kept when it reaches a feature (a kernel, an option value) not reached
    yet, so that every kernel and each of its options (groups, ceil_mode, weights,
    ignore_index, maximize, ...) is exercised from the first run on."""
    rng = np.random.default_rng(0)
    seeds, covered = [], set()
    for _ in range(tries):
        data = rng.bytes(256)
        name, pos, kwargs = call(atheris.FuzzedDataProvider(data))
        new = _features(name, kwargs) - covered
        if not new:
            continue
        try:
            _run(name, pos, kwargs)
        except ALLOWED:
            continue
        seeds.append(data)
        covered |= new
    return seeds


if __name__ == "__main__":
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from _harness import main
    main(test_one_input, covering_seeds())
