"""cygrad.data: IDX reading, download with checksums (local http.server), DataLoader, Normalize."""
import gzip
import hashlib
import http.server
import threading

import numpy as np
import pytest

import cygrad as cg
from cygrad import data
from conftest import make_fake_mnist, write_idx


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
    announces the full length but sends half and closes."""
    files = {name: hashlib.sha256(name.encode()).digest() * 300 for name in data.SHA256}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            kind, _, name = self.path.strip("/").partition("/")
            if name not in files:
                self.send_error(404)
                return
            body = files[name]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if kind == "bad":
                body = body[::-1]
            elif kind == "cut":
                body = body[:len(body) // 2]
                self.close_connection = True
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield url, files, {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}
    httpd.shutdown()
    httpd.server_close()


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
