"""cygrad.kernels.matmul against the NumPy specification (cygrad.reference.matmul)."""
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cygrad as cg
from cygrad.kernels import gemm as kgemm
from cygrad.kernels import matmul
from cygrad.reference import matmul as ref_matmul

TOL = {np.float32: 1e-5, np.float64: 1e-12}
# sizes around the register tiles (MR, NR = 4..8, 8..32) and cache blocks (kc 256, mc 72..192)
EDGE = [0, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 71, 72, 73, 95, 96, 97,
        127, 128, 129, 191, 192, 193, 255, 256, 257, 300]
size = st.one_of(st.sampled_from(EDGE), st.integers(0, 300))
ISAS = [name for name in ("avx512", "avx2", "generic") if kgemm.isa_supported(name)]


def operands(rng, m, n, k, ta, tb, dtype):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    return a, b


def assert_close(got, want, dtype, bound=None):
    """|got - want| <= tol * bound elementwise; bound defaults to max(1, |want|)."""
    assert got.shape == want.shape and got.dtype == np.dtype(dtype)
    if bound is None:
        bound = np.maximum(1.0, np.abs(want))
    err = np.abs(got.astype(np.float64) - want)
    assert np.all(err <= TOL[dtype] * bound), f"max relative error {np.max(err / bound, initial=0)}"


def check_against_spec(got, a, b, ta, tb, alpha=1.0, beta=0.0, c=None):
    """Compare with the specification evaluated in float64; the error is measured
    relative to |alpha| |op(a)| |op(b)| + |beta| |c| (the size of the terms summed)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    c64 = None if c is None else c.astype(np.float64)
    want = ref_matmul(a64, b64, trans_a=ta, trans_b=tb, alpha=alpha, beta=beta, out=c64)
    terms = ref_matmul(np.abs(a64), np.abs(b64), trans_a=ta, trans_b=tb, alpha=abs(alpha),
                       beta=abs(beta), out=None if c is None else np.abs(c.astype(np.float64)))
    assert_close(got, want, a.dtype.type, bound=np.maximum(terms, np.finfo(np.float64).tiny))


@settings(max_examples=150, deadline=None)
@given(m=size, n=size, k=size, ta=st.booleans(), tb=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]),
       alpha=st.sampled_from([1.0, -0.5, 2.0, 0.0]), beta=st.sampled_from([0.0, 1.0, -0.75]),
       with_out=st.booleans(), seed=st.integers(0, 2**32 - 1),
       path=st.sampled_from(["auto", "large"]))
def test_matches_reference(m, n, k, ta, tb, dtype, alpha, beta, with_out, seed, path):
    rng = np.random.default_rng(seed)
    a, b = operands(rng, m, n, k, ta, tb, dtype)
    if beta != 0:
        with_out = True
    c0 = rng.standard_normal((m, n)).astype(dtype)
    out = c0.copy() if with_out else None
    out_ref = c0.copy() if with_out else None
    got = matmul(a, b, trans_a=ta, trans_b=tb, alpha=alpha, beta=beta, out=out)
    # the specification, evaluated in float64; the error is measured relative to
    # |alpha| |op(a)| |op(b)| + |beta| |out| (the size of the terms summed)
    check_against_spec(got, a, b, ta, tb, alpha, beta, out_ref)
    if with_out:
        assert got is out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reference_spec_itself(dtype):
    rng = np.random.default_rng(1)
    a, b = operands(rng, 5, 6, 7, True, True, dtype)
    out = np.ones((5, 6), dtype)
    r = ref_matmul(a, b, trans_a=True, trans_b=True, alpha=2.0, beta=3.0, out=out)
    np.testing.assert_allclose(r, 2.0 * a.T @ b.T + 3.0, rtol=1e-5)
    assert r is out and r.dtype == dtype


def test_beta_zero_ignores_nan_in_out():
    a = np.ones((3, 4), np.float32)
    b = np.ones((4, 5), np.float32)
    out = np.full((3, 5), np.nan, np.float32)
    matmul(a, b, out=out)
    assert np.all(out == 4.0)


@pytest.mark.parametrize("shape", [(0, 5, 3), (5, 0, 3), (5, 4, 0), (0, 0, 0)])
def test_empty_dimensions_give_zeros(shape):
    m, n, k = shape
    a, b = np.ones((m, k), np.float64), np.ones((k, n), np.float64)
    r = matmul(a, b)
    assert r.shape == (m, n) and np.all(r == 0)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_isa_path(isa, dtype):
    rng = np.random.default_rng(2)
    previous = kgemm.get_isa()
    try:
        kgemm.set_isa(isa)
        assert kgemm.get_isa() == isa
        for m, n, k, ta, tb in [(67, 45, 300, False, True), (200, 130, 77, True, False),
                                (1, 1, 1, False, False), (300, 257, 513, True, True)]:
            a, b = operands(rng, m, n, k, ta, tb, dtype)
            check_against_spec(matmul(a, b, trans_a=ta, trans_b=tb), a, b, ta, tb)
    finally:
        kgemm.set_isa(previous)


def test_isa_env_variable(tmp_path):
    import subprocess, sys
    for isa in ISAS:
        code = "from cygrad.kernels import gemm; print(gemm.get_isa())"
        env = dict(__import__("os").environ, CYGRAD_ISA=isa)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, cwd=tmp_path, check=True)
        assert out.stdout.strip() == isa


def test_unknown_isa_rejected():
    with pytest.raises(ValueError, match="unknown ISA"):
        kgemm.set_isa("sse9")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(512, 384, 300, False, False), (64, 128, 784, False, True),
                                   (128, 784, 64, True, False), (7, 1000, 1000, False, False),
                                   (1000, 7, 1000, True, True)])
def test_thread_count_gives_bitwise_identical_results(dtype, shape):
    m, n, k, ta, tb = shape
    a, b = operands(np.random.default_rng(3), m, n, k, ta, tb, dtype)
    with cg.threads(1):
        r1 = matmul(a, b, trans_a=ta, trans_b=tb)
    for nt in (2, 3, 4):
        with cg.threads(nt):
            rn = matmul(a, b, trans_a=ta, trans_b=tb)
        assert np.array_equal(r1, rn), f"{nt} threads differ from 1"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_and_large_paths_agree_bitwise(dtype):
    """Packing or not changes where operands are read from, never the arithmetic."""
    rng = np.random.default_rng(5)
    for m, n, k, ta, tb in [(77, 45, 600, False, True), (300, 130, 77, True, False),
                            (129, 257, 300, True, True), (64, 10, 64, False, True)]:
        a, b = operands(rng, m, n, k, ta, tb, dtype)
        c = rng.standard_normal((m, n)).astype(dtype)
        res = []
        for path in ("small", "large"):
            kgemm._force_path(path)
            try:
                for nt in (1, 2, 3):
                    with cg.threads(nt):
                        res.append(matmul(a, b, trans_a=ta, trans_b=tb, alpha=0.5, beta=2.0, out=c.copy()))
            finally:
                kgemm._force_path("auto")
        assert all(np.array_equal(res[0], r) for r in res[1:])


def test_concurrent_python_threads():
    rng = np.random.default_rng(4)
    jobs = [operands(rng, 200 + 13 * i, 150 + 7 * i, 300, i % 2 == 0, i % 3 == 0, np.float32)
            for i in range(4)]
    want = [ref_matmul(a.astype(np.float64), b.astype(np.float64), trans_a=i % 2 == 0,
                       trans_b=i % 3 == 0) for i, (a, b) in enumerate(jobs)]
    errors = []

    def work(i):
        a, b = jobs[i]
        for _ in range(20):
            got = matmul(a, b, trans_a=i % 2 == 0, trans_b=i % 3 == 0)
            if np.abs(got - want[i]).max() > 1e-3:
                errors.append(i)
                return

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


# ---- bad input: the promised exception, naming the argument, from both backends

f32 = np.ones((3, 4), np.float32)
g32 = np.ones((4, 5), np.float32)


@pytest.mark.parametrize("impl", [matmul, ref_matmul])
@pytest.mark.parametrize("args,kwargs,exc,match", [
    (([[1.0]], g32), {}, TypeError, "a must be a numpy.ndarray"),
    ((f32, "x"), {}, TypeError, "b must be a numpy.ndarray"),
    ((f32.astype(np.int32), g32), {}, TypeError, "a must be float32 or float64"),
    ((f32, g32.astype(">f4")), {}, TypeError, "b must be float32 or float64"),
    ((f32, g32.astype(np.float64)), {}, TypeError, "b has dtype float64 but a"),
    ((np.ones(3, np.float32), g32), {}, ValueError, "a must be 2-D"),
    ((f32, np.ones((4, 5, 1), np.float32)), {}, ValueError, "b must be 2-D"),
    ((f32, np.ones((5, 5), np.float32)), {}, ValueError, "shapes don't chain"),
    ((f32, np.ones((5, 4), np.float32)), {"trans_a": True}, ValueError, "shapes don't chain"),
    ((np.ones((4, 3), np.float32).T, g32), {}, ValueError, "a must be C-contiguous"),
    ((f32, np.ones((8, 5), np.float32)[::2]), {}, ValueError, "b must be C-contiguous"),
    ((f32, g32), {"beta": 1.0}, ValueError, "out is required"),
    ((f32, g32), {"out": np.ones((3, 4), np.float32)}, ValueError, "out has shape"),
    ((f32, g32), {"out": np.ones((3, 5), np.float64)}, TypeError, "out has dtype"),
    ((f32, g32), {"out": [[0.0]]}, TypeError, "out must be a numpy.ndarray"),
    ((f32, g32), {"out": np.ones((5, 3), np.float32).T}, ValueError, "out must be C-contiguous"),
])
def test_bad_input(impl, args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        impl(*args, **kwargs)


@pytest.mark.parametrize("impl", [matmul, ref_matmul])
def test_out_overlapping_inputs_rejected(impl):
    buf = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="overlap"):
        impl(buf, buf, out=buf)
    big = np.ones(40, np.float32)
    a = big[:16].reshape(4, 4)
    with pytest.raises(ValueError, match="overlap"):
        impl(a, np.ones((4, 4), np.float32), out=big[8:24].reshape(4, 4))


@pytest.mark.parametrize("impl", [matmul, ref_matmul])
def test_read_only_out_rejected(impl):
    out = np.zeros((3, 5), np.float32)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        impl(f32, g32, out=out)
