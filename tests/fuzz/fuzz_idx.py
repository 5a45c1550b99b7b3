"""Fuzz the IDX reader (cygrad.data.read_idx): mutated headers, dims, lengths, gzip streams.
Any outcome but an array or ValueError is a bug, and so is an array larger than the file
can hold (its exact data size when plain, DEFLATE_MAX_RATIO times its size when gzipped).

    python tests/fuzz/fuzz_idx.py -seed=1 -max_total_time=600
"""
import gzip
import os
import struct
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    import numpy as np

    from cygrad import data

FOLDER = tempfile.mkdtemp(prefix="cygrad-fuzz-idx-")
MAGICS = (0x00000803, 0x00000801)


def test_one_input(raw):
    fdp = atheris.FuzzedDataProvider(raw)
    magic = MAGICS[fdp.ConsumeIntInRange(0, 1)]
    gz = fdp.ConsumeBool()
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    path = os.path.join(FOLDER, "f.idx" + (".gz" if gz else ""))
    with open(path, "wb") as f:
        f.write(gzip.compress(body, mtime=0) if gz and body[:1] != b"\x1f" else body)
    try:
        a = data.read_idx(path, magic)
    except ValueError:
        return
    assert a.dtype == np.uint8 and a.ndim == (magic & 0xFF)
    stored = os.path.getsize(path)
    header = 4 + 4 * a.ndim
    assert a.nbytes <= data.DEFLATE_MAX_RATIO * stored if gz else a.nbytes == stored - header


def _idx(shape):
    return struct.pack(">I", 0x800 | len(shape)) + struct.pack(f">{len(shape)}I", *shape) \
        + bytes(int(np.prod(shape)))


OVERFLOW = struct.pack(">4I", 0x803, 2 ** 31, 2 ** 31, 4)  # dims whose int64 product wraps to 0
SEEDS = [b"\x00\x00" + _idx((2, 3, 3)), b"\x01\x00" + _idx((5,)), b"\x00\x01" + _idx((1, 28, 28)),
         b"\x00\x01" + _idx((1, 2, 2)) + bytes(4096),  # a stream longer than its header says
         b"\x00\x00" + OVERFLOW, b"\x00\x01" + _idx((2, 14, 56))]

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _harness import main
    main(test_one_input, SEEDS)
