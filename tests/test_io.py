"""cg.save / cg.load: round trip, atomic writes, and CheckpointError for every bad file."""
import io
import json
import os
import re
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import cygrad as cg


def _trained(seed=0):
    model = cg.models.mlp(sizes=(6, 5, 3), dtype=np.float64, seed=seed)
    opt = cg.optim.Adam(model.parameters(), lr=0.01)
    rng = np.random.default_rng(seed)
    for _ in range(2):
        opt.grad[...] = rng.standard_normal(opt.grad.shape)
        opt.step()
    return model, opt


def test_round_trip_restores_model_optimizer_and_meta(tmp_path):
    model, opt = _trained()
    path = cg.save(tmp_path / "ck.npz", model, opt, epoch=np.int64(3), note="hi",
                   history={"loss": [1.5]})
    other, other_opt = _trained(seed=9)
    meta = cg.load(path, other, other_opt)
    assert meta == {"epoch": 3, "note": "hi", "history": {"loss": [1.5]}}
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert np.array_equal(a, b)
    assert other_opt.step_count == 2
    assert all(np.array_equal(opt.state[k], other_opt.state[k]) for k in opt.state)
    meta = cg.load(path, cg.models.mlp(sizes=(6, 5, 3), dtype=np.float64))  # model only
    assert meta["epoch"] == 3
    with pytest.raises(TypeError, match="JSON"):
        cg.save(tmp_path / "other.npz", model, note=object())
    assert not (tmp_path / "other.npz").exists()


def test_file_holds_plain_arrays_only(tmp_path):
    model, opt = _trained()
    path = cg.save(tmp_path / "ck.npz", model, opt)
    with np.load(path, allow_pickle=False) as f:  # would raise on any object array
        keys = set(f.files)
        assert all(f[k].dtype != object for k in keys)
    assert {"model/0.weight", "model/2.bias", "optim/state/0/exp_avg", "optim/state/3/exp_avg_sq",
            "__meta__", "__checksum__"} <= keys


def test_crash_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, opt = _trained()
    path = cg.save(tmp_path / "ck.npz", model, opt, epoch=1)
    before = path.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cg.save(path, model, opt, epoch=2)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ck.npz"]  # no temp file left behind


def test_corrupt_truncated_and_foreign_files_raise_checkpoint_error(tmp_path):
    model, opt = _trained()
    path = cg.save(tmp_path / "ck.npz", model, opt)
    raw = path.read_bytes()
    bad = tmp_path / "bad.npz"
    for content in (raw[:len(raw) // 2], raw[:100], b"", b"not a zip file at all" * 10):
        bad.write_bytes(content)
        with pytest.raises(cg.CheckpointError, match="bad.npz"):
            cg.load(bad, model)
    flipped = bytearray(raw)
    i = raw.find(b"\x93NUMPY") + 200  # inside the first array's data
    flipped[i] ^= 0xFF
    bad.write_bytes(bytes(flipped))
    with pytest.raises(cg.CheckpointError, match="bad.npz"):
        cg.load(bad, model)
    np.savez(bad, x=np.zeros(3))
    with pytest.raises(cg.CheckpointError, match="'__meta__' is missing"):
        cg.load(bad, model)
    np.save(tmp_path / "array.npy", np.zeros(3))
    with pytest.raises(cg.CheckpointError, match="single NumPy array"):
        cg.load(tmp_path / "array.npy", model)
    with pytest.raises(cg.CheckpointError, match="no such checkpoint"):
        cg.load(tmp_path / "missing.npz", model)
    assert issubclass(cg.CheckpointError, ValueError)


def test_checksum_catches_a_rewritten_array(tmp_path):
    model, opt = _trained()
    path = cg.save(tmp_path / "ck.npz", model, opt)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["model/0.weight"] = arrays["model/0.weight"] + 1  # a valid zip with changed values
    np.savez(tmp_path / "edited.npz", **arrays)
    with pytest.raises(cg.CheckpointError, match="checksum"):
        cg.load(tmp_path / "edited.npz", model)


def test_mismatched_model_or_optimizer_names_the_key(tmp_path):
    model, opt = _trained()
    path = cg.save(tmp_path / "ck.npz", model, opt)
    with pytest.raises(cg.CheckpointError, match=r"ck.npz.*'model/0.weight' has shape \(5, 6\)"):
        cg.load(path, cg.models.mlp(sizes=(7, 5, 3), dtype=np.float64))
    with pytest.raises(cg.CheckpointError, match="'model/4.weight' is missing"):
        cg.load(path, cg.models.mlp(sizes=(6, 5, 3, 3), dtype=np.float64))
    with pytest.raises(cg.CheckpointError, match="'model/2.weight' is not in the model"):
        cg.load(path, cg.models.mlp(sizes=(6, 5), dtype=np.float64))
    with pytest.raises(cg.CheckpointError, match="float32"):
        cg.load(path, cg.models.mlp(sizes=(6, 5, 3)))
    with pytest.raises(cg.CheckpointError, match="holds a Adam optimizer, not a SGD"):
        cg.load(path, model, cg.optim.SGD(model.parameters()))
    p = model.parameters()
    grouped = cg.optim.Adam([{"params": p[:2]}, {"params": p[2:]}])
    with pytest.raises(cg.CheckpointError, match="ck.npz.*1 parameter groups, this Adam has 2"):
        cg.load(path, model, grouped)
    plain = cg.save(tmp_path / "plain.npz", model)
    with pytest.raises(cg.CheckpointError, match="no optimizer state"):
        cg.load(plain, model, opt)
    sched = cg.optim.lr_scheduler.StepLR(opt, 2)
    with pytest.raises(cg.CheckpointError, match="no scheduler state"):
        cg.load(path, model, opt, scheduler=sched)


def test_no_zipfile_error_leaks(tmp_path):
    model, _ = _trained()
    path = tmp_path / "ck.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("__meta__.npy", b"garbage")
        z.writestr("__checksum__.npy", b"garbage")
    with pytest.raises(cg.CheckpointError, match="__meta__"):
        cg.load(path, model)


def _save_format_1(path, model, opt, **meta):
    """A checkpoint as cygrad 0.1 wrote it: one flat array per optimizer state."""
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"optim/{k}": v.copy() for k, v in opt.state.items()})
    hyper = {k: list(v) if k == "betas" else v for k, v in opt.hyper.items()
             if k not in ("maximize", "decoupled_weight_decay")}
    info = {"format_version": 1, "meta": meta,
            "optimizer": {"type": type(opt).__name__, "step": opt.step_count, "hyper": hyper}}
    arrays["__meta__"] = np.array(json.dumps(info))
    arrays["__checksum__"] = np.array(cg.io._digest(arrays))
    np.savez(path, **arrays)


@pytest.mark.parametrize("make", [lambda ps: cg.optim.Adam(ps, lr=0.01, amsgrad=True),
                                  lambda ps: cg.optim.SGD(ps, lr=0.1, momentum=0.9)])
def test_a_format_1_checkpoint_still_loads_and_resumes(tmp_path, make):
    model = cg.models.mlp(sizes=(6, 5, 3), dtype=np.float64, seed=0)
    opt = make(model.parameters())
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(opt.grad.shape) for _ in range(5)]
    for g in grads[:2]:
        opt.grad[...] = g
        opt.step()
    _save_format_1(tmp_path / "old.npz", model, opt, epoch=2)
    other = cg.models.mlp(sizes=(6, 5, 3), dtype=np.float64, seed=1)
    other_opt = make(other.parameters())
    assert cg.load(tmp_path / "old.npz", other, other_opt) == {"epoch": 2}
    assert other_opt.step_count == 2 and other_opt.lr == opt.lr
    for g in grads[2:]:
        for o in (opt, other_opt):
            o.grad[...] = g
            o.step()
    assert np.array_equal(model.flat_buffers()[0], other.flat_buffers()[0])


def test_grouped_optimizer_and_scheduler_round_trip(tmp_path):
    model = cg.models.mlp(sizes=(6, 5, 3), dtype=np.float64, seed=0)
    p = model.parameters()
    opt = cg.optim.SGD([{"params": p[2:], "lr": 0.5}, {"params": p[:2], "momentum": 0.9}], lr=0.1)
    sched = cg.optim.lr_scheduler.MultiStepLR(opt, milestones=[1, 3, 3], gamma=0.5)
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(opt.grad.shape) for _ in range(6)]

    def step(o, s, g):
        o.grad[...] = g
        o.step()
        s.step()
    for g in grads[:2]:
        step(opt, sched, g)
    cg.save(tmp_path / "ck.npz", model, opt, scheduler=sched, epoch=2)
    other = cg.models.mlp(sizes=(6, 5, 3), dtype=np.float64, seed=1)
    q = other.parameters()
    other_opt = cg.optim.SGD([{"params": q[2:]}, {"params": q[:2]}], lr=0.1)
    other_sched = cg.optim.lr_scheduler.MultiStepLR(other_opt, milestones=[7])
    assert cg.load(tmp_path / "ck.npz", other, other_opt, scheduler=other_sched) == {"epoch": 2}
    assert other_sched.milestones == sched.milestones and other_sched.last_epoch == 2
    assert other_opt.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    for g in grads[2:]:
        step(opt, sched, g)
        step(other_opt, other_sched, g)
    assert other_sched.get_last_lr() == sched.get_last_lr()
    assert np.array_equal(model.flat_buffers()[0], other.flat_buffers()[0])
    with pytest.raises(cg.CheckpointError, match="holds a MultiStepLR scheduler, not a StepLR"):
        cg.load(tmp_path / "ck.npz", other, other_opt,
                scheduler=cg.optim.lr_scheduler.StepLR(other_opt, 3))


def test_a_scheduler_state_that_does_not_fit_changes_nothing(tmp_path):
    model = cg.models.mlp(sizes=(6, 5, 3), dtype=np.float64, seed=0)
    opt = cg.optim.Adam(model.parameters(), lr=0.01)
    opt.grad[...] = 1.0
    opt.step()
    sched = cg.optim.lr_scheduler.ExponentialLR(opt, 0.5)
    cg.save(tmp_path / "ck.npz", model, opt, scheduler=sched)
    other = cg.models.mlp(sizes=(6, 5, 3), dtype=np.float64, seed=1)
    other_opt = cg.optim.Adam(other.parameters(), lr=0.2)
    other_sched = cg.optim.lr_scheduler.ExponentialLR(other_opt, 0.5)
    other_sched.load_state_dict = lambda sd: (_ for _ in ()).throw(ValueError("bad key"))
    before = (other.flat_buffers()[0].copy(), other_opt.state_dict())
    with pytest.raises(cg.CheckpointError, match="bad key"):
        cg.load(tmp_path / "ck.npz", other, other_opt, scheduler=other_sched)
    assert np.array_equal(other.flat_buffers()[0], before[0])
    assert other_opt.lr == 0.2 and other_opt.step_count == 0


@pytest.mark.parametrize("make", [
    lambda ps: cg.optim.LBFGS(ps, history_size=3, line_search_fn="strong_wolfe", max_iter=3),
    lambda ps: cg.optim.ConjugateGradient(ps, max_iter=3),
    lambda ps: cg.optim.Newton(ps, lambda w: np.diag([2.0, 20.0, 200.0]), max_iter=1)])
def test_second_order_history_round_trips_through_a_checkpoint(tmp_path, make):
    model = cg.models.linear_regression(in_features=2, dtype=np.float64, seed=0)
    scale = np.array([1.0, 10.0, 100.0])

    def closure_for(m):
        def closure():
            w = m.flat_buffers()[0]
            m.zero_grad()
            m.flat_buffers()[1][...] = 2 * scale * (w - 1)
            return float((scale * (w - 1) ** 2).sum())
        return closure
    opt = make(model.parameters())
    opt.step(closure_for(model))
    cg.save(tmp_path / "ck.npz", model, opt)
    other = cg.models.linear_regression(in_features=2, dtype=np.float64, seed=1)
    other_opt = make(other.parameters())
    cg.load(tmp_path / "ck.npz", other, other_opt)
    assert other_opt.n_iter == opt.n_iter and other_opt.func_evals == opt.func_evals
    opt.step(closure_for(model))
    other_opt.step(closure_for(other))
    assert np.array_equal(model.flat_buffers()[0], other.flat_buffers()[0])


def test_an_unknown_format_version_is_refused(tmp_path):
    model, opt = _trained()
    path = cg.save(tmp_path / "ck.npz", model, opt)
    arrays, info = cg.io.read(path)
    assert info["format_version"] == cg.io.FORMAT_VERSION == 2
    arrays["__meta__"] = np.array(json.dumps(dict(info, format_version=3)))
    arrays["__checksum__"] = np.array(cg.io._digest(arrays))
    np.savez(tmp_path / "future.npz", **arrays)
    with pytest.raises(cg.CheckpointError, match="format version 3, this cygrad reads versions 1, 2"):
        cg.load(tmp_path / "future.npz", model, opt)


# -- bounded reading: decompression bombs (issue 15, finding 5) ----------------------------------
def _npy_header(shape, descr="<f4"):
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False,
                                             "shape": shape})
    return f.getvalue()


def _deflated(data, final=False):
    """`data` as raw deflate blocks, compressed on their own (a full flush: no reference
    to earlier data), so that such pieces can be concatenated into one stream."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH)


def _bomb(path, key="model/0.weight", gib=1):
    """A 1 MB .npz whose one deflated member is a .npy of `gib` GiB of float32 zeros: a
    valid zip (sizes and CRC right), as an attacker would write it. One 1 MiB block of
    zeros deflates to ~1 KB, and the same piece repeats."""
    n_blocks = gib << 10
    header = _npy_header(((n_blocks << 20) // 4,))
    block = bytes(1 << 20)
    body = _deflated(header) + _deflated(block) * n_blocks + _deflated(b"", final=True)
    crc = zlib.crc32(header)
    for _ in range(n_blocks):
        crc = zlib.crc32(block, crc)
    size = len(header) + (n_blocks << 20)
    _write_zip(path, [(key + ".npy", zipfile.ZIP_DEFLATED, crc, body, size)])


def _write_zip(path, members):
    """A zip file of (name, method, crc, data as stored, uncompressed size) members."""
    out, central = bytearray(), bytearray()
    for name, method, crc, data, size in members:
        name = name.encode()
        fields = struct.pack("<HHHHHIIIHH", 20, 0, method, 0, 0x21, crc, len(data), size,
                             len(name), 0)
        central += (struct.pack("<IH", 0x02014B50, 20) + fields
                    + struct.pack("<HHHII", 0, 0, 0, 0, len(out)) + name)
        out += struct.pack("<I", 0x04034B50) + fields + name + data
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central),
                      len(out), 0)
    Path(path).write_bytes(bytes(out + central + end))


BOMB_CHILD = """
import resource, sys, time
import numpy as np
import cygrad as cg
model = cg.models.mlp(sizes=(784, 128, 64, 10))
opt = cg.optim.Adam(model.parameters())
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
try:
    cg.load(sys.argv[1], model, opt) if sys.argv[2] == "load" else cg.io.read(sys.argv[1])
except cg.CheckpointError as e:
    print("CheckpointError", e)
growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(f"rss_growth_kb {growth} seconds {time.perf_counter() - t0:.3f}")
"""


@pytest.mark.parametrize("how", ["load", "read"])
def test_a_decompression_bomb_is_refused_before_it_is_decompressed(tmp_path, how):
    path = tmp_path / "bomb.npz"
    _bomb(path)
    assert path.stat().st_size < 1_100_000
    with zipfile.ZipFile(path) as z:  # a valid zip: the member declares 1 GiB
        assert z.infolist()[0].file_size > 1 << 30
    env = dict(os.environ, PYTHONPATH=str(Path(cg.__file__).parents[1]))
    proc = subprocess.run([sys.executable, "-c", BOMB_CHILD, str(path), how], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    growth_kb = int(proc.stdout.split("rss_growth_kb ")[1].split()[0])
    assert growth_kb < 100 << 10, proc.stdout  # < 100 MB (before: 1.0 GB, 4 s)
    assert "CheckpointError" in proc.stdout and "bomb.npz" in proc.stdout
    assert re.search(r"declare 1,073,741,\d{3} bytes", proc.stdout), proc.stdout
    print(proc.stdout.strip().splitlines()[-1])


def test_members_whose_headers_lie_about_their_size_are_refused(tmp_path):
    model, opt = _trained()
    w = model.state_dict()["0.weight"]
    header = _npy_header(w.shape, "<f8")
    stored = header + w.tobytes()
    path = tmp_path / "lie.npz"
    # the zip entry says 8 bytes fewer than the .npy header declares
    _write_zip(path, [("model/0.weight.npy", zipfile.ZIP_STORED, zlib.crc32(stored[:-8]),
                       stored[:-8], len(stored) - 8)])
    with pytest.raises(cg.CheckpointError, match="'model/0.weight'.* declares 240 bytes of data, "
                                                 "its zip entry 232"):
        cg.load(path, model)
    huge = _npy_header((1 << 40,), "<f8")  # 8 TiB declared, a few bytes stored
    _write_zip(path, [("model/0.weight.npy", zipfile.ZIP_STORED, zlib.crc32(huge), huge,
                       len(huge))])
    with pytest.raises(cg.CheckpointError, match="declares 8,796,093,022,208 bytes"):
        cg.io.read(path)


@pytest.mark.parametrize("key", ["optim/state/0/exp_avg", "extra/best"])
def test_optimizer_state_and_extra_arrays_are_capped_by_the_model_size(tmp_path, key):
    model, opt = _trained()
    path = tmp_path / "ck.npz"
    cg.save(path, model, opt)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files if k != "__checksum__"}
    arrays[key] = np.zeros(EXTRA_ELEMENTS + cg.io.EXTRA_SLACK // 8, np.float64)
    arrays["__checksum__"] = np.array(cg.io._digest(arrays))
    np.savez_compressed(path, **arrays)  # 1 MB on disk, 100+ MB declared
    assert path.stat().st_size < 2 << 20
    what = "optimizer state" if key.startswith("optim") else "extra arrays"
    with pytest.raises(cg.CheckpointError, match=f"its {what} declare .* bytes, more than the"):
        cg.load(path, model, opt)


EXTRA_ELEMENTS = 1 << 20


def test_a_non_checkpoint_file_is_named_as_such_without_pickle_advice(tmp_path):
    model, _ = _trained()
    for name, content in [("notes.txt", b"epoch 1: loss 0.3\n" * 20),
                          ("random.npz", os.urandom(4096)),
                          ("serialized.npz", b"\x80\x04\x95" + os.urandom(100))]:
        path = tmp_path / name
        path.write_bytes(content)
        for call in (lambda: cg.io.read(path), lambda: cg.load(path, model)):
            with pytest.raises(cg.CheckpointError, match=f"{name}: not a readable cygrad "
                                                         "checkpoint: not a .npz archive") as info:
                call()
            assert "pickle" not in str(info.value)
    with pytest.raises(cg.CheckpointError, match="a folder, not a checkpoint file"):
        cg.load(tmp_path, model)


# -- crafted, validly re-signed checkpoints: CheckpointError, all or nothing (finding 10) -------
def _setup():
    """A model, Adam and StepLR after two steps; a checkpoint of them with an extra array."""
    model = cg.models.mlp(sizes=(6, 5, 3), dtype=np.float64, seed=0)
    opt = cg.optim.Adam(model.parameters(), lr=0.01)
    sched = cg.optim.lr_scheduler.StepLR(opt, 2, gamma=0.5)
    for _ in range(2):
        opt.grad[...] = 0.5
        opt.step()
    sched.step()
    return model, opt, sched


def _snapshot(model, opt, sched):
    return (json.dumps({k: v.tolist() for k, v in model.state_dict().items()}),
            json.dumps(cg.io._split_optimizer_state(opt.state_dict(), arrays := {})),
            json.dumps({k: v.tolist() for k, v in arrays.items()}), json.dumps(sched.state_dict()))


def _resigned(path, tmp_path, edit_info=None, edit_arrays=None, text=None):
    """A copy of checkpoint `path` with its meta JSON (or arrays) edited and the checksum
    recomputed, as anyone can (the checksum is not a signature)."""
    arrays, info = cg.io.read(path)
    if edit_arrays:
        edit_arrays(arrays)
    if edit_info:
        info = edit_info(info) or info
    arrays["__meta__"] = np.array(json.dumps(info) if text is None else text)
    arrays["__checksum__"] = np.array(cg.io._digest(arrays))
    out = tmp_path / "crafted.npz"
    np.savez(out, **arrays)
    return out


def _set(path, value):
    """An edit of the meta JSON: the value at key path `path` set (a list index or a key)."""
    def edit(info):
        node = info
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


CRAFTED = {  # what each did before: the exception that escaped cg.load
    "meta is a list": dict(edit_info=lambda info: [info]),                          # TypeError
    "no optimizer param_groups": dict(edit_info=lambda info: info["optimizer"].pop("param_groups")
                                      and None),                                    # KeyError
    "deep nesting": dict(text="[" * 100_000 + "]" * 100_000),                       # RecursionError
    "state is a list": dict(edit_info=_set(["optimizer", "state"], [])),            # AttributeError
    "param_groups a number": dict(edit_info=_set(["optimizer", "param_groups"], 5)),  # TypeError
    "params not numbers": dict(edit_info=_set(["optimizer", "param_groups", 0, "params"], ["a"])),
    "step_count a string": dict(edit_info=_set(["optimizer", "step_count"], "many")),
    "step a float": dict(edit_info=_set(["optimizer", "state", "0", "step"], 2.5)),
    "optimizer a string": dict(edit_info=_set(["optimizer"], "Adam")),              # TypeError
    "scheduler state a list": dict(edit_info=_set(["scheduler", "state"], [1])),
    "scheduler last_epoch a string": dict(edit_info=_set(["scheduler", "state", "last_epoch"],
                                                         "x")),
    "scheduler gamma a list": dict(edit_info=_set(["scheduler", "state", "gamma"], [0.5])),
    "scheduler gamma null": dict(edit_info=_set(["scheduler", "state", "gamma"], None)),
    "scheduler unknown key": dict(edit_info=_set(["scheduler", "state", "optimizer"], 1)),
    "format version true": dict(edit_info=_set(["format_version"], True)),
    "meta not a dict": dict(edit_info=_set(["meta"], [1, 2])),
    "state array of ints": dict(edit_arrays=lambda a: a.update(
        {"optim/state/0/exp_avg": a["optim/state/0/exp_avg"].astype(np.int64)})),
    "state array of strings": dict(edit_arrays=lambda a: a.update({"optim/state/0/exp_avg":
                                                                  np.full((5, 6), "x")})),
    "unknown key": dict(edit_arrays=lambda a: a.update({"other/x": np.zeros(3)})),
    # hyperparameters the optimizer cannot use: before, load accepted them and the first
    # step() failed (or, for amsgrad "yes", silently took it for True)
    "lr a bool": dict(edit_info=_set(["optimizer", "param_groups", 0, "lr"], True)),
    "lr a string": dict(edit_info=_set(["optimizer", "param_groups", 0, "lr"], "0.1")),
    "one beta": dict(edit_info=_set(["optimizer", "param_groups", 0, "betas"], [0.9])),
    "amsgrad a string": dict(edit_info=_set(["optimizer", "param_groups", 0, "amsgrad"], "yes")),
    "eps a dict": dict(edit_info=_set(["optimizer", "param_groups", 0, "eps"], {"a": 1})),
}


@pytest.mark.parametrize("name", list(CRAFTED))
def test_a_crafted_checkpoint_raises_checkpoint_error_and_changes_nothing(tmp_path, name):
    model, opt, sched = _setup()
    path = cg.save(tmp_path / "ck.npz", model, opt, scheduler=sched, arrays={"best": np.ones(3)})
    crafted = _resigned(path, tmp_path, **CRAFTED[name])
    other, other_opt, other_sched = _setup()
    other.load_state_dict({k: v + 1 for k, v in other.state_dict().items()})
    before = _snapshot(other, other_opt, other_sched)
    extra = {}
    with pytest.raises(cg.CheckpointError, match="crafted.npz"):
        cg.load(crafted, other, other_opt, scheduler=other_sched, arrays=extra)
    assert _snapshot(other, other_opt, other_sched) == before and extra == {}
    other_opt.step()  # still usable


@pytest.mark.parametrize("make, key, value", [
    (lambda ps: cg.optim.SGD(ps, lr=0.1, momentum=0.9), "momentum", True),
    (lambda ps: cg.optim.SGD(ps, lr=0.1), "weight_decay", True),
    (lambda ps: cg.optim.LBFGS(ps), "line_search_fn", "wolfe"),
    (lambda ps: cg.optim.LBFGS(ps), "max_iter", "20"),
    (lambda ps: cg.optim.RMSprop(ps), "centered", 1),
])
def test_hyperparameters_are_checked_at_load_not_at_the_first_step(tmp_path, make, key, value):
    model = cg.models.mlp(sizes=(6, 5, 3), dtype=np.float64, seed=0)
    path = cg.save(tmp_path / "ck.npz", model, make(model.parameters()))
    crafted = _resigned(path, tmp_path, _set(["optimizer", "param_groups", 0, key], value))
    opt = make(model.parameters())
    before = opt.state_dict()["param_groups"]
    with pytest.raises(cg.CheckpointError, match=f"crafted.npz: .*{key}"):
        cg.load(crafted, model, opt)
    assert opt.state_dict()["param_groups"] == before


def test_a_failure_while_loading_restores_what_was_loaded_even_on_ctrl_c(tmp_path, monkeypatch):
    model, opt, sched = _setup()
    path = cg.save(tmp_path / "ck.npz", model, opt, scheduler=sched)
    other, other_opt, other_sched = _setup()
    other.load_state_dict({k: v + 1 for k, v in other.state_dict().items()})
    other_opt.lr = 0.5
    before = _snapshot(other, other_opt, other_sched)
    real = type(other).load_state_dict
    calls = []

    def interrupted(self, state, strict=True):
        calls.append(1)
        if len(calls) == 1:  # the load itself; the restore goes through
            real(self, {k: v * 0 for k, v in state.items()})  # half done ...
            raise KeyboardInterrupt  # ... and interrupted
        return real(self, state, strict)
    monkeypatch.setattr(type(other), "load_state_dict", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cg.load(path, other, other_opt, scheduler=other_sched)
    assert _snapshot(other, other_opt, other_sched) == before


def _mutations(info, rng):
    """Every (key path, value) of a JSON tree, and a random replacement value for one."""
    paths = []

    def walk(node, at):
        paths.append(at)
        items = node.items() if isinstance(node, dict) else enumerate(node) \
            if isinstance(node, list) else ()
        for k, v in items:
            walk(v, at + [k])
    walk(info, [])
    at = paths[rng.integers(1, len(paths))]
    values = [None, True, 0, -1, 2.5, float("nan"), 1e308 * 10, "x", "", [], [1, "a"], {},
              {"a": None}, [[]], 10 ** 30]
    return at, values[rng.integers(len(values))]


def test_random_edits_of_a_resigned_checkpoint_load_or_raise_checkpoint_error(tmp_path):
    """A small structure-aware fuzz (tests/fuzz/fuzz_checkpoint.py is the long one): one
    random value of the meta JSON replaced, the checksum recomputed; cg.load must load it
    or raise CheckpointError leaving everything as it was."""
    model, opt, sched = _setup()
    path = cg.save(tmp_path / "ck.npz", model, opt, scheduler=sched, arrays={"best": np.ones(3)})
    rng = np.random.default_rng(15)
    refused = 0
    for _ in range(300):
        at, value = _mutations(cg.io.read(path)[1], rng)
        crafted = _resigned(path, tmp_path, _set(at, value))
        other, other_opt, other_sched = _setup()
        before = _snapshot(other, other_opt, other_sched)
        try:
            cg.load(crafted, other, other_opt, scheduler=other_sched)
        except cg.CheckpointError:
            refused += 1
            assert _snapshot(other, other_opt, other_sched) == before, (at, value)
    print(f"{refused} of 300 edits refused")
    assert 100 < refused < 300
