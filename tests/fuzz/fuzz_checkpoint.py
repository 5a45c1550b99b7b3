"""Fuzz cg.load with mutated checkpoints. The first byte picks what the rest is:
- even: the bytes of a file (a real checkpoint's, flipped, cut, spliced);
- odd: the JSON text of __meta__, put into a real checkpoint whose checksum is then
  recomputed (as anyone can: it is not a signature), so the mutations reach the
  validation of the optimizer's and the scheduler's state behind the checksum.
cg.load must restore everything or raise CheckpointError, and a failed load must leave
the model, the optimizer and the scheduler untouched.

    python tests/fuzz/fuzz_checkpoint.py -seed=1 -max_total_time=600
"""
import io
import json
import os
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    import numpy as np

    import cygrad as cg

FOLDER = tempfile.mkdtemp(prefix="cygrad-fuzz-ck-")
PATH = os.path.join(FOLDER, "ck.npz")


def _setup():
    model = cg.models.mlp(sizes=(3, 4, 2), dtype=np.float64, seed=0)
    opt = cg.optim.Adam(model.parameters(), lr=0.01)
    return model, opt, cg.optim.lr_scheduler.StepLR(opt, 2)


def _snapshot(model, opt, sched):
    arrays = {}
    opt_json = cg.io._split_optimizer_state(opt.state_dict(), arrays)
    return ([v.copy() for v in model.state_dict().values()], json.dumps(opt_json),
            [v.copy() for v in arrays.values()], json.dumps(sched.state_dict()))


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a[0] + a[2], b[0] + b[2])) and \
        a[1] == b[1] and a[3] == b[3]


def _signed(meta_text):
    """A real checkpoint's arrays with `meta_text` as __meta__, checksum recomputed."""
    arrays = dict(SIGNED_ARRAYS, __meta__=np.array(meta_text))
    arrays["__checksum__"] = np.array(cg.io._digest(arrays))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_one_input(data):
    if not data:
        return
    if data[0] % 2:
        try:
            raw = _signed(data[1:].decode("utf-8"))
        except UnicodeDecodeError:
            return
    else:
        raw = data[1:]
    with open(PATH, "wb") as f:
        f.write(raw)
    model, opt, sched = _setup()
    before = _snapshot(model, opt, sched)
    try:
        cg.load(PATH, model, opt, scheduler=sched, arrays={})
    except cg.CheckpointError:
        assert _same(before, _snapshot(model, opt, sched)), "a failed load changed something"


def _real():
    """(bytes of a real checkpoint, its arrays without meta and checksum, its meta text)"""
    model, opt, sched = _setup()
    opt.step()
    sched.step()
    path = cg.save(os.path.join(FOLDER, "seed.npz"), model, opt, scheduler=sched, epoch=1,
                   arrays={"best": np.ones(3)})
    with open(path, "rb") as f:
        raw = f.read()
    arrays, info = cg.io.read(path)
    return raw, arrays, json.dumps(info)


REAL, SIGNED_ARRAYS, META_TEXT = _real()


def _seeds():
    buf = io.BytesIO()
    np.savez(buf, a=np.arange(3))
    return [b"\0" + REAL, b"\0" + buf.getvalue(), b"\1" + META_TEXT.encode()]


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _harness import main
    main(test_one_input, _seeds())
