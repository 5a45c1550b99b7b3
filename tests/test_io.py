"""cg.save / cg.load: round trip, atomic writes, and CheckpointError for every bad file."""
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
    assert {"model/0.weight", "model/2.bias", "optim/exp_avg", "__meta__", "__checksum__"} <= keys


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
    with pytest.raises(cg.CheckpointError, match="'optim/max_exp_avg_sq' is missing"):
        cg.load(path, model, cg.optim.Adam(model.parameters(), amsgrad=True))
    plain = cg.save(tmp_path / "plain.npz", model)
    with pytest.raises(cg.CheckpointError, match="no optimizer state"):
        cg.load(plain, model, opt)


def test_no_zipfile_error_leaks(tmp_path):
    model, _ = _trained()
    path = tmp_path / "ck.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("__meta__.npy", b"garbage")
        z.writestr("__checksum__.npy", b"garbage")
    with pytest.raises(cg.CheckpointError, match="__meta__"):
        cg.load(path, model)
