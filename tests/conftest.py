"""Shared fixtures: where real MNIST is, and small fake MNIST folders in IDX format."""
import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve()

# The tests ask for thread counts and must get them: a test comparing 1 and 2 threads
# proves nothing if a busy machine made both runs single-threaded. cygrad's adaptive
# team size (csrc/cg_contention.h) is off here (set before cygrad is imported, also for
# the subprocesses tests start); tests/test_contention.py turns it on where it is tested.
os.environ.setdefault("CYGRAD_ADAPTIVE_THREADS", "0")


def mnist_candidates():
    """$CYGRAD_DATA, else the shared/datasets/mnist folder beside the checkout."""
    if os.environ.get("CYGRAD_DATA"):
        return [Path(os.environ["CYGRAD_DATA"])]
    repo = HERE.parents[1]
    return [repo.parent / "shared" / "datasets" / "mnist", repo / "shared" / "datasets" / "mnist",
            repo.parent.parent / "shared" / "datasets" / "mnist"]


@pytest.fixture(scope="session")
def mnist_dir():
    from cygrad.data import DataNotFoundError, find_mnist
    for candidate in mnist_candidates():
        try:
            find_mnist(candidate, "train")
            return find_mnist(candidate, "test")
        except DataNotFoundError:
            continue
    pytest.skip("real MNIST not found (looked in " + ", ".join(map(str, mnist_candidates()))
                + "); set $CYGRAD_DATA to the folder holding the four IDX files")


def write_idx(path, array, gz=True):
    """Write a uint8 array as an IDX file (magic 0x0800 | ndim, big-endian dims)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    raw = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.tobytes()
    path = Path(str(path) + ".gz") if gz else Path(path)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def make_fake_mnist(root, n_train=256, n_test=128, gz=True, seed=0):
    """A learnable fake MNIST: each class a bright 7x7 block at its own place, plus noise."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            r, col = 3 + 7 * (c // 4), 3 + 7 * (c % 4)
            images[i, r:r + 7, col:col + 7] = 255
        write_idx(root / f"{split}-images-idx3-ubyte", images, gz)
        write_idx(root / f"{split}-labels-idx1-ubyte", labels, gz)
    return root


@pytest.fixture
def fake_mnist(tmp_path):
    return make_fake_mnist(tmp_path / "mnist")
