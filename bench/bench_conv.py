"""pytest-benchmark: the seed CNN's conv and max-pool layers, a depthwise and a grouped
convolution, forward + backward, cygrad vs the NumPy reference vs PyTorch (F.conv2d /
F.max_pool2d + autograd), same run.

    python -m pytest bench/bench_conv.py --benchmark-columns=median --benchmark-group-by=group
(bench/report_conv.py prints the same comparison as one table with ratios, each library
timed in its own process: in one process cygrad and torch share libgomp, and the
ratios here are skewed by it.)
"""
import pytest

from conv_cases import OPS, runners


@pytest.mark.parametrize("threads", [2, 1])
@pytest.mark.parametrize("impl", ["cygrad", "reference", "torch"])
@pytest.mark.parametrize("batch", [32, 64, 256])
@pytest.mark.parametrize("op", OPS)
def test_conv_layers(benchmark, op, batch, impl, threads):
    run = runners(op, batch, threads)
    if impl not in run:
        pytest.skip(f"{impl} not installed")
    fn, limit = run[impl]
    benchmark.group = f"{op} b{batch} {threads}t"
    with limit():
        benchmark(fn)
