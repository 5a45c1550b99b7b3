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
