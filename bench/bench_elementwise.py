"""pytest-benchmark: elementwise kernels, cygrad vs the NumPy reference vs PyTorch.

    python -m pytest bench/bench_elementwise.py --benchmark-columns=median --benchmark-group-by=group
(bench/report_elementwise.py prints the same comparison as one table with ratios.)
Passes with --benchmark-disable (each case then runs once); torch columns skip without torch.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from elementwise_cases import cases, threads  # noqa: E402

CASES = cases()


@pytest.mark.parametrize("impl", ["cygrad", "reference", "torch"])
@pytest.mark.parametrize("case", CASES, ids=[f"{name}-{size}" for name, size, _ in CASES])
def test_elementwise(benchmark, case, impl):
    name, size, make = case
    run = make()
    if impl not in run:
        pytest.skip(f"{impl} not installed")
    benchmark.group = f"{name} {size}"
    with threads(2):
        benchmark(run[impl])
