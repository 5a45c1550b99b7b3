"""cygrad.distributed: sharding (in process), the missing-mpi4py message, and real MPI runs
(`mpiexec -n 2 python tests/mpi_worker.py ...` in a subprocess, skipped without mpi4py
or mpiexec)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cygrad as cg
from cygrad import distributed
from cygrad.distributed import ShardedLoader

WORKER = Path(__file__).with_name("mpi_worker.py")
TIMEOUT = 60


def _mpiexec():
    here = Path(sys.executable).with_name("mpiexec")  # the mpich wheel installs it next to python
    return str(here) if here.exists() else shutil.which("mpiexec")


def _run(args, n=2):
    """`mpiexec -n n python args...` (plain python when n == 0), skipped without MPI."""
    if not distributed.available():
        pytest.skip("mpi4py is not installed (pip install 'cygrad[mpi]')")
    cmd = [sys.executable, *map(str, args)]
    if n:
        if _mpiexec() is None:
            pytest.skip("no mpiexec on PATH or next to the Python executable")
        cmd = [_mpiexec(), "-n", str(n), *cmd]
    env = dict(os.environ, OMP_NUM_THREADS="1",  # Open MPI refuses root without these
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env)


def _ok(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


# -- sharding (no MPI needed) ------------------------------------------------------------
@pytest.mark.parametrize("n,size,batch", [(32, 2, 4), (37, 3, 5), (5, 4, 2)])
def test_shards_cover_each_global_batch(n, size, batch):
    x, y = np.arange(n * 2.0).reshape(n, 2), np.arange(n)
    shards = [ShardedLoader(cg.data.DataLoader(x, y, batch, seed=7), r, size) for r in range(size)]
    full = cg.data.DataLoader(x, y, batch * size, seed=7)
    for epoch in (0, 3):
        for s in shards:
            s.set_epoch(epoch)
        full.set_epoch(epoch)
        per_rank = [[yb.copy() for _, yb in s] for s in shards]
        assert len({len(b) for b in per_rank}) == 1 and len(per_rank[0]) == len(shards[0])
        padded = np.resize(full.order(epoch), -(-n // size) * size)
        for i, (_, yb) in enumerate(full):
            union = np.sort(np.concatenate([b[i] for b in per_rank]))
            want = padded[i * batch * size:(i + 1) * batch * size]
            assert np.array_equal(union, np.sort(want))
            if n % (batch * size) == 0:
                assert np.array_equal(union, np.sort(yb))


def test_unpadded_shards_partition_the_data():
    x, y = np.zeros((11, 1)), np.arange(11)
    seen = np.concatenate([yb.copy() for r in range(3)
                           for _, yb in ShardedLoader(cg.data.DataLoader(x, y, 2), r, 3, pad=False)])
    assert np.array_equal(np.sort(seen), y)


def test_bad_rank():
    with pytest.raises(ValueError, match="rank"):
        ShardedLoader(cg.data.DataLoader(np.zeros((4, 1)), np.zeros(4), 2), 2, 2)


def test_without_mpi4py_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py -> ImportError
    monkeypatch.setattr(distributed, "_context", None)
    assert not distributed.available() and distributed.rank() == 0
    model = cg.models.mlp((4, 3), dtype=np.float64, seed=0)
    opt = cg.optim.SGD(model.parameters(), lr=0.1)
    loader = cg.data.DataLoader(np.zeros((4, 4)), np.zeros(4, np.int64), 2)
    with pytest.raises(ImportError, match=r"pip install 'cygrad\[mpi\]'"):
        cg.train.fit(model, cg.nn.CrossEntropyLoss(), opt, loader, epochs=1, progress=False,
                     distributed=True)
    cg.train.fit(model, cg.nn.CrossEntropyLoss(), opt, loader, epochs=1, progress=False)


# -- under mpiexec -n 2 ---------------------------------------------------------------------
def test_two_ranks_equal_one_process_with_twice_the_batch(tmp_path):
    _ok(_run([WORKER, "equiv", tmp_path / "r.npz"]))
    r = np.load(tmp_path / "r.npz")
    assert r["seeded_apart"] and r["same_start"]  # rank 0's weights broadcast to rank 1
    assert r["same_end"]  # the ranks stay bitwise identical
    assert r["steps"] == r["ref_steps"] == 20
    assert r["diff"] <= 1e-12
    assert abs(r["loss"] - r["ref_loss"]) <= 1e-12
    np.testing.assert_allclose(r["val"], r["ref_val"], rtol=0, atol=1e-12)


def test_a_rank_that_raises_stops_every_rank():
    proc = _run([WORKER, "raise"])
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "rank 1 stopped: ValueError: boom on rank 1 at step 3" in out
    assert "rank 0 stopped: RemoteError: rank 1 failed: ValueError: boom on rank 1" in out


def test_an_uncaught_exception_aborts_the_job():
    proc = _run([WORKER, "uncaught"])  # rank 0 waits in a Barrier: MPI_Abort ends it
    assert proc.returncode != 0
    assert "uncaught on rank 1" in proc.stderr


def test_rank_0_checkpoints_and_any_number_of_ranks_resumes(tmp_path):
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    proc = _ok(_run([WORKER, "ckpt", one, two]))
    assert "saves per rank [3, 0]" in proc.stdout
    # epoch 2 on 1 rank x batch 2B continues the 2 ranks x batch B run exactly
    _ok(_run([WORKER, "resume", one, tmp_path / "r.npy"], n=0))
    model = cg.models.mlp((12, 16, 10), dtype=np.float64)
    cg.load(two, model)
    resumed = np.load(tmp_path / "r.npy")
    assert np.abs(model.flat_buffers()[0] - resumed).max() <= 1e-12


def test_cli_distributed(fake_mnist, tmp_path):
    proc = _ok(_run(["-m", "cygrad", "train", "mlp", "--data", fake_mnist, "--epochs", "1",
                     "--no-progress", "--batch-size", "16", "--distributed",
                     "--checkpoint", tmp_path / "c.npz"]))
    assert proc.stdout.count("test accuracy") == 1  # rank 0 reports
    assert "batch 2 ranks x 16" in proc.stderr
    assert cg.io.read(tmp_path / "c.npz")[1]["meta"]["epoch"] == 1
    # resumed with another lr: rank 0 reads the settings, every rank applies the change
    proc = _ok(_run(["-m", "cygrad", "train", "mlp", "--epochs", "2", "--no-progress",
                     "--distributed", "--checkpoint", tmp_path / "c.npz", "--resume", "--lr", "0.01"]))
    assert proc.stderr.count("cygrad: resuming") == 1 and "lr 0.001 -> 0.01" in proc.stderr
    info = cg.io.read(tmp_path / "c.npz")[1]
    assert info["meta"]["epoch"] == 2 and info["meta"]["lr"] == 0.01 and info["meta"]["ranks"] == 2
    assert info["optimizer"]["param_groups"][0]["lr"] == 0.01


def test_cli_distributed_without_mpi4py(fake_mnist, monkeypatch, capsys):
    from cygrad.cli import main
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setattr(distributed, "_context", None)
    assert main(["train", "mlp", "--data", str(fake_mnist), "--distributed"]) == 2
    assert "pip install 'cygrad[mpi]'" in capsys.readouterr().err



# -- two "hosts": network namespaces joined by a veth pair -------------------------------
SSH = """#!/bin/sh
# hydra's ssh launcher calls: ssh [options] HOST COMMAND; run COMMAND in HOST's namespace
while [ "${1#-}" != "$1" ]; do shift; done
host=$1; shift
exec ip netns exec "$(cat "$(dirname "$0")/ns-$host")" sh -c "$*"
"""


def _ip(*args):
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


def _veth_bytes(ns, dev):
    lines = _ip("-n", ns, "-s", "link", "show", dev).stdout.splitlines()
    i = next(i for i, line in enumerate(lines) if line.split()[:1] == ["TX:"])
    return int(lines[i + 1].split()[0])  # the number under "bytes" on the TX line


@pytest.fixture
def two_hosts(tmp_path):
    """Namespaces cg<pid>a (10.77.x.1) and cg<pid>b (10.77.x.2) with a veth pair, and an
    ssh stand-in for hydra; skipped where that needs privileges this machine lacks."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root and iproute2 (ip netns)")
    if _mpiexec() is None or "hydra" not in os.path.realpath(_mpiexec()) and not \
            Path(_mpiexec()).with_name("mpiexec.hydra").exists():
        pytest.skip("needs MPICH's hydra mpiexec (its ssh launcher is replaced by ip netns exec)")
    tag, net = f"cg{os.getpid()}", f"10.77.{os.getpid() % 250}"
    names = [f"{tag}a", f"{tag}b"]
    hosts = [f"{net}.1", f"{net}.2"]
    try:
        steps = [("netns", "add", names[0]), ("netns", "add", names[1]),
                 ("link", "add", f"{tag}v0", "type", "veth", "peer", "name", f"{tag}v1")]
        for i in (0, 1):
            steps += [("link", "set", f"{tag}v{i}", "netns", names[i]),
                      ("-n", names[i], "addr", "add", hosts[i] + "/24", "dev", f"{tag}v{i}"),
                      ("-n", names[i], "link", "set", f"{tag}v{i}", "up"),
                      ("-n", names[i], "link", "set", "lo", "up")]
        for step in steps:
            r = _ip(*step)
            if r.returncode:
                pytest.skip(f"ip {' '.join(step)}: {r.stderr.strip()}")
        ssh = tmp_path / "netns-ssh"
        ssh.write_text(SSH)
        ssh.chmod(0o755)
        for name, host in zip(names, hosts):
            (tmp_path / f"ns-{host}").write_text(name)
        yield names, hosts, ssh, f"{tag}v0"
    finally:
        for name in names:
            _ip("netns", "del", name)  # removes the veth pair with it


def test_two_hosts_over_tcp_match_one_process(two_hosts, tmp_path):
    if not distributed.available():
        pytest.skip("mpi4py is not installed (pip install 'cygrad[mpi]')")
    names, hosts, ssh, dev = two_hosts
    before = _veth_bytes(names[0], dev)
    cmd = ["ip", "netns", "exec", names[0], _mpiexec(), "-launcher", "ssh", "-launcher-exec",
           str(ssh), "-hosts", ",".join(hosts), "-n", "2", "-ppn", "1",
           sys.executable, str(WORKER), "equiv", str(tmp_path / "r.npz")]
    env = dict(os.environ, OMP_NUM_THREADS="1", UCX_TLS="tcp,self",  # TCP, no shared memory
               MPIR_CVAR_CH4_NETMOD="ucx")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = np.load(tmp_path / "r.npz")
    assert r["same_start"] and r["same_end"] and r["diff"] <= 1e-12
    grad_bytes = 8 * (12 * 16 + 16 + 16 * 10 + 10)
    assert _veth_bytes(names[0], dev) - before >= 20 * grad_bytes  # the gradients went over veth


def test_ranks_with_different_dataset_sizes_stop_with_a_message():
    proc = _run([WORKER, "sizes"])
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    for rank in (0, 1):
        assert (f"rank {rank} stopped: ValueError: the ranks disagree on their datasets "
                "(samples, batch size, drop_last) (rank 0: (320, 8, False); rank 1: (312, 8, "
                "False))") in out
    assert "truncated" not in out.lower()


def test_a_rank_that_diverges_stops_every_rank_and_keeps_the_checkpoint(tmp_path):
    ck = tmp_path / "c.npz"
    proc = _run([WORKER, "diverge", ck])
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert ("rank 1 stopped: DivergenceError: training diverged: the loss is nan at epoch 2, "
            f"step 3 ({ck} keeps epoch 1)") in out
    assert "rank 0 stopped: RemoteError: rank 1 failed: DivergenceError" in out
    assert cg.io.read(ck)[1]["meta"]["epoch"] == 1
