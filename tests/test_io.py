"""cg.save / cg.load: round trip, atomic writes, and CheckpointError for every bad file."""
import json
import os
import zipfile

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
