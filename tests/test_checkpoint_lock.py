"""Writing one checkpoint path safely (issue 15, findings 6, 7, 9a): the lock that keeps a
second writer out, temporary files only cygrad's own dead ones are cleaned from, no umask
changes, and a path checked before a run starts."""
import os
import re
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import cygrad as cg
from cygrad import _checkpoint_files

SRC = str(Path(cg.__file__).parents[1])


def _model():
    model = cg.models.mlp(sizes=(6, 5, 3), dtype=np.float64, seed=0)
    return model, cg.optim.Adam(model.parameters(), lr=0.01)


def _python(code, *args, **kwargs):
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                            env=env, text=True, **kwargs)


HOLDER = """
    import sys
    import cygrad as cg
    with cg.io.CheckpointLock(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.readline()
"""


@pytest.fixture
def holder(tmp_path):
    """A process that holds the lock on tmp_path/ck.npz until its stdin is closed."""
    proc = _python(HOLDER, tmp_path / "ck.npz", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    proc.stdin.close()
    proc.wait(timeout=30)


# -- the lock (finding 6) ------------------------------------------------------------------------
def test_a_second_writer_is_told_which_process_has_the_checkpoint(tmp_path, holder, monkeypatch):
    path = tmp_path / "ck.npz"
    model, opt = _model()
    message = rf"checkpoint .*ck\.npz is in use by pid {holder.pid}, which is writing it"
    with pytest.raises(cg.io.CheckpointInUseError, match=message) as info:
        cg.io.CheckpointLock(path).acquire()
    assert info.value.pid == holder.pid and isinstance(info.value, OSError)
    monkeypatch.setattr(cg.io, "SAVE_LOCK_TIMEOUT", 0.3)  # cg.save waits that long, then gives up
    t0 = time.monotonic()
    with pytest.raises(cg.io.CheckpointInUseError, match=message):
        cg.save(path, model, opt)
    assert time.monotonic() - t0 >= 0.3 and not path.exists()
    holder.stdin.close()
    assert holder.wait(timeout=30) == 0
    assert not (tmp_path / "ck.npz.lock").exists()  # the owner removed it
    with cg.io.CheckpointLock(path):
        cg.save(path, model, opt)
    assert sorted(os.listdir(tmp_path)) == ["ck.npz"]


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path, holder):
    holder.kill()
    holder.wait(timeout=30)
    assert (tmp_path / "ck.npz.lock").read_text() == f"{holder.pid}\n"  # left behind
    model, opt = _model()
    cg.save(tmp_path / "ck.npz", model, opt)  # the kernel dropped the dead process's lock
    assert sorted(os.listdir(tmp_path)) == ["ck.npz"]


def test_the_lock_is_shared_within_a_process_and_waits_for_a_save(tmp_path):
    path = tmp_path / "ck.npz"
    model, opt = _model()
    with cg.io.CheckpointLock(path) as outer:
        assert outer.locked and (tmp_path / "ck.npz.lock").read_text() == f"{os.getpid()}\n"
        with cg.io.CheckpointLock(path):  # a run holds it; fit's saves take it again
            cg.save(path, model, opt, epoch=1)
        assert (tmp_path / "ck.npz.lock").exists()  # the outer holder still has it
        with pytest.raises(RuntimeError, match="already acquired"):
            outer.acquire()
    assert not outer.locked and sorted(os.listdir(tmp_path)) == ["ck.npz"]
    saver = _python("""
        import sys
        import numpy as np
        import cygrad as cg
        model = cg.models.mlp(sizes=(6, 5, 3), dtype=np.float64, seed=0)
        cg.save(sys.argv[1], model, epoch=2)
    """, path)
    with cg.io.CheckpointLock(path):  # a save in another process waits for a short holder
        time.sleep(0.5)
        assert cg.io.read(path)[1]["meta"]["epoch"] == 1
    assert saver.wait(timeout=60) == 0
    assert cg.io.read(path)[1]["meta"]["epoch"] == 2


SAVER = """
    import sys
    import numpy as np
    import cygrad as cg
    model = cg.models.mlp(sizes=(784, 64, 10), seed=int(sys.argv[2]))
    opt = cg.optim.Adam(model.parameters())
    failed = 0
    for step in range(30):
        try:
            cg.save(sys.argv[1], model, opt, writer=int(sys.argv[2]), step=step)
        except OSError as e:
            failed += 1
            print(e, file=sys.stderr)
    print(failed)
"""


def test_two_processes_saving_one_path_both_succeed(tmp_path):
    """Before: each save deleted the other's in-flight temporary file as 'stale', and 29 of
    60 saves failed with 'No such file or directory'."""
    path = tmp_path / "ck.npz"
    procs = [_python(SAVER, path, i, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in (1, 2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [out.strip() for out, _ in results] == ["0", "0"], [err[-1000:] for _, err in results]
    assert cg.io.read(path)[1]["meta"]["step"] == 29
    assert sorted(os.listdir(tmp_path)) == ["ck.npz"]


RUN = """
    import os, sys
    import numpy as np
    import cygrad as cg

    class UntilTold:  # trains until the file sys.argv[2] exists
        def on_epoch_end(self, epoch, record):
            return os.path.exists(sys.argv[2])
    path = sys.argv[1]
    x = np.random.default_rng(0).standard_normal((32, 6))
    model = cg.models.mlp(sizes=(6, 5, 2), dtype=np.float64, seed=0)
    opt = cg.optim.Adam(model.parameters())
    try:
        with cg.io.CheckpointLock(path):  # what fit / the CLI are to do for the whole run
            print("training", flush=True)
            cg.train.fit(model, cg.nn.CrossEntropyLoss(), opt,
                         cg.data.DataLoader(x, (x[:, 0] > 0).astype(np.int64), 8, seed=0),
                         epochs=100000, progress=False, checkpoint=path, callbacks=[UntilTold()])
    except cg.io.CheckpointInUseError as e:
        print(e)
        sys.exit(3)
    print("done", flush=True)
"""


def test_two_runs_on_one_checkpoint_give_one_clear_error_and_one_intact_run(tmp_path):
    """Before: both trained, deleting each other's temporary files, and one died at epoch 20."""
    path, stop = tmp_path / "ck.npz", tmp_path / "stop"
    first = _python(RUN, path, stop, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert first.stdout.readline().strip() == "training"
    second = _python(RUN, path, stop, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 3, err[-2000:]
    assert f"is in use by pid {first.pid}" in out and "training" not in out
    stop.write_text("")
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0 and out.strip() == "done", err[-2000:]
    model = cg.models.mlp(sizes=(6, 5, 2), dtype=np.float64)
    epochs = cg.load(path, model, cg.optim.Adam(model.parameters()))["epoch"]
    assert epochs >= 1 and sorted(os.listdir(tmp_path)) == ["ck.npz", "stop"]


# -- temporary files (finding 6) -----------------------------------------------------------------
def test_cleanup_removes_only_dead_writers_temporary_files(tmp_path):
    path = tmp_path / "ck.npz"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    alive = _python("import sys; sys.stdin.readline()", stdin=subprocess.PIPE)
    try:
        mine = {"ck.npz.abcdefgh.tmp": b"user 1",  # mkstemp's names: cleaned before
                "ck.npz.cygrad-notes.tmp": b"user 2",
                f"ck.npz.cygrad-{alive.pid}-0123abcd.tmp": b"a live writer's",
                f"ck.npz.cygrad-{os.getpid()}-0123abcd.tmp": b"another thread's",
                f"other.npz.cygrad-{dead}-0123abcd.tmp": b"another path's"}
        for name, content in mine.items():
            (tmp_path / name).write_bytes(content)
        (tmp_path / f"ck.npz.cygrad-{dead}-0123abcd.tmp").write_bytes(b"a killed writer's")
        model, opt = _model()
        cg.save(path, model, opt)
        assert sorted(os.listdir(tmp_path)) == sorted(["ck.npz", *mine])
        assert all((tmp_path / name).read_bytes() == content for name, content in mine.items())
    finally:
        alive.stdin.close()
        alive.wait(timeout=30)


def test_temporary_names_are_unique_per_process_and_call(tmp_path):
    path = tmp_path / "ck.npz"
    names = set()
    for _ in range(20):
        fd, tmp = _checkpoint_files.create_temp(path)
        os.close(fd)
        assert re.fullmatch(rf"ck\.npz\.cygrad-{os.getpid()}-[0-9a-f]{{8}}\.tmp", tmp.name)
        names.add(tmp.name)
    assert len(names) == 20


# -- no umask changes (finding 7) ----------------------------------------------------------------
def _umask():
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("Umask:")).split()[1], 8)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield 0o022
    os.umask(old)


def test_the_umask_is_never_set(tmp_path, umask_022, monkeypatch):
    def forbidden(mask):
        raise AssertionError("os.umask called: it changes the umask of every thread")
    monkeypatch.setattr(os, "umask", forbidden)
    assert cg.io.file_mode() == 0o644
    monkeypatch.setattr(_checkpoint_files, "_umask_from_proc", lambda: None)  # no /proc
    assert cg.io.file_mode() == 0o644
    model, opt = _model()
    path = cg.save(tmp_path / "ck.npz", model, opt)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # as any new file


def test_files_other_threads_create_during_saves_keep_their_mode(tmp_path, umask_022):
    """Saves, and file_mode() (what data.py and the CLI call) in a loop, while three
    threads create files. Before: file_mode() set the umask to 0 for a moment, and files
    created meanwhile got mode 0666 (about 1 in 6 here)."""
    stop = threading.Event()
    modes, calls, folder = [], [0], tmp_path / "others"
    folder.mkdir()

    def create_files(k):
        i = 0
        while not stop.is_set():
            name = folder / f"{k}-{i}"
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT, 0o666))
            modes.append(stat.S_IMODE(os.stat(name).st_mode))
            os.unlink(name)
            i += 1

    def ask_file_mode():
        while not stop.is_set():
            assert cg.io.file_mode() == 0o644
            calls[0] += 1
    threads = [threading.Thread(target=create_files, args=(k,)) for k in range(3)]
    threads.append(threading.Thread(target=ask_file_mode))
    for t in threads:
        t.start()
    model, opt = _model()
    saves, end = 0, time.monotonic() + 2.0
    try:
        while time.monotonic() < end:
            cg.save(tmp_path / "ck.npz", model, opt)
            saves += 1
    finally:
        stop.set()
        for t in threads:
            t.join()
    wrong = sum(m != 0o644 for m in modes)
    print(f"{saves} saves, {calls[0]} file_mode() calls, {len(modes)} files created by other "
          f"threads, {wrong} with a wrong mode")
    assert saves > 10 and calls[0] > 1000 and len(modes) > 1000
    assert wrong == 0 and _umask() == 0o022


# -- the path, checked before a run (finding 9a) --------------------------------------------------
def test_check_path_accepts_a_new_file_in_new_folders(tmp_path):
    path = tmp_path / "runs" / "a" / "ck.npz"
    assert cg.io.check_path(str(path)) == path
    assert not (tmp_path / "runs").exists()  # nothing created
    model, opt = _model()
    cg.save(path, model, opt)
    assert cg.io.check_path(path) == path  # an existing checkpoint is fine too


def _under_a_file(folder, *parts):
    (folder / "file").write_text("x")
    return Path(folder, "file", *parts)


@pytest.mark.parametrize("make, message", [
    (lambda d: d, "is a folder"),
    (lambda d: Path(""), "names a folder"),
    (lambda d: _under_a_file(d, "ck.npz"), r"file is not a folder"),  # before: [Errno 17]
    (lambda d: _under_a_file(d, "sub", "ck.npz"), r"file is not a folder"),
    (lambda d: d / ("n" * 250), "is 250 bytes long: at most 227 fit"),  # before: NAME_MAX
])
def test_check_path_refuses_unusable_paths_in_one_line(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ValueError, match=message) as info:
        cg.io.check_path(path)
    assert "\n" not in str(info.value)
    model, opt = _model()
    with pytest.raises(ValueError, match=message):  # what cg.save says too, writing nothing
        cg.save(path, model, opt)
    with pytest.raises(ValueError, match=message):
        cg.io.CheckpointLock(path).acquire()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("*.lock"))


def test_the_longest_name_that_fits_works(tmp_path):
    model, opt = _model()
    path = cg.save(tmp_path / ("n" * 227), model, opt)
    assert cg.load(path, model, opt) == {}


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_check_path_refuses_a_folder_without_write_permission(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(ValueError, match="no permission to write in .*ro"):
            cg.io.check_path(folder / "sub" / "ck.npz")
    finally:
        folder.chmod(0o755)


def _read_only_folder():
    """A folder on a read-only mount, if this machine has one."""
    with open("/proc/mounts") as f:
        for line in f:
            point, options = line.split()[1], line.split()[3].split(",")
            if "ro" in options and os.path.isdir(point):
                return Path(point)
    return None


@pytest.mark.skipif(not os.path.exists("/proc/mounts") or _read_only_folder() is None,
                    reason="no read-only mount")
def test_check_path_refuses_a_read_only_file_system():
    folder = _read_only_folder()
    with pytest.raises(ValueError, match="is on a read-only file system"):
        cg.io.check_path(folder / "ck.npz")
