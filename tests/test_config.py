import os
import subprocess
import sys

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
