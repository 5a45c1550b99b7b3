"""MNIST in its canonical IDX files: reading, downloading with checksums, batching.

load_mnist(root, split) reads the four files (.gz or plain) from `root`, else
$CYGRAD_DATA, else ~/.cache/cygrad/mnist (a `mnist` subfolder of any of those is
looked in too). download_mnist(root) fetches them from a list of mirrors, checks each
file's sha256 and writes it atomically. Dataset, TensorDataset, Subset, random_split and
DataLoader follow torch.utils.data (the DataLoader shuffles deterministically by seed and
epoch, and also takes plain arrays: DataLoader(x, y, batch_size)); Normalize is the
(x/255 - mean)/std transform.
"""
import gzip
import hashlib
import math
import os
import struct
import tempfile
import urllib.request
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from cygrad.io import file_mode
from cygrad.tensor import Tensor

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


class Dataset:
    """A map-style dataset (torch.utils.data.Dataset): `dataset[i]` is sample i and
    `len(dataset)` the number of samples. Subclasses implement both."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")


def _as_array(a, name):
    """An ndarray for a cygrad Tensor (its data, shared) or anything np.asarray accepts."""
    a = a.data if isinstance(a, Tensor) else np.asarray(a)
    if a.ndim == 0:
        raise ValueError(f"{name} is 0-d: a dataset array needs a first (sample) dimension")
    return a


class TensorDataset(Dataset):
    """Samples are the rows of arrays sharing their first dimension
    (torch.utils.data.TensorDataset): `dataset[i] == tuple(a[i] for a in dataset.tensors)`.

    The arrays (ndarrays, cygrad Tensors, or anything np.asarray accepts) are kept, not
    copied. A DataLoader gathers its batches with one np.take per array.
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one array")
        self.tensors = tuple(_as_array(a, f"tensors[{i}]") for i, a in enumerate(tensors))
        n = self.tensors[0].shape[0]
        for i, a in enumerate(self.tensors[1:], 1):
            if a.shape[0] != n:
                raise ValueError(f"TensorDataset: tensors[{i}] has {a.shape[0]} samples but "
                                 f"tensors[0] has {n} (first dimensions must match)")

    def __getitem__(self, index):
        return tuple(a[index] for a in self.tensors)

    def __len__(self):
        return self.tensors[0].shape[0]


class Subset(Dataset):
    """The samples of `dataset` at `indices`, in that order (torch.utils.data.Subset)."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, indices

    def __getitem__(self, index):
        if isinstance(index, list):
            return self.dataset[[self.indices[i] for i in index]]
        return self.dataset[self.indices[index]]

    def __len__(self):
        return len(self.indices)


def _split_lengths(lengths, n):
    """torch's random_split lengths: integers summing to n, or fractions summing to 1
    (each floor(n * f), then the remainder dealt one by one from the first split on)."""
    lengths = list(lengths)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        for i, frac in enumerate(lengths):
            if not 0 <= frac <= 1:
                raise ValueError(f"random_split: fraction at index {i} is not between 0 and 1")
        counts = [int(math.floor(n * frac)) for frac in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        for i, count in enumerate(counts):
            if count == 0:
                warnings.warn(f"random_split: length of split at index {i} is 0", stacklevel=3)
        lengths = counts
    for i, length in enumerate(lengths):
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
            raise ValueError(f"random_split: lengths must be integers >= 0 or fractions summing "
                             f"to 1, got {length!r} at index {i}")
    if sum(lengths) != n:
        raise ValueError(f"random_split: the lengths sum to {sum(lengths)} but the dataset has "
                         f"{n} samples")
    return lengths


def random_split(dataset, lengths, generator=None):
    """Split a dataset into non-overlapping random Subsets (torch.utils.data.random_split).

    lengths: sample counts summing to len(dataset), or fractions summing to 1 (each split
    gets floor(len * fraction) samples, the remainder is dealt one per split from the
    first on). generator: an int seed or a numpy Generator (default: cygrad's global
    generator, cygrad.nn.init, which cg.manual_seed resets); the same seed gives the same
    split.
    """
    from cygrad.nn.init import generator as as_generator
    counts = _split_lengths(lengths, len(dataset))
    order = as_generator(generator).permutation(len(dataset))
    bounds = np.cumsum([0] + counts)
    return [Subset(dataset, order[a:b].copy()) for a, b in zip(bounds[:-1], bounds[1:])]


def _rows_source(dataset):
    """(arrays, row index or None) when a dataset's samples are rows of arrays -- a
    TensorDataset or Subsets of one -- so a batch is one np.take per array; else None."""
    maps = []
    while isinstance(dataset, Subset):
        index = np.asarray(dataset.indices)
        if index.ndim != 1 or (index.size and index.dtype.kind not in "iu"):
            return None
        maps.append(index.astype(np.intp, copy=False))
        dataset = dataset.dataset
    if not isinstance(dataset, TensorDataset) or \
            type(dataset).__getitem__ is not TensorDataset.__getitem__:
        return None
    rows = None
    for index in reversed(maps):  # Subset(Subset(d, b), a)[i] == d[b[a[i]]]
        rows = index if rows is None else rows[index]
    return dataset.tensors, rows


def default_collate(batch):
    """A list of samples -> one batch (torch.utils.data.default_collate on NumPy).

    Arrays (and cygrad Tensors) are stacked into a new array; Python ints become int64,
    floats float64, bools bool arrays, NumPy scalars keep their dtype; tuples and lists
    are collated field by field (a tuple stays a tuple), dicts key by key, strings are
    kept as a list.
    """
    elem = batch[0]
    if isinstance(elem, Tensor):
        return _stack([b.data for b in batch])
    if isinstance(elem, np.ndarray):
        return _stack(batch)
    if isinstance(elem, (bool, np.bool_)):
        return np.array(batch, dtype=bool)
    if isinstance(elem, np.generic):
        return np.array(batch)
    if isinstance(elem, int):
        return np.array(batch, dtype=np.int64)
    if isinstance(elem, float):
        return np.array(batch, dtype=np.float64)
    if isinstance(elem, str):
        return list(batch)
    if isinstance(elem, Mapping):
        return {key: default_collate([sample[key] for sample in batch]) for key in elem}
    if isinstance(elem, (tuple, list)):
        if len({len(sample) for sample in batch}) != 1:
            raise ValueError("default_collate: the samples of a batch have different lengths")
        fields = [default_collate(list(field)) for field in zip(*batch)]
        if hasattr(elem, "_fields"):  # a namedtuple
            return type(elem)(*fields)
        return tuple(fields) if isinstance(elem, tuple) else fields
    raise TypeError(f"default_collate: samples must be arrays, numbers, strings, dicts, tuples "
                    f"or lists; got {type(elem).__name__} (pass a collate_fn)")


def _stack(arrays):
    try:
        return np.stack(arrays)
    except ValueError:
        shapes = sorted({np.shape(a) for a in arrays})
        raise ValueError(f"default_collate: the samples of a batch have different shapes "
                         f"{shapes}; pad them or pass a collate_fn") from None


class DataLoader:
    """Mini-batches of a dataset with deterministic shuffling (torch.utils.data.DataLoader).

    Two forms, told apart by the first argument:

    - DataLoader(dataset, batch_size=1, shuffle=False, *, drop_last=False, seed=0,
      collate_fn=None, transform=None): torch's form. `dataset` is any map-style dataset
      (__getitem__ and __len__). A TensorDataset (or a Subset of one) yields tuples of
      arrays gathered with one np.take per array; any other dataset's samples are
      collated by `collate_fn` (default: default_collate).
    - DataLoader(x, y, batch_size, shuffle=True, seed=0, drop_last=False, transform=None)
      with x an ndarray (or a cygrad Tensor): (x, y) batches, integer labels as int64.

    Epoch e's order is a permutation drawn from numpy's Generator seeded with (seed, e),
    so it depends only on the seed and the epoch number (set_epoch(e) for a resumed run).
    Every batch is a new set of arrays (a graph that saved a batch for its backward stays
    valid while later batches are drawn, e.g. when gradients are accumulated over several
    batches). transform (e.g. Normalize) maps the first field of each batch (x), or the
    batch itself when it is a single array.
    """

    def __init__(self, dataset, *args, **kwargs):
        if isinstance(dataset, (np.ndarray, Tensor)):
            self._init_arrays(dataset, *args, **kwargs)
        else:
            self._init_dataset(dataset, *args, **kwargs)

    def _init_arrays(self, x, y, batch_size, shuffle=True, seed=0, drop_last=False,
                     transform=None):
        x, y = np.asarray(x), np.asarray(y)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x, self.y = x, (y.astype(np.int64) if y.dtype.kind in "iub" else y)
        self.dataset, self.collate_fn = TensorDataset(self.x, self.y), None
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.drop_last, self.transform = bool(drop_last), transform
        self.epoch = 0

    def _init_dataset(self, dataset, batch_size=1, shuffle=False, *, drop_last=False, seed=0,
                      collate_fn=None, transform=None):
        if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
            raise TypeError(f"DataLoader: dataset must be a map-style dataset (__getitem__ and "
                            f"__len__), or an ndarray x for DataLoader(x, y, batch_size); got "
                            f"{type(dataset).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"DataLoader: batch_size must be an int, got "
                            f"{type(batch_size).__name__} (for the array form DataLoader(x, y, "
                            f"batch_size) pass x as a NumPy array)")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset, self.collate_fn = dataset, collate_fn
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.drop_last, self.transform = bool(drop_last), transform
        self.epoch = 0

    def __len__(self):
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def set_epoch(self, epoch):
        """Make the next iteration epoch `epoch` (its order depends on (seed, epoch) only)."""
        self.epoch = int(epoch)

    def order(self, epoch=None):
        """The sample order of an epoch (default: the next one)."""
        epoch = self.epoch if epoch is None else epoch
        if not self.shuffle:
            return np.arange(len(self.dataset))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))

    def __iter__(self):
        order = self.order()
        self.epoch += 1
        source = _rows_source(self.dataset) if self.collate_fn is None else None
        if source is not None and source[1] is not None:
            order = source[1][order]  # dataset positions -> rows of the arrays
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            if source is not None:
                batch = tuple(np.take(a, idx, axis=0) for a in source[0])
            else:
                batch = self._collated(idx)
            yield self._transformed(batch)

    def _collated(self, idx):
        """The batch of dataset positions idx through __getitems__ / __getitem__ and collate."""
        idx = idx.tolist()
        if hasattr(self.dataset, "__getitems__"):  # a batched fetch, as torch's fetcher
            samples = self.dataset.__getitems__(idx)
        else:
            samples = [self.dataset[i] for i in idx]
        return (self.collate_fn or default_collate)(samples)

    def _transformed(self, batch):
        if self.transform is None:
            return batch
        if isinstance(batch, np.ndarray):
            return self.transform(batch)
        if isinstance(batch, (tuple, list)) and batch:
            first = self.transform(batch[0])
            if hasattr(batch, "_fields"):  # a namedtuple
                return batch._replace(**{batch._fields[0]: first})
            return (first, *batch[1:]) if isinstance(batch, tuple) else [first, *batch[1:]]
        raise TypeError(f"DataLoader: transform applies to an array batch or the first field "
                        f"of a tuple batch, got a {type(batch).__name__}")


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


__all__ = ["load_mnist", "download_mnist", "find_mnist", "read_idx", "Dataset", "TensorDataset",
           "Subset", "random_split", "default_collate", "DataLoader", "Normalize", "mnist_loaders",
           "DataNotFoundError", "DownloadError", "MIRRORS", "SHA256"]
