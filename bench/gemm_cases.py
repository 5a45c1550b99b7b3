"""The GEMM shapes cygrad is measured on: squares, and the shapes its models run.

Each case is (label, m, n, k, trans_a, trans_b): C[m,n] = op(A)[m,k] @ op(B)[k,n].
"""

import numpy as np

from cygrad.benchmark import torch_threads

SQUARE = [(f"square{n}", n, n, n, False, False) for n in (256, 512, 1024, 2048)]


def mlp_cases(batch):
    """Linear layers of the 784-128-64-10 MLP: forward x W^T, weight grad g^T x, input grad g W."""
    cases = []
    for fan_in, fan_out in ((784, 128), (128, 64), (64, 10)):
        cases += [
            (f"fwd b{batch} {batch}x{fan_in}@({fan_out}x{fan_in})T", batch, fan_out, fan_in, False, True),
            (f"wgrad b{batch} ({batch}x{fan_out})T@{batch}x{fan_in}", fan_out, fan_in, batch, True, False),
            (f"igrad b{batch} {batch}x{fan_out}@{fan_out}x{fan_in}", batch, fan_in, fan_out, False, False),
        ]
    return cases


# conv2 of the seed CNN at batch 64: 32->64 channels, 3x3 on 13x13 -> 11x11 (64*121 = 7744 rows)
CONV = [
    ("conv2 fwd 7744x288@288x64", 7744, 64, 288, False, False),
    ("conv2 wgrad (7744x64)T@7744x288", 64, 288, 7744, True, False),
    ("conv2 igrad 7744x64@(288x64)T", 7744, 288, 64, False, True),
]

DL = mlp_cases(64) + mlp_cases(256) + CONV


def operands(case, dtype, seed=0):
    _, m, n, k, ta, tb = case
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    return a, b


def flops(case):
    _, m, n, k, _, _ = case
    return 2.0 * m * n * k


def runners(case, dtype, threads):
    """{name: (zero-argument callable, context manager factory fixing the thread count)}."""
    import cygrad as cg
    from threadpoolctl import threadpool_limits

    _, m, n, k, ta, tb = case
    a, b = operands(case, dtype)
    out = np.empty((m, n), dtype)
    opa, opb = (a.T if ta else a), (b.T if tb else b)
    res = {
        "cygrad": (lambda: cg.kernels.matmul(a, b, trans_a=ta, trans_b=tb, out=out),
                   lambda: cg.threads(threads)),
        "numpy": (lambda: np.matmul(opa, opb, out=out),
                  lambda: threadpool_limits(threads, user_api="blas")),
    }
    try:
        import torch
    except ImportError:
        return res
    ta_, tb_ = torch.from_numpy(a), torch.from_numpy(b)
    topa, topb = (ta_.T if ta else ta_), (tb_.T if tb else tb_)
    tout = torch.from_numpy(out)

    res["torch"] = (lambda: torch.matmul(topa, topb, out=tout), lambda: torch_threads(threads))
    return res
