"""The batch-norm and vector-norm cases cygrad is measured on (float32).

Each case is (label, shape, op): op "fwd" is a training-mode forward with affine
parameters and running statistics, "fwd+bwd" that forward and the backward of x,
weight and bias, "norm" the 2-norm of a flat gradient buffer. Shapes: the seed CNN's
conv1 output at batch 64 (the speed target), its conv2 output, BatchNorm1d on the
MLP's hidden layer and a wider one.
"""
import numpy as np

CASES = [
    ("bn2d", (64, 32, 26, 26), "fwd"),
    ("bn2d", (64, 32, 26, 26), "fwd+bwd"),
    ("bn2d", (64, 64, 11, 11), "fwd+bwd"),
    ("bn1d", (64, 128), "fwd+bwd"),
    ("bn1d", (256, 1024), "fwd+bwd"),
    ("vector_norm", (1_000_000,), "norm"),
]

IMPLS = ("cygrad", "reference", "torch", "torch-autograd")


def case_id(case):
    label, shape, op = case
    return f"{label} {op} {'x'.join(map(str, shape))}"


def arrays(shape, seed=0):
    """x, grad_out, weight, bias, running_mean, running_var (float32)."""
    rng = np.random.default_rng(seed)
    c = shape[1] if len(shape) > 1 else 1
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    w, b = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    return x, g, w, b, np.zeros(c, np.float32), np.ones(c, np.float32)


def cygrad_runner(backend, case):
    """A zero-argument callable running the case on cygrad.kernels or cygrad.reference."""
    _, shape, op = case
    x, g, w, b, rm, rv = arrays(shape)
    if op == "norm":
        return lambda: backend.vector_norm(x, 2.0)

    def fwd():
        return backend.batch_norm_forward(x, w, b, rm, rv, training=True)

    def fwd_bwd():
        _, mean, invstd = fwd()
        return backend.batch_norm_backward(g, x, w, mean, invstd, training=True)

    return fwd if op == "fwd" else fwd_bwd


def torch_runner(case, autograd=False):
    """The case on PyTorch: its kernels (aten.native_batch_norm and its backward, as
    autograd calls them), or, autograd=True, F.batch_norm and autograd.grad as a
    module's training step runs them."""
    import torch

    _, shape, op = case
    x, g, w, b, rm, rv = (torch.from_numpy(a) for a in arrays(shape))
    if op == "norm":
        return lambda: torch.linalg.vector_norm(x, 2.0).item()
    if autograd:
        x.requires_grad_(True), w.requires_grad_(True), b.requires_grad_(True)

        def fwd():
            return torch.nn.functional.batch_norm(x, rm, rv, w, b, True, 0.1, 1e-5)

        def fwd_bwd():
            return torch.autograd.grad(fwd(), (x, w, b), g)

        return fwd if op == "fwd" else fwd_bwd

    def kernel_fwd():
        return torch.native_batch_norm(x, w, b, rm, rv, True, 0.1, 1e-5)

    def kernel_fwd_bwd():
        _, mean, invstd = kernel_fwd()
        return torch.ops.aten.native_batch_norm_backward(g, x, w, rm, rv, mean, invstd, True,
                                                          1e-5, [True, True, True])

    return kernel_fwd if op == "fwd" else kernel_fwd_bwd


def runner(impl, case):
    """A zero-argument callable for impl (one of IMPLS) on case."""
    if impl in ("cygrad", "reference"):
        import cygrad
        return cygrad_runner(cygrad.kernels if impl == "cygrad" else cygrad.reference, case)
    return torch_runner(case, autograd=impl == "torch-autograd")


def thread_limit(impl, threads):
    """A context manager running impl on `threads` threads."""
    if impl.startswith("torch"):
        from cygrad.benchmark import torch_threads
        return torch_threads(threads)
    import cygrad
    return cygrad.threads(threads)
