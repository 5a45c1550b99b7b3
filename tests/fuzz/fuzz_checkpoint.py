"""Fuzz cg.load with mutated checkpoints (bytes of a real one, flipped, cut, spliced).
cg.load must restore the model or raise CheckpointError, and a failed load must leave the
model untouched.

    python tests/fuzz/fuzz_checkpoint.py -seed=1 -max_total_time=600
"""
import io
import os
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    import numpy as np

    import cygrad as cg

FOLDER = tempfile.mkdtemp(prefix="cygrad-fuzz-ck-")
PATH = os.path.join(FOLDER, "ck.npz")


def _model():
    model = cg.models.mlp(sizes=(3, 4, 2), dtype=np.float64, seed=0)
    return model, cg.optim.Adam(model.parameters(), lr=0.01)


def test_one_input(raw):
    with open(PATH, "wb") as f:
        f.write(raw)
    model, opt = _model()
    before = [v.copy() for v in model.state_dict().values()]
    try:
        cg.load(PATH, model, opt)
    except cg.CheckpointError:
        after = model.state_dict().values()
        assert all(np.array_equal(a, b) for a, b in zip(before, after)), "failed load changed the model"


def _seeds():
    model, opt = _model()
    opt.step()
    out = []
    for with_opt in (True, False):
        path = cg.save(os.path.join(FOLDER, "seed.npz"), model, opt if with_opt else None, epoch=1)
        with open(path, "rb") as f:
            out.append(f.read())
    buf = io.BytesIO()
    np.savez(buf, a=np.arange(3))
    return out + [buf.getvalue()]


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _harness import main
    main(test_one_input, _seeds())
