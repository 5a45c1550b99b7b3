"""Reading .npz archives (zip files of .npy members) in bounded memory.

np.load allocates a member's array as large as its .npy header declares and decompresses
into it, so a small file can ask for any amount of memory: 1 MB of deflated zeros
declares 1 GiB (a decompression bomb). Here the archive's directory is checked first
(member count, declared sizes), then each member's .npy header (at most MAX_HEADER bytes
are decompressed for it); the caller's `check` sees every member's key, shape and dtype
before a single data byte is decompressed. A member whose zip entry and .npy header
disagree on its size is refused rather than read.
"""
import contextlib
import math
import zipfile
from typing import NamedTuple

import numpy as np

NPY_MAGIC = b"\x93NUMPY"
MAX_HEADER = 10000  # numpy's own limit on a .npy header


class NpzError(ValueError):
    """Not a .npz archive of plain arrays, or more than the caller allows."""


class Member(NamedTuple):
    """One array of an archive as its headers declare it (nothing decompressed yet)."""
    key: str
    info: zipfile.ZipInfo
    shape: tuple
    dtype: np.dtype

    @property
    def nbytes(self):
        """Size of the array data (exact integer arithmetic: no overflow)."""
        return math.prod(self.shape) * self.dtype.itemsize


def read(path, *, max_members, max_bytes, check=None):
    """{key: array} of the .npz file `path`, refusing (NpzError) an archive with more than
    `max_members` members or `max_bytes` of declared array data, and whatever
    `check(members)` refuses: it gets the list of Member before any data is read."""
    with open(path, "rb") as f:
        if f.read(len(NPY_MAGIC)) == NPY_MAGIC:
            raise NpzError("a single NumPy array (.npy), not an archive of arrays (.npz)")
    with _guarded("not a .npz archive (a zip file)"):
        archive = zipfile.ZipFile(path)
    with archive:
        infos = archive.infolist()
        if len(infos) > max_members:
            raise NpzError(f"{len(infos):,} members, more than the {max_members:,} allowed")
        declared = sum(i.file_size for i in infos)
        if declared > max_bytes + len(infos) * MAX_HEADER:
            raise NpzError(_too_large(declared, max_bytes))
        members = [_member(archive, info) for info in infos]
        keys = [m.key for m in members]
        if len(set(keys)) != len(keys):
            raise NpzError(f"key {_first_repeat(keys)!r} appears twice")
        total = sum(m.nbytes for m in members)
        if total > max_bytes:
            raise NpzError(_too_large(total, max_bytes))
        if check is not None:
            check(members)
        return {m.key: _array(archive, m) for m in members}


def _too_large(declared, limit):
    return (f"its arrays declare {declared:,} bytes, more than the {limit:,} allowed "
            "(a decompression bomb?)")


def _first_repeat(keys):
    seen = set()
    for k in keys:
        if k in seen:
            return k
        seen.add(k)


def _member(archive, info):
    """The Member of a zip entry, from its .npy header; its size must be the entry's."""
    name = info.filename
    if not name.endswith(".npy"):
        raise NpzError(f"member {name!r} is not a .npy array")
    key = name[:-len(".npy")]
    with _guarded(f"key {key!r} cannot be read"):
        with archive.open(info) as f:
            shape, fortran, dtype = _header(f)
            offset = f.tell()
    member = Member(key, info, shape, dtype)
    if dtype.hasobject:
        raise NpzError(f"key {key!r} holds Python objects (reading them would need pickle)")
    if offset + member.nbytes != info.file_size:
        raise NpzError(f"key {key!r}: its .npy header declares {member.nbytes:,} bytes of data, "
                       f"its zip entry {info.file_size - offset:,}")
    return member


def _header(f):
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f, max_header_size=MAX_HEADER)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f, max_header_size=MAX_HEADER)
    raise NpzError(f".npy format version {version[0]}.{version[1]} is not supported")


def _array(archive, member):
    with _guarded(f"key {member.key!r} cannot be read"):
        with archive.open(member.info) as f:
            return np.lib.format.read_array(f, allow_pickle=False, max_header_size=MAX_HEADER)


@contextlib.contextmanager
def _guarded(what):
    """Whatever zipfile, zlib and numpy's header parser raise on a mangled archive
    (BadZipFile, zlib.error, EOFError, tokenize.TokenError, SyntaxError, ...) as NpzError."""
    try:
        yield
    except NpzError:
        raise
    except Exception as e:
        raise NpzError(f"{what}: {type(e).__name__}: {e}") from None
