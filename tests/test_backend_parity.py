"""Both backends raise the same exceptions for the same bad input (issue 15).

Every public kernel is driven through cygrad.kernels and cygrad.reference with the same
hostile arguments: the atheris harness's generator (tests/fuzz/fuzz_kernels.py: mutated
dtypes, shapes, layouts, aliasing, extreme values), fed from a seeded random stream
instead of libFuzzer, and a sweep that puts non-numbers (strings, bools, arrays, None, ...)
into every scalar argument. Each call must raise the same exception type on both
backends, or succeed on both with close results (return values and arrays changed in
place). The fuzz corpus runs in a child process under the harness's address-space cap,
so an absurd size fails there instead of paging this machine.
"""
import contextlib
import decimal
import fractions
import importlib.util
import json
import math
import os
import resource
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

from cygrad import kernels as K
from cygrad import reference as R

HERE = Path(__file__).resolve().parent
FUZZ_CALLS = int(os.environ.get("CYGRAD_PARITY_CALLS", "5000"))
MEMORY_CAP = 3 << 30
# Non-numbers, and numbers of other types, for each scalar argument (alpha, lr, p, ...).
HOSTILE_SCALARS = ["2", b"2", True, np.True_, None, 2 + 0j, [2.0], (2,), np.array(2.0),
                   np.array([2.0]), np.array([1.0, 2.0]), np.float32(0.5), np.int64(2),
                   fractions.Fraction(1, 2), decimal.Decimal("0.5"), -1, np.float64("nan"),
                   float("inf"), 10**400, object()]
# ---- the harness's generator, driven by a seeded stream -----------------------------------

class SeededData:
    """The FuzzedDataProvider calls fuzz_kernels.py makes, answered by numpy's PCG64."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def ConsumeIntInRange(self, lo, hi):  # noqa: N802 - atheris' names
        return int(self.rng.integers(lo, hi, endpoint=True))

    def ConsumeBool(self):  # noqa: N802
        return bool(self.rng.integers(2))

    def ConsumeBytes(self, n):  # noqa: N802
        return self.rng.bytes(n)

    def ConsumeRegularFloat(self):  # noqa: N802
        """A finite float: often ordinary, sometimes any finite bit pattern (as atheris)."""
        if self.rng.integers(2):
            return float(self.rng.standard_normal() * 10.0 ** int(self.rng.integers(-3, 4)))
        v = float(np.frombuffer(self.rng.bytes(8), np.float64)[0])
        return v if math.isfinite(v) else 0.0


def load_harness():
    """tests/fuzz/fuzz_kernels.py as a module, with a stand-in for atheris (not needed to
    generate arguments; removed again so that other tests still see whether it is installed)."""
    stub = types.ModuleType("atheris")
    stub.instrument_imports = contextlib.nullcontext
    saved = sys.modules.get("atheris")
    sys.modules["atheris"] = stub
    try:
        spec = importlib.util.spec_from_file_location("_parity_fuzz_kernels",
                                                      HERE / "fuzz" / "fuzz_kernels.py")
        harness = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(harness)
    finally:
        if saved is None:
            del sys.modules["atheris"]
        else:
            sys.modules["atheris"] = saved
    return harness


def fuzz_call(harness, seed):
    """(name, positional args, keyword args) of one fuzz input, as the harness builds it."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")      # the harness casts inf to ints on purpose
        return harness.call(SeededData(seed))


# ---- one call on both backends -------------------------------------------------------------

def outcome(backend, name, pos, kwargs):
    """('ok', result, the arguments afterwards) or ('raised', exception type name, message)."""
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = getattr(backend, name)(*pos, **kwargs)
    except Exception as e:  # noqa: BLE001 - the type is what is compared
        return "raised", type(e).__name__, str(e)
    return "ok", result, (pos, kwargs)


def _close(a, b):
    """Same structure; floats close (NaN where NaN), anything else equal. float32 results
    may differ by a few ulps (libm vs vectorised exp, summation order)."""
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_close, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        return _close_floats(a, b) if a.dtype.kind == "f" else np.array_equal(a, b)
    if isinstance(a, (float, np.floating)) and isinstance(b, (float, np.floating)):
        return _close_floats(np.asarray(a), np.asarray(b))
    return a is b or type(a) is type(b) and a == b   # ints, None, strings, hostile objects


def _close_floats(a, b):
    tol = 1e-3 if a.dtype == np.float32 else 1e-6
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(all="ignore"):
        # beyond 1e30 with one sign: the same overflow, reached in another order of operations
        huge = (np.abs(a64) > 1e30) & (np.abs(b64) > 1e30) & (np.sign(a64) == np.sign(b64))
        return bool(np.all(np.isclose(a, b, rtol=tol, atol=tol, equal_nan=True) | huge))


def _short(v):
    r = repr(v)
    return r if len(r) < 60 else r[:40] + "..." + r[-12:]


def compare(name, make_args):
    """None if both backends agree on the call that make_args() builds (called once per
    backend: each gets its own copies), else what differs."""
    k = outcome(K, name, *make_args())
    r = outcome(R, name, *make_args())
    if k[0] == r[0] == "raised":
        if k[1] == r[1]:
            return None
        return f"{name}: kernels raise {k[1]}({_short(k[2])}), reference {r[1]}({_short(r[2])})"
    if k[0] == r[0] == "ok":
        return None if _close(k[1:], r[1:]) else f"{name}: both succeed, different results"
    ok, bad = (k, r) if k[0] == "ok" else (r, k)
    return (f"{name}: {'kernels' if ok is k else 'reference'} succeed(s), the other raises "
            f"{bad[1]}({_short(bad[2])})")


def fuzz_mismatches(seeds):
    """Every disagreement over the fuzz inputs of the given seeds, as (name, text)."""
    harness = load_harness()
    found = []
    for seed in seeds:
        name = fuzz_call(harness, seed)[0]
        problem = compare(name, lambda: fuzz_call(harness, seed)[1:])
        if problem:
            found.append((name, f"seed {seed}: {problem}"))
    return found


def assert_no_gaps(found):
    """Fail, listing them, if any calls differ between the backends."""
    texts = [text for _, text in found]
    assert not texts, f"{len(texts)} calls differ between the backends:\n" + "\n".join(texts[:40])


def scalar_slots(harness, name):
    """Where a valid call of name has (or could have) a non-array argument: ("pos", index)
    or ("kw", name), for every parameter but `out` (optional arrays left as None too)."""
    pos, kwargs = harness._valid(SeededData(0), name)
    slots = []
    for i, param in enumerate(harness.SIGS[name].parameters):
        value = pos[i] if i < len(pos) else kwargs.get(param)
        if param != "out" and not isinstance(value, np.ndarray):
            slots.append(("pos", i) if i < len(pos) else ("kw", param))
    return slots


# ---- tests -------------------------------------------------------------------------------

def test_reference_matmul_refuses_what_the_kernel_refuses():
    """The issue's example: alpha='2' was computed as 2 by the reference."""
    a = np.ones((2, 2), np.float32)
    for backend in (K, R):
        for bad in ("2", None, [2.0], np.array([1.0, 2.0])):
            with pytest.raises(TypeError):
                backend.matmul(a, a, alpha=bad)
            with pytest.raises(TypeError):
                backend.matmul(a, a, beta=bad, out=np.ones((2, 2), np.float32))
        with pytest.raises(OverflowError):
            backend.matmul(a, a, alpha=10**400)


def test_optimizer_checks_run_in_the_kernels_order():
    """With two bad arguments both backends report the same one: the dtype of a state
    buffer before its dimensions, and nesterov's truth value before maximize."""
    p = np.zeros(4, np.float32)
    calls = [
        (dict(grad=np.zeros((2, 2)), momentum_buf=None), TypeError),   # float64 and 2-D
        (dict(grad=np.zeros(4, np.float32), momentum_buf=None, nesterov=np.ones(2),
              maximize="no"), ValueError),                             # ambiguous truth value
    ]
    for kwargs, exc in calls:
        for backend in (K, R):
            with pytest.raises(exc):
                backend.sgd_step(p, lr=0.1, step=1, **kwargs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_amsgrad_max_keeps_nan_on_both_backends(dtype):
    """max(max_exp_avg_sq, exp_avg_sq) is NaN where either is, as torch.maximum: the kernel
    used to replace a NaN in max_exp_avg_sq by exp_avg_sq (found by the corpus sweep)."""
    results = []
    for backend in (K, R):
        p, g, m, v, vmax = (np.zeros(3, dtype) for _ in range(5))
        g += 1
        backend.adam_step(p, g, m, v, step=1, lr=0.1, amsgrad=True, max_exp_avg_sq=vmax)
        vmax[1] = np.nan
        backend.adam_step(p, g, m, v, step=2, lr=0.1, amsgrad=True, max_exp_avg_sq=vmax)
        assert np.isnan(vmax[1]) and np.isnan(p[1]) and not np.isnan(p[[0, 2]]).any()
        results.append(p)
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6)


@pytest.mark.parametrize("name", sorted(K.__all__))
def test_hostile_scalars_raise_alike(name):
    """Each scalar argument of a valid call replaced by each of HOSTILE_SCALARS."""
    harness = load_harness()
    found = []
    for where, key in scalar_slots(harness, name):
        for value in HOSTILE_SCALARS:
            def make_args(where=where, key=key, value=value):
                pos, kwargs = harness._valid(SeededData(1), name)
                (pos if where == "pos" else kwargs)[key] = value
                return pos, kwargs
            problem = compare(name, make_args)
            if problem:
                found.append((name, f"{key}={_short(value)}: {problem}"))
    assert_no_gaps(found)


def test_fuzz_corpus_raises_alike():
    """FUZZ_CALLS seeded fuzz inputs (CYGRAD_PARITY_CALLS), in a child process."""
    proc = subprocess.run([sys.executable, "-W", "ignore", __file__, str(FUZZ_CALLS)],
                          capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_no_gaps([tuple(f) for f in json.loads(proc.stdout.strip().splitlines()[-1])])


if __name__ == "__main__":
    # Absurd but valid sizes must raise MemoryError here, not page the machine. Not under
    # ASan: it reserves terabytes of shadow memory (and returns NULL for huge requests,
    # ASAN_OPTIONS=allocator_may_return_null=1), as tests/fuzz/_harness.py does.
    if "asan" not in os.environ.get("LD_PRELOAD", ""):
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, resource.RLIM_INFINITY))
    print(json.dumps(fuzz_mismatches(range(int(sys.argv[1])))))
