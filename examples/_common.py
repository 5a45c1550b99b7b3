"""Shared by the examples: where MNIST is, subsets for --quick, and the 'skipped' exit."""
import os
import sys
from pathlib import Path

import numpy as np

import cygrad as cg

REPO = Path(__file__).resolve().parents[1]


def mnist_candidates(data=None):
    """--data, else $CYGRAD_DATA, else the shared/datasets/mnist folder beside the checkout."""
    if data:
        return [Path(data).expanduser()]
    if os.environ.get("CYGRAD_DATA"):
        return [Path(os.environ["CYGRAD_DATA"]).expanduser()]
    return [REPO.parent / "shared" / "datasets" / "mnist", REPO / "shared" / "datasets" / "mnist"]


def mnist_or_exit(data, quick):
    """(x_train, y_train, x_test, y_test) as uint8 images and labels; without the files:
    with --quick print 'skipped' and exit 0 (CI without data), else exit 2."""
    for root in mnist_candidates(data):
        try:
            return cg.data.load_mnist(root, "train") + cg.data.load_mnist(root, "test")
        except cg.data.DataNotFoundError:
            continue
    looked = ", ".join(map(str, mnist_candidates(data)))
    print(f"MNIST not found (looked in {looked}); pass --data DIR or set $CYGRAD_DATA "
          "to the folder with the four IDX files")
    if quick:
        print("skipped: no MNIST data")
        sys.exit(0)
    sys.exit(2)


def subset(x, y, n, seed=0):
    """n samples drawn without replacement (all of them when n is None)."""
    if n is None or n >= len(x):
        return x, y
    idx = np.random.default_rng(seed).choice(len(x), n, replace=False)
    return x[idx], y[idx]


def check(condition, message):
    """The outcome an example promises: print it, and exit 1 when it does not hold."""
    print(("ok: " if condition else "FAILED: ") + message)
    if not condition:
        sys.exit(1)
