"""Crash-safe checkpoints: SIGKILL during cg.save, and a disk that fills up mid-write.

A child process trains and saves in a loop, resuming from the checkpoint each time it is
started; the test kills it with SIGKILL after a seeded random delay, again and again
(every other time the delay starts when the save's temporary file appears, so that many
kills land inside the write itself).
After every kill the checkpoint on disk must load and verify (checksum), its step must
never go back, and at most one temporary file may be left over (the killed process's; a
lock file it leaves is taken over, the kernel having dropped its lock).
"""
import errno
import os
import random
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import cygrad as cg

KILLS = 24

CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import cygrad as cg

    path = sys.argv[1]
    model = cg.models.mlp(sizes=(784, 512, 512, 10), seed=0)   # ~8 MB with Adam state
    opt = cg.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = cg.nn.CrossEntropyLoss()
    step = cg.load(path, model, opt)["step"] if len(sys.argv) > 2 else 0
    rng = np.random.default_rng(step)
    x = rng.standard_normal((8, 784)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    print("ready", flush=True)
    while True:   # almost all the time goes into cg.save, where the kill should land
        step += 1
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        cg.save(path, model, opt, step=step)
""")


def _temps(folder, name):
    """cg.save's temporary files for `name`: <name>.cygrad-<pid>-<8 hex>.tmp"""
    pattern = re.escape(name) + r"\.cygrad-\d+-[0-9a-f]{8}\.tmp"
    return [p for p in os.listdir(folder) if re.fullmatch(pattern, p)]


def _wait_for_temp(folder, name, child, timeout=10.0):
    """Poll until a save has created its temporary file (True), or give up (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and child.poll() is None:
        if _temps(folder, name):
            return True
        time.sleep(0.0005)
    return False


def _fresh():
    model = cg.models.mlp(sizes=(784, 512, 512, 10), seed=1)
    return model, cg.optim.Adam(model.parameters(), lr=1e-3)


def _start(script, path, resume):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(cg.__file__).parents[1])]
                                        + [p for p in [env.get("PYTHONPATH")] if p])
    args = [sys.executable, str(script), str(path)] + (["resume"] if resume else [])
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    ready, _, _ = select.select([child.stdout], [], [], 60)
    line = child.stdout.readline() if ready else b""
    if line.strip() != b"ready":
        child.kill()
        raise AssertionError(f"child did not start: {child.stderr.read().decode()[-2000:]}")
    return child


def test_sigkill_during_save_keeps_a_loadable_checkpoint(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    path = tmp_path / "ck.npz"
    rnd = random.Random(1234)
    last_step, mid_write = 0, 0
    for cycle in range(KILLS):
        child = _start(script, path, resume=path.exists())
        if cycle % 2 and _wait_for_temp(tmp_path, path.name, child):
            delay = rnd.uniform(0.0, 0.01)   # inside the write, or just after the rename
        else:  # anywhere; the 1st cycle first waits for a checkpoint to exist
            delay = rnd.uniform(0.0, 0.08) + (0.3 if cycle == 0 else 0.0)
        try:
            child.wait(timeout=delay)
            raise AssertionError(f"child exited early: {child.stderr.read().decode()[-2000:]}")
        except subprocess.TimeoutExpired:
            pass
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
        child.stdout.close()
        child.stderr.close()
        temps = _temps(tmp_path, path.name)
        assert len(temps) <= 1, f"cycle {cycle}: stale temporary files pile up: {temps}"
        mid_write += len(temps)  # a temporary file left: killed inside the write
        if not path.exists():
            continue  # killed before its first save ever completed
        cg.io.read(path)  # format and checksum
        model, opt = _fresh()
        step = cg.load(path, model, opt)["step"]
        assert step >= last_step and opt.step_count == step
        last_step = step
    assert last_step > 0
    print(f"{mid_write} of {KILLS} kills landed mid-write; last step {last_step}")
    assert mid_write >= KILLS // 4, f"only {mid_write} of {KILLS} kills landed mid-write"
    model, opt = _fresh()
    cg.save(path, model, opt, step=0)  # the next save clears the leftover temporary file
    assert _temps(tmp_path, path.name) == []  # and takes over the killed child's lock file
    assert not (tmp_path / "ck.npz.lock").exists()


class _FullDisk:
    """A file object that accepts `room` bytes and then fails as a full disk does."""

    def __init__(self, f, room):
        self._f, self._room = f, room

    def write(self, data):
        if len(data) > self._room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_disk_full_raises_a_clear_error_and_keeps_the_previous_file(tmp_path, monkeypatch, where):
    model, opt = _fresh()
    path = cg.save(tmp_path / "ck.npz", model, opt, step=1)
    before = path.read_bytes()
    if where == "write":
        real_fdopen = os.fdopen
        monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _FullDisk(real_fdopen(fd, *a, **k), 4096))
    else:
        def full(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        monkeypatch.setattr(os, "fsync", full)
    opt.step()
    with pytest.raises(OSError, match=r"cannot save checkpoint .*ck\.npz: no space left on device; "
                                      r"the previous checkpoint is unchanged") as info:
        cg.save(path, model, opt, step=2)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ck.npz"]
    other, other_opt = _fresh()
    assert cg.load(path, other, other_opt)["step"] == 1
    assert np.array_equal(other.state_dict()["0.weight"],
                          cg.models.mlp(sizes=(784, 512, 512, 10), seed=1).state_dict()["0.weight"])


def test_a_new_save_to_a_new_file_that_fails_says_nothing_was_written(tmp_path, monkeypatch):
    model, opt = _fresh()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="nothing was written"):
        cg.save(tmp_path / "new.npz", model, opt)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []
