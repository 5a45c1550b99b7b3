"""Run under `mpiexec -n 2 python mpi_worker.py MODE [ARGS]` by test_distributed.py.

equiv OUT:          2 ranks x batch B (seeded differently) vs 1 process x batch 2B, 20 steps
raise:              rank 1's loss raises at step 3 inside fit
uncaught:           rank 1 raises outside fit while rank 0 waits in a Barrier
ckpt CKPT1 CKPT2:   2 epochs with checkpoint CKPT2; 1 epoch with CKPT1 (records who saved)
resume CKPT1 OUT:   (1 rank) resume CKPT1 with batch 2B for the second epoch
sizes:              rank 1 has 8 samples fewer than rank 0 (another data folder, say)
diverge:            rank 1's inputs turn NaN at step 3 of epoch 2, with a checkpoint
"""
import sys

import numpy as np

import cygrad as cg
from cygrad import distributed, io

B, STEPS, SIZES = 8, 20, (12, 16, 10)


def data():
    rng = np.random.default_rng(123)
    x = rng.standard_normal((2 * B * STEPS, SIZES[0]))
    y = rng.integers(0, SIZES[-1], 2 * B * STEPS)
    return x, y


def setup(batch, seed):
    model = cg.models.mlp(SIZES, dtype=np.float64, seed=seed)
    opt = cg.optim.Adam(model.parameters(), lr=1e-2)
    x, y = data()
    return model, opt, cg.data.DataLoader(x, y, batch, seed=seed)


def train(model, opt, loader, **kw):
    return cg.train.fit(model, cg.nn.CrossEntropyLoss(), opt, loader, progress=False, **kw)


def equiv(out):
    ctx = distributed.init()
    model, opt, loader = setup(B, seed=10 + ctx.rank)  # different weights and data seeds
    before = ctx.comm.allgather(model.flat_buffers()[0].copy())
    distributed.init(model, opt)
    start = ctx.comm.allgather(model.flat_buffers()[0].copy())
    hist = train(model, opt, loader, epochs=1, distributed=True, val_loader=loader)
    after = ctx.comm.allgather(model.flat_buffers()[0].copy())
    if ctx.rank == 0:
        ref, ropt, rloader = setup(2 * B, seed=10)
        rhist = train(ref, ropt, rloader, epochs=1, val_loader=rloader)
        np.savez(out, seeded_apart=not np.array_equal(before[0], before[1]),
                 same_start=np.array_equal(start[0], start[1]) and np.array_equal(start[0], before[0]),
                 same_end=np.array_equal(after[0], after[1]),
                 diff=np.abs(after[0] - ref.flat_buffers()[0]).max(),
                 steps=opt.step_count, ref_steps=ropt.step_count,
                 loss=hist["loss"][0], ref_loss=rhist["loss"][0],
                 val=[hist["val_loss"][0], hist["val_accuracy"][0]],
                 ref_val=[rhist["val_loss"][0], rhist["val_accuracy"][0]])


class FailingLoss(cg.nn.CrossEntropyLoss):
    def __init__(self, rank):
        super().__init__()
        self.rank, self.calls = rank, 0

    def forward(self, logits, y):
        self.calls += 1
        if self.rank == 1 and self.calls == 3:
            raise ValueError("boom on rank 1 at step 3")
        return super().forward(logits, y)

    __call__ = forward


def raise_in_fit():
    ctx = distributed.init()
    model, opt, loader = setup(B, seed=0)
    try:
        cg.train.fit(model, FailingLoss(ctx.rank), opt, loader, epochs=1, progress=False,
                     distributed=True)
    except Exception as e:
        print(f"rank {ctx.rank} stopped: {type(e).__name__}: {e}", flush=True)
        sys.exit(3)


def uncaught():
    ctx = distributed.init()
    if ctx.rank == 1:
        raise RuntimeError("uncaught on rank 1")
    ctx.comm.Barrier()


def ckpt(path1, path2):
    ctx = distributed.init()
    saves = []
    original = io.save
    io.save = lambda *a, **k: (saves.append(ctx.rank), original(*a, **k))[1]
    model, opt, loader = setup(B, seed=5)
    train(model, opt, loader, epochs=2, distributed=True, checkpoint=path2)
    model, opt, loader = setup(B, seed=5)
    train(model, opt, loader, epochs=1, distributed=True, checkpoint=path1)
    counts = ctx.comm.gather(len(saves))
    if ctx.rank == 0:
        print("saves per rank", counts, flush=True)


def resume(path1, out):
    distributed.init()
    model, opt, loader = setup(2 * B, seed=5)
    train(model, opt, loader, epochs=2, distributed=True, checkpoint=path1, resume=True)
    np.save(out, model.flat_buffers()[0])


def _report(ctx, fn):
    """Run fn; print how this rank stopped (exit 3) when it raises."""
    try:
        fn()
    except Exception as e:
        print(f"rank {ctx.rank} stopped: {type(e).__name__}: {e}", flush=True)
        sys.exit(3)


def sizes():
    ctx = distributed.init()
    model, opt, _ = setup(B, seed=0)
    x, y = data()
    n = len(y) - 8 * ctx.rank
    loader = cg.data.DataLoader(x[:n], y[:n], B, seed=0)
    _report(ctx, lambda: train(model, opt, loader, epochs=1, distributed=True))


class NaNShard(distributed.ShardedLoader):
    """On rank 1, the batches turn NaN from step 3 of the second epoch on."""

    def __iter__(self):
        epoch = self.epoch
        for i, (xb, yb) in enumerate(super().__iter__()):
            yield (xb * np.nan if self.rank == 1 and epoch == 1 and i >= 2 else xb), yb


def diverge(path):
    ctx = distributed.init()
    model, opt, loader = setup(B, seed=0)
    sharded = NaNShard(loader, ctx.rank, ctx.size)
    _report(ctx, lambda: train(model, opt, sharded, epochs=3, distributed=True, checkpoint=path))


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    {"equiv": equiv, "raise": raise_in_fit, "uncaught": uncaught, "ckpt": ckpt,
     "resume": resume, "sizes": sizes, "diverge": diverge}[mode](*args)
