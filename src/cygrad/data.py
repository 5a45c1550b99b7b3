"""MNIST in its canonical IDX files: reading, downloading with checksums, batching.

load_mnist(root, split) reads the four files (.gz or plain) from `root`, else
$CYGRAD_DATA, else ~/.cache/cygrad/mnist (a `mnist` subfolder of any of those is
looked in too). download_mnist(root) fetches them from a list of mirrors, checks each
file's sha256 and writes it atomically. DataLoader batches arrays with deterministic
shuffling into preallocated buffers; Normalize is the (x/255 - mean)/std transform.
"""
import gzip
import hashlib
import os
import struct
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from cygrad.io import file_mode

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SHA256 = {  # of the canonical .gz files
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
MIRRORS = (  # tried in order; $CYGRAD_MNIST_MIRRORS (comma-separated URLs) replaces the list
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MEAN, STD = 0.1307, 0.3081  # of the training pixels scaled to [0, 1]


class DataNotFoundError(FileNotFoundError):
    """The MNIST files are not in any of the places looked at; `.searched` lists them."""

    def __init__(self, message, searched=()):
        super().__init__(message)
        self.searched = list(searched)


class DownloadError(OSError):
    """No mirror delivered a file with the expected size and sha256."""


def default_roots():
    """Where load_mnist looks when no root is given: $CYGRAD_DATA, then ~/.cache/cygrad/mnist."""
    roots = []
    if os.environ.get("CYGRAD_DATA"):
        roots.append(Path(os.environ["CYGRAD_DATA"]).expanduser())
    roots.append(Path.home() / ".cache" / "cygrad" / "mnist")
    return roots


def _candidates(roots):
    for root in roots:
        root = Path(root).expanduser()
        yield root
        yield root / "mnist"


def find_mnist(root=None, split="train"):
    """The directory holding `split`'s two files (plain or .gz), else DataNotFoundError."""
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    roots = [root] if root is not None else default_roots()
    searched = []
    for d in _candidates(roots):
        searched.append(str(d))
        if all(_file(d, name) is not None for name in FILES[split]):
            return d
    raise DataNotFoundError(
        f"MNIST {split} files ({', '.join(n + '[.gz]' for n in FILES[split])}) not found; looked in: "
        + ", ".join(searched), searched)


def _file(directory, name):
    for candidate in (directory / name, directory / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path, magic):
    """Parse one IDX file (gzip or plain): big-endian magic, dims, then uint8 data."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:  # truncated or corrupt gzip stream
        raise ValueError(f"{path}: cannot read the file ({e})") from None
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated, only {len(raw)} bytes (the header alone is {header})")
    found = struct.unpack(">I", raw[:4])[0]
    if found != magic:
        raise ValueError(f"{path}: magic number 0x{found:08x}, expected 0x{magic:08x} "
                         "(not an MNIST IDX file of this kind)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims)) + header
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "too long"
        raise ValueError(f"{path}: {what}, {len(raw)} bytes but its header {dims} says {expected}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def load_mnist(root=None, split="train"):
    """(images uint8 (N, 28, 28), labels uint8 (N,)) of the 'train' or 'test' split."""
    directory = find_mnist(root, split)
    images_name, labels_name = FILES[split]
    images = read_idx(_file(directory, images_name), 0x00000803)
    labels = read_idx(_file(directory, labels_name), 0x00000801)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{directory}: {images.shape[0]} {split} images but {labels.shape[0]} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{directory / labels_name}: label {int(labels.max())} is not a digit")
    return images, labels


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch(url, target, sha256, timeout):
    """Download url to target atomically: temp file in the same folder, size and sha256
    checked, fsync, rename. Anything wrong raises and leaves no partial file."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".part")
    try:
        os.chmod(tmp, file_mode())
        h, received = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    break
                h.update(chunk)
                out.write(chunk)
                received += len(chunk)
            if length is not None and received != int(length):
                raise DownloadError(f"truncated transfer: {received} of {length} bytes")
            if h.hexdigest() != sha256:
                raise DownloadError(f"sha256 mismatch: got {h.hexdigest()}, expected {sha256}")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def download_mnist(root=None, mirrors=None, timeout=30, checksums=None):
    """Fetch the four MNIST .gz files into root (default ~/.cache/cygrad/mnist); return root.

    Files already present with the right sha256 are kept. Each file is tried on each
    mirror in turn (default MIRRORS, or $CYGRAD_MNIST_MIRRORS); a transfer that is
    truncated or has the wrong sha256 is discarded. DownloadError lists every failure.
    """
    root = Path(root).expanduser() if root is not None else default_roots()[-1]
    if mirrors is None:
        env = os.environ.get("CYGRAD_MNIST_MIRRORS", "")
        mirrors = [m.strip() for m in env.split(",") if m.strip()] or list(MIRRORS)
    checksums = checksums or SHA256
    root.mkdir(parents=True, exist_ok=True)
    for name, sha in checksums.items():
        target = root / name
        if target.is_file() and _sha256(target) == sha:
            continue
        errors = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            try:
                _fetch(url, target, sha, timeout)
                break
            except Exception as e:  # network, HTTP, truncation, checksum: try the next mirror
                errors.append(f"{url}: {e}")
        else:
            raise DownloadError(f"could not download {name} into {root}:\n  " + "\n  ".join(errors))
    return root


class Normalize:
    """uint8 pixels -> ((x / 255) - mean) / std in float32/64 (torchvision's ToTensor +
    Normalize), reshaped per sample to `shape` (e.g. (784,) or (1, 28, 28)).

    The 256 possible values are computed once, so a batch is one table lookup.
    """

    def __init__(self, mean=MEAN, std=STD, dtype=np.float32, shape=None):
        self.mean, self.std, self.dtype = float(mean), float(std), np.dtype(dtype)
        self.shape = None if shape is None else tuple(shape)
        t = self.dtype.type
        self.table = ((np.arange(256, dtype=self.dtype) / t(255)) - t(mean)) / t(std)

    def sample_shape(self, shape):
        return self.shape if self.shape is not None else tuple(shape)

    def __call__(self, x, out=None):
        x = np.asarray(x)
        if out is None:
            out = np.empty((x.shape[0],) + self.sample_shape(x.shape[1:]), self.dtype)
        np.take(self.table, x.reshape(out.shape), out=out)
        return out

    def __repr__(self):
        return f"Normalize(mean={self.mean}, std={self.std}, dtype={self.dtype.name}, shape={self.shape})"


class DataLoader:
    """Mini-batches of (x, y) with deterministic shuffling and preallocated batch buffers.

    Epoch e's order is a permutation drawn from numpy's Generator seeded with (seed, e),
    so it depends only on the seed and the epoch number (set_epoch(e) for a resumed run).
    Every batch is a new pair of arrays (a graph that saved a batch for its backward
    stays valid while later batches are drawn, e.g. when gradients are accumulated over
    several batches). transform (e.g. Normalize) maps a gathered x batch to the sample.
    """

    def __init__(self, x, y, batch_size, shuffle=True, seed=0, drop_last=False, transform=None):
        x, y = np.asarray(x), np.asarray(y)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x, self.y = x, (y.astype(np.int64) if y.dtype.kind in "iub" else y)
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.drop_last, self.transform = bool(drop_last), transform
        self.epoch = 0

    def __len__(self):
        n, b = self.x.shape[0], self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def order(self, epoch=None):
        """The sample order of an epoch (default: the next one)."""
        epoch = self.epoch if epoch is None else epoch
        if not self.shuffle:
            return np.arange(self.x.shape[0])
        return np.random.default_rng([self.seed, epoch]).permutation(self.x.shape[0])

    def __iter__(self):
        order = self.order()
        self.epoch += 1
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            xb = np.take(self.x, idx, axis=0)
            yb = np.take(self.y, idx, axis=0)
            if self.transform is not None:
                xb = self.transform(xb)
            yield xb, yb


def mnist_loaders(root=None, *, batch_size=64, flatten=True, dtype=np.float32, seed=0,
                  test_batch_size=1000):
    """(train_loader, test_loader) over MNIST, normalised, samples (784,) or (1, 28, 28)."""
    shape = (784,) if flatten else (1, 28, 28)
    transform = Normalize(dtype=dtype, shape=shape)
    xtr, ytr = load_mnist(root, "train")
    xte, yte = load_mnist(root, "test")
    train = DataLoader(xtr, ytr, batch_size, shuffle=True, seed=seed, transform=transform)
    test = DataLoader(xte, yte, test_batch_size, shuffle=False, transform=transform)
    return train, test


__all__ = ["load_mnist", "download_mnist", "find_mnist", "read_idx", "DataLoader", "Normalize",
           "mnist_loaders", "DataNotFoundError", "DownloadError", "MIRRORS", "SHA256"]
