"""Stochastic gradient descent (batch size 1): images/s of cygrad's `fit` against a plain
PyTorch loop on the same model, data and optimizer, alternating runs, medians reported.

    python bench/batch1_speed.py --threads 1 --n 3000 --repeats 5

Both read the same cygrad DataLoader (uint8 images normalised to float32, 784 features).
"""
import argparse
import statistics
import time

import numpy as np

import cygrad as cg


def cygrad_run(loader, sizes, epochs=1):
    model = cg.models.mlp(sizes, seed=0)
    opt = cg.optim.SGD(model.parameters(), lr=0.01)
    history = cg.train.fit(model, cg.nn.CrossEntropyLoss(), opt, loader, epochs=epochs,
                           progress=False)
    return history["images_per_s"][-1]


def torch_run(loader, sizes, torch):
    T = torch.nn
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += ([T.ReLU()] if i else []) + [T.Linear(a, b)]
    model = T.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = T.CrossEntropyLoss()
    seen, t0 = 0, time.perf_counter()
    for xb, yb in loader:   # the same work per step as fit: forward, loss, backward, step
        x, y = torch.from_numpy(xb), torch.from_numpy(yb)
        logits = model(x)
        loss = loss_fn(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        seen += x.shape[0]
    return seen / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=3000, help="samples per epoch")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sizes", default="784,128,64,10")
    args = p.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(","))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, args.n)
    loader = cg.data.DataLoader(x, y, args.batch_size,
                                transform=cg.data.Normalize(shape=(784,)))
    cg.set_num_threads(args.threads)
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    ours, theirs = [], []
    for _ in range(args.repeats):
        ours.append(cygrad_run(loader, sizes))
        if torch is not None:
            theirs.append(torch_run(loader, sizes, torch))
    print(f"MLP {args.sizes}, SGD, batch {args.batch_size}, {args.n} samples, "
          f"{args.threads} thread(s), median of {args.repeats}")
    print(f"cygrad fit : {statistics.median(ours):10,.0f} images/s   (runs: "
          + ", ".join(f"{v:,.0f}" for v in ours) + ")")
    if theirs:
        print(f"torch loop : {statistics.median(theirs):10,.0f} images/s   (runs: "
              + ", ".join(f"{v:,.0f}" for v in theirs) + ")")
        print(f"ratio cygrad/torch: {statistics.median(ours) / statistics.median(theirs):.2f}")


if __name__ == "__main__":
    main()
