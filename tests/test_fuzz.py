"""Run each atheris harness in tests/fuzz briefly with a fixed seed (skipped without atheris).

Longer runs: python tests/fuzz/fuzz_<name>.py -seed=1 -max_total_time=600
CYGRAD_FUZZ_RUNS sets the number of inputs per harness here (default 2000).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

atheris = pytest.importorskip("atheris", reason="fuzzing needs atheris: pip install cygrad[fuzz]")

import cygrad  # noqa: E402

FUZZ = Path(__file__).resolve().parent / "fuzz"
RUNS = int(os.environ.get("CYGRAD_FUZZ_RUNS", "2000"))


@pytest.mark.parametrize("harness", ["kernels", "idx", "checkpoint"])
def test_harness_runs_clean(harness, tmp_path):
    paths = [str(Path(cygrad.__file__).parents[1]), str(Path(atheris.__file__).parents[1])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths + [os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="2")
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", str(FUZZ / f"fuzz_{harness}.py"), "-seed=1",
         f"-runs={RUNS}", "-print_final_stats=1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    tail = proc.stderr[-4000:]
    assert proc.returncode == 0, f"fuzz_{harness} found a crash (input saved in {tmp_path}):\n{tail}"
    assert f"Done {RUNS} runs" in proc.stderr, tail
