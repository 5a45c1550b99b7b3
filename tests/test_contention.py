"""Adaptive team size under CPU contention (issue 16): with another process busy on a CPU,
kernels fork fewer threads (csrc/cg_contention.h); results never change."""
import os
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

PROBE = textwrap.dedent("""
    import json, time, numpy as np
    import cygrad as cg
    from cygrad import _runtime
    x = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
    seen = []
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and len(seen) < 20:
        cg.kernels.matmul(x, x)          # a kernel call probes (at most every 50 ms)
        seen.append(_runtime.adaptive_threads())
        time.sleep(0.06)
    print(json.dumps({"seen": seen, "bits": cg.kernels.matmul(x, x).tobytes().hex()[:64]}))
""")


def _probe(adaptive):
    env = dict(os.environ, CYGRAD_ADAPTIVE_THREADS="1" if adaptive else "0")
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         env=env, timeout=60, check=True)
    import json
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_busy_process_leaves_fewer_free_cpus():
    cpus = len(os.sched_getaffinity(0))
    if cpus < 2:
        pytest.skip("needs 2 CPUs")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        seen = _probe(True)["seen"]
    finally:
        spinner.kill()
        spinner.wait()
    on, total, _ = seen[0]
    assert on and total == cpus
    # while the spinner runs, at least one CPU is taken by another process
    assert min(free for _, _, free in seen) <= cpus - 1


def test_adaptive_and_fixed_teams_give_the_same_bits():
    assert _probe(True)["bits"] == _probe(False)["bits"]
    assert _probe(False)["seen"][0][0] is False  # CYGRAD_ADAPTIVE_THREADS=0 turns it off


def test_sharing_a_process_with_torch_is_reported_and_behaves_as_documented():
    """torch imported first: cygrad runs on torch's libgomp, so torch.set_num_threads(1)
    limits cygrad's kernels too (the documented decision: cygrad honours the OpenMP
    runtime's limit, as it honours threadpoolctl's); results are unchanged."""
    pytest.importorskip("torch")
    code = textwrap.dedent("""
        import json, numpy as np, torch
        import cygrad as cg
        from cygrad import _runtime
        x = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
        before = (_runtime.effective_threads(), cg.kernels.matmul(x, x).tobytes())
        torch.set_num_threads(1)
        after = (_runtime.effective_threads(), cg.kernels.matmul(x, x).tobytes())
        print(json.dumps({"lib": cg.config()["openmp_runtime"], "threads": cg.get_num_threads(),
                          "team": [before[0], after[0]], "same": before[1] == after[1]}))
    """)
    env = dict(os.environ, CYGRAD_ADAPTIVE_THREADS="0", OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120, check=True)
    import json
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert "torch" in res["lib"]
    assert res["threads"] == 2 and res["team"] == [2, 1] and res["same"]
