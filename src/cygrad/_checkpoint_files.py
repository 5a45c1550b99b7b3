"""The files around a checkpoint path: its lock, its temporary files, the path's checks.

- Lock: '<name>.lock' beside the checkpoint, held with an exclusive flock (fcntl) by the
  process writing the checkpoint (a training run for its whole length, cg.save for one
  write) and holding that process's id, so a second writer is told who has it. The
  kernel drops the lock when its process dies, so a lock file left by a killed process
  is simply taken over. Within a process the lock is shared (counted): cg.save inside a
  run that holds it takes it again.
- Temporary files: '<name>.cygrad-<pid>-<8 hex>.tmp', created with O_EXCL and mode 0o666
  (the umask applies as to any new file, nothing changes the process umask); a later
  save removes only such names whose process is gone, never a live writer's or a user's.
- check_path: what makes a path unusable (a folder, an unwritable folder, a name too
  long for the temporary file), said in one line before a run starts.
"""
import os
import re
import secrets
import tempfile
import threading
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

TEMP_MARK = ".cygrad-"
PID_DIGITS = 7  # Linux's largest pid_max is 4194304
TEMP_SUFFIX_LEN = len(TEMP_MARK) + PID_DIGITS + 1 + 8 + len(".tmp")
LOCK_SUFFIX = ".lock"
_POLL = 0.02  # seconds between tries while waiting for a lock


class CheckpointInUseError(OSError):
    """The checkpoint is being written by another process (its pid in .pid, 0 if unknown)."""


# -- permissions without touching the umask ----------------------------------------------------
def file_mode():
    """The permissions a newly created file gets under the current umask (0o666 & ~umask).
    The umask is read, never set: from /proc/self/status (Linux 4.7+), else from the mode
    of a probe file. (Setting it to read it, as os.umask forces, would briefly give files
    that other threads create meanwhile the wrong permissions.)"""
    umask = _umask_from_proc()
    if umask is None:
        return _probe_mode() & 0o666
    return 0o666 & ~umask


def _umask_from_proc():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _probe_mode():
    """The permission bits a file created with mode 0o777 gets: 0o777 & ~umask."""
    folder = tempfile.gettempdir()
    for _ in range(100):
        probe = os.path.join(folder, f"cygrad-umask-probe-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o777)
        except FileExistsError:
            continue
        try:
            return os.fstat(fd).st_mode & 0o777
        finally:
            os.close(fd)
            os.unlink(probe)
    raise FileExistsError(f"cannot create a probe file in {folder}")


# -- temporary files ---------------------------------------------------------------------------
def create_temp(path):
    """(fd, temp path): a new empty file beside `path` for writing it atomically, named
    '<name>.cygrad-<pid>-<random>.tmp' and created with mode 0o666, so that the umask and
    the folder's default ACL apply as to any new file."""
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.with_name(f"{path.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file beside {path}")


def remove_dead_temps(path):
    """Delete temporary files of earlier saves to `path` whose process has died (killed
    mid-write). A live process's (another thread of this one included) and any file not
    named as create_temp names them stay."""
    path = Path(path)
    pattern = re.compile(re.escape(path.name) + re.escape(TEMP_MARK) + r"(\d+)-[0-9a-f]{8}\.tmp")
    for name in os.listdir(path.parent):
        match = pattern.fullmatch(name)
        if match and not _alive(int(match.group(1))):
            try:
                os.unlink(path.parent / name)
            except FileNotFoundError:
                pass


def _alive(pid):
    """Whether process `pid` exists (conservatively True when that cannot be told)."""
    if pid == os.getpid() or os.name != "posix":  # (os.kill(pid, 0) terminates on Windows)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, another user's
        return True
    return True


# -- checks on the path ------------------------------------------------------------------------
def check_path(path):
    """Check that a checkpoint can be written to `path` (without creating anything): it is
    not a folder or another non-regular file; its folder exists, or the nearest existing
    parent is a writable folder that it can be created in; and its name leaves room for
    the temporary file's suffix within the filesystem's limit on names (NAME_MAX).
    Returns the path as a Path; raises ValueError with a one-line reason otherwise."""
    path = Path(path)
    if str(path) in ("", ".") or path.name in ("", ".", ".."):
        raise ValueError(f"checkpoint path {str(path)!r} names a folder, not a file")
    try:
        if path.exists() and not path.is_file():
            kind = "a folder" if path.is_dir() else "not a regular file"
            raise ValueError(f"checkpoint path {path} is {kind}")
        folder = _nearest_existing(path.parent)
        if not folder.is_dir():
            raise ValueError(f"checkpoint path {path}: {folder} is not a folder")
    except OSError as e:  # e.g. a folder on the way that may not be searched
        raise ValueError(f"checkpoint path {path}: {e.strerror or e}") from None
    _check_writable(path, folder)
    _check_name_length(path, folder)
    return path


def _nearest_existing(folder):
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _check_writable(path, folder):
    if _read_only(folder):
        raise ValueError(f"checkpoint path {path}: {folder} is on a read-only file system")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"checkpoint path {path}: no permission to write in {folder}")


def _read_only(folder):
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (AttributeError, OSError):  # no statvfs (Windows)
        return False


def _check_name_length(path, folder):
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):
        limit = 255
    length = len(os.fsencode(path.name))
    if length + TEMP_SUFFIX_LEN > limit:
        raise ValueError(f"checkpoint name {path.name[:40]}... is {length} bytes long: at most "
                         f"{limit - TEMP_SUFFIX_LEN} fit (the file system allows {limit}, and "
                         f"the temporary file written first adds {TEMP_SUFFIX_LEN})")


# -- the lock ----------------------------------------------------------------------------------
class _Held:
    """A lock this process holds: the file descriptor, and how many holders share it."""

    def __init__(self, fd, lock_path):
        self.fd, self.lock_path, self.count, self.pid = fd, lock_path, 1, os.getpid()


_held = {}  # real path of a lock file -> _Held
_held_guard = threading.Lock()


class CheckpointLock:
    """An exclusive lock on a checkpoint path, held by the one process that writes it.

        with cg.io.CheckpointLock("run.npz"):    # CheckpointInUseError if another has it
            ...                                  # train and cg.save("run.npz", ...)

    Acquiring checks the path first (check_path: ValueError with the reason), creates its
    folder and takes an flock on '<path>.lock', which then holds this process's id; a
    second process gets CheckpointInUseError ("... in use by pid N") at once, or after
    retrying for `timeout` seconds. Within one process the lock is shared: a nested
    CheckpointLock on the same path (cg.save inside a run that holds it) just counts.
    Release removes the lock file. cg.save takes the lock for the length of each write.
    """

    def __init__(self, path, *, timeout=0.0):
        self.path = Path(path)
        self.lock_path = self.path.parent / (self.path.name + LOCK_SUFFIX)
        self.timeout = float(timeout)
        self._key = None

    def acquire(self):
        """Take the lock (see the class); returns self."""
        if self._key is not None:
            raise RuntimeError(f"{self!r} is already acquired")
        check_path(self.path)
        key = os.path.realpath(self.lock_path)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                owner = _try_lock(key, self.lock_path)
            except OSError as e:
                raise OSError(e.errno, f"cannot lock checkpoint {self.path}: "
                                       f"{e.strerror or e}") from e
            if owner is None:
                self._key = key
                return self
            if time.monotonic() >= deadline:
                raise _in_use(self.path, self.lock_path, owner)
            time.sleep(_POLL)

    def release(self):
        """Give the lock up (the last holder in this process removes the lock file)."""
        key, self._key = self._key, None
        if key is None:
            return
        with _held_guard:
            held = _held.get(key)
            if held is None:
                return
            held.count -= 1
            if held.count == 0:
                del _held[key]
                _unlock(held)

    @property
    def locked(self):
        """Whether this object holds the lock."""
        return self._key is not None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()

    def __repr__(self):
        return f"CheckpointLock({str(self.path)!r}, locked={self.locked})"


def _try_lock(key, lock_path):
    """None when the lock is now held (or shared) by this process, else the owner's pid
    (0 when the lock file does not say)."""
    with _held_guard:
        held = _held.get(key)
        if held is not None and held.pid == os.getpid():
            held.count += 1
            return None
        _held.pop(key, None)  # inherited across fork: the parent's, not ours
        while True:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
            if not _lock_fd(fd):
                owner = _read_pid(fd)
                os.close(fd)
                return owner
            if _same_file(fd, lock_path):  # not removed by its previous owner meanwhile
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _held[key] = _Held(fd, lock_path)
        return None


def _lock_fd(fd):
    """Try to take an exclusive lock on the open file; False when another process has it."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except (BlockingIOError, PermissionError):
        return False
    except OSError as e:
        if fcntl is None:  # msvcrt reports a held lock as EACCES/EDEADLOCK
            return False
        raise e
    return True


def _same_file(fd, path):
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _read_pid(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return int(os.read(fd, 32).decode().strip() or 0)
    except (OSError, ValueError, UnicodeDecodeError):
        return 0


def _unlock(held):
    """Remove the lock file while still holding it (a process that opened it meanwhile sees
    another file at the path and tries again), then drop the lock."""
    try:
        if fcntl is not None and _same_file(held.fd, held.lock_path):
            os.unlink(held.lock_path)
    except OSError:  # left behind: the next owner takes it over
        pass
    finally:
        os.close(held.fd)
    if fcntl is None:  # Windows cannot remove an open file
        try:
            os.unlink(held.lock_path)
        except OSError:
            pass


def _in_use(path, lock_path, pid):
    who = f"pid {pid}" if pid else "another process"
    error = CheckpointInUseError(f"checkpoint {path} is in use by {who}, which is writing it "
                                 f"(lock file {lock_path}); wait for it to finish or write "
                                 "another file")
    error.pid = pid
    return error
