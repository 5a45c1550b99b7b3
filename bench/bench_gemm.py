"""pytest-benchmark: cygrad's GEMM vs NumPy (OpenBLAS) vs PyTorch, same run.

    python -m pytest bench/bench_gemm.py --benchmark-columns=median,ops
(bench/report_gemm.py prints the same comparison as a GFLOP/s table.)
"""
import numpy as np
import pytest

from gemm_cases import DL, SQUARE, runners

CASES = [(c, np.float32) for c in SQUARE + DL] + [(c, np.float64) for c in SQUARE]


@pytest.mark.parametrize("threads", [2, 1])
@pytest.mark.parametrize("impl", ["cygrad", "numpy", "torch"])
@pytest.mark.parametrize("case,dtype", CASES, ids=[f"{c[0]}-{np.dtype(d).name}" for c, d in CASES])
def test_gemm(benchmark, case, dtype, impl, threads):
    run = runners(case, dtype, threads)
    if impl not in run:
        pytest.skip(f"{impl} not installed")
    fn, limit = run[impl]
    benchmark.group = f"{case[0]} {np.dtype(dtype).name} {threads}t"
    with limit():
        result = benchmark(fn)
    assert result.shape == (case[1], case[2])
