"""Processes made by fork, forkserver and spawn after multi-threaded kernels (issue 15, finding 1).

GNU OpenMP's thread pool does not survive fork(): before the fix, a child forked after the
parent ran a 2-thread kernel hung forever in its first multi-threaded kernel. Each scenario
runs in its own session with a timeout and is killed (with all its children) on expiry,
so a regression fails here instead of hanging CI.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")

TIMEOUT = 120  # whole scenario, process start-up and imports included
CHILD_LIMIT = 10.0  # the bound for a forked child's kernels

# Kernels big enough for their OpenMP paths: matmul, relu (> 128K elements), conv2d.
# work() returns (kernel threads, serial after fork, RuntimeWarning seen, result bytes).
COMMON = textwrap.dedent("""
    import json, os, sys, time, warnings
    import numpy as np
    import cygrad as cg
    from cygrad import kernels as K

    def work(seed=0):
        rng = np.random.default_rng(seed)
        a = rng.standard_normal((384, 384)).astype(np.float32)
        big = rng.standard_normal(1 << 18).astype(np.float32)
        x = rng.standard_normal((8, 3, 32, 32)).astype(np.float32)
        w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with cg.threads(2):
                n = cg.get_num_threads()
                out = [K.matmul(a, a), K.relu(big), K.conv2d_forward(x, w, None, padding=1)]
        warned = any(issubclass(c.category, RuntimeWarning) for c in caught)
        return n, cg._runtime.serial_after_fork(), warned, [o.tobytes().hex() for o in out]
""")

OS_FORK = COMMON + textwrap.dedent("""
    # "after": the parent runs 2-thread kernels before forking; "before": it runs none
    parent = work() if sys.argv[1] == "after" else None
    r, w = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, json.dumps(work()).encode())
        os._exit(0)
    os.close(w)
    data = b"".join(iter(lambda: os.read(r, 1 << 20), b""))
    _, status = os.waitpid(pid, 0)
    child = json.loads(data)
    print(json.dumps({"elapsed": time.monotonic() - t0, "status": status, "child": child,
                      "same": parent is None or child[3] == parent[3]}))
""")

POOL = COMMON + textwrap.dedent("""
    import multiprocessing as mp
    if __name__ == "__main__":
        parent = work()
        ctx = mp.get_context(sys.argv[1])
        t0 = time.monotonic()
        with ctx.Pool(2) as pool:
            children = pool.map(work, [0, 0])
        print(json.dumps({"elapsed": time.monotonic() - t0, "children": children,
                          "same": all(c[3] == parent[3] for c in children)}))
""")


def _run(tmp_path, source, arg):
    """Run source as a script in a new session; kill the whole session after TIMEOUT."""
    script = tmp_path / "scenario.py"
    script.write_text(source)
    # OMP_NUM_THREADS=2: the parent's kernels use 2 threads even on a 1-CPU runner
    env = dict(os.environ, OMP_NUM_THREADS="2")
    proc = subprocess.Popen([sys.executable, "-W", "ignore::DeprecationWarning", str(script), arg],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"scenario {arg!r} hung: killed after {TIMEOUT} s")
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_fork_after_multithreaded_kernel_finishes_serially(tmp_path):
    res = _run(tmp_path, OS_FORK, "after")
    n, serial, warned, _ = res["child"]
    assert res["status"] == 0
    assert res["elapsed"] < CHILD_LIMIT
    assert res["same"]                      # bitwise the parent's results
    assert (n, serial, warned) == (1, True, True)   # one thread, and told so


def test_fork_before_any_multithreaded_kernel_keeps_threads(tmp_path):
    # No OpenMP pool exists yet in the parent: the child may start one safely.
    res = _run(tmp_path, OS_FORK, "before")
    n, serial, warned, _ = res["child"]
    assert res["status"] == 0 and res["elapsed"] < CHILD_LIMIT
    assert (serial, warned) == (False, False)
    assert n == 2


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_multiprocessing_pool_after_multithreaded_kernel(tmp_path, method):
    res = _run(tmp_path, POOL, method)
    assert res["same"]
    for n, serial, warned, _ in res["children"]:
        if method == "fork":                # forked from a parent that ran 2-thread kernels
            assert (n, serial, warned) == (1, True, True)
        else:                               # a fresh interpreter: all its threads
            assert (n, serial, warned) == (2, False, False)
    if method == "fork":
        assert res["elapsed"] < CHILD_LIMIT
