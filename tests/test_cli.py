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
    assert "warning: resuming" in err and "lr 0.001 -> 0.01" in err


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
        assert "schedule_epochs 3 -> 4" in capsys.readouterr().err
