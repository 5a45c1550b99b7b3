"""Every example's --quick run (in a subprocess, as CI runs it) and the linear-regression
modes of the source texts: batch, mini-batch and stochastic descent recover y = 2x."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cygrad

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NEEDS_MNIST = ["mlp_mnist.py", "cnn_sgd_by_hand.py", "cnn_mnist.py", "optimizers.py",
               "second_order.py"]


def run_example(name, *args):
    env = dict(os.environ)   # the subprocess imports the same cygrad as this test
    src = str(Path(cygrad.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, str(EXAMPLES / name), "--quick", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def assert_passed(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "FAILED" not in result.stdout
    assert "ok: " in result.stdout
    assert "skipped" not in result.stdout


@pytest.mark.parametrize("name", NEEDS_MNIST)
def test_mnist_example_quick(name, mnist_dir):
    assert_passed(run_example(name, "--data", str(mnist_dir)))


def test_linear_regression_quick():
    assert_passed(run_example("linear_regression.py"))


def test_example_without_data_skips_cleanly(tmp_path):
    result = run_example("mlp_mnist.py", "--data", str(tmp_path))
    assert result.returncode == 0
    assert "skipped" in result.stdout and str(tmp_path) in result.stdout


@pytest.fixture(scope="module")
def linear_regression():
    spec = importlib.util.spec_from_file_location("linear_regression", EXAMPLES / "linear_regression.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXAMPLES))
    return module


@pytest.mark.parametrize("mode, batch_size", [("batch", 100), ("mini-batch", 10), ("stochastic", 1)])
def test_linear_regression_recovers_the_line(linear_regression, mode, batch_size):
    x, y = linear_regression.make_data(100, noise=0.0)
    theta0, theta1, history = linear_regression.fit_line(x, y, mode)
    assert abs(theta1 - 2) < 1e-3 and abs(theta0) < 1e-3
    assert linear_regression.MODES[mode][0] in (batch_size, None)
    assert history["loss"][-1] < history["loss"][0]


def test_linear_regression_penalties_shrink_theta(linear_regression):
    x, y = linear_regression.make_data(100, noise=0.0)
    _, plain, _ = linear_regression.fit_line(x, y, "batch")
    _, l1, _ = linear_regression.fit_line(x, y, "batch", l1=0.05)
    _, l2, _ = linear_regression.fit_line(x, y, "batch", l2=0.1)
    assert l1 < plain - 0.01 and l2 < plain - 0.01
    # L2 (weight decay 0.1 on theta0 and theta1): (2 X^T X / n + 0.1 I) theta = 2 X^T y / n
    x1 = np.hstack([np.ones_like(x), x])
    theta = np.linalg.solve(2 * x1.T @ x1 / len(x) + 0.1 * np.eye(2), 2 * x1.T @ y[:, 0] / len(x))
    assert l2 == pytest.approx(theta[1], abs=1e-6)
