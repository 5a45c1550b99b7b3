import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import cygrad as cg


def test_show_config_and_info_cli(capsys):
    cg.show_config()
    out = capsys.readouterr().out
    assert f"cygrad {cg.__version__}" in out
    assert "openmp" in out and "isa" in out and "threads" in out
    res = subprocess.run([sys.executable, "-m", "cygrad", "info"], capture_output=True, text=True, check=True)
    assert "isa" in res.stdout and "openmp" in res.stdout


def test_set_and_restore_threads():
    n0 = cg.get_num_threads()
    with cg.threads(1):
        assert cg.get_num_threads() == 1
    assert cg.get_num_threads() == n0
    with pytest.raises(ValueError):
        cg.set_num_threads(0)
    with pytest.raises(TypeError):
        cg.set_num_threads(1.5)


@pytest.mark.skipif(not cg.config()["openmp"], reason="built without OpenMP")
def test_threadpoolctl_sees_openmp_runtime():
    apis = {info["internal_api"] for info in threadpool_info()}
    assert "openmp" in apis
    with threadpool_limits(1, user_api="openmp"):
        assert any(i["num_threads"] == 1 for i in threadpool_info() if i["internal_api"] == "openmp")


def test_malloc_tuning_is_reported_and_can_be_turned_off():
    code = "import cygrad; print(cygrad.config()['malloc'])"
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**env, "CYGRAD_MALLOC_TUNING": "0"})
    if sys.platform.startswith("linux"):
        assert "trim threshold 256 MiB" in on.stdout or "refused" in on.stdout
    assert "CYGRAD_MALLOC_TUNING=0" in off.stdout


def _in_thread(fn):
    """Run fn in a new Python thread; return what it returned (re-raise what it raised)."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    assert not t.is_alive(), "thread did not finish"
    if "error" in box:
        raise box["error"]
    return box["value"]


def test_threads_blocks_in_two_python_threads_overlap_safely():
    """Issue 15, 12a: A enters threads(1), B enters threads(2), A leaves, B leaves. The
    process-wide count used to end as B's saved value (1), and A saw B's count inside its
    block. Now each block is the calling thread's own override."""
    n0 = cg.get_num_threads()
    cg.set_num_threads(3)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a():
        with cg.threads(1):
            a_in.set()
            assert b_in.wait(10)
            seen["a_inside"] = cg.get_num_threads()
        a_out.set()

    def b():
        assert a_in.wait(10)
        with cg.threads(2):
            b_in.set()
            assert a_out.wait(10)
            seen["b_inside"] = cg.get_num_threads()
        seen["b_after"] = cg.get_num_threads()

    try:
        threads_ = [threading.Thread(target=f) for f in (a, b)]
        for t in threads_:
            t.start()
        for t in threads_:
            t.join(30)
        assert seen == {"a_inside": 1, "b_inside": 2, "b_after": 3}
        assert cg.get_num_threads() == 3
    finally:
        cg.set_num_threads(n0)


def test_threads_is_per_thread_and_nests():
    n0 = cg.get_num_threads()
    try:
        cg.set_num_threads(3)
        with cg.threads(1):
            assert _in_thread(cg.get_num_threads) == 3      # other threads: the process count
            with cg.threads(2):
                assert cg.get_num_threads() == 2
                cg.set_num_threads(4)                       # process-wide; the block keeps 2
                assert cg.get_num_threads() == 2
            assert cg.get_num_threads() == 1
        assert cg.get_num_threads() == 4
        with pytest.raises(RuntimeError), cg.threads(2):    # restored on an exception too
            raise RuntimeError
        assert cg.get_num_threads() == 4
        for bad, exc in ((0, ValueError), (1.5, TypeError), (True, TypeError)):
            with pytest.raises(exc), cg.threads(bad):
                pass
        assert cg.get_num_threads() == 4
    finally:
        cg.set_num_threads(n0)


def test_threads_in_many_python_threads_give_exact_kernel_results():
    """Eight threads switching counts concurrently: each gets its own count and the
    kernels' results stay bitwise those of a serial run (any thread count gives the same)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((256, 256)).astype(np.float32)
    with cg.threads(1):
        expected = cg.kernels.matmul(a, a, trans_b=True).tobytes()
    n0 = cg.get_num_threads()
    barrier = threading.Barrier(8)

    def worker(i):
        def run():
            barrier.wait(10)
            for k in range(20):
                n = 1 + (i + k) % 2
                with cg.threads(n):
                    if cg.get_num_threads() != n:
                        return False
                    if cg.kernels.matmul(a, a, trans_b=True).tobytes() != expected:
                        return False
            return True
        return run

    results = []
    ts = [threading.Thread(target=lambda i=i: results.append(worker(i)())) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert results == [True] * 8
    assert cg.get_num_threads() == n0
