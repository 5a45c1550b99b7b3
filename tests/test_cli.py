"""The command line: info, train (fake MNIST), eval, resume, and the offline message."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cygrad as cg
from cygrad.cli import main

SRC = str(Path(cg.__file__).resolve().parents[1])


def test_info(capsys):
    assert main(["info"]) == 0
    assert "openmp" in capsys.readouterr().out


def test_train_eval_resume(fake_mnist, tmp_path, capsys):
    threads = cg.get_num_threads()
    ck = tmp_path / "run" / "mlp.npz"
    args = ["train", "mlp", "--data", str(fake_mnist), "--batch-size", "32", "--checkpoint",
            str(ck), "--no-progress", "--threads", "1"]
    assert main(args + ["--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and len(out.strip().splitlines()) == 3
    assert main(["eval", str(ck), "--data", str(fake_mnist)]) == 0
    acc = float(capsys.readouterr().out.split("test accuracy")[1])
    assert acc == cg.io.read(ck)[1]["meta"]["history"]["val_accuracy"][0]
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "warning" not in captured.err
    assert "\n    2 " in out and cg.io.read(ck)[1]["meta"]["epoch"] == 2
    assert cg.get_num_threads() == threads  # --threads does not leak out of main()
    assert main(args + ["--epochs", "3", "--resume", "--lr", "0.01"]) == 0
    err = capsys.readouterr().err
    assert "notice: resuming with changed settings" in err and "lr 0.001 -> 0.01" in err


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "momentum", "adagrad", "rmsprop", "adamw"])
def test_every_optimizer_trains(optimizer, fake_mnist, capsys):
    assert main(["train", "mlp", "--data", str(fake_mnist), "--epochs", "1", "--no-progress",
                 "--optimizer", optimizer, "--lr", "0.01", "--l1", "1e-5"]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_train_cnn_on_the_reference_backend(fake_mnist, capsys):
    assert main(["train", "cnn", "--data", str(fake_mnist), "--epochs", "1", "--no-progress",
                 "--backend", "reference", "--dtype", "float64", "--batch-size", "64"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert cg.get_backend() == "kernels"  # restored


def _offline_env(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path / "home"), PYTHONPATH=SRC,
               CYGRAD_MNIST_MIRRORS="http://127.0.0.1:1/")
    env.pop("CYGRAD_DATA", None)
    return env


def test_offline_without_data_says_where_it_looked(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cygrad", "train", "mlp", "--no-progress"],
                          env=_offline_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert str(tmp_path / "home" / ".cache" / "cygrad" / "mnist") in proc.stderr
    assert "--data DIR" in proc.stderr and "CYGRAD_DATA" in proc.stderr
    assert "downloading them failed" in proc.stderr


def test_no_download_and_bad_checkpoint_are_clean_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CYGRAD_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["train", "cnn", "--data", str(tmp_path / "none"), "--no-download"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "none") in err and "--data DIR" in err
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"junk")
    assert main(["eval", str(bad)]) == 2
    assert "bad.npz" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "mlp", "--resume"])


def test_console_entry_point_module():
    proc = subprocess.run([sys.executable, "-m", "cygrad", "train", "--help"], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=SRC), timeout=120)
    assert proc.returncode == 0
    for option in ("--epochs", "--batch-size", "--lr", "--optimizer", "--threads", "--data",
                   "--checkpoint", "--resume", "--backend", "--seed"):
        assert option in proc.stdout


def test_bench_subcommand_runs(capsys):
    assert main(["bench", "--model", "mlp", "--batch-size", "8", "--threads", "1", "--steps", "1",
                 "--repeats", "1", "--no-reference", "--no-progress"]) == 0
    assert "| mlp | 8 | 1 |" in capsys.readouterr().out


def test_version():
    proc = subprocess.run([sys.executable, "-m", "cygrad", "--version"], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=SRC), timeout=120)
    assert proc.returncode == 0 and proc.stdout == f"cygrad {cg.__version__}\n"


def test_history_json_beside_the_checkpoint_and_on_resume(fake_mnist, tmp_path, capsys):
    import json
    ck = tmp_path / "run.npz"
    args = ["train", "mlp", "--data", str(fake_mnist), "--checkpoint", str(ck), "--no-progress",
            "--threads", "1"]
    assert main(args + ["--epochs", "1"]) == 0
    history = json.loads((tmp_path / "run.history.json").read_text())
    assert history == cg.io.read(ck)[1]["meta"]["history"] and history["epoch"] == [1]
    assert "run.history.json" in capsys.readouterr().err
    assert main(args + ["--epochs", "2", "--resume"]) == 0  # the whole history, restored + new
    history = json.loads((tmp_path / "run.history.json").read_text())
    assert history == cg.io.read(ck)[1]["meta"]["history"] and history["epoch"] == [1, 2]
    other = tmp_path / "out" / "h.json"
    assert main(["train", "mlp", "--data", str(fake_mnist), "--epochs", "1", "--no-progress",
                 "--history", str(other)]) == 0
    assert json.loads(other.read_text())["epoch"] == [1] and sorted(os.listdir(other.parent)) == ["h.json"]


def test_plot_without_matplotlib_says_so_and_succeeds(fake_mnist, tmp_path, monkeypatch, capsys):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.ticker"):
        monkeypatch.setitem(sys.modules, name, None)  # import -> ImportError, even if cached
    plot = tmp_path / "curves.png"
    assert main(["train", "mlp", "--data", str(fake_mnist), "--epochs", "1", "--no-progress",
                 "--plot", str(plot)]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "--plot" in line]
    assert len(lines) == 1 and "matplotlib" in lines[0] and "pip install matplotlib" in lines[0]
    assert not plot.exists()


def test_plot_file_name_is_checked_before_training(fake_mnist, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "mlp", "--data", str(fake_mnist), "--plot", str(tmp_path / "curves.txt")])
    assert e.value.code == 2 and ".png" in capsys.readouterr().err


def test_plot_with_matplotlib(fake_mnist, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "curves.png"
    assert main(["train", "mlp", "--data", str(fake_mnist), "--epochs", "2", "--no-progress",
                 "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"curves written to {plot}" in capsys.readouterr().err


@pytest.mark.parametrize("schedule", ["cosine", "step", "onecycle"])
def test_lr_schedules_train_and_resume(schedule, fake_mnist, tmp_path, capsys):
    ck = tmp_path / "run.npz"
    args = ["train", "mlp", "--data", str(fake_mnist), "--no-progress", "--lr", "0.01",
            "--lr-schedule", schedule, "--checkpoint", str(ck)]
    assert main(args + ["--epochs", "3"]) == 0
    info = cg.io.read(ck)[1]
    sched, meta = info["scheduler"]["state"], info["meta"]
    assert meta["lr_schedule"] == schedule and meta["epoch"] == 3 and meta["schedule_epochs"] == 3
    assert sched["last_epoch"] == (3 * 4 if schedule == "onecycle" else 3)  # 256 images / 64
    assert "warning" not in capsys.readouterr().err
    if schedule == "onecycle":  # a one-cycle plan cannot be stretched on resume
        assert main(args + ["--epochs", "5", "--resume"]) == 2
        assert "resume it with --epochs 3" in capsys.readouterr().err
    else:
        assert main(args + ["--epochs", "4", "--resume"]) == 0
        err = capsys.readouterr().err
        assert "epochs 3 -> 4" in err and f"the {schedule} schedule stays planned over 3" in err
        assert cg.io.read(ck)[1]["meta"]["schedule_epochs"] == 3  # the truth: its saved plan


# -- issue 15: truthful resume, divergence, argument checks, eval's data ----------------------
def _train_args(data, ck, *more):
    return ["train", "mlp", "--data", str(data), "--checkpoint", str(ck), "--no-progress",
            "--threads", "1", *more]


def _meta(ck):
    return cg.io.read(ck)[1]["meta"]


def test_resume_with_a_new_lr_trains_with_it_and_records_it(fake_mnist, tmp_path, capsys):
    import shutil
    ck, first = tmp_path / "run.npz", tmp_path / "epoch1.npz"
    assert main(_train_args(fake_mnist, ck, "--epochs", "1")) == 0
    shutil.copy(ck, first)
    capsys.readouterr()
    assert main(_train_args(fake_mnist, ck, "--epochs", "2", "--resume", "--lr", "0.01")) == 0
    err = capsys.readouterr().err
    assert f"resuming {ck} from epoch 1 (to epoch 2)" in err
    assert "notice: resuming with changed settings (epochs 1 -> 2, lr 0.001 -> 0.01)" in err
    assert ": adam lr 0.01, batch 64, 2 epochs" in err  # the banner: what will run
    info = cg.io.read(ck)[1]
    assert info["optimizer"]["param_groups"][0]["lr"] == 0.01  # what the optimizer used
    assert info["meta"]["lr"] == 0.01 and info["meta"]["epochs"] == 2
    assert info["meta"]["changes"] == [{"after_epoch": 1, "epochs": [1, 2], "lr": [0.001, 0.01]}]
    # epoch 2 by hand from the epoch-1 checkpoint with lr 0.01: the same bits
    model = cg.models.mlp(seed=0)
    opt = cg.optim.Adam(model.parameters(), lr=1e-3)
    cg.load(first, model, opt)
    opt.param_groups[0]["lr"] = 0.01
    train, _ = cg.data.mnist_loaders(fake_mnist, batch_size=64, seed=0)
    train.set_epoch(1)
    for xb, yb in train:
        loss = cg.nn.CrossEntropyLoss()(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    resumed = cg.models.mlp(seed=1)
    cg.load(ck, resumed)
    assert np.array_equal(resumed.flat_buffers()[0], model.flat_buffers()[0])


def test_resume_restores_the_checkpoints_settings(fake_mnist, tmp_path, monkeypatch, capsys):
    import shutil
    from cygrad import io
    whole, ck = tmp_path / "whole.npz", tmp_path / "run.npz"
    real_save = io.save

    def save(path, *args, **kwargs):  # keep the checkpoint of epoch 1: an interrupted run
        real_save(path, *args, **kwargs)
        if kwargs["epoch"] == 1:
            shutil.copy(path, ck)
    monkeypatch.setattr(io, "save", save)
    assert main(_train_args(fake_mnist, whole, "--epochs", "3", "--optimizer", "momentum",
                            "--lr", "0.02", "--l1", "1e-4", "--batch-size", "32", "--seed", "3",
                            "--lr-schedule", "step")) == 0
    monkeypatch.setattr(io, "save", real_save)
    capsys.readouterr()
    assert main(["train", "mlp", "--checkpoint", str(ck), "--resume", "--no-progress",
                 "--threads", "1"]) == 0  # no settings, no --data: all from the checkpoint
    err = capsys.readouterr().err
    assert f"resuming {ck} from epoch 1 (to epoch 3)" in err and "notice" not in err
    want, meta = _meta(whole), _meta(ck)
    for key in ("optimizer", "lr", "l1", "batch_size", "seed", "lr_schedule", "schedule_epochs",
                "epochs", "data", "epoch"):
        assert meta[key] == want[key], key
    a, b = cg.models.mlp(seed=5), cg.models.mlp(seed=6)
    cg.load(whole, a)
    cg.load(ck, b)
    assert np.array_equal(a.flat_buffers()[0], b.flat_buffers()[0])  # as if never interrupted


@pytest.mark.parametrize("change,flag", [(["--optimizer", "sgd"], "--optimizer"),
                                         (["--dtype", "float64"], "--dtype"),
                                         (["--lr-schedule", "cosine"], "--lr-schedule")])
def test_resume_refuses_a_change_the_saved_state_cannot_take(change, flag, fake_mnist, tmp_path,
                                                             capsys):
    ck = tmp_path / "run.npz"
    assert main(_train_args(fake_mnist, ck, "--epochs", "1")) == 0
    saved = ck.read_bytes()
    capsys.readouterr()
    assert main(_train_args(fake_mnist, ck, "--epochs", "2", "--resume", *change)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cygrad: error: {flag}: {ck} was trained with")
    assert ck.read_bytes() == saved
    assert main(["train", "cnn", "--checkpoint", str(ck), "--resume", "--no-download"]) == 2
    assert "holds the mlp model: resume it with `cygrad train mlp --resume`" in capsys.readouterr().err


def test_resuming_a_finished_run_says_nothing_to_do_and_loads_no_data(fake_mnist, tmp_path, capsys):
    ck = tmp_path / "run.npz"
    assert main(_train_args(fake_mnist, ck, "--epochs", "2")) == 0
    saved = ck.read_bytes()
    capsys.readouterr()
    args = ["train", "mlp", "--checkpoint", str(ck), "--resume", "--data", str(tmp_path / "none"),
            "--no-download"]
    assert main(args) == 0  # epochs: the checkpoint's 2, done
    assert main(args + ["--epochs", "1"]) == 0
    out = capsys.readouterr()
    assert out.err.count(f"cygrad: {ck} has completed 2 epochs") == 2 and out.out == ""
    assert "nothing to do" in out.err and ck.read_bytes() == saved


def test_lr_inf_is_refused_and_a_diverging_run_exits_1_keeping_the_checkpoint(
        fake_mnist, tmp_path, capsys):
    ck = tmp_path / "run.npz"
    assert main(_train_args(fake_mnist, ck, "--epochs", "1", "--optimizer", "sgd", "--lr", "0.01")) == 0
    saved = ck.read_bytes()
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(_train_args(fake_mnist, ck, "--epochs", "3", "--resume", "--lr", "inf"))
    assert e.value.code == 2 and "argument --lr: must be a finite number > 0, got inf" in \
        capsys.readouterr().err
    assert main(_train_args(fake_mnist, ck, "--epochs", "3", "--resume", "--lr", "1e9")) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("cygrad: error: training diverged: the loss is nan at epoch 2, step ")
    assert f"({ck} keeps epoch 1)" in last and "--on-nan warn" in last
    assert ck.read_bytes() == saved
    assert main(_train_args(fake_mnist, ck, "--epochs", "3", "--resume", "--lr", "1e9",
                            "--on-nan", "warn")) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warned) == 2 and warned[0].startswith("cygrad: warning: epoch 2: the loss was not")
    assert warned[1].endswith(f"not saved ({ck} keeps epoch 1)") and ck.read_bytes() == saved


@pytest.mark.parametrize("argv,flag", [
    (["train", "mlp", "--batch-size", "1000000000"], "--batch-size"),
    (["train", "cnn", "--batch-size", "0"], "--batch-size"),
    (["train", "mlp", "--epochs", "0"], "--epochs"),
    (["train", "mlp", "--epochs", "-1"], "--epochs"),
    (["train", "mlp", "--epochs", "2.5"], "--epochs"),
    (["train", "mlp", "--l1", "nan"], "--l1"),
    (["train", "mlp", "--l1", "-1"], "--l1"),
    (["train", "mlp", "--lr", "inf"], "--lr"),
    (["train", "mlp", "--lr", "0"], "--lr"),
    (["train", "mlp", "--lr", "fast"], "--lr"),
    (["train", "mlp", "--threads", "0"], "--threads"),
    (["train", "mlp", "--seed", "-1"], "--seed"),
    (["train", "mlp", "--timeout", "0"], "--timeout"),
    (["train", "mlp", "--dtype", "float16"], "--dtype"),
    (["train", "mlp", "--on-nan", "ignore"], "--on-nan"),
    (["train", "mlp", "--resume"], "--resume"),
    (["eval", "x.npz", "--batch-size", "0"], "--batch-size"),
    (["bench", "--steps", "-1"], "--steps"),
    (["bench", "--repeats", "0"], "--repeats"),
    (["bench", "--threads", "0"], "--threads"),
    (["bench", "--batch-size", "32,-8"], "--batch-size"),
])
def test_bad_arguments_are_one_line_naming_the_flag_before_any_data_is_loaded(
        argv, flag, tmp_path, capsys):
    data = ["--data", str(tmp_path / "none"), "--no-download"] if argv[0] != "bench" else []
    with pytest.raises(SystemExit) as e:
        main(argv + data)
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"error: argument {flag}" in err and "Traceback" not in err


def test_threads_above_the_cpu_count_are_capped_with_a_warning(fake_mnist, capsys):
    from cygrad.cli import cpu_count
    assert main(["train", "mlp", "--data", str(fake_mnist), "--epochs", "1", "--no-progress",
                 "--threads", "1000"]) == 0
    err = capsys.readouterr().err
    n = cpu_count()
    assert f"cygrad: warning: --threads 1000 is more than the {n} CPUs: using {n}" in err
    assert f", {n} threads, backend" in err


def test_bench_run_refuses_non_positive_counts():
    from cygrad import benchmark
    for kwargs in (dict(steps=-1), dict(repeats=0), dict(batch_sizes=(0,)), dict(threads=(1, 0))):
        with pytest.raises(ValueError, match="bench: .* must be positive integers"):
            benchmark.run(("mlp",), **{"batch_sizes": (8,), "threads": (1,), **kwargs})


def test_eval_uses_the_data_folder_the_checkpoint_was_trained_from(fake_mnist, tmp_path,
                                                                   monkeypatch, capsys):
    from cygrad import data
    ck = tmp_path / "run.npz"
    assert main(_train_args(fake_mnist, ck, "--epochs", "1")) == 0
    assert _meta(ck)["data"] == str(fake_mnist.resolve())
    monkeypatch.delenv("CYGRAD_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # nothing in ~/.cache

    def no_download(*args, **kwargs):
        raise AssertionError("eval must not download")
    monkeypatch.setattr(data, "download_mnist", no_download)
    capsys.readouterr()
    assert main(["eval", str(ck)]) == 0
    acc = float(capsys.readouterr().out.split("test accuracy")[1])
    assert acc == _meta(ck)["history"]["val_accuracy"][0]
    moved = tmp_path / "moved"
    fake_mnist.rename(moved)  # the folder is gone: the usual lookup, which fails offline
    assert main(["eval", str(ck), "--no-download"]) == 2
    err = capsys.readouterr().err
    assert f"was trained on MNIST from {fake_mnist.resolve()}, which no longer holds it" in err
    assert main(["eval", str(ck), "--data", str(moved)]) == 0


def test_the_table_shows_a_dash_for_a_missing_value(capsys):
    from cygrad.cli import _print_table
    history = {"epoch": [1], "loss": [0.5], "accuracy": [None], "val_loss": [None],
               "val_accuracy": [None], "seconds": [1.0], "images_per_s": [10.0]}
    _print_table(history, 1.0)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[1].split() == ["1", "0.5000", "-", "-", "-", "1.0", "10"]


def test_out_of_memory_is_one_line_naming_the_batch_size(fake_mnist, monkeypatch, capsys):
    def too_big(*args, **kwargs):
        raise MemoryError("Unable to allocate 5.2 GiB")
    monkeypatch.setattr(cg.data, "mnist_loaders", too_big)
    assert main(["train", "cnn", "--data", str(fake_mnist), "--batch-size", "60000"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("cygrad: error: out of memory (Unable to allocate 5.2 GiB): try a smaller "
                       "--batch-size") and "Traceback" not in "".join(err)


def test_an_unusable_checkpoint_path_fails_before_any_data_is_read(tmp_path, capsys):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    code = main(["train", "mlp", "--data", str(tmp_path / "nowhere"), "--no-download",
                 "--checkpoint", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--checkpoint" in err
    assert "MNIST" not in err  # refused before the data lookup


def test_two_trainings_into_one_checkpoint(fake_mnist, tmp_path, capsys):
    """A second run into a checkpoint another process trains into stops at once, naming
    that process; the holder is not disturbed."""
    import subprocess
    import sys
    ck = tmp_path / "shared.npz"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, cygrad.io as io\n"
         f"lock = io.CheckpointLock({str(ck)!r}).acquire()\nprint('held', flush=True)\n"
         "time.sleep(60)"], stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=SRC))
    try:
        assert holder.stdout.readline().strip() == "held"
        code = main(["train", "mlp", "--data", str(fake_mnist), "--epochs", "1",
                     "--no-progress", "--checkpoint", str(ck)])
        err = capsys.readouterr().err
        assert code != 0 and f"in use by pid {holder.pid}" in err
        assert not ck.exists()
    finally:
        holder.kill()
        holder.wait()


def test_train_and_eval_the_batch_norm_cnn(fake_mnist, tmp_path, capsys):
    ck = tmp_path / "bn.npz"
    assert main(["train", "cnn", "--batch-norm", "--data", str(fake_mnist), "--epochs", "1",
                 "--no-progress", "--checkpoint", str(ck)]) == 0
    arrays, info = cg.io.read(ck)
    assert info["meta"]["batch_norm"] is True and "model/1.running_var" in arrays
    assert int(arrays["model/1.num_batches_tracked"]) == 8  # 256 images / 32
    capsys.readouterr()
    assert main(["eval", str(ck), "--data", str(fake_mnist)]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_bench_measures_each_library_in_its_own_process():
    """`cygrad bench` never imports torch into the measuring process: in one process the
    two libraries would share torch's OpenMP runtime (issue 16)."""
    pytest.importorskip("torch")
    code = ("import sys, json\nfrom cygrad import benchmark\n"
            "rows = benchmark.run(('mlp',), (8,), (1,), steps=1, repeats=1, rounds=1,"
            " impls=('cygrad', 'torch'), progress=False)\n"
            "print(json.dumps(['torch' in sys.modules, rows[0]['cygrad_train'] > 0,"
            " rows[0]['torch_train'] > 0]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=SRC), timeout=300, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[false, true, true]"
