"""pytest-benchmark: batch norm and vector_norm, cygrad vs the NumPy reference vs PyTorch.

    python -m pytest bench/bench_norm.py --benchmark-columns=median --benchmark-group-by=group
(bench/report_norm.py prints the comparison as a table, each library timed in its own
process: in one process cygrad and torch share libgomp and slow each other.)
Passes with --benchmark-disable (each case then runs once); torch columns skip without torch.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from norm_cases import CASES, IMPLS, case_id, runner, thread_limit  # noqa: E402


@pytest.mark.parametrize("threads", [2, 1])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_norm(benchmark, case, impl, threads):
    if impl.startswith("torch"):
        pytest.importorskip("torch")
    run = runner(impl, case)
    benchmark.group = f"{case_id(case)} {threads}t"
    with thread_limit(impl, threads):
        result = benchmark(run)
    assert result is not None
