"""cygrad.data: IDX reading, download with checksums (local http.server), DataLoader, Normalize."""
import gzip
import hashlib
import http.server
import os
import resource
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

import cygrad as cg
from cygrad import data
from conftest import make_fake_mnist, write_idx

SRC = str(Path(cg.__file__).resolve().parents[1])  # the cygrad under test, for subprocesses


def test_load_fake_mnist_gz_and_plain(tmp_path):
    for gz in (True, False):
        root = make_fake_mnist(tmp_path / str(gz), n_train=50, n_test=20, gz=gz)
        x, y = cg.data.load_mnist(root, "train")
        assert x.shape == (50, 28, 28) and x.dtype == np.uint8
        assert y.shape == (50,) and y.dtype == np.uint8 and y.max() <= 9
        xt, yt = cg.data.load_mnist(root, split="test")
        assert xt.shape == (20, 28, 28) and yt.shape == (20,)


def test_root_defaults_to_env_then_mnist_subfolder(tmp_path, monkeypatch):
    make_fake_mnist(tmp_path / "mnist", n_train=10, n_test=10)
    monkeypatch.setenv("CYGRAD_DATA", str(tmp_path))
    x, _ = cg.data.load_mnist(split="test")
    assert x.shape == (10, 28, 28)


def test_missing_files_name_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("CYGRAD_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte") as e:
        cg.data.load_mnist()
    assert str(tmp_path / "nowhere") in str(e.value)
    with pytest.raises(ValueError, match="split"):
        cg.data.load_mnist(tmp_path, "validation")


def test_truncated_and_corrupt_idx_files_name_the_file(tmp_path):
    root = make_fake_mnist(tmp_path, n_train=30, n_test=10, gz=False)
    images = root / "train-images-idx3-ubyte"
    raw = images.read_bytes()
    images.write_bytes(raw[:-100])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte: truncated"):
        cg.data.load_mnist(root)
    images.write_bytes(b"\x00\x00\x08\x01" + raw[4:])
    with pytest.raises(ValueError, match="magic number"):
        cg.data.load_mnist(root)
    images.write_bytes(raw[:6])
    with pytest.raises(ValueError, match="truncated"):
        cg.data.load_mnist(root)
    images.unlink()
    gz = root / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(raw)[:-50])  # a cut-off gzip stream
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        cg.data.load_mnist(root)


def test_image_and_label_counts_must_agree(tmp_path):
    root = make_fake_mnist(tmp_path, n_train=30, n_test=10)
    write_idx(root / "train-labels-idx1-ubyte", np.zeros(29, np.uint8))
    with pytest.raises(ValueError, match="30 train images but 29 labels"):
        cg.data.load_mnist(root)


def test_real_mnist_headers_and_statistics(mnist_dir):
    x, y = cg.data.load_mnist(mnist_dir, "test")
    assert x.shape == (10000, 28, 28) and y.shape == (10000,)
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert abs(x.mean() - 33.7912) < 1e-3


# -- downloads ------------------------------------------------------------------------

@pytest.fixture
def server(tmp_path):
    """A local HTTP server: /good/NAME serves the file, /bad/NAME other bytes, /cut/NAME
    announces the full length but sends half and closes; the hostile ones: /slow/NAME
    sends one byte every 20 ms, /slowhead/NAME its headers that slowly (both give up
    after 4 s), /endless/NAME streams zeros without a length (at most 256 MiB),
    /long/NAME announces 1000 bytes more than it has. `hooks[kind]` (if set) runs before
    a request is answered; `sent[kind]` counts the body bytes written; /KIND/NAME serves
    folders[KIND]/NAME when KIND is in `folders`."""
    files = {name: hashlib.sha256(name.encode()).digest() * 300 for name in data.SHA256}
    hooks, sent, folders = {}, {}, {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            kind, _, name = self.path.strip("/").partition("/")
            if name not in files:
                self.send_error(404)
                return
            if kind in hooks:
                hooks[kind](name)
            body = (folders[kind] / name).read_bytes() if kind in folders else files[name]
            try:
                getattr(self, "_" + kind, self._plain)(kind, body)
            except OSError:  # the client hung up (as it should on hostile answers)
                self.close_connection = True

        def _plain(self, kind, body):
            self._headers(len(body))
            if kind == "bad":
                body = body[::-1]
            elif kind == "cut":
                body = body[:len(body) // 2]
                self.close_connection = True
            self._write(kind, body)

        def _headers(self, length=None):
            self.send_response(200)
            if length is not None:
                self.send_header("Content-Length", str(length))
            self.end_headers()

        def _write(self, kind, chunk):
            self.wfile.write(chunk)
            sent[kind] = sent.get(kind, 0) + len(chunk)

        def _slow(self, kind, body):
            self._headers(len(body))
            self._drip(kind, body)

        def _slowhead(self, kind, body):
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Pad: ")
            self._drip(kind, b"a" * 1000)

        def _drip(self, kind, body):
            end = time.monotonic() + 8
            for byte in body:
                if time.monotonic() > end:
                    break
                self._write(kind, bytes([byte]))
                time.sleep(0.02)
            self.close_connection = True

        def _endless(self, kind, body):
            self._headers()
            zeros = bytes(1 << 16)
            for _ in range(4096):
                self._write(kind, zeros)
            self.close_connection = True

        def _long(self, kind, body):
            self._headers(len(body) + 1000)
            self._write(kind, body + bytes(1000))

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield Server(url, files, {n: hashlib.sha256(b).hexdigest() for n, b in files.items()},
                 {n: len(b) for n, b in files.items()}, hooks, sent, folders)
    httpd.shutdown()
    httpd.server_close()


class Server(tuple):
    """(url, files, sums) as before, plus .sizes, .hooks, .sent and .folders."""

    def __new__(cls, url, files, sums, sizes, hooks, sent, folders):
        self = super().__new__(cls, (url, files, sums))
        self.sizes, self.hooks, self.sent, self.folders = sizes, hooks, sent, folders
        return self


def test_download_verifies_and_writes_atomically(server, tmp_path):
    url, files, sums = server
    root = cg.data.download_mnist(tmp_path / "dl", mirrors=[url + "/good/"], checksums=sums, timeout=10)
    for name, body in files.items():
        assert (root / name).read_bytes() == body
    assert sorted(p.name for p in root.iterdir()) == sorted(files)  # no temp files left
    # present and correct: not fetched again (a dead mirror is never contacted)
    cg.data.download_mnist(root, mirrors=["http://127.0.0.1:1/"], checksums=sums, timeout=10)


def test_download_wrong_checksum_fails_and_leaves_nothing(server, tmp_path):
    url, _, sums = server
    with pytest.raises(cg.data.DownloadError, match="sha256 mismatch"):
        cg.data.download_mnist(tmp_path / "dl", mirrors=[url + "/bad/"], checksums=sums, timeout=10)
    assert list((tmp_path / "dl").iterdir()) == []


def test_download_truncated_transfer_fails_then_next_mirror_is_used(server, tmp_path):
    url, files, sums = server
    with pytest.raises(cg.data.DownloadError) as e:
        cg.data.download_mnist(tmp_path / "dl", mirrors=[url + "/cut/"], checksums=sums, timeout=10)
    assert "/cut/" in str(e.value) and list((tmp_path / "dl").iterdir()) == []
    root = cg.data.download_mnist(tmp_path / "dl", mirrors=[url + "/cut/", url + "/good/"],
                                  checksums=sums, timeout=10)
    assert all((root / n).read_bytes() == b for n, b in files.items())


def test_download_mirrors_from_environment(server, tmp_path, monkeypatch):
    url, files, sums = server
    monkeypatch.setenv("CYGRAD_MNIST_MIRRORS", f"http://127.0.0.1:1/, {url}/good/")
    root = cg.data.download_mnist(tmp_path / "dl", checksums=sums, timeout=10)
    assert sorted(p.name for p in root.iterdir()) == sorted(files)


def test_default_checksums_are_the_canonical_files(mnist_dir):
    gz = sorted(mnist_dir.glob("*.gz"))
    if len(gz) != 4:
        pytest.skip("MNIST is not stored as the four canonical .gz files here")
    for path in gz:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == data.SHA256[path.name]


# -- issue 15, finding 2: files already in the data folder are never overwritten ---------

def _cli_data_lookup(root, **download):
    """What `cygrad train --data root` does to find its data (cli._find_data)."""
    try:
        data.find_mnist(root, "train")
        return data.find_mnist(root, "test")
    except data.DataNotFoundError:
        return data.download_mnist(root, **download)


def _without_test_files(root):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (root / name).unlink()
    return {p.name: p.read_bytes() for p in root.iterdir()}


def test_users_own_file_is_never_downloaded_over(server, tmp_path):
    url, files, sums = server
    root = make_fake_mnist(tmp_path / "mine", n_train=30, n_test=10)
    before = _without_test_files(root)
    with pytest.raises(data.DataConflictError) as e:
        _cli_data_lookup(root, mirrors=[url + "/good/"], checksums=sums, timeout=10)
    mine = root / "train-images-idx3-ubyte.gz"
    assert f"{mine} is not the canonical file (sha256 {data._sha256(mine)}, expected " \
           f"{sums[mine.name]})" in str(e.value) and "nothing was downloaded" in str(e.value)
    assert {p.name: p.read_bytes() for p in root.iterdir()} == before  # byte-identical, nothing added
    assert server.sent == {}  # no mirror was even asked


def test_train_leaves_the_users_file_byte_identical(server, mnist_dir, tmp_path, monkeypatch, capsys):
    from cygrad.cli import main
    server.folders["real"] = mnist_dir  # a mirror with the canonical files
    root = make_fake_mnist(tmp_path / "mine", n_train=30, n_test=10)
    before = _without_test_files(root)
    monkeypatch.setenv("CYGRAD_MNIST_MIRRORS", server[0] + "/real/")
    assert main(["train", "mlp", "--data", str(root), "--epochs", "1", "--no-progress"]) == 2
    assert {p.name: p.read_bytes() for p in root.iterdir()} == before
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz is not the canonical file" in err and "Traceback" not in err


def test_a_file_that_appears_during_the_download_is_kept(server, tmp_path):
    url, files, sums = server
    root = tmp_path / "dl"
    name = "train-labels-idx1-ubyte.gz"
    server.hooks["good"] = lambda asked: asked == name and (root / name).write_bytes(b"mine")
    with pytest.raises(data.DataConflictError, match=name):
        data.download_mnist(root, mirrors=[url + "/good/"], checksums=sums, timeout=10)
    assert (root / name).read_bytes() == b"mine"
    assert not list(root.glob("*.part"))
    server.hooks["good"] = lambda asked: asked == name and (root / name).write_bytes(files[name])
    (root / name).unlink()  # the same race with the canonical file: kept, no error
    data.download_mnist(root, mirrors=[url + "/good/"], checksums=sums, timeout=10)
    assert sorted(p.name for p in root.iterdir()) == sorted(files)


def test_canonical_files_count_in_either_form_and_subfolder_files_are_checked(mnist_dir, tmp_path):
    root = tmp_path / "mixed"
    root.mkdir()
    for name in data.SHA256:  # the test files decompressed, the train files as .gz
        raw = (mnist_dir / name).read_bytes()
        if name.startswith("t10k"):
            (root / name[:-3]).write_bytes(gzip.decompress(raw))
        else:
            (root / name).write_bytes(raw)
    before = sorted(root.iterdir())
    assert data.download_mnist(root, mirrors=["http://127.0.0.1:1/"], timeout=5) == root
    assert sorted(root.iterdir()) == before  # all present: nothing fetched or added
    labels = root / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-1] + b"\x03")
    with pytest.raises(data.DataConflictError, match=f"{labels} is not the canonical file"):
        data.download_mnist(root, mirrors=["http://127.0.0.1:1/"], timeout=5)
    sub = tmp_path / "sub"
    (sub / "mnist").mkdir(parents=True)
    (sub / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"my own")
    with pytest.raises(data.DataConflictError, match="mnist/train-images-idx3-ubyte.gz"):
        data.download_mnist(sub, mirrors=["http://127.0.0.1:1/"], timeout=5)
    assert sorted(p.name for p in sub.iterdir()) == ["mnist"]


# -- issue 15, finding 4: a deadline and a size cap per file, no .part leftovers -----------

def test_download_has_a_total_deadline_per_file(server, tmp_path):
    url, _, sums = server
    for kind in ("slow", "slowhead"):  # a byte every 20 ms: a per-read timeout never fires
        root = tmp_path / kind
        start = time.monotonic()
        with pytest.raises(data.DownloadError, match="not complete within the 1 s deadline"):
            data.download_mnist(root, mirrors=[f"{url}/{kind}/"], checksums=sums, timeout=1)
        assert time.monotonic() - start < 4, kind  # the server would go on for 8 s
        assert list(root.iterdir()) == []
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        data.download_mnist(tmp_path, timeout=float("inf"))


def test_download_is_capped_at_the_known_size(server, tmp_path):
    url, files, sums = server
    for kind, message in (("long", "announces 10600 bytes, more than the 9600 expected"),
                          ("endless", "more than the 9600 bytes expected arrived")):
        root = tmp_path / kind
        with pytest.raises(data.DownloadError, match=message):
            data.download_mnist(root, mirrors=[f"{url}/{kind}/"], checksums=sums,
                                sizes=server.sizes, timeout=20)
        assert list(root.iterdir()) == []
    assert server.sent.get("endless", 0) < 32 << 20  # stopped at the cap, not after the 256 MiB offered
    assert data.SIZES == {p.name: p.stat().st_size for p in _canonical_gz_or_skip()}


def _canonical_gz_or_skip():
    from conftest import mnist_candidates
    for folder in mnist_candidates():
        gz = sorted(Path(folder).glob("*-ubyte.gz"))
        if len(gz) == 4:
            return gz
    pytest.skip("the four canonical MNIST .gz files are not here")


def test_dead_part_files_are_removed_and_live_or_foreign_ones_kept(server, tmp_path):
    url, files, sums = server
    root = tmp_path / "dl"
    root.mkdir()
    name, host = "train-labels-idx1-ubyte.gz", data._host()
    dead_pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                  capture_output=True, text=True, check=True).stdout)
    killed = root / f"{name}.{host}.{dead_pid}.0123abcd.part"  # its writer was killed
    legacy = root / f"{name}.k3j_x9q2.part"  # an older cygrad's mkstemp name, idle for 2 h
    live = root / f"{name}.{host}.{os.getppid()}.89abcdef.part"  # a download in flight
    foreign = root / f"{name}.otherhost.{dead_pid}.0123abcd.part"  # another machine's, recent
    users = root / f"{name}.notes.part"  # not a name cygrad writes
    for path in (killed, legacy, live, foreign, users):
        path.write_bytes(b"x")
    os.utime(legacy, (time.time() - 7200,) * 2)
    data.download_mnist(root, mirrors=[url + "/good/"], checksums=sums, timeout=10)
    assert sorted(p.name for p in root.iterdir()) == \
        sorted([*files, live.name, foreign.name, users.name])


# -- issue 15, findings 5 and 9: IDX sizes checked before allocating ---------------------

def _gzip_stream(path, head, zeros_mib):
    """A .gz file whose content is `head` then zeros_mib MiB of zeros, written without
    holding them: after a full flush deflate restarts, so each MiB compresses alike."""
    mib = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(mib) + c.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(head)
    for _ in range(zeros_mib):
        crc = zlib.crc32(mib, crc)
    with open(path, "wb") as f:
        f.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + first)
        f.write(block * zeros_mib)
        f.write(c.flush() + struct.pack("<II", crc, (len(head) + (zeros_mib << 20)) & 0xFFFFFFFF))
    return path


def _idx_header(magic, dims):
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims)


RSS_PROBE = """
import resource, sys, time
from cygrad import data
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    data.load_mnist(sys.argv[1], "train")
except ValueError as e:
    print(e)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) >> 10, time.perf_counter() - start)
"""


def test_gzip_bomb_is_rejected_with_bounded_memory(tmp_path):
    bomb = _gzip_stream(tmp_path / "train-images-idx3-ubyte.gz",
                        _idx_header(0x803, (60000, 28, 28)), 1024)  # 1 GiB in about 1 MB
    assert bomb.stat().st_size < 1.1e6
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(60000, np.uint8))
    proc = subprocess.run([sys.executable, "-c", RSS_PROBE, str(tmp_path)], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, PYTHONPATH=SRC))
    message, numbers = proc.stdout.strip().splitlines()
    assert message.startswith(f"{bomb}: too long"), proc.stderr
    rss_mib, seconds = numbers.split()
    assert int(rss_mib) < 100, numbers  # the 47 MB the header declares, not the 1 GiB stream


def test_declared_sizes_are_checked_before_allocating(tmp_path):
    for dims, exact in (((2 ** 31, 2 ** 31, 4), 2 ** 64), ((2 ** 32 - 1,) * 3, (2 ** 32 - 1) ** 3)):
        path = tmp_path / "overflow.idx"
        path.write_bytes(_idx_header(0x803, dims))  # the int64 product wraps (to 0 for the first)
        with pytest.raises(ValueError, match=f"{path}: truncated, 16 bytes but its header "
                                             rf"\({dims[0]}, {dims[1]}, {dims[2]}\) says {exact + 16}"):
            cg.data.read_idx(path, 0x803)
    small = tmp_path / "small.gz"
    small.write_bytes(gzip.compress(_idx_header(0x803, (60000, 28, 28)) + bytes(100)))
    with pytest.raises(ValueError, match=rf"{small}: its header \(60000, 28, 28\) declares "
                                         r"47040016 bytes, more than a \d+-byte .gz file can hold"):
        cg.data.read_idx(small, 0x803)
    longer = tmp_path / "longer.gz"
    _gzip_stream(longer, _idx_header(0x801, (5,)) + bytes(5), 1)
    with pytest.raises(ValueError, match=f"{longer}: too long, it expands to more than the 13 bytes"):
        cg.data.read_idx(longer, 0x801)
    corrupt = tmp_path / "corrupt.gz"
    raw = bytearray(gzip.compress(_idx_header(0x801, (5000,)) + bytes(range(250)) * 20))
    raw[-8] ^= 0xFF  # the CRC: still checked although the reader stops at the declared size
    corrupt.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=f"{corrupt}: cannot read the file .*CRC check failed"):
        cg.data.read_idx(corrupt, 0x801)


def test_images_other_than_28x28_are_refused_at_load_naming_the_file(tmp_path):
    for shape in ((14, 56), (32, 32)):  # 14x56 has 784 pixels: it used to be reshaped silently
        root = make_fake_mnist(tmp_path / f"{shape[0]}x{shape[1]}", n_train=20, n_test=10)
        write_idx(root / "train-images-idx3-ubyte", np.zeros((20,) + shape, np.uint8))
        for flatten in (True, False):
            with pytest.raises(ValueError, match=f"train-images-idx3-ubyte.gz: images are "
                                                 f"{shape[0]}x{shape[1]}, expected 28x28"):
                cg.data.mnist_loaders(root, flatten=flatten)
        assert cg.data.load_mnist(root, image_size=None)[0].shape == (20,) + shape
        assert cg.data.load_mnist(root, image_size=shape)[0].shape == (20,) + shape
    with pytest.raises(ValueError, match="image_size must be"):
        cg.data.load_mnist(root, image_size=(28,))
    with pytest.raises(ValueError, match=r"samples of shape \(32, 32\) have 1024 values, not the "
                                         r"784 of shape \(1, 28, 28\)"):
        cg.data.Normalize(shape=(1, 28, 28))(np.zeros((2, 32, 32), np.uint8))


def test_empty_splits_are_refused_at_load(tmp_path, capsys):
    from cygrad.cli import main
    for split, prefix in (("train", "train"), ("test", "t10k")):
        root = make_fake_mnist(tmp_path / split, n_train=20, n_test=10)
        write_idx(root / f"{prefix}-images-idx3-ubyte", np.zeros((0, 28, 28), np.uint8))
        write_idx(root / f"{prefix}-labels-idx1-ubyte", np.zeros(0, np.uint8))
        message = f"{prefix}-images-idx3-ubyte.gz: holds no images, the {split} split is empty"
        with pytest.raises(ValueError, match=message):
            cg.data.mnist_loaders(root)
        assert main(["train", "mlp", "--data", str(root), "--epochs", "1", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert message in err and "epoch" not in err and "Traceback" not in err


# -- DataLoader and Normalize ---------------------------------------------------------

def test_dataloader_shuffles_deterministically_per_epoch():
    x = np.arange(100, dtype=np.float32).reshape(50, 2)
    y = np.arange(50)
    a = cg.data.DataLoader(x, y, 8, seed=3)
    b = cg.data.DataLoader(x, y, 8, seed=3)
    e0 = [yb.copy() for _, yb in a]
    e1 = [yb.copy() for _, yb in a]
    assert len(e0) == len(a) == 7 and len(e0[-1]) == 2
    assert np.array_equal(np.sort(np.concatenate(e0)), y)  # every sample once
    assert not np.array_equal(np.concatenate(e0), np.concatenate(e1))  # a new order per epoch
    b.set_epoch(1)
    assert np.array_equal(np.concatenate([yb.copy() for _, yb in b]), np.concatenate(e1))
    for xb, yb in cg.data.DataLoader(x, y, 8, seed=3):
        assert np.array_equal(xb[:, 0], 2 * yb)  # x and y stay paired


def test_dataloader_yields_independent_batches_and_drop_last():
    x = np.random.default_rng(0).random((20, 3))
    loader = cg.data.DataLoader(x, np.zeros(20, np.uint8), 6, shuffle=False, drop_last=True)
    batches = list(loader)
    assert len(batches) == len(loader) == 3
    # a batch stays valid while later ones are drawn (a graph may have saved it)
    for i, (xb, _) in enumerate(batches):
        assert np.array_equal(xb, x[6 * i:6 * i + 6])
        assert not np.shares_memory(xb, x)
    assert batches[0][1].dtype == np.int64
    xb, _ = next(iter(cg.data.DataLoader(x, np.zeros(20), 6, shuffle=False)))
    assert np.array_equal(xb, x[:6])
    with pytest.raises(ValueError, match="samples"):
        cg.data.DataLoader(x, np.zeros(19), 4)


def test_normalize_matches_the_formula_and_reshapes():
    x = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    t = cg.data.Normalize(shape=(784,))
    out = t(x)
    want = ((x.astype(np.float32) / np.float32(255)) - np.float32(0.1307)) / np.float32(0.3081)
    assert out.shape == (5, 784) and out.dtype == np.float32
    assert np.array_equal(out, want.reshape(5, 784))
    loader = cg.data.DataLoader(x, np.arange(5), 2, shuffle=False,
                                transform=cg.data.Normalize(dtype=np.float64, shape=(1, 28, 28)))
    xb, _ = next(iter(loader))
    assert xb.shape == (2, 1, 28, 28) and xb.dtype == np.float64


# -- Dataset, TensorDataset, Subset, random_split, the torch form of DataLoader ----------

class Squares(cg.data.Dataset):
    """A generic map-style dataset: sample i is (an array, a Python int, a float)."""

    def __init__(self, n):
        self.n = n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return np.full((2, 3), i, np.float32), i * i, i / 2

    def __len__(self):
        return self.n


def test_dataset_base_class_needs_getitem_and_len():
    with pytest.raises(NotImplementedError, match="__getitem__"):
        cg.data.Dataset()[0]
    with pytest.raises(NotImplementedError, match="__len__"):
        len(cg.data.Dataset())


def test_tensor_dataset_rows_and_first_dimension_check():
    x, y = np.arange(12.0).reshape(6, 2), np.arange(6)
    ds = cg.data.TensorDataset(x, cg.tensor(y))
    assert len(ds) == 6 and ds.tensors[0] is x  # kept, not copied
    xi, yi = ds[4]
    assert np.array_equal(xi, x[4]) and yi == 4
    with pytest.raises(ValueError, match=r"tensors\[1\] has 5 samples but tensors\[0\] has 6"):
        cg.data.TensorDataset(x, np.arange(5))
    with pytest.raises(ValueError, match="at least one"):
        cg.data.TensorDataset()
    with pytest.raises(ValueError, match="0-d"):
        cg.data.TensorDataset(np.float32(1))


def test_subset_indexes_its_dataset():
    ds = cg.data.TensorDataset(np.arange(10) * 10)
    sub = cg.data.Subset(ds, [7, 2, 5])
    assert len(sub) == 3 and sub[0][0] == 70 and sub[-1][0] == 50
    assert list(sub[[2, 0]][0]) == [50, 70]  # a list index: one lookup of the dataset
    inner = cg.data.Subset(cg.data.Subset(ds, [9, 8, 7, 6]), [3, 1])
    assert [inner[i][0] for i in range(2)] == [60, 80]


def test_random_split_lengths_match_torch():
    torch = pytest.importorskip("torch")
    for n, lengths in [(10, [3, 7]), (10, [0.3, 0.7]), (11, [0.5, 0.5]), (7, [0.2, 0.2, 0.6]),
                       (5, [1 / 3, 1 / 3, 1 / 3]), (100, [0.333, 0.333, 0.334])]:
        ours = cg.data.random_split(cg.data.TensorDataset(np.arange(n)), lengths, generator=0)
        theirs = torch.utils.data.random_split(torch.arange(n), lengths,
                                               generator=torch.Generator().manual_seed(0))
        assert [len(s) for s in ours] == [len(s) for s in theirs], (n, lengths)


def test_random_split_partitions_and_is_deterministic():
    ds = cg.data.TensorDataset(np.arange(50))
    a = cg.data.random_split(ds, [0.6, 0.4], generator=7)
    b = cg.data.random_split(ds, [30, 20], generator=np.random.default_rng(7))
    assert [len(s) for s in a] == [30, 20]
    values = [[s[i][0] for i in range(len(s))] for s in a]
    assert sorted(values[0] + values[1]) == list(range(50))  # disjoint and complete
    assert values != [list(range(30)), list(range(30, 50))]  # shuffled
    assert values == [[s[i][0] for i in range(len(s))] for s in b]
    other = cg.data.random_split(ds, [30, 20], generator=8)
    assert [other[0][i][0] for i in range(30)] != values[0]
    cg.manual_seed(3)
    g1 = [int(i) for i in cg.data.random_split(ds, [25, 25])[0].indices]
    cg.manual_seed(3)
    assert g1 == [int(i) for i in cg.data.random_split(ds, [25, 25])[0].indices]


def test_random_split_rejects_bad_lengths():
    ds = cg.data.TensorDataset(np.arange(10))
    with pytest.raises(ValueError, match="sum to 9 but the dataset has 10"):
        cg.data.random_split(ds, [4, 5])
    with pytest.raises(ValueError, match="integers"):
        cg.data.random_split(ds, [12, -2])
    with pytest.raises(ValueError, match="integers"):
        cg.data.random_split(ds, [2.5, 7.5])
    with pytest.warns(UserWarning, match="index 1 is 0"):
        parts = cg.data.random_split(ds, [1.0, 0.0])
    assert [len(p) for p in parts] == [10, 0]


def test_torch_form_tensor_dataset_takes_rows_without_python_loop(monkeypatch):
    x, y = np.arange(40.0).reshape(20, 2), np.arange(20, dtype=np.uint8)
    ds = cg.data.TensorDataset(x, y)
    monkeypatch.setattr(cg.data.TensorDataset, "__getitem__",
                        lambda self, i: pytest.fail("per-item __getitem__ on the fast path"))
    loader = cg.data.DataLoader(ds, 8)  # torch's defaults: shuffle=False, drop_last=False
    batches = list(loader)
    assert len(loader) == len(batches) == 3 and [len(b[1]) for b in batches] == [8, 8, 4]
    assert all(isinstance(b, tuple) and len(b) == 2 for b in batches)
    assert np.array_equal(batches[1][0], x[8:16]) and batches[1][1].dtype == np.uint8  # as torch
    for xb, yb in batches:
        assert xb.flags.c_contiguous and not np.shares_memory(xb, x)
    assert not np.shares_memory(batches[0][0], batches[1][0])


def test_torch_form_subset_of_tensor_dataset_shuffles_by_seed_and_epoch():
    x, y = np.arange(60.0).reshape(30, 2), np.arange(30)
    train, _ = cg.data.random_split(cg.data.TensorDataset(x, y), [20, 10], generator=1)
    inner = cg.data.Subset(train, list(range(0, 20, 2)))  # a Subset of a Subset
    for ds in (train, inner):
        loader = cg.data.DataLoader(ds, 4, True, seed=5, drop_last=True)
        e0 = [yb.copy() for _, yb in loader]
        e1 = np.concatenate([yb for _, yb in loader])
        assert len(e0) == len(loader) == len(ds) // 4
        want = [ds[i][1] for i in np.random.default_rng([5, 0]).permutation(len(ds))]
        assert np.array_equal(np.concatenate(e0), want[:len(e0) * 4])
        assert not np.array_equal(np.concatenate(e0), e1)
        loader.set_epoch(1)
        assert np.array_equal(np.concatenate([yb for _, yb in loader]), e1)
        for xb, yb in cg.data.DataLoader(ds, 3, shuffle=True):
            assert np.array_equal(xb[:, 0], 2 * yb)  # rows stay paired


def test_torch_form_generic_dataset_is_collated():
    loader = cg.data.DataLoader(Squares(7), batch_size=3, shuffle=True, seed=2)
    seen = []
    for arrays, squares, halves in loader:
        assert arrays.shape[1:] == (2, 3) and arrays.dtype == np.float32
        assert squares.dtype == np.int64 and halves.dtype == np.float64
        assert np.array_equal(arrays[:, 0, 0] ** 2, squares) and np.allclose(2 * halves, arrays[:, 1, 2])
        seen += squares.tolist()
    assert sorted(seen) == [i * i for i in range(7)] and len(loader) == 3
    xb, = next(iter(cg.data.DataLoader(cg.data.TensorDataset(np.ones((4, 2))), 4)))
    assert xb.shape == (4, 2)


def test_default_collate_like_torch():
    torch = pytest.importorskip("torch")
    samples = [{"x": np.full(3, i, np.float32), "n": i, "f": 0.5 * i, "b": i % 2 == 0,
                "s": f"s{i}", "t": (np.int16(i), [i, -i])} for i in range(4)]
    ours = cg.data.default_collate(samples)
    theirs = torch.utils.data.default_collate(samples)
    for key in ("x", "n", "f", "b"):
        assert ours[key].dtype == theirs[key].numpy().dtype, key
        assert np.array_equal(ours[key], theirs[key].numpy()), key
    assert ours["s"] == theirs["s"]
    assert ours["t"][0].dtype == np.int16 and np.array_equal(ours["t"][1][1], [0, -1, -2, -3])
    one = cg.data.default_collate([np.zeros(2), np.ones(2)])
    assert one.shape == (2, 2)
    with pytest.raises(ValueError, match="different shapes"):
        cg.data.default_collate([np.zeros(2), np.zeros(3)])
    with pytest.raises(TypeError, match="collate_fn"):
        cg.data.default_collate([object(), object()])


def test_torch_form_collate_fn_transform_and_getitems():
    class Batched(Squares):
        calls = 0

        def __getitems__(self, indices):  # torch >= 2.2: one call per batch
            Batched.calls += 1
            return [self[i] for i in indices]

    loader = cg.data.DataLoader(Batched(5), 2, collate_fn=lambda items: [s[1] for s in items])
    assert list(loader) == [[0, 1], [4, 9], [16]] and Batched.calls == 3
    loader = cg.data.DataLoader(cg.data.TensorDataset(np.arange(6, dtype=np.uint8)[:, None] * 50,
                                                      np.arange(6)), 3,
                                transform=cg.data.Normalize(shape=(1,)))
    xb, yb = next(iter(loader))
    assert xb.dtype == np.float32 and np.allclose(xb[:, 0], (np.arange(3) * 50 / 255 - 0.1307) / 0.3081)


def test_torch_form_argument_errors():
    ds = cg.data.TensorDataset(np.zeros((4, 2)))
    with pytest.raises(TypeError, match="batch_size must be an int"):
        cg.data.DataLoader(ds, 2.0)
    with pytest.raises(TypeError, match="array form"):
        cg.data.DataLoader([[1.0], [2.0]], [1, 2], 2)  # the array form needs an ndarray x
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        cg.data.DataLoader(ds, 0)
    with pytest.raises(TypeError, match="map-style"):
        cg.data.DataLoader(iter(range(3)), 2)
    with pytest.raises(TypeError):
        cg.data.DataLoader(ds, 2, False, True)  # torch's 4th positional is sampler: keyword only


def test_sharded_loader_over_the_torch_form():
    from cygrad.distributed import ShardedLoader
    x, y = np.arange(22.0).reshape(11, 2), np.arange(11)
    loader = cg.data.DataLoader(cg.data.TensorDataset(x, y), 2, shuffle=True, seed=4)
    shards = [ShardedLoader(loader, r, 3, pad=False) for r in range(3)]
    seen = np.concatenate([yb for s in shards for _, yb in s])
    assert np.array_equal(np.sort(seen), y)
    shards[1].set_epoch(0)
    assert np.array_equal(np.concatenate([yb for _, yb in shards[1]]), loader.order(0)[1::3])
