"""pytest-benchmark: one training step (forward, loss, backward, Adam) and one inference
batch of the seed models -- cygrad vs its NumPy reference vs PyTorch, same weights and data.

    python -m pytest bench/bench_train.py --benchmark-columns=median,ops
(`python -m cygrad bench` prints the same comparison as an images/s table.)
"""
import pytest

from cygrad import benchmark as B

CASES = [(m, b) for m in ("mlp", "cnn") for b in (32, 64, 256)]


def _impl(impl, model, batch, threads):
    if impl == "torch":
        pytest.importorskip("torch")
        cg_model, *_ = B._cygrad_impl(model, "kernels", threads, seed=0)
        return B._torch_impl(model, cg_model.state_dict(), threads)
    _, train_step, predict, limit = B._cygrad_impl(
        model, "kernels" if impl == "cygrad" else "reference", threads, seed=0)
    return train_step, predict, limit


@pytest.mark.parametrize("threads", [2, 1])
@pytest.mark.parametrize("impl", ["cygrad", "reference", "torch"])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("model,batch", CASES, ids=[f"{m}-b{b}" for m, b in CASES])
def test_step(benchmark, model, batch, mode, impl, threads):
    if impl == "reference" and model == "cnn" and batch == 256:
        pytest.skip("the NumPy reference CNN at batch 256 takes seconds per step")
    train_step, predict, limit = _impl(impl, model, batch, threads)
    x, y = B.batches(model, batch, count=1)[0]
    benchmark.group = f"{model} b{batch} {mode} {threads}t"
    with limit():
        if mode == "train":
            loss = benchmark(train_step, x, y)
            assert 0.0 < float(loss) < 20.0
        else:
            out = benchmark(predict, x)
            assert tuple(out.shape) == (batch, 10)
