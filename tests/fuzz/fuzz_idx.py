"""Fuzz the IDX reader (cygrad.data.read_idx): mutated headers, dims, lengths, gzip streams.
Any outcome but an array or ValueError is a bug.

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


def _idx(shape):
    return struct.pack(">I", 0x800 | len(shape)) + struct.pack(f">{len(shape)}I", *shape) \
        + bytes(int(np.prod(shape)))


SEEDS = [b"\x00\x00" + _idx((2, 3, 3)), b"\x01\x00" + _idx((5,)), b"\x00\x01" + _idx((1, 28, 28))]

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _harness import main
    main(test_one_input, SEEDS)
