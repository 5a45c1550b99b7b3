"""MNIST in its canonical IDX files: reading, downloading with checksums, batching.

load_mnist(root, split) reads the four files (.gz or plain) from `root`, else
$CYGRAD_DATA, else ~/.cache/cygrad/mnist (a `mnist` subfolder of any of those is
looked in too). download_mnist(root) fetches the missing ones from a list of mirrors,
within a deadline and a size cap per file, checks each file's sha256 and writes it
atomically; it never replaces a file that is already there. Dataset, TensorDataset,
Subset, random_split and DataLoader follow torch.utils.data (the DataLoader shuffles
deterministically by seed and epoch, and also takes plain arrays: DataLoader(x, y,
batch_size)); Normalize is the (x/255 - mean)/std transform.
"""
import glob
import gzip
import hashlib
import http.client
import math
import os
import re
import secrets
import socket
import threading
import time
import urllib.request
import warnings
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

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
SIZES = {  # bytes of the canonical .gz files: the most a download may deliver
    "train-images-idx3-ubyte.gz": 9912422,
    "train-labels-idx1-ubyte.gz": 28881,
    "t10k-images-idx3-ubyte.gz": 1648877,
    "t10k-labels-idx1-ubyte.gz": 4542,
}
RAW_SHA256 = {  # of the same files decompressed (the plain form a folder may hold instead)
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MIRRORS = (  # tried in order; $CYGRAD_MNIST_MIRRORS (comma-separated URLs) replaces the list
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MEAN, STD = 0.1307, 0.3081  # of the training pixels scaled to [0, 1]
IMAGE_SIZE = (28, 28)  # (height, width) of an MNIST image
MAX_DOWNLOAD = 64 << 20  # size cap of a file whose exact size is not known (custom checksums)
STALE_PART_AGE = 3600  # seconds without a write after which any .part file counts as dead
# Deflate's densest code spends 1 bit on a 258-byte match and 1 on its distance, so a
# .gz file expands at most 1032-fold: an IDX header declaring more data is a lie.
DEFLATE_MAX_RATIO = 1032
_READ_CHUNK = 1 << 20


class DataNotFoundError(FileNotFoundError):
    """The MNIST files are not in any of the places looked at; `.searched` lists them."""

    def __init__(self, message, searched=()):
        super().__init__(message)
        self.searched = list(searched)


class DownloadError(OSError):
    """No mirror delivered a file with the expected size and sha256 within the deadline."""


class DataConflictError(ValueError):
    """A file already in the data folder is not the canonical one, so download_mnist
    refuses to download over or beside it; `.conflicts` lists (path, found sha256,
    expected sha256 or None when no checksum is known for that form)."""

    def __init__(self, message, conflicts=()):
        super().__init__(message)
        self.conflicts = list(conflicts)


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


# -- reading IDX files ------------------------------------------------------------------

_GZIP_ERRORS = (OSError, EOFError, zlib.error)  # truncated or corrupt stream (BadGzipFile is an OSError)


class _IdxFile:
    """One open IDX file (gzip or plain): big-endian magic, dims, then uint8 data.

    Opening parses the header and checks the declared size against what the file can
    hold (its exact size when plain, DEFLATE_MAX_RATIO times its size when gzipped) with
    Python integers, which cannot overflow. read() then decompresses into an array of the
    declared size and stops one byte past it, so a gzip stream that expands beyond its
    header costs no more memory or time than the header admits.
    """

    def __init__(self, path, magic):
        self.path = Path(path)
        self.gz = self.path.suffix == ".gz"
        try:
            self.stored = self.path.stat().st_size
            self.f = gzip.open(self.path, "rb") if self.gz else open(self.path, "rb")
        except OSError as e:
            raise ValueError(f"{self.path}: cannot read the file ({e})") from None
        try:
            self.dims = self._header(magic)
            self.header = 4 + 4 * len(self.dims)
            self.nbytes = math.prod(self.dims)
            self._check_declared_size()
        except BaseException:
            self.f.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def _read(self, n):
        try:
            return self.f.read(n)
        except _GZIP_ERRORS as e:
            raise ValueError(f"{self.path}: cannot read the file ({e})") from None

    def _header(self, magic):
        ndim = magic & 0xFF
        header = 4 + 4 * ndim
        raw = self._read(4)
        if len(raw) == 4:
            found = int.from_bytes(raw, "big")
            if found != magic:
                raise ValueError(f"{self.path}: magic number 0x{found:08x}, expected 0x{magic:08x} "
                                 "(not an MNIST IDX file of this kind)")
            raw += self._read(header - 4)
        if len(raw) < header:
            raise ValueError(f"{self.path}: truncated, only {len(raw)} bytes (the header alone is {header})")
        return tuple(int.from_bytes(raw[i:i + 4], "big") for i in range(4, header, 4))

    def _check_declared_size(self):
        total = self.header + self.nbytes
        if not self.gz and self.stored != total:
            what = "truncated" if self.stored < total else "too long"
            raise ValueError(f"{self.path}: {what}, {self.stored} bytes but its header {self.dims} "
                             f"says {total}")
        if self.gz and total > DEFLATE_MAX_RATIO * self.stored:
            raise ValueError(f"{self.path}: its header {self.dims} declares {total} bytes, more than "
                             f"a {self.stored}-byte .gz file can hold (deflate expands at most "
                             f"{DEFLATE_MAX_RATIO}-fold)")

    def read(self):
        """The data as a uint8 array of the declared dims; ValueError if there is less or more."""
        out = np.empty(self.nbytes, np.uint8)
        view, got = memoryview(out), 0
        while got < self.nbytes:
            try:
                n = self.f.readinto(view[got:got + _READ_CHUNK])
            except _GZIP_ERRORS as e:
                raise ValueError(f"{self.path}: cannot read the file ({e})") from None
            if not n:
                raise ValueError(f"{self.path}: truncated, {self.header + got} bytes but its header "
                                 f"{self.dims} says {self.header + self.nbytes}")
            got += n
        if self.gz and self._read(1):  # reading to the end also checks the gzip CRC
            raise ValueError(f"{self.path}: too long, it expands to more than the "
                             f"{self.header + self.nbytes} bytes its header {self.dims} says")
        return out.reshape(self.dims)


def read_idx(path, magic):
    """Parse one IDX file (gzip or plain): big-endian magic, dims, then uint8 data.

    The declared size is checked before anything is allocated, and a gzip stream is
    decompressed only up to it: ValueError (naming the file) for a wrong magic number, a
    size the file cannot hold, a truncated or corrupt file, or data beyond the header's size.
    """
    with _IdxFile(path, magic) as f:
        return f.read()


def _check_split(directory, split, images, labels, image_size):
    """Headers of one split, before any data is read: counts agree, not empty, image size."""
    n = images.dims[0]
    if n != labels.dims[0]:
        raise ValueError(f"{directory}: {n} {split} images but {labels.dims[0]} labels")
    if n == 0:
        raise ValueError(f"{images.path}: holds no images, the {split} split is empty")
    if image_size is not None and images.dims[1:] != image_size:
        h, w = images.dims[1:]
        raise ValueError(f"{images.path}: images are {h}x{w}, expected {image_size[0]}x"
                         f"{image_size[1]} (pass image_size=None to load_mnist to read other sizes)")


def _image_size(image_size):
    if image_size is None:
        return None
    size = tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size):
        raise ValueError(f"image_size must be (height, width) of positive ints or None, got {image_size!r}")
    return tuple(int(s) for s in size)


def load_mnist(root=None, split="train", *, image_size=IMAGE_SIZE):
    """(images uint8 (N, H, W), labels uint8 (N,)) of the 'train' or 'test' split.

    Both headers are checked before any data is read: the counts must agree and be > 0,
    and every image must be image_size = (H, W) (default MNIST's 28x28; None accepts any).
    ValueError names the file at fault.
    """
    image_size = _image_size(image_size)
    directory = find_mnist(root, split)
    images_name, labels_name = FILES[split]
    with _IdxFile(_file(directory, images_name), 0x00000803) as images, \
            _IdxFile(_file(directory, labels_name), 0x00000801) as labels:
        _check_split(directory, split, images, labels, image_size)
        x, y = images.read(), labels.read()
    if y.max() > 9:
        raise ValueError(f"{labels.path}: label {int(y.max())} is not a digit")
    return x, y


# -- downloading --------------------------------------------------------------------------

def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _found_sha256(path):
    return _sha256(path) if path.is_file() else "none (not a regular file)"


def _conflict_error(conflicts):
    what = "; ".join(f"{path} is not the canonical file (sha256 {found}, expected "
                     f"{expected or 'unknown: no checksum is known for this form'})"
                     for path, found, expected in conflicts)
    return DataConflictError(
        f"{what}. cygrad never downloads over or beside existing files, so nothing was "
        f"downloaded: complete the folder with your own files, or move these away to get MNIST",
        conflicts)


def _forms(root, name, sha256, raw_checksums):
    """(path, expected sha256) of the places where file `name` may already be: root and
    its mnist subfolder (find_mnist looks in both), .gz and plain."""
    plain = name[:-3] if name.endswith(".gz") else None
    for directory in (root, root / "mnist"):
        yield directory / name, sha256
        if plain is not None:
            yield directory / plain, raw_checksums.get(plain)


def _missing_files(root, checksums, raw_checksums):
    """Names in checksums not yet in root in a canonical form; DataConflictError (before
    anything is downloaded) if any existing form of any of them is not canonical."""
    missing, conflicts = [], []
    for name, sha256 in checksums.items():
        present = False
        for path, expected in _forms(root, name, sha256, raw_checksums):
            if not os.path.lexists(path):
                continue
            found = _found_sha256(path)
            if found != expected:
                conflicts.append((path, found, expected))
            elif path.parent == root:
                present = True
        if not present:
            missing.append(name)
    if conflicts:
        raise _conflict_error(conflicts)
    return missing


def _host():
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"


def _new_part(target):
    """(fd, path) of a new temp file beside target, named target.HOST.PID.RANDOM.part so a
    later run can tell whether its writer is dead. Mode 0666 minus the umask (no umask call)."""
    while True:
        path = target.with_name(f"{target.name}.{_host()}.{os.getpid()}.{secrets.token_hex(4)}.part")
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), path
        except FileExistsError:
            continue


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process; an absurd number
        return pid > 0
    return True


def _part_is_dead(path, name):
    """A .part file of `name` left by a download that is over: its writer (this host) is
    gone, or it has not been written to for STALE_PART_AGE seconds (any host, and the
    mkstemp-named parts of older cygrad versions)."""
    ours = re.fullmatch(re.escape(name) + r"\.([A-Za-z0-9-]+)\.(\d+)\.[0-9a-f]{8}\.part", path.name)
    legacy = re.fullmatch(re.escape(name) + r"\.[a-z0-9_]{8}\.part", path.name)
    if not (ours or legacy):
        return False  # not a name cygrad writes: never touched
    if ours and ours.group(1) == _host() and not _pid_alive(int(ours.group(2))):
        return True
    try:
        return time.time() - path.lstat().st_mtime > STALE_PART_AGE
    except FileNotFoundError:
        return False


def _remove_dead_parts(root, names):
    """Delete the .part files that killed or failed downloads of `names` left in root."""
    for name in names:
        for path in root.glob(glob.escape(name) + ".*.part"):
            if _part_is_dead(path, name):
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass


class _Deadline:
    """A wall-clock limit on one download: every connection opened through open() gets
    the time left as its socket timeout, and at the deadline a timer shuts the sockets
    down, which ends any read blocked on them (a per-read timeout alone lets a server
    that sends one byte a second hold a download forever)."""

    def __init__(self, seconds):
        self.end = time.monotonic() + seconds
        self.expired = False
        self._sockets, self._lock = [], threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()

    def left(self):
        return max(self.end - time.monotonic(), 1e-3)

    def watch(self, sock):
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shutdown(sock)

    def _expire(self):
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)

    def open(self, url):
        opener = urllib.request.build_opener(_DeadlineHTTPHandler(self), _DeadlineHTTPSHandler(self))
        return opener.open(url, timeout=self.left())


def _shutdown(sock):
    try:  # the plain socket's shutdown, also for an SSLSocket (whose own drops its TLS state)
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class _WatchedConnection:
    """An http.client connection that registers its socket with a _Deadline."""

    def __init__(self, *args, deadline, **kwargs):
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def connect(self):
        self.timeout = self.deadline.left()
        super().connect()
        self.deadline.watch(self.sock)


class _HTTPConnection(_WatchedConnection, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_WatchedConnection, http.client.HTTPSConnection):
    pass


class _DeadlineHandler:
    """A urllib handler whose connections are _WatchedConnections of one _Deadline."""

    def __init__(self, deadline):
        super().__init__()
        self.deadline = deadline

    def do_open(self, http_class, req, **kwargs):
        watched = _HTTPSConnection if issubclass(http_class, http.client.HTTPSConnection) \
            else _HTTPConnection
        return super().do_open(watched, req, deadline=self.deadline, **kwargs)


class _DeadlineHTTPHandler(_DeadlineHandler, urllib.request.HTTPHandler):
    pass


class _DeadlineHTTPSHandler(_DeadlineHandler, urllib.request.HTTPSHandler):
    pass


def _transfer(url, out, size, deadline):
    """Stream url into the file out; its sha256. Stops as soon as more than `size` bytes
    are announced or arrive (size: the exact size if known, else MAX_DOWNLOAD)."""
    limit = MAX_DOWNLOAD if size is None else size
    h, received = hashlib.sha256(), 0
    with deadline.open(url) as resp:
        length = resp.headers.get("Content-Length")
        if length is not None and int(length) > limit:
            raise DownloadError(f"the server announces {int(length)} bytes, more than the "
                                f"{limit} expected")
        read = getattr(resp, "read1", resp.read)  # read1: returns what has arrived, never waits for more
        while chunk := read(1 << 16):
            received += len(chunk)
            if received > limit:
                raise DownloadError(f"more than the {limit} bytes expected arrived; stopped")
            h.update(chunk)
            out.write(chunk)
    expected = size if size is not None else (None if length is None else int(length))
    if expected is not None and received != expected:
        raise DownloadError(f"truncated transfer: {received} of {expected} bytes")
    return h.hexdigest()


def _publish(part, target, sha256):
    """Give the verified part its final name without ever replacing a file: a hard link
    fails if target exists (someone put it there meanwhile: kept if canonical, else a
    conflict). File systems without hard links: a rename after a last look."""
    try:
        os.link(part, target)
    except FileExistsError:
        pass
    except OSError:
        if not os.path.lexists(target):
            os.replace(part, target)
            return
    else:
        return
    found = _found_sha256(target)
    if found != sha256:
        raise _conflict_error([(target, found, sha256)])


def _fetch(url, target, sha256, size, timeout):
    """Download url to target atomically within `timeout` seconds in all: a temp file in
    the same folder, size and sha256 checked, fsync, then published. Anything wrong
    raises and leaves no partial file."""
    fd, part = _new_part(target)
    try:
        with os.fdopen(fd, "wb") as out, _Deadline(timeout) as deadline:
            try:
                digest = _transfer(url, out, size, deadline)
            except Exception:
                if not deadline.expired:
                    raise
            if deadline.expired:  # the shutdown may also have looked like the end of the data
                raise DownloadError(f"not complete within the {timeout:g} s deadline "
                                    f"({out.tell()} bytes received)")
            if digest != sha256:
                raise DownloadError(f"sha256 mismatch: got {digest}, expected {sha256}")
            out.flush()
            os.fsync(out.fileno())
        _publish(part, target, sha256)
    finally:
        if os.path.lexists(part):
            os.unlink(part)


def _seconds(timeout):
    try:
        seconds = float(timeout)
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(timeout, bool) or not 0 < seconds < math.inf:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return seconds


def _mirrors(mirrors):
    if mirrors is not None:
        return list(mirrors)
    env = os.environ.get("CYGRAD_MNIST_MIRRORS", "")
    return [m.strip() for m in env.split(",") if m.strip()] or list(MIRRORS)


def _download(name, root, mirrors, sha256, size, timeout):
    errors = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        try:
            return _fetch(url, root / name, sha256, size, timeout)
        except DataConflictError:
            raise
        except Exception as e:  # network, HTTP, deadline, size, checksum: try the next mirror
            errors.append(f"{url}: {e}")
    raise DownloadError(f"could not download {name} into {root}:\n  " + "\n  ".join(errors))


def download_mnist(root=None, mirrors=None, timeout=120, checksums=None, *, sizes=None):
    """Fetch the MNIST .gz files missing from root (default ~/.cache/cygrad/mnist); return root.

    Existing files are never overwritten: a file present in canonical form (.gz or plain,
    by sha256) is kept, and if any file of the set is present in root or root/mnist but
    not canonical, DataConflictError names it with both hashes before anything is
    downloaded. Each missing file is tried on each mirror in turn (default MIRRORS, or
    $CYGRAD_MNIST_MIRRORS); an attempt gets `timeout` seconds in all (connecting and
    every read together) and at most the file's known size (SIZES); one that overruns,
    is truncated or has the wrong sha256 is discarded. DownloadError lists every failure.
    checksums (with sizes) replaces the canonical set, e.g. for another dataset in
    this format; without sizes each such file is capped at MAX_DOWNLOAD bytes.
    .part files that killed or failed downloads left in root are removed.
    """
    root = Path(root).expanduser() if root is not None else default_roots()[-1]
    timeout = _seconds(timeout)
    canonical = checksums is None
    checksums = dict(SHA256 if canonical else checksums)
    sizes = dict(SIZES if canonical and sizes is None else sizes or {})
    root.mkdir(parents=True, exist_ok=True)
    missing = _missing_files(root, checksums, RAW_SHA256 if canonical else {})
    _remove_dead_parts(root, checksums)
    for name in missing:
        _download(name, root, _mirrors(mirrors), checksums[name], sizes.get(name), timeout)
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
        """The shape of one transformed sample, given the raw sample shape."""
        return self.shape if self.shape is not None else tuple(shape)

    def __call__(self, x, out=None):
        x = np.asarray(x)
        if self.shape is not None and math.prod(x.shape[1:]) != math.prod(self.shape):
            raise ValueError(f"{self!r}: samples of shape {x.shape[1:]} have "
                             f"{math.prod(x.shape[1:])} values, not the {math.prod(self.shape)} "
                             f"of shape {self.shape}")
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
    """(train_loader, test_loader) over MNIST, normalised, samples (784,) or (1, 28, 28).

    Both splits are loaded (and checked: 28x28 images, not empty) before this returns,
    so bad data fails here with a ValueError naming the file, not during training.
    """
    shape = (784,) if flatten else (1, 28, 28)
    transform = Normalize(dtype=dtype, shape=shape)
    xtr, ytr = load_mnist(root, "train")
    xte, yte = load_mnist(root, "test")
    train = DataLoader(xtr, ytr, batch_size, shuffle=True, seed=seed, transform=transform)
    test = DataLoader(xte, yte, test_batch_size, shuffle=False, transform=transform)
    return train, test


__all__ = ["load_mnist", "download_mnist", "find_mnist", "read_idx", "Dataset", "TensorDataset",
           "Subset", "random_split", "default_collate", "DataLoader", "Normalize", "mnist_loaders",
           "DataNotFoundError", "DownloadError", "DataConflictError", "MIRRORS", "SHA256", "SIZES",
           "RAW_SHA256", "IMAGE_SIZE"]
